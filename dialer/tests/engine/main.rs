//! The engine's guarantees, proven against real PostgreSQL, the simulator over HTTP and real `dialer`
//! processes (DESIGN.md guarantees 1, 2, 4 and 5), and what those processes export on `/metrics`.

mod helpers;

mod cancel;
mod contention;
mod crash;
mod faults;
mod inbound;
mod metrics;
mod operators;
mod pacing;
mod policy;
mod reconcile;
mod zones;
