//! Typed mirror of Meta's per-number calling settings (`calling.*` of
//! `POST /<PHONE_NUMBER_ID>/settings`) as written in a profile's `[numbers.calling]`.
//! Only types are checked here (names of days, `HHMM` times, `YYYY-MM-DD` dates); the
//! call-hours rules (≤ 2 entries a day, no overlaps, ≤ 20 holidays, no past dates) belong to
//! `whatsapp::graph`.
use serde::{Deserialize, Serialize};
use std::fmt;
use toml::Spanned;

use super::span::Diag;

/// `ENABLED` | `DISABLED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Enabled,
    Disabled,
}

/// `call_icon_visibility`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallIconVisibility {
    Default,
    DisableAll,
    HideInChat,
}

/// `day_of_week`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// A wall-clock time written `"HHMM"` (Meta's form) or `"HH:MM"`; displays as `HHMM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime {
    pub hour: u8,
    pub minute: u8,
}

impl ClockTime {
    /// Parse `HHMM` or `HH:MM` (00..=23, 00..=59).
    pub fn parse(s: &str) -> Result<ClockTime, String> {
        let digits: String = s.chars().filter(|c| *c != ':').collect();
        let shape_ok = digits.len() == 4
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (s.len() == 4 || (s.len() == 5 && s.as_bytes().get(2) == Some(&b':')));
        let bad = || format!("{s:?} is not a time (HHMM)");
        if !shape_ok {
            return Err(bad());
        }
        let hour: u8 = digits
            .get(..2)
            .and_then(|h| h.parse().ok())
            .ok_or_else(bad)?;
        let minute: u8 = digits
            .get(2..)
            .and_then(|m| m.parse().ok())
            .ok_or_else(bad)?;
        if hour > 23 || minute > 59 {
            return Err(bad());
        }
        Ok(ClockTime { hour, minute })
    }

    /// Minutes since midnight.
    pub fn minutes(&self) -> u16 {
        u16::from(self.hour) * 60 + u16::from(self.minute)
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}{:02}", self.hour, self.minute)
    }
}

/// A calendar date `YYYY-MM-DD` (month 1..=12, day valid for the month).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// Parse `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Result<Date, String> {
        let bad = || format!("{s:?} is not a date (YYYY-MM-DD)");
        let b = s.as_bytes();
        if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| {
            s.get(r)
                .filter(|p| p.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok())
        };
        let (Some(year), Some(month), Some(day)) = (num(0..4), num(5..7), num(8..10)) else {
            return Err(bad());
        };
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return Err(bad()),
        };
        if day == 0 || day > days {
            return Err(bad());
        }
        Ok(Date {
            year,
            month: month as u8,
            day: day as u8,
        })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// `[numbers.calling]`: what `whatsip settings push` sends; every field optional (absent =
/// leave Meta's value alone).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallingSettings {
    pub status: Option<Status>,
    pub call_icon_visibility: Option<CallIconVisibility>,
    pub callback_permission_status: Option<Status>,
    pub call_hours: Option<CallHours>,
}

/// `call_hours`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallHours {
    pub status: Status,
    /// FBE time-zone name such as `America/Manaus` (not checked against a list here).
    pub timezone_id: String,
    pub weekly_operating_hours: Vec<WeeklyHours>,
    pub holiday_schedule: Vec<Holiday>,
}

/// One `weekly_operating_hours` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklyHours {
    pub day_of_week: Weekday,
    pub open_time: ClockTime,
    pub close_time: ClockTime,
}

/// One `holiday_schedule` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    pub date: Date,
    pub start_time: ClockTime,
    pub end_time: ClockTime,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCalling {
    status: Option<Status>,
    call_icon_visibility: Option<CallIconVisibility>,
    callback_permission_status: Option<Status>,
    call_hours: Option<RawCallHours>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCallHours {
    status: Status,
    timezone_id: Spanned<String>,
    #[serde(default)]
    weekly_operating_hours: Vec<RawWeekly>,
    #[serde(default)]
    holiday_schedule: Vec<RawHoliday>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeekly {
    day_of_week: Weekday,
    open_time: Spanned<String>,
    close_time: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    date: Spanned<String>,
    start_time: Spanned<String>,
    end_time: Spanned<String>,
}

fn time(d: &mut Diag<'_>, field: &str, v: &Spanned<String>) -> ClockTime {
    ClockTime::parse(v.get_ref()).unwrap_or_else(|e| {
        d.err(Some(v.span()), field, e);
        ClockTime { hour: 0, minute: 0 }
    })
}

impl RawCalling {
    pub(crate) fn build(self, d: &mut Diag<'_>, path: &str) -> CallingSettings {
        let call_hours = self.call_hours.map(|h| {
            let p = format!("{path}.call_hours");
            if h.timezone_id.get_ref().trim().is_empty() {
                d.err(
                    Some(h.timezone_id.span()),
                    &format!("{p}.timezone_id"),
                    "must not be empty",
                );
            }
            let weekly_operating_hours = h
                .weekly_operating_hours
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let q = format!("{p}.weekly_operating_hours[{i}]");
                    WeeklyHours {
                        day_of_week: w.day_of_week,
                        open_time: time(d, &format!("{q}.open_time"), &w.open_time),
                        close_time: time(d, &format!("{q}.close_time"), &w.close_time),
                    }
                })
                .collect();
            let holiday_schedule = h
                .holiday_schedule
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let q = format!("{p}.holiday_schedule[{i}]");
                    Holiday {
                        date: Date::parse(w.date.get_ref()).unwrap_or_else(|e| {
                            d.err(Some(w.date.span()), &format!("{q}.date"), e);
                            Date {
                                year: 1970,
                                month: 1,
                                day: 1,
                            }
                        }),
                        start_time: time(d, &format!("{q}.start_time"), &w.start_time),
                        end_time: time(d, &format!("{q}.end_time"), &w.end_time),
                    }
                })
                .collect();
            CallHours {
                status: h.status,
                timezone_id: h.timezone_id.into_inner(),
                weekly_operating_hours,
                holiday_schedule,
            }
        });
        CallingSettings {
            status: self.status,
            call_icon_visibility: self.call_icon_visibility,
            callback_permission_status: self.callback_permission_status,
            call_hours,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_times() {
        assert_eq!(ClockTime::parse("0930").unwrap().to_string(), "0930");
        assert_eq!(ClockTime::parse("04:00").unwrap().to_string(), "0400");
        for bad in ["2400", "0960", "930", "09:3", "ab12", "09300", "0９30"] {
            assert!(ClockTime::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(Date::parse("2028-02-29").unwrap().to_string(), "2028-02-29");
        for bad in [
            "2027-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-1-01",
            "2026/01/01",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
    }
}
