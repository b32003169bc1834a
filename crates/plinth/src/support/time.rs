//! Time as plinth writes and reads it, without a time library: RFC 3339
//! UTC for OCI configs and SBOMs, RFC 2822 for Debian's Release `Date`
//! and `Valid-Until`. Unix time has no leap seconds, so plain day
//! arithmetic is exact, and nothing depends on a time zone database.

/// The last second whose year still has four digits; RFC 3339 (and Go's
/// parser, which skopeo and container engines use) allows no more.
pub const MAX_RFC3339_EPOCH: u64 = 253_402_300_799;

/// An epoch that RFC 3339 cannot express.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("epoch {0} is after 9999-12-31T23:59:59Z, which RFC 3339 cannot express")]
pub struct EpochOutOfRange(pub u64);

/// `epoch_secs` as RFC 3339 UTC (`2026-11-21T09:15:44Z`).
///
/// Written out by hand because the build must not depend on a time crate's
/// time-zone or leap-second handling; Unix time has no leap seconds, so plain
/// day arithmetic is exact.
pub fn rfc3339(epoch_secs: u64) -> Result<String, EpochOutOfRange> {
    if epoch_secs > MAX_RFC3339_EPOCH {
        return Err(EpochOutOfRange(epoch_secs));
    }
    let (year, month, day) = civil_from_days(epoch_secs / 86_400);
    let secs = epoch_secs % 86_400;
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

/// Proleptic Gregorian date of a day count since 1970-01-01.
///
/// Counting years from 1 March makes the leap day the last day of the year,
/// so month lengths within a year follow a fixed 153-days-per-5-months
/// pattern and only whole 400-year eras (146,097 days) need dividing out.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 0000-03-01 is 719,468 days before 1970-01-01.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    // The corrections undo the leap days of every 4th, 100th and 400th year
    // before dividing by 365.
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// Parses the Release date format, `Sat, 21 Nov 2026 09:15:44 UTC`.
pub fn parse_rfc2822(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.split_once(", ").map_or(s, |(_, rest)| rest);
    let mut w = s.split_whitespace();
    let day: u64 = w.next()?.parse().ok()?;
    let month = match w.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = w.next()?.parse().ok()?;
    // A Release from before Unix time or past what RFC 3339 can say is not
    // a date plinth can use; the bound also keeps the arithmetic in range.
    if !(1970..=9999).contains(&year) {
        return None;
    }
    let mut hms = w.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    match w.next() {
        None | Some("UTC" | "GMT" | "+0000" | "Z") => {}
        Some(_) => return None,
    }
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day as i64);
    u64::try_from(days)
        .ok()
        .map(|d| d * 86400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::process::Command;

    use super::*;

    /// 2026-11-21T09:15:44Z.
    const EPOCH: u64 = 1_795_252_544;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(EPOCH).unwrap(), "2026-11-21T09:15:44Z");
        assert_eq!(rfc3339(951_782_400).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_107_542_400).unwrap(), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(MAX_RFC3339_EPOCH).unwrap(), "9999-12-31T23:59:59Z");
        assert!(matches!(
            rfc3339(MAX_RFC3339_EPOCH + 1),
            Err(EpochOutOfRange(_))
        ));
        assert!(rfc3339(u64::MAX).is_err());
    }

    #[test]
    fn rfc3339_agrees_with_date() {
        // Edges of days, months, leap and century years, plus a spread of
        // pseudo-random values over the whole range.
        let mut values: Vec<u64> = vec![0, 59, 60, 86_399, 86_400, MAX_RFC3339_EPOCH];
        for day in [
            789, 790, 10_956, 11_016, 11_017, 11_322, 47_540, 47_541, 47_482, 2_932_896,
        ] {
            values.extend([day * 86_400 - 1, day * 86_400, day * 86_400 + 43_210]);
        }
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            values.push((state >> 11) % (MAX_RFC3339_EPOCH + 1));
            values.push((state >> 11) % 4_102_444_800); // before 2100
        }
        let input: String = values.iter().map(|v| format!("@{v}\n")).collect();
        let mut child = match Command::new("date")
            .args(["-u", "-f", "-", "+%Y-%m-%dT%H:%M:%SZ"])
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                assert!(std::env::var("CI").as_deref() != Ok("true"), "date: {e}");
                eprintln!("skipped: cannot run date: {e}");
                return;
            }
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        assert_eq!(lines.len(), values.len());
        for (v, want) in values.iter().zip(lines) {
            assert_eq!(rfc3339(*v).unwrap(), want, "epoch {v}");
        }
    }

    #[test]
    fn parses_release_dates() {
        assert_eq!(
            parse_rfc2822("Sat, 21 Nov 2026 09:15:44 UTC"),
            Some(1795252544)
        );
        assert_eq!(parse_rfc2822("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(parse_rfc2822("Sat, 21 Foo 2026 09:15:44 UTC"), None);
        assert_eq!(parse_rfc2822("Sat, 21 Nov 2026 09:15:44 +0100"), None);
        // Years that would overflow the day arithmetic are refused, not a panic.
        assert_eq!(
            parse_rfc2822("Sat, 21 Nov 9223372036854775807 09:15:44 UTC"),
            None
        );
        assert_eq!(parse_rfc2822("Sat, 21 Nov 10000 09:15:44 UTC"), None);
        assert_eq!(parse_rfc2822("Thu, 31 Dec 1969 23:59:59 UTC"), None);
    }
}
