//! The dialer's side of the attempt state machine: claim, mark dialing, record the POST's fate, release,
//! rescue, and find attempts to reconcile. Every transition is one guarded statement: it applies only
//! if the row is still in an allowed source state (and, where a lease exists, held by the caller), so a
//! stale worker changes nothing.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{Result, Store};

/// A contact claimed for one attempt (the attempt row exists, nothing has been sent).
#[derive(Debug, Clone, FromRow)]
pub struct ClaimedAttempt {
    pub attempt_id: i64,
    pub contact_id: i64,
    pub campaign_id: i64,
    pub attempt_no: i32,
    pub phone: String,
    pub timezone: Option<String>,
    pub external_id: Option<String>,
    pub attempts_made: i32,
    pub next_attempt_at: DateTime<Utc>,
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
    /// The campaign is no longer running (paused or canceled): give the claim back.
    NotRunning,
    /// The lease was lost (rescued by someone else); do nothing.
    LeaseLost,
}

/// An attempt whose call's fate or end is unknown and must be asked of the API.
#[derive(Debug, Clone, FromRow)]
pub struct OpenAttempt {
    pub attempt_id: i64,
    pub contact_id: i64,
    pub campaign_id: i64,
    pub state: String,
    pub phone: String,
    pub caller_id: String,
    pub call_sid: Option<String>,
    pub requested_at: DateTime<Utc>,
}

/// The claim statement (see [`Store::attempts_claim_due`]); public so the benchmarks can EXPLAIN exactly it.
/// Parameters: $1 campaign id, $2 limit, $3 lease owner, $4 lease seconds.
pub const ATTEMPTS_CLAIM_DUE_SQL: &str = "WITH turn AS (
    -- Claimers of one campaign take turns, so the in-flight cap holds across replicas; the count is
    -- read by a VOLATILE function after the lock (migration 20261122000001 says why).
    SELECT c.id, c.max_in_flight FROM campaigns c WHERE c.id = $1 AND c.status = 'running'
    FOR NO KEY UPDATE
), room AS (
    SELECT GREATEST(0, LEAST($2, turn.max_in_flight - contacts_in_flight(turn.id))) AS n FROM turn
), due AS (
    SELECT id FROM contacts
    WHERE campaign_id = $1 AND state = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT COALESCE((SELECT n FROM room), 0)  -- no row: not running, claim nothing
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE contacts c
    SET state = 'claimed', lease_owner = $3,
        lease_expires_at = now() + make_interval(secs => $4),
        attempt_seq = c.attempt_seq + 1, updated_at = now()
    -- `= ANY(ARRAY(...))` rather than a join: the planner can't see through the LIMIT
    -- expression, guesses 10 % of the table and hash-joins a full scan (3.6 s at 10M rows,
    -- BENCHMARKS.md); as an array it probes the primary key.
    WHERE c.id = ANY (ARRAY(SELECT id FROM due))
    RETURNING c.id, c.campaign_id, c.phone, c.timezone, c.external_id, c.attempt_seq,
              c.attempts_made, c.next_attempt_at
), made AS (
    INSERT INTO attempts (contact_id, campaign_id, attempt_no, phone, lease_owner)
    SELECT id, campaign_id, attempt_seq, phone, $3 FROM claimed
    RETURNING id, contact_id
)
SELECT made.id AS attempt_id, claimed.id AS contact_id, claimed.campaign_id,
       claimed.attempt_seq AS attempt_no, claimed.phone, claimed.timezone, claimed.external_id,
       claimed.attempts_made, claimed.next_attempt_at
FROM made JOIN claimed ON claimed.id = made.contact_id
ORDER BY claimed.next_attempt_at, claimed.id";

impl Store {
    /// Claims up to `limit` due contacts of a running campaign for `owner` in ONE round trip: picks due
    /// pending contacts (partial index `contacts_due`) with `FOR UPDATE SKIP LOCKED` so replicas never
    /// claim the same one, leases them, and creates their attempt rows. The limit is also capped by the
    /// campaign's in-flight room (contacts claimed or calling).
    pub async fn attempts_claim_due(
        &self,
        campaign_id: i64,
        limit: i64,
        owner: &str,
        lease_s: f64,
    ) -> Result<Vec<ClaimedAttempt>> {
        Ok(sqlx::query_as::<_, ClaimedAttempt>(ATTEMPTS_CLAIM_DUE_SQL)
            .bind(campaign_id)
            .bind(limit)
            .bind(owner)
            .bind(lease_s)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Undoes claims that were never sent (outside the window, shutting down, limit reached): the attempt
    /// rows are deleted and the contacts return to `pending` at `next_at`. Guarded by the lease owner.
    pub async fn attempts_release_many(
        &self,
        owner: &str,
        attempt_ids: &[i64],
        next_at: &[DateTime<Utc>],
    ) -> Result<u64> {
        Ok(sqlx::query(
            "WITH input AS (
                 SELECT * FROM unnest($2::bigint[], $3::timestamptz[]) AS t(attempt_id, next_at)
             ), gone AS (
                 DELETE FROM attempts a USING input
                 WHERE a.id = input.attempt_id AND a.state = 'claimed' AND a.lease_owner = $1
                 RETURNING a.contact_id, a.attempt_no, input.next_at
             )
             UPDATE contacts c SET state = 'pending', next_attempt_at = gone.next_at,
                 attempt_seq = c.attempt_seq - 1, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
             FROM gone WHERE c.id = gone.contact_id AND c.state = 'claimed' AND c.lease_owner = $1
               AND c.attempt_seq = gone.attempt_no",
        )
        .bind(owner)
        .bind(attempt_ids)
        .bind(next_at)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Ends claimed contacts that must never be called (DNC, already notified): attempt deleted, contact
    /// terminal `blocked` with the reason.
    pub async fn attempts_block_many(&self, owner: &str, attempt_ids: &[i64], reasons: &[String]) -> Result<u64> {
        Ok(sqlx::query(
            "WITH input AS (
                 SELECT * FROM unnest($2::bigint[], $3::text[]) AS t(attempt_id, reason)
             ), gone AS (
                 DELETE FROM attempts a USING input
                 WHERE a.id = input.attempt_id AND a.state = 'claimed' AND a.lease_owner = $1
                 RETURNING a.contact_id, a.attempt_no, input.reason
             )
             UPDATE contacts c SET state = 'blocked', final_outcome = 'opted_out', final_reason = gone.reason,
                 attempt_seq = c.attempt_seq - 1, finished_at = now(), lease_owner = NULL, lease_expires_at = NULL,
                 updated_at = now()
             FROM gone WHERE c.id = gone.contact_id AND c.state = 'claimed' AND c.lease_owner = $1
               AND c.attempt_seq = gone.attempt_no",
        )
        .bind(owner)
        .bind(attempt_ids)
        .bind(reasons)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Phones among `phones` that `campaign_id` may not call (global or campaign DNC).
    pub async fn dnc_blocked_among(&self, campaign_id: i64, phones: &[String]) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT phone FROM dnc WHERE phone = ANY($2) AND (campaign_id IS NULL OR campaign_id = $1)",
        )
        .bind(campaign_id)
        .bind(phones)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The last check and the commit before the POST, in one statement: DNC, the rolling 24 h limit and
    /// one-notification-per-reference are checked again, and only if all pass does the attempt become
    /// `dialing` (with `requested_at`) and the contact `calling`. Committed before the POST, so a crash
    /// after this point leaves an attempt that reconciliation must resolve before any redial.
    pub async fn attempts_mark_dialing(
        &self,
        owner: &str,
        a: &ClaimedAttempt,
        max_calls_24h: Option<i32>,
        one_per_external_id: bool,
    ) -> Result<DialingGate> {
        let mut gates = self
            .attempts_mark_dialing_many(
                owner,
                a.campaign_id,
                std::slice::from_ref(a),
                max_calls_24h,
                one_per_external_id,
            )
            .await?;
        Ok(gates.pop().expect("one gate per attempt"))
    }

    /// [`Store::attempts_mark_dialing`] for many attempts of one campaign in one statement (the dispatcher
    /// batches the calls its pacer has just let through); one gate per attempt, in order. A campaign's
    /// numbers are unique, so attempts of one batch cannot count towards each other's 24 h limit.
    pub async fn attempts_mark_dialing_many(
        &self,
        owner: &str,
        campaign_id: i64,
        attempts: &[ClaimedAttempt],
        max_calls_24h: Option<i32>,
        one_per_external_id: bool,
    ) -> Result<Vec<DialingGate>> {
        let ids: Vec<i64> = attempts.iter().map(|a| a.attempt_id).collect();
        let contacts: Vec<i64> = attempts.iter().map(|a| a.contact_id).collect();
        let phones: Vec<&str> = attempts.iter().map(|a| a.phone.as_str()).collect();
        let refs: Vec<Option<&str>> =
            attempts.iter().map(|a| if one_per_external_id { a.external_id.as_deref() } else { None }).collect();
        let rows: Vec<(i64, bool, bool, i64, bool, bool, bool)> = sqlx::query_as(
            // `mine` locks each attempt and its contact together and requires that the attempt is still the
            // contact's current one under our lease: a claim rescued and re-claimed (even by this same
            // dialer) leaves the stale attempt unable to move either row.
            "WITH input AS (
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])
                     AS u(attempt_id, contact_id, phone, external_id)
             ), mine AS (
                 SELECT a.id AS attempt_id, c.id AS contact_id
                 FROM attempts a JOIN contacts c ON c.id = a.contact_id
                 WHERE a.id = ANY($1) AND a.state = 'claimed' AND a.lease_owner = $6
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
                        (u.external_id IS NOT NULL AND EXISTS (
                            SELECT 1 FROM contacts o WHERE o.external_id = u.external_id AND o.id <> u.contact_id
                              AND o.final_outcome IN ('answered_result', 'answered_no_result', 'voicemail'))) AS notified
                 FROM input u
             ), running AS (
                 SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = $5 AND status = 'running') AS running
             ), go AS (
                 SELECT mine.* FROM mine JOIN chk USING (attempt_id), running
                 WHERE NOT chk.dnc AND chk.recent < COALESCE($7, 2147483647) AND NOT chk.notified AND running.running
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
             SELECT chk.attempt_id, mine.attempt_id IS NOT NULL, chk.dnc, chk.recent, chk.notified, running.running,
                    dialing.id IS NOT NULL
             FROM chk CROSS JOIN running
             LEFT JOIN mine ON mine.attempt_id = chk.attempt_id
             LEFT JOIN dialing ON dialing.id = chk.attempt_id",
        )
        .bind(&ids)
        .bind(&contacts)
        .bind(&phones)
        .bind(&refs)
        .bind(campaign_id)
        .bind(owner)
        .bind(max_calls_24h)
        .fetch_all(&self.pool)
        .await?;
        let by_id: std::collections::HashMap<i64, DialingGate> = rows
            .into_iter()
            .map(|(id, held, dnc, recent, notified, running, go)| {
                let gate = if go {
                    DialingGate::Go
                } else if !held {
                    DialingGate::LeaseLost
                } else if dnc {
                    DialingGate::Dnc
                } else if notified {
                    DialingGate::AlreadyNotified
                } else if max_calls_24h.is_some_and(|m| recent >= m as i64) {
                    DialingGate::Limit { recent }
                } else if !running {
                    DialingGate::NotRunning
                } else {
                    DialingGate::LeaseLost
                };
                (id, gate)
            })
            .collect();
        Ok(ids.iter().map(|id| by_id.get(id).copied().unwrap_or(DialingGate::LeaseLost)).collect())
    }

    /// When a number's oldest call of the last 24 h drops out of the window (for a limit deferral).
    pub async fn attempts_limit_clears_at(&self, phone: &str, max_calls_24h: i32) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT requested_at + interval '24 hours' FROM attempts
             WHERE phone = $1 AND requested_at > now() - interval '24 hours' AND state <> 'not_created'
             ORDER BY requested_at DESC OFFSET $2 - 1 LIMIT 1",
        )
        .bind(phone)
        .bind(max_calls_24h as i64)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// Twilio created the calls (one statement for a batch of POST responses). A callback may already
    /// have set the SID or moved the attempt on, so the SID is only filled in and the state only moves
    /// from `dialing`/`parked`.
    pub async fn attempts_set_created_many(
        &self,
        attempt_ids: &[i64],
        call_sids: &[&str],
        queue_time_ms: &[Option<i32>],
    ) -> Result<()> {
        sqlx::query(
            "UPDATE attempts a SET call_sid = COALESCE(a.call_sid, u.sid),
                 queue_time_ms = COALESCE(a.queue_time_ms, u.qt),
                 state = CASE WHEN a.state IN ('dialing', 'parked') THEN 'created' ELSE a.state END
             FROM unnest($1::bigint[], $2::text[], $3::int[]) AS u(id, sid, qt)
             WHERE a.id = u.id",
        )
        .bind(attempt_ids)
        .bind(call_sids)
        .bind(queue_time_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The POST's fate is unknown: park the attempt for reconciliation. Never re-POSTed blindly.
    pub async fn attempts_park(&self, attempt_id: i64, error: &str) -> Result<()> {
        // A callback may already have bound the call and moved it on; the error is kept either way.
        sqlx::query(
            "UPDATE attempts SET error_message = $2,
                 state = CASE WHEN state = 'dialing' THEN 'parked' ELSE state END
             WHERE id = $1",
        )
        .bind(attempt_id)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Proven never created (rejected before creation, or not found by reconciliation): the attempt is
    /// closed and the contact goes back to `pending` at `retry_at` (its attempt count is given back), or,
    /// with `final_state`, ends there with `reason`.
    pub async fn attempts_not_created(
        &self,
        attempt_id: i64,
        code: Option<i32>,
        reason: &str,
        retry_at: Option<DateTime<Utc>>,
        final_state: Option<&str>,
    ) -> Result<bool> {
        let n = sqlx::query(
            "WITH a AS (
                 UPDATE attempts SET state = 'not_created', twilio_error_code = $2, error_message = $3,
                        finished_at = now()
                 WHERE id = $1 AND state IN ('dialing', 'parked') AND call_sid IS NULL
                 RETURNING contact_id, attempt_no
             )
             UPDATE contacts c SET
                 state = CASE WHEN $5::text IS NULL THEN 'pending' ELSE $5 END,
                 attempts_made = GREATEST(0, c.attempts_made - 1),
                 next_attempt_at = COALESCE($4, c.next_attempt_at),
                 final_outcome = CASE WHEN $5::text IS NULL THEN NULL ELSE 'rejected' END,
                 final_reason = CASE WHEN $5::text IS NULL THEN NULL ELSE $3 END,
                 finished_at = CASE WHEN $5::text IS NULL THEN NULL ELSE now() END,
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
             FROM a WHERE c.id = a.contact_id AND c.state = 'calling' AND c.attempt_seq = a.attempt_no",
        )
        .bind(attempt_id)
        .bind(code)
        .bind(reason)
        .bind(retry_at)
        .bind(final_state)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Lease rescue: contacts claimed by a dialer that died before sending anything go back to pending
    /// (their unsent attempt rows are deleted). Contacts already `calling` are left to reconciliation.
    pub async fn contacts_rescue_expired(&self) -> Result<u64> {
        Ok(sqlx::query(
            "WITH expired AS (
                 SELECT id FROM contacts
                 WHERE state = 'claimed' AND lease_expires_at < now()
                 FOR UPDATE SKIP LOCKED
             ), gone AS (
                 DELETE FROM attempts a USING expired
                 WHERE a.contact_id = expired.id AND a.state = 'claimed'
                 RETURNING a.contact_id
             )
             UPDATE contacts c SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                 attempt_seq = c.attempt_seq - (SELECT count(*) FROM gone g WHERE g.contact_id = c.id),
                 updated_at = now()
             FROM expired WHERE c.id = expired.id",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Attempts to reconcile: parked ones, `dialing` ones older than `dialing_grace_s` (the dialer died
    /// mid-POST), and created ones with no terminal status after `stale_s`. Uses `attempts_open`.
    pub async fn attempts_to_reconcile(
        &self,
        dialing_grace_s: f64,
        stale_s: f64,
        limit: i64,
    ) -> Result<Vec<OpenAttempt>> {
        Ok(sqlx::query_as::<_, OpenAttempt>(
            "SELECT a.id AS attempt_id, a.contact_id, a.campaign_id, a.state, a.phone, c.caller_id, a.call_sid,
                    a.requested_at
             FROM attempts a JOIN campaigns c ON c.id = a.campaign_id
             WHERE a.state IN ('dialing', 'created', 'parked')
               AND ((a.state IN ('dialing', 'parked') AND a.requested_at < now() - make_interval(secs => $1))
                    OR a.requested_at < now() - make_interval(secs => $2))
             ORDER BY a.requested_at
             LIMIT $3",
        )
        .bind(dialing_grace_s)
        .bind(stale_s)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

impl Store {
    /// Contacts per (campaign, state), for the `dialer_contacts` gauge.
    pub async fn contacts_count_by_state(&self) -> Result<Vec<(i64, String, i64)>> {
        Ok(sqlx::query_as("SELECT campaign_id, state, count(*) FROM contacts GROUP BY campaign_id, state")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Calls requested and not yet ended, per campaign (uses `attempts_open`).
    pub async fn attempts_in_flight_by_campaign(&self) -> Result<Vec<(i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT campaign_id, count(*) FROM attempts WHERE state IN ('dialing', 'created', 'parked')
             GROUP BY campaign_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

impl Store {
    /// Finished attempts of a campaign by outcome (the demo checks them against the simulator's record).
    pub async fn attempts_count_by_outcome(&self, campaign_id: i64) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT outcome, count(*) FROM attempts WHERE campaign_id = $1 AND state = 'finished' AND outcome IS NOT NULL
             GROUP BY outcome ORDER BY outcome",
        )
        .bind(campaign_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
