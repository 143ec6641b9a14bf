//! The web console for the people who run campaigns, at `/console` on the API listener: server-rendered
//! pages over the same handlers and store as the management API, behind a login with an API key
//! ([`session`]). Assets are compiled into the binary; a strict CSP allows only them.

#[allow(clippy::result_large_err)]
mod admin;
#[allow(clippy::result_large_err)]
mod create;
mod html;
#[allow(clippy::result_large_err)]
mod operator;
// A refusal is the page to show (`Result<_, Response>`), built once per request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
mod pages;
#[allow(clippy::result_large_err)]
mod session;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::ApiState;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const OPERATOR_JS: &str = include_str!("assets/operator.js");
/// Twilio's Voice JavaScript SDK as published on npm (`scripts/console-assets` writes it).
const VOICE_SDK: &str = include_str!("assets/twilio-voice.min.js");

/// The console's routes (nested under `/console` by [`crate::router`]).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/campaigns", get(pages::campaigns))
        .route("/campaigns/new", get(create::form).post(create::create))
        .route("/campaigns/{id}", get(pages::campaign))
        .route("/campaigns/{id}/events", get(pages::events))
        .route("/campaigns/{id}/start", post(pages::start))
        .route("/campaigns/{id}/pause", post(pages::pause))
        .route("/campaigns/{id}/resume", post(pages::resume))
        .route("/campaigns/{id}/cancel", get(pages::cancel_confirm).post(pages::cancel))
        .route(
            "/campaigns/{id}/contacts",
            post(pages::upload_contacts).layer(DefaultBodyLimit::max(crate::contacts::PUSH_BODY_LIMIT)),
        )
        .route("/campaigns/{id}/results", get(pages::results))
        .route("/contacts/{id}", get(pages::contact))
        .route("/campaigns/{id}/results.csv", get(pages::results_csv))
        .route("/campaigns/{id}/webhook", get(admin::webhook).post(admin::set_webhook))
        .route("/campaigns/{id}/webhook/remove", post(admin::remove_webhook))
        .route("/campaigns/{id}/webhook/replay-dead", post(admin::replay_dead))
        .route("/campaigns/{id}/webhook/deliveries/{delivery}/replay", post(admin::replay))
        .route("/keys", get(admin::keys).post(admin::create_key))
        .route("/keys/{id}/revoke", post(admin::revoke_key))
        .route("/dnc", get(pages::dnc).post(pages::dnc_add))
        .route("/dnc/remove", post(pages::dnc_remove))
        .route("/assets/console.css", get(|| async { asset(CSS, "text/css; charset=utf-8") }))
        .route("/assets/console.js", get(|| async { asset(JS, "text/javascript; charset=utf-8") }))
        .route("/assets/operator.js", get(|| async { asset(OPERATOR_JS, "text/javascript; charset=utf-8") }))
        .route("/assets/twilio-voice.min.js", get(|| async { asset(VOICE_SDK, "text/javascript; charset=utf-8") }))
        .route("/operator", get(operator::page_operator))
        .route("/operator/token", post(operator::token))
        .route("/operator/status", post(operator::status))
        .route("/campaigns/{id}/calls", get(operator::calls))
        .route("/campaigns/{id}/calls/{attempt}/announce", post(operator::announce))
        .layer(axum::middleware::map_response(security_headers))
}

fn asset(body: &'static str, ctype: &'static str) -> Response {
    ([(header::CONTENT_TYPE, ctype), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}

/// Only our own scripts and styles, no framing, no sniffing; pages are not cached (they show live data
/// and CSRF tokens).
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    // A page may narrow-widen it for itself (the operator page lets the Voice SDK reach Twilio).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        );
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}
