//! A DestinationRule traffic policy applied to one Envoy cluster: load
//! balancer, connection pool (circuit breakers, timeouts, HTTP options),
//! outlier detection and TLS origination.

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlier, UpstreamConnectionOptions,
    circuit_breakers::Thresholds, cluster,
};
use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions as CoreHttpOptions,
    TcpKeepalive, TransportSocket, transport_socket,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::Duration;
use meshkeeper_crds::networking::destination_rule::{
    ConnectionPoolSettings, H2UpgradePolicy, LoadBalancerSettings, OutlierDetection, SimpleLb,
    TrafficPolicy,
};

use crate::duration;
use crate::envoy::{any, u32_value};
use crate::error::{CompileError, Location};
use crate::protocol::Protocol;
use crate::tls;

/// The object a policy came from, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct PolicySource<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

impl PolicySource<'_> {
    pub fn error(&self, field: &str, message: String) -> CompileError {
        CompileError::Invalid {
            at: Box::new(Location {
                kind: "DestinationRule",
                namespace: self.namespace.into(),
                name: self.name.into(),
                field: format!("spec.trafficPolicy.{field}"),
            }),
            message,
        }
    }

    pub fn duration(&self, field: &str, text: &str) -> Result<Duration, CompileError> {
        duration::parse(text).map_err(|m| self.error(field, m))
    }
}

/// Everything the policy sets on `cluster`. `protocol` decides the upstream
/// HTTP version.
pub fn apply(
    cluster: &mut Cluster,
    policy: &TrafficPolicy,
    protocol: Protocol,
    source: Option<PolicySource<'_>>,
) -> Result<(), CompileError> {
    apply_load_balancer(cluster, policy.load_balancer.as_ref());
    if let (Some(pool), Some(src)) = (policy.connection_pool.as_ref(), source) {
        apply_connection_pool(cluster, pool, src)?;
    }
    apply_http_options(cluster, policy.connection_pool.as_ref(), protocol, source)?;
    if let (Some(outlier), Some(src)) = (policy.outlier_detection.as_ref(), source) {
        apply_outlier_detection(cluster, outlier, src)?;
    }
    if let (Some(settings), Some(src)) = (policy.tls.as_ref(), source) {
        cluster.transport_socket = tls::upstream(settings, src)?.map(|context| TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(any(&context))),
        });
    }
    Ok(())
}

/// Istio's defaults on every outbound cluster: no circuit breaking (limits
/// at their maximum, as the mesh shapes traffic with DestinationRules), and
/// least-request balancing.
pub fn defaults(cluster: &mut Cluster) {
    cluster.lb_policy = cluster::LbPolicy::LeastRequest as i32;
    cluster.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![Thresholds {
            max_connections: Some(u32_value(u32::MAX)),
            max_pending_requests: Some(u32_value(u32::MAX)),
            max_requests: Some(u32_value(u32::MAX)),
            max_retries: Some(u32_value(u32::MAX)),
            track_remaining: true,
            ..Default::default()
        }],
        ..Default::default()
    });
}

fn apply_load_balancer(cluster: &mut Cluster, lb: Option<&LoadBalancerSettings>) {
    let Some(lb) = lb else { return };
    if let Some(hash) = lb.consistent_hash.as_ref() {
        if let Some(maglev) = hash.maglev.as_ref() {
            cluster.lb_policy = cluster::LbPolicy::Maglev as i32;
            cluster.lb_config = Some(cluster::LbConfig::MaglevLbConfig(cluster::MaglevLbConfig {
                table_size: maglev
                    .table_size
                    .map(|value| envoy_types::pb::google::protobuf::UInt64Value { value }),
            }));
        } else {
            let ring_size = hash
                .ring_hash
                .as_ref()
                .and_then(|r| r.minimum_ring_size)
                .or(hash.minimum_ring_size);
            cluster.lb_policy = cluster::LbPolicy::RingHash as i32;
            cluster.lb_config = Some(cluster::LbConfig::RingHashLbConfig(
                cluster::RingHashLbConfig {
                    minimum_ring_size: ring_size
                        .map(|value| envoy_types::pb::google::protobuf::UInt64Value { value }),
                    ..Default::default()
                },
            ));
        }
        return;
    }
    cluster.lb_policy = match lb.simple {
        Some(SimpleLb::RoundRobin) => cluster::LbPolicy::RoundRobin,
        Some(SimpleLb::Random) => cluster::LbPolicy::Random,
        Some(SimpleLb::Passthrough) => {
            // Connect to the address the application dialled.
            cluster.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::OriginalDst as i32,
            ));
            cluster.eds_cluster_config = None;
            cluster::LbPolicy::ClusterProvided
        }
        Some(SimpleLb::LeastConn | SimpleLb::LeastRequest | SimpleLb::Unspecified) | None => {
            cluster::LbPolicy::LeastRequest
        }
    } as i32;
}

fn apply_connection_pool(
    cluster: &mut Cluster,
    pool: &ConnectionPoolSettings,
    src: PolicySource<'_>,
) -> Result<(), CompileError> {
    let limit = |v: Option<i32>| v.filter(|n| *n > 0).map(|n| u32_value(n.unsigned_abs()));
    if let Some(threshold) = cluster
        .circuit_breakers
        .as_mut()
        .and_then(|cb| cb.thresholds.first_mut())
    {
        let tcp = pool.tcp.as_ref();
        let http = pool.http.as_ref();
        if let Some(v) = limit(tcp.and_then(|t| t.max_connections)) {
            threshold.max_connections = Some(v);
        }
        if let Some(v) = limit(http.and_then(|h| h.http1_max_pending_requests)) {
            threshold.max_pending_requests = Some(v);
        }
        if let Some(v) = limit(http.and_then(|h| h.http2_max_requests)) {
            threshold.max_requests = Some(v);
        }
        if let Some(v) = limit(http.and_then(|h| h.max_retries)) {
            threshold.max_retries = Some(v);
        }
    }
    let Some(tcp) = pool.tcp.as_ref() else {
        return Ok(());
    };
    if let Some(t) = tcp.connect_timeout.as_deref() {
        cluster.connect_timeout = Some(src.duration("connectionPool.tcp.connectTimeout", t)?);
    }
    if let Some(keepalive) = tcp.tcp_keepalive.as_ref() {
        let secs = |field: &str, v: Option<&String>| -> Result<Option<_>, CompileError> {
            v.map(|t| {
                src.duration(field, t)
                    .map(|d| u32_value(u32::try_from(d.seconds).unwrap_or(u32::MAX)))
            })
            .transpose()
        };
        cluster.upstream_connection_options = Some(UpstreamConnectionOptions {
            tcp_keepalive: Some(TcpKeepalive {
                keepalive_probes: keepalive.probes.map(u32_value),
                keepalive_time: secs(
                    "connectionPool.tcp.tcpKeepalive.time",
                    keepalive.time.as_ref(),
                )?,
                keepalive_interval: secs(
                    "connectionPool.tcp.tcpKeepalive.interval",
                    keepalive.interval.as_ref(),
                )?,
            }),
            ..Default::default()
        });
    }
    Ok(())
}

/// Upstream HTTP protocol options: HTTP/2 for HTTP/2 and gRPC ports or when
/// the policy asks to upgrade; idle timeout, requests per connection and
/// connection duration from the pool.
fn apply_http_options(
    cluster: &mut Cluster,
    pool: Option<&ConnectionPoolSettings>,
    protocol: Protocol,
    source: Option<PolicySource<'_>>,
) -> Result<(), CompileError> {
    let http = pool.and_then(|p| p.http.as_ref());
    let upgrade = http.and_then(|h| h.h2_upgrade_policy) == Some(H2UpgradePolicy::Upgrade);
    let use_http2 = protocol.is_http2() || (protocol.is_http() && upgrade);
    let mut common = CoreHttpOptions::default();
    let mut any_common = false;
    if let (Some(src), Some(h)) = (source, http) {
        if let Some(t) = h.idle_timeout.as_deref() {
            common.idle_timeout = Some(src.duration("connectionPool.http.idleTimeout", t)?);
            any_common = true;
        }
        if let Some(n) = h.max_requests_per_connection.filter(|n| *n > 0) {
            common.max_requests_per_connection = Some(u32_value(n.unsigned_abs()));
            any_common = true;
        }
    }
    if let (Some(src), Some(t)) = (
        source,
        pool.and_then(|p| p.tcp.as_ref())
            .and_then(|t| t.max_connection_duration.as_deref()),
    ) {
        common.max_connection_duration =
            Some(src.duration("connectionPool.tcp.maxConnectionDuration", t)?);
        any_common = true;
    }
    if !use_http2 && !any_common {
        return Ok(());
    }
    let protocol_config = if use_http2 {
        http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
            Http2ProtocolOptions {
                max_concurrent_streams: http
                    .and_then(|h| h.max_concurrent_streams)
                    .filter(|n| *n > 0)
                    .map(|n| u32_value(n.unsigned_abs())),
                ..Default::default()
            },
        )
    } else {
        http_protocol_options::explicit_http_config::ProtocolConfig::HttpProtocolOptions(
            Http1ProtocolOptions::default(),
        )
    };
    let options = HttpProtocolOptions {
        common_http_protocol_options: any_common.then_some(common),
        upstream_protocol_options: Some(
            http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(protocol_config),
                },
            ),
        ),
        ..Default::default()
    };
    cluster.typed_extension_protocol_options.insert(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
        any(&options),
    );
    Ok(())
}

fn apply_outlier_detection(
    cluster: &mut Cluster,
    outlier: &OutlierDetection,
    src: PolicySource<'_>,
) -> Result<(), CompileError> {
    // Envoy enforces a detector whenever its threshold is set; Istio turns
    // each on (100%) only when the rule sets it, and success-rate ejection
    // off, which the API does not expose.
    let enforce = |v: u32| u32_value(if v > 0 { 100 } else { 0 });
    let mut out = EnvoyOutlier {
        enforcing_success_rate: Some(u32_value(0)),
        ..Default::default()
    };
    let five_xx = outlier.consecutive_5xx_errors.or(outlier
        .consecutive_errors
        .filter(|n| *n > 0)
        .map(i32::unsigned_abs));
    if let Some(v) = five_xx {
        out.consecutive_5xx = Some(u32_value(v));
        out.enforcing_consecutive_5xx = Some(enforce(v));
    }
    if let Some(v) = outlier.consecutive_gateway_errors {
        out.consecutive_gateway_failure = Some(u32_value(v));
        out.enforcing_consecutive_gateway_failure = Some(enforce(v));
    }
    if let Some(t) = outlier.interval.as_deref() {
        out.interval = Some(src.duration("outlierDetection.interval", t)?);
    }
    if let Some(t) = outlier.base_ejection_time.as_deref() {
        out.base_ejection_time = Some(src.duration("outlierDetection.baseEjectionTime", t)?);
    }
    if let Some(p) = outlier.max_ejection_percent.filter(|p| *p > 0) {
        out.max_ejection_percent = Some(u32_value(p.unsigned_abs()));
    }
    if outlier.split_external_local_origin_errors == Some(true) {
        out.split_external_local_origin_errors = true;
        if let Some(v) = outlier.consecutive_local_origin_failures.filter(|v| *v > 0) {
            out.consecutive_local_origin_failure = Some(u32_value(v));
            out.enforcing_consecutive_local_origin_failure = Some(u32_value(100));
        }
        out.enforcing_local_origin_success_rate = Some(u32_value(0));
    }
    cluster.outlier_detection = Some(out);
    // Kubernetes services often have few pods: Envoy's default panic
    // threshold (50%) would send traffic to ejected hosts, so Istio sets it
    // from minHealthPercent (0 when unset).
    let min_health = outlier.min_health_percent.unwrap_or(0).max(0);
    cluster
        .common_lb_config
        .get_or_insert_with(Default::default)
        .healthy_panic_threshold = Some(Percent {
        value: f64::from(min_health),
    });
    Ok(())
}
