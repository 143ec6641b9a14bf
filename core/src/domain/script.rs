//! The call script inside a campaign file: prompts, variables and a menu tree.
//!
//! ```toml
//! [script]
//! language = "en-US"
//! voice = "Polly.Joanna"
//! variables = ["name", "appointment_at"]
//! start = "main"
//! voicemail = "Hello {name}, this is Example Clinic about your appointment on {appointment_at}."
//! goodbye = "Goodbye."
//! [script.menus.main]
//! say = "Hello {name}. Press 1 to confirm, 2 to cancel, 3 for the front desk."
//! [script.menus.main.options]
//! "1" = { result = "confirmed", say = "Thank you, see you then." }
//! "2" = { result = "cancel" }
//! "3" = { transfer = "+15005550006" }
//! "9" = { opt_out = true }
//! ```
//!
//! Text may use `{variable}` for a contact attribute declared in `variables` (or the built-ins
//! `external_id` and `phone`). Attributes ending in `_at` holding an RFC 3339 time are spoken in the
//! contact's time zone and the script's language.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Datelike, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::E164;

pub const BUILTIN_VARIABLES: [&str; 2] = ["external_id", "phone"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// BCP-47 language for `<Say>`, e.g. "ja-JP" or "en-US".
    pub language: String,
    /// A Twilio voice, e.g. "Polly.Mizuki" or "Polly.Joanna".
    #[serde(default)]
    pub voice: Option<String>,
    /// Contact attributes the script uses (CSV columns).
    #[serde(default)]
    pub variables: Vec<String>,
    #[serde(default = "default_start")]
    pub start: String,
    pub menus: BTreeMap<String, Menu>,
    /// Spoken after the beep when AMD reports `machine_end_*`.
    #[serde(default)]
    pub voicemail: Option<String>,
    #[serde(default)]
    pub goodbye: Option<String>,
    /// Said before repeating a menu after no or unknown input.
    #[serde(default)]
    pub retry_prompt: Option<String>,
    /// How many times a menu repeats after no input before goodbye.
    #[serde(default = "default_repeats")]
    pub no_input_repeats: u32,
    /// Said to a contact who calls the caller ID back, before the start menu ("{name}様、お電話ありがとう
    /// ございます。"); a greeting in the script's language when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_greeting: Option<String>,
    /// Said to a caller who is none of this campaign's contacts (the service's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_caller: Option<String>,
    /// Where an unknown caller is transferred after the message (E.164); none: the call ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_caller_transfer: Option<String>,
    /// Said in the waiting room between hold music while an operator is sought (a text in the script's
    /// language when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_message: Option<String>,
    /// Said when no operator answered within the campaign's hold limit; key 1 asks for a call back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_offer: Option<String>,
    /// Said after the callee asked to be called back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_confirmed: Option<String>,
}

fn default_start() -> String {
    "main".into()
}
fn default_repeats() -> u32 {
    2
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Menu {
    #[serde(default)]
    pub say: Option<String>,
    /// An audio URL played instead of (or after) `say`.
    #[serde(default)]
    pub play: Option<String>,
    #[serde(default = "default_digits")]
    pub num_digits: u32,
    #[serde(default = "default_timeout")]
    pub timeout_s: u32,
    pub options: BTreeMap<String, MenuOption>,
}

fn default_digits() -> u32 {
    1
}
fn default_timeout() -> u32 {
    5
}

/// What a key does. Exactly one of `result`, `goto`, `transfer`, `operator`, `opt_out`, `repeat`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuOption {
    /// Record this result (e.g. "confirmed", "reschedule:morning") and end the call.
    #[serde(default)]
    pub result: Option<String>,
    /// Go to another menu.
    #[serde(default)]
    pub goto: Option<String>,
    /// Transfer the call with `<Dial>` to this number.
    #[serde(default)]
    pub transfer: Option<String>,
    /// Put the callee in the waiting room and ring the available operators (see `[operators]`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub operator: bool,
    /// Put the number on the DNC list at once and end the call.
    #[serde(default)]
    pub opt_out: bool,
    /// Say the menu again.
    #[serde(default)]
    pub repeat: bool,
    /// Said before the action is carried out.
    #[serde(default)]
    pub say: Option<String>,
}

/// A menu option's action, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a> {
    Result(&'a str),
    Goto(&'a str),
    Transfer(&'a str),
    /// To a person through the waiting room.
    Operator,
    OptOut,
    Repeat,
}

impl MenuOption {
    pub fn action(&self) -> Result<Action<'_>, String> {
        let mut found = Vec::new();
        if let Some(r) = &self.result {
            found.push(Action::Result(r));
        }
        if let Some(g) = &self.goto {
            found.push(Action::Goto(g));
        }
        if let Some(t) = &self.transfer {
            found.push(Action::Transfer(t));
        }
        if self.operator {
            found.push(Action::Operator);
        }
        if self.opt_out {
            found.push(Action::OptOut);
        }
        if self.repeat {
            found.push(Action::Repeat);
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err("has no action (one of result, goto, transfer, operator, opt_out, repeat)".into()),
            _ => Err("has more than one action (result, goto, transfer, operator, opt_out, repeat)".into()),
        }
    }
}

/// A contact's attributes as a script speaks them: the stored JSON object (non-strings as JSON text) plus
/// the built-ins `phone` and `external_id`.
pub fn contact_attributes(
    attributes: &serde_json::Value,
    phone: &E164,
    external_id: Option<&str>,
) -> BTreeMap<String, String> {
    let mut attrs: BTreeMap<String, String> = match attributes {
        serde_json::Value::Object(m) => {
            m.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect()
        }
        _ => BTreeMap::new(),
    };
    attrs.insert("phone".into(), phone.to_string());
    attrs.insert("external_id".into(), external_id.unwrap_or_default().to_string());
    attrs
}

/// The `{variable}` names used in a text; an unclosed brace is an error.
pub fn variables_in(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("unclosed `{{` in {text:?}"))?;
        let name = &after[..close];
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!("bad variable `{{{name}}}` in {text:?}"));
        }
        out.push(name);
        rest = &after[close + 1..];
    }
    Ok(out)
}

impl Script {
    /// Checks that a text outside the script (an SMS body) uses only the script's variables.
    pub fn check_text(&self, where_: &str, text: &str) -> Result<(), String> {
        for v in variables_in(text).map_err(|e| format!("{where_}: {e}"))? {
            if !self.variables.iter().any(|k| k == v) && !BUILTIN_VARIABLES.contains(&v) {
                return Err(format!("unknown variable `{{{v}}}` (declare it in script.variables)"));
            }
        }
        Ok(())
    }

    /// Checks menus, actions and variables; the error names the menu, key or variable.
    pub fn validate(&self) -> Result<(), String> {
        if self.language.trim().is_empty() {
            return Err("language must not be empty".into());
        }
        let known: BTreeSet<&str> =
            self.variables.iter().map(String::as_str).chain(BUILTIN_VARIABLES.iter().copied()).collect();
        let check_text = |where_: &str, text: &Option<String>| -> Result<(), String> {
            if let Some(t) = text {
                for v in variables_in(t).map_err(|e| format!("{where_}: {e}"))? {
                    if !known.contains(v) {
                        return Err(format!("{where_}: unknown variable `{{{v}}}` (declare it in script.variables)"));
                    }
                }
            }
            Ok(())
        };
        check_text("voicemail", &self.voicemail)?;
        check_text("goodbye", &self.goodbye)?;
        check_text("retry_prompt", &self.retry_prompt)?;
        check_text("callback_greeting", &self.callback_greeting)?;
        check_text("hold_message", &self.hold_message)?;
        check_text("callback_offer", &self.callback_offer)?;
        check_text("callback_confirmed", &self.callback_confirmed)?;
        // Nothing is known of an unknown caller: no variables.
        if let Some(t) = &self.unknown_caller {
            if !variables_in(t).map_err(|e| format!("unknown_caller: {e}"))?.is_empty() {
                return Err("unknown_caller: cannot use variables (the caller is not a contact)".into());
            }
        }
        if let Some(n) = &self.unknown_caller_transfer {
            E164::parse(n, None).map_err(|e| format!("unknown_caller_transfer {n:?}: {e}"))?;
        }
        if !self.menus.contains_key(&self.start) {
            return Err(format!("start menu `{}` does not exist", self.start));
        }
        for (name, menu) in &self.menus {
            let at = format!("menu `{name}`");
            if menu.say.is_none() && menu.play.is_none() {
                return Err(format!("{at}: needs `say` or `play`"));
            }
            check_text(&at, &menu.say)?;
            if !(1..=10).contains(&menu.num_digits) {
                return Err(format!("{at}: num_digits must be 1..=10"));
            }
            if menu.options.is_empty() {
                return Err(format!("{at}: has no options"));
            }
            for (key, opt) in &menu.options {
                let at = format!("menu `{name}` key {key:?}");
                if key.chars().count() != menu.num_digits as usize
                    || !key.chars().all(|c| c.is_ascii_digit() || c == '*' || c == '#')
                {
                    return Err(format!("{at}: keys must be {} of 0-9, * or #", menu.num_digits));
                }
                check_text(&at, &opt.say)?;
                match opt.action().map_err(|e| format!("{at}: {e}"))? {
                    Action::Goto(target) if !self.menus.contains_key(target) => {
                        return Err(format!("{at}: goes to unknown menu `{target}`"));
                    }
                    Action::Transfer(n) => {
                        E164::parse(n, None).map_err(|e| format!("{at}: transfer number {n:?}: {e}"))?;
                    }
                    Action::Result(r) if r.trim().is_empty() => return Err(format!("{at}: empty result")),
                    _ => {}
                }
            }
        }
        // Every menu must be reachable from the start one.
        let mut seen = BTreeSet::from([self.start.as_str()]);
        let mut queue = VecDeque::from([self.start.as_str()]);
        while let Some(m) = queue.pop_front() {
            for opt in self.menus[m].options.values() {
                if let Some(g) = &opt.goto {
                    if seen.insert(g.as_str()) {
                        queue.push_back(g);
                    }
                }
            }
        }
        if let Some(unreached) = self.menus.keys().find(|k| !seen.contains(k.as_str())) {
            return Err(format!("menu `{unreached}` is unreachable from `{}`", self.start));
        }
        Ok(())
    }

    /// Variables a contact must carry (declared ones; built-ins come from the contact row).
    /// Whether `new` only changes what is said (texts, audio, voice, language): same menus, keys and
    /// actions, and no variable the contacts already imported may lack. That is what may change while a
    /// campaign runs: results stay comparable and every contact can still be spoken to.
    pub fn same_flow_as(&self, new: &Script) -> Result<(), String> {
        if new.start != self.start {
            return Err(format!("`start` cannot change while the campaign exists (it is {:?})", self.start));
        }
        let names = |s: &Script| s.menus.keys().cloned().collect::<Vec<_>>();
        if names(self) != names(new) {
            return Err(format!("the menus must stay {:?}; only their texts may change", names(self)));
        }
        for (name, old) in &self.menus {
            let m = &new.menus[name];
            let keys = |m: &Menu| m.options.keys().cloned().collect::<Vec<_>>();
            if keys(old) != keys(m) || old.num_digits != m.num_digits {
                return Err(format!("menu `{name}` must keep its keys {:?} and digit count", keys(old)));
            }
            for (key, o) in &old.options {
                if o.action() != m.options[key].action() {
                    return Err(format!("menus.{name}.options.{key}: its action cannot change, only its text"));
                }
            }
        }
        if let Some(v) = new.variables.iter().find(|v| !self.variables.contains(v)) {
            return Err(format!("variable `{v}` is new; contacts already imported may not have it"));
        }
        Ok(())
    }

    pub fn required_attributes(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().map(String::as_str).filter(|v| !BUILTIN_VARIABLES.contains(v))
    }
}

/// Fills `{variables}` from the contact's attributes. Times (`*_at`, RFC 3339) are spoken in `tz`.
pub fn render_text(template: &str, attrs: &BTreeMap<String, String>, tz: Tz, language: &str) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                let value = attrs.get(name).map(String::as_str).unwrap_or("");
                if name.ends_with("_at") {
                    out.push_str(&speak_time(value, tz, language));
                } else {
                    out.push_str(value);
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn speak_time(value: &str, tz: Tz, language: &str) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(value) else {
        return value.to_string();
    };
    let t = t.with_timezone(&tz);
    if language.starts_with("ja") {
        format!("{}月{}日 {}時{:02}分", t.month(), t.day(), t.hour(), t.minute())
    } else {
        t.format("%A, %B %-d at %-I:%M %p").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(toml_text: &str) -> Script {
        toml::from_str(toml_text).unwrap()
    }

    const OK: &str = r#"
        language = "en-US"
        variables = ["name"]
        [menus.main]
        say = "Hi {name}"
        [menus.main.options]
        "1" = { result = "confirmed" }
        "2" = { goto = "more" }
        [menus.more]
        say = "More"
        [menus.more.options]
        "1" = { repeat = true }
    "#;

    #[test]
    fn a_good_script_validates() {
        script(OK).validate().unwrap();
    }

    #[test]
    fn unknown_variables_and_unreachable_menus_are_named() {
        let e = script(&OK.replace("Hi {name}", "Hi {nmae}")).validate().unwrap_err();
        assert!(e.contains("{nmae}"), "{e}");
        let e = script(&OK.replace(r#""2" = { goto = "more" }"#, "")).validate().unwrap_err();
        assert!(e.contains("`more` is unreachable"), "{e}");
        let e = script(&OK.replace(r#"goto = "more""#, r#"goto = "nowhere""#)).validate().unwrap_err();
        assert!(e.contains("unknown menu `nowhere`"), "{e}");
    }

    #[test]
    fn times_are_spoken_in_the_contacts_zone_and_language() {
        let attrs = BTreeMap::from([("appointment_at".to_string(), "2026-12-03T05:30:00Z".to_string())]);
        let tz: Tz = "Asia/Tokyo".parse().unwrap();
        assert_eq!(render_text("{appointment_at}", &attrs, tz, "ja-JP"), "12月3日 14時30分");
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(render_text("at {appointment_at}.", &attrs, ny, "en-US"), "at Thursday, December 3 at 12:30 AM.");
    }
}
