//! Prometheus metrics, served at `/metrics`.
//!
//! One `Metrics` value is shared by every part of the server; each metric is updated by the part
//! that owns the event (the gateway counts frames, the store times commits, and so on).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub acks: Counter,
    pub ack_latency: Histogram,
    pub commit_latency: Histogram,
    pub batch_size: Histogram,
    pub conversation_actors: Gauge,
    pub slow_consumers: Counter,
    pub rate_limited: Counter,
    pub bus_published: Counter,
    pub bus_received: Counter,
    pub bus_up: Gauge,
    pub cluster_nodes: Gauge,
    pub forwarded: Counter,
    pub forward_failed: Counter,
    pub resyncs: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("parley");
        let m = Metrics {
            connections: Gauge::default(),
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            acks: Counter::default(),
            // 50 µs .. ~6.5 s
            ack_latency: Histogram::new(exponential_buckets(0.00005, 2.0, 18)),
            commit_latency: Histogram::new(exponential_buckets(0.00005, 2.0, 18)),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            conversation_actors: Gauge::default(),
            slow_consumers: Counter::default(),
            rate_limited: Counter::default(),
            bus_published: Counter::default(),
            bus_received: Counter::default(),
            bus_up: Gauge::default(),
            cluster_nodes: Gauge::default(),
            forwarded: Counter::default(),
            forward_failed: Counter::default(),
            resyncs: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open authenticated WebSocket sessions",
            m.connections.clone(),
        );
        registry.register(
            "frames_in",
            "WebSocket frames received from clients",
            m.frames_in.clone(),
        );
        registry.register(
            "frames_out",
            "WebSocket frames queued to clients",
            m.frames_out.clone(),
        );
        registry.register(
            "acks",
            "Messages acknowledged (durably stored)",
            m.acks.clone(),
        );
        registry.register(
            "ack_latency_seconds",
            "Time from a send frame's arrival to its ack",
            m.ack_latency.clone(),
        );
        registry.register(
            "store_commit_seconds",
            "Time of one group commit of the store writer",
            m.commit_latency.clone(),
        );
        registry.register(
            "store_batch_size",
            "Writes folded into one store commit",
            m.batch_size.clone(),
        );
        registry.register(
            "conversation_actors",
            "Live conversation actors",
            m.conversation_actors.clone(),
        );
        registry.register(
            "slow_consumers",
            "Sessions closed with 4429 because their outbound queue overflowed",
            m.slow_consumers.clone(),
        );
        registry.register(
            "rate_limited",
            "Client frames refused by the rate limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "bus_published",
            "Frames this node published on the cluster bus",
            m.bus_published.clone(),
        );
        registry.register(
            "bus_received",
            "Frames this node received from other nodes",
            m.bus_received.clone(),
        );
        registry.register(
            "bus_up",
            "1 while the cluster bus subscription and heartbeat work (cluster mode only)",
            m.bus_up.clone(),
        );
        registry.register(
            "cluster_nodes",
            "Live nodes this node sees (cluster mode only)",
            m.cluster_nodes.clone(),
        );
        registry.register(
            "forwarded",
            "Requests forwarded to the owner node of a conversation",
            m.forwarded.clone(),
        );
        registry.register(
            "forward_failed",
            "Forwarded requests answered `unavailable` (owner gone or no answer in time)",
            m.forward_failed.clone(),
        );
        registry.register(
            "resyncs",
            "Times this node repaired its sessions from the store after missed bus frames",
            m.resyncs.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
