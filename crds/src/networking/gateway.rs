//! `Gateway`: a load balancer at the edge of the mesh (istio/api
//! `networking/v1alpha3/gateway.proto`): the ports it listens on, the hosts
//! it exposes on each, and how it terminates or passes through TLS.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Labels, Port};

// Istio's Gateway CRD declares no printer columns, so none are declared here
// either (kubectl then shows NAME and AGE).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.istio.io",
    version = "v1",
    kind = "Gateway",
    namespaced,
    status = "crate::schema::FreeformObject",
    shortname = "gw",
    category = "istio-io",
    category = "networking-istio-io",
    schema = "derived"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewaySpec {
    /// The listeners of the gateway. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<Server>>,
    /// Labels of the gateway pods this configuration applies to, looked up
    /// in the Gateway's own namespace. Required; absent means every workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Labels>,
}

/// One listener of the gateway: a port, the hosts served on it, and its TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// The port to listen on. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// Address or Unix domain socket (`unix:///path`, `unix://@name`) to
    /// bind the listener to; the port number is 0 for sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// Hosts served, each `[namespace/]dnsName`; the namespace (`*`, `.` or
    /// a name) limits which VirtualServices may bind. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// TLS termination, passthrough or HTTPS redirect for this listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Loopback address or Unix socket to forward to by default. Istio
    /// accepts but does not implement it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint: Option<String>,
    /// Optional name, unique among the servers; used e.g. as a stats prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// TLS settings of a gateway server. The server certificate comes from at
/// most one of: the file paths (`serverCertificate`/`privateKey`),
/// `credentialName`, `credentialNames`, `tlsCertificates`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// Answer plain HTTP with a 301 redirect to HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<bool>,
    /// How the listener handles TLS; `PASSTHROUGH` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ServerTlsMode>,
    /// Server certificate file; for `SIMPLE`/`MUTUAL` without a credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<String>,
    /// Server private key file; for `SIMPLE`/`MUTUAL` without a credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// CA bundle file that verifies client certificates; for `MUTUAL` and
    /// `OPTIONAL_MUTUAL` without a credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// Certificate revocation list file checked against client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
    /// Secret (Kubernetes) holding the server key and certificate, and the
    /// client CA unless `caCertCredentialName` is set. At most one of
    /// `credentialName`, `credentialNames`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// Like `credentialName`, for a server presenting several certificates
    /// (RSA and ECDSA); 1 or 2 entries. At most one of `credentialNames`,
    /// `tlsCertificates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_names: Option<Vec<String>>,
    /// Secret or ConfigMap holding only the CA certificates that verify
    /// clients in mutual TLS (Istio 1.28+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_credential_name: Option<String>,
    /// File-based certificates for a server presenting several (RSA and
    /// ECDSA); 1 or 2 entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_certificates: Option<Vec<TlsCertificate>>,
    /// SANs a client certificate must carry (one of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_alt_names: Option<Vec<String>>,
    /// Allowed client certificates by base64 SHA-256 of their SPKI; a match
    /// here or in `verifyCertificateHash` accepts the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_certificate_spki: Option<Vec<String>>,
    /// Allowed client certificates by hex SHA-256 of the whole certificate
    /// (plain or colon-separated hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_certificate_hash: Option<Vec<String>>,
    /// Lowest TLS version accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_protocol_version: Option<TlsProtocol>,
    /// Highest TLS version accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_protocol_version: Option<TlsProtocol>,
    /// Cipher suites allowed; Envoy's defaults when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher_suites: Option<Vec<String>>,
    /// Verify a presented client certificate but let the connection through
    /// when verification fails (Gateway API's `AllowInsecureFallback`): the
    /// backend can still judge the certificate forwarded in
    /// `x-forwarded-client-cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// Istio's `ServerTLSSettings.TLSmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    /// Do not terminate; route by the client's SNI through VirtualService
    /// TLS routes. The proto default.
    Passthrough,
    /// Terminate TLS with the server certificate.
    Simple,
    /// Terminate TLS and require a client certificate.
    Mutual,
    /// Do not terminate; the SNI itself names the destination cluster, no
    /// VirtualService needed (east-west gateways, Istio mTLS on both ends).
    AutoPassthrough,
    /// Terminate mutual TLS with the certificates Istio issues to the
    /// gateway workload; the other TLS fields stay empty.
    IstioMutual,
    /// Terminate TLS and verify a client certificate if one is presented.
    OptionalMutual,
}

/// Istio's `ServerTLSSettings.TLSProtocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TlsProtocol {
    /// Envoy's choice.
    #[serde(rename = "TLS_AUTO")]
    TlsAuto,
    #[serde(rename = "TLSV1_0")]
    TlsV1_0,
    #[serde(rename = "TLSV1_1")]
    TlsV1_1,
    #[serde(rename = "TLSV1_2")]
    TlsV1_2,
    #[serde(rename = "TLSV1_3")]
    TlsV1_3,
}

/// One certificate of a server that presents several (RSA and ECDSA).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    /// Server certificate file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<String>,
    /// Private key file of that certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// CA bundle file that verifies client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;
    use crate::parse::{self, ParseError};

    fn round_trip(input: &serde_json::Value) -> serde_json::Value {
        let spec: GatewaySpec = serde_json::from_value(input.clone()).expect("parse");
        serde_json::to_value(&spec).expect("serialize")
    }

    fn object(spec: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "istio-ingress"},
            "spec": spec
        })
    }

    /// Sets every field of every message in this file, and of `Port`.
    fn full_spec() -> serde_json::Value {
        json!({
            "selector": {"istio": "ingressgateway", "app": "edge"},
            "servers": [
                {
                    "port": {"number": 443, "protocol": "HTTPS", "name": "https-443", "targetPort": 8443},
                    "bind": "0.0.0.0",
                    "hosts": ["prod/*.example.com", "./api.example.com", "*/shop.example.com"],
                    "tls": {
                        "httpsRedirect": true,
                        "mode": "OPTIONAL_MUTUAL",
                        "serverCertificate": "/etc/certs/server.pem",
                        "privateKey": "/etc/certs/key.pem",
                        "caCertificates": "/etc/certs/ca.pem",
                        "caCrl": "/etc/certs/crl.pem",
                        "credentialName": "edge-cert",
                        "credentialNames": ["edge-rsa", "edge-ecdsa"],
                        "caCertCredentialName": "client-ca",
                        "tlsCertificates": [
                            {
                                "serverCertificate": "/etc/certs/rsa.pem",
                                "privateKey": "/etc/certs/rsa-key.pem",
                                "caCertificates": "/etc/certs/rsa-ca.pem"
                            },
                            {
                                "serverCertificate": "/etc/certs/ecdsa.pem",
                                "privateKey": "/etc/certs/ecdsa-key.pem",
                                "caCertificates": "/etc/certs/ecdsa-ca.pem"
                            }
                        ],
                        "subjectAltNames": ["spiffe://cluster.local/ns/a/sa/client"],
                        "verifyCertificateSpki": ["Tm90IGEgcmVhbCBoYXNoIGJ1dCBiYXNlNjQ="],
                        "verifyCertificateHash": ["AB:CD:EF:01", "abcdef01"],
                        "minProtocolVersion": "TLSV1_2",
                        "maxProtocolVersion": "TLSV1_3",
                        "cipherSuites": ["ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"],
                        "insecureSkipVerify": true
                    },
                    "defaultEndpoint": "127.0.0.1:8080",
                    "name": "https-edge"
                },
                {
                    "port": {"number": 0, "protocol": "TCP", "name": "uds", "targetPort": 0},
                    "bind": "unix:///var/run/edge.sock",
                    "hosts": [],
                    "tls": {
                        "httpsRedirect": false,
                        "mode": "PASSTHROUGH",
                        "credentialNames": [],
                        "tlsCertificates": [{}],
                        "subjectAltNames": [],
                        "verifyCertificateSpki": [],
                        "verifyCertificateHash": [],
                        "cipherSuites": []
                    },
                    "defaultEndpoint": "",
                    "name": ""
                },
                {"port": {}, "tls": {}}
            ]
        })
    }

    #[test]
    fn fully_populated_spec_round_trips_unchanged() {
        let input = full_spec();
        assert_eq!(round_trip(&input), input);
    }

    #[test]
    fn fully_populated_object_round_trips_unchanged() {
        let input = object(full_spec());
        let gw: Gateway = parse::from_value(&input).expect("parse");
        let tls = gw.spec.servers.as_ref().expect("servers")[0]
            .tls
            .as_ref()
            .expect("tls");
        assert_eq!(tls.ca_cert_credential_name.as_deref(), Some("client-ca"));
        assert_eq!(tls.mode, Some(ServerTlsMode::OptionalMutual));
        assert_eq!(serde_json::to_value(&gw).expect("serialize"), input);
    }

    #[test]
    fn explicit_empty_values_survive() {
        let input = json!({
            "selector": {},
            "servers": [{
                "port": {"number": 0, "targetPort": 0, "name": "", "protocol": ""},
                "hosts": [],
                "tls": {"httpsRedirect": false, "credentialNames": [], "tlsCertificates": [],
                        "cipherSuites": [], "caCertCredentialName": ""}
            }]
        });
        assert_eq!(round_trip(&input), input);
        let spec: GatewaySpec = serde_json::from_value(input).expect("parse");
        assert_eq!(spec.selector, Some(Labels::new()));
        let server = &spec.servers.as_ref().expect("servers")[0];
        assert_eq!(server.hosts, Some(vec![]));
        let tls = server.tls.as_ref().expect("tls");
        assert_eq!(tls.https_redirect, Some(false));
        assert_eq!(tls.tls_certificates, Some(vec![]));
        let port = server.port.as_ref().expect("port");
        assert_eq!((port.number, port.target_port), (Some(0), Some(0)));

        let empty = json!({"servers": []});
        assert_eq!(round_trip(&empty), empty);
        assert_eq!(round_trip(&json!({})), json!({}));
    }

    #[test]
    fn every_tls_mode_uses_istio_spelling() {
        for (name, value) in [
            ("PASSTHROUGH", ServerTlsMode::Passthrough),
            ("SIMPLE", ServerTlsMode::Simple),
            ("MUTUAL", ServerTlsMode::Mutual),
            ("AUTO_PASSTHROUGH", ServerTlsMode::AutoPassthrough),
            ("ISTIO_MUTUAL", ServerTlsMode::IstioMutual),
            ("OPTIONAL_MUTUAL", ServerTlsMode::OptionalMutual),
        ] {
            assert_eq!(serde_json::to_value(value).expect("serialize"), json!(name));
            assert_eq!(
                serde_json::from_value::<ServerTlsMode>(json!(name)).expect("parse"),
                value
            );
            let spec = json!({"servers": [{"port": {"number": 443}, "hosts": ["*"], "tls": {"mode": name}}]});
            assert_eq!(round_trip(&spec), spec);
        }
    }

    #[test]
    fn every_tls_protocol_uses_istio_spelling() {
        for (name, value) in [
            ("TLS_AUTO", TlsProtocol::TlsAuto),
            ("TLSV1_0", TlsProtocol::TlsV1_0),
            ("TLSV1_1", TlsProtocol::TlsV1_1),
            ("TLSV1_2", TlsProtocol::TlsV1_2),
            ("TLSV1_3", TlsProtocol::TlsV1_3),
        ] {
            assert_eq!(serde_json::to_value(value).expect("serialize"), json!(name));
            assert_eq!(
                serde_json::from_value::<TlsProtocol>(json!(name)).expect("parse"),
                value
            );
            let spec = json!({"servers": [{"tls": {"minProtocolVersion": name, "maxProtocolVersion": name}}]});
            assert_eq!(round_trip(&spec), spec);
        }
    }

    #[test]
    fn unknown_tls_mode_names_path_and_value() {
        let input = object(json!({
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]},
                {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"],
                 "tls": {"mode": "STRICT"}}
            ]
        }));
        let err = parse::from_value::<Gateway>(&input).expect_err("must be rejected");
        assert_eq!(err.path(), Some("spec.servers[1].tls.mode"));
        assert!(err.to_string().contains("STRICT"), "{err}");
        assert!(err.to_string().contains("OPTIONAL_MUTUAL"), "{err}");

        // Enum names are case-sensitive, as in Istio.
        let lower = object(json!({"servers": [{"tls": {"mode": "simple"}}]}));
        let err = parse::from_value::<Gateway>(&lower).expect_err("must be rejected");
        assert_eq!(err.path(), Some("spec.servers[0].tls.mode"));
        assert!(err.to_string().contains("simple"), "{err}");

        let version = object(json!({"servers": [{"tls": {"maxProtocolVersion": "TLSV1_4"}}]}));
        let err = parse::from_value::<Gateway>(&version).expect_err("must be rejected");
        assert_eq!(err.path(), Some("spec.servers[0].tls.maxProtocolVersion"));
        assert!(err.to_string().contains("TLSV1_4"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        for (spec, path, field) in [
            (
                json!({"servers": [{"tls": {"mode": "MUTUAL", "caCertCredential": "ca"}}]}),
                "spec.servers[0].tls.caCertCredential",
                "caCertCredential",
            ),
            (
                json!({"servers": [{"port": {"number": 80, "portName": "http"}}]}),
                "spec.servers[0].port.portName",
                "portName",
            ),
            (
                json!({"servers": [{"tls": {"tlsCertificates": [{"certificate": "x"}]}}]}),
                "spec.servers[0].tls.tlsCertificates[0].certificate",
                "certificate",
            ),
            (
                json!({"servers": [{"host": ["*"]}]}),
                "spec.servers[0].host",
                "host",
            ),
            (
                json!({"workloadSelector": {"labels": {"istio": "ingressgateway"}}}),
                "spec.workloadSelector",
                "workloadSelector",
            ),
        ] {
            let err = parse::from_value::<Gateway>(&object(spec)).expect_err("must be rejected");
            assert_eq!(err.path(), Some(path), "{err}");
            assert!(
                err.to_string()
                    .contains(&format!("unknown field `{field}`")),
                "{err}"
            );
        }
    }

    #[test]
    fn wrong_types_fail_with_their_path() {
        for (spec, path) in [
            (json!({"servers": {"port": {"number": 80}}}), "spec.servers"),
            (
                json!({"servers": [{"port": {"number": "443"}}]}),
                "spec.servers[0].port.number",
            ),
            (
                json!({"servers": [{"port": {"number": -1}}]}),
                "spec.servers[0].port.number",
            ),
            (
                json!({"servers": [{"port": {"targetPort": 4294967296_u64}}]}),
                "spec.servers[0].port.targetPort",
            ),
            (
                json!({"servers": [{"hosts": "*"}]}),
                "spec.servers[0].hosts",
            ),
            (
                json!({"servers": [{"tls": {"httpsRedirect": "true"}}]}),
                "spec.servers[0].tls.httpsRedirect",
            ),
            (
                json!({"servers": [{"tls": {"credentialNames": "a"}}]}),
                "spec.servers[0].tls.credentialNames",
            ),
            (json!({"selector": {"istio": 1}}), "spec.selector.istio"),
        ] {
            let err = parse::from_value::<Gateway>(&object(spec.clone())).expect_err("must fail");
            assert!(
                matches!(&err, ParseError::Field { path: p, .. } if p == path),
                "{spec}: {err}"
            );
        }
    }

    #[test]
    fn istio_sample_yaml_parses() {
        // The shapes of Istio's bookinfo and secure-ingress samples.
        let docs = parse::yaml_documents(
            r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 8080
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: mygateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    tls:
      mode: MUTUAL
      credentialName: httpbin-credential
      caCertCredentialName: httpbin-ca
    hosts:
    - httpbin.example.com
"#,
        )
        .expect("yaml");
        assert_eq!(docs.len(), 2);
        for doc in &docs {
            let gw: Gateway = parse::from_value(doc).expect("parse");
            assert_eq!(serde_json::to_value(&gw).expect("serialize"), *doc);
        }
        let gw: Gateway = parse::from_value(&docs[1]).expect("parse");
        let server = &gw.spec.servers.expect("servers")[0];
        let tls = server.tls.as_ref().expect("tls");
        assert_eq!(tls.mode, Some(ServerTlsMode::Mutual));
        assert_eq!(tls.ca_cert_credential_name.as_deref(), Some("httpbin-ca"));
        assert_eq!(
            server.port.as_ref().expect("port").protocol.as_deref(),
            Some("HTTPS")
        );
    }

    #[test]
    fn crd_metadata_matches_istio() {
        let crd = Gateway::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("gateways.networking.istio.io")
        );
        assert_eq!(crd.spec.group, "networking.istio.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        let names = &crd.spec.names;
        assert_eq!(names.kind, "Gateway");
        assert_eq!(names.plural, "gateways");
        assert_eq!(names.singular.as_deref(), Some("gateway"));
        assert_eq!(names.short_names, Some(vec!["gw".to_string()]));
        assert_eq!(
            names.categories,
            Some(vec![
                "istio-io".to_string(),
                "networking-istio-io".to_string()
            ])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1");
        assert!(version.served && version.storage);
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        // Istio's Gateway CRD has no printer columns.
        assert_eq!(version.additional_printer_columns, None);
    }

    #[test]
    fn crd_schema_carries_the_newest_fields() {
        let crd = Gateway::crd();
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("schema"),
        )
        .expect("schema as JSON");
        let tls = &schema["properties"]["spec"]["properties"]["servers"]["items"]["properties"]["tls"]
            ["properties"];
        assert_eq!(tls["caCertCredentialName"]["type"], json!("string"));
        assert_eq!(tls["tlsCertificates"]["type"], json!("array"));
        let modes = tls["mode"]["enum"].as_array().expect("mode enum");
        assert!(modes.contains(&json!("OPTIONAL_MUTUAL")), "{modes:?}");
        assert_eq!(modes.len(), 6, "{modes:?}");
        let port = &schema["properties"]["spec"]["properties"]["servers"]["items"]["properties"]["port"]
            ["properties"];
        assert!(port["targetPort"].is_object(), "{port}");
    }
}
