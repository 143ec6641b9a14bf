//! Shared by the dialer and the callbacks service: domain types parsed once at the edge, the PostgreSQL
//! store (all SQL lives there), the Twilio protocol layer (REST client, signatures, TwiML), configuration,
//! metrics, the group-commit batcher and the CSV contact import.
//!
//! Dependencies point one way: `domain` ← `store`, `twilio`; nothing here knows about the binaries, the
//! Twilio simulator (`dialer-sim`), the local PostgreSQL bootstrap (`localpg`) or the test kit (`testkit`).

pub mod batch;
pub mod config;
pub mod domain;
pub mod import;
pub mod metrics;
pub mod store;
pub mod twilio;
