//! `/api/v1/campaigns`: create (the campaign file as JSON, validated like the CLI's), read, list, change
//! what is safe while running, and start / pause / resume / cancel; and live progress.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use dialer_core::domain::campaign::{CampaignFile, SpecError};
use dialer_core::domain::{CampaignSpec, CampaignStatus};
use dialer_core::store::CampaignRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::body::{parse_json, JsonBody};
use crate::eta::{estimate, Estimate};
use crate::extract::{Path, Query};
use crate::problem::{ApiResult, FieldError, Problem};
use crate::{Api, Page, PageQuery};

/// A campaign as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Campaign {
    pub id: i64,
    pub name: String,
    /// `draft`, `running`, `paused`, `completed` or `canceled`.
    #[schema(value_type = String, example = "running")]
    pub status: CampaignStatus,
    /// Why it was paused, completed or canceled.
    pub status_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The campaign file, with every change made since.
    pub spec: CampaignFile,
}

impl Campaign {
    fn from_row(c: CampaignRow) -> ApiResult<Self> {
        let spec = serde_json::from_value(c.spec).map_err(|e| {
            tracing::error!(campaign = c.id, error = %e, "stored campaign spec does not parse");
            Problem::internal()
        })?;
        Ok(Self {
            id: c.id,
            name: c.name,
            status: c.status,
            status_reason: c.status_reason,
            created_at: c.created_at,
            spec,
        })
    }
}

/// The campaign file's validation errors as one problem naming every field.
pub fn spec_problem(e: SpecError) -> Problem {
    match e {
        SpecError::Invalid(issues) => Problem::validation(
            issues.iter().map(|i| format!("{}: {}", i.field, i.reason)).collect::<Vec<_>>().join("; "),
            issues
                .into_iter()
                .map(|i| FieldError {
                    pointer: Some(format!("/{}", i.field.replace('.', "/"))),
                    field: Some(i.field),
                    row: None,
                    detail: i.reason,
                })
                .collect(),
        ),
        SpecError::Syntax { message, .. } => Problem::bad_request(message),
    }
}

/// Create a campaign from the same document as `dialer campaign create --file` (as JSON). It starts as a
/// draft.
#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns", request_body = CampaignFile,
    security(("api_key" = ["campaigns:write"])),
    responses((status = 201, body = Campaign, headers(("Location" = String))), (status = "4XX", body = Problem,
        content_type = "application/problem+json")))]
pub async fn create(State(api): State<Api>, JsonBody(file): JsonBody<CampaignFile>) -> ApiResult<impl IntoResponse> {
    let spec = CampaignSpec::validate(file).map_err(spec_problem)?;
    let id = api.store.campaigns_insert(&spec).await?;
    let c = Campaign::from_row(api.store.campaigns_get(id).await?)?;
    Ok((StatusCode::CREATED, [(header::LOCATION, format!("/api/v1/campaigns/{id}"))], Json(c)))
}

/// One campaign.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns", params(("id" = i64, Path)),
    security(("api_key" = ["campaigns:read"])),
    responses((status = 200, body = Campaign), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn get(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<Campaign>> {
    Ok(Json(Campaign::from_row(api.store.campaigns_get(id).await?)?))
}

/// Campaigns in id order, a page at a time.
#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns", params(PageQuery),
    security(("api_key" = ["campaigns:read"])),
    responses((status = 200, body = CampaignPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn list(State(api): State<Api>, Query(q): Query<PageQuery>) -> ApiResult<Json<Page<Campaign>>> {
    let (after, limit) = q.parse()?;
    let rows = api.store.campaigns_list(after, limit).await?;
    let items = rows.into_iter().map(Campaign::from_row).collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(Page::new(items, limit, |c| c.id)))
}

/// The page type, named for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CampaignPage {
    items: Vec<Campaign>,
    next_cursor: Option<String>,
}

/// Fields that may change while a campaign runs; they apply from the next claim or call on.
pub const LIVE_FIELDS: [&str; 6] = ["window", "cps", "max_in_flight", "max_attempts", "retry", "script"];

/// A change to a campaign: any of `window`, `cps`, `max_in_flight`, `max_attempts`, `retry` and `script`
/// (same menus, keys and actions; only what is said may change). Every other field is refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // parsed to check each value's type and name its field; the map is what is applied
pub struct CampaignPatch {
    pub window: Option<dialer_core::domain::campaign::WindowFile>,
    pub cps: Option<f64>,
    pub max_in_flight: Option<i32>,
    pub max_attempts: Option<i32>,
    pub retry: Option<dialer_core::domain::RetryPolicy>,
    pub script: Option<dialer_core::domain::script::Script>,
}

/// Change what is safe to change while the campaign runs.
#[utoipa::path(patch, path = "/api/v1/campaigns/{id}", tag = "campaigns", params(("id" = i64, Path)),
    request_body = CampaignPatch, security(("api_key" = ["campaigns:write"])),
    responses((status = 200, body = Campaign), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(api): State<Api>,
    Path(id): Path<i64>,
    JsonBody(patch): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<Json<Campaign>> {
    const FILE_FIELDS: [&str; 14] = [
        "name",
        "caller_id",
        "timezone",
        "cps",
        "account_cps_share",
        "max_in_flight",
        "max_attempts",
        "amd",
        "ring_timeout_s",
        "window",
        "retry",
        "limits",
        "recurrence",
        "script",
    ];
    for k in patch.keys() {
        if !LIVE_FIELDS.contains(&k.as_str()) {
            let why = if FILE_FIELDS.contains(&k.as_str()) {
                format!("cannot change after the campaign is created (changeable: {})", LIVE_FIELDS.join(", "))
            } else {
                format!("unknown field (changeable: {})", LIVE_FIELDS.join(", "))
            };
            return Err(Problem::field(&format!("/{k}"), why));
        }
    }
    // Typed once more, so each value's own errors name their field.
    let _: CampaignPatch = parse_json(&serde_json::to_vec(&patch).expect("a map serializes"))?;
    let current = Campaign::from_row(api.store.campaigns_get(id).await?)?;
    let mut file = serde_json::to_value(&current.spec).expect("a campaign file serializes");
    for (k, v) in patch {
        file[k] = v;
    }
    let file: CampaignFile = parse_json(&serde_json::to_vec(&file).expect("serializes"))?;
    if let Err(why) = current.spec.script.same_flow_as(&file.script) {
        return Err(Problem::field("/script", why));
    }
    let spec = CampaignSpec::validate(file).map_err(spec_problem)?;
    Ok(Json(Campaign::from_row(api.store.campaigns_update_live(id, &spec).await?)?))
}

/// Start dialing (draft or paused → running).
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/start", tag = "campaigns", params(("id" = i64, Path)),
    security(("api_key" = ["campaigns:write"])),
    responses((status = 200, body = Campaign), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn start(api: State<Api>, id: Path<i64>) -> ApiResult<Json<Campaign>> {
    set_status(api, id, CampaignStatus::Running).await
}

/// Resume a paused campaign.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/resume", tag = "campaigns", params(("id" = i64, Path)),
    security(("api_key" = ["campaigns:write"])),
    responses((status = 200, body = Campaign), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn resume(api: State<Api>, id: Path<i64>) -> ApiResult<Json<Campaign>> {
    set_status(api, id, CampaignStatus::Running).await
}

/// Pause: no new calls; calls in progress finish.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/pause", tag = "campaigns", params(("id" = i64, Path)),
    security(("api_key" = ["campaigns:write"])),
    responses((status = 200, body = Campaign), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn pause(api: State<Api>, id: Path<i64>) -> ApiResult<Json<Campaign>> {
    set_status(api, id, CampaignStatus::Paused).await
}

/// Cancel: contacts not yet called end as canceled; calls in flight finish and are not retried.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/cancel", tag = "campaigns", params(("id" = i64, Path)),
    security(("api_key" = ["campaigns:write"])),
    responses((status = 200, body = Campaign), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn cancel(api: State<Api>, id: Path<i64>) -> ApiResult<Json<Campaign>> {
    set_status(api, id, CampaignStatus::Canceled).await
}

async fn set_status(State(api): State<Api>, Path(id): Path<i64>, to: CampaignStatus) -> ApiResult<Json<Campaign>> {
    api.store.campaigns_set_status(id, to, None).await?;
    Ok(Json(Campaign::from_row(api.store.campaigns_get(id).await?)?))
}

/// A campaign's live progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct Progress {
    pub campaign_id: i64,
    #[schema(value_type = String, example = "running")]
    pub status: CampaignStatus,
    pub contacts: i64,
    /// Contacts by state (`pending`, `claimed`, `calling`, `done`, `exhausted`, `invalid`, `blocked`, `canceled`).
    pub by_state: BTreeMap<String, i64>,
    /// Contacts by final outcome.
    pub by_outcome: BTreeMap<String, i64>,
    /// Contacts by keypress result.
    pub by_result: BTreeMap<String, i64>,
    /// Contacts by where their time zone came from: `given` at import, derived from the `number`, or the
    /// `campaign`'s (only when the campaign allows that fallback).
    pub by_zone_source: BTreeMap<String, i64>,
    /// Share of finished contacts (0–1).
    pub percent_done: f64,
    pub attempts: i64,
    pub calls_requested: i64,
    pub calls_in_flight: i64,
    /// Calls requested over the last ten seconds, per second.
    pub calls_per_second: f64,
    /// Answered calls / calls that ended; null before the first call ends.
    pub answer_rate: Option<f64>,
    pub backlog: i64,
    pub estimate: Estimate,
    /// Calls contacts made to the campaign's caller ID.
    pub inbound_calls: i64,
    /// The SMS fallback's texts by state and delivery status, and the replies that gave a result.
    pub sms: dialer_core::store::MessageCounts,
}

/// Live progress: counts, calls in flight, answer rate, and an ETA from the backlog, CPS and calling window.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/progress", tag = "campaigns", params(("id" = i64, Path)),
    security(("api_key" = ["campaigns:read"])),
    responses((status = 200, body = Progress), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn progress(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<Progress>> {
    let c = api.store.campaigns_get(id).await?;
    let r = api.store.campaigns_report(id).await?;
    let stats = api.store.attempts_answer_stats(id).await?;
    let last_due = api.store.contacts_last_due(id).await?;
    let n = |s: dialer_core::domain::ContactState| r.by_state.get(&s).copied().unwrap_or(0);
    use dialer_core::domain::ContactState as S;
    let backlog = n(S::Pending) + n(S::Claimed);
    let open = backlog + n(S::Calling);
    let estimate = estimate(&c, backlog, r.next_due_at, last_due, api.account_cps, Utc::now());
    Ok(Json(Progress {
        campaign_id: id,
        status: c.status,
        contacts: r.contacts,
        by_state: r.by_state.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        by_outcome: r.by_outcome,
        by_result: r.by_result,
        by_zone_source: r.by_zone_source.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        percent_done: if r.contacts == 0 { 0.0 } else { (r.contacts - open) as f64 / r.contacts as f64 },
        attempts: r.attempts,
        calls_requested: r.calls_requested,
        calls_in_flight: r.in_flight,
        answer_rate: (stats.finished > 0).then(|| stats.answered as f64 / stats.finished as f64),
        calls_per_second: stats.calls_per_second,
        backlog,
        estimate,
        inbound_calls: r.inbound_calls,
        sms: r.sms,
    }))
}
