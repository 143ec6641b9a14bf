//! SMS fallback: texts queued by the trigger that ends a contact (migration `inbound_and_sms`), sent by
//! the dialer's SMS sender, their delivery callbacks, and replies. Every change of `messages.state` is
//! here, one function per move.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::transitions::contact_result_outside_call_in;
use super::{Result, Store};
use crate::domain::compliance::ZoneSource;
use crate::domain::sms::MessageStatus;
use crate::domain::{MessageState, Outcome, Tz, E164};

/// A text leased to a sender, with what it needs to decide and render it.
#[derive(Debug, Clone)]
pub struct DueMessage {
    pub id: i64,
    pub contact_id: i64,
    pub campaign_id: i64,
    pub phone: E164,
    pub trigger_outcome: Outcome,
    pub attributes: Value,
    pub external_id: Option<String>,
    pub zones: Vec<Tz>,
    pub zone_source: Option<ZoneSource>,
    pub region: Option<String>,
    /// The number is on the global DNC list or the campaign's.
    pub dnc: bool,
    /// Another contact with the same reference (parcel) was reached by a call or already got a text: with
    /// `one_per_external_id` this one is not sent (the same test as the dialing gate's).
    pub reference_notified: bool,
}

/// What a delivery callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageEventApplied {
    /// Stored; the status moved forward (or was already ahead).
    Applied,
    /// The same status of the same message was already stored.
    Duplicate,
    /// The MessageSid is not the message's own (a token swapped onto another message).
    WrongMessage,
    UnknownMessage,
}

/// The text an inbound SMS most likely answers: the newest one sent to that number.
#[derive(Debug, Clone)]
pub struct RepliedMessage {
    pub message_id: i64,
    pub contact_id: i64,
    pub campaign_id: i64,
    pub campaign_spec: Value,
}

/// A campaign's texts by state and delivery status (progress, console, demo).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MessageCounts {
    pub queued: i64,
    pub accepted: i64,
    pub delivered: i64,
    pub undelivered: i64,
    pub failed: i64,
    pub skipped: i64,
    pub rejected: i64,
    pub unknown: i64,
    pub replies: i64,
}

impl Store {
    /// Leases up to `limit` due texts (`pending` → `sending`, not yet requested) in one round trip.
    /// `SKIP LOCKED`, so replicas never take the same text. Index: messages_due.
    pub async fn messages_claim_due(&self, owner: &str, limit: i64, lease_s: f64) -> Result<Vec<DueMessage>> {
        Ok(sqlx::query_as!(
            DueMessage,
            r#"WITH due AS (
                   SELECT id FROM messages WHERE state = 'pending' AND send_after <= now()
                   ORDER BY send_after, id LIMIT $2 FOR UPDATE SKIP LOCKED),
               leased AS (
                   UPDATE messages m SET state = 'sending', lease_owner = $1,
                       lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
                   FROM due WHERE m.id = due.id
                   RETURNING m.id, m.contact_id, m.campaign_id, m.phone, m.trigger_outcome)
               SELECT l.id AS "id!", l.contact_id AS "contact_id!", l.campaign_id AS "campaign_id!",
                      l.phone AS "phone!: E164", l.trigger_outcome AS "trigger_outcome!: Outcome",
                      c.attributes, c.external_id, c.zones AS "zones: Vec<Tz>",
                      c.zone_source AS "zone_source: ZoneSource", c.region,
                      EXISTS (SELECT 1 FROM dnc d WHERE d.phone = l.phone
                                AND (d.campaign_id IS NULL OR d.campaign_id = l.campaign_id)) AS "dnc!",
                      (c.external_id IS NOT NULL AND (
                          EXISTS (SELECT 1 FROM contacts o JOIN attempts oa ON oa.contact_id = o.id
                                  WHERE o.external_id = c.external_id AND o.id <> c.id
                                    AND oa.outcome IN ('answered_result', 'answered_no_result', 'voicemail'))
                          OR EXISTS (SELECT 1 FROM contacts o JOIN messages om ON om.contact_id = o.id
                                     WHERE o.external_id = c.external_id AND o.id <> c.id
                                       AND om.state IN ('accepted', 'unknown')))) AS "reference_notified!"
               FROM leased l JOIN contacts c ON c.id = l.contact_id
               ORDER BY l.id"#,
            owner,
            limit,
            lease_s,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// A leased text waits again (`sending` → `pending`): its window is closed until `at`, or Twilio
    /// refused the create for rate (nothing was created).
    pub async fn messages_defer(&self, id: i64, owner: &str, at: DateTime<Utc>) -> Result<bool> {
        Ok(sqlx::query!(
            "UPDATE messages SET state = 'pending', send_after = $3, lease_owner = NULL, lease_expires_at = NULL,
                 requested_at = NULL, updated_at = now()
             WHERE id = $1 AND state = 'sending' AND lease_owner = $2",
            id,
            owner,
            at
        )
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// A leased text will never be sent (`sending` → `skipped`): DNC, campaign canceled.
    pub async fn messages_skip(&self, id: i64, owner: &str, reason: &str) -> Result<bool> {
        self.messages_close(id, owner, MessageState::Skipped, None, reason).await
    }

    /// Twilio refused the text (`sending` → `rejected`) with its error code.
    pub async fn messages_reject(&self, id: i64, owner: &str, code: Option<i32>, reason: &str) -> Result<bool> {
        self.messages_close(id, owner, MessageState::Rejected, code, reason).await
    }

    /// The POST's fate is unknown (`sending` → `unknown`): never sent again; a delivery callback may still
    /// bind it.
    pub async fn messages_unknown(&self, id: i64, owner: &str, reason: &str) -> Result<bool> {
        self.messages_close(id, owner, MessageState::Unknown, None, reason).await
    }

    async fn messages_close(
        &self,
        id: i64,
        owner: &str,
        to: MessageState,
        code: Option<i32>,
        reason: &str,
    ) -> Result<bool> {
        Ok(sqlx::query!(
            "UPDATE messages SET state = $3, error_code = COALESCE($4, error_code), reason = $5,
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
             WHERE id = $1 AND state = 'sending' AND lease_owner = $2",
            id,
            owner,
            to as _,
            code,
            reason,
        )
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// The commit before the POST: the rendered text and sender are stored and `requested_at` set, so a
    /// sender that dies after this point leaves a text that is never sent twice.
    pub async fn messages_mark_requested(&self, id: i64, owner: &str, body: &str, from: &E164) -> Result<bool> {
        Ok(sqlx::query!(
            "UPDATE messages SET body = $3, from_phone = $4, requested_at = now(), updated_at = now()
             WHERE id = $1 AND state = 'sending' AND lease_owner = $2 AND requested_at IS NULL",
            id,
            owner,
            body,
            from as _,
        )
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Twilio created the message (`sending` → `accepted`). A delivery callback may have come first and
    /// bound the SID and a later status already; the status only moves forward.
    pub async fn messages_accepted(&self, id: i64, sid: &str, status: MessageStatus) -> Result<()> {
        sqlx::query!(
            "UPDATE messages SET state = 'accepted', message_sid = COALESCE(message_sid, $2),
                 status = CASE WHEN status_rank < $4 THEN $3 ELSE status END,
                 status_rank = GREATEST(status_rank, $4), status_at = COALESCE(status_at, now()),
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
             WHERE id = $1 AND state IN ('sending', 'unknown', 'accepted')",
            id,
            sid,
            status as _,
            status.rank(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Texts whose sender died: not yet requested → `pending` again; requested → `unknown` (never
    /// re-sent). Index: messages_leased.
    pub async fn messages_rescue_expired(&self) -> Result<u64> {
        Ok(sqlx::query!(
            "UPDATE messages SET state = CASE WHEN requested_at IS NULL THEN 'pending' ELSE 'unknown' END,
                 reason = CASE WHEN requested_at IS NULL THEN reason ELSE 'sender lost before Twilio answered' END,
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
             WHERE state = 'sending' AND lease_expires_at < now()"
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// A delivery callback, order-free and idempotent: stored once per (MessageSid, status); the SID
    /// bound if the POST's answer has not done it yet; the status moved only forward; an `unknown` text
    /// is now known to exist. One transaction.
    pub async fn messages_status_apply(
        &self,
        message_id: i64,
        sid: &str,
        status: MessageStatus,
        error_code: Option<i32>,
        params: &Value,
    ) -> Result<MessageEventApplied> {
        let mut tx = self.pool.begin().await?;
        let current = sqlx::query_scalar!("SELECT message_sid FROM messages WHERE id = $1 FOR UPDATE", message_id)
            .fetch_optional(&mut *tx)
            .await?;
        match current {
            None => return Ok(MessageEventApplied::UnknownMessage),
            Some(Some(s)) if s != sid => return Ok(MessageEventApplied::WrongMessage),
            Some(None) => {
                let taken = sqlx::query_scalar!("SELECT id FROM messages WHERE message_sid = $1", sid)
                    .fetch_optional(&mut *tx)
                    .await?;
                if taken.is_some() {
                    return Ok(MessageEventApplied::WrongMessage);
                }
            }
            Some(Some(_)) => {}
        }
        let new = sqlx::query!(
            "INSERT INTO message_events (message_id, message_sid, status, params) VALUES ($1, $2, $3, $4)
             ON CONFLICT (message_sid, status) DO NOTHING",
            message_id,
            sid,
            status as _,
            params
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !new {
            return Ok(MessageEventApplied::Duplicate);
        }
        sqlx::query!(
            "UPDATE messages SET message_sid = COALESCE(message_sid, $2),
                 state = CASE WHEN state IN ('sending', 'unknown') THEN 'accepted' ELSE state END,
                 lease_owner = CASE WHEN state IN ('sending', 'unknown') THEN NULL ELSE lease_owner END,
                 lease_expires_at = CASE WHEN state IN ('sending', 'unknown') THEN NULL ELSE lease_expires_at END,
                 status = CASE WHEN status_rank < $4 THEN $3 ELSE status END,
                 error_code = CASE WHEN status_rank < $4 THEN COALESCE($5, error_code) ELSE error_code END,
                 status_rank = GREATEST(status_rank, $4), status_at = now(), updated_at = now()
             WHERE id = $1",
            message_id,
            sid,
            status as _,
            status.rank(),
            error_code,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(MessageEventApplied::Applied)
    }

    /// The newest text sent to `phone` within `lookback`, which an inbound SMS from it answers.
    pub async fn messages_replied(
        &self,
        phone: &E164,
        lookback: std::time::Duration,
    ) -> Result<Option<RepliedMessage>> {
        Ok(sqlx::query_as!(
            RepliedMessage,
            "SELECT m.id AS message_id, m.contact_id, m.campaign_id, k.spec AS campaign_spec
             FROM messages m JOIN campaigns k ON k.id = m.campaign_id
             WHERE m.phone = $1 AND m.state IN ('accepted', 'unknown')
               AND m.created_at > now() - make_interval(secs => $2)
             ORDER BY m.created_at DESC, m.id DESC LIMIT 1",
            phone as _,
            lookback.as_secs_f64(),
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A reply code: the result on the message's contact, as a keypress would record it (the message
    /// first, then the contact). Returns whether the result was new.
    pub async fn messages_reply_result(&self, message_id: i64, code: &str, result: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let m = sqlx::query!("SELECT contact_id FROM messages WHERE id = $1 FOR UPDATE", message_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(m) = m else { return Ok(false) };
        let new = insert_message_result(&mut tx, message_id, code, result).await?;
        contact_result_outside_call_in(&mut tx, m.contact_id, result, "result from an SMS reply").await?;
        tx.commit().await?;
        Ok(new)
    }

    /// A stop word: the number on the global DNC list (source `sms`) at once; a contact still waiting is
    /// blocked now (any other is refused at its next dial by the DNC check); the opt-out recorded on the
    /// message answered, if any. Returns whether the number was new on the list.
    pub async fn messages_stop(&self, phone: &E164, message_id: Option<i64>, body: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if let Some(id) = message_id {
            sqlx::query!("SELECT id FROM messages WHERE id = $1 FOR UPDATE", id).fetch_optional(&mut *tx).await?;
            insert_message_result(&mut tx, id, body, crate::domain::OPTED_OUT_RESULT).await?;
        }
        let new = sqlx::query!(
            "INSERT INTO dnc (phone, campaign_id, reason, source) VALUES ($1, NULL, 'opted out by SMS', 'sms')
             ON CONFLICT (phone) WHERE campaign_id IS NULL DO NOTHING",
            phone as _
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        sqlx::query!(
            "UPDATE contacts SET state = 'blocked', final_outcome = 'opted_out', final_reason = 'opted out by SMS',
                 finished_at = now(), updated_at = now(), next_attempt_at = now(), lease_owner = NULL,
                 lease_expires_at = NULL
             WHERE phone = $1 AND state = 'pending'",
            phone as _
        )
        .execute(&mut *tx)
        .await?;
        // Texts not yet sent to it are never sent.
        sqlx::query!(
            "UPDATE messages SET state = 'skipped', reason = 'opted out by SMS', updated_at = now()
             WHERE phone = $1 AND state = 'pending'",
            phone as _
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new)
    }

    /// A campaign's texts by state and delivery status.
    pub async fn messages_counts(&self, campaign_id: i64) -> Result<MessageCounts> {
        let r = sqlx::query!(
            r#"SELECT count(*) FILTER (WHERE state IN ('pending', 'sending')) AS "queued!",
                      count(*) FILTER (WHERE state = 'accepted') AS "accepted!",
                      count(*) FILTER (WHERE status = 'delivered') AS "delivered!",
                      count(*) FILTER (WHERE status = 'undelivered') AS "undelivered!",
                      count(*) FILTER (WHERE status = 'failed') AS "failed!",
                      count(*) FILTER (WHERE state = 'skipped') AS "skipped!",
                      count(*) FILTER (WHERE state = 'rejected') AS "rejected!",
                      count(*) FILTER (WHERE state = 'unknown') AS "unknown!",
                      (SELECT count(*) FROM results WHERE campaign_id = $1 AND message_id IS NOT NULL) AS "replies!"
               FROM messages WHERE campaign_id = $1"#,
            campaign_id
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(MessageCounts {
            queued: r.queued,
            accepted: r.accepted,
            delivered: r.delivered,
            undelivered: r.undelivered,
            failed: r.failed,
            skipped: r.skipped,
            rejected: r.rejected,
            unknown: r.unknown,
            replies: r.replies,
        })
    }
}

async fn insert_message_result(
    conn: &mut sqlx::PgConnection,
    message_id: i64,
    digits: &str,
    result: &str,
) -> Result<bool> {
    Ok(sqlx::query!(
        "INSERT INTO results (message_id, contact_id, campaign_id, menu, digits, result)
         SELECT m.id, m.contact_id, m.campaign_id, 'sms', $2, $3 FROM messages m WHERE m.id = $1
         ON CONFLICT (message_id, result) WHERE message_id IS NOT NULL DO NOTHING",
        message_id,
        digits,
        result
    )
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1)
}
