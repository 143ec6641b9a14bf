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

use super::results::{settle_many_in, Settled, TerminalFacts};
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

    // Per attempt: its order-free facts, and the one event this batch applies (the highest rank).
    let n = per_attempt.len();
    let (mut f_id, mut f_sid, mut f_answered, mut f_qt, mut f_last) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut f_fwd, mut f_status, mut f_rank, mut f_by) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let mut terminal: Vec<(i64, TerminalFacts)> = Vec::new();
    let mut plan: Vec<(i64, Vec<usize>, usize, Vec<bool>)> = Vec::with_capacity(n);
    for (attempt_id, mut idx) in per_attempt {
        idx.sort_by_key(|&i| events[i].sequence_number);
        let mut seen = rank_before.get(&attempt_id).copied().unwrap_or(0) as u8;
        let mut out_of_order = Vec::with_capacity(idx.len());
        for &i in &idx {
            let r = events[i].status.rank();
            out_of_order.push(r < seen);
            seen = seen.max(r);
        }
        let best =
            idx.iter().copied().max_by_key(|&i| (events[i].status.rank(), std::cmp::Reverse(i))).expect("non-empty");
        let e = &events[best];
        f_id.push(attempt_id);
        f_sid.push(e.call_sid.as_str());
        // Order-free: `answered_at` is the earliest answer whatever came first, even after the end.
        f_answered.push(
            idx.iter()
                .filter(|&&i| events[i].status == CallStatus::InProgress)
                .map(|&i| events[i].timestamp.unwrap_or_else(Utc::now))
                .min(),
        );
        f_qt.push(idx.iter().find_map(|&i| events[i].queue_time_ms));
        f_last.push(idx.iter().filter_map(|&i| events[i].timestamp).max());
        f_fwd.push(!e.status.is_terminal());
        f_status.push(e.status.as_str());
        f_rank.push(e.status.rank() as i16);
        f_by.push(e.answered_by.map(AnsweredBy::as_str));
        if e.status.is_terminal() {
            terminal.push((
                attempt_id,
                TerminalFacts {
                    call_sid: Some(e.call_sid.clone()),
                    status: e.status,
                    answered_by: e.answered_by,
                    sip_response_code: e.sip_response_code,
                    duration_s: e.call_duration_s,
                    ended_at: e.timestamp,
                },
            ));
        }
        plan.push((attempt_id, idx, best, out_of_order));
    }

    // Every attempt of the batch in one statement: the facts, and a non-terminal status only forward (a
    // late `ringing` never replaces `in-progress`) and never once finished. Terminal ones settle below.
    if !f_id.is_empty() {
        sqlx::query(
            "UPDATE attempts a SET
                 call_sid = COALESCE(a.call_sid, u.sid),
                 state = CASE WHEN a.state = 'parked' THEN 'created' ELSE a.state END,
                 answered_at = LEAST(a.answered_at, u.answered_at),
                 queue_time_ms = COALESCE(a.queue_time_ms, u.qt),
                 last_event_at = GREATEST(a.last_event_at, u.last_at),
                 call_status = CASE WHEN u.fwd AND a.status_rank < u.rank AND a.state IN ('dialing', 'created', 'parked')
                                    THEN u.status ELSE a.call_status END,
                 status_rank = CASE WHEN u.fwd AND a.status_rank < u.rank AND a.state IN ('dialing', 'created', 'parked')
                                    THEN u.rank ELSE a.status_rank END,
                 answered_by = CASE WHEN u.fwd AND a.status_rank < u.rank AND a.state IN ('dialing', 'created', 'parked')
                                    THEN COALESCE(u.answered_by, a.answered_by) ELSE a.answered_by END
             FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::int[], $5::timestamptz[], $6::bool[],
                         $7::text[], $8::smallint[], $9::text[])
                  AS u(id, sid, answered_at, qt, last_at, fwd, status, rank, answered_by)
             WHERE a.id = u.id",
        )
        .bind(&f_id)
        .bind(&f_sid)
        .bind(&f_answered)
        .bind(&f_qt)
        .bind(&f_last)
        .bind(&f_fwd)
        .bind(&f_status)
        .bind(&f_rank)
        .bind(&f_by)
        .execute(&mut *conn)
        .await?;
    }
    let items: Vec<(i64, &TerminalFacts)> = terminal.iter().map(|(id, f)| (*id, f)).collect();
    let mut settled: HashMap<i64, Settled> = HashMap::with_capacity(items.len());
    for s in settle_many_in(conn, &items).await? {
        let s = s?;
        if s.applied {
            settled.insert(s.attempt_id, s);
        }
    }
    for (attempt_id, idx, best, out_of_order) in plan {
        let mut settled = settled.remove(&attempt_id);
        for (k, &i) in idx.iter().enumerate() {
            out[i] = Some(EventApplied::New {
                out_of_order: out_of_order[k],
                settled: if i == best { settled.take() } else { None },
            });
        }
    }
    Ok(out.into_iter().map(|o| o.expect("every event answered")).collect())
}
