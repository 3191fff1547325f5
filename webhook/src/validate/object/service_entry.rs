//! ServiceEntry rules: hosts, addresses, ports, and the combinations of
//! resolution, endpoints and workload selector that Istio can serve.

use std::collections::{HashMap, HashSet};

use meshkeeper_crds::networking::service_entry::{Resolution, ServiceEntrySpec, WorkloadEndpoint};

use super::common::{self as c, Findings, HostRules};

pub const RESOLUTION: &str = "MK0150";
pub const PORTS: &str = "MK0151";
pub const ADDRESSES: &str = "MK0152";
pub const ENDPOINT: &str = "MK0153";

/// Service port protocols a ServiceEntry may declare (Istio's parser).
const PROTOCOLS: &[&str] = &[
    "HTTP",
    "HTTPS",
    "GRPC",
    "GRPC-WEB",
    "HTTP2",
    "HTTP_PROXY",
    "MONGO",
    "MYSQL",
    "REDIS",
    "TCP",
    "TLS",
    "UDP",
];

pub fn validate(spec: &ServiceEntrySpec, namespace: &str, out: &mut Findings) {
    let hosts = spec.hosts.as_deref().unwrap_or_default();
    if hosts.is_empty() {
        out.error(
            c::HOSTS_REQUIRED,
            "spec.hosts",
            "a ServiceEntry needs at least one host, e.g. `api.example.com` or `*.example.com`",
        );
    }
    for (i, host) in hosts.iter().enumerate() {
        c::check_host(host, HostRules::default(), &format!("spec.hosts[{i}]"), out);
    }
    for (i, a) in spec.addresses.iter().flatten().enumerate() {
        if !c::is_ip_or_cidr(a) {
            out.error(
                ADDRESSES,
                format!("spec.addresses[{i}]"),
                format!(
                    "`{a}` is not an IP address or CIDR block (e.g. `10.0.0.1` or `10.0.0.0/24`)"
                ),
            );
        }
    }
    let port_names = check_ports(spec, out);
    let endpoints = spec.endpoints.as_deref().unwrap_or_default();
    if !endpoints.is_empty() && spec.workload_selector.is_some() {
        out.error(
            RESOLUTION,
            "spec.workloadSelector",
            "endpoints and workloadSelector cannot both be set: list endpoints or select WorkloadEntries/pods, not both",
        );
    }
    let resolution = spec.resolution.unwrap_or(Resolution::None);
    check_resolution(spec, resolution, hosts, endpoints, out);
    check_resolution_fits_addresses_and_ports(spec, resolution, hosts, out);
    for (i, ep) in endpoints.iter().enumerate() {
        check_endpoint(
            ep,
            resolution,
            &port_names,
            &format!("spec.endpoints[{i}]"),
            out,
        );
    }
    c::check_export_to(spec.export_to.as_ref(), namespace, true, out);
}

/// Checks the service ports and returns their names. No ports at all is
/// fine: Istio accepts such a ServiceEntry (it registers the hosts, e.g. for
/// DNS capture or ambient), so meshkeeper does too.
fn check_ports<'a>(spec: &'a ServiceEntrySpec, out: &mut Findings) -> HashSet<&'a str> {
    let ports = spec.ports.as_deref().unwrap_or_default();
    let mut numbers: HashMap<u32, usize> = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, port) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        match port.number {
            None => out.error(
                PORTS,
                format!("{path}.number"),
                "port.number is required (1-65535)",
            ),
            Some(n) => {
                c::check_port_number(n, &format!("{path}.number"), out);
                if let Some(first) = numbers.insert(n, i) {
                    out.error(
                        PORTS,
                        format!("{path}.number"),
                        format!("port {n} is already declared by spec.ports[{first}]; port numbers must be unique"),
                    );
                }
            }
        }
        if let Some(t) = port.target_port {
            c::check_port_number(t, &format!("{path}.targetPort"), out);
        }
        match port.name.as_deref() {
            None | Some("") => out.error(
                PORTS,
                format!("{path}.name"),
                "port.name is required: endpoints refer to service ports by name",
            ),
            Some(name) => {
                if !c::is_host_label(name) {
                    out.error(
                        PORTS,
                        format!("{path}.name"),
                        format!("port name `{name}` is not a DNS-1123 label (letters, digits and `-`, at most 63)"),
                    );
                }
                if let Some(first) = names.insert(name, i) {
                    out.error(
                        PORTS,
                        format!("{path}.name"),
                        format!("port name `{name}` is already used by spec.ports[{first}]; port names must be unique"),
                    );
                }
            }
        }
        if let Some(protocol) = &port.protocol
            && !protocol.is_empty()
            && !PROTOCOLS.contains(&protocol.to_ascii_uppercase().as_str())
        {
            out.error(
                PORTS,
                format!("{path}.protocol"),
                format!(
                    "protocol `{protocol}` is not supported: use one of {}",
                    PROTOCOLS.join(", ")
                ),
            );
        }
    }
    names.into_keys().collect()
}

fn check_resolution(
    spec: &ServiceEntrySpec,
    resolution: Resolution,
    hosts: &[String],
    endpoints: &[WorkloadEndpoint],
    out: &mut Findings,
) {
    match resolution {
        Resolution::None | Resolution::DynamicDns if !endpoints.is_empty() => out.error(
            RESOLUTION,
            "spec.endpoints",
            format!(
                "resolution {} forwards to the address the client asked for and takes no endpoints; remove them or use STATIC or DNS",
                resolution_name(resolution)
            ),
        ),
        // Istio admits it: a service with no endpoints yet, like a
        // Kubernetes Service selecting no pod. Requests to it fail meanwhile.
        Resolution::Static if endpoints.is_empty() && spec.workload_selector.is_none() => {
            out.warning(
                RESOLUTION,
                "spec.endpoints",
                "resolution STATIC with no endpoints and no workloadSelector: the service has no \
                 endpoints, so requests to it fail (503); list endpoints (IP addresses) or select \
                 WorkloadEntries/pods with a workloadSelector",
            )
        }
        Resolution::Dns | Resolution::DnsRoundRobin if endpoints.is_empty() => {
            // Without endpoints the hosts themselves are resolved, and a
            // wildcard cannot be looked up.
            for (i, host) in hosts.iter().enumerate() {
                if host.starts_with('*') {
                    out.error(
                        RESOLUTION,
                        format!("spec.hosts[{i}]"),
                        format!(
                            "wildcard host `{host}` cannot be resolved with resolution {}; list endpoints or use resolution NONE or DYNAMIC_DNS",
                            resolution_name(resolution)
                        ),
                    );
                }
            }
        }
        Resolution::DnsRoundRobin if endpoints.len() > 1 => out.error(
            RESOLUTION,
            "spec.endpoints",
            format!(
                "resolution DNS_ROUND_ROBIN takes at most one endpoint, got {}; use DNS for several",
                endpoints.len()
            ),
        ),
        _ => {}
    }
}

fn check_resolution_fits_addresses_and_ports(
    spec: &ServiceEntrySpec,
    resolution: Resolution,
    hosts: &[String],
    out: &mut Findings,
) {
    let cidr = spec
        .addresses
        .iter()
        .flatten()
        .position(|a| a.contains('/'));
    if let Some(i) = cidr
        && !matches!(resolution, Resolution::None | Resolution::Static)
    {
        out.error(
            ADDRESSES,
            format!("spec.addresses[{i}]"),
            format!(
                "CIDR blocks are only allowed with resolution NONE or STATIC, not {}",
                resolution_name(resolution)
            ),
        );
    }
    // Plain TCP carries no host name, so with several hosts the proxy could
    // not tell which one a connection is for (NONE ignores the hosts).
    if resolution != Resolution::None && hosts.len() > 1 {
        let opaque = spec.ports.iter().flatten().find(|p| {
            let proto = p
                .protocol
                .as_deref()
                .unwrap_or_default()
                .to_ascii_uppercase();
            !matches!(
                proto.as_str(),
                "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTP_PROXY" | "HTTPS" | "TLS"
            )
        });
        if let Some(p) = opaque {
            out.error(
                PORTS,
                "spec.hosts",
                format!(
                    "{} hosts share port {} with protocol `{}`, which carries no host name to tell them apart; use one host, resolution NONE, or HTTP/TLS ports",
                    hosts.len(),
                    p.number.unwrap_or(0),
                    p.protocol.as_deref().unwrap_or_default()
                ),
            );
        }
    }
    let unix = spec.endpoints.iter().flatten().any(|e| {
        e.address
            .as_deref()
            .is_some_and(|a| a.starts_with("unix://"))
    });
    let port_count = spec.ports.as_ref().map_or(0, Vec::len);
    if unix && port_count != 1 {
        out.error(
            PORTS,
            "spec.ports",
            format!("Unix socket endpoints need exactly one service port, got {port_count}"),
        );
    }
}

fn resolution_name(r: Resolution) -> &'static str {
    match r {
        Resolution::None => "NONE",
        Resolution::Static => "STATIC",
        Resolution::Dns => "DNS",
        Resolution::DnsRoundRobin => "DNS_ROUND_ROBIN",
        Resolution::DynamicDns => "DYNAMIC_DNS",
    }
}

fn check_endpoint(
    ep: &WorkloadEndpoint,
    resolution: Resolution,
    port_names: &HashSet<&str>,
    path: &str,
    out: &mut Findings,
) {
    let apath = format!("{path}.address");
    let address = ep.address.as_deref().unwrap_or_default();
    let is_unix = address.starts_with("unix://");
    if address.is_empty() {
        if ep.network.is_none() {
            out.error(
                ENDPOINT,
                &apath,
                "endpoint address is required (unless network names the endpoint's network gateway)",
            );
        }
    } else if is_unix {
        if resolution != Resolution::Static {
            out.error(
                ENDPOINT,
                &apath,
                format!("Unix socket `{address}` is only allowed with resolution STATIC"),
            );
        }
        let socket = address.trim_start_matches("unix://");
        if !(socket.starts_with('/') || socket.starts_with('@')) || socket.len() < 2 {
            out.error(
                ENDPOINT,
                &apath,
                format!("`{address}` is not `unix:///absolute/path` or `unix://@abstract`"),
            );
        }
        if ep.ports.as_ref().is_some_and(|p| !p.is_empty()) {
            out.error(
                ENDPOINT,
                format!("{path}.ports"),
                "a Unix socket endpoint has no ports; remove them",
            );
        }
    } else if resolution == Resolution::Static {
        if address.parse::<std::net::IpAddr>().is_err() {
            out.error(
                ENDPOINT,
                &apath,
                format!("`{address}` is not an IP address, which resolution STATIC needs (use DNS for host names)"),
            );
        }
    } else if let Some(problem) = c::host_problem(
        address,
        HostRules {
            star: false,
            ip: true,
        },
    ) {
        out.error(
            ENDPOINT,
            &apath,
            format!("`{address}` is not an IP address or host name: {problem}"),
        );
    }
    for (name, number) in ep.ports.iter().flatten() {
        let ppath = format!("{path}.ports.{name}");
        if !port_names.contains(name.as_str()) {
            out.error(
                ENDPOINT,
                &ppath,
                format!("`{name}` is not the name of one of the ServiceEntry's ports"),
            );
        }
        c::check_port_number(*number, &ppath, out);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::validate::Severity;
    use crate::validate::object::test_support::{assert_finding, assert_no_errors, findings};

    fn se(spec: Value) -> Vec<crate::validate::Finding> {
        findings(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "external"},
            "spec": spec
        }))
    }

    fn with(extra: Value) -> Value {
        let mut spec = json!({"hosts": ["api.example.com"], "ports": [{"number": 443, "name": "https", "protocol": "TLS"}]});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec
    }

    #[test]
    fn hosts_are_required() {
        let found = se(json!({}));
        assert_finding(
            &found,
            c::HOSTS_REQUIRED,
            Severity::Error,
            "spec.hosts",
            "at least one host",
        );
        assert_finding(
            &se(with(json!({"hosts": ["*"]}))),
            c::HOST,
            Severity::Error,
            "spec.hosts[0]",
            "`*`",
        );
        assert_no_errors(&se(with(json!({"resolution": "DNS"}))));
    }

    #[test]
    fn a_service_entry_without_ports_is_accepted() {
        // Istio accepts it; nothing about it breaks traffic.
        for spec in [
            json!({"hosts": ["api.example.com"]}),
            json!({"hosts": ["api.example.com"], "ports": [], "resolution": "DNS"}),
            json!({"hosts": ["db.internal"], "addresses": ["10.1.2.3"], "resolution": "STATIC",
                   "endpoints": [{"address": "10.1.2.3"}]}),
        ] {
            let found = se(spec.clone());
            assert!(found.iter().all(|f| f.code != PORTS), "{spec}: {found:#?}");
            assert_no_errors(&found);
        }
    }

    #[test]
    fn ipv6_addresses_and_cidrs_are_accepted() {
        let found = se(with(json!({
            "addresses": ["2001:db8::", "2001:db8::/32", "::1", "fd00::1:2", "10.0.0.0/8"],
            "resolution": "STATIC",
            "endpoints": [{"address": "2001:db8::10"}, {"address": "::ffff:10.0.0.1"}]
        })));
        assert_no_errors(&found);
        assert_finding(
            &se(with(json!({"addresses": ["2001:db8::/129"]}))),
            ADDRESSES,
            Severity::Error,
            "spec.addresses[0]",
            "`2001:db8::/129`",
        );
    }

    #[test]
    fn ports_have_unique_numbers_and_names() {
        let found = se(with(json!({"ports": [
            {"number": 80, "name": "http", "protocol": "HTTP"},
            {"number": 80, "name": "http", "protocol": "HTTP"},
            {"number": 81, "name": "x", "protocol": "SCTP"}
        ]})));
        assert_finding(
            &found,
            PORTS,
            Severity::Error,
            "spec.ports[1].number",
            "spec.ports[0]",
        );
        assert_finding(
            &found,
            PORTS,
            Severity::Error,
            "spec.ports[1].name",
            "`http`",
        );
        assert_finding(
            &found,
            PORTS,
            Severity::Error,
            "spec.ports[2].protocol",
            "`SCTP`",
        );
    }

    #[test]
    fn addresses_are_ips_or_cidrs() {
        let found = se(with(json!({"addresses": ["10.0.0.0/33", "example.com"]})));
        assert_finding(
            &found,
            ADDRESSES,
            Severity::Error,
            "spec.addresses[0]",
            "10.0.0.0/33",
        );
        assert_finding(
            &found,
            ADDRESSES,
            Severity::Error,
            "spec.addresses[1]",
            "example.com",
        );
        assert_no_errors(&se(with(
            json!({"addresses": ["10.0.0.0/24", "2001:db8::1"]}),
        )));
    }

    #[test]
    fn static_needs_ip_endpoints_and_warns_without_any() {
        // Istio admits a STATIC entry with no endpoints yet: a warning.
        let found = se(with(json!({"resolution": "STATIC"})));
        assert_no_errors(&found);
        assert_finding(
            &found,
            RESOLUTION,
            Severity::Warning,
            "spec.endpoints",
            "STATIC with no endpoints",
        );
        let found = se(with(
            json!({"resolution": "STATIC", "endpoints": [{"address": "db.example.com"}]}),
        ));
        assert_finding(
            &found,
            ENDPOINT,
            Severity::Error,
            "spec.endpoints[0].address",
            "`db.example.com`",
        );
        assert_no_errors(&se(with(
            json!({"resolution": "STATIC", "endpoints": [{"address": "10.1.1.1", "ports": {"https": 8443}}]}),
        )));
        assert_no_errors(&se(with(
            json!({"resolution": "STATIC", "endpoints": [{"address": "unix:///var/run/sock"}]}),
        )));
        assert_no_errors(&se(with(
            json!({"resolution": "STATIC", "workloadSelector": {"labels": {"app": "vm"}}}),
        )));
    }

    #[test]
    fn endpoints_and_selector_are_exclusive() {
        let found = se(with(
            json!({"resolution": "STATIC", "endpoints": [{"address": "10.1.1.1"}], "workloadSelector": {"labels": {"app": "vm"}}}),
        ));
        assert_finding(
            &found,
            RESOLUTION,
            Severity::Error,
            "spec.workloadSelector",
            "not both",
        );
    }

    #[test]
    fn dns_cannot_resolve_wildcards_without_endpoints() {
        let found = se(with(
            json!({"hosts": ["*.example.com"], "resolution": "DNS"}),
        ));
        assert_finding(
            &found,
            RESOLUTION,
            Severity::Error,
            "spec.hosts[0]",
            "`*.example.com`",
        );
        assert_no_errors(&se(with(
            json!({"hosts": ["*.example.com"], "resolution": "NONE"}),
        )));
        assert_no_errors(&se(with(
            json!({"hosts": ["*.example.com"], "resolution": "DNS", "endpoints": [{"address": "proxy.example.com"}]}),
        )));
    }

    #[test]
    fn none_takes_no_endpoints_and_round_robin_one() {
        let found = se(with(
            json!({"resolution": "NONE", "endpoints": [{"address": "10.1.1.1"}]}),
        ));
        assert_finding(
            &found,
            RESOLUTION,
            Severity::Error,
            "spec.endpoints",
            "takes no endpoints",
        );
        let found = se(with(
            json!({"resolution": "DNS_ROUND_ROBIN", "endpoints": [{"address": "a.com"}, {"address": "b.com"}]}),
        ));
        assert_finding(
            &found,
            RESOLUTION,
            Severity::Error,
            "spec.endpoints",
            "at most one endpoint",
        );
    }

    #[test]
    fn endpoint_ports_name_service_ports_and_unix_sockets_have_none() {
        let found = se(with(json!({"resolution": "STATIC", "endpoints": [
            {"address": "10.1.1.1", "ports": {"grpc": 9000}},
            {"address": "unix:///s", "ports": {"https": 1}}
        ]})));
        assert_finding(
            &found,
            ENDPOINT,
            Severity::Error,
            "spec.endpoints[0].ports.grpc",
            "`grpc`",
        );
        assert_finding(
            &found,
            ENDPOINT,
            Severity::Error,
            "spec.endpoints[1].ports",
            "Unix socket",
        );
        let found = se(with(
            json!({"resolution": "DNS", "endpoints": [{"address": "unix:///s"}]}),
        ));
        assert_finding(
            &found,
            ENDPOINT,
            Severity::Error,
            "spec.endpoints[0].address",
            "only allowed with resolution STATIC",
        );
    }

    #[test]
    fn cidr_addresses_need_none_or_static() {
        let found = se(with(
            json!({"addresses": ["10.0.0.0/24"], "resolution": "DNS"}),
        ));
        assert_finding(
            &found,
            ADDRESSES,
            Severity::Error,
            "spec.addresses[0]",
            "NONE or STATIC, not DNS",
        );
        assert_no_errors(&se(with(
            json!({"addresses": ["10.0.0.0/24"], "resolution": "NONE"}),
        )));
    }

    #[test]
    fn several_hosts_need_a_protocol_that_names_the_host() {
        let spec = json!({"hosts": ["a.example.com", "b.example.com"], "resolution": "DNS",
            "ports": [{"number": 5432, "name": "pg", "protocol": "TCP"}]});
        assert_finding(&se(spec), PORTS, Severity::Error, "spec.hosts", "`TCP`");
        assert_no_errors(&se(
            json!({"hosts": ["a.example.com", "b.example.com"], "resolution": "DNS",
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]}),
        ));
    }

    #[test]
    fn unix_endpoints_need_exactly_one_port() {
        let found = se(json!({"hosts": ["sock.local"], "resolution": "STATIC",
            "ports": [{"number": 80, "name": "a", "protocol": "HTTP"}, {"number": 81, "name": "b", "protocol": "HTTP"}],
            "endpoints": [{"address": "unix:///var/run/a.sock"}]}));
        assert_finding(
            &found,
            PORTS,
            Severity::Error,
            "spec.ports",
            "exactly one service port, got 2",
        );
    }

    #[test]
    fn export_to_is_checked() {
        let found = se(with(json!({"exportTo": ["*", "."]})));
        assert_finding(
            &found,
            c::EXPORT_TO,
            Severity::Error,
            "spec.exportTo",
            "cannot be combined",
        );
        assert_no_errors(&se(with(json!({"exportTo": ["."]}))));
    }
}
