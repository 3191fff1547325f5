//! Istio's duration strings (Go's `time.ParseDuration` syntax as the API
//! documents it: `1s`, `1.5s`, `100ms`, `1h2m`) to Envoy durations.

use envoy_types::pb::google::protobuf::Duration;

/// Parses `text`; the error says what was wrong, the caller adds where.
pub fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration (expected e.g. `1s`, `100ms`, `1h2m`)".into());
    }
    if trimmed == "0" {
        return Ok(Duration::default());
    }
    let mut total_nanos: f64 = 0.0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{text}` has a number without a unit (ns, us, ms, s, m, h)"))?;
        if number_len == 0 {
            return Err(format!(
                "`{text}` is not a duration (expected e.g. `1s`, `100ms`)"
            ));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("`{text}`: `{}` is not a number", &rest[..number_len]))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            unit => {
                return Err(format!(
                    "`{text}`: unknown unit `{unit}` (expected ns, us, ms, s, m or h)"
                ));
            }
        };
        total_nanos += number * scale;
        rest = &rest[unit_len..];
    }
    let whole = (total_nanos / 1e9).floor();
    Ok(Duration {
        seconds: whole as i64,
        nanos: (total_nanos - whole * 1e9).round() as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(seconds: i64, nanos: i32) -> Duration {
        Duration { seconds, nanos }
    }

    #[test]
    fn parses_istio_duration_spellings() {
        assert_eq!(parse("1s").unwrap(), d(1, 0));
        assert_eq!(parse("1.5s").unwrap(), d(1, 500_000_000));
        assert_eq!(parse("100ms").unwrap(), d(0, 100_000_000));
        assert_eq!(parse("1h2m").unwrap(), d(3720, 0));
        assert_eq!(parse("0s").unwrap(), d(0, 0));
        assert_eq!(parse("7us").unwrap(), d(0, 7_000));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", "s", "10", "1x", "abc", "1.2.3s"] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
        assert!(parse("1x").unwrap_err().contains("unknown unit `x`"));
    }
}
