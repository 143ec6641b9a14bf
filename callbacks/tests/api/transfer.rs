//! The waiting room over real HTTP: the operator key answers `<Dial><Conference>` (checked against
//! Twilio's TwiML model) and records no result yet; hold and the call-back offer speak the script's
//! texts; an operator leg's status callbacks, duplicated and in any order, connect the caller once
//! (result `transferred`, operator busy then idle); a leg of an earlier ring changes nothing; forged
//! signatures on every new route are refused with nothing written.

use std::sync::atomic::{AtomicU32, Ordering};

use dialer_core::domain::operators::Identity;
use dialer_core::domain::{ApiKeySecret, CallSid, Scope};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::helpers::{form, Call, TestApp};

const CAMPAIGN: &str = r#"
name = "front desk"
caller_id = "+14155550199"
timezone = "America/New_York"
[window]
start = "09:00"
end = "20:00"
[operators]
hold_limit_s = 60
ring_s = 15
hold_music = ""
[script]
language = "en-US"
variables = ["name"]
hold_message = "Please hold, {name}."
callback_offer = "Everyone is busy. Press 1 for a call back."
[script.menus.main]
say = "Hello {name}. Press 0 to talk to us."
[script.menus.main.options]
"0" = { operator = true }
"#;

async fn setup(app: &TestApp, phone: &str) -> Call {
    let campaign = app.campaign(CAMPAIGN).await;
    app.call(app.contact(campaign, phone, "Ada").await).await
}

async fn press_0(app: &TestApp, call: &Call) -> String {
    let path = format!("/gather/{}?menu=main&n=0", call.token);
    let r = app.post(&path, &form(&[("CallSid", call.sid.as_str()), ("Digits", "0")])).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

async fn operator(app: &TestApp, name: &str) -> i64 {
    let secret = ApiKeySecret::generate();
    let id = app
        .store
        .operators_create_with_key(
            &format!("operator:{name}"),
            &secret,
            &[Scope::CampaignsRead],
            &Identity::parse(name).unwrap(),
        )
        .await
        .unwrap();
    let key: i64 = app.scalar_i64(&format!("SELECT api_key_id FROM operators WHERE id = {id}")).await;
    app.store.operators_set_available(key, true).await.unwrap();
    id
}

async fn state(app: &TestApp, call: &Call) -> (String, Option<String>, i64, String) {
    sqlx::query_as(
        "SELECT t.state, t.operator_identity,
                (SELECT count(*) FROM results r WHERE r.attempt_id = t.attempt_id AND r.result = 'transferred'),
                o.engaged
         FROM transfers t JOIN operators o ON o.id = t.ring_operator_id WHERE t.attempt_id = $1",
    )
    .bind(call.attempt_id)
    .fetch_one(app.store.pool())
    .await
    .unwrap()
}

fn leg(sid: &CallSid, status: &str, seq: u32) -> Vec<(String, String)> {
    form(&[
        ("CallSid", sid.as_str()),
        ("CallStatus", status),
        ("To", "client:alice"),
        ("From", "+14155550199"),
        ("Direction", "outbound-api"),
        ("SequenceNumber", &seq.to_string()),
    ])
}

#[tokio::test]
async fn the_operator_key_opens_a_waiting_room_and_records_no_result_yet() {
    let app = TestApp::spawn().await;
    let call = setup(&app, "+12125550101").await;
    let twiml = press_0(&app, &call).await;
    let name = format!("transfer-{}", call.attempt_id);
    assert!(twiml.contains(&format!(">{name}</Conference></Dial>")), "{twiml}");
    assert!(twiml.contains(&format!("action=\"{}/transfer/done/{}\"", app.base, call.token)), "{twiml}");
    assert!(twiml.contains("startConferenceOnEnter=\"false\""), "{twiml}");
    assert!(twiml.contains("endConferenceOnExit=\"true\""), "{twiml}");
    assert!(twiml.contains(&format!("waitUrl=\"{}/transfer/hold/{}\"", app.base, call.token)), "{twiml}");
    if let Some(model) = testkit::twiml_voice_model() {
        assert_eq!(testkit::twiml_model_errors(&model, &twiml), Vec::<String>::new());
    }
    assert_eq!(
        app.scalar_i64(&format!("SELECT count(*) FROM results WHERE attempt_id = {}", call.attempt_id)).await,
        0
    );
    assert_eq!(
        app.scalar_i64(&format!(
            "SELECT count(*) FROM transfers WHERE attempt_id = {} AND state = 'waiting'",
            call.attempt_id
        ))
        .await,
        1
    );
    // Twilio retrying the keypress request reuses the room.
    press_0(&app, &call).await;
    assert_eq!(app.scalar_i64("SELECT count(*) FROM transfers").await, 1);

    // Hold: the script's text, then a pause (no music configured); the offer, a Gather for key 1.
    let hold = app.post(&format!("/transfer/hold/{}", call.token), &form(&[("CallSid", call.sid.as_str())])).await;
    let hold = hold.text().await.unwrap();
    assert!(hold.contains("Please hold, Ada.") && hold.contains("<Pause length=\"20\"/>"), "{hold}");
    let offer = app.post(&format!("/transfer/offer/{}", call.token), &form(&[("CallSid", call.sid.as_str())])).await;
    let offer = offer.text().await.unwrap();
    assert!(offer.contains("Press 1 for a call back.") && offer.contains("/transfer/choice/"), "{offer}");
    if let Some(model) = testkit::twiml_voice_model() {
        for doc in [&hold, &offer] {
            assert_eq!(testkit::twiml_model_errors(&model, doc), Vec::<String>::new(), "{doc}");
        }
    }
    // The conference's callback names its SID, which announcements address.
    let cf = "CF0123456789abcdef0123456789abcdef";
    let r = app
        .post(
            &format!("/transfer/conference/{}", call.token),
            &form(&[
                ("ConferenceSid", cf),
                ("StatusCallbackEvent", "participant-join"),
                ("CallSid", call.sid.as_str()),
            ]),
        )
        .await;
    assert_eq!(r.status(), 204);
    let stored: Option<String> = sqlx::query_scalar("SELECT conference_sid FROM transfers WHERE attempt_id = $1")
        .bind(call.attempt_id)
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(cf));
}

#[test]
fn an_operator_legs_callbacks_in_any_order_and_repeated_connect_the_caller_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(TestApp::spawn());
    let n = AtomicU32::new(0);
    // Which events are delivered, how often (1-3), and in which order.
    let strategy =
        (any::<[bool; 3]>(), proptest::collection::vec(1usize..=3, 4), proptest::collection::vec(any::<u32>(), 12));
    let mut runner = TestRunner::new(Config { cases: 16, failure_persistence: None, ..Config::default() });
    runner
        .run(&strategy, |(progress, copies, keys)| {
            rt.block_on(async {
                let i = n.fetch_add(1, Ordering::SeqCst);
                let call = setup(&app, &format!("+1212555{:04}", 2000 + i)).await;
                press_0(&app, &call).await;
                operator(&app, &format!("op{i}")).await;
                let rings = app.store.transfers_ring_next(10).await.unwrap();
                let ring = rings.iter().find(|r| r.attempt_id == call.attempt_id).expect("rung").clone();
                let sid = CallSid::random();
                let path = format!("/operator/status/{}?ring={}", call.token, ring.ring_no);
                // A subset of initiated/ringing/in-progress, then completed; each 1-3 times, shuffled.
                let mut in_order: Vec<&str> = ["initiated", "ringing", "in-progress"]
                    .into_iter()
                    .zip(progress)
                    .filter(|(_, on)| *on)
                    .map(|(s, _)| s)
                    .collect();
                in_order.push("completed");
                let mut delivered: Vec<(u32, usize, &str)> = Vec::new();
                for (k, s) in in_order.iter().enumerate() {
                    for c in 0..copies[k] {
                        delivered.push((keys[(k * 3 + c) % keys.len()].wrapping_add(c as u32), k, s));
                    }
                }
                delivered.sort_by_key(|(key, _, _)| *key);
                for (_, seq, s) in &delivered {
                    let r = app.post(&path, &leg(&sid, s, *seq as u32)).await;
                    prop_assert_eq!(r.status(), 204);
                }
                let (st, who, transferred, engaged) = state(&app, &call).await;
                prop_assert_eq!(st.as_str(), "ended", "delivered {:?}", delivered);
                // The longest-idle operator was rung (earlier cases' operators are idle again).
                prop_assert_eq!(who, Some(ring.identity.to_string()));
                prop_assert_eq!(transferred, 1);
                prop_assert_eq!(engaged.as_str(), "idle");
                Ok(())
            })
        })
        .unwrap();
}

#[tokio::test]
async fn a_missed_ring_sets_the_operator_away_and_an_earlier_legs_callbacks_change_nothing() {
    let app = TestApp::spawn().await;
    let call = setup(&app, "+12125550301").await;
    press_0(&app, &call).await;
    operator(&app, "bob").await;
    let first = app.store.transfers_ring_next(10).await.unwrap().remove(0);
    let leg1 = CallSid::random();
    let path1 = format!("/operator/status/{}?ring={}", call.token, first.ring_no);
    assert_eq!(app.post(&path1, &leg(&leg1, "ringing", 1)).await.status(), 204);
    assert_eq!(app.post(&path1, &leg(&leg1, "no-answer", 2)).await.status(), 204);
    let (available, missed): (bool, i32) =
        sqlx::query_as("SELECT available, missed FROM operators WHERE identity = 'bob'")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert!(!available && missed == 1, "bob missed: away");
    assert_eq!(
        app.scalar_i64(&format!(
            "SELECT count(*) FROM transfers WHERE attempt_id = {} AND state = 'waiting'",
            call.attempt_id
        ))
        .await,
        1,
        "the caller waits for the next operator"
    );
    // Carol is rung next; a late `in-progress` of bob's leg (ring 1) must not connect anyone.
    operator(&app, "carol").await;
    let second = app.store.transfers_ring_next(10).await.unwrap().remove(0);
    assert_eq!(second.ring_no, first.ring_no + 1);
    assert_eq!(app.post(&path1, &leg(&leg1, "in-progress", 3)).await.status(), 204);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM results WHERE result = 'transferred'").await, 0);
    let leg2 = CallSid::random();
    let path2 = format!("/operator/status/{}?ring={}", call.token, second.ring_no);
    assert_eq!(app.post(&path2, &leg(&leg2, "in-progress", 2)).await.status(), 204);
    let (st, who, transferred, engaged) = state(&app, &call).await;
    assert_eq!((st.as_str(), who.as_deref(), transferred, engaged.as_str()), ("connected", Some("carol"), 1, "busy"));
}

#[tokio::test]
async fn forged_signatures_on_the_waiting_room_routes_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let call = setup(&app, "+12125550401").await;
    let cf = "CF0123456789abcdef0123456789abcdef";
    for (path, params) in [
        (format!("/transfer/hold/{}", call.token), form(&[("CallSid", call.sid.as_str())])),
        (format!("/transfer/conference/{}", call.token), form(&[("ConferenceSid", cf)])),
        (format!("/transfer/choice/{}", call.token), form(&[("CallSid", call.sid.as_str()), ("Digits", "1")])),
        (format!("/operator/status/{}?ring=1", call.token), leg(&CallSid::random(), "in-progress", 1)),
        (format!("/announce/{}?id=1", call.token), form(&[("ConferenceSid", cf)])),
        (format!("/gather/{}?menu=main&n=0", call.token), form(&[("CallSid", call.sid.as_str()), ("Digits", "0")])),
    ] {
        // Signed for another URL, and not signed at all.
        let wrong = app.sign("/transfer/hold/other", &params);
        assert_eq!(app.post_raw(&path, &params, Some(&wrong), None).await.status(), 403, "{path}");
        assert_eq!(app.post_raw(&path, &params, None, None).await.status(), 403, "{path}");
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM transfers").await, 0);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM results").await, 0);
}

#[tokio::test]
async fn the_callee_leaving_the_waiting_room_is_abandoned_but_an_operator_leaving_is_not() {
    let app = TestApp::spawn().await;
    let call = setup(&app, "+12125550501").await;
    press_0(&app, &call).await;
    let path = format!("/transfer/conference/{}", call.token);
    let cf = "CF0123456789abcdef0123456789abcdef";
    let leave =
        |sid: &str| form(&[("ConferenceSid", cf), ("StatusCallbackEvent", "participant-leave"), ("CallSid", sid)]);
    // Someone else's leg leaving (an operator's) changes nothing.
    assert_eq!(app.post(&path, &leave(CallSid::random().as_str())).await.status(), 204);
    let state = |app: &TestApp| {
        let id = call.attempt_id;
        let pool = app.store.pool().clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT state FROM transfers WHERE attempt_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(state(&app).await, "waiting");
    // The callee's own leaving while waiting: abandoned, with its result, once.
    assert_eq!(app.post(&path, &leave(call.sid.as_str())).await.status(), 204);
    assert_eq!(app.post(&path, &leave(call.sid.as_str())).await.status(), 204);
    assert_eq!(state(&app).await, "abandoned");
    assert_eq!(
        app.scalar_i64(&format!(
            "SELECT count(*) FROM results WHERE attempt_id = {} AND result = 'abandoned'",
            call.attempt_id
        ))
        .await,
        1
    );
}
