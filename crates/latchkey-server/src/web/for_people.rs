//! Times and durations in words: as people read them on pages and in mails ("24 hours",
//! "6 December 2026, 04:31 UTC"), and the one text form of a time in the JSON API and the
//! CLI (RFC 3339).

use latchkey::Timestamp;
use std::time::{Duration, UNIX_EPOCH};

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z): later times, such as a
/// token made to live 10,000 years, are shown as it.
const LAST_WRITABLE_SECOND: u64 = 253_402_300_799;

/// A timestamp as RFC 3339 UTC, to the second (the JSON API's and the CLI's form); times
/// before 1970 read as 1970, times after 9999 as its last second.
pub fn rfc3339(time: Timestamp) -> String {
    let seconds = u64::try_from(time.as_millis() / 1000)
        .unwrap_or(0)
        .min(LAST_WRITABLE_SECOND);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

/// `duration` in the largest units that say it, at most two and consecutive: "15
/// minutes", "1 hour 30 minutes", "24 hours" (days from two days up: "3 days"), "45
/// seconds".
pub fn duration(duration: Duration) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let mut left = duration.as_secs();
    if left == 0 {
        return "0 seconds".to_string();
    }
    let mut words = Vec::new();
    for (size, name) in UNITS {
        if name == "day" && left < 2 * size {
            continue;
        }
        if left >= size && words.len() < 2 {
            let count = left / size;
            left -= count * size;
            words.push(format!(
                "{count} {name}{}",
                if count == 1 { "" } else { "s" }
            ));
        } else if !words.is_empty() {
            // Units are consecutive: "1 day 30 minutes" would read as a typo.
            break;
        }
    }
    words.join(" ")
}

/// An RFC 3339 time (as [`rfc3339`] writes it) as people read it: "6 December 2026,
/// 04:31 UTC". Anything else comes back as it was.
pub fn date_time(rfc3339: &str) -> String {
    const MONTHS: [&str; 12] = [
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
    let parsed = rfc3339.strip_suffix('Z').and_then(|stamp| {
        let (date, time) = stamp.split_once('T')?;
        let mut date = date.splitn(3, '-');
        let (year, month, day) = (date.next()?, date.next()?, date.next()?);
        let month = MONTHS.get(month.parse::<usize>().ok()?.checked_sub(1)?)?;
        let day = day.parse::<u32>().ok()?;
        let hours_minutes = time.get(..5)?;
        Some(format!("{day} {month} {year}, {hours_minutes} UTC"))
    });
    parsed.unwrap_or_else(|| rfc3339.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_past_the_year_9999_are_written_as_its_last_second() {
        assert_eq!(
            rfc3339(Timestamp(i64::MAX)),
            "9999-12-31T23:59:59Z",
            "a token that never really expires"
        );
        assert_eq!(rfc3339(Timestamp(-5)), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        let cases = [
            (0, "0 seconds"),
            (45, "45 seconds"),
            (60, "1 minute"),
            (15 * 60, "15 minutes"),
            (90 * 60, "1 hour 30 minutes"),
            (24 * 3600, "24 hours"),
            (24 * 3600 + 1_800, "24 hours 30 minutes"),
            (72 * 3600, "3 days"),
            (3_600 + 1, "1 hour"),
        ];
        for (seconds, words) in cases {
            assert_eq!(duration(Duration::from_secs(seconds)), words, "{seconds} s");
        }
    }

    #[test]
    fn times_read_as_people_say_them() {
        let stamp = rfc3339(Timestamp(1_796_531_460_000));
        assert_eq!(stamp, "2026-12-06T04:31:00Z");
        assert_eq!(date_time(&stamp), "6 December 2026, 04:31 UTC");
        assert_eq!(date_time("not a time"), "not a time");
        assert_eq!(date_time("2026-13-06T04:31:00Z"), "2026-13-06T04:31:00Z");
    }
}
