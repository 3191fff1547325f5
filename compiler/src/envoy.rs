//! Small helpers over the `envoy-types` protos: packing `Any` with its type
//! URL, durations, wrappers and percentages.

use envoy_types::pb::envoy::config::core::v3::{ApiVersion, ConfigSource, config_source};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use envoy_types::pb::google::protobuf::{Any, BoolValue, Duration, UInt32Value};

pub use envoy_types::pb;

/// Packs a message into an `Any` with its `type.googleapis.com/…` URL, the
/// form Envoy expects in every `typed_config`.
pub fn any<M: prost::Message + prost::Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

pub fn duration_from_std(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

pub fn seconds(s: i64) -> Duration {
    Duration {
        seconds: s,
        nanos: 0,
    }
}

pub fn u32_value(value: u32) -> UInt32Value {
    UInt32Value { value }
}

pub fn bool_value(value: bool) -> BoolValue {
    BoolValue { value }
}

/// An Istio percentage (0–100, fractions allowed) as Envoy's fraction of a
/// million, which keeps four decimals as Istio does.
pub fn percent_of_million(percent: f64) -> FractionalPercent {
    let clamped = percent.clamp(0.0, 100.0);
    FractionalPercent {
        // Bounded by the clamp: at most 1,000,000.
        numerator: (clamped * 10_000.0).round() as u32,
        denominator: fractional_percent::DenominatorType::Million as i32,
    }
}

/// A whole-number percentage as a fraction of a hundred.
pub fn percent_of_hundred(percent: u32) -> FractionalPercent {
    FractionalPercent {
        numerator: percent.min(100),
        denominator: fractional_percent::DenominatorType::Hundred as i32,
    }
}

/// Resources the control plane serves over ADS (EDS, RDS): the proxy asks
/// for them on its one aggregated stream.
pub fn ads_config_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(
            config_source::ConfigSourceSpecifier::Ads(Default::default()),
        ),
        ..Default::default()
    }
}
