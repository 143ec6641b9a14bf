//! Several campaigns on one account whose CPS is smaller than what they ask for together (DESIGN.md
//! guarantees 1 and 5). Each campaign alone may go as fast as the account, so their calls meet at the
//! account's pacer. A call committed `dialing` that then waits there longer than the reconciliation grace
//! (2 × TWILIO_TIMEOUT_SECONDS + 2 s) looks like a POST that never reached Twilio: reconciliation finds no
//! call, the contact is dialled again, and the waiting worker still sends its POST — one number, two
//! calls. With TWILIO_TIMEOUT_SECONDS=2 that grace is 6 s, so the race shows within a minute.
//!
//! Each run is bounded (not to the end of the campaigns): the dialer is stopped, then the simulator's
//! record and the database are checked.

use std::collections::HashMap;
use std::time::Duration;

use dialer_core::config::DEFAULT_LEASE;
use dialer_core::domain::AttemptState;
use dialer_core::store::NewContact;

use crate::helpers::*;

struct Contention {
    campaigns: usize,
    contacts_each: usize,
    account_cps: f64,
    campaign_cps: f64,
    /// How long the dialer runs before it is stopped (a bound on the test, not a measurement).
    run_for: Duration,
    /// The least share of all calls each campaign must get (equal weights: fair is 1 / campaigns).
    min_share: f64,
    offset: usize,
}

async fn campaigns_share_a_small_account(t: Contention) {
    let mut env = Env::new(sim_config(t.account_cps)).await;
    let tz = open_zone();
    // Every contact gets one attempt, so any second call to a number is a double dial.
    let toml = campaign_toml(tz.name(), t.campaign_cps, "max_attempts = 1");
    let mut ids = Vec::new();
    let mut campaign_of: HashMap<String, i64> = HashMap::new();
    for k in 0..t.campaigns {
        let list: Vec<NewContact> = contacts(t.contacts_each, None, t.offset + k * 10_000);
        let id = env.campaign(&toml, &list).await;
        campaign_of.extend(list.iter().map(|c| (c.phone.to_string(), id)));
        ids.push(id);
    }
    let cps = t.account_cps.to_string();
    // The product's default lease: a dispatcher then holds up to a third of it in claims per campaign
    // (the short test lease would keep the queue at the account pacer too short to show the race).
    let lease = DEFAULT_LEASE.as_secs().to_string();
    let dialer = env.spawn("all", t.account_cps, &[("TWILIO_TIMEOUT_SECONDS", "2"), ("LEASE_SECONDS", &lease)]);
    tokio::time::sleep(t.run_for).await;
    env.terminate(dialer, Duration::from_secs(30));
    assert!(env.sim.wait_idle(Duration::from_secs(30)).await, "every simulated call ended");

    let stats = env.sim.stats();
    let calls = env.sim.calls();
    eprintln!(
        "{} campaigns at account CPS {cps}: {} calls in {:?}, peak {} in one second, by status {:?}",
        t.campaigns,
        calls.len(),
        t.run_for,
        stats.peak_calls_per_second,
        stats.by_status
    );
    assert!(!calls.is_empty(), "the dialer made calls");

    // No number was called twice.
    let mut per_number: HashMap<&str, usize> = HashMap::new();
    for c in &calls {
        *per_number.entry(c.to.as_str()).or_default() += 1;
    }
    let twice: Vec<(&str, usize)> = per_number.iter().filter(|(_, n)| **n > 1).map(|(k, n)| (*k, *n)).collect();
    assert!(twice.is_empty(), "numbers called more than once: {twice:?}");
    assert_eq!((stats.duplicate_to_numbers, stats.duplicate_to_url_pairs), (0, 0), "{stats:?}");

    // The account CPS held in every one-second window, as the simulator counts arrivals.
    assert!(
        stats.peak_calls_per_second as f64 <= t.account_cps,
        "peak {} calls in one second > account CPS {cps}",
        stats.peak_calls_per_second
    );

    // Equal weights share the account fairly: every campaign got a fair part of the calls.
    let mut per_campaign: HashMap<i64, usize> = HashMap::new();
    for c in &calls {
        let id = campaign_of.get(&c.to).unwrap_or_else(|| panic!("a call to {} belongs to no campaign", c.to));
        *per_campaign.entry(*id).or_default() += 1;
    }
    for id in &ids {
        let n = per_campaign.get(id).copied().unwrap_or(0);
        let share = n as f64 / calls.len() as f64;
        assert!(
            share >= t.min_share,
            "campaign {id} got {n} of {} calls ({:.0} %), less than {:.0} %: {per_campaign:?}",
            calls.len(),
            share * 100.0,
            t.min_share * 100.0
        );
    }

    // The database agrees: one attempt per contact at most, and every call is some attempt's.
    let (over,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM contacts WHERE campaign_id = ANY($1) AND attempts_made > 1")
            .bind(&ids)
            .fetch_one(env.store.pool())
            .await
            .unwrap();
    assert_eq!(over, 0, "contacts with more than one attempt made although max_attempts = 1");
    let (mut requested, mut given_up) = (0, 0);
    for id in &ids {
        requested += env.store.campaigns_report(*id).await.unwrap().calls_requested;
        given_up += env.store.attempts_count_in_state(*id, AttemptState::NotCreated).await.unwrap();
    }
    assert_eq!(
        requested as usize,
        calls.len(),
        "every call in the simulator is one requested attempt ({given_up} attempts were settled as never \
         created: a call made for one of them is one the database does not know about)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_campaigns_on_account_cps_2_never_call_a_number_twice_and_share_the_account() {
    campaigns_share_a_small_account(Contention {
        campaigns: 2,
        contacts_each: 120,
        account_cps: 2.0,
        campaign_cps: 2.0,
        run_for: Duration::from_secs(45),
        min_share: 0.25,
        offset: 700_000,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_campaigns_on_account_cps_1_never_call_a_number_twice_and_share_the_account() {
    campaigns_share_a_small_account(Contention {
        campaigns: 3,
        contacts_each: 80,
        account_cps: 1.0,
        campaign_cps: 1.0, // the campaign file's default
        run_for: Duration::from_secs(45),
        min_share: 0.15,
        offset: 800_000,
    })
    .await;
}
