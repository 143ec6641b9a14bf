//! `call_events`: StatusCallbacks and async AMD results, each stored once, and the monotonic attempt
//! transitions they drive (DESIGN.md guarantee 3).
//!
//! Every write here first checks that the request's CallSid belongs to the attempt its token names: an
//! attempt's `call_sid` is set by the first genuine callback if the dialer has not recorded it yet (the
//! attempt may still be `dialing` or `parked`), and from then on a different CallSid is a swapped token and
//! nothing is written.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use super::results::{settle_in, Settled, TerminalFacts};
use super::{Result, Store};
use crate::domain::{AnsweredBy, CallSid, CallStatus};

/// One StatusCallback, parsed at the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEvent {
    /// The attempt named by the (verified) token in the callback URL.
    pub attempt_id: i64,
    pub call_sid: CallSid,
    pub status: CallStatus,
    /// Twilio's `SequenceNumber` (per call, from 0). With the CallSid it identifies the event.
    pub sequence_number: i32,
    pub call_duration_s: Option<i32>,
    pub sip_response_code: Option<i32>,
    pub answered_by: Option<AnsweredBy>,
    /// Twilio's `Timestamp` of the event; `answered_at` / `ended_at` come from it so that they do not
    /// depend on the order of delivery.
    pub timestamp: Option<DateTime<Utc>>,
    pub queue_time_ms: Option<i32>,
    /// The `I-Twilio-Idempotency-Token` header: the same token is a retried delivery.
    pub idempotency_token: Option<String>,
    /// Every form parameter, kept for audit.
    pub params: Value,
}

/// What storing one callback did.
#[derive(Debug, Clone, PartialEq)]
pub enum EventApplied {
    /// First delivery: stored, and the attempt advanced if this was its newest status.
    New {
        /// An event of this call with a higher rank had already been applied (or came earlier in the batch).
        out_of_order: bool,
        /// Set when this event finished the attempt.
        settled: Option<Settled>,
    },
    /// Already stored (same CallSid and sequence number, or the same idempotency token): nothing changed.
    Duplicate,
    /// The token names an attempt that belongs to another CallSid: nothing written.
    WrongCall,
    /// The token is genuine but its attempt does not exist (any more).
    UnknownAttempt,
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

/// What an async AMD callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmdApplied {
    New,
    Duplicate,
    WrongCall,
    UnknownAttempt,
}

/// The sequence number stored for an async AMD result: one per call.
const AMD_SEQUENCE: i32 = 0;

impl Store {
    /// Stores a batch of StatusCallbacks in one transaction and applies their transitions; one answer per
    /// event, in order. Events are inserted with one `unnest` statement (duplicates skipped by the unique
    /// keys); the new events of each attempt are reduced to the highest rank before the attempt is touched,
    /// and a terminal one settles the attempt and its contact ([`Store::attempts_settle`]).
    pub async fn events_apply_many(&self, events: &[StatusEvent]) -> Result<Vec<EventApplied>> {
        let mut tx = self.pool.begin().await?;
        let out = apply_many_in(&mut tx, events).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Stores an async AMD result once (kind `amd`) and records `AnsweredBy` on the attempt while its call
    /// is still open.
    pub async fn events_record_amd(
        &self,
        attempt_id: i64,
        call_sid: &CallSid,
        answered_by: AnsweredBy,
        params: &Value,
    ) -> Result<AmdApplied> {
        let mut tx = self.pool.begin().await?;
        match bind_call_sid_in(&mut tx, attempt_id, call_sid).await? {
            Binding::Bound => {}
            Binding::WrongCall => return Ok(AmdApplied::WrongCall),
            Binding::UnknownAttempt => return Ok(AmdApplied::UnknownAttempt),
        }
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO call_events (attempt_id, call_sid, kind, sequence_number, params)
             VALUES ($1, $2, 'amd', $3, $4)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(attempt_id)
        .bind(call_sid.as_str())
        .bind(AMD_SEQUENCE)
        .bind(params)
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            return Ok(AmdApplied::Duplicate);
        }
        // Only while the call is open: a finished attempt was classified with what was known then.
        sqlx::query(
            "UPDATE attempts SET answered_by = $2
             WHERE id = $1 AND state IN ('dialing', 'created', 'parked')",
        )
        .bind(attempt_id)
        .bind(answered_by.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AmdApplied::New)
    }

    /// Checks that `call_sid` may act on the attempt, setting the attempt's `call_sid` if it is still
    /// unknown (a callback can beat the dialer's own record of the POST response). Writes nothing when
    /// the CallSid belongs to another attempt.
    pub async fn attempts_bind_call_sid(&self, attempt_id: i64, call_sid: &CallSid) -> Result<Binding> {
        let mut tx = self.pool.begin().await?;
        let b = bind_call_sid_in(&mut tx, attempt_id, call_sid).await?;
        tx.commit().await?;
        Ok(b)
    }

    /// Sets an attempt up as the dialer would have just before its POST, for tests: the contact's next
    /// attempt row in `state`, the contact `calling` on it (attempt_seq and attempts_made counted).
    #[doc(hidden)]
    pub async fn testing_insert_attempt(
        &self,
        contact_id: i64,
        state: &str,
        call_sid: Option<&CallSid>,
    ) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let (campaign_id, phone, seq): (i64, String, i32) = sqlx::query_as(
            "UPDATE contacts SET state = 'calling', attempt_seq = attempt_seq + 1, attempts_made = attempts_made + 1,
                 last_call_at = now(), updated_at = now()
             WHERE id = $1 RETURNING campaign_id, phone, attempt_seq",
        )
        .bind(contact_id)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO attempts (contact_id, campaign_id, attempt_no, phone, state, call_sid, requested_at)
             VALUES ($1, $2, $3, $4, $5, $6, now()) RETURNING id",
        )
        .bind(contact_id)
        .bind(campaign_id)
        .bind(seq)
        .bind(phone)
        .bind(state)
        .bind(call_sid.map(CallSid::as_str))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }
}

async fn bind_call_sid_in(conn: &mut PgConnection, attempt_id: i64, call_sid: &CallSid) -> Result<Binding> {
    let current: Option<(Option<String>,)> = sqlx::query_as("SELECT call_sid FROM attempts WHERE id = $1 FOR UPDATE")
        .bind(attempt_id)
        .fetch_optional(&mut *conn)
        .await?;
    match current {
        None => Ok(Binding::UnknownAttempt),
        Some((Some(sid),)) if sid == call_sid.as_str() => Ok(Binding::Bound),
        Some((Some(_),)) => Ok(Binding::WrongCall),
        Some((None,)) => {
            // Guard: the CallSid must not already belong to another attempt (a token swapped onto an
            // attempt whose own call is not yet known).
            let bound: Option<i64> = sqlx::query_scalar(
                "UPDATE attempts SET call_sid = $2,
                     state = CASE WHEN state = 'parked' THEN 'created' ELSE state END
                 WHERE id = $1 AND call_sid IS NULL
                   AND NOT EXISTS (SELECT 1 FROM attempts o WHERE o.call_sid = $2 AND o.id <> $1)
                 RETURNING id",
            )
            .bind(attempt_id)
            .bind(call_sid.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            Ok(if bound.is_some() { Binding::Bound } else { Binding::WrongCall })
        }
    }
}

#[derive(sqlx::FromRow)]
struct Locked {
    id: i64,
    call_sid: Option<String>,
    status_rank: i16,
}

async fn apply_many_in(conn: &mut PgConnection, events: &[StatusEvent]) -> Result<Vec<EventApplied>> {
    let mut ids: Vec<i64> = events.iter().map(|e| e.attempt_id).collect();
    ids.sort_unstable();
    ids.dedup();
    // Locks the batch's attempts in id order, so concurrent writers (replicas) cannot deadlock.
    let locked: Vec<Locked> =
        sqlx::query_as("SELECT id, call_sid, status_rank FROM attempts WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
    let sids: Vec<&str> = events.iter().map(|e| e.call_sid.as_str()).collect();
    let owners: HashMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT call_sid, id FROM attempts WHERE call_sid = ANY($1)")
            .bind(&sids)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();

    // Which call each attempt belongs to, as this batch goes: the first genuine CallSid binds an
    // attempt that has none yet.
    let mut bound: HashMap<i64, Option<String>> = locked.iter().map(|l| (l.id, l.call_sid.clone())).collect();
    let rank_before: HashMap<i64, i16> = locked.iter().map(|l| (l.id, l.status_rank)).collect();
    let mut out: Vec<Option<EventApplied>> = vec![None; events.len()];
    let mut accepted: Vec<usize> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Some(current) = bound.get_mut(&e.attempt_id) else {
            out[i] = Some(EventApplied::UnknownAttempt);
            continue;
        };
        let sid = e.call_sid.as_str();
        let owned_elsewhere = owners.get(sid).is_some_and(|owner| *owner != e.attempt_id);
        match current {
            _ if owned_elsewhere => out[i] = Some(EventApplied::WrongCall),
            Some(s) if s != sid => out[i] = Some(EventApplied::WrongCall),
            Some(_) => accepted.push(i),
            None => {
                *current = Some(sid.to_string());
                accepted.push(i);
            }
        }
    }

    // One statement for every event; a retried delivery hits a unique key and is skipped.
    let a_ids: Vec<i64> = accepted.iter().map(|&i| events[i].attempt_id).collect();
    let a_sids: Vec<&str> = accepted.iter().map(|&i| events[i].call_sid.as_str()).collect();
    let a_seq: Vec<i32> = accepted.iter().map(|&i| events[i].sequence_number).collect();
    let a_status: Vec<&str> = accepted.iter().map(|&i| events[i].status.as_str()).collect();
    let a_tokens: Vec<Option<&str>> = accepted.iter().map(|&i| events[i].idempotency_token.as_deref()).collect();
    let a_params: Vec<&Value> = accepted.iter().map(|&i| &events[i].params).collect();
    let inserted: Vec<(String, i32)> = sqlx::query_as(
        "INSERT INTO call_events (attempt_id, call_sid, kind, sequence_number, call_status, idempotency_token, params)
         SELECT a, s, 'status', n, st, t, p
         FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[], $6::jsonb[]) AS u(a, s, n, st, t, p)
         ON CONFLICT DO NOTHING
         RETURNING call_sid, sequence_number",
    )
    .bind(&a_ids)
    .bind(&a_sids)
    .bind(&a_seq)
    .bind(&a_status)
    .bind(&a_tokens)
    .bind(&a_params)
    .fetch_all(&mut *conn)
    .await?;
    let mut fresh: HashSet<(String, i32)> = inserted.into_iter().collect();

    // New events per attempt, in sequence order.
    let mut per_attempt: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for &i in &accepted {
        let e = &events[i];
        // The first input with a stored key is the new one; a copy later in the batch is a duplicate.
        if fresh.remove(&(e.call_sid.as_str().to_string(), e.sequence_number)) {
            per_attempt.entry(e.attempt_id).or_default().push(i);
        } else {
            out[i] = Some(EventApplied::Duplicate);
        }
    }

    for (attempt_id, mut idx) in per_attempt {
        idx.sort_by_key(|&i| events[i].sequence_number);
        let mut seen = rank_before.get(&attempt_id).copied().unwrap_or(0) as u8;
        let mut out_of_order = Vec::with_capacity(idx.len());
        for &i in &idx {
            let r = events[i].status.rank();
            out_of_order.push(r < seen);
            seen = seen.max(r);
        }
        // The one event this batch applies to the attempt: the highest rank (first of equals).
        let best =
            idx.iter().copied().max_by_key(|&i| (events[i].status.rank(), std::cmp::Reverse(i))).expect("non-empty");
        let answered_at = idx
            .iter()
            .filter(|&&i| events[i].status == CallStatus::InProgress)
            .map(|&i| events[i].timestamp.unwrap_or_else(Utc::now))
            .min();
        let queue_time_ms = idx.iter().find_map(|&i| events[i].queue_time_ms);
        let last_event_at = idx.iter().filter_map(|&i| events[i].timestamp).max();
        let sid = events[best].call_sid.as_str();

        // Order-free facts: `answered_at` is the earliest answer whatever came first, even after the end.
        sqlx::query(
            "UPDATE attempts SET
                 call_sid = COALESCE(call_sid, $2),
                 state = CASE WHEN state = 'parked' THEN 'created' ELSE state END,
                 answered_at = LEAST(answered_at, $3),
                 queue_time_ms = COALESCE(queue_time_ms, $4),
                 last_event_at = GREATEST(last_event_at, $5)
             WHERE id = $1",
        )
        .bind(attempt_id)
        .bind(sid)
        .bind(answered_at)
        .bind(queue_time_ms)
        .bind(last_event_at)
        .execute(&mut *conn)
        .await?;

        let e = &events[best];
        let mut settled = None;
        if e.status.is_terminal() {
            let facts = TerminalFacts {
                call_sid: Some(e.call_sid.clone()),
                status: e.status,
                answered_by: e.answered_by,
                sip_response_code: e.sip_response_code,
                duration_s: e.call_duration_s,
                ended_at: e.timestamp,
            };
            let s = settle_in(conn, attempt_id, &facts).await?;
            if s.applied {
                settled = Some(s);
            }
        } else {
            // Guarded: only forward (a late `ringing` never replaces `in-progress`), never once finished.
            sqlx::query(
                "UPDATE attempts SET call_status = $2, status_rank = $3,
                     answered_by = COALESCE($4, answered_by)
                 WHERE id = $1 AND status_rank < $3 AND state IN ('dialing', 'created', 'parked')",
            )
            .bind(attempt_id)
            .bind(e.status.as_str())
            .bind(e.status.rank() as i16)
            .bind(e.answered_by.map(AnsweredBy::as_str))
            .execute(&mut *conn)
            .await?;
        }
        for (k, &i) in idx.iter().enumerate() {
            out[i] = Some(EventApplied::New {
                out_of_order: out_of_order[k],
                settled: if i == best { settled.clone() } else { None },
            });
        }
    }
    Ok(out.into_iter().map(|o| o.expect("every event answered")).collect())
}
