//! Conferences over real HTTP: a callee waits in a conference hearing hold music, operators (`client:NAME`)
//! are added with the Participants API and answer (or not), conferences end, callees run out of patience,
//! live calls are redirected out of hold, announcements are recorded; every webhook is checked with the
//! product's signature validator.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dialer_sim::{
    CallRecord, ConferenceRecord, ConferenceStatus, DigitDist, Faults, Operator, OutcomeMix, ParticipantStatus,
    SecsRange, SimConfig, SimHandle,
};
use serde_json::{json, Value};

use crate::support::{auth, http, start, until, App, Hit};

const FROM: &str = "+81312345678";
const CALLEE: &str = "+818012340001";
const ROOM: &str = "transfer-123";

/// Everyone answers at once; unscripted callees press nothing; 100x speed (1 simulated s = 10 ms).
fn config() -> SimConfig {
    SimConfig {
        cps: 1000.0,
        speed: 100.0,
        outcomes: OutcomeMix::all_human(),
        ring_time: SecsRange::fixed(1.0),
        digits: DigitDist::always(None),
        ..SimConfig::default()
    }
}

async fn post(sim: &SimHandle, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = auth(sim, http().post(format!("{}{path}", sim.account_url()))).form(form).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

async fn get(sim: &SimHandle, path: &str) -> (u16, Value) {
    let r = auth(sim, http().get(format!("{}{path}", sim.account_url()))).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn delete(sim: &SimHandle, path: &str) -> u16 {
    auth(sim, http().delete(format!("{}{path}", sim.account_url()))).send().await.unwrap().status().as_u16()
}

async fn sim_json(sim: &SimHandle, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = http().request(method, format!("{}{path}", sim.base_url()));
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn conference(sim: &SimHandle) -> ConferenceRecord {
    let all = sim.conferences();
    assert_eq!(all.len(), 1, "{all:#?}");
    all[0].clone()
}

/// Waits until the call is in a conference (connected) and returns the conference.
async fn in_conference(sim: &SimHandle, call: &str) -> ConferenceRecord {
    until("the callee in the conference", || {
        sim.conferences()
            .into_iter()
            .find(|c| c.participants.iter().any(|p| p.call_sid == call && p.status == ParticipantStatus::Connected))
    })
    .await
}

// ---- the application: TwiML and callbacks -------------------------------------------------------------

/// The product's side: the callee's TwiML puts it in the waiting room `transfer-123`.
fn answer(app: &App, hit: &Hit) -> Response {
    let xml = |s: String| ([("Content-Type", "text/xml")], s).into_response();
    match hit.path.as_str() {
        "/callee" => xml(format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Connecting you to an operator.</Say>
               <Dial action="{dial}" method="POST"><Conference waitUrl="{wait}" waitMethod="POST"
                 startConferenceOnEnter="false" endConferenceOnExit="true" beep="false"
                 statusCallback="{status}" statusCallbackMethod="POST"
                 statusCallbackEvent="start end join leave">{ROOM}</Conference></Dial></Response>"#,
            dial = app.url("/dial-done"),
            wait = app.url("/wait"),
            status = app.url("/conference-status"),
        )),
        "/wait" => xml(r#"<Response><Say>Please hold.</Say><Pause length="2"/></Response>"#.into()),
        "/dial-done" => xml("<Response><Say>Thank you, goodbye.</Say><Hangup/></Response>".into()),
        "/menu" => xml(r#"<Response><Gather action="/menu-done" numDigits="1" timeout="5">
                 <Say>Press 1 to be called back.</Say></Gather><Say>Goodbye.</Say></Response>"#
            .into()),
        "/menu-done" => xml("<Response><Say>We will call you back.</Say><Hangup/></Response>".into()),
        "/announce-all" => xml("<Response><Say>This call is recorded.</Say></Response>".into()),
        "/announce-one" => xml("<Response><Say>Your caller is waiting.</Say></Response>".into()),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

/// The callee's call: answered at once, its TwiML puts it in the waiting room.
async fn call_callee(sim: &SimHandle, app: &App, to: &str) -> String {
    let (twiml, status) = (app.url("/callee"), app.url("/callee-status"));
    let (code, body) =
        post(sim, "/Calls.json", &[("To", to), ("From", FROM), ("Url", &twiml), ("StatusCallback", &status)]).await;
    assert_eq!(code, 201, "{body}");
    body["sid"].as_str().unwrap().to_string()
}

/// Adds `to` (`client:NAME` or a number) to the waiting room, with its call-progress callbacks at
/// `/leg-status`.
async fn add_participant(sim: &SimHandle, app: &App, conference: &str, to: &str, extra: &[(&str, &str)]) -> Value {
    let status = app.url("/leg-status");
    let mut form = vec![
        ("From", FROM),
        ("To", to),
        ("StatusCallback", status.as_str()),
        ("StatusCallbackMethod", "POST"),
        ("StatusCallbackEvent", "initiated ringing answered completed"),
    ];
    form.extend_from_slice(extra);
    let (code, body) = post(sim, &format!("/Conferences/{conference}/Participants.json"), &form).await;
    assert_eq!(code, 201, "{body}");
    body
}

fn call(sim: &SimHandle, sid: &str) -> CallRecord {
    sim.call(sid).unwrap()
}

fn count(says: &[String], text: &str) -> usize {
    says.iter().filter(|s| s.as_str() == text).count()
}

// ---- the tests ----------------------------------------------------------------------------------------

#[tokio::test]
async fn a_callee_holds_until_an_operator_answers_then_its_dial_completes() {
    let config = config();
    let app = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    let (code, ops) = sim_json(
        &sim,
        reqwest::Method::POST,
        "/sim/operators",
        Some(json!({"name": "alice", "answer_after_secs": 10.0, "talk_secs": 5.0})),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(ops, json!([{"name": "alice", "answer_after_secs": 10.0, "talk_secs": 5.0}]));

    let callee = call_callee(&sim, &app, CALLEE).await;
    let waiting = in_conference(&sim, &callee).await;
    assert_eq!(waiting.friendly_name, ROOM);
    assert_eq!(waiting.status, ConferenceStatus::Init, "startConferenceOnEnter=false: nobody started it");
    let cf = waiting.sid.clone();
    assert!(cf.len() == 34 && cf.starts_with("CF") && cf[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    let (code, listed) = get(&sim, &format!("/Conferences.json?FriendlyName={ROOM}&Status=init")).await;
    assert_eq!(code, 200);
    assert_eq!(listed["conferences"][0]["sid"], cf.as_str());

    // The operator is added by FriendlyName, like the product does.
    let p =
        add_participant(&sim, &app, ROOM, "client:alice", &[("Label", "operator"), ("EndConferenceOnExit", "true")])
            .await;
    let account = sim.config().account_sid.clone();
    let leg = p["call_sid"].as_str().unwrap().to_string();
    assert!(leg.starts_with("CA") && leg.len() == 34);
    assert_eq!(p["account_sid"], account.as_str());
    assert_eq!(p["conference_sid"], cf.as_str());
    assert_eq!(p["label"], "operator");
    assert_eq!(p["status"], "queued");
    assert_eq!((p["hold"].as_bool(), p["muted"].as_bool()), (Some(false), Some(false)));
    assert_eq!(p["start_conference_on_enter"], true, "Twilio's default");
    assert_eq!(p["end_conference_on_exit"], true);
    assert!(chrono::DateTime::parse_from_rfc2822(p["date_created"].as_str().unwrap()).is_ok());
    assert_eq!(p["uri"], format!("/2010-04-01/Accounts/{account}/Conferences/{cf}/Participants/{leg}.json"));

    // The operator answers, talks and hangs up; the conference ends and the callee's Dial completes.
    assert!(sim.wait_idle(Duration::from_secs(10)).await);
    let done = app.wait_for_at("/dial-done", 1).await;
    assert_eq!(done[0].get("DialCallStatus"), "completed");
    assert!(done[0].get("DialCallDuration").parse::<u64>().unwrap() >= 5, "{:?}", done[0]);
    assert_eq!(done[0].get("CallSid"), callee);
    assert!(done[0].signature_ok);

    let c = call(&sim, &callee);
    assert_eq!(c.status.as_str(), "completed");
    assert!(!c.abandoned_in_conference);
    assert_eq!(c.conferences, [cf.as_str()]);
    assert!(count(&c.says, "Please hold.") >= 2, "hold music plays over and over: {:?}", c.says);
    assert_eq!(c.says.last().map(String::as_str), Some("Thank you, goodbye."));
    let holds = app.hits_at("/wait");
    assert!(holds.len() >= 2);
    assert!(holds.iter().all(|h| h.signature_ok && h.get("ConferenceSid") == cf && h.get("CallSid") == callee));

    // The operator leg: a call to client:alice, in the record and the Calls API.
    let op = call(&sim, &leg);
    assert_eq!((op.to.as_str(), op.from.as_str()), ("client:alice", FROM));
    assert_eq!(op.status.as_str(), "completed");
    assert!(op.duration.unwrap() >= 5);
    let (code, fetched) = get(&sim, &format!("/Calls/{leg}.json")).await;
    assert_eq!(
        (code, fetched["to"].as_str(), fetched["direction"].as_str()),
        (200, Some("client:alice"), Some("outbound-api"))
    );
    let legs = app.wait_for_at("/leg-status", 4).await;
    let statuses: Vec<&str> = legs.iter().map(|h| h.get("CallStatus")).collect();
    assert_eq!(statuses, ["initiated", "ringing", "in-progress", "completed"]);
    assert!(legs.iter().all(|h| h.signature_ok && h.get("CallSid") == leg && h.get("To") == "client:alice"));
    assert!(legs.iter().all(|h| h.get("Direction") == "outbound-api"));
    assert_eq!(legs.iter().map(|h| h.get("SequenceNumber")).collect::<Vec<_>>(), ["0", "1", "2", "3"]);
    assert!(legs[3].get("CallDuration").parse::<u64>().unwrap() >= 5);

    // The conference and its signed status callbacks.
    let conf = conference(&sim);
    assert_eq!(conf.status, ConferenceStatus::Completed);
    assert_eq!(conf.reason_conference_ended.as_deref(), Some("participant-with-end-conference-on-exit-left"));
    assert_eq!(conf.call_sid_ending_conference.as_deref(), Some(leg.as_str()));
    assert!(conf.started_at.is_some() && conf.ended_at.is_some());
    let roles: Vec<(&str, &str, &str)> =
        conf.participants.iter().map(|p| (p.call_sid.as_str(), p.to.as_str(), p.from.as_str())).collect();
    assert_eq!(roles, [(callee.as_str(), CALLEE, FROM), (leg.as_str(), "client:alice", FROM)]);
    assert!(conf.participants.iter().all(|p| p.joined_at.is_some() && p.left_at.is_some()));
    let events: Vec<(&str, Option<&str>)> =
        conf.events.iter().map(|e| (e.event.as_str(), e.call_sid.as_deref())).collect();
    assert_eq!(
        events,
        [
            ("participant-join", Some(callee.as_str())),
            ("participant-join", Some(leg.as_str())),
            ("conference-start", None),
            ("participant-leave", Some(leg.as_str())),
            ("participant-leave", Some(callee.as_str())),
            ("conference-end", None),
        ]
    );
    let cbs = app.wait_for_at("/conference-status", 6).await;
    let mut seq: Vec<(u32, &str)> =
        cbs.iter().map(|h| (h.get("SequenceNumber").parse().unwrap(), h.get("StatusCallbackEvent"))).collect();
    seq.sort();
    let order: Vec<&str> = seq.iter().map(|(_, e)| *e).collect();
    assert_eq!(
        order,
        [
            "participant-join",
            "participant-join",
            "conference-start",
            "participant-leave",
            "participant-leave",
            "conference-end"
        ]
    );
    for h in &cbs {
        assert!(h.signature_ok, "conference callbacks are signed: {h:?}");
        assert_eq!(
            (h.get("AccountSid"), h.get("ConferenceSid"), h.get("FriendlyName")),
            (account.as_str(), cf.as_str(), ROOM)
        );
        assert!(chrono::DateTime::parse_from_rfc2822(h.get("Timestamp")).is_ok());
        if h.get("StatusCallbackEvent").starts_with("participant-") {
            assert!([callee.as_str(), leg.as_str()].contains(&h.get("CallSid")));
            for k in ["Muted", "Hold", "EndConferenceOnExit", "StartConferenceOnEnter"] {
                assert!(["true", "false"].contains(&h.get(k)), "{k} in {h:?}");
            }
        }
    }
    let callee_join =
        cbs.iter().find(|h| h.get("StatusCallbackEvent") == "participant-join" && h.get("CallSid") == callee);
    let callee_join = callee_join.unwrap();
    assert_eq!((callee_join.get("StartConferenceOnEnter"), callee_join.get("EndConferenceOnExit")), ("false", "true"));
    let end = cbs.iter().find(|h| h.get("StatusCallbackEvent") == "conference-end").unwrap();
    assert_eq!(end.get("ReasonConferenceEnded"), "participant-with-end-conference-on-exit-left");
    assert_eq!(end.get("CallSidEndingConference"), leg);

    // The finished conference through the API.
    let (code, c) = get(&sim, &format!("/Conferences/{cf}.json")).await;
    assert_eq!(code, 200);
    assert_eq!((c["status"].as_str(), c["friendly_name"].as_str()), (Some("completed"), Some(ROOM)));
    assert_eq!(c["uri"], format!("/2010-04-01/Accounts/{account}/Conferences/{cf}.json"));
    assert_eq!(
        c["subresource_uris"]["participants"],
        format!("/2010-04-01/Accounts/{account}/Conferences/{cf}/Participants.json")
    );
    let (_, none) = get(&sim, &format!("/Conferences/{cf}/Participants.json")).await;
    assert_eq!(none["participants"], json!([]), "only participants still there are listed");
}

#[tokio::test]
async fn an_operator_who_never_answers_gives_no_answer_and_the_room_ends_by_api() {
    // 20x: the 5 s ring of the leg is 250 ms.
    let config = SimConfig { speed: 20.0, operators: vec!["bob=never".parse::<Operator>().unwrap()], ..config() };
    let app = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    let (_, ops) = sim_json(&sim, reqwest::Method::GET, "/sim/operators", None).await;
    assert_eq!(ops, json!([{"name": "bob", "answer_after_secs": null, "talk_secs": null}]));

    let callee = call_callee(&sim, &app, CALLEE).await;
    let cf = in_conference(&sim, &callee).await.sid;
    let p = add_participant(&sim, &app, &cf, "client:bob", &[("Timeout", "5")]).await;
    let leg = p["call_sid"].as_str().unwrap().to_string();
    // A leg on its way is a participant already.
    let (code, list) = get(&sim, &format!("/Conferences/{cf}/Participants.json")).await;
    assert_eq!(code, 200);
    let listed: Vec<&str> =
        list["participants"].as_array().unwrap().iter().map(|p| p["call_sid"].as_str().unwrap()).collect();
    assert!(listed.contains(&leg.as_str()) && listed.contains(&callee.as_str()), "{list}");

    let legs = app.wait_for_at("/leg-status", 3).await;
    let statuses: Vec<&str> = legs.iter().map(|h| h.get("CallStatus")).collect();
    assert_eq!(statuses, ["initiated", "ringing", "no-answer"]);
    assert_eq!(legs[2].get("CallDuration"), "0");
    assert!(legs.iter().all(|h| h.signature_ok));
    let op = call(&sim, &leg);
    assert_eq!((op.status.as_str(), op.to.as_str(), op.answered_at.as_deref()), ("no-answer", "client:bob", None));

    // A client nobody configured never answers either.
    let p = add_participant(&sim, &app, &cf, "client:nobody", &[("Timeout", "5")]).await;
    let nobody = p["call_sid"].as_str().unwrap().to_string();
    until("the unknown client's no-answer", || (call(&sim, &nobody).status.as_str() == "no-answer").then_some(()))
        .await;

    // The callee still waits; ending the conference through the API sends it on to its Dial action.
    let conf = conference(&sim);
    assert_eq!(conf.status, ConferenceStatus::Init);
    let failed: Vec<_> = conf.participants.iter().filter(|p| p.status == ParticipantStatus::Failed).collect();
    assert_eq!(failed.len(), 2, "the unanswered legs never joined: {conf:#?}");
    assert!(!conf.events.iter().any(|e| e.call_sid.as_deref() == Some(leg.as_str())), "no join, no leave");
    let (code, body) = post(&sim, &format!("/Conferences/{cf}.json"), &[("Status", "completed")]).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("completed")));
    assert_eq!(body["reason_conference_ended"], "conference-ended-via-api");
    let done = app.wait_for_at("/dial-done", 1).await;
    assert_eq!(done[0].get("DialCallStatus"), "completed");
    assert!(sim.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(call(&sim, &callee).status.as_str(), "completed");
    let (code, body) =
        post(&sim, &format!("/Conferences/{cf}/Participants.json"), &[("From", FROM), ("To", "client:bob")]).await;
    assert_eq!((code, body["code"].as_u64()), (400, Some(20001)), "no participant joins an ended conference: {body}");
    // The same FriendlyName makes a new room.
    let p = add_participant(&sim, &app, ROOM, "client:bob", &[]).await;
    assert_ne!(p["conference_sid"], cf.as_str());
}

#[tokio::test]
async fn an_impatient_callee_hangs_up_on_hold() {
    let config = config();
    let app = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    let (code, _) = sim_json(
        &sim,
        reqwest::Method::POST,
        "/sim/callees",
        Some(json!({"number": "+81 80 1234 0001", "keys": "", "hold_patience_secs": 5.0})),
    )
    .await;
    assert_eq!(code, 200);
    let (_, callees) = sim_json(&sim, reqwest::Method::GET, "/sim/callees", None).await;
    assert_eq!(callees[0]["number"], CALLEE, "stored in E.164");

    let callee = call_callee(&sim, &app, CALLEE).await;
    assert!(sim.wait_idle(Duration::from_secs(10)).await);
    let c = call(&sim, &callee);
    assert_eq!(c.status.as_str(), "completed");
    assert!(c.abandoned_in_conference, "{c:#?}");
    assert!(!c.ended_by_update);
    assert!(c.says.contains(&"Please hold.".to_string()));
    assert!(app.hits_at("/dial-done").is_empty(), "a callee who hangs up never reaches the Dial action");
    let conf = conference(&sim);
    assert_eq!(conf.status, ConferenceStatus::Completed);
    assert_eq!(conf.reason_conference_ended.as_deref(), Some("participant-with-end-conference-on-exit-left"));
    assert_eq!(conf.participants[0].left_reason.as_deref(), Some("participant_hung_up"));
    let cbs = app.wait_for_at("/conference-status", 3).await;
    let mut seq: Vec<(u32, &str, &str)> = cbs
        .iter()
        .map(|h| (h.get("SequenceNumber").parse().unwrap(), h.get("StatusCallbackEvent"), h.get("CallSid")))
        .collect();
    seq.sort();
    assert_eq!(
        seq,
        [
            (0, "participant-join", callee.as_str()),
            (1, "participant-leave", callee.as_str()),
            (2, "conference-end", "")
        ]
    );
    let status = app.wait_for_at("/callee-status", 1).await;
    assert_eq!(status[0].get("CallStatus"), "completed");
}

#[tokio::test]
async fn a_redirect_takes_a_callee_out_of_hold_into_a_gather() {
    let config = config();
    let app = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    sim.set_callee(dialer_sim::Callee {
        number: CALLEE.into(),
        keys: String::new(),
        hold_patience_secs: None,
        keys_after_hold: Some("1".into()),
    })
    .unwrap();
    let callee = call_callee(&sim, &app, CALLEE).await;
    in_conference(&sim, &callee).await;
    app.wait_for_at("/wait", 1).await;

    let menu = app.url("/menu");
    let (code, body) = post(&sim, &format!("/Calls/{callee}.json"), &[("Url", &menu), ("Method", "POST")]).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("in-progress")), "{body}");
    let done = app.wait_for_at("/menu-done", 1).await;
    assert_eq!(done[0].get("Digits"), "1", "the callee's after-hold keys");
    assert!(done[0].signature_ok);
    assert!(sim.wait_idle(Duration::from_secs(10)).await);

    let c = call(&sim, &callee);
    assert_eq!(c.digits, "1");
    assert!(!c.abandoned_in_conference);
    let menu_at = c.says.iter().position(|s| s == "Press 1 to be called back.").expect("the menu was said");
    assert!(c.says[..menu_at].contains(&"Please hold.".to_string()));
    assert_eq!(c.says.last().map(String::as_str), Some("We will call you back."));
    assert!(app.hits_at("/dial-done").is_empty(), "redirected out: the Dial action is not asked");
    let menu_req = app.wait_for_at("/menu", 1).await;
    assert_eq!((menu_req[0].get("CallSid"), menu_req[0].get("CallStatus")), (callee.as_str(), "in-progress"));

    let conf = conference(&sim);
    assert_eq!(conf.participants[0].left_reason.as_deref(), Some("participant_updated_via_api"));
    assert_eq!(conf.status, ConferenceStatus::Completed, "the callee had endConferenceOnExit");
    assert!(conf
        .events
        .iter()
        .any(|e| e.event == "participant-leave" && e.call_sid.as_deref() == Some(callee.as_str())));

    // An ended call cannot be redirected.
    let (code, body) = post(&sim, &format!("/Calls/{callee}.json"), &[("Url", &menu)]).await;
    assert_eq!((code, body["code"].as_u64()), (400, Some(21220)));
    assert_eq!(body["message"], "Call is not in-progress. Cannot redirect.");
}

#[tokio::test]
async fn a_redirect_interrupts_a_say_and_inline_twiml_replaces_a_queued_calls_url() {
    let config = SimConfig { cps: 1.0, ..config() };
    let app = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    // The first call talks for a long time; the second waits a second in the CPS queue.
    let long = format!("<Response><Say>{}</Say></Response>", "blah ".repeat(2000));
    let (code, first) = post(&sim, "/Calls.json", &[("To", CALLEE), ("From", FROM), ("Twiml", &long)]).await;
    assert_eq!(code, 201);
    let first = first["sid"].as_str().unwrap().to_string();
    let (_, queued) =
        post(&sim, "/Calls.json", &[("To", "+818012340002"), ("From", FROM), ("Url", &app.url("/menu"))]).await;
    let queued = queued["sid"].as_str().unwrap().to_string();
    let (code, body) =
        post(&sim, &format!("/Calls/{queued}.json"), &[("Twiml", "<Response><Say>Replaced.</Say></Response>")]).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("queued")));

    until("the long Say", || (call(&sim, &first).says.len() == 1).then_some(())).await;
    let (code, _) =
        post(&sim, &format!("/Calls/{first}.json"), &[("Twiml", "<Response><Say>Interrupted.</Say></Response>")]).await;
    assert_eq!(code, 200);
    assert!(sim.wait_idle(Duration::from_secs(10)).await);
    let c = call(&sim, &first);
    assert_eq!(c.says.last().map(String::as_str), Some("Interrupted."));
    assert!(c.duration.unwrap() < 600, "the 10000-character Say was cut short");
    assert_eq!(call(&sim, &queued).says, ["Replaced."]);
    assert!(app.hits_at("/menu").is_empty(), "the replaced Url is never fetched");
}

#[tokio::test]
async fn announcements_hold_mute_and_removing_an_operator() {
    let config = config();
    let app = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    sim.set_operator(Operator { name: "carol".into(), answer_after_secs: Some(1.0), talk_secs: Some(100_000.0) })
        .unwrap();
    let callee = call_callee(&sim, &app, CALLEE).await;
    let cf = in_conference(&sim, &callee).await.sid;
    let p = add_participant(&sim, &app, &cf, "client:carol", &[("Label", "op"), ("EndConferenceOnExit", "true")]).await;
    let leg = p["call_sid"].as_str().unwrap().to_string();
    until("the conference to start", || (conference(&sim).status == ConferenceStatus::InProgress).then_some(())).await;

    // To everyone in the conference, then to the operator alone.
    let (code, c) = post(&sim, &format!("/Conferences/{cf}.json"), &[("AnnounceUrl", &app.url("/announce-all"))]).await;
    assert_eq!((code, c["status"].as_str()), (200, Some("in-progress")));
    let (code, body) = post(
        &sim,
        &format!("/Conferences/{cf}/Participants/{leg}.json"),
        &[("AnnounceUrl", &app.url("/announce-one")), ("AnnounceMethod", "POST")],
    )
    .await;
    assert_eq!((code, body["call_sid"].as_str()), (200, Some(leg.as_str())));
    let conf = until("both announcements", || {
        let c = conference(&sim);
        (c.announcements.len() == 2).then_some(c)
    })
    .await;
    let all = conf.announcements.iter().find(|a| a.call_sid.is_none()).unwrap();
    assert_eq!((all.url.as_str(), all.status), (app.url("/announce-all").as_str(), Some(200)));
    assert_eq!(all.says, ["This call is recorded."]);
    let mut heard = all.heard_by.clone();
    heard.sort();
    let mut both = vec![callee.clone(), leg.clone()];
    both.sort();
    assert_eq!(heard, both);
    assert_eq!(count(&call(&sim, &callee).says, "This call is recorded."), 1);
    let op_says = call(&sim, &leg).says;
    assert_eq!(count(&op_says, "This call is recorded."), 1, "{op_says:?}");
    assert_eq!(count(&op_says, "Your caller is waiting."), 1, "{op_says:?}");
    assert_eq!(count(&call(&sim, &callee).says, "Your caller is waiting."), 0, "the callee did not hear that one");
    assert!(app.hits_at("/announce-all").iter().chain(app.hits_at("/announce-one").iter()).all(|h| h.signature_ok));

    // Hold and mute, fetched by label and by call sid.
    let (code, body) =
        post(&sim, &format!("/Conferences/{cf}/Participants/op.json"), &[("Hold", "true"), ("Muted", "true")]).await;
    assert_eq!((code, body["hold"].as_bool(), body["muted"].as_bool()), (200, Some(true), Some(true)));
    let (code, body) = get(&sim, &format!("/Conferences/{cf}/Participants/{leg}.json")).await;
    assert_eq!((code, body["status"].as_str(), body["hold"].as_bool()), (200, Some("connected"), Some(true)));
    let (_, held) = get(&sim, &format!("/Conferences/{cf}/Participants.json?Hold=true")).await;
    assert_eq!(held["participants"].as_array().unwrap().len(), 1);

    // Removing the operator (endConferenceOnExit) ends the room: its leg completes, the callee's Dial too.
    assert_eq!(delete(&sim, &format!("/Conferences/{cf}/Participants/{leg}.json")).await, 204);
    assert!(sim.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(call(&sim, &leg).status.as_str(), "completed");
    let done = app.wait_for_at("/dial-done", 1).await;
    assert_eq!(done[0].get("DialCallStatus"), "completed");
    let conf = conference(&sim);
    assert_eq!(conf.reason_conference_ended.as_deref(), Some("participant-with-end-conference-on-exit-kicked"));
    let op = conf.participants.iter().find(|p| p.call_sid == leg).unwrap();
    assert_eq!((op.left_reason.as_deref(), op.hold, op.muted), (Some("participant_kicked"), true, true));
    assert_eq!(get(&sim, &format!("/Conferences/{cf}/Participants/{leg}.json")).await.0, 404, "gone");
}

#[tokio::test]
async fn unknown_conferences_and_participants_are_404() {
    let sim = start(config()).await;
    let account = sim.config().account_sid.clone();
    let nope = "CF00000000000000000000000000000000";
    for path in [
        format!("/Conferences/{nope}.json"),
        format!("/Conferences/{nope}/Participants.json"),
        format!("/Conferences/{nope}/Participants/CA00000000000000000000000000000000.json"),
    ] {
        let (code, body) = get(&sim, &path).await;
        assert_eq!((code, body["code"].as_u64(), body["status"].as_u64()), (404, Some(20404), Some(404)), "{path}");
        assert_eq!(body["more_info"], "https://www.twilio.com/docs/errors/20404");
    }
    let (code, body) = post(&sim, &format!("/Conferences/{nope}.json"), &[("Status", "completed")]).await;
    assert_eq!((code, body["code"].as_u64()), (404, Some(20404)));
    let (code, body) =
        post(&sim, &format!("/Conferences/{nope}/Participants.json"), &[("From", FROM), ("To", "client:a")]).await;
    assert_eq!((code, body["code"].as_u64()), (404, Some(20404)), "a sid names an existing conference");
    assert_eq!(delete(&sim, &format!("/Conferences/{nope}/Participants/x.json")).await, 404);
    let (code, list) = get(&sim, "/Conferences.json").await;
    assert_eq!((code, list["conferences"].clone()), (200, json!([])));
    assert!(list["uri"].as_str().unwrap().starts_with(&format!("/2010-04-01/Accounts/{account}/Conferences.json")));

    // A participant in a room that does not exist yet creates it; a bad To is Twilio's 21211.
    let (code, body) =
        post(&sim, "/Conferences/new-room/Participants.json", &[("From", FROM), ("To", "sip:x@example.com")]).await;
    assert_eq!((code, body["code"].as_u64()), (400, Some(21211)));
    assert!(sim.conferences().is_empty(), "a refused participant creates nothing");
    let (code, body) =
        post(&sim, "/Conferences/new-room/Participants.json", &[("From", FROM), ("To", "client:a")]).await;
    assert_eq!(code, 201, "{body}");
    let (_, c) = get(&sim, "/Conferences/new-room.json").await;
    assert_eq!((c["friendly_name"].as_str(), c["status"].as_str()), (Some("new-room"), Some("init")));
    assert_eq!(c["sid"], body["conference_sid"]);
}

#[tokio::test]
async fn participant_legs_are_refused_like_call_creates() {
    let config = SimConfig { faults: Faults { rate_429: 1.0, ..Faults::default() }, ..config() };
    let sim = start(config).await;
    let r = auth(&sim, http().post(format!("{}/Conferences/room/Participants.json", sim.account_url())))
        .form(&[("From", FROM), ("To", "client:alice")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], 20429);
    assert!(sim.calls().is_empty() && sim.conferences().is_empty());
    assert_eq!(sim.stats().create_errors, [(20429, 1)].into());
}

#[tokio::test]
async fn when_the_callee_leaves_first_the_operator_leg_completes_and_a_late_operator_hangs_up_at_once() {
    let config = config();
    let app = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    sim.set_operator(Operator { name: "alice".into(), answer_after_secs: Some(1.0), talk_secs: Some(100_000.0) })
        .unwrap();
    sim.set_operator(Operator { name: "dave".into(), answer_after_secs: Some(30.0), talk_secs: None }).unwrap();
    let callee = call_callee(&sim, &app, CALLEE).await;
    let cf = in_conference(&sim, &callee).await.sid;
    let alice = add_participant(&sim, &app, &cf, "client:alice", &[]).await["call_sid"].as_str().unwrap().to_string();
    let dave = add_participant(&sim, &app, &cf, "client:dave", &[]).await["call_sid"].as_str().unwrap().to_string();
    until("alice in the conference", || (conference(&sim).status == ConferenceStatus::InProgress).then_some(())).await;

    // The callee (endConferenceOnExit) hangs up: the room ends, alice's leg completes.
    let (code, _) = post(&sim, &format!("/Calls/{callee}.json"), &[("Status", "completed")]).await;
    assert_eq!(code, 200);
    until("alice's leg to end", || (call(&sim, &alice).status.as_str() == "completed").then_some(())).await;
    let conf = conference(&sim);
    assert_eq!(conf.status, ConferenceStatus::Completed);
    assert_eq!(conf.reason_conference_ended.as_deref(), Some("participant-with-end-conference-on-exit-left"));
    assert_eq!(conf.call_sid_ending_conference.as_deref(), Some(callee.as_str()));
    assert!(app.hits_at("/dial-done").is_empty(), "the callee hung up: no Dial action");

    // Dave answers after the end: his leg is answered and completes at once, and he never joins.
    assert!(sim.wait_idle(Duration::from_secs(10)).await);
    let d = call(&sim, &dave);
    assert_eq!(d.status.as_str(), "completed");
    assert!(d.answered_at.is_some());
    assert!(d.duration.unwrap() <= 1, "{d:#?}");
    assert!(d.conferences.is_empty());
    let conf = conference(&sim);
    let p = conf.participants.iter().find(|p| p.call_sid == dave).unwrap();
    assert_eq!((p.status, p.joined_at.as_deref()), (ParticipantStatus::Failed, None));
    assert!(!conf.events.iter().any(|e| e.call_sid.as_deref() == Some(dave.as_str())));
}

#[tokio::test]
async fn a_ringing_operator_leg_is_canceled_by_the_calls_api() {
    let config = SimConfig { operators: vec!["erin=never".parse().unwrap()], ..config() };
    let app = App::start(&config.auth_token, answer).await;
    let sim = start(config).await;
    let callee = call_callee(&sim, &app, CALLEE).await;
    let cf = in_conference(&sim, &callee).await.sid;
    let leg = add_participant(&sim, &app, &cf, "client:erin", &[]).await["call_sid"].as_str().unwrap().to_string();
    until("the leg to ring", || (call(&sim, &leg).status.as_str() == "ringing").then_some(())).await;
    // A Url update while ringing only replaces its instructions: it keeps ringing.
    let (code, body) = post(&sim, &format!("/Calls/{leg}.json"), &[("Url", &app.url("/menu"))]).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("ringing")));
    let (code, body) = post(&sim, &format!("/Calls/{leg}.json"), &[("Status", "canceled")]).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("canceled")));
    let legs = app.wait_for_at("/leg-status", 3).await;
    assert_eq!(legs.iter().map(|h| h.get("CallStatus")).collect::<Vec<_>>(), ["initiated", "ringing", "canceled"]);
    let conf = conference(&sim);
    assert_eq!(conf.participants.iter().find(|p| p.call_sid == leg).unwrap().status, ParticipantStatus::Failed);
    assert_eq!(conf.status, ConferenceStatus::Init, "the callee still waits");
    assert!(app.hits_at("/menu").is_empty());
}
