//! `/twiml/{token}`: the first TwiML of an attempt.

use axum::extract::State;
use dialer_core::domain::{AnsweredBy, CallSid};
use dialer_core::metrics::Metrics;
use dialer_core::store::{Binding, CallContext};

use crate::script::{CallScript, Twiml};
use crate::signature::TwilioRequest;
use crate::{ApiError, App};

/// The request's CallSid must be the attempt's (set on it if still unknown); then the attempt's context.
pub(crate) async fn bound_context(app: &App, req: &TwilioRequest) -> Result<(CallContext, CallScript), ApiError> {
    let sid = req.param("CallSid").ok_or_else(|| ApiError::BadRequest("CallSid is missing".into()))?;
    let sid = CallSid::parse(sid).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let attempt_id = req.token.attempt_id();
    match app.state.store.attempts_bind_call_sid(attempt_id, &sid).await? {
        Binding::Bound => {}
        Binding::WrongCall => return Err(ApiError::Forbidden("CallSid is not the attempt's")),
        Binding::UnknownAttempt => return Err(ApiError::NotFound(format!("attempt {attempt_id}"))),
    }
    attempt_context(app, attempt_id, &req.token_text).await
}

/// The attempt's context and script, without a CallSid to check (a request about the attempt made by
/// another call: an announcement to its conference).
pub(crate) async fn attempt_context(
    app: &App,
    attempt_id: i64,
    token_text: &str,
) -> Result<(CallContext, CallScript), ApiError> {
    let ctx = app
        .state
        .store
        .attempts_call_context(attempt_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("attempt {attempt_id}")))?;
    let script = CallScript::new(&ctx, &app.state.public_base_url, token_text)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    Ok((ctx, script))
}

pub(crate) async fn twiml(State(app): State<App>, req: TwilioRequest) -> Result<Twiml, ApiError> {
    let (ctx, script) = bound_context(&app, &req).await?;
    Metrics::global().callbacks_received.with_label_values(&["twiml"]).inc();
    // Synchronous AMD: the TwiML request waits for detection and carries its result.
    let answered_by = req.param("AnsweredBy").and_then(|a| AnsweredBy::parse(a).ok());
    if let Some(ab) = answered_by {
        app.state.store.attempts_set_answered_by(ctx.attempt_id, ab).await?;
        if ab.voicemail_ready() {
            if let Some(vm) = script.voicemail() {
                app.state.store.attempts_mark_voicemail_left(ctx.attempt_id).await?;
                return Ok(Twiml(vm));
            }
        }
        if ab.is_machine() {
            // A greeting still playing, a fax, or no message to leave: nothing to say to a machine.
            return Ok(Twiml(CallScript::hangup()));
        }
    }
    Ok(Twiml(script.start()))
}
