//! Shared by the dialer and the callbacks service: domain types parsed once at the edge, the PostgreSQL
//! store (all SQL lives there), the Twilio protocol layer and the built-in Twilio simulator.
//!
//! Dependencies point one way: `domain` ← `store`, `twilio` ← `sim`; nothing here knows about the
//! binaries.

pub mod batch;
pub mod config;
pub mod domain;
pub mod import;
pub mod metrics;
pub mod store;
pub mod twilio;
