//! The management API over real HTTP against a fresh PostgreSQL database, with real API keys.

mod auth;
mod campaigns;
mod compliance;
mod console;
mod contacts;
mod fuzz;
mod helpers;
mod operators;
mod reads;
