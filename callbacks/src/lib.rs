//! The callbacks service: what Twilio tells us (StatusCallbacks, async AMD) and what we tell Twilio to say
//! (per-attempt TwiML, keypress menus).
//!
//! Every route is `/{route}/{token}` under `PUBLIC_BASE_URL`. One layer ([`signature`]) checks
//! `X-Twilio-Signature` and the attempt token before any handler runs or anything is read; each handler then
//! checks that the request's `CallSid` is the attempt's own. Bodies are limited to [`BODY_LIMIT`] bytes.
//!
//! - `/twiml/{token}`: the first TwiML of an attempt (voicemail, hang up on a machine, or the start menu).
//! - `/gather/{token}?menu=NAME&n=REPEATS`: a keypress (`Digits`) or no input → result and the next TwiML.
//! - `/status/{token}`: StatusCallback → stored once → attempt advanced → outcome and retry ([`ingest`]).
//! - `/amd/{token}`: the async answering-machine result.
//! - `/voice/inbound`: a customer calls a caller ID back ([`inbound`]); their menu then runs on
//!   `/gather/{token}` like ours.
//! - `/sms/status/{token}`: an SMS fallback's delivery status; `/sms/inbound`: a customer's text (stop
//!   word, reply code) ([`sms`]).

mod amd;
mod error;
mod gather;
mod inbound;
pub mod ingest;
pub mod script;
pub mod signature;
mod sms;
mod status;
pub mod transfer;
mod twiml;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use dialer_core::config::InboundSettings;
use dialer_core::domain::TokenKey;
use dialer_core::store::Store;
use secrecy::SecretString;
use tower_http::limit::RequestBodyLimitLayer;

pub use error::ApiError;
pub use ingest::Ingest;

/// Largest request body accepted (Twilio's callbacks are a few KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the service needs, built by the binary from `Config`.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// The Twilio Auth Token that signs `X-Twilio-Signature`.
    pub auth_token: SecretString,
    /// `PUBLIC_BASE_URL` without a trailing slash: the URL Twilio signs is this plus path and query.
    pub public_base_url: String,
    /// Signs and verifies attempt tokens.
    pub token_key: TokenKey,
    /// Calls and texts from customers.
    pub inbound: InboundSettings,
}

/// Shared by the handlers: the state plus the batched status writer.
pub(crate) struct Shared {
    pub state: AppState,
    pub ingest: Ingest,
}

pub(crate) type App = Arc<Shared>;

/// The service's routes. Spawns the status writer task (it ends when the router is dropped), so call it
/// inside a Tokio runtime.
pub fn router(mut state: AppState) -> Router {
    state.public_base_url = state.public_base_url.trim_end_matches('/').to_string();
    let ingest = Ingest::spawn(state.store.clone());
    let app: App = Arc::new(Shared { state, ingest });
    let attempts = Router::new()
        .route("/twiml/{token}", get(twiml::twiml).post(twiml::twiml))
        .route("/gather/{token}", get(gather::gather).post(gather::gather))
        .route("/status/{token}", post(status::status))
        .route("/amd/{token}", post(amd::amd))
        .route("/transfer/hold/{token}", post(transfer::hold))
        .route("/transfer/conference/{token}", post(transfer::conference))
        .route("/transfer/done/{token}", post(transfer::done))
        .route("/transfer/offer/{token}", post(transfer::offer))
        .route("/transfer/choice/{token}", post(transfer::choice))
        .route("/operator/status/{token}", post(transfer::operator_status))
        .route("/announce/{token}", post(transfer::announce))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), signature::verify_twilio));
    let messages = Router::new()
        .route("/sms/status/{token}", post(sms::status))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), signature::verify_twilio_message));
    let inbound = Router::new()
        .route("/voice/inbound", post(inbound::inbound_call))
        .route("/sms/inbound", post(sms::inbound))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), signature::verify_twilio_inbound));
    attempts.merge(messages).merge(inbound).layer(RequestBodyLimitLayer::new(BODY_LIMIT)).with_state(app)
}
