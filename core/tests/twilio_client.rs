//! The Twilio REST client: conformance of what it sends with Twilio's OpenAPI spec, agreement of its error
//! table with `shared/twilio/error_codes.json`, and its behaviour against stub servers on 127.0.0.1:0
//! (success, paging, Twilio error bodies, 5xx, a server that never answers, a closed port).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use base64::Engine;
use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{json, Value};

use dialer_core::domain::{AnsweredBy, CallSid, CallStatus, E164};
use dialer_core::twilio::error::{code_info, ErrorPhase};
use dialer_core::twilio::{
    CreateCall, HttpMethod, ListCalls, MachineDetection, RetryClass, StartTimeAfter, StatusCallbackEvent, TwilioClient,
    TwilioError, UpdateStatus,
};

const ACCOUNT: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TOKEN: &str = "s3cr3t-auth-token";

// ---------------------------------------------------------------------------------------------------
// Shared reference files

fn shared_file(name: &str) -> Option<Value> {
    testkit::shared_twilio_json(name)
}

fn to() -> E164 {
    E164::parse("080-1234-5678", Some("JP")).unwrap()
}

fn from() -> E164 {
    E164::parse("03-1234-5678", Some("JP")).unwrap()
}

fn full_create() -> CreateCall {
    CreateCall {
        to: to(),
        from: from(),
        url: "https://dialer.example.com/twiml/tok123".into(),
        method: Some(HttpMethod::Post),
        status_callback: Some("https://dialer.example.com/status/tok123".into()),
        status_callback_method: Some(HttpMethod::Post),
        status_callback_events: StatusCallbackEvent::ALL.to_vec(),
        timeout: Some(25),
        time_limit: Some(600),
        machine_detection: Some(MachineDetection::DetectMessageEnd),
        async_amd: Some(true),
        async_amd_status_callback: Some("https://dialer.example.com/amd/tok123".into()),
        async_amd_status_callback_method: Some(HttpMethod::Get),
        machine_detection_timeout: Some(30),
    }
}

// ---------------------------------------------------------------------------------------------------
// Error table vs error_codes.json

#[test]
fn error_table_agrees_with_error_codes_json() {
    let Some(file) = shared_file("error_codes.json") else { return };
    let errors = file["errors"].as_array().expect("errors array");
    assert!(!errors.is_empty());
    for e in errors {
        let code = e["code"].as_u64().expect("code") as u32;
        let ours = &e["ours"];
        let info = code_info(code).unwrap_or_else(|| panic!("code {code} is in error_codes.json but not in code_info"));
        let phase = ours["phase"].as_str().unwrap();
        assert_eq!(info.phase.as_str(), phase, "phase of {code}");
        let http = ours["typical_http_status"].as_u64();
        let retry = ours["retry"].as_str().unwrap();
        let expected: &[RetryClass] = match (retry, http) {
            ("no", _) => &[RetryClass::FinalForContact, RetryClass::FinalForCampaign, RetryClass::FinalForCountry],
            ("yes-backoff", Some(429)) => &[RetryClass::NotCreatedRetry],
            // A 5xx may have been processed, whatever the code: reconcile before retrying.
            ("yes-backoff" | "conditional", Some(500..=599)) => &[RetryClass::FateUnknown],
            ("twilio-side", _) => &[RetryClass::FinalForCampaign],
            other => panic!("code {code}: no rule for (retry, http) = {other:?}; extend the test and code_info"),
        };
        assert!(
            expected.contains(&info.class),
            "code {code} ({retry}, {http:?}) is {:?}, expected one of {expected:?}",
            info.class
        );
        if phase == "rest" {
            // The REST classification goes through `TwilioError::class`, where the HTTP status comes first.
            let status = http.unwrap_or(400) as u16;
            let err = api_error(status, code);
            assert_eq!(err.class(), info.class, "class() of HTTP {status} with code {code}");
        }
    }
    // The codes the brief names, pinned.
    for (code, class) in [
        (20429, RetryClass::NotCreatedRetry),
        (21211, RetryClass::FinalForContact),
        (21214, RetryClass::FinalForContact),
        (21216, RetryClass::FinalForContact),
        (21217, RetryClass::FinalForContact),
        (13223, RetryClass::FinalForContact),
        (13224, RetryClass::FinalForContact),
        (21610, RetryClass::FinalForContact),
        (21612, RetryClass::FinalForContact),
        (20003, RetryClass::FinalForCampaign),
        (20005, RetryClass::FinalForCampaign),
        (21210, RetryClass::FinalForCampaign),
        (21212, RetryClass::FinalForCampaign),
        (21215, RetryClass::FinalForCountry),
    ] {
        assert_eq!(code_info(code).map(|i| i.class), Some(class), "code {code}");
    }
    assert_eq!(code_info(21211).unwrap().phase, ErrorPhase::Rest);
}

fn api_error(status: u16, code: u32) -> TwilioError {
    TwilioError::Api(dialer_core::twilio::ApiError::from_response(
        status,
        &json!({"code": code, "message": "m", "more_info": "x", "status": status}).to_string(),
        None,
    ))
}

// ---------------------------------------------------------------------------------------------------
// Spec conformance

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local $ref");
            spec.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {r}"))
        }
        None => schema,
    }
}

/// The values a description lists after "Can be:" (the spec states some enums only in prose, e.g.
/// MachineDetection and AsyncAmd).
fn prose_enum(schema: &Value) -> Option<Vec<String>> {
    let desc = schema.get("description")?.as_str()?;
    let rest = &desc[desc.find("Can be:")? + "Can be:".len()..];
    let sentence = rest.split(". ").next().unwrap_or(rest);
    let values: Vec<String> = sentence.split('`').skip(1).step_by(2).map(str::to_string).collect();
    (!values.is_empty()).then_some(values)
}

/// Checks one value against a (resolved) string/integer/boolean schema; `what` names it in failures.
fn check_scalar(spec: &Value, schema: &Value, value: &str, what: &str) {
    let schema = resolve(spec, schema);
    let ty = schema["type"].as_str().unwrap_or("string");
    match ty {
        "integer" => {
            let n: i64 = value.parse().unwrap_or_else(|_| panic!("{what}={value:?} is not an integer"));
            if let Some(min) = schema.get("minimum").and_then(Value::as_i64) {
                assert!(n >= min, "{what}={n} below minimum {min}");
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_i64) {
                assert!(n <= max, "{what}={n} above maximum {max}");
            }
        }
        "boolean" => assert!(value == "true" || value == "false", "{what}={value:?} is not a boolean"),
        "string" => {
            if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
                assert!(allowed.iter().any(|a| a == value), "{what}={value:?} not in enum {allowed:?}");
            } else if let Some(allowed) = prose_enum(schema) {
                assert!(allowed.iter().any(|a| a == value), "{what}={value:?} not in documented values {allowed:?}");
            }
            match schema.get("format").and_then(Value::as_str) {
                Some("uri") => {
                    url::Url::parse(value).unwrap_or_else(|e| panic!("{what}={value:?} is not a URI: {e}"));
                }
                Some("endpoint" | "phone-number") => {
                    assert!(E164::from_stored(value).is_ok(), "{what}={value:?} is not an E.164 number");
                }
                Some("date-time") => {
                    let ok = NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok()
                        || chrono::DateTime::parse_from_rfc3339(value).is_ok();
                    assert!(ok, "{what}={value:?} is not a date or RFC 3339 time");
                }
                Some("http-method") | None => {}
                Some(other) => panic!("{what}: no check for format {other:?}; extend the test"),
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                panic!("{what}: pattern {p:?} unchecked; extend the test");
            }
        }
        other => panic!("{what}: unexpected scalar type {other}"),
    }
}

#[test]
fn create_call_form_conforms_to_spec() {
    let Some(spec) = shared_file("twilio_api_v2010.json") else { return };
    let op = &spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Calls.json"]["post"];
    assert_eq!(op["operationId"], "CreateCall");
    let schema = resolve(&spec, &op["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]);
    let props = schema["properties"].as_object().expect("properties");

    let req = full_create();
    let form = req.to_form();
    let keys: HashSet<&str> = form.iter().map(|(k, _)| k.as_str()).collect();

    for required in schema["required"].as_array().expect("required") {
        assert!(keys.contains(required.as_str().unwrap()), "required {required} missing");
    }
    for (k, v) in &form {
        let prop = props.get(k).unwrap_or_else(|| panic!("{k} is not a CreateCall parameter"));
        let prop = resolve(&spec, prop);
        if prop["type"] == "array" {
            // Items of StatusCallbackEvent are typed only as string; the enum is call_enum_event.
            check_scalar(&spec, &prop["items"], v, k);
            let allowed = prose_enum(prop).unwrap_or_default();
            assert!(allowed.contains(v), "{k}={v:?} not in documented values {allowed:?}");
            if k == "StatusCallbackEvent" {
                let e = &spec["components"]["schemas"]["call_enum_event"]["enum"];
                assert!(e.as_array().unwrap().iter().any(|a| a == v), "{v} not in call_enum_event");
            }
        } else {
            check_scalar(&spec, prop, v, k);
        }
    }
    // Every scalar at most once; StatusCallbackEvent once per event, in order.
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (k, _) in &form {
        *counts.entry(k).or_default() += 1;
    }
    for (k, n) in &counts {
        if *k != "StatusCallbackEvent" {
            assert_eq!(*n, 1, "{k} repeated");
        }
    }
    let events: Vec<&str> = form.iter().filter(|(k, _)| k == "StatusCallbackEvent").map(|(_, v)| v.as_str()).collect();
    assert_eq!(events, ["initiated", "ringing", "answered", "completed"]);
    // The fully-populated request really uses every field.
    assert_eq!(form.len(), 13 + 4, "{form:?}");
    // The prose enums the checks above rely on were really found (the check is not vacuous).
    assert_eq!(prose_enum(&props["MachineDetection"]).unwrap(), ["Enable", "DetectMessageEnd"]);
    assert_eq!(prose_enum(&props["AsyncAmd"]).unwrap(), ["true", "false"]);
    assert_eq!(prose_enum(&props["StatusCallbackEvent"]).unwrap(), ["initiated", "ringing", "answered", "completed"]);
}

#[test]
fn list_calls_query_conforms_to_spec() {
    let Some(spec) = shared_file("twilio_api_v2010.json") else { return };
    let op = &spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Calls.json"]["get"];
    assert_eq!(op["operationId"], "ListCall");
    let params: HashMap<&str, &Value> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| (p["name"].as_str().unwrap(), &p["schema"]))
        .collect();
    for start in [
        StartTimeAfter::Date(NaiveDate::from_ymd_opt(2026, 4, 1).unwrap()),
        StartTimeAfter::Time(Utc.with_ymd_and_hms(2026, 4, 1, 9, 30, 0).unwrap()),
    ] {
        let filter = ListCalls {
            to: Some(to()),
            from: Some(from()),
            status: Some(CallStatus::NoAnswer),
            start_time_after: Some(start),
            page_size: Some(1000),
        };
        let query = filter.to_query();
        assert_eq!(query.len(), 5, "{query:?}");
        for (k, v) in &query {
            let schema = params.get(k.as_str()).unwrap_or_else(|| panic!("{k} is not a ListCall parameter"));
            check_scalar(&spec, schema, v, k);
        }
        assert!(query.iter().any(|(k, _)| k == "StartTime>"));
    }
    // Every status we can filter by is one Twilio lists by (not `initiated`, which only callbacks carry).
    let status_enum = resolve(&spec, params["Status"])["enum"].as_array().unwrap().clone();
    for s in CallStatus::ALL.into_iter().filter(|s| *s != CallStatus::Initiated) {
        assert!(status_enum.iter().any(|v| v == s.as_str()), "{s} not in call_enum_status");
    }
}

#[test]
fn update_statuses_are_the_spec_enum() {
    let Some(spec) = shared_file("twilio_api_v2010.json") else { return };
    let e = spec["components"]["schemas"]["call_enum_update_status"]["enum"].as_array().unwrap().clone();
    for s in [UpdateStatus::Canceled, UpdateStatus::Completed] {
        assert!(e.iter().any(|v| v == s.as_str()));
    }
}

// ---------------------------------------------------------------------------------------------------
// Stub servers

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    authorization: Option<String>,
    body: String,
}

type Respond = Arc<dyn Fn(&Seen) -> Response + Send + Sync>;

#[derive(Clone)]
struct Stub {
    seen: Arc<Mutex<Vec<Seen>>>,
    respond: Respond,
}

async fn record(
    State(stub): State<Stub>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        query,
        authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    stub.seen.lock().unwrap().push(seen.clone());
    (stub.respond)(&seen)
}

async fn serve(respond: impl Fn(&Seen) -> Response + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let stub = Stub { seen: Arc::default(), respond: Arc::new(respond) };
    let seen = stub.seen.clone();
    let app = Router::new().route("/{*rest}", any(record)).with_state(stub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn client(base: &str, timeout: Duration) -> TwilioClient {
    TwilioClient::new(base, ACCOUNT, TOKEN, timeout).unwrap()
}

fn twilio_error(status: u16, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn call_json(sid: &str, status: &str) -> Value {
    json!({
        "account_sid": ACCOUNT,
        "answered_by": null,
        "api_version": "2010-04-01",
        "caller_name": null,
        "date_created": "Tue, 31 Aug 2010 20:36:28 +0000",
        "date_updated": "Tue, 31 Aug 2010 20:36:44 +0000",
        "direction": "outbound-api",
        "duration": null,
        "end_time": null,
        "from": "+81312345678",
        "group_sid": null,
        "parent_call_sid": null,
        "price": null,
        "price_unit": "USD",
        "sid": sid,
        "start_time": null,
        "status": status,
        "subresource_uris": {},
        "to": "+818012345678",
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json"),
        "queue_time": "0",
        "some_future_field": {"nested": true}
    })
}

const SID1: &str = "CAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
const SID2: &str = "CAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2";

#[tokio::test]
async fn rate_limited_429_is_not_created_retry_with_code_and_retry_after() {
    let (base, _) = serve(|_| {
        let mut r = twilio_error(429, 20429, "Too Many Requests");
        r.headers_mut().insert("retry-after", "2".parse().unwrap());
        r
    })
    .await;
    let err = client(&base, Duration::from_secs(5)).create_call(&full_create()).await.unwrap_err();
    assert_eq!(err.class(), RetryClass::NotCreatedRetry, "{err}");
    assert_eq!(err.code(), Some(20429));
    assert_eq!(err.http_status(), Some(429));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn server_error_500_is_fate_unknown() {
    let (base, _) = serve(|_| twilio_error(500, 20500, "Internal Server Error")).await;
    let err = client(&base, Duration::from_secs(5)).create_call(&full_create()).await.unwrap_err();
    assert_eq!(err.class(), RetryClass::FateUnknown, "{err}");
    assert_eq!(err.code(), Some(20500));

    // A proxy's HTML 502 is just as unknown.
    let (base, _) = serve(|_| (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>").into_response()).await;
    let err = client(&base, Duration::from_secs(5)).create_call(&full_create()).await.unwrap_err();
    assert_eq!((err.class(), err.code()), (RetryClass::FateUnknown, None));
}

#[tokio::test]
async fn accepted_but_never_answered_is_fate_unknown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            // Read the request so it has certainly arrived, then say nothing.
            let mut buf = vec![0u8; 8192];
            let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
            held.push(sock);
        }
    });
    let err =
        client(&format!("http://{addr}"), Duration::from_millis(300)).create_call(&full_create()).await.unwrap_err();
    assert!(matches!(err, TwilioError::Transport { kind: dialer_core::twilio::TransportKind::Timeout, .. }), "{err:?}");
    assert_eq!(err.class(), RetryClass::FateUnknown);
}

#[tokio::test]
async fn reset_after_request_is_fate_unknown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await;
            drop(sock); // closes without a response
        }
    });
    let err = client(&format!("http://{addr}"), Duration::from_secs(5)).create_call(&full_create()).await.unwrap_err();
    assert_eq!(err.class(), RetryClass::FateUnknown, "{err:?}");
}

#[tokio::test]
async fn closed_port_is_not_created_retry() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = client(&format!("http://{addr}"), Duration::from_secs(5)).create_call(&full_create()).await.unwrap_err();
    assert!(matches!(err, TwilioError::Transport { kind: dialer_core::twilio::TransportKind::Connect, .. }), "{err:?}");
    assert_eq!(err.class(), RetryClass::NotCreatedRetry);
}

#[tokio::test]
async fn invalid_to_21211_is_final_for_contact() {
    let (base, _) = serve(|_| twilio_error(400, 21211, "The 'To' number +81... is not a valid phone number.")).await;
    let err = client(&base, Duration::from_secs(5)).create_call(&full_create()).await.unwrap_err();
    assert_eq!(err.class(), RetryClass::FinalForContact);
    assert_eq!((err.code(), err.http_status()), (Some(21211), Some(400)));
    assert!(err.to_string().contains("not a valid phone number"), "{err}");
}

#[tokio::test]
async fn auth_20003_is_final_for_campaign() {
    let (base, _) = serve(|_| twilio_error(401, 20003, "Authenticate")).await;
    let err = client(&base, Duration::from_secs(5)).create_call(&full_create()).await.unwrap_err();
    assert_eq!(err.class(), RetryClass::FinalForCampaign);
    assert_eq!(err.code(), Some(20003));
}

#[tokio::test]
async fn unparseable_2xx_is_fate_unknown_and_keeps_the_sid() {
    let (base, _) =
        serve(|_| (StatusCode::CREATED, axum::Json(json!({"sid": SID1, "status": "dialling"}))).into_response()).await;
    let err = client(&base, Duration::from_secs(5)).create_call(&full_create()).await.unwrap_err();
    assert_eq!(err.class(), RetryClass::FateUnknown);
    assert!(matches!(&err, TwilioError::Decode { call_sid: Some(s), .. } if s.as_str() == SID1), "{err:?}");
}

#[tokio::test]
async fn create_fetch_update_list_round_trip_with_paging_and_basic_auth() {
    let calls_path = format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json");
    let call_path = format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{SID1}.json");
    let page2 = format!("{calls_path}?To=%2B818012345678&PageSize=1&Page=1&PageToken=PA1");
    let (base, seen) = {
        let (calls_path, call_path, page2) = (calls_path.clone(), call_path.clone(), page2.clone());
        serve(move |s| {
            let ok = |code: StatusCode, v: Value| (code, axum::Json(v)).into_response();
            match (s.method.as_str(), s.path.as_str()) {
                ("POST", p) if p == calls_path => ok(StatusCode::CREATED, call_json(SID1, "queued")),
                ("GET", p) if p == call_path => {
                    let mut c = call_json(SID1, "completed");
                    c["duration"] = json!("15");
                    c["answered_by"] = json!("machine_end_beep");
                    c["start_time"] = json!("Tue, 31 Aug 2010 20:36:29 +0000");
                    c["end_time"] = json!("Tue, 31 Aug 2010 20:36:44 +0000");
                    c["queue_time"] = json!("1000");
                    c["price"] = json!("-0.03000");
                    ok(StatusCode::OK, c)
                }
                ("POST", p) if p == call_path => ok(StatusCode::OK, call_json(SID1, "canceled")),
                ("GET", p) if p == calls_path && s.query.as_deref().is_some_and(|q| q.contains("PageToken=PA1")) => ok(
                    StatusCode::OK,
                    json!({"calls": [call_json(SID2, "no-answer")], "next_page_uri": null, "page": 1}),
                ),
                ("GET", p) if p == calls_path => ok(
                    StatusCode::OK,
                    json!({"calls": [call_json(SID1, "completed")], "next_page_uri": page2, "page": 0}),
                ),
                _ => twilio_error(404, 20404, "not found"),
            }
        })
        .await
    };
    let c = client(&base, Duration::from_secs(5));

    let created = c.create_call(&full_create()).await.unwrap();
    assert_eq!(created.sid.as_str(), SID1);
    assert_eq!(created.status, CallStatus::Queued);
    assert_eq!(created.to_e164(), Some(to()));
    assert_eq!(created.date_created, Some(Utc.with_ymd_and_hms(2010, 8, 31, 20, 36, 28).unwrap()));
    assert_eq!((created.answered_by, created.duration, created.end_time), (None, None, None));

    let sid = CallSid::parse(SID1).unwrap();
    let fetched = c.fetch_call(&sid).await.unwrap();
    assert_eq!(fetched.status, CallStatus::Completed);
    assert_eq!(fetched.answered_by, Some(AnsweredBy::MachineEndBeep));
    assert_eq!(fetched.duration, Some(15));
    assert_eq!(fetched.queue_time(), Some(Duration::from_millis(1000)));
    assert_eq!(fetched.price.as_deref(), Some("-0.03000"));
    assert_eq!(fetched.direction.as_deref(), Some("outbound-api"));

    let canceled = c.update_call(&sid, UpdateStatus::Canceled).await.unwrap();
    assert_eq!(canceled.status, CallStatus::Canceled);

    let filter = ListCalls {
        to: Some(to()),
        start_time_after: Some(StartTimeAfter::Date(NaiveDate::from_ymd_opt(2026, 4, 1).unwrap())),
        page_size: Some(1),
        ..ListCalls::default()
    };
    let listed = c.list_calls(&filter).await.unwrap();
    let sids: Vec<&str> = listed.iter().map(|c| c.sid.as_str()).collect();
    assert_eq!(sids, [SID1, SID2]);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5, "{seen:#?}");
    let expected_auth =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}")));
    for s in &seen {
        assert_eq!(s.authorization.as_deref(), Some(expected_auth.as_str()), "{} {}", s.method, s.path);
    }
    // The create is form-encoded with one StatusCallbackEvent per event.
    let form: Vec<(String, String)> = form_urlencoded::parse(seen[0].body.as_bytes()).into_owned().collect();
    assert_eq!(form, full_create().to_form());
    assert!(seen[0].body.contains("StatusCallbackEvent=initiated&StatusCallbackEvent=ringing"), "{}", seen[0].body);
    assert_eq!(seen[2].body, "Status=canceled");
    // `StartTime>` goes out with its `>` percent-encoded, and the next page is followed as given.
    let q = seen[3].query.as_deref().unwrap();
    assert!(q.contains("StartTime%3E=2026-04-01"), "{q}");
    assert!(q.contains("To=%2B818012345678") && q.contains("PageSize=1"), "{q}");
    assert_eq!(format!("{}?{}", seen[4].path, seen[4].query.as_deref().unwrap()), page2);
}

#[tokio::test]
async fn fetch_of_unknown_call_is_not_found() {
    let (base, _) = serve(|_| twilio_error(404, 20404, "The requested resource was not found")).await;
    let err = client(&base, Duration::from_secs(5)).fetch_call(&CallSid::random()).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn foreign_next_page_uri_is_refused() {
    let (base, seen) = serve(|_| {
        (StatusCode::OK, axum::Json(json!({"calls": [], "next_page_uri": "https://evil.example.com/steal"})))
            .into_response()
    })
    .await;
    let err = client(&base, Duration::from_secs(5)).list_calls(&ListCalls::default()).await.unwrap_err();
    assert!(matches!(err, TwilioError::Invalid(_)), "{err:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn debug_never_shows_the_auth_token() {
    let c = TwilioClient::new("https://api.twilio.com", ACCOUNT, TOKEN, Duration::from_secs(5)).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains(ACCOUNT));
}

#[test]
fn bad_configuration_is_rejected_at_construction() {
    let t = Duration::from_secs(1);
    assert!(TwilioClient::new("api.twilio.com", ACCOUNT, TOKEN, t).is_err());
    assert!(TwilioClient::new("https://api.twilio.com", "AC123", TOKEN, t).is_err());
    assert!(TwilioClient::new("https://api.twilio.com", ACCOUNT, "", t).is_err());
}
