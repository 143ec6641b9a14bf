//! `/api/v1/dnc/{phone}`: check, add and remove a number on the do-not-call list (global, or one
//! campaign's with `campaign_id`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use dialer_core::domain::E164;
use dialer_core::store::DncEntry;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::body::JsonBody;
use crate::extract::{Path, Query};
use crate::problem::{ApiResult, FieldError, Problem};
use crate::Api;

fn phone(raw: &str) -> ApiResult<E164> {
    E164::parse(raw, None).map_err(|e| {
        Problem::validation(
            format!("phone: {e} ({raw:?}); write it in E.164, e.g. +818012345678"),
            vec![FieldError { pointer: None, field: Some("phone".into()), row: None, detail: e.to_string() }],
        )
    })
}

/// Whether a number may be called, and every listing of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DncStatus {
    pub phone: String,
    /// On the global list: no campaign calls it.
    pub blocked_everywhere: bool,
    /// Campaigns whose own list has it.
    pub blocked_campaigns: Vec<i64>,
    pub entries: Vec<DncEntryView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DncEntryView {
    /// Null: the global list.
    pub campaign_id: Option<i64>,
    pub reason: String,
    /// `cli`, `import`, `keypress` or `api`.
    pub source: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl DncStatus {
    fn new(phone: &E164, entries: Vec<DncEntry>) -> Self {
        Self {
            phone: phone.as_str().to_string(),
            blocked_everywhere: entries.iter().any(|e| e.campaign_id.is_none()),
            blocked_campaigns: entries.iter().filter_map(|e| e.campaign_id).collect(),
            entries: entries
                .into_iter()
                .map(|e| DncEntryView {
                    campaign_id: e.campaign_id,
                    reason: e.reason,
                    source: e.source,
                    created_at: e.created_at,
                })
                .collect(),
        }
    }
}

/// Check a number (E.164, e.g. `+818012345678`; URL-encode the `+` as `%2B` if your client needs to).
#[utoipa::path(get, path = "/api/v1/dnc/{phone}", tag = "dnc", params(("phone" = String, Path)),
    security(("api_key" = ["dnc:read"])),
    responses((status = 200, body = DncStatus), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn check(State(api): State<Api>, Path(raw): Path<String>) -> ApiResult<Json<DncStatus>> {
    let p = phone(&raw)?;
    Ok(Json(DncStatus::new(&p, api.store.dnc_entries(&p).await?)))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DncAdd {
    /// Only this campaign's list; the global list when absent.
    pub campaign_id: Option<i64>,
    pub reason: Option<String>,
}

/// Add a number (idempotent: adding it again changes nothing).
#[utoipa::path(put, path = "/api/v1/dnc/{phone}", tag = "dnc", params(("phone" = String, Path)), request_body = DncAdd,
    security(("api_key" = ["dnc:write"])),
    responses((status = 200, body = DncStatus), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn add(
    State(api): State<Api>,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<DncAdd>,
) -> ApiResult<Json<DncStatus>> {
    let p = phone(&raw)?;
    if let Some(c) = body.campaign_id {
        api.store.campaigns_get(c).await?;
    }
    let reason = body.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()).unwrap_or("added through the API");
    api.store.dnc_add_many(std::slice::from_ref(&p), body.campaign_id, reason, "api").await?;
    Ok(Json(DncStatus::new(&p, api.store.dnc_entries(&p).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DncScope {
    /// Remove it from this campaign's list only; from the global list when absent.
    pub campaign_id: Option<i64>,
}

/// Remove a number from the global list (or one campaign's). 404 when it was not listed there.
#[utoipa::path(delete, path = "/api/v1/dnc/{phone}", tag = "dnc", params(("phone" = String, Path), DncScope),
    security(("api_key" = ["dnc:write"])),
    responses((status = 204, description = "Removed"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn remove(
    State(api): State<Api>,
    Path(raw): Path<String>,
    Query(q): Query<DncScope>,
) -> ApiResult<StatusCode> {
    let p = phone(&raw)?;
    if api.store.dnc_remove(&p, q.campaign_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("{p} is not on that do-not-call list")))
    }
}
