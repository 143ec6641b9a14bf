//! Dial throughput, pacing and scheduler lag, end to end over real processes:
//! PostgreSQL ← `dialer serve --role dialer` → in-process simulator → `dialer serve --role callbacks`.
//!
//! ```text
//! benches dial --contacts 60000                                  # throughput, CPS unlimited
//! benches dial --cps 100 --seconds 60                            # pacing (ACCOUNT_CPS = campaign cps = 100)
//! benches dial --cps 1000 --seconds 60 --due-rate 900            # scheduler lag: contacts fall due at 900/s
//! benches dial --cps 100 --seconds 60 --level campaign           # only the campaign paces (ACCOUNT_CPS 100,000)
//! benches dial --contacts 20000 --api-latency-ms 150             # Twilio 150 ms away (simulated round trip)
//! ```
//!
//! [`one`] is a whole run against a simulator it starts, or one it is given (`benches peer` shares one
//! simulator between the Python helper library and our pipeline).

use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Args as ClapArgs;

use dialer_sim::SimHandle;

use crate::common::{self, loadavg, ms, pct};
use crate::db;
use crate::stats::Summary;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Account and campaign CPS; omitted = effectively unlimited (100,000).
    #[arg(long)]
    cps: Option<f64>,
    /// Contacts in the backlog; default: everything the run can dial (cps × seconds × 1.1 + 1000), or
    /// 60,000 for the unlimited run.
    #[arg(long)]
    contacts: Option<i64>,
    /// Measurement window for paced runs (from the first call created).
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Contacts fall due at this rate from 3 s after start (scheduler lag), instead of all due at once.
    #[arg(long)]
    due_rate: Option<f64>,
    /// PACING_MARGIN_MS for the dialer (its default when omitted).
    #[arg(long)]
    margin_ms: Option<u64>,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Simulated outcome: busy (default; no TwiML, one callback with the dialer's default call events) or
    /// human.
    #[arg(long)]
    human: bool,
    /// Extra dialer env, KEY=VALUE (e.g. CLAIM_BATCH_SIZE=500, TWILIO_MAX_CONCURRENT_REQUESTS=256).
    #[arg(long = "env", value_parser = parse_kv)]
    env: Vec<(String, String)>,
    #[arg(long)]
    keep_db: bool,
    /// Experiment: `ALTER DATABASE … SET synchronous_commit = off` (shows what the per-call commit costs).
    #[arg(long)]
    async_commit: bool,
    /// Split the backlog over this many campaigns (each has its own serial dispatcher).
    #[arg(long, default_value_t = 1)]
    campaigns: i64,
    /// Simulated REST round trip to Twilio, milliseconds (the simulator's `--api-latency-ms`).
    #[arg(long, default_value_t = 0)]
    api_latency_ms: u64,
    /// Which limit `--cps` sets: both (ACCOUNT_CPS and the campaign's cps), account (ACCOUNT_CPS; the
    /// campaign 100,000) or campaign (the campaign's cps; ACCOUNT_CPS 100,000).
    #[arg(long, value_enum, default_value_t = Level::Both)]
    level: Level,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    Both,
    Account,
    Campaign,
}

impl Level {
    /// (ACCOUNT_CPS, campaign cps) for `cps` at this level.
    fn limits(self, cps: f64) -> (f64, f64) {
        match self {
            Level::Both => (cps, cps),
            Level::Account => (cps, UNLIMITED),
            Level::Campaign => (UNLIMITED, cps),
        }
    }
}

/// The "no limit" CPS.
pub const UNLIMITED: f64 = 100_000.0;

/// One end-to-end run: a fresh database `db` with `contacts` contacts (split over `campaigns` campaigns at
/// `campaign_cps`), `dialer serve --role callbacks` and `--role dialer` (with `env`) against a simulator.
pub struct Spec {
    pub db: &'static str,
    pub campaign_cps: f64,
    /// The lower of ACCOUNT_CPS and the campaign's cps: a paced run shows any one-second window above it.
    pub limit_cps: f64,
    /// Paced: the rate is counted over the first `seconds` from the first create, and the run stops there;
    /// else the steady state (5th to 95th percentile creates) once every contact is dialled.
    pub paced: bool,
    pub contacts: i64,
    pub seconds: f64,
    pub due_rate: Option<f64>,
    pub campaigns: i64,
    pub async_commit: bool,
    pub keep_db: bool,
    /// The dialer's environment beyond the bench's (ACCOUNT_CPS, PACING_MARGIN_MS, …).
    pub env: Vec<(String, String)>,
    /// Unpaced: give up this long after the first create.
    pub unpaced_limit_s: f64,
    /// Give up this long after the dialer started, whatever happened.
    pub deadline_s: u64,
    /// For a simulator [`one`] starts itself.
    pub human: bool,
    pub api_latency: Duration,
}

pub(crate) fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s}: not KEY=VALUE"))
}

pub struct RunResult {
    pub rate: f64,
    pub peak: usize,
    pub created: usize,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    pub dialer_cpu: f64,
    pub dialer_rss: f64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let server = db::server_url().await?;
    let paced = args.cps.is_some();
    let cps = args.cps.unwrap_or(UNLIMITED);
    let (account_cps, campaign_cps) = args.level.limits(cps);
    let n = args.contacts.unwrap_or(if paced { (cps * args.seconds * 1.1) as i64 + 1000 } else { 60_000 });
    println!(
        "dial: cps {} level {:?} contacts {n} window {}s due_rate {:?} margin {:?} api latency {} ms env {:?} runs {}",
        if paced { cps.to_string() } else { "unlimited".into() },
        args.level,
        args.seconds,
        args.due_rate,
        args.margin_ms,
        args.api_latency_ms,
        args.env,
        args.runs
    );
    let mut extra = vec![("ACCOUNT_CPS".to_string(), account_cps.to_string())];
    if let Some(m) = args.margin_ms {
        extra.push(("PACING_MARGIN_MS".into(), m.to_string()));
    }
    // REST concurrency is left to the dialer (rate × latency up to its default ceiling), as in production;
    // pass `--env TWILIO_MAX_CONCURRENT_REQUESTS=N` to cap it.
    extra.extend(args.env.iter().cloned());
    let spec = Spec {
        db: "bench_dial",
        campaign_cps,
        limit_cps: cps,
        paced,
        contacts: n,
        seconds: args.seconds,
        due_rate: args.due_rate,
        campaigns: args.campaigns,
        async_commit: args.async_commit,
        keep_db: args.keep_db,
        env: extra,
        unpaced_limit_s: 300.0,
        deadline_s: 600,
        human: args.human,
        api_latency: Duration::from_millis(args.api_latency_ms),
    };
    let mut results = Vec::new();
    for run in 1..=args.runs {
        let before = loadavg();
        let r = one(&server, &spec, None).await?;
        println!(
            "run {run}: {:.1} calls/s over the window, peak 1-s {} , created {}, lag p50 {:.0} ms p99 {:.0} ms max {:.0} ms, dialer cpu {:.1} s rss {:.0} MB, load {before} -> {}",
            r.rate,
            r.peak,
            r.created,
            r.lag_p50_ms,
            r.lag_p99_ms,
            r.lag_max_ms,
            r.dialer_cpu,
            r.dialer_rss,
            loadavg()
        );
        results.push(r);
    }
    let s = |f: fn(&RunResult) -> f64| Summary::of(&results.iter().map(f).collect::<Vec<_>>());
    println!("rate calls/s: {}", s(|r| r.rate));
    println!("peak 1-s: {}", s(|r| r.peak as f64));
    if args.due_rate.is_some() || !paced {
        println!("lag p50 ms: {}", s(|r| r.lag_p50_ms));
        println!("lag p99 ms: {}", s(|r| r.lag_p99_ms));
    }
    println!("dialer cpu s: {}  rss MB: {}", s(|r| r.dialer_cpu), s(|r| r.dialer_rss));
    Ok(())
}

/// One run per `spec`, against `sim` when given (left running, its record as the run left it), else a
/// simulator of its own (`spec.human`, `spec.api_latency`) started once the backlog is loaded and shut down
/// at the end.
pub async fn one(server: &str, spec: &Spec, sim: Option<&SimHandle>) -> anyhow::Result<RunResult> {
    let (n, campaigns) = (spec.contacts, spec.campaigns);
    let (store, url) = db::fresh(server, spec.db, 4).await?;
    if spec.async_commit {
        sqlx::query(&format!("ALTER DATABASE {} SET synchronous_commit = off", spec.db)).execute(store.pool()).await?;
    }
    let start_ms = Utc::now().timestamp_millis() + if spec.due_rate.is_some() { 3000 } else { -1000 };
    let mut cids = Vec::new();
    for _ in 0..campaigns {
        let cid = common::campaign(&store, spec.campaign_cps, 10_000_000).await?;
        common::load_contacts(&store, cid, n / campaigns, start_ms, spec.due_rate.map(|r| r / campaigns as f64))
            .await?;
        cids.push(cid);
    }
    let owned = match sim {
        Some(_) => None,
        None => Some(common::start_sim(spec.human, spec.api_latency).await?),
    };
    let sim = sim.or(owned.as_ref()).expect("a simulator");
    let cb_addr = format!("127.0.0.1:{}", common::free_port());
    let public = format!("http://{cb_addr}");
    let cb = common::serve("callbacks", &url, &sim.base_url(), &public, &cb_addr, &[])?;
    common::wait_healthy(&cb_addr).await?;
    for &c in &cids {
        store.campaigns_set_status(c, dialer_core::domain::CampaignStatus::Running, None).await?;
    }
    let d_addr = format!("127.0.0.1:{}", common::free_port());
    let (c0, _) = common::db_counters(&store).await?;
    let (pg0, rv0) = (common::postgres_cpu_secs(), common::row_versions(&store).await?);
    let dialer = common::serve("dialer", &url, &sim.base_url(), &public, &d_addr, &spec.env)?;
    let (cb_rss, cb_peak) = common::rss_sampler(cb.pid());

    // Run until every contact is dialled, or the window (from the first create) has passed + 1 s.
    let t0 = Instant::now();
    let mut first: Option<Instant> = None;
    let limit = if spec.paced { spec.seconds + 1.5 } else { spec.unpaced_limit_s };
    let mut rss: f64 = 0.0;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let created = sim.stats().calls_created;
        rss = rss.max(common::rss_mb(dialer.pid()).unwrap_or(0.0));
        if created > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if created as i64 >= n / campaigns * campaigns {
            break;
        }
        if first.is_some_and(|f| f.elapsed().as_secs_f64() > limit)
            || t0.elapsed() > Duration::from_secs(spec.deadline_s)
            || (created == 0 && t0.elapsed() > Duration::from_secs(20))
        {
            break;
        }
    }
    let cpu = common::cpu_secs(dialer.pid()).unwrap_or(0.0);
    let cb_cpu = common::cpu_secs(cb.pid()).unwrap_or(0.0);
    drop(dialer);
    cb_rss.abort();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (c1, _) = common::db_counters(&store).await?;
    let pg1 = common::postgres_cpu_secs();
    // Row counts after the callbacks service is gone too: a backend reports them when it exits (an idle
    // one only every 10 s).
    drop(cb);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rv1 = common::row_versions(&store).await?;
    let calls = sim.calls();
    let stats = sim.stats();
    anyhow::ensure!(stats.duplicate_to_url_pairs == 0, "duplicate dials: {stats:?}");
    let mut created: Vec<i64> = calls.iter().map(|c| ms(&c.created_at)).collect();
    created.sort_unstable();
    anyhow::ensure!(!created.is_empty(), "no call was created");
    let rate = if spec.paced {
        // Calls created in [first, first + window) / window.
        let t_first = created[0];
        let w = (spec.seconds * 1000.0) as i64;
        created.iter().filter(|&&t| t < t_first + w).count() as f64 / spec.seconds
    } else {
        // Steady state: between the 5th and 95th percentile creates.
        let a = created[created.len() / 20];
        let b = created[created.len() * 19 / 20];
        (created.len() as f64 * 0.9) / ((b - a).max(1) as f64 / 1000.0)
    };
    // Lag: simulator's created_at − the contact's intended due time (attributes.due), by phone.
    let due: Vec<(String, i64)> =
        sqlx::query_as("SELECT phone, (attributes->>'due')::bigint FROM contacts").fetch_all(store.pool()).await?;
    let due: std::collections::HashMap<String, i64> = due.into_iter().collect();
    let mut lags: Vec<f64> =
        calls.iter().filter_map(|c| due.get(&c.to).map(|d| (ms(&c.created_at) - d) as f64)).collect();
    let lag_max = lags.iter().cloned().fold(f64::MIN, f64::max);
    let lag_p50 = pct(&mut lags, 50.0);
    let lag_p99 = pct(&mut lags, 99.0);
    // Attempts recorded with their CallSid.
    let (recorded,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM attempts WHERE call_sid IS NOT NULL").fetch_one(store.pool()).await?;
    println!(
        "   sim created {} (peak 1-s {}), attempts with CallSid {recorded}; {:.2} commits per call (dialer + callbacks); callbacks process cpu {cb_cpu:.1} s, peak RSS {:.0} MB",
        calls.len(),
        stats.peak_calls_per_second,
        (c1 - c0) as f64 / calls.len().max(1) as f64,
        cb_peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0
    );
    // What each call cost PostgreSQL: CPU (every postgres process on the box, so only meaningful on a
    // quiet machine) and row versions written (inserted + updated, of which HOT) per table.
    let per_call = |x: f64| x / calls.len().max(1) as f64;
    let versions: Vec<String> = rv1
        .iter()
        .zip(&rv0)
        .map(|((t, i1, u1, h1), (_, i0, u0, h0))| {
            format!(
                "{t} {:.2} ins + {:.2} upd ({:.2} HOT)",
                per_call((i1 - i0) as f64),
                per_call((u1 - u0) as f64),
                per_call((h1 - h0) as f64)
            )
        })
        .collect();
    println!(
        "   PostgreSQL cpu {:.2} ms per call; row versions per call: {}",
        per_call((pg1 - pg0) * 1000.0),
        versions.join(", ")
    );
    if spec.paced && stats.peak_calls_per_second as f64 > spec.limit_cps {
        // Show the densest one-second window: which creates fell in it, and their spacing.
        let mut best = (0usize, 0usize);
        let mut j = 0;
        for i in 0..created.len() {
            while created[i] - created[j] >= 1000 {
                j += 1;
            }
            if i + 1 - j > best.1 - best.0 {
                best = (j, i + 1);
            }
        }
        let w = &created[best.0..best.1];
        let gaps: Vec<i64> = w.windows(2).map(|p| p[1] - p[0]).collect();
        println!(
            "   OVER THE LIMIT: {} creates within {} ms starting at epoch ms {}; gaps (ms) {:?}",
            w.len(),
            w[w.len() - 1] - w[0],
            w[0],
            if gaps.len() > 40 { gaps[..40].to_vec() } else { gaps }
        );
    }
    if let Some(sim) = owned {
        sim.shutdown().await;
    }
    store.pool().close().await;
    if !spec.keep_db {
        db::drop_database(server, spec.db).await?;
    }
    Ok(RunResult {
        rate,
        peak: stats.peak_calls_per_second,
        created: calls.len(),
        lag_p50_ms: lag_p50,
        lag_p99_ms: lag_p99,
        lag_max_ms: lag_max,
        dialer_cpu: cpu,
        dialer_rss: rss,
    })
}
