//! The operator's Prometheus metrics. Writes are counted by kind so a
//! benchmark (and a person) can see that an idle mesh costs no writes;
//! lease renewals are counted apart, since leader election must write.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    kind: String,
    verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoopLabels {
    name: String,
    outcome: String,
}

struct Metrics {
    registry: Registry,
    writes: Family<WriteLabels, Counter>,
    lease_writes: Counter,
    passes: Family<LoopLabels, Counter>,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("meshkeeper_operator");
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "writes",
            "Objects the operator created, changed or deleted (leader lease excluded)",
            writes.clone(),
        );
        let lease_writes = Counter::default();
        registry.register(
            "lease_writes",
            "Leader lease takes and renewals",
            lease_writes.clone(),
        );
        let passes = Family::<LoopLabels, Counter>::default();
        registry.register(
            "reconcile_passes",
            "Reconcile passes by loop and outcome",
            passes.clone(),
        );
        Metrics {
            registry,
            writes,
            lease_writes,
            passes,
        }
    })
}

pub fn count_write(kind: &str, verb: &str) {
    metrics()
        .writes
        .get_or_create(&WriteLabels {
            kind: kind.to_owned(),
            verb: verb.to_owned(),
        })
        .inc();
}

pub fn count_lease_write() {
    metrics().lease_writes.inc();
}

pub fn count_pass(name: &str, ok: bool) {
    metrics()
        .passes
        .get_or_create(&LoopLabels {
            name: name.to_owned(),
            outcome: if ok { "ok" } else { "error" }.to_owned(),
        })
        .inc();
}

/// The text exposition format.
pub fn encode() -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics().registry)?;
    Ok(text)
}
