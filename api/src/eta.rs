//! When a campaign should finish: the backlog at the rate it may dial, counted only inside its calling
//! window (in the campaign's zone), and never before the last retry already scheduled.

use chrono::{DateTime, Duration, Utc};
use dialer_core::domain::CampaignStatus;
use dialer_core::store::CampaignRow;
use serde::Serialize;
use utoipa::ToSchema;

/// How far ahead an estimate looks.
const HORIZON_DAYS: i64 = 31;

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Estimate {
    /// Calls per second the campaign may place: its `cps`, capped by `ACCOUNT_CPS` × `account_cps_share`.
    pub rate_cps: f64,
    /// Whether the calling window is open now in the campaign's zone.
    pub window_open_now: bool,
    /// The next time the window opens, when it is closed now.
    pub next_window_opening: Option<DateTime<Utc>>,
    /// When the last contact in the backlog should be dialled; null when nothing will be (done, paused,
    /// canceled) or it lies beyond 31 days.
    pub finish_at: Option<DateTime<Utc>>,
    pub eta_seconds: Option<i64>,
    /// How the estimate was made, or why there is none.
    pub basis: String,
}

pub fn estimate(
    c: &CampaignRow,
    backlog: i64,
    next_due: Option<DateTime<Utc>>,
    last_due: Option<DateTime<Utc>>,
    account_cps: f64,
    now: DateTime<Utc>,
) -> Estimate {
    let window = &c.calling_window.0;
    let tz = c.timezone.get();
    let rate = c.cps.min(account_cps * c.account_cps_share);
    let open_now = window.is_open(tz, now);
    let mut e = Estimate {
        rate_cps: rate,
        window_open_now: open_now,
        next_window_opening: if open_now { None } else { window.next_opening(tz, now) },
        finish_at: None,
        eta_seconds: None,
        basis: String::new(),
    };
    let why_none = match c.status {
        CampaignStatus::Completed | CampaignStatus::Canceled => Some(format!("the campaign is {}", c.status)),
        CampaignStatus::Paused => Some("the campaign is paused".to_string()),
        _ if backlog == 0 => Some("nothing left to dial".to_string()),
        _ => None,
    };
    if let Some(why) = why_none {
        e.basis = why;
        return e;
    }
    // Seconds of open window needed, walked forward a minute at a time from when the first contact is due.
    let mut need = backlog as f64 / rate;
    let mut t = next_due.map_or(now, |d| d.max(now));
    let end = now + Duration::days(HORIZON_DAYS);
    while t < end {
        match window.next_opening(tz, t) {
            None => break,
            Some(open) if open > t => {
                t = open;
                continue;
            }
            Some(_) => {}
        }
        {
            if need <= 60.0 {
                let finish = t + Duration::milliseconds((need * 1000.0) as i64);
                let finish = last_due.map_or(finish, |l| l.max(finish));
                e.finish_at = Some(finish);
                e.eta_seconds = Some((finish - now).num_seconds().max(0));
                break;
            }
            need -= 60.0;
        }
        t += Duration::minutes(1);
    }
    e.basis = match (e.finish_at, c.status) {
        (None, _) => {
            format!("{backlog} contacts at {rate} calls/s need more than {HORIZON_DAYS} days of calling window")
        }
        (Some(_), CampaignStatus::Draft) => {
            format!("{backlog} contacts at {rate} calls/s inside the calling window, if started now")
        }
        _ => format!("{backlog} contacts at {rate} calls/s inside the calling window ({})", c.timezone.name()),
    };
    e
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use dialer_core::domain::campaign::WindowFile;
    use dialer_core::domain::{CallingWindow, Tz};
    use serde_json::json;
    use sqlx::types::Json;

    use super::*;

    fn campaign(status: CampaignStatus, cps: f64) -> CampaignRow {
        let w = WindowFile {
            start: "09:00".into(),
            end: "10:00".into(),
            days: vec![],
            holidays: vec![],
            public_holidays: None,
        };
        CampaignRow {
            id: 1,
            name: "t".into(),
            caller_id: dialer_core::domain::E164::parse("+14155550199", None).unwrap(),
            status,
            status_reason: None,
            timezone: Tz::parse("UTC").unwrap(),
            cps,
            account_cps_share: 1.0,
            max_in_flight: 10,
            max_attempts: 1,
            retry_policy: Json(Default::default()),
            calling_window: Json(CallingWindow::parse(&w).unwrap()),
            limits: Json(Default::default()),
            compliance: Json(Default::default()),
            amd_mode: dialer_core::domain::AmdMode::Off,
            ring_timeout_s: 30,
            script: json!({}),
            recurrence_cron: None,
            recurrence_tz: None,
            recurrence_last_at: None,
            spec: json!({}),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn the_backlog_is_spread_over_open_windows_capped_by_the_account_and_never_before_the_last_retry() {
        let at = |d, h, m, s| Utc.with_ymd_and_hms(2026, 12, d, h, m, s).unwrap();
        let c = campaign(CampaignStatus::Running, 5.0);
        // 18,000 contacts at min(5, account 1) = 1/s need 5 h of a 1 h daily window: the 5th day, 10:00.
        let e = estimate(&c, 18_000, None, None, 1.0, at(1, 8, 0, 0));
        assert_eq!(e.rate_cps, 1.0);
        assert!(!e.window_open_now);
        assert_eq!(e.next_window_opening, Some(at(1, 9, 0, 0)));
        assert_eq!(e.finish_at, Some(at(5, 10, 0, 0)));
        // Inside the window with time to spare: backlog / rate from now.
        let e = estimate(&c, 600, None, None, 100.0, at(1, 9, 10, 0));
        assert_eq!(e.finish_at, Some(at(1, 9, 12, 0)));
        assert_eq!(e.eta_seconds, Some(120));
        // A retry scheduled later than the backlog would take holds the end.
        let e = estimate(&c, 600, None, Some(at(2, 9, 30, 0)), 100.0, at(1, 9, 10, 0));
        assert_eq!(e.finish_at, Some(at(2, 9, 30, 0)));
        // Paused, or nothing left: no ETA, and it says why.
        let e = estimate(&campaign(CampaignStatus::Paused, 5.0), 600, None, None, 100.0, at(1, 9, 10, 0));
        assert_eq!((e.finish_at, e.basis.contains("paused")), (None, true));
        let e = estimate(&c, 0, None, None, 100.0, at(1, 9, 10, 0));
        assert_eq!(e.finish_at, None);
        // More than the horizon holds: none, said so.
        let e = estimate(&c, 10_000_000, None, None, 1.0, at(1, 9, 10, 0));
        assert!(e.finish_at.is_none() && e.basis.contains("31 days"), "{e:?}");
    }
}
