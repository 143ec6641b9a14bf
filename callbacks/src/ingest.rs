//! The batched StatusCallback writer.
//!
//! Handlers send each parsed event with a oneshot into a bounded channel (backpressure: a full channel makes
//! handlers wait, never drops). One task drains up to [`BATCH_MAX`] events at a time and stores them in one
//! transaction ([`Store::events_apply_many`]: one `unnest` insert, then each attempt's new events reduced to
//! the highest rank and applied), then answers every oneshot — a handler returns 200 only after its event
//! is committed. If a batch fails, its events are retried one transaction each, so one bad event cannot fail
//! its neighbours. Metrics are counted here, after the commit, so each event counts once.

use dialer_core::metrics::Metrics;
use dialer_core::store::{EventApplied, StatusEvent, Store};
use tokio::sync::{mpsc, oneshot};

use crate::ApiError;

/// Most events written in one transaction.
pub const BATCH_MAX: usize = 256;
/// Events waiting for the writer before handlers wait (a guess: a few seconds of a busy campaign).
pub const QUEUE_DEPTH: usize = 4096;

struct Job {
    event: StatusEvent,
    reply: oneshot::Sender<Result<EventApplied, String>>,
}

/// The handle handlers submit to; the writer task stops when every handle is dropped.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
}

impl Ingest {
    pub fn spawn(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(store, rx));
        Self { tx }
    }

    /// Stores one event; returns once it is durable.
    pub async fn submit(&self, event: StatusEvent) -> Result<EventApplied, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job { event, reply }).await.map_err(|_| anyhow::anyhow!("status writer stopped"))?;
        let answer = rx.await.map_err(|_| anyhow::anyhow!("status writer dropped the event"))?;
        answer.map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut buf = Vec::with_capacity(BATCH_MAX);
    while rx.recv_many(&mut buf, BATCH_MAX).await > 0 {
        let jobs = std::mem::take(&mut buf);
        write_batch(&store, jobs).await;
    }
}

async fn write_batch(store: &Store, jobs: Vec<Job>) {
    let events: Vec<StatusEvent> = jobs.iter().map(|j| j.event.clone()).collect();
    match store.events_apply_many(&events).await {
        Ok(results) => {
            for (job, applied) in jobs.into_iter().zip(results) {
                count(&job.event, &applied);
                let _ = job.reply.send(Ok(applied));
            }
        }
        Err(e) if jobs.len() > 1 => {
            tracing::warn!(error = %e, events = jobs.len(), "status batch failed; writing its events one by one");
            for job in jobs {
                let single = store.events_apply_many(std::slice::from_ref(&job.event)).await;
                let answer = match single {
                    Ok(mut r) => {
                        let applied = r.pop().expect("one answer per event");
                        count(&job.event, &applied);
                        Ok(applied)
                    }
                    Err(e) => Err(e.to_string()),
                };
                let _ = job.reply.send(answer);
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(e.to_string()));
            }
        }
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
