use chrono::{Duration, Utc};
use dialer_core::domain::ContactState;

use crate::helpers::{Event, TestApp, JA_CAMPAIGN};

fn near(actual: chrono::DateTime<Utc>, expected: chrono::DateTime<Utc>) -> bool {
    (actual - expected).num_seconds().abs() <= 30
}

#[tokio::test]
async fn busy_is_retried_after_the_busy_delay() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await; // busy: 900 s
    let call = app.call(app.contact(campaign, "+818011110001", "A").await).await;
    assert_eq!(app.status(&call, &Event { sip: Some(486), ..Event::new("busy", 2) }).await, 200);
    let c = app.contact_row(call.contact_id).await;
    assert_eq!(c.state, ContactState::Pending);
    assert!(near(c.next_attempt_at, Utc::now() + Duration::seconds(900)), "{c:?}");
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM attempts WHERE id = $1")
        .bind(call.attempt_id)
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(outcome, "busy");
}

#[tokio::test]
async fn no_answer_is_retried_after_its_own_delay() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await; // no_answer: 3600 s
    let call = app.call(app.contact(campaign, "+818011110002", "A").await).await;
    assert_eq!(app.status(&call, &Event::new("ringing", 1)).await, 200);
    assert_eq!(app.status(&call, &Event { sip: Some(487), ..Event::new("no-answer", 2) }).await, 200);
    let c = app.contact_row(call.contact_id).await;
    assert_eq!(c.state, ContactState::Pending);
    assert!(near(c.next_attempt_at, Utc::now() + Duration::seconds(3600)), "{c:?}");
}

#[tokio::test]
async fn an_invalid_number_is_final_and_never_retried() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let call = app.call(app.contact(campaign, "+818011110003", "A").await).await;
    assert_eq!(app.status(&call, &Event { sip: Some(404), ..Event::new("failed", 1) }).await, 200);
    let c = app.contact_row(call.contact_id).await;
    assert_eq!((c.state, c.final_outcome.as_deref()), (ContactState::Invalid, Some("invalid_number")));
    // A late duplicate or an earlier status changes nothing.
    assert_eq!(app.status(&call, &Event::new("ringing", 0)).await, 200);
    assert_eq!(app.status(&call, &Event { sip: Some(404), ..Event::new("failed", 1) }).await, 200);
    assert_eq!(app.contact_row(call.contact_id).await, c);
}

#[tokio::test]
async fn no_contact_exceeds_its_max_attempts() {
    let app = TestApp::spawn().await;
    // Busy may be retried 10 times, but the campaign allows 3 attempts overall.
    let toml = JA_CAMPAIGN.replace("busy = { delay_s = 900, max = 2 }", "busy = { delay_s = 900, max = 10 }");
    assert_ne!(toml, JA_CAMPAIGN);
    let campaign = app.campaign(&toml).await;
    let contact = app.contact(campaign, "+818011110004", "A").await;
    let mut calls = 0;
    loop {
        let c = app.contact_row(contact).await;
        if c.state != ContactState::Pending {
            assert_eq!((c.state, c.final_outcome.as_deref()), (ContactState::Exhausted, Some("busy")));
            break;
        }
        assert!(calls < 10, "still pending after {calls} calls");
        let call = app.call(contact).await;
        calls += 1;
        assert_eq!(app.status(&call, &Event::new("busy", 1)).await, 200);
    }
    assert_eq!(calls, 3);
    assert_eq!(app.contact_row(contact).await.attempts_made, 3);
}

#[tokio::test]
async fn busy_retries_stop_at_the_busy_maximum() {
    let app = TestApp::spawn().await;
    let toml = JA_CAMPAIGN.replace("max_attempts = 3", "max_attempts = 10");
    let campaign = app.campaign(&toml).await; // busy: max 2 retries
    let contact = app.contact(campaign, "+818011110005", "A").await;
    for n in 1..=3 {
        let call = app.call(contact).await;
        assert_eq!(app.status(&call, &Event::new("busy", 1)).await, 200);
        let c = app.contact_row(contact).await;
        assert_eq!(c.state, if n < 3 { ContactState::Pending } else { ContactState::Exhausted }, "after call {n}");
    }
}
