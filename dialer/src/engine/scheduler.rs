//! The scheduler: for each running campaign, claim due contacts in batches (one round trip each), check
//! the calling window and DNC, and hand the rest to that campaign's dispatcher over a bounded channel.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dialer_core::domain::E164;
use dialer_core::metrics::Metrics;
use dialer_core::store::{Block, ClaimedAttempt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::campaigns::LiveCampaign;
use super::{dispatch, operators, pacing, Engine};

/// The longest the scheduler sleeps when nothing is due (contacts added or made due by others are seen
/// within it); when a contact falls due sooner, it sleeps until then, but at least `MIN_TICK`, so a
/// trickle of due contacts is claimed a few at a time rather than one per round trip.
const IDLE_TICK: Duration = Duration::from_millis(100);
const MIN_TICK: Duration = Duration::from_millis(10);
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
                    // The account CPS split among the running campaigns by weight, each within its own cap.
                    let demands: Vec<(f64, f64)> = rows
                        .iter()
                        .map(|r| (r.cps.min(engine.account_cps * r.account_cps_share), r.account_cps_share))
                        .collect();
                    let shares = pacing::fair_shares(engine.account_cps, &demands);
                    let saturation = operators::saturation(&engine).await;
                    for (row, &share) in rows.iter().zip(&shares) {
                        // Callers waiting for operators who are all taken: slow down (`[operators]`).
                        let share = match saturation.as_ref().and_then(|(waiting, free)| {
                            waiting.get(&row.id).map(|w| row.operator_settings().pace_factor(*w, *free))
                        }) {
                            Some(factor) => share * factor,
                            None => share,
                        };
                        Metrics::global().campaign_cps_limit.with_label_values(&[&row.id.to_string()]).set(share);
                        if let Some(r) = running.get(&row.id) {
                            // Changes made while it runs (API `PATCH`): CPS through the pacer, the window here;
                            // the in-flight cap, retry policy and script are read where they are used.
                            r.campaign.pacer.set_rate(share / live as f64);
                            r.campaign.set_window(&row.calling_window.0);
                            continue;
                        }
                        match LiveCampaign::from_row(row, share, live, engine.pacing_margin) {
                            Ok(c) => {
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
            match claim_once(&engine, &r.campaign, &r.tx, Utc::now()).await {
                Ok(o) => busy |= o.claimed > 0 && o.claimed as i64 >= engine.claim_batch / 2,
                Err(e) => {
                    warn!(campaign = r.campaign.id, error = %e, "claim failed");
                    Metrics::global().internal_error("scheduler");
                }
            }
        }
        if !busy {
            let tick = next_tick(&engine, &running).await;
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
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

/// How long to sleep when no campaign had a full batch: until the next contact falls due, within
/// [`MIN_TICK`, `IDLE_TICK`]. A contact already due but not claimed (no room in flight, the dispatcher
/// full) waits the whole tick: claiming again sooner would find the same.
async fn next_tick(engine: &Engine, running: &HashMap<i64, Running>) -> Duration {
    if running.is_empty() {
        return IDLE_TICK;
    }
    let ids: Vec<i64> = running.keys().copied().collect();
    match engine.store.contacts_next_due(&ids).await {
        Ok(Some(at)) => {
            let now = Utc::now();
            if at <= now {
                IDLE_TICK
            } else {
                (at - now).to_std().unwrap_or(IDLE_TICK).clamp(MIN_TICK, IDLE_TICK)
            }
        }
        Ok(None) => IDLE_TICK,
        Err(e) => {
            warn!(error = %e, "reading the next due time");
            Metrics::global().internal_error("scheduler");
            IDLE_TICK
        }
    }
}

/// One scheduler step for one campaign: claims a batch if its dispatcher has room, applies claim-time
/// policy as of `now` (the calling window in each contact's own zone, then DNC), and queues the rest on
/// `tx`. The loop passes the wall clock; a test passes any instant.
pub async fn claim_once(
    engine: &Engine,
    campaign: &LiveCampaign,
    tx: &mpsc::Sender<ClaimedAttempt>,
    now: DateTime<Utc>,
) -> anyhow::Result<ClaimOutcome> {
    // Never hold more claims than this campaign can dial within a third of the lease, or they would
    // expire in the queue and be rescued while still queued here.
    let queued = campaign.held.load(Ordering::Relaxed) as i64;
    let horizon = ((campaign.pacer.rate() * engine.lease.as_secs_f64() / 3.0).floor() as i64).max(1);
    let want = (tx.capacity() as i64).min(engine.claim_batch).min(horizon - queued);
    if want < (engine.claim_batch / 4).min(horizon / 2).max(1) {
        return Ok(ClaimOutcome::default());
    }
    let m = Metrics::global();
    let started = Instant::now();
    let claimed =
        engine.store.attempts_claim_due(campaign.id, want, &engine.node_id, engine.lease.as_secs_f64()).await?;
    m.claim_duration.observe(started.elapsed().as_secs_f64());
    if claimed.is_empty() {
        return Ok(ClaimOutcome::default());
    }
    m.claim_batch_size.observe(claimed.len() as f64);
    let mut out = ClaimOutcome { claimed: claimed.len(), ..Default::default() };

    // Calling window, in each contact's own zone: outside it, back to pending at the next opening.
    let mut defer_ids = Vec::new();
    let mut defer_at = Vec::new();
    let mut ready = Vec::with_capacity(claimed.len());
    for a in claimed {
        match campaign.next_opening(&campaign.zone_of(&a), now) {
            Some(t) if t <= now => ready.push(a),
            other => {
                defer_ids.push(a.attempt_id);
                defer_at.push(other.unwrap_or(now + chrono::Duration::days(1)));
            }
        }
    }
    // DNC (global or this campaign's), one query for the batch.
    let phones: Vec<E164> = ready.iter().map(|a| a.phone.clone()).collect();
    let blocked: std::collections::HashSet<E164> =
        engine.store.dnc_blocked_among(campaign.id, &phones).await?.into_iter().collect();
    let mut block_ids = Vec::new();
    let mut block_reasons = Vec::new();
    ready.retain(|a| {
        if blocked.contains(&a.phone) {
            block_ids.push(a.attempt_id);
            block_reasons.push(Block::Dnc);
            false
        } else {
            true
        }
    });
    if !defer_ids.is_empty() {
        engine.store.attempts_release_many(&engine.node_id, &defer_ids, &defer_at).await?;
        m.deferrals.with_label_values(&[&campaign.label, "window"]).inc_by(defer_ids.len() as u64);
        out.deferred = defer_ids.len();
    }
    if !block_ids.is_empty() {
        engine.store.attempts_block_many(&engine.node_id, &block_ids, &block_reasons).await?;
        m.deferrals.with_label_values(&[&campaign.label, "dnc"]).inc_by(block_ids.len() as u64);
        out.blocked = block_ids.len();
    }
    for a in ready {
        // Capacity was checked above and only this task sends, so this never waits long.
        campaign.held.fetch_add(1, Ordering::Relaxed);
        if tx.send(a).await.is_err() {
            campaign.held.fetch_sub(1, Ordering::Relaxed);
            break;
        }
        out.queued += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! The claim-time calling window at fixed instants (an injected clock), so every branch — open, closed
    //! before the opening, closed after the close, summer and winter offsets — is checked whatever the
    //! time of day the tests run. `dialer/tests/engine/policy.rs` proves the same end to end, at the
    //! real time of day.

    use std::time::Duration;

    use chrono::TimeZone;
    use dialer_core::config::Config;
    use dialer_core::domain::{CampaignSpec, CampaignStatus, ContactState, Tz, E164};
    use dialer_core::store::{NewContact, Store};
    use tokio_util::sync::CancellationToken;

    use super::*;

    const CAMPAIGN: &str = r#"
name = "window at fixed instants"
caller_id = "+14155550199"
timezone = "UTC"
cps = 10
max_in_flight = 100
max_attempts = 2
[window]
start = "09:00"
end = "20:00"
[retry]
busy = { delay_s = 60, max = 1 }
[script]
language = "en-US"
[script.menus.main]
say = "Press 1 to confirm."
[script.menus.main.options]
"1" = { result = "confirmed" }
"#;

    fn config() -> Config {
        Config {
            database_url: None,
            twilio_account_sid: Some("AC11111111111111111111111111111111".into()),
            twilio_auth_token: Some("scheduler-test-token".into()),
            // Never called: this test stops before the POST.
            twilio_api_base_url: "http://127.0.0.1:9".into(),
            public_base_url: Some("http://127.0.0.1:9".into()),
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            attempt_token_secret: None,
            account_cps: 10.0,
            max_concurrent_requests: 8,
            claim_batch: 200,
            lease: Duration::from_secs(120),
            twilio_timeout: Duration::from_secs(15),
            stale_call: Duration::from_secs(900),
            pacing_margin: Duration::from_millis(20),
            status_callback_events: dialer_core::config::DEFAULT_STATUS_CALLBACK_EVENTS.to_vec(),
            webhook_max_age: Duration::from_secs(24 * 3600),
            webhook_concurrency: dialer_core::config::DEFAULT_WEBHOOK_CONCURRENCY,
            webhook_timeout: dialer_core::config::DEFAULT_WEBHOOK_TIMEOUT,
            webhook_backoff_base: dialer_core::config::DEFAULT_WEBHOOK_BACKOFF_BASE,
            webhook_backoff_max: dialer_core::config::DEFAULT_WEBHOOK_BACKOFF_MAX,
            webhook_lease: dialer_core::config::DEFAULT_WEBHOOK_LEASE,
            inbound: Default::default(),
            operators: Default::default(),
            webhook_poll: dialer_core::config::DEFAULT_WEBHOOK_POLL,
            api_listen_addr: "127.0.0.1:0".parse().unwrap(),
            api_rate_limit: dialer_core::config::DEFAULT_API_RATE_LIMIT,
            api_rate_burst: dialer_core::config::DEFAULT_API_RATE_BURST,
            migrate_on_start: true,
            shutdown_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(10),
        }
    }

    fn contact(phone: &str, zone: &str) -> NewContact {
        NewContact {
            phone: E164::parse(phone, None).unwrap(),
            zone: dialer_core::domain::compliance::ContactZone::given(Tz::parse(zone).unwrap()),
            external_id: None,
            attributes: Default::default(),
        }
    }

    async fn pending_at(store: &Store, phone: &str) -> (ContactState, DateTime<Utc>) {
        sqlx::query_as("SELECT state, next_attempt_at FROM contacts WHERE phone = $1")
            .bind(phone)
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn claims_outside_a_contacts_local_window_wait_for_its_next_opening_and_dnc_numbers_are_blocked() {
        let store = testkit::fresh_store().await;
        let id = store.campaigns_insert(&CampaignSpec::parse(CAMPAIGN, "window.toml").unwrap()).await.unwrap();
        let (tokyo, tokyo_dnc, new_york, london) = ("+818011110001", "+818011110002", "+12125550001", "+442071230001");
        let all = [
            contact(tokyo, "Asia/Tokyo"),
            contact(tokyo_dnc, "Asia/Tokyo"),
            contact(new_york, "America/New_York"),
            contact(london, "Europe/London"),
        ];
        store.contacts_insert_many(id, &all, |_| {}).await.unwrap();
        store.dnc_add_many(&[all[1].phone.clone()], None, "test", "test").await.unwrap();
        store.campaigns_set_status(id, CampaignStatus::Running, None).await.unwrap();
        let engine = Engine::new(&config(), store.clone(), CancellationToken::new()).unwrap();
        let row = store.campaigns_running().await.unwrap().into_iter().find(|r| r.id == id).unwrap();
        let campaign = LiveCampaign::from_row(&row, engine.account_cps, 1, engine.pacing_margin).unwrap();
        let (tx, mut rx) = mpsc::channel(256);

        // 2025-07-01 02:00 UTC: Tokyo 11:00 JST (open), New York 22:00 EDT on June 30 (closed for the day),
        // London 03:00 BST (not open yet). Every contact was due (next_attempt_at = insert time).
        let summer = Utc.with_ymd_and_hms(2025, 7, 1, 2, 0, 0).unwrap();
        let out = claim_once(&engine, &campaign, &tx, summer).await.unwrap();
        assert_eq!(out, ClaimOutcome { claimed: 4, deferred: 2, blocked: 1, queued: 1 });
        assert_eq!(rx.try_recv().unwrap().phone.as_str(), tokyo);
        assert!(rx.try_recv().is_err(), "only the open zone's contact is queued");
        let blocked: (ContactState,) = sqlx::query_as("SELECT state FROM contacts WHERE phone = $1")
            .bind(tokyo_dnc)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(blocked.0, ContactState::Blocked);
        // Deferred to the next 09:00 in their own zones, summer time: 09:00 EDT = 13:00 UTC, 09:00 BST =
        // 08:00 UTC, both on July 1.
        assert_eq!(
            pending_at(&store, new_york).await,
            (ContactState::Pending, Utc.with_ymd_and_hms(2025, 7, 1, 13, 0, 0).unwrap())
        );
        assert_eq!(
            pending_at(&store, london).await,
            (ContactState::Pending, Utc.with_ymd_and_hms(2025, 7, 1, 8, 0, 0).unwrap())
        );

        // Those openings are long past by the database's clock, so both are due again. 2025-01-15 13:30 UTC:
        // London 13:30 GMT (open), New York 08:30 EST (not open yet: 09:00 EST is 14:00 UTC in winter).
        let winter = Utc.with_ymd_and_hms(2025, 1, 15, 13, 30, 0).unwrap();
        let out = claim_once(&engine, &campaign, &tx, winter).await.unwrap();
        assert_eq!(out, ClaimOutcome { claimed: 2, deferred: 1, blocked: 0, queued: 1 });
        assert_eq!(rx.try_recv().unwrap().phone.as_str(), london);
        assert_eq!(
            pending_at(&store, new_york).await,
            (ContactState::Pending, Utc.with_ymd_and_hms(2025, 1, 15, 14, 0, 0).unwrap())
        );
    }
}
