//! Shared by the dialer and the callbacks service: domain types parsed once at the edge, the PostgreSQL
//! store (all SQL lives there), the Twilio protocol layer (REST client, signatures, TwiML), configuration,
//! metrics, the group-commit batcher, the CSV contact import and the results export.
//!
//! Dependencies point one way: `domain` ← `store`, `twilio`; nothing here knows about the binaries, the
//! Twilio simulator (`dialer-sim`), the local PostgreSQL bootstrap (`localpg`) or the test kit (`testkit`).

pub mod batch;
pub mod config;
pub mod domain;
pub mod estimate;
pub mod export;
pub mod import;
pub mod metrics;
pub mod store;
pub mod twilio;
