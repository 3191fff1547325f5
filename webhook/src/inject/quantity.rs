//! Kubernetes resource quantities (`100m`, `0.5`, `128Mi`, `1e3`): syntax
//! check and an approximate numeric value, enough to compare a request with
//! a limit and to count CPUs.

/// How a valid quantity looks, for error messages.
pub(crate) const ACCEPTED_FORM: &str = "a non-negative Kubernetes quantity such as 100m, 0.5, 2, 128Mi or 1Gi \
     (a number with an optional suffix n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent e3)";

/// Parses a quantity with the API server's grammar; `None` when it is not
/// one (or is negative, which no resource accepts).
pub(crate) fn parse(text: &str) -> Option<f64> {
    let (number, suffix) = split_number(text)?;
    let value: f64 = number.parse().ok()?;
    let scale = suffix_scale(suffix)?;
    let scaled = value * scale;
    (scaled.is_finite() && scaled >= 0.0).then_some(scaled)
}

/// Splits `[+-]digits[.digits]` from the suffix; `None` when there is no
/// digit at all.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let mut end = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        end = 1;
    }
    let mut digits = 0;
    let mut dot = false;
    while let Some(&b) = bytes.get(end) {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' if !dot => dot = true,
            _ => break,
        }
        end += 1;
    }
    (digits > 0).then(|| text.split_at(end))
}

fn suffix_scale(suffix: &str) -> Option<f64> {
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return exponent_scale(suffix),
    };
    Some(scale)
}

/// `e3`, `E-2`: a decimal exponent (a lone `E` is exa, handled above).
fn exponent_scale(suffix: &str) -> Option<f64> {
    let rest = suffix.strip_prefix(['e', 'E'])?;
    let unsigned = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let exponent: i32 = rest.parse().ok()?;
    Some(10f64.powi(exponent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_api_servers_forms() {
        let cases = [
            ("100m", 0.1),
            ("0.5", 0.5),
            ("2", 2.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("+1", 1.0),
            ("128Mi", 128.0 * 1024.0 * 1024.0),
            ("1Gi", 1024.0 * 1024.0 * 1024.0),
            ("1k", 1000.0),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("15E-1", 1.5),
            ("1E", 1e18),
            ("0", 0.0),
            ("250u", 250e-6),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_or_else(|| panic!("{text} should parse"));
            assert!(
                (got - want).abs() <= want * 1e-12,
                "{text}: {got} != {want}"
            );
        }
    }

    #[test]
    fn rejects_everything_else() {
        for text in [
            "", "m", "abc", "100 m", " 1", "1 ", "1mi", "1MB", "1.2.3", "1e", "1e+", "1ee3",
            "0x10", "-1", "-100m", "1Kib", "Mi", ".", "1,5", "1e3.5", "NaN", "inf",
        ] {
            assert_eq!(parse(text), None, "{text:?} should be refused");
        }
    }
}
