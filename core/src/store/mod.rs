//! All SQL lives here: one file per table, names noun first (`attempts_claim_due`), `_many` variants
//! taking arrays through `unnest`. Every statement is checked at compile time (`sqlx::query!` and
//! friends; the offline data is in `.sqlx/`). Status literals stay in the SQL text where a partial index
//! must match; the attempt state machine's guards bind the allowed-from sets the domain defines once.
//!
//! Every statement that changes `attempts.state` is in [`transitions`], one function per move.

mod api_keys;
mod attempts;
mod audit;
mod campaigns;
mod console_sessions;
mod contacts;
mod dnc;
pub mod estimate;
mod events;
mod messages;
mod nodes;
mod operators;
mod results;
mod stats;
pub mod transitions;
mod webhooks;

pub use attempts::{OpenAttempt, OpenCall};
pub use audit::AuditReport;
pub use transitions::{Binding, Block, ClaimedAttempt, DialingGate, InboundCall, ATTEMPTS_CLAIM_DUE_SQL};

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

pub use api_keys::ApiKeyRow;
pub use campaigns::*;
pub use console_sessions::ConsoleSession;
pub use contacts::*;
pub use dnc::DncEntry;
pub use events::{AmdApplied, EventApplied, EventParams, StatusEvent};
pub use messages::{DueMessage, MessageCounts, MessageEventApplied, RepliedMessage};
pub use operators::{HoldExpired, LegApplied, LegToClose, LiveCall, OperatorCounts, OperatorRow, Ring, TransferRow};
pub use results::*;
pub use webhooks::*;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists: {0}")]
    Duplicate(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Db(#[source] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // The one place sqlx errors are mapped: a unique violation means "duplicate".
        if let sqlx::Error::Database(db) = &e {
            if db.code().as_deref() == Some("23505") {
                return StoreError::Duplicate(db.constraint().unwrap_or("unique").to_string());
            }
        }
        StoreError::Db(e)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database, shared by every component through a connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let opts: PgConnectOptions = url.parse()?;
        // Short OLTP statements only: JIT compilation cost ~280 ms on the claim at 10M contacts.
        let opts =
            opts.options([("jit", "off")]).log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction for the hot per-call writes (callback batches, the pre-POST gate, CallSids), whose
    /// statements reuse one cached generic plan per connection. Left to itself PostgreSQL planned them
    /// afresh on every execution (a custom plan per array size): at 100 calls/s, one row per statement,
    /// planning was 1.7 ms of PostgreSQL CPU per call, more than executing. Their rows are found by primary
    /// or unique key whatever the values, so one plan serves all. A generic plan is kept until the next
    /// ANALYZE, though, and one made while a table was empty scans it sequentially ever after (a burst of
    /// callbacks against a freshly emptied `call_events` ran at 4,400/s, p99 262 ms, instead of 11,000):
    /// with sequential scans off here the cached plan is an index plan whatever the statistics said. Both
    /// settings go with the `BEGIN`, in one round trip, and end with the transaction.
    pub(crate) async fn begin_hot(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self
            .pool
            .begin_with("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off")
            .await?)
    }

    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Whether this process can do its work: the database answers and has every migration this binary
    /// knows (a rolling upgrade whose migration Job has not run yet is not ready). Returns what is wrong.
    pub async fn readiness(&self) -> Result<Readiness> {
        use sqlx::migrate::Migrate;
        let mut conn = self.pool.acquire().await?;
        sqlx::query_scalar!(r#"SELECT 1 AS "one!""#).fetch_one(&mut *conn).await?;
        let applied: std::collections::HashSet<i64> = match conn.list_applied_migrations().await {
            Ok(rows) => rows.into_iter().map(|m| m.version).collect(),
            // No migrations table at all: nothing applied yet.
            Err(_) => Default::default(),
        };
        let pending: Vec<i64> = MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect();
        Ok(if pending.is_empty() { Readiness::Ready } else { Readiness::MigrationsPending(pending) })
    }
}

/// What [`Store::readiness`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Versions this binary has and the database lacks.
    MigrationsPending(Vec<i64>),
}
