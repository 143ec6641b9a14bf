use std::time::Duration;

use dialer_core::domain::{AttemptState, ContactState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::helpers::*;

/// The seed of the kill moments: `CRASH_SEED` when set (to replay a failure), else a random one. Printed
/// first, so a failing run's output names it; replaying it repeats the same kill delays (the processes'
/// own timing still varies from run to run).
fn crash_seed() -> u64 {
    let seed = match std::env::var("CRASH_SEED") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("CRASH_SEED={s:?} is not a u64")),
        Err(_) => rand::random(),
    };
    eprintln!("kill -9 moments from CRASH_SEED={seed} (set it to replay them)");
    seed
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_moments_loses_nothing_and_dials_no_attempt_twice() {
    let seed = crash_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut env = Env::new(sim_config(40.0)).await;
    let tz = open_zone();
    let id = env.campaign(&campaign_toml(tz.name(), 40.0, ""), &contacts(800, None, 200_000)).await;
    env.spawn("callbacks", 40.0, &[]);
    let mut dialer = env.spawn("dialer", 40.0, &[]);
    let mut waits = Vec::new();
    while waits.len() < 6 {
        let wait = rng.gen_range(700..2500);
        waits.push(wait);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        env.kill(dialer);
        dialer = env.spawn("dialer", 40.0, &[]);
    }
    eprintln!("killed after {waits:?} ms");
    let created_before_end = env.sim.stats().calls_created;
    assert!(created_before_end > 0, "the dialer made progress between kills (CRASH_SEED={seed})");
    let r = env.wait_finished(id, Duration::from_secs(600)).await;
    assert_eq!(r.contacts, 800, "no contact lost (CRASH_SEED={seed})");
    env.assert_one_call_per_attempt(id).await;
    // Every contact explains itself.
    let (unexplained,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM contacts WHERE campaign_id = $1 AND (final_outcome IS NULL OR final_reason IS NULL)",
    )
    .bind(id)
    .fetch_one(env.store.pool())
    .await
    .unwrap();
    assert_eq!(unexplained, 0, "every contact explains itself (CRASH_SEED={seed})");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_claiming_and_gives_back_what_was_not_sent() {
    let mut env = Env::new(sim_config(20.0)).await;
    let tz = open_zone();
    let id = env.campaign(&campaign_toml(tz.name(), 20.0, ""), &contacts(400, None, 500_000)).await;
    env.spawn("callbacks", 20.0, &[]);
    let dialer = env.spawn("dialer", 20.0, &[]);
    // Let it get going, then ask it to stop.
    for _ in 0..100 {
        if env.sim.stats().calls_created >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = env.pid(dialer);
    assert!(std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let exited = env.wait_exit(dialer, Duration::from_secs(30));
    assert!(exited, "the dialer exits within its drain bound");
    let calls_at_exit = env.sim.stats().calls_created;
    // Nothing is left claimed: queued contacts went back to pending at once (no lease to wait out).
    let (claimed, dialing): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM contacts WHERE campaign_id = $1 AND state = $2),
                (SELECT count(*) FROM attempts WHERE campaign_id = $1 AND state = $3)",
    )
    .bind(id)
    .bind(ContactState::Claimed)
    .bind(AttemptState::Dialing)
    .fetch_one(env.store.pool())
    .await
    .unwrap();
    assert_eq!((claimed, dialing), (0, 0), "claims released and POSTs drained");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.sim.stats().calls_created, calls_at_exit, "no call after exit");
    // A new dialer carries on to the end.
    env.spawn("dialer", 20.0, &[]);
    env.wait_finished(id, Duration::from_secs(600)).await;
    env.assert_one_call_per_attempt(id).await;
}
