use super::{Result, Store};
use crate::domain::E164;

impl Store {
    /// Adds numbers to the DNC list (global when `campaign_id` is `None`); returns how many were new.
    pub async fn dnc_add_many(
        &self,
        phones: &[E164],
        campaign_id: Option<i64>,
        reason: &str,
        source: &str,
    ) -> Result<u64> {
        let phones: Vec<&str> = phones.iter().map(E164::as_str).collect();
        // Two partial unique indexes (global / per campaign), so the conflict target names its predicate.
        let sql = if campaign_id.is_none() {
            "INSERT INTO dnc (phone, campaign_id, reason, source)
             SELECT p, NULL, $3, $4 FROM unnest($1::text[]) AS p
             ON CONFLICT (phone) WHERE campaign_id IS NULL DO NOTHING"
        } else {
            "INSERT INTO dnc (phone, campaign_id, reason, source)
             SELECT p, $2, $3, $4 FROM unnest($1::text[]) AS p
             ON CONFLICT (phone, campaign_id) WHERE campaign_id IS NOT NULL DO NOTHING"
        };
        Ok(sqlx::query(sql)
            .bind(&phones)
            .bind(campaign_id)
            .bind(reason)
            .bind(source)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Whether a number may not be called by a campaign (global or that campaign's list).
    pub async fn dnc_blocks(&self, phone: &str, campaign_id: i64) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM dnc WHERE phone = $1 AND (campaign_id IS NULL OR campaign_id = $2))",
        )
        .bind(phone)
        .bind(campaign_id)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn dnc_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM dnc").fetch_one(&self.pool).await?)
    }
}
