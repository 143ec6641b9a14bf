//! Simulator options: [`SimArgs`] (the `dialer sim` command line) and the validated [`SimConfig`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, ensure};
use rand::Rng;

pub use super::people::{Callee, Operator};

pub const DEFAULT_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
pub const DEFAULT_AUTH_TOKEN: &str = "sim-auth-token";

/// The Twilio simulator's options. Every one has a default, so `dialer sim` runs as is.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Account SID the simulator accepts: the Basic auth user and the `{AccountSid}` in every path.
    #[arg(long, env = "TWILIO_ACCOUNT_SID", default_value = DEFAULT_ACCOUNT_SID)]
    pub account_sid: String,

    /// Auth token: the Basic auth password, and the key that signs every webhook (X-Twilio-Signature).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", default_value = DEFAULT_AUTH_TOKEN, hide_env_values = true)]
    pub auth_token: String,

    /// Account calls per second. Creates are accepted at once, but calls leave the queue strictly paced at
    /// this rate, like Twilio; the wait is reported as `queue_time` (ms).
    #[arg(long, default_value_t = 1.0)]
    pub cps: f64,

    /// REST requests served concurrently; beyond this the API answers 429 with error code 20429.
    #[arg(long, default_value_t = 100)]
    pub max_concurrent_requests: usize,

    /// Simulated network round trip to the REST API, milliseconds (Twilio far away): every
    /// `/2010-04-01/…` request waits half of it before it is handled (so a call's `created_at`, the arrival
    /// Twilio counts CPS on, comes after the way in) and half before its answer leaves. Per request, so
    /// concurrent requests overlap. 0 = none.
    #[arg(long, default_value_t = 0)]
    pub api_latency_ms: u64,

    /// Seed for outcomes, ring/talk times and keypresses. With a seed, the outcome for a given `To` number
    /// is deterministic; without one every call draws fresh randomness.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Time factor: ring, talk, say, pause, AMD and other simulated durations are divided by it
    /// (100 = a one-minute call takes 0.6 s). Reported durations stay in simulated seconds.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,

    /// Outcome mix, percent answered by a human (the six outcome weights are normalised to their sum).
    #[arg(long, default_value_t = 55.0)]
    pub human: f64,

    /// Outcome mix, percent answered by an answering machine (voicemail).
    #[arg(long, default_value_t = 15.0)]
    pub machine: f64,

    /// Outcome mix, percent busy (SIP 486).
    #[arg(long, default_value_t = 10.0)]
    pub busy: f64,

    /// Outcome mix, percent not answered: rings until the call's `Timeout` (SIP 487).
    #[arg(long, default_value_t = 12.0)]
    pub no_answer: f64,

    /// Outcome mix, percent failed by the network (SIP 500).
    #[arg(long, default_value_t = 3.0)]
    pub failed: f64,

    /// Outcome mix, percent invalid / unallocated numbers: status failed, SIP 404.
    #[arg(long, default_value_t = 5.0)]
    pub invalid: f64,

    /// Ring time before an answer, simulated seconds, `MIN-MAX` or a single value. A ring longer than the
    /// call's `Timeout` ends as no-answer.
    #[arg(long, default_value = "3-15")]
    pub ring_time: SecsRange,

    /// Talk time of a `<Dial>` (transfer), simulated seconds, `MIN-MAX` or a single value.
    #[arg(long, default_value = "20-120")]
    pub talk_time: SecsRange,

    /// Keypress distribution, one draw per `<Gather>`: `KEY:WEIGHT,...`, where `none` means no keypress;
    /// or a fixed sequence every callee keys in, one key per `<Gather>`: `1>2` (then no more keys).
    #[arg(long, default_value = "1:60,2:20,9:5,none:15")]
    pub digits: DigitDist,

    /// Speaking rate of `<Say>`: characters per simulated second.
    #[arg(long, default_value_t = 15.0)]
    pub say_chars_per_second: f64,

    /// Length of one `<Play>`, simulated seconds.
    #[arg(long, default_value_t = 5.0)]
    pub play_secs: f64,

    /// Fault: fraction (0..1) of creates answered 429 with code 20429; no call is created.
    #[arg(long, default_value_t = 0.0)]
    pub fault_429: f64,

    /// Fault: 429 bursts. Every this many milliseconds, the last `--fault-429-burst-ms` of the period refuse
    /// every create with 429 / 20429 (`Retry-After`: the seconds left in the burst). 0 = no bursts.
    #[arg(long, default_value_t = 0)]
    pub fault_429_burst_every_ms: u64,

    /// Length of one 429 burst, milliseconds (less than `--fault-429-burst-every-ms`).
    #[arg(long, default_value_t = 0)]
    pub fault_429_burst_ms: u64,

    /// Geo permissions: E.164 prefixes (country calling codes, e.g. `+44,+33`) this account may not call.
    /// A create to one of them is refused with 400 / 21215 and nothing is created, like Twilio's Voice
    /// Geographic Permissions.
    #[arg(long, value_delimiter = ',')]
    pub geo_blocked: Vec<String>,

    /// Fault: fraction (0..1) of creates answered 500; the call is created anyway with 50% probability,
    /// so its fate is unknown to the client.
    #[arg(long, default_value_t = 0.0)]
    pub fault_5xx: f64,

    /// Fault: fraction (0..1) of creates whose call IS created but whose response is held back for
    /// `--timeout-delay-ms`, so a client with a shorter timeout sees a timeout.
    #[arg(long, default_value_t = 0.0)]
    pub fault_timeout: f64,

    /// How long a `--fault-timeout` response is held back, milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_delay_ms: u64,

    /// Fault: fraction (0..1) of StatusCallback events sent twice (same I-Twilio-Idempotency-Token).
    #[arg(long, default_value_t = 0.0)]
    pub fault_duplicate: f64,

    /// Fault: fraction (0..1) of calls whose StatusCallback events are held back and delivered together,
    /// shuffled, when the call ends.
    #[arg(long, default_value_t = 0.0)]
    pub fault_reorder: f64,

    /// Fault: fraction (0..1) of StatusCallback events delivered after an extra random delay.
    #[arg(long, default_value_t = 0.0)]
    pub fault_delay: f64,

    /// Largest extra delay of `--fault-delay`, milliseconds (real time, not divided by `--speed`).
    #[arg(long, default_value_t = 2_000)]
    pub fault_delay_max_ms: u64,

    /// Fault: fraction (0..1) of StatusCallback events never sent.
    #[arg(long, default_value_t = 0.0)]
    pub fault_lost: f64,

    /// How long the simulator waits for a webhook response (Twilio: 15 s), milliseconds.
    #[arg(long, default_value_t = 15_000)]
    pub webhook_timeout_ms: u64,

    /// SMS outcome mix, percent delivered (the three SMS weights are normalised to their sum).
    #[arg(long, default_value_t = 94.0)]
    pub sms_delivered: f64,

    /// SMS outcome mix, percent undelivered (sent, then refused by the carrier: 30003/30005/30006).
    #[arg(long, default_value_t = 4.0)]
    pub sms_undelivered: f64,

    /// SMS outcome mix, percent failed before sending (30008).
    #[arg(long, default_value_t = 2.0)]
    pub sms_failed: f64,

    /// A simulated operator, the `client:NAME` endpoint of Participants API legs: `NAME=SECS` answers
    /// SECS simulated seconds after it starts ringing, `NAME=never` never answers; `NAME=SECS:TALK` also
    /// sets how long it talks before hanging up (default: a draw from `--talk-time`). Repeatable (the
    /// environment variable takes a comma-separated list). Change them at runtime with `POST /sim/operators`.
    /// A client that is not configured never answers.
    #[arg(long = "operator", env = "SIM_OPERATORS", value_delimiter = ',')]
    pub operators: Vec<Operator>,

    /// How long a callee waits in a conference that has not started (hearing the hold music of its
    /// `waitUrl`) before hanging up, simulated seconds. Per number with `POST /sim/callees`.
    #[arg(long, default_value_t = 600.0)]
    pub hold_patience: f64,
}

impl SimArgs {
    /// Validates the options.
    pub fn into_config(self) -> anyhow::Result<SimConfig> {
        let config = SimConfig {
            account_sid: self.account_sid,
            auth_token: self.auth_token,
            cps: self.cps,
            max_concurrent_requests: self.max_concurrent_requests,
            api_latency: Duration::from_millis(self.api_latency_ms),
            seed: self.seed,
            speed: self.speed,
            outcomes: OutcomeMix {
                human: self.human,
                machine: self.machine,
                busy: self.busy,
                no_answer: self.no_answer,
                failed: self.failed,
                invalid: self.invalid,
            },
            ring_time: self.ring_time,
            talk_time: self.talk_time,
            digits: self.digits,
            say_chars_per_second: self.say_chars_per_second,
            play_secs: self.play_secs,
            faults: Faults {
                rate_429: self.fault_429,
                rate_5xx: self.fault_5xx,
                timeout: self.fault_timeout,
                timeout_delay: Duration::from_millis(self.timeout_delay_ms),
                duplicate: self.fault_duplicate,
                reorder: self.fault_reorder,
                delay: self.fault_delay,
                delay_max: Duration::from_millis(self.fault_delay_max_ms),
                lost: self.fault_lost,
                burst_429: (self.fault_429_burst_every_ms > 0 || self.fault_429_burst_ms > 0).then(|| Burst {
                    every: Duration::from_millis(self.fault_429_burst_every_ms),
                    length: Duration::from_millis(self.fault_429_burst_ms),
                }),
                geo_blocked: self.geo_blocked,
            },
            webhook_timeout: Duration::from_millis(self.webhook_timeout_ms),
            sms: SmsMix { delivered: self.sms_delivered, undelivered: self.sms_undelivered, failed: self.sms_failed },
            operators: self.operators,
            hold_patience_secs: self.hold_patience,
        };
        config.validate()?;
        Ok(config)
    }
}

/// The simulator's validated configuration. `Default` matches the [`SimArgs`] defaults (without reading
/// the environment), which is what tests start from.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub account_sid: String,
    pub auth_token: String,
    pub cps: f64,
    pub max_concurrent_requests: usize,
    /// Simulated round trip of every REST request (`--api-latency-ms`), half before it is handled and half
    /// after; zero = none.
    pub api_latency: Duration,
    pub seed: Option<u64>,
    pub speed: f64,
    pub outcomes: OutcomeMix,
    pub ring_time: SecsRange,
    pub talk_time: SecsRange,
    pub digits: DigitDist,
    pub say_chars_per_second: f64,
    pub play_secs: f64,
    pub faults: Faults,
    pub webhook_timeout: Duration,
    /// How outbound messages end.
    pub sms: SmsMix,
    /// The simulated operators (`client:NAME`) at start.
    pub operators: Vec<Operator>,
    /// How long a callee waits in a conference that has not started before hanging up, simulated seconds.
    pub hold_patience_secs: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            account_sid: DEFAULT_ACCOUNT_SID.into(),
            auth_token: DEFAULT_AUTH_TOKEN.into(),
            cps: 1.0,
            max_concurrent_requests: 100,
            api_latency: Duration::ZERO,
            seed: None,
            speed: 1.0,
            outcomes: OutcomeMix::default(),
            ring_time: SecsRange { min: 3.0, max: 15.0 },
            talk_time: SecsRange { min: 20.0, max: 120.0 },
            digits: "1:60,2:20,9:5,none:15".parse().expect("valid default"),
            say_chars_per_second: 15.0,
            play_secs: 5.0,
            faults: Faults::default(),
            webhook_timeout: Duration::from_secs(15),
            sms: SmsMix::default(),
            operators: Vec::new(),
            hold_patience_secs: 600.0,
        }
    }
}

impl SimConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.account_sid.starts_with("AC") && self.account_sid.len() == 34,
            "--account-sid must be AC + 32 hex"
        );
        ensure!(!self.auth_token.is_empty(), "--auth-token must not be empty");
        ensure!(self.cps.is_finite() && self.cps > 0.0, "--cps must be > 0");
        ensure!(self.max_concurrent_requests > 0, "--max-concurrent-requests must be > 0");
        ensure!(self.speed.is_finite() && self.speed > 0.0, "--speed must be > 0");
        ensure!(self.say_chars_per_second > 0.0, "--say-chars-per-second must be > 0");
        ensure!(self.play_secs >= 0.0, "--play-secs must be >= 0");
        self.outcomes.validate()?;
        self.sms.validate()?;
        ensure!(
            self.hold_patience_secs.is_finite() && self.hold_patience_secs >= 0.0,
            "--hold-patience must be >= 0 seconds"
        );
        for o in &self.operators {
            o.validate()?;
        }
        let f = &self.faults;
        for (name, v) in [
            ("--fault-429", f.rate_429),
            ("--fault-5xx", f.rate_5xx),
            ("--fault-timeout", f.timeout),
            ("--fault-duplicate", f.duplicate),
            ("--fault-reorder", f.reorder),
            ("--fault-delay", f.delay),
            ("--fault-lost", f.lost),
        ] {
            ensure!((0.0..=1.0).contains(&v), "{name} is a fraction between 0 and 1, got {v}");
        }
        ensure!(f.rate_429 + f.rate_5xx + f.timeout <= 1.0, "--fault-429 + --fault-5xx + --fault-timeout exceed 1");
        if let Some(b) = f.burst_429 {
            ensure!(
                !b.length.is_zero() && b.length < b.every,
                "--fault-429-burst-ms must be > 0 and less than --fault-429-burst-every-ms"
            );
        }
        for p in &f.geo_blocked {
            let digits = p.strip_prefix('+').unwrap_or("");
            ensure!(
                (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()),
                "--geo-blocked takes E.164 prefixes such as +44, not {p:?}"
            );
        }
        Ok(())
    }

    /// A simulated duration in seconds as real time.
    pub(crate) fn real(&self, simulated_secs: f64) -> Duration {
        Duration::from_secs_f64((simulated_secs / self.speed).max(0.0))
    }
}

/// Outcome weights in percent (normalised to their sum).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutcomeMix {
    pub human: f64,
    pub machine: f64,
    pub busy: f64,
    pub no_answer: f64,
    pub failed: f64,
    pub invalid: f64,
}

impl Default for OutcomeMix {
    fn default() -> Self {
        Self { human: 55.0, machine: 15.0, busy: 10.0, no_answer: 12.0, failed: 3.0, invalid: 5.0 }
    }
}

/// What happens to a dialled call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Human,
    Machine,
    Busy,
    NoAnswer,
    Failed,
    Invalid,
}

impl OutcomeMix {
    /// Everyone answers.
    pub fn all_human() -> Self {
        Self { human: 100.0, machine: 0.0, busy: 0.0, no_answer: 0.0, failed: 0.0, invalid: 0.0 }
    }

    fn weights(&self) -> [(Outcome, f64); 6] {
        [
            (Outcome::Human, self.human),
            (Outcome::Machine, self.machine),
            (Outcome::Busy, self.busy),
            (Outcome::NoAnswer, self.no_answer),
            (Outcome::Failed, self.failed),
            (Outcome::Invalid, self.invalid),
        ]
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        validate_weights(&self.weights(), "the outcome mix (--human, --machine, ...)")
    }

    pub fn draw(&self, rng: &mut impl Rng) -> Outcome {
        draw_weighted(&self.weights(), rng, Outcome::Human)
    }
}

/// Outbound message outcome weights in percent (normalised to their sum).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmsMix {
    pub delivered: f64,
    pub undelivered: f64,
    pub failed: f64,
}

impl Default for SmsMix {
    fn default() -> Self {
        Self { delivered: 94.0, undelivered: 4.0, failed: 2.0 }
    }
}

/// How an outbound message ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmsOutcome {
    Delivered,
    Undelivered,
    Failed,
}

impl SmsMix {
    /// Every message is delivered.
    pub fn all_delivered() -> Self {
        Self { delivered: 100.0, undelivered: 0.0, failed: 0.0 }
    }

    fn weights(&self) -> [(SmsOutcome, f64); 3] {
        [
            (SmsOutcome::Delivered, self.delivered),
            (SmsOutcome::Undelivered, self.undelivered),
            (SmsOutcome::Failed, self.failed),
        ]
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        validate_weights(&self.weights(), "the SMS mix (--sms-delivered, --sms-undelivered, --sms-failed)")
    }

    pub fn draw(&self, rng: &mut impl Rng) -> SmsOutcome {
        draw_weighted(&self.weights(), rng, SmsOutcome::Delivered)
    }
}

/// Weights of a mix: each finite and not negative, and not all zero.
fn validate_weights<T: std::fmt::Debug>(weights: &[(T, f64)], mix: &str) -> anyhow::Result<()> {
    let mut sum = 0.0;
    for (o, w) in weights {
        ensure!(w.is_finite() && *w >= 0.0, "weight for {o:?} must be >= 0, got {w}");
        sum += w;
    }
    ensure!(sum > 0.0, "{mix} sums to 0");
    Ok(())
}

/// One draw from weights that need not sum to 1; `fallback` only if every weight is zero.
fn draw_weighted<T: Copy>(weights: &[(T, f64)], rng: &mut impl Rng, fallback: T) -> T {
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let mut x = rng.gen::<f64>() * total;
    for (o, weight) in weights {
        if x < *weight {
            return *o;
        }
        x -= weight;
    }
    weights.iter().rev().find(|(_, w)| *w > 0.0).map(|(o, _)| *o).unwrap_or(fallback)
}

/// Fault injection rates (fractions 0..1), 429 bursts and refused destinations.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Fraction of creates refused with 429 / 20429 (nothing created).
    pub rate_429: f64,
    pub rate_5xx: f64,
    pub timeout: f64,
    pub timeout_delay: Duration,
    pub duplicate: f64,
    pub reorder: f64,
    pub delay: f64,
    pub delay_max: Duration,
    pub lost: f64,
    /// Periodic bursts during which every create is refused with 429 / 20429 (nothing created).
    pub burst_429: Option<Burst>,
    /// E.164 prefixes (e.g. "+44") the account has no geo permission for: a create whose `To` starts with
    /// one is refused with 400 / 21215 and nothing is created.
    pub geo_blocked: Vec<String>,
}

impl Faults {
    /// The geo-blocked prefix `to` starts with, if any.
    pub fn geo_blocked_prefix(&self, to: &str) -> Option<&str> {
        self.geo_blocked.iter().map(String::as_str).find(|p| to.starts_with(p))
    }
}

/// A 429 burst schedule: the last `length` of every `every` (counted from the simulator's start) refuses
/// every create. The simulator starts quiet, so a client gets going before the first burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    pub every: Duration,
    pub length: Duration,
}

impl Burst {
    /// Inside a burst `elapsed` after start: how much of it is left.
    pub fn remaining(&self, elapsed: Duration) -> Option<Duration> {
        let every = self.every.as_nanos().max(1);
        let into = Duration::from_nanos((elapsed.as_nanos() % every) as u64);
        let quiet = self.every.saturating_sub(self.length);
        (into >= quiet).then(|| self.every - into)
    }
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            rate_429: 0.0,
            rate_5xx: 0.0,
            timeout: 0.0,
            timeout_delay: Duration::from_secs(30),
            duplicate: 0.0,
            reorder: 0.0,
            delay: 0.0,
            delay_max: Duration::from_secs(2),
            lost: 0.0,
            burst_429: None,
            geo_blocked: Vec::new(),
        }
    }
}

/// A range of simulated seconds, written `MIN-MAX` or as one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SecsRange {
    pub min: f64,
    pub max: f64,
}

impl SecsRange {
    pub fn fixed(secs: f64) -> Self {
        Self { min: secs, max: secs }
    }

    pub fn draw(&self, rng: &mut impl Rng) -> f64 {
        if self.max > self.min {
            rng.gen_range(self.min..=self.max)
        } else {
            self.min
        }
    }
}

impl FromStr for SecsRange {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let num = |t: &str| -> anyhow::Result<f64> {
            let v: f64 = t.trim().parse().map_err(|_| anyhow::anyhow!("not a number of seconds: {t:?}"))?;
            ensure!(v.is_finite() && v >= 0.0, "seconds must be >= 0, got {v}");
            Ok(v)
        };
        let r = match s.split_once('-') {
            Some((a, b)) => Self { min: num(a)?, max: num(b)? },
            None => Self::fixed(num(s)?),
        };
        ensure!(r.min <= r.max, "range {s:?} has MIN > MAX");
        Ok(r)
    }
}

impl fmt::Display for SecsRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// Keypress distribution for `<Gather>`: weighted keys, `None` = no keypress; or, when `sequence` is not
/// empty, the same keys in order on every call (one per `<Gather>`, none after the last).
#[derive(Debug, Clone, PartialEq)]
pub struct DigitDist {
    pub choices: Vec<(Option<char>, f64)>,
    pub sequence: Vec<char>,
}

impl DigitDist {
    /// Always the same key (or never a key).
    pub fn always(key: Option<char>) -> Self {
        Self { choices: vec![(key, 1.0)], sequence: Vec::new() }
    }

    /// The key for a call's `gather`-th `<Gather>` (0-based).
    pub fn draw_nth(&self, gather: usize, rng: &mut impl Rng) -> Option<char> {
        if self.sequence.is_empty() {
            self.draw(rng)
        } else {
            self.sequence.get(gather).copied()
        }
    }

    pub fn draw(&self, rng: &mut impl Rng) -> Option<char> {
        let total: f64 = self.choices.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return None;
        }
        let mut x = rng.gen::<f64>() * total;
        for (k, w) in &self.choices {
            if x < *w {
                return *k;
            }
            x -= w;
        }
        self.choices.last().and_then(|(k, _)| *k)
    }
}

impl FromStr for DigitDist {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        if s.contains('>') {
            let mut sequence = Vec::new();
            for k in s.split('>').map(str::trim) {
                ensure!(
                    k.len() == 1 && matches!(k.as_bytes()[0], b'0'..=b'9' | b'*' | b'#'),
                    "digit {k:?} in sequence {s:?} is not 0-9, * or #"
                );
                sequence.push(k.as_bytes()[0] as char);
            }
            return Ok(Self { choices: vec![(None, 1.0)], sequence });
        }
        let mut choices = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, weight)) = part.split_once(':') else {
                bail!("digit entry {part:?} is not KEY:WEIGHT");
            };
            let key = match key.trim() {
                "none" | "" => None,
                k if k.len() == 1 && matches!(k.as_bytes()[0], b'0'..=b'9' | b'*' | b'#') => k.chars().next(),
                k => bail!("digit key {k:?} is not 0-9, *, # or none"),
            };
            let weight: f64 =
                weight.trim().parse().map_err(|_| anyhow::anyhow!("weight in {part:?} is not a number"))?;
            ensure!(weight.is_finite() && weight >= 0.0, "weight in {part:?} must be >= 0");
            choices.push((key, weight));
        }
        ensure!(!choices.is_empty(), "empty digit distribution");
        Ok(Self { choices, sequence: Vec::new() })
    }
}

impl fmt::Display for DigitDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.sequence.is_empty() {
            let keys: Vec<String> = self.sequence.iter().map(char::to_string).collect();
            return f.write_str(&keys.join(">"));
        }
        for (i, (k, w)) in self.choices.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match k {
                Some(c) => write!(f, "{c}:{w}")?,
                None => write!(f, "none:{w}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rand::SeedableRng;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn defaults_parse_and_validate() {
        let cli = Cli::try_parse_from(["sim", "--account-sid", DEFAULT_ACCOUNT_SID, "--auth-token", "t"]).unwrap();
        let c = cli.sim.into_config().unwrap();
        assert_eq!(c.cps, 1.0);
        assert_eq!(c.digits.choices.len(), 4);
        assert_eq!(c.ring_time, SecsRange { min: 3.0, max: 15.0 });
        assert_eq!(c.faults.timeout_delay, Duration::from_secs(30));
        assert_eq!(c.sms, SmsMix::default());
    }

    #[test]
    fn sms_mix_parses_validates_and_draws() {
        let cli = Cli::try_parse_from(["sim", "--sms-delivered", "0", "--sms-undelivered", "1", "--sms-failed", "0"])
            .unwrap();
        let c = cli.sim.into_config().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        assert!((0..100).all(|_| c.sms.draw(&mut rng) == SmsOutcome::Undelivered));
        let cli = Cli::try_parse_from(["sim", "--sms-delivered", "0", "--sms-undelivered", "0", "--sms-failed", "0"])
            .unwrap();
        assert!(cli.sim.into_config().is_err(), "an all-zero mix is refused");
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!("1:60,x:3".parse::<DigitDist>().is_err());
        let seq: DigitDist = "1>2".parse().unwrap();
        assert_eq!(seq.sequence, vec!['1', '2']);
        assert_eq!(seq.to_string(), "1>2");
        let mut rng = rand::thread_rng();
        assert_eq!((0..3).map(|n| seq.draw_nth(n, &mut rng)).collect::<Vec<_>>(), vec![Some('1'), Some('2'), None]);
        assert!("1>x".parse::<DigitDist>().is_err());
        assert!("5-2".parse::<SecsRange>().is_err());
        assert_eq!("2.5".parse::<SecsRange>().unwrap(), SecsRange::fixed(2.5));
        let c = SimConfig { faults: Faults { lost: 5.0, ..Faults::default() }, ..SimConfig::default() };
        assert!(c.validate().is_err());
        let c = SimConfig { outcomes: OutcomeMix { human: 0.0, ..OutcomeMix::all_human() }, ..SimConfig::default() };
        assert!(c.validate().is_err());
    }

    #[test]
    fn geo_and_burst_options_parse_and_validate() {
        let cli = Cli::try_parse_from([
            "sim",
            "--account-sid",
            DEFAULT_ACCOUNT_SID,
            "--auth-token",
            "t",
            "--geo-blocked",
            "+44,+33",
            "--fault-429-burst-every-ms",
            "4000",
            "--fault-429-burst-ms",
            "1000",
        ])
        .unwrap();
        let c = cli.sim.into_config().unwrap();
        assert_eq!(c.faults.geo_blocked, ["+44", "+33"]);
        assert_eq!(c.faults.geo_blocked_prefix("+447700900123"), Some("+44"));
        assert_eq!(c.faults.geo_blocked_prefix("+818012345678"), None);
        assert_eq!(c.faults.burst_429, Some(Burst { every: Duration::from_secs(4), length: Duration::from_secs(1) }));
        for bad in [vec!["--geo-blocked", "44"], vec!["--geo-blocked", "+4x"], vec!["--fault-429-burst-ms", "10"]] {
            let args = ["sim", "--account-sid", DEFAULT_ACCOUNT_SID, "--auth-token", "t"];
            let cli = Cli::try_parse_from(args.into_iter().chain(bad.iter().copied())).unwrap();
            assert!(cli.sim.into_config().is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn operators_and_hold_patience_parse() {
        let cli = Cli::try_parse_from([
            "sim",
            "--operator",
            "alice=2",
            "--operator",
            "bob=never",
            "--operator",
            "carol=1.5:30",
            "--hold-patience",
            "5",
        ])
        .unwrap();
        let c = cli.sim.into_config().unwrap();
        assert_eq!(c.hold_patience_secs, 5.0);
        assert_eq!(
            c.operators,
            [
                Operator { name: "alice".into(), answer_after_secs: Some(2.0), talk_secs: None },
                Operator { name: "bob".into(), answer_after_secs: None, talk_secs: None },
                Operator { name: "carol".into(), answer_after_secs: Some(1.5), talk_secs: Some(30.0) },
            ]
        );
        for bad in ["alice", "=2", "alice=x", "alice=-1", "alice=1:x", "a b=1"] {
            assert!(Cli::try_parse_from(["sim", "--operator", bad]).is_err(), "{bad} is refused");
        }
        assert_eq!(SimConfig::default().hold_patience_secs, 600.0);
    }

    #[test]
    fn bursts_take_the_end_of_each_period() {
        let ms = Duration::from_millis;
        let b = Burst { every: ms(1000), length: ms(300) };
        assert_eq!(b.remaining(ms(0)), None, "starts quiet");
        assert_eq!(b.remaining(ms(699)), None);
        assert_eq!(b.remaining(ms(700)), Some(ms(300)));
        assert_eq!(b.remaining(ms(950)), Some(ms(50)));
        assert_eq!(b.remaining(ms(1000)), None);
        assert_eq!(b.remaining(ms(5800)), Some(ms(200)));
    }

    #[test]
    fn draws_follow_weights() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let d: DigitDist = "1:1,none:0".parse().unwrap();
        assert!((0..100).all(|_| d.draw(&mut rng) == Some('1')));
        let m = OutcomeMix { human: 0.0, busy: 1.0, ..OutcomeMix::all_human() };
        assert!((0..100).all(|_| m.draw(&mut rng) == Outcome::Busy));
    }
}
