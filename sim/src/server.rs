//! The HTTP side: Twilio's 2010-04-01 Calls API and the simulator's own `/sim/*` and `/metrics` routes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rand::Rng;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::calls::{finish_with, run_call};
use super::conference;
use super::inbound;
use super::messages;
use super::numbers;
use super::people;
use super::state::{
    lock, rfc2822, CallDirection, CallEntry, CallMut, CallRequest, EventSet, MachineDetection, NewDoc, Party, Sim,
};
use super::stats;
use dialer_core::domain::{CallSid, CallStatus, E164};

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/2010-04-01/Accounts/{account_sid}/Calls.json", post(create_call).get(list_calls))
        .route("/2010-04-01/Accounts/{account_sid}/Calls/{call}", get(fetch_call).post(update_call))
        .route("/2010-04-01/Accounts/{account_sid}/Messages.json", post(messages::create).get(messages::list))
        .route("/2010-04-01/Accounts/{account_sid}/Messages/{message}", get(messages::fetch))
        .route("/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers.json", post(numbers::create).get(numbers::list))
        .route(
            "/2010-04-01/Accounts/{account_sid}/IncomingPhoneNumbers/{number}",
            get(numbers::fetch).post(numbers::update),
        )
        .route("/2010-04-01/Accounts/{account_sid}/Conferences.json", get(conference::list_conferences))
        .route(
            "/2010-04-01/Accounts/{account_sid}/Conferences/{conference}",
            get(conference::fetch_conference).post(conference::update_conference),
        )
        .route(
            "/2010-04-01/Accounts/{account_sid}/Conferences/{conference}/Participants.json",
            post(conference::create_participant).get(conference::list_participants),
        )
        .route(
            "/2010-04-01/Accounts/{account_sid}/Conferences/{conference}/Participants/{call}",
            get(conference::fetch_participant)
                .post(conference::update_participant)
                .delete(conference::delete_participant),
        )
        .route("/sim/calls", get(sim_calls))
        .route("/sim/conferences", get(conference::sim_conferences))
        .route("/sim/operators", get(people::get_operators).post(people::post_operators))
        .route("/sim/callees", get(people::get_callees).post(people::post_callees))
        .route("/sim/calls/inbound", post(inbound::sim_inbound_call))
        .route("/sim/messages", get(messages::sim_messages))
        .route("/sim/messages/inbound", post(messages::sim_inbound))
        .route("/sim/stats", get(sim_stats))
        .route("/sim/reset", post(sim_reset))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(sim.clone(), api_latency))
        .with_state(sim)
}

/// `--api-latency-ms`: a Twilio REST request (`/2010-04-01/…`) waits half the round trip before it is handled
/// (a call's `created_at` is its arrival) and the other half before its answer leaves. Each request sleeps on
/// its own, so concurrent ones overlap; the simulator's own routes are not delayed.
async fn api_latency(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let rtt = sim.config.api_latency;
    if rtt.is_zero() || !req.uri().path().starts_with("/2010-04-01/") {
        return next.run(req).await;
    }
    let inbound = rtt / 2;
    let pause = |d| {
        let stop = sim.shutdown.clone();
        async move {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = stop.cancelled_owned() => {}
            }
        }
    };
    pause(inbound).await;
    let r = next.run(req).await;
    pause(rtt - inbound).await;
    r
}

/// A Twilio error answer: `{"code", "message", "more_info", "status"}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    pub code: u32,
    message: String,
    /// Whole seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code;
        let body = json!({
            "code": code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": self.status.as_u16(),
        });
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"Twilio API\""));
        }
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        r
    }
}

pub(crate) fn twilio_error(status: StatusCode, code: u32, message: impl Into<String>) -> ApiError {
    ApiError { status, code, message: message.into(), retry_after: None }
}

pub(crate) fn bad_request(code: u32, message: impl Into<String>) -> ApiError {
    twilio_error(StatusCode::BAD_REQUEST, code, message)
}

/// Counts a REST request in flight; released on drop.
pub(crate) struct RestSlot<'a>(&'a Sim);

impl Drop for RestSlot<'_> {
    fn drop(&mut self) {
        self.0.rest_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Basic auth and the path's account, then the concurrency limit.
pub(crate) fn admit<'a>(sim: &'a Sim, headers: &HeaderMap, account_sid: &str) -> Result<RestSlot<'a>, ApiError> {
    let unauthorized = || twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(unauthorized)?;
    let (user, pass) = creds.split_once(':').ok_or_else(unauthorized)?;
    let c = &sim.config;
    let ok = user.as_bytes().ct_eq(c.account_sid.as_bytes()) & pass.as_bytes().ct_eq(c.auth_token.as_bytes());
    if !bool::from(ok) || account_sid != c.account_sid {
        return Err(unauthorized());
    }
    let now = sim.rest_in_flight.fetch_add(1, Ordering::AcqRel) + 1;
    let slot = RestSlot(sim);
    if now > c.max_concurrent_requests as i64 {
        return Err(too_many(1));
    }
    Ok(slot)
}

/// 429 / 20429: never processed, safe to retry after `retry_after` seconds (at least 1).
pub(crate) fn too_many(retry_after: u64) -> ApiError {
    ApiError {
        retry_after: Some(retry_after.max(1)),
        ..twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests")
    }
}

/// 429 / 20429 while a `--fault-429-burst` is on (creates of calls and messages alike).
pub(crate) fn refuse_in_burst(sim: &Sim) -> Result<(), ApiError> {
    match sim.config.faults.burst_429.and_then(|b| b.remaining(sim.clock.elapsed(Instant::now()))) {
        Some(left) => Err(too_many(left.as_secs_f64().ceil() as u64)),
        None => Ok(()),
    }
}

/// 400 / 21215, worded like Twilio's answer when the account's Voice Geographic Permissions exclude `to`.
pub(crate) fn geo_refused(to: &str) -> ApiError {
    bad_request(
        21215,
        format!(
            "Account not authorized to call {to}. Perhaps you need to enable some international permissions: \
             https://www.twilio.com/console/voice/calls/geo-permissions/low-risk"
        ),
    )
}

/// The response of a REST route (its error as Twilio answers it), counted under `op`.
pub(crate) fn respond(sim: &Sim, op: &str, r: ApiResult) -> Response {
    let r = r.unwrap_or_else(IntoResponse::into_response);
    sim.metrics.rest_requests.with_label_values(&[op, r.status().as_str()]).inc();
    r
}

/// A REST route: [`admit`], then `f` while the slot is held; its answer [`respond`]ed under `op`.
pub(crate) fn serve(
    sim: &Sim,
    headers: &HeaderMap,
    account_sid: &str,
    op: &str,
    f: impl FnOnce() -> ApiResult,
) -> Response {
    respond(sim, op, admit(sim, headers, account_sid).and_then(|_slot| f()))
}

/// The refusals of a create that leave nothing behind (a `--fault-429-burst`, then the 429 rate); else the
/// seed of the new resource's faults.
pub(crate) fn refuse_or_seed(sim: &Sim) -> Result<u64, ApiError> {
    refuse_in_burst(sim)?;
    let (draw, fault_seed) = {
        let mut rng = lock(&sim.rng);
        (rng.gen::<f64>(), rng.gen::<u64>())
    };
    if draw < sim.config.faults.rate_429 {
        return Err(too_many(1));
    }
    Ok(fault_seed)
}

pub(crate) fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

pub(crate) fn first<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub(crate) fn non_empty<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    first(form, key).map(str::trim).filter(|v| !v.is_empty())
}

pub(crate) fn is_http_url(u: &str) -> bool {
    url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.host().is_some())
}

/// A callback URL parameter (`StatusCallback`, …): `None` when absent; 400 / 21609 when not an http(s) URL.
pub(crate) fn callback_url(form: &[(String, String)], key: &str) -> Result<Option<String>, ApiError> {
    match non_empty(form, key) {
        Some(u) if !is_http_url(u) => Err(bad_request(21609, format!("{key} is not a valid URL: {u}"))),
        u => Ok(u.map(str::to_string)),
    }
}

/// A number parameter clamped to `lo..=hi`, `default` when absent; 400 / 20001 when not a finite number.
pub(crate) fn clamped_number(
    form: &[(String, String)],
    key: &str,
    default: f64,
    lo: f64,
    hi: f64,
) -> Result<f64, ApiError> {
    match non_empty(form, key) {
        None => Ok(default),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(|x| x.clamp(lo, hi))
            .ok_or_else(|| bad_request(20001, format!("{key} must be a number, not {v:?}"))),
    }
}

/// A list filter parsed with `parse`: `None` when absent; 400 / 20001 `Invalid {key}: …` when `parse` fails.
pub(crate) fn parse_filter<T>(
    q: &[(String, String)],
    key: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    non_empty(q, key).map(|v| parse(v).ok_or_else(|| bad_request(20001, format!("Invalid {key}: {v}")))).transpose()
}

pub(crate) fn http_method(form: &[(String, String)], key: &str) -> Result<String, ApiError> {
    match non_empty(form, key) {
        None => Ok("POST".into()),
        Some(m) if m.eq_ignore_ascii_case("POST") => Ok("POST".into()),
        Some(m) if m.eq_ignore_ascii_case("GET") => Ok("GET".into()),
        Some(m) => Err(bad_request(21207, format!("{key} must be GET or POST, not {m:?}"))),
    }
}

/// `StatusCallbackEvent` (repeated, or space separated): `initiated ringing answered completed`; none
/// given: `completed`.
pub(crate) fn parse_call_events(form: &[(String, String)]) -> Result<EventSet, ApiError> {
    let mut events = EventSet::default();
    let mut any_event = false;
    for (_, v) in form.iter().filter(|(k, _)| k == "StatusCallbackEvent") {
        for e in v.split([' ', ',']).map(str::trim).filter(|e| !e.is_empty()) {
            any_event = true;
            match e {
                "initiated" => events.initiated = true,
                "ringing" => events.ringing = true,
                "answered" => events.answered = true,
                "completed" => events.completed = true,
                other => return Err(bad_request(21626, format!("Invalid StatusCallbackEvent: {other}"))),
            }
        }
    }
    if !any_event {
        events.completed = true;
    }
    Ok(events)
}

fn parse_create(form: &[(String, String)]) -> Result<CallRequest, ApiError> {
    let to = non_empty(form, "To").ok_or_else(|| bad_request(21201, "No 'To' number is specified"))?;
    let to = Party::parse(to).ok_or_else(|| bad_request(21211, format!("Invalid 'To' Phone Number: {to}")))?;
    let from = non_empty(form, "From").ok_or_else(|| bad_request(21213, "No 'From' number is specified"))?;
    let from = E164::parse(from, None)
        .map(Party::Number)
        .map_err(|_| bad_request(21212, format!("Invalid 'From' Phone Number: {from}")))?;
    let url = non_empty(form, "Url").map(str::to_string);
    let twiml = non_empty(form, "Twiml").map(str::to_string);
    match (&url, &twiml) {
        (None, None) => return Err(bad_request(21205, "Url parameter is required (or Twiml)")),
        (Some(_), Some(_)) => return Err(bad_request(21205, "Provide exactly one of Url and Twiml")),
        (Some(u), None) if !is_http_url(u) => return Err(bad_request(21205, format!("Url is not a valid URL: {u}"))),
        _ => {}
    }
    let status_callback = callback_url(form, "StatusCallback")?;
    let events = parse_call_events(form)?;
    let machine_detection = match non_empty(form, "MachineDetection") {
        None => None,
        Some("Enable") => Some(MachineDetection::Enable),
        Some("DetectMessageEnd") => Some(MachineDetection::DetectMessageEnd),
        Some(other) => return Err(bad_request(21236, format!("Invalid MachineDetection: {other}"))),
    };
    let async_amd_callback = callback_url(form, "AsyncAmdStatusCallback")?;
    Ok(CallRequest {
        direction: CallDirection::OutboundApi,
        to,
        from,
        url,
        method: http_method(form, "Method")?,
        twiml,
        status_callback,
        status_callback_method: http_method(form, "StatusCallbackMethod")?,
        events,
        timeout_secs: clamped_number(form, "Timeout", 60.0, 1.0, 600.0)?,
        time_limit_secs: clamped_number(form, "TimeLimit", 14_400.0, 1.0, 86_400.0)?,
        machine_detection,
        async_amd: non_empty(form, "AsyncAmd").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        async_amd_callback,
        async_amd_callback_method: http_method(form, "AsyncAmdStatusCallbackMethod")?,
        machine_detection_timeout_secs: clamped_number(form, "MachineDetectionTimeout", 30.0, 3.0, 59.0)?,
        conference_leg: None,
    })
}

fn create(sim: &Arc<Sim>, req: CallRequest, fault_seed: u64) -> Arc<CallEntry> {
    create_call_entry(sim, req, fault_seed)
}

/// Accepts a call (a Calls API create or a Participants API leg): records it, reserves its CPS slot and
/// starts its task. A conference leg is a (queued) participant of its conference from here on.
pub(crate) fn create_call_entry(sim: &Arc<Sim>, req: CallRequest, fault_seed: u64) -> Arc<CallEntry> {
    let now = Instant::now();
    let created_at = sim.clock.wall(now);
    let slot = sim.pacer.reserve(now);
    let entry = Arc::new(CallEntry::new(
        CallSid::random(),
        created_at,
        req,
        sim.shutdown.child_token(),
        CallMut::new(CallStatus::Queued, created_at),
    ));
    if let Some(leg) = &entry.req.conference_leg {
        leg.conference.add_pending(sim, &entry, &leg.spec);
    }
    sim.store.insert(entry.clone());
    sim.metrics.calls_created.inc();
    tokio::spawn(run_call(sim.clone(), entry.clone(), slot, fault_seed));
    entry
}

async fn create_call(
    State(sim): State<Arc<Sim>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = create_call_inner(&sim, &account_sid, &headers, &body).await;
    if let Err(e) = &r {
        sim.counters.create_error(e.code);
    }
    respond(&sim, "create", r)
}

async fn create_call_inner(sim: &Arc<Sim>, account_sid: &str, headers: &HeaderMap, body: &[u8]) -> ApiResult {
    let slot = admit(sim, headers, account_sid)?;
    let form = parse_form(body);
    let req = parse_create(&form)?;
    let f = &sim.config.faults;
    if f.geo_blocked_prefix(req.to.as_str()).is_some() {
        return Err(geo_refused(req.to.as_str()));
    }
    refuse_in_burst(sim)?;
    let (draw, coin, fault_seed) = {
        let mut rng = lock(&sim.rng);
        (rng.gen::<f64>(), rng.gen_bool(0.5), rng.gen::<u64>())
    };
    if draw < f.rate_429 {
        return Err(too_many(1));
    }
    if draw < f.rate_429 + f.rate_5xx {
        if coin {
            create(sim, req, fault_seed);
        }
        return Err(twilio_error(StatusCode::INTERNAL_SERVER_ERROR, 20500, "Internal Server Error"));
    }
    let entry = create(sim, req, fault_seed);
    let body = call_json(sim, &entry);
    if draw < f.rate_429 + f.rate_5xx + f.timeout {
        drop(slot);
        tokio::select! {
            _ = tokio::time::sleep(f.timeout_delay) => {}
            _ = sim.shutdown.cancelled() => {}
        }
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn call_uri(account: &str, sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account}/Calls/{sid}.json")
}

/// The call resource (`api.v2010.account.call`).
pub(crate) fn call_json(sim: &Sim, e: &CallEntry) -> Value {
    let s = e.snapshot();
    let account = &sim.config.account_sid;
    let sid = e.sid.as_str();
    let base = format!("/2010-04-01/Accounts/{account}/Calls/{sid}");
    let sub = |name: &str| format!("{base}/{name}.json");
    json!({
        "sid": sid,
        "date_created": rfc2822(e.created_at),
        "date_updated": rfc2822(s.updated_at),
        "parent_call_sid": null,
        "account_sid": account,
        "to": e.req.to.as_str(),
        "to_formatted": e.req.to.as_str(),
        "from": e.req.from.as_str(),
        "from_formatted": e.req.from.as_str(),
        "phone_number_sid": null,
        "status": s.status.as_str(),
        "start_time": s.started_at.map(rfc2822),
        "end_time": s.ended_at.map(rfc2822),
        "duration": s.duration_secs.map(|d| d.to_string()),
        "price": null,
        "price_unit": "USD",
        "direction": e.req.direction.as_str(),
        "answered_by": s.answered_by.map(|a| a.as_str()),
        "api_version": "2010-04-01",
        "forwarded_from": null,
        "group_sid": null,
        "caller_name": null,
        "queue_time": s.queue_time_ms.unwrap_or(0).to_string(),
        "trunk_sid": null,
        "uri": call_uri(account, sid),
        "subresource_uris": {
            "feedback": format!("{base}/Feedback.json"),
            "notifications": sub("Notifications"),
            "recordings": sub("Recordings"),
            "payments": sub("Payments"),
            "events": sub("Events"),
            "siprec": sub("Siprec"),
            "streams": sub("Streams"),
            "transcriptions": sub("Transcriptions"),
            "user_defined_message_subscriptions": sub("UserDefinedMessageSubscriptions"),
            "user_defined_messages": sub("UserDefinedMessages"),
        },
    })
}

pub(crate) fn not_found(path: &str) -> ApiError {
    twilio_error(StatusCode::NOT_FOUND, 20404, format!("The requested resource {path} was not found"))
}

fn lookup(sim: &Sim, account_sid: &str, call: &str) -> Result<Arc<CallEntry>, ApiError> {
    let path = format!("/2010-04-01/Accounts/{account_sid}/Calls/{call}");
    let sid = call.strip_suffix(".json").ok_or_else(|| not_found(&path))?;
    sim.store.get(sid).ok_or_else(|| not_found(&path))
}

async fn fetch_call(
    State(sim): State<Arc<Sim>>,
    Path((account_sid, call)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    serve(&sim, &headers, &account_sid, "fetch", || {
        let e = lookup(&sim, &account_sid, &call)?;
        Ok(Json(call_json(&sim, &e)).into_response())
    })
}

async fn update_call(
    State(sim): State<Arc<Sim>>,
    Path((account_sid, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&sim, &headers, &account_sid, "update", || {
        let e = lookup(&sim, &account_sid, &call)?;
        let form = parse_form(&body);
        let wanted = match non_empty(&form, "Status") {
            Some("canceled") => CallStatus::Canceled,
            Some("completed") => CallStatus::Completed,
            Some(other) => return Err(bad_request(21218, format!("Invalid Status: {other}"))),
            None => return redirect(&sim, &e, &form),
        };
        let current = e.snapshot().status;
        let ended = match (current, wanted) {
            (s, _) if s.is_terminal() => false,
            // Twilio: `canceled` only affects a queued or ringing call; `completed` hangs up any call.
            (CallStatus::InProgress, CallStatus::Canceled) => false,
            (CallStatus::InProgress, _) => finish_with(&sim, &e, CallStatus::Completed, 200, true),
            _ => finish_with(&sim, &e, CallStatus::Canceled, 487, true),
        };
        if ended {
            e.cancel.cancel();
        }
        Ok(Json(call_json(&sim, &e)).into_response())
    })
}

/// An update with `Url` (+ `Method`) or `Twiml` and no `Status`: a call in progress leaves what it is doing
/// (a Say, a Gather, a conference) and walks the new document; a call not answered yet will walk it once
/// answered; an ended call cannot be redirected (21220).
fn redirect(sim: &Sim, e: &CallEntry, form: &[(String, String)]) -> ApiResult {
    let doc = match (non_empty(form, "Url"), non_empty(form, "Twiml")) {
        (None, None) => return Ok(Json(call_json(sim, e)).into_response()),
        (Some(_), Some(_)) => return Err(bad_request(21205, "Provide exactly one of Url and Twiml")),
        (Some(u), None) if !is_http_url(u) => return Err(bad_request(21205, format!("Url is not a valid URL: {u}"))),
        (Some(u), None) => NewDoc::Url { url: u.to_string(), method: http_method(form, "Method")? },
        (None, Some(t)) => NewDoc::Twiml(t.to_string()),
    };
    let status = e.snapshot().status;
    if status.is_terminal() {
        return Err(bad_request(21220, "Call is not in-progress. Cannot redirect."));
    }
    *lock(&e.redirect) = Some(doc);
    if status == CallStatus::InProgress {
        e.redirect_notify.notify_one();
    }
    Ok(Json(call_json(sim, e)).into_response())
}

/// A `StartTime` filter value: a date (`YYYY-MM-DD`, UTC) or a full date-time.
#[derive(Debug, Clone, Copy)]
enum When {
    Day(NaiveDate),
    At(DateTime<Utc>),
}

fn parse_when(v: &str) -> Option<When> {
    let v = v.trim();
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Some(When::Day(d));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(When::At(t.with_timezone(&Utc)));
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(v) {
        return Some(When::At(t.with_timezone(&Utc)));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Some(When::At(t.and_utc()));
        }
    }
    None
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    On,
    OnOrAfter,
    Before,
}

fn time_matches(t: DateTime<Utc>, cmp: Cmp, w: When) -> bool {
    match (cmp, w) {
        (Cmp::On, When::Day(d)) => t.date_naive() == d,
        (Cmp::On, When::At(x)) => t.timestamp() == x.timestamp(),
        (Cmp::OnOrAfter, When::Day(d)) => t.date_naive() >= d,
        (Cmp::OnOrAfter, When::At(x)) => t >= x,
        (Cmp::Before, When::Day(d)) => t.date_naive() < d,
        (Cmp::Before, When::At(x)) => t < x,
    }
}

const PAGING_KEYS: [&str; 3] = ["Page", "PageSize", "PageToken"];

/// `Page` / `PageSize` of a list request, and the page of results in Twilio's list shape.
pub(crate) struct Paging {
    page: usize,
    page_size: usize,
}

impl Paging {
    pub fn parse(q: &[(String, String)]) -> Result<Self, ApiError> {
        let page_size = match non_empty(q, "PageSize") {
            None => 50,
            Some(v) => v.parse::<usize>().map_err(|_| bad_request(20001, "PageSize must be a number"))?.clamp(1, 1000),
        };
        let page = match non_empty(q, "Page") {
            None => 0,
            Some(v) => v.parse::<usize>().map_err(|_| bad_request(20001, "Page must be a number"))?,
        };
        Ok(Self { page, page_size })
    }

    /// `{key: [...], "page", "page_size", "start", "end", "uri", "first_page_uri", "next_page_uri",
    /// "previous_page_uri"}` for `items` (all matches, in list order); page URIs keep the filters of `q`.
    pub fn page<T>(
        &self,
        path: &str,
        q: &[(String, String)],
        key: &str,
        mut items: Vec<T>,
        json: impl Fn(&T) -> Value,
    ) -> Value {
        let (page, page_size) = (self.page, self.page_size);
        let total = items.len();
        let start = page.saturating_mul(page_size).min(total);
        let end = (start + page_size).min(total);
        let listed: Vec<Value> = items.drain(start..end).map(|e| json(&e)).collect();
        let filters: Vec<&(String, String)> = q.iter().filter(|(k, _)| !PAGING_KEYS.contains(&k.as_str())).collect();
        let page_uri = |p: usize| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &filters {
                s.append_pair(k, v);
            }
            s.append_pair("PageSize", &page_size.to_string());
            s.append_pair("Page", &p.to_string());
            format!("{path}?{}", s.finish())
        };
        let mut body = json!({
            "end": if end > start { end - 1 } else { start },
            "first_page_uri": page_uri(0),
            "next_page_uri": if end < total { Some(page_uri(page + 1)) } else { None },
            "page": page,
            "page_size": page_size,
            "previous_page_uri": if page > 0 { Some(page_uri(page - 1)) } else { None },
            "start": start,
            "uri": page_uri(page),
        });
        body[key] = Value::Array(listed);
        body
    }
}

/// A `To` / `From` list filter: E.164 when it parses as a number, else as given.
pub(crate) fn normalise_number(v: &str) -> String {
    E164::parse(v, None).map(|n| n.to_string()).unwrap_or_else(|_| v.trim().to_string())
}

/// The query string of a list request as pairs.
pub(crate) fn parse_query(query: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect()
}

async fn list_calls(
    State(sim): State<Arc<Sim>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    serve(&sim, &headers, &account_sid, "list", || {
        let q = parse_query(query);
        let paging = Paging::parse(&q)?;
        let to = non_empty(&q, "To").map(normalise_number);
        let from = non_empty(&q, "From").map(normalise_number);
        let status = parse_filter(&q, "Status", |s| CallStatus::parse(s).ok())?;
        let parent = non_empty(&q, "ParentCallSid").is_some();
        let mut times = Vec::new();
        for (key, field, cmp) in [
            ("StartTime", true, Cmp::On),
            ("StartTime>", true, Cmp::OnOrAfter),
            ("StartTime<", true, Cmp::Before),
            ("EndTime", false, Cmp::On),
            ("EndTime>", false, Cmp::OnOrAfter),
            ("EndTime<", false, Cmp::Before),
        ] {
            if let Some(w) = parse_filter(&q, key, parse_when)? {
                times.push((field, cmp, w));
            }
        }
        // Newest first, like Twilio.
        let matching: Vec<Arc<CallEntry>> = sim
            .store
            .all()
            .into_iter()
            .rev()
            .filter(|e| {
                if parent {
                    return false; // the simulator makes no child calls
                }
                if to.as_deref().is_some_and(|t| t != e.req.to.as_str())
                    || from.as_deref().is_some_and(|f| f != e.req.from.as_str())
                {
                    return false;
                }
                if status.is_none() && times.is_empty() {
                    return true;
                }
                let s = e.snapshot();
                if status.is_some_and(|st| st != s.status) {
                    return false;
                }
                times.iter().all(|&(is_start, cmp, w)| {
                    // A call still queued has no start time yet: its creation time stands in, so a
                    // `StartTime>=` reconciliation query finds calls that have not left the queue.
                    let t = if is_start { Some(s.started_at.unwrap_or(e.created_at)) } else { s.ended_at };
                    t.is_some_and(|t| time_matches(t, cmp, w))
                })
            })
            .collect();
        let path = format!("/2010-04-01/Accounts/{account_sid}/Calls.json");
        let body = paging.page(&path, &q, "calls", matching, |e| call_json(&sim, e));
        Ok(Json(body).into_response())
    })
}

async fn sim_calls(State(sim): State<Arc<Sim>>) -> Response {
    let records: Vec<_> = sim.store.all().iter().map(|e| e.record()).collect();
    Json(records).into_response()
}

async fn sim_stats(State(sim): State<Arc<Sim>>) -> Response {
    Json(stats::compute(&sim)).into_response()
}

async fn sim_reset(State(sim): State<Arc<Sim>>) -> Response {
    sim.store.clear();
    sim.messages.clear();
    sim.conferences.clear();
    sim.counters.reset();
    StatusCode::NO_CONTENT.into_response()
}

async fn metrics(State(sim): State<Arc<Sim>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], sim.metrics.render()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    fn basic(user: &str, pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")));
        h.insert(header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn concurrency_beyond_the_limit_is_20429() {
        let sim = Sim::new(SimConfig { max_concurrent_requests: 2, ..SimConfig::default() }).unwrap();
        let c = &sim.config;
        let h = basic(&c.account_sid, &c.auth_token);
        let a = admit(&sim, &h, &c.account_sid).ok().unwrap();
        let b = admit(&sim, &h, &c.account_sid).ok().unwrap();
        let refused = admit(&sim, &h, &c.account_sid).err().unwrap();
        assert_eq!((refused.status, refused.code), (StatusCode::TOO_MANY_REQUESTS, 20429));
        drop((a, b));
        assert!(admit(&sim, &h, &c.account_sid).is_ok(), "slots are released");
        assert_eq!(admit(&sim, &basic(&c.account_sid, "x"), &c.account_sid).err().unwrap().code, 20003);
    }
}
