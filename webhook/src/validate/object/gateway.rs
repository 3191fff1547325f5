//! Gateway rules: servers with valid, uniquely named ports, hosts with an
//! optional `namespace/` prefix, and TLS settings that fit the protocol.

use std::collections::HashMap;

use meshkeeper_crds::networking::common::Port;
use meshkeeper_crds::networking::gateway::{GatewaySpec, Server, ServerTlsMode, ServerTlsSettings};

use super::common::{self as c, Findings, HostRules};

pub const SERVERS: &str = "MK0140";
pub const SERVER_PORT: &str = "MK0141";
pub const SERVER_TLS: &str = "MK0142";

/// Protocols a Gateway server may listen with. Istio also parses MYSQL and
/// REDIS, so they are accepted too.
pub const PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS", "MYSQL", "REDIS",
];

pub fn validate(spec: &GatewaySpec, out: &mut Findings) {
    let servers = spec.servers.as_deref().unwrap_or_default();
    if servers.is_empty() {
        out.error(
            SERVERS,
            "spec.servers",
            "a Gateway needs at least one server (a port and the hosts it exposes)",
        );
    }
    let mut port_names: HashMap<&str, usize> = HashMap::new();
    for (i, server) in servers.iter().enumerate() {
        let path = format!("spec.servers[{i}]");
        check_server(server, &path, out);
        if let Some(name) = server.port.as_ref().and_then(|p| p.name.as_deref())
            && !name.is_empty()
        {
            if let Some(first) = port_names.get(name) {
                out.error(
                    SERVER_PORT,
                    format!("{path}.port.name"),
                    format!("port name `{name}` is already used by spec.servers[{first}]; port names must be unique across servers"),
                );
            } else {
                port_names.insert(name, i);
            }
        }
    }
}

fn check_server(server: &Server, path: &str, out: &mut Findings) {
    let hosts = server.hosts.as_deref().unwrap_or_default();
    if hosts.is_empty() {
        out.error(
            SERVERS,
            format!("{path}.hosts"),
            "a server needs at least one host, e.g. `*`, `example.com` or `ns/*.example.com`",
        );
    }
    for (j, host) in hosts.iter().enumerate() {
        check_server_host(host, &format!("{path}.hosts[{j}]"), out);
    }
    let protocol = match &server.port {
        None => {
            out.error(
                SERVER_PORT,
                format!("{path}.port"),
                "a server needs a port with number, protocol and name",
            );
            None
        }
        Some(port) => check_port(port, &format!("{path}.port"), out),
    };
    check_tls(server.tls.as_ref(), protocol.as_deref(), path, out);
}

/// `host`, or `namespace/host` where the namespace is `.`, `*` or a name.
fn check_server_host(host: &str, path: &str, out: &mut Findings) {
    let name = match host.split_once('/') {
        Some((ns, name)) => {
            if ns != "." && ns != "*" && !c::is_dns1123_label(ns) {
                out.error(
                    c::HOST,
                    path,
                    format!("namespace `{ns}` in `{host}` is not `.`, `*` or a DNS-1123 label"),
                );
            }
            name
        }
        None => host,
    };
    c::check_host(
        name,
        HostRules {
            star: true,
            ip: false,
        },
        path,
        out,
    );
}

/// Checks the port and returns its protocol, upper-cased, if valid.
fn check_port(port: &Port, path: &str, out: &mut Findings) -> Option<String> {
    match port.number {
        None => out.error(
            SERVER_PORT,
            format!("{path}.number"),
            "port.number is required (1-65535)",
        ),
        Some(n) => c::check_port_number(n, &format!("{path}.number"), out),
    }
    if port.target_port.is_some() {
        out.error(
            SERVER_PORT,
            format!("{path}.targetPort"),
            "targetPort has no effect on a Gateway server; remove it",
        );
    }
    if port.name.as_deref().is_none_or(str::is_empty) {
        out.error(
            SERVER_PORT,
            format!("{path}.name"),
            "port.name is required and must be unique across the Gateway's servers",
        );
    }
    let protocol = port.protocol.as_deref().unwrap_or_default();
    let upper = protocol.to_ascii_uppercase();
    if PROTOCOLS.contains(&upper.as_str()) {
        Some(upper)
    } else {
        out.error(
            SERVER_PORT,
            format!("{path}.protocol"),
            format!(
                "protocol `{protocol}` is not supported: use one of {}",
                PROTOCOLS.join(", ")
            ),
        );
        None
    }
}

fn check_tls(
    tls: Option<&ServerTlsSettings>,
    protocol: Option<&str>,
    path: &str,
    out: &mut Findings,
) {
    let tpath = format!("{path}.tls");
    let terminates = matches!(protocol, Some("HTTPS" | "TLS"));
    let Some(tls) = tls else {
        if terminates {
            out.error(
                SERVER_TLS,
                tpath,
                format!(
                    "a {} server needs tls settings (mode SIMPLE, MUTUAL, PASSTHROUGH, ...)",
                    protocol.unwrap_or_default()
                ),
            );
        }
        return;
    };
    let plain_http = matches!(protocol, Some("HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB"));
    let has_file = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if plain_http
        && (!matches!(tls.mode, None | Some(ServerTlsMode::Passthrough))
            || has_file(&tls.server_certificate)
            || has_file(&tls.private_key)
            || has_file(&tls.ca_certificates))
    {
        out.error(
            SERVER_TLS,
            &tpath,
            "a plain-text HTTP server only takes tls.httpsRedirect; use protocol HTTPS to terminate TLS",
        );
    } else if !terminates && !plain_http && protocol.is_some() {
        out.error(
            SERVER_TLS,
            &tpath,
            format!(
                "a {} server cannot have tls settings; use protocol HTTPS or TLS",
                protocol.unwrap_or_default()
            ),
        );
    }
    // Istio only warns (and says nothing for the HTTP family): the redirect
    // is simply not sent where the server is not plain-text HTTP.
    if tls.https_redirect == Some(true) && protocol.is_some() && !plain_http {
        out.warning(
            SERVER_TLS,
            format!("{tpath}.httpsRedirect"),
            format!(
                "httpsRedirect only applies to plain-text HTTP servers, this one is {}, so no \
                 redirect is sent; remove it",
                protocol.unwrap_or_default()
            ),
        );
    }
    if terminates && tls.mode.is_none() {
        out.warning(
            SERVER_TLS,
            format!("{tpath}.mode"),
            "tls.mode is not set and defaults to PASSTHROUGH; set it explicitly (SIMPLE to terminate TLS)",
        );
    }
    let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let credential = has(&tls.credential_name);
    let credential_names = tls.credential_names.as_deref().unwrap_or_default();
    if credential && !credential_names.is_empty() {
        out.error(
            SERVER_TLS,
            &tpath,
            "set either credentialName or credentialNames, not both",
        );
    }
    if credential_names.len() > 2 {
        out.error(
            SERVER_TLS,
            format!("{tpath}.credentialNames"),
            format!(
                "{} credentialNames are listed; at most 2 are allowed (one RSA and one ECDSA certificate)",
                credential_names.len()
            ),
        );
    }
    let uses_credential = credential || !credential_names.is_empty();
    let files: Vec<&str> = [
        (has(&tls.server_certificate), "serverCertificate"),
        (has(&tls.private_key), "privateKey"),
        (has(&tls.ca_certificates), "caCertificates"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    match tls.mode {
        Some(ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual) => {
            let mode = tls_mode_name(tls.mode);
            // Two certificate sources (a credential and a certificate with
            // its key) are refused, as in Istio; a lone file beside the
            // credential is ignored (the credential carries the certificate,
            // key and CA), which Istio admits: a warning.
            let key_pair = has(&tls.server_certificate) && has(&tls.private_key);
            if uses_credential && key_pair {
                out.error(
                    SERVER_TLS,
                    &tpath,
                    "credentialName and serverCertificate/privateKey are both set: use the \
                     credential or the files, not both",
                );
            } else if uses_credential && !files.is_empty() {
                out.warning(
                    SERVER_TLS,
                    &tpath,
                    format!(
                        "{} set beside a credentialName, which supplies the certificate, key and \
                         CA, so they are ignored; remove them",
                        files.join(", ")
                    ),
                );
            }
            let has_cert_list = tls.tls_certificates.as_ref().is_some_and(|l| !l.is_empty());
            if !uses_credential && !has_cert_list {
                for (field, value) in [
                    ("serverCertificate", &tls.server_certificate),
                    ("privateKey", &tls.private_key),
                ] {
                    if !has(value) {
                        out.error(
                            SERVER_TLS,
                            format!("{tpath}.{field}"),
                            format!("{mode} TLS needs a credentialName, or serverCertificate and privateKey; {field} is missing"),
                        );
                    }
                }
                if tls.mode != Some(ServerTlsMode::Simple) && !has(&tls.ca_certificates) {
                    out.error(
                        SERVER_TLS,
                        format!("{tpath}.caCertificates"),
                        format!("{mode} TLS verifies clients and needs caCertificates (or a credentialName with a CA)"),
                    );
                }
            }
        }
        Some(ServerTlsMode::IstioMutual) if uses_credential || !files.is_empty() => out.error(
            SERVER_TLS,
            &tpath,
            "mode ISTIO_MUTUAL uses the workload certificate and takes no credentialName or certificate files",
        ),
        _ => {}
    }
}

fn tls_mode_name(mode: Option<ServerTlsMode>) -> &'static str {
    match mode {
        Some(ServerTlsMode::Simple) => "SIMPLE",
        Some(ServerTlsMode::Mutual) => "MUTUAL",
        Some(ServerTlsMode::OptionalMutual) => "OPTIONAL_MUTUAL",
        Some(ServerTlsMode::IstioMutual) => "ISTIO_MUTUAL",
        Some(ServerTlsMode::AutoPassthrough) => "AUTO_PASSTHROUGH",
        Some(ServerTlsMode::Passthrough) | None => "PASSTHROUGH",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::validate::Severity;
    use crate::validate::object::test_support::{assert_finding, assert_no_errors, findings};

    fn gw(servers: Value) -> Vec<crate::validate::Finding> {
        findings(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw"},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers}
        }))
    }

    fn http(name: &str) -> Value {
        json!({"port": {"number": 80, "name": name, "protocol": "HTTP"}, "hosts": ["*"]})
    }

    #[test]
    fn servers_are_required() {
        assert_finding(
            &gw(json!([])),
            SERVERS,
            Severity::Error,
            "spec.servers",
            "at least one server",
        );
        assert_no_errors(&gw(json!([http("http")])));
    }

    #[test]
    fn port_names_are_required_and_unique() {
        let found = gw(
            json!([http("http"), http("http"), {"port": {"number": 81, "protocol": "http"}, "hosts": ["*"]}]),
        );
        assert_finding(
            &found,
            SERVER_PORT,
            Severity::Error,
            "spec.servers[1].port.name",
            "spec.servers[0]",
        );
        assert_finding(
            &found,
            SERVER_PORT,
            Severity::Error,
            "spec.servers[2].port.name",
            "required",
        );
        assert_no_errors(&gw(json!([http("a"), http("b")])));
    }

    #[test]
    fn port_number_and_protocol_are_checked() {
        let found =
            gw(json!([{"port": {"number": 0, "name": "x", "protocol": "QUIC"}, "hosts": ["*"]}]));
        assert_finding(
            &found,
            c::PORT,
            Severity::Error,
            "spec.servers[0].port.number",
            "port 0",
        );
        assert_finding(
            &found,
            SERVER_PORT,
            Severity::Error,
            "spec.servers[0].port.protocol",
            "`QUIC`",
        );
        assert_no_errors(&gw(
            json!([{"port": {"number": 80, "name": "x", "protocol": "grpc-web"}, "hosts": ["*"]}]),
        ));
    }

    #[test]
    fn hosts_are_required_and_may_carry_a_namespace() {
        let found =
            gw(json!([{"port": {"number": 80, "name": "h", "protocol": "HTTP"}, "hosts": []}]));
        assert_finding(
            &found,
            SERVERS,
            Severity::Error,
            "spec.servers[0].hosts",
            "at least one host",
        );
        let found = gw(
            json!([{"port": {"number": 80, "name": "h", "protocol": "HTTP"}, "hosts": ["Bad_NS/foo.com", "ns/foo.*"]}]),
        );
        assert_finding(
            &found,
            c::HOST,
            Severity::Error,
            "spec.servers[0].hosts[0]",
            "`Bad_NS`",
        );
        assert_finding(
            &found,
            c::HOST,
            Severity::Error,
            "spec.servers[0].hosts[1]",
            "`foo.*`",
        );
        assert_no_errors(&gw(
            json!([{"port": {"number": 80, "name": "h", "protocol": "HTTP"}, "hosts": ["./foo.com", "*/*.example.com", "prod/*"]}]),
        ));
    }

    #[test]
    fn https_needs_tls_and_credentials() {
        let https = |tls: Value| json!([{"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"], "tls": tls}]);
        let found = gw(
            json!([{"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"]}]),
        );
        assert_finding(
            &found,
            SERVER_TLS,
            Severity::Error,
            "spec.servers[0].tls",
            "needs tls settings",
        );
        let found = gw(https(
            json!({"mode": "SIMPLE", "serverCertificate": "/c.pem"}),
        ));
        assert_finding(
            &found,
            SERVER_TLS,
            Severity::Error,
            "spec.servers[0].tls.privateKey",
            "privateKey is missing",
        );
        let found = gw(https(json!({"mode": "SIMPLE", "credentialName": "c",
            "serverCertificate": "/c.pem", "privateKey": "/k.pem"})));
        assert_finding(
            &found,
            SERVER_TLS,
            Severity::Error,
            "spec.servers[0].tls",
            "not both",
        );
        // A lone file beside the credential is ignored; Istio admits it.
        let found = gw(https(json!({"mode": "MUTUAL", "credentialName": "c",
            "caCertificates": "/ca.pem"})));
        assert_no_errors(&found);
        assert_finding(
            &found,
            SERVER_TLS,
            Severity::Warning,
            "spec.servers[0].tls",
            "caCertificates set beside a credentialName",
        );
        let found = gw(https(
            json!({"mode": "SIMPLE", "credentialNames": ["a", "b", "c"]}),
        ));
        assert_finding(
            &found,
            SERVER_TLS,
            Severity::Error,
            "spec.servers[0].tls.credentialNames",
            "at most 2",
        );
        let found = gw(https(
            json!({"mode": "MUTUAL", "serverCertificate": "/c", "privateKey": "/k"}),
        ));
        assert_finding(
            &found,
            SERVER_TLS,
            Severity::Error,
            "spec.servers[0].tls.caCertificates",
            "MUTUAL",
        );
        assert_no_errors(&gw(https(json!({"mode": "SIMPLE", "credentialName": "c"}))));
        assert_no_errors(&gw(https(
            json!({"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k"}),
        )));
        assert_no_errors(&gw(https(
            json!({"mode": "SIMPLE", "credentialNames": ["rsa", "ecdsa"]}),
        )));
    }

    #[test]
    fn https_redirect_elsewhere_than_http_only_warns() {
        let found = gw(
            json!([{"port": {"number": 443, "name": "t", "protocol": "TLS"}, "hosts": ["*"], "tls": {"mode": "PASSTHROUGH", "httpsRedirect": true}}]),
        );
        // Istio admits it with a warning: no redirect is sent.
        assert_no_errors(&found);
        assert_finding(
            &found,
            SERVER_TLS,
            Severity::Warning,
            "spec.servers[0].tls.httpsRedirect",
            "only applies to plain-text HTTP",
        );
        for protocol in ["HTTP", "HTTP2", "GRPC"] {
            let found = gw(
                json!([{"port": {"number": 80, "name": "h", "protocol": protocol},
                "hosts": ["*"], "tls": {"httpsRedirect": true}}]),
            );
            assert_eq!(found, vec![], "{protocol}");
        }
    }

    #[test]
    fn tls_on_plain_text_ports() {
        let found = gw(
            json!([{"port": {"number": 80, "name": "h", "protocol": "HTTP"}, "hosts": ["*"], "tls": {"mode": "SIMPLE", "credentialName": "c"}}]),
        );
        assert_finding(
            &found,
            SERVER_TLS,
            Severity::Error,
            "spec.servers[0].tls",
            "only takes tls.httpsRedirect",
        );
        let found = gw(
            json!([{"port": {"number": 31400, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"], "tls": {"mode": "SIMPLE", "credentialName": "c"}}]),
        );
        assert_finding(
            &found,
            SERVER_TLS,
            Severity::Error,
            "spec.servers[0].tls",
            "TCP server cannot have tls",
        );
        let found = gw(
            json!([{"port": {"number": 80, "name": "h", "protocol": "HTTP", "targetPort": 8080}, "hosts": ["*"]}]),
        );
        assert_finding(
            &found,
            SERVER_PORT,
            Severity::Error,
            "spec.servers[0].port.targetPort",
            "no effect",
        );
    }

    #[test]
    fn missing_mode_on_https_is_a_warning() {
        let found = gw(
            json!([{"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"], "tls": {"credentialName": "c"}}]),
        );
        assert_finding(
            &found,
            SERVER_TLS,
            Severity::Warning,
            "spec.servers[0].tls.mode",
            "PASSTHROUGH",
        );
    }
}
