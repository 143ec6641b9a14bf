//! Calling windows in the contact's own time zone (DST, overnight windows, days of week, holidays).

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::CallingWindow;

/// Local wall time → UTC. In a DST gap the wall time doesn't exist: take the first instant after it.
fn to_utc(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local).earliest() {
        Some(t) => t.with_timezone(&Utc),
        None => {
            let mut probe = local;
            loop {
                probe += chrono::Duration::minutes(15);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
        }
    }
}

impl CallingWindow {
    fn opens_on(&self, day: NaiveDate) -> bool {
        self.days.contains(&(day.weekday().num_days_from_monday() as u8))
            && !self.holidays.contains(&day)
            && !self.public_holidays.is_some_and(|c| c.is_holiday(day))
    }

    /// The window that opens on local `day`, in UTC. A window crossing midnight belongs to the day it opens.
    fn interval(&self, tz: Tz, day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
        let end_day = if self.end > self.start { day } else { day + Days::new(1) };
        (to_utc(tz, day.and_time(self.start)), to_utc(tz, end_day.and_time(self.end)))
    }

    /// `now` if the window is open at `now`, else the next time it opens (within two weeks; `None` means
    /// never, e.g. every day a holiday).
    pub fn next_opening(&self, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let today = now.with_timezone(&tz).date_naive();
        let mut day = today.pred_opt()?;
        for _ in 0..16 {
            if self.opens_on(day) {
                let (start, end) = self.interval(tz, day);
                if end > now {
                    return Some(if start <= now { now } else { start });
                }
            }
            day = day.succ_opt()?;
        }
        None
    }

    pub fn is_open(&self, tz: Tz, now: DateTime<Utc>) -> bool {
        self.next_opening(tz, now) == Some(now)
    }

    /// Whether a local wall time lies in the window (used to check a simulator record after the fact).
    pub fn contains_local(&self, local: NaiveDateTime) -> bool {
        let t: NaiveTime = local.time();
        let d = local.date();
        if self.start < self.end {
            self.opens_on(d) && t >= self.start && t < self.end
        } else {
            (self.opens_on(d) && t >= self.start) || (d.pred_opt().is_some_and(|p| self.opens_on(p)) && t < self.end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::campaign::WindowFile;

    fn window(start: &str, end: &str, days: &[&str], holidays: &[&str]) -> CallingWindow {
        CallingWindow::parse(&WindowFile {
            start: start.into(),
            end: end.into(),
            days: days.iter().map(|s| s.to_string()).collect(),
            holidays: holidays.iter().map(|s| s.to_string()).collect(),
            public_holidays: None,
        })
        .unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn before_the_window_moves_to_its_opening_in_local_time() {
        let w = window("09:00", "20:00", &[], &[]);
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        // 07:00 in Tokyo → 09:00 Tokyo = 00:00 UTC.
        assert_eq!(w.next_opening(tokyo, utc("2026-11-23T22:00:00Z")), Some(utc("2026-11-24T00:00:00Z")));
        // 12:00 in Tokyo → open now.
        let now = utc("2026-11-24T03:00:00Z");
        assert!(w.is_open(tokyo, now));
    }

    #[test]
    fn dst_changes_the_utc_opening() {
        let w = window("09:00", "20:00", &[], &[]);
        let ny: Tz = "America/New_York".parse().unwrap();
        // Summer (EDT, UTC-4) vs winter (EST, UTC-5).
        assert_eq!(w.next_opening(ny, utc("2026-07-01T05:00:00Z")), Some(utc("2026-07-01T13:00:00Z")));
        assert_eq!(w.next_opening(ny, utc("2026-12-01T05:00:00Z")), Some(utc("2026-12-01T14:00:00Z")));
        // A window starting inside the spring-forward gap (02:30 on 2026-03-08 doesn't exist).
        let gap = window("02:30", "05:00", &[], &[]);
        assert_eq!(gap.next_opening(ny, utc("2026-03-08T06:00:00Z")), Some(utc("2026-03-08T07:00:00Z")));
    }

    #[test]
    fn overnight_windows_days_and_holidays() {
        let w = window("22:00", "02:00", &["fri"], &[]);
        let london: Tz = "Europe/London".parse().unwrap();
        // Saturday 01:00 belongs to Friday's window (2026-11-27 is a Friday).
        assert!(w.is_open(london, utc("2026-11-28T01:00:00Z")));
        assert!(!w.is_open(london, utc("2026-11-28T03:00:00Z")));
        assert_eq!(w.next_opening(london, utc("2026-11-28T03:00:00Z")), Some(utc("2026-12-04T22:00:00Z")));
        let h = window("09:00", "17:00", &[], &["2026-12-25"]);
        assert_eq!(h.next_opening(london, utc("2026-12-25T10:00:00Z")), Some(utc("2026-12-26T09:00:00Z")));
        assert!(h.contains_local(NaiveDate::from_ymd_opt(2026, 12, 24).unwrap().and_hms_opt(10, 0, 0).unwrap()));
        assert!(!h.contains_local(NaiveDate::from_ymd_opt(2026, 12, 25).unwrap().and_hms_opt(10, 0, 0).unwrap()));
    }
}
