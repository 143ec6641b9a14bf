//! `/api/v1/campaigns/{id}/results`: a campaign's results page by page (cursor), and as one streamed
//! CSV or NDJSON download of any size in constant memory (keyset pages of the store, written as they come).

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dialer_core::export::{write_csv_row, CSV_HEADER};
use dialer_core::store::{AuditReport, RecentAttempt, ResultRow};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{Path, Query};
use crate::problem::{ApiResult, Problem};
use crate::{Api, Page, PageQuery};

/// One contact's result (the same columns as `dialer results export`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ResultView {
    contact_id: i64,
    external_id: Option<String>,
    phone: String,
    /// The contact's state.
    state: String,
    /// The final outcome, or the last attempt's while it is still open.
    outcome: Option<String>,
    /// The keypress result, e.g. `reschedule:afternoon`.
    result: Option<String>,
    attempts: i32,
    last_call_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The zones the calling rules were applied in (`America/Denver & America/Los_Angeles` for several).
    zones: String,
    zone_source: dialer_core::domain::compliance::ZoneSource,
    /// Calls the contact made to our caller ID.
    inbound_calls: i64,
    /// The SMS fallback's delivery status (`delivered`, `undelivered`, `failed`…) once sent, else where it
    /// stands (`pending`, `skipped`, `rejected`, `unknown`); null when no text was due.
    sms: Option<String>,
    /// The operator who answered the contact's latest transfer to a person.
    operator: Option<String>,
    /// How long that operator talked to the contact, in seconds.
    handle_s: Option<f64>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ResultPage {
    items: Vec<ResultView>,
    next_cursor: Option<String>,
}

/// A campaign's results in contact order, a page at a time.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/results", tag = "results", params(("id" = i64, Path), PageQuery),
    security(("api_key" = ["results:read"])),
    responses((status = 200, body = ResultPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn page(
    State(api): State<Api>,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<ResultRow>>> {
    let (after, limit) = q.parse()?;
    api.store.campaigns_get(id).await?;
    let rows = api.store.results_page(id, after, limit).await?;
    Ok(Json(Page::new(rows, limit, |r| r.contact_id)))
}

/// One of a campaign's latest attempts: the attempt (as in a contact's `attempts`) and whom it called.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RecentAttemptView {
    attempt_id: i64,
    contact_id: i64,
    external_id: Option<String>,
    /// The contact's attributes.
    #[schema(value_type = Object)]
    attributes: serde_json::Value,
    phone: String,
    #[schema(inline)]
    #[serde(flatten)]
    attempt: crate::contacts::AttemptView,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecentQuery {
    /// 1–200, default 20.
    pub limit: Option<i64>,
}

/// A campaign's latest attempts, newest first: the Twilio status and outcome of each call as it happens.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/attempts", tag = "results", params(("id" = i64, Path), RecentQuery),
    security(("api_key" = ["results:read"])),
    responses((status = 200, body = Vec<RecentAttemptView>), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn recent_attempts(
    State(api): State<Api>,
    Path(id): Path<i64>,
    Query(q): Query<RecentQuery>,
) -> ApiResult<Json<Vec<RecentAttempt>>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=200).contains(&limit) {
        return Err(Problem::field("/limit", "must be 1 to 200"));
    }
    api.store.campaigns_get(id).await?;
    Ok(Json(api.store.attempts_recent(id, limit).await?))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    #[default]
    Csv,
    Ndjson,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `csv` (default) or `ndjson`.
    pub format: Option<ExportFormat>,
}

/// Rows fetched per round trip while streaming.
const EXPORT_PAGE: i64 = 5_000;

/// Every result of a campaign as one streamed CSV (spreadsheet-safe cells) or NDJSON download.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/results/export", tag = "results", params(("id" = i64, Path), ExportQuery),
    security(("api_key" = ["results:read"])),
    responses((status = 200, content((String = "text/csv"), (String = "application/x-ndjson"))),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn export(State(api): State<Api>, Path(id): Path<i64>, Query(q): Query<ExportQuery>) -> ApiResult<Response> {
    api.store.campaigns_get(id).await?;
    let format = q.format.unwrap_or_default();
    let store = api.store.clone();
    let stream = futures::stream::try_unfold((0i64, true, false), move |(after, first, done)| {
        let store = store.clone();
        async move {
            if done {
                return Ok::<_, std::io::Error>(None);
            }
            let rows = store.results_page(id, after, EXPORT_PAGE).await.map_err(std::io::Error::other)?;
            let mut out = Vec::with_capacity(rows.len() * 96 + 128);
            match format {
                ExportFormat::Csv => {
                    let mut w = csv::Writer::from_writer(&mut out);
                    if first {
                        w.write_record(CSV_HEADER).map_err(std::io::Error::other)?;
                    }
                    for r in &rows {
                        write_csv_row(&mut w, r).map_err(std::io::Error::other)?;
                    }
                    w.flush()?;
                    drop(w);
                }
                ExportFormat::Ndjson => {
                    for r in &rows {
                        serde_json::to_writer(&mut out, r).map_err(std::io::Error::other)?;
                        out.push(b'\n');
                    }
                }
            }
            let last = rows.last().map(|r| r.contact_id);
            let done = (rows.len() as i64) < EXPORT_PAGE;
            Ok(Some((bytes::Bytes::from(out), (last.unwrap_or(after), false, done))))
        }
    });
    let (ctype, ext) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Ndjson => ("application/x-ndjson", "ndjson"),
    };
    Ok((
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"campaign-{id}-results.{ext}\"")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Every call of the campaign re-checked against its calling rules and compliance profiles: the callee's
/// local time in each zone, where the zone came from, the rules that applied and any violation (the same
/// report as `dialer compliance audit`).
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/audit", tag = "results", params(("id" = i64, Path)),
    security(("api_key" = ["results:read"])),
    responses((status = 200, body = AuditReport), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn audit(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<AuditReport>> {
    Ok(Json(api.store.compliance_audit(id).await?))
}
