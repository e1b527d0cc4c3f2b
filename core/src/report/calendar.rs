//! UTC calendar arithmetic for reports: ISO weeks (`2026-W48`) and days
//! (`2026-11-24`) as half-open ranges of epoch milliseconds. No clock is
//! read: the caller passes every time in.
use alloc::format;
use alloc::string::String;

use crate::time::Timestamp;

pub const DAY_MS: i64 = 86_400_000;
pub const WEEK_MS: i64 = 7 * DAY_MS;
/// Years accepted (ISO weeks and dates).
pub const MIN_YEAR: i64 = 2000;
pub const MAX_YEAR: i64 = 2200;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(y, m, d)` of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn days_in_month(y: i64, m: i64) -> i64 {
    days_from_civil(
        if m == 12 { y + 1 } else { y },
        if m == 12 { 1 } else { m + 1 },
        1,
    ) - days_from_civil(y, m, 1)
}

fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A day `YYYY-MM-DD` as `[start, end)`.
pub fn parse_date(s: &str) -> Option<(Timestamp, Timestamp)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&s[..4])?, digits(&s[5..7])?, digits(&s[8..])?);
    if !(MIN_YEAR..=MAX_YEAR).contains(&y) || !(1..=12).contains(&m) {
        return None;
    }
    if d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let start = days_from_civil(y, m, d) * DAY_MS;
    Some((
        Timestamp::from_ms(start),
        Timestamp::from_ms(start + DAY_MS),
    ))
}

/// `YYYY-MM-DD` of the UTC day of `t`.
pub fn date_of(t: Timestamp) -> String {
    let (y, m, d) = civil_from_days(t.as_ms().div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Monday (0) to Sunday (6) of a day number.
fn weekday(days: i64) -> i64 {
    // 1970-01-01 was a Thursday.
    (days + 3).rem_euclid(7)
}

/// Day number of the Monday of ISO week 1 of `y`.
fn week1_monday(y: i64) -> i64 {
    let jan4 = days_from_civil(y, 1, 4);
    jan4 - weekday(jan4)
}

/// ISO weeks in year `y` (52 or 53).
fn weeks_in(y: i64) -> i64 {
    (week1_monday(y + 1) - week1_monday(y)) / 7
}

/// An ISO week `YYYY-Www` as `[Monday 00:00 UTC, next Monday)`.
pub fn parse_week(s: &str) -> Option<(Timestamp, Timestamp)> {
    let b = s.as_bytes();
    if b.len() != 8 || b[4] != b'-' || b[5] != b'W' {
        return None;
    }
    let (y, w) = (digits(&s[..4])?, digits(&s[6..])?);
    if !(MIN_YEAR..=MAX_YEAR).contains(&y) || w < 1 || w > weeks_in(y) {
        return None;
    }
    let start = (week1_monday(y) + (w - 1) * 7) * DAY_MS;
    Some((
        Timestamp::from_ms(start),
        Timestamp::from_ms(start + WEEK_MS),
    ))
}

/// The ISO week `YYYY-Www` that contains `t`.
pub fn week_of(t: Timestamp) -> String {
    let days = t.as_ms().div_euclid(DAY_MS);
    let (y, _, _) = civil_from_days(days);
    let year = if days >= week1_monday(y + 1) {
        y + 1
    } else if days < week1_monday(y) {
        y - 1
    } else {
        y
    };
    let w = (days - week1_monday(year)) / 7 + 1;
    format!("{year:04}-W{w:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_and_days_round_trip() {
        let (s, e) = parse_week("2026-W48").unwrap();
        assert_eq!(date_of(s), "2026-11-23");
        assert_eq!(e.as_ms() - s.as_ms(), WEEK_MS);
        assert_eq!(week_of(s), "2026-W48");
        assert_eq!(week_of(Timestamp::from_ms(e.as_ms() - 1)), "2026-W48");
        assert_eq!(week_of(e), "2026-W49");
        // 2026-01-01 is a Thursday: in 2026-W01; 2027-01-01 (Friday) in 2026-W53.
        assert_eq!(week_of(parse_date("2026-01-01").unwrap().0), "2026-W01");
        assert_eq!(week_of(parse_date("2027-01-01").unwrap().0), "2026-W53");
        assert!(parse_week("2025-W53").is_none());
        assert!(parse_week("2026-W00").is_none() && parse_week("2026-48").is_none());
        assert!(parse_date("2026-02-29").is_none() && parse_date("2028-02-29").is_some());
        assert!(parse_date("2026-13-01").is_none() && parse_date("26-11-01").is_none());
        for d in -1000..100_000 {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
