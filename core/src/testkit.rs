//! Test support shared by every crate's tests: a fresh, migrated database per test on a real server.
//!
//! The server is `DATABASE_URL` when set (the test script sets it), else one found or started by
//! [`crate::pg::find_or_start`]. Each call creates a new database named `t_<random>`; they are dropped by
//! [`drop_stale_test_databases`] at the start of the next run rather than at the end, so a failed test's
//! data can be inspected.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::pg;
use crate::store::Store;

static CLEANED: AtomicBool = AtomicBool::new(false);

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("core/ has a parent").to_path_buf()
}

/// The server's maintenance URL (`…/postgres`).
pub async fn server_url() -> String {
    let explicit = std::env::var("DATABASE_URL").ok();
    let url = pg::find_or_start(explicit.as_deref(), &workspace_root().join("target/pg"))
        .await
        .unwrap_or_else(|e| panic!("tests need PostgreSQL: {e}"));
    pg::with_database(&url, "postgres")
}

/// A fresh migrated database; returns its URL.
pub async fn fresh_database_url() -> String {
    let server = server_url().await;
    if !CLEANED.swap(true, Ordering::SeqCst) {
        drop_stale_test_databases(&server).await;
    }
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    pg::ensure_database(&server, &name).await.expect("create test database");
    let url = pg::with_database(&server, &name);
    let store = Store::connect(&url, 2).await.expect("connect to test database");
    store.migrate().await.expect("migrate test database");
    store.pool().close().await;
    url
}

/// A store on a fresh migrated database.
pub async fn fresh_store() -> Store {
    let url = fresh_database_url().await;
    Store::connect(&url, 20).await.expect("connect to test database")
}

/// Drops test databases older than an hour (left by earlier runs).
pub async fn drop_stale_test_databases(server: &str) {
    use sqlx::Connection;
    let Ok(mut conn) = sqlx::PgConnection::connect(server).await else { return };
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT d.datname FROM pg_database d
         WHERE d.datname LIKE 't\\_%' AND length(d.datname) = 34
           AND (pg_stat_file('base/' || d.oid || '/PG_VERSION')).modification < now() - interval '1 hour'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    for n in names {
        // Best effort: a database that cannot be dropped now is tried again by the next run.
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{n}\" WITH (FORCE)")).execute(&mut conn).await;
    }
}

/// Whether this run is CI's: the `CI` environment variable is set to anything non-empty (`.ci/run` sets it).
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A test cannot run because `what` (a tool or a data file) is missing. Under CI ([`under_ci`]) that fails
/// the test, so a green CI run never hides a check that did not happen; elsewhere it says on stderr exactly
/// what was skipped and how to get it, and the caller returns.
pub fn missing(what: &str, how_to_get: &str) {
    if under_ci() {
        panic!("{what} is missing and CI is set, so this test may not skip: {how_to_get}");
    }
    eprintln!("skipped: {what} is missing ({how_to_get})");
}

/// The `../shared/twilio/` directory beside the workspace (Twilio's API spec, signature vectors, error codes
/// and TwiML model), when present; else [`missing`].
pub fn shared_twilio_dir() -> Option<PathBuf> {
    let d = workspace_root().join("../shared/twilio");
    if d.is_dir() {
        Some(d)
    } else {
        missing(
            &format!("the Twilio reference data {}", d.display()),
            "check out shared/ beside the workspace; CI lays it there",
        );
        None
    }
}

/// Parses `name` from `../shared/twilio/` as JSON (None, after [`missing`], when the directory is absent).
pub fn shared_twilio_json(name: &str) -> Option<serde_json::Value> {
    let path = shared_twilio_dir()?.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display())))
}

/// Loads `twiml_voice_model.json` from `../shared/twilio/` (None, after [`missing`], when absent).
pub fn twiml_voice_model() -> Option<serde_json::Value> {
    shared_twilio_json("twiml_voice_model.json")
}

/// `promtool`, when installed; else [`missing`]. `scripts/test` installs it (Debian package `prometheus`).
pub fn promtool() -> Option<&'static str> {
    match std::process::Command::new("promtool").arg("--version").output() {
        Ok(o) if o.status.success() => Some("promtool"),
        _ => {
            missing("promtool", "apt-get install prometheus; scripts/test installs it");
            None
        }
    }
}

/// Runs `promtool check metrics` on a text exposition: `Some(report)` (empty when clean: lint findings
/// make it non-empty), or None after [`missing`] when promtool is not installed. Panics when promtool
/// rejects the text.
pub fn promtool_check_metrics(exposition: &str) -> Option<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let promtool = promtool()?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().expect("piped stdin").write_all(exposition.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics failed:\n{report}");
    Some(report)
}

/// Every way `xml` breaks the TwiML voice model: unknown elements, attributes not allowed, unknown enum
/// values, children not allowed, text where none is allowed.
pub fn twiml_model_errors(model: &serde_json::Value, xml: &str) -> Vec<String> {
    let doc = match roxmltree::Document::parse(xml) {
        Ok(d) => d,
        Err(e) => return vec![format!("not XML: {e}")],
    };
    let m = TwimlModel { elements: model["elements"].as_object().expect("elements") };
    let mut errors = Vec::new();
    m.check(doc.root_element(), model["root"].as_str().expect("root"), "", &mut errors);
    errors
}

/// Walks the TwiML model: `elements` is keyed by C# class name, each with its XML `tag`, `attributes`
/// (name, C# type, optional `Class.Enum` reference and space-separated `list` marker), `enums`, allowed
/// `children` (class names) and `text_content` when the element takes text.
pub struct TwimlModel<'a> {
    elements: &'a serde_json::Map<String, serde_json::Value>,
}

impl TwimlModel<'_> {
    fn element(&self, class: &str) -> &serde_json::Value {
        self.elements.get(class).unwrap_or_else(|| panic!("model has no class {class}"))
    }

    fn enum_values(&self, reference: &str) -> Vec<&str> {
        let (class, name) = reference.split_once('.').unwrap_or_else(|| panic!("enum reference {reference}"));
        let values = self.element(class)["enums"][name].as_array().unwrap_or_else(|| panic!("no enum {reference}"));
        values.iter().map(|v| v.as_str().expect("enum values are strings")).collect()
    }

    fn check_value(&self, where_: &str, spec: &serde_json::Value, value: &str, errors: &mut Vec<String>) {
        if let Some(reference) = spec["enum"].as_str() {
            let known = self.enum_values(reference);
            let values: Vec<&str> =
                if spec.get("list").is_some() { value.split_whitespace().collect() } else { vec![value] };
            if values.is_empty() {
                errors.push(format!("{where_}: empty value for {reference}"));
            }
            for v in values {
                if !known.contains(&v) {
                    errors.push(format!("{where_}: {v:?} is not a known {reference} value"));
                }
            }
            return;
        }
        let ok = match spec["csharp_type"].as_str().expect("csharp_type") {
            "bool?" => value == "true" || value == "false",
            "int?" => value.parse::<i64>().is_ok(),
            "Twilio.Http.HttpMethod" => value == "GET" || value == "POST",
            "Uri" => url::Url::parse(value).is_ok(),
            "string" => true,
            other => {
                errors.push(format!("{where_}: attribute type {other} not checked by this test"));
                true
            }
        };
        if !ok {
            errors.push(format!("{where_}: {value:?} is not a valid {}", spec["csharp_type"]));
        }
    }

    pub fn check(&self, node: roxmltree::Node, class: &str, path: &str, errors: &mut Vec<String>) {
        let el = self.element(class);
        let tag = node.tag_name().name();
        let path = format!("{path}/{tag}");
        if el["tag"].as_str() != Some(tag) {
            errors.push(format!("{path}: class {class} has tag {}", el["tag"]));
        }
        if node.tag_name().namespace().is_some() {
            errors.push(format!("{path}: unexpected namespace"));
        }
        let specs = el["attributes"].as_array().expect("attributes");
        for attr in node.attributes() {
            let where_ = format!("{path}@{}", attr.name());
            match specs.iter().find(|s| s["name"].as_str() == Some(attr.name())) {
                Some(spec) => self.check_value(&where_, spec, attr.value(), errors),
                None => errors.push(format!("{where_}: attribute not allowed on {tag}")),
            }
        }
        let allowed: Vec<&str> =
            el["children"].as_array().expect("children").iter().map(|c| c.as_str().expect("class name")).collect();
        for child in node.children() {
            if child.is_text() {
                let text = child.text().unwrap_or_default();
                if !text.trim().is_empty() && el.get("text_content").is_none() {
                    errors.push(format!("{path}: text {text:?} where the model allows none"));
                }
            } else if child.is_element() {
                let child_tag = child.tag_name().name();
                let child_class = allowed.iter().find(|c| self.element(c)["tag"].as_str() == Some(child_tag));
                match child_class {
                    Some(c) => self.check(child, c, &path, errors),
                    None => errors.push(format!("{path}: <{child_tag}> is not an allowed child of <{tag}>")),
                }
            }
        }
    }
}
