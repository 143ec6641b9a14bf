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
