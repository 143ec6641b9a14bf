//! The webhook outbox on a real PostgreSQL database: events are written by the fact's own transaction, once;
//! the claim hands out one contact's events in order; failures back off, go dead and are replayed.

use std::time::Duration;

use chrono::Utc;
use dialer_core::domain::webhook::EventType;
use dialer_core::domain::{AttemptState, CallStatus, CampaignSpec, CampaignStatus, E164};
use dialer_core::store::{DeliveryFilter, FailedDelivery, NewContact, Store, StoreError, TerminalFacts};
use testkit::fresh_store;

const CAMPAIGN: &str = include_str!("../../examples/campaigns/appointment-confirmation.toml");
const LEASE: Duration = Duration::from_secs(60);

/// A campaign with `n` pending contacts (external ids `ext-<i>`), and a webhook endpoint if `endpoint`.
async fn new_campaign(store: &Store, n: usize, endpoint: bool) -> (i64, Vec<i64>) {
    let id = store.campaigns_insert(&CampaignSpec::parse(CAMPAIGN, "c.toml").unwrap()).await.unwrap();
    let contacts: Vec<NewContact> = (0..n)
        .map(|i| NewContact {
            phone: E164::parse(&format!("+1415555{:04}", 3000 + i), None).unwrap(),
            zone: dialer_core::domain::compliance::ContactZone::campaigns(),
            external_id: Some(format!("ext-{i}")),
            attributes: [("name".to_string(), "x".to_string())].into(),
        })
        .collect();
    store.contacts_insert_many(id, &contacts, |_| {}).await.unwrap();
    if endpoint {
        store.webhook_endpoints_set(id, "http://127.0.0.1:9/hook").await.unwrap();
    }
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM contacts WHERE campaign_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(store.pool())
        .await
        .unwrap();
    (id, ids)
}

/// (id, contact, type) of every event of the campaign, in id order.
async fn events(store: &Store, campaign: i64) -> Vec<(i64, i64, EventType)> {
    store
        .webhook_outbox_list(campaign, DeliveryFilter::All, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.id, d.contact_id, d.event_type))
        .collect()
}

fn completed() -> TerminalFacts {
    TerminalFacts {
        call_sid: None,
        status: CallStatus::Completed,
        answered_by: None,
        sip_response_code: Some(200),
        duration_s: Some(20),
        ended_at: None,
        answered_at: None,
        queue_time_ms: None,
    }
}

#[tokio::test]
async fn a_keypress_and_the_final_state_are_reported_once_each_in_the_order_they_happened() {
    let store = fresh_store().await;
    let (campaign, contacts) = new_campaign(&store, 1, true).await;
    let c = contacts[0];
    let attempt = testkit::insert_attempt(&store, c, AttemptState::Created, None).await;

    assert!(store.results_record(attempt, "slots", "2", "reschedule:afternoon").await.unwrap());
    assert!(!store.results_record(attempt, "slots", "2", "reschedule:afternoon").await.unwrap(), "a replay");
    let s = store.attempts_settle(attempt, completed()).await.unwrap();
    assert!(s.applied && s.contact_updated);
    assert!(!store.attempts_settle(attempt, completed()).await.unwrap().applied, "a duplicate report");

    let all = store.webhook_outbox_list(campaign, DeliveryFilter::All, None, 100).await.unwrap();
    let kinds: Vec<EventType> = all.iter().map(|d| d.event_type).collect();
    assert_eq!(kinds, [EventType::Result, EventType::Finished], "one event per fact, result first");
    assert!(all[0].id < all[1].id);
    let r = &all[0].payload;
    assert_eq!(r["campaign_id"], campaign);
    assert_eq!(r["contact_id"], c);
    assert_eq!(r["external_id"], "ext-0");
    assert_eq!(r["phone"], "+14155553000");
    assert_eq!(
        (r["result"].as_str(), r["menu"].as_str(), r["digits"].as_str()),
        (Some("reschedule:afternoon"), Some("slots"), Some("2"))
    );
    assert_eq!(r["attempt"], 1);
    assert!(chrono::DateTime::parse_from_rfc3339(r["occurred_at"].as_str().unwrap()).is_ok());
    let f = &all[1].payload;
    assert_eq!((f["state"].as_str(), f["outcome"].as_str()), (Some("done"), Some("answered_result")), "{f}");
    assert_eq!(f["result"], "reschedule:afternoon");
    assert_eq!(f["attempts_made"], 1);
    assert!(f["reason"].is_string());
    assert!(chrono::DateTime::parse_from_rfc3339(f["finished_at"].as_str().unwrap()).is_ok());
    assert!(all.iter().all(|d| d.msg_id.starts_with("msg_") && d.attempts == 0 && d.delivered_at.is_none()));
    assert_ne!(all[0].msg_id, all[1].msg_id);
}

#[tokio::test]
async fn a_rolled_back_fact_leaves_no_event_and_a_campaign_without_endpoint_gets_none() {
    let store = fresh_store().await;
    let (campaign, contacts) = new_campaign(&store, 2, true).await;
    let attempt = testkit::insert_attempt(&store, contacts[0], AttemptState::Created, None).await;

    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO results (attempt_id, contact_id, campaign_id, menu, digits, result) VALUES ($1, $2, $3, 'main', '1', 'confirmed')",
    )
    .bind(attempt)
    .bind(contacts[0])
    .bind(campaign)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("UPDATE contacts SET state = 'done', finished_at = now() WHERE id = $1")
        .bind(contacts[1])
        .execute(&mut *tx)
        .await
        .unwrap();
    let (inside,): (i64,) = sqlx::query_as("SELECT count(*) FROM webhook_outbox").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(inside, 2, "the transaction wrote both events");
    tx.rollback().await.unwrap();
    assert!(events(&store, campaign).await.is_empty(), "rolled back with the facts");

    let (quiet, quiet_contacts) = new_campaign(&store, 1, false).await;
    let a = testkit::insert_attempt(&store, quiet_contacts[0], AttemptState::Created, None).await;
    store.results_record(a, "main", "1", "confirmed").await.unwrap();
    store.attempts_settle(a, completed()).await.unwrap();
    assert!(events(&store, quiet).await.is_empty(), "no endpoint, no event");
}

#[tokio::test]
async fn every_path_to_a_terminal_state_reports_finished_once() {
    let store = fresh_store().await;
    // Country rejection of pending contacts.
    let (rejected, rc) = new_campaign(&store, 2, true).await;
    assert_eq!(store.contacts_reject_country(rejected, 1, "21215").await.unwrap(), 2);
    assert_eq!(store.contacts_reject_country(rejected, 1, "21215").await.unwrap(), 0);
    let ev = events(&store, rejected).await;
    assert_eq!(
        ev.iter().map(|e| (e.1, e.2)).collect::<Vec<_>>(),
        rc.iter().map(|c| (*c, EventType::Finished)).collect::<Vec<_>>()
    );

    // Cancel: pending contacts end at once, the one on a call when its call ends.
    let (canceled, cc) = new_campaign(&store, 3, true).await;
    store.campaigns_set_status(canceled, CampaignStatus::Running, None).await.unwrap();
    let attempt = testkit::insert_attempt(&store, cc[0], AttemptState::Created, None).await;
    store.campaigns_set_status(canceled, CampaignStatus::Canceled, None).await.unwrap();
    assert_eq!(events(&store, canceled).await.len(), 2);
    store.attempts_settle(attempt, completed()).await.unwrap();
    store.contacts_cancel_stragglers().await.unwrap();
    let ev = events(&store, canceled).await;
    let mut finished: Vec<i64> = ev.iter().filter(|e| e.2 == EventType::Finished).map(|e| e.1).collect();
    finished.sort();
    assert_eq!(finished, cc, "each contact reported once");
    // Each event tells the state the contact ended in (the answered call settles on its own outcome).
    for d in store.webhook_outbox_list(canceled, DeliveryFilter::All, None, 10).await.unwrap() {
        let (state,): (String,) = sqlx::query_as("SELECT state FROM contacts WHERE id = $1")
            .bind(d.contact_id)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(d.payload["state"], state.as_str());
        if d.contact_id != cc[0] {
            assert_eq!(state, "canceled");
        }
    }

    // Opt-out while waiting for a retry: the opt-out, then the block.
    let (opted, oc) = new_campaign(&store, 1, true).await;
    let attempt = testkit::insert_attempt(&store, oc[0], AttemptState::Created, None).await;
    sqlx::query("UPDATE contacts SET state = 'pending' WHERE id = $1").bind(oc[0]).execute(store.pool()).await.unwrap();
    store.results_opt_out(attempt, "main", "9").await.unwrap();
    store.results_opt_out(attempt, "main", "9").await.unwrap();
    let all = store.webhook_outbox_list(opted, DeliveryFilter::All, None, 10).await.unwrap();
    assert_eq!(all.iter().map(|d| d.event_type).collect::<Vec<_>>(), [EventType::OptedOut, EventType::Finished]);
    assert_eq!(all[1].payload["state"], "blocked");
    assert_eq!(all[1].payload["outcome"], "opted_out");
}

#[tokio::test]
async fn the_claim_hands_out_only_each_contacts_oldest_open_event_and_acks_are_fenced() {
    let store = fresh_store().await;
    let (campaign, c) = new_campaign(&store, 2, true).await;
    // Contact 0: result, then finished; contact 1: result.
    let a0 = testkit::insert_attempt(&store, c[0], AttemptState::Created, None).await;
    let a1 = testkit::insert_attempt(&store, c[1], AttemptState::Created, None).await;
    store.results_record(a0, "main", "1", "confirmed").await.unwrap();
    store.results_record(a1, "main", "2", "cancel").await.unwrap();
    store.attempts_settle(a0, completed()).await.unwrap();
    let ev = events(&store, campaign).await;
    assert_eq!(ev.len(), 3);
    let (r0, r1, f0) = (ev[0].0, ev[1].0, ev[2].0);

    let first = store.webhook_outbox_claim_due(100, LEASE).await.unwrap();
    let mut got: Vec<i64> = first.iter().map(|d| d.id).collect();
    got.sort();
    assert_eq!(got, [r0, r1], "one head per contact");
    assert!(first
        .iter()
        .all(|d| d.attempts == 1 && d.url == "http://127.0.0.1:9/hook" && d.secret.starts_with("whsec_")));
    assert!(store.webhook_outbox_claim_due(100, LEASE).await.unwrap().is_empty(), "leased, and f0 waits for r0");

    // r1 fails: a retry in the future. A stale ack (another claim's attempts) changes nothing.
    let retry = |id, attempts| FailedDelivery {
        id,
        attempts,
        status: Some(500),
        error: "HTTP 500".into(),
        retry_at: Utc::now() + chrono::Duration::hours(1),
    };
    assert!(store.webhook_outbox_failed_many(&[retry(r1, 7)], Duration::from_secs(3600)).await.unwrap().is_empty());
    let still = store.webhook_outbox_list(campaign, DeliveryFilter::Failing, None, 10).await.unwrap();
    assert!(still.iter().all(|d| d.last_status.is_none()), "the stale ack was ignored");
    store.webhook_outbox_failed_many(&[retry(r1, 1)], Duration::from_secs(3600)).await.unwrap();
    // r0 delivered: f0 is next for contact 0; r1 waits for its retry.
    assert_eq!(store.webhook_outbox_delivered_many(&[r0], &[204]).await.unwrap(), 1);
    assert_eq!(store.webhook_outbox_delivered_many(&[r0], &[204]).await.unwrap(), 0, "idempotent");
    let next: Vec<i64> = store.webhook_outbox_claim_due(100, LEASE).await.unwrap().iter().map(|d| d.id).collect();
    assert_eq!(next, [f0]);

    let failing = store.webhook_outbox_list(campaign, DeliveryFilter::Failing, None, 10).await.unwrap();
    assert_eq!(failing.iter().map(|d| (d.id, d.last_status)).collect::<Vec<_>>(), [(r1, Some(500)), (f0, None)]);
    let counts = store.webhook_outbox_counts().await.unwrap();
    assert_eq!((counts.backlog, counts.dead), (2, 0));
}

#[tokio::test]
async fn a_claim_whose_deliverer_died_is_handed_out_again_when_its_lease_ends() {
    let store = fresh_store().await;
    let (_, c) = new_campaign(&store, 1, true).await;
    let a = testkit::insert_attempt(&store, c[0], AttemptState::Created, None).await;
    store.results_record(a, "main", "1", "confirmed").await.unwrap();
    let first = store.webhook_outbox_claim_due(10, Duration::from_millis(200)).await.unwrap();
    assert_eq!(first.len(), 1);
    // No ack: the deliverer "died". The next claim after the lease gets the same event, same msg_id.
    let mut again = Vec::new();
    for _ in 0..100 {
        again = store.webhook_outbox_claim_due(10, LEASE).await.unwrap();
        if !again.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(again.len(), 1, "re-claimed after the lease");
    assert_eq!((again[0].id, &again[0].msg_id, again[0].attempts), (first[0].id, &first[0].msg_id, 2));
    // The first deliverer's late failure report is fenced off; the second's delivery counts.
    let late = FailedDelivery { id: first[0].id, attempts: 1, status: None, error: "x".into(), retry_at: Utc::now() };
    store.webhook_outbox_failed_many(&[late], Duration::ZERO).await.unwrap();
    assert_eq!(store.webhook_outbox_delivered_many(&[again[0].id], &[200]).await.unwrap(), 1);
}

#[tokio::test]
async fn a_dead_event_stops_blocking_its_contact_and_a_replay_sends_it_again() {
    let store = fresh_store().await;
    let (campaign, c) = new_campaign(&store, 1, true).await;
    let a = testkit::insert_attempt(&store, c[0], AttemptState::Created, None).await;
    store.results_record(a, "main", "1", "confirmed").await.unwrap();
    store.attempts_settle(a, completed()).await.unwrap();
    let ev = events(&store, campaign).await;
    let (result, finished) = (ev[0].0, ev[1].0);

    let claimed = store.webhook_outbox_claim_due(10, LEASE).await.unwrap();
    assert_eq!(claimed.iter().map(|d| d.id).collect::<Vec<_>>(), [result]);
    let fail = FailedDelivery { id: result, attempts: 1, status: None, error: "refused".into(), retry_at: Utc::now() };
    // Past the maximum age (0 here): dead instead of rescheduled.
    assert_eq!(store.webhook_outbox_failed_many(&[fail], Duration::ZERO).await.unwrap(), [result]);
    let dead = store.webhook_outbox_list(campaign, DeliveryFilter::Dead, None, 10).await.unwrap();
    assert_eq!(dead.iter().map(|d| d.id).collect::<Vec<_>>(), [result]);
    assert_eq!(store.webhook_outbox_counts().await.unwrap().dead, 1);

    // The contact's next event is no longer held back.
    let next = store.webhook_outbox_claim_due(10, LEASE).await.unwrap();
    assert_eq!(next.iter().map(|d| d.id).collect::<Vec<_>>(), [finished]);
    store.webhook_outbox_delivered_many(&[finished], &[200]).await.unwrap();

    assert_eq!(store.webhook_outbox_replay_dead(campaign).await.unwrap(), 1);
    let replayed = store.webhook_outbox_claim_due(10, LEASE).await.unwrap();
    assert_eq!(replayed.iter().map(|d| (d.id, d.attempts)).collect::<Vec<_>>(), [(result, 2)]);
    store.webhook_outbox_delivered_many(&[result], &[200]).await.unwrap();
    assert_eq!(store.webhook_outbox_counts().await.unwrap(), dialer_core::store::OutboxCounts { backlog: 0, dead: 0 });

    // Replaying one delivered event sends it again; another campaign's id is not found.
    assert!(store.webhook_outbox_replay(campaign, finished).await.unwrap());
    assert!(!store.webhook_outbox_replay(campaign + 1, finished).await.unwrap());
    assert_eq!(store.webhook_outbox_claim_due(10, LEASE).await.unwrap().len(), 1);
}

#[tokio::test]
async fn deliveries_page_by_id_with_a_cursor() {
    let store = fresh_store().await;
    let (campaign, _) = new_campaign(&store, 5, true).await;
    store.contacts_reject_country(campaign, 1, "21215").await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.webhook_outbox_list(campaign, DeliveryFilter::All, after, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last().map(|d| d.id);
        seen.extend(page.into_iter().map(|d| d.id));
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn endpoints_are_set_rotated_read_without_secret_and_deleted() {
    let store = fresh_store().await;
    let (campaign, c) = new_campaign(&store, 1, false).await;
    let s1 = store.webhook_endpoints_set(campaign, "https://carrier.example/hooks").await.unwrap();
    let s2 = store.webhook_endpoints_set(campaign, "https://carrier.example/v2").await.unwrap();
    assert!(s1.starts_with("whsec_") && s2.starts_with("whsec_") && s1 != s2, "a rotation makes a new secret");
    let e = store.webhook_endpoints_get(campaign).await.unwrap().unwrap();
    assert_eq!(e.url, "https://carrier.example/v2");
    assert!(!format!("{e:?}").contains("whsec_"));
    // The claim signs with the current secret.
    let a = testkit::insert_attempt(&store, c[0], AttemptState::Created, None).await;
    store.results_record(a, "main", "1", "confirmed").await.unwrap();
    assert_eq!(store.webhook_outbox_claim_due(10, LEASE).await.unwrap()[0].secret, s2);

    assert!(matches!(store.webhook_endpoints_set(campaign, "ftp://x").await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.webhook_endpoints_set(campaign, "not a url").await, Err(StoreError::Conflict(_))));
    assert!(matches!(
        store.webhook_endpoints_set(campaign + 99, "https://x.example").await,
        Err(StoreError::NotFound(_))
    ));

    // Deleting it gives up what was waiting (replayable once an endpoint is back) and writes no more.
    assert!(store.webhook_endpoints_delete(campaign).await.unwrap());
    assert!(!store.webhook_endpoints_delete(campaign).await.unwrap());
    assert!(store.webhook_endpoints_get(campaign).await.unwrap().is_none());
    assert_eq!(store.webhook_outbox_list(campaign, DeliveryFilter::Dead, None, 10).await.unwrap().len(), 1);
    store.attempts_settle(a, completed()).await.unwrap();
    assert_eq!(events(&store, campaign).await.len(), 1, "no endpoint, no new event");
}
