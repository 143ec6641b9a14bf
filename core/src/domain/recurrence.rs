//! When a recurring campaign opens: the latest occurrence of its cron (with seconds) in its own zone.

use chrono::{DateTime, Utc};

use super::Tz;

/// How many occurrences are walked at most (a per-second cron after a day of downtime is 86,400).
const MAX_STEPS: usize = 100_000;

/// The latest occurrence of `cron` in `tz` after `after` and not after `now`, if any. Only the latest
/// counts: occurrences missed while no dialer ran open the campaign once, not once each.
pub fn latest_occurrence(
    cron: &cron::Schedule,
    tz: Tz,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    cron.after(&after.with_timezone(&tz.get()))
        .take(MAX_STEPS)
        .map(|t| t.with_timezone(&Utc))
        .take_while(|t| *t <= now)
        .last()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, h, m, s).unwrap()
    }

    #[test]
    fn nine_in_tokyo_is_midnight_utc_and_only_the_latest_occurrence_counts() {
        let daily_9: cron::Schedule = "0 0 9 * * *".parse().unwrap();
        let tokyo = Tz::parse("Asia/Tokyo").unwrap();
        // 09:00 JST = 00:00 UTC.
        assert_eq!(
            latest_occurrence(&daily_9, tokyo, at(23, 0, 0) - chrono::Duration::days(1), at(0, 0, 1)),
            Some(at(0, 0, 0))
        );
        assert_eq!(latest_occurrence(&daily_9, tokyo, at(0, 0, 0), at(23, 59, 59)), None, "already opened today");
        // Three days missed: one occurrence, the latest.
        let after = at(0, 0, 0) - chrono::Duration::days(3);
        assert_eq!(latest_occurrence(&daily_9, tokyo, after, at(1, 0, 0)), Some(at(0, 0, 0)));
    }

    #[test]
    fn nothing_before_the_first_occurrence() {
        let every_2s: cron::Schedule = "*/2 * * * * *".parse().unwrap();
        let utc = Tz::parse("UTC").unwrap();
        assert_eq!(latest_occurrence(&every_2s, utc, at(10, 0, 0), at(10, 0, 1)), None);
        assert_eq!(latest_occurrence(&every_2s, utc, at(10, 0, 0), at(10, 0, 5)), Some(at(10, 0, 4)));
    }
}
