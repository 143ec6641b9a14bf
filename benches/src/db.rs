//! Bench databases: a fresh, migrated database per run on the same server the tests use.

use std::path::PathBuf;

use anyhow::Context;
use dialer_core::store::Store;
use localpg as pg;
use sqlx::Connection;

/// The `target/` directory this binary was built into (`target/release/benches` → `target`), so files land
/// beside the build and `dialer` is found next to us, whatever `CARGO_TARGET_DIR` is.
pub fn target_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the benches binary")?;
    Ok(exe.parent().and_then(|p| p.parent()).context("binary has no target dir")?.to_path_buf())
}

/// The server's maintenance URL: `DATABASE_URL` (any database on it) when set, else a local server found
/// or started under `target/pg` (as the tests do).
pub async fn server_url() -> anyhow::Result<String> {
    let explicit = std::env::var("DATABASE_URL").ok();
    let url = pg::find_or_start(explicit.as_deref(), &target_dir()?.join("pg")).await?;
    Ok(pg::with_database(&url, "postgres"))
}

/// Drops `name` if it exists, creates it, runs the migrations and returns a store on it plus its URL.
pub async fn fresh(server: &str, name: &str, pool_size: u32) -> anyhow::Result<(Store, String)> {
    drop_database(server, name).await?;
    pg::ensure_database(server, name).await?;
    let url = pg::with_database(server, name);
    let store = Store::connect(&url, pool_size).await.with_context(|| format!("connecting to {name}"))?;
    store.migrate().await.context("migrating the bench database")?;
    Ok((store, url))
}

pub async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(server).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", name.replace('"', "\"\"")))
        .execute(&mut conn)
        .await?;
    conn.close().await.ok();
    Ok(())
}

/// `SHOW` a server setting (for the machine description printed with every result).
pub async fn setting(server: &str, name: &str) -> String {
    let Ok(mut conn) = sqlx::PgConnection::connect(server).await else { return "?".into() };
    sqlx::query_scalar::<_, String>(&format!("SHOW {name}")).fetch_one(&mut conn).await.unwrap_or_else(|_| "?".into())
}
