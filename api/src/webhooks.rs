//! `/api/v1/campaigns/{id}/webhook`: where a campaign's result webhooks go (the secret shown once), the
//! deliveries that are failing or dead, and replays.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use dialer_core::store::{Delivery, DeliveryFilter, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::body::JsonBody;
use crate::extract::{Path, Query};
use crate::problem::{ApiResult, Problem};
use crate::{Api, Page, PageQuery};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointSet {
    /// Where to POST the events (http or https).
    pub url: String,
}

/// The endpoint with its signing secret: shown only in the answer that sets it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointCreated {
    pub campaign_id: i64,
    pub url: String,
    /// `whsec_…`: verify `webhook-signature` with it (Standard Webhooks). Not shown again.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Endpoint {
    pub campaign_id: i64,
    pub url: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<WebhookEndpoint> for Endpoint {
    fn from(e: WebhookEndpoint) -> Self {
        Self { campaign_id: e.campaign_id, url: e.url, created_at: e.created_at, updated_at: e.updated_at }
    }
}

/// Send this campaign's events (`contact.result`, `contact.finished`, `contact.opted_out`) to `url`, signed
/// with a new secret. Setting it again replaces the URL and rotates the secret.
#[utoipa::path(put, path = "/api/v1/campaigns/{id}/webhook", tag = "webhooks", params(("id" = i64, Path)),
    request_body = EndpointSet, security(("api_key" = ["webhooks:write"])),
    responses((status = 200, body = EndpointCreated), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn set(
    State(api): State<Api>,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<EndpointSet>,
) -> ApiResult<Json<EndpointCreated>> {
    match url::Url::parse(body.url.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => return Err(Problem::field("/url", format!("{:?} is not an http(s) URL with a host", body.url))),
    }
    let secret = api.store.webhook_endpoints_set(id, body.url.trim()).await?;
    Ok(Json(EndpointCreated { campaign_id: id, url: body.url.trim().to_string(), secret }))
}

/// The campaign's endpoint (never its secret).
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/webhook", tag = "webhooks", params(("id" = i64, Path)),
    security(("api_key" = ["campaigns:read"])),
    responses((status = 200, body = Endpoint), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn get(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<Endpoint>> {
    api.store
        .webhook_endpoints_get(id)
        .await?
        .map(|e| Json(e.into()))
        .ok_or_else(|| Problem::not_found(format!("campaign {id} has no webhook endpoint")))
}

/// Stop sending; events not yet delivered become dead (replay them after setting a new endpoint).
#[utoipa::path(delete, path = "/api/v1/campaigns/{id}/webhook", tag = "webhooks", params(("id" = i64, Path)),
    security(("api_key" = ["webhooks:write"])),
    responses((status = 204, description = "Removed"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn remove(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    if api.store.webhook_endpoints_delete(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("campaign {id} has no webhook endpoint")))
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    #[default]
    All,
    /// Tried and not delivered yet (dead ones included).
    Failing,
    /// Given up after the maximum age; replay them.
    Dead,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// `all` (default), `failing` or `dead`.
    pub state: Option<DeliveryState>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–1000, default 100.
    pub limit: Option<i64>,
}

/// One event and where its delivery stands.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeliveryView {
    id: i64,
    /// The `webhook-id` header: the same on every retry.
    msg_id: String,
    contact_id: i64,
    /// `contact.result`, `contact.finished` or `contact.opted_out`.
    event_type: String,
    /// The event's `data`.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    created_at: DateTime<Utc>,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    last_status: Option<i32>,
    last_error: Option<String>,
    dead_at: Option<DateTime<Utc>>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeliveryPage {
    items: Vec<DeliveryView>,
    next_cursor: Option<String>,
}

/// A campaign's webhook deliveries, e.g. `?state=failing` to see what its receiver has not taken.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/webhook/deliveries", tag = "webhooks",
    params(("id" = i64, Path), DeliveriesQuery), security(("api_key" = ["results:read"])),
    responses((status = 200, body = DeliveryPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn deliveries(
    State(api): State<Api>,
    Path(id): Path<i64>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Json<Page<Delivery>>> {
    let (after, limit) = PageQuery { cursor: q.cursor, limit: q.limit }.parse()?;
    api.store.campaigns_get(id).await?;
    let filter = match q.state.unwrap_or_default() {
        DeliveryState::All => DeliveryFilter::All,
        DeliveryState::Failing => DeliveryFilter::Failing,
        DeliveryState::Dead => DeliveryFilter::Dead,
    };
    let rows = api.store.webhook_outbox_list(id, filter, Some(after), limit).await?;
    Ok(Json(Page::new(rows, limit, |d| d.id)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// Events due again now.
    pub replayed: u64,
}

/// Send one event again now (dead, failing or even delivered), with a fresh retry window.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/webhook/deliveries/{delivery_id}/replay", tag = "webhooks",
    params(("id" = i64, Path), ("delivery_id" = i64, Path)), security(("api_key" = ["webhooks:write"])),
    responses((status = 200, body = Replayed), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn replay(State(api): State<Api>, Path((id, delivery)): Path<(i64, i64)>) -> ApiResult<Json<Replayed>> {
    if api.store.webhook_outbox_replay(id, delivery).await? {
        Ok(Json(Replayed { replayed: 1 }))
    } else {
        Err(Problem::not_found(format!("campaign {id} has no webhook delivery {delivery}")))
    }
}

/// Send every dead event of the campaign again.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/webhook/deliveries/replay-dead", tag = "webhooks",
    params(("id" = i64, Path)), security(("api_key" = ["webhooks:write"])),
    responses((status = 200, body = Replayed), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn replay_dead(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<Replayed>> {
    api.store.campaigns_get(id).await?;
    Ok(Json(Replayed { replayed: api.store.webhook_outbox_replay_dead(id).await? }))
}
