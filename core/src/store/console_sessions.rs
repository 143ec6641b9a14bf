//! `console_sessions`: who is logged in to the console, by the SHA-256 of the cookie's session id.

use chrono::{DateTime, Utc};

use super::{ApiKeyRow, Result, Store};
use crate::domain::Scope;

/// A live session: the key it was opened with (not revoked) and its CSRF token.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub key: ApiKeyRow,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Opens a session for a key; also forgets sessions that expired (there are few, people log in rarely).
    pub async fn console_sessions_insert(
        &self,
        id_hash: &[u8],
        api_key_id: i64,
        csrf_token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query!("DELETE FROM console_sessions WHERE expires_at < now()").execute(&self.pool).await?;
        sqlx::query!(
            "INSERT INTO console_sessions (id_hash, api_key_id, csrf_token, expires_at) VALUES ($1, $2, $3, $4)",
            id_hash,
            api_key_id,
            csrf_token,
            expires_at
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this id hash, if it has not expired and its key is not revoked.
    pub async fn console_sessions_get(&self, id_hash: &[u8]) -> Result<Option<ConsoleSession>> {
        let row = sqlx::query!(
            r#"SELECT k.id, k.name, k.prefix, k.scopes AS "scopes: Vec<Scope>", k.created_at, k.revoked_at,
                      k.last_used_at, s.csrf_token, s.expires_at
               FROM console_sessions s JOIN api_keys k ON k.id = s.api_key_id
               WHERE s.id_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL"#,
            id_hash
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| ConsoleSession {
            key: ApiKeyRow {
                id: r.id,
                name: r.name,
                prefix: r.prefix,
                scopes: r.scopes,
                created_at: r.created_at,
                revoked_at: r.revoked_at,
                last_used_at: r.last_used_at,
            },
            csrf_token: r.csrf_token,
            expires_at: r.expires_at,
        }))
    }

    /// Logs a session out.
    pub async fn console_sessions_delete(&self, id_hash: &[u8]) -> Result<()> {
        sqlx::query!("DELETE FROM console_sessions WHERE id_hash = $1", id_hash).execute(&self.pool).await?;
        Ok(())
    }
}
