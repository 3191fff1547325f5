//! The Bookinfo fixture: the corpus' `bookinfo.yaml` (Services and
//! Deployments) in namespace `bookinfo`, with what the cluster would add:
//! one running Pod per Deployment (template labels, IP 10.1.0.N), a
//! ClusterIP per Service (10.96.0.N) and an EndpointSlice per Service
//! selecting those pods. Routing samples come from `networking/`.

#![allow(dead_code)]

use meshkeeper_compiler::{MeshSettings, Proxy, Snapshot, SnapshotBuilder};
use meshkeeper_testkit::Document;
use serde_json::{Value, json};

pub const NAMESPACE: &str = "bookinfo";

pub fn bookinfo_documents() -> Vec<Document> {
    meshkeeper_testkit::documents("bookinfo/platform/kube")
        .expect("corpus")
        .into_iter()
        .filter(|d| d.file.file_name().is_some_and(|f| f == "bookinfo.yaml"))
        .collect()
}

pub fn networking_file(name: &str) -> Vec<Value> {
    meshkeeper_testkit::documents("bookinfo/networking")
        .expect("corpus")
        .into_iter()
        .filter(|d| d.file.file_name().is_some_and(|f| f == name))
        .map(|d| with_namespace(d.value))
        .collect()
}

/// Every `virtual-service-*.yaml` of the Bookinfo samples, sorted.
pub fn virtual_service_files() -> Vec<String> {
    let mut names: Vec<String> = meshkeeper_testkit::documents("bookinfo/networking")
        .expect("corpus")
        .into_iter()
        .filter_map(|d| d.file.file_name().map(|f| f.to_string_lossy().into_owned()))
        .filter(|f| f.starts_with("virtual-service-"))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn with_namespace(mut v: Value) -> Value {
    if v["metadata"]["namespace"].is_null() {
        v["metadata"]["namespace"] = json!(NAMESPACE);
    }
    v
}

/// Pods, ClusterIPs and EndpointSlices for the Bookinfo manifests.
pub fn cluster_state(docs: &[Document]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut pods = Vec::new();
    for d in docs.iter().filter(|d| d.kind() == "Deployment") {
        let n = pods.len() + 1;
        let labels = d.value["spec"]["template"]["metadata"]["labels"].clone();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{}-0", d.name()), "namespace": NAMESPACE, "labels": labels},
            "status": {"podIP": format!("10.1.0.{n}")},
        });
        pods.push(pod.clone());
        out.push(pod);
    }
    let mut n = 0;
    for d in docs.iter().filter(|d| d.kind() == "Service") {
        n += 1;
        let mut svc = with_namespace(d.value.clone());
        svc["spec"]["clusterIP"] = json!(format!("10.96.0.{n}"));
        let selector = svc["spec"]["selector"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let ports: Vec<Value> = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| json!({"name": p["name"], "port": p.get("targetPort").filter(|t| t.is_u64()).unwrap_or(&p["port"]), "protocol": "TCP"}))
            .collect();
        let endpoints: Vec<Value> = pods
            .iter()
            .filter(|p| selector.iter().all(|(k, v)| &p["metadata"]["labels"][k] == v))
            .map(|p| json!({
                "addresses": [p["status"]["podIP"]],
                "conditions": {"ready": true},
                "targetRef": {"kind": "Pod", "namespace": NAMESPACE, "name": p["metadata"]["name"]},
            }))
            .collect();
        out.push(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{}-abc", d.name()), "namespace": NAMESPACE,
                          "labels": {"kubernetes.io/service-name": d.name()}},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }));
        out.push(svc);
    }
    out
}

/// The snapshot for Bookinfo plus the given networking documents.
pub fn snapshot(mesh: MeshSettings, networking: &[Value]) -> Snapshot {
    let docs = bookinfo_documents();
    let mut builder = SnapshotBuilder::new(mesh);
    for v in cluster_state(&docs).iter().chain(networking) {
        builder.add_document(v).expect("document parses");
    }
    builder.build().expect("snapshot builds")
}

/// The sidecar of `productpage-v1-0` (it calls reviews and details).
pub fn productpage(snapshot: &Snapshot) -> Proxy {
    sidecar(snapshot, "productpage")
}

/// The sidecar of the first pod whose `app` label is `app`.
pub fn sidecar(snapshot: &Snapshot, app: &str) -> Proxy {
    let docs = bookinfo_documents();
    let state = cluster_state(&docs);
    let pod = state
        .iter()
        .find(|v| v["kind"] == "Pod" && v["metadata"]["labels"]["app"] == app)
        .expect("pod of app");
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod.clone()).unwrap();
    let _ = snapshot;
    Proxy::sidecar_of_pod(&pod).unwrap()
}

/// One VirtualService and DestinationRule using every routing and policy
/// feature the compiler translates, plus DNS and STATIC ServiceEntries: the
/// corpus samples use few of them.
pub fn every_feature() -> Vec<Value> {
    let vs = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "features", "namespace": NAMESPACE},
        "spec": {"hosts": ["reviews", "ratings"], "http": [
            {"name": "redirect", "match": [{"uri": {"exact": "/old"}}],
             "redirect": {"uri": "/new", "authority": "example.com", "redirectCode": 308, "scheme": "https", "port": 8443}},
            {"name": "direct", "match": [{"uri": {"prefix": "/health"}, "method": {"exact": "GET"}}],
             "directResponse": {"status": 200, "body": {"string": "ok"}}},
            {"name": "regex", "match": [{"name": "m1", "uri": {"regex": "/api/v[0-9]+/.*"}, "ignoreUriCase": true,
                "headers": {"x-canary": {"prefix": "yes"}, "x-present": {}},
                "withoutHeaders": {"x-debug": {"exact": "1"}},
                "queryParams": {"user": {"exact": "jason"}, "flag": {}},
                "authority": {"regex": "reviews.*"}}],
             "rewrite": {"uri": "/v2/", "authority": "reviews.internal"},
             "timeout": "2.5s",
             "retries": {"attempts": 3, "perTryTimeout": "500ms", "retryOn": "5xx,gateway-error,503"},
             "route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 75,
                        "headers": {"request": {"set": {"x-subset": "v1"}}}},
                       {"destination": {"host": "reviews", "subset": "v2"}, "weight": 25},
                       {"destination": {"host": "reviews", "subset": "v3"}, "weight": 0}]},
            {"name": "regex-rewrite", "match": [{"uri": {"prefix": "/rx"}}],
             "rewrite": {"uriRegexRewrite": {"match": "^/rx/(.*)$", "rewrite": "/\\1"}},
             "route": [{"destination": {"host": "reviews", "port": {"number": 9080}}}]},
            {"name": "source", "match": [{"sourceLabels": {"app": "nobody"}}],
             "route": [{"destination": {"host": "reviews", "subset": "v3"}}]},
            {"name": "faults",
             "fault": {"delay": {"fixedDelay": "1s", "percentage": {"value": 12.5}},
                       "abort": {"httpStatus": 503, "percentage": {"value": 0.1}}},
             "mirror": {"host": "ratings"}, "mirrorPercentage": {"value": 50},
             "mirrors": [{"destination": {"host": "details"}, "percentage": {"value": 5}}],
             "corsPolicy": {"allowOrigins": [{"exact": "https://a.example"}, {"regex": ".*\\.b\\.example"}],
                            "allowMethods": ["GET", "POST"], "allowHeaders": ["x-a"], "exposeHeaders": ["x-b"],
                            "maxAge": "24h", "allowCredentials": true},
             "headers": {"request": {"set": {"x-set": "1"}, "add": {"x-add": "2"}, "remove": ["x-rm"]},
                         "response": {"set": {"x-resp": "3"}, "remove": ["server"]}},
             "route": [{"destination": {"host": "reviews", "subset": "v2"}}]}
        ]}
    });
    let dr = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "features", "namespace": NAMESPACE},
        "spec": {"host": "reviews",
            "trafficPolicy": {
                "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user", "ringHash": {"minimumRingSize": 2048}}},
                "connectionPool": {"tcp": {"maxConnections": 100, "connectTimeout": "3s",
                                           "tcpKeepalive": {"time": "7200s", "interval": "75s", "probes": 9}},
                                   "http": {"http1MaxPendingRequests": 10, "http2MaxRequests": 1000,
                                            "maxRequestsPerConnection": 5, "maxRetries": 4, "idleTimeout": "30s"}},
                "outlierDetection": {"consecutive5xxErrors": 5, "consecutiveGatewayErrors": 2, "interval": "10s",
                                     "baseEjectionTime": "30s", "maxEjectionPercent": 50, "minHealthPercent": 20},
                "tls": {"mode": "SIMPLE", "sni": "reviews.example", "caCertificates": "/etc/ssl/certs/ca-certificates.crt",
                        "subjectAltNames": ["reviews.example"]},
                "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": {"simple": "ROUND_ROBIN"},
                                       "tls": {"mode": "ISTIO_MUTUAL"}}]},
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"},
                 "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"},
                                   "connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE"}},
                                   "tls": {"mode": "MUTUAL", "clientCertificate": "/etc/certs/cert.pem",
                                           "privateKey": "/etc/certs/key.pem"}}},
                {"name": "v3", "labels": {"version": "v3"},
                 "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpCookie": {"name": "user", "ttl": "0s"}}}}}]}
    });
    let dns = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": "external", "namespace": NAMESPACE},
        "spec": {"hosts": ["api.example.com"], "location": "MESH_EXTERNAL", "resolution": "DNS",
                 "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}, {"number": 80, "name": "http", "protocol": "HTTP"}]}
    });
    let fixed = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": "db", "namespace": NAMESPACE},
        "spec": {"hosts": ["db.internal"], "addresses": ["10.200.0.1"], "location": "MESH_INTERNAL", "resolution": "STATIC",
                 "ports": [{"number": 5432, "name": "tcp-pg", "protocol": "TCP"}],
                 "endpoints": [{"address": "10.201.0.1", "labels": {"version": "a"}}, {"address": "10.201.0.2", "ports": {"tcp-pg": 6432}}]}
    });
    vec![vs, dr, dns, fixed]
}

/// TCP and TLS routes: a STATIC database entry with a VIP whose `tcp`
/// rules split by destination subnet and source labels, and address-less
/// DNS entries on 443 whose `tls` rules route by SNI (one wildcard, one
/// weighted).
pub fn tcp_tls_routes() -> Vec<Value> {
    let db = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": "db", "namespace": NAMESPACE},
        "spec": {"hosts": ["db.internal"], "addresses": ["10.200.0.1"], "location": "MESH_INTERNAL", "resolution": "STATIC",
                 "ports": [{"number": 5432, "name": "tcp-pg", "protocol": "TCP"}],
                 "endpoints": [{"address": "10.201.0.1", "labels": {"version": "a"}},
                               {"address": "10.201.0.2", "labels": {"version": "b"}}]}
    });
    let db_rule = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "db", "namespace": NAMESPACE},
        "spec": {"host": "db.internal", "subsets": [{"name": "a", "labels": {"version": "a"}},
                                                   {"name": "b", "labels": {"version": "b"}}]}
    });
    let db_routes = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "db", "namespace": NAMESPACE},
        "spec": {"hosts": ["db.internal"], "tcp": [
            {"match": [{"destinationSubnets": ["10.200.0.0/24", "10.200.1.7"], "sourceLabels": {"app": "productpage"}}],
             "route": [{"destination": {"host": "db.internal", "subset": "a"}, "weight": 80},
                       {"destination": {"host": "db.internal", "subset": "b"}, "weight": 20}]},
            {"match": [{"sourceLabels": {"app": "nobody"}}],
             "route": [{"destination": {"host": "db.internal", "subset": "a"}}]},
            {"match": [{"port": 5432}],
             "route": [{"destination": {"host": "db.internal", "subset": "b"}}]}]}
    });
    let external = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": "external-tls", "namespace": NAMESPACE},
        "spec": {"hosts": ["api.example.com", "*.wiki.example", "mirror.example.com"], "location": "MESH_EXTERNAL",
                 "resolution": "NONE", "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]}
    });
    let dns = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": "api-dns", "namespace": NAMESPACE},
        "spec": {"hosts": ["backup.example.com"], "location": "MESH_EXTERNAL", "resolution": "DNS",
                 "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]}
    });
    let tls_routes = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "external-tls", "namespace": NAMESPACE},
        "spec": {"hosts": ["api.example.com", "*.wiki.example"], "tls": [
            {"match": [{"sniHosts": ["api.example.com"], "port": 443}],
             "route": [{"destination": {"host": "api.example.com", "port": {"number": 443}}, "weight": 90},
                       {"destination": {"host": "backup.example.com", "port": {"number": 443}}, "weight": 10}]},
            {"match": [{"sniHosts": ["*.wiki.example"], "destinationSubnets": ["203.0.113.0/24"]},
                       {"sniHosts": ["api.example.com"], "port": 443, "sourceLabels": {"app": "productpage"}}],
             "route": [{"destination": {"host": "mirror.example.com", "port": {"number": 443}}}]}]}
    });
    vec![db, db_rule, db_routes, external, dns, tls_routes]
}

/// Delegation: `reviews` hands `/api` to a delegate VirtualService (one
/// rule inside the root's match, one outside it, which is dropped with a
/// warning), and a second rule names a delegate that does not exist.
pub fn delegation() -> Vec<Value> {
    let root = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews-root", "namespace": NAMESPACE},
        "spec": {"hosts": ["reviews"], "http": [
            {"name": "api", "match": [{"uri": {"prefix": "/api"}}], "timeout": "5s",
             "delegate": {"name": "reviews-api"}},
            {"name": "gone", "match": [{"uri": {"prefix": "/gone"}}],
             "delegate": {"name": "missing", "namespace": "elsewhere"}},
            {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}
    });
    let delegate = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews-api", "namespace": NAMESPACE},
        "spec": {"http": [
            {"name": "v2", "match": [{"uri": {"prefix": "/api/v2"}, "headers": {"end-user": {"exact": "jason"}}}],
             "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
            {"name": "outside", "match": [{"uri": {"exact": "/health"}}],
             "route": [{"destination": {"host": "reviews", "subset": "v3"}}]},
            {"name": "rest", "route": [{"destination": {"host": "reviews", "subset": "v3"}}], "retries": {"attempts": 1}}]}
    });
    vec![root, delegate]
}

/// Every scenario: name and networking documents (the DestinationRules of
/// `destination-rule-all.yaml` under each VirtualService sample).
pub fn scenarios() -> Vec<(String, Vec<Value>)> {
    let rules = networking_file("destination-rule-all.yaml");
    let mut out = vec![
        ("services-only".to_string(), Vec::new()),
        ("destination-rule-all".to_string(), rules.clone()),
        ("every-feature".to_string(), every_feature()),
        ("tcp-tls-routes".to_string(), tcp_tls_routes()),
        ("delegation".to_string(), {
            let mut docs = rules.clone();
            docs.extend(delegation());
            docs
        }),
    ];
    for file in virtual_service_files() {
        let mut docs = rules.clone();
        docs.extend(networking_file(&file));
        out.push((file.trim_end_matches(".yaml").to_string(), docs));
    }
    out
}

/// The ingress gateway pod's proxy (namespace `istio-system`, labels as
/// Istio's Helm chart sets them).
pub fn ingress_gateway() -> Proxy {
    let labels = [("istio", "ingressgateway"), ("app", "istio-ingressgateway")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Proxy::gateway("istio-system", "istio-ingressgateway-0", "10.1.1.1", labels)
}

/// A Gateway with every kind of server: HTTP redirecting to HTTPS, HTTPS
/// terminated with SDS credentials (SIMPLE and MUTUAL, told apart by SNI),
/// TLS passthrough on the same port, TCP; plus what is not served (an
/// ISTIO_MUTUAL server, a TCP server on the HTTP port, a VirtualService
/// for hosts no server of its Gateway serves, whose only server then
/// answers 404 from an empty host), which shows as warnings.
pub fn every_server() -> Vec<Value> {
    let gateway = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "edge", "namespace": NAMESPACE},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["bookinfo/*.example.com"],
             "tls": {"httpsRedirect": true}},
            {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["bookinfo/bookinfo.example.com"],
             "tls": {"mode": "SIMPLE", "credentialName": "bookinfo-cert", "minProtocolVersion": "TLSV1_2"}},
            {"port": {"number": 443, "name": "https-mtls", "protocol": "HTTPS"}, "hosts": ["mtls.example.com"],
             "tls": {"mode": "MUTUAL", "credentialName": "mtls-cert"}},
            {"port": {"number": 443, "name": "tls", "protocol": "TLS"}, "hosts": ["*.passthrough.example"],
             "tls": {"mode": "PASSTHROUGH"}},
            {"port": {"number": 31400, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]},
            {"port": {"number": 8443, "name": "https-mesh", "protocol": "HTTPS"}, "hosts": ["*"],
             "tls": {"mode": "ISTIO_MUTUAL"}},
            {"port": {"number": 80, "name": "tcp-clash", "protocol": "TCP"}, "hosts": ["*"]}]}
    });
    let http = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "edge-http", "namespace": NAMESPACE},
        "spec": {"hosts": ["bookinfo.example.com", "mtls.example.com"], "gateways": ["edge"], "http": [
            {"name": "reviews", "match": [{"uri": {"prefix": "/reviews"}}],
             "route": [{"destination": {"host": "reviews", "subset": "v2", "port": {"number": 9080}}}]},
            {"route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}]}
    });
    let passthrough = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "edge-passthrough", "namespace": NAMESPACE},
        "spec": {"hosts": ["*.passthrough.example"], "gateways": ["bookinfo/edge"], "tls": [
            {"match": [{"sniHosts": ["a.passthrough.example"], "port": 443}],
             "route": [{"destination": {"host": "details", "port": {"number": 9080}}}]}]}
    });
    let tcp = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "edge-tcp", "namespace": NAMESPACE},
        "spec": {"hosts": ["*"], "gateways": ["edge"], "tcp": [
            {"match": [{"port": 31400}],
             "route": [{"destination": {"host": "ratings", "port": {"number": 9080}}, "weight": 50},
                       {"destination": {"host": "details", "port": {"number": 9080}}, "weight": 50}]}]}
    });
    let internal = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "internal", "namespace": NAMESPACE},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
            {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["./internal.example.com"]}]}
    });
    let unserved = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "internal-unserved", "namespace": NAMESPACE},
        "spec": {"hosts": ["other.example.org"], "gateways": ["internal"], "http": [
            {"route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]}]}
    });
    vec![gateway, http, passthrough, tcp, internal, unserved]
}

/// Gateway scenarios, compiled for [`ingress_gateway`]: the corpus'
/// `bookinfo-gateway.yaml`, and [`every_server`].
pub fn gateway_scenarios() -> Vec<(String, Vec<Value>)> {
    let rules = networking_file("destination-rule-all.yaml");
    let mut bookinfo = rules.clone();
    bookinfo.extend(networking_file("bookinfo-gateway.yaml"));
    let mut every = rules;
    every.extend(every_server());
    vec![
        ("gateway-bookinfo".to_string(), bookinfo),
        ("gateway-every-server".to_string(), every),
    ]
}
