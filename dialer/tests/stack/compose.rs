//! `deploy/compose.yaml` cannot run here (no container engine), so it is read instead: every `dialer` command
//! in it is one this binary accepts (the simulator's is started for real), the services' environment
//! points each of them at the others, Prometheus's config passes `promtool` and scrapes every service where it
//! listens with the alert rules mounted where it loads them, and Grafana's provisioning finds Prometheus
//! and the dashboard where the compose file mounts them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_yaml::Value;

use super::repo_root;

fn yaml(rel: &str) -> Value {
    let path = repo_root().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    v.apply_merge().unwrap_or_else(|e| panic!("{}: merge keys: {e}", path.display()));
    v
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s:?}")).to_owned())
        .collect()
}

fn env_of(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        v => panic!("environment value {v:?}"),
                    };
                    (k.as_str().expect("variable name").to_owned(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `host:port` of an `http://host:port` URL.
fn authority(url: &str) -> &str {
    url.strip_prefix("http://").unwrap_or_else(|| panic!("not http: {url}")).trim_end_matches('/')
}

fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').unwrap_or_else(|| panic!("no port in {addr}")).1
}

/// `source:target[:ro]` volume mounts of a service, as (source relative to deploy/, target).
fn mounts(service: &Value) -> Vec<(String, String)> {
    strings(&service["volumes"])
        .into_iter()
        .filter_map(|m| {
            let mut parts = m.split(':');
            let (src, dst) = (parts.next()?, parts.next()?);
            src.starts_with('.').then(|| (src.to_owned(), dst.to_owned()))
        })
        .collect()
}

#[test]
fn the_compose_file_runs_commands_this_binary_accepts_and_wires_every_service_to_the_others() {
    let compose = yaml("deploy/compose.yaml");
    let deploy = repo_root().join("deploy");
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().map(|k| k.as_str().expect("service name")).collect();
    for wanted in ["postgres", "migrate", "sim", "callbacks", "dialer", "api", "prometheus", "grafana"] {
        assert!(names.contains(wanted), "no {wanted} service in {names:?}");
    }
    let svc = |name: &str| &compose["services"][name];
    assert!(svc("postgres")["image"].as_str().is_some_and(|i| i.starts_with("postgres:16")));

    // The dialer's own services: the repo's image, each command one the binary accepts.
    let bin = env!("CARGO_BIN_EXE_dialer");
    let mut roles = BTreeSet::new();
    for name in ["migrate", "sim", "callbacks", "dialer", "api"] {
        let s = svc(name);
        assert_eq!(s["image"].as_str(), Some("dialer"), "{name}");
        assert_eq!(s["build"].as_str(), Some(".."), "{name}: built from the repo's Dockerfile");
        assert_eq!(strings(&s["entrypoint"]), ["dialer"], "{name}");
        let command = strings(&s["command"]);
        if let Some(role) = command.strip_prefix(&["serve".to_owned(), "--role".to_owned()]) {
            roles.insert(role.join(" "));
        }
        // Clap checks every argument and value before it answers --help: 0 means all were accepted.
        let ok = Command::new(bin)
            .args(&command)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{name}: `dialer {}` is not a command this binary accepts", command.join(" "));
    }
    assert_eq!(roles, BTreeSet::from(["api".into(), "callbacks".into(), "dialer".into()]));
    assert_eq!(strings(&svc("migrate")["command"]), ["migrate"]);
    assert_eq!(
        svc("callbacks")["depends_on"]["migrate"]["condition"].as_str(),
        Some("service_completed_successfully"),
        "the services start once the migrations ran"
    );

    // One environment, pointing each service at the others.
    let env = env_of(svc("callbacks"));
    for name in ["dialer", "api", "migrate"] {
        assert_eq!(env_of(svc(name)), env, "{name} shares the services' environment");
    }
    let listen_port = port_of(&env["LISTEN_ADDR"]).to_owned();
    assert_eq!(authority(&env["PUBLIC_BASE_URL"]), format!("callbacks:{listen_port}"));
    let db = env["DATABASE_URL"].strip_prefix("postgres://").expect("a postgres URL");
    let pg = env_of(svc("postgres"));
    assert_eq!(
        db,
        format!("{0}:{1}@postgres:5432/{2}", pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]),
        "DATABASE_URL is the postgres service's database"
    );
    for var in ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "API_LISTEN_ADDR", "ACCOUNT_CPS"] {
        assert!(env.contains_key(var), "{var} is not set");
    }

    // The simulator: its account and token are the services', it listens where they send REST requests
    // (its flags started for real here, on a free local port).
    let sim = strings(&svc("sim")["command"]);
    let flag = |name: &str| -> String {
        let i = sim.iter().position(|a| a == name).unwrap_or_else(|| panic!("sim has no {name}"));
        sim[i + 1].clone()
    };
    assert_eq!(flag("--account-sid"), env["TWILIO_ACCOUNT_SID"]);
    assert_eq!(flag("--auth-token"), env["TWILIO_AUTH_TOKEN"]);
    let sim_port = port_of(&flag("--listen")).to_owned();
    assert_eq!(authority(&env["TWILIO_API_BASE_URL"]), format!("sim:{sim_port}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut args = sim.clone();
    let i = args.iter().position(|a| a == "--listen").unwrap();
    args[i + 1] = format!("127.0.0.1:{port}");
    let mut child = Command::new(bin).args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    let up = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            break answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200");
        }
        if started.elapsed() > Duration::from_secs(60) || child.try_wait().is_ok_and(|s| s.is_some()) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "the compose file's simulator did not start: dialer {}", args.join(" "));

    // Prometheus: promtool accepts the config with the rules where the compose file mounts them, and it
    // scrapes each service where it listens.
    let prom_mounts: BTreeMap<String, String> = mounts(svc("prometheus")).into_iter().collect();
    let config_in = &prom_mounts["./prometheus/prometheus.yml"];
    assert!(strings(&svc("prometheus")["command"]).contains(&format!("--config.file={config_in}")));
    let rules_in = &prom_mounts["../dashboard/alerts.yml"];
    let config = yaml("deploy/prometheus/prometheus.yml");
    assert_eq!(strings(&config["rule_files"]), std::slice::from_ref(rules_in));
    let mut scraped = BTreeMap::new();
    for job in config["scrape_configs"].as_sequence().expect("scrape_configs") {
        let targets: Vec<String> =
            job["static_configs"].as_sequence().unwrap().iter().flat_map(|c| strings(&c["targets"])).collect();
        scraped.insert(job["job_name"].as_str().unwrap().to_owned(), targets);
    }
    let expect = |host: &str, port: &str| vec![format!("{host}:{port}")];
    assert_eq!(
        scraped,
        BTreeMap::from([
            ("api".to_owned(), expect("api", &listen_port)),
            ("callbacks".to_owned(), expect("callbacks", &listen_port)),
            ("dialer".to_owned(), expect("dialer", &listen_port)),
            ("sim".to_owned(), expect("sim", &sim_port)),
        ])
    );
    if testkit::promtool().is_some() {
        let text = std::fs::read_to_string(deploy.join("prometheus/prometheus.yml"))
            .unwrap()
            .replace(rules_in.as_str(), repo_root().join("dashboard/alerts.yml").to_str().unwrap());
        let tmp = std::env::temp_dir().join(format!("compose-prometheus-{}.yml", std::process::id()));
        std::fs::write(&tmp, text).unwrap();
        let out = Command::new("promtool").args(["check", "config"]).arg(&tmp).output().unwrap();
        let _ = std::fs::remove_file(&tmp);
        assert!(out.status.success(), "promtool check config:\n{}", String::from_utf8_lossy(&out.stderr));
    }

    // Grafana: the provisioning directory is mounted where Grafana reads it; its datasource is the
    // Prometheus service, its dashboard provider reads the directory the dashboard is mounted in.
    let graf: BTreeMap<String, String> = mounts(svc("grafana")).into_iter().collect();
    assert_eq!(graf["./grafana/provisioning"], "/etc/grafana/provisioning");
    let dashboard_at = Path::new(&graf["../dashboard/dialer.json"]);
    for (src, _) in mounts(svc("grafana")).iter().chain(&mounts(svc("prometheus"))) {
        assert!(deploy.join(src).exists(), "mounted {src} does not exist");
    }
    let ds = yaml("deploy/grafana/provisioning/datasources/prometheus.yaml");
    let ds = &ds["datasources"][0];
    assert_eq!(ds["type"].as_str(), Some("prometheus"));
    let prom_port = strings(&svc("prometheus")["ports"])[0].rsplit(':').next().unwrap().to_owned();
    assert_eq!(ds["url"].as_str().map(authority), Some(format!("prometheus:{prom_port}").as_str()));
    let provider = yaml("deploy/grafana/provisioning/dashboards/dialer.yaml");
    assert_eq!(
        provider["providers"][0]["options"]["path"].as_str().map(Path::new),
        dashboard_at.parent(),
        "the dashboard provider reads where dialer.json is mounted"
    );
}
