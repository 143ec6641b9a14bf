//! Reads of `attempts`: what reconciliation must resolve, limits, and counts for metrics and reports.
//! Every statement that moves an attempt's state is in [`super::transitions`].

use chrono::{DateTime, Utc};

use super::{Result, Store};
use crate::domain::{AttemptState, CallSid, CallStatus, ContactState, Outcome, E164};

/// An attempt whose call's fate or end is unknown and must be asked of the API.
#[derive(Debug, Clone)]
pub struct OpenAttempt {
    pub attempt_id: i64,
    pub contact_id: i64,
    pub campaign_id: i64,
    pub state: AttemptState,
    pub phone: E164,
    pub caller_id: E164,
    pub call_sid: Option<CallSid>,
    pub requested_at: DateTime<Utc>,
}

/// A call still open, as `campaign cancel --hang-up` ends it.
#[derive(Debug, Clone)]
pub struct OpenCall {
    pub attempt_id: i64,
    pub call_sid: Option<CallSid>,
    pub call_status: Option<CallStatus>,
}

impl Store {
    /// Attempts to reconcile: parked ones, `dialing` ones older than `dialing_grace_s` (the dialer died
    /// mid-POST), and created ones with no terminal status after `stale_s`. Index: attempts_open.
    pub async fn attempts_to_reconcile(
        &self,
        dialing_grace_s: f64,
        stale_s: f64,
        limit: i64,
    ) -> Result<Vec<OpenAttempt>> {
        Ok(sqlx::query_as!(
            OpenAttempt,
            r#"SELECT a.id AS attempt_id, a.contact_id, a.campaign_id, a.state AS "state: AttemptState",
                      a.phone AS "phone: E164", c.caller_id AS "caller_id: E164", a.call_sid AS "call_sid: CallSid",
                      a.requested_at AS "requested_at!"
               FROM attempts a JOIN campaigns c ON c.id = a.campaign_id
               WHERE a.state IN ('dialing', 'created', 'parked')
                 AND ((a.state IN ('dialing', 'parked') AND a.requested_at < now() - make_interval(secs => $1))
                      OR a.requested_at < now() - make_interval(secs => $2))
               ORDER BY a.requested_at
               LIMIT $3"#,
            dialing_grace_s,
            stale_s,
            limit
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// A campaign's calls not yet ended (`dialing`, `created`, `parked`), with their CallSid once known and
    /// the last status reported (to hang them up on cancel). Index: attempts_open.
    pub async fn attempts_open_calls(&self, campaign_id: i64) -> Result<Vec<OpenCall>> {
        Ok(sqlx::query_as!(
            OpenCall,
            r#"SELECT id AS attempt_id, call_sid AS "call_sid: CallSid", call_status AS "call_status: CallStatus"
               FROM attempts WHERE campaign_id = $1 AND state IN ('dialing', 'created', 'parked')
               ORDER BY id"#,
            campaign_id
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// When a number's oldest call of the last 24 h drops out of the window (for a limit deferral).
    /// Index: attempts_phone_requested.
    pub async fn attempts_limit_clears_at(&self, phone: &E164, max_calls_24h: i32) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar!(
            "SELECT requested_at + interval '24 hours' FROM attempts
             WHERE phone = $1 AND requested_at > now() - interval '24 hours' AND state <> 'not_created'
             ORDER BY requested_at DESC OFFSET $2 - 1 LIMIT 1",
            phone as _,
            max_calls_24h as i64
        )
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// Contacts per (campaign, state), for the `dialer_contacts` gauge.
    pub async fn contacts_count_by_state(&self) -> Result<Vec<(i64, ContactState, i64)>> {
        Ok(sqlx::query!(
            r#"SELECT campaign_id, state AS "state: ContactState", count(*) AS "n!"
               FROM contacts GROUP BY campaign_id, state"#
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.campaign_id, r.state, r.n))
        .collect())
    }

    /// Calls requested and not yet ended, per campaign. Index: attempts_open.
    pub async fn attempts_in_flight_by_campaign(&self) -> Result<Vec<(i64, i64)>> {
        Ok(sqlx::query!(
            r#"SELECT campaign_id, count(*) AS "n!" FROM attempts WHERE state IN ('dialing', 'created', 'parked')
               GROUP BY campaign_id"#
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.campaign_id, r.n))
        .collect())
    }

    /// Finished attempts of a campaign by outcome (the demo checks them against the simulator's record).
    pub async fn attempts_count_by_outcome(&self, campaign_id: i64) -> Result<Vec<(Outcome, i64)>> {
        Ok(sqlx::query!(
            r#"SELECT outcome AS "outcome!: Outcome", count(*) AS "n!" FROM attempts
               WHERE campaign_id = $1 AND state = 'finished' AND outcome IS NOT NULL
               GROUP BY outcome ORDER BY outcome"#,
            campaign_id
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| (r.outcome, r.n))
        .collect())
    }

    /// How many attempts of a campaign are in `state` (tests and reports count with this rather than
    /// spelling a state in their own SQL).
    pub async fn attempts_count_in_state(&self, campaign_id: i64, state: AttemptState) -> Result<i64> {
        Ok(sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM attempts WHERE campaign_id = $1 AND state = $2"#,
            campaign_id,
            state as _
        )
        .fetch_one(&self.pool)
        .await?)
    }
}
