//! `/api/v1/campaigns/{id}/contacts` and `/api/v1/contacts/{id}`: push contacts (JSON batches or a CSV
//! file, idempotent with `Idempotency-Key`), read one with its attempts, remove one never called.

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dialer_core::domain::compliance::Zoning;
use dialer_core::domain::script::Script;
use dialer_core::domain::{Tz, E164};
use dialer_core::import::parse_csv;
use dialer_core::store::{ContactDetail, Idempotency, NewContact, PushAnswer, Pushed};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::body::{content_type_is, parse_json, read_body};
use crate::extract::{Path, Query};
use crate::problem::{ApiResult, FieldError, Problem};
use crate::Api;

/// Contacts in one JSON request.
pub const MAX_JSON_CONTACTS: usize = 10_000;
/// Rows in one CSV upload.
pub const MAX_CSV_ROWS: usize = 100_000;
/// Largest push body (a CSV of `MAX_CSV_ROWS` rows with a few attributes).
pub const PUSH_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// A batch of contacts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactsPush {
    /// At most 10,000.
    pub contacts: Vec<ContactIn>,
}

/// One contact to call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactIn {
    /// E.164 (`+818012345678`), or local form with `region`.
    pub phone: String,
    /// IANA zone; the campaign's when absent.
    pub timezone: Option<String>,
    /// The parcel or appointment reference: a second contact with it in the campaign is a duplicate.
    pub external_id: Option<String>,
    /// Values for the script's variables.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PushQuery {
    /// Region for numbers in local form, e.g. `JP` for `080-1234-5678`.
    pub region: Option<String>,
    /// Push the valid rows and report the invalid ones (default: any invalid row pushes nothing).
    pub skip_invalid: Option<bool>,
}

/// What a push did. `row` is the index in `contacts` for JSON, the 1-based line for CSV.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PushReport {
    pub created: usize,
    pub contacts: Vec<CreatedContact>,
    pub duplicates: Vec<Duplicate>,
    /// Rows refused as invalid (only with `skip_invalid=true`; otherwise they fail the request).
    pub invalid: Vec<FieldError>,
    /// The campaign had completed and runs again for the new contacts.
    pub campaign_reopened: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedContact {
    pub row: usize,
    pub id: i64,
}

/// A row not added because the campaign already has its number or external id (or an earlier row of
/// this push did).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Duplicate {
    pub row: usize,
    pub phone: String,
    pub external_id: Option<String>,
    /// The contact it duplicates; null when it repeats an earlier row of the same push.
    pub existing_contact_id: Option<i64>,
}

/// Push contacts into a campaign: JSON (`application/json`, at most 10,000) or a CSV file (`text/csv`,
/// the same columns and per-row errors as `dialer contacts import`). With an `Idempotency-Key` header,
/// replaying the same request returns the first answer and writes nothing; the same key with another
/// body is 409.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/contacts", tag = "contacts",
    params(("id" = i64, Path), PushQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Up to 255 visible ASCII characters, unique per request")),
    request_body(content(
        (ContactsPush = "application/json"),
        (String = "text/csv", example = "phone,external_id,name\n+818012345678,P-1001,Taro\n"))),
    security(("api_key" = ["contacts:write"])),
    responses((status = 200, body = PushReport, description = "Pushed (or the replay of an earlier push: header `Idempotent-Replayed: true`)"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn push(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(campaign_id): Path<i64>,
    Query(q): Query<PushQuery>,
    req: Request,
) -> ApiResult<Response> {
    let headers = req.headers().clone();
    let idem_key = idempotency_key(&headers)?;
    let is_csv = content_type_is(&headers, "text/csv");
    if !is_csv && !content_type_is(&headers, "application/json") {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send contacts as application/json or text/csv",
        ));
    }
    let uri = req.uri().clone();
    let body = read_body(req, &()).await?;
    let region = q.region.as_deref().map(str::to_ascii_uppercase);
    if let Some(r) = &region {
        if r.parse::<phonenumber::country::Id>().is_err() {
            return Err(Problem::validation(
                format!("region: unknown region {r:?}"),
                vec![FieldError {
                    pointer: None,
                    field: Some("region".into()),
                    row: None,
                    detail: format!("unknown region {r:?}"),
                }],
            ));
        }
    }
    let campaign = api.store.campaigns_get(campaign_id).await?;
    let zoning = campaign.zoning();
    let script: Script = serde_json::from_value(campaign.script).map_err(|_| Problem::internal())?;
    let required: Vec<String> = script.required_attributes().map(str::to_string).collect();

    let (rows, invalid) = if is_csv {
        // PostgreSQL text cannot hold NUL: refused as a bad row, not failed in the store as a 500.
        if let Some(at) = body.iter().position(|&b| b == 0) {
            let line = body[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(Problem::validation(
                format!("line {line}: contains a NUL byte"),
                vec![FieldError { pointer: None, field: None, row: Some(line), detail: "contains a NUL byte".into() }],
            ));
        }
        let (bytes, region, required, zoning) = (body.clone(), region.clone(), required.clone(), zoning.clone());
        let parsed = tokio::task::spawn_blocking(move || {
            let required: Vec<&str> = required.iter().map(String::as_str).collect();
            parse_csv(&bytes, region.as_deref(), &required, &zoning)
        })
        .await
        .map_err(|_| Problem::internal())?;
        if parsed.rows.len() + parsed.errors.len() > MAX_CSV_ROWS {
            return Err(Problem::field("", format!("at most {MAX_CSV_ROWS} rows per upload; split the file")));
        }
        let invalid = parsed
            .errors
            .into_iter()
            .map(|e| FieldError { pointer: None, field: e.column, row: Some(e.line), detail: e.reason })
            .collect::<Vec<_>>();
        (parsed.rows.into_iter().map(|r| (r.line, r.contact)).collect::<Vec<_>>(), invalid)
    } else {
        let push: ContactsPush = parse_json(&body)?;
        if push.contacts.len() > MAX_JSON_CONTACTS {
            return Err(Problem::field(
                "/contacts",
                format!(
                    "at most {MAX_JSON_CONTACTS} contacts per request (got {}); split the batch",
                    push.contacts.len()
                ),
            ));
        }
        let (region, required) = (region.clone(), required.clone());
        tokio::task::spawn_blocking(move || check_rows(push.contacts, region.as_deref(), &required, &zoning))
            .await
            .map_err(|_| Problem::internal())?
    };
    if !invalid.is_empty() && !q.skip_invalid.unwrap_or(false) {
        return Err(Problem::validation(
            format!(
                "{} invalid row(s); nothing was pushed (add ?skip_invalid=true to push the {} valid ones)",
                invalid.len(),
                rows.len()
            ),
            invalid,
        ));
    }
    let request_hash: [u8; 32] = {
        let mut h = Sha256::new();
        for part in [uri.path().as_bytes(), uri.query().unwrap_or("").as_bytes(), if is_csv { b"csv" } else { b"json" }]
        {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update(&body);
        h.finalize().into()
    };
    let idem = idem_key.as_deref().map(|key| Idempotency { api_key_id: caller.0.id, key, request_hash });
    let row_no: Vec<usize> = rows.iter().map(|(n, _)| *n).collect();
    let contacts: Vec<NewContact> = rows.into_iter().map(|(_, c)| c).collect();
    let answer = api
        .store
        .contacts_push(campaign_id, &contacts, idem, |p: &Pushed| {
            let report = PushReport {
                created: p.created.len(),
                contacts: p.created.iter().map(|&(i, id)| CreatedContact { row: row_no[i], id }).collect(),
                duplicates: p
                    .duplicates
                    .iter()
                    .map(|&(i, of)| Duplicate {
                        row: row_no[i],
                        phone: contacts[i].phone.as_str().to_string(),
                        external_id: contacts[i].external_id.clone(),
                        existing_contact_id: of,
                    })
                    .collect(),
                invalid,
                campaign_reopened: p.reopened,
            };
            (200, serde_json::to_value(report).expect("a report serializes"))
        })
        .await?;
    Ok(match answer {
        PushAnswer::Done(_, status, body) => {
            (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(body)).into_response()
        }
        PushAnswer::Replayed(status, body) => {
            let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(body)).into_response();
            r.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            r
        }
        PushAnswer::KeyReused => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "idempotency-key-reused",
                "this Idempotency-Key was used for a different request; use a new key for new contacts",
            ))
        }
    })
}

/// The `Idempotency-Key` header, if sent: 1–255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let bad = || {
        Problem::validation(
            "Idempotency-Key: must be 1 to 255 visible ASCII characters",
            vec![FieldError {
                pointer: None,
                field: Some("Idempotency-Key".into()),
                row: None,
                detail: "must be 1 to 255 visible ASCII characters".into(),
            }],
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_string()))
}

/// Parses each JSON row into a contact or errors naming `/contacts/{i}/{field}`. Number parsing dominates,
/// so the rows are split across the cores.
fn check_rows(
    rows: Vec<ContactIn>,
    region: Option<&str>,
    required: &[String],
    zoning: &Zoning,
) -> (Vec<(usize, NewContact)>, Vec<FieldError>) {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
    let chunk = rows.len().div_ceil(workers).max(1);
    let indexed: Vec<(usize, ContactIn)> = rows.into_iter().enumerate().collect();
    let checked: Vec<Result<(usize, NewContact), Vec<FieldError>>> = std::thread::scope(|s| {
        let handles: Vec<_> = indexed
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter().map(|(i, c)| check_row(*i, c, region, required, zoning)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("row check does not panic")).collect()
    });
    let (mut ok, mut errors) = (Vec::new(), Vec::new());
    for r in checked {
        match r {
            Ok(c) => ok.push(c),
            Err(e) => errors.extend(e),
        }
    }
    (ok, errors)
}

fn check_row(
    i: usize,
    c: &ContactIn,
    region: Option<&str>,
    required: &[String],
    zoning: &Zoning,
) -> Result<(usize, NewContact), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, detail: String| {
        errors.push(FieldError {
            pointer: Some(format!("/contacts/{i}/{field}")),
            field: Some(field.to_string()),
            row: Some(i),
            detail,
        })
    };
    let phone = E164::parse(&c.phone, region).map_err(|e| fail("phone", format!("{e} ({:?})", c.phone))).ok();
    let timezone = match c.timezone.as_deref().map(str::trim).filter(|z| !z.is_empty()) {
        None => None,
        Some(z) => Tz::parse(z).map_err(|_| fail("timezone", format!("unknown time zone {z:?}"))).ok(),
    };
    let external_id = match c.external_id.as_deref().map(str::trim) {
        Some("") => {
            fail("external_id", "must not be empty (leave it out instead)".into());
            None
        }
        Some(x) if x.len() > 200 => {
            fail("external_id", "longer than 200 characters".into());
            None
        }
        x => x.map(str::to_string),
    };
    for r in required {
        if !c.attributes.contains_key(r) {
            fail(&format!("attributes/{r}"), format!("missing; the campaign's script uses `{r}`"));
        }
    }
    let zone = phone.as_ref().map(|p| zoning.resolve(timezone, p, external_id.as_deref()));
    if let Some(Err((field, detail))) = &zone {
        fail(field, detail.clone());
    }
    match (phone, zone) {
        (Some(phone), Some(Ok(zone))) if errors.is_empty() => {
            Ok((i, NewContact { phone, zone, external_id, attributes: c.attributes.clone() }))
        }
        _ => Err(errors),
    }
}

/// A contact with its attempts, outcome and keypress result.
#[utoipa::path(get, path = "/api/v1/contacts/{id}", tag = "contacts", params(("id" = i64, Path)),
    security(("api_key" = ["results:read"])),
    responses((status = 200, body = ContactView), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn get(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<Json<ContactDetail>> {
    api.store
        .contacts_get(id)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("contact {id} does not exist")))
}

/// Remove a contact that has not been called yet (204). One being or already called is 409.
#[utoipa::path(delete, path = "/api/v1/contacts/{id}", tag = "contacts", params(("id" = i64, Path)),
    security(("api_key" = ["contacts:write"])),
    responses((status = 204, description = "Removed"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
pub async fn remove(State(api): State<Api>, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    api.store.contacts_remove_uncalled(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The OpenAPI shape of [`ContactDetail`] (a store type, so described here).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ContactView {
    id: i64,
    campaign_id: i64,
    phone: String,
    /// The zone the import gave, if any.
    timezone: Option<String>,
    /// Every zone the calling rules must be open in: several when the number's prefix spans zones (the
    /// contact is then called only while all are open); the campaign's own for a contact stored without one.
    zones: Vec<String>,
    /// Where the zone came from: `given`, `number` or `campaign`.
    zone_source: dialer_core::domain::compliance::ZoneSource,
    /// The US state of the number's area code (for state calling rules), when known.
    region: Option<String>,
    external_id: Option<String>,
    #[schema(value_type = Object)]
    attributes: serde_json::Value,
    /// `pending`, `claimed`, `calling`, `done`, `exhausted`, `invalid`, `blocked`, `canceled`.
    state: String,
    attempts_made: i32,
    /// When it is next due (pending contacts only).
    next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    final_outcome: Option<String>,
    final_reason: Option<String>,
    /// The keypress result, e.g. `reschedule:afternoon`.
    result: Option<String>,
    last_call_at: Option<chrono::DateTime<chrono::Utc>>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    created_at: chrono::DateTime<chrono::Utc>,
    attempts: Vec<AttemptView>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AttemptView {
    attempt_no: i32,
    /// `claimed`, `dialing`, `created`, `parked`, `finished`, `not_created`.
    state: String,
    call_sid: Option<String>,
    call_status: Option<String>,
    outcome: Option<String>,
    result: Option<String>,
    answered_by: Option<String>,
    requested_at: Option<chrono::DateTime<chrono::Utc>>,
    answered_at: Option<chrono::DateTime<chrono::Utc>>,
    ended_at: Option<chrono::DateTime<chrono::Utc>>,
    duration_s: Option<i32>,
    twilio_error_code: Option<i32>,
}
