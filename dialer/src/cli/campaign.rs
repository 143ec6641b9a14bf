use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use dialer_core::config::Config;
use dialer_core::domain::{CallStatus, CampaignSpec, CampaignStatus};
use dialer_core::twilio::{TwilioClient, UpdateStatus};

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
    /// Cancel: contacts not yet called end as canceled; calls in flight finish, and their contacts end
    /// canceled rather than being retried.
    Cancel {
        id: i64,
        /// Also end the calls in flight now, through the Twilio API (needs TWILIO_ACCOUNT_SID,
        /// TWILIO_AUTH_TOKEN): ringing ones are canceled, answered ones hung up.
        #[arg(long)]
        hang_up: bool,
    },
    /// Price a campaign before it spends money: its contacts through the scheduler and a simulator in
    /// virtual time (finish time, calls and minutes by outcome, answer curve, cost). Dials nothing.
    Estimate(super::estimate::EstimateArgs),
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
        CampaignCmd::Cancel { id, hang_up } => {
            set_status(id, CampaignStatus::Canceled).await?;
            if hang_up {
                hang_up_calls(id).await?;
            }
            Ok(())
        }
        CampaignCmd::Estimate(args) => super::estimate::run(args).await,
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
                for (k, v) in &r.by_zone_source {
                    println!("  zone    {:<20} {v}", format!("from {k}"));
                }
                if r.inbound_calls > 0 {
                    println!("  calls back from contacts: {}", r.inbound_calls);
                }
                let m = &r.sms;
                if m != &Default::default() {
                    println!(
                        "  sms: {} queued, {} sent ({} delivered, {} undelivered, {} failed), {} skipped, {} rejected, \
                         {} unknown; {} replies with a result",
                        m.queued, m.accepted, m.delivered, m.undelivered, m.failed, m.skipped, m.rejected, m.unknown,
                        m.replies
                    );
                }
            }
            Ok(())
        }
    }
}

/// Ends the calls still open after a cancel. Calls whose POST is still out get their CallSid within the
/// Twilio timeout; the loop waits that long for them, then leaves any rest to finish on their own (their
/// contacts end canceled either way).
async fn hang_up_calls(id: i64) -> CliResult {
    let config = Config::from_env().context("configuration")?;
    let twilio = TwilioClient::new(
        &config.twilio_api_base_url,
        config.account_sid().context("configuration")?,
        config.auth_token().context("configuration")?,
        config.twilio_timeout,
    )
    .context("Twilio client")?;
    let store = connect().await?;
    let deadline = Instant::now() + config.twilio_timeout * 2 + Duration::from_secs(2);
    let mut done: HashSet<i64> = HashSet::new();
    let (mut ended, mut failed) = (0usize, 0usize);
    loop {
        let open = store.attempts_open_calls(id).await.context("reading calls in flight")?;
        let mut waiting = 0;
        for call in open {
            if done.contains(&call.attempt_id) {
                continue;
            }
            let Some(sid) = &call.call_sid else {
                waiting += 1;
                continue;
            };
            // Answered calls are hung up; queued or ringing ones canceled. If the call moved on meanwhile,
            // the other verb applies: Twilio refuses `completed` for a call not yet answered, and answers
            // `canceled` for an answered one (whose answer we may not have recorded yet) with the call
            // still in progress, so a call the first verb left up gets the second.
            let first = if call.call_status == Some(CallStatus::InProgress) {
                UpdateStatus::Completed
            } else {
                UpdateStatus::Canceled
            };
            let other = if first == UpdateStatus::Completed { UpdateStatus::Canceled } else { UpdateStatus::Completed };
            let result = match twilio.update_call(sid, first).await {
                Ok(c) if c.status.is_terminal() => Ok(c),
                _ => twilio.update_call(sid, other).await,
            };
            done.insert(call.attempt_id);
            match result {
                Ok(_) => ended += 1,
                Err(e) => {
                    failed += 1;
                    eprintln!("campaign {id}: could not end call {sid}: {e}");
                }
            }
        }
        if waiting == 0 || Instant::now() >= deadline {
            if waiting > 0 {
                eprintln!("campaign {id}: {waiting} calls still had no CallSid; they end on their own");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("campaign {id}: {ended} calls in flight ended through the API");
    if failed > 0 {
        return Err(Failure::Other(anyhow::anyhow!("{failed} calls could not be ended")));
    }
    Ok(())
}

async fn set_status(id: i64, to: CampaignStatus) -> CliResult {
    let store = connect().await?;
    let status = store.campaigns_set_status(id, to, None).await.map_err(|e| Failure::InvalidInput(e.to_string()))?;
    eprintln!("campaign {id} is {status}");
    Ok(())
}
