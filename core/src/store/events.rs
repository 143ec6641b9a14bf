//! `call_events`: StatusCallbacks and async AMD results, each stored once, and the monotonic attempt
//! transitions they drive (DESIGN.md guarantee 3).
//!
//! Every write here first checks that the request's CallSid belongs to the attempt its token names: an
//! attempt's `call_sid` is set by the first genuine callback if the dialer has not recorded it yet (the
//! attempt may still be `dialing` or `parked`), and from then on a different CallSid is a swapped token and
//! nothing is written.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::results::{settle_many_in, Settled, TerminalFacts};
use super::transitions::{answered_many_in, bind_call_sid_in, Binding, Progress};
use super::{Result, Store};
use crate::domain::{AnsweredBy, AttemptState, AttemptTransition, CallSid, CallStatus};

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
    pub params: EventParams,
}

/// A callback's form parameters as a JSON object, kept for audit in `call_events.params` (`json`: the
/// text as written). Written straight from the pairs (no `Value` tree to build, clone and serialize
/// again for each of thousands of callbacks a second); a repeated key appears once per value, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventParams(String);

impl EventParams {
    pub fn from_form(pairs: &[(String, String)]) -> Self {
        use serde::Serializer;
        let mut out = Vec::with_capacity(2 + pairs.iter().map(|(k, v)| k.len() + v.len() + 6).sum::<usize>());
        serde_json::Serializer::new(&mut out)
            .collect_map(pairs.iter().map(|(k, v)| (k, v)))
            .expect("strings always serialize");
        Self(String::from_utf8(out).expect("serde_json writes UTF-8"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What storing one callback did.
#[derive(Debug, Clone, PartialEq)]
pub enum EventApplied {
    /// First delivery: stored, and the attempt advanced if this was its newest status.
    New {
        /// A later event of this call (higher `SequenceNumber`) was stored before this one's batch.
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
        let mut tx = self.begin_hot().await?;
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
        params: &EventParams,
    ) -> Result<AmdApplied> {
        let mut tx = self.pool.begin().await?;
        match bind_call_sid_in(&mut tx, attempt_id, call_sid).await? {
            Binding::Bound => {}
            Binding::WrongCall => return Ok(AmdApplied::WrongCall),
            Binding::UnknownAttempt => return Ok(AmdApplied::UnknownAttempt),
        }
        let inserted = sqlx::query_scalar!(
            "INSERT INTO call_events (attempt_id, call_sid, kind, sequence_number, params)
             VALUES ($1, $2, 'amd', $3, $4::text::json)
             ON CONFLICT DO NOTHING RETURNING attempt_id",
            attempt_id,
            call_sid as _,
            AMD_SEQUENCE,
            params.as_str(),
        )
        .fetch_optional(&mut *tx)
        .await?;
        if inserted.is_none() {
            return Ok(AmdApplied::Duplicate);
        }
        // Only while the call is open: a finished attempt was classified with what was known then.
        sqlx::query!(
            "UPDATE attempts SET answered_by = $2 WHERE id = $1 AND state = ANY($3::text[])",
            attempt_id,
            answered_by as _,
            AttemptState::OPEN as _,
        )
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

async fn apply_many_in(conn: &mut PgConnection, events: &[StatusEvent]) -> Result<Vec<EventApplied>> {
    let mut ids: Vec<i64> = events.iter().map(|e| e.attempt_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let sids: Vec<&CallSid> = events.iter().map(|e| &e.call_sid).collect();
    // One read without locks: the batch's attempts (their CallSid, state and newest stored status event,
    // an older one arrived out of order) and the attempts that own the batch's CallSids. Most events
    // (`initiated`, `ringing` of a bound call) write no attempt row, and a row lock is a write: only the
    // attempts this batch may change are locked, below.
    let read = sqlx::query!(
        r#"SELECT a.id, a.call_sid AS "call_sid: CallSid", a.state AS "state: AttemptState",
                  (SELECT max(e.sequence_number) FROM call_events e
                   WHERE e.attempt_id = a.id AND e.kind = 'status') AS seq_before
           FROM attempts a
           WHERE a.id = ANY($1) OR a.call_sid = ANY($2::text[])"#,
        &ids,
        &sids as _
    )
    .fetch_all(&mut *conn)
    .await?;
    let owners: HashMap<&CallSid, i64> = read.iter().filter_map(|r| Some((r.call_sid.as_ref()?, r.id))).collect();
    let mut attempts: HashMap<i64, (Option<CallSid>, Option<i32>)> = HashMap::with_capacity(ids.len());
    // Binding a CallSid must see the row as it is; the other writes are guarded statements, locked here
    // only so that every batch takes its locks in id order (no deadlock between writers).
    let mut lock: Vec<i64> = Vec::new();
    for r in read.iter().filter(|r| ids.binary_search(&r.id).is_ok()) {
        if r.call_sid.is_none() || AttemptTransition::Created.from().contains(&r.state) {
            lock.push(r.id);
        }
        attempts.insert(r.id, (r.call_sid.clone(), r.seq_before));
    }
    for e in events {
        // What may give a bound attempt a new row version: the end ([`settle_many_in`]) and, in
        // [`answered_many_in`]'s guard, an answer or a first queue time. (A row left out of the lock
        // because this list missed a write could only meet a deadlock, which fails the batch and its
        // events are written one by one.)
        let writes = e.status == CallStatus::InProgress || e.status.is_terminal() || e.queue_time_ms.is_some();
        if writes && attempts.get(&e.attempt_id).is_some_and(|(sid, _)| sid.as_ref() == Some(&e.call_sid)) {
            lock.push(e.attempt_id);
        }
    }
    lock.sort_unstable();
    lock.dedup();
    if !lock.is_empty() {
        for l in sqlx::query!(
            r#"SELECT a.id, a.call_sid AS "call_sid: CallSid",
                      (SELECT max(e.sequence_number) FROM call_events e
                       WHERE e.attempt_id = a.id AND e.kind = 'status') AS seq_before
               FROM attempts a
               WHERE a.id = ANY($1) ORDER BY a.id FOR UPDATE OF a"#,
            &lock
        )
        .fetch_all(&mut *conn)
        .await?
        {
            attempts.insert(l.id, (l.call_sid, l.seq_before));
        }
    }

    // Which call each attempt belongs to, as this batch goes: the first genuine CallSid binds an
    // attempt that has none yet.
    let seq_before: HashMap<i64, i32> = attempts.iter().filter_map(|(id, (_, n))| Some((*id, (*n)?))).collect();
    let mut bound: HashMap<i64, Option<CallSid>> = attempts.into_iter().map(|(id, (sid, _))| (id, sid)).collect();
    let mut out: Vec<Option<EventApplied>> = vec![None; events.len()];
    let mut accepted: Vec<usize> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Some(current) = bound.get_mut(&e.attempt_id) else {
            out[i] = Some(EventApplied::UnknownAttempt);
            continue;
        };
        let owned_elsewhere = owners.get(&e.call_sid).is_some_and(|owner| *owner != e.attempt_id);
        match current {
            _ if owned_elsewhere => out[i] = Some(EventApplied::WrongCall),
            Some(s) if *s != e.call_sid => out[i] = Some(EventApplied::WrongCall),
            Some(_) => accepted.push(i),
            None => {
                *current = Some(e.call_sid.clone());
                accepted.push(i);
            }
        }
    }

    // One statement for every event; a retried delivery hits a unique key and is skipped.
    let a_ids: Vec<i64> = accepted.iter().map(|&i| events[i].attempt_id).collect();
    let a_sids: Vec<&CallSid> = accepted.iter().map(|&i| &events[i].call_sid).collect();
    let a_seq: Vec<i32> = accepted.iter().map(|&i| events[i].sequence_number).collect();
    let a_status: Vec<CallStatus> = accepted.iter().map(|&i| events[i].status).collect();
    let a_tokens: Vec<Option<&str>> = accepted.iter().map(|&i| events[i].idempotency_token.as_deref()).collect();
    let a_params: Vec<&str> = accepted.iter().map(|&i| events[i].params.as_str()).collect();
    let inserted = sqlx::query!(
        r#"INSERT INTO call_events (attempt_id, call_sid, kind, sequence_number, call_status, idempotency_token, params)
           SELECT a, s, 'status', n, st, t, p::json
           FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[]) AS u(a, s, n, st, t, p)
           ON CONFLICT DO NOTHING
           RETURNING attempt_id, sequence_number"#,
        &a_ids,
        &a_sids as _,
        &a_seq,
        &a_status as _,
        &a_tokens as _,
        &a_params as _,
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut fresh: HashSet<(i64, i32)> = inserted.into_iter().map(|r| (r.attempt_id, r.sequence_number)).collect();

    // New events per attempt, in sequence order.
    let mut per_attempt: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for &i in &accepted {
        let e = &events[i];
        // The first input with a stored key is the new one; a copy later in the batch is a duplicate.
        if fresh.remove(&(e.attempt_id, e.sequence_number)) {
            per_attempt.entry(e.attempt_id).or_default().push(i);
        } else {
            out[i] = Some(EventApplied::Duplicate);
        }
    }

    // Per attempt: its order-free facts, and the one event this batch applies (the highest rank).
    let mut progress: Vec<Progress> = Vec::with_capacity(per_attempt.len());
    let mut terminal: Vec<(i64, TerminalFacts)> = Vec::new();
    let mut plan: Vec<(i64, Vec<usize>, usize, Vec<bool>)> = Vec::with_capacity(per_attempt.len());
    for (attempt_id, mut idx) in per_attempt {
        idx.sort_by_key(|&i| events[i].sequence_number);
        let newest_before = seq_before.get(&attempt_id).copied();
        let out_of_order: Vec<bool> =
            idx.iter().map(|&i| newest_before.is_some_and(|n| events[i].sequence_number < n)).collect();
        let best =
            idx.iter().copied().max_by_key(|&i| (events[i].status.rank(), std::cmp::Reverse(i))).expect("non-empty");
        let e = &events[best];
        let p = Progress {
            attempt_id,
            call_sid: &e.call_sid,
            // Order-free: `answered_at` is the earliest answer whatever came first, even after the end.
            answered_at: idx
                .iter()
                .filter(|&&i| events[i].status == CallStatus::InProgress)
                .map(|&i| events[i].timestamp.unwrap_or_else(Utc::now))
                .min(),
            queue_time_ms: idx.iter().find_map(|&i| events[i].queue_time_ms),
            last_event_at: idx.iter().filter_map(|&i| events[i].timestamp).max(),
            // Of the progress statuses only the answer is kept on the attempt (live calls, transfers);
            // `initiated` and `ringing` are appended to `call_events` and write no attempt version.
            forward: (e.status == CallStatus::InProgress).then_some((e.status, e.answered_by)),
        };
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
                    answered_at: p.answered_at,
                    queue_time_ms: p.queue_time_ms,
                },
            ));
        }
        progress.push(p);
        plan.push((attempt_id, idx, best, out_of_order));
    }

    // The end first: it writes the answer facts with it, so an attempt that ends in this batch gets one
    // new row version. The rest (and an end that found the attempt already closed) get the progress update.
    let items: Vec<(i64, &TerminalFacts)> = terminal.iter().map(|(id, f)| (*id, f)).collect();
    let mut settled: HashMap<i64, Settled> = HashMap::with_capacity(items.len());
    for s in settle_many_in(conn, &items).await? {
        let s = s?;
        if s.applied {
            settled.insert(s.attempt_id, s);
        }
    }
    progress.retain(|p| !settled.contains_key(&p.attempt_id));
    answered_many_in(conn, &progress).await?;
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

#[cfg(test)]
mod tests {
    use super::EventParams;

    #[test]
    fn params_are_a_json_object_of_every_pair_in_order_with_text_escaped() {
        let pairs: Vec<(String, String)> =
            [("CallSid", "CA1"), ("To", "+8190\"1\\2"), ("Digits", "1"), ("Digits", "2")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let p = EventParams::from_form(&pairs);
        assert_eq!(p.as_str(), r#"{"CallSid":"CA1","To":"+8190\"1\\2","Digits":"1","Digits":"2"}"#);
        // Valid JSON: PostgreSQL's `json` input accepts exactly what a JSON parser does.
        let v: serde_json::Value = serde_json::from_str(p.as_str()).unwrap();
        assert_eq!(v["To"], "+8190\"1\\2");
        assert_eq!(EventParams::from_form(&[]).as_str(), "{}");
    }
}
