//! The `dialer` CLI end to end, as a process, on a fresh database.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

mod export;

const JA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/campaigns/delivery-reschedule-ja.toml");
const EN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/campaigns/appointment-confirmation.toml");

struct Cli {
    db: String,
}

impl Cli {
    async fn new() -> Self {
        Self { db: testkit::fresh_database_url().await }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_dialer"))
            .args(args)
            .env("DATABASE_URL", &self.db)
            .env_remove("RUST_LOG")
            .output()
            .expect("run dialer")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn status(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["campaign", "status", id, "--json"])).unwrap()
    }
}

fn write_temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dialer-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

/// 1,000 rows with exactly five bad ones, at known lines.
fn thousand_rows_with_five_bad() -> (Vec<u8>, Vec<usize>) {
    let mut csv = String::from("phone,name,parcel,timezone\n");
    let mut bad = Vec::new();
    for i in 0..1000 {
        let line = i + 2;
        let row = match i {
            100 => {
                bad.push(line);
                "12345,Bad Number,P100,Asia/Tokyo".to_string()
            }
            200 => {
                bad.push(line);
                format!("090-{:04}-{:04},Bad Zone,P200,Asia/Atlantis", 5000 + i / 10_000, i % 10_000)
            }
            300 => {
                bad.push(line);
                "090-5000-0001,Duplicate,P300,".to_string() // same number as row 1
            }
            400 => {
                bad.push(line);
                ",Empty Phone,P400,".to_string()
            }
            500 => {
                bad.push(line);
                "\"090-5000-0500,Broken \"Quote,P500,".to_string()
            }
            _ => format!("090-{:04}-{:04},\"山田, 太郎\",P{i},Asia/Tokyo", 5000 + i / 10_000, i % 10_000),
        };
        csv.push_str(&row);
        csv.push('\n');
    }
    (csv.into_bytes(), bad)
}

#[tokio::test]
async fn a_bad_csv_names_exactly_its_bad_lines_and_imports_nothing_unless_asked() {
    let cli = Cli::new().await;
    cli.ok(&["migrate"]);
    let id = cli.ok(&["campaign", "create", "--file", JA]);
    let id = id.trim();
    assert!(id.parse::<i64>().is_ok(), "prints only the id: {id:?}");
    let (csv, bad) = thousand_rows_with_five_bad();
    let file = write_temp("contacts.csv", &csv);
    let f = file.to_str().unwrap();

    let out = cli.run(&["contacts", "import", "--campaign", id, "--region", "JP", f]);
    assert_eq!(out.status.code(), Some(3), "invalid input exit code");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut reported: Vec<usize> = stderr
        .lines()
        .filter_map(|l| l.split("line ").nth(1))
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect();
    reported.sort();
    assert_eq!(reported, bad, "{stderr}");
    assert!(stderr.contains("column phone"), "{stderr}");
    assert!(stderr.contains("column timezone"), "{stderr}");
    assert_eq!(cli.status(id)["contacts"], 0, "nothing imported");

    let out = cli.run(&["contacts", "import", "--campaign", id, "--region", "JP", "--skip-invalid", f]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = cli.status(id);
    assert_eq!(status["contacts"], 995);
    assert_eq!(status["by_state"]["pending"], 995);
    assert!(status["by_outcome"].is_object());
}

#[tokio::test]
async fn local_numbers_are_stored_as_e164_and_campaigns_move_through_their_states() {
    let cli = Cli::new().await;
    cli.ok(&["migrate"]);
    let id = cli.ok(&["campaign", "create", "--file", JA]).trim().to_string();
    let file = write_temp("one.csv", "phone,name,parcel\n080-1234-5678,佐藤 花子,1234-5678\n".as_bytes());
    cli.ok(&["contacts", "import", "--campaign", &id, "--region", "JP", file.to_str().unwrap()]);
    let export: Value =
        serde_json::from_str(&cli.ok(&["results", "export", "--campaign", &id, "--format", "json"])).unwrap();
    assert_eq!(export[0]["phone"], "+818012345678");
    assert_eq!(export[0]["state"], "pending");

    cli.ok(&["campaign", "start", &id]);
    assert_eq!(cli.status(&id)["status"], "running");
    cli.ok(&["campaign", "pause", &id]);
    assert_eq!(cli.status(&id)["status"], "paused");
    cli.ok(&["campaign", "resume", &id]);
    cli.ok(&["campaign", "cancel", &id]);
    let s = cli.status(&id);
    assert_eq!(s["status"], "canceled");
    assert_eq!(s["by_state"]["canceled"], 1, "open contacts end as canceled");
    let out = cli.run(&["campaign", "start", &id]);
    assert_eq!(out.status.code(), Some(3), "a canceled campaign cannot start again");

    // A campaign file with a script error names it.
    let broken = std::fs::read_to_string(EN).unwrap().replace("{appointment_at}", "{appointment_time}");
    let f = write_temp("broken.toml", broken.as_bytes());
    let out = cli.run(&["campaign", "create", "--file", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("{appointment_time}"));
}

#[tokio::test]
async fn dnc_add_and_import_normalize_and_reject_bad_numbers() {
    let cli = Cli::new().await;
    cli.ok(&["migrate"]);
    cli.ok(&["dnc", "add", "080-1111-2222", "--region", "JP"]);
    let f = write_temp("dnc.csv", b"phone\n+14155550123\n090-3333-4444\n");
    let out = cli.run(&["dnc", "import", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "a local number without --region is invalid");
    cli.ok(&["dnc", "import", "--region", "JP", f.to_str().unwrap()]);
    let store = dialer_core::store::Store::connect(&cli.db, 2).await.unwrap();
    assert_eq!(store.dnc_count().await.unwrap(), 3);
    assert!(store.dnc_blocks(&dialer_core::domain::E164::parse("+818011112222", None).unwrap(), 1).await.unwrap());
    let out = cli.run(&["dnc", "add", "not-a-number"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["campaign", "create", "--help"],
        vec!["campaign", "status", "--help"],
        vec!["contacts", "import", "--help"],
        vec!["dnc", "add", "--help"],
        vec!["dnc", "import", "--help"],
        vec!["serve", "--help"],
        vec!["sim", "--help"],
        vec!["demo", "--help"],
        vec!["results", "export", "--help"],
        vec!["migrate", "--help"],
        vec!["apikey", "create", "--help"],
        vec!["apikey", "list", "--help"],
        vec!["apikey", "revoke", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_dialer")).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"), "{args:?}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn scrape(url: &str) -> String {
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(url).await {
            if r.status().is_success() {
                return r.text().await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn every_process_metrics_pass_promtool() {
    let cli = Cli::new().await;
    let (sim_port, app_port) = (free_port(), free_port());
    let sid = "AC22222222222222222222222222222222";
    let sim = Kill(
        Command::new(env!("CARGO_BIN_EXE_dialer"))
            .args(["sim", "--listen", &format!("127.0.0.1:{sim_port}"), "--account-sid", sid, "--auth-token", "t"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let app = Kill(
        Command::new(env!("CARGO_BIN_EXE_dialer"))
            .args(["serve", "--role", "all"])
            .env("DATABASE_URL", &cli.db)
            .env("TWILIO_ACCOUNT_SID", sid)
            .env("TWILIO_AUTH_TOKEN", "t")
            .env("TWILIO_API_BASE_URL", format!("http://127.0.0.1:{sim_port}"))
            .env("PUBLIC_BASE_URL", format!("http://127.0.0.1:{app_port}"))
            .env("LISTEN_ADDR", format!("127.0.0.1:{app_port}"))
            .env("API_LISTEN_ADDR", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let app_metrics = scrape(&format!("http://127.0.0.1:{app_port}/metrics")).await;
    let sim_metrics = scrape(&format!("http://127.0.0.1:{sim_port}/metrics")).await;
    assert!(app_metrics.contains("dialer_account_cps_limit"), "{app_metrics}");
    for text in [&app_metrics, &sim_metrics] {
        if testkit::promtool_check_metrics(text).is_none() {
            return;
        }
    }
    drop((sim, app));
}

#[test]
fn a_database_that_cannot_be_reached_is_exit_code_4() {
    // Nothing listens on port 1: connection refused.
    let out = Command::new(env!("CARGO_BIN_EXE_dialer"))
        .args(["campaign", "status", "1"])
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/dialer")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PostgreSQL unavailable"));
}

/// API keys: created once (printed only then), listed without the secret, revoked; and a key never reaches
/// the logs, even at `trace`, whether it is good, revoked or made up.
#[tokio::test]
async fn api_keys_are_shown_once_listed_without_secrets_revoked_and_never_logged() {
    let cli = Cli::new().await;
    let bad = cli.run(&["apikey", "create", "--name", "x", "--scope", "admin"]);
    assert_eq!(bad.status.code(), Some(2), "clap refuses an unknown scope");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("campaigns:read"), "the error lists the scopes");
    let key = cli.ok(&["apikey", "create", "--name", "carrier", "--scope", "campaigns:read"]).trim().to_string();
    assert!(key.starts_with("dk_"), "{key}");
    let list = cli.ok(&["apikey", "list"]);
    assert!(list.contains("carrier") && list.contains("campaigns:read") && list.contains(&key[..11]), "{list}");
    assert!(!list.contains(&key[11..]), "the list shows only the key's prefix");

    let (api_port, app_port) = (free_port(), free_port());
    let log = std::env::temp_dir().join(format!("dialer-api-{}.log", uuid::Uuid::new_v4().simple()));
    let api = Kill(
        Command::new(env!("CARGO_BIN_EXE_dialer"))
            .args(["serve", "--role", "api"])
            .env("DATABASE_URL", &cli.db)
            .env("LISTEN_ADDR", format!("127.0.0.1:{app_port}"))
            .env("API_LISTEN_ADDR", format!("127.0.0.1:{api_port}"))
            .env("RUST_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    scrape(&format!("http://127.0.0.1:{api_port}/api/v1/openapi.json")).await;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{api_port}/api/v1/campaigns");
    assert_eq!(http.get(&url).bearer_auth(&key).send().await.unwrap().status(), 200);
    let made_up = "dk_made-up-key-that-should-not-be-logged-either";
    assert_eq!(http.get(&url).bearer_auth(made_up).send().await.unwrap().status(), 401);
    let id = list.lines().find(|l| l.contains("carrier")).unwrap().split_whitespace().next().unwrap().to_string();
    cli.ok(&["apikey", "revoke", &id]);
    assert_eq!(http.get(&url).bearer_auth(&key).send().await.unwrap().status(), 401);
    assert_eq!(cli.run(&["apikey", "revoke", &id]).status.code(), Some(3), "revoking twice is invalid input");
    drop(api);

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("/api/v1/campaigns"), "the requests were logged at all:\n{logged}");
    assert!(!logged.contains(&key[11..]) && !logged.contains(made_up), "a key reached the logs");
    let _ = std::fs::remove_file(&log);
}

/// `serve --role callbacks` on a free port with `extra` environment; the process and its base URL.
fn callbacks(db: &str, extra: &[(&str, &str)]) -> (Kill, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dialer"));
    cmd.args(["serve", "--role", "callbacks"])
        .env("DATABASE_URL", db)
        .env("TWILIO_ACCOUNT_SID", "AC22222222222222222222222222222222")
        .env("TWILIO_AUTH_TOKEN", "t")
        .env("PUBLIC_BASE_URL", &base)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    (Kill(cmd.spawn().unwrap()), base)
}

/// Readiness is real: a process whose database lacks a migration, or does not answer, says so on
/// `/healthz` (503, and why) while `/livez` stays 200, so Kubernetes holds traffic instead of restarting it.
#[tokio::test]
async fn healthz_is_ready_only_while_the_database_answers_with_every_migration() {
    let server = testkit::server_url().await;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.unwrap();
    let db = localpg::with_database(&server, &name);
    let (_app, base) = callbacks(&db, &[("MIGRATE_ON_START", "false")]);
    assert_eq!(scrape(&format!("{base}/livez")).await, "ok");
    let health = || async {
        let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (status, body) = health().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("migrations pending"), "{body}");

    let out = Command::new(env!("CARGO_BIN_EXE_dialer")).arg("migrate").env("DATABASE_URL", &db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(health().await, (200, "ok\n".to_string()));

    // The database goes away under the running process.
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&admin).await.unwrap();
    let (status, body) = health().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready"), "{body}");
    assert_eq!(scrape(&format!("{base}/livez")).await, "ok", "alive all the same");
}

/// SIGTERM takes the process out of rotation before it stops: `/healthz` says it is shutting down while it
/// still answers for SHUTDOWN_DELAY_SECONDS, then it exits.
#[tokio::test]
async fn sigterm_makes_the_process_unready_while_it_still_serves_then_it_exits() {
    let cli = Cli::new().await;
    let (mut app, base) = callbacks(&cli.db, &[("SHUTDOWN_DELAY_SECONDS", "10")]);
    assert_eq!(scrape(&format!("{base}/healthz")).await, "ok\n");
    let pid = app.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // Unready soon after the signal, while still serving.
    let mut said = String::new();
    for _ in 0..250 {
        let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
        if r.status() == 503 {
            said = r.text().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(said, "not ready: shutting down\n");
    assert_eq!(reqwest::get(format!("{base}/livez")).await.unwrap().status(), 200, "still serving");
    // Then it exits by itself (a hang guard, not a timing assertion).
    let mut exited = None;
    for _ in 0..600 {
        if let Some(s) = app.0.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited.is_some_and(|s| s.success()), "exited cleanly: {exited:?}");
}
