//! `dialer apikey`: keys for the management API. A key is printed once; only its hash is stored.

use clap::Subcommand;
use dialer_core::domain::{ApiKeySecret, Scope};

use super::{connect, CliResult, Failure};

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    /// Create a key and print it (once: only its hash is kept).
    Create {
        /// Who or what uses it, e.g. "delivery-system".
        #[arg(long)]
        name: String,
        /// What it may do; repeat for several: campaigns:read, campaigns:write, contacts:write, results:read,
        /// dnc:read, dnc:write, webhooks:write, keys:manage.
        #[arg(long = "scope", required = true, value_parser = parse_scope)]
        scopes: Vec<Scope>,
    },
    /// List keys (never the secrets).
    List,
    /// Revoke a key at once.
    Revoke { id: i64 },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s).map_err(|_| {
        format!("unknown scope {s:?}; one of {}", Scope::ALL.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
    })
}

pub async fn run(cmd: ApiKeyCmd) -> CliResult {
    let store = connect().await?;
    match cmd {
        ApiKeyCmd::Create { name, mut scopes } => {
            if name.trim().is_empty() {
                return Err(Failure::InvalidInput("--name must not be empty".into()));
            }
            scopes.sort();
            scopes.dedup();
            let secret = ApiKeySecret::generate();
            let id = store.api_keys_insert(name.trim(), &secret, &scopes).await.map_err(anyhow::Error::from)?;
            eprintln!("API key {id} \"{}\" with {}; it is shown only now:", name.trim(), join(&scopes));
            println!("{}", secret.expose());
        }
        ApiKeyCmd::List => {
            println!("{:>5}  {:<12}  {:<24}  {:<8}  scopes", "id", "key", "name", "status");
            for k in store.api_keys_list().await.map_err(anyhow::Error::from)? {
                let status = if k.revoked_at.is_some() { "revoked" } else { "live" };
                println!(
                    "{:>5}  {:<12}  {:<24}  {:<8}  {}",
                    k.id,
                    format!("{}…", k.prefix),
                    k.name,
                    status,
                    join(&k.scopes)
                );
            }
        }
        ApiKeyCmd::Revoke { id } => {
            if !store.api_keys_revoke(id).await.map_err(anyhow::Error::from)? {
                return Err(Failure::InvalidInput(format!("no live API key {id}")));
            }
            eprintln!("API key {id} revoked");
        }
    }
    Ok(())
}

fn join(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}
