//! Public-holiday calendars computed by rule, so no yearly table goes stale.
//!
//! Japan: the Act on National Holidays (国民の祝日に関する法律) as in force since 2020, with the
//! one-off dates of 2019–2021 (the enthronement and the Olympic moves), the substitute holiday
//! (振替休日: a holiday on a Sunday moves to the next day that is not a holiday) and the sandwiched
//! holiday (国民の休日: a day between two holidays). Equinoxes use the National Astronomical
//! Observatory's approximation, valid 1980–2099. Years before 2007 are not modelled (the dialer
//! never schedules into the past).

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

/// A public-holiday calendar to skip, by its short name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum HolidayCalendar {
    #[serde(rename = "jp")]
    Jp,
}

impl HolidayCalendar {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jp => "jp",
        }
    }

    pub fn is_holiday(self, day: NaiveDate) -> bool {
        self.name(day).is_some()
    }

    /// The holiday's name, or `None` on an ordinary day.
    pub fn name(self, day: NaiveDate) -> Option<&'static str> {
        match self {
            Self::Jp => jp::name(day),
        }
    }
}

mod jp {
    use super::*;

    /// A holiday named by the law itself (not a substitute or sandwiched one).
    fn statutory(d: NaiveDate) -> Option<&'static str> {
        let (y, m, day) = (d.year(), d.month(), d.day());
        let nth_monday = |n: u8| d.weekday() == Weekday::Mon && (day - 1) / 7 + 1 == u32::from(n);
        let name = match (m, day) {
            (1, 1) => "元日 New Year's Day",
            (1, _) if nth_monday(2) => "成人の日 Coming of Age Day",
            (2, 11) => "建国記念の日 National Foundation Day",
            (2, 23) if y >= 2020 => "天皇誕生日 Emperor's Birthday",
            (12, 23) if y <= 2018 => "天皇誕生日 Emperor's Birthday",
            (3, _) if day == vernal_equinox(y) => "春分の日 Vernal Equinox Day",
            (4, 29) => "昭和の日 Showa Day",
            (5, 3) => "憲法記念日 Constitution Memorial Day",
            (5, 4) => "みどりの日 Greenery Day",
            (5, 5) => "こどもの日 Children's Day",
            (9, _) if day == autumnal_equinox(y) => "秋分の日 Autumnal Equinox Day",
            (11, 3) => "文化の日 Culture Day",
            (11, 23) => "勤労感謝の日 Labour Thanksgiving Day",
            _ => return moved(y, m, day, nth_monday),
        };
        Some(name)
    }

    /// Marine, Mountain and Sports Day, which the Olympic years moved, and 2019's one-off days.
    fn moved(y: i32, m: u32, day: u32, nth_monday: impl Fn(u8) -> bool) -> Option<&'static str> {
        const MARINE: &str = "海の日 Marine Day";
        const MOUNTAIN: &str = "山の日 Mountain Day";
        const SPORTS: &str = "スポーツの日 Sports Day";
        let name = match (y, m, day) {
            (2019, 5, 1) => "即位の日 Enthronement Day",
            (2019, 10, 22) => "即位礼正殿の儀 Enthronement Ceremony",
            (2020, 7, 23) | (2021, 7, 22) => MARINE,
            (2020, 7, 24) | (2021, 7, 23) => SPORTS,
            (2020, 8, 10) | (2021, 8, 8) => MOUNTAIN,
            (2020 | 2021, 7 | 8 | 10, _) => return None,
            (_, 7, _) if nth_monday(3) => MARINE,
            (_, 8, 11) if y >= 2016 => MOUNTAIN,
            (_, 9, _) if nth_monday(3) => "敬老の日 Respect for the Aged Day",
            (_, 10, _) if nth_monday(2) => SPORTS,
            _ => return None,
        };
        Some(name)
    }

    pub(super) fn name(d: NaiveDate) -> Option<&'static str> {
        if let Some(n) = statutory(d) {
            return Some(n);
        }
        // Substitute: walk back over consecutive holidays; if the run started on a Sunday, this
        // first non-holiday day after it is the substitute (e.g. 2019-05-06 after Sun 05-05).
        let mut prev = d.pred_opt()?;
        while statutory(prev).is_some() {
            if prev.weekday() == Weekday::Sun {
                return Some("振替休日 Substitute Holiday");
            }
            prev = prev.pred_opt()?;
        }
        // Sandwiched between two statutory holidays (2019-04-30 and 05-02, or a September
        // with Respect for the Aged Day two days before the equinox).
        let before = d.pred_opt().and_then(statutory);
        let after = d.succ_opt().and_then(statutory);
        (before.is_some() && after.is_some()).then_some("国民の休日 Citizens' Holiday")
    }

    fn equinox_day(y: i32, base: f64) -> u32 {
        let n = f64::from(y - 1980);
        (base + 0.242194 * n - (n / 4.0).floor()).floor() as u32
    }

    fn vernal_equinox(y: i32) -> u32 {
        equinox_day(y, 20.8431)
    }

    fn autumnal_equinox(y: i32) -> u32 {
        equinox_day(y, 23.2488)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holidays(year: i32) -> Vec<String> {
        let mut d = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
        let mut out = vec![];
        while d.year() == year {
            if HolidayCalendar::Jp.is_holiday(d) {
                out.push(d.format("%m-%d").to_string());
            }
            d = d.succ_opt().unwrap();
        }
        out
    }

    // Expected lists from the Cabinet Office's published calendars (内閣府「国民の祝日」について).
    #[test]
    fn japan_2019_with_the_enthronement_golden_week() {
        assert_eq!(
            holidays(2019),
            [
                "01-01", "01-14", "02-11", "03-21", "04-29", "04-30", "05-01", "05-02", "05-03", "05-04", "05-05",
                "05-06", "07-15", "08-11", "08-12", "09-16", "09-23", "10-14", "10-22", "11-03", "11-04", "11-23"
            ]
        );
    }

    #[test]
    fn japan_2020_and_2021_olympic_moves() {
        assert_eq!(
            holidays(2020),
            [
                "01-01", "01-13", "02-11", "02-23", "02-24", "03-20", "04-29", "05-03", "05-04", "05-05", "05-06",
                "07-23", "07-24", "08-10", "09-21", "09-22", "11-03", "11-23"
            ]
        );
        assert_eq!(
            holidays(2021),
            [
                "01-01", "01-11", "02-11", "02-23", "03-20", "04-29", "05-03", "05-04", "05-05", "07-22", "07-23",
                "08-08", "08-09", "09-20", "09-23", "11-03", "11-23"
            ]
        );
    }

    #[test]
    fn japan_2026_with_a_sandwiched_september_day() {
        // 2026-09-21 Respect for the Aged Day, 09-23 equinox: 09-22 is a citizens' holiday.
        // 05-03 is a Sunday: the substitute is 05-06, after Greenery and Children's Day.
        assert_eq!(
            holidays(2026),
            [
                "01-01", "01-12", "02-11", "02-23", "03-20", "04-29", "05-03", "05-04", "05-05", "05-06", "07-20",
                "08-11", "09-21", "09-22", "09-23", "10-12", "11-03", "11-23"
            ]
        );
        assert_eq!(
            HolidayCalendar::Jp.name(NaiveDate::from_ymd_opt(2026, 9, 22).unwrap()),
            Some("国民の休日 Citizens' Holiday")
        );
    }

    #[test]
    fn japan_2027_equinoxes_and_an_ordinary_day() {
        let jp = HolidayCalendar::Jp;
        assert!(jp.is_holiday(NaiveDate::from_ymd_opt(2027, 3, 21).unwrap()));
        assert!(jp.is_holiday(NaiveDate::from_ymd_opt(2027, 3, 22).unwrap()), "03-21 is a Sunday");
        assert!(jp.is_holiday(NaiveDate::from_ymd_opt(2027, 9, 23).unwrap()));
        assert!(!jp.is_holiday(NaiveDate::from_ymd_opt(2027, 6, 15).unwrap()));
    }

    #[test]
    fn serde_name() {
        #[derive(Deserialize)]
        struct W {
            c: HolidayCalendar,
        }
        let w: W = toml::from_str("c = \"jp\"").unwrap();
        assert_eq!(w.c, HolidayCalendar::Jp);
        assert!(toml::from_str::<W>("c = \"us\"").is_err());
    }
}
