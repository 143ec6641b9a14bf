//! Twilio and our own services misbehaving: 429 bursts, lost StatusCallbacks, the callbacks service down
//! for a while, and a destination the account has no geo permission for (DESIGN.md guarantees 1 and 2,
//! "Outcomes and retries"). Each ends with every contact terminal, no attempt dialled twice, and the
//! database agreeing with the simulator's record of how each call really ended.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use dialer_core::domain::{AttemptState, CampaignStatus, ContactState, Outcome, E164};
use dialer_core::store::NewContact;
use dialer_sim::{Burst, CallRecord, Faults};

use crate::helpers::*;
use crate::metrics::{scrape, wait_until_up};

/// Whether the outcome we gave a finished attempt agrees with how the simulator says its call ended (the
/// demo's summary makes the same comparison in aggregate). Needs answering machine detection on: without
/// it a machine is just an answered call to us (and the simulator's machines press keys). `sip_known`: the attempt has a SIP code, i.e.
/// its terminal StatusCallback arrived.
fn agrees(call: &CallRecord, ours: Outcome, sip_known: bool) -> bool {
    use Outcome::*;
    match call.outcome.as_deref() {
        Some("human") => matches!(ours, AnsweredResult | AnsweredNoResult | OptedOut),
        Some("machine") => matches!(ours, Machine | Voicemail),
        Some("busy") => ours == Busy,
        Some("no-answer") => ours == NoAnswer,
        Some("failed") => ours == Failed,
        // Twilio's Call resource has no SIP code: settled through the API, an unallocated number can only
        // be known as failed.
        Some("invalid") => ours == InvalidNumber || (ours == Failed && !sip_known),
        Some("canceled") => ours == Canceled,
        _ => false,
    }
}

/// Every finished attempt of `campaign` against the simulator's record of its call; returns how many
/// were checked. Every call in the record must be some finished attempt's.
async fn assert_outcomes_match_the_simulator(env: &Env, campaign: i64) -> usize {
    let rows: Vec<(Option<String>, Option<String>, Option<i32>)> = sqlx::query_as(
        "SELECT call_sid, outcome, sip_response_code FROM attempts WHERE campaign_id = $1 AND state = $2",
    )
    .bind(campaign)
    .bind(AttemptState::Finished)
    .fetch_all(env.store.pool())
    .await
    .unwrap();
    let calls: HashMap<String, CallRecord> = env.sim.calls().into_iter().map(|c| (c.sid.clone(), c)).collect();
    let mut wrong = Vec::new();
    for (sid, outcome, sip) in &rows {
        let sid = sid.as_deref().expect("a finished attempt knows its call");
        let call = calls.get(sid).unwrap_or_else(|| panic!("{sid} is not in the simulator's record"));
        let ours = Outcome::parse(outcome.as_deref().expect("a finished attempt has an outcome")).unwrap();
        if !agrees(call, ours, sip.is_some()) {
            wrong.push(format!(
                "{sid} to {}: ours {ours}, simulator {:?} ({}, answered by {:?}, lost callbacks {:?})",
                call.to, call.outcome, call.status, call.answered_by, call.lost_callbacks
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} finished attempts disagree with the simulator:\n{}",
        wrong.len(),
        rows.len(),
        wrong.join("\n")
    );
    assert_eq!(rows.len(), calls.len(), "every call in the simulator's record is a finished attempt");
    rows.len()
}

/// Contacts of `campaign` in `state`, with their phone numbers, final outcome and reason.
async fn contacts_in(env: &Env, campaign: i64, state: ContactState) -> Vec<(String, Option<String>, Option<String>)> {
    sqlx::query_as("SELECT phone, final_outcome, final_reason FROM contacts WHERE campaign_id = $1 AND state = $2")
        .bind(campaign)
        .bind(state)
        .fetch_all(env.store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bursts_of_429_are_retried_after_retry_after_and_the_campaign_still_ends() {
    let mut config = sim_config(20.0);
    // The last second of every three refuses every create, and 5 % of the others are refused too.
    let burst = Burst { every: Duration::from_secs(3), length: Duration::from_secs(1) };
    config.faults = Faults { rate_429: 0.05, burst_429: Some(burst), ..Faults::default() };
    let mut env = Env::new(config).await;
    let tz = open_zone();
    let toml = campaign_toml(tz.name(), 20.0, r#"amd = "enable""#);
    let id = env.campaign(&toml, &contacts(150, None, 1_000_000)).await;
    // Every call event asked for (the default is the answer and the end): the extra callbacks must settle
    // the same way.
    env.spawn("all", 20.0, &[("TWILIO_STATUS_CALLBACK_EVENTS", "initiated,ringing answered completed")]);
    let r = env.wait_finished(id, Duration::from_secs(120)).await;
    assert_eq!(r.contacts, 150);
    assert!(env.sim.wait_idle(Duration::from_secs(30)).await, "every simulated call ended");

    // Calls created = calls requested; no attempt dialled twice.
    env.assert_one_call_per_attempt(id).await;
    let stats = env.sim.stats();
    let refused = stats.create_errors.get(&20429).copied().unwrap_or(0);
    assert!(refused > 0, "the simulator refused creates with 20429: {stats:?}");
    eprintln!("{} calls, {refused} creates refused with 20429, {:?}", stats.calls_created, stats.create_errors);

    // Every refusal is an attempt closed as never created, and its contact was not sent again before the
    // Retry-After (at least 1 s; half of it is left as allowance for the write that records the refusal).
    let (not_created, min_gap_ms): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*),
                min(EXTRACT(EPOCH FROM (next.requested_at - a.finished_at)) * 1000)::float8
         FROM attempts a
         LEFT JOIN attempts next ON next.contact_id = a.contact_id AND next.attempt_no = a.attempt_no + 1
         WHERE a.campaign_id = $1 AND a.state = $2 AND a.twilio_error_code = 20429",
    )
    .bind(id)
    .bind(AttemptState::NotCreated)
    .fetch_one(env.store.pool())
    .await
    .unwrap();
    assert_eq!(not_created as u64, refused, "every 429 closed its attempt as never created");
    let min_gap_ms = min_gap_ms.expect("refused contacts were dialled again");
    assert!(min_gap_ms >= 500.0, "a contact refused with 429 was sent again {min_gap_ms:.0} ms later");

    // The burst only delayed: every contact ended as its calls went, none was burned by a 429.
    let (rejected,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM contacts WHERE campaign_id = $1 AND final_reason LIKE '%20429%'")
            .bind(id)
            .fetch_one(env.store.pool())
            .await
            .unwrap();
    assert_eq!(rejected, 0, "no contact ended because of a 429");
    assert_outcomes_match_the_simulator(&env, id).await;
    let (initiated,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM call_events e JOIN attempts a ON a.id = e.attempt_id
         WHERE a.campaign_id = $1 AND e.call_status = 'initiated'",
    )
    .bind(id)
    .fetch_one(env.store.pool())
    .await
    .unwrap();
    assert_eq!(initiated as usize, stats.calls_created, "each call's `initiated` was asked for and logged once");
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_callbacks_are_settled_through_the_api_as_the_calls_really_ended() {
    let mut config = sim_config(30.0);
    config.faults = Faults { lost: 0.3, ..Faults::default() };
    let mut env = Env::new(config).await;
    let tz = open_zone();
    // Answering machine detection on, so "answered by a machine" is a fact the API reports too.
    let toml = campaign_toml(tz.name(), 30.0, r#"amd = "enable""#);
    let id = env.campaign(&toml, &contacts(150, None, 1_100_000)).await;
    env.spawn("all", 30.0, &[("STALE_CALL_SECONDS", "5")]);
    let r = env.wait_finished(id, Duration::from_secs(120)).await;
    assert_eq!(r.contacts, 150);
    assert!(env.sim.wait_idle(Duration::from_secs(30)).await, "every simulated call ended");

    env.assert_one_call_per_attempt(id).await;
    let calls = env.sim.calls();
    let end_lost = calls.iter().filter(|c| c.lost_callbacks.iter().any(|s| s.is_terminal())).count();
    assert!(end_lost > 0, "some calls' terminal callbacks were lost: {:?}", env.sim.stats());
    let checked = assert_outcomes_match_the_simulator(&env, id).await;
    eprintln!(
        "{checked} finished attempts agree with the simulator; {end_lost} calls' end was only known from the API"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callbacks_outage_ends_no_contact_done_unless_a_person_answered() {
    let mut config = sim_config(20.0);
    config.speed = 50.0; // calls last a few hundred ms, so some are in flight when the service goes down
    let mut env = Env::new(config).await;
    let tz = open_zone();
    let toml = campaign_toml(tz.name(), 20.0, r#"amd = "enable""#);
    let id = env.campaign(&toml, &contacts(300, None, 1_200_000)).await;
    let extra = [("STALE_CALL_SECONDS", "3")];
    let callbacks = env.spawn("callbacks", 20.0, &extra);
    env.spawn("dialer", 20.0, &extra);

    // Some calls in flight, then the callbacks service goes away for 10 s while the dialer carries on.
    let started = Instant::now();
    while env.sim.calls().iter().filter(|c| !c.status.is_terminal()).count() < 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "no calls in flight: {:?}", env.sim.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.kill(callbacks);
    let at_kill = env.sim.calls().len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = env.sim.calls().len() - at_kill;
    env.spawn("callbacks", 20.0, &extra);

    let r = env.wait_finished(id, Duration::from_secs(120)).await;
    assert_eq!(r.contacts, 300);
    assert!(env.sim.wait_idle(Duration::from_secs(30)).await, "every simulated call ended");
    let stats = env.sim.stats();
    eprintln!("{during} calls made while the callbacks service was down; {stats:?}");
    assert!(
        stats.callbacks_failed > 0 && stats.webhooks_failed > 0,
        "the simulator met the outage (failed callbacks and TwiML fetches): {stats:?}"
    );
    env.assert_one_call_per_attempt(id).await;

    // `done` only where the simulator says a person answered one of the contact's calls.
    let answered: HashSet<String> = env
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.outcome.as_deref() == Some("human") && c.answered_at.is_some())
        .map(|c| c.to)
        .collect();
    let done = contacts_in(&env, id, ContactState::Done).await;
    assert!(!done.is_empty());
    let guessed: Vec<_> = done.iter().filter(|(phone, _, _)| !answered.contains(phone)).collect();
    assert!(guessed.is_empty(), "contacts done although no person answered their calls: {guessed:?}");
    assert_outcomes_match_the_simulator(&env, id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_without_geo_permission_end_rejected_and_the_campaign_goes_on() {
    let mut config = sim_config(20.0);
    config.faults = Faults { geo_blocked: vec!["+44".into()], ..Faults::default() };
    let mut env = Env::new(config).await;
    let tz = open_zone();
    // Every contact in the campaign's (open) zone, so the calling window is no reason to wait.
    let mut list = contacts(100, Some(tz.name()), 1_300_000);
    let uk: Vec<E164> = (0..10).map(|i| E164::parse(&format!("+4474001234{i:02}"), None).unwrap()).collect();
    for (i, phone) in uk.iter().enumerate() {
        list.insert(
            i * 9,
            NewContact {
                phone: phone.clone(),
                zone: contact_zone(Some(tz.name())),
                external_id: None,
                attributes: [("name".to_string(), format!("UK contact {i}"))].into(),
            },
        );
    }
    let id = env.campaign(&campaign_toml(tz.name(), 20.0, r#"amd = "enable""#), &list).await;
    env.spawn("all", 20.0, &[]);
    let metrics_url = format!("http://{}/metrics", env.callbacks_addr);
    wait_until_up(&metrics_url).await;

    // To the end, failing at once if the refusal paused the campaign.
    let started = Instant::now();
    let report = loop {
        let r = env.store.campaigns_report(id).await.unwrap();
        assert_ne!(
            r.status,
            CampaignStatus::Paused,
            "a refusal that concerns some numbers only paused the campaign: {:?}",
            r.status_reason
        );
        if r.by_state.iter().all(|(s, n)| s.is_terminal() || *n == 0) {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "campaign still open: {r:#?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(report.contacts, 110);
    assert!(env.sim.wait_idle(Duration::from_secs(30)).await, "every simulated call ended");

    // No +44 call was ever created; each +44 contact ended rejected, saying why.
    let calls = env.sim.calls();
    assert!(calls.iter().all(|c| !c.to.starts_with("+44")), "a call to a geo-blocked number was created");
    let uk_numbers: HashSet<String> = uk.iter().map(|p| p.to_string()).collect();
    let rejected = contacts_in(&env, id, ContactState::Invalid).await;
    let rejected_uk: Vec<_> = rejected.iter().filter(|(p, _, _)| uk_numbers.contains(p)).collect();
    assert_eq!(rejected_uk.len(), uk.len(), "every +44 contact ends invalid: {rejected:?}");
    for (phone, outcome, reason) in &rejected_uk {
        assert_eq!(outcome.as_deref(), Some(Outcome::Rejected.as_str()), "{phone}");
        let reason = reason.as_deref().unwrap_or("").to_lowercase();
        assert!(
            reason.contains("21215") || reason.contains("geo"),
            "{phone}: the reason names the refusal: {reason:?}"
        );
    }

    // The other contacts were all called and finished as their calls went.
    let (uncalled,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND attempts_made = 0 AND NOT phone LIKE '+44%'",
    )
    .bind(id)
    .fetch_one(env.store.pool())
    .await
    .unwrap();
    assert_eq!(uncalled, 0, "every +81 contact was called");
    assert_eq!(report.by_state.get(&ContactState::Canceled).copied().unwrap_or(0), 0);
    env.assert_one_call_per_attempt(id).await;
    assert_outcomes_match_the_simulator(&env, id).await;
    let refused = env.sim.stats().create_errors.get(&21215).copied().unwrap_or(0);
    assert!(refused as usize <= uk.len(), "a number refused for geo permission was tried again: {refused} refusals");

    // Counted for the alert on geo permissions.
    let (text, m) = scrape(&metrics_url).await;
    let refusals = m.sum("dialer_geo_permission_refusals_total", &[("campaign", &id.to_string()), ("country", "44")]);
    let exported: Vec<&str> = text.lines().filter(|l| l.contains("dialer_geo_permission_refusals_total")).collect();
    assert!(
        refusals > 0.0 && refusals <= uk.len() as f64,
        "dialer_geo_permission_refusals_total{{campaign=\"{id}\",country=\"44\"}} is {}; exported: {exported:?}",
        refusals.abs()
    );
}
