use dialer_core::domain::{AttemptState, AttemptToken, ContactState};

use crate::helpers::{Event, TestApp, JA_CAMPAIGN};

async fn writes(app: &TestApp) -> (i64, i64, i64) {
    (
        app.scalar_i64("SELECT count(*) FROM call_events").await,
        app.scalar_i64(&format!(
            "SELECT count(*) FROM attempts
             WHERE status_rank > 0 OR state = '{}' OR answered_by IS NOT NULL OR result IS NOT NULL",
            AttemptState::Finished
        ))
        .await,
        app.scalar_i64("SELECT count(*) FROM results").await + app.scalar_i64("SELECT count(*) FROM dnc").await,
    )
}

#[tokio::test]
async fn forged_missing_and_other_url_signatures_get_403_and_write_nothing() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let call = app.call(app.contact(campaign, "+818012345678", "山田").await).await;
    let path = format!("/status/{}", call.token);
    let params = Event::new("completed", 3).params(&call.sid);
    let before = writes(&app).await;

    let forged = "dGhpcyBpcyBub3QgYSBzaWduYXR1cmU=";
    assert_eq!(app.post_raw(&path, &params, Some(forged), None).await.status(), 403);
    assert_eq!(app.post_raw(&path, &params, None, None).await.status(), 403);
    let other_url = app.sign(&format!("/status/{}?x=1", call.token), &params);
    assert_eq!(app.post_raw(&path, &params, Some(&other_url), None).await.status(), 403);
    // Signed over other parameters (a tampered body).
    let mut tampered = params.clone();
    let sig = app.sign(&path, &params);
    tampered[2].1 = "busy".into();
    assert_eq!(app.post_raw(&path, &tampered, Some(&sig), None).await.status(), 403);
    // Every route is behind the same gate.
    for route in ["twiml", "gather", "amd"] {
        let p = format!("/{route}/{}?menu=main&n=0", call.token);
        assert_eq!(app.post_raw(&p, &params, Some(forged), None).await.status(), 403, "{route}");
    }
    // A genuinely signed request with a forged token.
    let forged_token =
        format!("/status/{}", AttemptToken::new(call.attempt_id).encode(&dialer_core::domain::TokenKey::new(b"other")));
    assert_eq!(app.post(&forged_token, &params).await.status(), 403);

    assert_eq!(writes(&app).await, before, "a refused request wrote something");
    assert_eq!(app.contact_row(call.contact_id).await.state, ContactState::Calling);

    // The same request, signed for real, is accepted.
    assert_eq!(app.post(&path, &params).await.status(), 200);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM call_events").await, 1);
}

#[tokio::test]
async fn a_valid_signature_with_a_swapped_token_gets_403_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let mine = app.call(app.contact(campaign, "+818012345671", "A").await).await;
    let theirs = app.call(app.contact(campaign, "+818012345672", "B").await).await;
    // The dialer has not recorded this one's SID yet: the swapped SID must not bind to it.
    let unbound = app.call_in(app.contact(campaign, "+818012345673", "C").await, AttemptState::Dialing, false).await;
    let before = writes(&app).await;

    for target in [&theirs, &unbound] {
        let path = format!("/status/{}", target.token);
        let r = app.post(&path, &Event::new("completed", 3).params(&mine.sid)).await;
        assert_eq!(r.status(), 403);
        let twiml = format!("/twiml/{}", target.token);
        let p = crate::helpers::form(&[("CallSid", mine.sid.as_str()), ("CallStatus", "in-progress")]);
        assert_eq!(app.post(&twiml, &p).await.status(), 403);
        let gather = format!("/gather/{}?menu=main&n=0", target.token);
        let p = crate::helpers::form(&[("CallSid", mine.sid.as_str()), ("Digits", "9")]);
        assert_eq!(app.post(&gather, &p).await.status(), 403);
        let amd = format!("/amd/{}", target.token);
        let p = crate::helpers::form(&[("CallSid", mine.sid.as_str()), ("AnsweredBy", "human")]);
        assert_eq!(app.post(&amd, &p).await.status(), 403);
    }
    assert_eq!(writes(&app).await, before);
    let unbound_sid: Option<String> = sqlx::query_scalar("SELECT call_sid FROM attempts WHERE id = $1")
        .bind(unbound.attempt_id)
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(unbound_sid, None);
    for c in [&mine, &theirs, &unbound] {
        assert_eq!(app.contact_row(c.contact_id).await.state, ContactState::Calling);
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let call = app.call(app.contact(campaign, "+818012345674", "A").await).await;
    let mut params = Event::new("ringing", 1).params(&call.sid);
    params.push(("Padding".into(), "x".repeat(100 * 1024)));
    let r = app.post(&format!("/status/{}", call.token), &params).await;
    assert_eq!(r.status(), 413);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM call_events").await, 0);
}

#[tokio::test]
async fn a_callback_before_the_dialer_recorded_the_call_sets_its_sid_and_unparks_it() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let call = app.call_in(app.contact(campaign, "+818012345675", "A").await, AttemptState::Parked, false).await;
    assert_eq!(app.status(&call, &Event::new("ringing", 1)).await, 200);
    let (sid, state): (Option<String>, AttemptState) =
        sqlx::query_as("SELECT call_sid, state FROM attempts WHERE id = $1")
            .bind(call.attempt_id)
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!((sid.as_deref(), state), (Some(call.sid.as_str()), AttemptState::Created));
}
