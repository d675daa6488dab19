//! `call_hours` validation, with the rules and the exact error wording of Meta's settings
//! reference (seeds): valid time-zone id, `HHMM` times, open before close, at most 2 entries
//! per day, no overlaps, weekly hours non-empty, at most 20 holidays, `YYYY-MM-DD` dates, no
//! past dates (judged in the schedule's time zone, at a clock passed in). The sandbox twin
//! runs the same checks, so both refuse with the same words.
use super::settings::CallHours;
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// Seeds' wording, verbatim.
pub const MSG_INVALID_STATUS: &str = "Invalid status";
pub const MSG_INVALID_SCHEDULE: &str = "Invalid schedule for call_hours";
pub const MSG_PAST_DATE: &str = "Holiday given in call_hours is a past date";
pub const MSG_TIMEZONE: &str = "Timezone is invalid in call_hours";
pub const MSG_WEEKLY_EMPTY: &str = "weekly_operating_hours in call_hours cannot be empty";
pub const MSG_DATE_FORMAT: &str = "Date format in holiday_schedule for call_hours is invalid";
pub const MSG_MORE_THAN_2: &str =
    "More than 2 entries not allowed in weekly_operating_hours schedule in call_hours";
pub const MSG_OVERLAP: &str = "Overlapping schedule in call_hours is not allowed";
/// The seeds say "Up to 20 overrides can be specified" without an error string; this follows
/// the wording of the 2-entries rule.
pub const MSG_MORE_THAN_20_HOLIDAYS: &str =
    "More than 20 entries not allowed in holiday_schedule in call_hours";

pub const MAX_ENTRIES_PER_DAY: usize = 2;
pub const MAX_HOLIDAYS: usize = 20;
pub const DAYS: [&str; 7] = [
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
    "SUNDAY",
];

/// One rule broken: `message` is Meta's wording, `detail` says where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub message: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.detail)
    }
}

fn v(message: &'static str, detail: impl Into<String>) -> Violation {
    Violation {
        message,
        detail: detail.into(),
    }
}

/// Minutes after midnight of an `HHMM` string ("0000".."2359").
pub fn parse_hhmm(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    if b.len() != 4 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let h = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
    let m = u16::from(b[2] - b'0') * 10 + u16::from(b[3] - b'0');
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// A strict `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    s.parse::<Date>().ok()
}

/// A time-zone id from the IANA database (bundled).
pub fn parse_timezone(id: &str) -> Option<TimeZone> {
    if id.is_empty() {
        return None;
    }
    jiff::tz::db().get(id).ok()
}

/// Checks every rule; returns all violations (empty = valid). `now` is the clock.
pub fn validate(ch: &CallHours, now: Timestamp) -> Vec<Violation> {
    let mut out = Vec::new();
    match ch.status.as_deref() {
        Some("ENABLED") | Some("DISABLED") => {}
        other => out.push(v(
            MSG_INVALID_STATUS,
            format!("call_hours.status {other:?} is not ENABLED or DISABLED"),
        )),
    }
    let tz = match ch.timezone_id.as_deref() {
        Some(id) => match parse_timezone(id) {
            Some(tz) => Some(tz),
            None => {
                out.push(v(
                    MSG_TIMEZONE,
                    format!("timezone_id {id:?} is not a time zone"),
                ));
                None
            }
        },
        None => {
            out.push(v(MSG_TIMEZONE, "timezone_id is missing"));
            None
        }
    };

    // Weekly hours.
    let weekly = ch.weekly_operating_hours.as_deref().unwrap_or(&[]);
    if weekly.is_empty() {
        out.push(v(MSG_WEEKLY_EMPTY, "weekly_operating_hours has no entries"));
    }
    let mut per_day: Vec<Vec<(u16, u16)>> = vec![Vec::new(); 7];
    for (i, w) in weekly.iter().enumerate() {
        let Some(day) = DAYS.iter().position(|d| *d == w.day_of_week) else {
            out.push(v(
                MSG_INVALID_SCHEDULE,
                format!(
                    "weekly_operating_hours[{i}].day_of_week {:?} is not MONDAY..SUNDAY",
                    w.day_of_week
                ),
            ));
            continue;
        };
        let span = interval(
            &mut out,
            &format!("weekly_operating_hours[{i}] ({})", w.day_of_week),
            "open_time",
            &w.open_time,
            "close_time",
            &w.close_time,
        );
        if let Some(s) = span {
            per_day[day].push(s);
        }
    }
    for (d, spans) in per_day.iter_mut().enumerate() {
        if spans.len() > MAX_ENTRIES_PER_DAY {
            out.push(v(
                MSG_MORE_THAN_2,
                format!("{} has {} entries", DAYS[d], spans.len()),
            ));
        }
        if let Some(detail) = overlap(spans) {
            out.push(v(MSG_OVERLAP, format!("{} {detail}", DAYS[d])));
        }
    }

    // Holidays.
    let holidays = ch.holiday_schedule.as_deref().unwrap_or(&[]);
    if holidays.len() > MAX_HOLIDAYS {
        out.push(v(
            MSG_MORE_THAN_20_HOLIDAYS,
            format!("holiday_schedule has {} entries", holidays.len()),
        ));
    }
    let today = tz
        .as_ref()
        .map(|tz| now.to_zoned(tz.clone()).date())
        .unwrap_or_else(|| now.to_zoned(TimeZone::UTC).date());
    let mut per_date: std::collections::BTreeMap<Date, Vec<(u16, u16)>> = Default::default();
    for (i, h) in holidays.iter().enumerate() {
        let Some(date) = parse_date(&h.date) else {
            out.push(v(
                MSG_DATE_FORMAT,
                format!("holiday_schedule[{i}].date {:?} is not YYYY-MM-DD", h.date),
            ));
            continue;
        };
        if date < today {
            out.push(v(
                MSG_PAST_DATE,
                format!("holiday_schedule[{i}].date {} is before {today}", h.date),
            ));
        }
        if let Some(s) = interval(
            &mut out,
            &format!("holiday_schedule[{i}] ({})", h.date),
            "start_time",
            &h.start_time,
            "end_time",
            &h.end_time,
        ) {
            per_date.entry(date).or_default().push(s);
        }
    }
    for (date, spans) in per_date.iter_mut() {
        if let Some(detail) = overlap(spans) {
            out.push(v(MSG_OVERLAP, format!("holidays on {date} {detail}")));
        }
    }
    out
}

fn interval(
    out: &mut Vec<Violation>,
    at: &str,
    open_name: &str,
    open: &str,
    close_name: &str,
    close: &str,
) -> Option<(u16, u16)> {
    let o = parse_hhmm(open);
    let c = parse_hhmm(close);
    if o.is_none() {
        out.push(v(
            MSG_INVALID_SCHEDULE,
            format!("{at}: {open_name} {open:?} is not HHMM"),
        ));
    }
    if c.is_none() {
        out.push(v(
            MSG_INVALID_SCHEDULE,
            format!("{at}: {close_name} {close:?} is not HHMM"),
        ));
    }
    let (o, c) = (o?, c?);
    if o >= c {
        out.push(v(
            MSG_INVALID_SCHEDULE,
            format!("{at}: {open_name} {open} is not before {close_name} {close}"),
        ));
        return None;
    }
    Some((o, c))
}

fn overlap(spans: &mut [(u16, u16)]) -> Option<String> {
    spans.sort_unstable();
    spans.windows(2).find_map(|w| {
        (w[1].0 < w[0].1).then(|| {
            format!(
                "{}-{} overlaps {}-{}",
                hhmm(w[0].0),
                hhmm(w[0].1),
                hhmm(w[1].0),
                hhmm(w[1].1)
            )
        })
    })
}

fn hhmm(m: u16) -> String {
    format!("{:02}{:02}", m / 60, m % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::whatsapp::graph::settings::{Holiday, WeeklyHours};

    fn now() -> Timestamp {
        "2026-11-22T03:00:00Z".parse().unwrap()
    }
    fn wk(d: &str, o: &str, c: &str) -> WeeklyHours {
        WeeklyHours {
            day_of_week: d.into(),
            open_time: o.into(),
            close_time: c.into(),
        }
    }
    fn hol(d: &str, s: &str, e: &str) -> Holiday {
        Holiday {
            date: d.into(),
            start_time: s.into(),
            end_time: e.into(),
        }
    }
    fn base() -> CallHours {
        CallHours {
            status: Some("ENABLED".into()),
            timezone_id: Some("America/Manaus".into()),
            weekly_operating_hours: Some(vec![
                wk("MONDAY", "0400", "1020"),
                wk("TUESDAY", "0108", "1020"),
            ]),
            holiday_schedule: Some(vec![hol("2026-12-25", "0000", "2359")]),
        }
    }
    fn only(ch: &CallHours) -> &'static str {
        let vs = validate(ch, now());
        assert_eq!(vs.len(), 1, "{vs:?}");
        vs[0].message
    }

    #[test]
    fn seed_sample_is_valid() {
        assert_eq!(validate(&base(), now()), vec![]);
    }
    #[test]
    fn invalid_timezone() {
        let mut c = base();
        c.timezone_id = Some("Mars/Olympus".into());
        assert_eq!(only(&c), "Timezone is invalid in call_hours");
    }
    #[test]
    fn hhmm_times() {
        for bad in ["04:00", "2400", "0960", "400", "abcd", ""] {
            let mut c = base();
            c.weekly_operating_hours = Some(vec![wk("MONDAY", bad, "1020")]);
            assert_eq!(only(&c), "Invalid schedule for call_hours", "{bad}");
        }
        assert_eq!(parse_hhmm("2359"), Some(23 * 60 + 59));
    }
    #[test]
    fn open_before_close() {
        let mut c = base();
        c.weekly_operating_hours = Some(vec![wk("MONDAY", "1020", "1020")]);
        assert_eq!(only(&c), "Invalid schedule for call_hours");
        c.weekly_operating_hours = Some(vec![wk("MONDAY", "1100", "1020")]);
        assert_eq!(only(&c), "Invalid schedule for call_hours");
    }
    #[test]
    fn bad_day() {
        let mut c = base();
        c.weekly_operating_hours = Some(vec![wk("Monday", "0900", "1000")]);
        assert_eq!(only(&c), "Invalid schedule for call_hours");
    }
    #[test]
    fn at_most_two_per_day() {
        let mut c = base();
        c.weekly_operating_hours = Some(vec![
            wk("MONDAY", "0800", "0900"),
            wk("MONDAY", "1000", "1100"),
            wk("MONDAY", "1200", "1300"),
        ]);
        assert_eq!(
            only(&c),
            "More than 2 entries not allowed in weekly_operating_hours schedule in call_hours"
        );
    }
    #[test]
    fn no_overlaps() {
        let mut c = base();
        c.weekly_operating_hours = Some(vec![
            wk("MONDAY", "0800", "1000"),
            wk("MONDAY", "0959", "1100"),
        ]);
        assert_eq!(
            only(&c),
            "Overlapping schedule in call_hours is not allowed"
        );
        // touching is fine
        c.weekly_operating_hours = Some(vec![
            wk("MONDAY", "0800", "1000"),
            wk("MONDAY", "1000", "1100"),
        ]);
        assert_eq!(validate(&c, now()), vec![]);
    }
    #[test]
    fn weekly_non_empty() {
        let mut c = base();
        c.weekly_operating_hours = Some(vec![]);
        assert_eq!(
            only(&c),
            "weekly_operating_hours in call_hours cannot be empty"
        );
        c.weekly_operating_hours = None;
        assert_eq!(
            only(&c),
            "weekly_operating_hours in call_hours cannot be empty"
        );
    }
    #[test]
    fn at_most_20_holidays() {
        let mut c = base();
        let hs: Vec<_> = (1..=21)
            .map(|d| hol(&format!("2027-01-{d:02}"), "0000", "2359"))
            .collect();
        c.holiday_schedule = Some(hs[..20].to_vec());
        assert_eq!(validate(&c, now()), vec![]);
        c.holiday_schedule = Some(hs);
        assert_eq!(
            only(&c),
            "More than 20 entries not allowed in holiday_schedule in call_hours"
        );
    }
    #[test]
    fn date_format() {
        for bad in [
            "2026/12/25",
            "25-12-2026",
            "2026-13-01",
            "2026-02-30",
            "2026-1-01",
        ] {
            let mut c = base();
            c.holiday_schedule = Some(vec![hol(bad, "0000", "2359")]);
            assert_eq!(
                only(&c),
                "Date format in holiday_schedule for call_hours is invalid",
                "{bad}"
            );
        }
    }
    #[test]
    fn no_past_dates_in_the_schedule_zone() {
        let mut c = base();
        c.holiday_schedule = Some(vec![hol("2026-11-20", "0000", "2359")]);
        assert_eq!(only(&c), "Holiday given in call_hours is a past date");
        // 03:00 UTC on the 22nd is still the 21st in Manaus (UTC-4): not past there.
        c.holiday_schedule = Some(vec![hol("2026-11-21", "0000", "2359")]);
        let late: Timestamp = "2026-11-22T03:00:00Z".parse().unwrap();
        c.timezone_id = Some("America/Manaus".into());
        assert_eq!(validate(&c, late), vec![]);
        c.timezone_id = Some("Asia/Singapore".into());
        assert_eq!(
            validate(&c, late)[0].message,
            "Holiday given in call_hours is a past date"
        );
    }
    #[test]
    fn invalid_status() {
        let mut c = base();
        c.status = Some("ON".into());
        assert_eq!(only(&c), "Invalid status");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::whatsapp::graph::settings::{Holiday, WeeklyHours};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,12}") {
            let _ = parse_hhmm(&s);
            let _ = parse_date(&s);
            let _ = parse_timezone(&s);
        }

        #[test]
        fn hhmm_round_trips(h in 0u16..24, m in 0u16..60) {
            prop_assert_eq!(parse_hhmm(&format!("{h:02}{m:02}")), Some(h * 60 + m));
        }

        #[test]
        fn validate_never_panics_and_reports_seed_wording(
            tz in "\\PC{0,20}",
            days in proptest::collection::vec(("\\PC{0,10}", "[0-9:]{0,5}", "[0-9:]{0,5}"), 0..6),
            hols in proptest::collection::vec(("[0-9-]{0,11}", "[0-9]{0,4}", "[0-9]{0,4}"), 0..25),
        ) {
            let ch = CallHours {
                status: Some("ENABLED".into()),
                timezone_id: Some(tz),
                weekly_operating_hours: Some(days.into_iter().map(|(d, o, c)| WeeklyHours { day_of_week: d, open_time: o, close_time: c }).collect()),
                holiday_schedule: Some(hols.into_iter().map(|(d, s, e)| Holiday { date: d, start_time: s, end_time: e }).collect()),
            };
            let known = [MSG_INVALID_STATUS, MSG_INVALID_SCHEDULE, MSG_PAST_DATE, MSG_TIMEZONE, MSG_WEEKLY_EMPTY, MSG_DATE_FORMAT, MSG_MORE_THAN_2, MSG_OVERLAP, MSG_MORE_THAN_20_HOLIDAYS];
            for v in validate(&ch, Timestamp::UNIX_EPOCH) {
                prop_assert!(known.contains(&v.message));
            }
        }
    }
}
