//! The dialer engine: scheduler (claim) → per-campaign dispatcher (policy, pacing) → POST → attempt
//! recorded; reconciliation and housekeeping run beside it.

pub mod campaigns;
pub mod dispatch;
pub mod housekeeping;
pub mod operators;
pub mod pacing;
pub mod reconcile;
pub mod rest;
pub mod scheduler;
pub mod sms;

use std::sync::Arc;
use std::time::Duration;

use dialer_core::batch::{all_failed, Batcher};
use dialer_core::config::Config;
use dialer_core::domain::{CallSid, TokenKey};
use dialer_core::store::{Store, StoreError};
use dialer_core::twilio::{StatusCallbackEvent, TwilioClient};
use tokio_util::sync::CancellationToken;

use self::pacing::Pacer;
use self::rest::RestLimiter;

/// Everything the engine's tasks share.
pub struct Engine {
    pub store: Store,
    pub twilio: TwilioClient,
    pub node_id: String,
    pub token_key: TokenKey,
    pub public_base_url: String,
    pub account_cps: f64,
    pub claim_batch: i64,
    pub lease: Duration,
    pub twilio_timeout: Duration,
    pub stale_call: Duration,
    pub pacing_margin: Duration,
    /// The call events requested from Twilio (`TWILIO_STATUS_CALLBACK_EVENTS`).
    pub status_callback_events: Vec<StatusCallbackEvent>,
    /// Live replicas, as the heartbeat last counted them.
    live: std::sync::atomic::AtomicI64,
    /// The account pacer: this replica's share of the account CPS.
    pub account: Pacer,
    /// POST round trips, for where each call's arrival is counted ([`pacing::arrived`]).
    pub trips: pacing::Trips,
    /// The same for operator legs (another endpoint, its own fastest trip).
    pub ring_trips: pacing::Trips,
    /// Concurrent REST requests (Little's law, up to `TWILIO_MAX_CONCURRENT_REQUESTS`).
    pub rest: Arc<RestLimiter>,
    /// How often the operator loop runs.
    pub operator_poll: Duration,
    /// Records CallSids from POST responses, many per statement.
    pub created: Batcher<Created, (), StoreError>,
    pub shutdown: CancellationToken,
}

/// A POST's answer to record: the attempt, its CallSid and Twilio's queue time.
pub struct Created {
    pub attempt_id: i64,
    pub call_sid: CallSid,
    pub queue_time_ms: Option<i32>,
}

/// Most rows in one batched write of the engine (created calls, pre-POST checks).
pub const WRITE_BATCH: usize = 256;
/// Batched writes of one kind in flight at once: one batch fills while another commits.
pub const WRITERS: usize = 2;

/// How often replicas heartbeat; a replica silent for `LIVE_AFTER` no longer counts.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
pub const LIVE_AFTER: Duration = Duration::from_secs(3);

impl Engine {
    pub fn new(config: &Config, store: Store, shutdown: CancellationToken) -> anyhow::Result<Arc<Self>> {
        let twilio = TwilioClient::new(
            &config.twilio_api_base_url,
            config.account_sid()?,
            config.auth_token()?,
            config.twilio_timeout,
        )?;
        let node_id = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "dialer".into()),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let created = {
            let store = store.clone();
            Batcher::spawn_lingering(
                WRITE_BATCH,
                config.max_concurrent_requests.max(WRITE_BATCH),
                WRITERS,
                // Paced calls answer one by one; nothing waits on this write but the REST permit's release.
                dialer_core::batch::LINGER,
                move |rows: Vec<Created>| {
                    let store = store.clone();
                    async move {
                        let ids: Vec<i64> = rows.iter().map(|r| r.attempt_id).collect();
                        let sids: Vec<&CallSid> = rows.iter().map(|r| &r.call_sid).collect();
                        let qts: Vec<Option<i32>> = rows.iter().map(|r| r.queue_time_ms).collect();
                        match store.attempts_set_created_many(&ids, &sids, &qts).await {
                            Ok(_) => vec![Ok(()); rows.len()],
                            Err(e) => all_failed(e, rows.len()),
                        }
                    }
                },
            )
        };
        Ok(Arc::new(Self {
            store,
            twilio,
            node_id,
            token_key: config.token_key()?,
            public_base_url: config.public_base_url()?.to_string(),
            account_cps: config.account_cps,
            claim_batch: config.claim_batch,
            lease: config.lease,
            twilio_timeout: config.twilio_timeout,
            stale_call: config.stale_call,
            pacing_margin: config.pacing_margin,
            status_callback_events: config.status_callback_events.clone(),
            live: std::sync::atomic::AtomicI64::new(1),
            // Until the first heartbeat says otherwise, assume we are alone.
            account: Pacer::new(config.account_cps, config.pacing_margin),
            trips: pacing::Trips::new(),
            ring_trips: pacing::Trips::new(),
            rest: RestLimiter::new(config.max_concurrent_requests, config.account_cps),
            operator_poll: config.operators.poll,
            created,
            shutdown,
        }))
    }

    /// Runs until shutdown: heartbeat, scheduler, dispatchers, housekeeping.
    pub async fn run(self: Arc<Self>) -> anyhow::Result<()> {
        // Join the replica set and wait until the others have seen us (they re-read it every HEARTBEAT),
        // so the account CPS is never over-subscribed while shares change.
        let live = self.store.nodes_heartbeat(&self.node_id, LIVE_AFTER.as_secs_f64()).await?;
        self.set_share(live);
        dialer_core::metrics::Metrics::global().account_cps_limit.set(self.account_cps);
        if live > 1 {
            tokio::time::sleep(HEARTBEAT * 3).await;
        }
        let hb = tokio::spawn(housekeeping::heartbeat(self.clone()));
        let hk = tokio::spawn(housekeeping::run(self.clone()));
        let texts = tokio::spawn(sms::run(self.clone()));
        let operators = tokio::spawn(operators::run(self.clone(), self.operator_poll));
        let result = scheduler::run(self.clone()).await;
        self.shutdown.cancel();
        // Drain: POSTs already sent finish (bounded by the Twilio timeout), so their CallSids are recorded
        // rather than left for reconciliation.
        let drained = tokio::time::timeout(self.twilio_timeout + Duration::from_secs(1), self.rest.idle()).await;
        if drained.is_err() {
            tracing::warn!("shutdown: some POSTs still in flight; reconciliation will resolve them");
        }
        // Joins at shutdown: a task that panicked has already reported it.
        let _ = hb.await;
        let _ = hk.await;
        let _ = texts.await;
        let _ = operators.await;
        if let Err(e) = self.store.nodes_leave(&self.node_id).await {
            // The others stop counting this replica after LIVE_AFTER anyway.
            tracing::warn!(error = %e, "leaving the replica set failed");
            dialer_core::metrics::Metrics::global().internal_error("housekeeping");
        }
        result
    }

    /// Records how many replicas are live (from a heartbeat) and takes this one's share of the account CPS.
    /// Live replicas as of the last heartbeat.
    pub fn live(&self) -> i64 {
        self.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_share(&self, live: i64) {
        self.live.store(live.max(1), std::sync::atomic::Ordering::Relaxed);
        self.account.set_rate(self.account_cps / live.max(1) as f64);
        self.rest.set_rate(self.account_cps / live.max(1) as f64);
    }

    /// The attempt's `AsyncAmdStatusCallback` URL.
    pub fn amd_url(&self, attempt_id: i64) -> String {
        let token = dialer_core::domain::AttemptToken::new(attempt_id).encode(&self.token_key);
        format!("{}/amd/{token}", self.public_base_url)
    }

    /// The attempt's TwiML and StatusCallback URLs; its token is signed once for both.
    pub fn callback_urls(&self, attempt_id: i64) -> (String, String) {
        let token = dialer_core::domain::AttemptToken::new(attempt_id).encode(&self.token_key);
        (format!("{}/twiml/{token}", self.public_base_url), format!("{}/status/{token}", self.public_base_url))
    }
}
