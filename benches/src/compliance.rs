//! Issue 14's simulated audit: a million contacts in three campaigns, over 17 numbering areas in 12 zones
//! (US Pacific, Mountain incl. Arizona, Central, Eastern, Hawaii, toll-free spanning every NANP zone, Japan,
//! UK, Germany, France, Sydney, Perth), 60 % of them without a zone, dialled over a simulated week and a
//! half that crosses Europe's (2026-10-25) and the US's (2026-11-01) DST changes.
//!
//! What is real: the CSV import (`parse_csv`, zone resolution from the number), the campaign files
//! (`CampaignSpec::parse`, profiles), and every decision the engine makes about *whether and when* a
//! callee may be called — the scheduler's [`CallPolicy::next_opening`], the dispatcher's
//! [`CallPolicy::closed_until`] after pacing, the limits of [`CallPolicy::max_calls_24h`] — and the audit
//! ([`audit`], what `dialer compliance audit` runs). What is simulated: the clock (virtual, so a week runs
//! in seconds), PostgreSQL's pre-POST gate (the same rules kept in memory: DNC, the 24 h count across
//! campaigns, one notification per parcel; their SQL and its race-freedom are tested in
//! `core/tests/store.rs`), the account pacer (one call per 1/CPS) and the callees (seeded outcomes,
//! opt-outs). Every call is then checked twice: by the audit, and by an independent oracle written here
//! from the rules' text (local hours per zone with chrono-tz, days, Japanese holidays, state hours).
//!
//! A control run makes the same calls with the old behaviour (every callee in the campaign's zone) and
//! must be caught by both checkers, or they prove nothing.
//!
//! ```text
//! cargo run --release -p benches -- compliance --contacts 1000000
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

use anyhow::{ensure, Context};
use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc, Weekday};
use dialer_core::domain::compliance::{audit, CallPolicy, CallRecord, ContactZone, ZoneSource};
use dialer_core::domain::holidays::HolidayCalendar;
use dialer_core::domain::{CampaignSpec, Tz, E164};
use dialer_core::import::parse_csv;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    contacts: usize,
    /// The simulated clock starts here (UTC).
    #[arg(long, default_value = "2026-10-24T00:00:00Z")]
    start: DateTime<Utc>,
    #[arg(long, default_value_t = 9)]
    days: i64,
    /// The account's calls per second (low, so the backlog spans the simulated days).
    #[arg(long, default_value_t = 2.0)]
    cps: f64,
    #[arg(long, default_value_t = 14)]
    seed: u64,
}

const CAMPAIGNS: [&str; 3] = [
    // A US carrier's parcel notices: TCPA with state rules, the FCC package-delivery exemption.
    r#"name = "us-parcels"
caller_id = "+14155550199"
timezone = "America/New_York"
cps = 10.0
max_attempts = 4
[window]
start = "08:30"
end = "20:30"
[compliance]
profiles = ["us-tcpa", "us-fcc-package-delivery"]
business_name = "Acme Parcels"
[limits]
max_calls_per_number_24h = 2
[script]
language = "en-US"
variables = ["name"]
[script.menus.main]
say = "Hi {name}, this is Acme Parcels about your parcel. Press 1 to reschedule, 9 to stop these calls."
[script.menus.main.options]
"1" = { result = "reschedule" }
"9" = { opt_out = true }
"#,
    // A Japanese carrier's re-delivery calls: 特定商取引法, Monday to Saturday, no public holidays.
    r#"name = "jp-redelivery"
caller_id = "+81312345678"
timezone = "Asia/Tokyo"
cps = 10.0
max_attempts = 3
[window]
start = "09:00"
end = "20:00"
days = ["mon", "tue", "wed", "thu", "fri", "sat"]
public_holidays = "jp"
[compliance]
profiles = ["jp-tokushoho"]
business_name = "Example運輸"
[limits]
max_calls_per_number_24h = 3
[script]
language = "ja-JP"
variables = ["name"]
[script.menus.main]
say = "Example運輸です。{name}様、再配達は1を、今後のお電話停止は9を押してください。"
[script.menus.main.options]
"1" = { result = "reschedule" }
"9" = { opt_out = true }
"#,
    // Evening reminders without a profile: an overnight window, and the campaign's zone as fallback.
    r#"name = "evening-reminders"
caller_id = "+442071234567"
timezone = "Europe/London"
cps = 10.0
max_attempts = 3
[window]
start = "17:00"
end = "00:30"
[compliance]
zone_fallback = true
[script]
language = "en-GB"
variables = ["name"]
[script.menus.main]
say = "Hello {name}, a reminder. Press 1 to confirm."
[script.menus.main.options]
"1" = { result = "confirmed" }
"#,
];

/// A numbering area: E.164 prefix, the subscriber digits after it (the first from `first`), its zone.
struct Area {
    prefix: &'static str,
    first: &'static str,
    digits: usize,
    zone: Option<&'static str>,
}

const AREAS: [Area; 17] = [
    Area { prefix: "+1213", first: "23456789", digits: 7, zone: Some("America/Los_Angeles") },
    Area { prefix: "+1206", first: "23456789", digits: 7, zone: Some("America/Los_Angeles") }, // WA
    Area { prefix: "+1303", first: "23456789", digits: 7, zone: Some("America/Denver") },
    Area { prefix: "+1602", first: "23456789", digits: 7, zone: Some("America/Phoenix") }, // no DST
    Area { prefix: "+1312", first: "23456789", digits: 7, zone: Some("America/Chicago") },
    Area { prefix: "+1214", first: "23456789", digits: 7, zone: Some("America/Chicago") }, // TX
    Area { prefix: "+1212", first: "23456789", digits: 7, zone: Some("America/New_York") },
    Area { prefix: "+1305", first: "23456789", digits: 7, zone: Some("America/New_York") }, // FL
    Area { prefix: "+1808", first: "23456789", digits: 7, zone: Some("Pacific/Honolulu") },
    Area { prefix: "+1800", first: "23456789", digits: 7, zone: None }, // every NANP zone
    Area { prefix: "+813", first: "3456", digits: 8, zone: Some("Asia/Tokyo") },
    Area { prefix: "+8190", first: "1234", digits: 8, zone: Some("Asia/Tokyo") },
    Area { prefix: "+4420", first: "7", digits: 8, zone: Some("Europe/London") },
    Area { prefix: "+4930", first: "2345", digits: 8, zone: Some("Europe/Berlin") },
    Area { prefix: "+331", first: "4", digits: 8, zone: Some("Europe/Paris") },
    Area { prefix: "+612", first: "9", digits: 8, zone: Some("Australia/Sydney") },
    Area { prefix: "+618", first: "9", digits: 8, zone: Some("Australia/Perth") },
];

/// SplitMix64: deterministic per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

struct Contact {
    campaign: usize,
    zone: ContactZone,
    phone: usize,
    reference: Option<usize>,
    attempts: u32,
}

struct Population {
    contacts: Vec<Contact>,
    phones: Vec<E164>,
    /// Rows refused at import: no zone known for the number, and numbers whose candidate zones are never
    /// all open at once under their campaign's rules.
    refused: usize,
    refused_never_open: usize,
    by_source: HashMap<ZoneSource, usize>,
    by_zone: HashMap<String, usize>,
}

/// Writes each campaign's CSV (40 % of rows with their zone, the rest without; some numbers shared
/// across campaigns, some parcels with two numbers) and imports it with the real parser.
fn populate(args: &Args, specs: &[CampaignSpec], policies: &[CallPolicy]) -> anyhow::Result<Population> {
    let mut rng = Rng(args.seed);
    let mut csv: Vec<String> = vec!["phone,timezone,external_id,name\n".to_string(); specs.len()];
    let mut used: Vec<std::collections::HashSet<String>> = vec![Default::default(); specs.len()];
    let mut numbers: Vec<String> = Vec::new();
    // The US campaign's parcels, and those the reminders campaign already refers to.
    let (mut us_refs, mut used_refs) = (Vec::new(), std::collections::HashSet::new());
    for i in 0..args.contacts {
        let campaign = match rng.below(100) {
            0..=44 => 0,
            45..=69 => 1,
            _ => 2,
        };
        // 5 %: a number another campaign also calls (the 24 h limit and opt-outs hold across them).
        let shared = (rng.chance(0.05) && !numbers.is_empty()).then(|| numbers[rng.below(numbers.len())].clone());
        let (phone, zone) = match shared.filter(|p| !used[campaign].contains(p)) {
            Some(p) => (p, None),
            None => {
                // 0.1 %: international freephone, which has no zone at all.
                let area = if rng.chance(0.001) {
                    &Area { prefix: "+800", first: "123456789", digits: 8, zone: None }
                } else {
                    &AREAS[rng.below(AREAS.len())]
                };
                let f = area.first.as_bytes();
                let mut p = format!("{}{}", area.prefix, f[rng.below(f.len())] as char);
                for _ in 1..area.digits {
                    p.push((b'0' + rng.below(10) as u8) as char);
                }
                (p, area.zone)
            }
        };
        if !used[campaign].insert(phone.clone()) {
            continue; // drawn twice for one campaign: a campaign's numbers are unique
        }
        numbers.push(phone.clone());
        let given = zone.filter(|_| rng.chance(0.4)).unwrap_or("");
        // Parcels: 3 % of the reminders are about a parcel the US campaign notifies too (a campaign's
        // references are unique, so a parcel with two numbers spans campaigns).
        let reference = match (campaign, us_refs.is_empty()) {
            (2, false) if rng.chance(0.03) => Some(us_refs[rng.below(us_refs.len())]).filter(|r| used_refs.insert(*r)),
            _ => None,
        }
        .unwrap_or(i);
        if campaign == 0 {
            us_refs.push(i);
        }
        csv[campaign].push_str(&format!("{phone},{given},P{reference},Contact {i}\n"));
    }
    let mut pop = Population {
        contacts: Vec::new(),
        phones: Vec::new(),
        refused: 0,
        refused_never_open: 0,
        by_source: HashMap::new(),
        by_zone: HashMap::new(),
    };
    let mut phone_ids: HashMap<E164, usize> = HashMap::new();
    let mut ref_ids: HashMap<String, usize> = HashMap::new();
    for (c, spec) in specs.iter().enumerate() {
        let zoning = dialer_core::domain::compliance::Zoning {
            campaign_tz: spec.timezone.into(),
            fallback: spec.file.compliance.zone_fallback,
            require_reference: false,
            rules: Some(policies[c].clone()),
        };
        let parsed = parse_csv(csv[c].as_bytes(), None, &["name"], &zoning);
        for e in &parsed.errors {
            ensure!(e.column.as_deref() == Some("timezone"), "campaign {c}: unexpected import error {e}");
        }
        pop.refused += parsed.errors.len();
        pop.refused_never_open += parsed.errors.iter().filter(|e| e.reason.contains("never open")).count();
        for row in parsed.rows {
            let n = phone_ids.len();
            let phone = *phone_ids.entry(row.contact.phone.clone()).or_insert(n);
            if phone == pop.phones.len() {
                pop.phones.push(row.contact.phone.clone());
            }
            let reference = row.contact.external_id.map(|r| {
                let n = ref_ids.len();
                *ref_ids.entry(r).or_insert(n)
            });
            *pop.by_source.entry(row.contact.zone.source).or_default() += 1;
            *pop.by_zone.entry(row.contact.zone.names()).or_default() += 1;
            pop.contacts.push(Contact { campaign: c, zone: row.contact.zone, phone, reference, attempts: 0 });
        }
    }
    Ok(pop)
}

/// One call the simulation placed.
struct Call {
    contact: usize,
    at: DateTime<Utc>,
}

#[derive(Default)]
struct Run {
    calls: Vec<Call>,
    /// When each number went on the DNC list (an opt-out), if it did.
    dnc: HashMap<usize, DateTime<Utc>>,
    /// When each parcel was first reached, and by which contact.
    reached: HashMap<usize, (DateTime<Utc>, usize)>,
    deferred: u64,
    blocked: u64,
    /// Of those: held back by the 24 h limit, by a call about the same parcel, stopped by an opt-out, and
    /// ended because another number of the parcel had been reached.
    limit_waits: u64,
    reference_waits: u64,
    dnc_blocks: u64,
    reference_blocks: u64,
    left_pending: usize,
}

/// Runs the campaigns over the simulated days. `naive_zones`: the old behaviour, every callee in the
/// campaign's zone (the control run).
fn simulate(
    args: &Args,
    pop: &mut Population,
    policies: &[CallPolicy],
    specs: &[CampaignSpec],
    naive_zones: bool,
) -> Run {
    let mut rng = Rng(args.seed ^ 0xA5A5);
    let end = args.start + Duration::days(args.days);
    let slot = Duration::microseconds((1e6 / args.cps) as i64);
    // The engine holds at most a third of a 120 s lease of claimed work ahead of the pacer.
    let claim_ahead = Duration::seconds(40);
    let mut heap: BinaryHeap<Reverse<(DateTime<Utc>, usize)>> =
        (0..pop.contacts.len()).map(|i| Reverse((args.start, i))).collect();
    let mut run = Run::default();
    let mut next_slot = args.start;
    let mut phone_calls: HashMap<usize, Vec<DateTime<Utc>>> = HashMap::new();
    let mut ref_busy_until: HashMap<usize, (DateTime<Utc>, usize)> = HashMap::new();
    for c in pop.contacts.iter_mut() {
        c.attempts = 0;
    }
    while let Some(Reverse((due, i))) = heap.pop() {
        // Claimed in due order, but only once the pacer will get to it within the claim horizon.
        let now = due.max(next_slot - claim_ahead);
        if now >= end {
            heap.push(Reverse((due, i)));
            break;
        }
        let c = &pop.contacts[i];
        let p = &policies[c.campaign];
        let zone = if naive_zones { ContactZone::given(specs[c.campaign].timezone.into()) } else { c.zone.clone() };
        // Scheduler: the window in every zone of the callee, then DNC.
        match p.next_opening(&zone, now) {
            Some(t) if t == now => {}
            other => {
                run.deferred += 1;
                heap.push(Reverse((other.unwrap_or(now + Duration::days(1)), i)));
                continue;
            }
        }
        if run.dnc.get(&c.phone).is_some_and(|d| *d <= now) {
            run.blocked += 1;
            run.dnc_blocks += 1;
            continue;
        }
        // Dispatcher: pacing, then the window again right before the commit.
        let t = next_slot.max(now);
        next_slot = t + slot;
        if let Some(at) = p.closed_until(&zone, t) {
            run.deferred += 1;
            heap.push(Reverse((at, i)));
            continue;
        }
        // The pre-POST gate (kept in memory here; its SQL is `attempts_mark_dialing_many`).
        if run.dnc.get(&c.phone).is_some_and(|d| *d <= t) {
            run.blocked += 1;
            run.dnc_blocks += 1;
            continue;
        }
        if let Some(max) = p.max_calls_24h(&zone) {
            let calls = phone_calls.entry(c.phone).or_default();
            let recent: Vec<&DateTime<Utc>> = calls.iter().filter(|x| **x > t - Duration::hours(24)).collect();
            if recent.len() >= max as usize {
                run.deferred += 1;
                run.limit_waits += 1;
                heap.push(Reverse((
                    *recent[recent.len() - max as usize] + Duration::hours(24) + Duration::seconds(1),
                    i,
                )));
                continue;
            }
        }
        if let (true, Some(r)) = (p.one_per_reference(), c.reference) {
            if run.reached.get(&r).is_some_and(|(at, by)| *at <= t && *by != i) {
                run.blocked += 1;
                run.reference_blocks += 1;
                continue;
            }
            if ref_busy_until.get(&r).is_some_and(|(until, by)| *until > t && *by != i) {
                run.deferred += 1;
                run.reference_waits += 1;
                heap.push(Reverse((t + Duration::minutes(5), i)));
                continue;
            }
        }
        // The call.
        run.calls.push(Call { contact: i, at: t });
        phone_calls.entry(c.phone).or_default().push(t);
        if let Some(r) = c.reference {
            ref_busy_until.insert(r, (t + Duration::seconds(60), i));
        }
        let (phone, reference, campaign) = (c.phone, c.reference, c.campaign);
        let c = &mut pop.contacts[i];
        c.attempts += 1;
        let retry = match rng.below(100) {
            // Answered; 4 % of those press the opt-out key, which puts the number on the DNC list.
            0..=49 => {
                if let Some(r) = reference {
                    run.reached.entry(r).or_insert((t + Duration::seconds(20), i));
                }
                if rng.chance(0.04) {
                    let at = t + Duration::seconds(30);
                    run.dnc.entry(phone).and_modify(|d| *d = (*d).min(at)).or_insert(at);
                }
                None
            }
            50..=59 => {
                if let Some(r) = reference {
                    run.reached.entry(r).or_insert((t + Duration::seconds(25), i));
                }
                None // voicemail left
            }
            60..=79 => Some(Duration::hours(1)),    // no answer
            80..=89 => Some(Duration::minutes(10)), // busy
            _ => None,                              // failed
        };
        if let Some(delay) = retry.filter(|_| (c.attempts as i32) < specs[campaign].file.max_attempts) {
            heap.push(Reverse((t + delay, i)));
        }
    }
    run.left_pending = heap.len();
    run
}

/// The audit's view of the calls: per call, the calls to its number in the 24 h before (any campaign),
/// the DNC entry, whether another contact had reached its parcel — as `audit_calls` reads them from SQL.
fn records(pop: &Population, run: &Run) -> Vec<Vec<CallRecord>> {
    let mut by_phone: HashMap<usize, Vec<DateTime<Utc>>> = HashMap::new();
    for call in &run.calls {
        by_phone.entry(pop.contacts[call.contact].phone).or_default().push(call.at);
    }
    let mut out: Vec<Vec<CallRecord>> = vec![Vec::new(); 3];
    for (n, call) in run.calls.iter().enumerate() {
        let c = &pop.contacts[call.contact];
        let before =
            by_phone[&c.phone].iter().filter(|t| **t >= call.at - Duration::hours(24) && **t < call.at).count();
        out[c.campaign].push(CallRecord {
            attempt_id: n as i64,
            contact_id: call.contact as i64,
            phone: pop.phones[c.phone].clone(),
            zone: c.zone.clone(),
            requested_at: call.at,
            calls_24h_before: before as i64,
            dnc_since: run.dnc.get(&c.phone).copied().filter(|d| *d < call.at),
            reference_reached_before: c
                .reference
                .and_then(|r| run.reached.get(&r))
                .is_some_and(|(at, by)| *at < call.at && *by != call.contact),
        });
    }
    out
}

/// The oracle: each rule re-implemented from its text, independently of `CallingWindow`/`CallPolicy`.
fn oracle_violations(pop: &Population, run: &Run) -> u64 {
    let hm = |h: u32, m: u32| NaiveTime::from_hms_opt(h, m, 0).unwrap();
    let within = |t: NaiveTime, s: NaiveTime, e: NaiveTime| if s < e { t >= s && t < e } else { t >= s || t < e };
    let mut bad = 0;
    let mut per_phone: HashMap<usize, Vec<DateTime<Utc>>> = HashMap::new();
    for call in &run.calls {
        let c = &pop.contacts[call.contact];
        let region = c.zone.region.as_deref();
        let ok_in = |tz: &Tz| {
            let local = call.at.with_timezone(&tz.get());
            let (t, day, wd) = (local.time(), local.date_naive(), local.weekday());
            match c.campaign {
                0 => {
                    let state = match (region, wd) {
                        (Some("FL" | "OK" | "MD" | "WA"), _) => within(t, hm(8, 0), hm(20, 0)),
                        (Some("TX"), Weekday::Sun) => within(t, hm(12, 0), hm(21, 0)),
                        (Some("TX"), _) => within(t, hm(9, 0), hm(21, 0)),
                        _ => true,
                    };
                    within(t, hm(8, 30), hm(20, 30)) && within(t, hm(8, 0), hm(21, 0)) && state
                }
                1 => {
                    within(t, hm(9, 0), hm(20, 0))
                        && within(t, hm(8, 0), hm(21, 0))
                        && wd != Weekday::Sun
                        && !HolidayCalendar::Jp.is_holiday(day)
                }
                // Overnight 17:00–00:30: the part after midnight belongs to the day before.
                _ => within(t, hm(17, 0), hm(0, 30)),
            }
        };
        if !c.zone.zones.iter().all(ok_in) {
            bad += 1;
        }
        if run.dnc.get(&c.phone).is_some_and(|d| *d < call.at) {
            bad += 1;
        }
        // The US campaign's own 2 a day is stricter than Florida's, Oklahoma's and Maryland's 3.
        let max = match c.campaign {
            0 => Some(2),
            1 => Some(3),
            _ => None,
        };
        let calls = per_phone.entry(c.phone).or_default();
        if max.is_some_and(|m| calls.iter().filter(|t| **t >= call.at - Duration::hours(24)).count() >= m) {
            bad += 1;
        }
        calls.push(call.at);
    }
    bad
}

struct Checked {
    audit: usize,
    audit_by_kind: HashMap<&'static str, usize>,
    oracle: u64,
}

fn check(pop: &Population, run: &Run, policies: &[CallPolicy]) -> Checked {
    let mut out = Checked { audit: 0, audit_by_kind: HashMap::new(), oracle: oracle_violations(pop, run) };
    for (c, recs) in records(pop, run).iter().enumerate() {
        for e in audit(&policies[c], recs) {
            out.audit += usize::from(!e.violations.is_empty());
            for v in &e.violations {
                let kind = match v {
                    v if v.starts_with("outside") => "outside a window",
                    v if v.starts_with("over the limit") => "over a limit",
                    v if v.starts_with("after an opt-out") => "after an opt-out",
                    _ => "second notification",
                };
                *out.audit_by_kind.entry(kind).or_default() += 1;
            }
        }
    }
    out
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let specs: Vec<CampaignSpec> = CAMPAIGNS
        .iter()
        .enumerate()
        .map(|(i, t)| CampaignSpec::parse(t, &format!("campaign-{i}.toml")).context("a bench campaign"))
        .collect::<anyhow::Result<_>>()?;
    let policies: Vec<CallPolicy> = specs
        .iter()
        .map(|s| CallPolicy::new(s.window.clone(), s.file.compliance.clone(), s.file.limits.clone()))
        .collect();

    let t = Instant::now();
    let mut pop = populate(&args, &specs, &policies)?;
    let import = t.elapsed();
    println!(
        "imported {} contacts in {:.1} s ({} numbers); refused at import: {} with no zone known, {} never open in all \
         their candidate zones",
        pop.contacts.len(),
        import.as_secs_f64(),
        pop.phones.len(),
        pop.refused - pop.refused_never_open,
        pop.refused_never_open
    );
    let mut sources: Vec<_> = pop.by_source.iter().collect();
    sources.sort();
    println!("zone sources: {sources:?}");
    let mut zones: Vec<_> = pop.by_zone.iter().map(|(z, n)| (z.split(" & ").count(), z.clone(), *n)).collect();
    zones.sort_by_key(|z| Reverse(z.2));
    for (count, z, n) in &zones {
        let z = if *count > 1 { format!("{count} candidate zones ({}…)", &z[..40.min(z.len())]) } else { z.clone() };
        println!("  {n:>8}  {z}");
    }

    let t = Instant::now();
    let real = simulate(&args, &mut pop, &policies, &specs, false);
    let sim = t.elapsed();
    let t = Instant::now();
    let checked = check(&pop, &real, &policies);
    let audit_time = t.elapsed();
    println!(
        "simulated {} days from {}: {} calls, {} deferrals, {} blocked, {} opt-outs, {} contacts still due at the end \
         ({:.1} s); audit {:.1} s",
        args.days,
        args.start,
        real.calls.len(),
        real.deferred,
        real.blocked,
        real.dnc.len(),
        real.left_pending,
        sim.as_secs_f64(),
        audit_time.as_secs_f64()
    );
    println!(
        "gates: {} waits for the 24 h limit, {} for a call about the same parcel; {} stopped by an opt-out, {} \
         already notified",
        real.limit_waits, real.reference_waits, real.dnc_blocks, real.reference_blocks
    );
    println!("violations: audit {} (by kind {:?}), oracle {}", checked.audit, checked.audit_by_kind, checked.oracle);

    let control = simulate(&args, &mut pop, &policies, &specs, true);
    let caught = check(&pop, &control, &policies);
    println!(
        "control (every callee in the campaign's zone, the old behaviour): {} calls, audit flags {} ({:?}), oracle {}",
        control.calls.len(),
        caught.audit,
        caught.audit_by_kind,
        caught.oracle
    );
    ensure!(checked.audit == 0 && checked.oracle == 0, "calls broke a rule");
    ensure!(
        caught.audit > 0 && caught.oracle > 0,
        "the control run's violations went unnoticed: the checks prove nothing"
    );
    Ok(())
}
