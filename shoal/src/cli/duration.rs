//! Go's duration syntax (`5s`, `1m30s`, `2160h0m0s`, `1.5h`), which docker's flags use, and the
//! human wording `docker info` prints (`go-units`' `HumanDuration`).

const NS: i64 = 1;
const US: i64 = 1_000;
const MS: i64 = 1_000_000;
const S: i64 = 1_000_000_000;
const M: i64 = 60 * S;
const H: i64 = 60 * M;

/// Parses a Go duration into nanoseconds, with Go's error messages.
pub fn parse_go_duration(input: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {input:?}");
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "" => return Err(format!("time: missing unit in duration {input:?}")),
            "ns" => NS,
            "us" | "µs" | "μs" => US,
            "ms" => MS,
            "s" => S,
            "m" => M,
            "h" => H,
            other => return Err(format!("time: unknown unit {other:?} in duration {input:?}")),
        };
        let value: f64 = number.parse().map_err(|_| invalid())?;
        total += value * scale as f64;
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let total = total.round() as i64;
    Ok(if negative { -total } else { total })
}

/// `go-units.HumanDuration`: "5 seconds", "About an hour", "3 months".
pub fn human_duration(nanos: i64) -> String {
    let seconds = nanos / S;
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = nanos / M;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (nanos + H / 2) / H;
    match hours {
        1 => "About an hour".into(),
        h if h < 48 => format!("{h} hours"),
        h if h < 24 * 7 * 2 => format!("{} days", h / 24),
        h if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        h if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", nanos / H / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        for (input, want) in [
            ("5s", 5 * S),
            ("0", 0),
            ("1m30s", 90 * S),
            ("2160h0m0s", 2160 * H),
            ("1.5h", 90 * M),
            ("500ms", 500 * MS),
            ("10us", 10 * US),
            ("10µs", 10 * US),
            ("7ns", 7),
            ("-2s", -2 * S),
            (".5s", S / 2),
        ] {
            assert_eq!(parse_go_duration(input), Ok(want), "{input}");
        }
        assert_eq!(parse_go_duration("5"), Err(r#"time: missing unit in duration "5""#.into()));
        assert_eq!(parse_go_duration("5d"), Err(r#"time: unknown unit "d" in duration "5d""#.into()));
        assert_eq!(parse_go_duration(""), Err(r#"time: invalid duration """#.into()));
        assert_eq!(parse_go_duration("s"), Err(r#"time: invalid duration "s""#.into()));
    }

    #[test]
    fn human_wording_matches_go_units() {
        assert_eq!(human_duration(S / 2), "Less than a second");
        assert_eq!(human_duration(5 * S), "5 seconds");
        assert_eq!(human_duration(60 * S), "About a minute");
        assert_eq!(human_duration(45 * M), "45 minutes");
        assert_eq!(human_duration(H), "About an hour");
        assert_eq!(human_duration(30 * H), "30 hours");
        assert_eq!(human_duration(2160 * H), "3 months");
        assert_eq!(human_duration(24 * 800 * H), "2 years");
    }
}
