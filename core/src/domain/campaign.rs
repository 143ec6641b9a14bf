//! A campaign file (TOML or YAML), parsed and validated once into [`CampaignSpec`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::compliance::Compliance;
use super::holidays::HolidayCalendar;
use super::script::Script;
use super::E164;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    /// Every field that is wrong (at least one), in file order, so a user fixes them all in one go.
    #[error("{}", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldIssue>),
}

/// One field of a campaign file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("campaign field `{field}`: {reason}")]
pub struct FieldIssue {
    /// Dotted, as in the file: `window.start`, `retry.busy`.
    pub field: String,
    pub reason: String,
}

fn field(field: &str, reason: impl Into<String>) -> FieldIssue {
    FieldIssue { field: field.to_string(), reason: reason.into() }
}

/// The campaign file as written by a user.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignFile {
    pub name: String,
    pub caller_id: String,
    pub timezone: String,
    #[serde(default = "default_cps")]
    pub cps: f64,
    #[serde(default = "default_share")]
    pub account_cps_share: f64,
    #[serde(default = "default_in_flight")]
    pub max_in_flight: i32,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: i32,
    #[serde(default)]
    pub amd: AmdMode,
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout_s: i32,
    pub window: WindowFile,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub recurrence: Option<Recurrence>,
    /// Compliance profiles, the business's name and the zone fallback.
    #[serde(default)]
    pub compliance: Compliance,
    pub script: Script,
    /// A text after the last attempt, for contacts that ended with one of the listed outcomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsFallback>,
    /// The waiting room of menu options with `operator = true`: hold limit, ring time, pacing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operators: Option<super::operators::OperatorSettings>,
}

/// `[sms]`: one SMS per contact when its calls end with one of `after` (e.g. no answer on the last
/// attempt), sent inside the callee's calling window and never to a number on a DNC list. Replies:
/// a stop word puts the number on the DNC list; a reply code records a result like a keypress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsFallback {
    /// Final outcomes that trigger the text: any of no_answer, busy, machine, voicemail, failed,
    /// answered_no_result.
    #[schema(value_type = Vec<String>)]
    pub after: Vec<super::Outcome>,
    /// The text, with `{variable}`s like the voice script's.
    pub body: String,
    /// The sender (E.164); the campaign's `caller_id` when absent.
    #[serde(default)]
    pub from: Option<String>,
    /// Reply code → result ("1" = "reschedule:morning").
    #[serde(default)]
    pub reply_codes: BTreeMap<String, String>,
}

impl SmsFallback {
    /// Outcomes a text may follow: the callee was not reached, or was reached without an answer.
    pub const ALLOWED_AFTER: [super::Outcome; 6] = [
        super::Outcome::NoAnswer,
        super::Outcome::Busy,
        super::Outcome::Machine,
        super::Outcome::Voicemail,
        super::Outcome::Failed,
        super::Outcome::AnsweredNoResult,
    ];

    fn check(&self, script: &Script) -> Vec<FieldIssue> {
        let mut issues = Vec::new();
        if self.after.is_empty() {
            issues.push(field("sms.after", "name at least one outcome"));
        }
        for o in &self.after {
            if !Self::ALLOWED_AFTER.contains(o) {
                issues.push(field("sms.after", format!("{o} cannot be followed by a text (allowed: no_answer, busy, machine, voicemail, failed, answered_no_result)")));
            }
        }
        if self.body.trim().is_empty() {
            issues.push(field("sms.body", "must not be empty"));
        } else if let Err(e) = script.check_text("sms.body", &self.body) {
            issues.push(field("sms.body", e));
        }
        if let Some(from) = &self.from {
            if let Err(e) = E164::parse(from, None) {
                issues.push(field("sms.from", e.to_string()));
            }
        }
        for (code, result) in &self.reply_codes {
            if code.trim().is_empty() || code.chars().any(char::is_whitespace) {
                issues.push(field("sms.reply_codes", format!("{code:?} must be one word")));
            } else if crate::domain::sms::is_stop_word(code) {
                issues.push(field("sms.reply_codes", format!("{code:?} is a stop word (it opts the number out)")));
            }
            if result.trim().is_empty() {
                issues.push(field("sms.reply_codes", format!("{code:?} has an empty result")));
            }
        }
        issues
    }
}

fn default_cps() -> f64 {
    1.0
}
fn default_share() -> f64 {
    1.0
}
fn default_in_flight() -> i32 {
    100
}
fn default_max_attempts() -> i32 {
    3
}
fn default_ring_timeout() -> i32 {
    30
}

/// Answering machine detection, as sent to Twilio's `MachineDetection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AmdMode {
    #[default]
    Off,
    /// Synchronous: the TwiML request waits for the answer and carries `AnsweredBy` (machines get the
    /// voicemail message or a hang-up).
    Enable,
    /// Synchronous, waiting for the greeting to end, so a voicemail message lands after the beep.
    DetectMessageEnd,
    /// Asynchronous (`AsyncAmd`): the script starts at once and the result arrives at `/amd/{token}`; a
    /// machine is recorded and classified when the call ends (no voicemail message).
    Async,
}

impl AmdMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Enable => "enable",
            Self::DetectMessageEnd => "detect_message_end",
            Self::Async => "async",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Off, Self::Enable, Self::DetectMessageEnd, Self::Async].into_iter().find(|m| m.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowFile {
    /// Local start time, "09:00".
    pub start: String,
    /// Local end time, "20:00"; earlier than `start` means the window crosses midnight.
    pub end: String,
    /// Days of week the window opens on ("mon".."sun"); all days when empty.
    #[serde(default)]
    pub days: Vec<String>,
    /// Local dates with no calls at all, "2026-12-31".
    #[serde(default)]
    pub holidays: Vec<String>,
    /// A public-holiday calendar to skip too, computed by rule ("jp": Japan's, with substitute and
    /// sandwiched holidays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_holidays: Option<HolidayCalendar>,
}

/// A calling window in local time, checked in each contact's own time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallingWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub days: BTreeSet<u8>, // 0 = Monday
    pub holidays: BTreeSet<NaiveDate>,
    #[serde(default)]
    pub public_holidays: Option<HolidayCalendar>,
}

impl CallingWindow {
    pub fn parse(w: &WindowFile) -> Result<Self, Vec<FieldIssue>> {
        let mut issues = Vec::new();
        let mut time = |f: &str, v: &str| {
            NaiveTime::parse_from_str(v, "%H:%M")
                .map_err(|_| issues.push(field(f, format!("{v:?} is not a time like 09:00"))))
                .ok()
        };
        let (start, end) = (time("window.start", &w.start), time("window.end", &w.end));
        if start.is_some() && start == end {
            issues.push(field("window", "start and end are equal; the window would be empty"));
        }
        let mut days = BTreeSet::new();
        for d in &w.days {
            match d.parse::<Weekday>() {
                Ok(wd) => {
                    days.insert(wd.num_days_from_monday() as u8);
                }
                Err(_) => issues.push(field("window.days", format!("{d:?} is not a day like mon or tuesday"))),
            }
        }
        if days.is_empty() {
            days.extend(0..7);
        }
        let mut holidays = BTreeSet::new();
        for h in &w.holidays {
            match NaiveDate::parse_from_str(h, "%Y-%m-%d") {
                Ok(d) => {
                    holidays.insert(d);
                }
                Err(_) => issues.push(field("window.holidays", format!("{h:?} is not a date like 2026-12-31"))),
            }
        }
        match (start, end) {
            (Some(start), Some(end)) if issues.is_empty() => {
                Ok(Self { start, end, days, holidays, public_holidays: w.public_holidays })
            }
            _ => Err(issues),
        }
    }
}

/// Delay and maximum number of retries for one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRule {
    /// Seconds to wait before the next attempt.
    pub delay_s: i64,
    /// Retries allowed for this outcome (0 = final).
    pub max: i32,
}

/// Per-outcome retry policy. Invalid numbers, opt-outs and permission errors are always final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    pub busy: RetryRule,
    pub no_answer: RetryRule,
    pub machine: RetryRule,
    pub failed: RetryRule,
    /// Answered but no keypress result: retry to get an answer (0 = accept as final).
    pub no_result: RetryRule,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            busy: RetryRule { delay_s: 600, max: 2 },
            no_answer: RetryRule { delay_s: 3600, max: 2 },
            machine: RetryRule { delay_s: 7200, max: 1 },
            failed: RetryRule { delay_s: 1800, max: 1 },
            no_result: RetryRule { delay_s: 3600, max: 0 },
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Calls to one number in any rolling 24 h, across all campaigns.
    pub max_calls_per_number_24h: Option<i32>,
    /// At most one answered notification per external reference (parcel), across campaigns.
    pub one_per_external_id: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recurrence {
    /// A cron expression with seconds ("0 0 9 * * *" = 09:00 daily).
    pub cron: String,
    pub timezone: String,
}

/// A validated campaign, ready to store.
#[derive(Debug, Clone)]
pub struct CampaignSpec {
    pub file: CampaignFile,
    pub caller_id: E164,
    pub timezone: Tz,
    pub window: CallingWindow,
}

impl CampaignSpec {
    /// Parses TOML or YAML (by extension; TOML when unknown) and validates every field.
    pub fn parse(text: &str, file_name: &str) -> Result<Self, SpecError> {
        let is_yaml = file_name.ends_with(".yaml") || file_name.ends_with(".yml");
        let file: CampaignFile = if is_yaml {
            serde_yaml::from_str(text)
                .map_err(|e| SpecError::Syntax { file: file_name.to_string(), message: e.to_string() })?
        } else {
            toml::from_str(text)
                .map_err(|e| SpecError::Syntax { file: file_name.to_string(), message: e.to_string() })?
        };
        Self::validate(file)
    }

    /// Checks every field and reports all that are wrong, not just the first.
    pub fn validate(file: CampaignFile) -> Result<Self, SpecError> {
        let mut issues = Vec::new();
        if file.name.trim().is_empty() {
            issues.push(field("name", "must not be empty"));
        }
        let caller_id =
            E164::parse(&file.caller_id, None).map_err(|e| issues.push(field("caller_id", e.to_string()))).ok();
        let timezone = (file.timezone.parse::<Tz>())
            .map_err(|_| issues.push(field("timezone", format!("unknown IANA zone {:?}", file.timezone))))
            .ok();
        let mut check = |ok: bool, f: &str, reason: &str| {
            if !ok {
                issues.push(field(f, reason));
            }
        };
        check(file.cps > 0.0 && file.cps.is_finite(), "cps", "must be a positive number");
        check(file.account_cps_share > 0.0 && file.account_cps_share <= 1.0, "account_cps_share", "must be in (0, 1]");
        check(file.max_in_flight > 0, "max_in_flight", "must be positive");
        check(file.max_attempts > 0, "max_attempts", "must be positive");
        check(
            (5..=600).contains(&file.ring_timeout_s),
            "ring_timeout_s",
            "must be between 5 and 600 (Twilio's Timeout)",
        );
        for (name, r) in [
            ("busy", file.retry.busy),
            ("no_answer", file.retry.no_answer),
            ("machine", file.retry.machine),
            ("failed", file.retry.failed),
            ("no_result", file.retry.no_result),
        ] {
            check(r.delay_s >= 0 && r.max >= 0, &format!("retry.{name}"), "delay_s and max must not be negative");
        }
        if let Some(n) = file.limits.max_calls_per_number_24h {
            check(n > 0, "limits.max_calls_per_number_24h", "must be positive");
        }
        if let Some(r) = &file.recurrence {
            if let Err(e) = cron::Schedule::try_from(r.cron.as_str()) {
                issues.push(field("recurrence.cron", format!("{:?}: {e}", r.cron)));
            }
            if r.timezone.parse::<Tz>().is_err() {
                issues.push(field("recurrence.timezone", format!("unknown IANA zone {:?}", r.timezone)));
            }
        }
        let window = CallingWindow::parse(&file.window).map_err(|w| issues.extend(w)).ok();
        match file.script.validate() {
            Err(e) => issues.push(field("script", e)),
            // Profiles look into the menus, so only a script that is sound otherwise.
            Ok(()) => issues.extend(file.compliance.check(&file.script)),
        }
        if let Some(sms) = &file.sms {
            issues.extend(sms.check(&file.script));
        }
        if let Some(ops) = &file.operators {
            issues.extend(ops.check());
        }
        match (caller_id, timezone, window) {
            (Some(caller_id), Some(timezone), Some(window)) if issues.is_empty() => {
                Ok(Self { caller_id, timezone, window, file })
            }
            _ => Err(SpecError::Invalid(issues)),
        }
    }
}

/// The retry rule for an outcome, if it is retryable at all.
pub fn retry_rule(policy: &RetryPolicy, outcome: super::Outcome) -> Option<RetryRule> {
    use super::Outcome::*;
    match outcome {
        Busy => Some(policy.busy),
        NoAnswer => Some(policy.no_answer),
        Machine | Voicemail => Some(policy.machine),
        Failed => Some(policy.failed),
        AnsweredNoResult => Some(policy.no_result),
        AnsweredResult | InvalidNumber | Canceled | OptedOut | Rejected | AlreadyNotified => None,
    }
}

pub fn duration_s(d: Duration) -> i64 {
    d.as_secs() as i64
}

/// Parsed attributes available to a script: `{name}` etc.
pub type Attributes = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../examples/campaigns/delivery-reschedule-ja.toml");

    #[test]
    fn every_wrong_field_is_reported_at_once_in_file_order() {
        let text = EXAMPLE
            .replace("name = \"再配達のご案内\"", "name = \"\"")
            .replace("timezone = \"Asia/Tokyo\"", "timezone = \"Mars/Olympus\"")
            .replace("start = \"09:00\"", "start = \"9am\"")
            .replace("\"tue\",", "\"someday\",")
            .replace("{name}様のお荷物", "{nom}様のお荷物");
        let Err(SpecError::Invalid(issues)) = CampaignSpec::parse(&text, "c.toml") else { panic!("refused") };
        let fields: Vec<&str> = issues.iter().map(|i| i.field.as_str()).collect();
        // The SMS body shares the misspelt variable: it is reported too.
        assert_eq!(fields, ["name", "timezone", "window.start", "window.days", "script", "sms.body"]);
        assert!(issues[4].reason.contains("unknown variable `{nom}`"), "{issues:?}");
        assert!(CampaignSpec::parse(EXAMPLE, "c.toml").is_ok());
    }

    #[test]
    fn an_sms_section_is_checked_field_by_field() {
        let text = EXAMPLE
            .replace(r#"after = ["no_answer", "busy", "machine", "voicemail"]"#, r#"after = ["answered_result"]"#)
            .replace(r#""1" = "reschedule:morning", "2""#, r#""STOP" = "reschedule:morning", "2""#);
        let Err(SpecError::Invalid(issues)) = CampaignSpec::parse(&text, "c.toml") else { panic!("refused") };
        let fields: Vec<&str> = issues.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(fields, ["sms.after", "sms.reply_codes"], "{issues:?}");
        assert!(issues[1].reason.contains("stop word"), "{issues:?}");
    }
}
