//! `/status/{token}`: a StatusCallback, parsed into a typed event and handed to the batched writer; 200 only
//! once it is durable.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use dialer_core::domain::{AnsweredBy, CallSid, CallStatus};
use dialer_core::store::{EventApplied, EventParams, StatusEvent};

use crate::signature::TwilioRequest;
use crate::{ApiError, App};

/// Maps a StatusCallback's form to a [`StatusEvent`]. `CallSid` and `CallStatus` are required; a missing
/// `SequenceNumber` (not requested) falls back to one per status, so a duplicate is still stored once.
pub fn parse_status_event(attempt_id: i64, req: &TwilioRequest) -> Result<StatusEvent, String> {
    let required = |k: &str| req.param(k).ok_or_else(|| format!("{k} is missing"));
    let int = |k: &str| -> Result<Option<i32>, String> {
        match req.param(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| format!("{k}: {v:?} is not an integer")),
        }
    };
    let call_sid = CallSid::parse(required("CallSid")?).map_err(|e| e.to_string())?;
    let status = CallStatus::parse(required("CallStatus")?).map_err(|e| e.to_string())?;
    let sequence_number = int("SequenceNumber")?.unwrap_or(-1 - i32::from(status.rank()));
    let answered_by = match req.param("AnsweredBy").filter(|v| !v.is_empty()) {
        None => None,
        Some(a) => Some(AnsweredBy::parse(a).map_err(|e| e.to_string())?),
    };
    // An unreadable Timestamp is not worth refusing the event for; the write time stands in.
    let timestamp =
        req.param("Timestamp").and_then(|t| DateTime::parse_from_rfc2822(t).ok()).map(|t| t.with_timezone(&Utc));
    let params = EventParams::from_form(&req.params);
    Ok(StatusEvent {
        attempt_id,
        call_sid,
        status,
        sequence_number,
        call_duration_s: int("CallDuration")?,
        sip_response_code: int("SipResponseCode")?,
        answered_by,
        timestamp,
        queue_time_ms: int("QueueTime")?,
        idempotency_token: req.idempotency_token.clone(),
        params,
    })
}

pub(crate) async fn status(State(app): State<App>, req: TwilioRequest) -> Result<StatusCode, ApiError> {
    let event = parse_status_event(req.token.attempt_id(), &req).map_err(ApiError::BadRequest)?;
    match app.ingest.submit(event).await? {
        EventApplied::New { .. } | EventApplied::Duplicate => Ok(StatusCode::OK),
        EventApplied::WrongCall => Err(ApiError::Forbidden("CallSid is not the attempt's")),
        EventApplied::UnknownAttempt => Err(ApiError::NotFound(format!("attempt {}", req.token.attempt_id()))),
    }
}
