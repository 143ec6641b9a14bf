use std::time::Duration;

use crate::helpers::*;

/// One campaign of `n` contacts at `campaign_cps` under `account_cps`, to the end: every contact terminal,
/// no one-second window (as the simulator counts arrivals) above the campaign's CPS, one call per attempt.
async fn a_campaign_holds_its_cps(n: usize, offset: usize, campaign_cps: f64, account_cps: f64) {
    let mut env = Env::new(sim_config(account_cps)).await;
    let tz = open_zone();
    let id = env.campaign(&campaign_toml(tz.name(), campaign_cps, ""), &contacts(n, None, offset)).await;
    env.spawn("all", account_cps, &[]);
    let r = env.wait_finished(id, Duration::from_secs(600)).await;
    assert_eq!(r.contacts, n as i64);
    let stats = env.sim.stats();
    let limit = campaign_cps as usize;
    assert!(stats.peak_calls_per_second <= limit, "peak {} > the campaign's {limit}", stats.peak_calls_per_second);
    assert!(stats.calls_created >= n);
    env.assert_one_call_per_attempt(id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_2000_contact_campaign_at_cps_50_ends_terminal_and_never_exceeds_50_in_any_second() {
    a_campaign_holds_its_cps(2000, 0, 50.0, 50.0).await;
}

/// The campaign's own limit holds in every one-second window as the simulator counts arrivals, even when
/// the account would allow twenty times more (the campaign pacer has its own window guard at send time).
#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_at_cps_50_never_exceeds_50_in_any_second_under_an_account_cps_of_1000() {
    a_campaign_holds_its_cps(600, 200_000, 50.0, 1000.0).await;
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
