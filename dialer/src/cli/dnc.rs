use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use dialer_core::domain::compliance::Zoning;
use dialer_core::domain::E164;
use dialer_core::import::parse_csv;

use super::{connect, CliResult, Failure};

#[derive(Debug, Subcommand)]
pub enum DncCmd {
    /// Add numbers to the do-not-call list (all campaigns unless --campaign).
    Add {
        #[arg(required = true)]
        numbers: Vec<String>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        campaign: Option<i64>,
        #[arg(long, default_value = "requested")]
        reason: String,
    },
    /// Import numbers from a CSV file with a `phone` column.
    Import {
        file: PathBuf,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        campaign: Option<i64>,
        #[arg(long, default_value = "imported")]
        reason: String,
    },
}

pub async fn run(cmd: DncCmd) -> CliResult {
    let (phones, campaign, reason, source) = match cmd {
        DncCmd::Add { numbers, region, campaign, reason } => {
            let mut phones = Vec::new();
            for n in &numbers {
                phones
                    .push(E164::parse(n, region.as_deref()).map_err(|e| Failure::InvalidInput(format!("{n:?}: {e}")))?);
            }
            (phones, campaign, reason, "cli")
        }
        DncCmd::Import { file, region, campaign, reason } => {
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let parsed = parse_csv(&bytes, region.as_deref(), &[], &Zoning::any());
            if !parsed.errors.is_empty() {
                for e in &parsed.errors {
                    eprintln!("{}: {e}", file.display());
                }
                return Err(Failure::InvalidInput(format!("{} invalid row(s); nothing added", parsed.errors.len())));
            }
            (parsed.rows.into_iter().map(|r| r.contact.phone).collect(), campaign, reason, "import")
        }
    };
    let store = connect().await?;
    let added = store.dnc_add_many(&phones, campaign, &reason, source).await.context("adding to the DNC list")?;
    eprintln!("{added} number(s) added to the do-not-call list ({} already there)", phones.len() as u64 - added);
    Ok(())
}
