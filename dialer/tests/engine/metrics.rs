//! What a real `dialer serve` process exports on `/metrics` after a real campaign, scraped over HTTP: the
//! values agree with the simulator's record and the database, every metric family the Grafana dashboard and
//! the alert rules refer to is there with the labels they use, every family the process registers is on the
//! dashboard, and the exposition passes `promtool check metrics`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use dialer_core::domain::{AttemptState, ContactState};
use dialer_core::metrics::{Metrics, INTERNAL_ERROR_COMPONENTS};
use dialer_sim::Faults;
use testkit::{self, dashboard};

use crate::helpers::*;

/// One sample line of a text exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed Prometheus text exposition (`text/plain; version=0.0.4`).
#[derive(Debug, Default)]
pub(crate) struct Scrape {
    /// Family name → `# TYPE`.
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    pub(crate) fn parse(text: &str) -> Self {
        let mut s = Scrape::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
                s.types.insert(name.to_owned(), ty.trim().to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in {line:?}"));
                    (name.to_owned(), parse_labels(body, line))
                }
            };
            s.samples.push(Sample { name, labels, value });
        }
        s
    }

    /// The family a series name belongs to: itself, or a histogram's `_bucket`/`_sum`/`_count`.
    fn family_of<'a>(&self, series: &'a str) -> Option<&'a str> {
        if self.types.contains_key(series) {
            return Some(series);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = series.strip_suffix(suffix)?;
            (self.types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
        })
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Sum of every series of `name` whose labels include `labels` (0 when there is none).
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// Label names present on series `name`.
    fn label_names(&self, name: &str) -> BTreeSet<String> {
        self.samples.iter().filter(|s| s.name == name).flat_map(|s| s.labels.keys().cloned()).collect()
    }
}

fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    loop {
        while chars.peek() == Some(&',') || chars.peek() == Some(&' ') {
            chars.next();
        }
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if name.is_empty() {
            return labels;
        }
        assert_eq!((chars.next(), chars.next()), (Some('='), Some('"')), "bad label in {line:?}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("bad escape in {line:?}"),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        }
        labels.insert(name, value);
    }
}

pub(crate) async fn scrape(url: &str) -> (String, Scrape) {
    let text = reqwest::get(url).await.and_then(|r| r.error_for_status()).unwrap_or_else(|e| panic!("{url}: {e}"));
    let text = text.text().await.unwrap();
    let parsed = Scrape::parse(&text);
    (text, parsed)
}

pub(crate) async fn wait_until_up(url: &str) {
    for _ in 0..200 {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

async fn count(env: &Env, sql: &str, campaign: i64) -> f64 {
    let (n,): (i64,) = sqlx::query_as(sql).bind(campaign).fetch_one(env.store.pool()).await.unwrap();
    n as f64
}

/// Families a labelled series of appears only on a fault this campaign does not inject; another test
/// drives each and reads it from `/metrics` (21215: `faults::a_geo_permission_refusal_*`).
/// Families this campaign cannot touch: a fault it does not inject, and customers reaching us (calls back,
/// texts), which `inbound.rs` scrapes after its own campaign.
const ONLY_ON_A_FAULT_THIS_CAMPAIGN_LACKS: &[&str] = &[
    "dialer_geo_permission_refusals_total",
    "dialer_inbound_calls_total",
    "dialer_sms_sent_total",
    "dialer_sms_status_total",
    "dialer_sms_replies_total",
    // Per campaign, from a callee's first press of the operator key (operators.rs has those campaigns).
    "dialer_transfer_requests_total",
    "dialer_transfers_total",
    "dialer_transfer_wait_seconds",
    "dialer_transfer_wait_seconds_bucket",
    "dialer_waiting_room_callers",
];

#[tokio::test(flavor = "multi_thread")]
async fn a_real_campaign_exports_what_the_dashboard_and_alerts_use_with_values_that_match_the_simulator() {
    let mut config = sim_config(40.0);
    // Faults that the dashboard has panels for: Twilio errors, duplicate and out-of-order callbacks.
    config.faults = Faults { rate_429: 0.05, duplicate: 0.2, reorder: 0.3, ..Faults::default() };
    let mut env = Env::new(config).await;
    let tz = open_zone();
    let all = contacts(150, None, 600_000);
    // One number on the do-not-call list: blocked at claim, a `dnc` deferral.
    env.store.dnc_add_many(std::slice::from_ref(&all[7].phone), None, "test", "test").await.unwrap();
    let id = env.campaign(&campaign_toml(tz.name(), 40.0, ""), &all).await;
    let campaign = id.to_string();
    // A result webhook receiver that accepts everything, so the webhook families carry real values.
    let hooks = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", hooks.local_addr().unwrap());
    let receiver =
        axum::Router::new().route("/hook", axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }));
    tokio::spawn(async move { axum::serve(hooks, receiver).await.unwrap() });
    env.store.webhook_endpoints_set(id, &hook_url).await.unwrap();
    let api_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    env.spawn("all", 40.0, &[("API_LISTEN_ADDR", &api_addr.to_string())]);
    let base = format!("http://{}", env.callbacks_addr);
    let metrics_url = format!("{base}/metrics");
    wait_until_up(&metrics_url).await;
    // The API listens on its own address and may bind after the callbacks' one (a refused connection
    // failed this test once in CI); its OpenAPI document needs no key and is not the route counted below.
    wait_until_up(&format!("http://{api_addr}/api/v1/openapi.json")).await;

    // The management API: three progress reads with a key, one without.
    let key = dialer_core::domain::ApiKeySecret::generate();
    env.store.api_keys_insert("metrics", &key, &[dialer_core::domain::Scope::CampaignsRead]).await.unwrap();
    let progress = format!("http://{api_addr}/api/v1/campaigns/{id}/progress");
    let http = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(http.get(&progress).bearer_auth(key.expose()).send().await.unwrap().status(), 200);
    }
    assert_eq!(http.get(&progress).send().await.unwrap().status(), 401);

    // One forged callback: refused with 403 and counted.
    let forged = reqwest::Client::new()
        .post(format!("{base}/status/not-a-token"))
        .header("X-Twilio-Signature", "Zm9yZ2Vk")
        .form(&[("CallSid", "CA00000000000000000000000000000000"), ("CallStatus", "completed")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), reqwest::StatusCode::FORBIDDEN);

    let report = env.wait_finished(id, Duration::from_secs(300)).await;
    assert!(env.sim.wait_idle(Duration::from_secs(60)).await, "every simulated call ended");

    // Quiescence (a hang guard, not a timing assertion): every callback the simulator sent has been
    // answered and timed, and the contact gauges (refreshed every 5 s) show the final states.
    let started = Instant::now();
    let (text, m) = loop {
        let (text, m) = scrape(&metrics_url).await;
        let stats = env.sim.stats();
        let answered = m.sum("dialer_callback_duration_seconds_count", &[]);
        let gauges_final = ContactState::ALL.iter().all(|s| {
            m.sum("dialer_contacts", &[("campaign", &campaign), ("state", s.as_str())])
                == report.by_state.get(s).copied().unwrap_or(0) as f64
        });
        let events = count(&env, "SELECT count(*) FROM webhook_outbox WHERE campaign_id = $1", id).await;
        let webhooks_done = events > 0.0
            && m.sum("dialer_webhook_deliveries_total", &[("result", "delivered")]) == events
            && m.sum("dialer_webhook_backlog", &[]) == 0.0;
        if answered == (stats.callbacks_sent + stats.webhooks_sent) as f64 && gauges_final && webhooks_done {
            break (text, m);
        }
        assert!(started.elapsed() < Duration::from_secs(60), "metrics never settled:\n{text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let stats = env.sim.stats();
    let sim_calls = env.sim.calls().len() as f64;
    let c = campaign.as_str();

    // Call creation agrees with the simulator's record.
    let sim_429 = Scrape::parse(&env.sim.metrics_text())
        .sum("sim_rest_requests_total", &[("operation", "create"), ("code", "429")]);
    assert!(sim_calls > 0.0 && sim_429 > 0.0, "the run made calls and met rate limiting: {stats:?}");
    assert_eq!(m.sum("dialer_calls_created_total", &[("campaign", c), ("result", "created")]), sim_calls);
    assert_eq!(m.sum("dialer_calls_created_total", &[("campaign", c), ("result", "not_created")]), sim_429);
    assert_eq!(m.sum("dialer_calls_created_total", &[]), sim_calls + sim_429, "no fate_unknown or rejected");
    assert_eq!(m.sum("dialer_twilio_api_errors_total", &[("code", "20429")]), sim_429);
    assert_eq!(m.sum("dialer_twilio_api_errors_total", &[]), sim_429);
    let posts = sim_calls + sim_429;
    assert_eq!(m.sum("dialer_twilio_request_duration_seconds_count", &[("operation", "create")]), posts);
    assert_eq!(m.sum("dialer_scheduler_lag_seconds_count", &[]), posts, "one lag sample per POST");
    assert!(m.sum("dialer_twilio_queue_time_seconds_count", &[]) > 0.0);

    // Claims: every attempt row was made by one claim; the DNC contact's was deleted when it was blocked,
    // and a claim whose short test lease (3 s) ran out before it was sent was rescued (row deleted).
    let attempts = count(&env, "SELECT count(*) FROM attempts WHERE campaign_id = $1", id).await;
    let rescued = m.sum("dialer_claims_rescued_total", &[]);
    assert_eq!(m.sum("dialer_claim_batch_size_sum", &[]), attempts + 1.0 + rescued);
    let claims = m.sum("dialer_claim_batch_size_count", &[]);
    assert!(claims > 0.0 && m.sum("dialer_claim_duration_seconds_count", &[]) >= claims);
    assert_eq!(m.sum("dialer_deferrals_total", &[("campaign", c), ("reason", "dnc")]), 1.0);
    assert_eq!(m.sum("dialer_deferrals_total", &[]), 1.0, "nothing deferred but the DNC number");

    // Outcomes, retries and keypresses agree with the database, outcome by outcome.
    let finished = env.store.attempts_count_in_state(id, AttemptState::Finished).await.unwrap() as f64;
    assert_eq!(m.sum("dialer_outcomes_total", &[("campaign", c)]), finished);
    for (outcome, n) in env.store.attempts_count_by_outcome(id).await.unwrap() {
        assert_eq!(
            m.sum("dialer_outcomes_total", &[("campaign", c), ("outcome", outcome.as_str())]),
            n as f64,
            "{outcome}"
        );
    }
    let retried = count(
        &env,
        "SELECT count(*) FROM attempts a WHERE a.campaign_id = $1 AND a.finished_at IS NOT NULL AND a.outcome IS NOT NULL
           AND EXISTS (SELECT 1 FROM attempts b WHERE b.contact_id = a.contact_id AND b.attempt_no > a.attempt_no)",
        id,
    )
    .await;
    assert!(retried > 0.0, "the mix has busy and no-answer calls that are retried");
    assert_eq!(m.sum("dialer_retries_scheduled_total", &[("campaign", c)]), retried);
    let results = count(&env, "SELECT count(*) FROM results WHERE campaign_id = $1", id).await;
    assert!(results > 0.0);
    assert_eq!(m.sum("dialer_keypress_results_total", &[("campaign", c)]), results);

    // Callbacks: each one the simulator sent is either counted once as received or as a duplicate.
    assert_eq!((stats.callbacks_failed, stats.webhooks_failed), (0, 0), "{stats:?}");
    let non_status = ["twiml", "gather", "amd"];
    let status_received: f64 = m
        .matching("dialer_callbacks_received_total", &[])
        .filter(|s| !non_status.contains(&s.labels["event"].as_str()))
        .map(|s| s.value)
        .sum();
    assert_eq!(
        m.sum("dialer_callback_duration_seconds_count", &[]),
        (stats.callbacks_sent + stats.webhooks_sent) as f64,
        "every signed request the simulator sent was answered and timed once"
    );
    let duplicates = m.sum("dialer_callbacks_duplicate_total", &[]);
    assert!(stats.callbacks_duplicated > 0, "{stats:?}");
    assert_eq!(duplicates, stats.callbacks_duplicated as f64);
    assert_eq!(status_received + duplicates, stats.callbacks_sent as f64);
    assert!(m.sum("dialer_callbacks_out_of_order_total", &[]) > 0.0, "reordered callbacks were seen");
    assert!(m.sum("dialer_callbacks_received_total", &[("event", "twiml")]) > 0.0);
    for event in ["initiated", "ringing"] {
        // Not asked for by default (`TWILIO_STATUS_CALLBACK_EVENTS`): one callback less per call each.
        assert_eq!(m.sum("dialer_callbacks_received_total", &[("event", event)]), 0.0, "{event}");
    }
    assert_eq!(m.sum("dialer_signature_rejections_total", &[("route", "status")]), 1.0, "the forged request");
    assert_eq!(m.sum("dialer_signature_rejections_total", &[]), 1.0);

    eprintln!(
        "scraped: {sim_calls} calls, {sim_429} rate-limited POSTs, {claims} claims, {finished} settled, {retried} \
         retried, {results} keypress results, {status_received} status callbacks + {duplicates} duplicates, {} \
         out of order",
        m.sum("dialer_callbacks_out_of_order_total", &[])
    );

    // Result webhooks: one event per keypress result and per contact's end, each delivered once.
    let events = count(&env, "SELECT count(*) FROM webhook_outbox WHERE campaign_id = $1", id).await;
    assert_eq!(events, results + report.contacts as f64);
    assert_eq!(m.sum("dialer_webhook_delivery_attempts_total", &[]), events, "the receiver took each at once");
    assert_eq!(m.sum("dialer_webhook_lag_seconds_count", &[]), events);
    assert_eq!(m.sum("dialer_webhook_deliveries_total", &[("result", "failed")]), 0.0);
    assert_eq!(m.sum("dialer_webhook_deliveries_total", &[("result", "dead")]), 0.0);
    assert_eq!(m.sum("dialer_webhook_dead", &[]), 0.0);

    // Gauges.
    assert_eq!(m.sum("dialer_account_cps_limit", &[]), 40.0);
    assert_eq!(m.sum("dialer_campaign_cps_limit", &[("campaign", c)]), 40.0);
    assert_eq!(m.sum("dialer_calls_in_flight", &[("campaign", c)]), 0.0, "nothing in flight at the end");
    assert_eq!(m.matching("dialer_calls_in_flight", &[("campaign", c)]).count(), 1, "the gauge went back to 0");
    assert_eq!(
        m.sum("dialer_contacts", &[("campaign", c)]),
        report.contacts as f64,
        "every contact is in exactly one state"
    );
    for component in INTERNAL_ERROR_COMPONENTS {
        let filter = [("component", *component)];
        let errors: Vec<&Sample> = m.matching("dialer_internal_errors_total", &filter).collect();
        assert_eq!(errors.len(), 1, "{component} is exported before its first error");
        assert_eq!(errors[0].value, 0.0, "no internal error in a healthy run ({component})");
    }

    // What the dashboard and the alert rules refer to is exported, with the labels they use.
    let d = dashboard::dashboard();
    let panels = dashboard::dashboard_exprs(&d);
    let rules = dashboard::alert_exprs(&dashboard::alerts());
    assert!(panels.len() > 30, "only {} dashboard expressions found", panels.len());
    let mut problems = Vec::new();
    let mut on_dashboard = BTreeSet::new();
    for (i, (place, expr)) in panels.iter().chain(&rules).enumerate() {
        let r = dashboard::refs(expr);
        if r.selectors.is_empty() {
            problems.push(format!("{place}: no metric in {expr:?}"));
        }
        let mut expr_labels = BTreeSet::new();
        for (series, labels) in &r.selectors {
            let Some(family) = m.family_of(series) else {
                if !ONLY_ON_A_FAULT_THIS_CAMPAIGN_LACKS.contains(&series.as_str()) {
                    problems.push(format!("{place}: {series} is not exported"));
                }
                continue;
            };
            if i < panels.len() {
                on_dashboard.insert(family.to_owned());
            }
            let present = m.label_names(series);
            for l in labels.iter().filter(|l| !present.contains(*l)) {
                problems.push(format!("{place}: {series} has no label {l:?} (it has {present:?})"));
            }
            expr_labels.extend(present);
        }
        let unscraped =
            r.selectors.iter().any(|(series, _)| ONLY_ON_A_FAULT_THIS_CAMPAIGN_LACKS.contains(&series.as_str()));
        for l in r.grouping.iter().filter(|l| !unscraped && !expr_labels.contains(*l)) {
            problems.push(format!("{place}: groups by {l:?}, which none of its series has"));
        }
    }
    assert!(problems.is_empty(), "the dashboard or alerts refer to what is not exported:\n{}", problems.join("\n"));

    let route = [("route", "/api/v1/campaigns/{id}/progress"), ("method", "GET")];
    assert_eq!(m.sum("dialer_api_requests_total", &[route[0], route[1], ("status", "200")]), 3.0);
    assert_eq!(m.sum("dialer_api_requests_total", &[route[0], route[1], ("status", "401")]), 1.0);
    assert_eq!(m.sum("dialer_api_request_duration_seconds_count", &route), 4.0);

    // This campaign touched every metric the process registers, and each is on the dashboard.
    let scraped: BTreeSet<String> = m.types.keys().cloned().collect();
    let registered: BTreeSet<String> = Metrics::global()
        .family_names()
        .into_iter()
        .filter(|f| !ONLY_ON_A_FAULT_THIS_CAMPAIGN_LACKS.contains(&f.as_str()))
        .collect();
    assert_eq!(scraped, registered, "a registered metric is missing from the scrape (never touched by a campaign?)");
    let missing: Vec<&String> = scraped.iter().filter(|f| !on_dashboard.contains(*f)).collect();
    assert!(missing.is_empty(), "exported but on no dashboard panel: {missing:?}");

    if let Some(report) = testkit::promtool_check_metrics(&text) {
        assert!(report.trim().is_empty(), "promtool check metrics:\n{report}");
    }
    env.assert_one_call_per_attempt(id).await;
}
