//! The Grafana dashboard, its Helm chart copy and the alert rules, as files: the dashboard imports as is,
//! the chart ships the same one, the rules pass `promtool check rules`, every panel query parses as
//! PromQL, and the PromQL reader the metric checks rely on reads what the dashboard writes.
//!
//! Whether the services actually export what these files refer to, with plausible values, is checked
//! against a real campaign's `/metrics` in `dialer/tests/engine/metrics.rs`.
//!
//! Without promtool the promtool checks say they skipped, and fail under CI (`testkit::missing`);
//! `scripts/test` installs it (`apt-get install prometheus`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use testkit::dashboard::{dashboard, dashboard_exprs, read, refs};
use testkit::promtool;

#[test]
fn promql_reader_finds_metrics_matchers_and_grouping_labels() {
    let e = r#"histogram_quantile(0.99, sum by (le, operation) (rate(a_seconds_bucket{x="y{z}", campaign=~"$campaign"}[5m])))
        / on(job) group_left sum without (instance) (b_total offset 5m) > bool 1e3 unless c and ignoring(foo) d"#;
    let r = refs(e);
    assert_eq!(r.metric_names(), ["a_seconds_bucket", "b_total", "c", "d"]);
    assert_eq!(r.selectors[0].1, ["x", "campaign"]);
    assert!(r.selectors[1..].iter().all(|(_, labels)| labels.is_empty()));
    assert_eq!(r.grouping, ["le", "operation", "job", "instance", "foo"]);

    let r = refs("label_values(dialer_contacts{a=\"b\"}, campaign)");
    assert_eq!(r.selectors, [("dialer_contacts".to_owned(), vec!["a".to_owned(), "campaign".to_owned()])]);
    assert!(refs("label_values(campaign)").selectors.is_empty());
    assert_eq!(refs("sum(x[$__range]) / sum(rate(y[${__rate_interval}])) * $scale").metric_names(), ["x", "y"]);
    assert_eq!(refs("sum(rate(x[5m])) by (le)").metric_names(), ["x"]);
    assert_eq!(refs("sum(rate(x[5m])) by (le)").grouping, ["le"]);
    assert_eq!(refs(r#"m{a="1",b=~"x|y" , c!="z"}"#).selectors[0].1, ["a", "b", "c"]);
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
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboard/alerts.yml");
    let (ok, report) = promtool_check_rules(&path);
    assert!(ok, "promtool check rules dashboard/alerts.yml:\n{report}");
}

/// The alerts' unit tests (`dashboard/alerts.test.yml`): the abandonment alert fires above 3 % of a
/// campaign's answered calls over 30 days and not below it, nor on too few calls.
#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    if promtool().is_none() {
        return;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboard/alerts.test.yml");
    let out = Command::new("promtool").args(["test", "rules"]).arg(&path).output().expect("run promtool");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool test rules dashboard/alerts.test.yml:\n{report}");
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
