//! Kubernetes label values: which the API server accepts, and how a name
//! that may not be one (a long workload name) is turned into one.

/// The most characters a label value may have.
pub(crate) const MAX_LABEL_VALUE_LEN: usize = 63;

/// Whether the API server accepts `value` as a label value: empty, or at
/// most 63 letters, digits, `-`, `_` and `.`, starting and ending with a
/// letter or digit.
pub(crate) fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() <= MAX_LABEL_VALUE_LEN
        && bytes.first().is_none_or(u8::is_ascii_alphanumeric)
        && bytes.last().is_none_or(u8::is_ascii_alphanumeric)
        && bytes.iter().copied().all(is_label_value_byte)
}

fn is_label_value_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// `name` as a label value. Like Istio, a name is cut to 63 characters and
/// whatever is not a letter or digit is then trimmed from its end, so that a
/// long DaemonSet or pod name never yields a label the API server refuses.
/// Object names are DNS names and need nothing more; a hand-made manifest
/// (`meshctl kube-inject`) might carry other characters, which become `-`,
/// and its leading punctuation is trimmed too, so the result is always
/// valid (possibly empty).
pub(crate) fn to_label_value(name: &str) -> String {
    if is_label_value(name) {
        return name.to_owned();
    }
    let cut: String = name
        .chars()
        .map(|c| match u8::try_from(c) {
            Ok(b) if is_label_value_byte(b) => c,
            _ => '-',
        })
        .take(MAX_LABEL_VALUE_LEN)
        .collect();
    cut.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_the_api_server_accepts() {
        let longest = "a".repeat(63);
        for value in ["", "a", "v1.2_rc-3", "A-z", longest.as_str()] {
            assert!(is_label_value(value), "{value:?}");
        }
        let too_long = "a".repeat(64);
        for value in ["-a", "a-", "a.", "_a", "a/b", "a b", "ä", too_long.as_str()] {
            assert!(!is_label_value(value), "{value:?}");
        }
    }

    #[test]
    fn valid_values_are_kept() {
        for value in ["", "reviews", "v1.2_rc-3", &"x".repeat(63)] {
            assert_eq!(to_label_value(value), value);
        }
    }

    #[test]
    fn long_names_are_cut_and_trimmed_at_the_end() {
        let name = format!("{}-{}", "a".repeat(40), "b".repeat(27));
        assert_eq!(name.len(), 68);
        assert_eq!(to_label_value(&name), name[..63]);
        for tail in ["-", ".", "_", "-.", "._-"] {
            let name = format!("{}{tail}suffix", "c".repeat(62 - tail.len() + 1));
            assert_eq!(
                to_label_value(&name),
                "c".repeat(62 - tail.len() + 1),
                "{name}"
            );
        }
    }

    #[test]
    fn anything_becomes_a_valid_value() {
        let long_dots = ".".repeat(80);
        for name in [
            "-lead",
            "a/b:c",
            "ünïcode-name",
            "💥",
            " spaced out ",
            long_dots.as_str(),
            "a-",
        ] {
            let value = to_label_value(name);
            assert!(is_label_value(&value), "{name:?} -> {value:?}");
        }
        assert_eq!(to_label_value("a/b:c"), "a-b-c");
        assert_eq!(to_label_value("-lead-"), "lead");
    }
}
