use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use dialer_core::domain::{CampaignStatus, ContactState};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn calls_start_only_inside_each_contacts_window_and_dnc_numbers_are_never_dialled() {
    let mut env = Env::new(sim_config(50.0)).await;
    let zones = ["Asia/Tokyo", "America/New_York", "Europe/London"];
    let mut all = Vec::new();
    for (i, z) in zones.iter().enumerate() {
        all.extend(contacts(60, Some(z), 400_000 + i * 1000));
    }
    let window = window_0920();
    let now = Utc::now();
    // A DNC number in a zone that is open now.
    let open_zone = zones.iter().find(|z| window.is_open(z.parse::<Tz>().unwrap(), now)).expect("one zone is open");
    let dnc = all.iter().find(|c| c.zone.zones.first().map(|t| t.name()) == Some(*open_zone)).unwrap().phone.clone();
    env.store.dnc_add_many(std::slice::from_ref(&dnc), None, "test", "test").await.unwrap();
    let id = env.campaign(&campaign_toml("UTC", 50.0, ""), &all).await;
    env.spawn("all", 50.0, &[]);

    // Wait until every contact of an open zone is finished (others wait for their window).
    let tz_of = |phone: &str| all.iter().find(|c| c.phone.as_str() == phone).unwrap().zone.zones[0].get();
    let start = std::time::Instant::now();
    loop {
        let open: Vec<(String, ContactState)> =
            sqlx::query_as("SELECT phone, state FROM contacts WHERE campaign_id = $1")
                .bind(id)
                .fetch_all(env.store.pool())
                .await
                .unwrap();
        let still = open.iter().filter(|(p, s)| !s.is_terminal() && window.is_open(tz_of(p), Utc::now())).count();
        if still == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "{still} contacts in open zones still open");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let calls = env.sim.calls();
    assert!(!calls.is_empty());
    for c in &calls {
        assert_ne!(c.to, dnc.as_str(), "a DNC number was dialled");
        let tz: Tz = tz_of(&c.to);
        let at: DateTime<Utc> = DateTime::parse_from_rfc3339(&c.created_at).unwrap().with_timezone(&Utc);
        let local = at.with_timezone(&tz).naive_local();
        assert!(window.contains_local(local), "{} called at {local} local ({tz})", c.to);
    }
    // Contacts of closed zones were not dropped: they wait, pending, for their next opening.
    let rows: Vec<(String, ContactState, DateTime<Utc>)> =
        sqlx::query_as("SELECT phone, state, next_attempt_at FROM contacts WHERE campaign_id = $1")
            .bind(id)
            .fetch_all(env.store.pool())
            .await
            .unwrap();
    for (phone, state, next) in rows {
        let tz: Tz = tz_of(&phone);
        if !window.is_open(tz, now) && !window.is_open(tz, Utc::now()) {
            assert_eq!(state, ContactState::Pending, "{phone} in {tz}");
            assert!(window.contains_local(next.with_timezone(&tz).naive_local()), "{phone} deferred into its window");
            assert!(calls.iter().all(|c| c.to != phone));
        }
        if phone == dnc.as_str() {
            assert_eq!(state, ContactState::Blocked);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recurring_campaign_opens_itself_at_its_cron_time_in_its_zone() {
    let mut env = Env::new(sim_config(10.0)).await;
    // Two replicas running before the campaign exists: a campaign created later recurs too, and each
    // occurrence is taken by one replica only.
    env.spawn("dialer", 10.0, &[]);
    env.spawn("dialer", 10.0, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let toml = campaign_toml("UTC", 10.0, "[recurrence]\ncron = \"*/2 * * * * *\"\ntimezone = \"Asia/Tokyo\"\n");
    let spec = dialer_core::domain::CampaignSpec::parse(&toml, "recurring.toml").unwrap();
    let id = env.store.campaigns_insert(&spec).await.unwrap();
    assert_eq!(env.store.campaigns_get(id).await.unwrap().status, CampaignStatus::Draft);
    let start = std::time::Instant::now();
    loop {
        let c = env.store.campaigns_get(id).await.unwrap();
        if c.status == CampaignStatus::Running {
            assert_eq!(c.status_reason.as_deref(), Some("opened by its recurrence"));
            assert!(c.recurrence_last_at.is_some_and(|t| t > c.created_at), "an occurrence after it was created");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the recurrence never opened the campaign");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An operator pauses it: the next occurrences are recorded but leave it paused.
    env.store.campaigns_set_status(id, CampaignStatus::Paused, Some("ops")).await.unwrap();
    let paused_at = env.store.campaigns_get(id).await.unwrap().recurrence_last_at;
    let start = std::time::Instant::now();
    loop {
        let c = env.store.campaigns_get(id).await.unwrap();
        assert_eq!(c.status, CampaignStatus::Paused, "a recurrence re-opened a paused campaign");
        if c.recurrence_last_at > paused_at {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no occurrence recorded after the pause");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
