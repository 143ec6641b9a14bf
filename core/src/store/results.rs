//! What a call produced: keypress results, opt-outs, the settle step that turns a finished attempt into an
//! outcome and the contact's retry or final state, and the results export.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgConnection;

use super::transitions::{finished_many_in, ContactNext, Finish};
use super::{Result, Store, StoreError};
use crate::domain::compliance::ZoneSource;
use crate::domain::{
    settle, AnsweredBy, AttemptState, CallSid, CallStatus, CampaignStatus, ContactState, Direction, Next, Outcome,
    RetryPolicy, SettleInput, TransferState, Tz, E164,
};
pub use crate::domain::{OPTED_OUT_RESULT, TRANSFERRED_RESULT};

/// `attempts.outcome` set provisionally when the voicemail message was played; the settle step reads it as
/// `voicemail_left` and replaces it with the final outcome.
const VOICEMAIL_MARK: Outcome = Outcome::Voicemail;

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
    /// The earliest answer known with the end (an `in-progress` delivered in the same batch), kept if
    /// earlier than the stored one: the end writes the attempt once, not once for the answer and again.
    pub answered_at: Option<DateTime<Utc>>,
    pub queue_time_ms: Option<i32>,
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
    /// The call's transfer, closed by this hang-up (`abandoned`, `no_operator`, `ended`).
    pub transfer: Option<TransferState>,
}

/// Everything the TwiML routes need about one attempt: the contact, its campaign and script.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub attempt_id: i64,
    pub attempt_state: AttemptState,
    pub call_sid: Option<CallSid>,
    pub campaign_id: i64,
    pub contact_id: i64,
    pub phone: E164,
    pub external_id: Option<String>,
    pub attributes: Value,
    /// The contact's IANA zone, else the campaign's.
    pub timezone: Tz,
    pub caller_id: E164,
    pub script: Value,
    /// The campaign's `[operators]` section, if any.
    pub operators: Option<Value>,
}

impl CallContext {
    /// The campaign's waiting-room settings (defaults when it has no `[operators]`).
    pub fn operator_settings(&self) -> crate::domain::operators::OperatorSettings {
        self.operators.as_ref().and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
    }
}

/// One line of `dialer results export`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRow {
    pub contact_id: i64,
    pub external_id: Option<String>,
    pub phone: E164,
    pub state: ContactState,
    pub outcome: Option<Outcome>,
    /// The keypress result (`confirmed`, `reschedule:morning`…), if any.
    pub result: Option<String>,
    pub attempts: i32,
    pub last_call_at: Option<DateTime<Utc>>,
    /// The zones the calling rules were applied in (`America/Denver & America/Los_Angeles` for several).
    pub zones: String,
    pub zone_source: ZoneSource,
    /// Calls the contact made to our caller ID.
    pub inbound_calls: i64,
    /// The SMS fallback: Twilio's delivery status once sent, else where it stands (`pending`, `skipped`,
    /// `rejected`, `unknown`); none when no text was due.
    pub sms: Option<String>,
    /// The operator who answered the contact's latest transfer, if one did.
    pub operator: Option<String>,
    /// How long that operator talked to the contact, in seconds (once the conversation ended).
    pub handle_s: Option<f64>,
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
        let s = settle_many_in(&mut tx, &[(attempt_id, &facts)]).await?.pop().expect("one answer per attempt")?;
        tx.commit().await?;
        Ok(s)
    }

    /// The attempt with its contact, campaign and script; `None` if it does not exist.
    pub async fn attempts_call_context(&self, attempt_id: i64) -> Result<Option<CallContext>> {
        Ok(sqlx::query_as!(
            CallContext,
            r#"SELECT a.id AS attempt_id, a.state AS "attempt_state: AttemptState",
                      a.call_sid AS "call_sid: CallSid", a.campaign_id, a.contact_id,
                      c.phone AS "phone: E164", c.external_id, c.attributes,
                      -- Times are spoken in the callee's zone when it is known to be one.
                      COALESCE(c.timezone, CASE WHEN cardinality(c.zones) = 1 THEN c.zones[1] END, k.timezone)
                          AS "timezone!: Tz",
                      k.caller_id AS "caller_id: E164", k.script, k.spec -> 'operators' AS operators
               FROM attempts a JOIN contacts c ON c.id = a.contact_id JOIN campaigns k ON k.id = a.campaign_id
               WHERE a.id = $1"#,
            attempt_id
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records synchronous AMD's `AnsweredBy` (from the TwiML request) while the call is open.
    pub async fn attempts_set_answered_by(&self, attempt_id: i64, answered_by: AnsweredBy) -> Result<()> {
        sqlx::query!(
            "UPDATE attempts SET answered_by = $2 WHERE id = $1 AND state = ANY($3::text[])",
            attempt_id,
            answered_by as _,
            AttemptState::OPEN as _,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Remembers that the voicemail message was played, so the outcome becomes `voicemail` (never a
    /// confirmation) rather than `machine`.
    pub async fn attempts_mark_voicemail_left(&self, attempt_id: i64) -> Result<()> {
        sqlx::query!(
            "UPDATE attempts SET outcome = $2 WHERE id = $1 AND outcome IS NULL AND state = ANY($3::text[])",
            attempt_id,
            VOICEMAIL_MARK as _,
            AttemptState::OPEN as _,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a keypress result once per (attempt, menu, result) and on the attempt. Returns whether it was
    /// new.
    pub async fn results_record(&self, attempt_id: i64, menu: &str, digits: &str, result: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let new = record_result_in(&mut tx, attempt_id, menu, digits, result).await?;
        tx.commit().await?;
        Ok(new)
    }

    /// The callee pressed the opt-out key: the number goes on the global DNC list (source `keypress`) at
    /// once, the attempt is marked so its outcome becomes `opted_out` (contact `blocked`) when it settles,
    /// and a contact already back in `pending` is blocked now. One transaction; returns whether the number
    /// was new on the list.
    pub async fn results_opt_out(&self, attempt_id: i64, menu: &str, digits: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // Locks the attempt before the contact (see `results_record`).
        let a = sqlx::query!(
            "UPDATE attempts SET result = $2 WHERE id = $1 RETURNING phone, contact_id",
            attempt_id,
            OPTED_OUT_RESULT
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("attempt {attempt_id}")))?;
        let new = sqlx::query!(
            "INSERT INTO dnc (phone, campaign_id, reason, source) VALUES ($1, NULL, 'opted out by keypress', 'keypress')
             ON CONFLICT (phone) WHERE campaign_id IS NULL DO NOTHING",
            a.phone
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        insert_result(&mut tx, attempt_id, menu, digits, OPTED_OUT_RESULT).await?;
        // The call is normally still open (contact `calling`, settled later); if the contact is already
        // waiting for a retry, it must never be claimed again.
        sqlx::query!(
            "UPDATE contacts SET state = 'blocked', final_outcome = 'opted_out', final_reason = 'opted out by keypress',
                 finished_at = now(), updated_at = now(), next_attempt_at = now(), lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND state = 'pending'",
            a.contact_id
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new)
    }

    /// One page of a campaign's results: contacts with id > `after`, in id order (keyset paging, so a page
    /// costs the same at any depth and an export of any size runs in constant memory).
    pub async fn results_page(&self, campaign_id: i64, after: i64, limit: i64) -> Result<Vec<ResultRow>> {
        self.results_page_filtered(campaign_id, after, limit, None, None).await
    }

    /// A page of results as [`Store::results_page`], only those with this outcome and/or keypress result
    /// (the console's filter; a campaign's results are read by one person at a time, so no index of its own).
    pub async fn results_page_filtered(
        &self,
        campaign_id: i64,
        after: i64,
        limit: i64,
        outcome: Option<&str>,
        result: Option<&str>,
    ) -> Result<Vec<ResultRow>> {
        Ok(sqlx::query_as!(
            ResultRow,
            r#"SELECT c.id AS contact_id, c.external_id, c.phone AS "phone: E164", c.state AS "state: ContactState",
                      COALESCE(c.final_outcome, last.outcome) AS "outcome: Outcome", c.result,
                      c.attempts_made AS attempts,
                      GREATEST(c.last_call_at, last.requested_at) AS last_call_at,
                      array_to_string(CASE WHEN cardinality(c.zones) = 0 THEN ARRAY[k.timezone] ELSE c.zones END, ' & ')
                          AS "zones!",
                      c.zone_source AS "zone_source: ZoneSource",
                      (SELECT count(*) FROM attempts i WHERE i.contact_id = c.id AND i.direction = 'inbound')
                          AS "inbound_calls!",
                      (SELECT COALESCE(m.status, m.state) FROM messages m WHERE m.contact_id = c.id) AS sms,
                      op.operator_identity AS "operator?", op.handle_s AS "handle_s?"
               FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
               LEFT JOIN LATERAL (
                   SELECT a.outcome, a.requested_at FROM attempts a
                   WHERE a.contact_id = c.id AND a.requested_at IS NOT NULL
                   ORDER BY a.attempt_no DESC LIMIT 1
               ) last ON true
               LEFT JOIN LATERAL (
                   SELECT t.operator_identity,
                          extract(epoch FROM t.ended_at - t.answered_at)::float8 AS handle_s
                   FROM transfers t WHERE t.contact_id = c.id AND t.answered_at IS NOT NULL
                   ORDER BY t.answered_at DESC LIMIT 1
               ) op ON true
               WHERE c.campaign_id = $1 AND c.id > $2
                 AND ($4::text IS NULL OR COALESCE(c.final_outcome, last.outcome)::text = $4)
                 AND ($5::text IS NULL OR c.result = $5)
               ORDER BY c.id
               LIMIT $3"#,
            campaign_id,
            after,
            limit,
            outcome,
            result
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every contact of a campaign with its final state, outcome, keypress result, attempts and last call.
    pub async fn results_export(&self, campaign_id: i64) -> Result<Vec<ResultRow>> {
        let mut all = Vec::new();
        loop {
            let page =
                self.results_page(campaign_id, all.last().map_or(0, |r: &ResultRow| r.contact_id), 10_000).await?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }
}

/// A result of an attempt: on the attempt, once in `results`, and — for a contact who called us, whom no
/// call of ours will settle — on the contact now. The attempt is locked first, then (the webhook trigger on
/// `results`) its contact: the order settling locks them in, so they wait for each other rather than
/// deadlock. Returns whether the result row was new.
pub(super) async fn record_result_in(
    conn: &mut PgConnection,
    attempt_id: i64,
    menu: &str,
    digits: &str,
    result: &str,
) -> Result<bool> {
    let a = sqlx::query!(
        r#"UPDATE attempts SET result = $2 WHERE id = $1 RETURNING contact_id, direction AS "direction: Direction""#,
        attempt_id,
        result
    )
    .fetch_optional(&mut *conn)
    .await?;
    let new = insert_result(conn, attempt_id, menu, digits, result).await?;
    if let Some(a) = a.filter(|a| a.direction == Direction::Inbound) {
        super::transitions::contact_result_outside_call_in(conn, a.contact_id, result, "result from a call back")
            .await?;
    }
    Ok(new)
}

pub(super) async fn insert_result(
    conn: &mut PgConnection,
    attempt_id: i64,
    menu: &str,
    digits: &str,
    result: &str,
) -> Result<bool> {
    Ok(sqlx::query!(
        "INSERT INTO results (attempt_id, contact_id, campaign_id, menu, digits, result)
         SELECT a.id, a.contact_id, a.campaign_id, $2, $3, $4 FROM attempts a WHERE a.id = $1
         ON CONFLICT (attempt_id, menu, result) DO NOTHING",
        attempt_id,
        menu,
        digits,
        result
    )
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1)
}

/// An attempt to settle, read under lock with its contact and campaign.
struct SettleRow {
    id: i64,
    contact_id: i64,
    campaign_id: i64,
    attempt_no: i32,
    state: AttemptState,
    call_sid: Option<CallSid>,
    result: Option<String>,
    outcome: Option<Outcome>,
    answered_by: Option<AnsweredBy>,
    requested_at: Option<DateTime<Utc>>,
    attempts_made: i32,
    retry_policy: Json<RetryPolicy>,
    max_attempts: i32,
    campaign_status: CampaignStatus,
    /// A transfer of this call is still open (waiting room, operator, call-back offer).
    in_transfer: bool,
}

/// One attempt being settled: what was read under lock, and what this step decided.
struct Settling<'a> {
    at: usize,
    row: &'a SettleRow,
    facts: &'a TerminalFacts,
    input: SettleInput<'a>,
}

/// Settles many attempts in a constant number of statements, whatever their number (callback batches):
/// one locking read, then per round one count and the **finished** transition (attempts, then contacts),
/// each over `unnest` arrays. The decision itself is [`crate::domain::settle`]; this only reads what it
/// needs and writes what it decided. One answer per input, in order. A round holds each contact at most
/// once, so two attempts of one contact in the same call settle one after the other, exactly as if
/// called twice.
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
    let rows: Vec<SettleRow> = sqlx::query_as!(
        SettleRow,
        r#"SELECT a.id, a.contact_id, a.campaign_id, a.attempt_no, a.state AS "state: AttemptState",
                  a.call_sid AS "call_sid: CallSid", a.result, a.outcome AS "outcome: Outcome",
                  a.answered_by AS "answered_by: AnsweredBy", a.requested_at, c.attempts_made,
                  k.retry_policy AS "retry_policy: Json<RetryPolicy>", k.max_attempts,
                  k.status AS "campaign_status: CampaignStatus",
                  EXISTS (SELECT 1 FROM transfers t WHERE t.attempt_id = a.id
                          AND t.state IN ('waiting', 'ringing', 'connected', 'offered')) AS "in_transfer!"
           FROM attempts a JOIN contacts c ON c.id = a.contact_id JOIN campaigns k ON k.id = a.campaign_id
           WHERE a.id = ANY($1)
           ORDER BY a.id
           FOR UPDATE OF a, c"#,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    // A hang-up closes the call's transfer first: its result (abandoned…) is then the call's result.
    let mut rows = rows;
    let in_transfer: Vec<i64> = rows.iter().filter(|r| r.in_transfer).map(|r| r.id).collect();
    let transfers = if in_transfer.is_empty() {
        HashMap::new()
    } else {
        super::operators::transfers_close_on_hangup_in(conn, &in_transfer, false).await?
    };
    for r in rows.iter_mut() {
        if let Some((_, Some(result))) = transfers.get(&r.id) {
            r.result.get_or_insert_with(|| result.to_string());
        }
    }
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
            if have != given {
                out[i] = Some(Err(StoreError::Conflict(format!("attempt {attempt_id} belongs to another call"))));
                continue;
            }
        }
        let input = SettleInput {
            status: facts.status,
            answered_by: facts.answered_by.or(row.answered_by),
            sip_response_code: facts.sip_response_code,
            recorded_result: row.result.as_deref(),
            voicemail_left: row.outcome == Some(VOICEMAIL_MARK),
            campaign_canceled: row.campaign_status == CampaignStatus::Canceled,
        };
        let k = per_contact.entry(row.contact_id).or_insert(0);
        if rounds.len() <= *k {
            rounds.push(Vec::new());
        }
        rounds[*k].push(Settling { at: i, row, facts, input });
        *k += 1;
    }

    // Attempts finished by an earlier round of this call, with what was recorded.
    let mut finished: HashMap<i64, (Outcome, Option<AnsweredBy>)> = HashMap::new();
    // What an attempt that is already finished (or never sent) answers: nothing changed.
    let unchanged = |s: &Settling, finished: &HashMap<i64, (Outcome, Option<AnsweredBy>)>| {
        let (outcome, answered_by) = match finished.get(&s.row.id) {
            Some(&(o, a)) => (Some(o), a),
            None => (s.row.outcome, s.row.answered_by),
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
            transfer: None,
        }
    };
    let mut policies: HashMap<i64, &RetryPolicy> = HashMap::new();
    for round in rounds {
        let (open, done): (Vec<Settling>, Vec<Settling>) =
            round.into_iter().partition(|s| s.row.state.is_open() && !finished.contains_key(&s.row.id));
        for s in &done {
            out[s.at] = Some(Ok(unchanged(s, &finished)));
        }
        if open.is_empty() {
            continue;
        }
        let outcomes: Vec<Outcome> = open.iter().map(|s| s.input.outcome()).collect();
        let a_ids: Vec<i64> = open.iter().map(|s| s.row.id).collect();
        let c_ids: Vec<i64> = open.iter().map(|s| s.row.contact_id).collect();
        let before: HashMap<i64, i64> = sqlx::query!(
            r#"SELECT u.aid AS "aid!", (SELECT count(*) FROM attempts x
                                     WHERE x.contact_id = u.cid AND x.id <> u.aid AND x.state = 'finished'
                                       AND x.outcome = u.outcome) AS "n!"
               FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u(aid, cid, outcome)"#,
            &a_ids,
            &c_ids,
            &outcomes as _,
        )
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| (r.aid, r.n))
        .collect();
        let now = Utc::now();
        let decisions: Vec<_> = open
            .iter()
            .map(|s| {
                let policy = match policies.entry(s.row.campaign_id) {
                    Entry::Occupied(e) => *e.get(),
                    Entry::Vacant(v) => *v.insert(&s.row.retry_policy.0),
                };
                let same_before = before.get(&s.row.id).copied().unwrap_or(0) as i32;
                settle(&s.input, policy, s.row.max_attempts, s.row.attempts_made, same_before, now)
            })
            .collect();
        let finishes: Vec<Finish> = open
            .iter()
            .zip(&decisions)
            .map(|(s, d)| Finish {
                attempt_id: s.row.id,
                contact_id: s.row.contact_id,
                attempt_no: s.row.attempt_no,
                call_sid: s.facts.call_sid.as_ref(),
                status: s.facts.status,
                outcome: d.outcome,
                answered_by: s.input.answered_by,
                sip_response_code: s.facts.sip_response_code,
                duration_s: s.facts.duration_s,
                ended_at: s.facts.ended_at,
                answered_at: s.facts.answered_at,
                queue_time_ms: s.facts.queue_time_ms,
                requested_at: s.row.requested_at,
                next: match &d.next {
                    Next::Retry { at, .. } => ContactNext::Retry { at: *at },
                    Next::Final { state, reason } => ContactNext::Final {
                        state: *state,
                        reason: reason.as_str(),
                        result: d.contact_result.as_deref(),
                    },
                },
            })
            .collect();
        let applied = finished_many_in(conn, &finishes).await?;

        for (s, d) in open.iter().zip(decisions) {
            if !applied.attempts.contains(&s.row.id) {
                out[s.at] = Some(Ok(unchanged(s, &finished)));
                continue;
            }
            finished.insert(s.row.id, (d.outcome, s.input.answered_by));
            out[s.at] = Some(Ok(Settled {
                attempt_id: s.row.id,
                campaign_id: s.row.campaign_id,
                contact_id: s.row.contact_id,
                applied: true,
                outcome: Some(d.outcome),
                answered_by: s.input.answered_by,
                next: Some(d.next),
                contact_updated: applied.contacts.contains(&s.row.contact_id),
                transfer: transfers.get(&s.row.id).map(|(state, _)| *state),
            }));
        }
    }
    Ok(out.into_iter().map(|o| o.expect("every attempt answered")).collect())
}
