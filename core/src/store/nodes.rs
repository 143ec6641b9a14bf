//! Live dialer replicas, for sharing the account CPS through the database (no coordinator of our own).

use super::{Result, Store};

impl Store {
    /// Records this replica as alive and returns how many replicas are alive (heartbeat within
    /// `live_s`), this one included.
    pub async fn nodes_heartbeat(&self, node_id: &str, live_s: f64) -> Result<i64> {
        Ok(sqlx::query_scalar!(
            r#"WITH me AS (
                 INSERT INTO dialer_nodes (node_id) VALUES ($1)
                 ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = now()
                 RETURNING node_id
             )
             SELECT 1 + count(*) AS "n" FROM dialer_nodes
             WHERE node_id <> $1 AND heartbeat_at > now() - make_interval(secs => $2)"#,
            node_id,
            live_s
        )
        .fetch_one(&self.pool)
        .await?
        .unwrap_or(1))
    }

    pub async fn nodes_leave(&self, node_id: &str) -> Result<()> {
        sqlx::query!("DELETE FROM dialer_nodes WHERE node_id = $1", node_id).execute(&self.pool).await?;
        sqlx::query!("DELETE FROM dialer_nodes WHERE heartbeat_at < now() - interval '1 hour'")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
