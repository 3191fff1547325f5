//! Pod volumes as files: what each volume holds (pure, from the pod and the
//! ConfigMaps, Secrets and tokens it names) and writing it the way the
//! kubelet does, so a reader never sees half an update: the files live in a
//! timestamped folder, `..data` is a symlink to it that is replaced in one
//! rename, and each top-level name is a symlink through `..data`.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{KeyToPath, Pod, Volume};

use crate::env::{EnvSources, field};

/// Relative path → (content, mode).
pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// How a volume reaches the containers.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumeContent {
    /// Files written by the node (ConfigMap, Secret, projected, downward API).
    Files(Files),
    /// An empty folder shared by the pod's containers.
    EmptyDir,
    /// A folder of the host, bound as it is.
    HostPath(PathBuf),
}

/// A projected ServiceAccount token the pod asks for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenWanted {
    pub audience: Option<String>,
    pub expiration_seconds: i64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VolumeError {
    #[error("volume {volume}: {what} not found (and not optional)")]
    Missing { volume: String, what: String },
    #[error("volume {volume}: key {key:?} is not in {what}")]
    MissingKey {
        volume: String,
        key: String,
        what: String,
    },
    #[error(
        "volume {volume}: this test node supports configMap, secret, projected, downwardAPI, emptyDir and hostPath volumes"
    )]
    Unsupported { volume: String },
    #[error("volume {volume}: no token for the ServiceAccount (TokenRequest failed)")]
    NoToken { volume: String },
}

const DEFAULT_MODE: i32 = 0o644;

/// Every ServiceAccount token the pod's projected volumes ask for.
pub fn tokens_wanted(pod: &Pod) -> Vec<TokenWanted> {
    let mut out: Vec<TokenWanted> = volumes(pod)
        .filter_map(|v| v.projected.as_ref())
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.service_account_token.as_ref())
        .map(|t| TokenWanted {
            audience: t.audience.clone().filter(|a| !a.is_empty()),
            expiration_seconds: t.expiration_seconds.unwrap_or(3600),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn volumes(pod: &Pod) -> impl Iterator<Item = &Volume> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
}

/// What `volume` holds now.
pub fn content(
    pod: &Pod,
    volume: &Volume,
    src: &EnvSources<'_>,
    token: &dyn Fn(&TokenWanted) -> Option<String>,
) -> Result<VolumeContent, VolumeError> {
    let name = &volume.name;
    if volume.empty_dir.is_some() {
        return Ok(VolumeContent::EmptyDir);
    }
    if let Some(h) = &volume.host_path {
        return Ok(VolumeContent::HostPath(PathBuf::from(&h.path)));
    }
    let mut files = Files::new();
    if let Some(cm) = &volume.config_map {
        let mode = cm.default_mode.unwrap_or(DEFAULT_MODE);
        let data = (src.config_map)(&cm.name);
        add_keys(
            &mut files,
            name,
            "ConfigMap",
            &cm.name,
            data,
            cm.items.as_deref(),
            cm.optional,
            mode,
        )?;
    } else if let Some(s) = &volume.secret {
        let mode = s.default_mode.unwrap_or(DEFAULT_MODE);
        let secret_name = s.secret_name.clone().unwrap_or_default();
        let data = (src.secret)(&secret_name);
        add_keys(
            &mut files,
            name,
            "Secret",
            &secret_name,
            data,
            s.items.as_deref(),
            s.optional,
            mode,
        )?;
    } else if let Some(p) = &volume.projected {
        let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
        for source in p.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let data = (src.config_map)(&cm.name);
                add_keys(
                    &mut files,
                    name,
                    "ConfigMap",
                    &cm.name,
                    data,
                    cm.items.as_deref(),
                    cm.optional,
                    mode,
                )?;
            }
            if let Some(s) = &source.secret {
                let data = (src.secret)(&s.name);
                add_keys(
                    &mut files,
                    name,
                    "Secret",
                    &s.name,
                    data,
                    s.items.as_deref(),
                    s.optional,
                    mode,
                )?;
            }
            if let Some(d) = &source.downward_api {
                add_downward(&mut files, pod, name, d.items.iter().flatten(), mode, src)?;
            }
            if let Some(t) = &source.service_account_token {
                let wanted = TokenWanted {
                    audience: t.audience.clone().filter(|a| !a.is_empty()),
                    expiration_seconds: t.expiration_seconds.unwrap_or(3600),
                };
                let value = token(&wanted).ok_or_else(|| VolumeError::NoToken {
                    volume: name.clone(),
                })?;
                files.insert(t.path.clone(), (value.into_bytes(), mode_bits(mode)));
            }
        }
    } else if let Some(d) = &volume.downward_api {
        let mode = d.default_mode.unwrap_or(DEFAULT_MODE);
        add_downward(&mut files, pod, name, d.items.iter().flatten(), mode, src)?;
    } else {
        return Err(VolumeError::Unsupported {
            volume: name.clone(),
        });
    }
    Ok(VolumeContent::Files(files))
}

#[allow(clippy::too_many_arguments)]
fn add_keys(
    files: &mut Files,
    volume: &str,
    kind: &str,
    object: &str,
    data: Option<BTreeMap<String, String>>,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: i32,
) -> Result<(), VolumeError> {
    let what = format!("{kind} {object:?}");
    let Some(data) = data else {
        return if optional == Some(true) {
            Ok(())
        } else {
            Err(VolumeError::Missing {
                volume: volume.to_owned(),
                what,
            })
        };
    };
    match items {
        None => {
            for (k, v) in data {
                files.insert(k, (v.into_bytes(), mode_bits(mode)));
            }
        }
        Some(items) => {
            for item in items {
                let Some(v) = data.get(&item.key) else {
                    if optional == Some(true) {
                        continue;
                    }
                    return Err(VolumeError::MissingKey {
                        volume: volume.to_owned(),
                        key: item.key.clone(),
                        what,
                    });
                };
                let m = item.mode.unwrap_or(mode);
                files.insert(item.path.clone(), (v.clone().into_bytes(), mode_bits(m)));
            }
        }
    }
    Ok(())
}

fn add_downward<'a>(
    files: &mut Files,
    pod: &Pod,
    volume: &str,
    items: impl Iterator<Item = &'a k8s_openapi::api::core::v1::DownwardAPIVolumeFile>,
    mode: i32,
    src: &EnvSources<'_>,
) -> Result<(), VolumeError> {
    for item in items {
        let Some(f) = &item.field_ref else { continue };
        // Labels and annotations as files are the whole map, one `k="v"` a line.
        let value = match f.field_path.as_str() {
            "metadata.labels" => key_values(pod.metadata.labels.as_ref()),
            "metadata.annotations" => key_values(pod.metadata.annotations.as_ref()),
            path => field(pod, path, src).ok_or_else(|| VolumeError::MissingKey {
                volume: volume.to_owned(),
                key: path.to_owned(),
                what: "the downward API".into(),
            })?,
        };
        files.insert(
            item.path.clone(),
            (value.into_bytes(), mode_bits(item.mode.unwrap_or(mode))),
        );
    }
    Ok(())
}

fn key_values(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn mode_bits(mode: i32) -> u32 {
    u32::try_from(mode).unwrap_or(0o644) & 0o777
}

/// Writes `files` into `dir` atomically; returns whether anything changed.
/// With `group` (the pod's `fsGroup`) the files belong to that group, which
/// the containers' processes carry, as the kubelet arranges.
pub fn write_atomically(
    dir: &Path,
    files: &Files,
    stamp: &str,
    group: Option<u32>,
) -> io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let chgrp = |p: &Path| std::os::unix::fs::chown(p, None, group).map(|_| ());
    let data_link = dir.join("..data");
    if let Ok(current) = std::fs::read_link(&data_link)
        && read_back(&dir.join(&current), files)
    {
        return Ok(false);
    }
    let generation = format!("..{stamp}");
    let gen_dir = dir.join(&generation);
    for (rel, (bytes, mode)) in files {
        let path = gen_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::write(&path, bytes)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
        chgrp(&path)?;
    }
    std::fs::create_dir_all(&gen_dir)?;
    std::fs::set_permissions(&gen_dir, std::fs::Permissions::from_mode(0o755))?;
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&generation, &tmp_link)?;
    let old = std::fs::read_link(&data_link).ok();
    std::fs::rename(&tmp_link, &data_link)?;

    let top: std::collections::BTreeSet<&str> = files
        .keys()
        .filter_map(|rel| rel.split('/').next())
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(name.as_str()) {
            std::fs::remove_file(entry.path())?;
        }
    }
    if let Some(old) = old
        && old != Path::new(&generation)
    {
        std::fs::remove_dir_all(dir.join(old))?;
    }
    Ok(true)
}

/// Whether `gen_dir` holds exactly `files`.
fn read_back(gen_dir: &Path, files: &Files) -> bool {
    let mut count = 0;
    let all_same = files
        .iter()
        .all(|(rel, (bytes, _))| std::fs::read(gen_dir.join(rel)).is_ok_and(|b| b == *bytes));
    count_files(gen_dir, &mut count);
    all_same && count == files.len()
}

fn count_files(dir: &Path, count: &mut usize) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            count_files(&path, count);
        } else {
            *count += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources() -> EnvSources<'static> {
        EnvSources {
            pod_ip: "10.244.0.9",
            host_ip: "10.244.0.1",
            service_env: &[],
            config_map: &|name| {
                (name == "kube-root-ca.crt")
                    .then(|| BTreeMap::from([("ca.crt".to_owned(), "CA".to_owned())]))
            },
            secret: &|_| None,
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "c"}], "volumes": [
                {"name": "kube-api-access", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
                ]}},
                {"name": "missing", "secret": {"secretName": "nope"}},
                {"name": "maybe", "secret": {"secretName": "nope", "optional": true}}
            ]}
        }))
        .unwrap()
    }

    fn volume(pod: &Pod, name: &str) -> Volume {
        volumes(pod).find(|v| v.name == name).cloned().unwrap()
    }

    #[test]
    fn the_service_account_volume_holds_token_ca_and_namespace() {
        let pod = pod();
        assert_eq!(
            tokens_wanted(&pod),
            [TokenWanted {
                audience: None,
                expiration_seconds: 3607
            }]
        );
        let got = content(&pod, &volume(&pod, "kube-api-access"), &sources(), &|_| {
            Some("TOKEN".into())
        })
        .unwrap();
        let VolumeContent::Files(files) = got else {
            panic!("files expected")
        };
        let text = |k: &str| String::from_utf8(files[k].0.clone()).unwrap();
        assert_eq!(text("token"), "TOKEN");
        assert_eq!(text("ca.crt"), "CA");
        assert_eq!(text("namespace"), "ns");
    }

    #[test]
    fn a_missing_secret_fails_unless_optional() {
        let pod = pod();
        let err = content(&pod, &volume(&pod, "missing"), &sources(), &|_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "volume missing: Secret \"nope\" not found (and not optional)"
        );
        let ok = content(&pod, &volume(&pod, "maybe"), &sources(), &|_| None).unwrap();
        assert_eq!(ok, VolumeContent::Files(Files::new()));
    }

    #[test]
    fn updates_swap_the_data_link_and_drop_removed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Files::from([
            ("a".to_owned(), (b"1".to_vec(), 0o644)),
            ("b".to_owned(), (b"2".to_vec(), 0o644)),
        ]);
        assert!(write_atomically(dir.path(), &files, "1", None).unwrap());
        assert!(!write_atomically(dir.path(), &files, "2", None).unwrap());
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"1");

        files.remove("b");
        files.insert("a".into(), (b"3".to_vec(), 0o644));
        assert!(write_atomically(dir.path(), &files, "3", None).unwrap());
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"3");
        assert!(!dir.path().join("b").exists());
        assert!(!dir.path().join("..1").exists());
        assert_eq!(
            std::fs::read_link(dir.path().join("..data")).unwrap(),
            Path::new("..3")
        );
    }
}
