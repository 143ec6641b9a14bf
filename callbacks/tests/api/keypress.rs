use dialer_core::domain::{ContactState, E164};

use crate::helpers::{form, Call, Event, TestApp, EN_CAMPAIGN, JA_CAMPAIGN};

async fn press(app: &TestApp, call: &Call, menu: &str, n: u32, digits: &str) -> String {
    let path = format!("/gather/{}?menu={menu}&n={n}", call.token);
    let r = app.post(&path, &form(&[("CallSid", call.sid.as_str()), ("Digits", digits)])).await;
    assert_eq!(r.status(), 200, "{path} {digits}");
    r.text().await.unwrap()
}

#[tokio::test]
async fn pressing_9_puts_the_number_on_the_dnc_list_before_the_response_returns() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let call = app.call(app.contact(campaign, "+818022220001", "A").await).await;
    let xml = press(&app, &call, "main", 0, "9").await;
    // The response is back: the number must already be on the global list.
    let on_list = app
        .scalar_i64(
            "SELECT count(*) FROM dnc WHERE phone = '+818022220001' AND campaign_id IS NULL AND source = 'keypress'",
        )
        .await;
    assert_eq!(on_list, 1);
    assert!(xml.contains("今後、このお電話はいたしません。") && xml.ends_with("<Hangup/></Response>"), "{xml}");
    assert!(app.store.dnc_blocks(&E164::parse("+818022220001", None).unwrap(), campaign).await.unwrap());
    // The call ends: the contact is blocked, never retried.
    assert_eq!(app.status(&call, &Event { duration: Some(20), ..Event::new("completed", 3) }).await, 200);
    let c = app.contact_row(call.contact_id).await;
    assert_eq!((c.state, c.final_outcome.as_deref()), (ContactState::Blocked, Some("opted_out")));
}

#[tokio::test]
async fn choosing_a_slot_records_the_result_once_and_finishes_the_contact() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let call = app.call(app.contact(campaign, "+818022220002", "A").await).await;
    let xml = press(&app, &call, "main", 0, "1").await;
    assert!(xml.contains("午前は1を") && xml.contains("menu=slot&amp;n=0"), "{xml}");
    // Twilio retries the action once: one result.
    for _ in 0..2 {
        let xml = press(&app, &call, "slot", 0, "2").await;
        assert!(xml.contains("午後に再配達いたします。") && xml.contains("<Hangup/>"), "{xml}");
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM results").await, 1);
    assert_eq!(app.status(&call, &Event::new("in-progress", 2)).await, 200);
    assert_eq!(app.status(&call, &Event { duration: Some(40), ..Event::new("completed", 3) }).await, 200);
    let c = app.contact_row(call.contact_id).await;
    assert_eq!(
        (c.state, c.final_outcome.as_deref(), c.result.as_deref()),
        (ContactState::Done, Some("answered_result"), Some("reschedule:afternoon"))
    );
}

#[tokio::test]
async fn unknown_keys_and_silence_repeat_the_menu_then_say_goodbye() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(EN_CAMPAIGN).await; // no_input_repeats = 2
    let call = app.call(app.contact(campaign, "+14155550111", "Ann").await).await;
    let xml = press(&app, &call, "main", 0, "7").await;
    assert!(xml.contains("Sorry, I did not get that.") && xml.contains("menu=main&amp;n=1"), "{xml}");
    let path = format!("/gather/{}?menu=main&n=2", call.token);
    let xml = app.post(&path, &form(&[("CallSid", call.sid.as_str())])).await.text().await.unwrap();
    assert!(xml.contains("<Gather") && xml.contains("menu=main&amp;n=3"), "{xml}");
    let path = format!("/gather/{}?menu=main&n=3", call.token);
    let xml = app.post(&path, &form(&[("CallSid", call.sid.as_str())])).await.text().await.unwrap();
    assert!(!xml.contains("<Gather") && xml.contains("Thank you. Goodbye.</Say><Hangup/>"), "{xml}");
}

#[tokio::test]
async fn the_front_desk_key_transfers_with_the_campaign_caller_id() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(EN_CAMPAIGN).await;
    let call = app.call(app.contact(campaign, "+14155550112", "Ann").await).await;
    let xml = press(&app, &call, "main", 0, "3").await;
    assert!(xml.contains(r#"<Dial callerId="+14155550199"><Number>+14155550100</Number></Dial>"#), "{xml}");
}

#[tokio::test]
async fn a_machine_gets_the_voicemail_message_and_it_is_never_a_confirmation() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(EN_CAMPAIGN).await;
    let call = app.call(app.contact(campaign, "+14155550113", "Ann").await).await;
    let p = form(&[("CallSid", call.sid.as_str()), ("AnsweredBy", "machine_end_beep")]);
    let xml = app.post(&format!("/twiml/{}", call.token), &p).await.text().await.unwrap();
    assert!(xml.contains("Hello Ann, this is Example Clinic") && xml.ends_with("<Hangup/></Response>"), "{xml}");
    assert!(!xml.contains("<Gather"), "{xml}");
    // Even if digits were heard, a machine's call is voicemail.
    press(&app, &call, "main", 0, "1").await;
    assert_eq!(app.status(&call, &Event::new("completed", 3)).await, 200);
    let c = app.contact_row(call.contact_id).await;
    assert_eq!(c.result, None);
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM attempts WHERE id = $1")
        .bind(call.attempt_id)
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(outcome, "voicemail");
    assert_eq!(c.state, ContactState::Pending, "machine/voicemail is retried per the policy");

    // machine_start without a finished greeting: hang up.
    let call = app.call(app.contact(campaign, "+14155550114", "Bob").await).await;
    let p = form(&[("CallSid", call.sid.as_str()), ("AnsweredBy", "machine_start")]);
    let xml = app.post(&format!("/twiml/{}", call.token), &p).await.text().await.unwrap();
    assert!(xml.ends_with("<Response><Hangup/></Response>"), "{xml}");
}

#[tokio::test]
async fn async_amd_is_stored_once() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(EN_CAMPAIGN).await;
    let call = app.call(app.contact(campaign, "+14155550115", "Ann").await).await;
    let p =
        form(&[("CallSid", call.sid.as_str()), ("AnsweredBy", "machine_start"), ("MachineDetectionDuration", "2100")]);
    for _ in 0..3 {
        assert_eq!(app.post(&format!("/amd/{}", call.token), &p).await.status(), 200);
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM call_events WHERE kind = 'amd'").await, 1);
    // Its whole form is kept for audit, as a status callback's is.
    let kept = "SELECT count(*) FROM call_events WHERE kind = 'amd' AND params->>'AnsweredBy' = 'machine_start'
                  AND params->>'MachineDetectionDuration' = '2100'";
    assert_eq!(app.scalar_i64(kept).await, 1);
    assert_eq!(app.status(&call, &Event::new("completed", 3)).await, 200);
    let outcome: (String, String) = sqlx::query_as("SELECT outcome, answered_by FROM attempts WHERE id = $1")
        .bind(call.attempt_id)
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(outcome, ("machine".to_string(), "machine_start".to_string()));
}
