//! Shared setup for the engine benchmarks: a campaign with a bulk-loaded backlog, the in-process
//! simulator, `dialer serve` child processes, load average and RSS.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use dialer_core::domain::CampaignSpec;
use dialer_core::store::Store;
use dialer_sim::{self as sim, OutcomeMix, SecsRange, SimConfig, SimHandle};

pub const ACCOUNT_SID: &str = "AC11111111111111111111111111111111";
pub const AUTH_TOKEN: &str = "bench-auth-token";

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// VmRSS of a process in MB.
pub fn rss_mb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// User+system CPU seconds of a process so far.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A campaign open all day in UTC (00:00–23:59), one attempt per contact, no retries, no limits.
pub fn campaign_toml(cps: f64, max_in_flight: i64) -> String {
    format!(
        r#"
name = "bench"
caller_id = "+14155550199"
timezone = "UTC"
cps = {cps}
max_in_flight = {max_in_flight}
max_attempts = 1
ring_timeout_s = 20
[window]
start = "00:00"
end = "23:59"
[retry]
busy = {{ delay_s = 1, max = 0 }}
no_answer = {{ delay_s = 1, max = 0 }}
machine = {{ delay_s = 1, max = 0 }}
failed = {{ delay_s = 1, max = 0 }}
no_result = {{ delay_s = 1, max = 0 }}
[script]
language = "en-US"
variables = ["name"]
[script.menus.main]
say = "Hi {{name}}, press 1."
[script.menus.main.options]
"1" = {{ result = "confirmed" }}
"#
    )
}

/// Inserts a (draft) campaign and returns its id.
pub async fn campaign(store: &Store, cps: f64, max_in_flight: i64) -> anyhow::Result<i64> {
    let spec = CampaignSpec::parse(&campaign_toml(cps, max_in_flight), "bench.toml")?;
    Ok(store.campaigns_insert(&spec).await?)
}

/// Bulk-loads `n` pending contacts (`+8190` + (20,000,000 + g), valid JP mobiles) in one `INSERT … SELECT
/// generate_series`. Contact `g` is due at `due_start + g / due_rate` seconds (all due `due_start` if
/// `due_rate` is None); the intended due time is also kept in `attributes.due` (epoch ms) for lag.
pub async fn load_contacts(
    store: &Store,
    campaign_id: i64,
    n: i64,
    due_start_ms: i64,
    due_rate: Option<f64>,
) -> anyhow::Result<()> {
    let per_ms = due_rate.map(|r| 1000.0 / r).unwrap_or(0.0);
    sqlx::query(
        "INSERT INTO contacts (campaign_id, phone, attributes, next_attempt_at)
         SELECT $1, '+8190' || (20000000 + g)::text,
                jsonb_build_object('name', 'Contact ' || g, 'due', ($3 + floor(g * $4))::bigint),
                to_timestamp(($3 + floor(g * $4)) / 1000.0)
         FROM generate_series(1, $2) g",
    )
    .bind(campaign_id)
    .bind(n)
    .bind(due_start_ms as f64)
    .bind(per_ms)
    .execute(store.pool())
    .await
    .context("bulk-loading contacts")?;
    sqlx::query("ANALYZE contacts").execute(store.pool()).await?;
    Ok(())
}

/// A simulator that creates at once and never throttles (`cps` far above anything we send); every call
/// is `busy` (no TwiML fetch; one callback, `completed`, with the dialer's default call events) unless
/// `human`. Every REST request takes `api_latency` (the simulator's `--api-latency-ms`: half before it is
/// handled, half before it is answered).
pub async fn start_sim(human: bool, api_latency: Duration) -> anyhow::Result<SimHandle> {
    let outcomes = if human {
        OutcomeMix { human: 100.0, machine: 0.0, busy: 0.0, no_answer: 0.0, failed: 0.0, invalid: 0.0 }
    } else {
        OutcomeMix { human: 0.0, machine: 0.0, busy: 100.0, no_answer: 0.0, failed: 0.0, invalid: 0.0 }
    };
    let config = SimConfig {
        account_sid: ACCOUNT_SID.into(),
        auth_token: AUTH_TOKEN.into(),
        cps: 1_000_000.0,
        max_concurrent_requests: 100_000,
        api_latency,
        seed: Some(7),
        speed: 100_000.0,
        outcomes,
        ring_time: SecsRange { min: 0.1, max: 0.2 },
        talk_time: SecsRange { min: 1.0, max: 2.0 },
        ..SimConfig::default()
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    sim::spawn(config, l).await
}

/// A `dialer serve` child process; killed on drop.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn dialer_bin() -> anyhow::Result<std::path::PathBuf> {
    let p = crate::db::target_dir()?.join("release").join("dialer");
    anyhow::ensure!(p.exists(), "{} missing: cargo build --release -p dialer", p.display());
    Ok(p)
}

/// Starts `dialer serve --role ROLE` with the bench environment plus `extra`.
pub fn serve(
    role: &str,
    db_url: &str,
    api_base: &str,
    public_base: &str,
    listen: &str,
    extra: &[(String, String)],
) -> anyhow::Result<Proc> {
    let mut env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), db_url.into()),
        ("TWILIO_ACCOUNT_SID".into(), ACCOUNT_SID.into()),
        ("TWILIO_AUTH_TOKEN".into(), AUTH_TOKEN.into()),
        ("TWILIO_API_BASE_URL".into(), api_base.into()),
        ("PUBLIC_BASE_URL".into(), public_base.into()),
        ("LISTEN_ADDR".into(), listen.into()),
        ("RUST_LOG".into(), "warn".into()),
    ]);
    for (k, v) in extra {
        env.insert(k.clone(), v.clone());
    }
    let logs = std::env::var("BENCH_LOGS").is_ok();
    let child = Command::new(dialer_bin()?)
        .args(["serve", "--role", role])
        .envs(env)
        .stdin(Stdio::null())
        .stdout(if logs { Stdio::inherit() } else { Stdio::null() })
        .stderr(if logs { Stdio::inherit() } else { Stdio::null() })
        .spawn()
        .context("spawning dialer serve")?;
    Ok(Proc { child })
}

/// Waits until `addr` answers `/healthz` (or 20 s).
pub async fn wait_healthy(addr: &str) -> anyhow::Result<()> {
    let c = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = c.get(format!("http://{addr}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{addr} never became healthy")
}

/// RFC 3339 → epoch ms.
pub fn ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t).map(|t| t.timestamp_millis()).unwrap_or(0)
}

/// Percentile (0–100) of an unsorted slice, nearest rank.
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[i.clamp(1, v.len()) - 1]
}

/// (xact_commit, tup_inserted + tup_updated + tup_deleted + tup_fetched) of one database: the harness
/// prints deltas per call/callback as a count of transactions (each one a WAL flush) and row work.
pub async fn db_counters(store: &Store) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted + tup_fetched
         FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(store.pool())
    .await?)
}

/// Samples a process's RSS every 100 ms until aborted; returns a handle and the shared peak (KB).
pub fn rss_sampler(pid: u32) -> (tokio::task::JoinHandle<()>, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p = peak.clone();
    let h = tokio::spawn(async move {
        loop {
            if let Some(mb) = rss_mb(pid) {
                p.fetch_max((mb * 1024.0) as u64, std::sync::atomic::Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (h, peak)
}
/// CPU seconds used by PostgreSQL so far: every live `postgres` process (user + system) plus what the
/// postmaster has reaped from exited backends.
pub fn postgres_cpu_secs() -> f64 {
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        if comm.trim() != "postgres" {
            continue;
        }
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(i) = s.rfind(')') else { continue };
        let f: Vec<f64> = s[i + 2..].split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
        if f.len() < 15 {
            continue;
        }
        // utime, stime; the postmaster (parent not a postgres process) also carries its reaped children.
        total += f[11] + f[12];
        let parent_is_pg = std::fs::read_to_string(format!("/proc/{}/comm", f[1] as u32))
            .map(|c| c.trim() == "postgres")
            .unwrap_or(false);
        if !parent_is_pg {
            total += f[13] + f[14];
        }
    }
    total / 100.0
}

/// Row versions written so far to the tables a call touches: (table, inserted, updated, of which HOT).
pub async fn row_versions(store: &Store) -> anyhow::Result<Vec<(String, i64, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT relname::text, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
         WHERE relname IN ('attempts', 'contacts', 'call_events') ORDER BY relname",
    )
    .fetch_all(store.pool())
    .await?)
}
