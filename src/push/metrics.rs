//! The bridge's metrics, in a registry of their own: `parley push` serves them at its
//! `/metrics`, and a node running a bridge in-process appends them to its own.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByProvider {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByFailure {
    pub provider: String,
    /// "permanent" (dead target, rejected content, TTL passed) or "transient" (will retry).
    pub kind: String,
}

pub struct PushMetrics {
    registry: Registry,
    pub queued: Gauge,
    pub oldest_job_age_seconds: Gauge,
    pub in_flight: Gauge,
    pub delivered: Family<ByProvider, Counter>,
    pub skipped: Counter,
    pub retried: Family<ByProvider, Counter>,
    pub failed: Family<ByFailure, Counter>,
    pub targets_disabled: Family<ByProvider, Counter>,
}

impl PushMetrics {
    pub fn new() -> PushMetrics {
        let mut r = Registry::with_prefix("parley_push");
        let m = PushMetrics {
            queued: Gauge::default(),
            oldest_job_age_seconds: Gauge::default(),
            in_flight: Gauge::default(),
            delivered: Family::default(),
            skipped: Counter::default(),
            retried: Family::default(),
            failed: Family::default(),
            targets_disabled: Family::default(),
            registry: Registry::default(),
        };
        r.register("queued", "Jobs in the outbox", m.queued.clone());
        r.register(
            "oldest_job_age_seconds",
            "Age of the oldest job in the outbox",
            m.oldest_job_age_seconds.clone(),
        );
        r.register(
            "in_flight",
            "Deliveries this bridge is running",
            m.in_flight.clone(),
        );
        r.register(
            "delivered",
            "Notifications a provider accepted",
            m.delivered.clone(),
        );
        r.register(
            "skipped",
            "Jobs completed without a push (the device held the message, or it was read)",
            m.skipped.clone(),
        );
        r.register(
            "retried",
            "Deliveries scheduled again after a transient failure",
            m.retried.clone(),
        );
        r.register(
            "failed",
            "Failed deliveries, by provider and kind",
            m.failed.clone(),
        );
        r.register(
            "targets_disabled",
            "Push targets disabled because a provider declared them dead",
            m.targets_disabled.clone(),
        );
        PushMetrics { registry: r, ..m }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for PushMetrics {
    fn default() -> Self {
        Self::new()
    }
}
