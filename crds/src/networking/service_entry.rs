//! `ServiceEntry`: adds a service to the mesh's registry by hand (istio/api
//! `networking/v1alpha3/service_entry.proto`): external APIs, VMs, or
//! workloads selected by label.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Labels, LabelsSelector, Port};

#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "networking.istio.io",
    version = "v1",
    kind = "ServiceEntry",
    namespaced,
    status = "crate::schema::FreeformObject",
    shortname = "se",
    category = "istio-io",
    category = "networking-istio-io",
    printcolumn = r#"{"name":"Hosts","type":"string","description":"The hosts of the service","jsonPath":".spec.hosts"}"#,
    printcolumn = r#"{"name":"Location","type":"string","description":"MESH_EXTERNAL or MESH_INTERNAL","jsonPath":".spec.location"}"#,
    printcolumn = r#"{"name":"Resolution","type":"string","description":"How the proxy resolves endpoint addresses","jsonPath":".spec.resolution"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    schema = "derived"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntrySpec {
    /// DNS names of the service (a leading `*.` wildcard is allowed, a bare
    /// `*` is not). Required, 1..=256 entries. Matched against VirtualService
    /// and DestinationRule hosts, the HTTP authority and the TLS SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Virtual IPs or CIDRs of the service (CIDRs only with NONE/STATIC
    /// resolution); no Unix sockets. At most 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
    /// The service's ports; names and numbers unique. At most 256; exactly
    /// one when the endpoints are Unix sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<Port>>,
    /// Inside or outside the mesh; decides mTLS and policy behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// How the proxy finds endpoint addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Static endpoints. At most one of `endpoints`, `workloadSelector`.
    /// At most 4096; none with NONE resolution, at most one with
    /// DNS_ROUND_ROBIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<WorkloadEndpoint>>,
    /// Pods and WorkloadEntries in the same namespace, by label (MESH_INTERNAL
    /// only). At most one of `endpoints`, `workloadSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<LabelsSelector>,
    /// Namespaces that see the service: `.` is its own, `*` all; empty means
    /// all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_to: Option<Vec<String>>,
    /// SANs the server certificate must match one of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_alt_names: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// Outside the mesh (the default), e.g. a third-party API.
    MeshExternal,
    /// Part of the mesh, e.g. VMs joined to it.
    MeshInternal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Forward to the original destination IP (the default).
    None,
    /// Use the endpoint addresses as given.
    Static,
    /// Resolve via DNS and balance over every address returned.
    Dns,
    /// Resolve via DNS and connect to the first address only.
    DnsRoundRobin,
    /// Resolve the name from the request's Host/SNI at request time; for
    /// wildcard MESH_EXTERNAL hosts, endpoints are ignored.
    DynamicDns,
}

/// An endpoint of a ServiceEntry: Istio's `WorkloadEntry` message (also the
/// spec of the WorkloadEntry kind).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpoint {
    /// IP, DNS name (with DNS resolution) or `unix:///abs/path` /
    /// `unix://@abstract`, without a port. Required unless `network` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Service port name to endpoint port number; not allowed for Unix
    /// sockets. At most 128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<BTreeMap<String, u32>>,
    /// Labels of the endpoint. At most 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// L3 network the endpoint lives in; endpoints on other networks are
    /// reached through that network's gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `region/zone/subzone` of the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// Load balancing weight; 0 means unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Service account of the workload when it runs a sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;

    fn round_trip(input: &serde_json::Value) -> serde_json::Value {
        let spec: ServiceEntrySpec = serde_json::from_value(input.clone()).expect("parse");
        serde_json::to_value(&spec).expect("serialize")
    }

    #[test]
    fn fully_populated_round_trips_unchanged() {
        let input = json!({
            "hosts": ["mymongodb.somedomain", "*.example.com"],
            "addresses": ["192.192.192.192/24"],
            "ports": [
                {"number": 27018, "protocol": "MONGO", "name": "mongodb", "targetPort": 27017}
            ],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "endpoints": [
                {
                    "address": "2.2.2.2",
                    "ports": {"mongodb": 7777},
                    "labels": {"app": "mongo"},
                    "network": "vm-net",
                    "locality": "us-east/zone1/a",
                    "weight": 0,
                    "serviceAccount": "mongo-sa"
                },
                {"address": "unix:///var/run/example/socket"}
            ],
            "workloadSelector": {"labels": {"app": "details"}},
            "exportTo": ["."],
            "subjectAltNames": ["spiffe://cluster.local/ns/httpbin-ns/sa/httpbin"]
        });
        assert_eq!(round_trip(&input), input);
    }

    #[test]
    fn egress_google_apis_shape_parses() {
        // bookinfo's egress-rule-google-apis.yaml ServiceEntry.
        let input = json!({
            "hosts": ["www.googleapis.com"],
            "ports": [
                {"number": 80, "name": "http", "protocol": "HTTP"},
                {"number": 443, "name": "https", "protocol": "HTTPS"}
            ],
            "resolution": "DNS"
        });
        let spec: ServiceEntrySpec =
            serde_json::from_value(input.clone()).expect("must be present");
        assert_eq!(spec.resolution, Some(Resolution::Dns));
        assert_eq!(
            spec.ports.as_ref().expect("must be present")[1].number,
            Some(443)
        );
        assert_eq!(spec.location, None);
        assert_eq!(round_trip(&input), input);
    }

    #[test]
    fn enums_use_istio_names() {
        for (name, value) in [
            ("NONE", Resolution::None),
            ("STATIC", Resolution::Static),
            ("DNS", Resolution::Dns),
            ("DNS_ROUND_ROBIN", Resolution::DnsRoundRobin),
            ("DYNAMIC_DNS", Resolution::DynamicDns),
        ] {
            assert_eq!(
                serde_json::to_value(value).expect("must be present"),
                json!(name)
            );
            assert_eq!(
                serde_json::from_value::<Resolution>(json!(name)).expect("must be present"),
                value
            );
        }
        for (name, value) in [
            ("MESH_EXTERNAL", Location::MeshExternal),
            ("MESH_INTERNAL", Location::MeshInternal),
        ] {
            assert_eq!(
                serde_json::to_value(value).expect("must be present"),
                json!(name)
            );
            assert_eq!(
                serde_json::from_value::<Location>(json!(name)).expect("must be present"),
                value
            );
        }
    }

    #[test]
    fn unknown_enum_values_fail_naming_the_value() {
        let err = serde_json::from_value::<ServiceEntrySpec>(
            json!({"hosts": ["a"], "resolution": "DNS_RR"}),
        )
        .expect_err("must be rejected");
        assert!(err.to_string().contains("DNS_RR"), "{err}");
        let err = serde_json::from_value::<ServiceEntrySpec>(
            json!({"hosts": ["a"], "location": "EXTERNAL"}),
        )
        .expect_err("must be rejected");
        assert!(err.to_string().contains("EXTERNAL"), "{err}");
        let lower = json!({"hosts": ["a"], "resolution": "dns"});
        assert!(serde_json::from_value::<ServiceEntrySpec>(lower).is_err());
    }

    #[test]
    fn unknown_fields_and_wrong_types_fail() {
        // DestinationRule's `matchLabels` is not ServiceEntry's selector shape.
        let selector = json!({"hosts": ["a"], "workloadSelector": {"matchLabels": {"app": "x"}}});
        let err =
            serde_json::from_value::<ServiceEntrySpec>(selector).expect_err("must be rejected");
        assert!(err.to_string().contains("matchLabels"), "{err}");
        let endpoint_port =
            json!({"hosts": ["a"], "endpoints": [{"address": "1.1.1.1", "port": 80}]});
        assert!(serde_json::from_value::<ServiceEntrySpec>(endpoint_port).is_err());
        for wrong in [
            json!({"hosts": "a"}),
            json!({"hosts": ["a"], "ports": [{"number": "80", "name": "http"}]}),
            json!({"hosts": ["a"], "endpoints": [{"address": "1.1.1.1", "ports": {"http": -1}}]}),
            json!({"hosts": ["a"], "endpoints": [{"address": "1.1.1.1", "ports": [80]}]}),
            json!({"hosts": ["a"], "endpoints": [{"address": "1.1.1.1", "weight": "1"}]}),
            json!({"hosts": ["a"], "workloadSelector": {"labels": {"app": 1}}}),
        ] {
            assert!(
                serde_json::from_value::<ServiceEntrySpec>(wrong.clone()).is_err(),
                "{wrong}"
            );
        }
    }

    #[test]
    fn crd_metadata_matches_istio() {
        let crd = ServiceEntry::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("serviceentries.networking.istio.io")
        );
        assert_eq!(crd.spec.names.short_names, Some(vec!["se".to_string()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1");
        let columns = version
            .additional_printer_columns
            .as_ref()
            .expect("must be present");
        let names: Vec<_> = columns
            .iter()
            .map(|c| (c.name.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("Hosts", ".spec.hosts"),
                ("Location", ".spec.location"),
                ("Resolution", ".spec.resolution"),
                ("Age", ".metadata.creationTimestamp")
            ]
        );
    }
}
