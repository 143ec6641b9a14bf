//! Conferences, as Twilio runs them: a call joins one with `<Dial><Conference>NAME</Conference></Dial>` (the
//! conference is created on the first join, status `init`), and the Participants API adds legs to one
//! (calling a number or a simulated operator, `client:NAME`). The conference starts (`in-progress`) when a
//! participant with `startConferenceOnEnter` joins, and ends (`completed`) when a participant with
//! `endConferenceOnExit` leaves, when the last one leaves, or by `Status=completed`. Until it starts, the
//! callees in it hear the hold music of their `waitUrl`. Its status callback (the first participant's
//! `statusCallback` / `ConferenceStatusCallback`) gets signed `conference-start`, `conference-end`,
//! `participant-join`, `participant-leave` … events through the callback fault injection.
//!
//! Routes (Basic auth), with `{Conference}` a `CF…` sid or a FriendlyName:
//! - `GET /2010-04-01/Accounts/{AccountSid}/Conferences.json` (`FriendlyName`, `Status`, paging)
//! - `GET|POST /2010-04-01/Accounts/{AccountSid}/Conferences/{Conference}.json` (`Status=completed`,
//!   `AnnounceUrl`, `AnnounceMethod`)
//! - `POST|GET /2010-04-01/Accounts/{AccountSid}/Conferences/{Conference}/Participants.json`
//! - `GET|POST|DELETE /2010-04-01/Accounts/{AccountSid}/Conferences/{Conference}/Participants/{CallSid or
//!   Label}.json` (`Hold`, `HoldUrl`, `HoldMethod`, `Muted`, `AnnounceUrl`, `AnnounceMethod`,
//!   `EndConferenceOnExit`)
//! - `GET /sim/conferences`: every conference with its participants, events and announcements.

use std::fmt;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::calls::{finish_with, FaultySink};
use super::server::{
    admit, bad_request, callback_url, clamped_number, create_call_entry, http_method, is_http_url, non_empty,
    not_found, parse_filter, parse_form, parse_query, refuse_or_seed, respond, serve, ApiError, ApiResult, Paging,
};
use super::state::{lock, rfc2822, rfc3339_ms, CallDirection, CallEntry, CallRequest, HasSid, Party, SidStore, Sim};
use super::twiml_walk::{parse_twiml, Verb};
use super::webhook::{fetch_twiml, Params};
use dialer_core::domain::CallStatus;

/// `conference_enum_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConferenceStatus {
    Init,
    InProgress,
    Completed,
}

impl ConferenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConferenceStatus::Init => "init",
            ConferenceStatus::InProgress => "in-progress",
            ConferenceStatus::Completed => "completed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Init, Self::InProgress, Self::Completed].into_iter().find(|c| c.as_str() == s)
    }
}

/// `participant_enum_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParticipantStatus {
    Queued,
    Connecting,
    Ringing,
    Connected,
    Complete,
    Failed,
}

impl ParticipantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantStatus::Queued => "queued",
            ParticipantStatus::Connecting => "connecting",
            ParticipantStatus::Ringing => "ringing",
            ParticipantStatus::Connected => "connected",
            ParticipantStatus::Complete => "complete",
            ParticipantStatus::Failed => "failed",
        }
    }

    /// A leg that has not joined yet (and may still).
    fn pending(self) -> bool {
        matches!(self, ParticipantStatus::Queued | ParticipantStatus::Connecting | ParticipantStatus::Ringing)
    }

    fn gone(self) -> bool {
        matches!(self, ParticipantStatus::Complete | ParticipantStatus::Failed)
    }
}

/// How a participant got into the conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JoinedBy {
    /// `<Dial><Conference>` in the call's TwiML.
    Twiml,
    /// The Participants API.
    Api,
}

/// Why a participant left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaveReason {
    /// Its call ended (the callee or operator hung up, `Status=completed`, the time limit).
    HungUp,
    /// Its call was redirected out of the conference (`Url`/`Twiml` update).
    Redirected,
    /// Removed with `DELETE …/Participants/{CallSid}.json`.
    Kicked,
    /// The conference ended.
    ConferenceEnded,
}

impl LeaveReason {
    /// `ReasonParticipantLeft`.
    fn as_str(self) -> &'static str {
        match self {
            LeaveReason::HungUp => "participant_hung_up",
            LeaveReason::Redirected => "participant_updated_via_api",
            LeaveReason::Kicked => "participant_kicked",
            LeaveReason::ConferenceEnded => "conference_ended",
        }
    }
}

/// The conference status callback events asked for (`statusCallbackEvent`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ConfEvents {
    pub start: bool,
    pub end: bool,
    pub join: bool,
    pub leave: bool,
    pub mute: bool,
    pub hold: bool,
    pub announcement: bool,
}

impl ConfEvents {
    /// Space- or comma-separated event names; unknown ones are `Err`. None given: `start end`.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut e = ConfEvents::default();
        let mut any = false;
        for v in values {
            for name in v.split([' ', ',']).map(str::trim).filter(|n| !n.is_empty()) {
                any = true;
                match name {
                    "start" => e.start = true,
                    "end" => e.end = true,
                    "join" => e.join = true,
                    "leave" => e.leave = true,
                    "mute" => e.mute = true,
                    "hold" => e.hold = true,
                    "announcement" => e.announcement = true,
                    "modify" | "speaker" => {}
                    other => return Err(format!("Invalid StatusCallbackEvent: {other}")),
                }
            }
        }
        if !any {
            e.start = true;
            e.end = true;
        }
        Ok(e)
    }

    fn wants(&self, event: &str) -> bool {
        match event {
            "conference-start" => self.start,
            "conference-end" => self.end,
            "participant-join" => self.join,
            "participant-leave" => self.leave,
            "participant-mute" | "participant-unmute" => self.mute,
            "participant-hold" | "participant-unhold" => self.hold,
            "announcement-end" | "announcement-failed" => self.announcement,
            _ => false,
        }
    }
}

/// How one participant joins: the attributes of `<Conference>` or the Participants API parameters.
#[derive(Debug, Clone)]
pub(crate) struct JoinSpec {
    pub joined_by: JoinedBy,
    pub label: Option<String>,
    pub start_on_enter: bool,
    pub end_on_exit: bool,
    pub muted: bool,
    /// Hold music until the conference starts (absolute URL), and its method.
    pub wait_url: Option<String>,
    pub wait_method: String,
    pub status_callback: Option<String>,
    pub status_callback_method: String,
    pub events: ConfEvents,
}

/// A Participants API leg: the conference it joins once answered, and how.
#[derive(Clone)]
pub(crate) struct ConfLeg {
    pub conference: Arc<Conference>,
    pub spec: JoinSpec,
}

impl fmt::Debug for ConfLeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfLeg").field("conference", &self.conference.sid).field("spec", &self.spec).finish()
    }
}

#[derive(Debug, Clone)]
struct Participant {
    call_sid: String,
    label: Option<String>,
    to: String,
    from: String,
    joined_by: JoinedBy,
    status: ParticipantStatus,
    start_on_enter: bool,
    end_on_exit: bool,
    muted: bool,
    hold: bool,
    date_created: DateTime<Utc>,
    date_updated: DateTime<Utc>,
    joined_at: Option<DateTime<Utc>>,
    left_at: Option<DateTime<Utc>>,
    left_reason: Option<LeaveReason>,
}

struct ConfMut {
    status: ConferenceStatus,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    reason_ended: Option<&'static str>,
    call_sid_ending: Option<String>,
    participants: Vec<Participant>,
    announcements: Vec<AnnouncementRecord>,
    events: Vec<ConferenceEventRecord>,
    status_callback: Option<String>,
    callback_events: ConfEvents,
    sink: Option<FaultySink>,
    seq: u32,
}

/// One conference.
pub(crate) struct Conference {
    pub sid: String,
    pub friendly_name: String,
    pub created_at: DateTime<Utc>,
    state: Mutex<ConfMut>,
    /// Bumped on every change a participant may wait for (start, end, someone left or was removed).
    changed: watch::Sender<u64>,
}

/// Where a participant stands, as its call task sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// In a conference that has not started: hold music.
    Waiting,
    /// In a conference in progress.
    Live,
    /// Removed from the conference (`DELETE`), or not in it.
    Left,
    /// The conference ended.
    Ended,
}

impl Conference {
    fn new(sim: &Sim, friendly_name: &str) -> Self {
        let now = sim.clock.now();
        Self {
            sid: format!("CF{}", uuid::Uuid::new_v4().simple()),
            friendly_name: friendly_name.to_string(),
            created_at: now,
            state: Mutex::new(ConfMut {
                status: ConferenceStatus::Init,
                updated_at: now,
                started_at: None,
                ended_at: None,
                reason_ended: None,
                call_sid_ending: None,
                participants: Vec::new(),
                announcements: Vec::new(),
                events: Vec::new(),
                status_callback: None,
                callback_events: ConfEvents::default(),
                sink: None,
                seq: 0,
            }),
            changed: watch::channel(0).0,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn status(&self) -> ConferenceStatus {
        lock(&self.state).status
    }

    /// The first participant that asks for status callbacks sets them for the conference.
    fn adopt_callback(&self, st: &mut ConfMut, sim: &Arc<Sim>, spec: &JoinSpec) {
        if st.status_callback.is_some() {
            return;
        }
        if let Some(url) = &spec.status_callback {
            let seed = lock(&sim.rng).gen::<u64>();
            st.status_callback = Some(url.clone());
            st.callback_events = spec.events;
            st.sink = Some(FaultySink::new(sim, url.clone(), spec.status_callback_method.clone(), seed));
        }
    }

    /// What every request about the conference carries: `AccountSid`, `ConferenceSid`, `FriendlyName`.
    fn request_params(&self, sim: &Sim) -> Params {
        vec![
            ("AccountSid".into(), sim.config.account_sid.clone()),
            ("ConferenceSid".into(), self.sid.clone()),
            ("FriendlyName".into(), self.friendly_name.clone()),
        ]
    }

    /// Records an event and sends its callback if the conference asked for it.
    fn emit(&self, st: &mut ConfMut, sim: &Sim, event: &str, who: Option<usize>, extra: Params) {
        let now = sim.clock.now();
        let mut params = self.request_params(sim);
        params.push(("StatusCallbackEvent".into(), event.into()));
        params.push(("Timestamp".into(), rfc2822(now)));
        let call_sid = who.map(|i| st.participants[i].call_sid.clone());
        if let Some(i) = who {
            let p = &st.participants[i];
            params.push(("CallSid".into(), p.call_sid.clone()));
            params.push(("Muted".into(), p.muted.to_string()));
            params.push(("Hold".into(), p.hold.to_string()));
            params.push(("Coaching".into(), "false".into()));
            params.push(("EndConferenceOnExit".into(), p.end_on_exit.to_string()));
            params.push(("StartConferenceOnEnter".into(), p.start_on_enter.to_string()));
            if let Some(l) = &p.label {
                params.push(("ParticipantLabel".into(), l.clone()));
            }
        }
        params.extend(extra);
        let mut record = ConferenceEventRecord {
            event: event.to_string(),
            call_sid,
            at: rfc3339_ms(now),
            sequence_number: None,
            lost: false,
        };
        if st.callback_events.wants(event) {
            if let Some(sink) = &mut st.sink {
                let seq = st.seq;
                st.seq += 1;
                params.push(("SequenceNumber".into(), seq.to_string()));
                record.sequence_number = Some(seq);
                record.lost = !sink.push(params);
            }
        }
        st.events.push(record);
    }

    /// A Participants API leg, before it is answered (status `queued`).
    pub fn add_pending(&self, sim: &Arc<Sim>, entry: &CallEntry, spec: &JoinSpec) {
        let now = sim.clock.now();
        let mut st = lock(&self.state);
        self.adopt_callback(&mut st, sim, spec);
        st.participants.push(Participant::queued(entry, spec, now));
        st.updated_at = now;
    }

    /// A pending leg's progress (`connecting`, `ringing`).
    pub fn leg_progress(&self, sim: &Sim, call_sid: &str, status: ParticipantStatus) {
        let mut st = lock(&self.state);
        if let Some(p) = st.participants.iter_mut().find(|p| p.call_sid == call_sid && p.status.pending()) {
            p.status = status;
            p.date_updated = sim.clock.now();
        }
    }

    /// The call joins (a pending API leg, or a `<Dial><Conference>`). False if the conference has ended
    /// (or the leg was removed meanwhile): the call does not join.
    pub fn join(&self, sim: &Arc<Sim>, entry: &CallEntry, spec: &JoinSpec) -> bool {
        let now = sim.clock.now();
        let sid = entry.sid.to_string();
        let mut st = lock(&self.state);
        if st.status == ConferenceStatus::Completed {
            if let Some(p) = st.participants.iter_mut().find(|p| p.call_sid == sid && p.status.pending()) {
                p.status = ParticipantStatus::Failed;
                p.left_at = Some(now);
                p.date_updated = now;
            }
            return false;
        }
        self.adopt_callback(&mut st, sim, spec);
        let i = match st.participants.iter().position(|p| p.call_sid == sid && !p.status.gone()) {
            Some(i) => i,
            None if spec.joined_by == JoinedBy::Api => return false, // removed while it rang
            None => {
                st.participants.push(Participant::queued(entry, spec, now));
                st.participants.len() - 1
            }
        };
        {
            let p = &mut st.participants[i];
            p.status = ParticipantStatus::Connected;
            p.joined_at = Some(now);
            p.date_updated = now;
        }
        st.updated_at = now;
        self.emit(&mut st, sim, "participant-join", Some(i), Vec::new());
        if st.status == ConferenceStatus::Init && st.participants[i].start_on_enter {
            st.status = ConferenceStatus::InProgress;
            st.started_at = Some(now);
            self.emit(&mut st, sim, "conference-start", None, Vec::new());
        }
        drop(st);
        self.bump();
        true
    }

    /// Where the participant of `call_sid` stands.
    pub fn view(&self, call_sid: &str) -> View {
        let st = lock(&self.state);
        let Some(p) = st.participants.iter().rev().find(|p| p.call_sid == call_sid) else { return View::Left };
        match (p.status, st.status) {
            (ParticipantStatus::Connected, ConferenceStatus::InProgress) => View::Live,
            (ParticipantStatus::Connected, ConferenceStatus::Init) => View::Waiting,
            (_, ConferenceStatus::Completed) if p.left_reason == Some(LeaveReason::ConferenceEnded) => View::Ended,
            (ParticipantStatus::Connected, ConferenceStatus::Completed) => View::Ended,
            _ => View::Left,
        }
    }

    /// The participant of `call_sid` leaves (a pending leg drops out). Ends the conference when that
    /// participant had `endConferenceOnExit`, or when no one is left in it nor on the way. Idempotent.
    pub fn leave(&self, sim: &Arc<Sim>, call_sid: &str, reason: LeaveReason) {
        let now = sim.clock.now();
        let mut st = lock(&self.state);
        let Some(i) = st.participants.iter().position(|p| p.call_sid == call_sid && !p.status.gone()) else {
            return;
        };
        let was = st.participants[i].status;
        {
            let p = &mut st.participants[i];
            p.status = if was == ParticipantStatus::Connected {
                ParticipantStatus::Complete
            } else {
                ParticipantStatus::Failed
            };
            p.left_at = Some(now);
            p.left_reason = Some(reason);
            p.date_updated = now;
        }
        st.updated_at = now;
        if was == ParticipantStatus::Connected {
            let extra = vec![("ReasonParticipantLeft".to_string(), reason.as_str().to_string())];
            self.emit(&mut st, sim, "participant-leave", Some(i), extra);
        }
        if st.status != ConferenceStatus::Completed {
            let kicked = reason == LeaveReason::Kicked;
            let ending = if was == ParticipantStatus::Connected && st.participants[i].end_on_exit {
                Some(if kicked {
                    "participant-with-end-conference-on-exit-kicked"
                } else {
                    "participant-with-end-conference-on-exit-left"
                })
            } else if !st.participants.iter().any(|p| p.status == ParticipantStatus::Connected || p.status.pending()) {
                Some(if kicked { "last-participant-kicked" } else { "last-participant-left" })
            } else {
                None
            };
            if let Some(r) = ending {
                self.end_locked(&mut st, sim, r, Some(call_sid.to_string()));
            }
        }
        drop(st);
        self.bump();
    }

    /// Ends the conference: everyone in it leaves, then `conference-end`. Pending legs ring on (and hang up
    /// at once if they answer).
    pub fn end(&self, sim: &Sim, reason: &'static str, ending_call: Option<String>) {
        let mut st = lock(&self.state);
        self.end_locked(&mut st, sim, reason, ending_call);
        drop(st);
        self.bump();
    }

    fn end_locked(&self, st: &mut ConfMut, sim: &Sim, reason: &'static str, ending_call: Option<String>) {
        if st.status == ConferenceStatus::Completed {
            return;
        }
        let now = sim.clock.now();
        for i in 0..st.participants.len() {
            if st.participants[i].status != ParticipantStatus::Connected {
                continue;
            }
            {
                let p = &mut st.participants[i];
                p.status = ParticipantStatus::Complete;
                p.left_at = Some(now);
                p.left_reason = Some(LeaveReason::ConferenceEnded);
                p.date_updated = now;
            }
            let extra = vec![("ReasonParticipantLeft".to_string(), LeaveReason::ConferenceEnded.as_str().to_string())];
            self.emit(st, sim, "participant-leave", Some(i), extra);
        }
        st.status = ConferenceStatus::Completed;
        st.ended_at = Some(now);
        st.updated_at = now;
        st.reason_ended = Some(reason);
        st.call_sid_ending = ending_call.clone();
        let mut extra = vec![("ReasonConferenceEnded".to_string(), reason.to_string())];
        if let Some(c) = ending_call {
            extra.push(("CallSidEndingConference".to_string(), c));
        }
        self.emit(st, sim, "conference-end", None, extra);
        // Whatever the reorder fault held back goes now (and the sink's hold on the simulator ends).
        if let Some(sink) = st.sink.take() {
            sink.finish();
        }
    }

    /// The calls in the conference now.
    fn connected(&self) -> Vec<String> {
        lock(&self.state)
            .participants
            .iter()
            .filter(|p| p.status == ParticipantStatus::Connected)
            .map(|p| p.call_sid.clone())
            .collect()
    }

    /// A participant that has not left, by call sid or label.
    fn find_participant(&self, key: &str) -> Option<Participant> {
        lock(&self.state).participants.iter().find(|p| !p.status.gone() && p.is(key)).cloned()
    }

    pub fn record(&self) -> ConferenceRecord {
        let st = lock(&self.state);
        ConferenceRecord {
            sid: self.sid.clone(),
            friendly_name: self.friendly_name.clone(),
            status: st.status,
            created_at: rfc3339_ms(self.created_at),
            started_at: st.started_at.map(rfc3339_ms),
            ended_at: st.ended_at.map(rfc3339_ms),
            reason_conference_ended: st.reason_ended.map(str::to_string),
            call_sid_ending_conference: st.call_sid_ending.clone(),
            status_callback: st.status_callback.clone(),
            participants: st.participants.iter().map(Participant::record).collect(),
            announcements: st.announcements.clone(),
            events: st.events.clone(),
        }
    }
}

impl Participant {
    /// The call of `entry`, joining as `spec` says, before it is in the conference.
    fn queued(entry: &CallEntry, spec: &JoinSpec, now: DateTime<Utc>) -> Self {
        Participant {
            call_sid: entry.sid.to_string(),
            label: spec.label.clone(),
            to: entry.req.to.to_string(),
            from: entry.req.from.to_string(),
            joined_by: spec.joined_by,
            status: ParticipantStatus::Queued,
            start_on_enter: spec.start_on_enter,
            end_on_exit: spec.end_on_exit,
            muted: spec.muted,
            hold: false,
            date_created: now,
            date_updated: now,
            joined_at: None,
            left_at: None,
            left_reason: None,
        }
    }

    fn is(&self, key: &str) -> bool {
        self.call_sid == key || self.label.as_deref() == Some(key)
    }

    fn record(&self) -> ParticipantRecord {
        ParticipantRecord {
            call_sid: self.call_sid.clone(),
            label: self.label.clone(),
            to: self.to.clone(),
            from: self.from.clone(),
            joined_by: self.joined_by,
            status: self.status,
            start_conference_on_enter: self.start_on_enter,
            end_conference_on_exit: self.end_on_exit,
            muted: self.muted,
            hold: self.hold,
            joined_at: self.joined_at.map(rfc3339_ms),
            left_at: self.left_at.map(rfc3339_ms),
            left_reason: self.left_reason.map(|r| r.as_str().to_string()),
        }
    }
}

/// The simulator's record of one conference (`GET /sim/conferences`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConferenceRecord {
    pub sid: String,
    pub friendly_name: String,
    pub status: ConferenceStatus,
    /// RFC 3339, ms.
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Twilio's `reason_conference_ended`: `conference-ended-via-api`,
    /// `participant-with-end-conference-on-exit-left`, `…-kicked`, `last-participant-left`, `…-kicked`.
    pub reason_conference_ended: Option<String>,
    pub call_sid_ending_conference: Option<String>,
    /// Where the conference's status callbacks go (the first participant's that asked for them).
    pub status_callback: Option<String>,
    /// Everyone who joined or was added, in order, including those who left or never answered.
    pub participants: Vec<ParticipantRecord>,
    /// Every announcement (`AnnounceUrl` of the conference or of one participant).
    pub announcements: Vec<AnnouncementRecord>,
    /// Every conference event, in order, whether or not a status callback asked for it.
    pub events: Vec<ConferenceEventRecord>,
}

/// One participant of a [`ConferenceRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantRecord {
    pub call_sid: String,
    pub label: Option<String>,
    /// The participant's call: `to` (`client:alice` for an operator) and `from`.
    pub to: String,
    pub from: String,
    /// `twiml` (`<Dial><Conference>`) or `api` (Participants API).
    pub joined_by: JoinedBy,
    /// `queued`, `connecting`, `ringing`, `connected`, `complete` (left) or `failed` (never joined).
    pub status: ParticipantStatus,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    pub muted: bool,
    pub hold: bool,
    pub joined_at: Option<String>,
    pub left_at: Option<String>,
    /// `participant_hung_up`, `participant_updated_via_api` (redirected out), `participant_kicked`,
    /// `conference_ended`.
    pub left_reason: Option<String>,
}

/// One announcement: the TwiML fetched from its `AnnounceUrl` and what it said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncementRecord {
    /// `None`: to the whole conference; else to this participant's call.
    pub call_sid: Option<String>,
    pub url: String,
    pub method: String,
    /// The HTTP status of the answer (`None`: no answer).
    pub status: Option<u16>,
    /// The text of its `<Say>`s.
    pub says: Vec<String>,
    /// The calls that heard it (recorded in their `says` too).
    pub heard_by: Vec<String>,
    pub error: Option<String>,
    pub at: String,
}

/// One conference event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConferenceEventRecord {
    /// `conference-start`, `conference-end`, `participant-join`, `participant-leave`,
    /// `participant-(un)mute`, `participant-(un)hold`, `announcement-end`, `announcement-failed`.
    pub event: String,
    pub call_sid: Option<String>,
    pub at: String,
    /// The `SequenceNumber` of its status callback; `None` when no callback asked for it.
    pub sequence_number: Option<u32>,
    /// The lost-callback fault dropped its callback.
    pub lost: bool,
}

impl HasSid for Conference {
    fn sid(&self) -> &str {
        &self.sid
    }
}

/// Every conference since start (or the last reset), in creation order. Clearing forgets the records;
/// conferences in progress carry on (their sinks are released when they end).
pub(crate) type ConferenceStore = SidStore<Conference>;

impl ConferenceStore {
    /// By sid, else the newest conference with that FriendlyName (one not completed first).
    pub fn find(&self, key: &str) -> Option<Arc<Conference>> {
        let g = self.index();
        if let Some(c) = g.by_sid.get(key) {
            return Some(c.clone());
        }
        let named = || g.order.iter().rev().filter(|c| c.friendly_name == key);
        named().find(|c| c.status() != ConferenceStatus::Completed).or_else(|| named().next()).cloned()
    }

    /// The conference named `name` that has not ended, created (`init`) if there is none.
    pub fn get_or_create(&self, sim: &Sim, name: &str) -> Arc<Conference> {
        let mut g = self.index();
        if let Some(c) =
            g.order.iter().rev().find(|c| c.friendly_name == name && c.status() != ConferenceStatus::Completed)
        {
            return c.clone();
        }
        let c = Arc::new(Conference::new(sim, name));
        g.insert(c.clone());
        c
    }
}

// ---- announcements and hold music from the REST API -----------------------------------------------

/// The texts of the `<Say>`s of a document (inside `<Gather>` too).
pub(crate) fn says_of(verbs: &[Verb]) -> Vec<String> {
    let mut out = Vec::new();
    for v in verbs {
        match v {
            Verb::Say { text, .. } => out.push(text.clone()),
            Verb::Gather { prompts, .. } => out.extend(says_of(prompts)),
            _ => {}
        }
    }
    out
}

/// Fetches `url` (signed) and parses it: (HTTP status, verbs or why not).
async fn fetch_verbs(sim: &Sim, url: &str, method: &str, params: &Params) -> (Option<u16>, Result<Vec<Verb>, String>) {
    let answer = tokio::select! {
        a = fetch_twiml(sim, url, method, params) => a,
        _ = sim.shutdown.cancelled() => return (None, Err("the simulator is shutting down".into())),
    };
    (answer.status, answer.body.and_then(|b| parse_twiml(&b)))
}

/// An announcement to the conference (`call_sid: None`: everyone in it now) or to one participant:
/// fetched once, its Says recorded in the calls of those who hear it and in the conference's record.
fn spawn_announcement(sim: &Arc<Sim>, conf: &Arc<Conference>, call_sid: Option<String>, url: String, method: String) {
    let heard_by = match &call_sid {
        Some(c) => vec![c.clone()],
        None => conf.connected(),
    };
    let (sim, conf) = (sim.clone(), conf.clone());
    tokio::spawn(async move {
        let mut params = conf.request_params(&sim);
        params.push(("ApiVersion".into(), "2010-04-01".into()));
        if let Some(c) = &call_sid {
            params.push(("CallSid".into(), c.clone()));
        }
        let (status, verbs) = fetch_verbs(&sim, &url, &method, &params).await;
        let (says, error) = match verbs {
            Ok(v) => (says_of(&v), None),
            Err(e) => (Vec::new(), Some(e)),
        };
        for sid in &heard_by {
            if let Some(e) = sim.store.get(sid) {
                lock(&e.state).says.extend(says.iter().cloned());
            }
        }
        let failed = error.is_some();
        let mut st = lock(&conf.state);
        st.announcements.push(AnnouncementRecord {
            call_sid: call_sid.clone(),
            url,
            method,
            status,
            says,
            heard_by,
            error,
            at: rfc3339_ms(sim.clock.now()),
        });
        let who = call_sid.and_then(|c| st.participants.iter().rposition(|p| p.call_sid == c));
        let event = if failed { "announcement-failed" } else { "announcement-end" };
        conf.emit(&mut st, &sim, event, who, Vec::new());
    });
}

/// Hold music for a held participant (`Hold=true` with a `HoldUrl`): fetched and "played" (its Says
/// recorded in the participant's call) over and over while it stays on hold.
fn spawn_hold_music(sim: &Arc<Sim>, conf: &Arc<Conference>, call_sid: String, url: String, method: String) {
    let (sim, conf) = (sim.clone(), conf.clone());
    tokio::spawn(async move {
        let mut params = conf.request_params(&sim);
        params.push(("CallSid".into(), call_sid.clone()));
        params.push(("ApiVersion".into(), "2010-04-01".into()));
        let held = || {
            lock(&conf.state)
                .participants
                .iter()
                .any(|p| p.call_sid == call_sid && p.status == ParticipantStatus::Connected && p.hold)
        };
        for _ in 0..super::twiml_walk::MAX_STEPS {
            if !held() {
                return;
            }
            let (_, verbs) = fetch_verbs(&sim, &url, &method, &params).await;
            let verbs = verbs.unwrap_or_default();
            let says = says_of(&verbs);
            let mut secs: f64 = 0.0;
            for v in &verbs {
                secs += match v {
                    Verb::Say { text, loops } => {
                        text.chars().count() as f64 / sim.config.say_chars_per_second * f64::from(*loops)
                    }
                    Verb::Play { loops } => sim.config.play_secs * f64::from(*loops),
                    Verb::Pause { secs } => *secs,
                    _ => 0.0,
                };
            }
            if !held() {
                return;
            }
            if let Some(e) = sim.store.get(&call_sid) {
                lock(&e.state).says.extend(says);
            }
            tokio::select! {
                _ = tokio::time::sleep(sim.config.real(secs.max(1.0))) => {}
                _ = sim.shutdown.cancelled() => return,
            }
        }
    });
}

// ---- JSON ------------------------------------------------------------------------------------------

fn conference_base(account: &str, sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account}/Conferences/{sid}")
}

/// The conference resource (`api.v2010.account.conference`).
fn conference_json(sim: &Sim, c: &Conference) -> Value {
    let st = lock(&c.state);
    let account = &sim.config.account_sid;
    let base = conference_base(account, &c.sid);
    json!({
        "account_sid": account,
        "date_created": rfc2822(c.created_at),
        "date_updated": rfc2822(st.updated_at),
        "api_version": "2010-04-01",
        "friendly_name": c.friendly_name,
        "region": "us1",
        "sid": c.sid,
        "status": st.status.as_str(),
        "uri": format!("{base}.json"),
        "subresource_uris": {
            "participants": format!("{base}/Participants.json"),
            "recordings": format!("{base}/Recordings.json"),
        },
        "reason_conference_ended": st.reason_ended,
        "call_sid_ending_conference": st.call_sid_ending,
    })
}

/// The participant resource (`api.v2010.account.conference.participant`).
fn participant_json(sim: &Sim, c: &Conference, p: &Participant, queue_time: Option<&str>) -> Value {
    let account = &sim.config.account_sid;
    json!({
        "account_sid": account,
        "call_sid": p.call_sid,
        "label": p.label,
        "call_sid_to_coach": null,
        "coaching": false,
        "conference_sid": c.sid,
        "date_created": rfc2822(p.date_created),
        "date_updated": rfc2822(p.date_updated),
        "end_conference_on_exit": p.end_on_exit,
        "muted": p.muted,
        "hold": p.hold,
        "start_conference_on_enter": p.start_on_enter,
        "status": p.status.as_str(),
        "queue_time": queue_time,
        "uri": format!("{}/Participants/{}.json", conference_base(account, &c.sid), p.call_sid),
    })
}

// ---- routes ----------------------------------------------------------------------------------------

fn conference_not_found(account: &str, key: &str) -> ApiError {
    not_found(&format!("/2010-04-01/Accounts/{account}/Conferences/{key}.json"))
}

fn lookup(sim: &Sim, account: &str, key: &str) -> Result<Arc<Conference>, ApiError> {
    sim.conferences.find(key).ok_or_else(|| conference_not_found(account, key))
}

fn participant_not_found(account: &str, conf: &Conference, key: &str) -> ApiError {
    not_found(&format!("{}/Participants/{key}.json", conference_base(account, &conf.sid)))
}

fn parse_bool(form: &[(String, String)], key: &str) -> Result<Option<bool>, ApiError> {
    match non_empty(form, key) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(bad_request(20001, format!("{key} must be true or false, not {v:?}"))),
    }
}

fn parse_url(form: &[(String, String)], key: &str) -> Result<Option<String>, ApiError> {
    match non_empty(form, key) {
        None => Ok(None),
        Some(u) if is_http_url(u) => Ok(Some(u.to_string())),
        Some(u) => Err(bad_request(21205, format!("{key} is not a valid URL: {u}"))),
    }
}

fn strip_json(s: &str) -> &str {
    s.strip_suffix(".json").unwrap_or(s)
}

/// The participant of a `…/Participants/{CallSid or Label}.json` path that has not left, or 404.
fn participant_at(account: &str, c: &Conference, call: &str) -> Result<Participant, ApiError> {
    let key = strip_json(call);
    c.find_participant(key).ok_or_else(|| participant_not_found(account, c, key))
}

/// The conference of a `…/Conferences/{Conference}.json` path, or 404.
fn conference_at(sim: &Sim, account: &str, conf: &str) -> Result<Arc<Conference>, ApiError> {
    let key = conf.strip_suffix(".json").ok_or_else(|| conference_not_found(account, conf))?;
    lookup(sim, account, key)
}

pub(crate) async fn list_conferences(
    State(sim): State<Arc<Sim>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    serve(&sim, &headers, &account_sid, "conference_list", || {
        let q = parse_query(query);
        let paging = Paging::parse(&q)?;
        let name = non_empty(&q, "FriendlyName");
        let status = parse_filter(&q, "Status", ConferenceStatus::parse)?;
        let matching: Vec<Arc<Conference>> = sim
            .conferences
            .all()
            .into_iter()
            .rev()
            .filter(|c| name.is_none_or(|n| n == c.friendly_name) && status.is_none_or(|s| s == c.status()))
            .collect();
        let path = format!("/2010-04-01/Accounts/{account_sid}/Conferences.json");
        Ok(Json(paging.page(&path, &q, "conferences", matching, |c| conference_json(&sim, c))).into_response())
    })
}

pub(crate) async fn fetch_conference(
    State(sim): State<Arc<Sim>>,
    Path((account_sid, conf)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    serve(&sim, &headers, &account_sid, "conference_fetch", || {
        let c = conference_at(&sim, &account_sid, &conf)?;
        Ok(Json(conference_json(&sim, &c)).into_response())
    })
}

/// `Status=completed` ends the conference; `AnnounceUrl` announces into it.
pub(crate) async fn update_conference(
    State(sim): State<Arc<Sim>>,
    Path((account_sid, conf)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&sim, &headers, &account_sid, "conference_update", || {
        let c = conference_at(&sim, &account_sid, &conf)?;
        let form = parse_form(&body);
        let end = match non_empty(&form, "Status") {
            None => false,
            Some("completed") => true,
            Some(other) => return Err(bad_request(20001, format!("Invalid Status: {other}"))),
        };
        let announce = parse_url(&form, "AnnounceUrl")?;
        let method = http_method(&form, "AnnounceMethod")?;
        if let Some(url) = announce {
            if c.status() == ConferenceStatus::Completed {
                return Err(bad_request(20001, format!("Conference {} is completed", c.sid)));
            }
            spawn_announcement(&sim, &c, None, url, method);
        }
        if end {
            c.end(&sim, "conference-ended-via-api", None);
        }
        Ok(Json(conference_json(&sim, &c)).into_response())
    })
}

fn parse_participant(sim: &Sim, form: &[(String, String)]) -> Result<(CallRequest, JoinSpec), ApiError> {
    let to = non_empty(form, "To").ok_or_else(|| bad_request(21201, "No 'To' number is specified"))?;
    let to = Party::parse(to).ok_or_else(|| bad_request(21211, format!("Invalid 'To' Phone Number: {to}")))?;
    let from = non_empty(form, "From").ok_or_else(|| bad_request(21213, "No 'From' number is specified"))?;
    let from = Party::parse(from).ok_or_else(|| bad_request(21212, format!("Invalid 'From' Phone Number: {from}")))?;
    if let Some(n) = to.number() {
        if sim.config.faults.geo_blocked_prefix(n.as_str()).is_some() {
            return Err(super::server::geo_refused(n.as_str()));
        }
    }
    let status_callback = callback_url(form, "StatusCallback")?;
    let events = super::server::parse_call_events(form)?;
    let conf_callback = callback_url(form, "ConferenceStatusCallback")?;
    let conf_events =
        ConfEvents::parse(form.iter().filter(|(k, _)| k == "ConferenceStatusCallbackEvent").map(|(_, v)| v.as_str()))
            .map_err(|e| bad_request(21626, e))?;
    let label = non_empty(form, "Label").map(str::to_string);
    let spec = JoinSpec {
        joined_by: JoinedBy::Api,
        label,
        start_on_enter: parse_bool(form, "StartConferenceOnEnter")?.unwrap_or(true),
        end_on_exit: parse_bool(form, "EndConferenceOnExit")?.unwrap_or(false),
        muted: parse_bool(form, "Muted")?.unwrap_or(false),
        wait_url: parse_url(form, "WaitUrl")?,
        wait_method: http_method(form, "WaitMethod")?,
        status_callback: conf_callback,
        status_callback_method: http_method(form, "ConferenceStatusCallbackMethod")?,
        events: conf_events,
    };
    let req = CallRequest {
        status_callback,
        status_callback_method: http_method(form, "StatusCallbackMethod")?,
        events,
        timeout_secs: clamped_number(form, "Timeout", 60.0, 5.0, 600.0)?,
        time_limit_secs: clamped_number(form, "TimeLimit", 14_400.0, 1.0, 86_400.0)?,
        ..CallRequest::new(CallDirection::OutboundApi, to, from)
    };
    Ok((req, spec))
}

/// `POST …/Conferences/{Conference}/Participants.json`: places a leg that joins the conference once
/// answered. The conference is created if no conference of that name is running.
pub(crate) async fn create_participant(
    State(sim): State<Arc<Sim>>,
    Path((account_sid, conf)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = create_participant_inner(&sim, &account_sid, &conf, &headers, &body);
    if let Err(e) = &r {
        sim.counters.create_error(e.code);
    }
    respond(&sim, "participant_create", r)
}

fn create_participant_inner(
    sim: &Arc<Sim>,
    account_sid: &str,
    key: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult {
    let _slot = admit(sim, headers, account_sid)?;
    let form = parse_form(body);
    let (mut req, spec) = parse_participant(sim, &form)?;
    let is_sid = key.len() == 34 && key.starts_with("CF");
    if is_sid && sim.conferences.find(key).is_none() {
        return Err(conference_not_found(account_sid, key));
    }
    // Refused like a call create (nothing is created, not even the conference).
    let fault_seed = refuse_or_seed(sim)?;
    let conf = match sim.conferences.find(key) {
        Some(c) if c.sid == key || c.status() != ConferenceStatus::Completed => c,
        _ => sim.conferences.get_or_create(sim, key),
    };
    if conf.status() == ConferenceStatus::Completed {
        return Err(bad_request(20001, format!("Conference {} is completed", conf.sid)));
    }
    req.conference_leg = Some(ConfLeg { conference: conf.clone(), spec });
    let entry = create_call_entry(sim, req, fault_seed);
    let p = conf.find_participant(entry.sid.as_str()).ok_or_else(|| bad_request(20001, "participant vanished"))?;
    Ok((StatusCode::CREATED, Json(participant_json(sim, &conf, &p, Some("0")))).into_response())
}

pub(crate) async fn list_participants(
    State(sim): State<Arc<Sim>>,
    Path((account_sid, conf)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    serve(&sim, &headers, &account_sid, "participant_list", || {
        let c = lookup(&sim, &account_sid, &conf)?;
        let q = parse_query(query);
        let paging = Paging::parse(&q)?;
        let muted = parse_bool(&q, "Muted")?;
        let hold = parse_bool(&q, "Hold")?;
        let listed: Vec<Participant> = lock(&c.state)
            .participants
            .iter()
            .filter(|p| !p.status.gone())
            .filter(|p| muted.is_none_or(|m| m == p.muted) && hold.is_none_or(|h| h == p.hold))
            .cloned()
            .collect();
        let path = format!("{}/Participants.json", conference_base(&account_sid, &c.sid));
        Ok(Json(paging.page(&path, &q, "participants", listed, |p| participant_json(&sim, &c, p, None)))
            .into_response())
    })
}

pub(crate) async fn fetch_participant(
    State(sim): State<Arc<Sim>>,
    Path((account_sid, conf, call)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    serve(&sim, &headers, &account_sid, "participant_fetch", || {
        let c = lookup(&sim, &account_sid, &conf)?;
        let p = participant_at(&account_sid, &c, &call)?;
        Ok(Json(participant_json(&sim, &c, &p, None)).into_response())
    })
}

/// `Hold` (+ `HoldUrl`, `HoldMethod`), `Muted`, `EndConferenceOnExit`, `AnnounceUrl` (+ `AnnounceMethod`).
pub(crate) async fn update_participant(
    State(sim): State<Arc<Sim>>,
    Path((account_sid, conf, call)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&sim, &headers, &account_sid, "participant_update", || {
        let c = lookup(&sim, &account_sid, &conf)?;
        let key = strip_json(&call);
        let form = parse_form(&body);
        let hold = parse_bool(&form, "Hold")?;
        let muted = parse_bool(&form, "Muted")?;
        let end_on_exit = parse_bool(&form, "EndConferenceOnExit")?;
        let hold_url = parse_url(&form, "HoldUrl")?;
        let hold_method = match non_empty(&form, "HoldMethod") {
            None => "GET".to_string(),
            Some(_) => http_method(&form, "HoldMethod")?,
        };
        let announce = parse_url(&form, "AnnounceUrl")?;
        let announce_method = http_method(&form, "AnnounceMethod")?;
        let p = {
            let mut st = lock(&c.state);
            let i = st
                .participants
                .iter()
                .position(|p| !p.status.gone() && p.is(key))
                .ok_or_else(|| participant_not_found(&account_sid, &c, key))?;
            let now = sim.clock.now();
            let connected = st.participants[i].status == ParticipantStatus::Connected;
            let mut set = |flag: fn(&mut Participant) -> &mut bool, want: Option<bool>, [on, off]: [&str; 2]| {
                // A change is an event only for a participant in the conference.
                if let Some(w) = want.filter(|&w| *flag(&mut st.participants[i]) != w) {
                    *flag(&mut st.participants[i]) = w;
                    if connected {
                        c.emit(&mut st, &sim, if w { on } else { off }, Some(i), vec![]);
                    }
                }
            };
            set(|p| &mut p.muted, muted, ["participant-mute", "participant-unmute"]);
            set(|p| &mut p.hold, hold, ["participant-hold", "participant-unhold"]);
            if let Some(e) = end_on_exit {
                st.participants[i].end_on_exit = e;
            }
            st.participants[i].date_updated = now;
            st.participants[i].clone()
        };
        if let (Some(true), Some(url)) = (hold, hold_url) {
            if p.status == ParticipantStatus::Connected {
                spawn_hold_music(&sim, &c, p.call_sid.clone(), url, hold_method);
            }
        }
        if let Some(url) = announce {
            spawn_announcement(&sim, &c, Some(p.call_sid.clone()), url, announce_method);
        }
        Ok(Json(participant_json(&sim, &c, &p, None)).into_response())
    })
}

/// Removes a participant: one in the conference leaves it (an API leg then hangs up, completed; a
/// `<Dial><Conference>` call goes on to its Dial `action`); a leg still ringing is canceled.
pub(crate) async fn delete_participant(
    State(sim): State<Arc<Sim>>,
    Path((account_sid, conf, call)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    serve(&sim, &headers, &account_sid, "participant_delete", || {
        let c = lookup(&sim, &account_sid, &conf)?;
        let p = participant_at(&account_sid, &c, &call)?;
        c.leave(&sim, &p.call_sid, LeaveReason::Kicked);
        if p.status.pending() {
            if let Some(e) = sim.store.get(&p.call_sid) {
                if finish_with(&sim, &e, CallStatus::Canceled, 487, true) {
                    e.cancel.cancel();
                }
            }
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

pub(crate) async fn sim_conferences(State(sim): State<Arc<Sim>>) -> Response {
    let records: Vec<ConferenceRecord> = sim.conferences.all().iter().map(|c| c.record()).collect();
    Json(records).into_response()
}
