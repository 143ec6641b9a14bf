//! The operator loop: pairs callees in waiting rooms with free operators and rings each one's Twilio
//! Client into the callee's conference; takes callees who waited past the hold limit out of the room to
//! the call-back offer; hangs up operator legs nobody needs any more. Every decision is one store
//! statement; the REST requests come after its commit, never inside a transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialer_core::domain::{AttemptToken, CallStatus};
use dialer_core::metrics::{Metrics, OPERATOR_STATUSES};
use dialer_core::store::{LegApplied, Ring, StoreError};
use dialer_core::twilio::{CreateParticipant, RetryClass, UpdateStatus};
use tracing::Instrument;

use super::Engine;

/// Rows handled per step of each kind; the loop comes back at once while a step was full.
const BATCH: i64 = 50;
/// How often the operator and waiting-room gauges are refreshed.
const GAUGES: Duration = Duration::from_secs(1);

pub async fn run(engine: Arc<Engine>, poll: Duration) {
    let mut gauges_at = Instant::now() - GAUGES;
    let mut waiting_campaigns: Vec<i64> = Vec::new();
    loop {
        let full = match once(&engine).await {
            Ok(full) => full,
            Err(e) => {
                tracing::warn!(error = %e, "operator loop step failed");
                Metrics::global().internal_error("operators");
                false
            }
        };
        if gauges_at.elapsed() >= GAUGES {
            gauges_at = Instant::now();
            gauges(&engine, &mut waiting_campaigns).await;
        }
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = engine.shutdown.cancelled() => return,
            }
        } else if engine.shutdown.is_cancelled() {
            return;
        }
    }
}

/// One pass: hold limits, legs to hang up, rings. True when a step had more than one batch.
pub async fn once(engine: &Engine) -> Result<bool, StoreError> {
    let store = &engine.store;
    let expired = store.transfers_hold_expired(BATCH).await?;
    for e in &expired {
        let Some(sid) = &e.call_sid else { continue };
        let url = engine.attempt_url("transfer/offer", e.attempt_id, "");
        let span = tracing::info_span!("hold_limit", attempt_id = e.attempt_id, call_sid = %sid);
        if let Err(err) = engine.twilio.redirect_call(sid, &url).instrument(span).await {
            // The callee is gone (the call ended): their hang-up settles the transfer.
            tracing::info!(attempt_id = e.attempt_id, call_sid = %sid, error = %err, "could not offer a call back");
        }
    }
    let legs = store.transfers_legs_to_close(BATCH).await?;
    for l in &legs {
        match engine.twilio.update_call(&l.leg_sid, UpdateStatus::Completed).await {
            Ok(_) => {}
            // Not sent, rate-limited, or no answer: try again on the next pass.
            Err(e) if matches!(e.class(), RetryClass::NotCreatedRetry | RetryClass::FateUnknown) => continue,
            // Already over, or unknown to Twilio: nothing left to hang up.
            Err(e) => tracing::info!(attempt_id = l.attempt_id, call_sid = %l.leg_sid, error = %e, "operator leg"),
        }
        let steps = store.transfers_leg_event(l.attempt_id, l.ring_no, &l.leg_sid, CallStatus::Canceled).await?;
        // A ring that outlived its timeout without a callback counts as missed.
        if steps.iter().any(|s| matches!(s, LegApplied::Missed { .. })) {
            Metrics::global().operator_rings.with_label_values(&["missed"]).inc();
        }
    }
    let rings = store.transfers_ring_next(BATCH).await?;
    let n = rings.len();
    let tasks: Vec<_> = rings.into_iter().map(|r| ring(engine, r)).collect();
    for r in futures::future::join_all(tasks).await {
        r?;
    }
    Ok([expired.len(), legs.len(), n].iter().any(|n| *n as i64 == BATCH))
}

/// Rings one operator into the callee's conference (Twilio creates the leg and calls back on its
/// progress at `/operator/status/{token}?ring=N`).
async fn ring(engine: &Engine, r: Ring) -> Result<(), StoreError> {
    let span = tracing::info_span!("ring", attempt_id = r.attempt_id, operator = %r.identity, ring = r.ring_no);
    async {
        // A participant is an outbound call: it counts against the account's CPS like ours.
        let at = super::pacing::book(&[&engine.account], tokio::time::Instant::now()).await;
        let _permit = engine.rest.acquire().await;
        let at = super::pacing::wait_for(&[&engine.account], at).await;
        let req = CreateParticipant {
            from: r.caller_id.clone(),
            to: r.identity.client_address(),
            timeout_s: r.ring_s.max(5) as u32,
            status_callback: engine.attempt_url("operator/status", r.attempt_id, &format!("?ring={}", r.ring_no)),
            label: Some(format!("operator-{}", r.identity)),
            start_conference_on_enter: true,
            end_conference_on_exit: true,
        };
        let conference = format!("transfer-{}", r.attempt_id);
        let created = engine.twilio.create_participant(&conference, &req).await;
        super::pacing::arrived(&[&engine.account], &engine.ring_trips, at, tokio::time::Instant::now());
        match created {
            Ok(p) => engine.store.transfers_leg_created(r.attempt_id, r.ring_no, &p.call_sid).await,
            Err(e) => {
                tracing::warn!(error = %e, "ringing an operator failed");
                Metrics::global().operator_rings.with_label_values(&["failed"]).inc();
                engine.store.transfers_ring_failed(r.attempt_id, r.ring_no, r.operator_id).await
            }
        }
    }
    .instrument(span)
    .await
}

async fn gauges(engine: &Engine, shown: &mut Vec<i64>) {
    let m = Metrics::global();
    match engine.store.operators_counts().await {
        Ok(c) => {
            for (status, n) in OPERATOR_STATUSES.iter().zip([c.available, c.away, c.ringing, c.busy]) {
                m.operators.with_label_values(&[status]).set(n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "counting operators"),
    }
    if let Ok(waiting) = engine.store.transfers_waiting_by_campaign().await {
        // Campaigns whose room emptied read 0, not their last value.
        for id in shown.iter().filter(|id| !waiting.contains_key(id)) {
            m.waiting_callers.with_label_values(&[&id.to_string()]).set(0);
        }
        for (id, n) in &waiting {
            m.waiting_callers.with_label_values(&[&id.to_string()]).set(*n);
        }
        *shown = waiting.into_keys().collect();
    }
}

/// Callees waiting per campaign and free operators, when anyone waits (for pacing).
pub async fn saturation(engine: &Engine) -> Option<(HashMap<i64, i64>, i64)> {
    let waiting = engine.store.transfers_waiting_by_campaign().await.ok()?;
    if waiting.is_empty() {
        return None;
    }
    let free = engine.store.operators_counts().await.ok()?.available;
    Some((waiting, free))
}

impl Engine {
    /// `{PUBLIC_BASE_URL}/{route}/{token}{query}` for an attempt.
    pub fn attempt_url(&self, route: &str, attempt_id: i64, query: &str) -> String {
        let token = AttemptToken::new(attempt_id).encode(&self.token_key);
        format!("{}/{route}/{token}{query}", self.public_base_url)
    }
}
