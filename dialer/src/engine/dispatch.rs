//! A campaign's dispatcher: the last policy check, pacing, and the POST that creates the call.
//!
//! Order per attempt: calling-window re-check → book a send time at both levels (campaign and account,
//! [`pacing::book`]) → REST permit → commit `dialing` (DNC, 24 h limit and one-per-reference checked again in
//! the same statement) → wait for the booked instant → POST. The attempt is committed as `dialing` at most
//! [`pacing::LEAD`] before its send time, no transaction is open during the POST, and a POST never starts
//! long after its commit (the fence, see `post`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use dialer_core::batch::{all_failed, Batcher};
use dialer_core::domain::{AmdMode, CampaignStatus, FinalState};
use dialer_core::metrics::Metrics;
use dialer_core::store::{Block, ClaimedAttempt, DialingGate, StoreError};
use dialer_core::twilio::{CreateCall, HttpMethod, MachineDetection, RetryClass};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

use super::campaigns::LiveCampaign;
use super::pacing;
use super::rest::RestPermit;
use super::{Created, Engine, WRITERS, WRITE_BATCH};

/// Workers per campaign. Each holds one call from its booking through the pre-POST commit (the POST
/// itself runs on its own task), so a campaign moves about WORKERS / commit time calls per second; the
/// calls let through together share one statement for that commit.
const WORKERS: usize = 128;

/// How long a call waits while another call about the same reference is under way.
const REFERENCE_RETRY: chrono::Duration = chrono::Duration::minutes(5);

/// The campaign's last check before the POST ([`Store::attempts_mark_dialing_many`]), batched: the calls
/// the pacer has let through while the previous statement ran go in the next one.
type Gate = Batcher<ClaimedAttempt, DialingGate, StoreError>;

pub async fn run(engine: Arc<Engine>, campaign: Arc<LiveCampaign>, rx: mpsc::Receiver<ClaimedAttempt>) {
    let gate: Gate = {
        let store = engine.store.clone();
        let owner = engine.node_id.clone();
        let c = campaign.clone();
        // Paced calls reach the gate one per slot (a millisecond apart at 1,000 CPS); the linger counts in
        // the commit time the booking lead is sized from (`LiveCampaign::commit_lead`), so they still
        // leave on time.
        Batcher::spawn_lingering(
            WRITE_BATCH,
            WORKERS,
            WRITERS,
            dialer_core::batch::LINGER,
            move |batch: Vec<ClaimedAttempt>| {
                let (store, owner) = (store.clone(), owner.clone());
                let max_24h: Vec<Option<i32>> = batch.iter().map(|a| c.max_calls_24h(&c.zone_of(a))).collect();
                let (id, one_per_ref) = (c.id, c.one_per_reference());
                async move {
                    match store.attempts_mark_dialing_many(&owner, id, &batch, &max_24h, one_per_ref).await {
                        Ok(gates) => gates.into_iter().map(Ok).collect(),
                        Err(e) => all_failed(e, batch.len()),
                    }
                }
            },
        )
    };
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        workers.spawn(worker(engine.clone(), campaign.clone(), gate.clone(), rx.clone()));
    }
    while workers.join_next().await.is_some() {}
}

/// Takes claimed attempts until the scheduler closes the channel. Shutting down, whatever is still queued
/// goes back to pending at once.
async fn worker(
    engine: Arc<Engine>,
    campaign: Arc<LiveCampaign>,
    gate: Gate,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<ClaimedAttempt>>>,
) {
    loop {
        let next = rx.lock().await.recv().await;
        let Some(a) = next else { return };
        // However this attempt ends here, it no longer waits in this dispatcher.
        let _held = Held(&campaign.held);
        if engine.shutdown.is_cancelled() {
            release(&engine, &[a]).await;
            continue;
        }
        let span = tracing::info_span!(
            "attempt",
            attempt_id = a.attempt_id,
            campaign = campaign.id,
            call_sid = tracing::field::Empty
        );
        if let Err(e) = dispatch_one(&engine, &campaign, &gate, a).instrument(span).await {
            warn!(campaign = campaign.id, error = %e, "dispatch failed");
            Metrics::global().internal_error("dispatch");
        }
    }
}

/// Counts an attempt out of [`LiveCampaign::held`] when dropped.
struct Held<'a>(&'a AtomicUsize);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn release(engine: &Engine, attempts: &[ClaimedAttempt]) {
    if attempts.is_empty() {
        return;
    }
    let ids: Vec<i64> = attempts.iter().map(|a| a.attempt_id).collect();
    let at = vec![Utc::now(); ids.len()];
    if let Err(e) = engine.store.attempts_release_many(&engine.node_id, &ids, &at).await {
        warn!(error = %e, attempts = ids.len(), "releasing claims failed; their leases will expire");
        Metrics::global().internal_error("dispatch");
    }
}

/// What happened to one claimed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    Sent,
    Deferred,
    Blocked,
    Released,
    LeaseLost,
}

async fn dispatch_one(
    engine: &Arc<Engine>,
    c: &Arc<LiveCampaign>,
    gate: &Gate,
    a: ClaimedAttempt,
) -> anyhow::Result<Dispatched> {
    let m = Metrics::global();
    let zone = c.zone_of(&a);
    if let Some(at) = c.closed_until(&zone, Utc::now()) {
        engine.store.attempts_release_many(&engine.node_id, &[a.attempt_id], &[at]).await?;
        m.deferrals.with_label_values(&[&c.label, "window"]).inc();
        return Ok(Dispatched::Deferred);
    }
    // The send time is booked before the commit: an attempt is committed `dialing` only shortly before
    // its slot and is sent at it, so reconciliation never finds a `dialing` attempt whose worker still
    // waits (with several campaigns on a small account CPS those waits used to exceed its grace). It is
    // booked far enough ahead for the commit to finish first, so the POST leaves on time.
    let booked = tokio::select! {
        booked = async {
            // Booked before the permit is taken: a permit held while waiting for one campaign's slot would
            // be missing for the other campaigns.
            let at = pacing::book(&[&c.pacer, &engine.account], Instant::now() + c.commit_lead()).await;
            (engine.rest.acquire().await, at)
        } => booked,
        _ = engine.shutdown.cancelled() => {
            release(engine, std::slice::from_ref(&a)).await;
            return Ok(Dispatched::Released);
        }
    };
    let (permit, at) = booked;
    // The call leaves at `at`: the window is checked for that instant, right before the commit that stamps
    // `requested_at`, so a call never starts after the window closed.
    let send_utc =
        Utc::now() + chrono::Duration::from_std(at.saturating_duration_since(Instant::now())).unwrap_or_default();
    if let Some(until) = c.closed_until(&zone, send_utc) {
        drop(permit);
        engine.store.attempts_release_many(&engine.node_id, &[a.attempt_id], &[until]).await?;
        m.deferrals.with_label_values(&[&c.label, "window"]).inc();
        return Ok(Dispatched::Deferred);
    }
    // Either error leaves the claim to its lease: whether the check committed is not known here.
    let started = Instant::now();
    let gate = gate.submit(a.clone()).await.context("pre-POST check")?;
    let committed = Instant::now();
    c.commit_took(committed - started);
    match gate {
        DialingGate::Go => {}
        DialingGate::Dnc | DialingGate::AlreadyNotified => {
            let why = if gate == DialingGate::Dnc { Block::Dnc } else { Block::AlreadyNotified };
            engine.store.attempts_block_many(&engine.node_id, &[a.attempt_id], &[why]).await?;
            let why = if gate == DialingGate::Dnc { "dnc" } else { "limit" };
            m.deferrals.with_label_values(&[c.label.as_str(), why]).inc();
            return Ok(Dispatched::Blocked);
        }
        DialingGate::ReferenceInFlight => {
            // Another contact's call about the same parcel is under way; if it reaches the callee this
            // one ends `already_notified` on its next try.
            let at = Utc::now() + REFERENCE_RETRY;
            engine.store.attempts_release_many(&engine.node_id, &[a.attempt_id], &[at]).await?;
            m.deferrals.with_label_values(&[&c.label, "limit"]).inc();
            return Ok(Dispatched::Deferred);
        }
        DialingGate::Limit { .. } => {
            let max = c.max_calls_24h(&zone).unwrap_or(i32::MAX);
            let at = engine
                .store
                .attempts_limit_clears_at(&a.phone, max)
                .await?
                .unwrap_or_else(|| Utc::now() + chrono::Duration::hours(1));
            engine.store.attempts_release_many(&engine.node_id, &[a.attempt_id], &[at]).await?;
            m.deferrals.with_label_values(&[&c.label, "limit"]).inc();
            return Ok(Dispatched::Deferred);
        }
        DialingGate::NotRunning => {
            release(engine, std::slice::from_ref(&a)).await;
            return Ok(Dispatched::Released);
        }
        DialingGate::LeaseLost => return Ok(Dispatched::LeaseLost),
    }
    m.calls_by_zone_source.with_label_values(&[c.label.as_str(), zone.source.as_str()]).inc();
    let engine = engine.clone();
    let c = c.clone();
    let span = tracing::Span::current();
    tokio::spawn(async move { post(&engine, &c, a, permit, at, committed).await }.instrument(span));
    Ok(Dispatched::Sent)
}

/// Sends the POST and records its fate. Never retried here: a not-created attempt goes back to pending
/// (a new attempt later), an unknown fate is parked for reconciliation.
async fn post(
    engine: &Engine,
    c: &LiveCampaign,
    a: ClaimedAttempt,
    _permit: RestPermit,
    at: Instant,
    committed: Instant,
) {
    let m = Metrics::global();
    let at = pacing::wait_for(&[&c.pacer, &engine.account], at).await;
    // The fence: a POST starting this long after its commit could still be in flight when reconciliation
    // treats the attempt as never created (2 × timeout + 2 s after the commit). It is not sent; the
    // attempt is closed as not created and the contact is due again at once. Not expected to happen.
    if committed.elapsed() > engine.twilio_timeout {
        warn!(attempt_id = a.attempt_id, waited = ?committed.elapsed(), "not sent: held too long after its commit");
        let r = engine
            .store
            .attempts_not_created(
                a.attempt_id,
                None,
                "not sent: held too long after the pre-POST commit",
                Some(Utc::now()),
                None,
            )
            .await;
        if let Err(e) = r {
            warn!(attempt_id = a.attempt_id, error = %e, "recording a call not sent failed");
            m.internal_error("dispatch");
        }
        m.deferrals.with_label_values(&[&c.label, "fence"]).inc();
        return;
    }
    m.scheduler_lag.observe((Utc::now() - a.next_attempt_at).num_milliseconds().max(0) as f64 / 1000.0);
    let to = a.phone.clone();
    let (twiml_url, status_url) = engine.callback_urls(a.attempt_id);
    let mut req = CreateCall::new(to, c.caller_id.clone(), twiml_url);
    req.method = Some(HttpMethod::Post);
    req.status_callback = Some(status_url);
    req.status_callback_method = Some(HttpMethod::Post);
    req.status_callback_events = engine.status_callback_events.clone();
    req.timeout = Some(c.ring_timeout_s);
    req.machine_detection = match c.amd {
        AmdMode::Off => None,
        AmdMode::Enable => Some(MachineDetection::Enable),
        AmdMode::DetectMessageEnd => Some(MachineDetection::DetectMessageEnd),
        AmdMode::Async => Some(MachineDetection::Enable),
    };
    if c.amd == AmdMode::Async {
        req.async_amd = Some(true);
        req.async_amd_status_callback = Some(engine.amd_url(a.attempt_id));
        req.async_amd_status_callback_method = Some(HttpMethod::Post);
    }
    let started = Instant::now();
    let result = engine.twilio.create_call(&req).await;
    let answered = Instant::now();
    pacing::arrived(&[&c.pacer, &engine.account], &engine.trips, at, answered);
    m.twilio_request_duration.with_label_values(&["create"]).observe((answered - started).as_secs_f64());
    match result {
        Ok(call) => {
            tracing::Span::current().record("call_sid", call.sid.as_str());
            if let Some(q) = call.queue_time() {
                m.queue_time.observe(q.as_secs_f64());
            }
            let created = Created {
                attempt_id: a.attempt_id,
                call_sid: call.sid.clone(),
                queue_time_ms: call.queue_time.map(|q| i32::try_from(q).unwrap_or(i32::MAX)),
            };
            // Awaited while the REST permit is held, so a draining shutdown also waits for this write.
            // The call exists either way; its callbacks carry the token, so it stays attributable.
            match engine.created.submit(created).await {
                Ok(()) => {}
                Err(e) => {
                    warn!(attempt_id = a.attempt_id, call_sid = %call.sid, error = %e, "recording the CallSid failed");
                    m.internal_error("dispatch");
                }
            }
            m.calls_created.with_label_values(&[&c.label, "created"]).inc();
        }
        Err(err) => {
            if err.is_throttled() {
                engine.rest.throttled();
            }
            let code = err.code().map(|c| c.to_string()).unwrap_or_else(|| "transport".into());
            m.twilio_api_errors.with_label_values(&[&code]).inc();
            let code_i = err.code().map(|c| c as i32);
            let msg = err.to_string();
            let store = &engine.store;
            let r = match err.class() {
                RetryClass::NotCreatedRetry => {
                    m.calls_created.with_label_values(&[&c.label, "not_created"]).inc();
                    let backoff = err.retry_after().unwrap_or(Duration::from_secs(1))
                        + Duration::from_millis(rand::thread_rng().gen_range(0..2000));
                    let at = Utc::now() + chrono::Duration::from_std(backoff).unwrap_or_default();
                    store.attempts_not_created(a.attempt_id, code_i, &msg, Some(at), None).await.map(|_| ())
                }
                RetryClass::FateUnknown => {
                    m.calls_created.with_label_values(&[&c.label, "fate_unknown"]).inc();
                    warn!(attempt_id = a.attempt_id, error = %msg, "fate unknown: parked for reconciliation");
                    store.attempts_park(a.attempt_id, &msg).await.map(|_| ())
                }
                RetryClass::FinalForContact => {
                    m.calls_created.with_label_values(&[&c.label, "rejected"]).inc();
                    store
                        .attempts_not_created(a.attempt_id, code_i, &msg, None, Some(FinalState::Invalid))
                        .await
                        .map(|_| ())
                }
                RetryClass::FinalForCountry => {
                    // Only this country: its waiting contacts end now, the rest of the campaign dials on.
                    m.calls_created.with_label_values(&[&c.label, "rejected"]).inc();
                    let country = a.phone.country_code();
                    m.geo_refusals.with_label_values(&[&c.label, &country.to_string()]).inc();
                    let reason = format!("Twilio refused calls to +{country} (geo permissions): {msg}");
                    warn!(campaign = c.id, country, %msg, "country refused; skipping its contacts");
                    match store.contacts_reject_country(c.id, country, &reason).await {
                        Ok(n) if n > 0 => {
                            info!(campaign = c.id, country, skipped = n, "contacts of a refused country ended")
                        }
                        Ok(_) => {}
                        Err(e) => {
                            warn!(campaign = c.id, error = %e, "ending a refused country's contacts failed");
                            m.internal_error("dispatch");
                        }
                    }
                    store
                        .attempts_not_created(a.attempt_id, code_i, &reason, None, Some(FinalState::Invalid))
                        .await
                        .map(|_| ())
                }
                RetryClass::FinalForCampaign => {
                    m.calls_created.with_label_values(&[&c.label, "rejected"]).inc();
                    let reason = format!("Twilio refused calls for this campaign: {msg}");
                    info!(campaign = c.id, %reason, "pausing campaign");
                    if let Err(e) = store.campaigns_set_status(c.id, CampaignStatus::Paused, Some(&reason)).await {
                        // The next POST gets the same refusal and tries again.
                        warn!(campaign = c.id, error = %e, "pausing the campaign failed");
                        m.internal_error("dispatch");
                    }
                    store.attempts_not_created(a.attempt_id, code_i, &msg, Some(Utc::now()), None).await.map(|_| ())
                }
            };
            if let Err(e) = r {
                warn!(attempt_id = a.attempt_id, error = %e, "recording a failed create failed");
                m.internal_error("dispatch");
            }
        }
    }
}
