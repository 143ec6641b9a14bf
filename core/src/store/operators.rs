//! `operators`, `transfers` and `announcements`: people who take calls, callees waiting for them, and
//! what the console said into live calls. Every move of `transfers.state` is one function here.
//!
//! Lock order, everywhere: the attempt, then its transfer, then the operator — the order settling takes
//! them in (it locks the attempt and contact first), so a hang-up and an operator answering at the same
//! moment wait for each other rather than deadlock. The ring step takes transfers and operators with
//! SKIP LOCKED and never waits.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use super::{Result, Store};
use crate::domain::operators::{Identity, ABANDONED_RESULT, NO_OPERATOR_RESULT, TRANSFERRED_RESULT};
use crate::domain::{CallSid, CallStatus, Direction, OperatorEngaged, TransferState, E164};

/// An operator as the console and the API show them.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OperatorRow {
    pub id: i64,
    pub api_key_id: i64,
    #[schema(value_type = String)]
    pub identity: Identity,
    /// Their own choice: taking calls or away.
    pub available: bool,
    pub engaged: OperatorEngaged,
    pub engaged_at: DateTime<Utc>,
    /// Rings missed in a row (a missed ring sets them away).
    pub missed: i32,
}

impl OperatorRow {
    /// `available`, `away`, `ringing` or `busy`: what a supervisor wants to read.
    pub fn status(&self) -> &'static str {
        match (self.engaged, self.available) {
            (OperatorEngaged::Ringing, _) => "ringing",
            (OperatorEngaged::Busy, _) => "busy",
            (OperatorEngaged::Idle, true) => "available",
            (OperatorEngaged::Idle, false) => "away",
        }
    }
}

/// How many operators are in each status, for the gauges and pacing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OperatorCounts {
    pub available: i64,
    pub away: i64,
    pub ringing: i64,
    pub busy: i64,
}

/// One operator to ring for one waiting callee (decided by [`Store::transfers_ring_next`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Ring {
    pub attempt_id: i64,
    pub campaign_id: i64,
    /// Which ring of this transfer: callbacks of an earlier leg carry an older number and change nothing.
    pub ring_no: i32,
    pub ring_s: i32,
    pub operator_id: i64,
    pub identity: Identity,
    pub caller_id: E164,
}

/// A callee who waited past the hold limit: to be taken out of the room and offered a call back.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldExpired {
    pub attempt_id: i64,
    pub campaign_id: i64,
    pub call_sid: Option<CallSid>,
}

/// An operator leg that must be hung up: its transfer moved on, or it rang too long without a callback.
#[derive(Debug, Clone, PartialEq)]
pub struct LegToClose {
    pub attempt_id: i64,
    pub ring_no: i32,
    pub leg_sid: CallSid,
}

/// What an operator leg's status callback did.
#[derive(Debug, Clone, PartialEq)]
pub enum LegApplied {
    /// The operator answered while the callee still waited: result `transferred`, wait in seconds.
    Connected { campaign_id: i64, operator: Identity, waited_s: f64 },
    /// The conversation is over: handle time in seconds.
    Ended { campaign_id: i64, operator: Identity, handled_s: f64 },
    /// The operator did not answer: set away; the callee waits for the next one.
    Missed { campaign_id: i64, operator: Identity },
    /// Nothing to change (progress, a stale leg, a duplicate).
    Nothing,
}

/// A transfer as a page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TransferRow {
    pub attempt_id: i64,
    pub contact_id: i64,
    pub campaign_id: i64,
    pub state: TransferState,
    pub operator: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A call the console may speak into: in progress, with where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LiveCall {
    pub attempt_id: i64,
    pub contact_id: i64,
    #[schema(value_type = String)]
    pub phone: E164,
    #[schema(value_type = Option<String>)]
    pub call_sid: Option<CallSid>,
    /// The transfer's state when the callee asked for a person.
    pub transfer: Option<TransferState>,
    /// The conference (waiting room) it is in, if any.
    pub conference_sid: Option<String>,
    pub operator: Option<String>,
}

impl Store {
    /// Makes the API key an operator with this Client identity.
    pub async fn operators_insert(&self, api_key_id: i64, identity: &Identity) -> Result<i64> {
        Ok(sqlx::query_scalar!(
            "INSERT INTO operators (api_key_id, identity) VALUES ($1, $2) RETURNING id",
            api_key_id,
            identity.as_str()
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// A new API key (the operator's console login) and its operator row, in one statement.
    pub async fn operators_create_with_key(
        &self,
        key_name: &str,
        secret: &crate::domain::ApiKeySecret,
        scopes: &[crate::domain::Scope],
        identity: &Identity,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar!(
            r#"WITH k AS (
                   INSERT INTO api_keys (name, prefix, secret_hash, scopes) VALUES ($1, $2, $3, $4) RETURNING id
               )
               INSERT INTO operators (api_key_id, identity) SELECT id, $5 FROM k RETURNING id"#,
            key_name,
            secret.shown_prefix(),
            &secret.hash()[..],
            scopes as _,
            identity.as_str()
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// The operator behind an API key, if it is one.
    pub async fn operators_by_key(&self, api_key_id: i64) -> Result<Option<OperatorRow>> {
        Ok(sqlx::query_as!(
            OperatorRow,
            r#"SELECT id, api_key_id, identity AS "identity: Identity", available,
                      engaged AS "engaged: OperatorEngaged", engaged_at, missed
               FROM operators WHERE api_key_id = $1"#,
            api_key_id
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every operator whose key is live, by identity.
    pub async fn operators_list(&self) -> Result<Vec<OperatorRow>> {
        Ok(sqlx::query_as!(
            OperatorRow,
            r#"SELECT o.id, o.api_key_id, o.identity AS "identity: Identity", o.available,
                      o.engaged AS "engaged: OperatorEngaged", o.engaged_at, o.missed
               FROM operators o JOIN api_keys k ON k.id = o.api_key_id
               WHERE k.revoked_at IS NULL ORDER BY o.identity"#
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The operator says available or away. Coming back clears the missed rings; going away while
    /// ringing or talking takes effect when that call ends.
    pub async fn operators_set_available(&self, api_key_id: i64, available: bool) -> Result<Option<OperatorRow>> {
        Ok(sqlx::query_as!(
            OperatorRow,
            r#"UPDATE operators SET available = $2, missed = CASE WHEN $2 THEN 0 ELSE missed END,
                   engaged_at = CASE WHEN engaged = 'idle' AND $2 AND NOT available THEN now() ELSE engaged_at END
               WHERE api_key_id = $1
               RETURNING id, api_key_id, identity AS "identity: Identity", available,
                         engaged AS "engaged: OperatorEngaged", engaged_at, missed"#,
            api_key_id,
            available
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn operators_counts(&self) -> Result<OperatorCounts> {
        let r = sqlx::query!(
            r#"SELECT count(*) FILTER (WHERE o.engaged = 'idle' AND o.available) AS "available!",
                      count(*) FILTER (WHERE o.engaged = 'idle' AND NOT o.available) AS "away!",
                      count(*) FILTER (WHERE o.engaged = 'ringing') AS "ringing!",
                      count(*) FILTER (WHERE o.engaged = 'busy') AS "busy!"
               FROM operators o JOIN api_keys k ON k.id = o.api_key_id WHERE k.revoked_at IS NULL"#
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OperatorCounts { available: r.available, away: r.away, ringing: r.ringing, busy: r.busy })
    }

    /// Callees waiting (waiting or ringing) per running campaign, for pacing and the gauge.
    pub async fn transfers_waiting_by_campaign(&self) -> Result<HashMap<i64, i64>> {
        Ok(sqlx::query!(
            r#"SELECT campaign_id, count(*) AS "n!" FROM transfers WHERE state IN ('waiting', 'ringing')
               GROUP BY campaign_id"#
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.campaign_id, r.n))
        .collect())
    }

    /// The callee pressed the operator key: a waiting-room row for the attempt (once; a repeated
    /// request returns the existing one). `hold_limit_s` and `ring_s` come from the campaign.
    pub async fn transfers_begin(
        &self,
        attempt_id: i64,
        menu: &str,
        digits: &str,
        hold_limit_s: u32,
        ring_s: u32,
    ) -> Result<TransferState> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            "INSERT INTO transfers (attempt_id, contact_id, campaign_id, menu, digits, hold_until, ring_s)
             SELECT a.id, a.contact_id, a.campaign_id, $2, $3, now() + make_interval(secs => $4), $5
             FROM attempts a WHERE a.id = $1
             ON CONFLICT (attempt_id) DO NOTHING",
            attempt_id,
            menu,
            digits,
            f64::from(hold_limit_s),
            ring_s as i32
        )
        .execute(&mut *tx)
        .await?;
        let state = sqlx::query_scalar!(
            r#"SELECT state AS "state: TransferState" FROM transfers WHERE attempt_id = $1"#,
            attempt_id
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| super::StoreError::NotFound(format!("attempt {attempt_id}")))?;
        tx.commit().await?;
        Ok(state)
    }

    /// The conference's SID, from its first status callback (needed to announce into it).
    pub async fn transfers_set_conference(&self, attempt_id: i64, conference_sid: &str) -> Result<()> {
        sqlx::query!(
            "UPDATE transfers SET conference_sid = $2 WHERE attempt_id = $1 AND conference_sid IS DISTINCT FROM $2",
            attempt_id,
            conference_sid
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Pairs the longest-waiting callees with the longest-idle available operators, at most `limit`,
    /// in one statement: both rows move to ringing. Rows locked by another replica are skipped.
    pub async fn transfers_ring_next(&self, limit: i64) -> Result<Vec<Ring>> {
        let rows = sqlx::query!(
            r#"WITH w AS (
                   SELECT attempt_id, row_number() OVER (ORDER BY requested_at, attempt_id) AS n
                   FROM (SELECT attempt_id, requested_at FROM transfers
                         WHERE state = 'waiting' AND NOT leg_open AND hold_until > now()
                         ORDER BY requested_at, attempt_id LIMIT $1 FOR UPDATE SKIP LOCKED) x
               ), o AS (
                   SELECT id, identity, row_number() OVER (ORDER BY engaged_at, id) AS n
                   FROM (SELECT o.id, o.identity, o.engaged_at FROM operators o
                         JOIN api_keys k ON k.id = o.api_key_id AND k.revoked_at IS NULL
                         WHERE o.available AND o.engaged = 'idle'
                         ORDER BY o.engaged_at, o.id LIMIT $1 FOR UPDATE OF o SKIP LOCKED) y
               ), pairs AS (
                   SELECT w.attempt_id, o.id AS operator_id, o.identity FROM w JOIN o USING (n)
               ), rung AS (
                   UPDATE operators SET engaged = 'ringing', engaged_at = now()
                   FROM pairs WHERE operators.id = pairs.operator_id
               )
               UPDATE transfers t SET state = 'ringing', ring_no = t.ring_no + 1, ring_operator_id = p.operator_id,
                   ring_started_at = now(), leg_sid = NULL, leg_open = true
               FROM pairs p, campaigns k
               WHERE t.attempt_id = p.attempt_id AND k.id = t.campaign_id
               RETURNING t.attempt_id, t.campaign_id, t.ring_no, t.ring_s, p.operator_id,
                         p.identity AS "identity: Identity", k.caller_id AS "caller_id: E164""#,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Ring {
                attempt_id: r.attempt_id,
                campaign_id: r.campaign_id,
                ring_no: r.ring_no,
                ring_s: r.ring_s,
                operator_id: r.operator_id,
                identity: r.identity,
                caller_id: r.caller_id,
            })
            .collect())
    }

    /// Twilio answered the ring with the leg's CallSid (a callback may have bound it already).
    pub async fn transfers_leg_created(&self, attempt_id: i64, ring_no: i32, leg_sid: &CallSid) -> Result<()> {
        sqlx::query!(
            "UPDATE transfers SET leg_sid = COALESCE(leg_sid, $3) WHERE attempt_id = $1 AND ring_no = $2",
            attempt_id,
            ring_no,
            leg_sid.as_str()
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The ring could not be placed (Twilio refused it): the callee waits again, the operator is idle.
    pub async fn transfers_ring_failed(&self, attempt_id: i64, ring_no: i32, operator_id: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!(
            "UPDATE transfers SET state = CASE WHEN state = 'ringing' THEN 'waiting' ELSE state END, leg_open = false
             WHERE attempt_id = $1 AND ring_no = $2",
            attempt_id,
            ring_no
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE operators SET engaged = 'idle', engaged_at = now() WHERE id = $1 AND engaged = 'ringing'",
            operator_id
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A status callback of an operator leg (`ring_no` from its signed URL). Answered while the callee
    /// waits: connected, result `transferred`, operator busy — in one transaction. Ended: the transfer
    /// ends (if it was connected) or the callee waits for the next operator (missed: the operator is set
    /// away); the operator is idle again either way. A leg of an earlier ring changes nothing. Returns
    /// what happened, in order (a `completed` that overtook its `in-progress` both connects and ends).
    pub async fn transfers_leg_event(
        &self,
        attempt_id: i64,
        ring_no: i32,
        leg_sid: &CallSid,
        status: CallStatus,
    ) -> Result<Vec<LegApplied>> {
        let mut tx = self.pool.begin().await?;
        // Lock order: attempt, transfer, operator (see the module's note).
        sqlx::query!("SELECT id FROM attempts WHERE id = $1 FOR UPDATE", attempt_id).fetch_optional(&mut *tx).await?;
        let Some(t) = sqlx::query!(
            r#"SELECT t.state AS "state: TransferState", t.ring_no, t.ring_operator_id, t.leg_sid, t.leg_open,
                      t.campaign_id, t.menu, t.requested_at, t.answered_at,
                      o.identity AS "identity?: Identity"
               FROM transfers t LEFT JOIN operators o ON o.id = t.ring_operator_id
               WHERE t.attempt_id = $1 FOR UPDATE OF t"#,
            attempt_id
        )
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Vec::new());
        };
        if t.ring_no != ring_no || t.leg_sid.as_deref().is_some_and(|s| s != leg_sid.as_str()) {
            return Ok(Vec::new());
        }
        if t.leg_sid.is_none() {
            sqlx::query!("UPDATE transfers SET leg_sid = $2 WHERE attempt_id = $1", attempt_id, leg_sid.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let (Some(operator_id), Some(identity)) = (t.ring_operator_id, t.identity) else {
            tx.commit().await?;
            return Ok(Vec::new());
        };
        let now = Utc::now();
        let mut applied = Vec::new();
        // `completed` is only ever reported for a leg that was answered (else no-answer, busy, failed,
        // canceled): arriving before its `in-progress` (callbacks are not ordered), it answers too.
        let answered_now =
            t.state == TransferState::Ringing && matches!(status, CallStatus::InProgress | CallStatus::Completed);
        let mut state = t.state;
        let mut answered_at = t.answered_at;
        if answered_now {
            sqlx::query!(
                "UPDATE transfers SET state = 'connected', operator_id = $2, operator_identity = $3, answered_at = $4
                 WHERE attempt_id = $1",
                attempt_id,
                operator_id,
                identity.as_str(),
                now
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "UPDATE operators SET engaged = 'busy', engaged_at = now(), missed = 0 WHERE id = $1",
                operator_id
            )
            .execute(&mut *tx)
            .await?;
            // The result only now that a person took the call.
            super::results::record_result_in(&mut tx, attempt_id, &t.menu, "", TRANSFERRED_RESULT).await?;
            let waited_s = (now - t.requested_at).num_milliseconds() as f64 / 1000.0;
            applied.push(LegApplied::Connected { campaign_id: t.campaign_id, operator: identity.clone(), waited_s });
            state = TransferState::Connected;
            answered_at = Some(now);
        }
        if status.is_terminal() && t.leg_open {
            let (next, outcome) = match state {
                TransferState::Connected => {
                    let handled_s = answered_at.map(|a| (now - a).num_milliseconds() as f64 / 1000.0).unwrap_or(0.0);
                    (
                        TransferState::Ended,
                        LegApplied::Ended { campaign_id: t.campaign_id, operator: identity, handled_s },
                    )
                }
                TransferState::Ringing => {
                    (TransferState::Waiting, LegApplied::Missed { campaign_id: t.campaign_id, operator: identity })
                }
                // The transfer moved on (abandoned, offered…): the leg just ends.
                other => (other, LegApplied::Nothing),
            };
            sqlx::query!(
                "UPDATE transfers SET state = $2, leg_open = false,
                     ended_at = CASE WHEN $2 = 'ended' THEN COALESCE(ended_at, now()) ELSE ended_at END
                 WHERE attempt_id = $1",
                attempt_id,
                next as _
            )
            .execute(&mut *tx)
            .await?;
            let missed = matches!(outcome, LegApplied::Missed { .. });
            sqlx::query!(
                "UPDATE operators SET engaged = 'idle', engaged_at = now(), available = available AND NOT $2,
                     missed = CASE WHEN $2 THEN missed + 1 ELSE missed END
                 WHERE id = $1 AND engaged <> 'idle'",
                operator_id,
                missed
            )
            .execute(&mut *tx)
            .await?;
            if outcome != LegApplied::Nothing {
                applied.push(outcome);
            }
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// The conference says the callee left it. Still seeking an operator: abandoned (result `abandoned`).
    /// Settling does the same when the call ends, but a caller who called us (an inbound attempt) never
    /// settles. Returns the campaign when it applied.
    pub async fn transfers_callee_left(&self, attempt_id: i64) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let Some(a) = sqlx::query!(
            r#"SELECT campaign_id, contact_id, direction AS "direction: Direction" FROM attempts WHERE id = $1 FOR UPDATE"#,
            attempt_id
        )
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let closed = transfers_close_on_hangup_in(&mut tx, &[attempt_id], true).await?;
        let applied = closed.contains_key(&attempt_id);
        if applied && a.direction == Direction::Inbound {
            super::transitions::contact_result_outside_call_in(
                &mut tx,
                a.contact_id,
                ABANDONED_RESULT,
                "abandoned a call back",
            )
            .await?;
        }
        tx.commit().await?;
        Ok(applied.then_some(a.campaign_id))
    }

    /// Callees who waited past the hold limit move to `offered`, in one statement; the dialer then
    /// redirects each call to the offer (and hangs up a leg still ringing for it).
    pub async fn transfers_hold_expired(&self, limit: i64) -> Result<Vec<HoldExpired>> {
        Ok(sqlx::query_as!(
            HoldExpired,
            r#"UPDATE transfers t SET state = 'offered'
               FROM attempts a
               WHERE a.id = t.attempt_id AND t.attempt_id IN (
                   SELECT attempt_id FROM transfers WHERE state IN ('waiting', 'ringing') AND hold_until <= now()
                   ORDER BY hold_until LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING t.attempt_id, t.campaign_id, a.call_sid AS "call_sid: CallSid""#,
            limit
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Operator legs to hang up: their transfer moved on without them, or they rang `ring_s` + 15 s
    /// without any callback (lost callbacks must not keep an operator ringing for ever).
    pub async fn transfers_legs_to_close(&self, limit: i64) -> Result<Vec<LegToClose>> {
        Ok(sqlx::query!(
            r#"SELECT attempt_id, ring_no, leg_sid AS "leg_sid!: CallSid" FROM transfers
               WHERE leg_open AND leg_sid IS NOT NULL
                 AND (state NOT IN ('ringing', 'connected')
                      OR (state = 'ringing' AND ring_started_at < now() - make_interval(secs => ring_s + 15)))
               LIMIT $1"#,
            limit
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| LegToClose { attempt_id: r.attempt_id, ring_no: r.ring_no, leg_sid: r.leg_sid })
        .collect())
    }

    /// The callee's answer to the call-back offer: `callback_requested` or `no_operator`, recorded as
    /// the attempt's result. Only from `offered`; returns whether it applied.
    pub async fn transfers_offer_answered(&self, attempt_id: i64, wants_callback: bool) -> Result<bool> {
        let (state, result) = if wants_callback {
            (TransferState::CallbackRequested, crate::domain::operators::CALLBACK_REQUESTED_RESULT)
        } else {
            (TransferState::NoOperator, NO_OPERATOR_RESULT)
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query!("SELECT id FROM attempts WHERE id = $1 FOR UPDATE", attempt_id).fetch_optional(&mut *tx).await?;
        let Some(menu) = sqlx::query_scalar!(
            "UPDATE transfers SET state = $2, ended_at = now() WHERE attempt_id = $1 AND state = 'offered' RETURNING menu",
            attempt_id,
            state as _
        )
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(false);
        };
        super::results::record_result_in(&mut tx, attempt_id, &menu, if wants_callback { "1" } else { "" }, result)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A campaign's transfers, newest first.
    pub async fn transfers_list(&self, campaign_id: i64, limit: i64) -> Result<Vec<TransferRow>> {
        Ok(sqlx::query_as!(
            TransferRow,
            r#"SELECT t.attempt_id, t.contact_id, t.campaign_id, t.state AS "state: TransferState",
                      COALESCE(t.operator_identity, o.identity) AS operator, t.requested_at, t.answered_at, t.ended_at
               FROM transfers t LEFT JOIN operators o ON o.id = t.ring_operator_id
               WHERE t.campaign_id = $1 ORDER BY t.requested_at DESC LIMIT $2"#,
            campaign_id,
            limit
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// A campaign's calls in progress, with their waiting-room state: what the console can speak into.
    pub async fn calls_live(&self, campaign_id: i64, limit: i64) -> Result<Vec<LiveCall>> {
        Ok(sqlx::query_as!(
            LiveCall,
            r#"SELECT a.id AS attempt_id, a.contact_id, a.phone AS "phone: E164", a.call_sid AS "call_sid: CallSid",
                      t.state AS "transfer?: TransferState", t.conference_sid AS "conference_sid?",
                      t.operator_identity AS "operator?"
               FROM attempts a LEFT JOIN transfers t ON t.attempt_id = a.id
               WHERE a.campaign_id = $1 AND a.state = 'created' AND a.call_status = 'in-progress'
               ORDER BY a.id LIMIT $2"#,
            campaign_id,
            limit
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// One live call by attempt, for an announcement: `None` unless the call is in progress.
    pub async fn calls_live_one(&self, attempt_id: i64) -> Result<Option<LiveCall>> {
        Ok(sqlx::query_as!(
            LiveCall,
            r#"SELECT a.id AS attempt_id, a.contact_id, a.phone AS "phone: E164", a.call_sid AS "call_sid: CallSid",
                      t.state AS "transfer?: TransferState", t.conference_sid AS "conference_sid?",
                      t.operator_identity AS "operator?"
               FROM attempts a LEFT JOIN transfers t ON t.attempt_id = a.id
               WHERE a.id = $1 AND a.state = 'created' AND a.call_status = 'in-progress'"#,
            attempt_id
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records an announcement before it is sent (its id goes into the URL Twilio fetches).
    pub async fn announcements_insert(&self, attempt_id: i64, text: &str, sent_by: &str, via: &str) -> Result<i64> {
        Ok(sqlx::query_scalar!(
            "INSERT INTO announcements (attempt_id, text, sent_by, via) VALUES ($1, $2, $3, $4) RETURNING id",
            attempt_id,
            text,
            sent_by,
            via
        )
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn announcements_failed(&self, id: i64, error: &str) -> Result<()> {
        sqlx::query!("UPDATE announcements SET error = $2 WHERE id = $1", id, error).execute(&self.pool).await?;
        Ok(())
    }

    /// The text of an announcement of this attempt (the token names the attempt; the id alone does not).
    pub async fn announcements_text(&self, attempt_id: i64, id: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar!("SELECT text FROM announcements WHERE id = $1 AND attempt_id = $2", id, attempt_id)
            .fetch_optional(&self.pool)
            .await?)
    }
}

/// The callee's call ended (settling, under the attempt's lock; or `only_seeking`: the callee left the
/// waiting room, as the conference reports, which is how a caller who called us hangs up): a transfer still seeking an operator is
/// `abandoned` (result `abandoned`), one offered a call back without an answer is `no_operator`, a
/// connected one `ended` and its operator idle. Returns the new state per attempt, and the result
/// recorded for it, so settling reads it as the call's result.
pub(super) async fn transfers_close_on_hangup_in(
    conn: &mut PgConnection,
    attempt_ids: &[i64],
    only_seeking: bool,
) -> Result<HashMap<i64, (TransferState, Option<&'static str>)>> {
    let rows = sqlx::query!(
        r#"WITH t AS (
               UPDATE transfers t SET
                   state = CASE t.state WHEN 'connected' THEN 'ended' WHEN 'offered' THEN 'no_operator'
                                        ELSE 'abandoned' END,
                   ended_at = COALESCE(t.ended_at, now())
               WHERE t.attempt_id = ANY($1)
                 AND (t.state IN ('waiting', 'ringing') OR (NOT $4 AND t.state IN ('connected', 'offered')))
               RETURNING t.attempt_id, t.contact_id, t.campaign_id, t.menu, t.state, t.operator_id
           ), r AS (
               INSERT INTO results (attempt_id, contact_id, campaign_id, menu, digits, result)
               SELECT attempt_id, contact_id, campaign_id, menu, '',
                      CASE state WHEN 'abandoned' THEN $2 ELSE $3 END
               FROM t WHERE state IN ('abandoned', 'no_operator')
               ON CONFLICT (attempt_id, menu, result) DO NOTHING
           ), a AS (
               UPDATE attempts SET result = CASE t.state WHEN 'abandoned' THEN $2 ELSE $3 END
               FROM t WHERE attempts.id = t.attempt_id AND t.state IN ('abandoned', 'no_operator')
                 AND attempts.result IS NULL
           ), o AS (
               UPDATE operators SET engaged = 'idle', engaged_at = now()
               FROM t WHERE operators.id = t.operator_id AND t.state = 'ended' AND operators.engaged = 'busy'
           )
           SELECT attempt_id AS "attempt_id!", state AS "state!: TransferState" FROM t"#,
        attempt_ids,
        ABANDONED_RESULT,
        NO_OPERATOR_RESULT,
        only_seeking,
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let result = match r.state {
                TransferState::Abandoned => Some(ABANDONED_RESULT),
                TransferState::NoOperator => Some(NO_OPERATOR_RESULT),
                _ => None,
            };
            (r.attempt_id, (r.state, result))
        })
        .collect())
}
