use chrono::TimeZone;

use super::*;

const CAMPAIGN: &str = r#"
name = "t"
caller_id = "+815012345678"
timezone = "Asia/Tokyo"
cps = 1.0
max_in_flight = 100
max_attempts = 3
ring_timeout_s = 30
[window]
start = "09:00"
end = "20:00"
[retry]
busy = { delay_s = 600, max = 2 }
[script]
language = "en-US"
goodbye = "Bye."
[script.menus.main]
say = "Press 1."
[script.menus.main.options]
"1" = { result = "ok" }
"#;

fn campaign(edit: impl Fn(&mut crate::domain::campaign::CampaignFile)) -> EstimateCampaign {
    let mut spec = CampaignSpec::parse(CAMPAIGN, "t.toml").unwrap();
    edit(&mut spec.file);
    EstimateCampaign::from_spec(&CampaignSpec::validate(spec.file).unwrap())
}

fn contacts(n: usize) -> Vec<EstimateContact> {
    let tokyo = Tz::parse("Asia/Tokyo").unwrap();
    (0..n)
        .map(|i| EstimateContact {
            phone: E164::parse(&format!("+8190{:08}", 10_000_000 + i), None).unwrap(),
            zone: ContactZone::given(tokyo),
            external_id: None,
        })
        .collect()
}

/// Everyone answers at once, presses 1, and each call takes `talk` seconds in all.
fn all_answer(ring: f64) -> EstimateMix {
    EstimateMix {
        human: 1.0,
        machine: 0.0,
        busy: 0.0,
        no_answer: 0.0,
        failed: 0.0,
        invalid: 0.0,
        ring_s: SecsRange::new(ring, ring),
        digits: BTreeMap::from([("1".into(), 1.0)]),
        ..EstimateMix::default()
    }
}

/// 12:00 in Tokyo: open.
fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 3, 0, 0).unwrap()
}

fn run(c: &EstimateCampaign, contacts: &[EstimateContact], mix: &EstimateMix, start: DateTime<Utc>) -> EstimateReport {
    let mut s = EstimateSettings::new(start, 100.0);
    s.pacing_margin = StdDuration::ZERO;
    let prices = PriceTable::sample();
    estimate(&EstimateInput {
        campaign_id: None,
        campaign: c,
        contacts,
        mix,
        mix_source: MixSource::File,
        prices: &prices,
        settings: &s,
    })
    .unwrap()
}

#[test]
fn sixty_contacts_at_cps_1_all_answering_take_about_a_minute() {
    let r = run(&campaign(|_| {}), &contacts(60), &all_answer(2.0), noon());
    assert_eq!(r.calls, 60);
    assert_eq!(r.calls_by_outcome["answered_result"], 60);
    assert_eq!(r.contacts_by_final_state["done"], 60);
    // Dialled at 0, 1, …, 59 s; the last call lasts a few seconds.
    assert!((59.0..75.0).contains(&r.duration_s), "{}", r.duration_s);
    assert_eq!(r.answer_curve.iter().map(|h| h.answered).sum::<u64>(), 60);
    assert_eq!(r.answered_by_local_hour[12], 60);
}

#[test]
fn contacts_wait_for_their_window_to_open() {
    // 07:00 in Tokyo: the window opens at 09:00, two hours later.
    let seven = Utc.with_ymd_and_hms(2026, 11, 23, 22, 0, 0).unwrap();
    let r = run(&campaign(|_| {}), &contacts(10), &all_answer(2.0), seven);
    assert_eq!(r.calls, 10);
    assert_eq!(r.answer_curve.len(), 1);
    assert_eq!(r.answer_curve[0].from, seven + Duration::hours(2));
    assert_eq!(r.answer_curve[0].local_hour, 9);
    assert!((7200.0..7230.0).contains(&r.duration_s), "{}", r.duration_s);
}

#[test]
fn the_in_flight_cap_bounds_throughput() {
    // CPS 10, but only 5 calls of ~10 s in flight: 0.5 calls/s, so 100 contacts take ~200 s, not ~10 s.
    let c = campaign(|f| {
        f.cps = 10.0;
        f.max_in_flight = 5;
    });
    let mut mix = all_answer(8.0);
    mix.fetch_s = 0.0;
    let r = run(&c, &contacts(100), &mix, noon());
    assert_eq!(r.calls, 100);
    assert!(r.duration_s > 150.0, "{}", r.duration_s);
    let uncapped = run(&campaign(|f| f.cps = 10.0), &contacts(100), &mix, noon());
    assert!(uncapped.duration_s < 30.0, "{}", uncapped.duration_s);
}

#[test]
fn retries_follow_the_policy_per_outcome() {
    let busy = EstimateMix { human: 0.0, busy: 1.0, ..all_answer(2.0) };
    // busy: max 2 retries, 600 s apart, within max_attempts 3.
    let r = run(&campaign(|_| {}), &contacts(10), &busy, noon());
    assert_eq!(r.calls, 30);
    assert_eq!(r.contacts_by_final_state["exhausted"], 10);
    assert!(r.duration_s >= 1200.0 && r.duration_s < 1300.0, "{}", r.duration_s);
    assert_eq!(r.minutes, 0, "busy calls cost nothing");
    assert_eq!(r.cost.total, 0.0);
    // max_attempts caps the retries the outcome would allow.
    let r = run(&campaign(|f| f.max_attempts = 2), &contacts(10), &busy, noon());
    assert_eq!(r.calls, 20);
    // Invalid numbers are final at once.
    let invalid = EstimateMix { human: 0.0, invalid: 1.0, ..all_answer(2.0) };
    let r = run(&campaign(|_| {}), &contacts(10), &invalid, noon());
    assert_eq!((r.calls, r.contacts_by_final_state["invalid"]), (10, 10));
}

#[test]
fn answered_calls_are_priced_per_started_minute_at_the_numbers_rate() {
    let r = run(&campaign(|_| {}), &contacts(10), &all_answer(2.0), noon());
    // A few seconds each: one minute each, to Japanese mobiles.
    assert_eq!(r.minutes, 10);
    let rate = PriceTable::sample().voice_rate(&contacts(1)[0].phone).unwrap().per_minute;
    assert!((r.cost.voice - 10.0 * rate).abs() < 1e-6, "{:?}", r.cost);
    assert_eq!(r.cost.voice_by_rate.keys().collect::<Vec<_>>(), ["JP mobile"]);
}

#[test]
fn the_24h_limit_per_number_holds_retries_back() {
    let c = campaign(|f| {
        f.limits.max_calls_per_number_24h = Some(1);
    });
    let busy = EstimateMix { human: 0.0, busy: 1.0, ..all_answer(2.0) };
    let r = run(&c, &contacts(2), &busy, noon());
    assert_eq!(r.calls, 6);
    // The second call of a number waits a day (then for the window, if closed).
    assert!(r.duration_s >= 2.0 * 86_400.0, "{}", r.duration_s);
}

#[test]
fn the_same_seed_gives_the_same_report_and_bad_settings_name_their_field() {
    let c = campaign(|_| {});
    let mix = EstimateMix::default();
    let a = run(&c, &contacts(200), &mix, noon());
    let b = run(&c, &contacts(200), &mix, noon());
    assert_eq!(a, b);
    let mut s = EstimateSettings::new(noon(), 0.0);
    s.time_factor = 1.0;
    let prices = PriceTable::sample();
    let e = estimate(&EstimateInput {
        campaign_id: None,
        campaign: &c,
        contacts: &contacts(1),
        mix: &mix,
        mix_source: MixSource::Default,
        prices: &prices,
        settings: &s,
    })
    .unwrap_err();
    assert!(e.to_string().contains("`account_cps`"), "{e}");
}

#[test]
fn sms_segments_of_a_template_use_the_variables_mean_length() {
    let vars = BTreeMap::from([("name".to_string(), 150.0)]);
    assert_eq!(template_segments("Hi {name}", &vars), 1);
    assert_eq!(template_segments("Hi {name}, more text", &vars), 2);
    assert_eq!(template_segments("{name}様", &BTreeMap::new()), 1);
}

#[test]
fn one_notification_per_reference_blocks_other_contacts_but_not_the_same_ones_retry() {
    let c = campaign(|f| {
        f.limits.one_per_external_id = true;
        f.retry.machine = crate::domain::RetryRule { delay_s: 60, max: 1 };
        f.amd = AmdMode::DetectMessageEnd;
        f.script.voicemail = Some("We called.".into());
    });
    let mut people = contacts(2);
    for p in &mut people {
        p.external_id = Some("P1".into());
    }
    let machine = EstimateMix { human: 0.0, machine: 1.0, ..all_answer(2.0) };
    let r = run(&c, &people, &machine, noon());
    // Both first calls are in flight before either ends; the first contact's voicemail then reaches the
    // parcel: its own retry still goes, the second contact's is blocked.
    assert_eq!(r.calls_by_outcome["voicemail"], 3, "{:?}", r.calls_by_outcome);
    assert_eq!(r.contacts_by_final_state["blocked"], 1);
}
