use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use dialer_core::config::Config;
use dialer_core::store::Store;
use localpg as pg;
use secrecy::ExposeSecret;

use super::{CliResult, Failure};

/// Database used when DATABASE_URL is unset: created on the local server found or started.
const DEFAULT_DATABASE: &str = "dialer";

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Print a DATABASE_URL: the configured one, else a local server's (started under target/pg if needed).
    Url {
        /// The database name to create/use when DATABASE_URL is unset.
        #[arg(long, default_value = DEFAULT_DATABASE)]
        database: String,
    },
}

pub async fn run(cmd: DbCmd) -> CliResult {
    match cmd {
        DbCmd::Url { database } => {
            println!("{}", database_url(&database).await?);
            Ok(())
        }
    }
}

/// DATABASE_URL when set; else a local server found or started, with `database` created on it.
pub async fn database_url(database: &str) -> CliResult<String> {
    let config = Config::from_env().context("configuration")?;
    if let Some(u) = &config.database_url {
        return Ok(u.expose_secret().to_string());
    }
    let server =
        pg::find_or_start(None, Path::new("target/pg")).await.map_err(|e| Failure::NoDatabase(e.to_string()))?;
    pg::ensure_database(&server, database).await.map_err(|e| Failure::NoDatabase(e.to_string()))?;
    Ok(pg::with_database(&server, database))
}

/// Connects to the configured (or discovered) database.
pub async fn connect() -> CliResult<Store> {
    let url = database_url(DEFAULT_DATABASE).await?;
    // Exit code 4 says "no database", whatever the cause (down, refused, bad credentials).
    let store = Store::connect(&url, 16).await.map_err(|e| Failure::NoDatabase(e.to_string()))?;
    Ok(store)
}
