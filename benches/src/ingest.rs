//! Callback ingestion: signed StatusCallbacks against `dialer serve --role callbacks` (batched, durable
//! writes), beside a baseline axum handler in this process doing one UPDATE per request.
//!
//! ```text
//! benches callbacks --calls 20000 --concurrency 256            # the callbacks service
//! benches callbacks --calls 20000 --concurrency 256 --baseline # one UPDATE per request
//! ```
//!
//! Each simulated call gets four callbacks in order (initiated, ringing, in-progress, completed with
//! CallDuration), the last one terminal (outcome, result row, contact finished). Attempts are created
//! directly in SQL in state `created` with a CallSid. Like Twilio's, every request carries its own
//! `I-Twilio-Idempotency-Token`; all are built and signed before the clock starts, and each of the
//! `--concurrency` tasks sends them in turn on its own keep-alive HTTP/1.1 connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Form, Router};
use clap::Args as ClapArgs;
use dialer_core::domain::{AttemptToken, TokenKey};
use dialer_core::store::Store;
use dialer_core::twilio::signature::compute_signature;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::common::{self, loadavg, pct, ACCOUNT_SID, AUTH_TOKEN};
use crate::db;
use crate::stats::Summary;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Simulated calls (each gets 4 callbacks).
    #[arg(long, default_value_t = 20_000)]
    calls: i64,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// One UPDATE per request in a tiny axum handler here, instead of the callbacks service.
    #[arg(long)]
    baseline: bool,
    /// Connections of the baseline's pool.
    #[arg(long, default_value_t = 32)]
    baseline_pool: u32,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

struct RunResult {
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
    errors: usize,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let server = db::server_url().await?;
    println!(
        "callbacks: {} calls × 4 callbacks, concurrency {}, {}",
        args.calls,
        args.concurrency,
        if args.baseline {
            format!("BASELINE one UPDATE per request, pool {}", args.baseline_pool)
        } else {
            "dialer serve --role callbacks".into()
        }
    );
    let mut results = Vec::new();
    for run in 1..=args.runs {
        let before = loadavg();
        let r = one(&server, &args).await?;
        println!(
            "run {run}: {:.0} callbacks/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, errors {}, load {before} -> {}",
            r.rate,
            r.p50,
            r.p99,
            r.max,
            r.errors,
            loadavg()
        );
        results.push(r);
    }
    let s = |f: fn(&RunResult) -> f64| Summary::of(&results.iter().map(f).collect::<Vec<_>>());
    println!("callbacks/s: {}", s(|r| r.rate));
    println!("p50 ms: median {:.2} (min {:.2}, max {:.2})", s(|r| r.p50).median, s(|r| r.p50).min, s(|r| r.p50).max);
    println!("p99 ms: median {:.2} (min {:.2}, max {:.2})", s(|r| r.p99).median, s(|r| r.p99).min, s(|r| r.p99).max);
    Ok(())
}

async fn setup(store: &Store, n: i64) -> anyhow::Result<Vec<(i64, String)>> {
    let cid = common::campaign(store, 10.0, 10_000_000).await?;
    common::load_contacts(store, cid, n, chrono::Utc::now().timestamp_millis(), None).await?;
    sqlx::query("UPDATE contacts SET state = 'calling', attempt_seq = 1, attempts_made = 1, last_call_at = now()")
        .execute(store.pool())
        .await?;
    sqlx::query(
        "INSERT INTO attempts (contact_id, campaign_id, attempt_no, phone, state, call_sid, requested_at)
         SELECT id, campaign_id, 1, phone, $1, 'CA' || md5(id::text), now() FROM contacts",
    )
    .bind(dialer_core::domain::AttemptState::Created)
    .execute(store.pool())
    .await?;
    sqlx::query("UPDATE campaigns SET status = 'running'").execute(store.pool()).await?;
    sqlx::query("ANALYZE").execute(store.pool()).await?;
    Ok(sqlx::query_as("SELECT id, call_sid FROM attempts ORDER BY id").fetch_all(store.pool()).await?)
}

async fn baseline_handler(
    State(pool): State<sqlx::PgPool>,
    Path(token): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> StatusCode {
    let id: i64 = token.parse().unwrap_or(0);
    let status = form.iter().find(|(k, _)| k == "CallStatus").map(|(_, v)| v.clone()).unwrap_or_default();
    match sqlx::query("UPDATE attempts SET call_status = $2, last_event_at = now() WHERE id = $1")
        .bind(id)
        .bind(status)
        .execute(&pool)
        .await
    {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn one(server: &str, args: &Args) -> anyhow::Result<RunResult> {
    let (store, url) = db::fresh(server, "bench_callbacks", 4).await?;
    let attempts = setup(&store, args.calls).await?;
    let addr = format!("127.0.0.1:{}", common::free_port());
    let public = format!("http://{addr}");
    let key = TokenKey::new(format!("attempt-token:{AUTH_TOKEN}").as_bytes());
    let mut _proc = None;
    let mut server_task = None;
    if args.baseline {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(args.baseline_pool).connect(&url).await?;
        // The baseline gets the attempt id in clear: `/status/{id}`.
        let app = Router::new().route("/status/{token}", post(baseline_handler)).with_state(pool);
        let l = tokio::net::TcpListener::bind(&addr).await?;
        server_task = Some(tokio::spawn(async move { axum::serve(l, app).await }));
    } else {
        _proc = Some(common::serve("callbacks", &url, "http://127.0.0.1:9", &public, &addr, &[])?);
        common::wait_healthy(&addr).await?;
    }
    // Every request is built and signed before the clock starts, as Twilio does on its own machines:
    // here the generator shares two cores with the service and PostgreSQL, and what it spends on
    // encoding and HMAC is taken from them.
    let work: Arc<Vec<[Prepared; 4]>> = Arc::new(
        attempts
            .into_iter()
            .map(|(id, sid)| {
                let path = if args.baseline {
                    format!("/status/{id}")
                } else {
                    format!("/status/{}", AttemptToken::new(id).encode(&key))
                };
                prepare_call(&public, &path, &sid)
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let sampler = _proc.as_ref().map(|p: &common::Proc| common::rss_sampler(p.pid()));
    let (c0, r0) = common::db_counters(&store).await?;
    // Connections are opened before the clock, as Twilio's would be warm: 256 SYNs at once can overflow
    // the accept queue, and a dropped SYN is retried after a whole second.
    let mut conns = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        conns.push(connect(&addr).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for conn in conns {
        let (work, next, addr) = (work.clone(), next.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut conn = Some(conn);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(call) = work.get(i) else { break };
                for p in call {
                    let t = Instant::now();
                    match send(&mut conn, &addr, p).await {
                        Ok(true) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                        Ok(false) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            conn = None;
                        }
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // pg_stat_database is updated when a backend reports (≤ 1 s); wait for it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (c1, r1) = common::db_counters(&store).await?;
    let n = lat.len().max(1) as f64;
    println!(
        "   per callback: {:.3} commits, {:.1} rows touched (pg_stat_database deltas {} / {})",
        (c1 - c0) as f64 / n,
        (r1 - r0) as f64 / n,
        c1 - c0,
        r1 - r0
    );
    if let Some((h, peak)) = sampler {
        h.abort();
        println!("   callbacks process peak RSS {:.0} MB", peak.load(Ordering::Relaxed) as f64 / 1024.0);
    }
    let rate = lat.len() as f64 / elapsed;
    let max = lat.iter().cloned().fold(0.0, f64::max);
    let p50 = pct(&mut lat, 50.0);
    let p99 = pct(&mut lat, 99.0);
    if !args.baseline {
        let (events, finished): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM call_events), (SELECT count(*) FROM attempts WHERE state = $1)",
        )
        .bind(dialer_core::domain::AttemptState::Finished)
        .fetch_one(store.pool())
        .await?;
        println!("   durable: {events} call_events, {finished} attempts finished");
    }
    if let Some(t) = server_task {
        t.abort();
    }
    drop(_proc);
    store.pool().close().await;
    db::drop_database(server, "bench_callbacks").await?;
    Ok(RunResult { rate, p50, p99, max, errors })
}

/// One callback as Twilio would send it: path, form body, signature and idempotency token.
struct Prepared {
    path: String,
    body: Bytes,
    signature: HeaderValue,
    idempotency_token: HeaderValue,
}

/// A simulated call's four callbacks, in order (initiated, ringing, in-progress, completed).
fn prepare_call(public: &str, path: &str, sid: &str) -> [Prepared; 4] {
    ["initiated", "ringing", "in-progress", "completed"]
        .iter()
        .enumerate()
        .map(|(seq, status)| {
            let mut params: Vec<(String, String)> = vec![
                ("AccountSid".into(), ACCOUNT_SID.into()),
                ("ApiVersion".into(), "2010-04-01".into()),
                ("CallSid".into(), sid.into()),
                ("CallStatus".into(), status.to_string()),
                ("Called".into(), "+819012345678".into()),
                ("Caller".into(), "+14155550199".into()),
                ("Direction".into(), "outbound-api".into()),
                ("From".into(), "+14155550199".into()),
                ("To".into(), "+819012345678".into()),
                ("SequenceNumber".into(), seq.to_string()),
                ("Timestamp".into(), chrono::Utc::now().to_rfc2822()),
                ("CallbackSource".into(), "call-progress-events".into()),
            ];
            if *status == "completed" {
                params.push(("CallDuration".into(), "12".into()));
                params.push(("SipResponseCode".into(), "200".into()));
            }
            if *status == "in-progress" || *status == "completed" {
                params.push(("AnsweredBy".into(), "human".into()));
            }
            let signature = compute_signature(AUTH_TOKEN, &format!("{public}{path}"), &params);
            let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
            Prepared {
                path: path.to_string(),
                body: Bytes::from(body),
                signature: HeaderValue::from_str(&signature).expect("base64 is a header value"),
                idempotency_token: HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a uuid"),
            }
        })
        .collect::<Vec<_>>()
        .try_into()
        .unwrap_or_else(|_| unreachable!("four statuses"))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: &str) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one prepared callback on this task's own keep-alive connection (opened on first use or after
/// an error); whether the answer was a success.
async fn send(conn: &mut Option<Sender>, addr: &str, p: &Prepared) -> anyhow::Result<bool> {
    if conn.is_none() {
        *conn = Some(connect(addr).await?);
    }
    let sender = conn.as_mut().expect("connected above");
    sender.ready().await?;
    let req = Request::post(p.path.as_str())
        .header(HOST, addr)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("x-twilio-signature", p.signature.clone())
        .header("i-twilio-idempotency-token", p.idempotency_token.clone())
        .body(Full::new(p.body.clone()))?;
    let resp = sender.send_request(req).await?;
    let ok = resp.status().is_success();
    resp.into_body().collect().await?;
    Ok(ok)
}
