use std::time::Duration;

use dialer_core::domain::AttemptState;
use dialer_sim::Faults;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn created_then_timed_out_creates_are_reconciled_and_never_dialled_twice() {
    let mut config = sim_config(40.0);
    config.faults = Faults { timeout: 0.1, timeout_delay: Duration::from_secs(3), ..Faults::default() };
    let mut env = Env::new(config).await;
    let tz = open_zone();
    let id = env.campaign(&campaign_toml(tz.name(), 40.0, ""), &contacts(300, None, 300_000)).await;
    env.spawn("all", 40.0, &[]);
    env.wait_finished(id, Duration::from_secs(600)).await;
    env.assert_one_call_per_attempt(id).await;
    let (timed_out, open): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE error_message IS NOT NULL AND call_sid IS NOT NULL),
                count(*) FILTER (WHERE state = ANY($2))
         FROM attempts WHERE campaign_id = $1",
    )
    .bind(id)
    .bind([AttemptState::Dialing, AttemptState::Parked])
    .fetch_one(env.store.pool())
    .await
    .unwrap();
    assert!(timed_out > 0, "some creates timed out and were then attributed");
    assert_eq!(open, 0, "all reconciled");
}
