//! The scheduler: for each running campaign, claim due contacts in batches (one round trip each), check
//! the calling window and DNC, and hand the rest to that campaign's dispatcher over a bounded channel.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use dialer_core::metrics::Metrics;
use dialer_core::store::ClaimedAttempt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::campaigns::LiveCampaign;
use super::{dispatch, Engine};

/// How long the scheduler sleeps when there is nothing due.
const IDLE_TICK: Duration = Duration::from_millis(100);
/// How often the list of running campaigns is re-read.
const CAMPAIGN_REFRESH: Duration = Duration::from_secs(1);

struct Running {
    campaign: Arc<LiveCampaign>,
    tx: mpsc::Sender<ClaimedAttempt>,
    task: JoinHandle<()>,
}

/// What one pass over a campaign did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClaimOutcome {
    pub claimed: usize,
    pub deferred: usize,
    pub blocked: usize,
    pub queued: usize,
}

pub async fn run(engine: Arc<Engine>) -> anyhow::Result<()> {
    let mut running: HashMap<i64, Running> = HashMap::new();
    let mut refreshed = Instant::now() - CAMPAIGN_REFRESH;
    loop {
        if engine.shutdown.is_cancelled() {
            break;
        }
        if refreshed.elapsed() >= CAMPAIGN_REFRESH {
            refreshed = Instant::now();
            // The heartbeat task keeps the live count; no second heartbeat here.
            let live = engine.live();
            match engine.store.campaigns_running().await {
                Ok(rows) => {
                    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                    running.retain(|id, r| {
                        let keep = ids.contains(id) && !r.task.is_finished();
                        if !keep {
                            info!(campaign = id, "campaign no longer running here");
                        }
                        keep
                    });
                    for row in &rows {
                        if let Some(r) = running.get(&row.id) {
                            r.campaign.pacer.set_rate(r.campaign.cps / live as f64);
                            continue;
                        }
                        match LiveCampaign::from_row(row, engine.account_cps, live, engine.pacing_margin) {
                            Ok(c) => {
                                Metrics::global().campaign_cps_limit.with_label_values(&[&c.label]).set(c.cps);
                                let cap = (engine.claim_batch as usize * 2).max(16);
                                let (tx, rx) = mpsc::channel(cap);
                                let task = tokio::spawn(dispatch::run(engine.clone(), c.clone(), rx));
                                running.insert(row.id, Running { campaign: c, tx, task });
                            }
                            Err(e) => {
                                warn!(campaign = row.id, error = %e, "cannot run campaign");
                                Metrics::global().internal_error("scheduler");
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "reading running campaigns");
                    Metrics::global().internal_error("scheduler");
                }
            }
        }
        let mut busy = false;
        for r in running.values() {
            match claim_once(&engine, r).await {
                Ok(o) => busy |= o.claimed > 0 && o.claimed as i64 >= engine.claim_batch / 2,
                Err(e) => {
                    warn!(campaign = r.campaign.id, error = %e, "claim failed");
                    Metrics::global().internal_error("scheduler");
                }
            }
        }
        if !busy {
            tokio::select! {
                _ = tokio::time::sleep(IDLE_TICK) => {}
                _ = engine.shutdown.cancelled() => break,
            }
        } else {
            tokio::task::yield_now().await;
        }
    }
    // Stop claiming; dropping the senders lets each dispatcher drain and release what it holds.
    let tasks: Vec<JoinHandle<()>> = running.into_values().map(|r| r.task).collect();
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Claims one batch for a campaign if its dispatcher has room, applies claim-time policy, queues the rest.
async fn claim_once(engine: &Engine, r: &Running) -> anyhow::Result<ClaimOutcome> {
    // Never hold more claims than this campaign can dial within a third of the lease, or they would
    // expire in the queue and be rescued while still queued here.
    let queued = r.campaign.held.load(Ordering::Relaxed) as i64;
    let horizon = ((r.campaign.pacer.rate() * engine.lease.as_secs_f64() / 3.0).floor() as i64).max(1);
    let want = (r.tx.capacity() as i64).min(engine.claim_batch).min(horizon - queued);
    if want < (engine.claim_batch / 4).min(horizon / 2).max(1) {
        return Ok(ClaimOutcome::default());
    }
    let m = Metrics::global();
    let started = Instant::now();
    let claimed =
        engine.store.attempts_claim_due(r.campaign.id, want, &engine.node_id, engine.lease.as_secs_f64()).await?;
    m.claim_duration.observe(started.elapsed().as_secs_f64());
    if claimed.is_empty() {
        return Ok(ClaimOutcome::default());
    }
    m.claim_batch_size.observe(claimed.len() as f64);
    let mut out = ClaimOutcome { claimed: claimed.len(), ..Default::default() };
    let now = Utc::now();

    // Calling window, in each contact's own zone: outside it, back to pending at the next opening.
    let mut defer_ids = Vec::new();
    let mut defer_at = Vec::new();
    let mut ready = Vec::with_capacity(claimed.len());
    for a in claimed {
        let tz = r.campaign.zone_of(a.timezone.as_deref());
        match r.campaign.window.next_opening(tz, now) {
            Some(t) if t <= now => ready.push(a),
            other => {
                defer_ids.push(a.attempt_id);
                defer_at.push(other.unwrap_or(now + chrono::Duration::days(1)));
            }
        }
    }
    // DNC (global or this campaign's), one query for the batch.
    let phones: Vec<String> = ready.iter().map(|a| a.phone.clone()).collect();
    let blocked: std::collections::HashSet<String> =
        engine.store.dnc_blocked_among(r.campaign.id, &phones).await?.into_iter().collect();
    let mut block_ids = Vec::new();
    let mut block_reasons = Vec::new();
    ready.retain(|a| {
        if blocked.contains(&a.phone) {
            block_ids.push(a.attempt_id);
            block_reasons.push("number is on the do-not-call list".to_string());
            false
        } else {
            true
        }
    });
    if !defer_ids.is_empty() {
        engine.store.attempts_release_many(&engine.node_id, &defer_ids, &defer_at).await?;
        m.deferrals.with_label_values(&[&r.campaign.label, "window"]).inc_by(defer_ids.len() as u64);
        out.deferred = defer_ids.len();
    }
    if !block_ids.is_empty() {
        engine.store.attempts_block_many(&engine.node_id, &block_ids, &block_reasons).await?;
        m.deferrals.with_label_values(&[&r.campaign.label, "dnc"]).inc_by(block_ids.len() as u64);
        out.blocked = block_ids.len();
    }
    for a in ready {
        // Capacity was checked above and only this task sends, so this never waits long.
        r.campaign.held.fetch_add(1, Ordering::Relaxed);
        if r.tx.send(a).await.is_err() {
            r.campaign.held.fetch_sub(1, Ordering::Relaxed);
            break;
        }
        out.queued += 1;
    }
    Ok(out)
}
