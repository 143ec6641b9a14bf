//! `dialer operator`: people who take transferred calls in the browser. An operator is an API key
//! (their console login, printed once) with a Twilio Client identity.

use clap::Subcommand;
use dialer_core::domain::operators::Identity;
use dialer_core::store::StoreError;

use super::{connect, CliResult, Failure};

#[derive(Debug, Subcommand)]
pub enum OperatorCmd {
    /// Create an operator and print their console login key (once).
    Add {
        /// Their Twilio Client identity (letters, digits, `_ . @ -`), e.g. "alice".
        identity: String,
    },
    /// List operators and their status.
    List,
}

pub async fn run(cmd: OperatorCmd) -> CliResult {
    let store = connect().await?;
    match cmd {
        OperatorCmd::Add { identity } => {
            let identity = Identity::parse(&identity).map_err(Failure::InvalidInput)?;
            let secret = dialer_api::operators::create_operator(&store, &identity).await.map_err(|e| match e {
                StoreError::Duplicate(_) => Failure::InvalidInput(format!("operator {identity} already exists")),
                other => Failure::Other(other.into()),
            })?;
            eprintln!("operator {identity}: log in to /console with this key (shown only now):");
            println!("{}", secret.expose());
        }
        OperatorCmd::List => {
            println!("{:<24}  {:<10}  {:<6}  since", "identity", "status", "missed");
            for o in store.operators_list().await.map_err(anyhow::Error::from)? {
                println!("{:<24}  {:<10}  {:<6}  {}", o.identity, o.status(), o.missed, o.engaged_at.to_rfc3339());
            }
        }
    }
    Ok(())
}
