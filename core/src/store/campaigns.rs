//! `campaigns`: create, read, and the guarded status changes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;

use super::transitions::cancel_open_in;
use super::{Result, Store, StoreError};
use crate::domain::campaign::Limits;
use crate::domain::compliance::{CallPolicy, Compliance, ZoneSource, Zoning};
use crate::domain::{AmdMode, CallingWindow, CampaignSpec, CampaignStatus, ContactState, RetryPolicy, Tz, E164};

/// A campaign as stored, parsed back into domain types.
#[derive(Debug, Clone)]
pub struct CampaignRow {
    pub id: i64,
    pub name: String,
    pub caller_id: E164,
    pub status: CampaignStatus,
    pub status_reason: Option<String>,
    /// The zone of contacts that have none.
    pub timezone: Tz,
    pub cps: f64,
    pub account_cps_share: f64,
    pub max_in_flight: i32,
    pub max_attempts: i32,
    pub retry_policy: Json<RetryPolicy>,
    pub calling_window: Json<CallingWindow>,
    pub limits: Json<Limits>,
    pub compliance: Json<Compliance>,
    pub amd_mode: AmdMode,
    pub ring_timeout_s: i32,
    /// The script as stored; the callbacks service parses it into its menu tree.
    pub script: Value,
    pub recurrence_cron: Option<String>,
    pub recurrence_tz: Option<Tz>,
    /// The last occurrence that opened the campaign (or found it open, paused…).
    pub recurrence_last_at: Option<DateTime<Utc>>,
    pub spec: Value,
    pub created_at: DateTime<Utc>,
}

impl CampaignRow {
    /// The campaign's calling rules: window, profiles and limits.
    /// The `[operators]` section (defaults when absent).
    pub fn operator_settings(&self) -> crate::domain::operators::OperatorSettings {
        self.spec.get("operators").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
    }

    pub fn policy(&self) -> CallPolicy {
        CallPolicy::new(self.calling_window.0.clone(), self.compliance.0.clone(), self.limits.0.clone())
    }

    /// How its contacts' zones are resolved at import.
    pub fn zoning(&self) -> Zoning {
        let rules = self.policy();
        Zoning {
            campaign_tz: self.timezone,
            fallback: self.compliance.zone_fallback,
            require_reference: rules.requires_reference(),
            rules: Some(rules),
        }
    }
}

/// `campaign status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignReport {
    pub id: i64,
    pub name: String,
    pub status: CampaignStatus,
    pub status_reason: Option<String>,
    pub contacts: i64,
    pub by_state: BTreeMap<ContactState, i64>,
    pub by_outcome: BTreeMap<String, i64>,
    pub by_result: BTreeMap<String, i64>,
    /// Contacts by where their zone came from (`given`, `number`, `campaign`).
    pub by_zone_source: BTreeMap<ZoneSource, i64>,
    pub attempts: i64,
    pub calls_requested: i64,
    pub in_flight: i64,
    pub parked: i64,
    pub next_due_at: Option<DateTime<Utc>>,
    /// Calls contacts made to our caller ID (not counted in `attempts`).
    pub inbound_calls: i64,
    /// The SMS fallback's texts.
    pub sms: super::MessageCounts,
}

/// Every column of `campaigns`, typed, for `query_as!(CampaignRow, …)`, followed by `$rest` (WHERE …) and
/// its arguments. A macro because the checked query macros need the whole statement as literals.
macro_rules! select_campaigns {
    ($rest:literal $(, $arg:expr)*) => {
        sqlx::query_as!(
            CampaignRow,
            r#"SELECT id, name, caller_id AS "caller_id: E164", status AS "status: CampaignStatus", status_reason,
                      timezone AS "timezone: Tz", cps, account_cps_share, max_in_flight, max_attempts,
                      retry_policy AS "retry_policy: Json<RetryPolicy>",
                      calling_window AS "calling_window: Json<CallingWindow>", limits AS "limits: Json<Limits>",
                      compliance AS "compliance: Json<Compliance>",
                      amd_mode AS "amd_mode: AmdMode", ring_timeout_s, script, recurrence_cron,
                      recurrence_tz AS "recurrence_tz: Tz", recurrence_last_at, spec, created_at
               FROM campaigns "# + $rest $(, $arg)*
        )
    };
}

/// Seconds over which "calls per second now" is averaged.
const RATE_WINDOW_S: f64 = 10.0;

/// A campaign's attempts as its progress shows them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerStats {
    /// Attempts whose end is known.
    pub finished: i64,
    /// Of those, answered.
    pub answered: i64,
    /// Calls requested over the last ten seconds, per second.
    pub calls_per_second: f64,
}

impl Store {
    pub async fn campaigns_insert(&self, spec: &CampaignSpec) -> Result<i64> {
        let f = &spec.file;
        Ok(sqlx::query_scalar!(
            "INSERT INTO campaigns (name, caller_id, timezone, cps, account_cps_share, max_in_flight, max_attempts,
                retry_policy, calling_window, limits, amd_mode, ring_timeout_s, script, recurrence_cron, recurrence_tz, spec,
                compliance)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             RETURNING id",
            &f.name,
            &spec.caller_id as _,
            spec.timezone.name(),
            f.cps,
            f.account_cps_share,
            f.max_in_flight,
            f.max_attempts,
            Json(&f.retry) as _,
            Json(&spec.window) as _,
            Json(&f.limits) as _,
            f.amd as _,
            f.ring_timeout_s,
            Json(&f.script) as _,
            f.recurrence.as_ref().map(|r| r.cron.as_str()),
            f.recurrence.as_ref().map(|r| r.timezone.as_str()),
            Json(f) as _,
            Json(&f.compliance) as _,
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Campaigns with id > `after`, in id order (keyset paging).
    pub async fn campaigns_list(&self, after: i64, limit: i64) -> Result<Vec<CampaignRow>> {
        Ok(select_campaigns!("WHERE id > $1 ORDER BY id LIMIT $2", after, limit).fetch_all(&self.pool).await?)
    }

    /// Writes the fields that are safe to change while a campaign runs (window, CPS, in-flight cap, retry
    /// policy and attempts, script) from an already validated spec, and the spec itself. The scheduler and
    /// the callbacks read these per claim and per request, so the change applies from the next claim or
    /// TwiML request on. The caller checks that nothing else differs. A canceled campaign is a `Conflict`.
    pub async fn campaigns_update_live(&self, id: i64, spec: &CampaignSpec) -> Result<CampaignRow> {
        let f = &spec.file;
        let updated = sqlx::query!(
            "UPDATE campaigns SET cps = $2, max_in_flight = $3, max_attempts = $4, retry_policy = $5,
                 calling_window = $6, script = $7, spec = $8, updated_at = now()
             WHERE id = $1 AND status <> 'canceled'",
            id,
            f.cps,
            f.max_in_flight,
            f.max_attempts,
            Json(&f.retry) as _,
            Json(&spec.window) as _,
            Json(&f.script) as _,
            Json(f) as _,
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        let row = self.campaigns_get(id).await?;
        if updated == 0 {
            return Err(StoreError::Conflict(format!("campaign {id} is {}; it cannot be changed", row.status)));
        }
        Ok(row)
    }

    /// When the last waiting contact of a campaign falls due (its latest scheduled retry).
    pub async fn contacts_last_due(&self, campaign_id: i64) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar!(
            "SELECT max(next_attempt_at) FROM contacts WHERE campaign_id = $1 AND state = 'pending'",
            campaign_id
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// A campaign's finished attempts, how many were answered, and its call rate now (one scan).
    pub async fn attempts_answer_stats(&self, campaign_id: i64) -> Result<AnswerStats> {
        let r = sqlx::query!(
            r#"SELECT count(*) FILTER (WHERE state = 'finished') AS "finished!",
                      count(answered_at) FILTER (WHERE state = 'finished') AS "answered!",
                      count(*) FILTER (WHERE requested_at > now() - make_interval(secs => $2)) AS "recent!"
               FROM attempts WHERE campaign_id = $1"#,
            campaign_id,
            RATE_WINDOW_S,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(AnswerStats {
            finished: r.finished,
            answered: r.answered,
            calls_per_second: r.recent as f64 / RATE_WINDOW_S,
        })
    }

    pub async fn campaigns_get(&self, id: i64) -> Result<CampaignRow> {
        select_campaigns!("WHERE id = $1", id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("campaign {id}")))
    }

    /// Index: campaigns_running.
    pub async fn campaigns_running(&self) -> Result<Vec<CampaignRow>> {
        Ok(select_campaigns!("WHERE status = 'running' ORDER BY id").fetch_all(&self.pool).await?)
    }

    pub async fn campaigns_recurring(&self) -> Result<Vec<CampaignRow>> {
        Ok(select_campaigns!("WHERE recurrence_cron IS NOT NULL AND status <> 'canceled' ORDER BY id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Guarded status change: applied only from a status [`CampaignStatus::allowed_from`] lists (a campaign
    /// already in `to` answers `to`). Canceling finishes every open contact as canceled. Returns the status
    /// after.
    pub async fn campaigns_set_status(
        &self,
        id: i64,
        to: CampaignStatus,
        reason: Option<&str>,
    ) -> Result<CampaignStatus> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query_scalar!(
            r#"UPDATE campaigns SET status = $2, status_reason = $3, updated_at = now()
               WHERE id = $1 AND status = ANY($4::text[]) RETURNING status AS "status: CampaignStatus""#,
            id,
            to as _,
            reason,
            to.allowed_from() as _,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if updated == Some(CampaignStatus::Canceled) {
            // In the same transaction: a canceled campaign never has a contact left waiting.
            cancel_open_in(&mut tx, id).await?;
        }
        tx.commit().await?;
        match updated {
            Some(s) => Ok(s),
            None => {
                let current = self.campaigns_get(id).await?.status;
                if current == to {
                    Ok(current)
                } else {
                    Err(StoreError::Conflict(format!("campaign {id} is {current}; cannot become {to}")))
                }
            }
        }
    }

    /// Records occurrence `at` of a recurring campaign, exactly once across replicas (compare-and-set on
    /// `recurrence_last_at`: only an occurrence newer than the last recorded one applies). A draft or
    /// completed campaign opens (`running`); a paused one stays paused and a running one runs on; a
    /// canceled one is never touched. Returns the status after, or `None` when another replica (or an
    /// earlier pass) already recorded this occurrence.
    pub async fn campaigns_open_occurrence(&self, id: i64, at: DateTime<Utc>) -> Result<Option<CampaignStatus>> {
        Ok(sqlx::query_scalar!(
            r#"UPDATE campaigns SET recurrence_last_at = $2,
                   status = CASE WHEN status IN ('draft', 'completed') THEN 'running' ELSE status END,
                   status_reason = CASE WHEN status IN ('draft', 'completed') THEN 'opened by its recurrence'
                                        ELSE status_reason END,
                   updated_at = now()
               WHERE id = $1 AND status <> 'canceled' AND recurrence_cron IS NOT NULL
                 AND (recurrence_last_at IS NULL OR recurrence_last_at < $2)
               RETURNING status AS "status: CampaignStatus""#,
            id,
            at
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Marks running campaigns with no open contacts as completed; returns their ids.
    pub async fn campaigns_complete_finished(&self) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar!(
            "UPDATE campaigns c SET status = 'completed', status_reason = 'every contact finished', updated_at = now()
             WHERE c.status = 'running' AND c.recurrence_cron IS NULL
               AND EXISTS (SELECT 1 FROM contacts x WHERE x.campaign_id = c.id)
               AND NOT EXISTS (SELECT 1 FROM contacts x WHERE x.campaign_id = c.id
                               AND x.state IN ('pending', 'claimed', 'calling'))
             RETURNING c.id"
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn campaigns_report(&self, id: i64) -> Result<CampaignReport> {
        let c = self.campaigns_get(id).await?;
        // Contacts by state, by final outcome, by result and by zone source in one round trip (one
        // grouping set each).
        let (mut by_state, mut by_outcome, mut by_result) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        let mut by_zone_source = BTreeMap::new();
        for r in sqlx::query!(
            r#"SELECT state AS "state?: ContactState", final_outcome AS "outcome?", result AS "result?",
                      zone_source AS "zone_source?: ZoneSource", count(*) AS "n!"
               FROM contacts WHERE campaign_id = $1
               GROUP BY GROUPING SETS ((state), (final_outcome), (result), (zone_source))"#,
            id
        )
        .fetch_all(&self.pool)
        .await?
        {
            match (r.state, r.outcome, r.result, r.zone_source) {
                (Some(state), None, None, None) => _ = by_state.insert(state, r.n),
                (None, Some(outcome), None, None) => _ = by_outcome.insert(outcome, r.n),
                (None, None, Some(result), None) => _ = by_result.insert(result, r.n),
                (None, None, None, Some(source)) => _ = by_zone_source.insert(source, r.n),
                _ => {} // the NULL group of outcome or result: contacts without one
            }
        }
        let a = sqlx::query!(
            r#"SELECT count(*) FILTER (WHERE direction = 'outbound') AS "attempts!",
                      count(*) FILTER (WHERE direction = 'inbound') AS "inbound!",
                      count(*) FILTER (WHERE requested_at IS NOT NULL AND state <> 'not_created') AS "requested!",
                      count(*) FILTER (WHERE state IN ('dialing', 'created', 'parked')) AS "in_flight!",
                      count(*) FILTER (WHERE state = 'parked') AS "parked!"
               FROM attempts WHERE campaign_id = $1"#,
            id
        )
        .fetch_one(&self.pool)
        .await?;
        let next_due_at = sqlx::query_scalar!(
            "SELECT min(next_attempt_at) FROM contacts WHERE campaign_id = $1 AND state = 'pending'",
            id
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(CampaignReport {
            id,
            name: c.name,
            status: c.status,
            status_reason: c.status_reason,
            contacts: by_state.values().sum(),
            by_state,
            by_outcome,
            by_result,
            by_zone_source,
            attempts: a.attempts,
            calls_requested: a.requested,
            in_flight: a.in_flight,
            parked: a.parked,
            next_due_at,
            inbound_calls: a.inbound,
            sms: self.messages_counts(id).await?,
        })
    }
}
