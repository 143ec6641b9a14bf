//! What a call produced: keypress results, opt-outs, the settle step that turns a finished attempt into an
//! outcome and the contact's retry or final state, and the results export.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;

use super::{Result, Store, StoreError};
use crate::domain::{classify, decide, AnsweredBy, CallFacts, CallSid, CallStatus, Next, Outcome, RetryPolicy};

/// `attempts.result` of an attempt whose callee pressed the opt-out key.
pub const OPTED_OUT_RESULT: &str = "opted_out";
/// `attempts.result` of an attempt transferred to a person (`<Dial>`): the callee was reached.
pub const TRANSFERRED_RESULT: &str = "transferred";
/// `attempts.outcome` set provisionally when the voicemail message was played; the settle step reads it as
/// `voicemail_left` and replaces it with the final outcome.
const VOICEMAIL_MARK: &str = "voicemail";

/// A call's terminal status, from a StatusCallback or from the REST API (reconciliation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalFacts {
    /// The call's SID, if known; set on the attempt when it has none, refused if it has another.
    pub call_sid: Option<CallSid>,
    /// Must be terminal (`completed`, `busy`, `no-answer`, `failed`, `canceled`).
    pub status: CallStatus,
    pub answered_by: Option<AnsweredBy>,
    pub sip_response_code: Option<i32>,
    pub duration_s: Option<i32>,
    /// When the call ended; `now()` when unknown.
    pub ended_at: Option<DateTime<Utc>>,
}

/// What settling an attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub attempt_id: i64,
    pub campaign_id: i64,
    pub contact_id: i64,
    /// False when the attempt had already finished (a late or duplicate report): nothing was changed and
    /// `outcome` is the one recorded then.
    pub applied: bool,
    pub outcome: Option<Outcome>,
    pub answered_by: Option<AnsweredBy>,
    /// The retry policy's decision (only when `applied`).
    pub next: Option<Next>,
    /// Whether the contact moved on: only while it is still `calling` on this attempt.
    pub contact_updated: bool,
}

/// Everything the TwiML routes need about one attempt: the contact, its campaign and script.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CallContext {
    pub attempt_id: i64,
    pub attempt_state: String,
    pub call_sid: Option<String>,
    pub campaign_id: i64,
    pub contact_id: i64,
    pub phone: String,
    pub external_id: Option<String>,
    pub attributes: Value,
    /// The contact's IANA zone, else the campaign's.
    pub timezone: String,
    pub caller_id: String,
    pub script: Value,
}

/// One line of `dialer results export`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ResultRow {
    pub contact_id: i64,
    pub external_id: Option<String>,
    pub phone: String,
    pub state: String,
    pub outcome: Option<String>,
    /// The keypress result (`confirmed`, `reschedule:morning`…), if any.
    pub result: Option<String>,
    pub attempts: i32,
    pub last_call_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Settles an attempt whose terminal status is known: records the status on the attempt (state
    /// `finished`), classifies the outcome (keypress result, opt-out, voicemail left, AMD), applies the
    /// campaign's retry policy and moves the contact to `pending` with `next_attempt_at`, or to its final
    /// state, outcome, reason and result — all in one transaction.
    ///
    /// Idempotent and race-safe: the attempt row is locked and only an open attempt (`dialing`, `created`,
    /// `parked`) is settled, so a second report returns `applied: false` and changes nothing; the contact
    /// changes only while it is `calling` on this attempt (`attempt_seq = attempt_no`). Used by StatusCallback
    /// ingestion and by the dialer's reconciliation through the REST API. A `call_sid` other than the
    /// attempt's is a `Conflict`; a non-terminal `status` too.
    pub async fn attempts_settle(&self, attempt_id: i64, facts: TerminalFacts) -> Result<Settled> {
        let mut tx = self.pool.begin().await?;
        let s = settle_in(&mut tx, attempt_id, &facts).await?;
        tx.commit().await?;
        Ok(s)
    }

    /// The attempt with its contact, campaign and script; `None` if it does not exist.
    pub async fn attempts_call_context(&self, attempt_id: i64) -> Result<Option<CallContext>> {
        Ok(sqlx::query_as::<_, CallContext>(
            "SELECT a.id AS attempt_id, a.state AS attempt_state, a.call_sid, a.campaign_id, a.contact_id,
                    c.phone, c.external_id, c.attributes, COALESCE(c.timezone, k.timezone) AS timezone,
                    k.caller_id, k.script
             FROM attempts a JOIN contacts c ON c.id = a.contact_id JOIN campaigns k ON k.id = a.campaign_id
             WHERE a.id = $1",
        )
        .bind(attempt_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records synchronous AMD's `AnsweredBy` (from the TwiML request) while the call is open.
    pub async fn attempts_set_answered_by(&self, attempt_id: i64, answered_by: AnsweredBy) -> Result<()> {
        sqlx::query("UPDATE attempts SET answered_by = $2 WHERE id = $1 AND state IN ('dialing', 'created', 'parked')")
            .bind(attempt_id)
            .bind(answered_by.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Remembers that the voicemail message was played, so the outcome becomes `voicemail` (never a
    /// confirmation) rather than `machine`.
    pub async fn attempts_mark_voicemail_left(&self, attempt_id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE attempts SET outcome = 'voicemail'
             WHERE id = $1 AND outcome IS NULL AND state IN ('dialing', 'created', 'parked')",
        )
        .bind(attempt_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a keypress result once per (attempt, menu, result) and on the attempt. Returns whether it was
    /// new.
    pub async fn results_record(&self, attempt_id: i64, menu: &str, digits: &str, result: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let new = insert_result(&mut tx, attempt_id, menu, digits, result).await?;
        sqlx::query("UPDATE attempts SET result = $2 WHERE id = $1")
            .bind(attempt_id)
            .bind(result)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(new)
    }

    /// The callee pressed the opt-out key: the number goes on the global DNC list (source `keypress`) at
    /// once, the attempt is marked so its outcome becomes `opted_out` (contact `blocked`) when it settles,
    /// and a contact already back in `pending` is blocked now. One transaction; returns whether the number
    /// was new on the list.
    pub async fn results_opt_out(&self, attempt_id: i64, menu: &str, digits: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let (phone, contact_id): (String, i64) = sqlx::query_as("SELECT phone, contact_id FROM attempts WHERE id = $1")
            .bind(attempt_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("attempt {attempt_id}")))?;
        let new = sqlx::query(
            "INSERT INTO dnc (phone, campaign_id, reason, source) VALUES ($1, NULL, 'opted out by keypress', 'keypress')
             ON CONFLICT (phone) WHERE campaign_id IS NULL DO NOTHING",
        )
        .bind(&phone)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        insert_result(&mut tx, attempt_id, menu, digits, OPTED_OUT_RESULT).await?;
        sqlx::query("UPDATE attempts SET result = $2 WHERE id = $1")
            .bind(attempt_id)
            .bind(OPTED_OUT_RESULT)
            .execute(&mut *tx)
            .await?;
        // The call is normally still open (contact `calling`, settled later); if the contact is already
        // waiting for a retry, it must never be claimed again.
        sqlx::query(
            "UPDATE contacts SET state = 'blocked', final_outcome = 'opted_out', final_reason = 'opted out by keypress',
                 finished_at = now(), updated_at = now(), next_attempt_at = now(), lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND state = 'pending'",
        )
        .bind(contact_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Every contact of a campaign with its final state, outcome, keypress result, attempts and last call.
    pub async fn results_export(&self, campaign_id: i64) -> Result<Vec<ResultRow>> {
        Ok(sqlx::query_as::<_, ResultRow>(
            "SELECT c.id AS contact_id, c.external_id, c.phone, c.state,
                    COALESCE(c.final_outcome, last.outcome) AS outcome, c.result, c.attempts_made AS attempts,
                    GREATEST(c.last_call_at, last.requested_at) AS last_call_at
             FROM contacts c
             LEFT JOIN LATERAL (
                 SELECT a.outcome, a.requested_at FROM attempts a
                 WHERE a.contact_id = c.id AND a.requested_at IS NOT NULL
                 ORDER BY a.attempt_no DESC LIMIT 1
             ) last ON true
             WHERE c.campaign_id = $1
             ORDER BY c.id",
        )
        .bind(campaign_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

async fn insert_result(
    conn: &mut PgConnection,
    attempt_id: i64,
    menu: &str,
    digits: &str,
    result: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO results (attempt_id, contact_id, campaign_id, menu, digits, result)
         SELECT a.id, a.contact_id, a.campaign_id, $2, $3, $4 FROM attempts a WHERE a.id = $1
         ON CONFLICT (attempt_id, menu, result) DO NOTHING",
    )
    .bind(attempt_id)
    .bind(menu)
    .bind(digits)
    .bind(result)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1)
}

#[derive(sqlx::FromRow)]
struct SettleRow {
    contact_id: i64,
    campaign_id: i64,
    attempt_no: i32,
    state: String,
    call_sid: Option<String>,
    result: Option<String>,
    outcome: Option<String>,
    answered_by: Option<String>,
    requested_at: Option<DateTime<Utc>>,
    attempts_made: i32,
    retry_policy: Value,
    max_attempts: i32,
}

/// [`Store::attempts_settle`] inside the caller's transaction.
pub(crate) async fn settle_in(conn: &mut PgConnection, attempt_id: i64, facts: &TerminalFacts) -> Result<Settled> {
    if !facts.status.is_terminal() {
        return Err(StoreError::Conflict(format!("{} is not a terminal call status", facts.status)));
    }
    // Locks the attempt and its contact (in that order, as the dialer does) for the whole step.
    let row: SettleRow = sqlx::query_as(
        "SELECT a.contact_id, a.campaign_id, a.attempt_no, a.state, a.call_sid, a.result, a.outcome, a.answered_by,
                a.requested_at, c.attempts_made, k.retry_policy, k.max_attempts
         FROM attempts a JOIN contacts c ON c.id = a.contact_id JOIN campaigns k ON k.id = a.campaign_id
         WHERE a.id = $1
         FOR UPDATE OF a, c",
    )
    .bind(attempt_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("attempt {attempt_id}")))?;

    let stored_answered_by = row.answered_by.as_deref().and_then(|s| AnsweredBy::parse(s).ok());
    let mut settled = Settled {
        attempt_id,
        campaign_id: row.campaign_id,
        contact_id: row.contact_id,
        applied: false,
        outcome: row.outcome.as_deref().and_then(|s| Outcome::parse(s).ok()),
        answered_by: stored_answered_by,
        next: None,
        contact_updated: false,
    };
    if !matches!(row.state.as_str(), "dialing" | "created" | "parked") {
        // Finished already (terminal stays terminal), or never sent.
        return Ok(settled);
    }
    if let (Some(have), Some(given)) = (&row.call_sid, &facts.call_sid) {
        if have != given.as_str() {
            return Err(StoreError::Conflict(format!("attempt {attempt_id} belongs to another call")));
        }
    }

    let answered_by = facts.answered_by.or(stored_answered_by);
    let opted_out = row.result.as_deref() == Some(OPTED_OUT_RESULT);
    let outcome = classify(CallFacts {
        status: facts.status,
        answered_by,
        sip_response_code: facts.sip_response_code,
        has_result: row.result.is_some() && !opted_out,
        opted_out,
        voicemail_left: row.outcome.as_deref() == Some(VOICEMAIL_MARK),
    });
    let same_outcome_before: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM attempts
         WHERE contact_id = $1 AND id <> $2 AND state = 'finished' AND outcome = $3",
    )
    .bind(row.contact_id)
    .bind(attempt_id)
    .bind(outcome.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let policy: RetryPolicy = serde_json::from_value(row.retry_policy)
        .map_err(|e| StoreError::Conflict(format!("campaign {}: stored retry policy: {e}", row.campaign_id)))?;
    let now = Utc::now();
    let next = decide(&policy, row.max_attempts, outcome, row.attempts_made, same_outcome_before as i32, now);

    let updated = sqlx::query(
        "UPDATE attempts SET state = 'finished', call_sid = COALESCE(call_sid, $2), call_status = $3, status_rank = 4,
             outcome = $4, answered_by = $5, sip_response_code = COALESCE($6, sip_response_code),
             duration_s = COALESCE($7, duration_s), ended_at = COALESCE($8, now()),
             last_event_at = GREATEST(last_event_at, $8), finished_at = now()
         WHERE id = $1 AND state IN ('dialing', 'created', 'parked')",
    )
    .bind(attempt_id)
    .bind(facts.call_sid.as_ref().map(CallSid::as_str))
    .bind(facts.status.as_str())
    .bind(outcome.as_str())
    .bind(answered_by.map(AnsweredBy::as_str))
    .bind(facts.sip_response_code)
    .bind(facts.duration_s)
    .bind(facts.ended_at)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(settled);
    }

    // The contact moves on only while it is still calling on this very attempt: a lease rescue or a newer
    // attempt has taken over otherwise, and this late report must not touch it.
    let contact_updated = match &next {
        Next::Retry { at, .. } => sqlx::query(
            "UPDATE contacts SET state = 'pending', next_attempt_at = $3, lease_owner = NULL, lease_expires_at = NULL,
                 last_call_at = GREATEST(last_call_at, $4), updated_at = now()
             WHERE id = $1 AND state = 'calling' AND attempt_seq = $2",
        )
        .bind(row.contact_id)
        .bind(row.attempt_no)
        .bind(at)
        .bind(row.requested_at)
        .execute(&mut *conn)
        .await?
        .rows_affected(),
        Next::Final { state, reason } => {
            // Only a person's keypress (or opt-out) is a result; a machine's digits never are.
            let result = match outcome {
                Outcome::AnsweredResult | Outcome::OptedOut => row.result.as_deref(),
                _ => None,
            };
            sqlx::query(
                "UPDATE contacts SET state = $3, final_outcome = $4, final_reason = $5, result = COALESCE($6, result),
                     last_call_at = GREATEST(last_call_at, $7), finished_at = now(), updated_at = now(),
                     lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = $1 AND state = 'calling' AND attempt_seq = $2",
            )
            .bind(row.contact_id)
            .bind(row.attempt_no)
            .bind(state.as_str())
            .bind(outcome.as_str())
            .bind(reason)
            .bind(result)
            .bind(row.requested_at)
            .execute(&mut *conn)
            .await?
            .rows_affected()
        }
    } == 1;

    settled.applied = true;
    settled.outcome = Some(outcome);
    settled.answered_by = answered_by;
    settled.next = Some(next);
    settled.contact_updated = contact_updated;
    Ok(settled)
}
