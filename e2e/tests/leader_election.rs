//! Two `meshkeeper-operator` replicas against the real control plane: one
//! holds the Lease and leads, the other stands by; when the leader dies
//! without releasing the lease, the standby takes over once it expires.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use meshkeeper_e2e::{DEADLINE, Harness, operator_binary, wait_until};

/// Kills the process when dropped, so a failed test leaves nothing running.
struct Replica {
    identity: String,
    child: Child,
}

impl Replica {
    fn start(h: &Harness, namespace: &str, identity: &str) -> Replica {
        let child = Command::new(operator_binary().unwrap())
            .args([
                "--namespace",
                namespace,
                "--identity",
                identity,
                "--http-listen",
                "127.0.0.1:0",
            ])
            .env("KUBECONFIG", h.kubeconfig())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Replica {
            identity: identity.to_owned(),
            child,
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn holder(leases: &Api<Lease>) -> anyhow::Result<Option<String>> {
    Ok(leases
        .get_opt("meshkeeper-operator")
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity))
}

#[tokio::test]
async fn a_standby_replica_takes_over_when_the_leader_dies() {
    let h = Harness::connect().await.unwrap();
    let ns = h.namespace("leader").await.unwrap();
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), &ns.name);
    let mut first = Some(Replica::start(&h, &ns.name, "replica-a"));
    let second = Replica::start(&h, &ns.name, "replica-b");

    let leader = wait_until("one replica holds the lease", DEADLINE, || async {
        Ok(holder(&leases)
            .await?
            .filter(|h| h == "replica-a" || h == "replica-b"))
    })
    .await
    .unwrap();

    // The standby never steals a lease that is being renewed: the holder
    // stays the same over several renewals.
    let renewed_at = |lease: Lease| lease.spec.and_then(|s| s.renew_time).map(|t| t.0);
    let first_renewal = renewed_at(leases.get("meshkeeper-operator").await.unwrap());
    let later = wait_until("the leader renews its lease", DEADLINE, || async {
        let lease = leases.get("meshkeeper-operator").await?;
        let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
        let renewed = renewed_at(lease);
        Ok((renewed != first_renewal).then_some(holder))
    })
    .await
    .unwrap();
    assert_eq!(
        later.as_deref(),
        Some(leader.as_str()),
        "the lease changed hands while its holder was alive"
    );

    // Kill the leader (no chance to release anything).
    let standby = if first.as_ref().is_some_and(|r| r.identity == leader) {
        first.take();
        second.identity.clone()
    } else {
        drop(second);
        "replica-a".to_owned()
    };
    let took_over = wait_until(
        "the standby takes over the expired lease",
        DEADLINE,
        || async { Ok(holder(&leases).await?.filter(|h| *h == standby)) },
    )
    .await
    .unwrap();
    assert_eq!(took_over, standby);
    let transitions = leases
        .get("meshkeeper-operator")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.lease_transitions);
    assert!(
        transitions.is_some_and(|t| t >= 1),
        "a takeover counts as a transition: {transitions:?}"
    );
}
