use std::time::Duration;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_2000_contact_campaign_at_cps_50_ends_terminal_and_never_exceeds_50_in_any_second() {
    let mut env = Env::new(sim_config(50.0)).await;
    let tz = open_zone();
    let id = env.campaign(&campaign_toml(tz.name(), 50.0, ""), &contacts(2000, None, 0)).await;
    env.spawn("all", 50.0, &[]);
    let r = env.wait_finished(id, Duration::from_secs(600)).await;
    assert_eq!(r.contacts, 2000);
    let stats = env.sim.stats();
    assert!(stats.peak_calls_per_second <= 50, "peak {} > 50", stats.peak_calls_per_second);
    assert!(stats.calls_created >= 2000);
    env.assert_one_call_per_attempt(id).await;
}

/// The campaign's own limit holds in every one-second window as the simulator counts arrivals, even when
/// the account would allow twenty times more (the campaign pacer has its own window guard at send time).
#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_at_cps_50_never_exceeds_50_in_any_second_under_an_account_cps_of_1000() {
    let mut env = Env::new(sim_config(1000.0)).await;
    let tz = open_zone();
    let id = env.campaign(&campaign_toml(tz.name(), 50.0, ""), &contacts(600, None, 200_000)).await;
    env.spawn("all", 1000.0, &[]);
    let r = env.wait_finished(id, Duration::from_secs(600)).await;
    assert_eq!(r.contacts, 600);
    let stats = env.sim.stats();
    assert!(stats.peak_calls_per_second <= 50, "peak {} > the campaign's 50", stats.peak_calls_per_second);
    assert!(stats.calls_created >= 600);
    env.assert_one_call_per_attempt(id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_dialers_sharing_cps_30_never_exceed_it_and_never_dial_an_attempt_twice() {
    let mut env = Env::new(sim_config(30.0)).await;
    let tz = open_zone();
    let id = env.campaign(&campaign_toml(tz.name(), 30.0, ""), &contacts(600, None, 100_000)).await;
    env.spawn("callbacks", 30.0, &[]);
    for _ in 0..3 {
        env.spawn("dialer", 30.0, &[]);
    }
    env.wait_finished(id, Duration::from_secs(600)).await;
    let stats = env.sim.stats();
    assert!(stats.peak_calls_per_second <= 30, "peak {} > 30", stats.peak_calls_per_second);
    env.assert_one_call_per_attempt(id).await;
    // All three took part.
    let (owners,): (i64,) = sqlx::query_as("SELECT count(DISTINCT lease_owner) FROM attempts WHERE campaign_id = $1")
        .bind(id)
        .fetch_one(env.store.pool())
        .await
        .unwrap();
    assert_eq!(owners, 3, "every replica dialled");
}
