//! `/gather/{token}?menu=NAME&n=REPEATS`: what a keypress (or no input) leads to.

use axum::extract::{Query, State};
use dialer_core::domain::script::Action;
use dialer_core::metrics::Metrics;
use dialer_core::store::TRANSFERRED_RESULT;
use serde::Deserialize;

use crate::script::{CallScript, Twiml};
use crate::signature::TwilioRequest;
use crate::twiml::bound_context;
use crate::{ApiError, App};

#[derive(Debug, Deserialize)]
pub(crate) struct GatherQuery {
    menu: String,
    /// Repeats used so far (no input or unknown keys).
    #[serde(default)]
    n: u32,
}

pub(crate) async fn gather(
    State(app): State<App>,
    Query(q): Query<GatherQuery>,
    req: TwilioRequest,
) -> Result<Twiml, ApiError> {
    let (ctx, script) = bound_context(&app, &req).await?;
    let metrics = Metrics::global();
    metrics.callbacks_received.with_label_values(&["gather"]).inc();
    if script.menu_def(&q.menu).is_none() {
        return Err(ApiError::BadRequest(format!("unknown menu {:?}", q.menu)));
    }
    let digits = req.param("Digits").unwrap_or_default();
    if digits.is_empty() {
        // No input: the `<Redirect>` after the Gather, already counting this repeat.
        return Ok(Twiml(script.menu(&q.menu, q.n, Vec::new())));
    }
    let Some(option) = script.option(&q.menu, digits) else {
        return Ok(Twiml(script.retry(&q.menu, q.n)));
    };
    let prefix = option.say.as_deref().map(|t| vec![script.say(t)]).unwrap_or_default();
    let action = option.action().map_err(|e| ApiError::Internal(anyhow::anyhow!("menu {}: {e}", q.menu)))?;
    let campaign = ctx.campaign_id.to_string();
    let store = &app.state.store;
    let twiml = match action {
        Action::Result(result) => {
            if store.results_record(ctx.attempt_id, &q.menu, digits, result).await? {
                metrics.keypress_results.with_label_values(&[&campaign, result]).inc();
            }
            script.goodbye(prefix)
        }
        Action::Goto(menu) => script.menu(menu, 0, prefix),
        Action::Transfer(number) => {
            // Reaching a person counts as a result, so the contact is not called again for it.
            if store.results_record(ctx.attempt_id, &q.menu, digits, TRANSFERRED_RESULT).await? {
                metrics.keypress_results.with_label_values(&[&campaign, TRANSFERRED_RESULT]).inc();
            }
            script.transfer(number, prefix)
        }
        // The result (`transferred`) waits until an operator actually answers.
        Action::Operator => crate::transfer::enter(&app, &ctx, &script, &q.menu, digits, prefix).await?,
        Action::OptOut => {
            // On the DNC list before this response returns, so no later claim can dial the number.
            store.results_opt_out(ctx.attempt_id, &q.menu, digits).await?;
            metrics.keypress_results.with_label_values(&[&campaign, "opted_out"]).inc();
            let mut r = CallScript::hangup();
            r.verbs.splice(0..0, prefix.into_iter().map(Into::into));
            r
        }
        Action::Repeat => script.menu(&q.menu, q.n, Vec::new()),
    };
    Ok(Twiml(twiml))
}
