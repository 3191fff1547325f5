//! Routing objects by the host they name, so a proxy's compile looks up a
//! service's VirtualService and DestinationRule instead of scanning every
//! object for every service (which made a 1,000-service mesh quadratic).
//! Built once per snapshot, on first use; it depends only on the objects,
//! not on the proxy (visibility is checked on the few candidates).

use std::collections::HashMap;

use super::Snapshot;
use crate::binding;
use crate::names;

/// Positions of objects (in the snapshot's oldest-first order) by host.
#[derive(Debug, Clone, Default)]
pub struct HostIndex {
    exact: HashMap<String, Vec<usize>>,
    /// Objects with a wildcard host (`*`, `*.example.com`), with it.
    wildcard: Vec<(usize, String)>,
}

impl HostIndex {
    fn insert(&mut self, host: String, position: usize) {
        if host.starts_with('*') {
            self.wildcard.push((position, host));
        } else {
            let list = self.exact.entry(host).or_default();
            if list.last() != Some(&position) {
                list.push(position);
            }
        }
    }

    /// Objects naming `host` exactly, oldest first.
    pub fn exact(&self, host: &str) -> &[usize] {
        self.exact.get(host).map_or(&[], Vec::as_slice)
    }

    /// Objects whose wildcard covers `host`, oldest first.
    pub fn wildcard<'a>(&'a self, host: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.wildcard
            .iter()
            .filter(move |(_, w)| names::host_matches(w, host))
            .map(|(p, _)| *p)
    }

    /// Exact and wildcard matches together, oldest first.
    pub fn matching(&self, host: &str) -> Vec<usize> {
        let mut all: Vec<usize> = self.exact(host).to_vec();
        all.extend(self.wildcard(host));
        all.sort_unstable();
        all.dedup();
        all
    }
}

#[derive(Debug, Clone, Default)]
pub struct Index {
    pub virtual_services: HostIndex,
    pub destination_rules: HostIndex,
}

impl Index {
    pub fn build(snapshot: &Snapshot) -> Index {
        let domain = &snapshot.mesh.cluster_domain;
        let mut index = Index::default();
        for (i, vs) in snapshot.virtual_services.iter().enumerate() {
            for host in binding::hosts(vs, domain) {
                index.virtual_services.insert(host, i);
            }
        }
        for (i, dr) in snapshot.destination_rules.iter().enumerate() {
            let ns = dr.metadata.namespace.as_deref().unwrap_or("default");
            if let Some(host) = dr.spec.host.as_deref() {
                index
                    .destination_rules
                    .insert(names::resolve_host(host, ns, domain), i);
            }
        }
        index
    }
}
