//! Inbound calls: a caller dials one of our numbers (`POST /sim/calls/inbound`). The simulator requests
//! the number's `VoiceUrl` (signed, `CallStatus=ringing`, `Direction=inbound`), walks the TwiML with the
//! caller's scripted keys, and sends the number's `completed` StatusCallback when the call ends.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::calls::{finish, CallCtx, CallbackSink, Stop};
use super::numbers::PhoneNumber;
use super::server::twilio_error;
use super::state::{lock, stable_hash, CallDirection, CallEntry, CallMut, CallRecord, CallRequest, Sim};
use super::twiml_walk::WalkEnd;
use dialer_core::domain::{CallSid, CallStatus, E164};

/// Why inbound traffic (or [`crate::SimHandle::set_number`]) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("{field} is not a phone number: {value:?}")]
    InvalidNumber { field: &'static str, value: String },
    #[error("{0} is not one of our numbers (create it with IncomingPhoneNumbers or SimHandle::set_number)")]
    UnknownNumber(String),
    #[error("our number {number} has no {field}")]
    NoUrl { number: String, field: &'static str },
    #[error("{0}")]
    BadRequest(String),
    #[error("the simulator is shutting down")]
    ShuttingDown,
}

impl IntoResponse for InboundError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            InboundError::UnknownNumber(_) => (StatusCode::NOT_FOUND, 20404),
            InboundError::InvalidNumber { .. } => (StatusCode::BAD_REQUEST, 21211),
            InboundError::NoUrl { .. } | InboundError::BadRequest(_) => (StatusCode::BAD_REQUEST, 20001),
            InboundError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, 20503),
        };
        twilio_error(status, code, self.to_string()).into_response()
    }
}

pub(crate) fn parse_number(field: &'static str, value: &str) -> Result<E164, InboundError> {
    E164::parse(value, None).map_err(|_| InboundError::InvalidNumber { field, value: value.to_string() })
}

/// Our number `to`, or 404.
pub(crate) fn our_number(sim: &Sim, to: &E164) -> Result<PhoneNumber, InboundError> {
    sim.numbers.by_number(to.as_str()).ok_or_else(|| InboundError::UnknownNumber(to.to_string()))
}

/// Parses a `/sim/*` JSON body into `T`, or a 400 that says what is wrong.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, InboundError> {
    serde_json::from_slice(body).map_err(|e| InboundError::BadRequest(format!("bad JSON body: {e}")))
}

/// The caller's keys: `0-9`, `*`, `#`.
pub(crate) fn parse_keys(digits: &str) -> Result<VecDeque<char>, InboundError> {
    match digits.chars().find(|c| !matches!(c, '0'..='9' | '*' | '#')) {
        Some(c) => Err(InboundError::BadRequest(format!("digits may hold 0-9, * and #, not {c:?}"))),
        None => Ok(digits.chars().collect()),
    }
}

/// `POST /sim/calls/inbound`.
#[derive(Debug, Deserialize)]
struct InboundCallBody {
    from: String,
    to: String,
    #[serde(default)]
    digits: Option<String>,
    #[serde(default)]
    hangup_after_s: Option<f64>,
}

/// Runs one inbound call to its end and returns its record.
pub(crate) async fn run_inbound_call(
    sim: &Arc<Sim>,
    from: E164,
    to: E164,
    keys: VecDeque<char>,
    hangup_after_s: Option<f64>,
) -> Result<CallRecord, InboundError> {
    if let Some(s) = hangup_after_s {
        if !(s.is_finite() && s >= 0.0) {
            return Err(InboundError::BadRequest(format!("hangup_after_s must be >= 0, got {s}")));
        }
    }
    let number = our_number(sim, &to)?;
    let url =
        number.voice_url.clone().ok_or_else(|| InboundError::NoUrl { number: to.to_string(), field: "VoiceUrl" })?;
    if sim.shutdown.is_cancelled() {
        return Err(InboundError::ShuttingDown);
    }
    let now = sim.clock.now();
    let mut state = CallMut::new(CallStatus::Ringing, now);
    // An inbound call never waits in the (outbound) CPS queue.
    state.started_at = Some(now);
    let req = CallRequest {
        url: Some(url),
        method: number.voice_method.clone(),
        status_callback: number.status_callback.clone(),
        status_callback_method: number.status_callback_method.clone(),
        ..CallRequest::new(CallDirection::Inbound, to.into(), from.into())
    };
    let entry = Arc::new(CallEntry::new(CallSid::random(), now, req, sim.shutdown.child_token(), state));
    sim.store.insert(entry.clone());
    sim.metrics.inbound_calls.inc();
    let (rng, fault_seed) = {
        let mut g = lock(&sim.rng);
        let seed = match sim.config.seed {
            // Seeded per caller, like outbound calls per callee: talk and record times repeat.
            Some(s) => s ^ stable_hash(entry.req.from.as_str()),
            None => g.gen(),
        };
        (ChaCha8Rng::seed_from_u64(seed), g.gen::<u64>())
    };
    let cb = CallbackSink::new(sim, &entry, fault_seed);
    let mut ctx = CallCtx::new(sim, &entry, rng, Some(keys));
    let limit = sim.config.real(hangup_after_s.unwrap_or(entry.req.time_limit_secs));
    match tokio::time::timeout(limit, ctx.walk()).await {
        Ok(Ok(())) => {}
        Err(_) => {
            crate::calls::cut_off(sim, &entry);
            if hangup_after_s.is_some() {
                lock(&entry.state).outcome = Some("caller-hangup");
            }
        }
        Ok(Err(WalkEnd::Stop(Stop::Shutdown))) => return Err(InboundError::ShuttingDown),
        Ok(Err(WalkEnd::Stop(Stop::Hangup | Stop::Redirect))) => {}
        Ok(Err(WalkEnd::Error(e))) => {
            tracing::debug!(sid = %entry.sid, error = %e, "inbound call ended by an application error");
            lock(&entry.state).error = Some(e);
        }
    }
    finish(sim, &entry, CallStatus::Completed, 200);
    ctx.send_completed(cb);
    Ok(entry.record())
}

pub(crate) async fn sim_inbound_call(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let r = async {
        let b: InboundCallBody = parse_json(&body)?;
        let from = parse_number("from", &b.from)?;
        let to = parse_number("to", &b.to)?;
        let keys = parse_keys(b.digits.as_deref().unwrap_or(""))?;
        run_inbound_call(&sim, from, to, keys, b.hangup_after_s).await
    }
    .await;
    match r {
        Ok(record) => Json(record).into_response(),
        Err(e) => e.into_response(),
    }
}
