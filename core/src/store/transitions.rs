//! The attempt state machine: every statement that changes `attempts.state` is here, one function per
//! [`AttemptTransition`] (see [`AttemptState`] for the diagram).
//!
//! Each move is one guarded statement, applied only if the row is still in a state the move may leave
//! ([`AttemptTransition::from`], bound into the guard so the sets are written once) and, where a lease
//! exists, held by the caller. A stale worker, a late or duplicate callback, or a rescued claim therefore
//! changes nothing, and each function says whether it applied. The contact moves in the same statement
//! (or transaction) as its attempt, and only while it is still on that very attempt
//! (`contacts.attempt_seq = attempts.attempt_no`).
//!
//! Transitions that run inside a caller's transaction (callback batches, settling) take a
//! `&mut PgConnection`; the rest are `Store` methods.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{Result, Store};
use crate::domain::compliance::{ContactZone, ZoneSource};
use crate::domain::{AttemptState, AttemptTransition as T, CallSid, ContactState, FinalState, Outcome, Tz, E164};

/// A contact claimed for one attempt (the attempt row exists, nothing has been sent).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedAttempt {
    pub attempt_id: i64,
    pub contact_id: i64,
    pub campaign_id: i64,
    pub attempt_no: i32,
    pub phone: E164,
    /// The callee's zones as resolved at import; empty (rows from before) means the campaign's.
    pub zones: Vec<Tz>,
    pub zone_source: ZoneSource,
    /// The number's US state, when known.
    pub region: Option<String>,
    pub external_id: Option<String>,
    pub attempts_made: i32,
    pub next_attempt_at: DateTime<Utc>,
}

impl ClaimedAttempt {
    /// The callee's zones, for the calling rules.
    pub fn zone(&self, campaign_tz: Tz) -> ContactZone {
        ContactZone::from_stored(self.zones.clone(), Some(self.zone_source), self.region.clone(), campaign_tz)
    }
}

/// What the pre-POST check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialingGate {
    /// Attempt is now `dialing`, contact `calling`: send the POST.
    Go,
    /// The number is on a DNC list (global or this campaign's).
    Dnc,
    /// The number reached the rolling 24 h limit; `recent` calls in the last day.
    Limit { recent: i64 },
    /// Another contact with the same external reference was already reached.
    AlreadyNotified,
    /// A call to another contact with the same reference is under way: try again once it has ended.
    ReferenceInFlight,
    /// The campaign is no longer running (paused or canceled): give the claim back.
    NotRunning,
    /// The lease was lost (rescued by someone else); do nothing.
    LeaseLost,
}

/// Why a claimed contact must never be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// The number is on a do-not-call list (global or the campaign's).
    Dnc,
    /// Another contact with the same reference was already reached (`one_per_external_id`).
    AlreadyNotified,
}

impl Block {
    pub fn outcome(self) -> Outcome {
        match self {
            Self::Dnc => Outcome::OptedOut,
            Self::AlreadyNotified => Outcome::AlreadyNotified,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Self::Dnc => "number is on the do-not-call list",
            Self::AlreadyNotified => "already notified about this reference",
        }
    }
}

/// The claim statement ([`Store::attempts_claim_due`]), for the benchmarks to EXPLAIN exactly it.
/// Parameters: $1 campaign id, $2 limit, $3 lease owner, $4 lease seconds.
pub const ATTEMPTS_CLAIM_DUE_SQL: &str = include_str!("sql/attempts_claim_due.sql");

impl Store {
    /// **claim**: up to `limit` due contacts of a running campaign, leased to `owner`, in ONE round trip:
    /// due pending contacts (partial index `contacts_due`) with `FOR UPDATE SKIP LOCKED` so replicas never
    /// claim the same one, and their attempt rows. Capped by the campaign's in-flight room.
    pub async fn attempts_claim_due(
        &self,
        campaign_id: i64,
        limit: i64,
        owner: &str,
        lease_s: f64,
    ) -> Result<Vec<ClaimedAttempt>> {
        Ok(sqlx::query_file_as!(
            ClaimedAttempt,
            "src/store/sql/attempts_claim_due.sql",
            campaign_id,
            limit,
            owner,
            lease_s
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// When the next pending contact of these campaigns falls due (past if one already has), or None:
    /// the scheduler sleeps until then instead of a fixed tick. One probe of `contacts_due` per campaign.
    pub async fn contacts_next_due(&self, campaign_ids: &[i64]) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar!(
            r#"SELECT min(d.at) AS "at"
               FROM unnest($1::bigint[]) AS c(id)
               CROSS JOIN LATERAL (
                   SELECT next_attempt_at AS at FROM contacts
                   WHERE campaign_id = c.id AND state = 'pending'
                   ORDER BY next_attempt_at LIMIT 1
               ) d"#,
            campaign_ids
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// **dialing**: the last check and the commit before the POST, for many attempts of one campaign in
    /// one statement (the calls its pacer has just let through). DNC, the rolling 24 h limit
    /// (`max_calls_24h`, per attempt: a state's rule may be stricter than the campaign's; missing entries mean none) and
    /// one-notification-per-reference are checked again; only if all pass does the attempt become
    /// `dialing` (with `requested_at`) and the contact `calling`. Committed before the POST, so a crash
    /// after this point leaves an attempt that reconciliation must resolve before any redial. One gate
    /// per attempt, in order. A campaign's numbers are unique, so attempts of one batch cannot count
    /// towards each other's 24 h limit.
    ///
    /// Limits hold across campaigns running at once: when one applies, the check's transaction first
    /// takes an advisory lock per number and per reference (sorted, so two batches never deadlock), and the
    /// statement after it (a new snapshot) sees every call committed by whoever held the lock before.
    pub async fn attempts_mark_dialing_many(
        &self,
        owner: &str,
        campaign_id: i64,
        attempts: &[ClaimedAttempt],
        max_calls_24h: &[Option<i32>],
        one_per_external_id: bool,
    ) -> Result<Vec<DialingGate>> {
        let ids: Vec<i64> = attempts.iter().map(|a| a.attempt_id).collect();
        let contacts: Vec<i64> = attempts.iter().map(|a| a.contact_id).collect();
        let phones: Vec<&str> = attempts.iter().map(|a| a.phone.as_str()).collect();
        let refs: Vec<Option<&str>> =
            attempts.iter().map(|a| if one_per_external_id { a.external_id.as_deref() } else { None }).collect();
        let mut keys: Vec<String> = attempts
            .iter()
            .zip(max_calls_24h)
            .filter(|(_, m)| m.is_some())
            .map(|(a, _)| format!("phone:{}", a.phone.as_str()))
            .chain(refs.iter().flatten().map(|r| format!("ref:{r}")))
            .collect();
        keys.sort();
        keys.dedup();
        let mut tx = self.begin_hot().await?;
        if !keys.is_empty() {
            sqlx::query!(
                "SELECT pg_advisory_xact_lock(k) FROM (SELECT hashtextextended(x, 0) AS k FROM unnest($1::text[]) x
                 GROUP BY 1 ORDER BY 1) s",
                &keys
            )
            .fetch_all(&mut *tx)
            .await?;
        }
        let rows = sqlx::query!(
            // `mine` locks each attempt and its contact together and requires that the attempt is still the
            // contact's current one under our lease: a claim rescued and re-claimed (even by this same
            // dialer) leaves the stale attempt unable to move either row.
            r#"WITH input AS (
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $7::int[])
                     AS u(attempt_id, contact_id, phone, external_id, max_24h)
             ), mine AS (
                 SELECT a.id AS attempt_id, c.id AS contact_id
                 FROM attempts a JOIN contacts c ON c.id = a.contact_id
                 WHERE a.id = ANY($1) AND a.state = ANY($8::text[]) AND a.lease_owner = $6
                   AND c.state = 'claimed' AND c.lease_owner = $6 AND c.attempt_seq = a.attempt_no
                 ORDER BY a.id
                 FOR UPDATE OF a, c
             ), chk AS (
                 SELECT u.attempt_id,
                        EXISTS (SELECT 1 FROM dnc
                                WHERE dnc.phone = u.phone AND (dnc.campaign_id IS NULL OR dnc.campaign_id = $5)) AS dnc,
                        (SELECT count(*) FROM attempts x
                         WHERE x.phone = u.phone AND x.requested_at > now() - interval '24 hours'
                           AND x.state <> 'not_created') AS recent,
                        u.max_24h,
                        -- Reached: any attempt of another contact with the reference got through, even one
                        -- whose contact is still to be retried for a keypress.
                        (u.external_id IS NOT NULL AND EXISTS (
                            SELECT 1 FROM contacts o JOIN attempts oa ON oa.contact_id = o.id
                            WHERE o.external_id = u.external_id AND o.id <> u.contact_id
                              AND oa.outcome IN ('answered_result', 'answered_no_result', 'voicemail'))) AS notified,
                        (u.external_id IS NOT NULL AND EXISTS (
                            SELECT 1 FROM contacts o WHERE o.external_id = u.external_id AND o.id <> u.contact_id
                              AND o.state = 'calling')) AS ref_in_flight
                 FROM input u
             ), running AS (
                 SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = $5 AND status = 'running') AS running
             ), go AS (
                 SELECT mine.* FROM mine JOIN chk USING (attempt_id), running
                 WHERE NOT chk.dnc AND chk.recent < COALESCE(chk.max_24h, 2147483647) AND NOT chk.notified
                   AND NOT chk.ref_in_flight AND running.running
             ), calling AS (
                 UPDATE contacts SET state = 'calling', attempts_made = attempts_made + 1, last_call_at = now(),
                        updated_at = now()
                 FROM go WHERE contacts.id = go.contact_id
                 RETURNING contacts.id
             ), dialing AS (
                 UPDATE attempts SET state = 'dialing', requested_at = now()
                 FROM go WHERE attempts.id = go.attempt_id
                 RETURNING attempts.id
             )
             SELECT chk.attempt_id AS "attempt_id!", mine.attempt_id IS NOT NULL AS "held!", chk.dnc AS "dnc!",
                    chk.recent AS "recent!", chk.max_24h, chk.notified AS "notified!",
                    chk.ref_in_flight AS "ref_in_flight!", running.running AS "running!",
                    dialing.id IS NOT NULL AS "go!"
             FROM chk CROSS JOIN running
             LEFT JOIN mine ON mine.attempt_id = chk.attempt_id
             LEFT JOIN dialing ON dialing.id = chk.attempt_id"#,
            &ids,
            &contacts,
            &phones as _,
            &refs as _,
            campaign_id,
            owner,
            max_calls_24h as _,
            T::Dialing.from() as _,
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let by_id: HashMap<i64, DialingGate> = rows
            .into_iter()
            .map(|r| {
                let gate = if r.go {
                    DialingGate::Go
                } else if !r.held {
                    DialingGate::LeaseLost
                } else if r.dnc {
                    DialingGate::Dnc
                } else if r.notified {
                    DialingGate::AlreadyNotified
                } else if r.max_24h.is_some_and(|m| r.recent >= m as i64) {
                    DialingGate::Limit { recent: r.recent }
                } else if r.ref_in_flight {
                    DialingGate::ReferenceInFlight
                } else if !r.running {
                    DialingGate::NotRunning
                } else {
                    DialingGate::LeaseLost
                };
                (r.attempt_id, gate)
            })
            .collect();
        Ok(ids.iter().map(|id| by_id.get(id).copied().unwrap_or(DialingGate::LeaseLost)).collect())
    }

    /// **created**: Twilio created the calls (one statement for a batch of POST responses, or a call found
    /// by reconciliation). A callback may already have bound the SID or finished the attempt, so the SID
    /// is only filled in and the state only moves from `dialing`/`parked`; a row a callback has already
    /// bound and moved on is left alone (no new row version for nothing). Returns how many rows changed.
    pub async fn attempts_set_created_many(
        &self,
        attempt_ids: &[i64],
        call_sids: &[&CallSid],
        queue_time_ms: &[Option<i32>],
    ) -> Result<u64> {
        let mut tx = self.begin_hot().await?;
        let n = sqlx::query!(
            // Rows are locked in id order, as callback batches lock them: in arrival order the two
            // deadlocked under load. A row a callback has already bound is not locked at all.
            r#"WITH u AS (
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[]) AS u(id, sid, qt)
             ), todo AS (
                 SELECT a.id FROM attempts a JOIN u ON u.id = a.id
                 WHERE a.call_sid IS NULL OR a.state = ANY($4::text[]) OR (a.queue_time_ms IS NULL AND u.qt IS NOT NULL)
                 ORDER BY a.id
                 FOR UPDATE OF a
             )
             UPDATE attempts a SET call_sid = COALESCE(a.call_sid, u.sid),
                 queue_time_ms = COALESCE(a.queue_time_ms, u.qt),
                 state = CASE WHEN a.state = ANY($4::text[]) THEN 'created' ELSE a.state END
             FROM u, todo
             WHERE a.id = u.id AND todo.id = a.id
               AND (a.call_sid IS NULL OR a.state = ANY($4::text[]) OR (a.queue_time_ms IS NULL AND u.qt IS NOT NULL))"#,
            attempt_ids,
            call_sids as _,
            queue_time_ms as _,
            T::Created.from() as _,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// **parked**: the POST's fate is unknown; the attempt waits for reconciliation and is never re-POSTed
    /// blindly. A callback may already have bound the call and moved it on; the error is kept either way.
    /// Returns whether the attempt is now parked.
    pub async fn attempts_park(&self, attempt_id: i64, error: &str) -> Result<bool> {
        let state = sqlx::query_scalar!(
            r#"UPDATE attempts SET error_message = $2,
                 state = CASE WHEN state = ANY($3::text[]) THEN 'parked' ELSE state END
             WHERE id = $1
             RETURNING state AS "state: AttemptState""#,
            attempt_id,
            error,
            T::Parked.from() as _,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(state == Some(AttemptState::Parked))
    }

    /// **not-created**: proven never created (rejected before creation, or not found by reconciliation).
    /// The attempt is closed and the contact goes back to `pending` at `retry_at` (its attempt count
    /// given back), or, with `final_state`, ends there with `reason`; in a canceled campaign it ends
    /// `canceled`. Returns whether the contact moved.
    pub async fn attempts_not_created(
        &self,
        attempt_id: i64,
        code: Option<i32>,
        reason: &str,
        retry_at: Option<DateTime<Utc>>,
        final_state: Option<FinalState>,
    ) -> Result<bool> {
        let final_state = final_state.map(ContactState::from);
        let n = sqlx::query!(
            "WITH a AS (
                 UPDATE attempts SET state = 'not_created', twilio_error_code = $2, error_message = $3,
                        finished_at = now()
                 WHERE id = $1 AND state = ANY($6::text[]) AND call_sid IS NULL
                 RETURNING contact_id, attempt_no
             )
             UPDATE contacts c SET
                 state = COALESCE($5::text, CASE WHEN k.status = 'canceled' THEN 'canceled' ELSE 'pending' END),
                 attempts_made = GREATEST(0, c.attempts_made - 1),
                 next_attempt_at = COALESCE($4, c.next_attempt_at),
                 final_outcome = CASE WHEN $5::text IS NOT NULL THEN 'rejected'
                                      WHEN k.status = 'canceled' THEN 'canceled' END,
                 final_reason = CASE WHEN $5::text IS NOT NULL THEN $3
                                     WHEN k.status = 'canceled' THEN 'campaign canceled' END,
                 finished_at = CASE WHEN $5::text IS NOT NULL OR k.status = 'canceled' THEN now() END,
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
             FROM a, campaigns k
             WHERE c.id = a.contact_id AND c.state = 'calling' AND c.attempt_seq = a.attempt_no
               AND k.id = c.campaign_id",
            attempt_id,
            code,
            reason,
            retry_at,
            final_state as _,
            T::NotCreated.from() as _,
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// **released**: claims never sent (outside the window, shutting down, limit reached) are undone: the
    /// attempt rows are deleted and the contacts return to `pending` at `next_at`. Guarded by the lease
    /// owner. Returns how many contacts were given back.
    pub async fn attempts_release_many(
        &self,
        owner: &str,
        attempt_ids: &[i64],
        next_at: &[DateTime<Utc>],
    ) -> Result<u64> {
        Ok(sqlx::query!(
            "WITH input AS (
                 SELECT * FROM unnest($2::bigint[], $3::timestamptz[]) AS t(attempt_id, next_at)
             ), gone AS (
                 DELETE FROM attempts a USING input
                 WHERE a.id = input.attempt_id AND a.state = ANY($4::text[]) AND a.lease_owner = $1
                 RETURNING a.contact_id, a.attempt_no, input.next_at
             )
             UPDATE contacts c SET state = 'pending', next_attempt_at = gone.next_at,
                 attempt_seq = c.attempt_seq - 1, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
             FROM gone WHERE c.id = gone.contact_id AND c.state = 'claimed' AND c.lease_owner = $1
               AND c.attempt_seq = gone.attempt_no",
            owner,
            attempt_ids,
            next_at,
            T::Released.from() as _,
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// **blocked**: claimed contacts that must never be called: attempt deleted, contact terminal
    /// `blocked` with the outcome and reason of what stopped it ([`Block`]). Returns how many contacts
    /// were blocked.
    pub async fn attempts_block_many(&self, owner: &str, attempt_ids: &[i64], why: &[Block]) -> Result<u64> {
        let outcomes: Vec<Outcome> = why.iter().map(|b| b.outcome()).collect();
        let reasons: Vec<&str> = why.iter().map(|b| b.reason()).collect();
        Ok(sqlx::query!(
            "WITH input AS (
                 SELECT * FROM unnest($2::bigint[], $3::text[], $5::text[]) AS t(attempt_id, reason, outcome)
             ), gone AS (
                 DELETE FROM attempts a USING input
                 WHERE a.id = input.attempt_id AND a.state = ANY($4::text[]) AND a.lease_owner = $1
                 RETURNING a.contact_id, a.attempt_no, input.reason, input.outcome
             )
             UPDATE contacts c SET state = 'blocked', final_outcome = gone.outcome, final_reason = gone.reason,
                 attempt_seq = c.attempt_seq - 1, finished_at = now(), lease_owner = NULL, lease_expires_at = NULL,
                 updated_at = now()
             FROM gone WHERE c.id = gone.contact_id AND c.state = 'claimed' AND c.lease_owner = $1
               AND c.attempt_seq = gone.attempt_no",
            owner,
            attempt_ids,
            &reasons as _,
            T::Blocked.from() as _,
            &outcomes as _,
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// **rescued**: contacts claimed by a dialer that died before sending anything go back to `pending`
    /// (their unsent attempt rows are deleted). Contacts already `calling` are left to reconciliation.
    /// Index: contacts_leased.
    pub async fn contacts_rescue_expired(&self) -> Result<u64> {
        Ok(sqlx::query!(
            "WITH expired AS (
                 SELECT id FROM contacts
                 WHERE state = 'claimed' AND lease_expires_at < now()
                 FOR UPDATE SKIP LOCKED
             ), gone AS (
                 DELETE FROM attempts a USING expired
                 WHERE a.contact_id = expired.id AND a.state = ANY($1::text[])
                 RETURNING a.contact_id
             )
             UPDATE contacts c SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                 attempt_seq = c.attempt_seq - (SELECT count(*) FROM gone g WHERE g.contact_id = c.id),
                 updated_at = now()
             FROM expired WHERE c.id = expired.id",
            T::Rescued.from() as _,
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

impl Store {
    /// Ends a campaign's contacts in one country that are still waiting (`pending`), after Twilio refused
    /// the country (21215): `invalid` with outcome `rejected` and `reason`. Claimed ones are refused on
    /// their own POST. Returns how many contacts ended.
    pub async fn contacts_reject_country(&self, campaign_id: i64, country_code: u16, reason: &str) -> Result<u64> {
        Ok(sqlx::query!(
            "UPDATE contacts SET state = 'invalid', final_outcome = 'rejected', final_reason = $3,
                 finished_at = now(), updated_at = now()
             WHERE campaign_id = $1 AND state = 'pending' AND phone LIKE '+' || $2 || '%'",
            campaign_id,
            country_code.to_string(),
            reason
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

/// **released** by a cancel: every contact of the campaign not yet called ends `canceled`; claims not yet
/// sent lose their attempt row (a dispatcher still holding one finds its lease gone and sends nothing).
/// Contacts already `calling` end when their call does (settling sees the canceled campaign).
pub(super) async fn cancel_open_in(conn: &mut PgConnection, campaign_id: i64) -> Result<u64> {
    Ok(sqlx::query!(
        "WITH open AS (
             SELECT id FROM contacts WHERE campaign_id = $1 AND state IN ('pending', 'claimed') FOR UPDATE
         ), gone AS (
             DELETE FROM attempts a USING open WHERE a.contact_id = open.id AND a.state = ANY($2::text[])
         )
         UPDATE contacts c SET state = 'canceled', final_outcome = COALESCE(final_outcome, 'canceled'),
             final_reason = 'campaign canceled', finished_at = now(), updated_at = now(),
             lease_owner = NULL, lease_expires_at = NULL
         FROM open WHERE c.id = open.id",
        campaign_id,
        T::Released.from() as _,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

impl Store {
    /// Ends the contacts of canceled campaigns that are waiting again (`pending`). Settling sees a canceled
    /// campaign and ends a contact `canceled`, but a call that ends while the cancel commits can still send
    /// its contact back to pending: the cancel's statement saw it `calling` and skipped it, and the settle
    /// read the campaign before the cancel. Housekeeping runs this every pass, so such a contact ends within
    /// a second. Index: contacts_due (`state = 'pending'`) per canceled campaign.
    pub async fn contacts_cancel_stragglers(&self) -> Result<u64> {
        Ok(sqlx::query!(
            "UPDATE contacts c SET state = 'canceled', final_outcome = COALESCE(c.final_outcome, 'canceled'),
                 final_reason = 'campaign canceled', finished_at = now(), updated_at = now(),
                 lease_owner = NULL, lease_expires_at = NULL
             WHERE c.campaign_id IN (SELECT id FROM campaigns WHERE status = 'canceled') AND c.state = 'pending'"
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

/// What an inbound call found ([`Store::attempts_inbound_begin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundCall {
    /// The caller is a contact (the newest within the look-back): the call is this attempt.
    Contact { attempt_id: i64, campaign_id: i64, contact_id: i64 },
    /// No contact has this number; the newest campaign calling from the dialled number, if any, for its
    /// language and unknown-caller message.
    Unknown { campaign_id: Option<i64> },
}

impl Store {
    /// **inbound**: a call to our caller ID. The caller's newest contact within `lookback` (any campaign
    /// not canceled) gets an attempt of direction `inbound`, born `finished` and numbered apart from our
    /// attempts, carrying the CallSid so its menus and results work as in our calls. Idempotent per
    /// CallSid (Twilio retries a webhook that timed out).
    pub async fn attempts_inbound_begin(
        &self,
        call_sid: &CallSid,
        from: &E164,
        to: Option<&E164>,
        lookback: std::time::Duration,
    ) -> Result<InboundCall> {
        let mut tx = self.pool.begin().await?;
        let known = sqlx::query!(
            "SELECT id, campaign_id, contact_id FROM attempts WHERE call_sid = $1 AND direction = 'inbound'",
            call_sid as _
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(a) = known {
            return Ok(InboundCall::Contact { attempt_id: a.id, campaign_id: a.campaign_id, contact_id: a.contact_id });
        }
        // Locks the contact, so two calls from one number number their attempts one after the other.
        let contact = sqlx::query!(
            "SELECT c.id, c.campaign_id FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
             WHERE c.phone = $1 AND c.created_at > now() - make_interval(secs => $2) AND k.status <> 'canceled'
             ORDER BY c.created_at DESC, c.id DESC LIMIT 1 FOR UPDATE OF c",
            from as _,
            lookback.as_secs_f64(),
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(c) = contact else {
            let campaign_id = match to {
                Some(to) => {
                    sqlx::query_scalar!(
                        "SELECT id FROM campaigns WHERE caller_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
                        to as _
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                }
                None => None,
            };
            return Ok(InboundCall::Unknown { campaign_id });
        };
        let attempt_id = sqlx::query_scalar!(
            "INSERT INTO attempts (contact_id, campaign_id, attempt_no, phone, direction, state, call_sid,
                                   call_status, status_rank, outcome, answered_at, finished_at)
             SELECT $1, $2, COALESCE(max(attempt_no), 0) + 1, $3, 'inbound', $4, $5, 'in-progress', 3,
                    'answered_no_result', now(), now()
             FROM attempts WHERE contact_id = $1 AND direction = 'inbound'
             RETURNING id",
            c.id,
            c.campaign_id,
            from as _,
            T::Inbound.to().map(|s| s.as_str()),
            call_sid as _,
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(InboundCall::Contact { attempt_id, campaign_id: c.campaign_id, contact_id: c.id })
    }
}

/// **a result outside a call** (the contact called back, or replied to the SMS): the contact is reached.
/// Waiting or claimed (its unsent attempt row goes, as a cancel does: the dispatcher finds its claim gone
/// and sends nothing): `done` now. Calling: the result waits on the row and settling ends it `done`
/// instead of retrying. Already ended unreached (`exhausted`): `done` with the result. Callers lock
/// what they came through (attempt or message) first, then this contact.
pub(super) async fn contact_result_outside_call_in(
    conn: &mut PgConnection,
    contact_id: i64,
    result: &str,
    reason: &str,
) -> Result<()> {
    sqlx::query!(
        "DELETE FROM attempts WHERE contact_id = $1 AND state = 'claimed' AND direction = 'outbound'",
        contact_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE contacts SET result = $2, updated_at = now(),
             state = CASE WHEN state IN ('pending', 'claimed', 'exhausted') THEN 'done' ELSE state END,
             final_outcome = CASE WHEN state IN ('pending', 'claimed', 'exhausted') THEN 'answered_result'
                                  ELSE final_outcome END,
             final_reason = CASE WHEN state IN ('pending', 'claimed', 'exhausted') THEN $3 ELSE final_reason END,
             finished_at = CASE WHEN state IN ('pending', 'claimed', 'exhausted') THEN now() ELSE finished_at END,
             lease_owner = CASE WHEN state = 'calling' THEN lease_owner END,
             lease_expires_at = CASE WHEN state = 'calling' THEN lease_expires_at END
         WHERE id = $1 AND state IN ('pending', 'claimed', 'calling', 'exhausted', 'done')",
        contact_id,
        result,
        reason,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether a request's CallSid may act on the attempt its token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// The attempt carries this CallSid (possibly just set by this call).
    Bound,
    /// The attempt, or this CallSid, belongs to another call.
    WrongCall,
    UnknownAttempt,
}

/// **created** by a callback: the first genuine request of a call binds its CallSid to the attempt if
/// the dialer has not recorded it yet (the attempt may still be `dialing` or `parked`). Writes nothing
/// when the attempt, or the CallSid, belongs to another call (a swapped token).
pub(super) async fn bind_call_sid_in(conn: &mut PgConnection, attempt_id: i64, call_sid: &CallSid) -> Result<Binding> {
    let current = sqlx::query_scalar!(
        r#"SELECT call_sid AS "call_sid: CallSid" FROM attempts WHERE id = $1 FOR UPDATE"#,
        attempt_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    match current {
        None => Ok(Binding::UnknownAttempt),
        Some(Some(sid)) if &sid == call_sid => Ok(Binding::Bound),
        Some(Some(_)) => Ok(Binding::WrongCall),
        Some(None) => {
            // Guard: the CallSid must not already belong to another attempt (a token swapped onto an
            // attempt whose own call is not yet known).
            let bound = sqlx::query_scalar!(
                "UPDATE attempts SET call_sid = $2,
                     state = CASE WHEN state = ANY($3::text[]) THEN 'created' ELSE state END
                 WHERE id = $1 AND call_sid IS NULL
                   AND NOT EXISTS (SELECT 1 FROM attempts o WHERE o.call_sid = $2 AND o.id <> $1)
                 RETURNING id",
                attempt_id,
                call_sid as _,
                T::Created.from() as _,
            )
            .fetch_optional(&mut *conn)
            .await?;
            Ok(if bound.is_some() { Binding::Bound } else { Binding::WrongCall })
        }
    }
}

/// One attempt's order-free facts from a batch of non-terminal (or not yet applied) callbacks.
#[derive(Debug, Clone)]
pub(super) struct Progress<'a> {
    pub attempt_id: i64,
    pub call_sid: &'a CallSid,
    /// The earliest answer seen, whatever came first.
    pub answered_at: Option<DateTime<Utc>>,
    pub queue_time_ms: Option<i32>,
    pub last_event_at: Option<DateTime<Utc>>,
    /// The batch's highest-ranked status: applied only if non-terminal and ahead of the stored one.
    pub forward: Option<(crate::domain::CallStatus, Option<crate::domain::AnsweredBy>)>,
}

/// **answered**: a batch of callbacks' facts, one statement for every attempt: the CallSid bound (a
/// `dialing` or `parked` attempt becomes `created`), the earliest answer, the queue time, and a
/// non-terminal status only forward (a late `ringing` never replaces `in-progress`) and only while the
/// call is open. Terminal statuses go through [`finished_many_in`]. A row this batch brings nothing new
/// to is not written.
pub(super) async fn answered_many_in(conn: &mut PgConnection, items: &[Progress<'_>]) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = items.iter().map(|p| p.attempt_id).collect();
    let sids: Vec<&CallSid> = items.iter().map(|p| p.call_sid).collect();
    let answered: Vec<Option<DateTime<Utc>>> = items.iter().map(|p| p.answered_at).collect();
    let qt: Vec<Option<i32>> = items.iter().map(|p| p.queue_time_ms).collect();
    let last: Vec<Option<DateTime<Utc>>> = items.iter().map(|p| p.last_event_at).collect();
    let fwd: Vec<bool> = items.iter().map(|p| p.forward.is_some()).collect();
    let status: Vec<Option<&str>> = items.iter().map(|p| p.forward.map(|(s, _)| s.as_str())).collect();
    let rank: Vec<i16> = items.iter().map(|p| p.forward.map_or(0, |(s, _)| s.rank() as i16)).collect();
    let by: Vec<Option<&str>> = items.iter().map(|p| p.forward.and_then(|(_, b)| b).map(|b| b.as_str())).collect();
    sqlx::query!(
        // The forward guard is repeated per column: an UPDATE cannot name its own target row in a LATERAL.
        "UPDATE attempts a SET
             call_sid = COALESCE(a.call_sid, u.sid),
             state = CASE WHEN a.state = ANY($10::text[]) THEN 'created' ELSE a.state END,
             answered_at = LEAST(a.answered_at, u.answered_at),
             queue_time_ms = COALESCE(a.queue_time_ms, u.qt),
             last_event_at = GREATEST(a.last_event_at, u.last_at),
             call_status = CASE WHEN u.fwd AND a.status_rank < u.rank AND a.state = ANY($11::text[])
                                THEN u.status ELSE a.call_status END,
             status_rank = CASE WHEN u.fwd AND a.status_rank < u.rank AND a.state = ANY($11::text[])
                                THEN u.rank ELSE a.status_rank END,
             answered_by = CASE WHEN u.fwd AND a.status_rank < u.rank AND a.state = ANY($11::text[])
                                THEN COALESCE(u.answered_by, a.answered_by) ELSE a.answered_by END
         FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::int[], $5::timestamptz[], $6::bool[],
                     $7::text[], $8::smallint[], $9::text[])
              AS u(id, sid, answered_at, qt, last_at, fwd, status, rank, answered_by)
         WHERE a.id = u.id
           -- Only a row with something new gets a new version (a late `ringing` alone writes nothing;
           -- `last_event_at` rides along but never causes a write).
           AND (a.call_sid IS NULL OR a.state = ANY($10::text[])
                OR (u.answered_at IS NOT NULL AND (a.answered_at IS NULL OR u.answered_at < a.answered_at))
                OR (a.queue_time_ms IS NULL AND u.qt IS NOT NULL)
                OR (u.fwd AND a.status_rank < u.rank AND a.state = ANY($11::text[])))",
        &ids,
        &sids as _,
        &answered as _,
        &qt as _,
        &last as _,
        &fwd,
        &status as _,
        &rank,
        &by as _,
        T::Created.from() as _,
        T::Answered.from() as _,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A settled attempt, as [`finished_many_in`] writes it.
#[derive(Debug, Clone)]
pub(super) struct Finish<'a> {
    pub attempt_id: i64,
    pub contact_id: i64,
    pub attempt_no: i32,
    pub call_sid: Option<&'a CallSid>,
    pub status: crate::domain::CallStatus,
    pub outcome: Outcome,
    pub answered_by: Option<crate::domain::AnsweredBy>,
    pub sip_response_code: Option<i32>,
    pub duration_s: Option<i32>,
    pub ended_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub queue_time_ms: Option<i32>,
    pub requested_at: Option<DateTime<Utc>>,
    /// The decision for the contact: retry at a time, or end in a final state.
    pub next: ContactNext<'a>,
}

#[derive(Debug, Clone)]
pub(super) enum ContactNext<'a> {
    Retry { at: DateTime<Utc> },
    Final { state: FinalState, reason: &'a str, result: Option<&'a str> },
}

/// What [`finished_many_in`] applied.
pub(super) struct Finished {
    /// Attempts that were still open and are now `finished`.
    pub attempts: HashSet<i64>,
    /// Contacts that moved on (only while still `calling` on the finished attempt).
    pub contacts: HashSet<i64>,
}

/// **finished**: terminal statuses with what settling decided, in a constant number of statements: the
/// attempts (only while open), then the contacts that retry and those that end (only while still
/// calling on this very attempt: a lease rescue or a newer attempt has taken over otherwise, and this
/// late report must not touch it). Each contact at most once per call (the caller's rounds ensure it).
pub(super) async fn finished_many_in(conn: &mut PgConnection, items: &[Finish<'_>]) -> Result<Finished> {
    let ids: Vec<i64> = items.iter().map(|f| f.attempt_id).collect();
    let sids: Vec<Option<&CallSid>> = items.iter().map(|f| f.call_sid).collect();
    let statuses: Vec<&str> = items.iter().map(|f| f.status.as_str()).collect();
    let outcomes: Vec<Outcome> = items.iter().map(|f| f.outcome).collect();
    let answered: Vec<Option<&str>> = items.iter().map(|f| f.answered_by.map(|b| b.as_str())).collect();
    let sip: Vec<Option<i32>> = items.iter().map(|f| f.sip_response_code).collect();
    let duration: Vec<Option<i32>> = items.iter().map(|f| f.duration_s).collect();
    let ended: Vec<Option<DateTime<Utc>>> = items.iter().map(|f| f.ended_at).collect();
    let answered_at: Vec<Option<DateTime<Utc>>> = items.iter().map(|f| f.answered_at).collect();
    let qt: Vec<Option<i32>> = items.iter().map(|f| f.queue_time_ms).collect();
    let attempts: HashSet<i64> = sqlx::query_scalar!(
        "UPDATE attempts a SET state = 'finished', call_sid = COALESCE(a.call_sid, u.sid), call_status = u.status,
             status_rank = 4, outcome = u.outcome, answered_by = u.answered_by,
             sip_response_code = COALESCE(u.sip, a.sip_response_code),
             duration_s = COALESCE(u.duration, a.duration_s), ended_at = COALESCE(u.ended_at, now()),
             answered_at = LEAST(a.answered_at, u.answered_at), queue_time_ms = COALESCE(a.queue_time_ms, u.qt),
             last_event_at = GREATEST(a.last_event_at, u.ended_at), finished_at = now()
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[],
                     $8::timestamptz[], $10::timestamptz[], $11::int[])
              AS u(id, sid, status, outcome, answered_by, sip, duration, ended_at, answered_at, qt)
         WHERE a.id = u.id AND a.state = ANY($9::text[])
         RETURNING a.id",
        &ids,
        &sids as _,
        &statuses as _,
        &outcomes as _,
        &answered as _,
        &sip as _,
        &duration as _,
        &ended as _,
        T::Finished.from() as _,
        &answered_at as _,
        &qt as _,
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();

    let (mut r_cid, mut r_no, mut r_at, mut r_req) = (vec![], vec![], vec![], vec![]);
    let (mut f_cid, mut f_no, mut f_state, mut f_outcome, mut f_reason, mut f_result, mut f_req) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for f in items.iter().filter(|f| attempts.contains(&f.attempt_id)) {
        match &f.next {
            ContactNext::Retry { at } => {
                r_cid.push(f.contact_id);
                r_no.push(f.attempt_no);
                r_at.push(*at);
                r_req.push(f.requested_at);
            }
            ContactNext::Final { state, reason, result } => {
                f_cid.push(f.contact_id);
                f_no.push(f.attempt_no);
                f_state.push(ContactState::from(*state));
                f_outcome.push(f.outcome);
                f_reason.push(*reason);
                f_result.push(*result);
                f_req.push(f.requested_at);
            }
        }
    }
    let mut contacts: HashSet<i64> = HashSet::new();
    if !r_cid.is_empty() {
        contacts.extend(
            sqlx::query_scalar!(
                // A result the contact gave while this call was under way (calling back, an SMS
                // reply) ends it `done` instead of retrying.
                "UPDATE contacts c SET state = CASE WHEN c.result IS NULL THEN 'pending' ELSE 'done' END,
                     final_outcome = CASE WHEN c.result IS NULL THEN c.final_outcome ELSE 'answered_result' END,
                     final_reason = CASE WHEN c.result IS NULL THEN c.final_reason ELSE 'result given outside a call' END,
                     finished_at = CASE WHEN c.result IS NULL THEN NULL ELSE now() END,
                     next_attempt_at = u.at, lease_owner = NULL,
                     lease_expires_at = NULL, last_call_at = GREATEST(c.last_call_at, u.requested_at),
                     updated_at = now()
                 FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::timestamptz[])
                      AS u(id, attempt_no, at, requested_at)
                 WHERE c.id = u.id AND c.state = 'calling' AND c.attempt_seq = u.attempt_no
                 RETURNING c.id",
                &r_cid,
                &r_no,
                &r_at,
                &r_req as _,
            )
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    if !f_cid.is_empty() {
        contacts.extend(
            sqlx::query_scalar!(
                "UPDATE contacts c SET state = u.state, final_outcome = u.outcome, final_reason = u.reason,
                     result = COALESCE(u.result, c.result),
                     last_call_at = GREATEST(c.last_call_at, u.requested_at), finished_at = now(),
                     updated_at = now(), lease_owner = NULL, lease_expires_at = NULL
                 FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[],
                             $7::timestamptz[]) AS u(id, attempt_no, state, outcome, reason, result, requested_at)
                 WHERE c.id = u.id AND c.state = 'calling' AND c.attempt_seq = u.attempt_no
                 RETURNING c.id",
                &f_cid,
                &f_no,
                &f_state as _,
                &f_outcome as _,
                &f_reason as _,
                &f_result as _,
                &f_req as _,
            )
            .fetch_all(&mut *conn)
            .await?,
        );
    }
    Ok(Finished { attempts, contacts })
}
