//! Result webhooks end to end (DESIGN.md guarantee 7): real `dialer serve --role all` processes place a
//! campaign's calls against the simulator, and a real receiver on 127.0.0.1 gets every event at least once,
//! signed (checked with the Standard Webhooks reference library), in order per contact — through a receiver
//! outage, a run of 500s, and a `kill -9` of the deliverer mid-delivery.

mod flow;
#[allow(dead_code)]
#[path = "../engine/helpers.rs"]
mod helpers;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use helpers::*;

/// How the receiver answers.
const OK: u8 = 0;
const FAIL_500: u8 = 1;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Receipt {
    msg_id: String,
    event_type: String,
    contact_id: i64,
    verified: bool,
    answered: u16,
}

struct Receiver {
    mode: AtomicU8,
    /// Requests being held (slow mode) right now.
    holding: AtomicUsize,
    hold: Mutex<Duration>,
    secret: String,
    log: Mutex<Vec<Receipt>>,
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let wh = standardwebhooks::Webhook::new(&r.secret).expect("the endpoint's secret");
    let verified = wh.verify(&body, &headers).is_ok();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let msg_id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let mut receipt = Receipt {
        msg_id,
        event_type: json["type"].as_str().unwrap_or_default().to_string(),
        contact_id: json["data"]["contact_id"].as_i64().unwrap_or(-1),
        verified,
        answered: 0,
    };
    let hold = *r.hold.lock().unwrap();
    if !hold.is_zero() {
        r.holding.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(hold).await;
        r.holding.fetch_sub(1, Ordering::SeqCst);
    }
    let status =
        if r.mode.load(Ordering::SeqCst) == OK { StatusCode::NO_CONTENT } else { StatusCode::INTERNAL_SERVER_ERROR };
    receipt.answered = status.as_u16();
    r.log.lock().unwrap().push(receipt);
    status
}

fn receiver(secret: String, mode: u8) -> Arc<Receiver> {
    Arc::new(Receiver {
        mode: AtomicU8::new(mode),
        holding: AtomicUsize::new(0),
        hold: Mutex::new(Duration::ZERO),
        secret,
        log: Mutex::new(Vec::new()),
    })
}

async fn listen(r: Arc<Receiver>, listener: tokio::net::TcpListener) {
    let app = Router::new().route("/hook", post(hook)).with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

/// Short retries so a test ends in seconds; the lease outlives the POST timeout.
const FAST_RETRIES: &[(&str, &str)] = &[
    ("WEBHOOK_BACKOFF_BASE_MS", "100"),
    ("WEBHOOK_BACKOFF_MAX_SECONDS", "1"),
    ("WEBHOOK_TIMEOUT_SECONDS", "3"),
    ("WEBHOOK_LEASE_SECONDS", "4"),
    ("WEBHOOK_POLL_MS", "100"),
];

/// (id, msg_id, contact, type, delivered, dead) of every outbox row.
async fn outbox(env: &Env) -> Vec<(i64, String, i64, String, bool, bool)> {
    sqlx::query_as(
        "SELECT id, msg_id, contact_id, event_type, delivered_at IS NOT NULL, dead_at IS NOT NULL
         FROM webhook_outbox ORDER BY id",
    )
    .fetch_all(env.store.pool())
    .await
    .unwrap()
}

async fn scalar(env: &Env, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(env.store.pool()).await.unwrap()
}

/// Polls `cond` (a hang guard, not a timing assertion).
pub(crate) async fn wait_for<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < limit, "still waiting after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Everything the receiver must have seen once the outbox is drained: each event received, the last
/// receipt 2xx, every signature valid, and every receipt of an event after its contact's earlier events had
/// been received (order per contact); one `contact.finished` per contact, after its results.
async fn assert_all_delivered_in_order(env: &Env, campaign: i64, log: &[Receipt]) {
    let rows = outbox(env).await;
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.4 && !r.5), "every event delivered, none dead");
    assert!(log.iter().all(|r| r.verified), "every signature verifies with the reference library");
    let by_msg: HashMap<&str, &(i64, String, i64, String, bool, bool)> =
        rows.iter().map(|r| (r.1.as_str(), r)).collect();
    let received: HashSet<&str> = log.iter().filter(|r| r.answered < 300).map(|r| r.msg_id.as_str()).collect();
    let lost: Vec<&str> = by_msg.keys().filter(|m| !received.contains(*m)).copied().collect();
    assert!(lost.is_empty(), "events never acknowledged by the receiver: {lost:?}");
    for r in log {
        let row = by_msg.get(r.msg_id.as_str()).unwrap_or_else(|| panic!("unknown webhook-id {}", r.msg_id));
        assert_eq!((r.contact_id, r.event_type.as_str()), (row.2, row.3.as_str()), "the body matches its event");
    }
    // Order: when an event arrives, every earlier event of its contact has arrived before.
    let mut seen: HashSet<i64> = HashSet::new();
    for r in log {
        let (id, _, contact, ..) = by_msg[r.msg_id.as_str()];
        let earlier: Vec<i64> =
            rows.iter().filter(|o| o.2 == *contact && o.0 < *id && !seen.contains(&o.0)).map(|o| o.0).collect();
        assert!(earlier.is_empty(), "event {id} of contact {contact} arrived before {earlier:?}");
        seen.insert(*id);
    }
    // Every contact finished once, after its results; every keypress result has its event.
    let contacts = scalar(env, &format!("SELECT count(*) FROM contacts WHERE campaign_id = {campaign}")).await;
    let mut per_contact: HashMap<i64, Vec<&str>> = HashMap::new();
    for r in &rows {
        per_contact.entry(r.2).or_default().push(r.3.as_str());
    }
    assert_eq!(per_contact.len() as i64, contacts);
    for (c, kinds) in &per_contact {
        assert_eq!(kinds.last(), Some(&"contact.finished"), "contact {c}: {kinds:?}");
        assert_eq!(kinds.iter().filter(|k| **k == "contact.finished").count(), 1, "contact {c}: {kinds:?}");
    }
    let results = scalar(env, &format!("SELECT count(*) FROM results WHERE campaign_id = {campaign}")).await;
    let result_events = rows.iter().filter(|r| r.3 != "contact.finished").count() as i64;
    assert!(results > 0);
    assert_eq!(result_events, results);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_down_then_failing_then_back_gets_every_event_signed_and_in_order() {
    let mut env = Env::new(sim_config(40.0)).await;
    let tz = open_zone();
    let id = env.campaign(&campaign_toml(tz.name(), 40.0, ""), &contacts(60, None, 700_000)).await;
    // A port nobody listens on yet: the receiver is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let secret = env.store.webhook_endpoints_set(id, &format!("http://127.0.0.1:{port}/hook")).await.unwrap();
    env.spawn("all", 40.0, FAST_RETRIES);

    // Down: deliveries fail with connection errors and are rescheduled.
    wait_for("refused deliveries", Duration::from_secs(60), || async {
        scalar(&env, "SELECT count(*) FROM webhook_outbox WHERE attempts > 1 AND last_error IS NOT NULL").await > 3
    })
    .await;
    // Up but failing: 500s.
    let r = receiver(secret, FAIL_500);
    listen(r.clone(), tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap()).await;
    wait_for("500 answers", Duration::from_secs(60), || async { r.log.lock().unwrap().len() > 20 }).await;
    assert!(scalar(&env, "SELECT count(*) FROM webhook_outbox WHERE last_status = 500").await > 0);
    // Recovered.
    r.mode.store(OK, Ordering::SeqCst);

    env.wait_finished(id, Duration::from_secs(180)).await;
    wait_for("the outbox to drain", Duration::from_secs(60), || async {
        scalar(&env, "SELECT count(*) FROM webhook_outbox WHERE delivered_at IS NULL").await == 0
    })
    .await;
    let log = r.log.lock().unwrap().clone();
    assert!(log.iter().any(|r| r.answered == 500) && log.iter().any(|r| r.answered < 300));
    assert_all_delivered_in_order(&env, id, &log).await;
    eprintln!(
        "{} events, {} requests received ({} answered 500)",
        outbox(&env).await.len(),
        log.len(),
        log.iter().filter(|r| r.answered == 500).count()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_deliverer_mid_delivery_loses_nothing() {
    let mut env = Env::new(sim_config(40.0)).await;
    let tz = open_zone();
    let id = env.campaign(&campaign_toml(tz.name(), 40.0, ""), &contacts(40, None, 800_000)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let secret = env.store.webhook_endpoints_set(id, &url).await.unwrap();
    // Slow: each request is held, so the deliverer has POSTs in flight when it is killed.
    let r = receiver(secret, OK);
    *r.hold.lock().unwrap() = Duration::from_secs(2);
    listen(r.clone(), listener).await;
    let first = env.spawn("all", 40.0, FAST_RETRIES);

    wait_for("POSTs in flight", Duration::from_secs(90), || async { r.holding.load(Ordering::SeqCst) >= 3 }).await;
    env.kill(first);
    // What was claimed and not acknowledged when the process died.
    let unacked: Vec<String> =
        sqlx::query_scalar("SELECT msg_id FROM webhook_outbox WHERE delivered_at IS NULL AND lease_until IS NOT NULL")
            .fetch_all(env.store.pool())
            .await
            .unwrap();
    assert!(!unacked.is_empty(), "the kill caught deliveries in flight");

    *r.hold.lock().unwrap() = Duration::ZERO;
    env.spawn("all", 40.0, FAST_RETRIES);
    env.wait_finished(id, Duration::from_secs(180)).await;
    wait_for("the outbox to drain", Duration::from_secs(60), || async {
        scalar(&env, "SELECT count(*) FROM webhook_outbox WHERE delivered_at IS NULL").await == 0
    })
    .await;
    let log = r.log.lock().unwrap().clone();
    for m in &unacked {
        let n = log.iter().filter(|r| &r.msg_id == m).count();
        assert!(n >= 1, "{m}, in flight at the kill, was delivered after the restart");
    }
    let attempts: i64 = sqlx::query_scalar("SELECT max(attempts)::bigint FROM webhook_outbox WHERE msg_id = ANY($1)")
        .bind(&unacked)
        .fetch_one(env.store.pool())
        .await
        .unwrap();
    assert!(attempts >= 2, "sent again after the lease ran out");
    assert_all_delivered_in_order(&env, id, &log).await;
}
