//! The Twilio simulator over real HTTP: REST API shapes, call lifecycle with a local "callbacks service",
//! signatures, CPS queueing, fault injection and the record/stats.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dialer_sim::{peak_in_window, Burst, CallRecord, DigitDist, Faults, OutcomeMix, SecsRange, SimConfig, SimHandle};
use futures::StreamExt;
use serde_json::Value;

use crate::support::{auth, http, start, App, Hit};

const TO: &str = "+818012345678";
const FROM: &str = "+81312345678";
const HANGUP: &str = "<Response><Hangup/></Response>";

/// A fast simulator where everyone answers at once and presses 1.
fn fast_config() -> SimConfig {
    SimConfig {
        cps: 1000.0,
        speed: 1000.0,
        outcomes: OutcomeMix::all_human(),
        ring_time: SecsRange::fixed(1.0),
        digits: DigitDist::always(Some('1')),
        ..SimConfig::default()
    }
}

async fn create(sim: &SimHandle, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let r = auth(sim, http().post(format!("{}/Calls.json", sim.account_url()))).form(form).send().await.unwrap();
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
    (status, r.json().await.unwrap())
}

async fn create_ok(sim: &SimHandle, form: &[(&str, &str)]) -> String {
    let (status, body) = create(sim, form).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["sid"].as_str().unwrap().to_string()
}

async fn get_json(sim: &SimHandle, path_and_query: &str) -> (u16, Value) {
    let r = auth(sim, http().get(format!("{}{path_and_query}", sim.base_url()))).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

// ---- a local "callbacks service" -------------------------------------------------------------------

/// The application's TwiML: a menu per token under `/twiml/`, a redirect loop, hold, a failing URL.
fn answer(_: &App, hit: &Hit) -> Response {
    let path = hit.path.as_str();
    let xml = |s: &str| ([("Content-Type", "text/xml")], s.to_string()).into_response();
    if let Some(tok) = path.strip_prefix("/twiml/") {
        xml(&format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response>
                 <Say language="ja-JP">Example Transportです。</Say>
                 <Gather action="/gather/{tok}" numDigits="1" timeout="5"><Say>Press 1 to choose a time.</Say></Gather>
                 <Say>We did not get your choice.</Say>
               </Response>"#
        ))
    } else if path.starts_with("/gather/") {
        xml("<Response><Say>Thank you.</Say><Hangup/></Response>")
    } else if path == "/loop" {
        xml("<Response><Redirect>/loop</Redirect></Response>")
    } else if path == "/hold" {
        xml(r#"<Response><Pause length="600"/></Response>"#)
    } else if path == "/fail" {
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

fn all_events<'a>(form: &mut Vec<(&'a str, &'a str)>) {
    for e in ["initiated", "ringing", "answered", "completed"] {
        form.push(("StatusCallbackEvent", e));
    }
}

// ---- REST API -----------------------------------------------------------------------------------

#[tokio::test]
async fn auth_is_rejected_with_twilio_error() {
    let sim = start(fast_config()).await;
    let url = format!("{}/Calls.json", sim.account_url());
    let expected = serde_json::json!({
        "code": 20003, "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401
    });
    let sid = sim.config().account_sid.clone();
    let attempts = [
        http().get(&url),
        http().get(&url).basic_auth(&sid, Some("wrong")),
        http().get(&url).basic_auth("ACffffffffffffffffffffffffffffffff", Some(&sim.config().auth_token)),
        // Right credentials, someone else's account in the path.
        http()
            .get(format!("{}/2010-04-01/Accounts/ACffffffffffffffffffffffffffffffff/Calls.json", sim.base_url()))
            .basic_auth(&sid, Some(&sim.config().auth_token)),
    ];
    for rb in attempts {
        let r = rb.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(r.json::<Value>().await.unwrap(), expected);
    }
    let (status, _) = create(&sim, &[("To", TO), ("From", FROM), ("Twiml", HANGUP)]).await;
    assert_eq!(status, StatusCode::CREATED);
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown()).await.expect("shutdown is prompt");
}

#[tokio::test]
async fn create_validates_to_from_and_url() {
    let sim = start(fast_config()).await;
    let cases: [(&[(&str, &str)], u64); 7] = [
        (&[("From", FROM), ("Url", "http://x/t")], 21201),
        (&[("To", "12345"), ("From", FROM), ("Url", "http://x/t")], 21211),
        (&[("To", TO), ("From", "not-a-number"), ("Url", "http://x/t")], 21212),
        (&[("To", TO), ("Url", "http://x/t")], 21213),
        (&[("To", TO), ("From", FROM)], 21205),
        (&[("To", TO), ("From", FROM), ("Url", "http://x/t"), ("Twiml", HANGUP)], 21205),
        (&[("To", TO), ("From", FROM), ("Url", "not a url")], 21205),
    ];
    for (form, code) in cases {
        let (status, body) = create(&sim, form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}");
        assert_eq!(body["code"], code, "{form:?}: {body}");
        assert_eq!(body["status"], 400);
    }
    assert!(sim.calls().is_empty(), "rejected creates record nothing");

    let (status, body) = create(&sim, &[("To", TO), ("From", FROM), ("Url", "http://127.0.0.1:9/t")]).await;
    assert_eq!(status, StatusCode::CREATED);
    let sid = body["sid"].as_str().unwrap();
    assert!(sid.len() == 34 && sid.starts_with("CA") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(body["status"], "queued");
    assert_eq!(body["to"], TO);
    assert_eq!(body["from"], FROM);
    assert_eq!(body["direction"], "outbound-api");
    assert_eq!(body["api_version"], "2010-04-01");
    assert_eq!(body["account_sid"], sim.config().account_sid.as_str());
    assert!(body["queue_time"].is_string());
    assert_eq!(body["uri"], format!("/2010-04-01/Accounts/{}/Calls/{sid}.json", sim.config().account_sid));
    let created = body["date_created"].as_str().unwrap();
    assert!(created.ends_with(" +0000") && chrono::DateTime::parse_from_rfc2822(created).is_ok(), "{created}");
}

#[tokio::test]
async fn fetch_list_update_round_trip_and_paging() {
    // cps=1: the first call leaves the queue at once, the others wait, so they can be canceled.
    let sim = start(SimConfig { cps: 1.0, ..fast_config() }).await;
    let hold = r#"<Response><Pause length="600"/></Response>"#;
    let first = create_ok(&sim, &[("To", TO), ("From", FROM), ("Twiml", hold)]).await;
    let mut sids = vec![first.clone()];
    for i in 0..6 {
        let to = format!("+8180123456{:02}", 10 + i);
        sids.push(create_ok(&sim, &[("To", &to), ("From", FROM), ("Twiml", HANGUP)]).await);
    }

    // Fetch.
    let (code, body) =
        get_json(&sim, &format!("/2010-04-01/Accounts/{}/Calls/{}.json", sim.config().account_sid, sids[3])).await;
    assert_eq!(code, 200);
    assert_eq!(body["sid"], sids[3].as_str());
    assert_eq!(body["status"], "queued");
    let (code, body) = get_json(
        &sim,
        &format!("/2010-04-01/Accounts/{}/Calls/CA00000000000000000000000000000000.json", sim.config().account_sid),
    )
    .await;
    assert_eq!((code, body["code"].as_u64()), (404, Some(20404)));

    // Cancel a queued call.
    let update = |sid: &str, status: &str| {
        auth(&sim, http().post(format!("{}/Calls/{sid}.json", sim.account_url()))).form(&[("Status", status)]).send()
    };
    let r: Value = update(&sids[6], "canceled").await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "canceled");

    // The first call is in progress (answered after 1 ms of ringing); completing it hangs up.
    for _ in 0..200 {
        if sim.call(&first).unwrap().status.as_str() == "in-progress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r: Value = update(&first, "canceled").await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "in-progress", "canceled does not end a call in progress");
    let r: Value = update(&first, "completed").await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "completed");
    assert!(r["duration"].is_string() && r["end_time"].is_string());
    let r = update(&first, "ringing").await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // The record says which calls the API ended.
    let (hung_up, canceled) = (sim.call(&first).unwrap(), sim.call(&sids[6]).unwrap());
    assert!(hung_up.ended_by_update && hung_up.ended_at.is_some() && hung_up.outcome.as_deref() == Some("human"));
    assert!(canceled.ended_by_update && canceled.outcome.as_deref() == Some("canceled"));
    assert!(!sim.call(&sids[1]).unwrap().ended_by_update);

    // List, newest first, with paging.
    let base = format!("/2010-04-01/Accounts/{}/Calls.json", sim.config().account_sid);
    let (code, page0) = get_json(&sim, &format!("{base}?PageSize=3")).await;
    assert_eq!(code, 200);
    let listed: Vec<&str> = page0["calls"].as_array().unwrap().iter().map(|c| c["sid"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![sids[6].as_str(), &sids[5], &sids[4]]);
    assert_eq!(
        (page0["page"].as_u64(), page0["page_size"].as_u64(), page0["start"].as_u64()),
        (Some(0), Some(3), Some(0))
    );
    assert!(page0["previous_page_uri"].is_null());
    let mut seen: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    let mut next = page0["next_page_uri"].as_str().map(str::to_string);
    let mut pages = 1;
    while let Some(uri) = next {
        let (_, page) = get_json(&sim, &uri).await;
        seen.extend(page["calls"].as_array().unwrap().iter().map(|c| c["sid"].as_str().unwrap().to_string()));
        next = page["next_page_uri"].as_str().map(str::to_string);
        pages += 1;
    }
    assert_eq!(pages, 3);
    seen.reverse();
    assert_eq!(seen, sids);

    // Filters.
    let (_, by_to) = get_json(&sim, &format!("{base}?To=%2B818012345678")).await;
    assert_eq!(by_to["calls"].as_array().unwrap().len(), 1);
    assert_eq!(by_to["calls"][0]["sid"], first.as_str());
    let (_, canceled) = get_json(&sim, &format!("{base}?Status=canceled")).await;
    assert_eq!(canceled["calls"].as_array().unwrap().len(), 1);
    let today = chrono::Utc::now().date_naive();
    let (_, since) = get_json(&sim, &format!("{base}?StartTime%3E={today}&PageSize=1000")).await;
    assert_eq!(since["calls"].as_array().unwrap().len(), 7, "queued calls count by their creation time");
    let tomorrow = today.succ_opt().unwrap();
    let (_, none) = get_json(&sim, &format!("{base}?StartTime%3E={tomorrow}")).await;
    assert!(none["calls"].as_array().unwrap().is_empty());
    let (_, before) = get_json(&sim, &format!("{base}?StartTime%3C={tomorrow}&To=%2B818012345678")).await;
    assert_eq!(before["calls"].as_array().unwrap().len(), 1);
    let (code, bad) = get_json(&sim, &format!("{base}?StartTime%3E=yesterday")).await;
    assert_eq!((code, bad["status"].as_u64()), (400, Some(400)));
}

// ---- lifecycle, TwiML, callbacks ---------------------------------------------------------------------

#[tokio::test]
async fn twiml_gather_and_signed_status_callbacks() {
    let config = fast_config();
    let cb = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    let (twiml, status) = (cb.url("/twiml/tok1"), cb.url("/status/tok1"));
    let mut form = vec![("To", TO), ("From", FROM), ("Url", twiml.as_str()), ("StatusCallback", status.as_str())];
    all_events(&mut form);
    let sid1 = create_ok(&sim, &form).await;
    // Default events: completed only.
    let (twiml2, status2) = (cb.url("/twiml/tok2"), cb.url("/status/tok2"));
    let sid2 = create_ok(
        &sim,
        &[("To", "+818011112222"), ("From", FROM), ("Url", twiml2.as_str()), ("StatusCallback", status2.as_str())],
    )
    .await;
    assert!(sim.wait_idle(Duration::from_secs(10)).await);
    cb.wait_for("/status/tok1", 4).await;
    let events2 = cb.wait_for("/status/tok2", 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let all = cb.hits("");
    assert!(all.iter().all(|h| h.signature_ok), "every request is signed: {all:#?}");
    assert!(all.iter().all(|h| h.idempotency.is_some()));

    let fetches = cb.hits("/twiml/tok1");
    assert_eq!(fetches.len(), 1);
    for (k, v) in [
        ("CallSid", sid1.as_str()),
        ("AccountSid", sim.config().account_sid.as_str()),
        ("To", TO),
        ("From", FROM),
        ("CallStatus", "in-progress"),
        ("Direction", "outbound-api"),
        ("ApiVersion", "2010-04-01"),
    ] {
        assert_eq!(fetches[0].get(k), v, "{k}");
    }
    assert!(!fetches[0].params.contains_key("AnsweredBy"), "no AMD requested");
    let gathers = cb.hits("/gather/tok1");
    assert_eq!(gathers.len(), 1, "the Gather action (relative URL) got the keypress");
    assert_eq!(gathers[0].get("Digits"), "1");
    assert_eq!(gathers[0].get("CallSid"), sid1);

    let events = cb.hits("/status/tok1");
    assert_eq!(events.len(), 4, "exactly the requested events: {events:#?}");
    let mut by_seq: Vec<&Hit> = events.iter().collect();
    by_seq.sort_by_key(|h| h.get("SequenceNumber").parse::<u32>().unwrap());
    let statuses: Vec<&str> = by_seq.iter().map(|h| h.get("CallStatus")).collect();
    assert_eq!(statuses, ["initiated", "ringing", "in-progress", "completed"]);
    let seqs: Vec<&str> = by_seq.iter().map(|h| h.get("SequenceNumber")).collect();
    assert_eq!(seqs, ["0", "1", "2", "3"]);
    for h in &by_seq {
        assert_eq!(h.get("CallSid"), sid1);
        assert_eq!(h.get("CallbackSource"), "call-progress-events");
        assert!(chrono::DateTime::parse_from_rfc2822(h.get("Timestamp")).is_ok());
    }
    let done = by_seq[3];
    assert_eq!(done.get("SipResponseCode"), "200");
    assert!(done.get("CallDuration").parse::<u64>().unwrap() >= 1);
    assert!(done.params.contains_key("Duration"));
    let tokens: BTreeSet<_> = events.iter().map(|h| h.idempotency.clone()).collect();
    assert_eq!(tokens.len(), 4, "one idempotency token per event");

    assert_eq!(events2.len(), 1);
    assert_eq!(events2[0].get("CallStatus"), "completed");
    assert_eq!(events2[0].get("SequenceNumber"), "0");
    assert_eq!(events2[0].get("CallSid"), sid2);

    let rec = sim.call(&sid1).unwrap();
    assert_eq!(rec.status.as_str(), "completed");
    assert_eq!(rec.digits, "1");
    assert_eq!(rec.sip_response_code, Some(200));
    assert_eq!(rec.url.as_deref(), Some(twiml.as_str()));
    assert_eq!(rec.error, None);
    assert!(rec.duration.unwrap() >= 1);
}

#[tokio::test]
async fn machine_detection_sync_and_async() {
    let config =
        SimConfig { outcomes: OutcomeMix { human: 0.0, machine: 100.0, ..OutcomeMix::all_human() }, ..fast_config() };
    let cb = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    let (twiml, status, amd) = (cb.url("/twiml/sync"), cb.url("/status/sync"), cb.url("/amd/async"));
    create_ok(
        &sim,
        &[("To", TO), ("From", FROM), ("Url", &twiml), ("StatusCallback", &status), ("MachineDetection", "Enable")],
    )
    .await;
    let twiml_a = cb.url("/twiml/async");
    create_ok(
        &sim,
        &[
            ("To", "+818011112222"),
            ("From", FROM),
            ("Url", &twiml_a),
            ("MachineDetection", "DetectMessageEnd"),
            ("AsyncAmd", "true"),
            ("AsyncAmdStatusCallback", &amd),
        ],
    )
    .await;
    assert!(sim.wait_idle(Duration::from_secs(10)).await);
    let done = cb.wait_for("/status/sync", 1).await;
    assert_eq!(done[0].get("AnsweredBy"), "machine_start");
    assert_eq!(cb.hits("/twiml/sync")[0].get("AnsweredBy"), "machine_start", "sync AMD: TwiML request carries it");
    assert!(!cb.hits("/twiml/async")[0].params.contains_key("AnsweredBy"), "async AMD: it comes separately");
    let amd_hits = cb.wait_for("/amd/async", 1).await;
    assert!(amd_hits[0].signature_ok);
    assert!(amd_hits[0].get("AnsweredBy").starts_with("machine_end_"), "{:?}", amd_hits[0]);
}

#[tokio::test]
async fn redirect_loops_are_capped_and_fetch_errors_end_the_call() {
    let config = fast_config();
    let cb = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    let looping = create_ok(&sim, &[("To", TO), ("From", FROM), ("Url", &cb.url("/loop"))]).await;
    let failing = create_ok(&sim, &[("To", "+818011112222"), ("From", FROM), ("Url", &cb.url("/fail"))]).await;
    assert!(sim.wait_idle(Duration::from_secs(10)).await);
    let rec = sim.call(&looping).unwrap();
    assert_eq!(rec.status.as_str(), "completed");
    assert!(rec.error.unwrap().contains("more than 50"));
    assert!(cb.hits("/loop").len() <= 50);
    let rec = sim.call(&failing).unwrap();
    assert_eq!(rec.status.as_str(), "completed");
    assert!(rec.error.unwrap().contains("500"));
}

#[tokio::test]
async fn seeded_outcomes_are_deterministic_per_number() {
    let config = SimConfig {
        seed: Some(7),
        outcomes: OutcomeMix::default(),
        ring_time: SecsRange { min: 1.0, max: 30.0 },
        ..fast_config()
    };
    let numbers: Vec<String> = (0..40).map(|i| format!("+8180{:08}", 10_000_000 + i * 7919)).collect();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let sim = start(config.clone()).await;
        for n in &numbers {
            create_ok(&sim, &[("To", n), ("From", FROM), ("Twiml", HANGUP)]).await;
        }
        assert!(sim.wait_idle(Duration::from_secs(10)).await);
        let outcomes: HashMap<String, (Option<String>, String)> =
            sim.calls().into_iter().map(|c| (c.to, (c.outcome, c.status.as_str().to_string()))).collect();
        runs.push(outcomes);
    }
    assert_eq!(runs[0], runs[1]);
    let distinct: BTreeSet<_> = runs[0].values().map(|(o, _)| o.clone()).collect();
    assert!(distinct.len() >= 3, "a mix of outcomes: {distinct:?}");
}

// ---- CPS queueing ----------------------------------------------------------------------------------

fn millis(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp_millis()
}

#[tokio::test]
async fn cps_queueing_paces_departures() {
    let sim = start(SimConfig { cps: 5.0, ..fast_config() }).await;
    let creates = (0..20).map(|i| {
        let sim = &sim;
        async move {
            let to = format!("+8180123456{:02}", i);
            create_ok(sim, &[("To", &to), ("From", FROM), ("Twiml", HANGUP)]).await
        }
    });
    futures::future::join_all(creates).await;
    assert!(sim.wait_idle(Duration::from_secs(10)).await);
    let calls: Vec<CallRecord> = sim.calls();
    assert_eq!(calls.len(), 20);
    let mut starts: Vec<i64> = calls.iter().map(|c| millis(c.started_at.as_deref().unwrap())).collect();
    assert!(peak_in_window(&mut starts, 1000) <= 5, "no one-second window holds more than 5 starts");
    let mut queue: Vec<u64> = calls.iter().map(|c| c.queue_time_ms.unwrap()).collect();
    queue.sort();
    assert!(queue[0] < 200, "the first call leaves at once: {queue:?}");
    assert!(queue[19] >= 3_000, "the 20th waits ~3.8 s: {queue:?}");
    for c in &calls {
        let waited = millis(c.started_at.as_deref().unwrap()) - millis(&c.created_at);
        assert!((waited - c.queue_time_ms.unwrap() as i64).abs() <= 1);
    }
    let stats = sim.stats();
    assert!(stats.peak_starts_per_second <= 5);
    assert_eq!(stats.peak_calls_per_second, 20, "creates are accepted immediately");
    assert!(stats.max_queue_time_ms >= 3_000);
    let (_, body) =
        get_json(&sim, &format!("/2010-04-01/Accounts/{}/Calls/{}.json", sim.config().account_sid, calls[19].sid))
            .await;
    assert_eq!(body["queue_time"], calls[19].queue_time_ms.unwrap().to_string());
}

/// `--api-latency-ms` sets `api_latency` (default none), and with it a create still succeeds and is
/// recorded, and the call can be fetched (every REST request goes through the delay).
#[tokio::test]
async fn api_latency_comes_from_its_flag_and_requests_still_succeed() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sim: dialer_sim::SimArgs,
    }
    let parse = |args: &[&str]| {
        let cli = <Cli as clap::Parser>::try_parse_from(["sim"].iter().chain(args).copied()).unwrap();
        cli.sim.into_config().unwrap().api_latency
    };
    assert_eq!(parse(&["--api-latency-ms", "200"]), Duration::from_millis(200));
    assert_eq!(parse(&[]), Duration::ZERO);
    assert_eq!(SimConfig::default().api_latency, Duration::ZERO);

    let sim = start(SimConfig { api_latency: Duration::from_millis(200), ..fast_config() }).await;
    let sid = create_ok(&sim, &[("To", TO), ("From", FROM), ("Twiml", HANGUP)]).await;
    let calls = sim.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].sid.as_str(), calls[0].to.as_str()), (sid.as_str(), TO));
    assert_eq!(sim.stats().calls_created, 1);
    let (status, body) =
        get_json(&sim, &format!("/2010-04-01/Accounts/{}/Calls/{sid}.json", sim.config().account_sid)).await;
    assert_eq!((status, body["sid"].as_str()), (200, Some(sid.as_str())));
}

// ---- fault injection ---------------------------------------------------------------------------------

/// One call that hangs up at once, asking for every status event at `path` of a fresh receiver, under
/// `faults`; returns once the simulator is idle.
async fn one_hung_up_call(faults: Faults, path: &str) -> (SimHandle, App) {
    let config = SimConfig { faults, ..fast_config() };
    let cb = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    let status = cb.url(path);
    let mut form = vec![("To", TO), ("From", FROM), ("Twiml", HANGUP), ("StatusCallback", status.as_str())];
    all_events(&mut form);
    create_ok(&sim, &form).await;
    assert!(sim.wait_idle(Duration::from_secs(10)).await);
    (sim, cb)
}

#[tokio::test]
async fn duplicated_callbacks_share_the_idempotency_token() {
    let (sim, cb) = one_hung_up_call(Faults { duplicate: 1.0, ..Faults::default() }, "/status/dup").await;
    let hits = cb.wait_for("/status/dup", 8).await;
    assert_eq!(hits.len(), 8, "each of 4 events twice");
    let mut per_token: HashMap<String, Vec<&Hit>> = HashMap::new();
    for h in &hits {
        per_token.entry(h.idempotency.clone().unwrap()).or_default().push(h);
    }
    assert_eq!(per_token.len(), 4);
    for pair in per_token.values() {
        assert_eq!(pair.len(), 2);
        assert_eq!(pair[0].params, pair[1].params, "a duplicate is the same event");
        assert!(pair.iter().all(|h| h.signature_ok));
    }
    assert_eq!(sim.stats().callbacks_duplicated, 4);
}

#[tokio::test]
async fn lost_callbacks_never_arrive() {
    let (sim, cb) = one_hung_up_call(Faults { lost: 1.0, ..Faults::default() }, "/status/lost").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(cb.hits("/status/").is_empty());
    let stats = sim.stats();
    assert_eq!((stats.callbacks_lost, stats.callbacks_sent), (4, 0));
    let lost: Vec<&str> = sim.calls()[0].lost_callbacks.iter().map(|s| s.as_str()).collect();
    assert_eq!(lost, ["initiated", "ringing", "in-progress", "completed"], "the record names what was lost");
}

#[tokio::test]
async fn reordered_callbacks_arrive_shuffled() {
    let (_sim, cb) = one_hung_up_call(Faults { reorder: 1.0, ..Faults::default() }, "/status/shuffle").await;
    let hits = cb.wait_for("/status/shuffle", 4).await;
    let order: Vec<u32> = hits.iter().map(|h| h.get("SequenceNumber").parse().unwrap()).collect();
    assert_eq!(order.iter().copied().collect::<BTreeSet<_>>(), (0..4).collect());
    assert_ne!(order, vec![0, 1, 2, 3], "delivered out of order");
}

#[tokio::test]
async fn failing_receiver_gets_exactly_one_retry() {
    let config = fast_config();
    let cb = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    let status = cb.url("/fail");
    create_ok(&sim, &[("To", TO), ("From", FROM), ("Twiml", HANGUP), ("StatusCallback", status.as_str())]).await;
    assert!(sim.wait_idle(Duration::from_secs(10)).await);
    let hits = cb.wait_for("/fail", 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cb.hits("/fail").len(), 2);
    assert_eq!(hits[0].idempotency, hits[1].idempotency, "a retry keeps the token");
    let stats = sim.stats();
    assert_eq!((stats.callbacks_sent, stats.callbacks_failed), (2, 2));
}

#[tokio::test]
async fn rest_faults_429_500_and_timeout() {
    let sim = start(SimConfig { faults: Faults { rate_429: 1.0, ..Faults::default() }, ..fast_config() }).await;
    let r = auth(&sim, http().post(format!("{}/Calls.json", sim.account_url())))
        .form(&[("To", TO), ("From", FROM), ("Twiml", HANGUP)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1", "a 429 says when to come back");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], 20429);
    assert!(sim.calls().is_empty(), "a 429 creates nothing");
    assert_eq!(sim.stats().create_errors, [(20429, 1)].into());

    let sim = start(SimConfig { faults: Faults { rate_5xx: 1.0, ..Faults::default() }, ..fast_config() }).await;
    for _ in 0..20 {
        let (status, body) = create(&sim, &[("To", TO), ("From", FROM), ("Twiml", HANGUP)]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["status"], 500);
    }
    let n = sim.calls().len();
    assert!(n > 0 && n < 20, "a 500 sometimes created the call: {n} of 20");

    let sim = start(SimConfig {
        faults: Faults { timeout: 1.0, timeout_delay: Duration::from_millis(1500), ..Faults::default() },
        ..fast_config()
    })
    .await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let err = auth(&sim, impatient.post(format!("{}/Calls.json", sim.account_url())))
        .form(&[("To", TO), ("From", FROM), ("Twiml", HANGUP)])
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(sim.calls().len(), 1, "the call was created although the client timed out");
    // A patient client gets the 201 eventually.
    let (status, _) = create(&sim, &[("To", TO), ("From", FROM), ("Twiml", HANGUP)]).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn bursts_of_429_refuse_every_create_and_say_how_long_they_last() {
    // A 100 ms quiet start, then a burst for the rest of each minute.
    let burst = Burst { every: Duration::from_secs(60), length: Duration::from_millis(59_900) };
    let sim =
        start(SimConfig { faults: Faults { burst_429: Some(burst), ..Faults::default() }, ..fast_config() }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let r = auth(&sim, http().post(format!("{}/Calls.json", sim.account_url())))
            .form(&[("To", TO), ("From", FROM), ("Twiml", HANGUP)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 429);
        let after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&after), "Retry-After is what is left of the burst: {after}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], 20429);
    }
    assert!(sim.calls().is_empty(), "nothing created during a burst");
    assert_eq!(sim.stats().create_errors, [(20429, 5)].into());
}

#[tokio::test]
async fn a_destination_without_geo_permission_is_refused_with_21215_and_nothing_is_created() {
    let faults = Faults { geo_blocked: vec!["+44".into(), "+1876".into()], ..Faults::default() };
    let sim = start(SimConfig { faults, ..fast_config() }).await;
    for to in ["+447400123456", "+18762101234"] {
        let (status, body) = create(&sim, &[("To", to), ("From", FROM), ("Twiml", HANGUP)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!((body["code"].as_u64(), body["status"].as_u64()), (Some(21215), Some(400)));
        assert_eq!(
            body["message"],
            format!(
                "Account not authorized to call {to}. Perhaps you need to enable some international permissions: \
                 https://www.twilio.com/console/voice/calls/geo-permissions/low-risk"
            )
        );
        assert_eq!(body["more_info"], "https://www.twilio.com/docs/errors/21215");
    }
    assert!(sim.calls().is_empty(), "a refused destination creates nothing");
    // Other countries (and +1 numbers outside +1876) are called as usual.
    create_ok(&sim, &[("To", TO), ("From", FROM), ("Twiml", HANGUP)]).await;
    create_ok(&sim, &[("To", "+14155550123"), ("From", FROM), ("Twiml", HANGUP)]).await;
    assert_eq!(sim.calls().len(), 2);
    let stats = sim.stats();
    assert_eq!(stats.create_errors, [(21215, 2)].into());
    assert_eq!(stats.calls_created, 2);
}

// ---- record and stats -----------------------------------------------------------------------------

#[tokio::test]
async fn stats_count_windows_and_duplicate_pairs() {
    let sim = start(fast_config()).await;
    let (a, b, c) = ("+818011110001", "+818011110002", "+818011110003");
    let (u1, u2) = ("http://127.0.0.1:9/twiml/1", "http://127.0.0.1:9/twiml/2");
    for (to, url) in [(a, u1), (a, u1), (a, u1), (b, u1), (b, u1), (c, u1), (a, u2)] {
        create_ok(&sim, &[("To", to), ("From", FROM), ("Url", url)]).await;
    }
    assert!(sim.wait_idle(Duration::from_secs(10)).await);
    let (code, stats) = get_json(&sim, "/sim/stats").await;
    assert_eq!(code, 200);
    assert_eq!(stats["calls_created"], 7);
    assert_eq!(stats["peak_calls_per_second"], 7);
    assert_eq!(stats["duplicate_to_url_pairs"], 2, "(a,u1) and (b,u1)");
    assert_eq!(stats["duplicate_to_numbers"], 2);
    assert_eq!(stats["by_status"]["completed"], 7, "the unreachable TwiML URL ends each call");
    assert!(stats["peak_concurrent_calls"].as_i64().unwrap() >= 1);

    let (_, calls) = get_json(&sim, "/sim/calls").await;
    let calls: Vec<CallRecord> = serde_json::from_value(calls).unwrap();
    assert_eq!(calls.len(), 7);
    assert_eq!(calls[0].to, a);
    assert!(calls[0].created_at.ends_with('Z') && calls[0].created_at.contains('.'));
    assert!(calls.iter().all(|c| c.error.as_deref().is_some_and(|e| !e.is_empty())));

    let metrics = http().get(format!("{}/metrics", sim.base_url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sim_calls_created_total 7"), "{metrics}");
    assert!(metrics.contains("sim_queue_time_seconds_bucket"));

    let r = http().post(format!("{}/sim/reset", sim.base_url())).send().await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(sim.stats().calls_created, 0);
    assert!(sim.calls().is_empty());
}

/// Throughput smoke check: thousands of calls with callbacks complete promptly (`--ignored`; run in release).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn throughput_smoke() {
    let config = SimConfig { cps: 100_000.0, max_concurrent_requests: 1000, ..fast_config() };
    let cb = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    let client = http();
    let (twiml, status) = (cb.url("/twiml/x"), cb.url("/status/x"));
    let n = 5000usize;
    let t0 = std::time::Instant::now();
    futures::stream::iter(0..n)
        .for_each_concurrent(64, |i| {
            let (client, sim, twiml, status) = (&client, &sim, &twiml, &status);
            async move {
                let to = format!("+8180{:08}", 10_000_000 + i);
                let r = auth(sim, client.post(format!("{}/Calls.json", sim.account_url())))
                    .form(&[("To", to.as_str()), ("From", FROM), ("Url", twiml), ("StatusCallback", status)])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
            }
        })
        .await;
    let created = t0.elapsed();
    assert!(sim.wait_idle(Duration::from_secs(60)).await);
    cb.wait_for("/status/", n).await;
    eprintln!("{n} creates in {created:?}, all done in {:?}; stats {:?}", t0.elapsed(), sim.stats());
}
