//! `webhook_endpoints` and `webhook_outbox`: where each campaign's result webhooks go, and the events
//! waiting to be delivered there.
//!
//! Events are written by triggers in the same transaction as the fact they report (see the migration
//! `20261130000002_webhooks.sql`); this module claims, acknowledges, lists and replays them.
//!
//! **Order per contact.** The claim hands out only a contact's oldest open event (not delivered, not dead),
//! so its events reach the receiver in the order they happened; a failing event holds back the ones after
//! it. A **dead** event (retried for the maximum age) stops blocking: the contact's later events are
//! delivered, and a replay re-sends the dead one afterwards — late rather than never; receivers order by the
//! event's `timestamp` if they must.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Result, Store, StoreError};
use crate::domain::webhook::{generate_secret, EventType};

/// A campaign's endpoint as a read shows it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookEndpoint {
    pub campaign_id: i64,
    pub url: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One event claimed for delivery, with where to send it and the secret to sign it with.
#[derive(Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub msg_id: String,
    pub campaign_id: i64,
    pub contact_id: i64,
    pub event_type: EventType,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
    /// Deliveries tried, this one included; fences this claim's acknowledgement.
    pub attempts: i32,
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for DueDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DueDelivery")
            .field("id", &self.id)
            .field("msg_id", &self.msg_id)
            .field("event_type", &self.event_type)
            .field("attempts", &self.attempts)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A delivery that did not get a 2xx.
#[derive(Debug, Clone)]
pub struct FailedDelivery {
    pub id: i64,
    /// The claim's `attempts`: a stale deliverer's report (the row was claimed again since) changes nothing.
    pub attempts: i32,
    pub status: Option<i32>,
    pub error: String,
    pub retry_at: DateTime<Utc>,
}

/// Which deliveries a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFilter {
    All,
    /// Tried at least once and not delivered yet (dead ones included).
    Failing,
    Dead,
}

/// One event and where its delivery stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub msg_id: String,
    pub contact_id: i64,
    pub event_type: EventType,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub dead_at: Option<DateTime<Utc>>,
}

/// What the gauges show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Neither delivered nor dead.
    pub backlog: i64,
    pub dead: i64,
}

fn check_url(url: &str) -> Result<()> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(StoreError::Conflict(format!("webhook url {url:?} must be http(s) with a host"))),
        Err(e) => Err(StoreError::Conflict(format!("webhook url {url:?}: {e}"))),
    }
}

impl Store {
    /// Sets (or replaces) the campaign's endpoint with a new secret and returns the secret — the only time
    /// it is shown. Calling it again rotates the secret: deliveries signed from then on use the new one.
    pub async fn webhook_endpoints_set(&self, campaign_id: i64, url: &str) -> Result<String> {
        check_url(url)?;
        let secret = generate_secret();
        let n = sqlx::query!(
            "INSERT INTO webhook_endpoints (campaign_id, url, secret)
             SELECT id, $2, $3 FROM campaigns WHERE id = $1
             ON CONFLICT (campaign_id) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret, updated_at = now()",
            campaign_id,
            url,
            secret
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("campaign {campaign_id}")));
        }
        Ok(secret)
    }

    /// The campaign's endpoint, without its secret.
    pub async fn webhook_endpoints_get(&self, campaign_id: i64) -> Result<Option<WebhookEndpoint>> {
        Ok(sqlx::query_as!(
            WebhookEndpoint,
            "SELECT campaign_id, url, created_at, updated_at FROM webhook_endpoints WHERE campaign_id = $1",
            campaign_id
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Removes the endpoint: no new events are written, and the undelivered ones are marked dead (they have
    /// nowhere to go; a replay after a new endpoint is set sends them). Returns whether there was one.
    pub async fn webhook_endpoints_delete(&self, campaign_id: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query!("DELETE FROM webhook_endpoints WHERE campaign_id = $1", campaign_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query!(
            "UPDATE webhook_outbox SET dead_at = now(), lease_until = NULL, last_error = 'endpoint deleted'
             WHERE campaign_id = $1 AND delivered_at IS NULL AND dead_at IS NULL",
            campaign_id
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Claims up to `limit` due events, each the oldest open event of its contact, in one round trip, and
    /// leases them for `lease` (their `next_attempt_at` moves to the lease's end, so a deliverer that dies
    /// mid-send leaves them due again then). `FOR UPDATE SKIP LOCKED`: concurrent deliverers never get the
    /// same row. Index: webhook_outbox_due, and webhook_outbox_contact_open for the per-contact check.
    pub async fn webhook_outbox_claim_due(&self, limit: i64, lease: Duration) -> Result<Vec<DueDelivery>> {
        let lease_ms = lease.as_millis() as f64;
        Ok(sqlx::query_as!(
            DueDelivery,
            r#"WITH due AS (
                   SELECT o.id FROM webhook_outbox o
                   WHERE o.delivered_at IS NULL AND o.dead_at IS NULL AND o.next_attempt_at <= now()
                     AND NOT EXISTS (SELECT 1 FROM webhook_outbox p
                                     WHERE p.contact_id = o.contact_id AND p.id < o.id
                                       AND p.delivered_at IS NULL AND p.dead_at IS NULL)
                   ORDER BY o.next_attempt_at, o.id
                   LIMIT $1
                   FOR UPDATE SKIP LOCKED
               )
               UPDATE webhook_outbox w
               SET attempts = w.attempts + 1, lease_until = now() + make_interval(secs => $2::float8 / 1000),
                   next_attempt_at = now() + make_interval(secs => $2::float8 / 1000)
               FROM due, webhook_endpoints e
               WHERE w.id = due.id AND e.campaign_id = w.campaign_id
               RETURNING w.id, w.msg_id, w.campaign_id, w.contact_id, w.event_type AS "event_type: EventType",
                         w.payload, w.created_at, w.attempts, e.url, e.secret"#,
            limit,
            lease_ms
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks deliveries done (the receiver answered 2xx) with their HTTP status, in one statement. Not
    /// fenced by the claim: a delivery that got through counts even if its lease ran out meanwhile.
    /// Returns how many were newly marked.
    pub async fn webhook_outbox_delivered_many(&self, ids: &[i64], statuses: &[i32]) -> Result<u64> {
        Ok(sqlx::query!(
            "UPDATE webhook_outbox w SET delivered_at = now(), dead_at = NULL, lease_until = NULL,
                 last_status = u.status, last_error = NULL
             FROM unnest($1::bigint[], $2::int[]) AS u(id, status)
             WHERE w.id = u.id AND w.delivered_at IS NULL",
            ids,
            statuses
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Reschedules failed deliveries at their `retry_at`, or gives them up (dead) when their retry window
    /// (`retry_from`) is older than `max_age`; in one statement. Fenced by the claim's `attempts`. Returns
    /// the ids that went dead.
    pub async fn webhook_outbox_failed_many(&self, failed: &[FailedDelivery], max_age: Duration) -> Result<Vec<i64>> {
        let ids: Vec<i64> = failed.iter().map(|f| f.id).collect();
        let attempts: Vec<i32> = failed.iter().map(|f| f.attempts).collect();
        let statuses: Vec<Option<i32>> = failed.iter().map(|f| f.status).collect();
        let errors: Vec<&str> = failed.iter().map(|f| f.error.as_str()).collect();
        let retry_at: Vec<DateTime<Utc>> = failed.iter().map(|f| f.retry_at).collect();
        let max_age_s = max_age.as_secs_f64();
        let rows = sqlx::query!(
            r#"UPDATE webhook_outbox w SET next_attempt_at = u.retry_at, lease_until = NULL,
                   last_status = u.status, last_error = u.error,
                   dead_at = CASE WHEN w.retry_from <= now() - make_interval(secs => $6) THEN now() END
               FROM unnest($1::bigint[], $2::int[], $3::int[], $4::text[], $5::timestamptz[])
                    AS u(id, attempts, status, error, retry_at)
               WHERE w.id = u.id AND w.attempts = u.attempts AND w.delivered_at IS NULL AND w.dead_at IS NULL
               RETURNING w.id, w.dead_at IS NOT NULL AS "dead!""#,
            &ids,
            &attempts,
            &statuses as _,
            &errors as _,
            &retry_at,
            max_age_s
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter(|r| r.dead).map(|r| r.id).collect())
    }

    /// A campaign's deliveries in id order, `limit` after the cursor `after` (the last id of the previous
    /// page). Index: webhook_outbox_campaign.
    pub async fn webhook_outbox_list(
        &self,
        campaign_id: i64,
        filter: DeliveryFilter,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        let (failing, dead) = match filter {
            DeliveryFilter::All => (false, false),
            DeliveryFilter::Failing => (true, false),
            DeliveryFilter::Dead => (false, true),
        };
        Ok(sqlx::query_as!(
            Delivery,
            r#"SELECT id, msg_id, contact_id, event_type AS "event_type: EventType", payload, created_at, attempts,
                      next_attempt_at, delivered_at, last_status, last_error, dead_at
               FROM webhook_outbox
               WHERE campaign_id = $1 AND id > $2
                 AND (NOT $3 OR (attempts > 0 AND delivered_at IS NULL))
                 AND (NOT $4 OR dead_at IS NOT NULL)
               ORDER BY id
               LIMIT $5"#,
            campaign_id,
            after.unwrap_or(0),
            failing,
            dead,
            limit
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sends one event again (dead, delivered or waiting): due now, with a fresh retry window. Returns
    /// whether the campaign has that event.
    pub async fn webhook_outbox_replay(&self, campaign_id: i64, id: i64) -> Result<bool> {
        Ok(sqlx::query!(
            "UPDATE webhook_outbox SET dead_at = NULL, delivered_at = NULL, lease_until = NULL,
                 next_attempt_at = now(), retry_from = now()
             WHERE campaign_id = $1 AND id = $2",
            campaign_id,
            id
        )
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Sends every dead event of the campaign again. Index: webhook_outbox_dead. Returns how many.
    pub async fn webhook_outbox_replay_dead(&self, campaign_id: i64) -> Result<u64> {
        Ok(sqlx::query!(
            "UPDATE webhook_outbox SET dead_at = NULL, lease_until = NULL, next_attempt_at = now(), retry_from = now()
             WHERE campaign_id = $1 AND dead_at IS NOT NULL",
            campaign_id
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Events waiting (neither delivered nor dead) and dead, across campaigns, for the gauges.
    /// Index-only over the partial indexes.
    pub async fn webhook_outbox_counts(&self) -> Result<OutboxCounts> {
        let r = sqlx::query!(
            r#"SELECT (SELECT count(*) FROM webhook_outbox WHERE delivered_at IS NULL AND dead_at IS NULL) AS "backlog!",
                      (SELECT count(*) FROM webhook_outbox WHERE dead_at IS NOT NULL) AS "dead!""#
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxCounts { backlog: r.backlog, dead: r.dead })
    }
}
