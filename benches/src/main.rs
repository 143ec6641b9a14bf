//! Load harness for issue 7 ("Benchmarks: throughput, pacing and scale, measured").
//!
//! One module per subcommand; shared helpers live in [`db`] (bench databases, target dir) and [`stats`]
//! (median and spread). To add a measurement: write `src/<name>.rs` with `Args` and `run`, add a variant
//! to [`Cmd`] and a match arm in `main`.
//!
//! ```text
//! cargo run --release -p benches -- import --rows 1000000
//! ```

mod api_push;
mod common;
mod compliance;
mod db;
mod dial;
mod import;
mod ingest;
mod peer;
mod scale;
mod stats;
mod webhooks;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "benches", about = "Load harness: measures the dialer against real PostgreSQL.")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// CSV contact import: end to end through the `dialer` CLI, and the parse and insert phases in-process.
    Import(import::Args),
    /// Dial throughput (CPS unlimited), pacing (`--cps`) and scheduler lag (`--due-rate`), end to end.
    Dial(dial::Args),
    /// Signed StatusCallbacks/s and latency against `dialer serve --role callbacks`, or `--baseline`.
    Callbacks(ingest::Args),
    /// Claim latency, EXPLAIN and dialer RSS with a large backlog.
    Scale(scale::Args),
    /// Contacts/s pushed through the management API (`dialer serve --role api`), sequential and concurrent.
    ApiPush(api_push::Args),
    /// Issue 14's simulated audit: a million contacts over a simulated week across DST, zero violations.
    Compliance(compliance::Args),
    /// Result webhook deliveries/s from the outbox to a local receiver (`dialer serve --role all`).
    Webhooks(webhooks::Args),
    /// Our dial pipeline against the official Twilio Python helper library in a loop, same simulator, at
    /// simulated API latencies.
    Peer(peer::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Import(args) => import::run(args).await,
        Cmd::Dial(args) => dial::run(args).await,
        Cmd::Callbacks(args) => ingest::run(args).await,
        Cmd::Scale(args) => scale::run(args).await,
        Cmd::ApiPush(args) => api_push::run(args).await,
        Cmd::Webhooks(args) => webhooks::run(args).await,
        Cmd::Compliance(args) => compliance::run(args).await,
        Cmd::Peer(args) => peer::run(args).await,
    }
}
