//! A dry run that prices a campaign before it spends money: its contacts go through a discrete-event
//! simulation in virtual time — the dialer's pacing (campaign and account CPS, the one-second window
//! margin), its in-flight cap, each contact's calling hours in its own zones (`CallPolicy`, as the
//! dispatcher checks them), the 24 h limit per number, one notification per reference, and after each
//! call the product's own outcome classification and retry decision (`classify`, `decide`). Calls are
//! drawn from an [`EstimateMix`]; an answered call lasts as long as its path through the script. The
//! result is an [`EstimateReport`]: finish time, calls and billed minutes by outcome, the answer curve
//! and the cost from a [`PriceTable`].
//!
//! Pure: no database, no HTTP, no clock; the same input and seed give the same report.

mod mix;
mod prices;
mod report;
mod walk;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Timelike, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use mix::{EstimateMix, MixSource, ObservedAttempts, SecsRange, MIN_LEARN_ATTEMPTS};
pub use prices::{billed_minutes, sms_segments, PriceTable, SmsRate, VoiceRate};
pub use report::{CostBreakdown, CurveHour, EstimateReport};

use crate::domain::campaign::retry_rule;
use crate::domain::compliance::{CallPolicy, ContactZone};
use crate::domain::script::Script;
use crate::domain::{decide, AmdMode, CampaignSpec, FinalState, Next, Outcome, RetryPolicy, Tz, E164};
use walk::{draw_call, CallDraw, Speaker};

#[derive(Debug, thiserror::Error)]
pub enum EstimateError {
    /// The outcome mix is unusable; names the field.
    #[error("outcome mix: {0}")]
    Mix(String),
    /// The price table is unusable; names the field.
    #[error("price table: {0}")]
    Prices(String),
    /// The campaign or the settings are unusable; names the field.
    #[error("{0}")]
    Input(String),
}

/// The campaign's text message after the last attempt (the campaign file's `[sms]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SmsPlan {
    /// Final outcomes that send it.
    pub after: Vec<Outcome>,
    /// The template (`{name}`…).
    pub body: String,
}

impl SmsPlan {
    pub fn from_fallback(s: &crate::domain::campaign::SmsFallback) -> Self {
        Self { after: s.after.clone(), body: s.body.clone() }
    }
}

/// What of a campaign the simulation needs, from a campaign file or a stored campaign.
#[derive(Debug, Clone)]
pub struct EstimateCampaign {
    pub cps: f64,
    pub account_cps_share: f64,
    pub max_in_flight: i32,
    pub max_attempts: i32,
    pub retry: RetryPolicy,
    pub amd: AmdMode,
    pub ring_timeout_s: i32,
    pub policy: CallPolicy,
    pub script: Script,
    /// The zone of the campaign's local day (the answer curve).
    pub timezone: Tz,
    pub sms: Option<SmsPlan>,
}

impl EstimateCampaign {
    pub fn from_spec(spec: &CampaignSpec) -> Self {
        let f = &spec.file;
        Self {
            cps: f.cps,
            account_cps_share: f.account_cps_share,
            max_in_flight: f.max_in_flight,
            max_attempts: f.max_attempts,
            retry: f.retry.clone(),
            amd: f.amd,
            ring_timeout_s: f.ring_timeout_s,
            policy: CallPolicy::new(spec.window.clone(), f.compliance.clone(), f.limits.clone()),
            script: f.script.clone(),
            timezone: spec.timezone.into(),
            sms: f.sms.as_ref().map(SmsPlan::from_fallback),
        }
    }
}

/// One contact as the simulation needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct EstimateContact {
    pub phone: E164,
    pub zone: ContactZone,
    pub external_id: Option<String>,
}

/// How the simulation runs.
#[derive(Debug, Clone)]
pub struct EstimateSettings {
    pub start: DateTime<Utc>,
    /// The account's calls per second (`ACCOUNT_CPS`), shared with the campaign's own CPS.
    pub account_cps: f64,
    /// The pacers' one-second window margin (`PACING_MARGIN_MS`).
    pub pacing_margin: StdDuration,
    /// Call durations (ring, talk) are divided by this: the simulator's `--speed`. 1 for real campaigns.
    pub time_factor: f64,
    pub seed: u64,
    /// Mean characters of each script variable in the contacts' attributes (`name` → 5.0); variables not
    /// here count [`EstimateMix::variable_chars`].
    pub variable_chars: BTreeMap<String, f64>,
}

impl EstimateSettings {
    pub fn new(start: DateTime<Utc>, account_cps: f64) -> Self {
        Self {
            start,
            account_cps,
            pacing_margin: crate::config::DEFAULT_PACING_MARGIN,
            time_factor: 1.0,
            seed: 1,
            variable_chars: BTreeMap::new(),
        }
    }
}

/// A contact's journey through the simulation.
#[derive(Debug, Clone)]
struct ContactRun {
    attempts: i32,
    /// Finished attempts per outcome (index in `Outcome::ALL`).
    by_outcome: [i32; 12],
    /// A contact whose attempts all go like its first (the mix's `repeat_outcome`), and that first.
    repeat: bool,
    first: Option<CallDraw>,
    /// The call in flight.
    current: Option<CallDraw>,
}

fn outcome_index(o: Outcome) -> usize {
    Outcome::ALL.iter().position(|x| *x == o).unwrap_or(0)
}

const MINUTE_MS: i64 = 60_000;
/// Calling rules open and close on whole minutes (window times, zone offsets and DST changes are all
/// whole minutes), so whether a callee may be called is looked up once per zone and minute; only the
/// dispatcher's 2 s margin before a closing reaches into the next minute.
const MARGIN_MS: i64 = crate::domain::compliance::WINDOW_MARGIN.num_milliseconds();

/// Memoised `CallPolicy::next_opening` per (zones, minute).
struct Openings<'a> {
    policy: &'a CallPolicy,
    start: DateTime<Utc>,
    cache: HashMap<(usize, i64), Option<i64>>,
}

impl Openings<'_> {
    /// `next_opening` at the start of the minute holding `ms` (virtual ms since start).
    fn minute(&mut self, key: usize, zone: &ContactZone, ms: i64) -> Option<i64> {
        let abs = self.start.timestamp_millis() + ms;
        let minute_abs = abs.div_euclid(MINUTE_MS) * MINUTE_MS;
        let minute = minute_abs - self.start.timestamp_millis();
        let (policy, start) = (self.policy, self.start);
        *self.cache.entry((key, minute_abs)).or_insert_with(|| {
            policy.next_opening(zone, start + Duration::milliseconds(minute)).map(|t| (t - start).num_milliseconds())
        })
    }

    /// `Ok(())` when the callee may be called at `ms` (as `CallPolicy::closed_until` decides: open now and
    /// still 2 s later), `Err(Some(at))` to wait until `at`, `Err(None)` never.
    fn check(&mut self, key: usize, zone: &ContactZone, ms: i64) -> Result<(), Option<i64>> {
        let minute = ms - (self.start.timestamp_millis() + ms).rem_euclid(MINUTE_MS);
        let here = self.minute(key, zone, ms).ok_or(None)?;
        if here > minute {
            return Err(Some(here.max(ms)));
        }
        if ms + MARGIN_MS >= minute + MINUTE_MS {
            let next = self.minute(key, zone, minute + MINUTE_MS).ok_or(None)?;
            if next > minute + MINUTE_MS {
                return Err(Some(next));
            }
        }
        Ok(())
    }
}

/// Everything an estimate takes.
#[derive(Debug, Clone)]
pub struct EstimateInput<'a> {
    pub campaign_id: Option<i64>,
    pub campaign: &'a EstimateCampaign,
    pub contacts: &'a [EstimateContact],
    pub mix: &'a EstimateMix,
    pub mix_source: MixSource,
    pub prices: &'a PriceTable,
    pub settings: &'a EstimateSettings,
}

/// Runs the simulation.
pub fn estimate(input: &EstimateInput<'_>) -> Result<EstimateReport, EstimateError> {
    let EstimateInput { campaign: c, contacts, mix, settings: s, prices, .. } = *input;
    mix.validate()?;
    for (field, v) in [("account_cps", s.account_cps), ("time_factor", s.time_factor), ("cps", c.cps)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(EstimateError::Input(format!("estimate field `{field}`: must be a positive number, got {v}")));
        }
    }
    if c.max_in_flight <= 0 {
        return Err(EstimateError::Input(format!(
            "campaign field `max_in_flight`: must be positive, got {}",
            c.max_in_flight
        )));
    }
    let mut rng = StdRng::seed_from_u64(s.seed);
    let speaker = Speaker::new(&c.script, mix, &s.variable_chars);
    let ring_timeout = f64::from(c.ring_timeout_s);

    // The dialer's pacer lets floor(rate) calls out in any one second plus the margin (a rate below 1 is
    // a plain token bucket); the campaign's rate is its CPS within its share of the account's.
    let rate = c.cps.min(s.account_cps * c.account_cps_share);
    let margin_s = s.pacing_margin.as_secs_f64();
    let interval_ms = if rate >= 1.0 { (1.0 + margin_s) * 1000.0 / rate.floor() } else { 1000.0 / rate };

    // Contacts with the same zones share window lookups.
    let mut zone_keys: HashMap<(Vec<Tz>, Option<String>), usize> = HashMap::new();
    let keys: Vec<usize> = contacts
        .iter()
        .map(|ct| {
            let n = zone_keys.len();
            *zone_keys.entry((ct.zone.zones.clone(), ct.zone.region.clone())).or_insert(n)
        })
        .collect();
    let mut openings = Openings { policy: &c.policy, start: s.start, cache: HashMap::new() };

    let mut runs: Vec<ContactRun> = contacts
        .iter()
        .map(|_| ContactRun {
            attempts: 0,
            by_outcome: [0; 12],
            repeat: rng.gen::<f64>() < mix.repeat_outcome,
            first: None,
            current: None,
        })
        .collect();
    // Due contacts in the scheduler's order (next_attempt_at, id); calls in flight by their end.
    let mut due: BinaryHeap<Reverse<(i64, usize)>> = (0..contacts.len()).map(|i| Reverse((0, i))).collect();
    let mut ends: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    let max_24h: Vec<Option<i32>> = contacts.iter().map(|ct| c.policy.max_calls_24h(&ct.zone)).collect();
    let mut calls_to: HashMap<&str, VecDeque<i64>> = HashMap::new();
    let one_per_reference = c.policy.one_per_reference();
    // Reference → the contact that reached it: only *another* contact with the same reference is
    // blocked (a voicemail retry of the same contact goes ahead, as in the product's check).
    let mut reached_refs: HashMap<&str, usize> = HashMap::new();

    let mut t = Tally::new(c, s);
    let mut next_slot = 0f64;
    let mut in_flight = 0i32;
    // Virtual time: the last event handled. A contact freed by a call's end is dispatched no earlier.
    let mut now = 0i64;
    let day_ms = Duration::hours(24).num_milliseconds();
    // Each step either ends the call that ends first (if no dispatch comes before it) or dispatches the
    // contact due first, at the pacer's next slot and only below the in-flight cap.
    loop {
        let next_end = ends.peek().map(|Reverse((at, i))| (*at, *i));
        let dispatch_at = match due.peek() {
            Some(Reverse((at, _))) if in_flight < c.max_in_flight => Some((*at).max(next_slot.ceil() as i64).max(now)),
            _ => None,
        };
        if let Some((end_ms, i)) = next_end.filter(|(e, _)| dispatch_at.is_none_or(|d| *e <= d)) {
            ends.pop();
            in_flight -= 1;
            now = now.max(end_ms);
            let run = &mut runs[i];
            let Some(call) = run.current.take() else { continue };
            let outcome = call.outcome();
            let before = run.by_outcome[outcome_index(outcome)];
            run.by_outcome[outcome_index(outcome)] += 1;
            let reached = matches!(outcome, Outcome::AnsweredResult | Outcome::AnsweredNoResult | Outcome::Voicemail);
            if let Some(r) = contacts[i].external_id.as_deref().filter(|_| one_per_reference && reached) {
                reached_refs.entry(r).or_insert(i);
            }
            // A retry delay past the horizon ends the contact here (and keeps chrono's arithmetic in range).
            if retry_rule(&c.retry, outcome).is_some_and(|r| r.delay_s > HORIZON_MS / 1000) {
                t.final_state(BEYOND_HORIZON, Some(outcome), &contacts[i], prices);
                continue;
            }
            let now = s.start + Duration::milliseconds(end_ms);
            match decide(&c.retry, c.max_attempts, outcome, run.attempts, before, now) {
                Next::Retry { at, .. } => due.push(Reverse(((at - s.start).num_milliseconds().max(end_ms), i))),
                Next::Final { state, .. } => t.final_state(state.as_str(), Some(outcome), &contacts[i], prices),
            }
            continue;
        }
        let Some(at) = dispatch_at else { break };
        now = at;
        let Some(Reverse((_, i))) = due.pop() else { break };
        let ct = &contacts[i];
        if at > HORIZON_MS {
            t.final_state(BEYOND_HORIZON, None, ct, prices);
            continue;
        }
        if let Some(r) = ct.external_id.as_deref().filter(|_| one_per_reference) {
            if reached_refs.get(r).is_some_and(|by| *by != i) {
                t.final_state(FinalState::Blocked.as_str(), Some(Outcome::AlreadyNotified), ct, prices);
                continue;
            }
        }
        match openings.check(keys[i], &ct.zone, at) {
            Ok(()) => {}
            Err(Some(open)) => {
                due.push(Reverse((open, i)));
                continue;
            }
            Err(None) => {
                t.final_state(NEVER_CALLABLE, None, ct, prices);
                continue;
            }
        }
        if let Some(max) = max_24h[i] {
            let history = calls_to.entry(ct.phone.as_str()).or_default();
            while history.front().is_some_and(|h| *h <= at - day_ms) {
                history.pop_front();
            }
            if history.len() >= max.max(0) as usize {
                let clears = history.front().copied().unwrap_or(at) + day_ms;
                due.push(Reverse((clears.max(at + 1), i)));
                continue;
            }
            history.push_back(at);
        }
        let run = &mut runs[i];
        let call = match (run.repeat, run.first) {
            (true, Some(first)) => first,
            _ => draw_call(&speaker, mix, c.amd, ring_timeout, &mut rng),
        };
        run.first.get_or_insert(call);
        run.attempts += 1;
        run.current = Some(call);
        in_flight += 1;
        next_slot = at as f64 + interval_ms;
        let length_ms = (((call.ring_s + call.talk_s) / s.time_factor * 1000.0).round() as i64).max(1);
        ends.push(Reverse((at + length_ms, i)));
        t.call(at, at + length_ms, &call, ct, prices);
    }
    Ok(t.report(input))
}

/// The final state of a contact whose calling hours never open (the import refuses most such contacts).
const NEVER_CALLABLE: &str = "never_callable";
/// The simulation looks this far ahead; a contact still waiting beyond it ends as [`BEYOND_HORIZON`].
const HORIZON_MS: i64 = 366 * 86_400_000;
const BEYOND_HORIZON: &str = "beyond_horizon";

/// Counts as the simulation goes.
struct Tally {
    start: DateTime<Utc>,
    tz: Tz,
    last_end: i64,
    calls: u64,
    calls_by_outcome: BTreeMap<String, u64>,
    minutes: u64,
    minutes_by_outcome: BTreeMap<String, u64>,
    voice: f64,
    voice_by_outcome: BTreeMap<String, f64>,
    voice_by_rate: BTreeMap<String, f64>,
    unpriced: u64,
    final_states: BTreeMap<String, u64>,
    /// Calls started and answered by a person, per hour since the start.
    curve: BTreeMap<i64, (u64, u64)>,
    by_local_hour: [u64; 24],
    sms: u64,
    sms_segments: u64,
    sms_cost: f64,
    sms_unpriced: u64,
    /// The outcomes that send the SMS, and its segments.
    sms_plan: Option<(Vec<Outcome>, u64)>,
}

impl Tally {
    fn new(c: &EstimateCampaign, s: &EstimateSettings) -> Self {
        let sms_plan = c.sms.as_ref().map(|p| (p.after.clone(), template_segments(&p.body, &s.variable_chars)));
        Self {
            start: s.start,
            tz: c.timezone,
            last_end: 0,
            calls: 0,
            calls_by_outcome: BTreeMap::new(),
            minutes: 0,
            minutes_by_outcome: BTreeMap::new(),
            voice: 0.0,
            voice_by_outcome: BTreeMap::new(),
            voice_by_rate: BTreeMap::new(),
            unpriced: 0,
            final_states: BTreeMap::new(),
            curve: BTreeMap::new(),
            by_local_hour: [0; 24],
            sms: 0,
            sms_segments: 0,
            sms_cost: 0.0,
            sms_unpriced: 0,
            sms_plan,
        }
    }

    fn call(&mut self, at: i64, end: i64, call: &CallDraw, ct: &EstimateContact, prices: &PriceTable) {
        let outcome = call.outcome().as_str().to_string();
        self.calls += 1;
        self.last_end = self.last_end.max(end);
        *self.calls_by_outcome.entry(outcome.clone()).or_default() += 1;
        let person = call.answered() && matches!(call.answered_by, None | Some(crate::domain::AnsweredBy::Human));
        let hour = self.curve.entry(at.div_euclid(3_600_000)).or_default();
        hour.0 += 1;
        if person {
            hour.1 += 1;
            let local = (self.start + Duration::milliseconds(at)).with_timezone(&self.tz.get());
            self.by_local_hour[local.hour() as usize] += 1;
        }
        let minutes = billed_minutes(call.talk_s);
        if minutes == 0 {
            return;
        }
        self.minutes += minutes;
        *self.minutes_by_outcome.entry(outcome.clone()).or_default() += minutes;
        match prices.voice_rate(&ct.phone) {
            Some(rate) => {
                let cost = minutes as f64 * rate.per_minute;
                self.voice += cost;
                *self.voice_by_outcome.entry(outcome).or_default() += cost;
                *self.voice_by_rate.entry(format!("{} {}", rate.country, rate.number_type)).or_default() += cost;
            }
            None => self.unpriced += 1,
        }
    }

    /// A contact's end; the SMS fallback follows a final outcome it lists, unless the contact was blocked
    /// (opted out, DNC, already notified).
    fn final_state(&mut self, state: &str, outcome: Option<Outcome>, ct: &EstimateContact, prices: &PriceTable) {
        *self.final_states.entry(state.to_string()).or_default() += 1;
        let Some((after, segments)) = &self.sms_plan else { return };
        let sends = state != FinalState::Blocked.as_str() && outcome.is_some_and(|o| after.contains(&o));
        if !sends {
            return;
        }
        self.sms += 1;
        self.sms_segments += segments;
        match prices.sms_rate(&ct.phone) {
            Some(r) => self.sms_cost += *segments as f64 * r.per_segment,
            None => self.sms_unpriced += 1,
        }
    }

    fn report(self, input: &EstimateInput<'_>) -> EstimateReport {
        let s = input.settings;
        let c = input.campaign;
        let finish = self.start + Duration::milliseconds(self.last_end);
        let answer_curve = self
            .curve
            .iter()
            .map(|(h, (calls, answered))| {
                let from = self.start + Duration::hours(*h);
                CurveHour {
                    from,
                    local_hour: from.with_timezone(&self.tz.get()).hour(),
                    calls: *calls,
                    answered: *answered,
                }
            })
            .collect();
        let rate = c.cps.min(s.account_cps * c.account_cps_share);
        let mut assumptions = vec![
            format!(
                "dialling at {rate} calls/s (campaign CPS {} within {} of the account's {}), paced like the dialer: at most floor(CPS) calls per {:.3} s",
                c.cps,
                c.account_cps_share,
                s.account_cps,
                1.0 + s.pacing_margin.as_secs_f64()
            ),
            format!("at most {} calls in flight", c.max_in_flight),
            "each contact is called only while its calling hours are open in every one of its zones, with the campaign's profiles and limits".into(),
            format!("answered calls last as long as their path through the script, spoken at {:.1} characters/s", input.mix.say_rate(&c.script.language)),
            "voice is billed per started minute of each answered call; busy, unanswered and failed calls cost nothing".into(),
            "the do-not-call list as it will be when calls are made, and other campaigns sharing the account's CPS, are not modelled".into(),
        ];
        if (s.time_factor - 1.0).abs() > f64::EPSILON {
            assumptions.push(format!("call durations divided by {} (the simulator's speed)", s.time_factor));
        }
        match &c.sms {
            Some(_) => assumptions.push("one SMS per contact whose final outcome the campaign's [sms] lists; its segments from the template with variables at their mean length".into()),
            None => assumptions.push("no SMS fallback: the campaign sends no text messages".into()),
        }
        if self.unpriced > 0 || self.sms_unpriced > 0 {
            assumptions.push(format!(
                "{} answered calls and {} SMS to numbers the price table has no rate for are priced at 0",
                self.unpriced, self.sms_unpriced
            ));
        }
        let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
        EstimateReport {
            campaign_id: input.campaign_id,
            start: self.start,
            finish,
            duration_s: self.last_end as f64 / 1000.0,
            contacts: input.contacts.len() as u64,
            calls: self.calls,
            calls_by_outcome: self.calls_by_outcome,
            minutes: self.minutes,
            minutes_by_outcome: self.minutes_by_outcome,
            contacts_by_final_state: self.final_states,
            answer_curve,
            answered_by_local_hour: self.by_local_hour.to_vec(),
            sms: self.sms,
            sms_segments: self.sms_segments,
            cost: CostBreakdown {
                currency: input.prices.currency.clone(),
                total: round(self.voice + self.sms_cost),
                voice: round(self.voice),
                sms: round(self.sms_cost),
                voice_by_outcome: self.voice_by_outcome.into_iter().map(|(k, v)| (k, round(v))).collect(),
                voice_by_rate: self.voice_by_rate.into_iter().map(|(k, v)| (k, round(v))).collect(),
                unpriced_calls: self.unpriced,
                prices_source: input.prices.source.clone(),
                prices_date: input.prices.date.clone(),
            },
            mix_source: input.mix_source,
            mix: input.mix.clone(),
            time_factor: s.time_factor,
            assumptions,
        }
    }
}

/// Segments of a template with each `{variable}` as that many characters (the literal text decides the
/// encoding: a Japanese body is UCS-2 whatever the names are).
fn template_segments(body: &str, variable_chars: &BTreeMap<String, f64>) -> u64 {
    let mut text = String::with_capacity(body.len() + 64);
    let mut rest = body;
    while let Some(open) = rest.find('{') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let n = variable_chars.get(&after[..close]).copied().unwrap_or(10.0).round().max(0.0) as usize;
        text.extend(std::iter::repeat_n('x', n));
        rest = &after[close + 1..];
    }
    text.push_str(rest);
    sms_segments(&text)
}

#[cfg(test)]
mod tests;
