//! Reconciliation: attempts whose POST had an unknown fate, whose dialer died mid-POST, or whose call never
//! reported an end are resolved by asking the API. Only an attempt proven never created may be dialled
//! again (as a new attempt).

use std::time::Duration;

use chrono::Utc;
use dialer_core::store::{OpenAttempt, TerminalFacts};
use dialer_core::twilio::{CallResource, ListCalls, StartTimeAfter};
use tracing::{info, warn};

use super::Engine;

/// What one reconciliation pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub looked_at: usize,
    pub found: usize,
    pub settled: usize,
    pub never_created: usize,
    pub still_open: usize,
}

/// How long after the POST a call that Twilio created is surely visible in its list.
fn dialing_grace(engine: &Engine) -> Duration {
    engine.twilio_timeout * 2 + Duration::from_secs(2)
}

pub async fn reconcile_once(engine: &Engine) -> anyhow::Result<Reconciled> {
    let open = engine
        .store
        .attempts_to_reconcile(dialing_grace(engine).as_secs_f64(), engine.stale_call.as_secs_f64(), 200)
        .await?;
    let mut r = Reconciled { looked_at: open.len(), ..Default::default() };
    for a in open {
        match reconcile_attempt(engine, &a).await {
            Ok(Step::Settled) => {
                r.found += 1;
                r.settled += 1
            }
            Ok(Step::Found) => r.found += 1,
            Ok(Step::NeverCreated) => r.never_created += 1,
            Ok(Step::StillOpen) => r.still_open += 1,
            Err(e) => {
                warn!(attempt_id = a.attempt_id, error = %e, "reconciliation failed; will retry");
                dialer_core::metrics::Metrics::global().internal_error("reconcile");
                r.still_open += 1;
            }
        }
    }
    if r.looked_at > 0 {
        info!(?r, "reconciled");
    }
    Ok(r)
}

enum Step {
    Settled,
    Found,
    NeverCreated,
    StillOpen,
}

async fn reconcile_attempt(engine: &Engine, a: &OpenAttempt) -> anyhow::Result<Step> {
    let call = match &a.call_sid {
        Some(sid) => Some(engine.twilio.fetch_call(sid).await?),
        None => find_by_number(engine, a).await?,
    };
    let Some(call) = call else {
        // Not in Twilio's list well after the POST's timeout: it was never created.
        engine
            .store
            .attempts_not_created(a.attempt_id, None, "reconciled: Twilio has no such call", Some(Utc::now()), None)
            .await?;
        return Ok(Step::NeverCreated);
    };
    let queue_time_ms = call.queue_time.map(|q| i32::try_from(q).unwrap_or(i32::MAX));
    engine.store.attempts_set_created_many(&[a.attempt_id], &[&call.sid], &[queue_time_ms]).await?;
    if !call.status.is_terminal() {
        return Ok(Step::Found);
    }
    let facts = TerminalFacts {
        call_sid: Some(call.sid.clone()),
        status: call.status,
        answered_by: call.answered_by,
        sip_response_code: None,
        duration_s: call.duration.map(|d| d as i32),
        ended_at: call.end_time,
        answered_at: None,
        queue_time_ms,
    };
    let settled = engine.store.attempts_settle(a.attempt_id, facts).await?;
    dialer_core::metrics::Metrics::global().settled(&settled);
    Ok(if settled.applied { Step::Settled } else { Step::StillOpen })
}

/// The call this attempt created, if any: same To and From, created from just before the POST to well
/// after it. The contact has only one open attempt at a time, so a match is ours.
async fn find_by_number(engine: &Engine, a: &OpenAttempt) -> anyhow::Result<Option<CallResource>> {
    let since = a.requested_at - chrono::Duration::seconds(5);
    let filter = ListCalls {
        to: Some(a.phone.clone()),
        from: Some(a.caller_id.clone()),
        start_time_after: Some(StartTimeAfter::Date(since.date_naive())),
        ..Default::default()
    };
    let until = a.requested_at + chrono::Duration::from_std(dialing_grace(engine))?;
    let calls = engine.twilio.list_calls(&filter).await?;
    Ok(calls
        .into_iter()
        .filter(|c| c.date_created.is_none_or(|t| t >= since && t <= until))
        .min_by_key(|c| c.date_created.map(|t| (t - a.requested_at).num_milliseconds().abs()).unwrap_or(i64::MAX)))
}
