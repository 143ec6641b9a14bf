//! `POST /api/v1/campaigns/{id}/estimate`: the dry run of `dialer campaign estimate` — the campaign's
//! contacts through the scheduler and a simulator in virtual time, priced from the sample price table.
//! Reads the campaign and its contacts; dials nothing and changes nothing.

use axum::extract::{Request, State};
use axum::Json;
use chrono::{DateTime, Utc};
use dialer_core::estimate::{EstimateError, EstimateMix, EstimateReport, PriceTable};
use dialer_core::store::estimate::{EstimateFailure, EstimateOptions, MixChoice};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::body::{content_type_is, parse_json, read_body};
use crate::extract::Path;
use crate::problem::{ApiResult, Problem};
use crate::Api;

/// What to estimate with; every field is optional, and so is the body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateRequest {
    /// When dialling would start; now by default.
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    /// An outcome mix (fields not given keep their defaults). Not with `learn`.
    #[serde(default)]
    pub mix: Option<EstimateMix>,
    /// Learn the mix from the campaign's own finished attempts (the default mix, said in `assumptions`,
    /// when it has fewer than 100).
    #[serde(default)]
    pub learn: bool,
}

/// The expected finish, calls and billed minutes by outcome, answer curve and cost of the campaign's
/// contacts still to be called (the same report as `dialer campaign estimate --json`).
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/estimate", tag = "campaigns", params(("id" = i64, Path)),
    request_body(content = Option<EstimateRequest>, content_type = "application/json"),
    security(("api_key" = ["campaigns:read"])),
    responses((status = 200, body = EstimateReport), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn estimate(State(api): State<Api>, Path(id): Path<i64>, req: Request) -> ApiResult<Json<EstimateReport>> {
    let json = content_type_is(req.headers(), "application/json");
    let bytes = read_body(req, &()).await?;
    let body: EstimateRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        EstimateRequest::default()
    } else if !json {
        return Err(Problem::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the body as application/json (or no body)",
        ));
    } else {
        parse_json(&bytes)?
    };
    let mix = match (body.mix, body.learn) {
        (Some(_), true) => return Err(Problem::field("/learn", "cannot be combined with `mix`")),
        (Some(m), false) => {
            m.validate().map_err(|e| Problem::field("/mix", e.to_string()))?;
            MixChoice::Given(Box::new(m))
        }
        (None, true) => MixChoice::Learn,
        (None, false) => MixChoice::Default,
    };
    let options = EstimateOptions {
        start: body.start.unwrap_or_else(Utc::now),
        mix,
        prices: PriceTable::sample(),
        account_cps: api.account_cps,
        pacing_margin: dialer_core::config::DEFAULT_PACING_MARGIN,
    };
    match api.store.campaigns_estimate(id, options).await {
        Ok(r) => Ok(Json(r)),
        Err(EstimateFailure::Store(e)) => Err(e.into()),
        Err(EstimateFailure::Input(EstimateError::Mix(m))) => Err(Problem::field("/mix", m)),
        Err(EstimateFailure::Input(e)) => Err(Problem::validation(e.to_string(), Vec::new())),
    }
}
