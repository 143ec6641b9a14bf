//! The metrics the services export, and the Grafana dashboard, alert rules and Helm chart copy that use them,
//! agree: every metric name a panel, template variable or alert refers to is exported by
//! `Metrics::global()`, every exported metric is on the dashboard, the exposition passes `promtool check
//! metrics`, and every PromQL expression parses.
//!
//! Without promtool the promtool checks say they skipped, and fail under CI (`testkit::missing`);
//! `scripts/test` installs it (`apt-get install prometheus`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dialer_core::metrics::Metrics;
use prometheus::core::Collector;
use prometheus::proto::MetricType;
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("dashboard/dialer.json")).expect("dashboard/dialer.json is JSON")
}

fn alerts() -> serde_yaml::Value {
    serde_yaml::from_str(&read("dashboard/alerts.yml")).expect("dashboard/alerts.yml is YAML")
}

/// The metric families and their types, after giving every vec one child so that each family
/// shows up in `gather()` and the exposition.
fn families() -> BTreeMap<String, MetricType> {
    let m = Metrics::global();
    m.calls_created.with_label_values(&["test", "created"]).inc();
    m.twilio_api_errors.with_label_values(&["20429"]).inc();
    m.twilio_request_duration.with_label_values(&["create"]).observe(0.2);
    m.queue_time.observe(0.5);
    m.calls_in_flight.with_label_values(&["test"]).set(3);
    m.claim_batch_size.observe(50.0);
    m.claim_duration.observe(0.004);
    m.scheduler_lag.observe(1.5);
    m.callbacks_received.with_label_values(&["completed"]).inc();
    m.callbacks_duplicate.inc();
    m.callbacks_out_of_order.inc();
    m.signature_rejections.with_label_values(&["status"]).inc();
    m.outcomes.with_label_values(&["test", "answered_result", "human"]).inc();
    m.retries_scheduled.with_label_values(&["test", "busy"]).inc();
    m.contacts.with_label_values(&["test", "pending"]).set(100);
    m.deferrals.with_label_values(&["test", "window"]).inc();
    m.keypress_results.with_label_values(&["test", "1"]).inc();
    m.account_cps_limit.set(10.0);
    m.campaign_cps_limit.with_label_values(&["test"]).set(5.0);
    m.callback_duration.with_label_values(&["status"]).observe(0.01);

    let gathered: BTreeMap<String, MetricType> =
        m.registry().gather().into_iter().map(|f| (f.name().to_owned(), f.get_field_type())).collect();
    let described: BTreeSet<String> = m.family_names().into_iter().collect();
    let gathered_names: BTreeSet<String> = gathered.keys().cloned().collect();
    assert_eq!(
        described, gathered_names,
        "every registered metric must be touched above so that it is gathered (and vice versa)"
    );
    gathered
}

/// The contract other code is written against: names, types and label order.
#[test]
fn metric_names_types_and_labels_are_the_agreed_ones() {
    use MetricType::{COUNTER, GAUGE, HISTOGRAM};
    let expected: &[(&str, MetricType, &[&str])] = &[
        ("dialer_calls_created_total", COUNTER, &["campaign", "result"]),
        ("dialer_twilio_api_errors_total", COUNTER, &["code"]),
        ("dialer_twilio_request_duration_seconds", HISTOGRAM, &["operation"]),
        ("dialer_twilio_queue_time_seconds", HISTOGRAM, &[]),
        ("dialer_calls_in_flight", GAUGE, &["campaign"]),
        ("dialer_claim_batch_size", HISTOGRAM, &[]),
        ("dialer_claim_duration_seconds", HISTOGRAM, &[]),
        ("dialer_scheduler_lag_seconds", HISTOGRAM, &[]),
        ("dialer_callbacks_received_total", COUNTER, &["event"]),
        ("dialer_callbacks_duplicate_total", COUNTER, &[]),
        ("dialer_callbacks_out_of_order_total", COUNTER, &[]),
        ("dialer_signature_rejections_total", COUNTER, &["route"]),
        ("dialer_outcomes_total", COUNTER, &["campaign", "outcome", "answered_by"]),
        ("dialer_retries_scheduled_total", COUNTER, &["campaign", "reason"]),
        ("dialer_contacts", GAUGE, &["campaign", "state"]),
        ("dialer_deferrals_total", COUNTER, &["campaign", "reason"]),
        ("dialer_keypress_results_total", COUNTER, &["campaign", "result"]),
        ("dialer_account_cps_limit", GAUGE, &[]),
        ("dialer_campaign_cps_limit", GAUGE, &["campaign"]),
        ("dialer_callback_duration_seconds", HISTOGRAM, &["route"]),
        ("dialer_internal_errors_total", COUNTER, &["component"]),
    ];
    let fams = families();
    let expected_names: BTreeSet<&str> = expected.iter().map(|e| e.0).collect();
    let actual_names: BTreeSet<&str> = fams.keys().map(String::as_str).collect();
    assert_eq!(expected_names, actual_names);

    for (name, ty, _) in expected {
        assert_eq!(&fams[*name], ty, "{name} type");
    }

    // Label names in declared order: values are passed positionally, so the order is part of the contract.
    let m = Metrics::global();
    let collectors: Vec<&dyn Collector> = vec![
        &m.calls_created,
        &m.twilio_api_errors,
        &m.twilio_request_duration,
        &m.queue_time,
        &m.calls_in_flight,
        &m.claim_batch_size,
        &m.claim_duration,
        &m.scheduler_lag,
        &m.callbacks_received,
        &m.callbacks_duplicate,
        &m.callbacks_out_of_order,
        &m.signature_rejections,
        &m.outcomes,
        &m.retries_scheduled,
        &m.contacts,
        &m.deferrals,
        &m.keypress_results,
        &m.account_cps_limit,
        &m.campaign_cps_limit,
        &m.callback_duration,
        &m.internal_errors,
    ];
    assert_eq!(collectors.len(), expected.len());
    for (c, (name, _, labels)) in collectors.iter().zip(expected) {
        let desc = c.desc();
        assert_eq!(desc.len(), 1);
        assert_eq!(desc[0].fq_name, *name, "field order above follows the table");
        assert_eq!(desc[0].variable_labels, *labels, "{name} label order");
        assert!(desc[0].help.len() > 20, "{name} help text says what it counts");
    }
}

// ---------------------------------------------------------------------------------------------------------
// PromQL metric-name extraction

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

/// Every metric name a PromQL expression (with Grafana variables in it) selects. Function and aggregation
/// names, keywords, label names, label values, durations, numbers and `$variables` are not metric names.
fn metric_names(expr: &str) -> Vec<String> {
    let s: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&s, i);
        } else if c == '{' || c == '[' {
            // Label matchers, ranges and subqueries.
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
                    i = skip_group(&s, j);
                }
            } else if call && word == "label_values" {
                // Grafana's label_values(label) or label_values(metric_selector, label).
                let end = skip_group(&s, j);
                let inner: String = s[j + 1..end - 1].iter().collect();
                if let Some((selector, _label)) = split_top_level_comma(&inner) {
                    out.extend(metric_names(selector));
                }
                i = end;
            } else if call || KEYWORDS.contains(&word.as_str()) {
                // A function or aggregation: its arguments are scanned as we go on.
            } else {
                out.push(word);
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
                let end =
                    if matches!(chars[i], '(' | '{' | '[') { skip_group(&chars, i) } else { skip_string(&chars, i) };
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

#[test]
fn metric_name_extraction_handles_promql() {
    let e = r#"histogram_quantile(0.99, sum by (le, operation) (rate(a_seconds_bucket{x="y{z}", campaign=~"$campaign"}[5m])))
        / on(job) group_left sum without (instance) (b_total offset 5m) > bool 1e3 unless c and ignoring(foo) d"#;
    assert_eq!(metric_names(e), ["a_seconds_bucket", "b_total", "c", "d"]);
    assert_eq!(metric_names("label_values(dialer_contacts{a=\"b\"}, campaign)"), ["dialer_contacts"]);
    assert!(metric_names("label_values(campaign)").is_empty());
    assert_eq!(metric_names("sum(x[$__range]) / sum(rate(y[${__rate_interval}])) * $scale"), ["x", "y"]);
    assert_eq!(metric_names("sum(rate(x[5m])) by (le)"), ["x"]);
}

// ---------------------------------------------------------------------------------------------------------
// Where the expressions are

/// (where, expr) for every panel target (rows included), and every template variable query.
fn dashboard_exprs(d: &Value) -> Vec<(String, String)> {
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

fn alert_exprs(a: &serde_yaml::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for g in a["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let name = r["alert"].as_str().or(r["record"].as_str()).expect("rule name");
            out.push((format!("rule {name}"), r["expr"].as_str().expect("expr").to_owned()));
        }
    }
    out
}

/// The family a referenced series belongs to: itself, or a histogram's `_bucket`/`_sum`/`_count` series.
fn family_of<'a>(name: &'a str, fams: &BTreeMap<String, MetricType>) -> Option<&'a str> {
    if fams.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        (fams.get(base) == Some(&MetricType::HISTOGRAM)).then_some(base)
    })
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics_and_show_them_all() {
    let fams = families();
    let mut exprs = dashboard_exprs(&dashboard());
    let n_dashboard = exprs.len();
    exprs.extend(alert_exprs(&alerts()));
    assert!(n_dashboard > 30, "only {n_dashboard} dashboard expressions found");

    let mut unknown = Vec::new();
    let mut on_dashboard = BTreeSet::new();
    for (i, (place, expr)) in exprs.iter().enumerate() {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: no metric in {expr:?}");
        for n in names {
            match family_of(&n, &fams) {
                Some(f) if i < n_dashboard => {
                    on_dashboard.insert(f.to_owned());
                }
                Some(_) => {}
                None => unknown.push(format!("{place}: {n}")),
            }
        }
    }
    assert!(unknown.is_empty(), "metrics not exported by Metrics::global():\n{}", unknown.join("\n"));
    let missing: Vec<&String> = fams.keys().filter(|f| !on_dashboard.contains(*f)).collect();
    assert!(missing.is_empty(), "exported but on no dashboard panel: {missing:?}");
}

#[test]
fn dashboard_imports_as_is() {
    let d = dashboard();
    assert!(d.get("__inputs").is_none(), "dashboard must not need an import mapping");
    assert!(d["schemaVersion"].as_u64().expect("schemaVersion") >= 36);
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no ${name} variable"));
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let campaign = var("campaign");
    assert_eq!(campaign["type"], "query");
    assert_eq!(campaign["multi"], true);
    assert_eq!(campaign["includeAll"], true);
    assert_eq!(campaign["datasource"]["uid"], "${datasource}");
    assert_eq!(campaign["query"]["query"], "label_values(dialer_contacts, campaign)");

    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().expect("panels") {
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "duplicate panel id {}", p["id"]);
        if p["type"] == "row" {
            continue;
        }
        let title = &p["title"];
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {title} target");
        }
        let g = &p["gridPos"];
        assert!(g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24, "panel {title} too wide");
    }
}

#[test]
fn helm_chart_ships_the_same_dashboard() {
    let original = read("dashboard/dialer.json");
    let copy = read("charts/dialer/dashboards/dialer.json");
    assert!(
        original == copy,
        "charts/dialer/dashboards/dialer.json differs from dashboard/dialer.json: \
         cp dashboard/dialer.json charts/dialer/dashboards/dialer.json"
    );
}

// ---------------------------------------------------------------------------------------------------------
// promtool

use dialer_core::testkit::promtool;

#[test]
fn exposition_passes_promtool_check_metrics() {
    let Some(promtool) = promtool() else { return };
    families();
    let text = Metrics::global().render();
    assert!(text.contains("# HELP dialer_calls_created_total "));
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");
}

fn promtool_check_rules(path: &Path) -> (bool, String) {
    let out = Command::new("promtool").args(["check", "rules"]).arg(path).output().expect("run promtool");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), report)
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    if promtool().is_none() {
        return;
    }
    let (ok, report) = promtool_check_rules(&repo_root().join("dashboard/alerts.yml"));
    assert!(ok, "promtool check rules dashboard/alerts.yml:\n{report}");
}

/// Every panel query parses as PromQL (with the Grafana variables replaced by what Grafana sends).
#[test]
fn dashboard_queries_parse_as_promql() {
    if promtool().is_none() {
        return;
    }
    let d = dashboard();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for (place, expr) in dashboard_exprs(&d) {
        if place.starts_with("variable") {
            continue; // label_values() is Grafana's, not PromQL.
        }
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h")
            .replace("$campaign", "a|b");
        n += 1;
        rules.push_str(&format!(
            "      - record: dashboard:query_{n}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let dir = std::env::temp_dir().join(format!("dialer-dashboard-promql-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dashboard-queries.yml");
    std::fs::write(&path, &rules).unwrap();
    let (ok, report) = promtool_check_rules(&path);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "a dashboard query does not parse:\n{report}\n{rules}");
}
