//! Test support shared by every crate's tests: a fresh, migrated database per test on a real server.
//!
//! The server is `DATABASE_URL` when set (the test script sets it), else one found or started by
//! [`localpg::find_or_start`]. Each call creates a new database named `t_<random>`; they are dropped by
//! [`drop_stale_test_databases`] at the start of the next run rather than at the end, so a failed test's
//! data can be inspected.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use dialer_core::domain::{AttemptState, CallSid};
use dialer_core::store::Store;
use localpg as pg;

static CLEANED: AtomicBool = AtomicBool::new(false);

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("testkit/ has a parent").to_path_buf()
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

/// Sets an attempt up as the dialer would have just before its POST: the contact's next attempt row in
/// `state`, the contact `calling` on it (attempt_seq and attempts_made counted). Returns the attempt id.
pub async fn insert_attempt(store: &Store, contact_id: i64, state: AttemptState, call_sid: Option<&CallSid>) -> i64 {
    let mut tx = store.pool().begin().await.expect("begin");
    let (campaign_id, phone, seq): (i64, String, i32) = sqlx::query_as(
        "UPDATE contacts SET state = 'calling', attempt_seq = attempt_seq + 1, attempts_made = attempts_made + 1,
             last_call_at = now(), updated_at = now()
         WHERE id = $1 RETURNING campaign_id, phone, attempt_seq",
    )
    .bind(contact_id)
    .fetch_one(&mut *tx)
    .await
    .expect("contact to put on a call");
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO attempts (contact_id, campaign_id, attempt_no, phone, state, call_sid, requested_at)
         VALUES ($1, $2, $3, $4, $5, $6, now()) RETURNING id",
    )
    .bind(contact_id)
    .bind(campaign_id)
    .bind(seq)
    .bind(phone)
    .bind(state)
    .bind(call_sid.map(CallSid::as_str))
    .fetch_one(&mut *tx)
    .await
    .expect("insert attempt");
    tx.commit().await.expect("commit");
    id
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

/// A Python that can `import twilio` (Twilio's official helper library, unmodified from PyPI):
/// `target/pyenv/bin/python` (scripts/test makes it), else a `python3` on the PATH that has it; else
/// [`missing`].
pub fn twilio_python() -> Option<PathBuf> {
    let candidates = [workspace_root().join("target/pyenv/bin/python"), PathBuf::from("python3")];
    let mut tried = Vec::new();
    for py in candidates {
        match std::process::Command::new(&py).args(["-c", "import twilio"]).output() {
            Ok(o) if o.status.success() => return Some(py),
            Ok(_) => tried.push(format!("{} cannot import twilio", py.display())),
            Err(e) => tried.push(format!("{}: {e}", py.display())),
        }
    }
    missing(
        &format!("a Python with the twilio package ({})", tried.join("; ")),
        "run scripts/test to install it in target/pyenv",
    );
    None
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

/// The Grafana dashboard and the alert rules in `dashboard/`, and the metrics their PromQL refers to.
pub mod dashboard {
    use serde_json::Value;

    use super::workspace_root;

    /// A file of the workspace, by path relative to its root.
    pub fn read(rel: &str) -> String {
        let path = workspace_root().join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// `dashboard/dialer.json`.
    pub fn dashboard() -> Value {
        serde_json::from_str(&read("dashboard/dialer.json")).expect("dashboard/dialer.json is JSON")
    }

    /// `dashboard/alerts.yml`.
    pub fn alerts() -> serde_yaml::Value {
        serde_yaml::from_str(&read("dashboard/alerts.yml")).expect("dashboard/alerts.yml is YAML")
    }

    /// (where, expr) for every panel target (rows included), and every template variable query.
    pub fn dashboard_exprs(d: &Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut panels: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
        while let Some(p) = panels.pop() {
            if let Some(nested) = p["panels"].as_array() {
                panels.extend(nested);
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or_else(|| panic!("target without expr in {p}"));
                out.push((format!("panel {:?}", p["title"]), expr.to_owned()));
            }
        }
        for v in d["templating"]["list"].as_array().expect("templating.list") {
            if v["type"] == "query" {
                let q = match &v["query"] {
                    Value::String(s) => s.clone(),
                    q => q["query"].as_str().expect("variable query").to_owned(),
                };
                out.push((format!("variable {:?}", v["name"]), q));
                if let Some(def) = v["definition"].as_str() {
                    out.push((format!("variable {:?} definition", v["name"]), def.to_owned()));
                }
            }
        }
        out
    }

    /// (where, expr) for every alerting and recording rule.
    pub fn alert_exprs(a: &serde_yaml::Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for g in a["groups"].as_sequence().expect("groups") {
            for r in g["rules"].as_sequence().expect("rules") {
                let name = r["alert"].as_str().or(r["record"].as_str()).expect("rule name");
                out.push((format!("rule {name}"), r["expr"].as_str().expect("expr").to_owned()));
            }
        }
        out
    }

    /// What one PromQL expression refers to.
    #[derive(Debug, Default, Clone, PartialEq, Eq)]
    pub struct Refs {
        /// Each series selector: the metric name and the label names its matchers use (for Grafana's
        /// `label_values(selector, label)`, the label too).
        pub selectors: Vec<(String, Vec<String>)>,
        /// Label names in `by`, `without`, `on`, `ignoring`, `group_left` and `group_right` lists.
        pub grouping: Vec<String>,
    }

    impl Refs {
        pub fn metric_names(&self) -> Vec<String> {
            self.selectors.iter().map(|(m, _)| m.clone()).collect()
        }
    }

    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "atan2",
        "inf",
        "nan",
        "Inf",
        "NaN",
    ];
    /// Keywords followed by a parenthesised list of label names.
    const LABEL_LIST_KEYWORDS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

    /// Index just past the balanced group that opens at `s[start]` (one of `(`, `{`, `[`), skipping string
    /// literals.
    fn skip_group(s: &[char], start: usize) -> usize {
        let mut depth = 0usize;
        let mut i = start;
        while i < s.len() {
            match s[i] {
                '"' | '\'' | '`' => i = skip_string(s, i) - 1,
                '(' | '{' | '[' => depth += 1,
                ')' | '}' | ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        panic!("unbalanced brackets in {:?}", s.iter().collect::<String>())
    }

    fn skip_string(s: &[char], start: usize) -> usize {
        let quote = s[start];
        let mut i = start + 1;
        while i < s.len() {
            if s[i] == '\\' && quote != '`' {
                i += 2;
                continue;
            }
            if s[i] == quote {
                return i + 1;
            }
            i += 1;
        }
        panic!("unterminated string in {:?}", s.iter().collect::<String>())
    }

    fn is_ident_start(c: char) -> bool {
        c.is_ascii_alphabetic() || c == '_' || c == ':'
    }

    fn is_ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_' || c == ':'
    }

    /// The identifiers at the top level of a `{...}` or `(...)` group (strings and nested groups skipped)
    /// that start an item: the label name of each matcher, or each name of a label list.
    fn leading_idents(s: &[char], open: usize, close: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = open + 1;
        let mut at_item_start = true;
        while i < close - 1 {
            let c = s[i];
            if c == ',' {
                at_item_start = true;
                i += 1;
            } else if c == '"' || c == '\'' || c == '`' {
                i = skip_string(s, i);
            } else if matches!(c, '(' | '{' | '[') {
                i = skip_group(s, i);
            } else if at_item_start && is_ident_start(c) {
                let start = i;
                while i < close && is_ident(s[i]) {
                    i += 1;
                }
                out.push(s[start..i].iter().collect());
                at_item_start = false;
            } else {
                if !c.is_whitespace() {
                    at_item_start = false;
                }
                i += 1;
            }
        }
        out
    }

    /// Every metric a PromQL expression (with Grafana variables in it) selects, with the labels it matches
    /// on, and the labels it groups or joins by. Function and aggregation names, keywords, label values,
    /// durations, numbers and `$variables` are not metric names.
    pub fn refs(expr: &str) -> Refs {
        let s: Vec<char> = expr.chars().collect();
        let mut out = Refs::default();
        let mut i = 0;
        while i < s.len() {
            let c = s[i];
            if c == '"' || c == '\'' || c == '`' {
                i = skip_string(&s, i);
            } else if c == '{' || c == '[' {
                // Ranges and subqueries (a selector's matchers are read with its name below).
                i = skip_group(&s, i);
            } else if c == '$' {
                // Grafana variable: $name, ${name} or ${name:format}.
                i += 1;
                if i < s.len() && s[i] == '{' {
                    i = skip_group(&s, i);
                } else {
                    while i < s.len() && is_ident(s[i]) {
                        i += 1;
                    }
                }
            } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
                // Numbers (0.99, 1e3, 0x1F) and durations (5m, 1h30m).
                while i < s.len() && (is_ident(s[i]) || s[i] == '.') {
                    i += 1;
                }
            } else if is_ident_start(c) {
                let start = i;
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
                let word: String = s[start..i].iter().collect();
                let mut j = i;
                while j < s.len() && s[j].is_whitespace() {
                    j += 1;
                }
                // A call, or an aggregation with its grouping first: `sum by (le) (...)`.
                let next_word: String = s[j..].iter().take_while(|c| is_ident(**c)).collect();
                let call = (j < s.len() && s[j] == '(')
                    || (!LABEL_LIST_KEYWORDS.contains(&word.as_str()) && (next_word == "by" || next_word == "without"));
                if LABEL_LIST_KEYWORDS.contains(&word.as_str()) {
                    if call {
                        let end = skip_group(&s, j);
                        out.grouping.extend(leading_idents(&s, j, end));
                        i = end;
                    }
                } else if call && word == "label_values" {
                    // Grafana's label_values(label) or label_values(metric_selector, label).
                    let end = skip_group(&s, j);
                    let inner: String = s[j + 1..end - 1].iter().collect();
                    if let Some((selector, label)) = split_top_level_comma(&inner) {
                        let mut inner_refs = refs(selector);
                        for (_, labels) in &mut inner_refs.selectors {
                            labels.push(label.trim().to_owned());
                        }
                        out.selectors.extend(inner_refs.selectors);
                        out.grouping.extend(inner_refs.grouping);
                    }
                    i = end;
                } else if call || KEYWORDS.contains(&word.as_str()) {
                    // A function or aggregation: its arguments are scanned as we go on.
                } else {
                    let labels = if j < s.len() && s[j] == '{' {
                        let end = skip_group(&s, j);
                        let labels = leading_idents(&s, j, end);
                        i = end;
                        labels
                    } else {
                        Vec::new()
                    };
                    out.selectors.push((word, labels));
                }
            } else {
                i += 1;
            }
        }
        out
    }

    fn split_top_level_comma(s: &str) -> Option<(&str, &str)> {
        let chars: Vec<char> = s.chars().collect();
        let mut i = 0;
        let mut byte = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' | '(' | '{' | '[' => {
                    let end = if matches!(chars[i], '(' | '{' | '[') {
                        skip_group(&chars, i)
                    } else {
                        skip_string(&chars, i)
                    };
                    byte += chars[i..end].iter().map(|c| c.len_utf8()).sum::<usize>();
                    i = end;
                    continue;
                }
                ',' => return Some((&s[..byte], &s[byte + 1..])),
                c => byte += c.len_utf8(),
            }
            i += 1;
        }
        None
    }
}
