//! What the callees are assumed to do: the outcome mix an estimate draws every call from.

use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::EstimateError;

/// The longest any one part of a call may be assumed to take (an hour): keeps a mistyped mix from
/// describing calls of centuries.
const MAX_SECS: f64 = 3600.0;
/// Weights are relative; a bound keeps their sum finite.
const MAX_WEIGHT: f64 = 1e9;

/// A range of seconds, drawn uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecsRange {
    pub min: f64,
    pub max: f64,
}

impl SecsRange {
    pub const fn new(min: f64, max: f64) -> Self {
        Self { min, max }
    }

    pub fn draw(&self, rng: &mut impl Rng) -> f64 {
        if self.max > self.min {
            rng.gen_range(self.min..=self.max)
        } else {
            self.min
        }
    }

    fn check(&self, field: &str, issues: &mut Vec<String>) {
        if !(self.min.is_finite()
            && self.max.is_finite()
            && self.min >= 0.0
            && self.min <= self.max
            && self.max <= MAX_SECS)
        {
            issues.push(format!(
                "mix field `{field}`: needs 0 <= min <= max <= {MAX_SECS}, got {}..{}",
                self.min, self.max
            ));
        }
    }
}

/// Where the mix of an estimate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MixSource {
    /// [`EstimateMix::default`]: guessed, typical figures.
    Default,
    /// A mix file (`--mix FILE`) or a mix in the request.
    File,
    /// Learned from the campaign's own finished attempts.
    Learned,
    /// The Twilio simulator's configured mix (the demo).
    Simulator,
}

/// How callees behave, per call. Outcome weights are relative (normalised to their sum). Every field has
/// a documented default, so a mix file may give only what it changes.
///
/// Answered calls take as long as the campaign's script does: the estimate walks its menus with the
/// keypress distribution below, speaking each text at `say_chars_per_second`, waiting `timeout_s` for no
/// input, and so on (as Twilio, and the simulator, play them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EstimateMix {
    /// Answered by a person.
    pub human: f64,
    /// Answered by an answering machine (or fax).
    pub machine: f64,
    pub busy: f64,
    /// Rings until the campaign's `ring_timeout_s`.
    pub no_answer: f64,
    /// Network failure (retryable).
    pub failed: f64,
    /// The number does not exist (final).
    pub invalid: f64,
    /// Ring time before an answer; an answer later than `ring_timeout_s` is a no-answer.
    pub ring_s: SecsRange,
    /// A person's key per menu (`<Gather>`): `"1" = 70.0`, `none` = no key (relative weights). Keys no
    /// menu offers are unknown input (the retry prompt and the menu again).
    pub digits: BTreeMap<String, f64>,
    /// Speaking rate of `<Say>`, characters per second; unset: 7 for Japanese, Chinese and Korean, 15
    /// otherwise (a guess at Polly's pace: ≈ 150 words a minute in English).
    pub say_chars_per_second: Option<f64>,
    /// Length of one `<Play>`.
    pub play_s: f64,
    /// Time from a key to the next prompt (the keypress itself).
    pub keypress_s: f64,
    /// Each TwiML request (the first, every keypress or no input): Twilio fetching the next document.
    pub fetch_s: f64,
    /// How long a transfer (`<Dial>`) talks.
    pub transfer_talk_s: SecsRange,
    /// Synchronous AMD deciding "human".
    pub amd_human_s: SecsRange,
    /// AMD `enable` deciding "machine" (the greeting's start).
    pub amd_machine_start_s: SecsRange,
    /// AMD `detect_message_end` waiting for the greeting's end.
    pub amd_message_end_s: SecsRange,
    /// Share (0..1) of contacts whose every attempt goes like their first (a number busy at 10:00 is busy at
    /// 10:15; an invalid one stays invalid). The rest draw afresh each attempt. Guessed default 0.5; the
    /// simulator with a seed is 1.0 (it draws per number).
    pub repeat_outcome: f64,
    /// Characters a `{variable}` stands for when the contacts do not say (a name, a parcel number).
    pub variable_chars: f64,
}

/// Guessed, typical figures for an outbound notification campaign: about half the callees answer, a
/// sixth reach a machine. Replace with `--learn` once the campaign has results.
impl Default for EstimateMix {
    fn default() -> Self {
        Self {
            human: 50.0,
            machine: 15.0,
            busy: 8.0,
            no_answer: 20.0,
            failed: 3.0,
            invalid: 4.0,
            ring_s: SecsRange::new(3.0, 20.0),
            digits: BTreeMap::from([
                ("1".into(), 60.0),
                ("2".into(), 15.0),
                ("3".into(), 8.0),
                ("0".into(), 3.0),
                ("9".into(), 2.0),
                ("none".into(), 12.0),
            ]),
            say_chars_per_second: None,
            play_s: 5.0,
            keypress_s: 1.0,
            fetch_s: 0.3,
            transfer_talk_s: SecsRange::new(20.0, 120.0),
            amd_human_s: SecsRange::new(1.5, 3.5),
            amd_machine_start_s: SecsRange::new(2.5, 4.5),
            amd_message_end_s: SecsRange::new(6.0, 14.0),
            repeat_outcome: 0.5,
            variable_chars: 10.0,
        }
    }
}

/// What a dialled call does before it is answered (or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pickup {
    Human,
    Machine,
    Busy,
    NoAnswer,
    Failed,
    Invalid,
}

impl EstimateMix {
    /// Reads a mix file (TOML); fields not given keep their defaults.
    pub fn from_toml(text: &str, file: &str) -> Result<Self, EstimateError> {
        let mix: Self = toml::from_str(text).map_err(|e| EstimateError::Mix(format!("{file}: {e}")))?;
        mix.validate()?;
        Ok(mix)
    }

    /// Every problem at once, each naming its field.
    pub fn validate(&self) -> Result<(), EstimateError> {
        let mut issues = Vec::new();
        let mut sum = 0.0;
        for (name, w) in self.weights_named() {
            if !(w.is_finite() && (0.0..=MAX_WEIGHT).contains(&w)) {
                issues.push(format!("mix field `{name}`: must be a weight between 0 and {MAX_WEIGHT}, got {w}"));
            }
            sum += w;
        }
        if sum <= 0.0 {
            issues.push("mix: the outcome weights (human, machine, busy, no_answer, failed, invalid) sum to 0".into());
        }
        for (key, w) in &self.digits {
            let ok_key =
                key == "none" || (key.len() == 1 && key.chars().all(|c| c.is_ascii_digit() || c == '*' || c == '#'));
            if !ok_key {
                issues.push(format!("mix field `digits`: key {key:?} is not 0-9, *, # or none"));
            }
            if !(w.is_finite() && (0.0..=MAX_WEIGHT).contains(w)) {
                issues.push(format!("mix field `digits.{key}`: must be a weight between 0 and {MAX_WEIGHT}, got {w}"));
            }
        }
        if !self.digits.is_empty() && self.digits.values().sum::<f64>() <= 0.0 {
            issues.push("mix field `digits`: the weights sum to 0".into());
        }
        if let Some(r) = self.say_chars_per_second {
            if !(r.is_finite() && (0.1..=1000.0).contains(&r)) {
                issues.push(format!("mix field `say_chars_per_second`: must be between 0.1 and 1000, got {r}"));
            }
        }
        for (name, v, max) in [
            ("play_s", self.play_s, MAX_SECS),
            ("keypress_s", self.keypress_s, MAX_SECS),
            ("fetch_s", self.fetch_s, MAX_SECS),
            ("variable_chars", self.variable_chars, 10_000.0),
        ] {
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                issues.push(format!("mix field `{name}`: must be between 0 and {max}, got {v}"));
            }
        }
        if !(0.0..=1.0).contains(&self.repeat_outcome) {
            issues.push(format!("mix field `repeat_outcome`: a share between 0 and 1, got {}", self.repeat_outcome));
        }
        self.ring_s.check("ring_s", &mut issues);
        self.transfer_talk_s.check("transfer_talk_s", &mut issues);
        self.amd_human_s.check("amd_human_s", &mut issues);
        self.amd_machine_start_s.check("amd_machine_start_s", &mut issues);
        self.amd_message_end_s.check("amd_message_end_s", &mut issues);
        if issues.is_empty() {
            Ok(())
        } else {
            Err(EstimateError::Mix(issues.join("; ")))
        }
    }

    fn weights_named(&self) -> [(&'static str, f64); 6] {
        [
            ("human", self.human),
            ("machine", self.machine),
            ("busy", self.busy),
            ("no_answer", self.no_answer),
            ("failed", self.failed),
            ("invalid", self.invalid),
        ]
    }

    pub(crate) fn draw_pickup(&self, rng: &mut impl Rng) -> Pickup {
        let w = [
            (Pickup::Human, self.human),
            (Pickup::Machine, self.machine),
            (Pickup::Busy, self.busy),
            (Pickup::NoAnswer, self.no_answer),
            (Pickup::Failed, self.failed),
            (Pickup::Invalid, self.invalid),
        ];
        let total: f64 = w.iter().map(|(_, w)| w).sum();
        let mut x = rng.gen::<f64>() * total;
        for (p, weight) in w {
            if x < weight {
                return p;
            }
            x -= weight;
        }
        w.iter().rev().find(|(_, w)| *w > 0.0).map(|(p, _)| *p).unwrap_or(Pickup::Human)
    }

    /// A person's key at one menu (`None`: no key).
    pub(crate) fn draw_key(&self, rng: &mut impl Rng) -> Option<&str> {
        let total: f64 = self.digits.values().sum();
        if total <= 0.0 {
            return None;
        }
        let mut x = rng.gen::<f64>() * total;
        let mut last = None;
        for (k, w) in &self.digits {
            last = Some(k.as_str());
            if x < *w {
                return Some(k.as_str()).filter(|k| *k != "none");
            }
            x -= w;
        }
        last.filter(|k| *k != "none")
    }

    /// Characters per second for the script's language.
    pub fn say_rate(&self, language: &str) -> f64 {
        self.say_chars_per_second.unwrap_or_else(|| {
            let cjk = language.starts_with("ja") || language.starts_with("zh") || language.starts_with("ko");
            if cjk {
                7.0
            } else {
                15.0
            }
        })
    }
}

/// What a campaign's finished attempts say about its callees (read by the store).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedAttempts {
    /// Finished attempts by outcome (`answered_result`, `busy`, …).
    pub by_outcome: BTreeMap<String, i64>,
    /// Mean seconds from the request to the answer, over answered calls.
    pub mean_ring_s: Option<f64>,
}

/// Fewer finished attempts than this and learning is refused: the shares would be noise.
pub const MIN_LEARN_ATTEMPTS: i64 = 100;

impl ObservedAttempts {
    pub fn finished(&self) -> i64 {
        self.by_outcome.values().sum()
    }

    /// The default mix with the outcome shares (and ring time) the campaign has seen; `None` when it has
    /// fewer than [`MIN_LEARN_ATTEMPTS`] finished attempts. Keypresses and durations still come from the
    /// script (its menus, as the callees answered them, are what the outcome shares reflect).
    pub fn learn(&self, base: &EstimateMix) -> Option<EstimateMix> {
        if self.finished() < MIN_LEARN_ATTEMPTS {
            return None;
        }
        let n = |keys: &[&str]| keys.iter().map(|k| self.by_outcome.get(*k).copied().unwrap_or(0)).sum::<i64>() as f64;
        let mut mix = EstimateMix {
            human: n(&["answered_result", "answered_no_result", "opted_out"]),
            machine: n(&["voicemail", "machine"]),
            busy: n(&["busy"]),
            no_answer: n(&["no_answer"]),
            failed: n(&["failed"]),
            invalid: n(&["invalid_number", "rejected"]),
            ..base.clone()
        };
        if let Some(r) = self.mean_ring_s.filter(|r| r.is_finite() && *r >= 0.0) {
            // Keep the default's spread around the observed mean.
            let half = ((base.ring_s.max - base.ring_s.min) / 2.0).min(r);
            mix.ring_s = SecsRange::new(r - half, r + half);
        }
        if mix.validate().is_err() {
            return None;
        }
        Some(mix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_file_changes_only_what_it_gives_and_names_bad_fields() {
        let m = EstimateMix::from_toml("human = 80.0\n[digits]\n\"1\" = 1.0\n", "m.toml").unwrap();
        assert_eq!(m.human, 80.0);
        assert_eq!(m.busy, EstimateMix::default().busy);
        assert_eq!(m.digits.len(), 1);
        let e = EstimateMix::from_toml("human = -1.0\nrepeat_outcome = 2.0\n", "m.toml").unwrap_err().to_string();
        assert!(e.contains("`human`") && e.contains("`repeat_outcome`"), "{e}");
        let e = EstimateMix::from_toml("humans = 1.0\n", "m.toml").unwrap_err().to_string();
        assert!(e.contains("m.toml") && e.contains("humans"), "{e}");
    }

    #[test]
    fn learning_needs_enough_attempts_and_takes_their_shares() {
        let mut o = ObservedAttempts::default();
        o.by_outcome.insert("busy".into(), 50);
        assert!(o.learn(&EstimateMix::default()).is_none());
        o.by_outcome.insert("answered_result".into(), 150);
        let m = o.learn(&EstimateMix::default()).expect("200 attempts are enough");
        assert_eq!((m.human, m.busy, m.machine), (150.0, 50.0, 0.0));
    }
}
