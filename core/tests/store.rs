//! Store round trips on a real, freshly migrated PostgreSQL database.

use dialer_core::domain::CampaignStatus::{self, Paused, Running};
use dialer_core::domain::{AttemptState, CampaignSpec, ContactState, E164};
use dialer_core::store::NewContact;
use testkit::{self, fresh_store};

pub const CAMPAIGN: &str = include_str!("../../examples/campaigns/appointment-confirmation.toml");

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_campaigns_round_trip() {
    let store = fresh_store().await;
    let spec = CampaignSpec::parse(CAMPAIGN, "c.toml").unwrap();
    let id = store.campaigns_insert(&spec).await.unwrap();
    let row = store.campaigns_get(id).await.unwrap();
    assert_eq!(row.status, CampaignStatus::Draft);
    assert_eq!(row.caller_id, spec.caller_id);
    assert_eq!(row.timezone.name(), spec.timezone.name());
    assert_eq!(store.campaigns_set_status(id, Running, None).await.unwrap(), Running);
    assert!(store.campaigns_set_status(id, Running, None).await.is_ok(), "idempotent");
    assert_eq!(store.campaigns_set_status(id, Paused, Some("ops")).await.unwrap(), Paused);
    store.campaigns_set_status(id, CampaignStatus::Canceled, None).await.unwrap();
    assert!(store.campaigns_set_status(id, Running, None).await.is_err(), "canceled is final");
}

#[tokio::test]
async fn contacts_insert_all_or_nothing_and_report_counts() {
    let store = fresh_store().await;
    let id = store.campaigns_insert(&CampaignSpec::parse(CAMPAIGN, "c.toml").unwrap()).await.unwrap();
    let c = |n: &str| NewContact {
        phone: E164::parse(n, None).unwrap(),
        zone: dialer_core::domain::compliance::ContactZone::campaigns(),
        external_id: None,
        attributes: [("name".to_string(), "A & B".to_string())].into(),
    };
    let mut seen = 0;
    let n = store.contacts_insert_many(id, &[c("+14155550100"), c("+14155550101")], |w| seen = w).await.unwrap();
    assert_eq!((n, seen), (2, 2));
    // A number already in the campaign fails the whole batch: nothing half-written.
    let err = store.contacts_insert_many(id, &[c("+14155550102"), c("+14155550100")], |_| {}).await;
    assert!(err.is_err());
    let report = store.campaigns_report(id).await.unwrap();
    assert_eq!(report.contacts, 2);
    assert_eq!(report.by_state.get(&ContactState::Pending), Some(&2));
}

#[tokio::test]
async fn dnc_is_global_or_per_campaign_and_idempotent() {
    let store = fresh_store().await;
    let id = store.campaigns_insert(&CampaignSpec::parse(CAMPAIGN, "c.toml").unwrap()).await.unwrap();
    let a = E164::parse("+14155550123", None).unwrap();
    let b = E164::parse("+14155550124", None).unwrap();
    assert_eq!(store.dnc_add_many(&[a.clone(), a.clone()], None, "asked", "cli").await.unwrap(), 1);
    assert_eq!(store.dnc_add_many(std::slice::from_ref(&a), None, "asked", "cli").await.unwrap(), 0);
    store.dnc_add_many(std::slice::from_ref(&b), Some(id), "asked", "cli").await.unwrap();
    assert!(store.dnc_blocks(&a, id).await.unwrap());
    assert!(store.dnc_blocks(&b, id).await.unwrap());
    assert!(!store.dnc_blocks(&b, id + 1).await.unwrap());
}

mod claims {
    use super::*;
    use dialer_core::store::{ClaimedAttempt, DialingGate, Store};

    /// The pre-POST check for one attempt of owner "me".
    async fn mark_dialing(store: &Store, a: &ClaimedAttempt, max_calls_24h: Option<i32>) -> DialingGate {
        let limits = [max_calls_24h];
        let gates = store.attempts_mark_dialing_many("me", a.campaign_id, std::slice::from_ref(a), &limits, false);
        gates.await.unwrap().pop().expect("one gate per attempt")
    }

    async fn running_campaign(store: &Store, max_in_flight: i32, n: usize) -> i64 {
        let text = CAMPAIGN.replace("max_in_flight = 50", &format!("max_in_flight = {max_in_flight}"));
        let id = store.campaigns_insert(&CampaignSpec::parse(&text, "c.toml").unwrap()).await.unwrap();
        let contacts: Vec<NewContact> = (0..n)
            .map(|i| NewContact {
                phone: E164::parse(&format!("+1415555{:04}", 2000 + i), None).unwrap(),
                zone: dialer_core::domain::compliance::ContactZone::campaigns(),
                external_id: None,
                attributes: [("name".to_string(), "x".to_string())].into(),
            })
            .collect();
        store.contacts_insert_many(id, &contacts, |_| {}).await.unwrap();
        id
    }

    #[tokio::test]
    async fn claims_need_a_running_campaign_respect_the_in_flight_cap_and_never_overlap() {
        let store = fresh_store().await;
        let id = running_campaign(&store, 30, 200).await;
        assert!(store.attempts_claim_due(id, 50, "a", 60.0).await.unwrap().is_empty(), "draft claims nothing");
        store.campaigns_set_status(id, Running, None).await.unwrap();
        // Eight replicas claim at the same moment, each asking for more than the cap's share: each one
        // must see what the others have just claimed.
        let claims = futures::future::join_all((0..8).map(|i| {
            let store = store.clone();
            async move { store.attempts_claim_due(id, 20, &format!("r{i}"), 60.0).await.unwrap() }
        }))
        .await;
        let mut ids: Vec<i64> = claims.iter().flatten().map(|x| x.contact_id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "no contact claimed twice");
        assert_eq!(n, 30, "concurrent claimers fill the in-flight cap of 30 exactly");
        // The cap counts claimed and calling contacts.
        assert!(store.attempts_claim_due(id, 100, "c", 60.0).await.unwrap().is_empty(), "no room left");
    }

    #[tokio::test]
    async fn a_rescued_and_reclaimed_contact_cannot_be_dialled_through_its_stale_attempt() {
        let store = fresh_store().await;
        let id = running_campaign(&store, 10, 1).await;
        store.campaigns_set_status(id, Running, None).await.unwrap();
        let first = store.attempts_claim_due(id, 1, "me", 0.001).await.unwrap().remove(0);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(store.contacts_rescue_expired().await.unwrap(), 1);
        let second = store.attempts_claim_due(id, 1, "me", 60.0).await.unwrap().remove(0);
        assert_eq!(second.attempt_no, first.attempt_no, "the unsent attempt number is reused");
        // The same dialer still holds the stale claim in its queue: it must not move anything.
        assert_eq!(mark_dialing(&store, &first, None).await, DialingGate::LeaseLost);
        assert_eq!(mark_dialing(&store, &second, None).await, DialingGate::Go);
        let (state, made): (ContactState, i32) =
            sqlx::query_as("SELECT state, attempts_made FROM contacts WHERE campaign_id = $1")
                .bind(id)
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!((state, made), (ContactState::Calling, 1));
    }

    #[tokio::test]
    async fn the_last_check_before_the_post_stops_dnc_and_the_24h_limit() {
        let store = fresh_store().await;
        let id = running_campaign(&store, 10, 2).await;
        store.campaigns_set_status(id, Running, None).await.unwrap();
        let claimed = store.attempts_claim_due(id, 2, "me", 60.0).await.unwrap();
        // Put the first number on the DNC list after it was claimed.
        let dnc = claimed[0].phone.clone();
        store.dnc_add_many(&[dnc], None, "asked", "test").await.unwrap();
        assert_eq!(mark_dialing(&store, &claimed[0], None).await, DialingGate::Dnc);
        // The second number was already called today in another campaign's attempt: limit of 1.
        sqlx::query(
            "INSERT INTO attempts (contact_id, campaign_id, attempt_no, phone, state, requested_at, finished_at)
             VALUES ($1, $2, 99, $3, $4, now() - interval '1 hour', now())",
        )
        .bind(claimed[1].contact_id)
        .bind(id)
        .bind(&claimed[1].phone)
        .bind(AttemptState::Finished)
        .execute(store.pool())
        .await
        .unwrap();
        assert_eq!(mark_dialing(&store, &claimed[1], Some(1)).await, DialingGate::Limit { recent: 1 });
        let clears = store.attempts_limit_clears_at(&claimed[1].phone, 1).await.unwrap().unwrap();
        assert!(clears > chrono::Utc::now() + chrono::Duration::hours(22));
    }

    /// The dispatcher checks many attempts in one statement: each gets its own answer, in order, and only
    /// the ones that pass move to `dialing`.
    #[tokio::test]
    async fn one_batched_check_answers_each_attempt_on_its_own() {
        let store = fresh_store().await;
        let id = running_campaign(&store, 10, 3).await;
        store.campaigns_set_status(id, Running, None).await.unwrap();
        let claimed = store.attempts_claim_due(id, 3, "me", 60.0).await.unwrap();
        let dnc = claimed[1].phone.clone();
        store.dnc_add_many(&[dnc], None, "asked", "test").await.unwrap();
        // The third one was claimed by this dialer but is checked under another owner's name: not ours.
        let mine = &claimed[..2];
        let gates = store.attempts_mark_dialing_many("me", id, mine, &[], false).await.unwrap();
        assert_eq!(gates, vec![DialingGate::Go, DialingGate::Dnc]);
        let other = store.attempts_mark_dialing_many("other", id, &claimed[2..], &[], false).await.unwrap();
        assert_eq!(other, vec![DialingGate::LeaseLost]);
        let states: Vec<(i64, AttemptState)> =
            sqlx::query_as("SELECT id, state FROM attempts WHERE campaign_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(store.pool())
                .await
                .unwrap();
        let by_id: std::collections::HashMap<i64, AttemptState> = states.into_iter().collect();
        assert_eq!(by_id[&claimed[0].attempt_id], AttemptState::Dialing);
        assert_eq!(
            by_id[&claimed[1].attempt_id],
            AttemptState::Claimed,
            "a DNC number is not moved; the dispatcher blocks it"
        );
        assert_eq!(by_id[&claimed[2].attempt_id], AttemptState::Claimed);
    }
}

/// Settling is set-based per callback batch; two finished attempts of one contact in the same batch (a
/// late report of a rescued call beside its successor's) must come out exactly as delivered one by one.
#[tokio::test]
async fn a_batch_holding_two_attempts_of_one_contact_settles_like_one_by_one() {
    use dialer_core::domain::{CallSid, CallStatus};
    use dialer_core::store::{EventApplied, EventParams, StatusEvent, Store};

    async fn setup(store: &Store) -> (i64, i64) {
        let id = store.campaigns_insert(&CampaignSpec::parse(CAMPAIGN, "c.toml").unwrap()).await.unwrap();
        let contact = NewContact {
            phone: E164::parse("+14155550177", None).unwrap(),
            zone: dialer_core::domain::compliance::ContactZone::campaigns(),
            external_id: None,
            attributes: Default::default(),
        };
        store.contacts_insert_many(id, &[contact], |_| {}).await.unwrap();
        let cid: i64 = sqlx::query_scalar("SELECT id FROM contacts WHERE campaign_id = $1")
            .bind(id)
            .fetch_one(store.pool())
            .await
            .unwrap();
        let old = testkit::insert_attempt(store, cid, AttemptState::Created, Some(&sid(1))).await;
        let new = testkit::insert_attempt(store, cid, AttemptState::Created, Some(&sid(2))).await;
        (old, new)
    }
    fn sid(n: u8) -> CallSid {
        CallSid::parse(&format!("CA{:032x}", n)).unwrap()
    }
    fn busy(attempt_id: i64, n: u8) -> StatusEvent {
        StatusEvent {
            attempt_id,
            call_sid: sid(n),
            status: CallStatus::Busy,
            sequence_number: 1,
            call_duration_s: Some(0),
            sip_response_code: Some(486),
            answered_by: None,
            timestamp: None,
            queue_time_ms: None,
            idempotency_token: None,
            params: EventParams::from_form(&[]),
        }
    }
    async fn state(store: &Store, old: i64) -> Vec<(String, Option<String>, i32, String)> {
        sqlx::query_as(
            "SELECT a.state, a.outcome, c.attempts_made, c.state FROM attempts a JOIN contacts c ON c.id = a.contact_id
             WHERE a.contact_id = (SELECT contact_id FROM attempts WHERE id = $1) ORDER BY a.attempt_no",
        )
        .bind(old)
        .fetch_all(store.pool())
        .await
        .unwrap()
    }
    let strip = |a: Vec<EventApplied>| -> Vec<(bool, bool)> {
        a.into_iter()
            .map(|x| match x {
                EventApplied::New { settled: Some(s), .. } => (s.applied, s.contact_updated),
                other => panic!("expected a settled event, got {other:?}"),
            })
            .collect()
    };

    let batched = fresh_store().await;
    let (old, new) = setup(&batched).await;
    let together = strip(batched.events_apply_many(&[busy(old, 1), busy(new, 2)]).await.unwrap());

    let single = fresh_store().await;
    let (old1, new1) = setup(&single).await;
    let mut one_by_one = strip(single.events_apply_many(&[busy(old1, 1)]).await.unwrap());
    one_by_one.extend(strip(single.events_apply_many(&[busy(new1, 2)]).await.unwrap()));

    assert_eq!(together, one_by_one);
    assert_eq!(together, vec![(true, false), (true, true)], "only the current attempt moves the contact");
    assert_eq!(state(&batched, old).await, state(&single, old1).await);
}

/// Recurrence: one occurrence is taken by exactly one of several replicas racing for it; a paused campaign
/// stays paused and a canceled one is never touched.
#[tokio::test]
async fn a_recurrence_occurrence_applies_once_and_never_reopens_a_paused_campaign() {
    let store = fresh_store().await;
    let text = format!("{CAMPAIGN}\n[recurrence]\ncron = \"0 0 9 * * *\"\ntimezone = \"Asia/Tokyo\"\n");
    let id = store.campaigns_insert(&CampaignSpec::parse(&text, "r.toml").unwrap()).await.unwrap();
    let at = chrono::Utc::now();
    let answers = futures::future::join_all((0..6).map(|_| {
        let store = store.clone();
        async move { store.campaigns_open_occurrence(id, at).await.unwrap() }
    }))
    .await;
    assert_eq!(answers.iter().filter(|a| a.is_some()).count(), 1, "one replica takes the occurrence: {answers:?}");
    assert_eq!(store.campaigns_get(id).await.unwrap().status, Running);
    // The same or an older occurrence again: nothing.
    assert_eq!(store.campaigns_open_occurrence(id, at).await.unwrap(), None);
    store.campaigns_set_status(id, Paused, Some("ops")).await.unwrap();
    let next = at + chrono::Duration::days(1);
    assert_eq!(store.campaigns_open_occurrence(id, next).await.unwrap(), Some(Paused), "recorded, still paused");
    store.campaigns_set_status(id, CampaignStatus::Canceled, None).await.unwrap();
    assert_eq!(store.campaigns_open_occurrence(id, next + chrono::Duration::days(1)).await.unwrap(), None);
    assert_eq!(store.campaigns_get(id).await.unwrap().status, CampaignStatus::Canceled);
}

/// A call that ends while the cancel commits can send its contact back to pending (the cancel saw it
/// calling); housekeeping's sweep ends it canceled, and only in canceled campaigns.
#[tokio::test]
async fn a_contact_back_to_pending_in_a_canceled_campaign_is_swept_to_canceled() {
    let store = fresh_store().await;
    let contact = |n: &str| NewContact {
        phone: E164::parse(n, None).unwrap(),
        zone: dialer_core::domain::compliance::ContactZone::campaigns(),
        external_id: None,
        attributes: [("name".to_string(), "x".to_string())].into(),
    };
    let canceled = store.campaigns_insert(&CampaignSpec::parse(CAMPAIGN, "c.toml").unwrap()).await.unwrap();
    let running = store.campaigns_insert(&CampaignSpec::parse(CAMPAIGN, "c.toml").unwrap()).await.unwrap();
    store.contacts_insert_many(canceled, &[contact("+14155550301")], |_| {}).await.unwrap();
    store.contacts_insert_many(running, &[contact("+14155550302")], |_| {}).await.unwrap();
    store.campaigns_set_status(canceled, Running, None).await.unwrap();
    store.campaigns_set_status(running, Running, None).await.unwrap();
    let state_of = |campaign: i64| {
        let store = store.clone();
        async move {
            let (s,): (ContactState,) = sqlx::query_as("SELECT state FROM contacts WHERE campaign_id = $1")
                .bind(campaign)
                .fetch_one(store.pool())
                .await
                .unwrap();
            s
        }
    };
    let calling: (i64,) = sqlx::query_as("SELECT id FROM contacts WHERE campaign_id = $1")
        .bind(canceled)
        .fetch_one(store.pool())
        .await
        .unwrap();
    testkit::insert_attempt(&store, calling.0, AttemptState::Created, None).await;
    store.campaigns_set_status(canceled, CampaignStatus::Canceled, None).await.unwrap();
    assert_eq!(state_of(canceled).await, ContactState::Calling, "a call in flight is left to end");
    // The racing settle: its retry decision was taken before it saw the cancel.
    sqlx::query("UPDATE contacts SET state = $2 WHERE campaign_id = $1")
        .bind(canceled)
        .bind(ContactState::Pending)
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(store.contacts_cancel_stragglers().await.unwrap(), 1);
    assert_eq!(state_of(canceled).await, ContactState::Canceled);
    assert_eq!(state_of(running).await, ContactState::Pending, "a running campaign's contacts are not touched");
}

/// Guarantee: the 24 h limit and one-notification-per-reference hold across campaigns running at once.
/// Four campaigns share every number (limit 1 a day) or every parcel reference (one notification each);
/// sixteen claimers race through them. Each number is dialled once and each reference is in one call.
mod cross_campaign_limits {
    use std::collections::HashMap;

    use super::*;
    use dialer_core::domain::compliance::ContactZone;
    use dialer_core::store::{DialingGate, Store};

    const CAMPAIGNS: usize = 4;
    const CLAIMERS_PER_CAMPAIGN: usize = 4;
    const CONTACTS: usize = 60;

    async fn campaign(store: &Store, limits: &str, phone_base: usize) -> i64 {
        let text = CAMPAIGN
            .replace("max_in_flight = 50", "max_in_flight = 1000")
            .replace("max_calls_per_number_24h = 3", limits);
        let id = store.campaigns_insert(&CampaignSpec::parse(&text, "c.toml").unwrap()).await.unwrap();
        let contacts: Vec<NewContact> = (0..CONTACTS)
            .map(|i| NewContact {
                phone: E164::parse(&format!("+1415555{:04}", phone_base + i), None).unwrap(),
                zone: ContactZone::campaigns(),
                external_id: Some(format!("PARCEL-{i}")),
                attributes: [("name".to_string(), "x".into()), ("appointment_at".to_string(), "x".into())].into(),
            })
            .collect();
        store.contacts_insert_many(id, &contacts, |_| {}).await.unwrap();
        store.campaigns_set_status(id, Running, None).await.unwrap();
        id
    }

    /// Every claimer claims small batches and checks them like the dispatcher, until nothing is left.
    async fn race(store: &Store, campaigns: &[i64], limit: Option<i32>, one_per_reference: bool) -> Vec<DialingGate> {
        let mut tasks = tokio::task::JoinSet::new();
        for (c, &id) in campaigns.iter().enumerate() {
            for k in 0..CLAIMERS_PER_CAMPAIGN {
                let store = store.clone();
                tasks.spawn(async move {
                    let owner = format!("claimer-{c}-{k}");
                    let mut gates = Vec::new();
                    loop {
                        let claimed = store.attempts_claim_due(id, 3, &owner, 60.0).await.unwrap();
                        if claimed.is_empty() {
                            return gates;
                        }
                        let limits = vec![limit; claimed.len()];
                        gates.extend(
                            store
                                .attempts_mark_dialing_many(&owner, id, &claimed, &limits, one_per_reference)
                                .await
                                .unwrap(),
                        );
                    }
                });
            }
        }
        let mut all = Vec::new();
        while let Some(gates) = tasks.join_next().await {
            all.extend(gates.unwrap());
        }
        all
    }

    async fn count_by(store: &Store, column: &str, campaigns: &[i64]) -> HashMap<String, i64> {
        let sql = format!(
            "SELECT c.{column}, count(*) FROM attempts a JOIN contacts c ON c.id = a.contact_id
             WHERE a.campaign_id = ANY($1) AND a.state = 'dialing' GROUP BY 1"
        );
        sqlx::query_as::<_, (String, i64)>(&sql)
            .bind(campaigns)
            .fetch_all(store.pool())
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    #[tokio::test]
    async fn one_call_a_day_per_number_however_many_campaigns_dial_it() {
        let store = fresh_store().await;
        let mut ids = Vec::new();
        for _ in 0..CAMPAIGNS {
            ids.push(campaign(&store, "max_calls_per_number_24h = 1", 3000).await);
        }
        let gates = race(&store, &ids, Some(1), false).await;
        let go = gates.iter().filter(|g| **g == DialingGate::Go).count();
        let limited = gates.iter().filter(|g| matches!(g, DialingGate::Limit { .. })).count();
        assert_eq!((go, limited), (CONTACTS, CONTACTS * (CAMPAIGNS - 1)), "{gates:?}");
        let per_phone = count_by(&store, "phone", &ids).await;
        assert_eq!(per_phone.len(), CONTACTS);
        assert!(per_phone.values().all(|&n| n == 1), "{per_phone:?}");
    }

    #[tokio::test]
    async fn one_call_per_parcel_reference_across_campaigns() {
        let store = fresh_store().await;
        let mut ids = Vec::new();
        for c in 0..CAMPAIGNS {
            // Different numbers, the same parcels: a parcel re-imported into another campaign.
            ids.push(campaign(&store, "one_per_external_id = true", 4000 + c * 100).await);
        }
        let gates = race(&store, &ids, None, true).await;
        let go = gates.iter().filter(|g| **g == DialingGate::Go).count();
        let waiting = gates.iter().filter(|g| **g == DialingGate::ReferenceInFlight).count();
        assert_eq!((go, waiting), (CONTACTS, CONTACTS * (CAMPAIGNS - 1)), "{gates:?}");
        let per_ref = count_by(&store, "external_id", &ids).await;
        assert_eq!(per_ref.len(), CONTACTS);
        assert!(per_ref.values().all(|&n| n == 1), "{per_ref:?}");
    }
}

/// A hot table that grows from empty is analyzed once it has changed by a thousand rows (more than
/// twice its analyzed size), so generic plans cached while it was empty stop sequential-scanning it;
/// then not again until it has tripled.
#[tokio::test]
async fn a_hot_table_that_has_grown_from_empty_is_analyzed_once_then_left_alone() {
    let store = fresh_store().await;
    assert_eq!(store.stats_refresh_grown().await.unwrap(), Vec::<String>::new(), "nothing has changed yet");
    let id = store.campaigns_insert(&CampaignSpec::parse(CAMPAIGN, "c.toml").unwrap()).await.unwrap();
    let contacts: Vec<NewContact> = (0..3000)
        .map(|i| NewContact {
            phone: E164::parse(&format!("+1415555{i:04}"), None).unwrap(),
            zone: dialer_core::domain::compliance::ContactZone::campaigns(),
            external_id: None,
            attributes: Default::default(),
        })
        .collect();
    store.contacts_insert_many(id, &contacts, |_| {}).await.unwrap();
    // Backends report their table counters to the statistics system within about a second.
    let mut analyzed = Vec::new();
    for _ in 0..100 {
        analyzed = store.stats_refresh_grown().await.unwrap();
        if !analyzed.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(analyzed, ["contacts"]);
    let reltuples: f32 = sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = 'contacts'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(reltuples, 3000.0, "the planner now knows the table's size");
    assert_eq!(store.stats_refresh_grown().await.unwrap(), Vec::<String>::new(), "not again until it has tripled");
}
