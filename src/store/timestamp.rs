//! Wall-clock instants for call records: UTC, millisecond precision, stored as integer
//! milliseconds since the Unix epoch and shown as RFC 3339 (`2026-11-22T03:55:01.250Z`).
//!
//! Protocol cores run on `std::time::Instant`; only the shell turns events into `Timestamp`s
//! (with [`Timestamp::now`]) when it reports them to the [`Recorder`](super::Recorder).
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A UTC instant with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    pub fn from_system_time(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Timestamp(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// From milliseconds since 1970-01-01T00:00:00Z.
    pub const fn from_unix_ms(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// `self - d`, saturating.
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// Milliseconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn ms_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Parses RFC 3339 (`2026-11-22T03:55:01Z`, any offset, optional fraction; truncated to ms)
    /// or a bare UTC date (`2026-11-22`, meaning its midnight).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let s = s.trim();
        if let Ok(dt) = OffsetDateTime::parse(s, &Rfc3339) {
            return Some(Timestamp::from_offset(dt));
        }
        let date =
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
        Some(Timestamp::from_offset(date.midnight().assume_utc()))
    }

    /// Parses a `--since` / `?since=` value: RFC 3339, a UTC date, or an age relative to `now`
    /// such as `90s`, `15m`, `2h`, `7d`.
    pub fn parse_since(s: &str, now: Timestamp) -> Option<Timestamp> {
        if let Some(t) = Timestamp::parse_rfc3339(s) {
            return Some(t);
        }
        let s = s.trim();
        let unit = s.chars().last()?;
        let n: u64 = s.get(..s.len() - unit.len_utf8())?.parse().ok()?;
        let secs = match unit {
            's' => n,
            'm' => n.checked_mul(60)?,
            'h' => n.checked_mul(3600)?,
            'd' => n.checked_mul(86_400)?,
            _ => return None,
        };
        Some(now.saturating_sub(Duration::from_secs(secs)))
    }

    fn from_offset(dt: OffsetDateTime) -> Timestamp {
        let ms = dt.unix_timestamp_nanos().div_euclid(1_000_000);
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    fn to_offset(self) -> Option<OffsetDateTime> {
        let nanos = i128::from(self.0).checked_mul(1_000_000)?;
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .map(|d| d.to_offset(UtcOffset::UTC))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with exactly three fractional digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_offset() {
            Some(d) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second(),
                d.millisecond()
            ),
            None => write!(f, "@{}ms", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_utc_with_milliseconds() {
        assert_eq!(
            Timestamp::from_unix_ms(0).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_unix_ms(1_795_307_701_250).to_string(),
            "2026-11-22T00:35:01.250Z"
        );
    }

    #[test]
    fn parses_rfc3339_offsets_dates_and_ages() {
        let t = Timestamp::parse_rfc3339("2026-11-22T02:35:01.250+02:00").unwrap();
        assert_eq!(t.unix_ms(), 1_795_307_701_250);
        let d = Timestamp::parse_rfc3339("2026-11-22").unwrap();
        assert_eq!(d.to_string(), "2026-11-22T00:00:00.000Z");
        let now = Timestamp::from_unix_ms(10_000_000);
        assert_eq!(
            Timestamp::parse_since("90s", now).unwrap().unix_ms(),
            9_910_000
        );
        assert_eq!(
            Timestamp::parse_since("2h", now).unwrap().unix_ms(),
            2_800_000
        );
        assert_eq!(
            Timestamp::parse_since("1d", now).unwrap().unix_ms(),
            -76_400_000
        );
        for bad in ["", "h", "5y", "-5m", "2026-13-01", "yesterday", "5é"] {
            assert_eq!(Timestamp::parse_since(bad, now), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(ms in -62_135_596_800_000i64..253_402_300_799_999i64) {
            let t = Timestamp::from_unix_ms(ms);
            prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Some(t));
        }

        #[test]
        fn parse_since_never_panics(s in "\\PC{0,24}") {
            let _ = Timestamp::parse_since(&s, Timestamp::from_unix_ms(0));
        }
    }
}
