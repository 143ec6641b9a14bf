//! Customers reach us: a call to the caller ID (greeted by name, the campaign's menu, the result on the
//! contact), an unknown caller, texts (stop words, reply codes) and the delivery status of our texts —
//! all signed for real; forged requests write nothing.

use std::collections::BTreeSet;

use dialer_core::domain::sms::MessageStatus;
use dialer_core::domain::{CallSid, ContactState, E164};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::helpers::{TestApp, JA_CAMPAIGN};

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn inbound_call(sid: &CallSid, from: &str, to: &str) -> Vec<(String, String)> {
    form(&[
        ("CallSid", sid.as_str()),
        ("AccountSid", "AC11111111111111111111111111111111"),
        ("From", from),
        ("To", to),
        ("Caller", from),
        ("Called", to),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("ApiVersion", "2010-04-01"),
    ])
}

fn inbound_sms(from: &str, to: &str, body: &str) -> Vec<(String, String)> {
    form(&[
        ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
        ("SmsSid", "SM0123456789abcdef0123456789abcdef"),
        ("AccountSid", "AC11111111111111111111111111111111"),
        ("From", from),
        ("To", to),
        ("Body", body),
        ("NumMedia", "0"),
        ("SmsStatus", "received"),
        ("ApiVersion", "2010-04-01"),
    ])
}

/// The `action` URL of the TwiML's `<Gather>`, as a path and query on our base.
fn gather_path(app: &TestApp, twiml: &str) -> String {
    let start = twiml.find("action=\"").expect("a Gather with an action") + 8;
    let url = &twiml[start..start + twiml[start..].find('"').unwrap()];
    url.replace("&amp;", "&").strip_prefix(&app.base).expect("on our base").to_string()
}

async fn text(resp: reqwest::Response) -> (reqwest::StatusCode, String) {
    let s = resp.status();
    (s, resp.text().await.unwrap())
}

#[tokio::test]
async fn a_missed_customer_calls_back_presses_1_then_2_and_the_result_ends_their_retries() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let contact = app.contact(campaign, "+819012345678", "佐藤").await;
    // Called once, no answer: waiting an hour for the retry.
    let call = app.call(contact).await;
    let ev = crate::helpers::Event { sip: Some(487), ..crate::helpers::Event::new("no-answer", 0) };
    assert!(app.status(&call, &ev).await.is_success());
    let contact_before = app.contact_row(contact).await;
    assert_eq!(contact_before.state, ContactState::Pending);

    let sid = CallSid::random();
    let (status, twiml) =
        text(app.post("/voice/inbound", &inbound_call(&sid, "+819012345678", "+815012345678")).await).await;
    assert_eq!(status, 200, "{twiml}");
    assert!(twiml.contains("佐藤様、Example運輸です。お電話ありがとうございます。"), "greeted by name: {twiml}");
    assert!(twiml.contains("再配達の日時を選ぶには1を"), "the campaign's start menu: {twiml}");
    let gather = gather_path(&app, &twiml);

    let (status, twiml) = text(app.post(&gather, &form(&[("CallSid", sid.as_str()), ("Digits", "1")])).await).await;
    assert_eq!(status, 200);
    assert!(twiml.contains("午前は1を"), "the slot menu: {twiml}");
    let gather = gather_path(&app, &twiml);
    let (status, twiml) = text(app.post(&gather, &form(&[("CallSid", sid.as_str()), ("Digits", "2")])).await).await;
    assert_eq!(status, 200);
    assert!(twiml.contains("午後に再配達いたします"), "{twiml}");

    // On the right contact, final, no retry left; the call back is an inbound attempt, not one of ours.
    let row = app.contact_row(contact).await;
    assert_eq!(row.state, ContactState::Done);
    assert_eq!(row.result.as_deref(), Some("reschedule:afternoon"));
    assert_eq!(row.final_outcome.as_deref(), Some("answered_result"));
    assert_eq!(row.attempts_made, contact_before.attempts_made, "a call back is not a call we made");
    assert_eq!(
        app.scalar_i64(&format!(
            "SELECT count(*) FROM attempts WHERE contact_id = {contact} AND direction = 'inbound'
               AND call_sid = '{}' AND result = 'reschedule:afternoon' AND requested_at IS NULL",
            sid.as_str()
        ))
        .await,
        1
    );
    assert_eq!(
        app.scalar_i64(&format!(
            "SELECT count(*) FROM results WHERE contact_id = {contact} AND result = 'reschedule:afternoon'"
        ))
        .await,
        1
    );
    // Twilio retrying the webhook does not make a second attempt.
    assert_eq!(app.post("/voice/inbound", &inbound_call(&sid, "+819012345678", "+815012345678")).await.status(), 200);
    assert_eq!(app.scalar_i64(&format!("SELECT count(*) FROM attempts WHERE contact_id = {contact}")).await, 2);
}

#[tokio::test]
async fn a_customer_calling_back_during_our_call_is_not_retried_after_it() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let contact = app.contact(campaign, "+819011112222", "鈴木").await;
    let ours = app.call(contact).await;
    let sid = CallSid::random();
    let (_, twiml) =
        text(app.post("/voice/inbound", &inbound_call(&sid, "+819011112222", "+815012345678")).await).await;
    let gather = gather_path(&app, &twiml);
    let (_, twiml) = text(app.post(&gather, &form(&[("CallSid", sid.as_str()), ("Digits", "1")])).await).await;
    let gather = gather_path(&app, &twiml);
    app.post(&gather, &form(&[("CallSid", sid.as_str()), ("Digits", "3")])).await;
    assert_eq!(app.contact_row(contact).await.state, ContactState::Calling, "our call is still under way");
    // Our call then goes unanswered: the contact has given its answer, so it ends instead of retrying.
    let ev = crate::helpers::Event { sip: Some(487), ..crate::helpers::Event::new("no-answer", 0) };
    assert!(app.status(&ours, &ev).await.is_success());
    let row = app.contact_row(contact).await;
    assert_eq!(row.state, ContactState::Done);
    assert_eq!(row.result.as_deref(), Some("reschedule:evening"));
}

#[tokio::test]
async fn an_unknown_caller_hears_the_campaigns_message_and_is_transferred() {
    let app = TestApp::spawn().await;
    app.campaign(JA_CAMPAIGN).await;
    let sid = CallSid::random();
    let (status, twiml) =
        text(app.post("/voice/inbound", &inbound_call(&sid, "+819099990000", "+815012345678")).await).await;
    assert_eq!(status, 200);
    assert!(twiml.contains("担当者におつなぎします"), "{twiml}");
    assert!(twiml.contains("<Number>+81312345678</Number>"), "{twiml}");
    assert!(twiml.contains("language=\"ja-JP\""), "{twiml}");
    // Dialling a number no campaign calls from: the service's message, and the call ends.
    let (_, twiml) = text(app.post("/voice/inbound", &inbound_call(&sid, "anonymous", "+15005550006")).await).await;
    assert!(twiml.contains("Thank you for calling") && twiml.contains("<Hangup/>"), "{twiml}");
    assert_eq!(app.scalar_i64("SELECT count(*) FROM attempts").await, 0);
}

#[tokio::test]
async fn an_opt_out_by_voice_on_a_call_back_puts_the_number_on_the_dnc_list() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let contact = app.contact(campaign, "+819033334444", "高橋").await;
    let sid = CallSid::random();
    let (_, twiml) =
        text(app.post("/voice/inbound", &inbound_call(&sid, "+819033334444", "+815012345678")).await).await;
    let gather = gather_path(&app, &twiml);
    let (status, twiml) = text(app.post(&gather, &form(&[("CallSid", sid.as_str()), ("Digits", "9")])).await).await;
    assert_eq!(status, 200);
    assert!(twiml.contains("<Hangup/>"), "{twiml}");
    assert!(app.store.dnc_blocks(&E164::parse("+819033334444", None).unwrap(), campaign).await.unwrap());
    let row = app.contact_row(contact).await;
    assert_eq!((row.state, row.final_outcome.as_deref()), (ContactState::Blocked, Some("opted_out")));
}

/// Ends a contact unreached (as a last no-answer does) and sends the text the trigger queued, as the
/// sender does: leased, committed, accepted by Twilio with `sid`.
async fn texted(app: &TestApp, contact: i64, sid: &str) -> i64 {
    sqlx::query(
        "UPDATE contacts SET state = 'exhausted', final_outcome = 'no_answer', finished_at = now() WHERE id = $1",
    )
    .bind(contact)
    .execute(app.store.pool())
    .await
    .unwrap();
    let due = app.store.messages_claim_due("test", 10, 60.0).await.unwrap();
    let m = due.into_iter().find(|m| m.contact_id == contact).expect("a text was queued");
    assert!(app
        .store
        .messages_mark_requested(m.id, "test", "本文", &E164::parse("+815012345678", None).unwrap())
        .await
        .unwrap());
    app.store.messages_accepted(m.id, sid, MessageStatus::Queued).await.unwrap();
    m.id
}

#[tokio::test]
async fn sms_replies_record_a_result_or_opt_out_and_forged_ones_write_nothing() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let a = app.contact(campaign, "+819055550001", "伊藤").await;
    let b = app.contact(campaign, "+819055550002", "渡辺").await;
    texted(&app, a, "SM00000000000000000000000000000001").await;
    texted(&app, b, "SM00000000000000000000000000000002").await;
    // Exactly one text per contact, however often the contact ends.
    assert_eq!(app.scalar_i64(&format!("SELECT count(*) FROM messages WHERE campaign_id = {campaign}")).await, 2);

    // Forged: 403, nothing written.
    let body = inbound_sms("+819055550001", "+815012345678", "停止");
    let resp = app.post_raw("/sms/inbound", &body, Some("Zm9yZ2Vk"), None).await;
    assert_eq!(resp.status(), 403);
    let resp = app.post_raw("/sms/inbound", &body, None, None).await;
    assert_eq!(resp.status(), 403);
    let forged_call = inbound_call(&CallSid::random(), "+819055550001", "+815012345678");
    assert_eq!(app.post_raw("/voice/inbound", &forged_call, Some("Zm9yZ2Vk"), None).await.status(), 403);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM dnc").await, 0);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM results").await, 0);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM attempts WHERE direction = 'inbound'").await, 0);

    // A full-width "１" is the reply code 1.
    let (status, reply) =
        text(app.post("/sms/inbound", &inbound_sms("+819055550001", "+815012345678", "１")).await).await;
    assert_eq!(status, 200);
    assert!(reply.contains("<Message>ご返信ありがとうございます。承りました。</Message>"), "{reply}");
    let row = app.contact_row(a).await;
    assert_eq!((row.state, row.result.as_deref()), (ContactState::Done, Some("reschedule:morning")));

    // 停止 opts the number out, whatever campaign calls it next.
    let (status, reply) =
        text(app.post("/sms/inbound", &inbound_sms("+819055550002", "+815012345678", "停止")).await).await;
    assert_eq!(status, 200);
    assert!(reply.contains("配信を停止しました"), "{reply}");
    assert!(app.store.dnc_blocks(&E164::parse("+819055550002", None).unwrap(), campaign + 1).await.unwrap());
    assert_eq!(
        app.scalar_i64(&format!("SELECT count(*) FROM results WHERE contact_id = {b} AND result = 'opted_out'")).await,
        1
    );
    // Anything else is answered with nothing and changes nothing.
    let (status, reply) =
        text(app.post("/sms/inbound", &inbound_sms("+819055550009", "+815012345678", "hello")).await).await;
    assert_eq!((status.as_u16(), reply.contains("<Message>")), (200, false));
}

#[tokio::test]
async fn forged_or_swapped_delivery_callbacks_are_refused() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let a = app.contact(campaign, "+819066660001", "山本").await;
    let id = texted(&app, a, "SM00000000000000000000000000000011").await;
    let token = dialer_core::domain::MessageToken::new(id).encode(&app.key);
    let params = form(&[("MessageSid", "SM00000000000000000000000000000011"), ("MessageStatus", "delivered")]);
    assert_eq!(app.post_raw(&format!("/sms/status/{token}"), &params, Some("Zm9yZ2Vk"), None).await.status(), 403);
    // An attempt's token is not a message's.
    let attempt_token = dialer_core::domain::AttemptToken::new(id).encode(&app.key);
    assert_eq!(app.post(&format!("/sms/status/{attempt_token}"), &params).await.status(), 403);
    // Another message's SID on this token.
    let other = form(&[("MessageSid", "SM00000000000000000000000000000099"), ("MessageStatus", "delivered")]);
    assert_eq!(app.post(&format!("/sms/status/{token}"), &other).await.status(), 403);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM message_events").await, 0);
    assert_eq!(app.post(&format!("/sms/status/{token}"), &params).await.status(), 204);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM message_events").await, 1);
}

#[test]
fn delivery_callbacks_duplicated_and_shuffled_end_in_the_in_order_status() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(TestApp::spawn());
    let campaign = rt.block_on(app.campaign(JA_CAMPAIGN));
    let n = std::sync::atomic::AtomicU32::new(0);
    // A message's life: queued, sending, sent, then one end.
    let ends = ["delivered", "undelivered", "failed"];
    let strategy = (0..ends.len(), proptest::collection::vec((0usize..4, 1usize..3), 1..8), any::<u64>());
    let mut runner = TestRunner::new(Config { cases: 24, failure_persistence: None, ..Config::default() });
    runner
        .run(&strategy, |(end, picks, seed)| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let life = ["queued", "sending", "sent", ends[end]];
            // Some of the life (always its end), each sent once or twice, in a seeded order.
            let mut events: Vec<&str> = vec![life[3]];
            for (k, times) in &picks {
                for _ in 0..*times {
                    events.push(life[*k]);
                }
            }
            let mut order: Vec<(u64, &str)> =
                events.iter().enumerate().map(|(j, e)| (seed.rotate_left(j as u32 * 7) ^ j as u64, *e)).collect();
            order.sort();
            rt.block_on(async {
                let phone = format!("+8190777{:05}", i);
                let contact = app.contact(campaign, &phone, "中村").await;
                let sid = format!("SM{:032x}", 0xabc000 + i as u128);
                let id = texted(&app, contact, &sid).await;
                let token = dialer_core::domain::MessageToken::new(id).encode(&app.key);
                for (_, status) in &order {
                    let mut p = form(&[("MessageSid", &sid), ("MessageStatus", status)]);
                    if *status == "undelivered" || *status == "failed" {
                        p.push(("ErrorCode".into(), "30003".into()));
                    }
                    assert_eq!(app.post(&format!("/sms/status/{token}"), &p).await.status(), 204);
                }
                let (status, events, code): (String, i64, Option<i32>) = sqlx::query_as(
                    "SELECT status, (SELECT count(*) FROM message_events WHERE message_id = m.id), error_code
                     FROM messages m WHERE id = $1",
                )
                .bind(id)
                .fetch_one(app.store.pool())
                .await
                .unwrap();
                let distinct: BTreeSet<&str> = events_of(&order);
                prop_assert_eq!(status.as_str(), ends[end]);
                prop_assert_eq!(events as usize, distinct.len());
                prop_assert_eq!(code.is_some(), end > 0);
                Ok(())
            })
        })
        .unwrap();
}

fn events_of<'a>(order: &[(u64, &'a str)]) -> BTreeSet<&'a str> {
    order.iter().map(|(_, s)| *s).collect()
}

#[tokio::test]
async fn a_parcel_gets_one_text_even_when_two_campaigns_hold_it() {
    let app = TestApp::spawn().await;
    let (first, second) = (app.campaign(JA_CAMPAIGN).await, app.campaign(JA_CAMPAIGN).await);
    let a = app.contact(first, "+819088880001", "佐藤").await;
    let b = app.contact(second, "+819088880002", "佐藤").await;
    sqlx::query("UPDATE contacts SET external_id = 'PARCEL-1' WHERE id IN ($1, $2)")
        .bind(a)
        .bind(b)
        .execute(app.store.pool())
        .await
        .unwrap();
    texted(&app, a, "SM00000000000000000000000000000031").await;
    sqlx::query("UPDATE contacts SET state = 'exhausted', final_outcome = 'busy', finished_at = now() WHERE id = $1")
        .bind(b)
        .execute(app.store.pool())
        .await
        .unwrap();
    let due = app.store.messages_claim_due("test", 10, 60.0).await.unwrap();
    let m = due.iter().find(|m| m.contact_id == b).expect("queued like any other");
    // The sender skips it under `one_per_external_id` (the example campaign's limit).
    assert!(m.reference_notified, "{m:?}");
}
