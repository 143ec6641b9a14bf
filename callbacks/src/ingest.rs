//! The batched StatusCallback writer.
//!
//! Handlers submit each parsed event to a [`Batcher`] (bounded: a full queue makes handlers wait, never
//! drops). Its task stores up to [`BATCH_MAX`] events at a time in one transaction
//! ([`Store::events_apply_many`]: one `unnest` insert, each attempt's new events reduced to the highest rank,
//! then set-based transitions), then answers each handler — a handler returns 200 only after its event is
//! committed. If a batch fails, its events are retried one transaction each, so one bad event cannot fail
//! its neighbours. Metrics are counted here, after the commit, so each event counts once.

use dialer_core::batch::{self, all_failed, Answer, Batcher};
use dialer_core::metrics::Metrics;
use dialer_core::store::{EventApplied, StatusEvent, Store, StoreError};

use crate::ApiError;

/// Most events written in one transaction.
pub const BATCH_MAX: usize = 256;
/// Batches written at once: one can fill while another commits. Batches touching the same attempt lock it
/// in id order and take turns.
pub const WRITERS: usize = 4;
/// Events waiting for the writer before handlers wait (a guess: a few seconds of a busy campaign).
pub const QUEUE_DEPTH: usize = 4096;

/// The handle handlers submit to; the writer task stops when every handle is dropped.
#[derive(Clone)]
pub struct Ingest {
    writer: Batcher<StatusEvent, EventApplied, StoreError>,
}

impl Ingest {
    pub fn spawn(store: Store) -> Self {
        let writer = Batcher::spawn_lingering(
            BATCH_MAX,
            QUEUE_DEPTH,
            WRITERS,
            batch::LINGER,
            move |events: Vec<StatusEvent>| {
                let store = store.clone();
                async move { write_batch(&store, events).await }
            },
        );
        Self { writer }
    }

    /// Stores one event; returns once it is durable.
    pub async fn submit(&self, event: StatusEvent) -> Result<EventApplied, ApiError> {
        let attempt_id = event.attempt_id;
        self.writer.submit(event).await.map_err(|e| {
            ApiError::Internal(
                anyhow::Error::new(e).context(format!("storing a status callback of attempt {attempt_id}")),
            )
        })
    }
}

async fn write_batch(store: &Store, events: Vec<StatusEvent>) -> Vec<Answer<EventApplied, StoreError>> {
    match store.events_apply_many(&events).await {
        Ok(results) => {
            for (event, applied) in events.iter().zip(&results) {
                count(event, applied);
            }
            results.into_iter().map(Ok).collect()
        }
        Err(e) if events.len() > 1 => {
            tracing::warn!(error = %e, events = events.len(), "status batch failed; writing its events one by one");
            let mut answers = Vec::with_capacity(events.len());
            for event in &events {
                answers.push(match store.events_apply_many(std::slice::from_ref(event)).await {
                    Ok(mut r) => {
                        let applied = r.pop().expect("one answer per event");
                        count(event, &applied);
                        Ok(applied)
                    }
                    Err(e) => Err(e.into()),
                });
            }
            answers
        }
        Err(e) => all_failed(e, events.len()),
    }
}

fn count(event: &StatusEvent, applied: &EventApplied) {
    let m = Metrics::global();
    match applied {
        EventApplied::New { out_of_order, settled } => {
            m.callbacks_received.with_label_values(&[event.status.as_str()]).inc();
            if *out_of_order {
                m.callbacks_out_of_order.inc();
            }
            if let Some(ms) = event.queue_time_ms {
                m.queue_time.observe(f64::from(ms) / 1000.0);
            }
            if let Some(s) = settled {
                m.settled(s);
            }
        }
        EventApplied::Duplicate => m.callbacks_duplicate.inc(),
        EventApplied::WrongCall | EventApplied::UnknownAttempt => {}
    }
}
