//! What a call produced: keypress results, opt-outs, the settle step that turns a finished attempt into an
//! outcome and the contact's retry or final state, and the results export.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

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
    id: i64,
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
    settle_many_in(conn, &[(attempt_id, facts)]).await?.pop().expect("one answer per attempt")
}

/// One attempt being settled: what was read under lock, and what this step decided.
struct Settling<'a> {
    at: usize,
    row: &'a SettleRow,
    facts: &'a TerminalFacts,
    outcome: Outcome,
    answered_by: Option<AnsweredBy>,
}

/// Settles many attempts in a constant number of statements, whatever their number (callback batches):
/// one locking read, then per round one count, one attempt update and up to two contact updates, each
/// over `unnest` arrays. One answer per input, in order. A round holds each contact at most once, so two
/// attempts of one contact in the same call settle one after the other, exactly as if called twice.
pub(crate) async fn settle_many_in(
    conn: &mut PgConnection,
    items: &[(i64, &TerminalFacts)],
) -> Result<Vec<Result<Settled>>> {
    let mut out: Vec<Option<Result<Settled>>> = (0..items.len()).map(|_| None).collect();
    let mut ids: Vec<i64> = Vec::with_capacity(items.len());
    for (i, (attempt_id, facts)) in items.iter().enumerate() {
        if facts.status.is_terminal() {
            ids.push(*attempt_id);
        } else {
            out[i] = Some(Err(StoreError::Conflict(format!("{} is not a terminal call status", facts.status))));
        }
    }
    if ids.is_empty() {
        // Most callback batches at low rates hold no terminal status: no round trip for them.
        return Ok(out.into_iter().map(|o| o.expect("only refusals so far")).collect());
    }
    ids.sort_unstable();
    ids.dedup();
    // Locks the attempts and their contacts (attempt before contact, as the dialer does), in id order.
    let rows: Vec<SettleRow> = sqlx::query_as(
        "SELECT a.id, a.contact_id, a.campaign_id, a.attempt_no, a.state, a.call_sid, a.result, a.outcome,
                a.answered_by, a.requested_at, c.attempts_made, k.retry_policy, k.max_attempts
         FROM attempts a JOIN contacts c ON c.id = a.contact_id JOIN campaigns k ON k.id = a.campaign_id
         WHERE a.id = ANY($1)
         ORDER BY a.id
         FOR UPDATE OF a, c",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let by_id: HashMap<i64, &SettleRow> = rows.iter().map(|r| (r.id, r)).collect();

    // Rounds: the k-th open attempt of each contact goes in round k.
    let mut rounds: Vec<Vec<Settling>> = Vec::new();
    let mut per_contact: HashMap<i64, usize> = HashMap::new();
    for (i, (attempt_id, facts)) in items.iter().enumerate() {
        if out[i].is_some() {
            continue;
        }
        let Some(row) = by_id.get(attempt_id).copied() else {
            out[i] = Some(Err(StoreError::NotFound(format!("attempt {attempt_id}"))));
            continue;
        };
        if let (Some(have), Some(given)) = (&row.call_sid, &facts.call_sid) {
            if have != given.as_str() {
                out[i] = Some(Err(StoreError::Conflict(format!("attempt {attempt_id} belongs to another call"))));
                continue;
            }
        }
        let stored_answered_by = row.answered_by.as_deref().and_then(|s| AnsweredBy::parse(s).ok());
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
        let k = per_contact.entry(row.contact_id).or_insert(0);
        if rounds.len() <= *k {
            rounds.push(Vec::new());
        }
        rounds[*k].push(Settling { at: i, row, facts, outcome, answered_by });
        *k += 1;
    }

    // Attempts finished by an earlier round of this call, with what was recorded.
    let mut finished: HashMap<i64, (Outcome, Option<AnsweredBy>)> = HashMap::new();
    // What an attempt that is already finished (or never sent) answers: nothing changed.
    let unchanged = |s: &Settling, finished: &HashMap<i64, (Outcome, Option<AnsweredBy>)>| {
        let (outcome, answered_by) = match finished.get(&s.row.id) {
            Some(&(o, a)) => (Some(o), a),
            None => (
                s.row.outcome.as_deref().and_then(|o| Outcome::parse(o).ok()),
                s.row.answered_by.as_deref().and_then(|a| AnsweredBy::parse(a).ok()),
            ),
        };
        Settled {
            attempt_id: s.row.id,
            campaign_id: s.row.campaign_id,
            contact_id: s.row.contact_id,
            applied: false,
            outcome,
            answered_by,
            next: None,
            contact_updated: false,
        }
    };
    let mut policies: HashMap<i64, RetryPolicy> = HashMap::new();
    for round in rounds {
        let (open, done): (Vec<Settling>, Vec<Settling>) = round.into_iter().partition(|s| {
            matches!(s.row.state.as_str(), "dialing" | "created" | "parked") && !finished.contains_key(&s.row.id)
        });
        for s in &done {
            out[s.at] = Some(Ok(unchanged(s, &finished)));
        }
        if open.is_empty() {
            continue;
        }
        let a_ids: Vec<i64> = open.iter().map(|s| s.row.id).collect();
        let c_ids: Vec<i64> = open.iter().map(|s| s.row.contact_id).collect();
        let outcomes: Vec<&str> = open.iter().map(|s| s.outcome.as_str()).collect();
        let before: HashMap<i64, i64> = sqlx::query_as::<_, (i64, i64)>(
            "SELECT u.aid, (SELECT count(*) FROM attempts x
                            WHERE x.contact_id = u.cid AND x.id <> u.aid AND x.state = 'finished'
                              AND x.outcome = u.outcome)
             FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u(aid, cid, outcome)",
        )
        .bind(&a_ids)
        .bind(&c_ids)
        .bind(&outcomes)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        let now = Utc::now();
        let mut nexts: Vec<Next> = Vec::with_capacity(open.len());
        for s in &open {
            // Parsed once per campaign per call.
            let policy = match policies.entry(s.row.campaign_id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(v) => v.insert(serde_json::from_value(s.row.retry_policy.clone()).map_err(|e| {
                    StoreError::Conflict(format!("campaign {}: stored retry policy: {e}", s.row.campaign_id))
                })?),
            };
            let same_before = before.get(&s.row.id).copied().unwrap_or(0) as i32;
            nexts.push(decide(policy, s.row.max_attempts, s.outcome, s.row.attempts_made, same_before, now));
        }

        let sids: Vec<Option<&str>> = open.iter().map(|s| s.facts.call_sid.as_ref().map(CallSid::as_str)).collect();
        let statuses: Vec<&str> = open.iter().map(|s| s.facts.status.as_str()).collect();
        let answered: Vec<Option<&str>> = open.iter().map(|s| s.answered_by.map(AnsweredBy::as_str)).collect();
        let sip: Vec<Option<i32>> = open.iter().map(|s| s.facts.sip_response_code).collect();
        let duration: Vec<Option<i32>> = open.iter().map(|s| s.facts.duration_s).collect();
        let ended: Vec<Option<DateTime<Utc>>> = open.iter().map(|s| s.facts.ended_at).collect();
        let updated: HashSet<i64> = sqlx::query_scalar::<_, i64>(
            "UPDATE attempts a SET state = 'finished', call_sid = COALESCE(a.call_sid, u.sid), call_status = u.status,
                 status_rank = 4, outcome = u.outcome, answered_by = u.answered_by,
                 sip_response_code = COALESCE(u.sip, a.sip_response_code),
                 duration_s = COALESCE(u.duration, a.duration_s), ended_at = COALESCE(u.ended_at, now()),
                 last_event_at = GREATEST(a.last_event_at, u.ended_at), finished_at = now()
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[],
                         $8::timestamptz[]) AS u(id, sid, status, outcome, answered_by, sip, duration, ended_at)
             WHERE a.id = u.id AND a.state IN ('dialing', 'created', 'parked')
             RETURNING a.id",
        )
        .bind(&a_ids)
        .bind(&sids)
        .bind(&statuses)
        .bind(&outcomes)
        .bind(&answered)
        .bind(&sip)
        .bind(&duration)
        .bind(&ended)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();

        // The contact moves on only while it is still calling on this very attempt: a lease rescue or a
        // newer attempt has taken over otherwise, and this late report must not touch it.
        let (mut r_cid, mut r_no, mut r_at, mut r_req) = (vec![], vec![], vec![], vec![]);
        let (mut f_cid, mut f_no, mut f_state, mut f_outcome, mut f_reason, mut f_result, mut f_req) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for (s, next) in open.iter().zip(&nexts) {
            if !updated.contains(&s.row.id) {
                continue;
            }
            match next {
                Next::Retry { at, .. } => {
                    r_cid.push(s.row.contact_id);
                    r_no.push(s.row.attempt_no);
                    r_at.push(*at);
                    r_req.push(s.row.requested_at);
                }
                Next::Final { state, reason } => {
                    // Only a person's keypress (or opt-out) is a result; a machine's digits never are.
                    let result = match s.outcome {
                        Outcome::AnsweredResult | Outcome::OptedOut => s.row.result.as_deref(),
                        _ => None,
                    };
                    f_cid.push(s.row.contact_id);
                    f_no.push(s.row.attempt_no);
                    f_state.push(state.as_str());
                    f_outcome.push(s.outcome.as_str());
                    f_reason.push(reason.as_str());
                    f_result.push(result);
                    f_req.push(s.row.requested_at);
                }
            }
        }
        let mut moved: HashSet<i64> = HashSet::new();
        if !r_cid.is_empty() {
            moved.extend(
                sqlx::query_scalar::<_, i64>(
                    "UPDATE contacts c SET state = 'pending', next_attempt_at = u.at, lease_owner = NULL,
                         lease_expires_at = NULL, last_call_at = GREATEST(c.last_call_at, u.requested_at),
                         updated_at = now()
                     FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::timestamptz[])
                          AS u(id, attempt_no, at, requested_at)
                     WHERE c.id = u.id AND c.state = 'calling' AND c.attempt_seq = u.attempt_no
                     RETURNING c.id",
                )
                .bind(&r_cid)
                .bind(&r_no)
                .bind(&r_at)
                .bind(&r_req)
                .fetch_all(&mut *conn)
                .await?,
            );
        }
        if !f_cid.is_empty() {
            moved.extend(
                sqlx::query_scalar::<_, i64>(
                    "UPDATE contacts c SET state = u.state, final_outcome = u.outcome, final_reason = u.reason,
                         result = COALESCE(u.result, c.result),
                         last_call_at = GREATEST(c.last_call_at, u.requested_at), finished_at = now(),
                         updated_at = now(), lease_owner = NULL, lease_expires_at = NULL
                     FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[],
                                 $7::timestamptz[]) AS u(id, attempt_no, state, outcome, reason, result, requested_at)
                     WHERE c.id = u.id AND c.state = 'calling' AND c.attempt_seq = u.attempt_no
                     RETURNING c.id",
                )
                .bind(&f_cid)
                .bind(&f_no)
                .bind(&f_state)
                .bind(&f_outcome)
                .bind(&f_reason)
                .bind(&f_result)
                .bind(&f_req)
                .fetch_all(&mut *conn)
                .await?,
            );
        }

        for (s, next) in open.iter().zip(nexts) {
            if !updated.contains(&s.row.id) {
                out[s.at] = Some(Ok(unchanged(s, &finished)));
                continue;
            }
            finished.insert(s.row.id, (s.outcome, s.answered_by));
            out[s.at] = Some(Ok(Settled {
                attempt_id: s.row.id,
                campaign_id: s.row.campaign_id,
                contact_id: s.row.contact_id,
                applied: true,
                outcome: Some(s.outcome),
                answered_by: s.answered_by,
                next: Some(next),
                contact_updated: moved.contains(&s.row.contact_id),
            }));
        }
    }
    Ok(out.into_iter().map(|o| o.expect("every attempt answered")).collect())
}
