//! Leader election with a coordination.k8s.io Lease, so two operator
//! replicas can run and only one reconciles. The standby keeps trying; a
//! leader that cannot renew before its lease runs out stops leading (the
//! caller exits, and the Deployment restarts it as a standby).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

/// How a lease is held.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How often the leader renews, and the standby retries.
    pub renew_every: Duration,
}

/// What the current lease means for this replica.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nobody holds a valid lease, or we do: take or renew it.
    Take,
    /// Another replica holds it until it expires.
    HeldBy(String),
}

/// Pure: may `identity` take or renew `lease` at `now`?
pub fn claim(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Claim {
    let Some(spec) = lease else {
        return Claim::Take;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return Claim::Take;
    }
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref());
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    match renewed {
        Some(MicroTime(at)) if *at + SignedDuration::from_secs(seconds) > now => {
            Claim::HeldBy(holder.to_owned())
        }
        _ => Claim::Take,
    }
}

/// Blocks until this replica holds the lease, then returns.
pub async fn acquire(client: &kube::Client, settings: &LeaseSettings) {
    loop {
        match try_hold(client, settings).await {
            Ok(None) => {
                tracing::info!(lease = %settings.name, identity = %settings.identity, "leading");
                return;
            }
            Ok(Some(holder)) => {
                tracing::debug!(%holder, "another replica leads; standing by");
            }
            Err(error) => tracing::warn!(error = %error, "cannot read or take the leader lease"),
        }
        tokio::time::sleep(settings.renew_every).await;
    }
}

/// Renews the lease until a renewal fails for longer than the lease lasts;
/// returns then (leadership is lost).
pub async fn keep(client: kube::Client, settings: LeaseSettings) {
    let mut last_success = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(settings.renew_every).await;
        match try_hold(&client, &settings).await {
            Ok(None) => last_success = tokio::time::Instant::now(),
            Ok(Some(holder)) => {
                tracing::error!(%holder, "the leader lease was taken over");
                return;
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot renew the leader lease");
                if last_success.elapsed() >= settings.duration {
                    tracing::error!("leader lease expired without renewal");
                    return;
                }
            }
        }
    }
}

/// Takes or renews the lease; `Ok(Some(holder))` when someone else holds it.
async fn try_hold(
    client: &kube::Client,
    settings: &LeaseSettings,
) -> Result<Option<String>, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let now = Timestamp::now();
    let current = api.get_opt(&settings.name).await?;
    if let Claim::HeldBy(holder) = claim(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &settings.identity,
        now,
    ) {
        return Ok(Some(holder));
    }
    let duration_seconds = i32::try_from(settings.duration.as_secs()).unwrap_or(i32::MAX);
    match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    namespace: Some(settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(settings.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await?;
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                spec.holder_identity = Some(settings.identity.clone());
            }
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(duration_seconds);
            // The resourceVersion in `lease` makes this a compare-and-swap:
            // two replicas racing for an expired lease cannot both win.
            api.replace(&settings.name, &PostParams::default(), &lease)
                .await?;
        }
    }
    crate::controller::metrics::count_lease_write();
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs_ago: i64, duration: i32) -> LeaseSpec {
        let now = Timestamp::now();
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_secs_ago))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_valid_lease_of_another_replica_is_respected() {
        let spec = lease("other", 5, 15);
        assert_eq!(
            claim(Some(&spec), "me", Timestamp::now()),
            Claim::HeldBy("other".into())
        );
    }

    #[test]
    fn an_expired_missing_or_own_lease_can_be_taken() {
        assert_eq!(
            claim(Some(&lease("other", 20, 15)), "me", Timestamp::now()),
            Claim::Take
        );
        assert_eq!(claim(None, "me", Timestamp::now()), Claim::Take);
        assert_eq!(
            claim(Some(&lease("me", 1, 15)), "me", Timestamp::now()),
            Claim::Take
        );
        assert_eq!(
            claim(Some(&lease("", 1, 15)), "me", Timestamp::now()),
            Claim::Take
        );
    }
}
