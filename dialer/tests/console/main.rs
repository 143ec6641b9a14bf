//! The web console in a real browser: headless Chromium (Debian's `chromium`, driven by `playwright-core`
//! from npm, with axe-core checks) walks an operator's day against a real `dialer serve --role all` and
//! the Twilio simulator — log in, create the delivery campaign from its file, upload a CSV with two bad
//! rows, start, pause, resume, watch progress reach 100 % live, read and download the results, cancel, edit
//! the DNC list — and the refusals: no key or a wrong one, a form without its CSRF token, markup in stored
//! text. The steps and their assertions are in `browser/operator_day.mjs`; this test starts everything and
//! requires the script to pass. `scripts/test` installs chromium and the npm packages; without them the
//! test skips, or fails under CI.

#[allow(dead_code)]
#[path = "../engine/helpers.rs"]
mod helpers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dialer_sim::{DigitDist, OutcomeMix};
use helpers::*;

fn chromium() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if p.exists() {
        Some(p)
    } else {
        testkit::missing(&format!("Chromium at {}", p.display()), "apt-get install chromium (scripts/test does)");
        None
    }
}

fn browser_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/browser");
    let node_ok = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !node_ok {
        testkit::missing("node", "apt-get install nodejs npm (scripts/test needs them)");
        return None;
    }
    if !dir.join("node_modules/playwright-core").is_dir() || !dir.join("node_modules/axe-core").is_dir() {
        testkit::missing("the browser test's npm packages", &format!("npm ci --prefix {}", dir.display()));
        return None;
    }
    Some(dir)
}

fn api_key(env: &Env, scopes: &[&str]) -> String {
    let mut args = vec!["apikey", "create", "--name", "console operator"];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    let out = env.cli(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_runs_a_delivery_campaign_from_the_console_in_a_browser() {
    let (Some(chromium), Some(dir)) = (chromium(), browser_dir()) else { return };
    // Every callee answers and presses 1 (reschedule) then 2 (afternoon).
    let sim = dialer_sim::SimConfig {
        outcomes: OutcomeMix { human: 100.0, machine: 0.0, busy: 0.0, no_answer: 0.0, failed: 0.0, invalid: 0.0 },
        digits: "1>2".parse::<DigitDist>().unwrap(),
        ..sim_config(20.0)
    };
    let mut env = Env::new(sim).await;
    let api_addr =
        format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    env.spawn("all", 20.0, &[("API_LISTEN_ADDR", &api_addr)]);
    let key = api_key(
        &env,
        &[
            "campaigns:read",
            "campaigns:write",
            "contacts:write",
            "results:read",
            "dnc:read",
            "dnc:write",
            "webhooks:write",
            "keys:manage",
        ],
    );
    let read_key = api_key(&env, &["campaigns:read"]);
    let base = format!("http://{api_addr}/console");
    let http = reqwest::Client::new();
    let start = Instant::now();
    while !http.get(format!("{base}/login")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(start.elapsed() < Duration::from_secs(60), "the console never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The example campaign file as shipped, in a zone whose calling window is open now.
    let work = tempfile_dir();
    let example = include_str!("../../../examples/campaigns/delivery-reschedule-ja.toml");
    assert!(example.contains("timezone = \"Asia/Tokyo\""));
    let campaign = example
        .replace("timezone = \"Asia/Tokyo\"", &format!("timezone = \"{}\"", open_zone().name()))
        .replace("cps = 10.0", "cps = 20.0");
    let campaign_file = work.join("delivery-reschedule-ja.toml");
    std::fs::write(&campaign_file, campaign).unwrap();
    // Ten good rows (local Japanese numbers, an attribute holding markup) and two bad ones, on lines 5 and 10.
    let mut csv = String::from("phone,external_id,timezone,name,parcel\n");
    let mut line = 1;
    let mut bad = Vec::new();
    for i in 0..10 {
        line += 1;
        // In the open zone: without it, the numbers would say Asia/Tokyo.
        let zone = open_zone().name();
        csv.push_str(&format!("090-4200-{i:04},P-{i},{zone},<script>alert('attr')</script>山田{i},P-{i}\n"));
        if i == 2 {
            line += 1;
            bad.push(line);
            csv.push_str("<b>not a phone</b>,P-X1,,佐藤,P-X1\n");
        }
        if i == 6 {
            line += 1;
            bad.push(line);
            csv.push_str("090-4299-0001,P-X2,Mars/Olympus,鈴木,P-X2\n");
        }
    }
    let csv_file = work.join("contacts.csv");
    std::fs::write(&csv_file, csv).unwrap();

    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(dir.join("operator_day.mjs"))
            .current_dir(&dir)
            .env("CONSOLE_URL", &base)
            .env("API_KEY", &key)
            .env("READ_KEY", &read_key)
            .env("CAMPAIGN_FILE", &campaign_file)
            .env("CSV_BAD", &csv_file)
            .env("BAD_LINES", bad.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(","))
            .env("CHROMIUM", &chromium)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&work);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(out.status.success(), "the browser script failed:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok: the operator's day passed"));
    // What the browser saw is what the database holds.
    let results: Vec<(Option<String>,)> = sqlx::query_as(
        "SELECT result FROM contacts WHERE campaign_id = (SELECT id FROM campaigns WHERE name = '再配達のご案内')",
    )
    .fetch_all(env.store.pool())
    .await
    .unwrap();
    assert_eq!(results.len(), 10);
    assert!(results.iter().all(|r| r.0.as_deref() == Some("reschedule:afternoon")), "{results:?}");
}

/// A fresh directory for this run's files.
fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("dialer-console-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The operator page (`/console/operator`) in a browser: operator alice logs in, the page fetches her
/// Voice SDK access token (checked claim by claim and its signature in `browser/operator_page.mjs`), she goes
/// available and away; the token endpoint refuses a POST without its CSRF header; and a key that is no
/// operator's gets the 403 page and no token. The SDK cannot reach Twilio here: the device's error is shown
/// in the page and breaks nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn operator_page_fetches_a_token_and_shows_availability() {
    use dialer_core::domain::operators::Identity;
    use dialer_core::domain::{ApiKeySecret, Scope};

    const API_KEY_SID: &str = "SK0123456789abcdef0123456789abcdef";
    const API_KEY_SECRET: &str = "some-secret";
    const TTL: &str = "600";

    let (Some(chromium), Some(dir)) = (chromium(), browser_dir()) else { return };
    let mut env = Env::new(sim_config(20.0)).await;
    let secret = ApiKeySecret::generate();
    env.store
        .operators_create_with_key(
            "operator:alice",
            &secret,
            &[Scope::CampaignsRead],
            &Identity::parse("alice").unwrap(),
        )
        .await
        .unwrap();
    let plain_key = api_key(&env, &["campaigns:read"]);
    let api_addr = format!("127.0.0.1:{}", free_port());
    env.spawn(
        "all",
        20.0,
        &[
            ("API_LISTEN_ADDR", &api_addr),
            ("TWILIO_API_KEY_SID", API_KEY_SID),
            ("TWILIO_API_KEY_SECRET", API_KEY_SECRET),
            ("OPERATOR_TOKEN_TTL_SECONDS", TTL),
        ],
    );
    let base = format!("http://{api_addr}/console");
    wait_for_console(&base).await;

    let key = secret.expose().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(dir.join("operator_page.mjs"))
            .current_dir(&dir)
            .env("CONSOLE_URL", &base)
            .env("OPERATOR_KEY", &key)
            .env("PLAIN_KEY", &plain_key)
            .env("IDENTITY", "alice")
            .env("ACCOUNT_SID", ACCOUNT_SID)
            .env("API_KEY_SID", API_KEY_SID)
            .env("API_KEY_SECRET", API_KEY_SECRET)
            .env("TOKEN_TTL", TTL)
            .env("CHROMIUM", &chromium)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(out.status.success(), "the browser script failed:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok: the operator page passed"));
    // The page's last click set alice away, and the database says so; the plain key got no operator row.
    let rows: Vec<(String, bool)> =
        sqlx::query_as("SELECT identity, available FROM operators").fetch_all(env.store.pool()).await.unwrap();
    assert_eq!(rows, vec![("alice".to_string(), false)]);
}

/// Waits (a hang guard) until the console answers its login page.
async fn wait_for_console(base: &str) {
    let http = reqwest::Client::new();
    let start = Instant::now();
    while !http.get(format!("{base}/login")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(start.elapsed() < Duration::from_secs(60), "the console never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
