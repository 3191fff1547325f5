//! Per-namespace proxy configuration: the files of the `meshkeeper-proxy`
//! ConfigMap that every sidecar of an injected namespace mounts at
//! [`CONFIG_DIR`], computed as pure functions of plain values.
//!
//! | file | what Envoy does with it |
//! | --- | --- |
//! | `bootstrap.yaml` | `envoy -c`: admin on loopback, the health (15021) and Prometheus (15090) listeners, and where the dynamic resources are |
//! | `lds.yaml` | listeners (a DiscoveryResponse, read through `path_config_source`) |
//! | `cds.yaml` | clusters, likewise |
//! | `settings.yaml` | not read by Envoy: the effective proxy settings of the namespace, for people and for the controller to compare |
//!
//! Envoy watches the folder (`watched_directory`): the kubelet updates a
//! ConfigMap volume by swapping its `..data` link, and Envoy then reads
//! `lds.yaml` and `cds.yaml` again, so a new ConfigMap applies without a
//! restart. The bootstrap itself is read once, when the proxy starts.
//!
//! ## How the traffic model extends these files
//! The files carry only the pass-through behaviour today; the compiler of
//! the traffic model (VirtualService, DestinationRule, Gateway, ...) adds to
//! them without changing what is here:
//! - **Outbound**: the virtual outbound listener on 15001 has
//!   `use_original_dst`, so Envoy hands a connection to the listener whose
//!   address is the connection's original destination. Per-service listeners
//!   (named `<address>_<port>`, `bind_to_port: false`) are appended to the
//!   `resources` of `lds.yaml`; a destination no listener claims stays on the
//!   virtual listener and passes through to [`PASSTHROUGH_CLUSTER`].
//! - **Inbound**: per-port filter chains (with a `filter_chain_match` on
//!   `destination_port`) are inserted into the virtual inbound listener's
//!   `filter_chains` *before* the catch-all pass-through chain. Envoy picks
//!   the most specific match, so the catch-all (no match) only takes what no
//!   other chain claims; keeping it last keeps the file readable.
//! - **Clusters** (`outbound|<port>|<subset>|<host>`, `inbound|<port>||`) are
//!   appended to the `resources` of `cds.yaml`.
//! - **Routes**: HTTP listeners use `rds` with a `path_config_source` on a
//!   new `rds.yaml` in the same folder (written by [`config_map_data`]).
//!
//! Names and stat prefixes follow Istio's (`virtualOutbound`,
//! `PassthroughCluster`, ...), so dashboards and habits carry over. The
//! bootstrap's own clusters and listeners have `meshkeeper_` names, which
//! no generated resource may take.
//!
//! The output is deterministic (maps are written with sorted keys), so the
//! controller writes a ConfigMap only when its data differs.

mod bootstrap;
mod clusters;
mod config_map;
mod listeners;
mod render;
mod settings;

pub use bootstrap::bootstrap;
pub use clusters::clusters;
pub use config_map::{config_map, config_map_data};
pub use listeners::listeners;
pub use render::RenderError;
pub use settings::{EffectiveSettings, Origin, ProxyConfigError, effective_settings};

use meshkeeper_webhook::inject::names;

/// The folder the sidecar mounts the ConfigMap at.
pub const CONFIG_DIR: &str = names::PROXY_CONFIG_DIR;
/// The ConfigMap's name in every injected namespace.
pub const CONFIG_MAP_NAME: &str = names::PROXY_CONFIG_MAP;

/// File names, the keys of the ConfigMap's data.
pub const BOOTSTRAP_FILE: &str = "bootstrap.yaml";
pub const LISTENERS_FILE: &str = "lds.yaml";
pub const CLUSTERS_FILE: &str = "cds.yaml";
pub const SETTINGS_FILE: &str = "settings.yaml";

/// Envoy's admin interface, on loopback only.
pub const ADMIN_ADDRESS: &str = "127.0.0.1";
pub const ADMIN_PORT: u16 = 15000;
/// Where the init container redirects outbound and inbound TCP (its
/// defaults, `meshkeeper_init::capture::DEFAULT_{OUTBOUND,INBOUND}_CAPTURE_PORT`).
pub const OUTBOUND_CAPTURE_PORT: u16 = 15001;
pub const INBOUND_CAPTURE_PORT: u16 = 15006;
/// The readiness endpoint the kubelet probes, and the Prometheus endpoint;
/// the init container never captures these ports.
pub const HEALTH_PORT: u16 = port(names::HEALTH_PORT);
pub const PROMETHEUS_PORT: u16 = port(names::PROMETHEUS_PORT);

/// Listener and cluster names (see the module documentation).
pub const VIRTUAL_OUTBOUND_LISTENER: &str = "virtualOutbound";
pub const VIRTUAL_INBOUND_LISTENER: &str = "virtualInbound";
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";

/// The source address Envoy binds when it forwards inbound traffic to the
/// application. The init container's rules let loopback traffic from this
/// address through; without it the proxy's connection to the pod's own
/// address would be redirected to 15006 again, a loop.
pub const INBOUND_PASSTHROUGH_SOURCE: &str = "127.0.0.6";

/// The webhook's ports are `i32` (Kubernetes' type); they are known small.
const fn port(value: i32) -> u16 {
    value as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_the_ones_injection_and_capture_use() {
        assert_eq!(i32::from(HEALTH_PORT), names::HEALTH_PORT);
        assert_eq!(i32::from(PROMETHEUS_PORT), names::PROMETHEUS_PORT);
        assert_eq!((HEALTH_PORT, PROMETHEUS_PORT), (15021, 15090));
        assert_eq!(
            names::PROXY_BOOTSTRAP,
            format!("{CONFIG_DIR}/{BOOTSTRAP_FILE}")
        );
    }
}
