use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use super::{connect, CliResult, Failure};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ResultsCmd {
    /// Export every contact of a campaign: id, external id, number, final state, outcome, keypress result,
    /// attempts, last call time, and the zones the calling rules were applied in with their source.
    Export {
        #[arg(long)]
        campaign: i64,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
}

pub async fn run(cmd: ResultsCmd) -> CliResult {
    let ResultsCmd::Export { campaign, format } = cmd;
    let store = connect().await?;
    store.campaigns_get(campaign).await.map_err(|e| Failure::InvalidInput(e.to_string()))?;
    let rows = store.results_export(campaign).await.context("reading results")?;
    let out = std::io::stdout().lock();
    match format {
        Format::Csv => dialer_core::export::write_csv(&rows, out).context("writing CSV")?,
        Format::Json => dialer_core::export::write_json(&rows, out).context("writing JSON")?,
    }
    Ok(())
}
