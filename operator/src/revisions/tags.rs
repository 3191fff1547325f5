//! Where each revision tag of the Mesh points. A tag is a named alias of a
//! revision: `istio.io/rev=<tag>` means the revision the tag points at, and
//! a tag without `revision` follows the active revision through upgrades.
//!
//! Resolution is lenient: a bad tag is reported and left out, the good ones
//! still resolve, so one typo does not make every other namespace's
//! revision unknown.

use std::collections::{BTreeMap, BTreeSet};

use meshkeeper_crds::meshkeeper::mesh::{RevisionTag, TagStatus};

/// The revisions of a Mesh and the tags that resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revisions {
    names: BTreeSet<String>,
    active: String,
    /// tag → revision.
    tags: BTreeMap<String, String>,
}

/// What an `istio.io/rev` value names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    pub revision: &'a str,
    /// The tag the value named, when it was a tag.
    pub tag: Option<&'a str>,
}

/// A tag that cannot be used, naming the field as `spec.revisionTags[i]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error(
        "spec.revisionTags[{index}].revision: tag {tag:?} points at {revision:?}, which is not a revision of this mesh (revisions: {})",
        quoted(known)
    )]
    UnknownRevision {
        index: usize,
        tag: String,
        revision: String,
        known: Vec<String>,
    },
    #[error(
        "spec.revisionTags[{index}].name: tag {tag:?} has the name of a revision; a tag must differ from every revision name, or istio.io/rev={tag} would name two things"
    )]
    NamedLikeRevision { index: usize, tag: String },
    #[error(
        "spec.revisionTags[{index}].name: tag {tag:?} is not a valid name: use 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit (it becomes a label value and part of object names)"
    )]
    InvalidName { index: usize, tag: String },
    #[error(
        "spec.revisionTags[{index}].name: tag {tag:?} is already defined by spec.revisionTags[{first}]; tag names must be unique"
    )]
    Duplicate {
        index: usize,
        tag: String,
        first: usize,
    },
}

/// RFC 1123 label: what the CRD's pattern allows, checked again for objects
/// that reach the operator some other way.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

fn quoted(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    quoted.join(", ")
}

/// The result of [`Revisions::resolve`]: every usable tag resolved, every
/// unusable one reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub revisions: Revisions,
    pub errors: Vec<TagError>,
}

impl Revisions {
    /// Resolves the Mesh's `spec.revisionTags` against the existing
    /// revisions. `active` is the revision new injections use; it counts as
    /// existing even before its MeshRevision is created.
    pub fn resolve<I, S>(revisions: I, active: &str, tags: &[RevisionTag]) -> Resolution
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names: BTreeSet<String> = revisions.into_iter().map(Into::into).collect();
        names.insert(active.to_owned());
        let mut resolved = BTreeMap::new();
        let mut first_index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut errors = Vec::new();
        for (index, tag) in tags.iter().enumerate() {
            if !is_dns_label(&tag.name) {
                errors.push(TagError::InvalidName {
                    index,
                    tag: tag.name.clone(),
                });
                continue;
            }
            if let Some(&first) = first_index.get(tag.name.as_str()) {
                errors.push(TagError::Duplicate {
                    index,
                    tag: tag.name.clone(),
                    first,
                });
                continue;
            }
            first_index.insert(&tag.name, index);
            if names.contains(&tag.name) {
                errors.push(TagError::NamedLikeRevision {
                    index,
                    tag: tag.name.clone(),
                });
                continue;
            }
            let revision = tag.revision.as_deref().unwrap_or(active);
            if !names.contains(revision) {
                errors.push(TagError::UnknownRevision {
                    index,
                    tag: tag.name.clone(),
                    revision: revision.to_owned(),
                    known: names.iter().cloned().collect(),
                });
                continue;
            }
            resolved.insert(tag.name.clone(), revision.to_owned());
        }
        Resolution {
            revisions: Revisions {
                names,
                active: active.to_owned(),
                tags: resolved,
            },
            errors,
        }
    }

    pub fn active(&self) -> &str {
        &self.active
    }

    pub fn contains(&self, revision: &str) -> bool {
        self.names.contains(revision)
    }

    /// Every revision, in name order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Every resolved tag → its revision, in tag order.
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.tags
    }

    /// The tags pointing at `revision` (its MeshRevision's `spec.tags`), in
    /// name order.
    pub fn tags_of(&self, revision: &str) -> Vec<String> {
        self.tags
            .iter()
            .filter(|(_, target)| *target == revision)
            .map(|(tag, _)| tag.clone())
            .collect()
    }

    /// What an `istio.io/rev` value names: a revision by its own name, or
    /// the revision a tag points at; `None` when it names neither (nothing
    /// injects such a namespace).
    pub fn lookup(&self, name: &str) -> Option<Target<'_>> {
        if let Some(revision) = self.names.get(name) {
            return Some(Target {
                revision,
                tag: None,
            });
        }
        self.tags.get_key_value(name).map(|(tag, revision)| Target {
            revision,
            tag: Some(tag),
        })
    }

    /// The Mesh's `status.tags`.
    pub fn tag_statuses(&self) -> Vec<TagStatus> {
        self.tags
            .iter()
            .map(|(name, revision)| TagStatus {
                name: name.clone(),
                revision: revision.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(name: &str, revision: Option<&str>) -> RevisionTag {
        RevisionTag {
            name: name.to_owned(),
            revision: revision.map(str::to_owned),
        }
    }

    const OLD: &str = "default-1-0-0";
    const NEW: &str = "default-1-1-0";

    #[test]
    fn a_tag_without_revision_follows_the_active_one() {
        let r = Revisions::resolve([OLD], NEW, &[tag("prod", None), tag("old", Some(OLD))]);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let revisions = r.revisions;
        assert_eq!(revisions.tags()["prod"], NEW);
        assert_eq!(revisions.tags()["old"], OLD);
        assert_eq!(revisions.tags_of(NEW), ["prod"]);
        assert_eq!(revisions.tags_of(OLD), ["old"]);
        assert!(
            revisions.contains(NEW),
            "the active revision exists even before its MeshRevision"
        );
        assert_eq!(revisions.names().collect::<Vec<_>>(), [OLD, NEW]);
        assert_eq!(
            revisions.tag_statuses(),
            [
                TagStatus {
                    name: "old".into(),
                    revision: OLD.into()
                },
                TagStatus {
                    name: "prod".into(),
                    revision: NEW.into()
                }
            ]
        );
    }

    #[test]
    fn lookup_prefers_revisions_then_tags() {
        let revisions = Revisions::resolve([OLD], NEW, &[tag("prod", Some(OLD))]).revisions;
        assert_eq!(
            revisions.lookup(NEW),
            Some(Target {
                revision: NEW,
                tag: None
            })
        );
        assert_eq!(
            revisions.lookup("prod"),
            Some(Target {
                revision: OLD,
                tag: Some("prod")
            })
        );
        assert_eq!(revisions.lookup("nope"), None);
    }

    #[test]
    fn a_tag_naming_an_unknown_revision_is_reported_and_left_out() {
        let r = Revisions::resolve(
            [OLD],
            NEW,
            &[tag("prod", Some("default-0-9-0")), tag("canary", None)],
        );
        assert_eq!(r.errors.len(), 1);
        let message = r.errors[0].to_string();
        assert!(
            message.starts_with("spec.revisionTags[0].revision:")
                && message.contains("\"default-0-9-0\"")
                && message.contains("\"default-1-0-0\", \"default-1-1-0\""),
            "{message}"
        );
        assert_eq!(r.revisions.lookup("prod"), None);
        assert_eq!(
            r.revisions.tags()["canary"],
            NEW,
            "the good tag still resolves"
        );
    }

    #[test]
    fn a_tag_named_like_a_revision_is_refused() {
        // In place, the only revision is named after the Mesh: `default`.
        let r = Revisions::resolve(["default"], "default", &[tag("default", None)]);
        assert_eq!(
            r.errors,
            [TagError::NamedLikeRevision {
                index: 0,
                tag: "default".into()
            }]
        );
        assert!(
            r.errors[0]
                .to_string()
                .starts_with("spec.revisionTags[0].name:")
        );
        // The revision keeps its name.
        assert_eq!(
            r.revisions.lookup("default"),
            Some(Target {
                revision: "default",
                tag: None
            })
        );
        assert!(r.revisions.tags().is_empty());
    }

    #[test]
    fn duplicate_tags_keep_the_first() {
        let r = Revisions::resolve(
            [OLD],
            NEW,
            &[tag("prod", Some(OLD)), tag("prod", Some(NEW))],
        );
        assert_eq!(
            r.errors,
            [TagError::Duplicate {
                index: 1,
                tag: "prod".into(),
                first: 0
            }]
        );
        assert_eq!(r.revisions.tags()["prod"], OLD);
    }
}
