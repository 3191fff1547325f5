//! A port's protocol, chosen as Istio chooses it: `appProtocol` first, then
//! the port name's prefix (`http`, `http-web`, `grpc-api`, …).

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    Https,
    Tcp,
    Tls,
    Mongo,
    Redis,
    Mysql,
    /// Neither name nor appProtocol says; Istio sniffs, meshkeeper treats it
    /// as opaque TCP until sniffing exists.
    Unknown,
}

impl Protocol {
    /// From a protocol word (`HTTP`, `grpc-web`, `tcp`), case-insensitive.
    pub fn parse(word: &str) -> Protocol {
        match word.to_ascii_lowercase().as_str() {
            "http" | "http1" => Protocol::Http,
            "http2" | "h2c" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "https" => Protocol::Https,
            "tcp" => Protocol::Tcp,
            "tls" => Protocol::Tls,
            "mongo" => Protocol::Mongo,
            "redis" => Protocol::Redis,
            "mysql" => Protocol::Mysql,
            _ => Protocol::Unknown,
        }
    }

    /// A Kubernetes Service port: `appProtocol`, else the name up to its
    /// first `-` (`http-web` is HTTP; `grpc-web` stays gRPC-Web).
    pub fn of_service_port(name: Option<&str>, app_protocol: Option<&str>) -> Protocol {
        if let Some(p) = app_protocol.map(Protocol::parse_app_protocol)
            && p != Protocol::Unknown
        {
            return p;
        }
        let Some(name) = name else {
            return Protocol::Unknown;
        };
        let lower = name.to_ascii_lowercase();
        if lower == "grpc-web" || lower.starts_with("grpc-web-") {
            return Protocol::GrpcWeb;
        }
        Protocol::parse(lower.split('-').next().unwrap_or_default())
    }

    fn parse_app_protocol(value: &str) -> Protocol {
        match value {
            // Kubernetes' standard names for HTTP/2 cleartext and websockets.
            "kubernetes.io/h2c" => Protocol::Http2,
            "kubernetes.io/ws" => Protocol::Http,
            "kubernetes.io/wss" => Protocol::Https,
            other => Protocol::parse(other),
        }
    }

    /// Terminated as HTTP by the sidecar (routes apply).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }

    /// Upstream connections speak HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_prefix_and_app_protocol() {
        assert_eq!(
            Protocol::of_service_port(Some("http"), None),
            Protocol::Http
        );
        assert_eq!(
            Protocol::of_service_port(Some("http-web"), None),
            Protocol::Http
        );
        assert_eq!(
            Protocol::of_service_port(Some("HTTP2-x"), None),
            Protocol::Http2
        );
        assert_eq!(
            Protocol::of_service_port(Some("grpc-web"), None),
            Protocol::GrpcWeb
        );
        assert_eq!(
            Protocol::of_service_port(Some("tcp-db"), None),
            Protocol::Tcp
        );
        assert_eq!(
            Protocol::of_service_port(Some("web"), None),
            Protocol::Unknown
        );
        assert_eq!(
            Protocol::of_service_port(Some("web"), Some("http")),
            Protocol::Http
        );
        assert_eq!(
            Protocol::of_service_port(Some("tcp"), Some("kubernetes.io/h2c")),
            Protocol::Http2
        );
        assert_eq!(Protocol::of_service_port(None, None), Protocol::Unknown);
    }
}
