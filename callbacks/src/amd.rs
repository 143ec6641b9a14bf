//! `/amd/{token}`: the async answering-machine result (`AsyncAmdStatusCallback`).
//!
//! Only recorded (event kind `amd`, `attempts.answered_by`); the live call is not redirected to the
//! voicemail message here — with async AMD the menu is already playing. Redirecting it through the REST API
//! (`Calls/{Sid}.json` with `Url`) would be the next step.

use axum::extract::State;
use axum::http::StatusCode;
use dialer_core::domain::{AnsweredBy, CallSid};
use dialer_core::metrics::Metrics;
use dialer_core::store::{AmdApplied, EventParams};

use crate::signature::TwilioRequest;
use crate::{ApiError, App};

pub(crate) async fn amd(State(app): State<App>, req: TwilioRequest) -> Result<StatusCode, ApiError> {
    let sid = req.param("CallSid").ok_or_else(|| ApiError::BadRequest("CallSid is missing".into()))?;
    let sid = CallSid::parse(sid).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let ab = req.param("AnsweredBy").ok_or_else(|| ApiError::BadRequest("AnsweredBy is missing".into()))?;
    let ab = AnsweredBy::parse(ab).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let params = EventParams::from_form(&req.params);
    let metrics = Metrics::global();
    match app.state.store.events_record_amd(req.token.attempt_id(), &sid, ab, &params).await? {
        AmdApplied::New => metrics.callbacks_received.with_label_values(&["amd"]).inc(),
        AmdApplied::Duplicate => metrics.callbacks_duplicate.inc(),
        AmdApplied::WrongCall => return Err(ApiError::Forbidden("CallSid is not the attempt's")),
        AmdApplied::UnknownAttempt => return Err(ApiError::NotFound(format!("attempt {}", req.token.attempt_id()))),
    }
    Ok(StatusCode::OK)
}
