//! Command-line parsing and dispatch. Each subcommand lives in its own file.

mod apikey;
mod campaign;
mod compliance;
mod contacts;
mod db;
mod demo;
mod dnc;
mod estimate;
mod operator;
mod results;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use db::connect;

/// A high-throughput outbound campaign dialer for Twilio Programmable Voice.
///
/// Configuration comes from the environment (DATABASE_URL, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN,
/// TWILIO_API_BASE_URL, PUBLIC_BASE_URL, LISTEN_ADDR, …; see the README).
#[derive(Debug, Parser)]
#[command(name = "dialer", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply database migrations.
    Migrate,
    /// Create and control campaigns.
    #[command(subcommand)]
    Campaign(campaign::CampaignCmd),
    /// Import contacts into a campaign.
    #[command(subcommand)]
    Contacts(contacts::ContactsCmd),
    /// Manage the do-not-call list.
    #[command(subcommand)]
    Dnc(dnc::DncCmd),
    /// Audit a campaign's calls against its calling rules and compliance profiles.
    #[command(subcommand)]
    Compliance(compliance::ComplianceCmd),
    /// Export campaign results.
    #[command(subcommand)]
    Results(results::ResultsCmd),
    /// Run a demo campaign of 10,000 contacts against the built-in Twilio simulator, end to end.
    Demo(demo::DemoArgs),
    /// Run the dialer, the callbacks service, the management API, or all of them.
    Serve {
        #[arg(long, value_enum, default_value = "all")]
        role: serve::Role,
    },
    /// Run the built-in Twilio simulator (REST API, call lifecycle, signed callbacks, fault injection).
    Sim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        args: Box<dialer_sim::SimArgs>,
    },
    /// Database helpers.
    #[command(subcommand)]
    Db(db::DbCmd),
    /// Keys for the management API (`serve --role api`).
    #[command(subcommand)]
    Apikey(apikey::ApiKeyCmd),
    /// Operators who take transferred calls in the browser (`/console/operator`).
    #[command(subcommand)]
    Operator(operator::OperatorCmd),
}

/// Errors that map to a meaningful exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The input was rejected and nothing was written.
    #[error("{0}")]
    InvalidInput(String),
    /// PostgreSQL could not be found, started or connected to (exit code 4).
    #[error("PostgreSQL unavailable: {0}")]
    NoDatabase(String),
    /// An audit found calls that broke a rule (exit code 1, like a failed check).
    #[error("{0} call(s) broke a calling rule")]
    Violations(usize),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::InvalidInput(_) => 3,
            Failure::NoDatabase(_) => 4,
            Failure::Violations(_) | Failure::Other(_) => 1,
        }
    }
}

pub type CliResult<T = ()> = Result<T, Failure>;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = rt.block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

async fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Migrate => {
            let store = connect().await?;
            store.migrate().await.map_err(anyhow::Error::from)?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Campaign(c) => campaign::run(c).await,
        Command::Contacts(c) => contacts::run(c).await,
        Command::Dnc(c) => dnc::run(c).await,
        Command::Compliance(c) => compliance::run(c).await,
        Command::Db(c) => db::run(c).await,
        Command::Apikey(c) => apikey::run(c).await,
        Command::Operator(c) => operator::run(c).await,
        Command::Serve { role } => serve::run(role).await,
        Command::Results(c) => results::run(c).await,
        Command::Demo(a) => demo::run(a).await,
        Command::Sim { listen, args } => Ok(dialer_sim::run(*args, listen).await?),
    }
}
