//! One call, drawn from the mix: whether and how it is answered, and for an answer, the path through the
//! campaign's script as Twilio plays it (the callbacks service's TwiML: a `<Gather>` per menu, a
//! `<Redirect>` back on no input, the retry prompt on an unknown key, goodbye after a result). Its length
//! is what the call is billed for.

use std::collections::BTreeMap;

use rand::Rng;

use super::mix::{EstimateMix, Pickup};
use crate::domain::script::{variables_in, Action, Script};
use crate::domain::{classify, AmdMode, AnsweredBy, CallFacts, CallStatus, Outcome};

/// Seconds a carrier takes to say "busy" after ringing starts, as a share of the drawn ring time.
const BUSY_SHARE_OF_RING: f64 = 0.3;
/// Seconds until a network failure, and until an unallocated number is refused (SIP 404).
const FAILED_S: f64 = 1.0;
const INVALID_S: f64 = 0.5;
/// A script that loops (a `repeat` key pressed forever) is cut here, like Twilio's TwiML step limit.
const MAX_MENUS: usize = 20;

/// How a person's call through the script ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScriptEnd {
    /// A menu option's result was recorded.
    Result,
    /// Transferred to a person (`<Dial>`): recorded as a result.
    Transfer,
    OptOut,
    /// No usable input before the repeats ran out, or hung up.
    NoResult,
}

/// One drawn call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CallDraw {
    pub status: CallStatus,
    pub answered_by: Option<AnsweredBy>,
    pub sip: Option<i32>,
    pub end: Option<ScriptEnd>,
    pub voicemail_left: bool,
    /// From the request until the answer (or the end of an unanswered call).
    pub ring_s: f64,
    /// From the answer to the hang-up: what Twilio bills (0 unanswered).
    pub talk_s: f64,
}

impl CallDraw {
    /// The attempt's outcome, by the product's own classification.
    pub fn outcome(&self) -> Outcome {
        classify(CallFacts {
            status: self.status,
            answered_by: self.answered_by,
            sip_response_code: self.sip,
            has_result: matches!(self.end, Some(ScriptEnd::Result | ScriptEnd::Transfer)),
            opted_out: self.end == Some(ScriptEnd::OptOut),
            voicemail_left: self.voicemail_left,
        })
    }

    pub fn answered(&self) -> bool {
        self.status == CallStatus::Completed && self.talk_s > 0.0
    }
}

/// The script with what it takes to speak it: the rate and each variable's length.
#[derive(Debug, Clone)]
pub(crate) struct Speaker<'a> {
    pub script: &'a Script,
    rate: f64,
    variable_chars: BTreeMap<String, f64>,
    default_chars: f64,
}

impl<'a> Speaker<'a> {
    pub fn new(script: &'a Script, mix: &EstimateMix, variable_chars: &BTreeMap<String, f64>) -> Self {
        Self {
            script,
            rate: mix.say_rate(&script.language),
            variable_chars: variable_chars.clone(),
            default_chars: mix.variable_chars,
        }
    }

    /// Seconds to say `text` once its `{variables}` are filled in.
    pub fn say_s(&self, text: Option<&str>) -> f64 {
        let Some(text) = text else { return 0.0 };
        let mut literal = 0usize;
        let mut depth = 0;
        for ch in text.chars() {
            match ch {
                '{' => depth += 1,
                '}' if depth > 0 => depth -= 1,
                _ if depth == 0 => literal += 1,
                _ => {}
            }
        }
        let vars: f64 = variables_in(text)
            .unwrap_or_default()
            .into_iter()
            .map(|v| match self.variable_chars.get(v) {
                Some(n) => *n,
                // A time is spoken as a date and an hour ("12月3日 14時30分", "Thursday, December 3 at 2:30 PM").
                None if v.ends_with("_at") && self.rate < 10.0 => 12.0,
                None if v.ends_with("_at") => 32.0,
                None => self.default_chars,
            })
            .sum();
        (literal as f64 + vars) / self.rate
    }
}

/// Draws one call of a contact.
pub(crate) fn draw_call(
    speaker: &Speaker<'_>,
    mix: &EstimateMix,
    amd: AmdMode,
    ring_timeout_s: f64,
    rng: &mut impl Rng,
) -> CallDraw {
    let pickup = mix.draw_pickup(rng);
    let ring = mix.ring_s.draw(rng);
    let unanswered = |status, sip, ring_s| CallDraw {
        status,
        answered_by: None,
        sip: Some(sip),
        end: None,
        voicemail_left: false,
        ring_s,
        talk_s: 0.0,
    };
    match pickup {
        Pickup::Invalid => return unanswered(CallStatus::Failed, 404, INVALID_S),
        Pickup::Failed => return unanswered(CallStatus::Failed, 500, FAILED_S),
        Pickup::Busy => return unanswered(CallStatus::Busy, 486, (ring * BUSY_SHARE_OF_RING).min(ring_timeout_s)),
        Pickup::NoAnswer => return unanswered(CallStatus::NoAnswer, 487, ring_timeout_s),
        Pickup::Human | Pickup::Machine if ring >= ring_timeout_s => {
            return unanswered(CallStatus::NoAnswer, 487, ring_timeout_s)
        }
        Pickup::Human | Pickup::Machine => {}
    }
    let machine = pickup == Pickup::Machine;
    let answered = |answered_by, end, voicemail_left, talk_s: f64| CallDraw {
        status: CallStatus::Completed,
        answered_by,
        sip: Some(200),
        end,
        voicemail_left,
        ring_s: ring,
        talk_s,
    };
    match (amd, machine) {
        // Synchronous AMD: the first TwiML waits for the decision; a machine gets the voicemail message once
        // its greeting has ended, else a hang-up.
        (AmdMode::Enable | AmdMode::DetectMessageEnd, false) => {
            let detect = mix.amd_human_s.draw(rng);
            let (secs, end) = walk_script(speaker, mix, false, rng);
            answered(Some(AnsweredBy::Human), Some(end), false, detect + secs)
        }
        (AmdMode::Enable, true) => {
            let detect = mix.amd_machine_start_s.draw(rng);
            answered(Some(AnsweredBy::MachineStart), None, false, detect + mix.fetch_s)
        }
        (AmdMode::DetectMessageEnd, true) => {
            let detect = mix.amd_message_end_s.draw(rng);
            let message = speaker.script.voicemail.as_deref();
            let talk = detect + mix.fetch_s + speaker.say_s(message);
            answered(Some(AnsweredBy::MachineEndBeep), None, message.is_some(), talk)
        }
        // Async AMD: the script plays at once, the machine is known when the call ends. Without AMD a
        // machine is heard as a person who pressed nothing.
        (AmdMode::Async, true) => {
            let (secs, _) = walk_script(speaker, mix, true, rng);
            answered(Some(AnsweredBy::MachineStart), None, false, secs)
        }
        (AmdMode::Off, true) => {
            let (secs, end) = walk_script(speaker, mix, true, rng);
            answered(None, Some(end), false, secs)
        }
        (AmdMode::Async, false) => {
            let (secs, end) = walk_script(speaker, mix, false, rng);
            answered(Some(AnsweredBy::Human), Some(end), false, secs)
        }
        (AmdMode::Off, false) => {
            let (secs, end) = walk_script(speaker, mix, false, rng);
            answered(None, Some(end), false, secs)
        }
    }
}

/// A person (or, `silent`, a machine that presses nothing) through the script: seconds from the first
/// TwiML request to the hang-up, and how it ended.
pub(crate) fn walk_script(
    speaker: &Speaker<'_>,
    mix: &EstimateMix,
    silent: bool,
    rng: &mut impl Rng,
) -> (f64, ScriptEnd) {
    let script = speaker.script;
    let say = |t: Option<&str>| speaker.say_s(t);
    let goodbye = say(script.goodbye.as_deref());
    let mut t = 0.0;
    let mut menu_name = script.start.as_str();
    let mut repeats = 0u32;
    let mut prefix = 0.0;
    for _ in 0..MAX_MENUS {
        t += mix.fetch_s;
        if repeats > script.no_input_repeats {
            return (t + prefix + goodbye, ScriptEnd::NoResult);
        }
        let Some(menu) = script.menus.get(menu_name) else { return (t + prefix + goodbye, ScriptEnd::NoResult) };
        t += prefix + say(menu.say.as_deref()) + if menu.play.is_some() { mix.play_s } else { 0.0 };
        prefix = 0.0;
        let key = if silent { None } else { mix.draw_key(rng) };
        let Some(key) = key else {
            // No input: the Gather times out and the Redirect comes back one repeat further.
            t += f64::from(menu.timeout_s);
            repeats += 1;
            continue;
        };
        t += mix.keypress_s;
        let Some(option) = menu.options.get(key) else {
            prefix = say(script.retry_prompt.as_deref());
            repeats += 1;
            continue;
        };
        let option_say = say(option.say.as_deref());
        match option.action() {
            Ok(Action::Result(_)) => return (t + mix.fetch_s + option_say + goodbye, ScriptEnd::Result),
            Ok(Action::Goto(next)) => {
                menu_name = next;
                repeats = 0;
                prefix = option_say;
            }
            // Modelled like a transfer: operators' availability is not simulated.
            Ok(Action::Transfer(_) | Action::Operator) => {
                return (t + mix.fetch_s + option_say + mix.transfer_talk_s.draw(rng), ScriptEnd::Transfer)
            }
            Ok(Action::OptOut) => return (t + mix.fetch_s + option_say, ScriptEnd::OptOut),
            Ok(Action::Repeat) => {}
            // Validated at create; a broken option hangs up like the callbacks service's error would.
            Err(_) => return (t, ScriptEnd::NoResult),
        }
    }
    (t, ScriptEnd::NoResult)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn script() -> Script {
        toml::from_str(
            r#"
            language = "en-US"
            variables = ["name"]
            goodbye = "Bye."
            retry_prompt = "Again."
            no_input_repeats = 1
            [menus.main]
            say = "Hello {name}, press 1."
            timeout_s = 4
            [menus.main.options]
            "1" = { result = "confirmed", say = "Thanks." }
            "#,
        )
        .unwrap()
    }

    fn mix(keys: &[(&str, f64)]) -> EstimateMix {
        EstimateMix {
            digits: keys.iter().map(|(k, w)| (k.to_string(), *w)).collect(),
            say_chars_per_second: Some(10.0),
            fetch_s: 0.0,
            keypress_s: 1.0,
            ..EstimateMix::default()
        }
    }

    #[test]
    fn a_result_path_takes_the_prompt_the_key_the_thanks_and_goodbye() {
        let s = script();
        let vars = BTreeMap::from([("name".to_string(), 4.0)]);
        let m = mix(&[("1", 1.0)]);
        let sp = Speaker::new(&s, &m, &vars);
        // "Hello , press 1." = 16 chars + 4 for the name; "Thanks." 7; "Bye." 4.
        let (secs, end) = walk_script(&sp, &m, false, &mut rand::rngs::StdRng::seed_from_u64(1));
        assert_eq!(end, ScriptEnd::Result);
        assert!((secs - (2.0 + 1.0 + 0.7 + 0.4)).abs() < 1e-9, "{secs}");
    }

    #[test]
    fn no_input_repeats_the_menu_then_says_goodbye() {
        let s = script();
        let m = mix(&[("none", 1.0)]);
        let sp = Speaker::new(&s, &m, &BTreeMap::from([("name".to_string(), 4.0)]));
        let (secs, end) = walk_script(&sp, &m, false, &mut rand::rngs::StdRng::seed_from_u64(1));
        assert_eq!(end, ScriptEnd::NoResult);
        // Two rounds of prompt (2 s) + timeout (4 s), then goodbye.
        assert!((secs - (2.0 * 6.0 + 0.4)).abs() < 1e-9, "{secs}");
    }

    #[test]
    fn machines_get_the_voicemail_with_detect_message_end_and_are_never_a_result() {
        let mut s = script();
        s.voicemail = Some("We called about {name}.".into());
        let m = EstimateMix {
            human: 0.0,
            machine: 1.0,
            busy: 0.0,
            no_answer: 0.0,
            failed: 0.0,
            invalid: 0.0,
            ..mix(&[("1", 1.0)])
        };
        let sp = Speaker::new(&s, &m, &BTreeMap::new());
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let c = draw_call(&sp, &m, AmdMode::DetectMessageEnd, 30.0, &mut rng);
        assert_eq!(c.outcome(), Outcome::Voicemail);
        let c = draw_call(&sp, &m, AmdMode::Enable, 30.0, &mut rng);
        assert_eq!(c.outcome(), Outcome::Machine);
        let c = draw_call(&sp, &m, AmdMode::Off, 30.0, &mut rng);
        assert_eq!(c.outcome(), Outcome::AnsweredNoResult);
    }
}
