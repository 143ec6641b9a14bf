//! The callbacks service over real HTTP against a fresh PostgreSQL database, every request signed for real.

mod helpers;
mod inbound;
mod keypress;
mod ordering;
mod retries;
mod security;
mod transfer;
mod twiml_model;
