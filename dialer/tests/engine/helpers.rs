use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use chrono_tz::Tz;
use dialer_core::domain::compliance::ContactZone;
use dialer_core::domain::{CampaignSpec, CampaignStatus, E164};
use dialer_core::store::{CampaignReport, NewContact, Store};
use dialer_sim::{self as sim, DigitDist, OutcomeMix, SecsRange, SimConfig, SimHandle};

pub const ACCOUNT_SID: &str = "AC11111111111111111111111111111111";
pub const AUTH_TOKEN: &str = "engine-test-token";

/// A fast, seeded simulator with a realistic mix; `cps` queues like Twilio's.
pub fn sim_config(cps: f64) -> SimConfig {
    SimConfig {
        account_sid: ACCOUNT_SID.into(),
        auth_token: AUTH_TOKEN.into(),
        cps: cps * 2.0, // Twilio's side is not what we test: our pacing is
        max_concurrent_requests: 500,
        seed: Some(11),
        speed: 500.0,
        outcomes: OutcomeMix { human: 60.0, machine: 10.0, busy: 12.0, no_answer: 12.0, failed: 3.0, invalid: 3.0 },
        ring_time: SecsRange { min: 2.0, max: 10.0 },
        digits: "1:70,2:10,3:10,none:10".parse::<DigitDist>().unwrap(),
        ..SimConfig::default()
    }
}

pub async fn start_sim(config: SimConfig) -> SimHandle {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    sim::spawn(config, l).await.unwrap()
}

/// The first of `zones` whose 09:00–20:00 window is open now and for the next 20 minutes.
pub fn open_zone() -> Tz {
    let w = window_0920();
    let now = Utc::now();
    [
        "Asia/Tokyo",
        "Europe/London",
        "America/New_York",
        "Asia/Kolkata",
        "America/Los_Angeles",
        "Pacific/Auckland",
        "Europe/Berlin",
        "Pacific/Honolulu",
    ]
    .iter()
    .map(|z| z.parse::<Tz>().unwrap())
    .find(|tz| w.is_open(*tz, now) && w.is_open(*tz, now + chrono::Duration::minutes(20)))
    .expect("some zone is in its calling window")
}

pub fn window_0920() -> dialer_core::domain::CallingWindow {
    dialer_core::domain::CallingWindow::parse(&dialer_core::domain::campaign::WindowFile {
        start: "09:00".into(),
        end: "20:00".into(),
        days: vec![],
        holidays: vec![],
        public_holidays: None,
    })
    .unwrap()
}

/// A campaign file: English confirmation script, short retry delays so a test campaign ends quickly.
/// `extra` holds more top-level keys; one of `cps`, `max_in_flight`, `max_attempts` or `ring_timeout_s`
/// given there replaces this file's value.
pub fn campaign_toml(tz: &str, cps: f64, extra: &str) -> String {
    let set_in_extra = |key: &str| {
        extra.lines().any(|l| l.trim_start().strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('=')))
    };
    let defaults: String = [
        ("cps", cps.to_string()),
        ("max_in_flight", "400".into()),
        ("max_attempts", "2".into()),
        ("ring_timeout_s", "20".into()),
    ]
    .into_iter()
    .filter(|(key, _)| !set_in_extra(key))
    .map(|(key, value)| format!("{key} = {value}\n"))
    .collect();
    format!(
        r#"
name = "engine test"
caller_id = "+14155550199"
timezone = "{tz}"
{defaults}{extra}
[window]
start = "09:00"
end = "20:00"
[retry]
busy = {{ delay_s = 1, max = 1 }}
no_answer = {{ delay_s = 1, max = 1 }}
machine = {{ delay_s = 1, max = 1 }}
failed = {{ delay_s = 1, max = 1 }}
no_result = {{ delay_s = 1, max = 0 }}
[script]
language = "en-US"
variables = ["name"]
[script.menus.main]
say = "Hi {{name}}, press 1 to confirm, 2 to cancel."
[script.menus.main.options]
"1" = {{ result = "confirmed" }}
"2" = {{ result = "cancel" }}
"3" = {{ opt_out = true }}
"#
    )
}

pub fn contacts(n: usize, zone: Option<&str>, offset: usize) -> Vec<NewContact> {
    (0..n)
        .map(|i| NewContact {
            phone: E164::parse(&format!("090{:08}", 20_000_000 + offset + i), Some("JP")).unwrap(),
            zone: contact_zone(zone),
            external_id: None,
            attributes: [("name".to_string(), format!("Contact {i}"))].into(),
        })
        .collect()
}

/// A zone given at import, or none: stored empty, which the engine reads as the campaign's (as a contact
/// imported before zones were resolved), so a test picks its callees' zone with the campaign's.
pub fn contact_zone(zone: Option<&str>) -> ContactZone {
    zone.map_or_else(ContactZone::campaigns, |z| ContactZone::given(dialer_core::domain::Tz::parse(z).unwrap()))
}

/// Engine tests run one at a time: each spawns several processes and measures pacing, and on a 2-core
/// machine running them side by side starves the simulator, which then timestamps calls in bursts.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Env {
    _serial: tokio::sync::MutexGuard<'static, ()>,
    pub db_url: String,
    pub store: Store,
    pub sim: SimHandle,
    pub callbacks_addr: String,
    children: Vec<Child>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Env {
    pub async fn new(sim: SimConfig) -> Self {
        let serial = SERIAL.lock().await;
        let db_url = testkit::fresh_database_url().await;
        let store = Store::connect(&db_url, 10).await.unwrap();
        let sim = start_sim(sim).await;
        let callbacks_addr = format!("127.0.0.1:{}", free_port());
        Self { _serial: serial, db_url, store, sim, callbacks_addr, children: Vec::new() }
    }

    pub async fn campaign(&self, toml: &str, contacts: &[NewContact]) -> i64 {
        let spec = CampaignSpec::parse(toml, "test.toml").unwrap();
        let id = self.store.campaigns_insert(&spec).await.unwrap();
        self.store.contacts_insert_many(id, contacts, |_| {}).await.unwrap();
        self.store.campaigns_set_status(id, CampaignStatus::Running, None).await.unwrap();
        id
    }

    pub fn env(&self, account_cps: f64, listen: &str) -> HashMap<&'static str, String> {
        HashMap::from([
            ("DATABASE_URL", self.db_url.clone()),
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.to_string()),
            ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.to_string()),
            ("TWILIO_API_BASE_URL", self.sim.base_url()),
            ("PUBLIC_BASE_URL", format!("http://{}", self.callbacks_addr)),
            ("LISTEN_ADDR", listen.to_string()),
            // Several `all` processes run at once: each takes any free port for its management API.
            ("API_LISTEN_ADDR", "127.0.0.1:0".into()),
            ("ACCOUNT_CPS", account_cps.to_string()),
            ("TWILIO_TIMEOUT_SECONDS", "1".into()),
            ("LEASE_SECONDS", "3".into()),
            ("STALE_CALL_SECONDS", "5".into()),
            ("CLAIM_BATCH_SIZE", "50".into()),
            // The simulator counts calls as they arrive. On a shared 2-core box a POST can take longer than
            // the default 20 ms margin to get there, which is the knob for exactly that (README).
            ("PACING_MARGIN_MS", "60".into()),
            ("RUST_LOG", "warn".into()),
        ])
    }

    /// Starts `dialer serve --role ROLE` as a real process; returns its index for `kill`.
    pub fn spawn(&mut self, role: &str, account_cps: f64, extra: &[(&str, &str)]) -> usize {
        let listen = if role == "dialer" { format!("127.0.0.1:{}", free_port()) } else { self.callbacks_addr.clone() };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dialer"));
        cmd.args(["serve", "--role", role]).envs(self.env(account_cps, &listen)).stdin(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        if std::env::var("ENGINE_TEST_LOGS").is_err() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        self.children.push(cmd.spawn().expect("spawn dialer"));
        self.children.len() - 1
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.children[i].id()
    }

    /// Waits for a child to exit on its own; false if it is still running after `limit`.
    pub fn wait_exit(&mut self, i: usize, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.children[i].try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGTERM, then waits for the process to drain and exit; `kill -9` if it is still running after
    /// `limit`. Returns whether it exited on its own.
    pub fn terminate(&mut self, i: usize, limit: Duration) -> bool {
        let pid = self.pid(i).to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|s| s.success());
        let exited = sent && self.wait_exit(i, limit);
        if !exited {
            self.kill(i);
        }
        exited
    }

    /// Runs the `dialer` CLI (e.g. `campaign cancel 7`) against this environment and waits for it.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_dialer"))
            .args(args)
            .envs(self.env(1.0, "127.0.0.1:0"))
            .stdin(Stdio::null())
            .output()
            .expect("run the dialer CLI")
    }

    /// `kill -9`.
    pub fn kill(&mut self, i: usize) {
        let _ = self.children[i].kill();
        let _ = self.children[i].wait();
    }

    /// Waits (a hang guard, not a timing assertion) until no contact is pending, claimed or calling.
    pub async fn wait_finished(&self, campaign: i64, limit: Duration) -> CampaignReport {
        let start = Instant::now();
        loop {
            let r = self.store.campaigns_report(campaign).await.unwrap();
            let open: i64 = r.by_state.iter().filter(|(s, _)| !s.is_terminal()).map(|(_, n)| n).sum();
            if open == 0 {
                return r;
            }
            assert!(start.elapsed() < limit, "campaign still open after {limit:?}: {r:#?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every attempt's calls in the simulator: (contact phone) → number of calls; and the simulator checks.
    pub async fn assert_one_call_per_attempt(&self, campaign: i64) {
        let stats = self.sim.stats();
        assert_eq!(stats.duplicate_to_url_pairs, 0, "an attempt was dialled twice: {stats:?}");
        let requested = self.store.campaigns_report(campaign).await.unwrap().calls_requested;
        assert_eq!(requested as usize, self.sim.calls().len(), "every call is attributable to one attempt");
        let (made,): (i64,) =
            sqlx::query_as("SELECT COALESCE(sum(attempts_made), 0)::bigint FROM contacts WHERE campaign_id = $1")
                .bind(campaign)
                .fetch_one(self.store.pool())
                .await
                .unwrap();
        assert_eq!(made as usize, self.sim.calls().len(), "attempt counts match the simulator");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
