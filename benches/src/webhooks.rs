//! `webhooks`: result webhook delivery rate (issue: ≥ 2,000 deliveries/s to a local receiver).
//!
//! Per run, on a fresh database:
//! 1. a campaign (the bench campaign, draft, so the engine dials nothing) whose endpoint is a receiver in
//!    this process (axum on 127.0.0.1: checks each Standard Webhooks signature, records the `webhook-id`,
//!    answers 204);
//! 2. `--events` contacts bulk-loaded, then finished in one `UPDATE contacts SET state = 'done' …`: the
//!    trigger writes one `contact.finished` event per contact into `webhook_outbox`, as settling a call does;
//! 3. `dialer serve --role all` (the only role that runs the deliverer) is started and timed from spawn
//!    until the receiver has every event, and until `webhook_outbox` shows them all delivered.
//!
//! Checks: every event received (distinct `webhook-id`s = events), valid signatures, none left undelivered.
//! Duplicates are counted (at least once allows them; none are expected without failures).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use dialer_core::domain::webhook::{SigningKey, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use dialer_core::store::Store;

use crate::common;
use crate::db;
use crate::stats::Summary;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events (finished contacts) delivered per run.
    #[arg(long, default_value_t = 20_000)]
    events: i64,
    /// Measured runs (each on a fresh database and a fresh `dialer serve`); the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Name of the bench database (dropped at the end).
    #[arg(long, default_value = "bench_webhooks")]
    database: String,
    /// Keep the last run's database.
    #[arg(long)]
    keep_db: bool,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Extra environment for `dialer serve --role all`, `KEY=VALUE` (repeatable), e.g. WEBHOOK_CONCURRENCY=128.
    #[arg(long, value_parser = parse_env)]
    env: Vec<(String, String)>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// What the receiver saw.
struct Receiver {
    key: SigningKey,
    started: Instant,
    ids: Mutex<HashSet<String>>,
    requests: AtomicU64,
    bad_signatures: AtomicU64,
    /// Microseconds after `started` of the first and last request.
    first_us: AtomicU64,
    last_us: AtomicU64,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = r.started.elapsed().as_micros() as u64;
    r.first_us.fetch_min(at, Ordering::Relaxed);
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (id, ts, sigs) = (h(HEADER_ID), h(HEADER_TIMESTAMP).parse::<i64>().unwrap_or(0), h(HEADER_SIGNATURE));
    let expected = r.key.sign(id, ts, &body);
    if !sigs.split(' ').any(|s| s == expected) {
        r.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    r.ids.lock().unwrap().insert(id.to_string());
    r.requests.fetch_add(1, Ordering::Relaxed);
    r.last_us.fetch_max(r.started.elapsed().as_micros() as u64, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

struct Outcome {
    /// Spawn → the receiver has every event.
    received: Duration,
    /// Spawn → `webhook_outbox` has every event delivered.
    acknowledged: Duration,
    /// First → last request at the receiver.
    steady: Duration,
    duplicates: u64,
    dialer_cpu_s: f64,
    commits: i64,
}

async fn undelivered(store: &Store) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM webhook_outbox WHERE delivered_at IS NULL")
        .fetch_one(store.pool())
        .await?)
}

async fn run_once(args: &Args, server: &str) -> anyhow::Result<Outcome> {
    let (store, url) = db::fresh(server, &args.database, 2).await?;
    let campaign = common::campaign(&store, 100.0, 1000).await?;

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", l.local_addr()?);
    let secret = store.webhook_endpoints_set(campaign, &hook).await?;
    let started = Instant::now();
    let rx = Arc::new(Receiver {
        key: SigningKey::parse(&secret).map_err(|e| anyhow::anyhow!("{e}"))?,
        started,
        ids: Mutex::new(HashSet::with_capacity(args.events as usize)),
        requests: AtomicU64::new(0),
        bad_signatures: AtomicU64::new(0),
        first_us: AtomicU64::new(u64::MAX),
        last_us: AtomicU64::new(0),
    });
    let app = Router::new().route("/hook", post(receive)).with_state(rx.clone());
    let receiver = tokio::spawn(async move { axum::serve(l, app).await });

    common::load_contacts(&store, campaign, args.events, chrono::Utc::now().timestamp_millis(), None).await?;
    let t = Instant::now();
    let n = sqlx::query(
        "UPDATE contacts SET state = 'done', finished_at = now(), final_outcome = 'human', result = 'confirmed',
             attempts_made = 1, updated_at = now()
         WHERE campaign_id = $1",
    )
    .bind(campaign)
    .execute(store.pool())
    .await?
    .rows_affected();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_outbox").fetch_one(store.pool()).await?;
    ensure!(n as i64 == args.events && events == args.events, "finished {n} contacts, outbox has {events} events");
    sqlx::query("ANALYZE").execute(store.pool()).await?;
    eprintln!("  {events} events written by the trigger in {:.2?}", t.elapsed());

    let (commits0, _) = common::db_counters(&store).await?;
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut extra = vec![("API_LISTEN_ADDR".to_string(), format!("127.0.0.1:{}", common::free_port()))];
    extra.extend(args.env.iter().cloned());
    let t0 = Instant::now();
    let t0_us = started.elapsed().as_micros() as u64;
    let proc = common::serve("all", &url, "http://127.0.0.1:9", &format!("http://{listen}"), &listen, &extra)?;
    let deadline = t0 + Duration::from_secs(args.timeout_s);
    while (rx.ids.lock().unwrap().len() as i64) < args.events {
        ensure!(
            Instant::now() < deadline,
            "timed out: the receiver has {} of {} events",
            rx.ids.lock().unwrap().len(),
            args.events
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let received = t0.elapsed();
    let steady = Duration::from_micros(rx.last_us.load(Ordering::Relaxed) - rx.first_us.load(Ordering::Relaxed));
    let dialer_cpu_s = common::cpu_secs(proc.pid()).unwrap_or(0.0);
    loop {
        if undelivered(&store).await? == 0 {
            break;
        }
        ensure!(Instant::now() < deadline, "timed out waiting for the outbox to show every event delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let acknowledged = t0.elapsed();
    let (commits1, _) = common::db_counters(&store).await?;
    drop(proc);
    receiver.abort();

    let requests = rx.requests.load(Ordering::Relaxed);
    ensure!(rx.bad_signatures.load(Ordering::Relaxed) == 0, "bad signatures");
    let first_ms = (rx.first_us.load(Ordering::Relaxed) - t0_us) as f64 / 1e3;
    eprintln!("  first delivery {first_ms:.0} ms after spawn");
    store.pool().close().await;
    Ok(Outcome {
        received,
        acknowledged,
        steady,
        duplicates: requests - args.events as u64,
        dialer_cpu_s,
        commits: commits1 - commits0,
    })
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.runs > 0 && args.events > 0, "--runs and --events must be at least 1");
    common::dialer_bin().context("the deliverer runs in `dialer serve --role all`")?;
    let server = db::server_url().await?;
    println!(
        "machine: {} cores; load average before: {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        common::loadavg()
    );
    let mut out = Vec::new();
    for run in 1..=args.runs {
        let o = run_once(&args, &server).await?;
        eprintln!(
            "run {run}: all received {:.3} s after spawn = {:.0}/s (first → last {:.0}/s), all acknowledged {:.3} s; \
             {} duplicate(s); dialer CPU {:.2} s; {} commits (load {})",
            o.received.as_secs_f64(),
            args.events as f64 / o.received.as_secs_f64(),
            args.events as f64 / o.steady.as_secs_f64(),
            o.acknowledged.as_secs_f64(),
            o.duplicates,
            o.dialer_cpu_s,
            o.commits,
            common::loadavg()
        );
        out.push(o);
    }
    if !args.keep_db {
        db::drop_database(&server, &args.database).await?;
    }
    let rate = |f: fn(&Outcome) -> Duration| -> Vec<f64> {
        out.iter().map(|o| args.events as f64 / f(o).as_secs_f64()).collect()
    };
    println!("\nwebhooks: {} events, {} run(s), load average after: {}", args.events, args.runs, common::loadavg());
    println!("deliveries/s, spawn → all received      {}", Summary::of(&rate(|o| o.received)));
    println!("deliveries/s, first → last request      {}", Summary::of(&rate(|o| o.steady)));
    println!("deliveries/s, spawn → all acknowledged  {}", Summary::of(&rate(|o| o.acknowledged)));
    let cpu: Vec<f64> = out.iter().map(|o| o.dialer_cpu_s).collect();
    let commits: Vec<f64> = out.iter().map(|o| o.commits as f64).collect();
    println!(
        "dialer CPU per run: median {:.2} s ({:.0} µs/event); commits per run: median {:.0}; duplicates: {}",
        Summary::of(&cpu).median,
        Summary::of(&cpu).median / args.events as f64 * 1e6,
        Summary::of(&commits).median,
        out.iter().map(|o| o.duplicates).sum::<u64>()
    );
    Ok(())
}
