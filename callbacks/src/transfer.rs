//! The waiting room: a callee who pressed the operator key joins a conference of their own and hears
//! hold until an operator's Twilio Client answers (the dialer rings them into the conference), or the
//! hold limit passes and the dialer redirects the call to the call-back offer.
//!
//! Routes (all signed, all named by the attempt's token):
//! - `/transfer/hold/{token}`: the conference's `waitUrl`, looped by Twilio: "please hold" and music.
//! - `/transfer/conference/{token}`: the conference's status callback (its SID, for announcements).
//! - `/transfer/done/{token}`: the `<Dial>`'s action once the conference is over.
//! - `/transfer/offer/{token}` and `/transfer/choice/{token}`: the call-back offer and its answer.
//! - `/operator/status/{token}?ring=N`: the status callbacks of the operator's leg (its own CallSid).
//! - `/announce/{token}?id=N[&resume=1]`: an announcement from the console.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use dialer_core::domain::operators;
use dialer_core::domain::{CallSid, CallStatus, TransferState};
use dialer_core::metrics::Metrics;
use dialer_core::store::{CallContext, LegApplied};
use dialer_core::twilio::twiml::{Conference, Dial, Gather, GatherInput, Pause, Play, Redirect, Response, Verb};
use serde::Deserialize;

use crate::script::{CallScript, Twiml};
use crate::signature::TwilioRequest;
use crate::twiml::{attempt_context, bound_context};
use crate::{ApiError, App};

/// The conference of one attempt's waiting room.
pub fn conference_name(attempt_id: i64) -> String {
    format!("transfer-{attempt_id}")
}

/// The operator key was pressed: the attempt's waiting room, and the TwiML that puts the callee in it.
pub(crate) async fn enter(
    app: &App,
    ctx: &CallContext,
    script: &CallScript,
    menu: &str,
    digits: &str,
    prefix: Vec<dialer_core::twilio::twiml::Say>,
) -> Result<Response, ApiError> {
    let settings = ctx.operator_settings();
    let state =
        app.state.store.transfers_begin(ctx.attempt_id, menu, digits, settings.hold_limit_s, settings.ring_s).await?;
    if !TransferState::SEEKING.contains(&state) {
        // Pressed again after the room was left (a replayed request): nothing to wait for any more.
        return Ok(script.goodbye(prefix));
    }
    let m = Metrics::global();
    let campaign = ctx.campaign_id.to_string();
    m.transfer_requests.with_label_values(&[&campaign]).inc();
    // Every outcome exported from the first request, at 0, so rates and the abandonment ratio read 0
    // rather than "no data".
    for outcome in dialer_core::metrics::TRANSFER_OUTCOMES {
        m.transfers.with_label_values(&[campaign.as_str(), outcome]);
    }
    m.waiting_callers.with_label_values(&[campaign.as_str()]);
    let url = |route: &str| script.url(route);
    let mut r = Response::new();
    for say in prefix {
        r = r.verb(say);
    }
    Ok(r.verb(
        Dial::new().action(url("transfer/done")).conference(
            Conference::new(conference_name(ctx.attempt_id))
                .wait_url(url("transfer/hold"))
                .start_conference_on_enter(false)
                .end_conference_on_exit(true)
                .beep(false)
                .status_callback(url("transfer/conference"))
                .status_callback_event("start end join leave"),
        ),
    ))
}

/// `waitUrl`: "please hold" in the script's language, then hold music or a pause; Twilio loops it.
pub(crate) async fn hold(State(app): State<App>, req: TwilioRequest) -> Result<Twiml, ApiError> {
    let (ctx, script) = bound_context(&app, &req).await?;
    let settings = ctx.operator_settings();
    let r = Response::new().verb(script.say(&operators::hold_message(&script.script)));
    Ok(Twiml(match settings.hold_music.as_deref().filter(|u| !u.is_empty()) {
        Some(music) => r.verb(Play::new(music)),
        None => r.verb(Pause::seconds(settings.hold_every_s)),
    }))
}

/// The conference's status callback: its SID is what announcements address; the callee leaving it while
/// still waiting is an abandoned call (for a caller who called us, the only sign of it).
pub(crate) async fn conference(State(app): State<App>, req: TwilioRequest) -> Result<StatusCode, ApiError> {
    let attempt_id = req.token.attempt_id();
    let store = &app.state.store;
    if let Some(sid) = req.param("ConferenceSid").filter(|s| s.starts_with("CF")) {
        store.transfers_set_conference(attempt_id, sid).await?;
    }
    if req.param("StatusCallbackEvent") == Some("participant-leave") {
        let who = req.param("CallSid").and_then(|s| CallSid::parse(s).ok());
        let ctx = store.attempts_call_context(attempt_id).await?;
        // Only the callee's own leaving: an operator's leg leaving is not the caller hanging up.
        if let (Some(who), Some(ctx)) = (who, ctx.filter(|c| c.call_sid.is_some())) {
            if ctx.call_sid.as_ref() == Some(&who) {
                if let Some(campaign) = store.transfers_callee_left(attempt_id).await? {
                    Metrics::global().transfer_ended(&campaign.to_string(), "abandoned");
                    tracing::info!(attempt_id, call_sid = %who, "caller left the waiting room: abandoned");
                }
            }
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The `<Dial>`'s action: the conversation (or the conference) is over.
pub(crate) async fn done(State(app): State<App>, req: TwilioRequest) -> Result<Twiml, ApiError> {
    let (_, script) = bound_context(&app, &req).await?;
    Ok(Twiml(script.goodbye(Vec::new())))
}

/// Nobody answered within the hold limit (the dialer redirected the call here): offer a call back.
pub(crate) async fn offer(State(app): State<App>, req: TwilioRequest) -> Result<Twiml, ApiError> {
    let (_, script) = bound_context(&app, &req).await?;
    let choice = script.url("transfer/choice");
    let gather = Gather::new()
        .input(GatherInput::Dtmf)
        .num_digits(1)
        .timeout(8)
        .action(choice.clone())
        .child(script.say(&operators::callback_offer(&script.script)));
    // No key: the Redirect comes without Digits, which declines.
    Ok(Twiml(Response::new().verb(gather).verb(Redirect::new(choice))))
}

/// The answer to the offer: key 1 asks for a call back; anything else, or nothing, declines.
pub(crate) async fn choice(State(app): State<App>, req: TwilioRequest) -> Result<Twiml, ApiError> {
    let (ctx, script) = bound_context(&app, &req).await?;
    let wants = req.param("Digits") == Some("1");
    let campaign = ctx.campaign_id.to_string();
    if app.state.store.transfers_offer_answered(ctx.attempt_id, wants).await? {
        Metrics::global().transfer_ended(&campaign, if wants { "callback_requested" } else { "no_operator" });
    }
    Ok(Twiml(if wants {
        Response::new().verb(script.say(&operators::callback_confirmed(&script.script))).verb(Verb::Hangup)
    } else {
        script.goodbye(Vec::new())
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct LegQuery {
    ring: i32,
}

/// A status callback of an operator's leg. Its CallSid is the leg's, not the callee's: the transfer
/// binds it on the first callback of this ring (`ring` in the signed URL) and ignores other legs.
pub(crate) async fn operator_status(
    State(app): State<App>,
    Query(q): Query<LegQuery>,
    req: TwilioRequest,
) -> Result<StatusCode, ApiError> {
    let sid = req.param("CallSid").ok_or_else(|| ApiError::BadRequest("CallSid is missing".into()))?;
    let sid = CallSid::parse(sid).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let status = req.param("CallStatus").ok_or_else(|| ApiError::BadRequest("CallStatus is missing".into()))?;
    let status = CallStatus::parse(status).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let attempt_id = req.token.attempt_id();
    let applied = app.state.store.transfers_leg_event(attempt_id, q.ring, &sid, status).await?;
    for step in &applied {
        count_leg_step(attempt_id, &sid, status, step);
    }
    Ok(StatusCode::NO_CONTENT)
}

fn count_leg_step(attempt_id: i64, sid: &CallSid, status: CallStatus, step: &LegApplied) {
    let m = Metrics::global();
    match step {
        LegApplied::Connected { campaign_id, operator, waited_s } => {
            let campaign = campaign_id.to_string();
            m.operator_rings.with_label_values(&["answered"]).inc();
            m.transfer_ended(&campaign, "connected");
            m.keypress_results.with_label_values(&[&campaign, operators::TRANSFERRED_RESULT]).inc();
            m.transfer_wait.with_label_values(&[&campaign]).observe(*waited_s);
            tracing::info!(attempt_id, call_sid = %sid, operator = %operator, waited_s, "operator answered");
        }
        LegApplied::Ended { operator, handled_s, .. } => {
            m.operator_handle.observe(*handled_s);
            tracing::info!(attempt_id, call_sid = %sid, operator = %operator, handled_s, "operator call ended");
        }
        LegApplied::Missed { operator, .. } => {
            m.operator_rings.with_label_values(&["missed"]).inc();
            tracing::info!(attempt_id, call_sid = %sid, operator = %operator, %status, "operator missed a ring; set away");
        }
        LegApplied::Nothing => {}
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct AnnounceQuery {
    id: i64,
    /// The call was redirected here (not in a conference): continue with the start menu afterwards.
    #[serde(default)]
    resume: u8,
}

/// An announcement's TwiML: the text in the script's voice; then, for a redirected call, the start
/// menu again (Twilio offers no way back to the exact point it left).
pub(crate) async fn announce(
    State(app): State<App>,
    Query(q): Query<AnnounceQuery>,
    req: TwilioRequest,
) -> Result<Twiml, ApiError> {
    let attempt_id = req.token.attempt_id();
    let text = app
        .state
        .store
        .announcements_text(attempt_id, q.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("announcement {}", q.id)))?;
    let (_, script) = attempt_context(&app, attempt_id, &req.token_text).await?;
    // The text is the operator's own words, not a template: spoken as written.
    let say = script.say_plain(&text);
    Ok(Twiml(if q.resume == 1 {
        let mut r = script.start();
        r.verbs.insert(0, say.into());
        r
    } else {
        Response::new().verb(say)
    }))
}
