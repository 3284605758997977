//! Event time: timestamps, calendar dates, benefit months, and the
//! district's time zone that turns one into the other.
//!
//! Calendar questions (which day was a payment made, which year, when does a
//! benefit month end) are answered in one configured offset (default
//! `+08:00`), never in the offset a record happened to be written with, so the
//! same instant always lands on the same day.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An instant, in milliseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

pub const MS_PER_DAY: i64 = 86_400_000;

impl Timestamp {
    /// Parses an RFC 3339 timestamp with an offset (`Z` counts as one).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        // chrono accepts a space for `T`; RFC 3339 allows only `T` or `t`.
        if s.len() < 20 || !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
            return None;
        }
        let dt = DateTime::parse_from_rfc3339(s).ok()?;
        let y = dt.year();
        if !(1900..=2199).contains(&y) {
            return None;
        }
        Some(Timestamp(dt.timestamp_millis()))
    }

    pub fn plus_days(self, days: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(days.saturating_mul(MS_PER_DAY)))
    }
}

/// A calendar date (`YYYY-MM-DD`), stored compactly as days.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub NaiveDate);

impl Date {
    /// Strict `YYYY-MM-DD`, a real calendar day, year 1900–2199.
    pub fn parse(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        if !b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit()) {
            return None;
        }
        let y: i32 = s[0..4].parse().ok()?;
        let m: u32 = s[5..7].parse().ok()?;
        let d: u32 = s[8..10].parse().ok()?;
        if !(1900..=2199).contains(&y) {
            return None;
        }
        NaiveDate::from_ymd_opt(y, m, d).map(Date)
    }

    pub fn from_ymd(y: i32, m: u32, d: u32) -> Date {
        Date(NaiveDate::from_ymd_opt(y, m, d).expect("valid date"))
    }

    /// Days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Date) -> i64 {
        (later.0 - self.0).num_days()
    }

    pub fn plus_days(self, days: i64) -> Date {
        Date(self.0 + Duration::days(days))
    }

    pub fn year(self) -> i32 {
        self.0.year()
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i32(self.0.num_days_from_ce())
        }
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        if d.is_human_readable() {
            let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
            Date::parse(&s).ok_or_else(|| de::Error::custom("bad date"))
        } else {
            let n = i32::deserialize(d)?;
            NaiveDate::from_num_days_from_ce_opt(n)
                .map(Date)
                .ok_or_else(|| de::Error::custom("bad day number"))
        }
    }
}

/// A benefit month (`YYYY-MM`), as months since year 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period(pub i32);

impl Period {
    pub fn new(year: i32, month: u32) -> Period {
        Period(year * 12 + month as i32 - 1)
    }

    /// Strict `YYYY-MM`, month 01–12, year 1900–2199.
    pub fn parse(s: &str) -> Option<Period> {
        let b = s.as_bytes();
        if b.len() != 7 || b[4] != b'-' {
            return None;
        }
        if !b.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_digit()) {
            return None;
        }
        let y: i32 = s[0..4].parse().ok()?;
        let m: u32 = s[5..7].parse().ok()?;
        if !(1900..=2199).contains(&y) || !(1..=12).contains(&m) {
            return None;
        }
        Some(Period::new(y, m))
    }

    pub fn of(date: Date) -> Period {
        Period::new(date.0.year(), date.0.month())
    }

    pub fn year(self) -> i32 {
        self.0.div_euclid(12)
    }

    pub fn month(self) -> u32 {
        self.0.rem_euclid(12) as u32 + 1
    }

    pub fn next(self) -> Period {
        Period(self.0 + 1)
    }

    pub fn first_day(self) -> Date {
        Date::from_ymd(self.year(), self.month(), 1)
    }

    /// `2020年3月`, as supervisors write it.
    pub fn chinese(self) -> String {
        format!("{}年{}月", self.year(), self.month())
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i32(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Period, D::Error> {
        if d.is_human_readable() {
            let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
            Period::parse(&s).ok_or_else(|| de::Error::custom("bad period"))
        } else {
            // Stored bytes are checked too: a month outside 1900-01..2199-12
            // would panic later, in calendar arithmetic.
            let p = Period(i32::deserialize(d)?);
            if !(Period::new(1900, 1)..=Period::new(2199, 12)).contains(&p) {
                return Err(de::Error::custom(format!("stored month {} is outside 1900-01..2199-12", p.0)));
            }
            Ok(p)
        }
    }
}

/// The district's fixed UTC offset, used for every calendar question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tz(pub FixedOffset);

impl Default for Tz {
    fn default() -> Tz {
        Tz(FixedOffset::east_opt(8 * 3600).expect("+08:00"))
    }
}

impl Tz {
    /// Parses `+08:00` / `-05:30` / `Z`.
    pub fn parse(s: &str) -> Option<Tz> {
        if s == "Z" || s == "+00:00" {
            return FixedOffset::east_opt(0).map(Tz);
        }
        let b = s.as_bytes();
        if b.len() != 6 || b[3] != b':' || !(b[0] == b'+' || b[0] == b'-') {
            return None;
        }
        let h: i32 = s[1..3].parse().ok()?;
        let m: i32 = s[4..6].parse().ok()?;
        if h > 14 || m > 59 {
            return None;
        }
        let secs = (h * 3600 + m * 60) * if b[0] == b'-' { -1 } else { 1 };
        FixedOffset::east_opt(secs).map(Tz)
    }

    fn datetime(&self, ts: Timestamp) -> DateTime<FixedOffset> {
        self.0
            .timestamp_millis_opt(ts.0)
            .single()
            .unwrap_or_else(|| self.0.timestamp_millis_opt(0).unwrap())
    }

    /// The local calendar day of an instant.
    pub fn date(&self, ts: Timestamp) -> Date {
        Date(self.datetime(ts).date_naive())
    }

    /// Midnight at the start of a local day.
    pub fn day_start(&self, d: Date) -> Timestamp {
        let naive = d.0.and_hms_opt(0, 0, 0).expect("midnight");
        Timestamp(
            self.0
                .from_local_datetime(&naive)
                .single()
                .map(|dt| dt.timestamp_millis())
                .unwrap_or(0),
        )
    }

    /// The instant a benefit month ends (midnight starting the next month).
    pub fn period_end(&self, p: Period) -> Timestamp {
        self.day_start(p.next().first_day())
    }

    /// RFC 3339 in this offset, second precision unless there are millis.
    pub fn format(&self, ts: Timestamp) -> String {
        let dt = self.datetime(ts);
        if ts.0.rem_euclid(1000) == 0 {
            dt.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
        } else {
            dt.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dates_and_periods() {
        assert_eq!(Date::parse("2020-02-29").unwrap().to_string(), "2020-02-29");
        assert!(Date::parse("2019-02-29").is_none());
        assert!(Date::parse("2019-13-01").is_none());
        assert!(Date::parse("2019-1-01").is_none());
        assert!(Date::parse("20190101").is_none());
        assert_eq!(Period::parse("2020-03").unwrap().chinese(), "2020年3月");
        assert!(Period::parse("2020-00").is_none());
        assert!(Period::parse("2020-3").is_none());
        assert_eq!(Period::parse("2019-12").unwrap().next().to_string(), "2020-01");
    }

    #[test]
    fn timestamps_need_an_offset() {
        assert!(Timestamp::parse_rfc3339("2019-03-12T09:30:00+08:00").is_some());
        assert!(Timestamp::parse_rfc3339("2019-03-12T01:30:00Z").is_some());
        assert_eq!(
            Timestamp::parse_rfc3339("2019-03-12t01:30:00z"),
            Timestamp::parse_rfc3339("2019-03-12T01:30:00Z"),
            "RFC 3339 allows lower case"
        );
        assert!(Timestamp::parse_rfc3339("2019-03-12T09:30:00").is_none());
        assert!(Timestamp::parse_rfc3339("2019-03-12 09:30:00+08:00").is_none());
        assert!(Timestamp::parse_rfc3339("2019-02-30T09:30:00+08:00").is_none());
        assert_eq!(
            Timestamp::parse_rfc3339("2019-03-12T09:30:00+08:00"),
            Timestamp::parse_rfc3339("2019-03-12T01:30:00Z")
        );
    }

    #[test]
    fn calendar_in_the_district_offset() {
        let tz = Tz::default();
        let ts = Timestamp::parse_rfc3339("2019-12-31T17:30:00Z").unwrap();
        assert_eq!(tz.date(ts).to_string(), "2020-01-01");
        let end = tz.period_end(Period::parse("2020-03").unwrap());
        assert_eq!(tz.format(end), "2020-04-01T00:00:00+08:00");
        assert_eq!(Tz::parse("-05:30").unwrap().0.local_minus_utc(), -(5 * 3600 + 1800));
    }

    proptest! {
        #[test]
        fn period_round_trip(y in 1900i32..2200, m in 1u32..13) {
            let p = Period::new(y, m);
            prop_assert_eq!(Period::parse(&p.to_string()), Some(p));
            prop_assert_eq!(p.year(), y);
            prop_assert_eq!(p.month(), m);
        }

        #[test]
        fn parsers_never_panic(s in ".{0,40}") {
            let _ = Date::parse(&s);
            let _ = Period::parse(&s);
            let _ = Timestamp::parse_rfc3339(&s);
            let _ = Tz::parse(&s);
        }
    }
}
