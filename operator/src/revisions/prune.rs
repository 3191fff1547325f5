//! Whether a revision may be deleted. The rules hold whatever the update
//! strategy (only a revision that is not the active one is ever a
//! candidate, and only RevisionBased makes such revisions), and they err on
//! the side of keeping: a revision is deleted only when it is known to be
//! unused and has stayed so for the whole grace period.
//!
//! The clock starts at the MeshRevision's `status.lastUsedTime`, which the
//! controller sets with [`last_used_time`]: once, when the revision is
//! first seen unused, so an unchanged state needs no status write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use meshkeeper_crds::meshkeeper::mesh::UpdateStrategy;

use super::usage::Usage;

/// Grace period when the Mesh sets none, as sail-operator's.
pub const DEFAULT_GRACE_PERIOD_SECONDS: i64 = 30;

/// Why a revision is kept for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepReason {
    /// New injections use it.
    Active,
    /// A namespace, tag or running pod refers to it.
    InUse,
    /// The caches the usage was computed from are not synced yet (or the
    /// revision was missing from them): deleting on a partial picture could
    /// remove a revision that pods still use.
    UsageUnknown,
}

/// The answer of [`decide`].
#[derive(Clone, Debug, PartialEq)]
pub enum PruneDecision {
    Keep {
        reason: KeepReason,
    },
    /// Unused for the whole grace period: delete it.
    Delete,
    /// Unused, but the grace period runs until this time: look again then.
    KeepUntil(Time),
}

/// What the decision reads about one revision.
#[derive(Clone, Copy, Debug)]
pub struct PruneInput<'a> {
    pub revision: &'a str,
    pub active_revision: &'a str,
    /// The revision's usage; `None` when it is not known.
    pub usage: Option<&'a Usage>,
    /// Whether every watch the usage comes from (namespaces, pods) has
    /// synced; `false` means the usage is not to be trusted.
    pub caches_synced: bool,
    /// The MeshRevision's `status.lastUsedTime`.
    pub last_used_time: Option<&'a Time>,
    pub grace_period: SignedDuration,
    pub now: &'a Time,
}

/// The Mesh's grace period, defaulted, negative values read as zero (the
/// schema refuses them).
pub fn grace_period(strategy: Option<&UpdateStrategy>) -> SignedDuration {
    let seconds = strategy
        .and_then(|s| s.inactive_revision_deletion_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS)
        .max(0);
    SignedDuration::from_secs(seconds)
}

/// Whether to delete the revision now.
pub fn decide(input: &PruneInput<'_>) -> PruneDecision {
    if input.revision == input.active_revision {
        return PruneDecision::Keep {
            reason: KeepReason::Active,
        };
    }
    let Some(usage) = input.usage.filter(|_| input.caches_synced) else {
        return PruneDecision::Keep {
            reason: KeepReason::UsageUnknown,
        };
    };
    if usage.in_use() {
        return PruneDecision::Keep {
            reason: KeepReason::InUse,
        };
    }
    // Without a recorded time the clock starts now: the caller records it
    // (see `last_used_time`), and until it does the deadline keeps moving,
    // which can only delay a deletion, never hasten one.
    let since = input.last_used_time.unwrap_or(input.now);
    let deadline = after(&since.0, input.grace_period);
    if input.now.0 >= deadline {
        PruneDecision::Delete
    } else {
        PruneDecision::KeepUntil(Time(deadline))
    }
}

/// `start + grace`, saturating at the end of time.
fn after(start: &Timestamp, grace: SignedDuration) -> Timestamp {
    start.checked_add(grace).unwrap_or(Timestamp::MAX)
}

/// The `status.lastUsedTime` to record: kept while the revision is in use
/// or while it stays unused, set to `now` when it is first seen unused
/// (`was_in_use`: its `InUse` condition was true or absent). The field is
/// "when it was last seen in use", at the resolution of reconciles; only
/// the moment of becoming unused matters for the grace period, so it is
/// written then and not on every reconcile.
pub fn last_used_time(
    in_use: bool,
    was_in_use: bool,
    previous: Option<&Time>,
    now: &Time,
) -> Option<Time> {
    match (in_use, was_in_use, previous) {
        (true, _, previous) => previous.cloned(),
        (false, false, Some(previous)) => Some(previous.clone()),
        (false, _, _) => Some(now.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + seconds).unwrap())
    }

    fn unused() -> Usage {
        Usage::default()
    }

    fn input<'a>(
        usage: Option<&'a Usage>,
        last_used: Option<&'a Time>,
        now: &'a Time,
    ) -> PruneInput<'a> {
        PruneInput {
            revision: "default-1-0-0",
            active_revision: "default-1-1-0",
            usage,
            caches_synced: true,
            last_used_time: last_used,
            grace_period: grace_period(None),
            now,
        }
    }

    #[test]
    fn the_active_revision_is_never_pruned() {
        let usage = unused();
        let (then, now) = (at(0), at(1_000_000));
        let mut i = input(Some(&usage), Some(&then), &now);
        i.active_revision = i.revision;
        assert_eq!(
            decide(&i),
            PruneDecision::Keep {
                reason: KeepReason::Active
            }
        );
    }

    #[test]
    fn unknown_usage_never_prunes() {
        let usage = unused();
        let (then, now) = (at(0), at(1_000_000));
        let mut i = input(Some(&usage), Some(&then), &now);
        i.caches_synced = false;
        assert_eq!(
            decide(&i),
            PruneDecision::Keep {
                reason: KeepReason::UsageUnknown
            }
        );
        let i = input(None, Some(&then), &now);
        assert_eq!(
            decide(&i),
            PruneDecision::Keep {
                reason: KeepReason::UsageUnknown
            }
        );
    }

    #[test]
    fn in_use_is_kept_whatever_the_time() {
        let (then, now) = (at(0), at(1_000_000));
        for usage in [
            Usage {
                pods: 1,
                ..Usage::default()
            },
            Usage {
                namespaces: BTreeSet::from(["shop".to_owned()]),
                ..Usage::default()
            },
            Usage {
                tags: BTreeSet::from(["prod".to_owned()]),
                ..Usage::default()
            },
        ] {
            assert_eq!(
                decide(&input(Some(&usage), Some(&then), &now)),
                PruneDecision::Keep {
                    reason: KeepReason::InUse
                },
                "{usage:?}"
            );
        }
    }

    #[test]
    fn the_grace_period_counts_from_last_used_time() {
        let usage = unused();
        let then = at(0);
        let just_before = at(29);
        assert_eq!(
            decide(&input(Some(&usage), Some(&then), &just_before)),
            PruneDecision::KeepUntil(at(30))
        );
        let exactly = at(30);
        assert_eq!(
            decide(&input(Some(&usage), Some(&then), &exactly)),
            PruneDecision::Delete
        );
        let later = at(31);
        assert_eq!(
            decide(&input(Some(&usage), Some(&then), &later)),
            PruneDecision::Delete
        );
    }

    #[test]
    fn a_custom_or_zero_grace_period() {
        let usage = unused();
        let then = at(0);
        let now = at(45);
        let mut i = input(Some(&usage), Some(&then), &now);
        i.grace_period = grace_period(Some(&UpdateStrategy {
            inactive_revision_deletion_grace_period_seconds: Some(60),
            ..UpdateStrategy::default()
        }));
        assert_eq!(decide(&i), PruneDecision::KeepUntil(at(60)));
        i.grace_period = grace_period(Some(&UpdateStrategy {
            inactive_revision_deletion_grace_period_seconds: Some(0),
            ..UpdateStrategy::default()
        }));
        assert_eq!(decide(&i), PruneDecision::Delete);
        assert_eq!(
            grace_period(Some(&UpdateStrategy {
                inactive_revision_deletion_grace_period_seconds: Some(-5),
                ..UpdateStrategy::default()
            })),
            SignedDuration::ZERO
        );
        assert_eq!(grace_period(None), SignedDuration::from_secs(30));
    }

    #[test]
    fn without_a_recorded_time_the_clock_starts_now() {
        let usage = unused();
        let now = at(100);
        assert_eq!(
            decide(&input(Some(&usage), None, &now)),
            PruneDecision::KeepUntil(at(130))
        );
    }

    #[test]
    fn a_huge_grace_period_never_overflows() {
        let usage = unused();
        let (then, now) = (at(0), at(10));
        let mut i = input(Some(&usage), Some(&then), &now);
        i.grace_period = SignedDuration::from_secs(i64::MAX);
        assert_eq!(decide(&i), PruneDecision::KeepUntil(Time(Timestamp::MAX)));
    }

    #[test]
    fn last_used_time_moves_only_when_the_revision_becomes_unused() {
        let (old, now) = (at(0), at(50));
        // In use: nothing to write.
        assert_eq!(
            last_used_time(true, true, Some(&old), &now),
            Some(old.clone())
        );
        assert_eq!(last_used_time(true, true, None, &now), None);
        // Becomes unused: the clock starts.
        assert_eq!(
            last_used_time(false, true, Some(&old), &now),
            Some(now.clone())
        );
        // Stays unused: unchanged.
        assert_eq!(
            last_used_time(false, false, Some(&old), &now),
            Some(old.clone())
        );
        // Unused and never recorded (e.g. created unused): starts now.
        assert_eq!(last_used_time(false, false, None, &now), Some(now.clone()));
    }
}
