//! The proxy image: Envoy publishes its variants as tag prefixes
//! (`envoyproxy/envoy:debug-v1.36.2`, `distroless-v1.36.2`), so an image
//! type turns into a prefix of the tag.

/// Image type that leaves the image unchanged.
pub(crate) const DEFAULT_TYPE: &str = "default";
/// Variants meshkeeper knows of; other types are applied the same way, as
/// ProxyConfig allows any type published to the registry.
const KNOWN_TYPES: [&str; 2] = ["debug", "distroless"];

/// Whether `image_type` can become part of a tag.
pub(crate) fn is_valid_type(image_type: &str) -> bool {
    !image_type.is_empty()
        && image_type.len() <= 64
        && image_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `image` with its tag turned into the `image_type` variant. Images pinned
/// by digest are returned unchanged: a digest names one exact build.
pub(crate) fn with_type(image: &str, image_type: &str) -> String {
    if image_type == DEFAULT_TYPE || image_type.is_empty() || image.contains('@') {
        return image.to_owned();
    }
    let (repository, tag) = split_tag(image);
    let base_tag = strip_known_prefix(tag.unwrap_or("latest"));
    format!("{repository}:{image_type}-{base_tag}")
}

/// Splits `registry:5000/repo:tag` into repository and tag; the colon of a
/// registry port is not a tag separator.
fn split_tag(image: &str) -> (&str, Option<&str>) {
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => {
            let at = name_start + i;
            (&image[..at], Some(&image[at + 1..]))
        }
        None => (image, None),
    }
}

/// A tag that already names a variant (`distroless-v1.36.2`) gives its base.
fn strip_known_prefix(tag: &str) -> &str {
    KNOWN_TYPES
        .iter()
        .find_map(|t| tag.strip_prefix(t)?.strip_prefix('-'))
        .unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_become_tag_prefixes() {
        assert_eq!(
            with_type("envoyproxy/envoy:v1.36.2", "debug"),
            "envoyproxy/envoy:debug-v1.36.2"
        );
        assert_eq!(
            with_type("envoyproxy/envoy:v1.36.2", "distroless"),
            "envoyproxy/envoy:distroless-v1.36.2"
        );
        assert_eq!(
            with_type("envoyproxy/envoy:v1.36.2", "default"),
            "envoyproxy/envoy:v1.36.2"
        );
    }

    #[test]
    fn variant_tags_switch_instead_of_stacking() {
        assert_eq!(
            with_type("envoyproxy/envoy:distroless-v1.36.2", "debug"),
            "envoyproxy/envoy:debug-v1.36.2"
        );
    }

    #[test]
    fn registry_ports_digests_and_missing_tags() {
        assert_eq!(
            with_type("registry.local:5000/envoy:v1.36.2", "debug"),
            "registry.local:5000/envoy:debug-v1.36.2"
        );
        assert_eq!(
            with_type("registry.local:5000/envoy", "debug"),
            "registry.local:5000/envoy:debug-latest"
        );
        let pinned = "envoyproxy/envoy@sha256:0123456789abcdef";
        assert_eq!(with_type(pinned, "debug"), pinned);
    }

    #[test]
    fn type_syntax() {
        assert!(is_valid_type("debug"));
        assert!(is_valid_type("custom_build.1"));
        assert!(!is_valid_type(""));
        assert!(!is_valid_type("de bug"));
        assert!(!is_valid_type("a:b"));
    }
}
