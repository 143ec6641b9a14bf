//! SMS: delivery callbacks of our fallback texts (`/sms/status/{token}`) and texts customers send to our
//! numbers (`/sms/inbound`): a stop word puts the number on the DNC list, a reply code records a result on
//! the contact the newest text to that number was for.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use dialer_core::domain::campaign::CampaignFile;
use dialer_core::domain::sms::{read_reply, MessageStatus, Reply};
use dialer_core::domain::E164;
use dialer_core::metrics::Metrics;
use dialer_core::store::MessageEventApplied;
use dialer_core::twilio::twiml::MessagingResponse;

use crate::signature::SignedRequest;
use crate::{ApiError, App};

/// A delivery callback: stored once, applied in any order (the status only moves forward).
pub(crate) async fn status(State(app): State<App>, req: SignedRequest) -> Result<StatusCode, ApiError> {
    let token = req.message.ok_or(ApiError::Forbidden("no message token"))?;
    let sid = req
        .param("MessageSid")
        .or(req.param("SmsSid"))
        .ok_or_else(|| ApiError::BadRequest("MessageSid is missing".into()))?;
    if !(sid.len() == 34 && (sid.starts_with("SM") || sid.starts_with("MM"))) {
        return Err(ApiError::BadRequest(format!("{sid:?} is not a MessageSid")));
    }
    let status = req
        .param("MessageStatus")
        .or(req.param("SmsStatus"))
        .ok_or_else(|| ApiError::BadRequest("MessageStatus is missing".into()))?;
    let status = MessageStatus::parse(status).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let error_code = match req.param("ErrorCode").filter(|c| !c.is_empty()) {
        Some(c) => Some(c.parse::<i32>().map_err(|_| ApiError::BadRequest(format!("ErrorCode {c:?}")))?),
        None => None,
    };
    let params: BTreeMap<&str, &str> = req.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let params = serde_json::to_value(params).map_err(|e| ApiError::Internal(e.into()))?;
    match app.state.store.messages_status_apply(token.message_id(), sid, status, error_code, &params).await? {
        MessageEventApplied::Applied => {
            Metrics::global().sms_status.with_label_values(&[status.as_str()]).inc();
            Ok(StatusCode::NO_CONTENT)
        }
        MessageEventApplied::Duplicate => Ok(StatusCode::NO_CONTENT),
        MessageEventApplied::WrongMessage => Err(ApiError::Forbidden("MessageSid is not the message's")),
        MessageEventApplied::UnknownMessage => Err(ApiError::NotFound(format!("message {}", token.message_id()))),
    }
}

/// A text from a customer. Replies in the campaign's language when it has something to say.
pub(crate) async fn inbound(State(app): State<App>, req: SignedRequest) -> Result<MessagingTwiml, ApiError> {
    let from = req.param("From").ok_or_else(|| ApiError::BadRequest("From is missing".into()))?;
    let body = req.param("Body").unwrap_or_default();
    let metrics = Metrics::global();
    // A short code or alphanumeric sender cannot be a contact and cannot opt a number out.
    let Ok(from) = E164::parse(from, None) else {
        metrics.sms_replies.with_label_values(&["other"]).inc();
        return Ok(MessagingTwiml(MessagingResponse::new()));
    };
    let store = &app.state.store;
    let replied = store.messages_replied(&from, app.state.inbound.lookback).await?;
    let campaign: Option<CampaignFile> =
        replied.as_ref().and_then(|m| serde_json::from_value(m.campaign_spec.clone()).ok());
    let codes = campaign.as_ref().and_then(|c| c.sms.as_ref()).map(|s| s.reply_codes.clone()).unwrap_or_default();
    let japanese = campaign.as_ref().is_some_and(|c| c.script.language.starts_with("ja"));
    let reply = read_reply(body, &codes);
    let answer = match (reply, &replied) {
        (Reply::Stop, _) => {
            store.messages_stop(&from, replied.as_ref().map(|m| m.message_id), body.trim()).await?;
            metrics.sms_replies.with_label_values(&["stop"]).inc();
            tracing::info!(phone = %from, "opted out by SMS");
            Some(if japanese {
                "配信を停止しました。今後ご連絡いたしません。"
            } else {
                "You are unsubscribed. We will not contact you again."
            })
        }
        (Reply::Code { code, result }, Some(m)) => {
            if store.messages_reply_result(m.message_id, code, result).await? {
                metrics.keypress_results.with_label_values(&[&m.campaign_id.to_string(), result]).inc();
            }
            metrics.sms_replies.with_label_values(&["code"]).inc();
            Some(if japanese {
                "ご返信ありがとうございます。承りました。"
            } else {
                "Thank you, we have your answer."
            })
        }
        // Codes come from the replied message's campaign, so a code without one cannot be read.
        (Reply::Code { .. } | Reply::Other, _) => {
            metrics.sms_replies.with_label_values(&["other"]).inc();
            None
        }
    };
    let mut r = MessagingResponse::new();
    if let Some(text) = answer {
        r = r.message(text);
    }
    Ok(MessagingTwiml(r))
}

/// A messaging TwiML document as an HTTP response.
pub(crate) struct MessagingTwiml(MessagingResponse);

impl axum::response::IntoResponse for MessagingTwiml {
    fn into_response(self) -> axum::response::Response {
        crate::script::xml(self.0.render())
    }
}
