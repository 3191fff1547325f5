//! Status conditions whose `lastTransitionTime` moves only when the status
//! changes, so `kubectl get` shows how long a state has held and an
//! unchanged state makes no status write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The installation matches the spec.
pub const RECONCILED: &str = "Reconciled";
/// The webhooks serve.
pub const READY: &str = "Ready";
/// A namespace, tag or running pod refers to the revision.
pub const IN_USE: &str = "InUse";

fn status_word(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// Sets the condition `type_`, adding it when absent. The transition time
/// becomes `now` only when the condition is new or its status changes;
/// reason, message and observed generation are updated in place. Returns
/// whether anything changed (nothing to write otherwise).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Time,
) -> bool {
    let status = status_word(status);
    let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) else {
        conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation,
            last_transition_time: now,
        });
        return true;
    };
    let before = existing.clone();
    if existing.status != status {
        existing.status = status.to_owned();
        existing.last_transition_time = now;
    }
    reason.clone_into(&mut existing.reason);
    message.clone_into(&mut existing.message);
    existing.observed_generation = observed_generation;
    *existing != before
}

/// The condition `type_`, if set.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The status of condition `type_`: `None` when absent or `Unknown`.
pub fn status_of(conditions: &[Condition], type_: &str) -> Option<bool> {
    match find(conditions, type_)?.status.as_str() {
        "True" => Some(true),
        "False" => Some(false),
        _ => None,
    }
}

/// Whether condition `type_` is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    status_of(conditions, type_) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + seconds).unwrap())
    }

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            READY,
            false,
            "Installing",
            "waiting",
            Some(1),
            at(0)
        ));
        assert_eq!(
            find(&conditions, READY).unwrap().last_transition_time,
            at(0)
        );
        assert_eq!(status_of(&conditions, READY), Some(false));

        // Same status, new reason and message: updated in place, time kept.
        assert!(set_condition(
            &mut conditions,
            READY,
            false,
            "Rolling",
            "1 of 2 ready",
            Some(2),
            at(10)
        ));
        let ready = find(&conditions, READY).unwrap();
        assert_eq!(ready.last_transition_time, at(0));
        assert_eq!(
            (ready.reason.as_str(), ready.message.as_str()),
            ("Rolling", "1 of 2 ready")
        );
        assert_eq!(ready.observed_generation, Some(2));

        // Nothing new: nothing changed, nothing to write.
        assert!(!set_condition(
            &mut conditions,
            READY,
            false,
            "Rolling",
            "1 of 2 ready",
            Some(2),
            at(20)
        ));
        assert_eq!(
            find(&conditions, READY).unwrap().last_transition_time,
            at(0)
        );

        // The status flips: the time moves.
        assert!(set_condition(
            &mut conditions,
            READY,
            true,
            "Ready",
            "",
            Some(2),
            at(30)
        ));
        assert_eq!(
            find(&conditions, READY).unwrap().last_transition_time,
            at(30)
        );
        assert!(is_true(&conditions, READY));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn conditions_are_independent() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, READY, true, "Ready", "", None, at(0));
        set_condition(&mut conditions, IN_USE, false, "Unused", "", None, at(5));
        set_condition(&mut conditions, READY, false, "Down", "x", None, at(9));
        assert_eq!(
            find(&conditions, IN_USE).unwrap().last_transition_time,
            at(5)
        );
        assert_eq!(
            find(&conditions, READY).unwrap().last_transition_time,
            at(9)
        );
        assert_eq!(status_of(&conditions, RECONCILED), None);
        assert!(!is_true(&conditions, RECONCILED));

        let unknown = vec![Condition {
            type_: RECONCILED.into(),
            status: "Unknown".into(),
            reason: "Starting".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: at(0),
        }];
        assert_eq!(status_of(&unknown, RECONCILED), None);
    }
}
