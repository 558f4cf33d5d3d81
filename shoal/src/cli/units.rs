//! The value syntaxes docker's service flags accept, parsed with Go's error messages so
//! `invalid argument "…" for "--flag" flag: …` reads as docker's does: unsigned and signed
//! integers (`strconv`), memory sizes (`go-units.RAMInBytes`), CPU counts (`opts.ParseCPUs`),
//! shell words (`shlex`), and `time.Duration`'s printed form.

/// `strconv.ParseUint(s, 0, 64)`: decimal, or `0x`/`0o`/`0b`/leading-zero octal.
pub fn parse_uint(s: &str) -> Result<u64, String> {
    let syntax = || format!("strconv.ParseUint: parsing {s:?}: invalid syntax");
    let (digits, radix) = split_radix(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(syntax());
    }
    u64::from_str_radix(digits, radix).map_err(|_| format!("strconv.ParseUint: parsing {s:?}: value out of range"))
}

/// `strconv.ParseInt(s, 0, 64)`, as pflag's `int` and `int64` flags read values.
pub fn parse_int(s: &str) -> Result<i64, String> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (digits, radix) = split_radix(body);
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!("strconv.ParseInt: parsing {s:?}: invalid syntax"));
    }
    let magnitude = i128::from_str_radix(digits, radix).unwrap_or(i128::MAX);
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).map_err(|_| format!("strconv.ParseInt: parsing {s:?}: value out of range"))
}

/// `strconv.ParseFloat(s, 32)`, as docker's `--update-max-failure-ratio` reads it.
pub fn parse_float(s: &str) -> Result<f64, String> {
    s.parse::<f32>().map(f64::from).map_err(|_| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))
}

fn split_radix(s: &str) -> (&str, u32) {
    let lower = s.get(..2).map(str::to_ascii_lowercase);
    match lower.as_deref() {
        Some("0x") => (&s[2..], 16),
        Some("0o") => (&s[2..], 8),
        Some("0b") => (&s[2..], 2),
        _ if s.len() > 1 && s.starts_with('0') => (&s[1..], 8),
        _ => (s, 10),
    }
}

/// `go-units.RAMInBytes`: `512M`, `1g`, `1.5GiB`, `100kb`, `64` (bytes); binary multiples.
pub fn ram_in_bytes(s: &str) -> Result<i64, String> {
    let invalid = || format!("invalid size: '{s}'");
    let number_len = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, rest) = s.split_at(number_len);
    if number.is_empty() || !number.starts_with(|c: char| c.is_ascii_digit()) || number.ends_with('.') {
        return Err(invalid());
    }
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let mut unit = rest.strip_prefix(' ').unwrap_or(rest).chars().peekable();
    let multiplier: f64 = match unit.peek().map(|c| c.to_ascii_lowercase()) {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            unit.next();
            let power = "kmgtp".find(c).map(|i| i as i32 + 1).unwrap_or(0);
            1024f64.powi(power)
        }
        _ => 1.0,
    };
    if unit.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'i')) {
        unit.next();
    }
    if unit.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'b')) {
        unit.next();
    }
    if unit.next().is_some() {
        return Err(invalid());
    }
    Ok((value * multiplier) as i64)
}

/// docker's `opts.ParseCPUs`: a rational number of CPUs (`0.5`, `2`, `3/2`, `1e-3`) as
/// nano-CPUs, refusing values finer than a nano-CPU.
pub fn parse_cpus(s: &str) -> Result<i64, String> {
    let invalid = || format!("failed to parse {s} as a rational number");
    let too_precise = || "value is too precise".to_string();
    const NANO: i128 = 1_000_000_000;
    if let Some((num, den)) = s.split_once('/') {
        let num: i128 = num.parse().map_err(|_| invalid())?;
        let den: i128 = den.parse().map_err(|_| invalid())?;
        if den == 0 {
            return Err(invalid());
        }
        if (num * NANO) % den != 0 {
            return Err(too_precise());
        }
        return i64::try_from(num * NANO / den).map_err(|_| invalid());
    }
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().map_err(|_| invalid())?),
        None => (s, 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int_part}{frac_part}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 30 {
        return Err(invalid());
    }
    let mut value: i128 = digits.parse().map_err(|_| invalid())?;
    // value × 10^(9 + exponent − fractional digits) must be a whole number.
    let shift = 9 + exponent - frac_part.len() as i32;
    if shift >= 0 {
        for _ in 0..shift {
            value = value.checked_mul(10).ok_or_else(invalid)?;
        }
    } else {
        for _ in 0..-shift {
            if value % 10 != 0 {
                return Err(too_precise());
            }
            value /= 10;
        }
    }
    let value = if negative { -value } else { value };
    i64::try_from(value).map_err(|_| invalid())
}

/// Go's `time.Duration.String()`: `0s`, `500ms`, `1.5s`, `1m30s`, `1h0m0s`.
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    const SECOND: u64 = 1_000_000_000;
    let body = if u < SECOND {
        let (unit, scale) = match u {
            0..1_000 => ("ns", 1),
            1_000..1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        format!("{}{unit}", decimal(u, scale))
    } else {
        let (hours, minutes, rest) = (u / (3600 * SECOND), (u / (60 * SECOND)) % 60, u % (60 * SECOND));
        let mut out = String::new();
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        if hours > 0 || minutes > 0 {
            out.push_str(&format!("{minutes}m"));
        }
        out.push_str(&format!("{}s", decimal(rest, SECOND)));
        out
    };
    format!("{sign}{body}")
}

/// `value / scale` with the fraction's trailing zeros dropped.
fn decimal(value: u64, scale: u64) -> String {
    let (whole, frac) = (value / scale, value % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let width = scale.to_string().len() - 1;
    format!("{whole}.{frac:0width$}").trim_end_matches('0').to_string()
}

/// Splits a command line into words like `github.com/google/shlex`: blanks separate words,
/// single quotes are literal, double quotes and backslashes escape.
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("EOF found when expecting closing quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("EOF found when expecting closing quote".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("EOF found when expecting closing quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("EOF found after escape character".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_read_like_go() {
        assert_eq!(parse_uint("3"), Ok(3));
        assert_eq!(parse_uint("0x10"), Ok(16));
        assert_eq!(parse_uint("010"), Ok(8));
        assert_eq!(parse_uint("-1"), Err(r#"strconv.ParseUint: parsing "-1": invalid syntax"#.into()));
        assert_eq!(parse_uint(""), Err(r#"strconv.ParseUint: parsing "": invalid syntax"#.into()));
        assert!(parse_uint("99999999999999999999").unwrap_err().ends_with("value out of range"));
        assert_eq!(parse_int("-5"), Ok(-5));
        assert_eq!(parse_int("x"), Err(r#"strconv.ParseInt: parsing "x": invalid syntax"#.into()));
        assert_eq!(parse_float("0.25"), Ok(0.25));
        assert_eq!(parse_float("half"), Err(r#"strconv.ParseFloat: parsing "half": invalid syntax"#.into()));
    }

    #[test]
    fn memory_sizes_are_binary() {
        for (input, want) in [
            ("512M", 512 << 20),
            ("1G", 1 << 30),
            ("1g", 1 << 30),
            ("1.5GiB", 3 << 29),
            ("100kb", 100 << 10),
            ("64", 64),
            ("64b", 64),
            ("2 GB", 2 << 30),
        ] {
            assert_eq!(ram_in_bytes(input), Ok(want), "{input}");
        }
        for bad in ["", "G", "-1", "12X", "1.", "1GBx"] {
            assert_eq!(ram_in_bytes(bad), Err(format!("invalid size: '{bad}'")), "{bad}");
        }
    }

    #[test]
    fn cpus_are_exact_rationals() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus("3/2"), Ok(1_500_000_000));
        assert_eq!(parse_cpus("1e-3"), Ok(1_000_000));
        assert_eq!(parse_cpus("0.0000000001"), Err("value is too precise".into()));
        assert_eq!(parse_cpus("lots"), Err("failed to parse lots as a rational number".into()));
    }

    #[test]
    fn durations_print_like_go() {
        for (nanos, want) in [
            (0, "0s"),
            (4, "4ns"),
            (1_500, "1.5µs"),
            (500_000_000, "500ms"),
            (1_500_000_000, "1.5s"),
            (5_000_000_000, "5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-2_000_000_000, "-2s"),
        ] {
            assert_eq!(go_duration(nanos), want, "{nanos}");
        }
    }

    #[test]
    fn shell_words_split_like_shlex() {
        assert_eq!(shell_words("a b  c").unwrap(), ["a", "b", "c"]);
        assert_eq!(shell_words(r#"sh -c "echo 'hi there'""#).unwrap(), ["sh", "-c", "echo 'hi there'"]);
        assert_eq!(shell_words(r"a\ b ''").unwrap(), ["a b", ""]);
        assert!(shell_words("'open").is_err());
    }
}
