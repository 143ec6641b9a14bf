//! The one gate every Twilio request passes before any handler or database read: `X-Twilio-Signature`
//! over `PUBLIC_BASE_URL` + the request's path and query + the form parameters, then the token in the
//! path (an attempt's, or an SMS's; the inbound routes have none). Either failing is a 403, counted in
//! `dialer_signature_rejections_total{route}`.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dialer_core::domain::{AttemptToken, MessageToken};
use dialer_core::metrics::Metrics;
use dialer_core::twilio::signature;
use secrecy::ExposeSecret;
use tracing::Instrument;

use crate::{App, BODY_LIMIT};

/// A request that passed the gate: its attempt and its (signed) parameters.
#[derive(Debug, Clone)]
pub struct TwilioRequest {
    pub token: AttemptToken,
    /// The token as it appears in the URL (to build the next URLs).
    pub token_text: String,
    /// Form parameters (POST) in order; empty for GET, whose parameters are in the signed query.
    pub params: Vec<(String, String)>,
    /// The `I-Twilio-Idempotency-Token` header.
    pub idempotency_token: Option<String>,
}

impl TwilioRequest {
    /// The first value of a parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Handlers take the gate's [`TwilioRequest`] and [`SignedRequest`] out of the request rather than
/// cloning them as `Extension` would: each is there for its one handler, and a callback's parameters are
/// a few dozen strings.
macro_rules! taken_from_extensions {
    ($t:ty) => {
        impl<S: Send + Sync> FromRequestParts<S> for $t {
            type Rejection = StatusCode;

            async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
                // Missing only if a route were wired without its gate.
                parts.extensions.remove::<Self>().ok_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    };
}
taken_from_extensions!(TwilioRequest);
taken_from_extensions!(SignedRequest);

/// A signed request to a route without an attempt: the inbound webhooks and SMS delivery callbacks.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// The SMS a delivery callback is about (`/sms/status/{token}`).
    pub message: Option<MessageToken>,
    pub params: Vec<(String, String)>,
}

impl SignedRequest {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The route label for metrics, from a closed set ([`dialer_core::metrics::SIGNATURE_ROUTES`]).
pub fn route_label(path: &str) -> &'static str {
    let mut seg = path.trim_start_matches('/').split('/');
    match (seg.next().unwrap_or_default(), seg.next().unwrap_or_default()) {
        ("twiml", _) => "twiml",
        ("gather", _) => "gather",
        ("status", _) => "status",
        ("amd", _) => "amd",
        ("voice", "inbound") => "voice_inbound",
        ("sms", "status") => "sms_status",
        ("sms", "inbound") => "sms_inbound",
        ("transfer", _) | ("announce", _) => "transfer",
        ("operator", _) => "operator",
        _ => "other",
    }
}

/// What the path's last segment must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Attempt,
    Message,
    NoToken,
}

/// The gate of the attempt routes: inserts a [`TwilioRequest`].
pub(crate) async fn verify_twilio(State(app): State<App>, req: Request, next: Next) -> Response {
    gate(app, req, next, Gate::Attempt).await
}

/// The gate of `/sms/status/{token}`: inserts a [`SignedRequest`] naming the message.
pub(crate) async fn verify_twilio_message(State(app): State<App>, req: Request, next: Next) -> Response {
    gate(app, req, next, Gate::Message).await
}

/// The gate of the inbound webhooks (no token): inserts a [`SignedRequest`].
pub(crate) async fn verify_twilio_inbound(State(app): State<App>, req: Request, next: Next) -> Response {
    gate(app, req, next, Gate::NoToken).await
}

async fn gate(app: App, req: Request, next: Next, gate: Gate) -> Response {
    let started = Instant::now();
    let metrics = Metrics::global();
    let (parts, body) = req.into_parts();
    // Behind `nest`, the original URI is the one Twilio requested.
    let uri = parts.extensions.get::<OriginalUri>().map(|o| o.0.clone()).unwrap_or_else(|| parts.uri.clone());
    let route = route_label(uri.path());
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let reject = |why: &'static str| {
        metrics.signature_rejections.with_label_values(&[route]).inc();
        tracing::warn!(route, reason = why, "twilio request refused");
        StatusCode::FORBIDDEN.into_response()
    };

    let url = format!("{}{}", app.state.public_base_url, uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let params: Vec<(String, String)> =
        if parts.method == Method::POST { form_urlencoded::parse(&bytes).into_owned().collect() } else { Vec::new() };
    let Some(sig) = parts.headers.get("x-twilio-signature").and_then(|v| v.to_str().ok()) else {
        return reject("missing X-Twilio-Signature");
    };
    if !signature::validate(app.state.auth_token.expose_secret(), &url, &params, sig) {
        return reject("X-Twilio-Signature mismatch");
    }
    let token_text = uri.path().rsplit('/').next().unwrap_or_default().to_string();
    let idempotency_token =
        parts.headers.get("i-twilio-idempotency-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut req = Request::from_parts(parts, Body::from(bytes));
    let span = match gate {
        Gate::Attempt => {
            let Ok(token) = AttemptToken::verify(&token_text, &app.state.token_key) else {
                return reject("bad attempt token");
            };
            req.extensions_mut().insert(TwilioRequest { token, token_text, params, idempotency_token });
            tracing::info_span!("callback", route, attempt_id = token.attempt_id())
        }
        Gate::Message => {
            let Ok(token) = MessageToken::verify(&token_text, &app.state.token_key) else {
                return reject("bad message token");
            };
            req.extensions_mut().insert(SignedRequest { message: Some(token), params });
            tracing::info_span!("callback", route, message_id = token.message_id())
        }
        Gate::NoToken => {
            let call_sid = params.iter().find(|(k, _)| k == "CallSid" || k == "MessageSid").map(|(_, v)| v.clone());
            req.extensions_mut().insert(SignedRequest { message: None, params });
            tracing::info_span!("callback", route, sid = call_sid.as_deref().unwrap_or_default())
        }
    };
    let resp = next.run(req).instrument(span).await;
    if resp.status() == StatusCode::FORBIDDEN {
        // A handler found the CallSid is not the attempt's (a swapped token).
        metrics.signature_rejections.with_label_values(&[route]).inc();
    }
    metrics.callback_duration.with_label_values(&[route]).observe(started.elapsed().as_secs_f64());
    resp
}
