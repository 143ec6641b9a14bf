//! `api-push`: contacts pushed through the management API (issue: ≥ 50,000 contacts/s in batches of 10,000).
//!
//! Per run and per client count (sequential = 1 client, then `--clients` concurrent ones), on a fresh
//! database with the campaign from `examples/campaigns/delivery-reschedule-ja.toml` and an API key with
//! `contacts:write`:
//! 1. starts `dialer serve --role api` (release build beside this binary) with a high `API_RATE_LIMIT`;
//! 2. POSTs `--contacts / --batch` JSON batches to `/api/v1/campaigns/{id}/contacts`, each with its own
//!    `Idempotency-Key` (bodies are serialized before the clock starts), and times from the first request
//!    to the last answer;
//! 3. checks every answer (200, `created` = batch size), the database (exactly `--contacts` rows, each
//!    number once), and that replaying the first batch with its key returns the stored answer and writes
//!    nothing.
//!
//! Prints contacts/s per mode (median, min, max over the runs), request latency, and the API process's CPU.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use dialer_core::domain::{ApiKeySecret, CampaignSpec, Scope, E164};
use dialer_core::store::Store;

use crate::common;
use crate::db;
use crate::stats::Summary;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Contacts pushed per run.
    #[arg(long, default_value_t = 100_000)]
    contacts: usize,
    /// Contacts per request (the API takes at most 10,000).
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Measured runs per mode (each on a fresh database and a fresh API process); the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Concurrent clients for the concurrent mode (the sequential mode uses one).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Campaign file to push into.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/campaigns/delivery-reschedule-ja.toml"))]
    campaign: PathBuf,
    /// Name of the bench database (dropped at the end).
    #[arg(long, default_value = "bench_api_push")]
    database: String,
    /// Keep the last run's database.
    #[arg(long)]
    keep_db: bool,
    /// Extra environment for `dialer serve --role api`, `KEY=VALUE` (repeatable).
    #[arg(long, value_parser = parse_env)]
    env: Vec<(String, String)>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

const PREFIXES: [&str; 3] = ["90", "80", "70"];
const SURNAMES: [&str; 8] = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村"];
const GIVEN: [&str; 8] = ["太郎", "花子", "翔太", "美咲", "健一", "陽菜", "大輔", "さくら"];

/// Contact `i`'s number in E.164: +81 90/80/70 by `i % 3`, subscriber 1000-0000.. by `i / 3` (unique, and
/// never starting with 0, which Japanese mobiles don't allow). The same scheme as `import`.
fn phone(i: usize) -> String {
    format!("+81{}{}", PREFIXES[i % 3], 10_000_000 + i / 3)
}

/// The JSON body of batch `b`: contacts `b * batch ..`, each with an external id (the parcel number) and
/// the script's variables `name` and `parcel`.
fn body(b: usize, batch: usize, total: usize) -> Vec<u8> {
    let contacts: Vec<serde_json::Value> = (b * batch..((b + 1) * batch).min(total))
        .map(|i| {
            let parcel = format!("{:04}-{:04}", (10_000_000 + i) / 10_000 % 10_000, i % 10_000);
            serde_json::json!({
                "phone": phone(i),
                "external_id": format!("P-{parcel}"),
                "attributes": { "name": format!("{} {}", SURNAMES[i % 8], GIVEN[(i / 8) % 8]), "parcel": parcel },
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "contacts": contacts })).expect("serializes")
}

struct Outcome {
    took: Duration,
    /// Per-request wall times.
    latencies: Vec<Duration>,
    api_cpu_s: f64,
    commits: i64,
}

/// One measured push of all batches with `clients` concurrent clients, on a fresh database and API process.
async fn run_once(
    args: &Args,
    server: &str,
    spec: &CampaignSpec,
    bodies: &Arc<Vec<Vec<u8>>>,
    clients: usize,
    tag: &str,
) -> anyhow::Result<Outcome> {
    let (store, url) = db::fresh(server, &args.database, 2).await?;
    let campaign = store.campaigns_insert(spec).await.context("creating the campaign")?;
    let secret = ApiKeySecret::generate();
    store.api_keys_insert("bench", &secret, &[Scope::ContactsWrite, Scope::CampaignsWrite]).await?;

    let (listen, api) = (format!("127.0.0.1:{}", common::free_port()), format!("127.0.0.1:{}", common::free_port()));
    let mut extra = vec![
        ("API_LISTEN_ADDR".to_string(), api.clone()),
        // One key sends every request: keep the per-key limiter out of the measurement.
        ("API_RATE_LIMIT".to_string(), "100000".to_string()),
        ("API_RATE_BURST".to_string(), "100000".to_string()),
    ];
    extra.extend(args.env.iter().cloned());
    let proc = common::serve("api", &url, "http://127.0.0.1:9", "http://127.0.0.1:9", &listen, &extra)?;
    wait_api(&api).await?;

    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
    let endpoint = format!("http://{api}/api/v1/campaigns/{campaign}/contacts");
    let auth = format!("Bearer {}", secret.expose());
    let post = |b: usize| {
        client
            .post(&endpoint)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("bench-{tag}-{b}"))
            .body(bodies[b].clone())
            .send()
    };
    // Warm the connection pool and the key lookup with a request that writes nothing (an empty batch).
    let warm = client
        .post(&endpoint)
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(r#"{"contacts":[]}"#)
        .send()
        .await?;
    ensure!(warm.status().is_success(), "warm-up push: {} {}", warm.status(), warm.text().await.unwrap_or_default());

    let cpu0 = common::cpu_secs(proc.pid()).unwrap_or(0.0);
    let (commits0, _) = common::db_counters(&store).await?;
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let per_client = (0..clients).map(|_| async {
        let mut lat = Vec::new();
        loop {
            let b = next.fetch_add(1, Ordering::Relaxed);
            if b >= bodies.len() {
                return anyhow::Ok(lat);
            }
            let t = Instant::now();
            let r = post(b).await.with_context(|| format!("batch {b}"))?;
            let status = r.status();
            let text = r.text().await?;
            lat.push(t.elapsed());
            ensure!(status.is_success(), "batch {b}: {status} {}", &text[..text.len().min(500)]);
            let report: serde_json::Value = serde_json::from_str(&text)?;
            let want = args.batch.min(args.contacts - b * args.batch);
            ensure!(
                report["created"] == want && report["duplicates"].as_array().is_some_and(Vec::is_empty),
                "batch {b}: created {} of {want}, duplicates {}",
                report["created"],
                report["duplicates"]
            );
        }
    });
    let latencies: Vec<Duration> = futures::future::try_join_all(per_client).await?.into_iter().flatten().collect();
    let took = start.elapsed();
    let api_cpu_s = common::cpu_secs(proc.pid()).unwrap_or(0.0) - cpu0;
    let (commits1, _) = common::db_counters(&store).await?;

    verify(&store, campaign, args.contacts).await?;
    // A replay of the first batch with its key: the stored answer, nothing written.
    let r = post(0).await?;
    ensure!(
        r.status().is_success() && r.headers().get("idempotent-replayed").is_some_and(|v| v == "true"),
        "replaying batch 0: {} without Idempotent-Replayed",
        r.status()
    );
    verify(&store, campaign, args.contacts).await?;

    drop(proc);
    store.pool().close().await;
    Ok(Outcome { took, latencies, api_cpu_s, commits: commits1 - commits0 })
}

/// Every contact created exactly once.
async fn verify(store: &Store, campaign: i64, want: usize) -> anyhow::Result<()> {
    let (n, phones, refs): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT phone), count(DISTINCT external_id) FROM contacts WHERE campaign_id = $1",
    )
    .bind(campaign)
    .fetch_one(store.pool())
    .await?;
    ensure!(
        n as usize == want && phones == n && refs == n,
        "database has {n} contacts ({phones} numbers, {refs} external ids), expected {want}"
    );
    Ok(())
}

/// Waits until the API listener answers (it binds after `/healthz`'s).
async fn wait_api(addr: &str) -> anyhow::Result<()> {
    let c = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = c.get(format!("http://{addr}/api/v1/openapi.json")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the API on {addr} never answered")
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.runs > 0 && args.clients > 0, "--runs and --clients must be at least 1");
    ensure!((1..=10_000).contains(&args.batch), "--batch must be 1–10,000 (the API's limit)");
    ensure!(args.contacts <= 3 * 90_000_000, "at most 270M unique mobile numbers");
    common::dialer_bin()?;
    let text =
        std::fs::read_to_string(&args.campaign).with_context(|| format!("reading {}", args.campaign.display()))?;
    let spec = CampaignSpec::parse(&text, &args.campaign.to_string_lossy()).map_err(|e| anyhow::anyhow!("{e}"))?;
    for i in (0..args.contacts).step_by(9973).chain([args.contacts.saturating_sub(1)]) {
        E164::parse(&phone(i), None).with_context(|| format!("generated number {} is invalid", phone(i)))?;
    }
    let t = Instant::now();
    let bodies: Arc<Vec<Vec<u8>>> =
        Arc::new((0..args.contacts.div_ceil(args.batch)).map(|b| body(b, args.batch, args.contacts)).collect());
    eprintln!(
        "generated {} bodies of ≤ {} contacts ({:.1} MB each) in {:.2?}",
        bodies.len(),
        args.batch,
        bodies[0].len() as f64 / 1e6,
        t.elapsed()
    );

    let server = db::server_url().await?;
    println!("machine: {} cores; load average before: {}", num_cpus(), common::loadavg());
    let modes = [(1usize, "sequential"), (args.clients, "concurrent")];
    let mut results: Vec<Vec<Outcome>> = vec![Vec::new(), Vec::new()];
    for run in 1..=args.runs {
        // Alternate the order so drift in the box's load hits both modes alike.
        let order: [usize; 2] = if run % 2 == 1 { [0, 1] } else { [1, 0] };
        for m in order {
            let (clients, name) = modes[m];
            let o = run_once(&args, &server, &spec, &bodies, clients, &format!("{run}-{m}")).await?;
            eprintln!(
                "run {run} {name} ({clients} client(s)): {:.3} s = {:.0} contacts/s; API CPU {:.2} s; {} commits (load {})",
                o.took.as_secs_f64(),
                args.contacts as f64 / o.took.as_secs_f64(),
                o.api_cpu_s,
                o.commits,
                common::loadavg()
            );
            results[m].push(o);
        }
    }
    if !args.keep_db {
        db::drop_database(&server, &args.database).await?;
    }

    println!(
        "\napi-push of {} contacts in batches of {}, {} run(s) per mode, load average after: {}",
        args.contacts,
        args.batch,
        args.runs,
        common::loadavg()
    );
    for (m, (clients, name)) in modes.iter().enumerate() {
        let rates: Vec<f64> = results[m].iter().map(|o| args.contacts as f64 / o.took.as_secs_f64()).collect();
        let mut lat: Vec<f64> =
            results[m].iter().flat_map(|o| o.latencies.iter().map(|d| d.as_secs_f64() * 1e3)).collect();
        let cpu: Vec<f64> = results[m].iter().map(|o| o.api_cpu_s).collect();
        println!("{name:<11} ({clients} client(s)) contacts/s {}", Summary::of(&rates));
        println!(
            "            request ms: p50 {:.0}, max {:.0}; API process CPU per run: median {:.2} s ({:.1} µs/contact)",
            common::pct(&mut lat, 50.0),
            common::pct(&mut lat, 100.0),
            Summary::of(&cpu).median,
            Summary::of(&cpu).median / args.contacts as f64 * 1e6
        );
    }
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
}
