//! Cron expressions and their ticks in a timezone: where a periodic entry's next run comes from.
//!
//! Five fields (`minute hour day-of-month month day-of-week`, minute resolution) or six (a
//! leading `second`), or a macro (`@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`). Each
//! field is a comma list of `*`, `N`, `A-B`, with an optional `/STEP`; months and weekdays also
//! by name (`JAN`, `MON`); day of week 0-7 with 0 and 7 both Sunday; `?` means `*` in the day
//! fields. When both day fields are restricted a day matches either (as in Vixie cron).
//!
//! Ticks are wall-clock times in the entry's timezone, mapped to instants:
//! - a wall time the clock skips (02:30 on a spring-forward day in Europe/Berlin) fires at the
//!   end of the gap (03:00), so a daily entry still runs that day; several skipped times of one
//!   gap fire once;
//! - a wall time the clock repeats (02:30 on a fall-back day) fires once, at its first
//!   occurrence, unless the entry runs every hour (`*` in the hour field): then both
//!   occurrences fire, since an hourly rhythm has a tick in each real hour.

use std::fmt;

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// A cron expression that does not parse; names the field and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronError {
    /// The field (`second`, `minute`, `hour`, `day of month`, `month`, `day of week`), or
    /// `expression` for the whole.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field == "expression" {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{} field: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for CronError {}

/// A parsed cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    source: String,
    seconds: u64,
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    dom_any: bool,
    dow_any: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
};
const DOW: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &DAYS,
};

impl Field {
    fn err(&self, message: String) -> CronError {
        CronError {
            field: self.name,
            message,
        }
    }

    fn value(&self, s: &str) -> Result<u32, CronError> {
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            // Month names start at 1, day names at 0.
            return Ok(i as u32 + u32::from(self.min == 1));
        }
        let v: u32 = s.parse().map_err(|_| {
            self.err(if self.names.is_empty() {
                format!("{s:?} is not a number")
            } else {
                format!(
                    "{s:?} is not a number or a name ({})",
                    self.names.join(", ")
                )
            })
        })?;
        if v < self.min || v > self.max {
            return Err(self.err(format!("{v} is out of range {}-{}", self.min, self.max)));
        }
        Ok(v)
    }

    /// The field's values as a bit set; whether it was `*` (or `?`).
    fn parse(&self, text: &str) -> Result<(u64, bool), CronError> {
        let mut bits = 0u64;
        let mut any = false;
        for item in text.split(',') {
            if item.is_empty() {
                return Err(self.err(format!("empty item in {text:?}")));
            }
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step: u32 =
                        s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                            self.err(format!("step {s:?} is not a positive number"))
                        })?;
                    (r, Some(step))
                }
                None => (item, None),
            };
            let day_field = self.name == DOM.name || self.name == DOW.name;
            let (lo, hi) = if range == "*" || (range == "?" && day_field) {
                if step.is_none() {
                    any = true;
                }
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(self.err(format!("range {range:?} runs backwards")));
                }
                (a, b)
            } else {
                let a = self.value(range)?;
                // `N/STEP`: from N to the end.
                (a, if step.is_some() { self.max } else { a })
            };
            let mut v = lo;
            while v <= hi {
                bits |= 1 << v;
                v += step.unwrap_or(1);
            }
        }
        Ok((bits, any))
    }
}

impl Schedule {
    /// Parses a cron expression (see the module docs).
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let expanded = match expr.trim() {
            "@yearly" | "@annually" => "0 0 0 1 1 *",
            "@monthly" => "0 0 0 1 * *",
            "@weekly" => "0 0 0 * * 0",
            "@daily" | "@midnight" => "0 0 0 * * *",
            "@hourly" => "0 0 * * * *",
            other if other.starts_with('@') => {
                return Err(CronError {
                    field: "expression",
                    message: format!(
                    "unknown macro {other:?} (use @yearly, @monthly, @weekly, @daily or @hourly)"
                ),
                })
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let fields: Vec<&str> = match fields.len() {
            5 => std::iter::once("0").chain(fields).collect(),
            6 => fields,
            n => {
                return Err(CronError {
                    field: "expression",
                    message: format!(
                        "{expr:?} has {n} fields; want 5 (minute hour day-of-month month day-of-week) or 6 (with seconds first)"
                    ),
                })
            }
        };
        let (seconds, _) = SECOND.parse(fields[0])?;
        let (minutes, _) = MINUTE.parse(fields[1])?;
        let (hours, _) = HOUR.parse(fields[2])?;
        let (days_of_month, dom_any) = DOM.parse(fields[3])?;
        let (months, _) = MONTH.parse(fields[4])?;
        let (mut dow, dow_any) = DOW.parse(fields[5])?;
        if dow & (1 << 7) != 0 {
            dow = (dow | 1) & 0x7f; // 7 is Sunday too
        }
        let schedule = Self {
            source: expr.trim().to_string(),
            seconds,
            minutes,
            hours: hours as u32,
            days_of_month: days_of_month as u32,
            months: months as u16,
            days_of_week: dow as u8,
            dom_any,
            dow_any,
        };
        // A day that never comes (30 February) is an error now, not a silent never.
        let from = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if from.and_then(|f| schedule.next_after(f, Tz::UTC)).is_none() {
            return Err(CronError {
                field: "day of month",
                message: format!("{expr:?} names no day that exists"),
            });
        }
        Ok(schedule)
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the entry fires every hour (`*` or every value in the hour field).
    fn every_hour(&self) -> bool {
        self.hours == (1 << 24) - 1
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << d.day()) != 0;
        let dow = self.days_of_week & (1 << d.weekday().num_days_from_sunday()) != 0;
        match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The instants a wall-clock time stands for in `tz` (see the module docs for gaps and
    /// repeats).
    fn instants(&self, local: NaiveDateTime, tz: Tz) -> Vec<DateTime<Utc>> {
        match tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            chrono::LocalResult::Ambiguous(first, second) => {
                let mut v = vec![first.with_timezone(&Utc)];
                if self.every_hour() {
                    v.push(second.with_timezone(&Utc));
                }
                v
            }
            chrono::LocalResult::None => {
                // In a gap: the first wall-clock minute after it (gaps end on whole minutes).
                let mut t = local.with_second(0).unwrap_or(local);
                for _ in 0..(26 * 60) {
                    t += Duration::minutes(1);
                    if let Some(i) = tz.from_local_datetime(&t).earliest() {
                        return vec![i.with_timezone(&Utc)];
                    }
                }
                Vec::new()
            }
        }
    }

    /// The first tick strictly after `after`, in timezone `tz`; `None` if there is none within
    /// about five years.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // Walk wall-clock hours from a little before `after`'s wall time (offsets move by at
        // most a few hours), keep the earliest instant past `after`, and stop once wall time is
        // well past it.
        let slack = Duration::hours(3);
        let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
        let steady =
            offset(after - slack) == offset(after) && offset(after + slack) == offset(after);
        // With no clock change near `after`, wall times before its own map to earlier instants.
        let wall_now = after.with_timezone(&tz).naive_local();
        let start = if steady { wall_now } else { wall_now - slack };
        let mut hour = start.date().and_hms_opt(start.hour(), 0, 0)?;
        let limit = hour + Duration::days(366 * 5);
        let mut best: Option<(DateTime<Utc>, NaiveDateTime)> = None;
        while hour < limit {
            if let Some((_, wall)) = best {
                if hour > wall + slack {
                    break;
                }
            }
            if !self.day_matches(hour.date()) {
                hour = hour.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if self.hours & (1 << hour.hour()) != 0 {
                'minutes: for m in (0..60).filter(|m| self.minutes & (1 << m) != 0) {
                    for s in (0..60).filter(|s| self.seconds & (1 << s) != 0) {
                        let wall = hour + Duration::minutes(m) + Duration::seconds(s);
                        if wall < start {
                            continue;
                        }
                        for t in self.instants(wall, tz) {
                            let earlier = match best {
                                Some((b, _)) => t < b,
                                None => true,
                            };
                            if t > after && earlier {
                                best = Some((t, wall));
                            }
                        }
                        if best.is_some_and(|(_, w)| wall > w) {
                            break 'minutes;
                        }
                    }
                }
            }
            hour += Duration::hours(1);
        }
        best.map(|(t, _)| t)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn ticks(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
        let s = Schedule::parse(expr).unwrap();
        let tz: Tz = tz.parse().unwrap();
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = s.next_after(t, tz).unwrap();
            out.push(t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        out
    }

    #[test]
    fn fields_and_macros() {
        assert_eq!(
            ticks("*/20 * * * * *", "UTC", "2026-01-01T00:00:00Z", 3),
            [
                "2026-01-01T00:00:20Z",
                "2026-01-01T00:00:40Z",
                "2026-01-01T00:01:00Z"
            ]
        );
        assert_eq!(
            ticks("0 9 * * MON-FRI", "UTC", "2026-11-20T10:00:00Z", 2), // a Friday
            ["2026-11-23T09:00:00Z", "2026-11-24T09:00:00Z"]
        );
        assert_eq!(
            ticks("@monthly", "UTC", "2026-01-15T00:00:00Z", 2),
            ["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"]
        );
        assert_eq!(
            ticks("0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", 1),
            ["2028-02-29T00:00:00Z"]
        );
        // Both day fields restricted: either matches (the 1st, or any Sunday).
        assert_eq!(
            ticks("0 12 1 * 7", "UTC", "2026-11-27T00:00:00Z", 3),
            [
                "2026-11-29T12:00:00Z",
                "2026-12-01T12:00:00Z",
                "2026-12-06T12:00:00Z"
            ]
        );
        assert_eq!(
            ticks("0 0 1 jan,jul ?", "UTC", "2026-02-01T00:00:00Z", 2),
            ["2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"]
        );
    }

    #[test]
    fn bad_expressions_name_the_field() {
        let e = |s: &str| Schedule::parse(s).unwrap_err().to_string();
        assert_eq!(e("0 25 * * *"), "hour field: 25 is out of range 0-23");
        assert_eq!(e("61 * * * * *"), "second field: 61 is out of range 0-59");
        assert_eq!(
            e("* * * FOO *"),
            "month field: \"FOO\" is not a number or a name (JAN, FEB, MAR, APR, MAY, JUN, JUL, AUG, SEP, OCT, NOV, DEC)"
        );
        assert_eq!(
            e("*/0 * * * *"),
            "minute field: step \"0\" is not a positive number"
        );
        assert_eq!(
            e("0 0 5-1 * *"),
            "day of month field: range \"5-1\" runs backwards"
        );
        assert!(e("* * *").contains("has 3 fields; want 5"));
        assert!(e("@sometimes").contains("unknown macro"));
        assert!(e("0 0 30 2 *").contains("names no day that exists"));
        assert_eq!(e("0 0 * * 8"), "day of week field: 8 is out of range 0-7");
    }

    #[test]
    fn berlin_daily_0230_across_both_dst_changes() {
        // 2026-03-29: 02:00 CET -> 03:00 CEST, so 02:30 does not exist: it fires at 03:00.
        assert_eq!(
            ticks("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z"
            ]
        );
        // 2026-10-25: 03:00 CEST -> 02:00 CET, so 02:30 happens twice: it fires once, first.
        assert_eq!(
            ticks("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 3),
            [
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
                "2026-10-27T01:30:00Z"
            ]
        );
    }

    #[test]
    fn new_york_across_both_dst_changes() {
        // 2026-03-08: 02:00 EST -> 03:00 EDT. Every 15 minutes: the gap's four ticks and 03:00
        // fire once, at 03:00 EDT.
        assert_eq!(
            ticks(
                "*/15 * * * *",
                "America/New_York",
                "2026-03-08T06:30:00Z",
                4
            ),
            [
                "2026-03-08T06:45:00Z", // 01:45 EST
                "2026-03-08T07:00:00Z", // 03:00 EDT
                "2026-03-08T07:15:00Z",
                "2026-03-08T07:30:00Z"
            ]
        );
        // 2026-11-01: 02:00 EDT -> 01:00 EST. Daily 01:30 fires once (EDT); hourly at :30
        // fires in both real 01:xx hours.
        assert_eq!(
            ticks("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
        assert_eq!(
            ticks("30 * * * *", "America/New_York", "2026-11-01T04:00:00Z", 3),
            [
                "2026-11-01T04:30:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:30:00Z"
            ]
        );
    }

    #[test]
    fn every_second_is_cheap_and_exact() {
        let s = Schedule::parse("* * * * * *").unwrap();
        let mut t = utc("2026-01-01T00:00:00Z");
        for i in 1..=100 {
            t = s.next_after(t, Tz::UTC).unwrap();
            assert_eq!(t, utc("2026-01-01T00:00:00Z") + Duration::seconds(i));
        }
    }
}
