//! `dialer demo`: the whole product on one machine. Finds or starts PostgreSQL, migrates a fresh demo
//! database, starts the Twilio simulator, the callbacks service and the dialer in this process, creates the
//! Japanese delivery-reschedule campaign with generated contacts in several time zones, runs it to
//! completion with a live progress view, and checks its totals against the simulator's record.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use chrono_tz::Tz;
use clap::Args;
use dialer_core::config::Config;
use dialer_core::domain::compliance::ContactZone;
use dialer_core::domain::{CampaignSpec, CampaignStatus, E164};
use dialer_core::store::{NewContact, Store};
use dialer_sim::{self as sim, DigitDist, OutcomeMix, SecsRange, SimConfig};
use indicatif::{ProgressBar, ProgressStyle};
use localpg as pg;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::estimate;
use super::serve::{self, Role};
use super::{CliResult, Failure};

const CAMPAIGN: &str = include_str!("../../../examples/campaigns/delivery-reschedule-ja.toml");
const DEMO_DATABASE: &str = "dialer_demo";
/// The least pacing margin the demo runs with (see where it is set).
const DEMO_PACING_MARGIN: Duration = Duration::from_millis(20);
/// Zones the demo draws contacts from; only those inside the calling window now (and for the next hour)
/// are used, so the demo can finish while every call still starts inside its contact's window.
const ZONES: [&str; 16] = [
    "Asia/Tokyo",
    "Asia/Seoul",
    "Asia/Shanghai",
    "Asia/Kolkata",
    "Asia/Dubai",
    "Europe/Moscow",
    "Europe/Berlin",
    "Europe/London",
    "Atlantic/Azores",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Pacific/Auckland",
];
const FAMILY: [&str; 8] = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村"];
const GIVEN: [&str; 8] = ["太郎", "花子", "健", "さくら", "翔", "陽菜", "大輔", "美咲"];

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Contacts to generate.
    #[arg(long, default_value_t = 10_000)]
    contacts: usize,
    /// Account calls per second (the simulator queues beyond it, the dialer paces to it).
    #[arg(long, default_value_t = 100.0)]
    cps: f64,
    /// Simulated time runs this many times faster (ring and talk time, and the campaign's retry delays).
    #[arg(long, default_value_t = 200.0)]
    speed: f64,
    /// Seed for the simulator's outcomes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the services and /metrics running after the campaign, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
    /// Also write the estimate against the run (finish time, calls, cost and their errors) as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

const DEMO_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";

pub async fn run(args: DemoArgs) -> CliResult {
    let base = Config::from_env().context("configuration")?;
    eprintln!("demo: finding PostgreSQL…");
    let server = match &base.database_url {
        Some(u) => secrecy::ExposeSecret::expose_secret(u).to_string(),
        None => pg::find_or_start(None, std::path::Path::new("target/pg"))
            .await
            .map_err(|e| Failure::NoDatabase(e.to_string()))?,
    };
    let admin = pg::with_database(&server, "postgres");
    recreate_database(&admin, DEMO_DATABASE).await?;
    let db_url = pg::with_database(&server, DEMO_DATABASE);
    let store = Store::connect(&db_url, 40).await.map_err(|e| Failure::NoDatabase(e.to_string()))?;
    store.migrate().await.context("migrations")?;

    // The simulator: a realistic answer mix, seeded; a press-1-then-slot keypress profile.
    let auth_token = "demo-auth-token".to_string();
    let sim_config = SimConfig {
        account_sid: DEMO_ACCOUNT_SID.into(),
        auth_token: auth_token.clone(),
        cps: args.cps,
        max_concurrent_requests: 400,
        seed: Some(args.seed),
        speed: args.speed,
        outcomes: OutcomeMix { human: 62.0, machine: 12.0, busy: 9.0, no_answer: 11.0, failed: 3.0, invalid: 3.0 },
        ring_time: SecsRange { min: 3.0, max: 20.0 },
        digits: "1:70,2:10,3:8,0:3,9:2,none:7".parse::<DigitDist>().expect("valid digits"),
        ..SimConfig::default()
    };
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the simulator")?;
    let sim = sim::spawn(sim_config.clone(), sim_listener).await.context("starting the simulator")?;

    let listener = tokio::net::TcpListener::bind(base.listen_addr)
        .await
        .or(tokio::net::TcpListener::bind("127.0.0.1:0").await)
        .context("binding the callbacks listener")?;
    let public = format!("http://{}", listener.local_addr().context("listener address")?);
    let config = Config {
        database_url: Some(SecretString::from(db_url.clone())),
        twilio_account_sid: Some(DEMO_ACCOUNT_SID.into()),
        twilio_auth_token: Some(SecretString::from(auth_token)),
        twilio_api_base_url: sim.base_url(),
        public_base_url: Some(public.clone()),
        account_cps: args.cps,
        // The simulator counts a call when its handler runs, in this same process: a POST's trip includes
        // this runtime's queue, tens of ms on a busy 2-core box, where Twilio's would be a network's
        // jitter. The wider window margin covers that, for 2 % of the rate.
        pacing_margin: base.pacing_margin.max(DEMO_PACING_MARGIN),
        max_concurrent_requests: 64,
        // The demo needs no management API of its own; any free port, so it never collides with a real one.
        api_listen_addr: "127.0.0.1:0".parse().expect("valid address"),
        ..base
    };
    config.validate().context("demo configuration")?;

    // The example campaign, with its retry delays compressed by the simulator's speed.
    let mut spec = CampaignSpec::parse(CAMPAIGN, "delivery-reschedule-ja.toml").expect("the example parses");
    let f = &mut spec.file;
    f.cps = args.cps;
    f.max_in_flight = (args.cps * 4.0).max(50.0) as i32;
    for r in
        [&mut f.retry.busy, &mut f.retry.no_answer, &mut f.retry.machine, &mut f.retry.failed, &mut f.retry.no_result]
    {
        r.delay_s = ((r.delay_s as f64) / args.speed).ceil() as i64;
    }
    let spec = CampaignSpec::validate(spec.file).expect("still valid");
    let zones = open_zones(&spec);
    let campaign = store.campaigns_insert(&spec).await.context("creating the campaign")?;
    let contacts = generate(args.contacts, &zones);
    // The dry run first, as a user would: the same campaign and contacts, the simulator's mix.
    let estimate = estimate::before(&spec, campaign, &contacts, &sim_config, &config)?;
    store.contacts_insert_many(campaign, &contacts, |_| {}).await.context("importing contacts")?;
    eprintln!(
        "demo: campaign {campaign} \"{}\" with {} contacts in {} ({}), account CPS {}, simulated time ×{}",
        spec.file.name,
        contacts.len(),
        zones.len(),
        zones.iter().map(|z| z.name()).collect::<Vec<_>>().join(", "),
        args.cps,
        args.speed
    );
    eprintln!("demo: metrics at {public}/metrics, simulator at {}/sim/stats", sim.base_url());
    store.campaigns_set_status(campaign, CampaignStatus::Running, None).await.context("starting the campaign")?;

    let shutdown = CancellationToken::new();
    let services = tokio::spawn(serve::serve(
        config,
        store.clone(),
        Role::All,
        shutdown.clone(),
        Some(listener),
        std::future::pending(),
    ));

    let started = Instant::now();
    let report = progress(&store, &sim, campaign, args.contacts as u64, &shutdown).await?;
    let elapsed = started.elapsed();
    // The SMS fallback goes out as contacts end; let the last texts leave before counting.
    let texts_from = Instant::now();
    while store.messages_counts(campaign).await.map(|m| m.queued > 0).unwrap_or(false)
        && texts_from.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sim.wait_idle(Duration::from_secs(30)).await;
    // Let the last callbacks land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = store.campaigns_report(campaign).await.unwrap_or(report);
    let ok = summary(&store, &sim, campaign, &report, elapsed, args.cps).await?;
    let accurate = estimate::against_run(&store, &sim, campaign, &estimate, elapsed, args.json.as_deref()).await?;

    if args.keep_running {
        eprintln!("demo: services keep running (metrics at {public}/metrics); Ctrl-C to stop");
        serve::shutdown_signal().await;
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), services).await;
    if !ok {
        return Err(Failure::Other(anyhow::anyhow!("the demo's totals do not match the simulator's record")));
    }
    if !accurate {
        return Err(Failure::Other(anyhow::anyhow!("the estimate is further from the run than its bounds allow")));
    }
    Ok(())
}

async fn recreate_database(admin: &str, name: &str) -> CliResult {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin).await.context("connecting to PostgreSQL")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .context("dropping the old demo database")?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .context("creating the demo database")?;
    Ok(())
}

/// Zones whose calling window is open now and stays open for the next hour.
fn open_zones(spec: &CampaignSpec) -> Vec<Tz> {
    let now = Utc::now();
    let later = now + chrono::Duration::hours(1);
    let open: Vec<Tz> = ZONES
        .iter()
        .map(|z| z.parse::<Tz>().expect("known zone"))
        .filter(|tz| spec.window.is_open(*tz, now) && spec.window.is_open(*tz, later))
        .collect();
    if open.is_empty() {
        vec![spec.timezone]
    } else {
        open
    }
}

fn generate(n: usize, zones: &[Tz]) -> Vec<NewContact> {
    (0..n)
        .map(|i| {
            // 090-1000-0000 upwards: valid Japanese mobile numbers, one per contact.
            let local = format!("090{:08}", 10_000_000 + i);
            let phone = E164::parse(&local, Some("JP")).expect("generated numbers are valid");
            let tz = zones[i % zones.len()];
            let attributes = BTreeMap::from([
                ("name".to_string(), format!("{} {}", FAMILY[i % FAMILY.len()], GIVEN[(i / 8) % GIVEN.len()])),
                ("parcel".to_string(), format!("{:04}-{:04}", 1000 + i / 10_000, i % 10_000)),
            ]);
            let zone = ContactZone::given(tz.into());
            NewContact { phone, zone, external_id: Some(format!("P{:08}", i)), attributes }
        })
        .collect()
}

async fn progress(
    store: &Store,
    sim: &sim::SimHandle,
    campaign: i64,
    total: u64,
    shutdown: &CancellationToken,
) -> anyhow::Result<dialer_core::store::CampaignReport> {
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} contacts done  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut last_calls = 0usize;
    let mut last_at = Instant::now();
    let mut last_print = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = store.campaigns_report(campaign).await?;
        let done: i64 = r.by_state.iter().filter(|(s, _)| s.is_terminal()).map(|(_, n)| n).sum();
        let calls = sim.stats().calls_created;
        let rate = (calls - last_calls) as f64 / last_at.elapsed().as_secs_f64();
        last_calls = calls;
        last_at = Instant::now();
        let reached: i64 = ["answered_result", "answered_no_result", "opted_out"]
            .iter()
            .map(|o| r.by_outcome.get(*o).copied().unwrap_or(0))
            .sum();
        let finished: i64 = r.by_outcome.values().sum();
        let answer_rate = if finished > 0 { 100.0 * reached as f64 / finished as f64 } else { 0.0 };
        let msg = format!("{calls} calls, {rate:.0} calls/s, answer rate {answer_rate:.0}%, in flight {}", r.in_flight);
        if tty {
            bar.set_position(done as u64);
            bar.set_message(msg);
        } else if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            eprintln!("demo: {done}/{total} contacts done, {msg}");
        }
        if r.status == CampaignStatus::Completed
            || (done as u64 >= total && r.in_flight == 0)
            || shutdown.is_cancelled()
        {
            bar.finish_and_clear();
            return Ok(r);
        }
    }
}

async fn summary(
    store: &Store,
    sim: &sim::SimHandle,
    campaign: i64,
    r: &dialer_core::store::CampaignReport,
    elapsed: Duration,
    cps: f64,
) -> anyhow::Result<bool> {
    let stats = sim.stats();
    let calls = sim.calls();
    let results = store.results_export(campaign).await?;
    let attempts_made: i64 = results.iter().map(|x| x.attempts as i64).sum();
    println!("\n=== demo summary: campaign {} \"{}\" ({}) ===", r.id, r.name, r.status);
    println!("contacts            {}", r.contacts);
    for (k, v) in &r.by_state {
        println!("  state   {k:<22} {v}");
    }
    for (k, v) in &r.by_outcome {
        println!("  outcome {k:<22} {v}");
    }
    for (k, v) in &r.by_result {
        println!("  result  {k:<22} {v}");
    }
    let secs = elapsed.as_secs_f64();
    println!("calls requested     {} (attempts made by contacts: {attempts_made})", r.calls_requested);
    println!("elapsed             {secs:.1} s, {:.1} calls/s achieved", stats.calls_created as f64 / secs);
    println!("peak calls in any one-second window: {} (CPS limit {cps})", stats.peak_calls_per_second);
    println!(
        "simulator record    {} calls, {} (To, Url) pairs dialled twice",
        calls.len(),
        stats.duplicate_to_url_pairs
    );

    let mut ok = true;
    let mut check = |what: &str, good: bool| {
        println!("  [{}] {what}", if good { "ok" } else { "MISMATCH" });
        ok &= good;
    };
    check(
        &format!("calls requested ({}) = calls in the simulator's record ({})", r.calls_requested, calls.len()),
        r.calls_requested as usize == calls.len(),
    );
    check(
        &format!("attempts made by contacts ({attempts_made}) = simulator calls ({})", calls.len()),
        attempts_made as usize == calls.len(),
    );
    check("no attempt dialled twice", stats.duplicate_to_url_pairs == 0);
    check(
        &format!("peak one-second calls {} <= CPS {cps}", stats.peak_calls_per_second),
        stats.peak_calls_per_second as f64 <= cps,
    );
    let open: i64 = r.by_state.iter().filter(|(s, _)| !s.is_terminal()).map(|(_, n)| n).sum();
    check(&format!("every contact in a terminal state ({open} open)"), open == 0);
    // Each finished attempt's outcome against what the simulator says happened on that call.
    let mut sim_by: BTreeMap<String, i64> = BTreeMap::new();
    for c in &calls {
        *sim_by.entry(c.outcome.clone().unwrap_or_else(|| "unknown".into())).or_default() += 1;
    }
    let mut ours: BTreeMap<String, i64> = BTreeMap::new();
    for (outcome, n) in store.attempts_count_by_outcome(campaign).await? {
        let kind = match outcome.as_str() {
            "answered_result" | "answered_no_result" | "opted_out" => "human",
            "voicemail" | "machine" => "machine",
            "no_answer" => "no-answer",
            "invalid_number" => "invalid",
            other => other,
        };
        *ours.entry(kind.to_string()).or_default() += n;
    }
    for kind in sim_by.keys().chain(ours.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (a, b) = (ours.get(kind).copied().unwrap_or(0), sim_by.get(kind).copied().unwrap_or(0));
        check(&format!("calls ended {kind:<10} ours {a:>6} = simulator {b:>6}"), a == b);
    }
    Ok(ok)
}
