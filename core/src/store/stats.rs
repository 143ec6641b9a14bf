//! Planner statistics of the hot tables, kept up while they grow from empty.
//!
//! A prepared statement's generic plan is built once and kept until the table's statistics change. Built
//! while `attempts` or `call_events` is nearly empty (a new install, a new benchmark database), it
//! sequential-scans: cheapest for a few rows, and then O(table) on every batch for as long as autovacuum
//! has not analyzed the table (its first visit can be a minute away). Measured at 1,000 CPS on a fresh
//! database: 1,820 scans reading 17.3 M `attempts` rows in 30 s, about a fifth of PostgreSQL's CPU
//! (BENCHMARKS.md). Analyzing a hot table each time it has grown threefold since its last analysis
//! invalidates those plans within a second of it mattering; a few analyses in all, after which
//! autovacuum's own 10 % rule keeps up.

use super::{Result, Store};

/// Fewer changes than this since the last analysis never trigger one (autovacuum's threshold is 50;
/// below a thousand rows any plan is cheap).
const MIN_CHANGES: i64 = 1_000;

impl Store {
    /// Analyzes `attempts`, `call_events` and `contacts` where they have changed by more than twice the
    /// rows they had at their last analysis (and at least [`MIN_CHANGES`]). Returns the tables analyzed.
    pub async fn stats_refresh_grown(&self) -> Result<Vec<String>> {
        let grown = sqlx::query_scalar!(
            r#"SELECT s.relname AS "relname!" FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
               WHERE s.schemaname = current_schema()
                 AND s.relname IN ('attempts', 'call_events', 'contacts')
                 AND s.n_mod_since_analyze > GREATEST($1, 2 * c.reltuples::bigint)"#,
            MIN_CHANGES
        )
        .fetch_all(&self.pool)
        .await?;
        for table in &grown {
            // Fixed statements (a table name cannot be a parameter).
            match table.as_str() {
                "attempts" => sqlx::query!("ANALYZE attempts").execute(&self.pool).await?,
                "call_events" => sqlx::query!("ANALYZE call_events").execute(&self.pool).await?,
                "contacts" => sqlx::query!("ANALYZE contacts").execute(&self.pool).await?,
                _ => continue,
            };
        }
        Ok(grown)
    }
}
