//! Prometheus metrics of the admission server.

use std::fmt::Write;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which admission endpoint served a request.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /inject` (namespace scope, the path Istio's configurations use).
    Inject,
    InjectNamespace,
    InjectObject,
    /// `POST /validate` (networking configuration).
    Validate,
}

impl Endpoint {
    /// The route path, also the metric label.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Inject => "/inject",
            Endpoint::InjectNamespace => "/inject/namespace",
            Endpoint::InjectObject => "/inject/object",
            Endpoint::Validate => "/validate",
        }
    }
}

impl EncodeLabelValue for Endpoint {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.path())
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RequestOutcome {
    Injected,
    /// Validated and allowed without a warning.
    Allowed,
    /// Allowed with admission warnings.
    Warned,
    /// Admitted unchanged (not selected, opted out, not a Pod, ...).
    Skipped,
    Denied,
    /// No admission decision: bad input, not ready, or an internal failure.
    Error,
}

impl RequestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Injected => "injected",
            RequestOutcome::Allowed => "allowed",
            RequestOutcome::Warned => "warned",
            RequestOutcome::Skipped => "skipped",
            RequestOutcome::Denied => "denied",
            RequestOutcome::Error => "error",
        }
    }
}

impl EncodeLabelValue for RequestOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: Endpoint,
    outcome: RequestOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: Endpoint,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~3.3 s: injection takes microseconds, the API server gives
    // up after the webhook timeout (at most 30 s).
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("meshkeeper_webhook");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Admission requests by endpoint and outcome",
            requests.clone(),
        );
        let durations: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "request_duration",
            "Time to answer an admission request, from the first byte of the body",
            prometheus_client::registry::Unit::Seconds,
            durations.clone(),
        );
        Self {
            registry,
            requests,
            durations,
        }
    }

    pub fn record(&self, endpoint: Endpoint, outcome: RequestOutcome, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { endpoint, outcome })
            .inc();
        self.durations
            .get_or_create(&EndpointLabels { endpoint })
            .observe(took.as_secs_f64());
    }

    /// How many requests ended so (for tests and diagnostics).
    pub fn count(&self, endpoint: Endpoint, outcome: RequestOutcome) -> u64 {
        self.requests
            .get(&RequestLabels { endpoint, outcome })
            .map_or(0, |c| c.get())
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_counter_and_histogram_with_labels() {
        let metrics = Metrics::new();
        metrics.record(
            Endpoint::InjectObject,
            RequestOutcome::Denied,
            Duration::from_micros(250),
        );
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"meshkeeper_webhook_requests_total{endpoint="/inject/object",outcome="denied"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"meshkeeper_webhook_request_duration_seconds_count{endpoint="/inject/object"} 1"#
            ),
            "{text}"
        );
        assert_eq!(
            metrics.count(Endpoint::InjectObject, RequestOutcome::Denied),
            1
        );
        assert_eq!(
            metrics.count(Endpoint::InjectObject, RequestOutcome::Injected),
            0
        );
    }
}
