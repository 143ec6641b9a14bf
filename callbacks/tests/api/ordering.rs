//! Guarantee 3: duplicates and any order of one call's events give the in-order final state.

use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use dialer_core::domain::{AttemptState, ContactState};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::helpers::{Call, Event, TestApp, JA_CAMPAIGN};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct Final {
    state: AttemptState,
    call_status: Option<String>,
    status_rank: i16,
    outcome: Option<String>,
    answered_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    duration_s: Option<i32>,
    sip_response_code: Option<i32>,
    contact_state: ContactState,
    final_outcome: Option<String>,
    final_reason: Option<String>,
    events: i64,
}

async fn final_state(app: &TestApp, call: &Call) -> (Final, DateTime<Utc>) {
    let f: Final = sqlx::query_as(
        "SELECT a.state, a.call_status, a.status_rank, a.outcome, a.answered_at, a.ended_at, a.duration_s,
                a.sip_response_code, c.state AS contact_state, c.final_outcome, c.final_reason,
                (SELECT count(*) FROM call_events e WHERE e.attempt_id = a.id) AS events
         FROM attempts a JOIN contacts c ON c.id = a.contact_id WHERE a.id = $1",
    )
    .bind(call.attempt_id)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    let next: DateTime<Utc> = sqlx::query_scalar("SELECT next_attempt_at FROM contacts WHERE id = $1")
        .bind(call.contact_id)
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    (f, next)
}

fn terminal(i: usize) -> Event {
    match i {
        0 => Event { duration: Some(42), ..Event::new("completed", 0) },
        1 => Event { sip: Some(486), ..Event::new("busy", 0) },
        2 => Event { sip: Some(487), ..Event::new("no-answer", 0) },
        3 => Event { sip: Some(404), ..Event::new("failed", 0) },
        4 => Event { sip: Some(503), ..Event::new("failed", 0) },
        _ => Event::new("canceled", 0),
    }
}

/// The call's events in order: a subset of initiated/ringing/in-progress, then one terminal.
fn events(progress: [bool; 3], terminal_kind: usize) -> Vec<Event> {
    let mut out: Vec<Event> = ["initiated", "ringing", "in-progress"]
        .into_iter()
        .zip(progress)
        .filter(|(_, on)| *on)
        .map(|(s, _)| Event::new(s, 0))
        .collect();
    out.push(terminal(terminal_kind));
    for (i, e) in out.iter_mut().enumerate() {
        e.seq = i as i32;
    }
    out
}

#[test]
fn duplicates_and_any_order_of_a_calls_events_give_the_in_order_final_state() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(TestApp::spawn());
    let campaign = rt.block_on(app.campaign(JA_CAMPAIGN));
    let phone = AtomicU32::new(0);
    let strategy = (
        any::<[bool; 3]>(),
        0usize..6,
        proptest::collection::vec(1usize..=3, 4),
        proptest::collection::vec(any::<u32>(), 12),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config { cases: 32, failure_persistence: None, ..Config::default() });
    runner
        .run(&strategy, |(progress, kind, copies, keys, concurrent)| {
            let in_order = events(progress, kind);
            // Each event 1-3 times, in a random order.
            let mut delivered: Vec<(u32, Event)> = Vec::new();
            for (i, e) in in_order.iter().enumerate() {
                for c in 0..copies[i] {
                    delivered.push((keys[(i * 3 + c) % keys.len()].wrapping_add(c as u32), e.clone()));
                }
            }
            delivered.sort_by_key(|(k, _)| *k);
            rt.block_on(async {
                let mut calls = Vec::new();
                for _ in 0..2 {
                    let n = phone.fetch_add(1, Ordering::SeqCst);
                    calls
                        .push(app.call(app.contact(campaign, &format!("+8180{:08}", 40_000_000 + n), "P").await).await);
                }
                for e in &in_order {
                    assert_eq!(app.status(&calls[0], e).await, 200);
                }
                if concurrent {
                    let sends = delivered.iter().map(|(_, e)| app.status(&calls[1], e));
                    for s in futures::future::join_all(sends).await {
                        assert_eq!(s, 200);
                    }
                } else {
                    for (_, e) in &delivered {
                        assert_eq!(app.status(&calls[1], e).await, 200);
                    }
                }
                let (expected, next_a) = final_state(&app, &calls[0]).await;
                let (actual, next_b) = final_state(&app, &calls[1]).await;
                prop_assert_eq!(
                    &actual,
                    &expected,
                    "delivered {:?}",
                    delivered.iter().map(|(_, e)| (e.status, e.seq)).collect::<Vec<_>>()
                );
                prop_assert!((next_a - next_b).num_seconds().abs() <= 30);
                prop_assert_eq!(expected.events, in_order.len() as i64);
                Ok(())
            })
        })
        .unwrap();
}

#[tokio::test]
async fn the_same_callback_delivered_three_times_is_stored_and_applied_once() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let call = app.call(app.contact(campaign, "+818044440001", "A").await).await;
    let e = Event { sip: Some(486), ..Event::new("busy", 2) };
    let path = format!("/status/{}", call.token);
    let params = e.params(&call.sid);
    let sig = app.sign(&path, &params);
    for _ in 0..3 {
        assert_eq!(app.post_raw(&path, &params, Some(&sig), Some("idem-1")).await.status(), 200);
    }
    // Same idempotency token on a different sequence number: still the same delivery.
    let other = Event { seq: 9, ..e.clone() }.params(&call.sid);
    let sig = app.sign(&path, &other);
    assert_eq!(app.post_raw(&path, &other, Some(&sig), Some("idem-1")).await.status(), 200);
    assert_eq!(app.scalar_i64("SELECT count(*) FROM call_events").await, 1);
    // The stored event keeps the whole form for audit, as JSON.
    let form_in_db = format!(
        "SELECT count(*) FROM call_events WHERE params->>'CallStatus' = 'busy' AND params->>'CallSid' = '{}'
           AND params->>'SipResponseCode' = '486' AND json_typeof(params) = 'object'
           AND (SELECT count(*) FROM json_object_keys(params)) = {}",
        call.sid.as_str(),
        params.len()
    );
    assert_eq!(app.scalar_i64(&form_in_db).await, 1);
    let c = app.contact_row(call.contact_id).await;
    assert_eq!(c.state, ContactState::Pending);
}

#[tokio::test]
async fn many_calls_reported_at_once_are_each_settled_once() {
    let app = TestApp::spawn().await;
    let campaign = app.campaign(JA_CAMPAIGN).await;
    let mut calls = Vec::new();
    for n in 0..40 {
        calls.push(app.call(app.contact(campaign, &format!("+8180{:08}", 50_000_000 + n), "P").await).await);
    }
    let mut sends = Vec::new();
    for call in &calls {
        for e in [
            Event::new("ringing", 1),
            Event::new("in-progress", 2),
            Event { duration: Some(5), ..Event::new("completed", 3) },
        ] {
            for _ in 0..2 {
                let (app, e) = (&app, e.clone());
                sends.push(async move { app.status(call, &e).await });
            }
        }
    }
    for s in futures::future::join_all(sends).await {
        assert_eq!(s, 200);
    }
    assert_eq!(app.scalar_i64("SELECT count(*) FROM call_events").await, 120);
    assert_eq!(
        app.scalar_i64(&format!(
            "SELECT count(*) FROM attempts WHERE state = '{}' AND answered_at IS NOT NULL",
            AttemptState::Finished
        ))
        .await,
        40
    );
    assert_eq!(
        app.scalar_i64(&format!("SELECT count(*) FROM contacts WHERE state = '{}'", ContactState::Pending)).await,
        40,
        "no_result retries once"
    );
}
