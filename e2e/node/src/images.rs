//! Which local program stands in for which container image.
//!
//! There is no container engine: an image is a folder of programs (its
//! `PATH`) and an entrypoint. The table comes from a JSON file the cluster
//! script writes (the PyPI Envoy for the Envoy image, the workspace's
//! binaries for meshkeeper's images, the echo app for test apps).

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageTable {
    pub images: Vec<ImageRule>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageRule {
    /// Repository without registry defaults or tag: `envoyproxy/envoy`,
    /// `ghcr.io/meshkeeper/meshkeeper-init`; a trailing `*` matches a prefix.
    pub repository: String,
    /// Folders searched for a command that is not an absolute path.
    pub path: Vec<PathBuf>,
    /// The image's ENTRYPOINT, used when the container has no `command`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImageError {
    #[error(
        "image {image:?} has no local program on this test node (known repositories: {known}); \
         add it to the node's image table"
    )]
    Unknown { image: String, known: String },
    #[error(
        "image {image:?} has no entrypoint on this test node and the container sets no `command`"
    )]
    NoEntrypoint { image: String },
    #[error("command {command:?} of image {image:?} is not an executable in {path}")]
    NotFound {
        image: String,
        command: String,
        path: String,
    },
}

/// `docker.io/library/busybox:1.36@sha256:…` → `busybox`.
pub fn repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    // A tag is a `:` after the last `/` (a `:` before it is a registry port).
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let name = match without_digest[last_slash..].rfind(':') {
        Some(i) => &without_digest[..last_slash + i],
        None => without_digest,
    };
    let name = name.strip_prefix("docker.io/").unwrap_or(name);
    name.strip_prefix("library/").unwrap_or(name)
}

impl ImageTable {
    pub fn rule(&self, image: &str) -> Result<&ImageRule, ImageError> {
        let repo = repository(image);
        self.images
            .iter()
            .find(|r| match r.repository.strip_suffix('*') {
                Some(prefix) => repo.starts_with(prefix),
                None => repo == r.repository,
            })
            .ok_or_else(|| ImageError::Unknown {
                image: image.to_owned(),
                known: self
                    .images
                    .iter()
                    .map(|r| r.repository.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The argv a container runs, as a container runtime builds it: the
    /// container's `command` replaces the entrypoint (and drops the
    /// image's default arguments, which these images do not have), `args`
    /// follow; the program is looked up in the image's folders.
    pub fn argv(
        &self,
        image: &str,
        command: &[String],
        args: &[String],
        is_executable: impl Fn(&Path) -> bool,
    ) -> Result<Vec<String>, ImageError> {
        let rule = self.rule(image)?;
        let head = if command.is_empty() {
            &rule.entrypoint
        } else {
            command
        };
        let Some((program, rest)) = head.split_first() else {
            return Err(ImageError::NoEntrypoint {
                image: image.to_owned(),
            });
        };
        let resolved = if program.starts_with('/') {
            Some(PathBuf::from(program))
        } else {
            rule.path
                .iter()
                .map(|dir| dir.join(program))
                .find(|p| is_executable(p))
        };
        let Some(resolved) = resolved.filter(|p| is_executable(p)) else {
            return Err(ImageError::NotFound {
                image: image.to_owned(),
                command: program.clone(),
                path: rule
                    .path
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            });
        };
        let mut argv = vec![resolved.display().to_string()];
        argv.extend(rest.iter().cloned());
        argv.extend(args.iter().cloned());
        Ok(argv)
    }

    /// `PATH` inside a container of this image.
    pub fn path_env(&self, image: &str) -> String {
        let mut dirs: Vec<String> = self
            .rule(image)
            .map(|r| r.path.iter().map(|p| p.display().to_string()).collect())
            .unwrap_or_default();
        // Docker's default PATH, which images' tools (iptables in /usr/sbin) expect.
        dirs.extend(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(String::from),
        );
        dirs.join(":")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ImageTable {
        ImageTable {
            images: vec![
                ImageRule {
                    repository: "envoyproxy/envoy".into(),
                    path: vec!["/opt/envoy".into()],
                    entrypoint: vec!["envoy".into()],
                },
                ImageRule {
                    repository: "istio/examples-bookinfo-*".into(),
                    path: vec!["/opt/echo".into()],
                    entrypoint: vec!["echo".into(), "--serve".into()],
                },
            ],
        }
    }

    #[test]
    fn repository_drops_registry_defaults_tags_and_digests() {
        assert_eq!(
            repository("docker.io/envoyproxy/envoy:v1.36.2"),
            "envoyproxy/envoy"
        );
        assert_eq!(repository("busybox"), "busybox");
        assert_eq!(repository("docker.io/library/busybox:1.36"), "busybox");
        assert_eq!(
            repository("localhost:5000/app@sha256:abcd"),
            "localhost:5000/app"
        );
        assert_eq!(repository("localhost:5000/app:v1"), "localhost:5000/app");
    }

    #[test]
    fn command_replaces_the_entrypoint_and_is_found_in_the_image_path() {
        let argv = table()
            .argv(
                "docker.io/envoyproxy/envoy:v1.36.2",
                &["envoy".into()],
                &["-c".into(), "x".into()],
                |p| p == Path::new("/opt/envoy/envoy"),
            )
            .unwrap();
        assert_eq!(argv, ["/opt/envoy/envoy", "-c", "x"]);
    }

    #[test]
    fn entrypoint_is_used_without_command_and_prefixes_match() {
        let argv = table()
            .argv(
                "docker.io/istio/examples-bookinfo-reviews-v2:1.20.2",
                &[],
                &["--port".into(), "9080".into()],
                |p| p == Path::new("/opt/echo/echo"),
            )
            .unwrap();
        assert_eq!(argv, ["/opt/echo/echo", "--serve", "--port", "9080"]);
    }

    #[test]
    fn unknown_image_names_the_image_and_the_known_ones() {
        let err = table().argv("nginx:1.27", &[], &[], |_| true).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"nginx:1.27\""), "{text}");
        assert!(text.contains("envoyproxy/envoy"), "{text}");
    }

    #[test]
    fn missing_program_is_an_error_naming_the_command() {
        let err = table()
            .argv("envoyproxy/envoy", &["pilot-agent".into()], &[], |_| false)
            .unwrap_err();
        assert!(
            matches!(err, ImageError::NotFound { ref command, .. } if command == "pilot-agent")
        );
    }
}
