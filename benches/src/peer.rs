//! Peer comparison: our dial pipeline against the official Twilio helper library for Python (`twilio` from
//! PyPI, unmodified) creating calls in a loop, the way a seed script dials, on the same simulator at
//! simulated API latencies.
//!
//! For each latency in `--latencies-ms`, ONE in-process simulator (its `api_latency`: half the round trip
//! before a REST request is handled, half before it is answered; never throttles, every call busy) serves
//! in turn:
//! - `benches/peer/twilio_loop.py --mode sequential`: `client.calls.create(...)` back to back for `--seconds`;
//! - `--mode pool`: the same from a ThreadPoolExecutor of `--threads` threads (a `Client` each);
//! - our pipeline: `benches dial`'s unpaced run (ACCOUNT_CPS and campaign cps 100,000; `dialer serve --role
//!   callbacks` + `--role dialer`, fresh database `bench_peer`) dialling `--contacts` contacts, its rate the
//!   steady state between the 5th and 95th percentile creates. TWILIO_MAX_CONCURRENT_REQUESTS is left at the
//!   dialer's default (set it with `--env` to compare).
//!
//! Each phase dials its own numbers (the simulator's record is checked for duplicate (To, Url) pairs and
//! cleared between phases). Printed per latency and run: calls/s of each, ours/sequential and ours/pool,
//! load average before/after; then median and spread over `--runs`.
//!
//! Needs a Python that can `import twilio`: `target/pyenv/bin/python` (scripts/test makes it) or `python3`.
//!
//! ```text
//! benches peer                                                   # latencies 0,150,500 ms, 3 runs
//! benches peer --latencies-ms 0,150 --seconds 5 --contacts 5000 --runs 1
//! benches peer --latencies-ms 150 --threads 64 --env TWILIO_MAX_CONCURRENT_REQUESTS=64
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args as ClapArgs;
use dialer_sim::SimHandle;
use serde_json::Value;

use crate::common::{self, loadavg};
use crate::db;
use crate::dial::{self, Spec, UNLIMITED};
use crate::stats::Summary;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Simulated REST round trips to Twilio, milliseconds; one simulator each.
    #[arg(long, value_delimiter = ',', default_value = "0,150,500")]
    latencies_ms: Vec<u64>,
    /// How long each Python loop creates calls.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Threads of the Python `pool` mode.
    #[arg(long, default_value_t = 32)]
    threads: usize,
    /// Contacts our pipeline dials (all of them) per latency.
    #[arg(long, default_value_t = 20_000)]
    contacts: i64,
    /// Repeats of the whole thing (every latency).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Extra dialer env, KEY=VALUE (e.g. CLAIM_BATCH_SIZE=500).
    #[arg(long = "env", value_parser = dial::parse_kv)]
    env: Vec<(String, String)>,
    #[arg(long)]
    keep_db: bool,
}

/// One latency of one run.
struct Row {
    sequential: f64,
    pool: f64,
    ours: f64,
}

/// What `twilio_loop.py` printed.
struct Loop {
    calls: u64,
    errors: u64,
    elapsed_s: f64,
    rate: f64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(!args.latencies_ms.is_empty(), "--latencies-ms: at least one latency");
    anyhow::ensure!(args.runs * args.latencies_ms.len() * 2 <= 89, "too many runs × latencies for the number blocks");
    let server = db::server_url().await?;
    let python = twilio_python()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peer/twilio_loop.py");
    anyhow::ensure!(script.exists(), "{} missing", script.display());
    let version = std::process::Command::new(&python)
        .args(["-c", "import sys, twilio; print(twilio.__version__, sys.version.split()[0])"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let sink = Sink::start().await?;
    println!(
        "peer: latencies {:?} ms, python loops {} s (pool {} threads; twilio, python {version} at {}), ours {} contacts, env {:?}, runs {}",
        args.latencies_ms,
        args.seconds,
        args.threads,
        python.display(),
        args.contacts,
        args.env,
        args.runs
    );
    let mut env = vec![("ACCOUNT_CPS".to_string(), UNLIMITED.to_string())];
    env.extend(args.env.iter().cloned());
    let mut rows: Vec<Vec<Row>> = args.latencies_ms.iter().map(|_| Vec::new()).collect();
    for run in 1..=args.runs {
        for (li, &latency) in args.latencies_ms.iter().enumerate() {
            let before = loadavg();
            let sim = common::start_sim(false, Duration::from_millis(latency)).await?;
            // A block of a million numbers per Python loop: distinct across modes, latencies and runs.
            let block = |mode: usize| 10_000_000 + (((run - 1) * args.latencies_ms.len() + li) * 2 + mode) * 1_000_000;
            let seq = python_loop(&python, &script, &sim, &sink, &args, "sequential", block(0)).await?;
            let pool = python_loop(&python, &script, &sim, &sink, &args, "pool", block(1)).await?;
            let spec = Spec {
                db: "bench_peer",
                campaign_cps: UNLIMITED,
                limit_cps: UNLIMITED,
                paced: false,
                contacts: args.contacts,
                seconds: args.seconds,
                due_rate: None,
                campaigns: 1,
                async_commit: false,
                keep_db: args.keep_db,
                env: env.clone(),
                unpaced_limit_s: 900.0,
                deadline_s: 1200,
                human: false,
                api_latency: Duration::from_millis(latency),
            };
            sim.reset();
            let ours = dial::one(&server, &spec, Some(&sim)).await?;
            sim.shutdown().await;
            if ours.created as i64 != args.contacts {
                println!("   OURS DIALLED ONLY {} of {} contacts", ours.created, args.contacts);
            }
            println!(
                "run {run} latency {latency} ms: sequential {:.1} calls/s ({} in {:.1} s{}), pool {:.1} calls/s ({} in {:.1} s{}), ours {:.1} calls/s ({} created); ours/sequential {:.1}x, ours/pool {:.2}x; load {before} -> {}",
                seq.rate,
                seq.calls,
                seq.elapsed_s,
                errors(&seq),
                pool.rate,
                pool.calls,
                pool.elapsed_s,
                errors(&pool),
                ours.rate,
                ours.created,
                ours.rate / seq.rate,
                ours.rate / pool.rate,
                loadavg()
            );
            rows[li].push(Row { sequential: seq.rate, pool: pool.rate, ours: ours.rate });
        }
    }
    for (li, latency) in args.latencies_ms.iter().enumerate() {
        let r = &rows[li];
        let s = |f: fn(&Row) -> f64| Summary::of(&r.iter().map(f).collect::<Vec<_>>());
        println!("latency {latency} ms:");
        println!("   sequential calls/s: {}", fmt(s(|r| r.sequential), 1));
        println!("   pool calls/s:       {}", fmt(s(|r| r.pool), 1));
        println!("   ours calls/s:       {}", fmt(s(|r| r.ours), 1));
        println!("   ours/sequential:    {}", fmt(s(|r| r.ours / r.sequential), 2));
        println!("   ours/pool:          {}", fmt(s(|r| r.ours / r.pool), 2));
    }
    sink.stop();
    Ok(())
}

/// Like [`Summary`]'s `Display`, with `prec` decimals (rates of a few calls/s and ratios need them).
fn fmt(s: Summary, prec: usize) -> String {
    format!(
        "median {:.prec$} (min {:.prec$}, max {:.prec$}, ±{:.1} %, n={})",
        s.median,
        s.min,
        s.max,
        s.spread_pct(),
        s.n
    )
}

fn errors(l: &Loop) -> String {
    if l.errors == 0 {
        String::new()
    } else {
        format!(", {} ERRORS", l.errors)
    }
}

/// `twilio_loop.py --mode MODE` against `sim` (record cleared first), numbers from `first_number`; checks
/// that the simulator created exactly what the script counted, with no duplicate (To, Url) pair.
async fn python_loop(
    python: &Path,
    script: &Path,
    sim: &SimHandle,
    sink: &Sink,
    args: &Args,
    mode: &str,
    first_number: usize,
) -> anyhow::Result<Loop> {
    sim.reset();
    let cfg = sim.config();
    let out = tokio::process::Command::new(python)
        .arg(script)
        .args(["--base-url", &sim.base_url(), "--account-sid", &cfg.account_sid, "--auth-token", &cfg.auth_token])
        .args(["--mode", mode, "--threads", &args.threads.to_string(), "--seconds", &args.seconds.to_string()])
        .args(["--first-number", &first_number.to_string()])
        .args(["--url", &format!("{}/twiml", sink.base), "--status-callback", &format!("{}/status", sink.base)])
        // Region / edge settings would make the library rewrite the host name.
        .env_remove("TWILIO_REGION")
        .env_remove("TWILIO_EDGE")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs_f64(args.seconds + 120.0), out)
        .await
        .context("twilio_loop.py did not finish")?
        .context("running twilio_loop.py")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "twilio_loop.py --mode {mode} failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).with_context(|| format!("twilio_loop.py printed {stdout}"))?;
    let l = Loop {
        calls: v["calls"].as_u64().context("calls")?,
        errors: v["errors"].as_u64().context("errors")?,
        elapsed_s: v["elapsed_s"].as_f64().context("elapsed_s")?,
        rate: v["calls_per_s"].as_f64().context("calls_per_s")?,
    };
    anyhow::ensure!(l.calls > 0, "twilio_loop.py --mode {mode} created no call: {v}");
    if l.errors > 0 {
        println!("   python {mode}: {} errors, first {}", l.errors, v["first_error"]);
    }
    let stats = sim.stats();
    anyhow::ensure!(stats.duplicate_to_url_pairs == 0, "python {mode}: duplicate dials: {stats:?}");
    anyhow::ensure!(
        stats.calls_created as u64 == l.calls || l.errors > 0,
        "python {mode}: the script counted {} calls, the simulator created {}",
        l.calls,
        stats.calls_created
    );
    Ok(l)
}

/// A Python that can `import twilio`: `target/pyenv/bin/python` (where scripts/test installs it), then
/// `python3` (as testkit's `twilio_python`).
fn twilio_python() -> anyhow::Result<PathBuf> {
    let pyenv = db::target_dir()?.join("pyenv");
    let mut tried = Vec::new();
    for py in [pyenv.join("bin/python"), PathBuf::from("python3")] {
        match std::process::Command::new(&py).args(["-c", "import twilio"]).output() {
            Ok(o) if o.status.success() => return Ok(py),
            Ok(_) => tried.push(format!("{} cannot import twilio", py.display())),
            Err(e) => tried.push(format!("{}: {e}", py.display())),
        }
    }
    anyhow::bail!(
        "no Python with the twilio helper library ({}). Install it: `python3 -m venv {p} && {p}/bin/pip install twilio` \
         (scripts/test does this)",
        tried.join("; "),
        p = pyenv.display()
    )
}

/// Where the Python calls' `Url` and `StatusCallback` point: answers every request 200, empty.
struct Sink {
    base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    async fn start() -> anyhow::Result<Self> {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", l.local_addr()?);
        let app = axum::Router::new().fallback(|| async { "" });
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Ok(Self { base, task })
    }

    fn stop(self) {
        self.task.abort();
    }
}
