//! Guarantee: a callee is called only inside the window in their own zone. Contacts imported without a
//! zone get it from their number (issue: a Los Angeles number in a New York campaign rang at 06:00), a
//! number whose zone cannot be known is refused at import, and the audit proves what was called when.

use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use dialer_core::domain::compliance::ZoneSource;
use dialer_core::domain::ContactState;

use crate::helpers::*;
use crate::metrics::{scrape, wait_until_up};

/// `HH:MM` in `tz` at `at` plus `hours`.
fn local_hhmm(tz: Tz, at: DateTime<Utc>, hours: i64) -> String {
    let t = (at + chrono::Duration::hours(hours)).with_timezone(&tz);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_los_angeles_number_in_a_new_york_campaign_waits_for_los_angeles_hours() {
    let mut env = Env::new(sim_config(20.0)).await;
    let new_york: Tz = "America/New_York".parse().unwrap();
    let los_angeles: Tz = "America/Los_Angeles".parse().unwrap();
    // Open from an hour ago to two hours ahead in New York: Los Angeles (three hours behind) opens only
    // in two hours, so for the whole test a call to it would be before its window.
    let now = Utc::now();
    let (start, end) = (local_hhmm(new_york, now, -1), local_hhmm(new_york, now, 2));
    let toml = campaign_toml("America/New_York", 20.0, "")
        .replace("start = \"09:00\"\nend = \"20:00\"", &format!("start = \"{start}\"\nend = \"{end}\""));
    let id = env.campaign(&toml, &[]).await;
    let csv = std::env::temp_dir().join(format!("zones-{}-{id}.csv", std::process::id()));

    // International freephone has no zone, and a toll-free number may be anywhere from Guam to
    // Newfoundland, where three hours are never open everywhere at once: the whole file is refused,
    // naming the rows and the column.
    std::fs::write(&csv, "phone,name,timezone\n+12125550101,Ann,\n+80012345678,Bob,\n+18005550104,Dee,\n").unwrap();
    let out = env.cli(&["contacts", "import", "--campaign", &id.to_string(), csv.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("line 3, column timezone: no zone given"), "{stderr}");
    assert!(stderr.contains("line 4, column timezone: the number +18005550104 may be in any of"), "{stderr}");
    assert_eq!(env.store.campaigns_report(id).await.unwrap().contacts, 0, "nothing half-imported");

    // New York (212) and Los Angeles (213) numbers without a zone, and a New York number whose zone the
    // import gives as Los Angeles.
    std::fs::write(
        &csv,
        "phone,name,timezone\n+12125550101,Ann,\n+12125550102,Ben,\n+12135550103,Cal,\n\
         +12125550105,Eve,America/Los_Angeles\n",
    )
    .unwrap();
    let out = env.cli(&["contacts", "import", "--campaign", &id.to_string(), csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = env.store.campaigns_report(id).await.unwrap();
    assert_eq!(report.by_zone_source.get(&ZoneSource::Number), Some(&3));
    assert_eq!(report.by_zone_source.get(&ZoneSource::Given), Some(&1));

    env.spawn("all", 20.0, &[]);
    let metrics_url = format!("http://{}/metrics", env.callbacks_addr);
    wait_until_up(&metrics_url).await;
    let called = ["+12125550101", "+12125550102"];
    let start_wait = Instant::now();
    loop {
        let states: Vec<(String, ContactState)> =
            sqlx::query_as("SELECT phone, state FROM contacts WHERE campaign_id = $1")
                .bind(id)
                .fetch_all(env.store.pool())
                .await
                .unwrap();
        if states.iter().filter(|(p, s)| called.contains(&p.as_str()) && s.is_terminal()).count() == called.len() {
            break;
        }
        assert!(start_wait.elapsed() < Duration::from_secs(120), "New York contacts still open: {states:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A few more scheduler passes: a wrong zone would have dialled the others by now.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let calls = env.sim.calls();
    assert!(calls.iter().any(|c| c.to == called[0]));
    for c in &calls {
        assert!(called.contains(&c.to.as_str()), "{} was called at {} UTC", c.to, c.created_at);
    }
    // The others wait, pending, for the first instant their own zones are open.
    let rows: Vec<(String, ContactState, DateTime<Utc>)> = sqlx::query_as(
        "SELECT phone, state, next_attempt_at FROM contacts WHERE campaign_id = $1 AND phone <> ALL($2)",
    )
    .bind(id)
    .bind(&called[..])
    .fetch_all(env.store.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    for (phone, state, next) in rows {
        assert_eq!(state, ContactState::Pending, "{phone}");
        let local = next.with_timezone(&los_angeles);
        assert!(next > Utc::now() + chrono::Duration::minutes(100), "{phone} due at {local}, before its window");
        assert_eq!(local_hhmm(los_angeles, next, 0), start, "{phone} opens at {start} Los Angeles time");
    }

    // Calls on a zone derived from the number are counted as such.
    let (_, m) = scrape(&metrics_url).await;
    let campaign = id.to_string();
    let by_number = m.sum("dialer_calls_by_zone_source_total", &[("campaign", &campaign), ("zone_source", "number")]);
    assert!(by_number >= 2.0, "{by_number}");

    // The audit: every call in its window, each row with the callee's local time and the zone's source.
    let out = env.cli(&["compliance", "audit", "--campaign", &campaign]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}\n{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), calls.len());
    assert!(rows
        .iter()
        .all(|r| r.contains("America/New_York") && r.contains("\tnumber\tNY\t") && r.ends_with("\tnone")));

    // An opt-out the dialer had ignored (back-dated before the calls) is a violation: exit code 1.
    env.store
        .dnc_add_many(&[dialer_core::domain::E164::parse(called[0], None).unwrap()], None, "t", "test")
        .await
        .unwrap();
    sqlx::query("UPDATE dnc SET created_at = now() - interval '1 day'").execute(env.store.pool()).await.unwrap();
    let out = env.cli(&["compliance", "audit", "--campaign", &campaign, "--format", "json", "--violations-only"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = report["entries"].as_array().unwrap();
    assert!(!entries.is_empty() && entries.iter().all(|e| e["phone"] == called[0]), "{report}");
    assert!(entries[0]["violations"][0].as_str().unwrap().starts_with("after an opt-out"), "{report}");
    let _ = std::fs::remove_file(&csv);
}
