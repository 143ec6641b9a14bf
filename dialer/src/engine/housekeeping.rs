//! Housekeeping on tokio-cron-scheduler: lease rescue, reconciliation, completing finished campaigns,
//! contact gauges, and opening recurring campaigns at their cron time in their own time zone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dialer_core::domain::{CampaignStatus, ContactState};
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
    if rescued > 0 {
        info!(rescued, "rescued expired claims");
    }
    reconcile::reconcile_once(engine).await?;
    for id in engine.store.campaigns_complete_finished().await? {
        info!(campaign = id, "campaign completed");
    }
    Ok(())
}

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
    add_recurring(&engine, &sched).await;
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

/// Recurring campaigns: at each cron time (in the campaign's recurrence zone) the campaign is set running.
/// The schedule of each contact stays in `next_attempt_at`.
async fn add_recurring(engine: &Arc<Engine>, sched: &JobScheduler) {
    let m = Metrics::global();
    let rows = match engine.store.campaigns_recurring().await {
        Ok(rows) => rows,
        Err(e) => {
            error!(error = %e, "reading recurring campaigns failed: none will open on its own until a restart");
            m.internal_error("housekeeping");
            return;
        }
    };
    for row in rows {
        let (Some(cron), Some(tz)) = (row.recurrence_cron.clone(), row.recurrence_tz) else { continue };
        let tz = tz.get();
        let e = engine.clone();
        let id = row.id;
        let job = Job::new_async_tz(cron.as_str(), tz, move |_, _| {
            let e = e.clone();
            Box::pin(async move {
                match e.store.campaigns_set_status(id, CampaignStatus::Running, Some("opened by its recurrence")).await
                {
                    Ok(_) => info!(campaign = id, "recurring campaign opened"),
                    Err(err) => {
                        warn!(campaign = id, error = %err, "opening recurring campaign failed");
                        Metrics::global().internal_error("housekeeping");
                    }
                }
            })
        });
        let added = match job {
            Ok(j) => sched.add(j).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = added {
            error!(campaign = id, cron = %cron, error = %e, "registering the recurrence failed: the campaign will not open");
            m.internal_error("housekeeping");
        }
    }
}
