//! DestinationRule rules: the host, subsets, and the traffic policy (load
//! balancer, connection pool, outlier detection, client TLS, port-level
//! settings).

use std::collections::HashSet;

use meshkeeper_crds::networking::destination_rule::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, DestinationRuleSpec,
    LoadBalancerSettings, OutlierDetection, TrafficPolicy, ZoneAwareLoadBalancerSetting,
};

use super::common::{self as c, Findings, HostRules};

pub const SUBSET: &str = "MK0130";
pub const LOAD_BALANCER: &str = "MK0131";
pub const CLIENT_TLS: &str = "MK0132";
pub const PORT_LEVEL: &str = "MK0133";
pub const POLICY_SHAPE: &str = "MK0134";

/// `namespace` is the rule's own (for `exportTo`).
pub fn validate(spec: &DestinationRuleSpec, namespace: &str, out: &mut Findings) {
    match spec.host.as_deref() {
        None | Some("") => out.error(
            c::HOSTS_REQUIRED,
            "spec.host",
            "spec.host is required: the service the rule applies to, e.g. `reviews` or `*.example.com`",
        ),
        Some(host) => c::check_host(host, HostRules { star: true, ip: false }, "spec.host", out),
    }
    if let Some(policy) = &spec.traffic_policy {
        check_traffic_policy(policy, "spec.trafficPolicy", true, out);
    }
    let mut names = HashSet::new();
    for (i, subset) in spec.subsets.iter().flatten().enumerate() {
        let path = format!("spec.subsets[{i}]");
        match subset.name.as_deref() {
            None | Some("") => out.error(
                SUBSET,
                format!("{path}.name"),
                "subset name is required: routes refer to the subset by it",
            ),
            Some(name) => {
                if !c::is_host_label(name) {
                    out.error(
                        SUBSET,
                        format!("{path}.name"),
                        format!("subset name `{name}` is not a DNS-1123 label (letters, digits and `-`, at most 63)"),
                    );
                }
                if !names.insert(name) {
                    out.error(
                        SUBSET,
                        format!("{path}.name"),
                        format!(
                            "subset name `{name}` is defined twice; subset names must be unique"
                        ),
                    );
                }
            }
        }
        // Istio admits a subset without labels: it selects every endpoint
        // of the host (a way to give them a traffic policy of their own).
        if subset.labels.as_ref().is_none_or(|l| l.is_empty()) {
            out.warning(
                SUBSET,
                format!("{path}.labels"),
                "the subset has no labels, so it selects every endpoint of the host; add labels \
                 (e.g. `version: v1`) if it is meant to pick some of them",
            );
        }
        for (key, value) in subset.labels.iter().flatten() {
            let problems = c::label_key_problem(key)
                .into_iter()
                .chain(c::label_value_problem(key, value));
            for problem in problems {
                out.error(
                    SUBSET,
                    format!("{path}.labels[{key}]"),
                    format!("{problem}: a subset's labels select pods, so they follow Kubernetes label syntax"),
                );
            }
        }
        if let Some(policy) = &subset.traffic_policy {
            check_traffic_policy(policy, &format!("{path}.trafficPolicy"), true, out);
        }
    }
    c::check_export_to(spec.export_to.as_ref(), namespace, false, out);
    if spec.workload_selector.is_some() {
        check_selected_rule_export(spec.export_to.as_deref(), namespace, out);
    }
}

/// A rule with a `workloadSelector` applies to workloads of its own
/// namespace only, so Istio lets it be exported there alone: `exportTo`
/// absent, `.` or the namespace's name.
fn check_selected_rule_export(export_to: Option<&[String]>, namespace: &str, out: &mut Findings) {
    let Some(values) = export_to.filter(|v| !v.is_empty()) else {
        return;
    };
    for (i, value) in values.iter().enumerate() {
        if value != "." && value != namespace {
            out.error(
                c::EXPORT_TO,
                format!("spec.exportTo[{i}]"),
                format!(
                    "`{value}`: a DestinationRule with a workloadSelector can only be exported \
                     to its own namespace (`.` or `{namespace}`); remove the entry, or drop \
                     spec.workloadSelector to export the rule further"
                ),
            );
        }
    }
}

fn check_traffic_policy(p: &TrafficPolicy, path: &str, top_level: bool, out: &mut Findings) {
    if *p == TrafficPolicy::default() {
        out.error(
            POLICY_SHAPE,
            path,
            "trafficPolicy is empty: set at least one of loadBalancer, connectionPool, outlierDetection, tls, portLevelSettings, tunnel, proxyProtocol, retryBudget, or remove it",
        );
    }
    if let Some(lb) = &p.load_balancer {
        check_load_balancer(lb, &format!("{path}.loadBalancer"), out);
    }
    if let Some(cp) = &p.connection_pool {
        check_connection_pool(cp, &format!("{path}.connectionPool"), out);
    }
    if let Some(od) = &p.outlier_detection {
        check_outlier_detection(od, &format!("{path}.outlierDetection"), out);
    }
    if let Some(tls) = &p.tls {
        check_client_tls(tls, &format!("{path}.tls"), out);
    }
    if p.tunnel.is_some() && p.proxy_protocol.is_some() {
        out.error(
            POLICY_SHAPE,
            path,
            "tunnel and proxyProtocol cannot both be set",
        );
    }
    if let Some(t) = &p.tunnel {
        let tpath = format!("{path}.tunnel");
        if let Some(proto) = &t.protocol
            && proto != "CONNECT"
            && proto != "POST"
        {
            out.error(
                POLICY_SHAPE,
                format!("{tpath}.protocol"),
                format!("tunnel protocol `{proto}` is not `CONNECT` or `POST`"),
            );
        }
        let target = t.target_host.as_deref().unwrap_or_default();
        if let Some(problem) = c::host_problem(
            target,
            HostRules {
                star: false,
                ip: true,
            },
        ) {
            out.error(
                POLICY_SHAPE,
                format!("{tpath}.targetHost"),
                format!("tunnel targetHost `{target}` is not a host name or IP address: {problem}"),
            );
        }
        c::check_port_number(
            t.target_port.unwrap_or(0),
            &format!("{tpath}.targetPort"),
            out,
        );
    }
    if let Some(rb) = &p.retry_budget {
        c::check_decimal_percent(
            rb.percent.as_ref(),
            &format!("{path}.retryBudget.percent"),
            out,
        );
        // `0ms` is the documented default (count active requests only).
        if let Some(interval) = &rb.budget_interval {
            c::check_duration_or_zero(interval, &format!("{path}.retryBudget.budgetInterval"), out);
        }
    }
    if !top_level {
        return;
    }
    let mut ports = HashSet::new();
    for (i, pl) in p.port_level_settings.iter().flatten().enumerate() {
        let ppath = format!("{path}.portLevelSettings[{i}]");
        match pl.port.as_ref().and_then(|p| p.number) {
            None => out.error(
                PORT_LEVEL,
                format!("{ppath}.port"),
                "port-level settings need port.number: the service port they apply to",
            ),
            Some(n) => {
                c::check_port_number(n, &format!("{ppath}.port.number"), out);
                if !ports.insert(n) {
                    out.error(
                        PORT_LEVEL,
                        format!("{ppath}.port.number"),
                        format!("port {n} has settings twice; each port may appear once in portLevelSettings"),
                    );
                }
            }
        }
        let nested = TrafficPolicy {
            load_balancer: pl.load_balancer.clone(),
            connection_pool: pl.connection_pool.clone(),
            outlier_detection: pl.outlier_detection.clone(),
            tls: pl.tls.clone(),
            ..TrafficPolicy::default()
        };
        if nested != TrafficPolicy::default() {
            check_traffic_policy(&nested, &ppath, false, out);
        }
    }
}

fn check_load_balancer(lb: &LoadBalancerSettings, path: &str, out: &mut Findings) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        out.error(
            LOAD_BALANCER,
            path,
            "set either simple or consistentHash, not both",
        );
    }
    if let Some(ch) = &lb.consistent_hash {
        let cpath = format!("{path}.consistentHash");
        let keys: Vec<&str> = [
            (ch.http_header_name.is_some(), "httpHeaderName"),
            (ch.http_cookie.is_some(), "httpCookie"),
            (ch.use_source_ip == Some(true), "useSourceIp"),
            (
                ch.http_query_parameter_name.is_some(),
                "httpQueryParameterName",
            ),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if keys.is_empty() {
            // Istio admits it; the proxy then hashes nothing, so requests
            // spread as with RANDOM and nothing is sticky.
            out.warning(
                LOAD_BALANCER,
                &cpath,
                "consistentHash sets no hash key, so requests are spread with no affinity; set \
                 one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName",
            );
        } else if keys.len() > 1 {
            // One protobuf oneof: Istio cannot even decode more than one.
            out.error(
                LOAD_BALANCER,
                &cpath,
                format!(
                    "consistentHash sets {} hash keys ({}): exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName is required",
                    keys.len(),
                    keys.join(", ")
                ),
            );
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            out.error(
                LOAD_BALANCER,
                &cpath,
                "set either ringHash or maglev, not both",
            );
        }
        if ch.minimum_ring_size.is_some() {
            c::warn_deprecated(
                &format!("{cpath}.minimumRingSize"),
                "minimumRingSize",
                "ringHash.minimumRingSize",
                out,
            );
        }
        if let Some(cookie) = &ch.http_cookie {
            if cookie.name.as_deref().is_none_or(str::is_empty) {
                out.error(
                    LOAD_BALANCER,
                    format!("{cpath}.httpCookie.name"),
                    "httpCookie.name is required: the cookie to hash on",
                );
            }
            if let Some(ttl) = &cookie.ttl {
                c::check_duration_syntax(ttl, &format!("{cpath}.httpCookie.ttl"), out);
            }
        }
    }
    c::check_opt_duration(
        lb.warmup_duration_secs.as_ref(),
        &format!("{path}.warmupDurationSecs"),
        out,
    );
    if let Some(w) = &lb.warmup {
        c::check_opt_duration(w.duration.as_ref(), &format!("{path}.warmup.duration"), out);
        c::check_decimal_percent(
            w.minimum_percent.as_ref(),
            &format!("{path}.warmup.minimumPercent"),
            out,
        );
    }
    if lb.locality_lb_setting.is_some() && lb.zone_aware_lb_setting.is_some() {
        out.error(
            LOAD_BALANCER,
            path,
            "set either localityLbSetting or zoneAwareLbSetting, not both",
        );
    }
    if let Some(zone) = &lb.zone_aware_lb_setting {
        check_zone_aware(zone, &format!("{path}.zoneAwareLbSetting"), out);
    }
    if let Some(loc) = &lb.locality_lb_setting {
        let lpath = format!("{path}.localityLbSetting");
        if loc.distribute.as_ref().is_some_and(|d| !d.is_empty())
            && loc.failover.as_ref().is_some_and(|f| !f.is_empty())
        {
            out.error(
                LOAD_BALANCER,
                &lpath,
                "set either distribute or failover, not both",
            );
        }
        for (i, d) in loc.distribute.iter().flatten().enumerate() {
            let total: u64 =
                d.to.iter()
                    .flat_map(|t| t.values())
                    .map(|v| u64::from(*v))
                    .sum();
            if total != 100 {
                out.error(
                    LOAD_BALANCER,
                    format!("{lpath}.distribute[{i}].to"),
                    format!("the weights in `to` add up to {total}; they must add up to 100"),
                );
            }
        }
        for (i, f) in loc.failover.iter().flatten().enumerate() {
            if f.from.is_some() && f.from == f.to {
                out.error(
                    LOAD_BALANCER,
                    format!("{lpath}.failover[{i}]"),
                    format!(
                        "failover from and to are both `{}`; they must differ",
                        f.from.as_deref().unwrap_or_default()
                    ),
                );
            }
        }
    }
}

/// Zone-aware settings, as Istio's webhook judges them: failover is between
/// regions only (zones and subzones are automatic), and the topology labels
/// cannot rank priorities because zone-aware routing already does.
fn check_zone_aware(zone: &ZoneAwareLoadBalancerSetting, path: &str, out: &mut Findings) {
    for (i, f) in zone.failover.iter().flatten().enumerate() {
        let fpath = format!("{path}.failover[{i}]");
        let from = f.from.as_deref().unwrap_or_default();
        let to = f.to.as_deref().unwrap_or_default();
        if from == to {
            out.error(
                LOAD_BALANCER,
                &fpath,
                format!("failover from and to are both `{from}`; they must be different regions"),
            );
        }
        for (field, region) in [("from", from), ("to", to)] {
            if region.contains('/') || region.contains('*') {
                out.error(
                    LOAD_BALANCER,
                    format!("{fpath}.{field}"),
                    format!(
                        "`{region}` is not a plain region: zone-aware failover names regions only \
                         (no `/zone`, no `*`), zones and subzones fail over automatically"
                    ),
                );
            }
        }
    }
    for (i, label) in zone.failover_priority.iter().flatten().enumerate() {
        if TOPOLOGY_LABELS.contains(&label.as_str()) {
            out.error(
                LOAD_BALANCER,
                format!("{path}.failoverPriority[{i}]"),
                format!(
                    "`{label}` cannot rank priorities here: zone-aware routing already orders by \
                     region, zone and subzone; use other labels (e.g. topology.istio.io/network)"
                ),
            );
        }
    }
}

/// Labels zone-aware load balancing orders by on its own.
const TOPOLOGY_LABELS: [&str; 3] = [
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
];

fn check_connection_pool(cp: &ConnectionPoolSettings, path: &str, out: &mut Findings) {
    if cp.tcp.is_none() && cp.http.is_none() {
        out.error(
            POLICY_SHAPE,
            path,
            "connectionPool is empty: set tcp, http or both, or remove it",
        );
    }
    if let Some(tcp) = &cp.tcp {
        let t = format!("{path}.tcp");
        c::check_non_negative(tcp.max_connections, &format!("{t}.maxConnections"), out);
        c::check_opt_duration(
            tcp.connect_timeout.as_ref(),
            &format!("{t}.connectTimeout"),
            out,
        );
        c::check_opt_duration(
            tcp.max_connection_duration.as_ref(),
            &format!("{t}.maxConnectionDuration"),
            out,
        );
        // `0s` turns the idle timeout off (Istio skips the check for it).
        if let Some(idle) = &tcp.idle_timeout {
            c::check_duration_or_zero(idle, &format!("{t}.idleTimeout"), out);
        }
        if let Some(ka) = &tcp.tcp_keepalive {
            c::check_opt_duration(ka.time.as_ref(), &format!("{t}.tcpKeepalive.time"), out);
            c::check_opt_duration(
                ka.interval.as_ref(),
                &format!("{t}.tcpKeepalive.interval"),
                out,
            );
        }
    }
    if let Some(http) = &cp.http {
        let h = format!("{path}.http");
        for (field, v) in [
            ("http1MaxPendingRequests", http.http1_max_pending_requests),
            ("http2MaxRequests", http.http2_max_requests),
            ("maxRequestsPerConnection", http.max_requests_per_connection),
            ("maxRetries", http.max_retries),
            ("maxConcurrentStreams", http.max_concurrent_streams),
        ] {
            c::check_non_negative(v, &format!("{h}.{field}"), out);
        }
        c::check_opt_duration(http.idle_timeout.as_ref(), &format!("{h}.idleTimeout"), out);
        if let Some(ka) = &http.http2_keep_alive {
            // Istio requires both once the block is there.
            for (field, value) in [("interval", &ka.interval), ("timeout", &ka.timeout)] {
                let fpath = format!("{h}.http2KeepAlive.{field}");
                match value {
                    Some(v) => c::check_duration(v, &fpath, out),
                    None => out.error(
                        POLICY_SHAPE,
                        fpath,
                        format!("http2KeepAlive needs {field} (a duration such as `30s`)"),
                    ),
                }
            }
        }
    }
}

fn check_outlier_detection(od: &OutlierDetection, path: &str, out: &mut Findings) {
    if od.consecutive_errors.is_some() {
        c::warn_deprecated(
            &format!("{path}.consecutiveErrors"),
            "consecutiveErrors",
            "consecutive5xxErrors or consecutiveGatewayErrors",
            out,
        );
    }
    // Istio neither checks nor uses the deprecated consecutiveErrors.
    if let Some(n) = od.consecutive_errors.filter(|n| *n < 0) {
        out.warning(
            c::NON_NEGATIVE,
            format!("{path}.consecutiveErrors"),
            format!(
                "consecutiveErrors {n} is negative, and the field is ignored anyway; use \
                 consecutive5xxErrors or consecutiveGatewayErrors (0 or more)"
            ),
        );
    }
    if od.consecutive_local_origin_failures.unwrap_or(0) > 0
        && od.split_external_local_origin_errors != Some(true)
    {
        out.error(
            POLICY_SHAPE,
            format!("{path}.consecutiveLocalOriginFailures"),
            "consecutiveLocalOriginFailures only counts when splitExternalLocalOriginErrors is true; set it or remove this field",
        );
    }
    c::check_opt_duration(od.interval.as_ref(), &format!("{path}.interval"), out);
    c::check_opt_duration(
        od.base_ejection_time.as_ref(),
        &format!("{path}.baseEjectionTime"),
        out,
    );
    c::check_int_percent(
        od.max_ejection_percent,
        &format!("{path}.maxEjectionPercent"),
        out,
    );
    c::check_int_percent(
        od.min_health_percent,
        &format!("{path}.minHealthPercent"),
        out,
    );
    for (i, code) in od
        .outlier_detection_http_error_codes
        .iter()
        .flatten()
        .enumerate()
    {
        if !(100..=599).contains(code) {
            out.error(
                POLICY_SHAPE,
                format!("{path}.outlierDetectionHttpErrorCodes[{i}]"),
                format!("{code} is not an HTTP status code: allowed 100-599"),
            );
        }
    }
}

fn check_client_tls(tls: &ClientTlsSettings, path: &str, out: &mut Findings) {
    let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let credential = has(&tls.credential_name);
    let file_fields: Vec<&str> = [
        (has(&tls.client_certificate), "clientCertificate"),
        (has(&tls.private_key), "privateKey"),
        (has(&tls.ca_certificates), "caCertificates"),
        (has(&tls.ca_crl), "caCrl"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    match tls.mode {
        Some(ClientTlsMode::Mutual) if !credential => {
            for (field, value) in [
                ("clientCertificate", &tls.client_certificate),
                ("privateKey", &tls.private_key),
            ] {
                if !has(value) {
                    out.error(
                        CLIENT_TLS,
                        format!("{path}.{field}"),
                        format!("MUTUAL TLS needs {field} (a file path) or a credentialName"),
                    );
                }
            }
        }
        Some(ClientTlsMode::Simple | ClientTlsMode::Mutual)
            if credential && !file_fields.is_empty() =>
        {
            out.error(
                CLIENT_TLS,
                path,
                format!(
                    "credentialName and file paths ({}) are both set: use the credential or the files, not both",
                    file_fields.join(", ")
                ),
            );
        }
        Some(ClientTlsMode::IstioMutual | ClientTlsMode::Disable)
            if credential || !file_fields.is_empty() =>
        {
            let mode = if tls.mode == Some(ClientTlsMode::Disable) {
                "DISABLE"
            } else {
                "ISTIO_MUTUAL"
            };
            // Istio admits it and ignores them: ISTIO_MUTUAL uses the mesh's
            // certificates, DISABLE none.
            out.warning(
                CLIENT_TLS,
                path,
                format!(
                    "mode {mode} ignores certificates and credentialName ({}), so they have no \
                     effect; remove them, or use SIMPLE/MUTUAL to use them",
                    file_fields
                        .iter()
                        .copied()
                        .chain(credential.then_some("credentialName"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::validate::Severity;
    use crate::validate::object::test_support::{assert_finding, assert_no_errors, findings};

    fn dr(spec: Value) -> Vec<crate::validate::Finding> {
        findings(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": spec
        }))
    }

    #[test]
    fn host_is_required_and_valid() {
        assert_finding(
            &dr(json!({})),
            c::HOSTS_REQUIRED,
            Severity::Error,
            "spec.host",
            "required",
        );
        assert_finding(
            &dr(json!({"host": "foo.*.com"})),
            c::HOST,
            Severity::Error,
            "spec.host",
            "`foo.*.com`",
        );
        assert_no_errors(&dr(json!({"host": "*.example.com"})));
    }

    #[test]
    fn subsets_need_unique_names_and_labels_are_advised() {
        let found = dr(json!({"host": "reviews", "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v1", "labels": {"version": "v2"}},
            {"name": "v3"}
        ]}));
        assert_finding(
            &found,
            SUBSET,
            Severity::Error,
            "spec.subsets[1].name",
            "defined twice",
        );
        // Istio admits a subset without labels (it selects every endpoint).
        assert_finding(
            &found,
            SUBSET,
            Severity::Warning,
            "spec.subsets[2].labels",
            "selects every endpoint",
        );
        assert_no_errors(&dr(json!({"host": "reviews", "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}}
        ]})));
    }

    #[test]
    fn load_balancer_is_simple_or_one_hash_key() {
        let found = dr(json!({"host": "r", "trafficPolicy": {"loadBalancer": {
            "simple": "ROUND_ROBIN",
            "consistentHash": {"httpHeaderName": "x-user", "useSourceIp": true}
        }}}));
        assert_finding(
            &found,
            LOAD_BALANCER,
            Severity::Error,
            "spec.trafficPolicy.loadBalancer",
            "not both",
        );
        assert_finding(
            &found,
            LOAD_BALANCER,
            Severity::Error,
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "httpHeaderName, useSourceIp",
        );
        assert_no_errors(&dr(json!({"host": "r", "trafficPolicy": {"loadBalancer": {
            "consistentHash": {"httpCookie": {"name": "user", "ttl": "0s"}}
        }}})));
    }

    #[test]
    fn connection_pool_numbers_and_durations() {
        let found = dr(json!({"host": "r", "trafficPolicy": {"connectionPool": {
            "tcp": {"maxConnections": -1, "connectTimeout": "30x"},
            "http": {"maxRetries": -3}
        }}}));
        assert_finding(
            &found,
            c::NON_NEGATIVE,
            Severity::Error,
            "spec.trafficPolicy.connectionPool.tcp.maxConnections",
            "-1",
        );
        assert_finding(
            &found,
            c::DURATION,
            Severity::Error,
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            "`30x`",
        );
        assert_finding(
            &found,
            c::NON_NEGATIVE,
            Severity::Error,
            "spec.trafficPolicy.connectionPool.http.maxRetries",
            "-3",
        );
        assert_no_errors(&dr(
            json!({"host": "r", "trafficPolicy": {"connectionPool": {
                "tcp": {"maxConnections": 100, "connectTimeout": "30ms"},
                "http": {"http1MaxPendingRequests": 0}
            }}}),
        ));
    }

    #[test]
    fn outlier_detection_percentages_and_deprecation() {
        let found = dr(json!({"host": "r", "trafficPolicy": {"outlierDetection": {
            "consecutiveErrors": 5, "maxEjectionPercent": 150, "interval": "1s"
        }}}));
        assert_finding(
            &found,
            c::PERCENT,
            Severity::Error,
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "150",
        );
        assert_finding(
            &found,
            c::DEPRECATED,
            Severity::Warning,
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            "consecutive5xxErrors",
        );
        assert_no_errors(&dr(
            json!({"host": "r", "trafficPolicy": {"outlierDetection": {
                "consecutive5xxErrors": 5, "maxEjectionPercent": 100, "baseEjectionTime": "30s"
            }}}),
        ));
    }

    #[test]
    fn client_tls_modes_need_consistent_credentials() {
        let found = dr(
            json!({"host": "r", "trafficPolicy": {"tls": {"mode": "MUTUAL", "clientCertificate": "/c.pem"}}}),
        );
        assert_finding(
            &found,
            CLIENT_TLS,
            Severity::Error,
            "spec.trafficPolicy.tls.privateKey",
            "MUTUAL TLS needs privateKey",
        );
        let found = dr(
            json!({"host": "r", "trafficPolicy": {"tls": {"mode": "SIMPLE", "credentialName": "c", "caCertificates": "/ca.pem"}}}),
        );
        assert_finding(
            &found,
            CLIENT_TLS,
            Severity::Error,
            "spec.trafficPolicy.tls",
            "caCertificates",
        );
        assert_no_errors(&dr(
            json!({"host": "r", "trafficPolicy": {"tls": {"mode": "MUTUAL", "credentialName": "c"}}}),
        ));
        assert_no_errors(&dr(
            json!({"host": "r", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}),
        ));
    }

    #[test]
    fn port_level_settings_need_unique_ports() {
        let found = dr(json!({"host": "r", "trafficPolicy": {"portLevelSettings": [
            {"port": {"number": 80}, "loadBalancer": {"simple": "RANDOM"}},
            {"port": {"number": 80}, "loadBalancer": {"simple": "LEAST_REQUEST"}},
            {"loadBalancer": {"simple": "RANDOM"}},
            {"port": {"number": 70000}, "loadBalancer": {"simple": "RANDOM"}}
        ]}}));
        assert_finding(
            &found,
            PORT_LEVEL,
            Severity::Error,
            "spec.trafficPolicy.portLevelSettings[1].port.number",
            "twice",
        );
        assert_finding(
            &found,
            PORT_LEVEL,
            Severity::Error,
            "spec.trafficPolicy.portLevelSettings[2].port",
            "port.number",
        );
        assert_finding(
            &found,
            c::PORT,
            Severity::Error,
            "spec.trafficPolicy.portLevelSettings[3].port.number",
            "70000",
        );
        assert_no_errors(&dr(
            json!({"host": "r", "trafficPolicy": {"portLevelSettings": [
                {"port": {"number": 80}, "loadBalancer": {"simple": "RANDOM"}},
                {"port": {"number": 443}, "tls": {"mode": "SIMPLE"}}
            ]}}),
        ));
    }

    #[test]
    fn tunnel_settings() {
        let found = dr(
            json!({"host": "r", "trafficPolicy": {"tunnel": {"protocol": "GET", "targetHost": "bad_host", "targetPort": 0}}}),
        );
        assert_finding(
            &found,
            POLICY_SHAPE,
            Severity::Error,
            "spec.trafficPolicy.tunnel.protocol",
            "`GET`",
        );
        assert_finding(
            &found,
            POLICY_SHAPE,
            Severity::Error,
            "spec.trafficPolicy.tunnel.targetHost",
            "`bad_host`",
        );
        assert_finding(
            &found,
            c::PORT,
            Severity::Error,
            "spec.trafficPolicy.tunnel.targetPort",
            "port 0",
        );
        assert_no_errors(&dr(
            json!({"host": "r", "trafficPolicy": {"tunnel": {"protocol": "CONNECT", "targetHost": "10.0.0.1", "targetPort": 8080}}}),
        ));
    }

    #[test]
    fn local_origin_failures_need_the_split() {
        let found = dr(
            json!({"host": "r", "trafficPolicy": {"outlierDetection": {"consecutiveLocalOriginFailures": 3}}}),
        );
        assert_finding(
            &found,
            POLICY_SHAPE,
            Severity::Error,
            "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
            "splitExternalLocalOriginErrors",
        );
        assert_no_errors(&dr(
            json!({"host": "r", "trafficPolicy": {"outlierDetection": {"consecutiveLocalOriginFailures": 3, "splitExternalLocalOriginErrors": true}}}),
        ));
    }

    #[test]
    fn recent_istio_fields_are_accepted_and_checked_as_istio_does() {
        let good = dr(json!({"host": "r", "trafficPolicy": {
            "loadBalancer": {"simple": "ROUND_ROBIN", "zoneAwareLbSetting": {
                "enabled": true,
                "failover": [{"from": "us-east", "to": "eu-west"}],
                "failoverPriority": ["topology.istio.io/network"],
                "minClusterSize": 3
            }},
            "connectionPool": {"http": {"http2KeepAlive": {"interval": "30s", "timeout": "5s"}}},
            "outlierDetection": {"consecutive5xxErrors": 3, "outlierDetectionHttpErrorCodes": [500, 503]},
            "retryBudget": {"percent": 20, "budgetInterval": "0ms"}
        }}));
        assert_no_errors(&good);

        let found = dr(json!({"host": "r", "trafficPolicy": {
            "loadBalancer": {
                "localityLbSetting": {"enabled": true},
                "zoneAwareLbSetting": {
                    "failover": [{"from": "us-east", "to": "us-east"}, {"from": "us-east/zone1", "to": "eu-west"}],
                    "failoverPriority": ["topology.kubernetes.io/zone"]
                }
            },
            "connectionPool": {"http": {"http2KeepAlive": {"interval": "30s"}}},
            "outlierDetection": {"outlierDetectionHttpErrorCodes": [99]},
            "retryBudget": {"budgetInterval": "soon"}
        }}));
        let lb = "spec.trafficPolicy.loadBalancer";
        assert_finding(&found, LOAD_BALANCER, Severity::Error, lb, "not both");
        assert_finding(
            &found,
            LOAD_BALANCER,
            Severity::Error,
            &format!("{lb}.zoneAwareLbSetting.failover[0]"),
            "different regions",
        );
        assert_finding(
            &found,
            LOAD_BALANCER,
            Severity::Error,
            &format!("{lb}.zoneAwareLbSetting.failover[1].from"),
            "`us-east/zone1`",
        );
        assert_finding(
            &found,
            LOAD_BALANCER,
            Severity::Error,
            &format!("{lb}.zoneAwareLbSetting.failoverPriority[0]"),
            "topology.kubernetes.io/zone",
        );
        assert_finding(
            &found,
            POLICY_SHAPE,
            Severity::Error,
            "spec.trafficPolicy.connectionPool.http.http2KeepAlive.timeout",
            "needs timeout",
        );
        assert_finding(
            &found,
            POLICY_SHAPE,
            Severity::Error,
            "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes[0]",
            "100-599",
        );
        assert_finding(
            &found,
            c::DURATION,
            Severity::Error,
            "spec.trafficPolicy.retryBudget.budgetInterval",
            "`soon`",
        );
    }

    #[test]
    fn empty_connection_pool_is_an_error() {
        let found = dr(json!({"host": "r", "trafficPolicy": {"connectionPool": {}}}));
        assert_finding(
            &found,
            POLICY_SHAPE,
            Severity::Error,
            "spec.trafficPolicy.connectionPool",
            "empty",
        );
    }

    #[test]
    fn empty_traffic_policy_is_an_error() {
        assert_finding(
            &dr(json!({"host": "r", "trafficPolicy": {}})),
            POLICY_SHAPE,
            Severity::Error,
            "spec.trafficPolicy",
            "empty",
        );
    }

    #[test]
    fn subset_labels_follow_kubernetes_label_syntax() {
        let found = dr(json!({"host": "reviews", "subsets": [
            {"name": "v1", "labels": {"version": "v1", "app.kubernetes.io/name": "reviews"}},
            {"name": "v2", "labels": {"Bad Key": "x", "version": "v2/beta"}},
            {"name": "v3", "labels": {"Example.com/app": "r"}}
        ]}));
        assert_finding(
            &found,
            SUBSET,
            Severity::Error,
            "spec.subsets[1].labels[Bad Key]",
            "label key `Bad Key`: name part `Bad Key` contains ` `",
        );
        assert_finding(
            &found,
            SUBSET,
            Severity::Error,
            "spec.subsets[1].labels[version]",
            "value `v2/beta` of label `version` contains `/`",
        );
        assert_finding(
            &found,
            SUBSET,
            Severity::Error,
            "spec.subsets[2].labels[Example.com/app]",
            "prefix `Example.com` is not a DNS-1123 subdomain",
        );
        assert_eq!(found.len(), 3, "{found:#?}");
    }

    #[test]
    fn export_to_dot_and_own_namespace_together_is_a_duplicate() {
        let found = dr(json!({"host": "reviews", "exportTo": [".", "default"]}));
        assert_finding(
            &found,
            c::EXPORT_TO,
            Severity::Error,
            "spec.exportTo[1]",
            "both name this object's own namespace `default`",
        );
    }

    #[test]
    fn a_rule_with_a_workload_selector_is_exported_to_its_namespace_only() {
        let selected = |export_to: Value| {
            dr(json!({"host": "reviews", "exportTo": export_to,
                      "workloadSelector": {"matchLabels": {"app": "productpage"}}}))
        };
        assert_no_errors(&selected(json!(["."])));
        assert_no_errors(&selected(json!(["default"])));
        assert_no_errors(&dr(json!({"host": "reviews",
            "workloadSelector": {"matchLabels": {"app": "productpage"}}})));
        assert_finding(
            &selected(json!(["*"])),
            c::EXPORT_TO,
            Severity::Error,
            "spec.exportTo[0]",
            "can only be exported to its own namespace (`.` or `default`)",
        );
        let found = selected(json!([".", "other"]));
        assert_finding(
            &found,
            c::EXPORT_TO,
            Severity::Error,
            "spec.exportTo[1]",
            "`other`: a DestinationRule with a workloadSelector",
        );
        assert_eq!(found.len(), 1, "{found:#?}");
        // Without a selector the same list is fine.
        assert_no_errors(&dr(json!({"host": "reviews", "exportTo": [".", "other"]})));
    }

    // Configurations Istio's webhook admits: accepted, with a warning that
    // names the field (or nothing, where Istio says nothing).

    #[test]
    fn a_consistent_hash_without_a_key_only_warns() {
        let found = dr(json!({"host": "r", "trafficPolicy": {"loadBalancer": {
            "consistentHash": {"ringHash": {"minimumRingSize": 1024}}
        }}}));
        assert_no_errors(&found);
        assert_finding(
            &found,
            LOAD_BALANCER,
            Severity::Warning,
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "no hash key",
        );
    }

    #[test]
    fn a_zero_tcp_idle_timeout_turns_it_off() {
        let found = dr(json!({"host": "r", "trafficPolicy": {"connectionPool": {
            "tcp": {"idleTimeout": "0s"}}}}));
        assert_eq!(found, vec![]);
        // Below 1ms but not zero stays an error, as in Istio.
        assert_finding(
            &dr(json!({"host": "r", "trafficPolicy": {"connectionPool": {
                "tcp": {"idleTimeout": "500us"}}}})),
            c::DURATION,
            Severity::Error,
            "spec.trafficPolicy.connectionPool.tcp.idleTimeout",
            "minimum of 1ms",
        );
    }

    #[test]
    fn a_cookie_ttl_only_has_to_parse() {
        let found = dr(json!({"host": "r", "trafficPolicy": {"loadBalancer": {
            "consistentHash": {"httpCookie": {"name": "user", "ttl": "1500us"}}}}}));
        assert_no_errors(&found);
        assert_finding(
            &found,
            c::DURATION,
            Severity::Warning,
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl",
            "`1500us`",
        );
        assert_finding(
            &dr(json!({"host": "r", "trafficPolicy": {"loadBalancer": {
                "consistentHash": {"httpCookie": {"name": "user", "ttl": "soon"}}}}})),
            c::DURATION,
            Severity::Error,
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl",
            "not a valid duration",
        );
    }

    #[test]
    fn a_negative_deprecated_consecutive_errors_only_warns() {
        let found = dr(json!({"host": "r", "trafficPolicy": {"outlierDetection": {
            "consecutiveErrors": -1}}}));
        assert_no_errors(&found);
        assert_finding(
            &found,
            c::NON_NEGATIVE,
            Severity::Warning,
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            "-1",
        );
    }

    #[test]
    fn certificates_beside_istio_mutual_or_disable_only_warn() {
        for mode in ["ISTIO_MUTUAL", "DISABLE"] {
            let found = dr(json!({"host": "r", "trafficPolicy": {"tls": {
                "mode": mode, "caCertificates": "/etc/ca.pem", "credentialName": "c"}}}));
            assert_no_errors(&found);
            assert_finding(
                &found,
                CLIENT_TLS,
                Severity::Warning,
                "spec.trafficPolicy.tls",
                "caCertificates, credentialName",
            );
        }
    }
}
