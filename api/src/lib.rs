//! The management API: how a carrier's or clinic's own systems drive the dialer (campaigns, contacts,
//! DNC, results, progress, result webhooks), under `/api/v1` on its own listener (`API_LISTEN_ADDR`), so it
//! can sit behind an internal ingress apart from the routes Twilio calls.
//!
//! - Every route but `/api/v1/openapi.json` needs `Authorization: Bearer KEY` ([`auth`]); each route group
//!   needs one scope. Keys are rate limited per key.
//! - JSON in and out; every error is an RFC 9457 problem ([`problem`]) naming the field (a JSON Pointer)
//!   and, for batches, the row.
//! - The OpenAPI 3.1 document is generated from these handlers ([`openapi`]) and served as is.

pub mod auth;
mod body;
mod campaigns;
pub mod console;
mod contacts;
mod dnc;
mod drain;
mod estimate;
mod eta;
mod extract;
mod keys;
pub mod openapi;
pub mod operators;
pub mod problem;
mod results;
mod webhooks;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dialer_core::domain::Scope;
use dialer_core::metrics::Metrics;
use dialer_core::store::Store;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub use auth::KeyLimiter;
pub use contacts::PushReport;
use problem::Problem;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// `ACCOUNT_CPS`, for ETAs.
    pub account_cps: f64,
    pub limiter: KeyLimiter,
    /// Twilio settings for operators and announcements.
    pub voice: std::sync::Arc<operators::Voice>,
}

pub(crate) type Api = ApiState;

/// The management API's routes, `/api/v1/…`.
pub fn router(state: ApiState) -> Router {
    let scoped = |scope: Scope, routes: Router<ApiState>| routes.route_layer(from_fn_with_state(scope, auth::require));
    let v1 = Router::new()
        .merge(scoped(
            Scope::CampaignsRead,
            Router::new()
                .route("/campaigns", get(campaigns::list))
                .route("/campaigns/{id}", get(campaigns::get))
                .route("/campaigns/{id}/progress", get(campaigns::progress))
                .route("/campaigns/{id}/estimate", post(estimate::estimate)),
        ))
        .merge(scoped(
            Scope::CampaignsWrite,
            Router::new()
                .route("/campaigns", post(campaigns::create))
                .route("/campaigns/{id}", axum::routing::patch(campaigns::update))
                .route("/campaigns/{id}/start", post(campaigns::start))
                .route("/campaigns/{id}/pause", post(campaigns::pause))
                .route("/campaigns/{id}/resume", post(campaigns::resume))
                .route("/campaigns/{id}/cancel", post(campaigns::cancel)),
        ))
        .merge(scoped(
            Scope::ContactsWrite,
            Router::new()
                .route(
                    "/campaigns/{id}/contacts",
                    post(contacts::push).layer(DefaultBodyLimit::max(contacts::PUSH_BODY_LIMIT)),
                )
                .route("/contacts/{id}", axum::routing::delete(contacts::remove)),
        ))
        .merge(scoped(
            Scope::ResultsRead,
            Router::new()
                .route("/contacts/{id}", get(contacts::get))
                .route("/campaigns/{id}/results", get(results::page))
                .route("/campaigns/{id}/attempts", get(results::recent_attempts))
                .route("/campaigns/{id}/results/export", get(results::export))
                .route("/campaigns/{id}/audit", get(results::audit)),
        ))
        .merge(scoped(Scope::DncRead, Router::new().route("/dnc/{phone}", get(dnc::check))))
        .merge(scoped(Scope::CampaignsRead, Router::new().route("/campaigns/{id}/webhook", get(webhooks::get))))
        .merge(scoped(
            Scope::ResultsRead,
            Router::new().route("/campaigns/{id}/webhook/deliveries", get(webhooks::deliveries)),
        ))
        .merge(scoped(
            Scope::WebhooksWrite,
            Router::new()
                .route("/campaigns/{id}/webhook", axum::routing::put(webhooks::set).delete(webhooks::remove))
                .route("/campaigns/{id}/webhook/deliveries/{delivery_id}/replay", post(webhooks::replay))
                .route("/campaigns/{id}/webhook/deliveries/replay-dead", post(webhooks::replay_dead)),
        ))
        .merge(scoped(
            Scope::KeysManage,
            Router::new()
                .route("/keys", get(keys::list).post(keys::create))
                .route("/keys/{id}", axum::routing::delete(keys::revoke)),
        ))
        .merge(scoped(Scope::CampaignsRead, Router::new().route("/operators", get(operators::list))))
        .merge(scoped(Scope::KeysManage, Router::new().route("/operators", post(operators::create))))
        .merge(scoped(Scope::ResultsRead, Router::new().route("/campaigns/{id}/calls", get(operators::live))))
        .merge(scoped(
            Scope::CampaignsWrite,
            Router::new().route("/calls/{attempt_id}/announcements", post(operators::announce)),
        ))
        // Any key, as long as it is an operator's.
        .route("/operator/token", post(operators::token))
        .route("/operator/status", axum::routing::put(operators::set_status))
        .merge(scoped(
            Scope::DncWrite,
            Router::new().route("/dnc/{phone}", axum::routing::put(dnc::add).delete(dnc::remove)),
        ))
        .route_layer(from_fn_with_state(
            auth::AuthState { store: state.store.clone(), limiter: state.limiter.clone() },
            auth::authenticate,
        ))
        .route("/openapi.json", get(openapi_json))
        .with_state(state.clone());
    let console = console::routes().with_state(state.clone());
    Router::new()
        .nest("/api/v1", v1)
        .nest("/console", console)
        .fallback(|| async { Problem::not_found("no such route; see /api/v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "method not allowed on this route",
            )
        })
        .layer(from_fn(observe))
        // Outermost: early refusals still read the body, so the client gets the problem, not a broken pipe.
        .layer(from_fn(drain::drain_unread))
}

async fn openapi_json() -> Response {
    Json(openapi::document()).into_response()
}

/// Counts and times every request by route template (never the raw path, which holds ids and numbers).
async fn observe(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = req.method().clone();
    let span = tracing::info_span!("api", %method, %route, api_key = tracing::field::Empty);
    let started = Instant::now();
    let res = tracing::Instrument::instrument(next.run(req), span).await;
    Metrics::global().api_request(&route, method.as_str(), res.status().as_u16(), started.elapsed());
    res
}

/// `?cursor=…&limit=…` for lists.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `next_cursor` of the previous page; the first page when absent.
    pub cursor: Option<String>,
    /// Items per page, 1–1000 (default 100).
    pub limit: Option<i64>,
}

impl PageQuery {
    /// (after id, limit), or a problem naming the bad parameter.
    fn parse(&self) -> Result<(i64, i64), Problem> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(query_problem("limit", "must be between 1 and 1000"));
        }
        let after = match &self.cursor {
            None => 0,
            Some(c) => decode_cursor(c).ok_or_else(|| query_problem("cursor", "not a cursor this API returned"))?,
        };
        Ok((after, limit))
    }
}

fn query_problem(param: &str, detail: &str) -> Problem {
    Problem::validation(
        format!("{param}: {detail}"),
        vec![problem::FieldError { pointer: None, field: Some(param.into()), row: None, detail: detail.into() }],
    )
}

/// Cursors are opaque to clients (the last id, base64url) so their form can change.
fn encode_cursor(id: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("id:{id}"))
}

fn decode_cursor(c: &str) -> Option<i64> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?;
    std::str::from_utf8(&raw).ok()?.strip_prefix("id:")?.parse().ok().filter(|&id: &i64| id >= 0)
}

/// A page of a list and the cursor of the next one (null on the last page).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    fn new(items: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Self {
        let next_cursor = if items.len() as i64 == limit { items.last().map(|l| encode_cursor(id(l))) } else { None };
        Self { items, next_cursor }
    }
}
