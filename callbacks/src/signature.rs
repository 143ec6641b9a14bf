//! The one gate every Twilio request passes before any handler or database read: `X-Twilio-Signature`
//! over `PUBLIC_BASE_URL` + the request's path and query + the form parameters, then the attempt token in
//! the path. Either failing is a 403, counted in `dialer_signature_rejections_total{route}`.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dialer_core::domain::AttemptToken;
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

/// The route label for metrics: the first path segment, from a closed set.
pub fn route_label(path: &str) -> &'static str {
    match path.trim_start_matches('/').split('/').next().unwrap_or_default() {
        "twiml" => "twiml",
        "gather" => "gather",
        "status" => "status",
        "amd" => "amd",
        _ => "other",
    }
}

pub(crate) async fn verify_twilio(State(app): State<App>, req: Request, next: Next) -> Response {
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
    let Ok(token) = AttemptToken::verify(&token_text, &app.state.token_key) else {
        return reject("bad attempt token");
    };
    let idempotency_token =
        parts.headers.get("i-twilio-idempotency-token").and_then(|v| v.to_str().ok()).map(str::to_owned);

    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(TwilioRequest { token, token_text, params, idempotency_token });
    let span = tracing::info_span!("callback", route, attempt_id = token.attempt_id());
    let resp = next.run(req).instrument(span).await;
    if resp.status() == StatusCode::FORBIDDEN {
        // A handler found the CallSid is not the attempt's (a swapped token).
        metrics.signature_rejections.with_label_values(&[route]).inc();
    }
    metrics.callback_duration.with_label_values(&[route]).observe(started.elapsed().as_secs_f64());
    resp
}
