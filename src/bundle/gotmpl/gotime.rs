//! Go's `time.Time.Format` with Go's reference-time layouts
//! (`2006-01-02 15:04:05 MST`), for Sprig's `date` and for printing the
//! time `now` returns. Times are shown in the local time zone, as Go's
//! `time.Local` is chosen: `TZ`, else `/etc/localtime`, else UTC.

use jiff::Timestamp;
use jiff::tz::TimeZone;

const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// One element of a layout.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Std {
    Month,
    LongMonth,
    NumMonth,
    ZeroMonth,
    WeekDay,
    LongWeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    TZ,
    /// Numeric offsets: ISO 8601 (`Z` for UTC), colons, seconds, hours only.
    Offset {
        iso: bool,
        colon: bool,
        seconds: bool,
        short: bool,
    },
    /// Fractional seconds: separator, digits, trailing zeros trimmed (`9`).
    Frac(char, usize, bool),
}

fn lower_start(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
}

/// Go's `nextStdChunk`: text before the first element, the element, and
/// the rest.
fn next_chunk(layout: &str) -> (&str, Option<Std>, &str) {
    let b = layout.as_bytes();
    for i in 0..b.len() {
        let rest = &layout[i..];
        let at = |s: &str| rest.starts_with(s);
        let hit = |n: usize, std: Std| Some((i, std, n));
        let found = match b[i] {
            b'J' if at("Jan") => {
                if at("January") {
                    hit(7, Std::LongMonth)
                } else if !lower_start(&rest[3..]) {
                    hit(3, Std::Month)
                } else {
                    None
                }
            }
            b'M' if at("Mon") => {
                if at("Monday") {
                    hit(6, Std::LongWeekDay)
                } else if !lower_start(&rest[3..]) {
                    hit(3, Std::WeekDay)
                } else {
                    None
                }
            }
            b'M' if at("MST") => hit(3, Std::TZ),
            b'0' if b.get(i + 1).is_some_and(|c| (b'1'..=b'6').contains(c)) => {
                let std = [
                    Std::ZeroMonth,
                    Std::ZeroDay,
                    Std::ZeroHour12,
                    Std::ZeroMinute,
                    Std::ZeroSecond,
                    Std::Year,
                ][usize::from(b[i + 1] - b'1')];
                hit(2, std)
            }
            b'0' if at("002") => hit(3, Std::ZeroYearDay),
            b'1' if at("15") => hit(2, Std::Hour),
            b'1' => hit(1, Std::NumMonth),
            b'2' if at("2006") => hit(4, Std::LongYear),
            b'2' => hit(1, Std::Day),
            b'_' if at("_2006") => {
                // A literal `_` followed by the year.
                return (&layout[..i + 1], Some(Std::LongYear), &layout[i + 5..]);
            }
            b'_' if at("_2") => hit(2, Std::UnderDay),
            b'_' if at("__2") => hit(3, Std::UnderYearDay),
            b'3' => hit(1, Std::Hour12),
            b'4' => hit(1, Std::Minute),
            b'5' => hit(1, Std::Second),
            b'P' if at("PM") => hit(2, Std::PM),
            b'p' if at("pm") => hit(2, Std::Pm),
            b'-' | b'Z' => {
                let iso = b[i] == b'Z';
                let forms = [
                    ("070000", false, true, false),
                    ("07:00:00", true, true, false),
                    ("0700", false, false, false),
                    ("07:00", true, false, false),
                    ("07", false, false, true),
                ];
                forms.iter().find(|(f, ..)| rest[1..].starts_with(f)).map(
                    |(f, colon, seconds, short)| {
                        (
                            i,
                            Std::Offset {
                                iso,
                                colon: *colon,
                                seconds: *seconds,
                                short: *short,
                            },
                            f.len() + 1,
                        )
                    },
                )
            }
            c @ (b'.' | b',') if matches!(b.get(i + 1), Some(b'0' | b'9')) => {
                let ch = b[i + 1];
                let mut j = i + 1;
                while j < b.len() && b[j] == ch {
                    j += 1;
                }
                if b.get(j).is_some_and(u8::is_ascii_digit) {
                    None
                } else {
                    hit(j - i, Std::Frac(char::from(c), j - i - 1, ch == b'9'))
                }
            }
            _ => None,
        };
        if let Some((start, std, len)) = found {
            return (&layout[..start], Some(std), &layout[start + len..]);
        }
    }
    (layout, None, "")
}

fn pad(n: i64, width: usize) -> String {
    if n < 0 {
        format!("-{:0width$}", n.unsigned_abs())
    } else {
        format!("{n:0width$}")
    }
}

/// The broken-down time a layout reads.
struct Parts {
    year: i64,
    month: usize,
    day: i64,
    yday: i64,
    weekday: usize,
    hour: i64,
    minute: i64,
    second: i64,
    nanos: i64,
    offset: i32,
    abbrev: String,
}

fn parts(nanos: i128, tz: &TimeZone) -> Option<Parts> {
    let ts = Timestamp::from_nanosecond(nanos).ok()?;
    let z = ts.to_zoned(tz.clone());
    let info = tz.to_offset_info(ts);
    Some(Parts {
        year: i64::from(z.year()),
        month: usize::try_from(z.month()).ok()?,
        day: i64::from(z.day()),
        yday: i64::from(z.day_of_year()),
        weekday: usize::try_from(z.weekday().to_sunday_zero_offset()).ok()?,
        hour: i64::from(z.hour()),
        minute: i64::from(z.minute()),
        second: i64::from(z.second()),
        nanos: i64::from(z.subsec_nanosecond()),
        offset: info.offset().seconds(),
        abbrev: info.abbreviation().to_string(),
    })
}

fn offset_text(out: &mut String, offset: i32, colon: bool, seconds: bool, short: bool) {
    let mut zone = offset / 60;
    let mut abs = offset;
    if zone < 0 {
        out.push('-');
        zone = -zone;
        abs = -abs;
    } else {
        out.push('+');
    }
    out.push_str(&pad(i64::from(zone / 60), 2));
    if !short {
        if colon {
            out.push(':');
        }
        out.push_str(&pad(i64::from(zone % 60), 2));
    }
    if seconds {
        if colon {
            out.push(':');
        }
        out.push_str(&pad(i64::from(abs % 60), 2));
    }
}

/// `t.Format(layout)` for the instant `nanos` (Unix nanoseconds) in `tz`;
/// `None` beyond the years jiff represents (-9999..=9999).
pub(super) fn format_in(layout: &str, nanos: i128, tz: &TimeZone) -> Option<String> {
    let t = parts(nanos, tz)?;
    let mut out = String::new();
    let mut rest = layout;
    loop {
        let (prefix, std, next) = next_chunk(rest);
        out.push_str(prefix);
        let Some(std) = std else { break };
        rest = next;
        let month = LONG_MONTHS[t.month - 1];
        let day = LONG_DAYS[t.weekday];
        match std {
            Std::Month => out.push_str(&month[..3]),
            Std::LongMonth => out.push_str(month),
            Std::NumMonth => out.push_str(&t.month.to_string()),
            Std::ZeroMonth => out.push_str(&format!("{:02}", t.month)),
            Std::WeekDay => out.push_str(&day[..3]),
            Std::LongWeekDay => out.push_str(day),
            Std::Day => out.push_str(&t.day.to_string()),
            Std::UnderDay => out.push_str(&format!("{:>2}", t.day)),
            Std::ZeroDay => out.push_str(&pad(t.day, 2)),
            Std::UnderYearDay => out.push_str(&format!("{:>3}", t.yday)),
            Std::ZeroYearDay => out.push_str(&pad(t.yday, 3)),
            Std::Hour => out.push_str(&pad(t.hour, 2)),
            Std::Hour12 | Std::ZeroHour12 => {
                let h = match t.hour % 12 {
                    0 => 12,
                    h => h,
                };
                out.push_str(&if std == Std::Hour12 {
                    h.to_string()
                } else {
                    pad(h, 2)
                });
            }
            Std::Minute => out.push_str(&t.minute.to_string()),
            Std::ZeroMinute => out.push_str(&pad(t.minute, 2)),
            Std::Second => out.push_str(&t.second.to_string()),
            Std::ZeroSecond => out.push_str(&pad(t.second, 2)),
            Std::LongYear => out.push_str(&pad(t.year, 4)),
            Std::Year => out.push_str(&pad(t.year.rem_euclid(100), 2)),
            Std::PM => out.push_str(if t.hour >= 12 { "PM" } else { "AM" }),
            Std::Pm => out.push_str(if t.hour >= 12 { "pm" } else { "am" }),
            Std::TZ => {
                if t.abbrev.is_empty() {
                    offset_text(&mut out, t.offset, false, false, false);
                } else {
                    out.push_str(&t.abbrev);
                }
            }
            Std::Offset {
                iso,
                colon,
                seconds,
                short,
            } => {
                if iso && t.offset == 0 {
                    out.push('Z');
                } else {
                    offset_text(&mut out, t.offset, colon, seconds, short);
                }
            }
            Std::Frac(sep, n, trim) => {
                let digits = format!("{:09}", t.nanos);
                let mut digits = &digits[..n.min(9)];
                if trim {
                    digits = digits.trim_end_matches('0');
                    if digits.is_empty() {
                        continue;
                    }
                }
                out.push(sep);
                out.push_str(digits);
            }
        }
    }
    Some(out)
}

/// `format_in` in the local time zone.
pub(super) fn format(layout: &str, nanos: i128) -> Option<String> {
    format_in(layout, nanos, &TimeZone::system())
}

/// `time.Now()` as Unix nanoseconds.
pub(super) fn now() -> i128 {
    Timestamp::now().as_nanosecond()
}

/// Go's `Time.String` layout (without the monotonic clock reading Go
/// appends to `time.Now()` values).
pub(super) const STRING_LAYOUT: &str = "2006-01-02 15:04:05.999999999 -0700 MST";

/// Go's `Time.MarshalJSON` layout (RFC 3339 with nanoseconds).
pub(super) const JSON_LAYOUT: &str = "2006-01-02T15:04:05.999999999Z07:00";

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(layout: &str, secs: i64, nanos: i64, tz: &str) -> String {
        // POSIX rules, so the test needs no zoneinfo database.
        let tz = TimeZone::posix(tz).unwrap();
        format_in(
            layout,
            i128::from(secs) * 1_000_000_000 + i128::from(nanos),
            &tz,
        )
        .unwrap()
    }

    #[test]
    fn layouts_read_as_go_reads_them() {
        // Go: time.Unix(1750000000, 0).UTC().Format(...)
        assert_eq!(
            fmt(
                "2006-01-02 15:04:05.000 MST Z07:00 Mon Jan _2 __2 002 pm",
                1_750_000_000,
                0,
                "UTC0"
            ),
            "2025-06-15 15:06:40.000 UTC Z Sun Jun 15 166 166 pm"
        );
        assert_eq!(
            fmt(
                "Monday, January 2 2006 3:4:5 PM -07:00 .999 ,000000",
                1_750_000_000,
                120_000_000,
                "UTC0"
            ),
            "Sunday, June 15 2025 3:6:40 PM +00:00 .12 ,120000"
        );
        // "Janet" is not a month; "_2006" is `_` and the year; digits
        // after a fraction make it plain text.
        assert_eq!(
            fmt("Janet _2006 .0001 06", 0, 0, "UTC0"),
            "Janet _1970 .0001 70"
        );
        assert_eq!(
            fmt(STRING_LAYOUT, 1_750_000_000, 5, "EST5EDT,M3.2.0,M11.1.0"),
            "2025-06-15 11:06:40.000000005 -0400 EDT"
        );
        assert_eq!(
            fmt(JSON_LAYOUT, 1_750_000_000, 0, "IST-5:30"),
            "2025-06-15T20:36:40+05:30"
        );
        assert_eq!(
            fmt("-07 -070000 Z0700", 0, 0, "IST-5:30"),
            "+05 +053000 +0530"
        );
        assert_eq!(fmt(".999", 0, 0, "UTC0"), "");
    }
}
