//! `dialer campaign estimate ID`: a dry run that prices a campaign before it spends money (the
//! simulation is `dialer_core::estimate`); and the demo's estimate-against-the-run check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use dialer_core::config::Config;
use dialer_core::domain::{CampaignSpec, E164};
use dialer_core::estimate::{
    billed_minutes, estimate, EstimateCampaign, EstimateContact, EstimateInput, EstimateMix, EstimateReport,
    EstimateSettings, MixSource, PriceTable, SecsRange,
};
use dialer_core::store::estimate::{EstimateFailure, EstimateOptions, MixChoice};
use dialer_core::store::{NewContact, Store, StoreError};
use dialer_sim::SimConfig;
use serde::Serialize;

use super::{connect, CliResult, Failure};

#[derive(Debug, Args)]
pub struct EstimateArgs {
    pub id: i64,
    /// When dialling would start (RFC 3339); now by default.
    #[arg(long)]
    start: Option<String>,
    /// An outcome mix (TOML; fields not given keep their defaults).
    #[arg(long, conflicts_with = "learn")]
    mix: Option<PathBuf>,
    /// Learn the outcome mix from the campaign's own finished attempts (the default mix when it has
    /// fewer than 100).
    #[arg(long)]
    learn: bool,
    /// A price table (TOML, the format of core/data/prices/twilio-sample.toml); the sample by default.
    #[arg(long)]
    prices: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: EstimateArgs) -> CliResult {
    let start = match &args.start {
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| Failure::InvalidInput(format!("--start {s:?}: not an RFC 3339 time: {e}")))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| Failure::InvalidInput(format!("reading {}: {e}", p.display())))
    };
    let mix = match (&args.mix, args.learn) {
        (Some(p), _) => MixChoice::Given(Box::new(
            EstimateMix::from_toml(&read(p)?, &p.display().to_string())
                .map_err(|e| Failure::InvalidInput(e.to_string()))?,
        )),
        (None, true) => MixChoice::Learn,
        (None, false) => MixChoice::Default,
    };
    let prices = match &args.prices {
        Some(p) => PriceTable::from_toml(&read(p)?, &p.display().to_string())
            .map_err(|e| Failure::InvalidInput(e.to_string()))?,
        None => PriceTable::sample(),
    };
    let config = Config::from_env().context("configuration")?;
    let store = connect().await?;
    let options =
        EstimateOptions { start, mix, prices, account_cps: config.account_cps, pacing_margin: config.pacing_margin };
    let report = store.campaigns_estimate(args.id, options).await.map_err(|e| match e {
        EstimateFailure::Store(StoreError::NotFound(what)) => Failure::InvalidInput(format!("{what} does not exist")),
        EstimateFailure::Store(e) => Failure::Other(anyhow::Error::from(e).context("reading the campaign")),
        EstimateFailure::Input(e) => Failure::InvalidInput(e.to_string()),
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("the report serializes"));
    } else {
        print_table(&report);
    }
    Ok(())
}

fn mix_name(source: MixSource) -> &'static str {
    match source {
        MixSource::Default => "default",
        MixSource::File => "file",
        MixSource::Learned => "learned",
        MixSource::Simulator => "the simulator's",
    }
}

fn print_table(r: &EstimateReport) {
    let id = r.campaign_id.map(|i| format!("campaign {i}")).unwrap_or_else(|| "campaign".into());
    println!("estimate for {id} ({} mix; nothing was dialled)", mix_name(r.mix_source));
    println!("  contacts          {}", r.contacts);
    println!("  start             {}", r.start.to_rfc3339());
    println!("  expected finish   {} (after {})", r.finish.to_rfc3339(), human_duration(r.duration_s));
    println!("  calls             {}", r.calls);
    for (k, v) in &r.calls_by_outcome {
        let minutes = r.minutes_by_outcome.get(k).copied().unwrap_or(0);
        println!("    {k:<22} {v:>9} calls {minutes:>9} min");
    }
    println!("  billed minutes    {}", r.minutes);
    for (k, v) in &r.contacts_by_final_state {
        println!("  contacts {k:<17} {v}");
    }
    println!("  SMS               {} ({} segments)", r.sms, r.sms_segments);
    let c = &r.cost;
    println!("  cost              {:.2} {} (voice {:.2}, SMS {:.2})", c.total, c.currency, c.voice, c.sms);
    for (k, v) in &c.voice_by_rate {
        println!("    voice {k:<16} {v:.2}");
    }
    println!("  prices            {} ({})", c.prices_source, c.prices_date);
    println!("  answered by local hour (campaign zone):");
    for (h, n) in r.answered_by_local_hour.iter().enumerate().filter(|(_, n)| **n > 0) {
        println!("    {h:02}:00  {n}");
    }
    println!("  assumptions:");
    for a in &r.assumptions {
        println!("    - {a}");
    }
}

fn human_duration(secs: f64) -> String {
    let s = secs.round() as i64;
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

// ---- The demo: the estimate before the run, and against it after. ----

/// Seconds one TwiML round trip takes in the demo (HTTP on 127.0.0.1, the callbacks service's reads and
/// writes). The simulator counts it on the line as it was, unscaled, as a real call would.
const DEMO_FETCH_S: f64 = 0.01;

/// The simulator's configured behaviour as an estimate's mix (its draws per `<Gather>`, its AMD and say
/// times, and — seeded — the same outcome on every attempt of a number).
pub(super) fn simulator_mix(c: &SimConfig) -> EstimateMix {
    let o = &c.outcomes;
    let range = |r: dialer_sim::SecsRange| SecsRange::new(r.min, r.max);
    let digits: BTreeMap<String, f64> = if c.digits.sequence.is_empty() {
        c.digits.choices.iter().map(|(k, w)| (k.map(String::from).unwrap_or_else(|| "none".into()), *w)).collect()
    } else {
        // A fixed sequence: its first key every time (the estimate draws one key per menu).
        BTreeMap::from([(c.digits.sequence[0].to_string(), 1.0)])
    };
    EstimateMix {
        human: o.human,
        machine: o.machine,
        busy: o.busy,
        no_answer: o.no_answer,
        failed: o.failed,
        invalid: o.invalid,
        ring_s: range(c.ring_time),
        digits,
        say_chars_per_second: Some(c.say_chars_per_second),
        play_s: c.play_secs,
        keypress_s: 1.0,
        fetch_s: DEMO_FETCH_S,
        transfer_talk_s: range(c.talk_time),
        repeat_outcome: if c.seed.is_some() { 1.0 } else { 0.0 },
        ..EstimateMix::default()
    }
}

/// The demo's estimate of its campaign, before it starts.
pub(super) fn before(
    spec: &CampaignSpec,
    campaign_id: i64,
    contacts: &[NewContact],
    sim: &SimConfig,
    config: &Config,
) -> anyhow::Result<EstimateReport> {
    let campaign = EstimateCampaign::from_spec(spec);
    let people: Vec<EstimateContact> = contacts
        .iter()
        .map(|c| EstimateContact { phone: c.phone.clone(), zone: c.zone.clone(), external_id: c.external_id.clone() })
        .collect();
    let mut chars: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for c in contacts {
        for (k, v) in &c.attributes {
            let e = chars.entry(k.clone()).or_default();
            e.0 += v.chars().count() as f64;
            e.1 += 1.0;
        }
    }
    let mut settings = EstimateSettings::new(Utc::now(), config.account_cps);
    settings.pacing_margin = config.pacing_margin;
    settings.time_factor = sim.speed;
    settings.seed = sim.seed.unwrap_or(1);
    settings.variable_chars = chars.into_iter().map(|(k, (sum, n))| (k, sum / n)).collect();
    let mix = simulator_mix(sim);
    let prices = PriceTable::sample();
    let started = std::time::Instant::now();
    let report = estimate(&EstimateInput {
        campaign_id: Some(campaign_id),
        campaign: &campaign,
        contacts: &people,
        mix: &mix,
        mix_source: MixSource::Simulator,
        prices: &prices,
        settings: &settings,
    })
    .context("estimating the demo campaign")?;
    eprintln!(
        "demo: estimate ({:.2} s to compute): finish after {:.1} s, {} calls, {} billed minutes, {:.2} {}",
        started.elapsed().as_secs_f64(),
        report.duration_s,
        report.calls,
        report.minutes,
        report.cost.total,
        report.cost.currency
    );
    Ok(report)
}

/// Bounds the estimate must hold against the run (the acceptance).
const FINISH_BOUND: f64 = 0.10;
const CALLS_BOUND: f64 = 0.05;
const COST_BOUND: f64 = 0.05;

/// One figure: estimated, actual, relative error.
#[derive(Debug, Serialize)]
struct Compared {
    estimate: f64,
    actual: f64,
    error: f64,
}

impl Compared {
    fn new(estimate: f64, actual: f64) -> Self {
        let error = if actual == 0.0 {
            if estimate == 0.0 {
                0.0
            } else {
                1.0
            }
        } else {
            (estimate - actual) / actual
        };
        Self { estimate, actual, error }
    }
}

/// The demo's `--json` file.
#[derive(Debug, Serialize)]
struct DemoAccuracy {
    finish_s: Compared,
    calls: Compared,
    cost: Compared,
    minutes: Compared,
    calls_by_outcome: BTreeMap<String, Compared>,
    bounds: BTreeMap<&'static str, f64>,
    ok: bool,
    estimate: EstimateReport,
}

/// Prints the estimate against the run; false when finish, calls or cost are outside their bounds.
pub(super) async fn against_run(
    store: &Store,
    sim: &dialer_sim::SimHandle,
    campaign: i64,
    estimate: &EstimateReport,
    elapsed: std::time::Duration,
    json: Option<&Path>,
) -> anyhow::Result<bool> {
    let prices = PriceTable::sample();
    let calls = sim.calls();
    let (mut cost, mut minutes) = (0.0, 0u64);
    for c in &calls {
        let m = billed_minutes(c.duration.unwrap_or(0) as f64);
        minutes += m;
        if let Some(rate) = E164::parse(&c.to, None).ok().and_then(|p| prices.voice_rate(&p).map(|r| r.per_minute)) {
            cost += m as f64 * rate;
        }
    }
    // The SMS fallback's texts, per segment as the simulator counted them.
    let texts: Vec<_> = sim.messages().into_iter().filter(|m| m.direction.as_str() == "outbound-api").collect();
    for m in &texts {
        if let Some(rate) = E164::parse(&m.to, None).ok().and_then(|p| prices.sms_rate(&p).map(|r| r.per_segment)) {
            cost += f64::from(m.num_segments) * rate;
        }
    }
    let actual_by: BTreeMap<String, i64> = store
        .attempts_count_by_outcome(campaign)
        .await?
        .into_iter()
        .map(|(o, n)| (o.as_str().to_string(), n))
        .collect();
    let mut by_outcome = BTreeMap::new();
    for k in actual_by.keys().chain(estimate.calls_by_outcome.keys()) {
        let e = estimate.calls_by_outcome.get(k).copied().unwrap_or(0) as f64;
        let a = actual_by.get(k).copied().unwrap_or(0) as f64;
        by_outcome.insert(k.clone(), Compared::new(e, a));
    }
    let finish = Compared::new(estimate.duration_s, elapsed.as_secs_f64());
    let calls_c = Compared::new(estimate.calls as f64, calls.len() as f64);
    let cost_c = Compared::new(estimate.cost.total, cost);
    let minutes_c = Compared::new(estimate.minutes as f64, minutes as f64);
    println!("\n=== estimate against the run ===");
    println!("{:<28} {:>12} {:>12} {:>8}", "", "estimate", "actual", "error");
    let line = |name: &str, c: &Compared| {
        println!("{name:<28} {:>12.2} {:>12.2} {:>7.1}%", c.estimate, c.actual, 100.0 * c.error)
    };
    line("finish (s after start)", &finish);
    line("calls", &calls_c);
    for (k, c) in &by_outcome {
        line(&format!("  {k}"), c);
    }
    line("billed minutes", &minutes_c);
    line("SMS fallback texts", &Compared::new(estimate.sms as f64, texts.len() as f64));
    line(&format!("cost ({})", estimate.cost.currency), &cost_c);
    let mut ok = true;
    let mut check = |what: &str, c: &Compared, bound: f64| {
        let good = c.error.abs() <= bound;
        println!("  [{}] {what} within {:.0} %", if good { "ok" } else { "OFF" }, bound * 100.0);
        ok &= good;
    };
    check("finish time", &finish, FINISH_BOUND);
    check("calls", &calls_c, CALLS_BOUND);
    check("cost", &cost_c, COST_BOUND);
    if let Some(path) = json {
        let out = DemoAccuracy {
            finish_s: finish,
            calls: calls_c,
            cost: cost_c,
            minutes: minutes_c,
            calls_by_outcome: by_outcome,
            bounds: BTreeMap::from([("finish", FINISH_BOUND), ("calls", CALLS_BOUND), ("cost", COST_BOUND)]),
            ok,
            estimate: estimate.clone(),
        };
        std::fs::write(path, serde_json::to_vec_pretty(&out)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ok)
}
