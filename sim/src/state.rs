//! Shared simulator state: the call store (the record of every call), the numbers we own and the message
//! store, CPS pacing, clocks.
//!
//! Locks here are `std::sync::Mutex`es held for a few instructions and never across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conference::{ConfLeg, ConferenceStore};
use super::config::SimConfig;
use super::messages::MessageStore;
use super::metrics::SimMetrics;
use super::numbers::NumberStore;
use super::people::People;
use dialer_core::domain::{AnsweredBy, CallSid, CallStatus, E164};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// RFC 2822 as Twilio writes it: `Tue, 31 Aug 2010 20:36:28 +0000`.
pub fn rfc2822(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

pub(crate) fn rfc3339_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Maps the monotonic clock to wall time, so scheduled instants get consistent timestamps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base_instant: Instant,
    base_wall: DateTime<Utc>,
}

impl Clock {
    pub fn new() -> Self {
        Self { base_instant: Instant::now(), base_wall: Utc::now() }
    }

    pub fn wall(&self, at: Instant) -> DateTime<Utc> {
        let d = at.saturating_duration_since(self.base_instant);
        self.base_wall + chrono::Duration::from_std(d).unwrap_or_default()
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.wall(Instant::now())
    }

    /// Time since the simulator started.
    pub fn elapsed(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.base_instant)
    }
}

/// Who started a call: the REST API (the dialer) or a caller dialling one of our numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallDirection {
    #[default]
    OutboundApi,
    Inbound,
}

impl CallDirection {
    /// Twilio's `Direction` / `direction` value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallDirection::OutboundApi => "outbound-api",
            CallDirection::Inbound => "inbound",
        }
    }
}

/// One end of a call: a phone number, or a Twilio Client identity (`client:alice`, the simulated operators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Party {
    Number(E164),
    /// `client:NAME`, as written in `To` / `From`.
    Client(String),
}

impl Party {
    /// `client:NAME` (NAME: letters, digits, `_`, `-`, `.`, `@`) or a phone number.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if let Some(name) = raw.get(..7).filter(|p| p.eq_ignore_ascii_case("client:")).map(|_| &raw[7..]) {
            let ok = !name.is_empty()
                && name.len() <= 256
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
            return ok.then(|| Party::Client(format!("client:{name}")));
        }
        E164::parse(raw, None).ok().map(Party::Number)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Party::Number(n) => n.as_str(),
            Party::Client(c) => c,
        }
    }

    pub fn number(&self) -> Option<&E164> {
        match self {
            Party::Number(n) => Some(n),
            Party::Client(_) => None,
        }
    }

    /// The identity of a `client:` party.
    pub fn client(&self) -> Option<&str> {
        match self {
            Party::Number(_) => None,
            Party::Client(c) => Some(&c[7..]),
        }
    }
}

impl From<E164> for Party {
    fn from(n: E164) -> Self {
        Party::Number(n)
    }
}

impl std::fmt::Display for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One TwiML request a call made (Url, Gather action, Redirect ...) and how it was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwimlRequest {
    pub url: String,
    pub method: String,
    /// The HTTP status of the answer; `None` when there was none (connection error, timeout).
    pub status: Option<u16>,
}

/// How a call asked to be handled (the create parameters the simulator acts on).
#[derive(Debug, Clone)]
pub(crate) struct CallRequest {
    pub direction: CallDirection,
    pub to: Party,
    pub from: Party,
    pub url: Option<String>,
    pub method: String,
    pub twiml: Option<String>,
    pub status_callback: Option<String>,
    pub status_callback_method: String,
    pub events: EventSet,
    pub timeout_secs: f64,
    pub time_limit_secs: f64,
    pub machine_detection: Option<MachineDetection>,
    pub async_amd: bool,
    pub async_amd_callback: Option<String>,
    pub async_amd_callback_method: String,
    pub machine_detection_timeout_secs: f64,
    /// A leg placed by the Participants API: once answered it joins this conference (instead of
    /// fetching TwiML).
    pub conference_leg: Option<ConfLeg>,
}

impl CallRequest {
    /// A call with Twilio's defaults for what a create leaves out: no document yet (`POST` when there is
    /// one), no status callback but `completed` asked for, 60 s to answer, a 4 h limit, no answering-machine
    /// detection, not a conference leg.
    pub fn new(direction: CallDirection, to: Party, from: Party) -> Self {
        Self {
            direction,
            to,
            from,
            url: None,
            method: "POST".into(),
            twiml: None,
            status_callback: None,
            status_callback_method: "POST".into(),
            events: EventSet { completed: true, ..EventSet::default() },
            timeout_secs: 60.0,
            time_limit_secs: 14_400.0,
            machine_detection: None,
            async_amd: false,
            async_amd_callback: None,
            async_amd_callback_method: "POST".into(),
            machine_detection_timeout_secs: 30.0,
            conference_leg: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MachineDetection {
    Enable,
    DetectMessageEnd,
}

/// The StatusCallbackEvents a call asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EventSet {
    pub initiated: bool,
    pub ringing: bool,
    pub answered: bool,
    pub completed: bool,
}

/// The mutable part of a call.
#[derive(Debug, Clone)]
pub(crate) struct CallMut {
    pub status: CallStatus,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_secs: Option<u64>,
    /// Time on the line since the answer, in simulated seconds: every simulated wait as it was meant
    /// (say, pause, gather, talk) plus each TwiML fetch at its real latency. Scaling the wall clock by
    /// `speed` instead would stretch a 100 ms fetch into 20 s at ×200.
    pub talk_secs: f64,
    pub answered_by: Option<AnsweredBy>,
    pub digits: String,
    pub queue_time_ms: Option<u64>,
    pub sip_response_code: Option<u16>,
    pub outcome: Option<&'static str>,
    pub error: Option<String>,
    /// Ended by a REST update (`Status=canceled|completed`).
    pub ended_by_update: bool,
    /// `CallStatus` of each StatusCallback dropped by the lost-callback fault.
    pub lost_callbacks: Vec<CallStatus>,
    /// What the callee heard and did, in order: `<Say>` texts, `<Dial>`ed numbers, TwiML requests.
    pub says: Vec<String>,
    pub dialed: Vec<String>,
    pub twiml_requests: Vec<TwimlRequest>,
    /// The call hung up while it waited in a conference that had not started (its hold patience ran out).
    pub abandoned_in_conference: bool,
    /// The sids of the conferences the call joined, in order.
    pub conferences: Vec<String>,
}

impl CallMut {
    /// A call that was just created with `status`.
    pub fn new(status: CallStatus, at: DateTime<Utc>) -> Self {
        Self {
            status,
            updated_at: at,
            started_at: None,
            answered_at: None,
            ended_at: None,
            duration_secs: None,
            talk_secs: 0.0,
            answered_by: None,
            digits: String::new(),
            queue_time_ms: None,
            sip_response_code: None,
            outcome: None,
            error: None,
            ended_by_update: false,
            lost_callbacks: Vec::new(),
            says: Vec::new(),
            dialed: Vec::new(),
            twiml_requests: Vec::new(),
            abandoned_in_conference: false,
            conferences: Vec::new(),
        }
    }
}

/// The next TwiML document of a live call, set by a REST update (`Url` + `Method`, or `Twiml`).
#[derive(Debug, Clone)]
pub(crate) enum NewDoc {
    Url { url: String, method: String },
    Twiml(String),
}

/// One call: what was asked, and what happened so far.
#[derive(Debug)]
pub(crate) struct CallEntry {
    pub sid: CallSid,
    pub created_at: DateTime<Utc>,
    pub req: CallRequest,
    pub cancel: CancellationToken,
    pub state: Mutex<CallMut>,
    /// A redirect of the live call (`Url`/`Twiml` update): its walker leaves what it is doing and walks
    /// this; before the answer it replaces the call's `Url`.
    pub redirect: Mutex<Option<NewDoc>>,
    /// Wakes the walker when `redirect` is set.
    pub redirect_notify: tokio::sync::Notify,
}

impl CallEntry {
    pub fn new(
        sid: CallSid,
        created_at: DateTime<Utc>,
        req: CallRequest,
        cancel: CancellationToken,
        state: CallMut,
    ) -> Self {
        Self {
            sid,
            created_at,
            req,
            cancel,
            state: Mutex::new(state),
            redirect: Mutex::new(None),
            redirect_notify: tokio::sync::Notify::new(),
        }
    }

    pub fn snapshot(&self) -> CallMut {
        lock(&self.state).clone()
    }

    pub fn record(&self) -> CallRecord {
        let s = self.snapshot();
        CallRecord {
            sid: self.sid.to_string(),
            direction: self.req.direction,
            to: self.req.to.to_string(),
            from: self.req.from.to_string(),
            url: self.req.url.clone(),
            status_callback: self.req.status_callback.clone(),
            created_at: rfc3339_ms(self.created_at),
            started_at: s.started_at.map(rfc3339_ms),
            answered_at: s.answered_at.map(rfc3339_ms),
            ended_at: s.ended_at.map(rfc3339_ms),
            status: s.status,
            duration: s.duration_secs,
            answered_by: s.answered_by,
            digits: s.digits,
            queue_time_ms: s.queue_time_ms,
            sip_response_code: s.sip_response_code,
            outcome: s.outcome.map(str::to_string),
            error: s.error,
            ended_by_update: s.ended_by_update,
            lost_callbacks: s.lost_callbacks,
            says: s.says,
            dialed: s.dialed,
            twiml_requests: s.twiml_requests,
            abandoned_in_conference: s.abandoned_in_conference,
            conferences: s.conferences,
        }
    }
}

/// The simulator's record of one call (`GET /sim/calls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    pub sid: String,
    /// `outbound-api` for calls created through the REST API, `inbound` for `POST /sim/calls/inbound`.
    #[serde(default)]
    pub direction: CallDirection,
    pub to: String,
    pub from: String,
    /// The TwiML `Url`; `None` for inline `Twiml`.
    pub url: Option<String>,
    pub status_callback: Option<String>,
    /// When the create was accepted (RFC 3339, ms).
    pub created_at: String,
    /// When the call left the CPS queue (RFC 3339, ms).
    pub started_at: Option<String>,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    pub status: CallStatus,
    /// Answer to end, simulated seconds (rounded up); `None` until the call ends.
    pub duration: Option<u64>,
    pub answered_by: Option<AnsweredBy>,
    /// Every key pressed in this call's `<Gather>`s, concatenated.
    pub digits: String,
    pub queue_time_ms: Option<u64>,
    pub sip_response_code: Option<u16>,
    /// The simulated outcome drawn for the call: `human`, `machine`, `busy`, `no-answer`, `failed`,
    /// `invalid` (set when the call leaves the queue), or `canceled`.
    pub outcome: Option<String>,
    /// Why the call ended abnormally (TwiML fetch failed, bad TwiML, step limit), if it did.
    pub error: Option<String>,
    /// The call was ended by the API (`POST Calls/{Sid}.json` with `Status=canceled|completed`), not by the
    /// callee, the network, its TwiML or its time limit; `status` and `ended_at` say how and when.
    #[serde(default)]
    pub ended_by_update: bool,
    /// The `CallStatus` of every StatusCallback of this call that the lost-callback fault dropped: the
    /// application never heard of them (a terminal one means it must ask the API how the call ended).
    #[serde(default)]
    pub lost_callbacks: Vec<CallStatus>,
    /// The text of every `<Say>` the callee (or caller) heard, in order.
    #[serde(default)]
    pub says: Vec<String>,
    /// The numbers `<Dial>` transferred the call to.
    #[serde(default)]
    pub dialed: Vec<String>,
    /// Every TwiML request the call made, in order.
    #[serde(default)]
    pub twiml_requests: Vec<TwimlRequest>,
    /// The callee hung up while waiting in a conference that had not started (its hold patience ran out).
    #[serde(default)]
    pub abandoned_in_conference: bool,
    /// The sids (`CF…`) of the conferences the call joined, in order.
    #[serde(default)]
    pub conferences: Vec<String>,
}

/// Kept in a [`SidStore`] under its sid.
pub(crate) trait HasSid {
    fn sid(&self) -> &str;
}

/// Records by sid and in creation order.
pub(crate) struct SidIndex<T> {
    pub order: Vec<Arc<T>>,
    pub by_sid: HashMap<String, Arc<T>>,
}

impl<T: HasSid> SidIndex<T> {
    pub fn insert(&mut self, e: Arc<T>) {
        self.by_sid.insert(e.sid().to_string(), e.clone());
        self.order.push(e);
    }
}

/// Every record of one kind (calls, messages, conferences) since start (or the last reset), in creation
/// order.
pub(crate) struct SidStore<T> {
    inner: Mutex<SidIndex<T>>,
}

impl<T> Default for SidStore<T> {
    fn default() -> Self {
        Self { inner: Mutex::new(SidIndex { order: Vec::new(), by_sid: HashMap::new() }) }
    }
}

impl<T: HasSid> SidStore<T> {
    pub fn insert(&self, e: Arc<T>) {
        lock(&self.inner).insert(e);
    }

    pub fn get(&self, sid: &str) -> Option<Arc<T>> {
        lock(&self.inner).by_sid.get(sid).cloned()
    }

    pub fn all(&self) -> Vec<Arc<T>> {
        lock(&self.inner).order.clone()
    }

    /// The index, locked: to look up and insert as one step.
    pub fn index(&self) -> MutexGuard<'_, SidIndex<T>> {
        lock(&self.inner)
    }

    /// Forgets the records (what is still running carries on).
    pub fn clear(&self) {
        let mut g = lock(&self.inner);
        g.order.clear();
        g.by_sid.clear();
    }
}

impl HasSid for CallEntry {
    fn sid(&self) -> &str {
        self.sid.as_str()
    }
}

/// Every call since start (or the last reset), in creation order.
pub(crate) type Store = SidStore<CallEntry>;

/// Callback counters (also exported as metrics).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub callbacks_sent: AtomicU64,
    pub callbacks_failed: AtomicU64,
    pub callbacks_lost: AtomicU64,
    pub callbacks_duplicated: AtomicU64,
    pub webhooks_sent: AtomicU64,
    pub webhooks_failed: AtomicU64,
    pub active_calls: AtomicI64,
    pub peak_active_calls: AtomicI64,
    /// Create requests answered with a Twilio error, by error code.
    pub create_errors: Mutex<BTreeMap<u32, u64>>,
    /// Message creates answered with a Twilio error, by error code.
    pub message_create_errors: Mutex<BTreeMap<u32, u64>>,
}

impl Counters {
    pub fn reset(&self) {
        for c in [
            &self.callbacks_sent,
            &self.callbacks_failed,
            &self.callbacks_lost,
            &self.callbacks_duplicated,
            &self.webhooks_sent,
            &self.webhooks_failed,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        lock(&self.create_errors).clear();
        lock(&self.message_create_errors).clear();
        self.peak_active_calls.store(self.active_calls.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub fn create_error(&self, code: u32) {
        *lock(&self.create_errors).entry(code).or_default() += 1;
    }

    pub fn call_started(&self) {
        let now = self.active_calls.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_active_calls.fetch_max(now, Ordering::Relaxed);
    }

    pub fn call_ended(&self) {
        self.active_calls.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Strict CPS pacing: each call gets the next free departure slot, `1/cps` after the previous one.
pub(crate) struct Pacer {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn new(cps: f64) -> Self {
        // Rounded up to the nanosecond, so `cps` slots never fit inside one second.
        let nanos = (1e9 / cps).ceil() as u64;
        Self { interval: Duration::from_nanos(nanos.max(1)), next: Mutex::new(None) }
    }

    /// Reserves the departure slot for a call created at `now`.
    pub fn reserve(&self, now: Instant) -> Instant {
        let mut g = lock(&self.next);
        let slot = match *g {
            Some(n) if n > now => n,
            _ => now,
        };
        *g = Some(slot + self.interval);
        slot
    }
}

/// Everything the routes and call tasks share.
pub(crate) struct Sim {
    pub config: SimConfig,
    pub clock: Clock,
    pub store: Store,
    /// The numbers we own (`IncomingPhoneNumbers`): where inbound calls and messages go.
    pub numbers: NumberStore,
    pub messages: MessageStore,
    pub conferences: ConferenceStore,
    /// The simulated operators (`client:NAME`) and scripted callees.
    pub people: People,
    pub pacer: Pacer,
    pub counters: Counters,
    pub metrics: SimMetrics,
    pub http: reqwest::Client,
    /// Randomness that is not tied to a number (create faults, per-call fault seeds).
    pub rng: Mutex<ChaCha8Rng>,
    pub rest_in_flight: AtomicI64,
    pub shutdown: CancellationToken,
}

impl Sim {
    pub fn new(config: SimConfig) -> anyhow::Result<Arc<Self>> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
            .pool_max_idle_per_host(256)
            .user_agent("TwilioProxy/1.1 (dialer simulator)")
            .build()?;
        let rng = match config.seed {
            Some(s) => ChaCha8Rng::seed_from_u64(s ^ 0x5eed_0ffa_17ed),
            None => ChaCha8Rng::from_entropy(),
        };
        let people = People::new(&config);
        Ok(Arc::new(Self {
            pacer: Pacer::new(config.cps),
            config,
            clock: Clock::new(),
            store: Store::default(),
            numbers: NumberStore::default(),
            messages: MessageStore::default(),
            conferences: ConferenceStore::default(),
            people,
            counters: Counters::default(),
            metrics: SimMetrics::new()?,
            http,
            rng: Mutex::new(rng),
            rest_in_flight: AtomicI64::new(0),
            shutdown: CancellationToken::new(),
        }))
    }
}

/// FNV-1a: a hash that is stable across builds (seeded outcomes per `To` number).
pub(crate) fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spaces_slots() {
        let p = Pacer::new(5.0);
        let t0 = Instant::now();
        let slots: Vec<_> = (0..5).map(|_| p.reserve(t0)).collect();
        for w in slots.windows(2) {
            assert_eq!(w[1] - w[0], Duration::from_millis(200));
        }
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.reserve(later), later);
    }

    #[test]
    fn rfc2822_is_twilio_shaped() {
        let t = DateTime::parse_from_rfc3339("2010-08-31T20:36:28Z").unwrap().with_timezone(&Utc);
        assert_eq!(rfc2822(t), "Tue, 31 Aug 2010 20:36:28 +0000");
    }
}
