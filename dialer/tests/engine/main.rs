//! The engine's guarantees, proven against real PostgreSQL, the simulator over HTTP and real `dialer`
//! processes (DESIGN.md guarantees 1, 2, 4 and 5).

mod helpers;

mod crash;
mod pacing;
mod policy;
mod reconcile;
