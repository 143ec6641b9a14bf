use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use dialer_core::domain::{CampaignSpec, CampaignStatus};

use super::{connect, CliResult, Failure};

#[derive(Debug, Subcommand)]
pub enum CampaignCmd {
    /// Create a campaign from a TOML or YAML file; prints only the new id.
    Create {
        /// The campaign file (script included).
        #[arg(long)]
        file: PathBuf,
    },
    /// Start dialing (draft or paused → running).
    Start { id: i64 },
    /// Pause dialing; calls in progress finish.
    Pause { id: i64 },
    /// Resume a paused campaign.
    Resume { id: i64 },
    /// Cancel: contacts not yet called end as canceled.
    Cancel { id: i64 },
    /// Show a campaign's contacts by state and outcome.
    Status {
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: CampaignCmd) -> CliResult {
    match cmd {
        CampaignCmd::Create { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let spec = CampaignSpec::parse(&text, &file.display().to_string())
                .map_err(|e| Failure::InvalidInput(e.to_string()))?;
            let store = connect().await?;
            let id = store.campaigns_insert(&spec).await.context("storing the campaign")?;
            println!("{id}");
            Ok(())
        }
        CampaignCmd::Start { id } | CampaignCmd::Resume { id } => set_status(id, CampaignStatus::Running).await,
        CampaignCmd::Pause { id } => set_status(id, CampaignStatus::Paused).await,
        CampaignCmd::Cancel { id } => set_status(id, CampaignStatus::Canceled).await,
        CampaignCmd::Status { id, json } => {
            let store = connect().await?;
            let r = store.campaigns_report(id).await.map_err(|e| Failure::InvalidInput(e.to_string()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).expect("report serializes"));
            } else {
                println!("campaign {} \"{}\": {}", r.id, r.name, r.status);
                if let Some(reason) = &r.status_reason {
                    println!("  reason: {reason}");
                }
                println!("  contacts: {}   attempts: {}   in flight: {}", r.contacts, r.attempts, r.in_flight);
                for (k, v) in &r.by_state {
                    println!("  state   {k:<20} {v}");
                }
                for (k, v) in &r.by_outcome {
                    println!("  outcome {k:<20} {v}");
                }
                for (k, v) in &r.by_result {
                    println!("  result  {k:<20} {v}");
                }
            }
            Ok(())
        }
    }
}

async fn set_status(id: i64, to: CampaignStatus) -> CliResult {
    let store = connect().await?;
    let status = store.campaigns_set_status(id, to, None).await.map_err(|e| Failure::InvalidInput(e.to_string()))?;
    eprintln!("campaign {id} is {status}");
    Ok(())
}
