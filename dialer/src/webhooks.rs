//! The webhook deliverer: claims due events from the outbox, POSTs them signed (Standard Webhooks) to each
//! campaign's endpoint, and acknowledges them in batches.
//!
//! At least once: an event is marked delivered only after its receiver answered 2xx, and one whose
//! deliverer dies mid-send is due again when its lease ends. It never slows dialing: it runs in its own
//! tasks, holds no transaction during a POST, and uses at most three pool connections at a time (one claim,
//! one acknowledgement batch, one gauge refresh); a slow receiver only fills its own `concurrency` slots.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dialer_core::config::Config;
use dialer_core::domain::webhook::{
    event_body, retry_delay, SigningKey, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use dialer_core::metrics::Metrics;
use dialer_core::store::{DueDelivery, FailedDelivery, Store};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

/// The deliverer's tuning, from [`Config`].
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// POSTs in flight; also the most events this process holds claimed.
    pub concurrency: usize,
    pub timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Failing events are given up (dead) this long after they were written (or replayed).
    pub max_age: Duration,
    pub lease: Duration,
    pub poll: Duration,
}

impl From<&Config> for WebhookConfig {
    fn from(c: &Config) -> Self {
        Self {
            concurrency: c.webhook_concurrency,
            timeout: c.webhook_timeout,
            backoff_base: c.webhook_backoff_base,
            backoff_max: c.webhook_backoff_max,
            max_age: c.webhook_max_age,
            lease: c.webhook_lease,
            poll: c.webhook_poll,
        }
    }
}

/// Most events claimed in one round trip.
const MAX_CLAIM: usize = 500;
/// How often the backlog and dead gauges are refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(2);
/// Bytes of a receiver's answer read (to reuse the connection) and kept in `last_error`.
const MAX_ANSWER_BYTES: usize = 16 * 1024;
const MAX_ERROR_CHARS: usize = 300;

/// What one POST came to.
#[derive(Debug)]
enum Ack {
    Delivered { id: i64, status: i32, created_at: chrono::DateTime<Utc> },
    Failed(FailedDelivery),
}

/// Runs until `shutdown`: then stops claiming, lets the POSTs in flight finish (each is bounded by the
/// timeout) and acknowledges them. Events it could not acknowledge are sent again after their lease.
pub async fn run(store: Store, config: WebhookConfig, shutdown: CancellationToken) {
    let client = match reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(config.concurrency)
        // A receiver's redirect is its failure to fix, not a target we follow.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("dialer-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "webhooks: cannot build the HTTP client; not delivering");
            Metrics::global().internal_error("webhooks");
            return;
        }
    };
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<Ack>();
    let acker = tokio::spawn(acknowledge(store.clone(), config.clone(), ack_rx));
    let gauges = tokio::spawn(refresh_gauges(store.clone(), shutdown.clone()));
    let slots = Arc::new(Semaphore::new(config.concurrency));

    while !shutdown.is_cancelled() {
        // Wait for a free slot, then take every free one: claim no more than can be sent now, so claimed
        // events never sit waiting behind a slow receiver's POSTs while their lease runs.
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let mut permits = vec![first];
        while permits.len() < MAX_CLAIM {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let wanted = permits.len();
        let claimed = match store.webhook_outbox_claim_due(wanted as i64, config.lease).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "webhooks: claim failed");
                Metrics::global().internal_error("webhooks");
                Vec::new()
            }
        };
        let got = claimed.len();
        for d in claimed {
            let permit = permits.pop().expect("claimed no more than the free slots");
            let (client, ack_tx) = (client.clone(), ack_tx.clone());
            let backoff = (config.backoff_base, config.backoff_max);
            let span = info_span!("webhook", id = d.id, msg_id = %d.msg_id, campaign_id = d.campaign_id);
            tokio::spawn(
                async move {
                    let ack = deliver(&client, d, backoff).await;
                    let _ = ack_tx.send(ack);
                    drop(permit);
                }
                .instrument(span),
            );
        }
        drop(permits);
        if got < wanted {
            // Nothing more is due now: look again after the poll interval.
            tokio::select! {
                _ = tokio::time::sleep(config.poll) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }

    // Drain: every slot back means every POST in flight has ended and queued its acknowledgement.
    let all = config.concurrency as u32;
    let _ = tokio::time::timeout(config.timeout + Duration::from_secs(1), slots.acquire_many(all)).await;
    drop(ack_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), acker).await;
    gauges.abort();
}

/// One POST. Never fails: what happened is the [`Ack`].
async fn deliver(client: &reqwest::Client, d: DueDelivery, (base, max): (Duration, Duration)) -> Ack {
    let m = Metrics::global();
    let failed = |status: Option<i32>, error: String, retry_after: Option<Duration>| {
        let delay = retry_delay(d.attempts, base, max, retry_after, &mut rand::thread_rng());
        Ack::Failed(FailedDelivery {
            id: d.id,
            attempts: d.attempts,
            status,
            error: error.chars().take(MAX_ERROR_CHARS).collect(),
            retry_at: Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
        })
    };
    let key = match SigningKey::parse(&d.secret) {
        Ok(k) => k,
        Err(e) => return failed(None, format!("endpoint secret: {e}"), None),
    };
    let body = event_body(d.event_type, d.created_at, &d.payload);
    // The timestamp of this attempt, so receivers can refuse replays of old requests.
    let ts = Utc::now().timestamp();
    let signature = key.sign(&d.msg_id, ts, &body);
    m.webhook_delivery_attempts.inc();
    let sent = client
        .post(&d.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(HEADER_ID, &d.msg_id)
        .header(HEADER_TIMESTAMP, ts.to_string())
        .header(HEADER_SIGNATURE, signature)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(mut r) => {
            let status = r.status();
            let retry_after = r
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // Read (a bounded part of) the answer so the connection can be reused.
            let mut answer = Vec::new();
            while answer.len() < MAX_ANSWER_BYTES {
                match r.chunk().await {
                    Ok(Some(chunk)) => answer.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            if status.is_success() {
                Ack::Delivered { id: d.id, status: status.as_u16() as i32, created_at: d.created_at }
            } else {
                debug!(%status, "webhook refused");
                let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
                failed(Some(status.as_u16() as i32), format!("HTTP {status}: {text}"), retry_after)
            }
        }
        Err(e) => {
            debug!(error = %e, "webhook not delivered");
            // The error's chain names the cause (connection refused, timeout) without the URL's query.
            let e = e.without_url();
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            failed(None, msg, None)
        }
    }
}

/// Writes acknowledgements in batches: whatever has arrived while the previous batch was written.
async fn acknowledge(store: Store, config: WebhookConfig, mut rx: mpsc::UnboundedReceiver<Ack>) {
    let m = Metrics::global();
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 2_000).await > 0 {
        let (mut ids, mut statuses, mut lags, mut failed) = (vec![], vec![], vec![], vec![]);
        for ack in batch.drain(..) {
            match ack {
                Ack::Delivered { id, status, created_at } => {
                    ids.push(id);
                    statuses.push(status);
                    lags.push((Utc::now() - created_at).to_std().unwrap_or_default().as_secs_f64());
                }
                Ack::Failed(f) => failed.push(f),
            }
        }
        if !ids.is_empty() {
            match with_retries(|| store.webhook_outbox_delivered_many(&ids, &statuses)).await {
                Ok(_) => {
                    m.webhook_deliveries.with_label_values(&["delivered"]).inc_by(ids.len() as u64);
                    lags.iter().for_each(|l| m.webhook_lag.observe(*l));
                }
                Err(e) => {
                    // They are sent again after their lease: at least once, never lost.
                    warn!(error = %e, n = ids.len(), "webhooks: could not record deliveries");
                    m.internal_error("webhooks");
                }
            }
        }
        if !failed.is_empty() {
            match with_retries(|| store.webhook_outbox_failed_many(&failed, config.max_age)).await {
                Ok(dead) => {
                    for id in &dead {
                        warn!(id, "webhook event given up after the maximum age (dead; replay to resend)");
                    }
                    m.webhook_deliveries.with_label_values(&["dead"]).inc_by(dead.len() as u64);
                    m.webhook_deliveries.with_label_values(&["failed"]).inc_by((failed.len() - dead.len()) as u64);
                }
                Err(e) => {
                    warn!(error = %e, n = failed.len(), "webhooks: could not record failures");
                    m.internal_error("webhooks");
                }
            }
        }
    }
}

/// A few tries over about a second, for a database that blinks.
async fn with_retries<T, F, Fut>(mut f: F) -> dialer_core::store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = dialer_core::store::Result<T>>,
{
    let mut wait = Duration::from_millis(100);
    for _ in 0..3 {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => debug!(error = %e, "webhooks: retrying a database write"),
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    f().await
}

async fn refresh_gauges(store: Store, shutdown: CancellationToken) {
    let m = Metrics::global();
    let mut tick = tokio::time::interval(GAUGE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        match store.webhook_outbox_counts().await {
            Ok(c) => {
                m.webhook_backlog.set(c.backlog);
                m.webhook_dead.set(c.dead);
            }
            Err(e) => debug!(error = %e, "webhooks: gauge refresh failed"),
        }
    }
}
