//! `/voice/inbound`: a customer calls a campaign's caller ID back. A contact (the newest with this number
//! within the look-back) is greeted by name and gets the campaign's menu; its keypresses go through
//! `/gather/{token}` as in our calls and are recorded on the contact. Anyone else hears the unknown-caller
//! message and may be transferred.

use axum::extract::State;
use dialer_core::domain::script::Script;
use dialer_core::domain::{AttemptToken, CallSid, E164};
use dialer_core::metrics::Metrics;
use dialer_core::store::{InboundCall, StoreError};

use crate::script::{unknown_caller, CallScript, Twiml};
use crate::signature::SignedRequest;
use crate::{ApiError, App};

pub(crate) async fn inbound_call(State(app): State<App>, req: SignedRequest) -> Result<Twiml, ApiError> {
    let sid = req.param("CallSid").ok_or_else(|| ApiError::BadRequest("CallSid is missing".into()))?;
    let sid = CallSid::parse(sid).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let to = req.param("To").and_then(|t| E164::parse(t, None).ok());
    // A withheld or malformed caller number ("anonymous", "+266696687") is an unknown caller.
    let from = req.param("From").and_then(|f| E164::parse(f, None).ok());
    let store = &app.state.store;
    let settings = &app.state.inbound;
    let found = match &from {
        Some(from) => store.attempts_inbound_begin(&sid, from, to.as_ref(), settings.lookback).await?,
        None => InboundCall::Unknown { campaign_id: None },
    };
    let metrics = Metrics::global();
    match found {
        InboundCall::Contact { attempt_id, campaign_id, contact_id } => {
            metrics.inbound_calls.with_label_values(&[&campaign_id.to_string(), "contact"]).inc();
            tracing::info!(attempt_id, contact_id, call_sid = %sid, "call back from a contact");
            let ctx = store
                .attempts_call_context(attempt_id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("attempt {attempt_id}")))?;
            let token = AttemptToken::new(attempt_id).encode(&app.state.token_key);
            let script = CallScript::new(&ctx, &app.state.public_base_url, &token)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
            Ok(Twiml(script.callback_start()))
        }
        InboundCall::Unknown { campaign_id } => {
            let label = campaign_id.map(|c| c.to_string()).unwrap_or_default();
            metrics.inbound_calls.with_label_values(&[&label, "unknown"]).inc();
            let campaign = match campaign_id {
                Some(id) => match store.campaigns_get(id).await {
                    Ok(c) => Some(c),
                    // Deleted between the two reads: the service's message.
                    Err(StoreError::NotFound(_)) => None,
                    Err(e) => return Err(e.into()),
                },
                None => None,
            };
            let script: Option<Script> = campaign.as_ref().and_then(|c| serde_json::from_value(c.script.clone()).ok());
            let caller_id = to.as_ref().map(|t| t.as_str().to_string()).unwrap_or_default();
            let transfer = settings.transfer_to.as_ref().map(|n| n.as_str());
            Ok(Twiml(unknown_caller(script.as_ref(), &settings.unknown_message, transfer, &caller_id)))
        }
    }
}
