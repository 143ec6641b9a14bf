//! `import`: CSV contact import rate (issue 7, "Scale": ≥ 100,000 rows/s).
//!
//! 1. Generates `target/bench/contacts-<rows>.csv`: unique Japanese mobiles in local form (090/080/070),
//!    a name, a parcel number and a time zone — the columns the delivery-reschedule campaign needs.
//! 2. Per run, on a fresh database with the campaign from `examples/campaigns/delivery-reschedule-ja.toml`:
//!    - **end to end**: `dialer contacts import --campaign ID --region JP FILE` as a process, timed from
//!      spawn to exit (file read, parse, duplicate check, insert, commit);
//!    - then, on another fresh database, the **phases in-process**: `parse_csv`, the duplicate check
//!      (`contacts_existing`) and `contacts_insert_many`, each timed, with per-chunk insert times.
//! 3. Prints the median, min and max of each over the runs, in rows/s.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use dialer_core::domain::{CampaignSpec, E164};
use dialer_core::import::parse_csv;
use dialer_core::store::{NewContact, Store};

use crate::db;
use crate::stats::Summary;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rows in the generated CSV.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Region for local numbers (the CSV is Japanese: only JP makes sense).
    #[arg(long, default_value = "JP")]
    region: String,
    /// Measured runs (each on a fresh database); the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Skip the end-to-end run through the `dialer` binary.
    #[arg(long)]
    no_e2e: bool,
    /// Skip the in-process phase timings.
    #[arg(long)]
    no_phases: bool,
    /// The `dialer` binary (default: beside this one, built first with `cargo build --release -p dialer`).
    #[arg(long)]
    dialer_bin: Option<PathBuf>,
    /// Don't run `cargo build --release -p dialer` first.
    #[arg(long)]
    no_build: bool,
    /// Campaign file to import into.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/campaigns/delivery-reschedule-ja.toml"))]
    campaign: PathBuf,
    /// Name of the bench database (dropped after each run).
    #[arg(long, default_value = "bench_import")]
    database: String,
    /// Keep the last run's database instead of dropping it.
    #[arg(long)]
    keep_db: bool,
}

const PREFIXES: [&str; 3] = ["090", "080", "070"];
const SURNAMES: [&str; 8] = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村"];
const GIVEN: [&str; 8] = ["太郎", "花子", "翔太", "美咲", "健一", "陽菜", "大輔", "さくら"];

/// Row `i`'s phone in local form: prefix by `i % 3`, subscriber 1000-0000.. by `i / 3`, so every row is
/// unique and the subscriber's first digit is never 0 (which Japanese mobiles don't allow).
fn phone(i: usize) -> String {
    let sub = 10_000_000 + i / 3;
    format!("{}-{:04}-{:04}", PREFIXES[i % 3], sub / 10_000, sub % 10_000)
}

fn generate(path: &Path, rows: usize) -> anyhow::Result<()> {
    use std::io::Write;
    ensure!(rows <= 3 * 90_000_000, "at most 270M unique mobile numbers");
    // Check the scheme yields valid numbers (the parse phase then checks every row).
    for i in (0..rows).step_by(9973).chain([rows.saturating_sub(1)]) {
        E164::parse(&phone(i), Some("JP")).with_context(|| format!("generated number {} is invalid", phone(i)))?;
    }
    std::fs::create_dir_all(path.parent().expect("file in a dir"))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(w, "phone,name,parcel,timezone")?;
    for i in 0..rows {
        let parcel = 10_000_000 + i;
        writeln!(
            w,
            "{},{} {},{:04}-{:04},Asia/Tokyo",
            phone(i),
            SURNAMES[i % 8],
            GIVEN[(i / 8) % 8],
            parcel / 10_000 % 10_000,
            parcel % 10_000
        )?;
    }
    w.flush()?;
    Ok(())
}

fn rate(rows: usize, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

async fn create_campaign(store: &Store, spec: &CampaignSpec) -> anyhow::Result<i64> {
    store.campaigns_insert(spec).await.context("creating the campaign")
}

async fn count(store: &Store, campaign: i64) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM contacts WHERE campaign_id = $1")
        .bind(campaign)
        .fetch_one(store.pool())
        .await?)
}

/// One end-to-end import through the CLI process; returns its wall time.
async fn run_e2e(
    args: &Args,
    dialer: &Path,
    file: &Path,
    server: &str,
    spec: &CampaignSpec,
) -> anyhow::Result<Duration> {
    let (store, url) = db::fresh(server, &args.database, 2).await?;
    let campaign = create_campaign(&store, spec).await?;
    let start = Instant::now();
    let out = tokio::process::Command::new(dialer)
        .args(["contacts", "import", "--campaign", &campaign.to_string(), "--region", &args.region])
        .arg(file)
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .with_context(|| format!("running {}", dialer.display()))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!("dialer contacts import failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let n = count(&store, campaign).await?;
    ensure!(n as usize == args.rows, "imported {n} rows, expected {}", args.rows);
    store.pool().close().await;
    Ok(took)
}

struct Phases {
    read: Duration,
    parse: Duration,
    dup_check: Duration,
    insert: Duration,
    /// Wall time of each insert chunk (as reported through `progress`).
    chunks: Vec<Duration>,
}

async fn run_phases(args: &Args, file: &Path, server: &str, spec: &CampaignSpec) -> anyhow::Result<Phases> {
    let (store, _) = db::fresh(server, &args.database, 2).await?;
    let campaign = create_campaign(&store, spec).await?;
    let required: Vec<&str> = spec.file.script.required_attributes().collect();

    let t = Instant::now();
    let bytes = std::fs::read(file)?;
    let read = t.elapsed();

    let t = Instant::now();
    let zoning = store.campaigns_get(campaign).await?.zoning();
    let parsed = parse_csv(&bytes, Some(&args.region), &required, &zoning);
    let parse = t.elapsed();
    ensure!(parsed.errors.is_empty(), "{} invalid rows, first: {}", parsed.errors.len(), parsed.errors[0]);
    ensure!(parsed.rows.len() == args.rows, "parsed {} rows", parsed.rows.len());

    // The CLI checks the campaign's existing numbers before inserting; time it the same way.
    let phones: Vec<_> = parsed.rows.iter().map(|r| r.contact.phone.clone()).collect();
    let t = Instant::now();
    let refs: Vec<&str> = parsed.rows.iter().filter_map(|r| r.contact.external_id.as_deref()).collect();
    let (existing, existing_refs) = store.contacts_existing(campaign, &phones, &refs).await?;
    let dup_check = t.elapsed();
    ensure!(existing.is_empty() && existing_refs.is_empty());
    drop(refs);
    drop(phones);

    let rows: Vec<NewContact> = parsed.rows.into_iter().map(|r| r.contact).collect();
    let mut marks = Vec::new();
    let t = Instant::now();
    let n = store.contacts_insert_many(campaign, &rows, |_| marks.push(t.elapsed())).await?;
    let insert = t.elapsed();
    ensure!(n as usize == args.rows, "inserted {n} rows");
    let chunks = marks.iter().scan(Duration::ZERO, |prev, &m| Some(m - std::mem::replace(prev, m))).collect();
    store.pool().close().await;
    Ok(Phases { read, parse, dup_check, insert, chunks })
}

fn report(label: &str, rows: usize, times: &[Duration]) {
    let secs: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
    let rates: Vec<f64> = times.iter().map(|d| rate(rows, *d)).collect();
    let s = Summary::of(&secs);
    println!(
        "{label:<24} rows/s {}; seconds: median {:.3} (min {:.3}, max {:.3})",
        Summary::of(&rates),
        s.median,
        s.min,
        s.max
    );
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    let target = db::target_dir()?;
    let file = target.join("bench").join(format!("contacts-{}.csv", args.rows));
    let t = Instant::now();
    generate(&file, args.rows)?;
    let size = std::fs::metadata(&file)?.len();
    eprintln!("generated {} ({} rows, {:.1} MB) in {:.2?}", file.display(), args.rows, size as f64 / 1e6, t.elapsed());

    let text =
        std::fs::read_to_string(&args.campaign).with_context(|| format!("reading {}", args.campaign.display()))?;
    let spec = CampaignSpec::parse(&text, &args.campaign.to_string_lossy()).map_err(|e| anyhow::anyhow!("{e}"))?;

    let dialer = args.dialer_bin.clone().unwrap_or_else(|| target.join("release").join("dialer"));
    if !args.no_e2e && !args.no_build && args.dialer_bin.is_none() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("building the dialer: {cargo} build --release -p dialer");
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "-p", "dialer"])
            .env("CARGO_TARGET_DIR", &target)
            .status()?;
        ensure!(status.success(), "cargo build --release -p dialer failed");
    }

    let server = db::server_url().await?;
    println!("machine: {}; load average before: {}", machine(), load());
    println!(
        "postgres: {} (shared_buffers {}, synchronous_commit {}, wal_level {}, max_wal_size {})",
        db::setting(&server, "server_version").await,
        db::setting(&server, "shared_buffers").await,
        db::setting(&server, "synchronous_commit").await,
        db::setting(&server, "wal_level").await,
        db::setting(&server, "max_wal_size").await,
    );

    let mut e2e = Vec::new();
    let mut phases = Vec::new();
    for run in 1..=args.runs {
        if !args.no_e2e {
            let d = run_e2e(&args, &dialer, &file, &server, &spec).await?;
            eprintln!(
                "run {run}: end to end {:.3} s = {:.0} rows/s (load {})",
                d.as_secs_f64(),
                rate(args.rows, d),
                load()
            );
            e2e.push(d);
        }
        if !args.no_phases {
            let p = run_phases(&args, &file, &server, &spec).await?;
            eprintln!(
                "run {run}: read {:.3} s, parse {:.3} s, dup check {:.3} s, insert {:.3} s ({} chunks) (load {})",
                p.read.as_secs_f64(),
                p.parse.as_secs_f64(),
                p.dup_check.as_secs_f64(),
                p.insert.as_secs_f64(),
                p.chunks.len(),
                load()
            );
            phases.push(p);
        }
    }
    if !args.keep_db {
        db::drop_database(&server, &args.database).await?;
    }

    println!("\nimport of {} rows, {} run(s), load average after: {}", args.rows, args.runs, load());
    if !e2e.is_empty() {
        report("end to end (CLI)", args.rows, &e2e);
    }
    if !phases.is_empty() {
        let col = |f: fn(&Phases) -> Duration| phases.iter().map(f).collect::<Vec<_>>();
        report("  read file", args.rows, &col(|p| p.read));
        report("  parse_csv", args.rows, &col(|p| p.parse));
        report("  duplicate check", args.rows, &col(|p| p.dup_check));
        report("  contacts_insert_many", args.rows, &col(|p| p.insert));
        // Chunk times over all runs: does inserting get slower as the table and its indexes grow?
        let per = |cs: &[Duration]| Summary::of(&cs.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>());
        let all: Vec<Duration> = phases.iter().flat_map(|p| p.chunks.iter().copied()).collect();
        let quarter = |q: usize| -> Vec<Duration> {
            phases
                .iter()
                .flat_map(|p| {
                    let n = p.chunks.len();
                    p.chunks[q * n / 4..(q + 1) * n / 4].to_vec()
                })
                .collect()
        };
        if all.len() >= 4 {
            println!(
                "  insert chunk ms: all {:.1} median (min {:.1}, max {:.1}); first quarter median {:.1}, last quarter median {:.1}",
                per(&all).median,
                per(&all).min,
                per(&all).max,
                per(&quarter(0)).median,
                per(&quarter(3)).median
            );
        }
    }
    Ok(())
}
