//! The local stack (`scripts/stack`, README "Local stack") as a user starts it: the simulator, `dialer serve
//! --role callbacks`, `--role dialer` and `--role api` as separate processes, Debian's Prometheus scraping
//! each one's `/metrics` with `dashboard/alerts.yml` loaded, and the demo campaign running. While it runs a
//! carrier's system polls its progress through the management API and someone forges a Twilio callback; once
//! the campaign has ended, every query of the Grafana dashboard (`dashboard/dialer.json`, with `$campaign`
//! = All) must return data through Prometheus's HTTP API, every target must be up and every alert rule
//! loaded. Without Prometheus (Debian's `prometheus`, which `scripts/test` installs) the test skips, or
//! fails under CI.

mod compose;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::dashboard;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("dialer/ has a parent").to_path_buf()
}

fn tool_runs(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Debian's Prometheus (or `PROMETHEUS`), and what `scripts/stack` runs beside it; else [`testkit::missing`].
fn tools() -> Option<String> {
    let prometheus = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    if !tool_runs(&prometheus, "--version") {
        testkit::missing("Prometheus", "apt-get install prometheus (scripts/test installs it)");
        return None;
    }
    if !tool_runs("curl", "--version") {
        testkit::missing("curl", "apt-get install curl");
        return None;
    }
    if !tool_runs("python3", "--version") {
        testkit::missing("python3 (the stack's webhook receiver)", "apt-get install python3");
        return None;
    }
    Some(prometheus)
}

fn free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A base port with the six consecutive ports `scripts/stack` uses free, and a free port for Prometheus.
fn ports() -> (u16, u16) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let mut seed = (std::process::id() as u64) << 32 ^ nanos as u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        20_000 + ((seed >> 33) % 20_000) as u16
    };
    let base = (0..200).map(|_| next()).find(|b| (0..6).all(|i| free(b + i))).expect("six free ports");
    let prom = (0..200).map(|_| next()).find(|p| (*p < base || *p > base + 5) && free(*p)).expect("a free port");
    (base, prom)
}

/// `scripts/stack down` when the test ends, however it ends.
struct Stack {
    dir: PathBuf,
    env: BTreeMap<String, String>,
}

impl Stack {
    fn script() -> Command {
        let mut c = Command::new(repo_root().join("scripts/stack"));
        c.current_dir(repo_root()).stdin(Stdio::null());
        c
    }

    fn down(&self) -> std::process::Output {
        Self::script().args(["down", "--dir"]).arg(&self.dir).output().expect("run scripts/stack down")
    }

    fn pids(&self) -> Vec<u32> {
        std::fs::read_dir(self.dir.join("pids"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.down();
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Grafana's substitutions for a query run over the whole dashboard: `$campaign` = All (its `allValue`).
fn grafana(expr: &str) -> String {
    expr.replace("$campaign", ".*").replace("$__range", "10m").replace("$__rate_interval", "1m")
}

async fn get_json(http: &reqwest::Client, url: &str, query: &[(&str, &str)]) -> Value {
    let r = http.get(url).query(query).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_else(|e| panic!("{url}: not JSON: {e}"));
    assert!(status.is_success() && body["status"] == "success", "{url} {query:?}: {status} {body}");
    body
}

/// An instant query's result vector.
async fn query(http: &reqwest::Client, prom: &str, expr: &str) -> Vec<Value> {
    let body = get_json(http, &format!("{prom}/api/v1/query"), &[("query", expr)]).await;
    assert_eq!(body["data"]["resultType"], "vector", "{expr}: {body}");
    body["data"]["result"].as_array().expect("result").clone()
}

fn values(result: &[Value]) -> Vec<f64> {
    result.iter().map(|s| s["value"][1].as_str().expect("sample value").parse::<f64>().expect("a number")).collect()
}

/// The single value of a query that must return one series.
async fn scalar(http: &reqwest::Client, prom: &str, expr: &str) -> Option<f64> {
    let r = query(http, prom, expr).await;
    values(&r).first().copied()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_stack_scrapes_every_service_and_every_dashboard_query_returns_data() {
    let Some(prometheus) = tools() else { return };
    let db_url = testkit::fresh_database_url().await;
    let dir = std::env::temp_dir().join(format!("dialer-stack-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (base, prom_port) = ports();

    // Up, as a user would start it (with this build's binary, on free ports, a fresh database).
    let out = Stack::script()
        .arg("up")
        .arg("--dir")
        .arg(&dir)
        .arg("--bin")
        .arg(env!("CARGO_BIN_EXE_dialer"))
        .args(["--base-port", &base.to_string(), "--prometheus-port", &prom_port.to_string()])
        .args(["--scrape-interval", "1s", "--contacts", "200", "--cps", "20"])
        .env("DATABASE_URL", &db_url)
        .env("PROMETHEUS", &prometheus)
        .output()
        .expect("run scripts/stack up");
    let mut stack = Stack { dir: dir.clone(), env: BTreeMap::new() };
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "scripts/stack up failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{stdout}");
    stack.env = std::fs::read_to_string(dir.join("stack.env"))
        .expect("stack.env")
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let env = |k: &str| stack.env.get(k).cloned().unwrap_or_else(|| panic!("{k} not in stack.env"));
    let prom = env("PROMETHEUS_URL");
    assert!(stdout.contains(&prom), "the Prometheus URL is printed");
    let api = env("API_URL");
    let campaign = env("CAMPAIGN_ID");
    let key = std::fs::read_to_string(env("API_KEY_FILE")).expect("the API key").trim().to_owned();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();

    // Someone forges a Twilio callback (once Prometheus has scraped its 0): refused, and counted.
    let started = Instant::now();
    while scalar(&http, &prom, r#"count(dialer_signature_rejections_total{job="callbacks", route="status"} == 0)"#)
        .await
        != Some(1.0)
    {
        assert!(started.elapsed() < Duration::from_secs(60), "Prometheus never scraped the callbacks service");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let callbacks = env("CALLBACKS_METRICS").trim_end_matches("/metrics").to_owned();
    let forged = http
        .post(format!("{callbacks}/status/not-a-token"))
        .header("X-Twilio-Signature", "Zm9yZ2Vk")
        .form(&[("CallSid", "CA00000000000000000000000000000000"), ("CallStatus", "completed")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), reqwest::StatusCode::FORBIDDEN);

    // The carrier's system follows the campaign through the management API until every contact is terminal
    // (a hang guard, not a timing assertion).
    let started = Instant::now();
    let progress_url = format!("{api}/campaigns/{campaign}/progress");
    let progress = loop {
        let r = http.get(&progress_url).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let p: Value = r.json().await.unwrap();
        let open: i64 = ["pending", "claimed", "calling"].iter().map(|s| p["by_state"][s].as_i64().unwrap_or(0)).sum();
        if open == 0 && p["calls_in_flight"] == 0 {
            break p;
        }
        assert!(started.elapsed() < Duration::from_secs(900), "the campaign is still open after 15 minutes: {p}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!("campaign {campaign} ended: {progress}");
    assert_eq!(progress["contacts"], 203, "200 Japanese contacts and 3 UK ones");
    assert!(progress["by_state"]["done"].as_i64().unwrap_or(0) > 0, "{progress}");

    // Prometheus has scraped the end: no open contact, no webhook event waiting (hang guard).
    let started = Instant::now();
    loop {
        let open = scalar(
            &http,
            &prom,
            r#"sum(max by (campaign, state) (dialer_contacts{state=~"pending|claimed|calling"}))"#,
        )
        .await;
        let backlog = scalar(&http, &prom, "max(dialer_webhook_backlog)").await;
        let delivered = scalar(&http, &prom, r#"sum(dialer_webhook_deliveries_total{result="delivered"})"#).await;
        if open == Some(0.0) && backlog == Some(0.0) && delivered.is_some_and(|d| d > 0.0) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "Prometheus never saw the end: {open:?} {backlog:?}");
        let _ = http.get(&progress_url).bearer_auth(&key).send().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Customers reach back through the simulator: one calls the caller ID and picks a slot, one texts 停止.
    // Then the texts sent to the unreached contacts have delivery statuses Prometheus has scraped.
    let sim = env("SIM_URL");
    let caller_id = env("CALLER_ID");
    let call: Value = http
        .post(format!("{sim}/sim/calls/inbound"))
        .json(&serde_json::json!({"from": "+819030000001", "to": caller_id, "digits": "12"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(call["direction"], "inbound", "{call}");
    let text = http
        .post(format!("{sim}/sim/messages/inbound"))
        .json(&serde_json::json!({"from": "+819030000002", "to": caller_id, "body": "停止"}))
        .send()
        .await
        .unwrap();
    assert!(text.status().is_success());
    // Another calls back and presses 0: the waiting room, alice (the simulator plays her browser) answers.
    let call: Value = http
        .post(format!("{sim}/sim/calls/inbound"))
        .json(&serde_json::json!({"from": "+819030000003", "to": caller_id, "digits": "0"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(call["direction"], "inbound", "{call}");
    let started = Instant::now();
    while scalar(&http, &prom, r#"sum(dialer_transfers_total{outcome="connected"}) > 0"#).await.is_none() {
        assert!(started.elapsed() < Duration::from_secs(120), "Prometheus never saw alice answer a caller");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let started = Instant::now();
    while scalar(&http, &prom, "sum(dialer_sms_status_total) and sum(dialer_inbound_calls_total)").await.is_none() {
        assert!(started.elapsed() < Duration::from_secs(120), "Prometheus never saw a text's status or a call back");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // One more progress read, so the API's own panels see a request inside their 1-minute window.
    assert_eq!(http.get(&progress_url).bearer_auth(&key).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Every service is a target, and up.
    let targets = get_json(&http, &format!("{prom}/api/v1/targets"), &[]).await;
    let active = targets["data"]["activeTargets"].as_array().expect("activeTargets");
    let jobs: BTreeSet<&str> = active.iter().map(|t| t["labels"]["job"].as_str().expect("job")).collect();
    assert_eq!(jobs, BTreeSet::from(["api", "callbacks", "dialer", "sim"]), "{targets}");
    for t in active {
        assert_eq!(t["health"], "up", "a target is not up: {t}");
    }

    // Every alert rule of dashboard/alerts.yml is loaded, and evaluates.
    let rules = get_json(&http, &format!("{prom}/api/v1/rules"), &[]).await;
    let loaded: BTreeMap<String, Value> = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| (r["name"].as_str().expect("name").to_owned(), r.clone()))
        .collect();
    let wanted: BTreeSet<String> = dashboard::alert_exprs(&dashboard::alerts())
        .into_iter()
        .map(|(place, _)| place.trim_start_matches("rule ").to_owned())
        .collect();
    assert!(wanted.len() >= 5, "{wanted:?}");
    assert_eq!(loaded.keys().cloned().collect::<BTreeSet<_>>(), wanted, "{rules}");
    for (name, r) in &loaded {
        assert_eq!(r["type"], "alerting", "{name}: {r}");
        assert_ne!(r["health"], "err", "{name} does not evaluate: {r}");
    }

    // Every query of every panel, and the campaign variable, returns data.
    let exprs = dashboard::dashboard_exprs(&dashboard::dashboard());
    assert!(exprs.len() > 30, "only {} dashboard expressions", exprs.len());
    let mut empty = Vec::new();
    let mut report = Vec::new();
    for (place, expr) in &exprs {
        if let Some(args) = expr.strip_prefix("label_values(").and_then(|e| e.strip_suffix(')')) {
            // Grafana's variable query: the label's values on that series.
            let (series, label) = args.split_once(',').expect("label_values(series, label)");
            let body =
                get_json(&http, &format!("{prom}/api/v1/label/{}/values", label.trim()), &[("match[]", series.trim())])
                    .await;
            let got = body["data"].as_array().expect("label values");
            assert!(got.iter().any(|v| v == campaign.as_str()), "{place}: {expr} lacks campaign {campaign}: {body}");
            report.push(format!("{place}: {expr} = {got:?}"));
            continue;
        }
        let promql = grafana(expr);
        let result = query(&http, &prom, &promql).await;
        let v = values(&result);
        if v.is_empty() || !v.iter().any(|x| x.is_finite()) {
            empty.push(format!("{place}: {promql} -> {result:?}"));
        }
        report.push(format!("{place}: {} series {v:?}", v.len()));
    }
    eprintln!("dashboard queries through {prom}/api/v1/query:\n{}", report.join("\n"));
    assert!(empty.is_empty(), "dashboard queries without data:\n{}", empty.join("\n"));

    // The rare-event panels carry what really happened in this run, not only zeros.
    for (what, expr) in [
        ("the forged callback", r#"sum(dialer_signature_rejections_total{route="status"})"#),
        ("the forged callback, as the panel sees it", r#"sum(increase(dialer_signature_rejections_total[1h]))"#),
        ("the simulator's 429s", r#"sum(dialer_twilio_api_errors_total{code="20429"})"#),
        ("the refused UK numbers", r#"sum(dialer_geo_permission_refusals_total{country="44"})"#),
        ("the webhook receiver", r#"sum(dialer_webhook_deliveries_total{result="delivered"})"#),
        ("the API polling", r#"sum(dialer_api_requests_total{route="/api/v1/campaigns/{id}/progress", status="200"})"#),
        ("the do-not-call number", r#"sum(dialer_deferrals_total{reason="dnc"})"#),
        ("the caller alice answered", r#"sum(dialer_operator_handle_seconds_count)"#),
    ] {
        let v = scalar(&http, &prom, expr).await;
        // `increase` extrapolates, so a single event may read a little under 1.
        assert!(v.is_some_and(|v| v >= 0.5), "{what}: {expr} = {v:?}");
    }

    // Down stops every process the stack started.
    let pids = stack.pids();
    assert_eq!(pids.len(), 6, "sim, callbacks, dialer, api, receiver, prometheus");
    let out = stack.down();
    assert!(out.status.success(), "scripts/stack down: {}", String::from_utf8_lossy(&out.stderr));
    let still: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(still.is_empty(), "still running after scripts/stack down: {still:?}");
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
}
