//! `dnc`: the do-not-call lists (global, or one campaign's).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Result, Store};
use crate::domain::E164;

/// One listing of a number (global when `campaign_id` is `None`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DncEntry {
    pub phone: E164,
    pub campaign_id: Option<i64>,
    pub reason: String,
    pub source: String,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Adds numbers to the DNC list (global when `campaign_id` is `None`); returns how many were new.
    pub async fn dnc_add_many(
        &self,
        phones: &[E164],
        campaign_id: Option<i64>,
        reason: &str,
        source: &str,
    ) -> Result<u64> {
        // Two partial unique indexes (global / per campaign), so the conflict target names its predicate.
        let done = match campaign_id {
            None => {
                sqlx::query!(
                    "INSERT INTO dnc (phone, campaign_id, reason, source)
                     SELECT p, NULL, $2, $3 FROM unnest($1::text[]) AS p
                     ON CONFLICT (phone) WHERE campaign_id IS NULL DO NOTHING",
                    phones as _,
                    reason,
                    source
                )
                .execute(&self.pool)
                .await?
            }
            Some(campaign_id) => {
                sqlx::query!(
                    "INSERT INTO dnc (phone, campaign_id, reason, source)
                     SELECT p, $2, $3, $4 FROM unnest($1::text[]) AS p
                     ON CONFLICT (phone, campaign_id) WHERE campaign_id IS NOT NULL DO NOTHING",
                    phones as _,
                    campaign_id,
                    reason,
                    source
                )
                .execute(&self.pool)
                .await?
            }
        };
        Ok(done.rows_affected())
    }

    /// Whether a number may not be called by a campaign (global or that campaign's list).
    pub async fn dnc_blocks(&self, phone: &E164, campaign_id: i64) -> Result<bool> {
        Ok(sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM dnc WHERE phone = $1 AND (campaign_id IS NULL OR campaign_id = $2)) AS "x!""#,
            phone as _,
            campaign_id
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Phones among `phones` that `campaign_id` may not call (global or campaign DNC), one query for a
    /// claimed batch.
    pub async fn dnc_blocked_among(&self, campaign_id: i64, phones: &[E164]) -> Result<Vec<E164>> {
        Ok(sqlx::query_scalar!(
            r#"SELECT DISTINCT phone AS "phone: E164" FROM dnc
               WHERE phone = ANY($2::text[]) AND (campaign_id IS NULL OR campaign_id = $1)"#,
            campaign_id,
            phones as _
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn dnc_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM dnc"#).fetch_one(&self.pool).await?)
    }

    /// Every listing of a number.
    pub async fn dnc_entries(&self, phone: &E164) -> Result<Vec<DncEntry>> {
        Ok(sqlx::query_as!(
            DncEntry,
            r#"SELECT phone AS "phone: E164", campaign_id, reason, source, created_at FROM dnc WHERE phone = $1
               ORDER BY campaign_id NULLS FIRST"#,
            phone as _
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Takes a number off the global list (`None`) or one campaign's; returns whether it was listed.
    pub async fn dnc_remove(&self, phone: &E164, campaign_id: Option<i64>) -> Result<bool> {
        Ok(sqlx::query!(
            "DELETE FROM dnc WHERE phone = $1 AND campaign_id IS NOT DISTINCT FROM $2",
            phone as _,
            campaign_id
        )
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }
}
