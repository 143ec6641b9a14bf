use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;

use super::{Result, Store, StoreError};
use crate::domain::CampaignSpec;

/// A campaign as stored.
#[derive(Debug, Clone, FromRow)]
pub struct CampaignRow {
    pub id: i64,
    pub name: String,
    pub caller_id: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub timezone: String,
    pub cps: f64,
    pub account_cps_share: f64,
    pub max_in_flight: i32,
    pub max_attempts: i32,
    pub retry_policy: Value,
    pub calling_window: Value,
    pub limits: Value,
    pub amd_mode: String,
    pub ring_timeout_s: i32,
    pub script: Value,
    pub recurrence_cron: Option<String>,
    pub recurrence_tz: Option<String>,
    pub spec: Value,
}

/// `campaign status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignReport {
    pub id: i64,
    pub name: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub contacts: i64,
    pub by_state: BTreeMap<String, i64>,
    pub by_outcome: BTreeMap<String, i64>,
    pub by_result: BTreeMap<String, i64>,
    pub attempts: i64,
    pub calls_requested: i64,
    pub in_flight: i64,
    pub parked: i64,
    pub next_due_at: Option<DateTime<Utc>>,
}

/// Campaign status transitions: (to, allowed from).
pub fn campaign_transition(to: &str) -> Option<&'static [&'static str]> {
    match to {
        "running" => Some(&["draft", "paused", "completed"]),
        "paused" => Some(&["running"]),
        "canceled" => Some(&["draft", "running", "paused"]),
        "completed" => Some(&["running"]),
        _ => None,
    }
}

impl Store {
    pub async fn campaigns_insert(&self, spec: &CampaignSpec) -> Result<i64> {
        let f = &spec.file;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO campaigns (name, caller_id, timezone, cps, account_cps_share, max_in_flight, max_attempts,
                retry_policy, calling_window, limits, amd_mode, ring_timeout_s, script, recurrence_cron, recurrence_tz, spec)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             RETURNING id",
        )
        .bind(&f.name)
        .bind(spec.caller_id.as_str())
        .bind(spec.timezone.name())
        .bind(f.cps)
        .bind(f.account_cps_share)
        .bind(f.max_in_flight)
        .bind(f.max_attempts)
        .bind(json(&f.retry))
        .bind(json(&spec.window))
        .bind(json(&f.limits))
        .bind(f.amd.as_str())
        .bind(f.ring_timeout_s)
        .bind(json(&f.script))
        .bind(f.recurrence.as_ref().map(|r| r.cron.clone()))
        .bind(f.recurrence.as_ref().map(|r| r.timezone.clone()))
        .bind(json(f))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn campaigns_get(&self, id: i64) -> Result<CampaignRow> {
        sqlx::query_as::<_, CampaignRow>("SELECT * FROM campaigns WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("campaign {id}")))
    }

    pub async fn campaigns_running(&self) -> Result<Vec<CampaignRow>> {
        // Uses campaigns_running (partial index).
        Ok(sqlx::query_as::<_, CampaignRow>("SELECT * FROM campaigns WHERE status = 'running' ORDER BY id")
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn campaigns_recurring(&self) -> Result<Vec<CampaignRow>> {
        Ok(sqlx::query_as::<_, CampaignRow>(
            "SELECT * FROM campaigns WHERE recurrence_cron IS NOT NULL AND status <> 'canceled' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Guarded status change: applied only from an allowed source status. Returns the status after.
    pub async fn campaigns_set_status(&self, id: i64, to: &str, reason: Option<&str>) -> Result<String> {
        let from = campaign_transition(to).ok_or_else(|| StoreError::Conflict(format!("unknown status {to}")))?;
        let from: Vec<String> = from.iter().map(|s| s.to_string()).collect();
        let updated: Option<String> = sqlx::query_scalar(
            "UPDATE campaigns SET status = $2, status_reason = $3, updated_at = now()
             WHERE id = $1 AND status = ANY($4) RETURNING status",
        )
        .bind(id)
        .bind(to)
        .bind(reason)
        .bind(&from)
        .fetch_optional(&self.pool)
        .await?;
        match updated {
            Some(s) => {
                if to == "canceled" {
                    self.contacts_cancel_open(id).await?;
                }
                Ok(s)
            }
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

    /// Marks running campaigns with no open contacts as completed; returns their ids.
    pub async fn campaigns_complete_finished(&self) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "UPDATE campaigns c SET status = 'completed', status_reason = 'every contact finished', updated_at = now()
             WHERE c.status = 'running' AND c.recurrence_cron IS NULL
               AND EXISTS (SELECT 1 FROM contacts x WHERE x.campaign_id = c.id)
               AND NOT EXISTS (SELECT 1 FROM contacts x WHERE x.campaign_id = c.id
                               AND x.state IN ('pending', 'claimed', 'calling'))
             RETURNING c.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn campaigns_report(&self, id: i64) -> Result<CampaignReport> {
        let c = self.campaigns_get(id).await?;
        let by_state: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, count(*) FROM contacts WHERE campaign_id = $1 GROUP BY state")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        let by_outcome: Vec<(String, i64)> = sqlx::query_as(
            "SELECT final_outcome, count(*) FROM contacts WHERE campaign_id = $1 AND final_outcome IS NOT NULL
             GROUP BY final_outcome",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let by_result: Vec<(String, i64)> = sqlx::query_as(
            "SELECT result, count(*) FROM contacts WHERE campaign_id = $1 AND result IS NOT NULL GROUP BY result",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let (attempts, calls_requested, in_flight, parked): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT count(*),
                    count(*) FILTER (WHERE requested_at IS NOT NULL AND state <> 'not_created'),
                    count(*) FILTER (WHERE state IN ('dialing', 'created', 'parked')),
                    count(*) FILTER (WHERE state = 'parked')
             FROM attempts WHERE campaign_id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        let next_due_at: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(next_attempt_at) FROM contacts WHERE campaign_id = $1 AND state = 'pending'",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(CampaignReport {
            id,
            name: c.name,
            status: c.status,
            status_reason: c.status_reason,
            contacts: by_state.iter().map(|(_, n)| n).sum(),
            by_state: by_state.into_iter().collect(),
            by_outcome: by_outcome.into_iter().collect(),
            by_result: by_result.into_iter().collect(),
            attempts,
            calls_requested,
            in_flight,
            parked,
            next_due_at,
        })
    }
}

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("campaign types serialize to JSON")
}
