//! One call's life, as a tokio task: CPS queue → initiated → ringing → outcome → (answered: TwiML walk)
//! → terminal status, with the StatusCallbacks the call asked for.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::conference::{LeaveReason, ParticipantStatus};
use super::config::Outcome;
use super::state::{lock, rfc2822, stable_hash, CallDirection, CallEntry, MachineDetection, Party, Sim};
use super::twiml_walk::WalkEnd;
use super::webhook::{deliver_callback, Params};
use dialer_core::domain::{AnsweredBy, CallStatus};

/// Why a call task stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The call was ended from outside (REST `Status=canceled|completed`); its status is already terminal.
    Hangup,
    /// The simulator is shutting down.
    Shutdown,
    /// A REST update (`Url`/`Twiml`) redirected the call in progress: its walker takes the new document.
    Redirect,
}

/// Ends a call: sets its terminal status, end time and duration, unless it already ended.
/// Returns false if it had.
pub(crate) fn finish(sim: &Sim, entry: &CallEntry, status: CallStatus, sip: u16) -> bool {
    finish_with(sim, entry, status, sip, false)
}

/// [`finish`], noting whether a REST update (`Status=canceled|completed`) ended the call.
pub(crate) fn finish_with(sim: &Sim, entry: &CallEntry, status: CallStatus, sip: u16, by_update: bool) -> bool {
    let now = sim.clock.now();
    {
        let mut s = lock(&entry.state);
        if s.status.is_terminal() {
            return false;
        }
        s.status = status;
        s.ended_by_update = by_update;
        s.sip_response_code = Some(sip);
        s.ended_at = Some(now);
        s.updated_at = now;
        s.duration_secs = Some(if s.answered_at.is_some() { s.talk_secs.ceil() as u64 } else { 0 });
        if status == CallStatus::Canceled {
            s.outcome = Some("canceled");
        }
    }
    sim.metrics.calls_ended.with_label_values(&[status.as_str()]).inc();
    true
}

/// A walk stopped from outside mid-wait (the time limit, the caller hanging up): the wait it was in never
/// counted, so the time on the line is the wall clock since the answer, scaled by the speed.
pub(crate) fn cut_off(sim: &Sim, entry: &CallEntry) {
    let now = sim.clock.now();
    let mut s = lock(&entry.state);
    if let Some(a) = s.answered_at {
        let real = (now - a).num_milliseconds().max(0) as f64 / 1000.0;
        s.talk_secs = s.talk_secs.max(real * sim.config.speed);
    }
}

/// The events a StatusCallback can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

struct Pending {
    params: Params,
    token: String,
    duplicate: bool,
}

/// Where one resource's callbacks go.
struct Target {
    url: String,
    method: String,
}

/// Sends one resource's callbacks (a call's StatusCallbacks, a message's status callbacks) to one URL in
/// order, through one delivery task, applying the callback faults: lost, duplicated (same idempotency
/// token), delayed, and reordered (held back and shuffled until [`FaultySink::finish`]).
pub(crate) struct FaultySink {
    sim: Arc<Sim>,
    target: Arc<Target>,
    rng: ChaCha8Rng,
    reorder: bool,
    held: Vec<Pending>,
    tx: Option<mpsc::UnboundedSender<Pending>>,
}

impl FaultySink {
    pub fn new(sim: &Arc<Sim>, url: String, method: String, fault_seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(fault_seed);
        let reorder = sim.config.faults.reorder > 0.0 && rng.gen_bool(sim.config.faults.reorder);
        let target = Arc::new(Target { url, method });
        Self { sim: sim.clone(), target, rng, reorder, held: Vec::new(), tx: None }
    }

    /// Queues one callback. False when the lost-callback fault dropped it (already counted).
    pub fn push(&mut self, params: Params) -> bool {
        let f = &self.sim.config.faults;
        if f.lost > 0.0 && self.rng.gen_bool(f.lost) {
            self.sim.counters.callbacks_lost.fetch_add(1, Ordering::Relaxed);
            self.sim.metrics.callbacks_lost.inc();
            return false;
        }
        let duplicate = f.duplicate > 0.0 && self.rng.gen_bool(f.duplicate);
        let p = Pending { params, token: uuid::Uuid::new_v4().simple().to_string(), duplicate };
        if self.reorder {
            self.held.push(p);
        } else if f.delay > 0.0 && self.rng.gen_bool(f.delay) {
            let max = f.delay_max.as_millis().max(1) as u64;
            let extra = Duration::from_millis(self.rng.gen_range(0..=max));
            let (sim, target) = (self.sim.clone(), self.target.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(extra) => deliver(&sim, &target, p).await,
                    _ = sim.shutdown.cancelled() => {}
                }
            });
        } else {
            self.send(p);
        }
        true
    }

    fn send(&mut self, p: Pending) {
        let tx = self.tx.get_or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
            let (sim, target) = (self.sim.clone(), self.target.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        next = rx.recv() => match next {
                            Some(p) => deliver(&sim, &target, p).await,
                            None => break,
                        },
                        _ = sim.shutdown.cancelled() => break,
                    }
                }
            });
            tx
        });
        let _ = tx.send(p);
    }

    /// Delivers what the reorder fault held back, shuffled (never in the original order).
    pub fn finish(mut self) {
        let mut held = std::mem::take(&mut self.held);
        if held.len() > 1 {
            let original: Vec<String> = held.iter().map(|p| p.token.clone()).collect();
            held.shuffle(&mut self.rng);
            if held.iter().map(|p| &p.token).eq(original.iter()) {
                held.reverse();
            }
        }
        for p in held {
            self.send(p);
        }
    }
}

async fn deliver(sim: &Sim, target: &Target, p: Pending) {
    deliver_callback(sim, &target.url, &target.method, &p.params, &p.token).await;
    if p.duplicate {
        sim.counters.callbacks_duplicated.fetch_add(1, Ordering::Relaxed);
        deliver_callback(sim, &target.url, &target.method, &p.params, &p.token).await;
    }
}

/// One call's StatusCallbacks: the events it asked for, numbered, through a [`FaultySink`].
pub(crate) struct CallbackSink {
    sim: Arc<Sim>,
    entry: Arc<CallEntry>,
    seq: u32,
    sink: Option<FaultySink>,
}

impl CallbackSink {
    pub(crate) fn new(sim: &Arc<Sim>, entry: &Arc<CallEntry>, fault_seed: u64) -> Self {
        let sink = entry
            .req
            .status_callback
            .clone()
            .map(|url| FaultySink::new(sim, url, entry.req.status_callback_method.clone(), fault_seed));
        Self { sim: sim.clone(), entry: entry.clone(), seq: 0, sink }
    }

    fn wanted(&self, e: Event) -> bool {
        let ev = &self.entry.req.events;
        self.sink.is_some()
            && match e {
                Event::Initiated => ev.initiated,
                Event::Ringing => ev.ringing,
                Event::Answered => ev.answered,
                Event::Completed => ev.completed,
            }
    }

    pub(crate) fn emit(&mut self, e: Event, call_status: CallStatus, mut params: Params) {
        if !self.wanted(e) {
            return;
        }
        let seq = self.seq;
        self.seq += 1;
        params.push(("CallStatus".into(), call_status.as_str().into()));
        params.push(("SequenceNumber".into(), seq.to_string()));
        params.push(("Timestamp".into(), rfc2822(self.sim.clock.now())));
        params.push(("CallbackSource".into(), "call-progress-events".into()));
        if let Some(sink) = &mut self.sink {
            if !sink.push(params) {
                lock(&self.entry.state).lost_callbacks.push(call_status);
            }
        }
    }

    pub(crate) fn finish(self) {
        if let Some(sink) = self.sink {
            sink.finish();
        }
    }
}

/// What a running call carries around.
pub(crate) struct CallCtx {
    pub sim: Arc<Sim>,
    pub entry: Arc<CallEntry>,
    /// Outcome, timing and keypress draws (seeded per `To` number when the simulator has a seed).
    pub rng: ChaCha8Rng,
    /// `AnsweredBy` sent with TwiML requests (synchronous AMD only).
    pub sync_answered_by: Option<AnsweredBy>,
    /// The keys an inbound caller presses, in order (`POST /sim/calls/inbound`), or a scripted callee's
    /// (`POST /sim/callees`); `None`: each `<Gather>` draws from the configured keypress distribution.
    pub keyed: Option<VecDeque<char>>,
    /// A scripted callee's keys once it has left a conference (replacing `keyed` then).
    pub keys_after_hold: Option<VecDeque<char>>,
    /// How long the callee waits in a conference that has not started before hanging up (simulated s).
    pub hold_patience_secs: f64,
    /// The TwiML walk has begun: from now on a redirect (`Url`/`Twiml` update) interrupts what it does.
    pub redirectable: bool,
}

/// Long enough to mean "until something else happens" (simulated seconds; under tokio's timer limit at
/// any speed >= 1).
pub(crate) const FOREVER_SECS: f64 = 1e7;

impl CallCtx {
    pub(crate) fn new(sim: &Arc<Sim>, entry: &Arc<CallEntry>, rng: ChaCha8Rng, keyed: Option<VecDeque<char>>) -> Self {
        Self {
            sim: sim.clone(),
            entry: entry.clone(),
            rng,
            sync_answered_by: None,
            keyed,
            keys_after_hold: None,
            hold_patience_secs: sim.config.hold_patience_secs,
            redirectable: false,
        }
    }

    pub(crate) fn stop_reason(&self) -> Stop {
        if self.sim.shutdown.is_cancelled() {
            Stop::Shutdown
        } else {
            Stop::Hangup
        }
    }

    /// Waits `simulated_secs / speed`, unless the call is ended or redirected meanwhile. The time waited
    /// counts on the line even when the wait is cut short or dropped (a `select!` that went another way).
    pub(crate) async fn sleep(&self, simulated_secs: f64) -> Result<(), Stop> {
        struct Counted<'a> {
            ctx: &'a CallCtx,
            started: std::time::Instant,
            secs: f64,
            whole: bool,
        }
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                // Cut short: the part that passed, in simulated time.
                let passed = if self.whole {
                    self.secs
                } else {
                    (self.started.elapsed().as_secs_f64() * self.ctx.sim.config.speed).min(self.secs)
                };
                self.ctx.on_the_line(passed);
            }
        }
        let mut counted = Counted { ctx: self, started: std::time::Instant::now(), secs: simulated_secs, whole: false };
        let slept = self.sleep_real(self.sim.config.real(simulated_secs)).await;
        counted.whole = slept.is_ok();
        slept
    }

    /// A redirect is waiting for the walker.
    pub(crate) fn redirect_pending(&self) -> bool {
        self.redirectable && lock(&self.entry.redirect).is_some()
    }

    /// Resolves once the call is redirected (never before its walk has begun).
    pub(crate) async fn redirected(&self) {
        if !self.redirectable {
            return std::future::pending().await;
        }
        loop {
            let notified = self.entry.redirect_notify.notified();
            if self.redirect_pending() {
                return;
            }
            notified.await;
        }
    }

    /// Counts time spent on an answered call towards its duration (simulated seconds).
    pub(crate) fn on_the_line(&self, simulated_secs: f64) {
        let mut s = lock(&self.entry.state);
        if s.answered_at.is_some() {
            s.talk_secs += simulated_secs;
        }
    }

    async fn sleep_real(&self, d: Duration) -> Result<(), Stop> {
        if self.entry.cancel.is_cancelled() {
            return Err(self.stop_reason());
        }
        if self.redirect_pending() {
            return Err(Stop::Redirect);
        }
        if d.is_zero() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.entry.cancel.cancelled() => Err(self.stop_reason()),
            _ = self.redirected() => Err(Stop::Redirect),
        }
    }

    pub(crate) fn rng_secs(&mut self, lo: f64, hi: f64) -> f64 {
        self.rng.gen_range(lo..=hi)
    }

    pub(crate) fn base_params(&self) -> Params {
        let e = &self.entry;
        let mut p: Params = vec![
            ("CallSid".into(), e.sid.to_string()),
            ("AccountSid".into(), self.sim.config.account_sid.clone()),
            ("From".into(), e.req.from.to_string()),
            ("To".into(), e.req.to.to_string()),
            ("Direction".into(), e.req.direction.as_str().into()),
            ("ApiVersion".into(), "2010-04-01".into()),
        ];
        if e.req.direction == CallDirection::Inbound {
            // What an inbound voice request carries besides: the legacy aliases and the geo fields.
            p.push(("Caller".into(), e.req.from.to_string()));
            p.push(("Called".into(), e.req.to.to_string()));
            p.push(("FromCountry".into(), e.req.from.number().map(country_of).unwrap_or_default()));
            p.push(("ToCountry".into(), e.req.to.number().map(country_of).unwrap_or_default()));
        }
        p
    }

    /// Parameters of a TwiML request (Url, Gather action, Redirect ...): `ringing` for the first request of
    /// an inbound call (Twilio answers it once it has TwiML), `in-progress` otherwise.
    pub(crate) fn twiml_params(&self) -> Params {
        let mut p = self.base_params();
        let status = match lock(&self.entry.state).status {
            CallStatus::Ringing => CallStatus::Ringing,
            _ => CallStatus::InProgress,
        };
        p.push(("CallStatus".into(), status.as_str().into()));
        if let Some(a) = self.sync_answered_by {
            p.push(("AnsweredBy".into(), a.as_str().into()));
        }
        p
    }

    /// Answers a ringing (inbound) call; a call that is already answered is left alone.
    pub(crate) fn answer_if_ringing(&self) -> Result<(), Stop> {
        if lock(&self.entry.state).status == CallStatus::Ringing {
            self.set_status(CallStatus::InProgress, true)?;
        }
        Ok(())
    }

    /// Moves a live call to `status`; fails if it was ended from outside meanwhile.
    fn set_status(&self, status: CallStatus, answered: bool) -> Result<(), Stop> {
        let now = self.sim.clock.now();
        let mut s = lock(&self.entry.state);
        if s.status.is_terminal() {
            return Err(self.stop_reason());
        }
        s.status = status;
        s.updated_at = now;
        if answered {
            s.answered_at = Some(now);
        }
        Ok(())
    }

    fn set_outcome(&self, o: &'static str) {
        lock(&self.entry.state).outcome = Some(o);
    }

    async fn ring(&self, cb: &mut CallbackSink) -> Result<(), Stop> {
        self.set_status(CallStatus::Ringing, false)?;
        self.leg_progress(ParticipantStatus::Ringing);
        cb.emit(Event::Ringing, CallStatus::Ringing, self.base_params());
        Ok(())
    }

    /// A Participants API leg's progress, on its participant.
    fn leg_progress(&self, status: ParticipantStatus) {
        if let Some(leg) = &self.entry.req.conference_leg {
            leg.conference.leg_progress(&self.sim, self.entry.sid.as_str(), status);
        }
    }

    /// The outcome and ring time of this call: an operator (`client:NAME`) answers when it is configured
    /// to (an unknown or `never` one rings until the timeout); a number follows the outcome mix.
    fn draw_outcome(&mut self) -> (Outcome, f64) {
        if let Party::Client(_) = &self.entry.req.to {
            let name = self.entry.req.to.client().unwrap_or_default();
            return match self.sim.people.operator(name).and_then(|o| o.answer_after_secs) {
                Some(secs) => (Outcome::Human, secs),
                None => (Outcome::NoAnswer, self.entry.req.timeout_secs),
            };
        }
        let outcome = self.sim.config.outcomes.draw(&mut self.rng);
        let ring_secs = self.sim.config.ring_time.draw(&mut self.rng);
        (outcome, ring_secs)
    }

    fn draw_answered_by(&mut self, outcome: Outcome, md: MachineDetection) -> (AnsweredBy, f64) {
        match (outcome, md) {
            (Outcome::Human, _) => (AnsweredBy::Human, self.rng_secs(1.5, 3.5)),
            (_, MachineDetection::Enable) => (AnsweredBy::MachineStart, self.rng_secs(2.5, 4.5)),
            (_, MachineDetection::DetectMessageEnd) => {
                let x: f64 = self.rng.gen();
                let a = if x < 0.7 {
                    AnsweredBy::MachineEndBeep
                } else if x < 0.9 {
                    AnsweredBy::MachineEndSilence
                } else {
                    AnsweredBy::MachineEndOther
                };
                (a, self.rng_secs(6.0, 14.0))
            }
        }
    }

    /// Queue → terminal status. `Err` only when the call was ended from outside or on shutdown.
    async fn lifecycle(&mut self, cb: &mut CallbackSink, slot: Instant, started: &mut bool) -> Result<(), Stop> {
        let sim = self.sim.clone();
        tokio::select! {
            _ = tokio::time::sleep_until(slot) => {},
            _ = self.entry.cancel.cancelled() => return Err(self.stop_reason()),
        }
        {
            let mut s = lock(&self.entry.state);
            if s.status.is_terminal() {
                return Err(self.stop_reason());
            }
            let start = sim.clock.wall(slot);
            let q = (start - self.entry.created_at).num_milliseconds().max(0) as u64;
            s.started_at = Some(start);
            s.queue_time_ms = Some(q);
            sim.metrics.queue_time.observe(q as f64 / 1000.0);
        }
        *started = true;
        sim.counters.call_started();
        sim.metrics.calls_active.inc();
        self.leg_progress(ParticipantStatus::Connecting);
        cb.emit(Event::Initiated, CallStatus::Initiated, self.base_params());

        let (outcome, ring_secs) = self.draw_outcome();
        let timeout = self.entry.req.timeout_secs;
        self.set_outcome(match outcome {
            Outcome::Human => "human",
            Outcome::Machine => "machine",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no-answer",
            Outcome::Failed => "failed",
            Outcome::Invalid => "invalid",
        });
        match outcome {
            Outcome::Invalid => {
                self.sleep(0.5).await?;
                finish(&sim, &self.entry, CallStatus::Failed, 404);
                return Ok(());
            }
            Outcome::Failed => {
                self.sleep(1.0).await?;
                finish(&sim, &self.entry, CallStatus::Failed, 500);
                return Ok(());
            }
            Outcome::Busy => {
                self.ring(cb).await?;
                self.sleep((ring_secs * 0.3).min(timeout)).await?;
                finish(&sim, &self.entry, CallStatus::Busy, 486);
                return Ok(());
            }
            Outcome::NoAnswer => {
                self.ring(cb).await?;
                self.sleep(timeout).await?;
                finish(&sim, &self.entry, CallStatus::NoAnswer, 487);
                return Ok(());
            }
            Outcome::Human | Outcome::Machine => {
                self.ring(cb).await?;
                if ring_secs >= timeout {
                    self.sleep(timeout).await?;
                    self.set_outcome("no-answer");
                    finish(&sim, &self.entry, CallStatus::NoAnswer, 487);
                    return Ok(());
                }
                self.sleep(ring_secs).await?;
            }
        }

        // Answered.
        let req = self.entry.req.clone();
        let amd = req.machine_detection.map(|md| self.draw_answered_by(outcome, md));
        let amd_secs = |secs: f64| secs.min(req.machine_detection_timeout_secs);
        if let (Some((by, secs)), false) = (amd, req.async_amd) {
            // Synchronous AMD: Twilio asks for TwiML once detection is done.
            self.set_status(CallStatus::InProgress, true)?;
            self.sleep(amd_secs(secs)).await?;
            self.sync_answered_by = Some(by);
        } else {
            self.set_status(CallStatus::InProgress, true)?;
        }
        if let Some((by, _)) = amd {
            lock(&self.entry.state).answered_by = Some(by);
        }
        let mut answered = self.base_params();
        if let Some(by) = self.sync_answered_by {
            answered.push(("AnsweredBy".into(), by.as_str().into()));
        }
        cb.emit(Event::Answered, CallStatus::InProgress, answered);

        if let (Some((by, secs)), true, Some(url)) = (amd, req.async_amd, req.async_amd_callback.clone()) {
            let mut params = self.base_params();
            params.push(("AnsweredBy".into(), by.as_str().into()));
            params.push(("MachineDetectionDuration".into(), format!("{}", (amd_secs(secs) * 1000.0) as u64)));
            let delay = sim.config.real(amd_secs(secs));
            let method = req.async_amd_callback_method.clone();
            let sim2 = sim.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {
                        let token = uuid::Uuid::new_v4().simple().to_string();
                        deliver_callback(&sim2, &url, &method, &params, &token).await;
                    }
                    _ = sim2.shutdown.cancelled() => {}
                }
            });
        }

        let limit = sim.config.real(req.time_limit_secs);
        match tokio::time::timeout(limit, self.walk()).await {
            Ok(Ok(())) => {}
            Err(_) => cut_off(&sim, &self.entry),
            Ok(Err(WalkEnd::Stop(s))) => return Err(s),
            Ok(Err(WalkEnd::Error(e))) => {
                tracing::debug!(sid = %self.entry.sid, error = %e, "call ended by an application error");
                lock(&self.entry.state).error = Some(e);
            }
        }
        finish(&sim, &self.entry, CallStatus::Completed, 200);
        Ok(())
    }
}

/// The task behind one created call.
pub(crate) async fn run_call(sim: Arc<Sim>, entry: Arc<CallEntry>, slot: Instant, fault_seed: u64) {
    let rng = match sim.config.seed {
        Some(seed) => ChaCha8Rng::seed_from_u64(seed ^ stable_hash(entry.req.to.as_str())),
        None => ChaCha8Rng::from_entropy(),
    };
    let mut cb = CallbackSink::new(&sim, &entry, fault_seed);
    let mut ctx = CallCtx::new(&sim, &entry, rng, None);
    if let Some(script) = entry.req.to.number().and_then(|n| sim.people.callee_script(n.as_str())) {
        ctx.keyed = Some(script.keys);
        ctx.keys_after_hold = script.keys_after_hold;
        if let Some(p) = script.hold_patience_secs {
            ctx.hold_patience_secs = p;
        }
    }
    let mut started = false;
    let result = ctx.lifecycle(&mut cb, slot, &mut started).await;
    if started {
        sim.counters.call_ended();
        sim.metrics.calls_active.dec();
    }
    if result == Err(Stop::Shutdown) {
        return;
    }
    if let Some(leg) = &entry.req.conference_leg {
        // A leg that never joined (no answer, canceled) drops out; one that did has left already.
        leg.conference.leave(&sim, entry.sid.as_str(), LeaveReason::HungUp);
    }
    let s = entry.snapshot();
    if !s.status.is_terminal() {
        // Cannot happen (lifecycle ends every call it does not hand back); be safe anyway.
        finish(&sim, &entry, CallStatus::Completed, 200);
    }
    ctx.send_completed(cb);
}

impl CallCtx {
    /// The `completed` StatusCallback of an ended call (with its duration), then whatever the reorder
    /// fault held back.
    pub(crate) fn send_completed(&self, mut cb: CallbackSink) {
        let entry = &self.entry;
        let s = entry.snapshot();
        let mut params = self.base_params();
        let duration = s.duration_secs.unwrap_or(0);
        params.push(("CallDuration".into(), duration.to_string()));
        params.push(("Duration".into(), duration.div_ceil(60).to_string()));
        params.push(("SipResponseCode".into(), s.sip_response_code.unwrap_or(487).to_string()));
        if entry.req.machine_detection.is_some() {
            if let Some(by) = s.answered_by {
                params.push(("AnsweredBy".into(), by.as_str().into()));
            }
        }
        cb.emit(Event::Completed, s.status, params);
        cb.finish();
    }
}

/// The ISO country of a number (`JP` for `+81…`), as Twilio's geo fields: the region the number belongs to,
/// else the main region of its country code (fictional test numbers such as +1 500 belong to none), else "".
pub(crate) fn country_of(n: &dialer_core::domain::E164) -> String {
    let Ok(p) = phonenumber::parse(None, n.as_str()) else { return String::new() };
    if let Some(id) = p.country().id() {
        return id.as_ref().to_string();
    }
    phonenumber::metadata::DATABASE
        .region(&p.country().code())
        .and_then(|r| r.first().map(|s| s.to_string()))
        .unwrap_or_default()
}
