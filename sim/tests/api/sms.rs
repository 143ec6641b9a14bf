//! Messages, our numbers and inbound traffic over real HTTP: message create/fetch/list and its errors,
//! signed delivery callbacks under fault injection, inbound SMS with `<Message>` replies, inbound calls
//! walking a menu on a local listener.

use std::collections::HashMap;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use dialer_sim::{
    CallDirection, DigitDist, Faults, InboundError, MessageDirection, MessageStatus, OutcomeMix, SecsRange, SimConfig,
    SimHandle, SmsMix,
};
use serde_json::{json, Value};

use crate::support::{auth, http, start, App, Hit};

const OURS: &str = "+815012345678";
const TO: &str = "+818012345678";
const CALLER: &str = "+818011112222";

fn fast_config() -> SimConfig {
    SimConfig {
        cps: 1000.0,
        speed: 1000.0,
        outcomes: OutcomeMix::all_human(),
        ring_time: SecsRange::fixed(1.0),
        talk_time: SecsRange::fixed(5.0),
        digits: DigitDist::always(Some('1')),
        ..SimConfig::default()
    }
}

async fn send(sim: &SimHandle, rb: reqwest::RequestBuilder) -> (u16, Value) {
    let r = auth(sim, rb).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn create_message(sim: &SimHandle, form: &[(&str, &str)]) -> (u16, Value) {
    send(sim, http().post(format!("{}/Messages.json", sim.account_url())).form(form)).await
}

async fn get(sim: &SimHandle, path_and_query: &str) -> (u16, Value) {
    send(sim, http().get(format!("{}{path_and_query}", sim.base_url()))).await
}

async fn post_json(sim: &SimHandle, path: &str, body: Value) -> (u16, Value) {
    let r = http().post(format!("{}{path}", sim.base_url())).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

// ---- a local "callbacks service" that checks signatures with the product's validator -------------------

/// The TwiML our "callbacks service" answers with: an SMS opt-out, and a delivery menu for calls.
fn answer(_: &App, hit: &Hit) -> Response {
    let xml = |s: &str| ([("Content-Type", "text/xml")], s.to_string()).into_response();
    let digits = hit.get("Digits");
    match hit.path.as_str() {
        "/sms" => xml(&format!(
            "<Response><Message>You said {}. You will get no more messages.</Message></Response>",
            hit.get("Body")
        )),
        "/sms-silent" => ([("Content-Type", "text/xml")], "").into_response(),
        "/voice" => xml(
            r#"<Response><Gather action="/menu" numDigits="1" timeout="5"><Say>Press 1 for a new time.</Say></Gather>
               <Say>Goodbye.</Say></Response>"#,
        ),
        "/menu" if digits == "1" => {
            xml(r#"<Response><Gather action="/slot" numDigits="1"><Say>Morning 1, afternoon 2.</Say></Gather>
               <Redirect>/voice</Redirect></Response>"#)
        }
        "/menu" if digits == "0" => xml("<Response><Dial>+81311112222</Dial></Response>"),
        "/menu" => xml("<Response><Say>Sorry.</Say><Hangup/></Response>"),
        "/slot" => xml(&format!("<Response><Say>You chose {digits}.</Say><Hangup/></Response>")),
        "/hold" => xml(r#"<Response><Say>Please hold.</Say><Pause length="600"/></Response>"#),
        _ => axum::http::StatusCode::NO_CONTENT.into_response(),
    }
}

// ---- Messages API -------------------------------------------------------------------------------------

#[tokio::test]
async fn message_create_fetch_list_and_paging() {
    let sim = start(SimConfig { sms: SmsMix::all_delivered(), ..fast_config() }).await;
    let body = "Example Transport: parcel 1234-5678 could not be delivered.";
    let (code, m) = create_message(&sim, &[("To", TO), ("From", OURS), ("Body", body)]).await;
    assert_eq!(code, 201, "{m}");
    let sid = m["sid"].as_str().unwrap().to_string();
    assert!(sid.len() == 34 && sid.starts_with("SM") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(m["status"], "queued");
    assert_eq!((m["to"].as_str(), m["from"].as_str(), m["body"].as_str()), (Some(TO), Some(OURS), Some(body)));
    assert_eq!(m["num_segments"], "1");
    assert_eq!(m["direction"], "outbound-api");
    assert!(m["price"].is_null() && m["error_code"].is_null());
    assert_eq!(m["api_version"], "2010-04-01");
    assert_eq!(m["account_sid"], sim.config().account_sid.as_str());
    assert_eq!(m["uri"], format!("/2010-04-01/Accounts/{}/Messages/{sid}.json", sim.config().account_sid));
    let created = m["date_created"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc2822(created).is_ok() && created.ends_with(" +0000"), "{created}");

    // Japanese is UCS-2: 70 characters a segment, 67 beyond.
    let (_, ja) = create_message(&sim, &[("To", TO), ("From", OURS), ("Body", &"再配達".repeat(30))]).await;
    assert_eq!(ja["num_segments"], "2");

    // Status advances as delivery proceeds (speed 1000: ~3 ms to delivered).
    let path = format!("/2010-04-01/Accounts/{}/Messages/{sid}.json", sim.config().account_sid);
    assert!(sim.wait_idle(Duration::from_secs(5)).await);
    let (code, fetched) = get(&sim, &path).await;
    assert_eq!(code, 200);
    assert_eq!(fetched["status"], "delivered");
    assert!(fetched["date_sent"].is_string());
    let (code, missing) =
        get(&sim, &format!("/2010-04-01/Accounts/{}/Messages/SM0.json", sim.config().account_sid)).await;
    assert_eq!((code, missing["code"].as_u64()), (404, Some(20404)));

    // List: filters and paging.
    for i in 0..3 {
        create_message(&sim, &[("To", "+818087654321"), ("From", OURS), ("Body", &format!("n{i}"))]).await;
    }
    let list = format!("/2010-04-01/Accounts/{}/Messages.json", sim.config().account_sid);
    let (_, page) = get(&sim, &format!("{list}?To=%2B818087654321&PageSize=2")).await;
    let bodies: Vec<&str> = page["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["n2", "n1"], "newest first");
    let next = page["next_page_uri"].as_str().unwrap().to_string();
    assert!(next.contains("To=%2B818087654321"), "{next}");
    let (_, page2) = get(&sim, &next).await;
    assert_eq!(page2["messages"].as_array().unwrap().len(), 1);
    assert!(page2["next_page_uri"].is_null());
    let (_, from) = get(&sim, &format!("{list}?From=%2B815012345678")).await;
    assert_eq!(from["messages"].as_array().unwrap().len(), 5);

    // Record and stats.
    assert!(sim.wait_idle(Duration::from_secs(5)).await);
    let records = sim.messages();
    assert_eq!(records.len(), 5);
    assert!(records.iter().all(|r| r.direction == MessageDirection::OutboundApi && r.callbacks.is_empty()));
    let stats = sim.stats();
    assert_eq!(stats.messages_created, 5);
    assert_eq!(stats.messages_by_status.get("delivered"), Some(&5));
    assert_eq!(stats.calls_created, 0);
    assert!(sim.metrics_text().contains("sim_messages_created_total 5"));
    let r = http().post(format!("{}/sim/reset", sim.base_url())).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(sim.messages().is_empty(), "reset clears messages");
}

#[tokio::test]
async fn message_validation_errors_are_twilio_errors() {
    let faults = Faults { geo_blocked: vec!["+44".into()], ..Faults::default() };
    let sim = start(SimConfig { faults, ..fast_config() }).await;
    let cases: [(&[(&str, &str)], u64); 7] = [
        (&[("From", OURS), ("Body", "x")], 21604),
        (&[("To", TO), ("From", OURS)], 21602),
        (&[("To", TO), ("From", OURS), ("Body", "  ")], 21602),
        (&[("To", TO), ("Body", "x")], 21603),
        (&[("To", "12345"), ("From", OURS), ("Body", "x")], 21211),
        (&[("To", "+447911123456"), ("From", OURS), ("Body", "x")], 21408),
        (&[("To", TO), ("From", OURS), ("Body", "x"), ("StatusCallback", "not a url")], 21609),
    ];
    for (form, code) in cases {
        let (status, body) = create_message(&sim, form).await;
        assert_eq!(status, 400, "{form:?}: {body}");
        assert_eq!(body["code"], code, "{form:?}: {body}");
        assert_eq!(body["status"], 400);
        assert_eq!(body["more_info"], format!("https://www.twilio.com/docs/errors/{code}"));
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, body) = create_message(&sim, &[("To", TO), ("From", OURS), ("Body", &"a".repeat(1601))]).await;
    assert_eq!((status, body["code"].as_u64()), (400, Some(21617)));
    // A Messaging Service instead of From is fine.
    let mg = "MG0123456789abcdef0123456789abcdef";
    let (status, body) = create_message(&sim, &[("To", TO), ("MessagingServiceSid", mg), ("Body", "x")]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["messaging_service_sid"], mg);
    assert!(body["from"].is_null());
    assert_eq!(sim.messages().len(), 1, "refused creates record nothing");
    let errors = sim.stats().message_create_errors;
    assert_eq!(errors.get(&21602), Some(&2));
    assert_eq!(errors.get(&21408), Some(&1));
    // Auth as for Calls.
    let r = http().get(format!("{}/Messages.json", sim.account_url())).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn message_creates_are_refused_with_429_like_calls() {
    let sim = start(SimConfig { faults: Faults { rate_429: 1.0, ..Faults::default() }, ..fast_config() }).await;
    let r = http()
        .post(format!("{}/Messages.json", sim.account_url()))
        .basic_auth(&sim.config().account_sid, Some(&sim.config().auth_token))
        .form(&[("To", TO), ("From", OURS), ("Body", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 20429);
    assert!(sim.messages().is_empty());
}

#[tokio::test]
async fn delivery_callbacks_are_signed_and_follow_the_mix() {
    let sim = start(SimConfig {
        seed: Some(11),
        sms: SmsMix { delivered: 50.0, undelivered: 30.0, failed: 20.0 },
        ..fast_config()
    })
    .await;
    let app = App::start(&sim.config().auth_token, answer).await;
    let status_url = app.url("/sms-status");
    let mut sids = Vec::new();
    for i in 0..30 {
        let to = format!("+8180123450{i:02}");
        let (code, m) =
            create_message(&sim, &[("To", &to), ("From", OURS), ("Body", "hi"), ("StatusCallback", &status_url)]).await;
        assert_eq!(code, 201, "{m}");
        sids.push(m["sid"].as_str().unwrap().to_string());
    }
    assert!(sim.wait_idle(Duration::from_secs(5)).await);
    let records = sim.messages();
    let expected: usize = records.iter().map(|r| r.callbacks.len()).sum();
    let hits = app.wait_for("/sms-status", expected).await;
    assert_eq!(hits.len(), expected);
    assert!(hits.iter().all(|h| h.signature_ok), "every callback is signed");
    let mut finals = HashMap::new();
    for r in &records {
        let mine: Vec<&Hit> = hits.iter().filter(|h| h.get("MessageSid") == r.sid).collect();
        let statuses: Vec<&str> = mine.iter().map(|h| h.get("MessageStatus")).collect();
        match r.status {
            MessageStatus::Delivered => {
                assert_eq!(statuses, ["sent", "delivered"]);
                assert_eq!(r.error_code, None);
            }
            MessageStatus::Undelivered => {
                assert_eq!(statuses, ["sent", "undelivered"]);
                let code = r.error_code.unwrap();
                assert!([30003, 30005, 30006].contains(&code), "{code}");
                assert_eq!(mine[1].get("ErrorCode"), code.to_string());
            }
            MessageStatus::Failed => {
                assert_eq!(statuses, ["failed"]);
                assert_eq!((r.error_code, mine[0].get("ErrorCode")), (Some(30008), "30008"));
            }
            other => panic!("{} ended {other:?}", r.sid),
        }
        for h in &mine {
            assert_eq!(h.get("SmsSid"), r.sid);
            assert_eq!(h.get("SmsStatus"), h.get("MessageStatus"));
            assert_eq!((h.get("From"), h.get("To")), (OURS, r.to.as_str()));
            assert_eq!(h.get("AccountSid"), sim.config().account_sid);
            assert_eq!(h.get("ApiVersion"), "2010-04-01");
            let final_failure = ["undelivered", "failed"].contains(&h.get("MessageStatus"));
            assert_eq!(h.params.contains_key("ErrorCode"), final_failure, "ErrorCode only when there is one");
        }
        *finals.entry(r.status).or_insert(0) += 1;
    }
    assert_eq!(finals.len(), 3, "the mix gives all three outcomes over 30 messages: {finals:?}");
    // The fetched resource agrees with the record.
    let (_, m) =
        get(&sim, &format!("/2010-04-01/Accounts/{}/Messages/{}.json", sim.config().account_sid, sids[0])).await;
    assert_eq!(m["status"], records[0].status.as_str());
    assert_eq!(m["error_code"].as_u64(), records[0].error_code.map(u64::from));
}

#[tokio::test]
async fn delivery_callbacks_under_faults_still_end_every_message() {
    let faults = Faults {
        duplicate: 0.5,
        reorder: 0.5,
        delay: 0.3,
        delay_max: Duration::from_millis(50),
        lost: 0.2,
        ..Faults::default()
    };
    let sim = start(SimConfig { seed: Some(5), faults, ..fast_config() }).await;
    let app = App::start(&sim.config().auth_token, answer).await;
    let status_url = app.url("/sms-status");
    for i in 0..40 {
        let to = format!("+8180123451{i:02}");
        create_message(&sim, &[("To", &to), ("From", OURS), ("Body", "hi"), ("StatusCallback", &status_url)]).await;
    }
    assert!(sim.wait_idle(Duration::from_secs(5)).await, "every message reaches a final status");
    let records = sim.messages();
    assert!(records.iter().all(|r| r.status.is_final()));
    let sent: usize = records.iter().map(|r| r.callbacks.len()).sum();
    // Delayed callbacks (and their duplicates) may still be on their way: wait for the sent ones, then
    // give the stragglers time before counting duplicates.
    app.wait_for("/sms-status", sent).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = sim.stats();
    let hits = app.hits("/sms-status");
    assert_eq!(hits.len(), sent + stats.callbacks_duplicated as usize, "sent + duplicated, nothing more");
    assert!(hits.iter().all(|h| h.signature_ok));
    assert!(stats.callbacks_duplicated > 0 && stats.callbacks_lost > 0, "{stats:?}");
    let lost: usize = records.iter().map(|r| r.lost_callbacks.len()).sum();
    assert_eq!(lost as u64, stats.callbacks_lost);
    // Reordered: some message's final status arrived before its `sent`.
    let reordered = records.iter().any(|r| {
        let order: Vec<String> =
            hits.iter().filter(|h| h.get("MessageSid") == r.sid).map(|h| h.get("MessageStatus").to_string()).collect();
        order.first().is_some_and(|s| s != "sent" && s != "failed") && order.iter().any(|s| s == "sent")
    });
    assert!(reordered, "the reorder fault shows");
    // Whatever arrived, an application that keeps the most final status of each message ends where the
    // record ends, unless the final callback itself was lost.
    for r in &records {
        let last_final = hits
            .iter()
            .filter(|h| h.get("MessageSid") == r.sid)
            .find(|h| ["delivered", "undelivered", "failed"].contains(&h.get("MessageStatus")));
        match last_final {
            Some(h) => assert_eq!(h.get("MessageStatus"), r.status.as_str()),
            None => assert!(r.lost_callbacks.contains(&r.status), "{r:?}"),
        }
    }
}

// ---- numbers ------------------------------------------------------------------------------------------

#[tokio::test]
async fn incoming_phone_numbers_create_update_list() {
    let sim = start(fast_config()).await;
    let base = format!("{}/IncomingPhoneNumbers", sim.account_url());
    let (code, n) = send(
        &sim,
        http().post(format!("{base}.json")).form(&[
            ("PhoneNumber", OURS),
            ("VoiceUrl", "http://127.0.0.1:9/voice"),
            ("SmsUrl", "http://127.0.0.1:9/sms"),
            ("SmsMethod", "GET"),
        ]),
    )
    .await;
    assert_eq!(code, 201, "{n}");
    let sid = n["sid"].as_str().unwrap().to_string();
    assert!(sid.len() == 34 && sid.starts_with("PN") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(n["phone_number"], OURS);
    assert_eq!((n["voice_url"].as_str(), n["voice_method"].as_str()), (Some("http://127.0.0.1:9/voice"), Some("POST")));
    assert_eq!((n["sms_url"].as_str(), n["sms_method"].as_str()), (Some("http://127.0.0.1:9/sms"), Some("GET")));
    assert!(n["status_callback"].is_null());
    assert_eq!(n["account_sid"], sim.config().account_sid.as_str());
    assert!(chrono::DateTime::parse_from_rfc2822(n["date_created"].as_str().unwrap()).is_ok());
    assert_eq!(n["uri"], format!("/2010-04-01/Accounts/{}/IncomingPhoneNumbers/{sid}.json", sim.config().account_sid));

    let (code, again) = send(&sim, http().post(format!("{base}.json")).form(&[("PhoneNumber", OURS)])).await;
    assert_eq!((code, again["code"].as_u64()), (400, Some(21422)), "a number is owned once");
    for (form, code) in [
        (vec![("VoiceUrl", "http://x/v")], 21452),
        (vec![("PhoneNumber", "abc")], 21421),
        (vec![("PhoneNumber", "+815012345679"), ("VoiceUrl", "nope")], 21502),
        (vec![("PhoneNumber", "+815012345679"), ("VoiceMethod", "PUT")], 21207),
    ] {
        let (status, body) = send(&sim, http().post(format!("{base}.json")).form(&form)).await;
        assert_eq!((status, body["code"].as_u64()), (400, Some(code)), "{form:?}");
    }

    let (code, u) = send(
        &sim,
        http()
            .post(format!("{base}/{sid}.json"))
            .form(&[("StatusCallback", "http://127.0.0.1:9/status"), ("SmsUrl", "")]),
    )
    .await;
    assert_eq!(code, 200, "{u}");
    assert_eq!(u["status_callback"], "http://127.0.0.1:9/status");
    assert!(u["sms_url"].is_null(), "an empty URL clears it");
    assert_eq!(u["voice_url"], "http://127.0.0.1:9/voice", "fields not sent stay");
    let (code, _) = send(&sim, http().post(format!("{base}/PN0.json")).form(&[("SmsUrl", "")])).await;
    assert_eq!(code, 404);

    sim.set_number("+815012345670", Some("http://127.0.0.1:9/v2".into()), None, None).unwrap();
    assert!(matches!(sim.set_number("not a number", None, None, None), Err(InboundError::InvalidNumber { .. })));
    let account = format!("/2010-04-01/Accounts/{}", sim.config().account_sid);
    let (code, list) = get(&sim, &format!("{account}/IncomingPhoneNumbers.json?PageSize=1")).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["incoming_phone_numbers"].as_array().unwrap().len(), 1);
    assert_eq!(list["incoming_phone_numbers"][0]["sid"], sid.as_str());
    assert!(list["next_page_uri"].is_string());
    let (_, fetched) = get(&sim, &format!("{account}/IncomingPhoneNumbers/{sid}.json")).await;
    assert_eq!(fetched["sid"], sid.as_str());
}

// ---- inbound SMS ------------------------------------------------------------------------------------------

#[tokio::test]
async fn inbound_sms_reaches_the_sms_url_signed_and_replies_come_back() {
    let sim = start(fast_config()).await;
    let app = App::start(&sim.config().auth_token, answer).await;
    sim.set_number(OURS, None, Some(app.url("/sms")), None).unwrap();

    let (code, out) =
        post_json(&sim, "/sim/messages/inbound", json!({"from": CALLER, "to": OURS, "body": "STOP"})).await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["webhook_status"], 200);
    assert_eq!(out["reply"], json!(["You said STOP. You will get no more messages."]));
    let sid = out["sid"].as_str().unwrap();
    assert!(sid.starts_with("SM") && sid.len() == 34);

    let hits = app.hits("/sms");
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert!(h.signature_ok, "signed with the auth token");
    for (k, v) in [
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("SmsMessageSid", sid),
        ("AccountSid", sim.config().account_sid.as_str()),
        ("From", CALLER),
        ("To", OURS),
        ("Body", "STOP"),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("SmsStatus", "received"),
        ("ApiVersion", "2010-04-01"),
        ("FromCountry", "JP"),
        ("ToCountry", "JP"),
    ] {
        assert_eq!(h.get(k), v, "{k}");
    }

    // The Rust shortcut, an empty answer, and the record.
    sim.set_number(OURS, None, Some(app.url("/sms-silent")), None).unwrap();
    let out = sim.inbound_sms(CALLER, OURS, "こんにちは").await.unwrap();
    assert_eq!((out.webhook_status, out.reply.len()), (Some(200), 0));
    let records = sim.messages();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.direction == MessageDirection::Inbound && r.status == MessageStatus::Received));
    assert_eq!(records[0].reply, ["You said STOP. You will get no more messages."]);
    let stats = sim.stats();
    assert_eq!((stats.messages_received, stats.messages_created), (2, 0));
    let (_, listed) = get(&sim, &format!("/2010-04-01/Accounts/{}/Messages.json", sim.config().account_sid)).await;
    assert_eq!(listed["messages"][0]["direction"], "inbound");
}

#[tokio::test]
async fn inbound_traffic_to_an_unknown_number_is_404() {
    let sim = start(fast_config()).await;
    let (code, body) =
        post_json(&sim, "/sim/messages/inbound", json!({"from": CALLER, "to": OURS, "body": "hi"})).await;
    assert_eq!((code, body["code"].as_u64(), body["status"].as_u64()), (404, Some(20404), Some(404)), "{body}");
    let (code, body) = post_json(&sim, "/sim/calls/inbound", json!({"from": CALLER, "to": OURS})).await;
    assert_eq!(code, 404, "{body}");
    assert!(matches!(sim.inbound_sms(CALLER, OURS, "x").await, Err(InboundError::UnknownNumber(_))));
    // Bad input: a clear 400.
    for body in
        [json!({"from": "x", "to": OURS}), json!({"to": OURS}), json!({"from": CALLER, "to": OURS, "digits": "1a"})]
    {
        let (code, err) = post_json(&sim, "/sim/calls/inbound", body.clone()).await;
        assert_eq!(code, 400, "{body}: {err}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let r = http().post(format!("{}/sim/messages/inbound", sim.base_url())).body("not json").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // A number without an SmsUrl.
    sim.set_number(OURS, None, None, None).unwrap();
    let (code, _) = post_json(&sim, "/sim/messages/inbound", json!({"from": CALLER, "to": OURS, "body": "hi"})).await;
    assert_eq!(code, 400);
    assert!(sim.calls().is_empty() && sim.messages().is_empty());
}

// ---- inbound calls ----------------------------------------------------------------------------------------

#[tokio::test]
async fn inbound_call_walks_the_menu_with_the_callers_keys() {
    let sim = start(fast_config()).await;
    let app = App::start(&sim.config().auth_token, answer).await;
    sim.set_number(OURS, Some(app.url("/voice")), None, Some(app.url("/status"))).unwrap();

    let (code, rec) = post_json(
        &sim,
        "/sim/calls/inbound",
        json!({"from": CALLER, "to": OURS, "digits": "12", "hangup_after_s": null}),
    )
    .await;
    assert_eq!(code, 200, "{rec}");
    assert_eq!(rec["direction"], "inbound");
    assert_eq!(rec["status"], "completed");
    assert_eq!((rec["from"].as_str(), rec["to"].as_str()), (Some(CALLER), Some(OURS)));
    assert_eq!(rec["digits"], "12");
    assert_eq!(rec["says"], json!(["Press 1 for a new time.", "Morning 1, afternoon 2.", "You chose 2."]));
    let requests: Vec<(&str, u64)> = rec["twiml_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["url"].as_str().unwrap(), r["status"].as_u64().unwrap()))
        .collect();
    let (voice, menu, slot) = (app.url("/voice"), app.url("/menu"), app.url("/slot"));
    assert_eq!(requests, [(voice.as_str(), 200), (menu.as_str(), 200), (slot.as_str(), 200)]);
    assert!(rec["duration"].as_u64().is_some());
    let sid = rec["sid"].as_str().unwrap();
    assert!(sid.starts_with("CA") && sid.len() == 34);

    // What our "callbacks service" saw: signed inbound voice requests.
    let first = &app.hits("/voice")[0];
    assert!(first.signature_ok);
    for (k, v) in [
        ("CallSid", sid),
        ("From", CALLER),
        ("To", OURS),
        ("Caller", CALLER),
        ("Called", OURS),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("ApiVersion", "2010-04-01"),
        ("FromCountry", "JP"),
        ("ToCountry", "JP"),
    ] {
        assert_eq!(first.get(k), v, "{k}");
    }
    let menu_hit = &app.hits("/menu")[0];
    assert!(menu_hit.signature_ok);
    assert_eq!((menu_hit.get("Digits"), menu_hit.get("CallStatus")), ("1", "in-progress"));
    assert_eq!(app.hits("/slot")[0].get("Digits"), "2");
    let status = app.wait_for("/status", 1).await;
    assert_eq!(status.len(), 1);
    assert!(status[0].signature_ok);
    assert_eq!(
        (status[0].get("CallStatus"), status[0].get("Direction"), status[0].get("CallSid")),
        ("completed", "inbound", sid)
    );
    assert!(status[0].get("CallDuration").parse::<u64>().is_ok());

    // In the record, but not in the outbound figures.
    let calls = sim.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].direction, CallDirection::Inbound);
    let stats = sim.stats();
    assert_eq!((stats.calls_created, stats.inbound_calls, stats.peak_calls_per_second), (0, 1, 0));
    assert!(stats.by_status.is_empty());
    let (_, fetched) = get(&sim, &format!("/2010-04-01/Accounts/{}/Calls/{sid}.json", sim.config().account_sid)).await;
    assert_eq!(fetched["direction"], "inbound");
}

#[tokio::test]
async fn inbound_call_transfers_runs_out_of_keys_and_hangs_up() {
    let sim = start(fast_config()).await;
    let app = App::start(&sim.config().auth_token, answer).await;
    sim.set_number(OURS, Some(app.url("/voice")), None, None).unwrap();

    // 0 → Dial: the transfer is recorded.
    let rec = sim.inbound_call(CALLER, OURS, "0").await.unwrap();
    assert_eq!(rec.dialed, ["+81311112222"]);
    assert_eq!(rec.digits, "0");

    // No keys at all: the Gather times out and the call falls through to "Goodbye.".
    let rec = sim.inbound_call(CALLER, OURS, "").await.unwrap();
    assert_eq!(rec.says, ["Press 1 for a new time.", "Goodbye."]);
    assert_eq!((rec.digits.as_str(), rec.twiml_requests.len()), ("", 1));

    assert_eq!(sim.stats().inbound_calls, 2);

    // The caller hangs up during a long hold (speed 100: the hang-up comes 100 ms in, well after the answer).
    let slow = start(SimConfig { speed: 100.0, ..fast_config() }).await;
    slow.set_number(OURS, Some(app.url("/hold")), None, None).unwrap();
    let rec = slow.inbound_call_with_hangup(CALLER, OURS, "", Some(10.0)).await.unwrap();
    assert_eq!(rec.outcome.as_deref(), Some("caller-hangup"));
    assert_eq!(rec.status.as_str(), "completed");
    assert_eq!(rec.says, ["Please hold."]);
    // About 10 s; a loaded machine stretches real time, so only "well short of the 600 s hold" is certain.
    assert!(rec.duration.is_some_and(|d| (5..300).contains(&d)), "{:?}", rec.duration);
}
