//! `api_keys`: management API keys, stored as hashes.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Result, Store};
use crate::domain::{ApiKeySecret, Scope};

/// A key as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKeyRow {
    pub id: i64,
    pub name: String,
    /// The key's first characters (`dk_` and 8 more).
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKeyRow {
    pub fn allows(&self, scope: Scope) -> bool {
        self.revoked_at.is_none() && self.scopes.contains(&scope)
    }
}

impl Store {
    /// Stores a new key's hash; returns its id. The caller shows the secret once.
    pub async fn api_keys_insert(&self, name: &str, secret: &ApiKeySecret, scopes: &[Scope]) -> Result<i64> {
        Ok(sqlx::query_scalar!(
            "INSERT INTO api_keys (name, prefix, secret_hash, scopes) VALUES ($1, $2, $3, $4) RETURNING id",
            name,
            secret.shown_prefix(),
            &secret.hash()[..],
            scopes as _,
        )
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn api_keys_list(&self) -> Result<Vec<ApiKeyRow>> {
        Ok(sqlx::query_as!(
            ApiKeyRow,
            r#"SELECT id, name, prefix, scopes AS "scopes: Vec<Scope>", created_at, revoked_at, last_used_at
               FROM api_keys ORDER BY id"#
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn api_keys_get(&self, id: i64) -> Result<Option<ApiKeyRow>> {
        Ok(sqlx::query_as!(
            ApiKeyRow,
            r#"SELECT id, name, prefix, scopes AS "scopes: Vec<Scope>", created_at, revoked_at, last_used_at
               FROM api_keys WHERE id = $1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Revokes a key at once; returns whether it was live.
    pub async fn api_keys_revoke(&self, id: i64) -> Result<bool> {
        Ok(sqlx::query!("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    /// The key a client presented (revoked or not), by its hash; notes its use at most once a minute so
    /// a busy client does not write a row version per request.
    pub async fn api_keys_authenticate(&self, presented: &ApiKeySecret) -> Result<Option<ApiKeyRow>> {
        let row = sqlx::query_as!(
            ApiKeyRow,
            r#"SELECT id, name, prefix, scopes AS "scopes: Vec<Scope>", created_at, revoked_at, last_used_at
               FROM api_keys WHERE secret_hash = $1"#,
            &presented.hash()[..]
        )
        .fetch_optional(&self.pool)
        .await?;
        if let Some(k) = &row {
            if k.revoked_at.is_none() && k.last_used_at.is_none_or(|t| Utc::now() - t > chrono::Duration::minutes(1)) {
                sqlx::query!("UPDATE api_keys SET last_used_at = now() WHERE id = $1", k.id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(row)
    }
}
