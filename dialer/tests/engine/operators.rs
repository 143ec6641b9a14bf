//! Talking to a person, end to end: a real `dialer serve --role all`, the simulator's callees pressing 0
//! and its simulated operators' Twilio Clients ringing (or not), every callback signed. A callee reaches an
//! operator (result `transferred` only once the operator answered, with who and the handle time); nobody
//! answers and the callee, taken out of the waiting room, asks for a call back; a callee hangs up while
//! waiting (abandoned); an announcement from the management API reaches a caller in the waiting room,
//! whose campaign is meanwhile paced down because no operator is free.
//! Results and metrics are compared with the simulator's record.

use std::time::{Duration, Instant};

use dialer_core::domain::operators::Identity;
use dialer_core::domain::{ApiKeySecret, ContactState, Scope};
use dialer_sim::{Callee, Operator, OutcomeMix, SimConfig};

use crate::helpers::*;
use crate::metrics::{scrape, wait_until_up};

fn campaign(zone: &str, hold_limit_s: u32) -> String {
    format!(
        r#"
name = "front desk"
caller_id = "+14155550199"
timezone = "{zone}"
cps = 5
max_attempts = 1
[window]
start = "09:00"
end = "20:00"
[operators]
hold_limit_s = {hold_limit_s}
ring_s = 5
hold_music = ""
hold_every_s = 5
[script]
language = "en-US"
variables = ["name"]
hold_message = "Please hold, {{name}}, a member of our team will be with you shortly."
callback_offer = "Everyone is busy. Press 1 and we will call you back."
[script.menus.main]
say = "Hello {{name}}. Press 1 to confirm your delivery, or 0 to talk to us."
timeout_s = 10
[script.menus.main.options]
"1" = {{ result = "confirmed" }}
"0" = {{ operator = true, say = "Connecting you now." }}
"#
    )
}

fn sim() -> SimConfig {
    let mut c = sim_config(20.0);
    // Slow enough that the operator loop (polling every 50 ms) sees a caller wait in the room.
    c.speed = 20.0;
    c.outcomes = OutcomeMix { human: 100.0, machine: 0.0, busy: 0.0, no_answer: 0.0, failed: 0.0, invalid: 0.0 };
    c
}

const EXTRA: &[(&str, &str)] = &[("OPERATOR_POLL_MS", "50")];

/// One contact whose callee behaves as `callee` says; returns (env, campaign id, the callee's number).
async fn setup(hold_limit_s: u32, callee: impl FnOnce(String) -> Callee) -> (Env, i64, String) {
    let env = Env::new(sim()).await;
    let zone = open_zone();
    let contacts = contacts(1, Some(zone.name()), 0);
    let phone = contacts[0].phone.to_string();
    env.sim.set_callee(callee(phone.clone())).unwrap();
    let id = env.campaign(&campaign(zone.name(), hold_limit_s), &contacts).await;
    (env, id, phone)
}

async fn operator(env: &Env, name: &str, available: bool) -> i64 {
    let identity = Identity::parse(name).unwrap();
    let key = ApiKeySecret::generate();
    env.store
        .operators_create_with_key(&format!("operator:{name}"), &key, &[Scope::CampaignsRead], &identity)
        .await
        .unwrap();
    let key_id: i64 = sqlx::query_scalar("SELECT api_key_id FROM operators WHERE identity = $1")
        .bind(name)
        .fetch_one(env.store.pool())
        .await
        .unwrap();
    env.store.operators_set_available(key_id, available).await.unwrap();
    key_id
}

/// (state, operator identity, answered, ended) of the campaign's only transfer.
async fn transfer(env: &Env, campaign: i64) -> Option<(String, Option<String>, bool, bool)> {
    sqlx::query_as(
        "SELECT state, operator_identity, answered_at IS NOT NULL, ended_at IS NOT NULL FROM transfers WHERE campaign_id = $1",
    )
    .bind(campaign)
    .fetch_optional(env.store.pool())
    .await
    .unwrap()
}

async fn results(env: &Env, campaign: i64) -> Vec<String> {
    sqlx::query_scalar("SELECT result FROM results WHERE campaign_id = $1 ORDER BY id")
        .bind(campaign)
        .fetch_all(env.store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callee_who_presses_0_reaches_an_operator() {
    let (mut env, id, phone) =
        setup(120, |number| Callee { number, keys: "0".into(), hold_patience_secs: None, keys_after_hold: None }).await;
    env.sim
        .set_operator(Operator { name: "alice".into(), answer_after_secs: Some(2.0), talk_secs: Some(30.0) })
        .unwrap();
    operator(&env, "alice", true).await;
    env.spawn("all", 5.0, EXTRA);
    let base = format!("http://{}", env.callbacks_addr);
    wait_until_up(&format!("{base}/metrics")).await;

    let r = env.wait_finished(id, Duration::from_secs(90)).await;
    assert_eq!(r.by_state.get(&ContactState::Done), Some(&1), "{r:#?}");
    assert_eq!(results(&env, id).await, ["transferred"], "the result comes only once alice answered");
    let (state, who, answered, ended) = transfer(&env, id).await.expect("a transfer");
    assert_eq!((state.as_str(), who.as_deref(), answered, ended), ("ended", Some("alice"), true, true));
    let handled: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM ended_at - answered_at)::float8 FROM transfers WHERE campaign_id = $1",
    )
    .bind(id)
    .fetch_one(env.store.pool())
    .await
    .unwrap();
    assert!(handled > 0.0, "handle time is recorded: {handled}");
    // …and in the results export: who answered and for how long.
    let rows = env.store.results_export(id).await.unwrap();
    assert_eq!(rows[0].operator.as_deref(), Some("alice"));
    assert_eq!(rows[0].handle_s, Some(handled));

    // The simulator's record: the callee joined its room by TwiML, alice by the Participants API.
    let callee = env.sim.calls().into_iter().find(|c| c.to == phone).expect("the callee's call");
    let rooms = env.sim.conferences();
    assert_eq!(rooms.len(), 1, "{rooms:#?}");
    let room = &rooms[0];
    let joined: Vec<(&str, &str)> =
        room.participants.iter().map(|p| (p.to.as_str(), format!("{:?}", p.joined_by).leak() as &str)).collect();
    assert!(joined.iter().any(|(to, _)| *to == "client:alice"), "{joined:?}");
    assert!(room.participants.iter().any(|p| p.call_sid == callee.sid), "{room:#?}");
    assert!(room.started_at.is_some(), "alice's joining started the conference");
    assert!(callee.says.iter().any(|s| s.contains("Please hold")), "hold was heard: {:?}", callee.says);
    let alice = env.sim.calls().into_iter().find(|c| c.to == "client:alice").expect("alice's leg");
    assert!(alice.answered_at.is_some(), "{alice:#?}");

    let (_, m) = scrape(&format!("{base}/metrics")).await;
    assert_eq!(m.sum("dialer_transfers_total", &[("outcome", "connected")]), 1.0);
    assert_eq!(m.sum("dialer_transfers_total", &[("outcome", "abandoned")]), 0.0);
    assert_eq!(m.sum("dialer_operator_rings_total", &[("result", "answered")]), 1.0);
    assert_eq!(m.sum("dialer_transfer_requests_total", &[]), 1.0);
    assert_eq!(m.sum("dialer_operator_handle_seconds_count", &[]), 1.0);
    // Alice is free again once the conversation is over.
    let status: String = sqlx::query_scalar("SELECT engaged FROM operators WHERE identity = 'alice'")
        .fetch_one(env.store.pool())
        .await
        .unwrap();
    assert_eq!(status, "idle");
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_answers_and_the_callee_asks_for_a_call_back() {
    // Patience far beyond the hold limit (10 s real at speed 20 is 200 s simulated).
    let (mut env, id, phone) = setup(10, |number| Callee {
        number,
        keys: "0".into(),
        hold_patience_secs: Some(3000.0),
        keys_after_hold: Some("1".into()),
    })
    .await;
    env.sim.set_operator(Operator { name: "bob".into(), answer_after_secs: None, talk_secs: None }).unwrap();
    operator(&env, "bob", true).await;
    env.spawn("all", 5.0, EXTRA);
    let base = format!("http://{}", env.callbacks_addr);
    wait_until_up(&format!("{base}/metrics")).await;

    let r = env.wait_finished(id, Duration::from_secs(90)).await;
    assert_eq!(r.by_state.get(&ContactState::Done), Some(&1), "{r:#?}");
    assert_eq!(results(&env, id).await, ["callback_requested"]);
    let (state, who, answered, _) = transfer(&env, id).await.expect("a transfer");
    assert_eq!((state.as_str(), who, answered), ("callback_requested", None, false));

    let callee = env.sim.calls().into_iter().find(|c| c.to == phone).expect("the callee's call");
    assert!(callee.says.iter().any(|s| s.contains("Press 1 and we will call you back")), "{:?}", callee.says);
    // Bob was rung, did not answer, and was set away.
    let bob = env.sim.calls().into_iter().find(|c| c.to == "client:bob").expect("bob was rung");
    assert!(bob.answered_at.is_none(), "{bob:#?}");
    let (available, missed): (bool, i32) =
        sqlx::query_as("SELECT available, missed FROM operators WHERE identity = 'bob'")
            .fetch_one(env.store.pool())
            .await
            .unwrap();
    assert!(!available && missed >= 1, "bob is away after missing: {available} {missed}");

    let (_, m) = scrape(&format!("{base}/metrics")).await;
    assert_eq!(m.sum("dialer_transfers_total", &[("outcome", "callback_requested")]), 1.0);
    assert_eq!(m.sum("dialer_transfers_total", &[("outcome", "connected")]), 0.0);
    assert!(m.sum("dialer_operator_rings_total", &[("result", "missed")]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callee_who_hangs_up_while_waiting_is_abandoned() {
    let (mut env, id, phone) =
        setup(600, |number| Callee { number, keys: "0".into(), hold_patience_secs: Some(20.0), keys_after_hold: None })
            .await;
    // An operator who is away is never rung.
    operator(&env, "carol", false).await;
    env.spawn("all", 5.0, EXTRA);
    let base = format!("http://{}", env.callbacks_addr);
    wait_until_up(&format!("{base}/metrics")).await;

    let r = env.wait_finished(id, Duration::from_secs(90)).await;
    assert_eq!(r.by_state.get(&ContactState::Done), Some(&1), "{r:#?}");
    assert_eq!(results(&env, id).await, ["abandoned"]);
    assert_eq!(transfer(&env, id).await.map(|t| t.0).as_deref(), Some("abandoned"));
    let callee = env.sim.calls().into_iter().find(|c| c.to == phone).expect("the callee's call");
    assert!(env.sim.calls().iter().all(|c| !c.to.starts_with("client:")), "nobody was rung");
    let room = &env.sim.conferences()[0];
    let left = room.participants.iter().find(|p| p.call_sid == callee.sid).and_then(|p| p.left_reason.clone());
    assert_eq!(left.as_deref(), Some("participant_hung_up"), "{room:#?}");

    let (_, m) = scrape(&format!("{base}/metrics")).await;
    assert_eq!(m.sum("dialer_transfers_total", &[("outcome", "abandoned")]), 1.0);
    assert_eq!(m.sum("dialer_transfers_total", &[("outcome", "connected")]), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_announcement_from_the_api_reaches_a_caller_in_the_waiting_room() {
    let (mut env, id, phone) = setup(600, |number| Callee {
        number,
        keys: "0".into(),
        hold_patience_secs: Some(100_000.0),
        keys_after_hold: None,
    })
    .await;
    let key = ApiKeySecret::generate();
    env.store.api_keys_insert("supervisor", &key, &[Scope::CampaignsWrite, Scope::ResultsRead]).await.unwrap();
    let api_addr = format!("127.0.0.1:{}", free_port());
    let mut extra = EXTRA.to_vec();
    extra.push(("API_LISTEN_ADDR", &api_addr));
    env.spawn("all", 5.0, &extra);
    let base = format!("http://{}", env.callbacks_addr);
    wait_until_up(&format!("{base}/metrics")).await;

    // The caller waits in the room (its conference SID known from the conference's status callback).
    let start = Instant::now();
    let attempt: i64 = loop {
        let row: Option<(i64, Option<String>)> = sqlx::query_as(
            "SELECT attempt_id, conference_sid FROM transfers WHERE campaign_id = $1 AND state = 'waiting'",
        )
        .bind(id)
        .fetch_optional(env.store.pool())
        .await
        .unwrap();
        if let Some((a, Some(_))) = row {
            break a;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "nobody reached the waiting room");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A caller waits and no operator is free: the campaign is paced down to a tenth of its CPS of 5.
    let campaign_label = id.to_string();
    let start = Instant::now();
    loop {
        let (_, m) = scrape(&format!("{base}/metrics")).await;
        let limit = m.sum("dialer_campaign_cps_limit", &[("campaign", campaign_label.as_str())]);
        if (limit - 0.5).abs() < 1e-9 {
            assert_eq!(m.sum("dialer_waiting_room_callers", &[("campaign", campaign_label.as_str())]), 1.0);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the campaign was not slowed: limit {limit}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let http = reqwest::Client::new();
    let api = format!("http://{api_addr}/api/v1");
    // The live calls list shows it waiting.
    let live: serde_json::Value = http
        .get(format!("{api}/campaigns/{id}/calls"))
        .bearer_auth(key.expose())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(live["calls"][0]["attempt_id"], attempt, "{live}");
    assert_eq!(live["calls"][0]["transfer"], "waiting", "{live}");

    let text = "Thank you for waiting; your parcel is on the truck.";
    let res = http
        .post(format!("{api}/calls/{attempt}/announcements"))
        .bearer_auth(key.expose())
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{:?}", res.text().await);
    let sent: serde_json::Value = res.json().await.unwrap();
    assert_eq!(sent["via"], "conference");

    let callee = env.sim.calls().into_iter().find(|c| c.to == phone).expect("the callee's call");
    let start = Instant::now();
    loop {
        let room = env.sim.conferences().into_iter().next().expect("a room");
        if let Some(a) = room.announcements.iter().find(|a| a.says.iter().any(|s| s == text)) {
            assert!(a.heard_by.contains(&callee.sid), "{a:#?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the announcement was not heard: {room:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, m) = scrape(&format!("{base}/metrics")).await;
    assert_eq!(m.sum("dialer_announcements_total", &[("via", "conference"), ("result", "sent")]), 1.0);

    // Speaking into a call that is over is refused and names why.
    let res = http
        .post(format!("{api}/calls/{}/announcements", attempt + 1000))
        .bearer_auth(key.expose())
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
}
