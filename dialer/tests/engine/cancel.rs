//! `dialer campaign cancel --hang-up` while calls are in progress: the calls are ended through the API,
//! nothing is dialled after the command returns, and every contact ends terminal and stays so when the
//! last callbacks of the hung-up calls arrive.

use std::time::{Duration, Instant};

use dialer_core::domain::{CallStatus, CampaignStatus, ContactState};
use dialer_sim::{DigitDist, OutcomeMix, SecsRange};

use crate::helpers::*;

/// Simulated seconds a transferred call talks; at speed 20 that is a minute of real time, far longer than
/// the test waits for the calls to end once canceled.
const TALK_SECS: f64 = 1200.0;

#[tokio::test(flavor = "multi_thread")]
async fn cancel_with_hang_up_ends_the_calls_in_flight_and_leaves_every_contact_terminal() {
    let mut config = sim_config(10.0);
    config.speed = 20.0;
    // Nearly everyone answers and presses 1, which transfers them into a long talk.
    config.outcomes = OutcomeMix { human: 90.0, machine: 0.0, busy: 5.0, no_answer: 5.0, failed: 0.0, invalid: 0.0 };
    config.ring_time = SecsRange { min: 2.0, max: 6.0 };
    config.digits = DigitDist::always(Some('1'));
    config.talk_time = SecsRange::fixed(TALK_SECS);
    let mut env = Env::new(config).await;
    let tz = open_zone();
    let confirm = r#""1" = { result = "confirmed" }"#;
    let toml = campaign_toml(tz.name(), 10.0, "");
    assert!(toml.contains(confirm));
    let toml = toml.replace(confirm, r#""1" = { transfer = "+81312345678" }"#);
    let id = env.campaign(&toml, &contacts(200, None, 1_400_000)).await;
    env.spawn("all", 10.0, &[]);

    // Wait for calls in progress.
    let started = Instant::now();
    while env.sim.calls().iter().filter(|c| c.status == CallStatus::InProgress).count() < 5 {
        assert!(started.elapsed() < Duration::from_secs(60), "no calls in progress: {:?}", env.sim.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let in_progress: Vec<String> =
        env.sim.calls().into_iter().filter(|c| c.status == CallStatus::InProgress).map(|c| c.sid).collect();

    let out = env.cli(&["campaign", "cancel", &id.to_string(), "--hang-up"]);
    let created_by_return = env.sim.calls().len();
    assert!(
        out.status.success(),
        "campaign cancel --hang-up exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every call ends long before its talk time would have (a hang guard, not a timing assertion: an
    // answered call left alone talks for a minute).
    assert!(env.sim.wait_idle(Duration::from_secs(30)).await, "calls still up after the cancel: {:?}", env.sim.stats());
    let calls = env.sim.calls();
    for sid in &in_progress {
        let c = calls.iter().find(|c| &c.sid == sid).unwrap();
        assert!(
            c.ended_by_update && c.status == CallStatus::Completed,
            "{sid}, in progress at the cancel, was not hung up through the API: {c:?}"
        );
    }
    // No answered call could end by itself this soon: each was ended through the API, mid-talk.
    let answered: Vec<_> = calls.iter().filter(|c| c.answered_at.is_some()).collect();
    assert!(answered.len() >= in_progress.len());
    for c in &answered {
        assert!(c.ended_by_update, "an answered call ended otherwise than through the API: {c:?}");
        assert!(c.duration.is_some_and(|d| (d as f64) < TALK_SECS / 2.0), "hung up mid-talk: {c:?}");
    }
    // Calls not answered yet were canceled through the API or ended by themselves (busy, no answer).
    for c in calls.iter().filter(|c| c.answered_at.is_none()) {
        assert!(
            c.ended_by_update || matches!(c.outcome.as_deref(), Some("busy" | "no-answer")),
            "an unanswered call ended neither through the API nor by itself: {c:?}"
        );
    }

    // After the last callbacks, every contact is terminal; the ones never called end canceled.
    let r = env.wait_finished(id, Duration::from_secs(60)).await;
    assert_eq!(r.status, CampaignStatus::Canceled);
    assert_eq!(env.sim.calls().len(), created_by_return, "no call was created after the cancel returned");
    let (uncalled_not_canceled,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM contacts WHERE campaign_id = $1 AND attempts_made = 0 AND state <> $2")
            .bind(id)
            .bind(ContactState::Canceled)
            .fetch_one(env.store.pool())
            .await
            .unwrap();
    assert_eq!(uncalled_not_canceled, 0, "contacts never called end canceled: {r:#?}");
    assert!(r.by_state.get(&ContactState::Canceled).copied().unwrap_or(0) > 0, "{r:#?}");
    env.assert_one_call_per_attempt(id).await;

    // Late callbacks resurrect nothing.
    let before = env.store.results_export(id).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(env.store.results_export(id).await.unwrap(), before, "a contact changed after the campaign ended");
    assert_eq!(env.sim.calls().len(), created_by_return, "no call was created after the cancel returned");
    eprintln!(
        "{} calls, {} in progress at the cancel, {} answered and hung up; contacts by state {:?}",
        calls.len(),
        in_progress.len(),
        answered.len(),
        r.by_state
    );
}
