//! Dial throughput, pacing and scheduler lag, end to end over real processes:
//! PostgreSQL ← `dialer serve --role dialer` → in-process simulator → `dialer serve --role callbacks`.
//!
//! ```text
//! benches dial --contacts 60000                                  # throughput, CPS unlimited
//! benches dial --cps 100 --seconds 60                            # pacing (ACCOUNT_CPS = campaign cps = 100)
//! benches dial --cps 1000 --seconds 60 --due-rate 900            # scheduler lag: contacts fall due at 900/s
//! ```

use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Args as ClapArgs;

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
    /// Simulated outcome: busy (default; three callbacks, no TwiML) or human.
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
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s}: not KEY=VALUE"))
}

struct RunResult {
    rate: f64,
    peak: usize,
    created: usize,
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    lag_max_ms: f64,
    dialer_cpu: f64,
    dialer_rss: f64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let server = db::server_url().await?;
    let paced = args.cps.is_some();
    let cps = args.cps.unwrap_or(100_000.0);
    let n = args.contacts.unwrap_or(if paced { (cps * args.seconds * 1.1) as i64 + 1000 } else { 60_000 });
    println!(
        "dial: cps {} contacts {n} window {}s due_rate {:?} margin {:?} env {:?} runs {}",
        if paced { cps.to_string() } else { "unlimited".into() },
        args.seconds,
        args.due_rate,
        args.margin_ms,
        args.env,
        args.runs
    );
    let mut results = Vec::new();
    for run in 1..=args.runs {
        let before = loadavg();
        let r = one(&server, &args, cps, paced, n).await?;
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

async fn one(server: &str, args: &Args, cps: f64, paced: bool, n: i64) -> anyhow::Result<RunResult> {
    let (store, url) = db::fresh(server, "bench_dial", 4).await?;
    if args.async_commit {
        sqlx::query("ALTER DATABASE bench_dial SET synchronous_commit = off").execute(store.pool()).await?;
    }
    let start_ms = Utc::now().timestamp_millis() + if args.due_rate.is_some() { 3000 } else { -1000 };
    let mut cids = Vec::new();
    for _ in 0..args.campaigns {
        let cid = common::campaign(&store, cps, 10_000_000).await?;
        common::load_contacts(
            &store,
            cid,
            n / args.campaigns,
            start_ms,
            args.due_rate.map(|r| r / args.campaigns as f64),
        )
        .await?;
        cids.push(cid);
    }
    let sim = common::start_sim(args.human).await?;
    let cb_addr = format!("127.0.0.1:{}", common::free_port());
    let public = format!("http://{cb_addr}");
    let cb = common::serve("callbacks", &url, &sim.base_url(), &public, &cb_addr, &[])?;
    common::wait_healthy(&cb_addr).await?;
    let mut extra = vec![("ACCOUNT_CPS".to_string(), cps.to_string())];
    if let Some(m) = args.margin_ms {
        extra.push(("PACING_MARGIN_MS".into(), m.to_string()));
    }
    if !paced {
        extra.push(("TWILIO_MAX_CONCURRENT_REQUESTS".into(), "256".into()));
    }
    extra.extend(args.env.iter().cloned());
    for &c in &cids {
        store.campaigns_set_status(c, dialer_core::domain::CampaignStatus::Running, None).await?;
    }
    let d_addr = format!("127.0.0.1:{}", common::free_port());
    let (c0, _) = common::db_counters(&store).await?;
    let dialer = common::serve("dialer", &url, &sim.base_url(), &public, &d_addr, &extra)?;
    let (cb_rss, cb_peak) = common::rss_sampler(cb.pid());

    // Run until every contact is dialled, or the window (from the first create) has passed + 1 s.
    let t0 = Instant::now();
    let mut first: Option<Instant> = None;
    let limit = if paced { args.seconds + 1.5 } else { 300.0 };
    let mut rss: f64 = 0.0;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let created = sim.stats().calls_created;
        rss = rss.max(common::rss_mb(dialer.pid()).unwrap_or(0.0));
        if created > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if created as i64 >= n / args.campaigns * args.campaigns {
            break;
        }
        if first.is_some_and(|f| f.elapsed().as_secs_f64() > limit)
            || t0.elapsed() > Duration::from_secs(600)
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
    let calls = sim.calls();
    let stats = sim.stats();
    anyhow::ensure!(stats.duplicate_to_url_pairs == 0, "duplicate dials: {stats:?}");
    let mut created: Vec<i64> = calls.iter().map(|c| ms(&c.created_at)).collect();
    created.sort_unstable();
    anyhow::ensure!(!created.is_empty(), "no call was created");
    let rate = if paced {
        // Calls created in [first, first + window) / window.
        let t_first = created[0];
        let w = (args.seconds * 1000.0) as i64;
        created.iter().filter(|&&t| t < t_first + w).count() as f64 / args.seconds
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
    if paced && stats.peak_calls_per_second as f64 > cps {
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
    drop(cb);
    sim.shutdown().await;
    store.pool().close().await;
    if !args.keep_db {
        db::drop_database(server, "bench_dial").await?;
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
