//! Housekeeping: lease rescue, reconciliation, completing finished campaigns, contact gauges (on
//! tokio-cron-scheduler), and opening recurring campaigns once per occurrence across replicas.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dialer_core::domain::{latest_occurrence, CampaignStatus, ContactState};
use dialer_core::metrics::Metrics;
use tokio_cron_scheduler::{Job, JobScheduler};
use tracing::{error, info, warn};

use super::{reconcile, Engine};

/// Rescue, reconcile and completion run this often (cron, with seconds).
const EVERY_SECOND: &str = "* * * * * *";
const EVERY_5_SECONDS: &str = "*/5 * * * * *";

pub async fn heartbeat(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(super::HEARTBEAT);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = engine.shutdown.cancelled() => return,
        }
        match engine.store.nodes_heartbeat(&engine.node_id, super::LIVE_AFTER.as_secs_f64()).await {
            Ok(live) => engine.set_share(live),
            Err(e) => {
                warn!(error = %e, "heartbeat failed");
                Metrics::global().internal_error("housekeeping");
            }
        }
    }
}

/// One pass of every maintenance step (also what the cron jobs call).
pub async fn maintain_once(engine: &Engine) -> anyhow::Result<()> {
    let rescued = engine.store.contacts_rescue_expired().await?;
    Metrics::global().claims_rescued.inc_by(rescued);
    if rescued > 0 {
        info!(rescued, "rescued expired claims");
    }
    reconcile::reconcile_once(engine).await?;
    let stragglers = engine.store.contacts_cancel_stragglers().await?;
    if stragglers > 0 {
        info!(stragglers, "contacts of canceled campaigns ended canceled");
    }
    for id in engine.store.campaigns_complete_finished().await? {
        info!(campaign = id, "campaign completed");
    }
    recur_once(engine, chrono::Utc::now()).await?;
    engine.store.idempotency_keys_purge(IDEMPOTENCY_KEY_TTL).await?;
    for table in engine.store.stats_refresh_grown().await? {
        info!(table, "analyzed a table that had grown (planner statistics)");
    }
    Ok(())
}

/// How long the management API remembers an `Idempotency-Key` (a client's retries come within minutes; a
/// day covers a retry queue drained the next morning).
pub const IDEMPOTENCY_KEY_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Sets the contact and in-flight gauges of every campaign that has contacts. The counts only list what is
/// there, so each state (and in-flight) the counts leave out is set to 0: a gauge left at its last value
/// would show a backlog, or calls in flight, long after the campaign finished.
async fn refresh_gauges(engine: &Engine) -> anyhow::Result<()> {
    let m = Metrics::global();
    let mut counts: HashMap<i64, HashMap<ContactState, i64>> = HashMap::new();
    for (campaign, state, n) in engine.store.contacts_count_by_state().await? {
        counts.entry(campaign).or_default().insert(state, n);
    }
    let in_flight: HashMap<i64, i64> = engine.store.attempts_in_flight_by_campaign().await?.into_iter().collect();
    for (campaign, by_state) in &counts {
        let label = campaign.to_string();
        for state in ContactState::ALL {
            m.contacts
                .with_label_values(&[label.as_str(), state.as_str()])
                .set(by_state.get(state).copied().unwrap_or(0));
        }
        m.calls_in_flight.with_label_values(&[&label]).set(in_flight.get(campaign).copied().unwrap_or(0));
    }
    Ok(())
}

pub async fn run(engine: Arc<Engine>) {
    let m = Metrics::global();
    let sched = match JobScheduler::new().await {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "housekeeping scheduler failed to start: no rescue, reconciliation or recurrences");
            m.internal_error("housekeeping");
            return;
        }
    };
    let e = engine.clone();
    let busy = Arc::new(tokio::sync::Mutex::new(()));
    let b = busy.clone();
    let job = Job::new_async(EVERY_SECOND, move |_, _| {
        let e = e.clone();
        let b = b.clone();
        Box::pin(async move {
            // Skip a tick rather than pile up passes when one is slow.
            let Ok(_guard) = b.try_lock() else { return };
            if let Err(err) = maintain_once(&e).await {
                warn!(error = %err, "housekeeping pass failed");
                Metrics::global().internal_error("housekeeping");
            }
        })
    });
    let e2 = engine.clone();
    let gauges = Job::new_async(EVERY_5_SECONDS, move |_, _| {
        let e = e2.clone();
        Box::pin(async move {
            if let Err(err) = refresh_gauges(&e).await {
                warn!(error = %err, "refreshing gauges failed");
                Metrics::global().internal_error("housekeeping");
            }
        })
    });
    for (what, j) in [("maintenance", job), ("gauges", gauges)] {
        let added = match j {
            Ok(j) => sched.add(j).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = added {
            error!(job = what, error = %e, "adding a housekeeping job failed");
            m.internal_error("housekeeping");
        }
    }
    if let Err(e) = sched.start().await {
        error!(error = %e, "housekeeping scheduler failed to start: no rescue, reconciliation or recurrences");
        m.internal_error("housekeeping");
        return;
    }
    engine.shutdown.cancelled().await;
    let mut sched = sched;
    match tokio::time::timeout(Duration::from_secs(5), sched.shutdown()).await {
        Ok(Ok(())) => {}
        // Shutting down anyway; the jobs stop with the process.
        Ok(Err(e)) => warn!(error = %e, "stopping the housekeeping scheduler failed"),
        Err(_) => warn!("the housekeeping scheduler did not stop within 5 s"),
    }
}

/// Recurring campaigns, one pass: each campaign's latest cron occurrence (in its recurrence zone) since
/// the last one recorded (or since it was created) is recorded once across replicas, opening a draft or
/// completed campaign; a paused one stays paused. Read from the database every pass, so a campaign
/// created, changed or removed on any replica is followed within a second. Returns the campaigns opened.
pub async fn recur_once(engine: &Engine, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Vec<i64>> {
    let mut opened = Vec::new();
    for row in engine.store.campaigns_recurring().await? {
        let (Some(cron), Some(tz)) = (row.recurrence_cron.as_deref(), row.recurrence_tz) else { continue };
        let schedule: cron::Schedule = match cron.parse() {
            Ok(s) => s,
            Err(e) => {
                // Validated at create; a hand-edited row is reported, not retried every second silently.
                error!(campaign = row.id, cron, error = %e, "recurrence cron unreadable: the campaign will not open");
                Metrics::global().internal_error("housekeeping");
                continue;
            }
        };
        let after = row.recurrence_last_at.unwrap_or(row.created_at);
        let Some(at) = latest_occurrence(&schedule, tz, after, now) else { continue };
        match engine.store.campaigns_open_occurrence(row.id, at).await? {
            Some(CampaignStatus::Running) if row.status != CampaignStatus::Running => {
                info!(campaign = row.id, occurrence = %at, "recurring campaign opened");
                opened.push(row.id);
            }
            Some(status) => info!(campaign = row.id, occurrence = %at, %status, "recurrence: campaign left as it is"),
            None => {} // another replica took this occurrence
        }
    }
    Ok(opened)
}
