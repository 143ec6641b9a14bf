//! When a callee may be called at all: the callee's own zone (given, derived from the number, or — only
//! when a campaign allows it — the campaign's), compliance profiles, and the audit that checks calls
//! after the fact with the very same rules.
//!
//! A contact with several candidate zones (a number whose prefix spans zones) is called only while every
//! rule is open in **every** candidate zone: guessing one zone is how a 06:00 call happens.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use super::campaign::{FieldIssue, Limits, WindowFile};
use super::numberzone;
use super::script::{Action, Script};
use super::{CallingWindow, ParseError, Tz, E164};

/// Where a contact's zone came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ZoneSource {
    /// The import gave it.
    Given,
    /// Derived from the number's country and prefix.
    Number,
    /// The campaign's zone, because the campaign allows that fallback (`compliance.zone_fallback`).
    Campaign,
}

impl ZoneSource {
    pub const ALL: [ZoneSource; 3] = [Self::Given, Self::Number, Self::Campaign];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Given => "given",
            Self::Number => "number",
            Self::Campaign => "campaign",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL.into_iter().find(|z| z.as_str() == s).ok_or_else(|| ParseError::new("zone source", s))
    }
}

impl fmt::Display for ZoneSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A contact's zones, resolved once at import: every zone the rules must be open in, where they came from,
/// and the number's US state (for state rules) when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactZone {
    pub zones: Vec<Tz>,
    pub source: ZoneSource,
    pub region: Option<String>,
}

impl ContactZone {
    /// One zone the import gave (the number's state, if any, is not looked up).
    pub fn given(zone: Tz) -> Self {
        Self { zones: vec![zone], source: ZoneSource::Given, region: None }
    }

    /// No zone: stored empty and read as the campaign's (as a contact from before zones were resolved).
    pub fn campaigns() -> Self {
        Self { zones: vec![], source: ZoneSource::Campaign, region: None }
    }

    /// The zones as stored (`contacts.zones`); a row from before zones were resolved has none and is
    /// read as the campaign's.
    pub fn from_stored(zones: Vec<Tz>, source: Option<ZoneSource>, region: Option<String>, campaign: Tz) -> Self {
        if zones.is_empty() {
            Self { zones: vec![campaign], source: ZoneSource::Campaign, region }
        } else {
            Self { zones, source: source.unwrap_or(ZoneSource::Given), region }
        }
    }

    /// The zones for display: `Asia/Tokyo`, or `America/Denver & America/Los_Angeles`.
    pub fn names(&self) -> String {
        self.zones.iter().map(|z| z.name()).collect::<Vec<_>>().join(" & ")
    }
}

/// How a campaign resolves its contacts' zones, and what it requires of each contact.
#[derive(Debug, Clone)]
pub struct Zoning {
    pub campaign_tz: Tz,
    /// Contacts whose number gives no zone are called in the campaign's zone (off by default).
    pub fallback: bool,
    /// Every contact needs an `external_id` (one notification per parcel).
    pub require_reference: bool,
    /// The campaign's rules: a number spanning zones in which they are never all open at once is refused
    /// (it could never be called, and would keep the campaign from ending).
    pub rules: Option<CallPolicy>,
}

impl Zoning {
    /// For a file whose zones do not matter (a do-not-call list): every number resolves.
    pub fn any() -> Self {
        Self { campaign_tz: Tz::from(chrono_tz::UTC), fallback: true, require_reference: false, rules: None }
    }

    /// The zone of a contact with zone `given` (if any) and number `phone`. The error names the column.
    pub fn resolve(
        &self,
        given: Option<Tz>,
        phone: &E164,
        external_id: Option<&str>,
    ) -> Result<ContactZone, (&'static str, String)> {
        if self.require_reference && external_id.is_none() {
            return Err((
                "external_id",
                "required: the campaign's profile allows one notification per parcel, so each contact needs its reference".into(),
            ));
        }
        let region = numberzone::us_state(phone).map(str::to_string);
        if let Some(z) = given {
            return Ok(ContactZone { zones: vec![z], source: ZoneSource::Given, region });
        }
        let zones = numberzone::candidate_zones(phone);
        if !zones.is_empty() {
            let zone = ContactZone { zones, source: ZoneSource::Number, region };
            let never = zone.zones.len() > 1
                && self.rules.as_ref().is_some_and(|r| r.next_opening(&zone, Utc::now()).is_none());
            if never {
                return Err((
                    "timezone",
                    format!(
                        "the number {} may be in any of {} zones ({}…) and the campaign's calling hours are never open in all of them at once; give the contact's zone",
                        phone.as_str(),
                        zone.zones.len(),
                        zone.zones.iter().take(3).map(|z| z.name()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            return Ok(zone);
        }
        if self.fallback {
            return Ok(ContactZone { zones: vec![self.campaign_tz], source: ZoneSource::Campaign, region });
        }
        Err((
            "timezone",
            format!(
                "no zone given and none is known for the number {}; give the contact's zone, or allow the \
                 campaign's with compliance.zone_fallback = true",
                phone.as_str()
            ),
        ))
    }
}

/// A compliance profile a campaign opts into; each adds rules on top of the campaign's own (the stricter
/// wins) and refuses a script that breaks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Profile {
    /// 47 CFR 64.1200: 08:00–21:00 at the called party's location, the business identified at the start,
    /// and the stricter state rules of `core/data/us_state_calling_rules.toml` where the state is known.
    #[serde(rename = "us-tcpa")]
    UsTcpa,
    /// The FCC's package-delivery exemption (FCC 14-32, ¶ 138–143): one notification per parcel, at most a
    /// minute, the company named, an opt-out in every call, no marketing.
    #[serde(rename = "us-fcc-package-delivery")]
    UsFccPackageDelivery,
    /// 特定商取引法 (Act on Specified Commercial Transactions) arts. 16–17: the business named first, a
    /// refusal ends every call from the business; 08:00–21:00 local.
    #[serde(rename = "jp-tokushoho")]
    JpTokushoho,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsTcpa => "us-tcpa",
            Self::UsFccPackageDelivery => "us-fcc-package-delivery",
            Self::JpTokushoho => "jp-tokushoho",
        }
    }

    /// The profile's own calling hours, callee-local.
    fn window(self) -> Option<(NaiveTime, NaiveTime)> {
        let t = |h| NaiveTime::from_hms_opt(h, 0, 0).expect("valid hour");
        match self {
            Self::UsTcpa | Self::JpTokushoho => Some((t(8), t(21))),
            Self::UsFccPackageDelivery => None,
        }
    }

    fn identifies_business(self) -> bool {
        true
    }
    fn needs_opt_out(self) -> bool {
        matches!(self, Self::UsFccPackageDelivery | Self::JpTokushoho)
    }
    fn one_per_reference(self) -> bool {
        self == Self::UsFccPackageDelivery
    }
    fn max_message_s(self) -> Option<f64> {
        (self == Self::UsFccPackageDelivery).then_some(60.0)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[compliance]` table of a campaign file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Compliance {
    /// Profiles to apply ("us-tcpa", "us-fcc-package-delivery", "jp-tokushoho").
    pub profiles: Vec<Profile>,
    /// The business as the callee hears it; profiles require it in the start menu's prompt.
    pub business_name: Option<String>,
    /// Call contacts whose number gives no zone in the campaign's zone. Off: such contacts are refused
    /// at import.
    pub zone_fallback: bool,
}

impl Compliance {
    pub fn has(&self, p: Profile) -> bool {
        self.profiles.contains(&p)
    }

    /// Whether one notification per reference holds, by the campaign's limits or a profile.
    pub fn one_per_reference(&self, limits: &Limits) -> bool {
        limits.one_per_external_id || self.profiles.iter().any(|p| p.one_per_reference())
    }

    /// Every way `script` breaks a profile, as field issues.
    pub fn check(&self, script: &Script) -> Vec<FieldIssue> {
        let mut issues = Vec::new();
        let issue = |field: &str, reason: String| FieldIssue { field: field.into(), reason };
        let mut seen = BTreeSet::new();
        for p in &self.profiles {
            if !seen.insert(*p) {
                issues.push(issue("compliance.profiles", format!("{p} is listed twice")));
            }
        }
        let Some(start) = script.menus.get(&script.start) else { return issues };
        let start_field = format!("script.menus.{}", script.start);
        let name = self.business_name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        if self.profiles.iter().any(|p| p.identifies_business()) {
            let who: Vec<&str> = self.profiles.iter().filter(|p| p.identifies_business()).map(|p| p.as_str()).collect();
            match name {
                None => issues.push(issue(
                    "compliance.business_name",
                    format!("required by {}: the callee must hear who is calling", who.join(", ")),
                )),
                Some(n) if !start.say.as_deref().unwrap_or("").contains(n) => issues.push(issue(
                    &format!("{start_field}.say"),
                    format!("must name the business ({n:?}) at the start of the call, as {} requires", who.join(", ")),
                )),
                Some(_) => {}
            }
        }
        let needs_opt_out: Vec<&str> = self.profiles.iter().filter(|p| p.needs_opt_out()).map(|p| p.as_str()).collect();
        if !needs_opt_out.is_empty() && !start.options.values().any(|o| o.action() == Ok(Action::OptOut)) {
            issues.push(issue(
                &format!("{start_field}.options"),
                format!(
                    "must offer an opt-out key (an option with opt_out = true) in the first menu, as {} requires",
                    needs_opt_out.join(", ")
                ),
            ));
        }
        for p in &self.profiles {
            if let Some(max) = p.max_message_s() {
                let s = spoken_seconds(script);
                if s > max {
                    issues.push(issue(
                        "script",
                        format!(
                            "the longest message takes about {s:.0} s to speak ({} at its speaking rate); {p} allows {max:.0} s",
                            script.language
                        ),
                    ));
                }
            }
        }
        issues
    }
}

/// A variable's assumed spoken length: a name, a date, a time slot.
const VARIABLE_CHARS: usize = 12;
const VARIABLE_WORDS: usize = 4;

/// Seconds to speak `text`: CJK at 5 characters per second (≈ 300 per minute, NHK's news pace), other
/// languages at 150 words per minute. Variables count as a typical value.
pub fn speaking_seconds(text: &str, language: &str) -> f64 {
    let vars = super::script::variables_in(text).map(|v| v.len()).unwrap_or(0);
    let mut plain = String::with_capacity(text.len());
    let mut depth = 0;
    for ch in text.chars() {
        match ch {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => plain.push(ch),
            _ => {}
        }
    }
    let cjk = language.starts_with("ja") || language.starts_with("zh") || language.starts_with("ko");
    if cjk {
        let chars = plain.chars().filter(|c| !c.is_whitespace() && !"、。，．！？「」".contains(*c)).count();
        (chars + vars * VARIABLE_CHARS) as f64 / 5.0
    } else {
        let words = plain.split_whitespace().count();
        (words + vars * VARIABLE_WORDS) as f64 / 2.5
    }
}

/// The longest message a callee can hear in one call: along the longest path of menus (each menu once),
/// with the longest option prompt at the end, and the goodbye.
pub fn spoken_seconds(script: &Script) -> f64 {
    fn walk(script: &Script, menu: &str, seen: &mut BTreeSet<String>) -> f64 {
        let Some(m) = script.menus.get(menu) else { return 0.0 };
        if !seen.insert(menu.to_string()) {
            return 0.0;
        }
        let own = m.say.as_deref().map(|s| speaking_seconds(s, &script.language)).unwrap_or(0.0);
        let mut best: f64 = 0.0;
        for o in m.options.values() {
            let say = o.say.as_deref().map(|s| speaking_seconds(s, &script.language)).unwrap_or(0.0);
            let next = match o.action() {
                Ok(Action::Goto(to)) => walk(script, to, seen),
                _ => 0.0,
            };
            best = best.max(say + next);
        }
        seen.remove(menu);
        own + best
    }
    let goodbye = script.goodbye.as_deref().map(|s| speaking_seconds(s, &script.language)).unwrap_or(0.0);
    walk(script, &script.start, &mut BTreeSet::new()) + goodbye
}

/// A US state's rules, stricter than the TCPA's, from `core/data/us_state_calling_rules.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateRule {
    /// Calling hours: open while any of them is open.
    pub windows: Vec<WindowFile>,
    /// Calls to one number in 24 h.
    #[serde(default)]
    pub max_calls_24h: Option<i32>,
    pub source: String,
}

#[derive(Debug)]
struct ParsedStateRule {
    windows: Vec<CallingWindow>,
    max_calls_24h: Option<i32>,
}

const STATE_RULES: &str = include_str!("../../data/us_state_calling_rules.toml");

fn state_rules() -> &'static BTreeMap<String, ParsedStateRule> {
    static RULES: OnceLock<BTreeMap<String, ParsedStateRule>> = OnceLock::new();
    RULES.get_or_init(|| {
        let raw: BTreeMap<String, StateRule> = toml::from_str(STATE_RULES).expect("us_state_calling_rules.toml parses");
        raw.into_iter()
            .map(|(state, r)| {
                let windows = r
                    .windows
                    .iter()
                    .map(|w| CallingWindow::parse(w).unwrap_or_else(|e| panic!("state rule {state}: {e:?}")))
                    .collect();
                (state, ParsedStateRule { windows, max_calls_24h: r.max_calls_24h })
            })
            .collect()
    })
}

/// One rule that must be open: any of `windows`, in `tz`.
#[derive(Debug, Clone)]
struct Gate<'a> {
    windows: Vec<&'a CallingWindow>,
    tz: Tz,
}

impl Gate<'_> {
    fn next_opening(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.windows.iter().filter_map(|w| w.next_opening(self.tz.get(), now)).min()
    }
}

/// A call is started only if the rules stay open this much longer: the commit after the check stamps
/// the call's time a moment later.
pub const WINDOW_MARGIN: Duration = Duration::seconds(2);

/// How far ahead an opening is looked for before a callee counts as never callable.
const HORIZON_DAYS: i64 = 21;

/// A campaign's calling rules, as the scheduler applies them and the audit re-checks them.
#[derive(Debug, Clone)]
pub struct CallPolicy {
    pub window: CallingWindow,
    pub compliance: Compliance,
    pub limits: Limits,
    profile_window: Option<CallingWindow>,
}

impl CallPolicy {
    pub fn new(window: CallingWindow, compliance: Compliance, limits: Limits) -> Self {
        // The profiles' hours intersect, so the latest start and the earliest end of all of them.
        let hours: Vec<(NaiveTime, NaiveTime)> = compliance.profiles.iter().filter_map(|p| p.window()).collect();
        let profile_window = (!hours.is_empty()).then(|| CallingWindow {
            start: hours.iter().map(|h| h.0).max().expect("non-empty"),
            end: hours.iter().map(|h| h.1).min().expect("non-empty"),
            days: (0..7).collect(),
            holidays: BTreeSet::new(),
            public_holidays: None,
        });
        Self { window, compliance, limits, profile_window }
    }

    /// The window of the campaign, replaced while it runs.
    pub fn set_window(&mut self, window: CallingWindow) {
        self.window = window;
    }

    fn state_rule(&self, zone: &ContactZone) -> Option<&'static ParsedStateRule> {
        if !self.compliance.has(Profile::UsTcpa) {
            return None;
        }
        zone.region.as_deref().and_then(|r| state_rules().get(r))
    }

    fn gates<'a>(&'a self, zone: &'a ContactZone) -> Vec<Gate<'a>> {
        let state = self.state_rule(zone);
        let mut gates = Vec::new();
        for &tz in &zone.zones {
            gates.push(Gate { windows: vec![&self.window], tz });
            if let Some(w) = &self.profile_window {
                gates.push(Gate { windows: vec![w], tz });
            }
            if let Some(s) = state {
                gates.push(Gate { windows: s.windows.iter().collect(), tz });
            }
        }
        gates
    }

    /// `now` if every rule is open in every zone of the callee, else the first instant they all are
    /// (`None`: not within three weeks, e.g. candidate zones whose windows never overlap).
    pub fn next_opening(&self, zone: &ContactZone, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let gates = self.gates(zone);
        let mut t = now;
        // Each pass moves `t` to the latest next opening; stable once all are open at `t`.
        loop {
            let mut moved = false;
            for g in &gates {
                let o = g.next_opening(t)?;
                if o > t {
                    t = o;
                    moved = true;
                }
            }
            if !moved {
                return Some(t);
            }
            if t - now > Duration::days(HORIZON_DAYS) {
                return None;
            }
        }
    }

    pub fn is_open(&self, zone: &ContactZone, now: DateTime<Utc>) -> bool {
        self.next_opening(zone, now) == Some(now)
    }

    /// The dispatcher's last look before it commits a call: `None` while every rule is open for the
    /// callee now and still [`WINDOW_MARGIN`] later, else when to try again.
    pub fn closed_until(&self, zone: &ContactZone, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let until = now + WINDOW_MARGIN;
        match (self.next_opening(zone, now), self.next_opening(zone, until)) {
            (Some(a), Some(b)) if a == now && b == until => None,
            (_, Some(b)) => Some(b.max(until)),
            _ => Some(now + Duration::days(1)),
        }
    }

    /// Calls to this callee's number allowed in any 24 h, across campaigns: the campaign's limit and the
    /// state's, whichever is lower.
    pub fn max_calls_24h(&self, zone: &ContactZone) -> Option<i32> {
        let state = self.state_rule(zone).and_then(|s| s.max_calls_24h);
        match (self.limits.max_calls_per_number_24h, state) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn one_per_reference(&self) -> bool {
        self.compliance.one_per_reference(&self.limits)
    }

    /// Every contact must carry its reference (a profile allows one notification per parcel).
    pub fn requires_reference(&self) -> bool {
        self.compliance.profiles.iter().any(|p| p.one_per_reference())
    }

    /// The rules that apply to this callee, named for the audit.
    pub fn rules_for(&self, zone: &ContactZone) -> Vec<String> {
        let w = &self.window;
        let mut rules = vec![format!("campaign window {}–{}", w.start.format("%H:%M"), w.end.format("%H:%M"))];
        if let Some(c) = w.public_holidays {
            rules.push(format!("no calls on {} public holidays", c.as_str()));
        }
        for p in &self.compliance.profiles {
            if let Some((s, e)) = p.window() {
                rules.push(format!("{p} {}–{}", s.format("%H:%M"), e.format("%H:%M")));
            }
        }
        if let (Some(s), Some(r)) = (self.state_rule(zone), zone.region.as_deref()) {
            let hours: Vec<String> =
                s.windows.iter().map(|w| format!("{}–{}", w.start.format("%H:%M"), w.end.format("%H:%M"))).collect();
            rules.push(format!("us-tcpa state {r} {}", hours.join(" or ")));
        }
        if let Some(n) = self.max_calls_24h(zone) {
            rules.push(format!("at most {n} calls per number in 24 h"));
        }
        if self.one_per_reference() {
            rules.push("one notification per reference".into());
        }
        rules
    }
}

/// One call as the audit sees it.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub attempt_id: i64,
    pub contact_id: i64,
    pub phone: E164,
    pub zone: ContactZone,
    pub requested_at: DateTime<Utc>,
    /// Calls to this number (any campaign) requested in the 24 h before this one.
    pub calls_24h_before: i64,
    /// When the number went on a DNC list that applies, if it did before this call.
    pub dnc_since: Option<DateTime<Utc>>,
    /// Another contact with the same reference was reached before this call.
    pub reference_reached_before: bool,
}

/// One audited call.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub attempt_id: i64,
    pub contact_id: i64,
    pub phone: String,
    pub requested_at: DateTime<Utc>,
    /// The callee's local time in each zone, `2026-12-06T09:15:00-08:00 America/Los_Angeles`.
    pub local_times: Vec<String>,
    pub zone_source: ZoneSource,
    pub region: Option<String>,
    pub rules: Vec<String>,
    /// Empty when the call broke no rule.
    pub violations: Vec<String>,
}

/// Re-checks calls against the campaign's rules, with the same code the scheduler uses.
pub fn audit(policy: &CallPolicy, calls: &[CallRecord]) -> Vec<AuditEntry> {
    calls
        .iter()
        .map(|c| {
            let mut violations = Vec::new();
            if !policy.is_open(&c.zone, c.requested_at) {
                violations.push(format!("outside the calling window in {}", c.zone.names()));
            }
            if let Some(max) = policy.max_calls_24h(&c.zone) {
                if c.calls_24h_before >= max as i64 {
                    violations.push(format!(
                        "over the limit: call {} to this number in 24 h (max {max})",
                        c.calls_24h_before + 1
                    ));
                }
            }
            if let Some(at) = c.dnc_since {
                violations.push(format!("after an opt-out or DNC entry at {}", at.to_rfc3339()));
            }
            if policy.one_per_reference() && c.reference_reached_before {
                violations.push("a second notification for a reference already reached".into());
            }
            AuditEntry {
                attempt_id: c.attempt_id,
                contact_id: c.contact_id,
                phone: c.phone.as_str().to_string(),
                requested_at: c.requested_at,
                local_times: c
                    .zone
                    .zones
                    .iter()
                    .map(|z| format!("{} {}", c.requested_at.with_timezone(&z.get()).to_rfc3339(), z.name()))
                    .collect(),
                zone_source: c.zone.source,
                region: c.zone.region.clone(),
                rules: policy.rules_for(&c.zone),
                violations,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::campaign::{CampaignSpec, SpecError};

    fn tz(name: &str) -> Tz {
        Tz::parse(name).unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn window(start: &str, end: &str) -> CallingWindow {
        let w =
            WindowFile { start: start.into(), end: end.into(), days: vec![], holidays: vec![], public_holidays: None };
        CallingWindow::parse(&w).unwrap()
    }

    fn policy(w: CallingWindow, profiles: &[Profile]) -> CallPolicy {
        let compliance =
            Compliance { profiles: profiles.to_vec(), business_name: Some("Example".into()), zone_fallback: false };
        CallPolicy::new(w, compliance, Limits::default())
    }

    fn zoning(campaign: &str) -> Zoning {
        Zoning { campaign_tz: tz(campaign), fallback: false, require_reference: false, rules: None }
    }

    fn resolve(z: &Zoning, phone: &str) -> ContactZone {
        z.resolve(None, &E164::parse(phone, None).unwrap(), None).unwrap()
    }

    /// The issue's case: at 09:00 in New York it is 06:00 in Los Angeles.
    #[test]
    fn a_los_angeles_number_in_a_new_york_campaign_waits_for_los_angeles_morning() {
        let z = zoning("America/New_York");
        let la = resolve(&z, "+12135550100");
        assert_eq!(
            la,
            ContactZone {
                zones: vec![tz("America/Los_Angeles")],
                source: ZoneSource::Number,
                region: Some("CA".into())
            }
        );
        let ny = resolve(&z, "+12125550100");
        assert_eq!(ny.zones, [tz("America/New_York")]);

        let p = policy(window("09:00", "20:00"), &[]);
        let nine_in_new_york = utc(2026, 12, 7, 14, 0);
        assert!(p.is_open(&ny, nine_in_new_york));
        assert!(!p.is_open(&la, nine_in_new_york));
        assert_eq!(p.next_opening(&la, nine_in_new_york), Some(utc(2026, 12, 7, 17, 0)), "09:00 in Los Angeles");

        // A zone the import gave wins over the number's.
        let given = z.resolve(Some(tz("America/New_York")), &E164::parse("+12135550100", None).unwrap(), None).unwrap();
        assert_eq!((given.zones, given.source), (vec![tz("America/New_York")], ZoneSource::Given));
    }

    #[test]
    fn a_number_without_prefix_data_in_a_country_of_many_zones_waits_until_every_zone_is_open() {
        // NANP toll-free numbers have no area: every zone of the plan, Pago Pago (UTC−11) to Guam (UTC+10).
        let tollfree = resolve(&zoning("America/New_York"), "+18005551234");
        assert_eq!(tollfree.source, ZoneSource::Number);
        assert!(tollfree.zones.len() > 20, "{}", tollfree.names());
        for z in ["America/Adak", "America/St_Johns", "America/Los_Angeles", "America/New_York"] {
            assert!(tollfree.zones.contains(&tz(z)), "{z} missing");
        }
        let p = policy(window("09:00", "20:00"), &[]);
        let from = utc(2026, 12, 7, 9, 0);
        let at = p.next_opening(&tollfree, from).unwrap();
        for z in &tollfree.zones {
            assert!(p.window.is_open(z.get(), at), "{} closed at {at}", z.name());
        }
        let minute = Duration::minutes(1);
        assert!(tollfree.zones.iter().any(|z| !p.window.is_open(z.get(), at - minute)), "not the first instant");
        // 09:00 in St John's (UTC−3:30) is already 01:30 in Adak (UTC−10): no instant when both are in
        // 09:00–12:00, so never callable rather than a guess at one zone.
        assert_eq!(policy(window("09:00", "12:00"), &[]).next_opening(&tollfree, from), None);
        // …so the import refuses it, naming the column, rather than keep a contact that cannot end.
        let strict = Zoning { rules: Some(policy(window("09:00", "12:00"), &[])), ..zoning("America/New_York") };
        let (column, why) = strict.resolve(None, &E164::parse("+18005551234", None).unwrap(), None).unwrap_err();
        assert_eq!(column, "timezone");
        assert!(why.contains("never open in all of them"), "{why}");
        // (Resolved as of now: 14 hours fit the NANP's spread in any season; 11 do only in winter.)
        let open = Zoning { rules: Some(policy(window("08:00", "22:00"), &[])), ..zoning("America/New_York") };
        assert!(open.resolve(None, &E164::parse("+18005551234", None).unwrap(), None).is_ok());
    }

    #[test]
    fn a_number_without_any_zone_is_refused_unless_the_campaign_allows_its_own() {
        // +800: international freephone, no zone at all.
        let phone = E164::parse("+80012345678", None).unwrap();
        let z = zoning("Asia/Tokyo");
        let (column, why) = z.resolve(None, &phone, None).unwrap_err();
        assert_eq!(column, "timezone");
        assert!(why.contains("zone_fallback"), "{why}");
        let with_fallback = Zoning { fallback: true, ..z };
        let zone = with_fallback.resolve(None, &phone, None).unwrap();
        assert_eq!((zone.zones, zone.source), (vec![tz("Asia/Tokyo")], ZoneSource::Campaign));
    }

    #[test]
    fn dst_moves_the_utc_opening_both_ways_in_the_us_and_europe() {
        let p = policy(window("09:00", "20:00"), &[]);
        let ny = ContactZone::given(tz("America/New_York"));
        let berlin = ContactZone::given(tz("Europe/Berlin"));
        // US: EST (UTC−5) until 2026-03-08 02:00, EDT (UTC−4) until 2026-11-01 02:00.
        assert_eq!(p.next_opening(&ny, utc(2026, 3, 7, 2, 0)), Some(utc(2026, 3, 7, 14, 0)));
        assert_eq!(p.next_opening(&ny, utc(2026, 3, 8, 2, 0)), Some(utc(2026, 3, 8, 13, 0)));
        assert_eq!(p.next_opening(&ny, utc(2026, 10, 31, 2, 0)), Some(utc(2026, 10, 31, 13, 0)));
        assert_eq!(p.next_opening(&ny, utc(2026, 11, 1, 2, 0)), Some(utc(2026, 11, 1, 14, 0)));
        // The closing moves too: 20:00 EDT is 00:00 UTC, 20:00 EST is 01:00 UTC.
        assert!(!p.is_open(&ny, utc(2026, 10, 31, 0, 30)), "20:30 EDT");
        assert!(p.is_open(&ny, utc(2026, 11, 2, 0, 30)), "19:30 EST");
        // Europe: CET (UTC+1) until 2026-03-29 02:00, CEST (UTC+2) until 2026-10-25 03:00.
        assert_eq!(p.next_opening(&berlin, utc(2026, 3, 28, 20, 0)), Some(utc(2026, 3, 29, 7, 0)));
        assert_eq!(p.next_opening(&berlin, utc(2026, 10, 24, 20, 0)), Some(utc(2026, 10, 25, 8, 0)));
        // A window starting in the hour that does not exist on the spring-forward night opens when the
        // clocks have moved on, never an hour early.
        let night = policy(window("02:30", "05:00"), &[]);
        let opened = night.next_opening(&ny, utc(2026, 3, 8, 5, 0)).unwrap();
        assert!(opened >= utc(2026, 3, 8, 7, 0), "opened at {opened}, before 03:00 EDT");
        assert!(night.window.is_open(ny.zones[0].get(), opened));
    }

    #[test]
    fn an_overnight_window_and_a_profile_intersect() {
        // 22:00–06:00 Tokyo: open late at night and early morning, closed in between.
        let p = policy(window("22:00", "06:00"), &[]);
        let tokyo = ContactZone::given(tz("Asia/Tokyo"));
        assert!(p.is_open(&tokyo, utc(2026, 12, 7, 14, 30)), "23:30 JST");
        assert!(p.is_open(&tokyo, utc(2026, 12, 7, 20, 59)), "05:59 JST");
        assert!(!p.is_open(&tokyo, utc(2026, 12, 7, 21, 0)), "06:00 JST");
        assert_eq!(p.next_opening(&tokyo, utc(2026, 12, 7, 21, 0)), Some(utc(2026, 12, 8, 13, 0)));
        // With jp-tokushoho (08:00–21:00) nothing of it is left: never callable.
        let strict = policy(window("22:00", "06:00"), &[Profile::JpTokushoho]);
        assert_eq!(strict.next_opening(&tokyo, utc(2026, 12, 7, 21, 0)), None);
        // 07:00–22:00 with us-tcpa: the stricter 08:00–21:00 wins.
        let tcpa = policy(window("07:00", "22:00"), &[Profile::UsTcpa]);
        let ny = ContactZone::given(tz("America/New_York"));
        assert_eq!(tcpa.next_opening(&ny, utc(2026, 12, 7, 12, 0)), Some(utc(2026, 12, 7, 13, 0)), "08:00 EST");
        assert!(!tcpa.is_open(&ny, utc(2026, 12, 8, 2, 0)), "21:00 EST");
    }

    #[test]
    fn japanese_public_holidays_are_skipped_when_the_campaign_asks() {
        let mut w = window("09:00", "18:00");
        let tokyo = ContactZone::given(tz("Asia/Tokyo"));
        // Monday 2026-09-21 08:00 JST: Respect for the Aged Day, then a citizens' holiday, then the equinox.
        let monday = utc(2026, 9, 20, 23, 0);
        assert_eq!(policy(w.clone(), &[]).next_opening(&tokyo, monday), Some(utc(2026, 9, 21, 0, 0)));
        w.public_holidays = Some(super::super::holidays::HolidayCalendar::Jp);
        let p = policy(w, &[Profile::JpTokushoho]);
        assert_eq!(p.next_opening(&tokyo, monday), Some(utc(2026, 9, 24, 0, 0)), "Thursday 09:00 JST");
        assert!(p.rules_for(&tokyo).iter().any(|r| r == "no calls on jp public holidays"));
    }

    #[test]
    fn us_state_rules_apply_where_the_number_gives_the_state() {
        let z = zoning("America/New_York");
        let florida = resolve(&z, "+13055550100");
        let texas = resolve(&z, "+12145550100");
        assert_eq!((florida.region.as_deref(), texas.region.as_deref()), (Some("FL"), Some("TX")));
        let tcpa = policy(window("08:00", "21:00"), &[Profile::UsTcpa]);
        // 20:30 in Miami: open under the TCPA, closed under Florida's 08:00–20:00.
        assert!(!tcpa.is_open(&florida, utc(2026, 12, 8, 1, 30)));
        assert!(policy(window("08:00", "21:00"), &[]).is_open(&florida, utc(2026, 12, 8, 1, 30)));
        assert_eq!(tcpa.max_calls_24h(&florida), Some(3));
        let limited = CallPolicy::new(
            window("08:00", "21:00"),
            tcpa.compliance.clone(),
            Limits { max_calls_per_number_24h: Some(5), ..Limits::default() },
        );
        assert_eq!(limited.max_calls_24h(&florida), Some(3), "the state's limit is stricter");
        assert_eq!(limited.max_calls_24h(&texas), Some(5));
        // Texas: Sunday calls only from 12:00 (Dallas is UTC−6 in December).
        let sunday_ten = utc(2026, 12, 6, 16, 0);
        assert_eq!(tcpa.next_opening(&texas, sunday_ten), Some(utc(2026, 12, 6, 18, 0)));
        assert!(tcpa.rules_for(&florida).iter().any(|r| r.starts_with("us-tcpa state FL")));
    }

    fn campaign(compliance: &str, menu: &str, options: &str) -> Result<CampaignSpec, SpecError> {
        let text = format!(
            r#"
name = "c"
caller_id = "+14155550199"
timezone = "America/New_York"
cps = 1.0
[window]
start = "09:00"
end = "20:00"
[compliance]
{compliance}
[script]
language = "en-US"
variables = ["name"]
[script.menus.main]
say = "{menu}"
[script.menus.main.options]
{options}
"#
        );
        CampaignSpec::parse(&text, "c.toml")
    }

    fn reasons(r: Result<CampaignSpec, SpecError>) -> Vec<String> {
        match r {
            Err(SpecError::Invalid(issues)) => issues.iter().map(|i| format!("{}: {}", i.field, i.reason)).collect(),
            Err(e) => panic!("not a validation error: {e}"),
            Ok(_) => vec![],
        }
    }

    const OPTIONS: &str = r#""1" = { result = "confirmed" }
"9" = { opt_out = true, say = "You will not be called again." }"#;

    #[test]
    fn a_script_that_breaks_its_profile_is_refused_with_the_reason() {
        let ok = campaign(
            r#"profiles = ["us-fcc-package-delivery", "us-tcpa"]
business_name = "Acme Parcels""#,
            "Hi {name}, this is Acme Parcels about your parcel. Press 1 to confirm, 9 to stop these calls.",
            OPTIONS,
        );
        assert!(ok.is_ok(), "{:?}", reasons(ok));

        let no_name = reasons(campaign(r#"profiles = ["us-tcpa"]"#, "Hi {name}.", OPTIONS));
        assert_eq!(no_name.len(), 1);
        assert!(no_name[0].starts_with("compliance.business_name: required by us-tcpa"), "{no_name:?}");

        let unnamed = reasons(campaign(
            "profiles = [\"jp-tokushoho\"]\nbusiness_name = \"Acme\"",
            "Hi {name}, press 1.",
            OPTIONS,
        ));
        assert!(unnamed[0].starts_with("script.menus.main.say: must name the business (\"Acme\")"), "{unnamed:?}");

        let no_opt_out = reasons(campaign(
            "profiles = [\"us-fcc-package-delivery\"]\nbusiness_name = \"Acme\"",
            "Acme: press 1.",
            r#""1" = { result = "confirmed" }"#,
        ));
        assert!(no_opt_out[0].starts_with("script.menus.main.options: must offer an opt-out key"), "{no_opt_out:?}");

        let long = ["word"; 160].join(" ");
        let too_long = reasons(campaign(
            "profiles = [\"us-fcc-package-delivery\"]\nbusiness_name = \"Acme\"",
            &format!("Acme: {long}. Press 9 to stop."),
            OPTIONS,
        ));
        assert_eq!(too_long.len(), 1, "{too_long:?}");
        assert!(too_long[0].contains("allows 60 s") && too_long[0].starts_with("script:"), "{too_long:?}");

        let unknown = campaign("profiles = [\"gdpr\"]", "x", OPTIONS).unwrap_err().to_string();
        assert!(unknown.contains("gdpr"), "{unknown}");
    }

    #[test]
    fn speaking_time_counts_words_or_japanese_characters() {
        assert_eq!(speaking_seconds(&["w"; 150].join(" "), "en-US"), 60.0);
        // 10 characters and one variable (12) at 5 per second.
        assert_eq!(speaking_seconds("お荷物のお届けです。{name}様", "ja-JP"), (9.0 + 1.0 + 12.0) / 5.0);
    }

    #[test]
    fn the_audit_names_each_broken_rule() {
        let mut p = policy(window("09:00", "20:00"), &[Profile::UsFccPackageDelivery]);
        p.limits.max_calls_per_number_24h = Some(2);
        let la = ContactZone {
            zones: vec![tz("America/Los_Angeles")],
            source: ZoneSource::Number,
            region: Some("CA".into()),
        };
        let call = |at, before, dnc, reached| CallRecord {
            attempt_id: 1,
            contact_id: 1,
            phone: E164::parse("+12135550100", None).unwrap(),
            zone: la.clone(),
            requested_at: at,
            calls_24h_before: before,
            dnc_since: dnc,
            reference_reached_before: reached,
        };
        let six_am = utc(2026, 12, 7, 14, 0);
        let ten_am = utc(2026, 12, 7, 18, 0);
        let entries = audit(&p, &[call(ten_am, 1, None, false), call(six_am, 2, Some(ten_am), true)]);
        assert!(entries[0].violations.is_empty(), "{:?}", entries[0].violations);
        assert_eq!(entries[0].local_times, ["2026-12-07T10:00:00-08:00 America/Los_Angeles"]);
        assert_eq!(entries[1].violations.len(), 4, "{:?}", entries[1].violations);
        assert!(entries[1].violations[0].starts_with("outside the calling window in America/Los_Angeles"));
        assert!(entries[1].violations[1].starts_with("over the limit: call 3"));
        assert!(entries[1].violations[2].starts_with("after an opt-out"));
        assert!(entries[1].violations[3].starts_with("a second notification"));
    }
}
