//! Prometheus metrics, served at `/metrics`.
//!
//! One `Metrics` value is shared by every part of the server; each metric is updated by the part
//! that owns the event (the gateway counts frames, the store times commits, and so on). Each is
//! declared once below, with its name and help text.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// 50 µs .. ~6.5 s
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.0, 18))
}

macro_rules! metrics {
    ($( $field:ident : $ty:ty = $init:expr, $name:literal, $help:literal; )*) => {
        pub struct Metrics {
            registry: Registry,
            $( pub $field: $ty, )*
        }

        impl Metrics {
            pub fn new() -> Metrics {
                let mut registry = Registry::with_prefix("parley");
                $(
                    let $field: $ty = $init;
                    registry.register($name, $help, $field.clone());
                )*
                Metrics { registry, $( $field, )* }
            }
        }
    };
}

metrics! {
    connections: Gauge = Gauge::default(), "connections", "Open authenticated WebSocket sessions";
    frames_in: Counter = Counter::default(), "frames_in", "WebSocket frames received from clients";
    frames_out: Counter = Counter::default(), "frames_out", "WebSocket frames queued to clients";
    acks: Counter = Counter::default(), "acks", "Messages acknowledged (durably stored)";
    ack_latency: Histogram = latency(), "ack_latency_seconds", "Time from a send frame's arrival to its ack";
    commit_latency: Histogram = latency(), "store_commit_seconds", "Time of one group commit of the store writer";
    batch_size: Histogram = Histogram::new(exponential_buckets(1.0, 2.0, 12)), "store_batch_size", "Writes folded into one store commit";
    conversation_actors: Gauge = Gauge::default(), "conversation_actors", "Live conversation actors";
    conversation_refused: Counter = Counter::default(), "conversation_refused", "Requests refused `unavailable` because a conversation actor's mailbox was full";
    connections_refused: Counter = Counter::default(), "connections_refused", "WebSocket upgrades answered 503 because the node was full (max_connections) or too many waited to authenticate (max_pending_auth)";
    sessions_pending: Gauge = Gauge::default(), "sessions_pending", "WebSocket connections that have not authenticated yet";
    uploads_refused: Counter = Counter::default(), "uploads_refused", "Uploads answered 429 because the user had max_concurrent_uploads running";
    image_seconds: Histogram = latency(), "image_process_seconds", "Time to process one uploaded image (decode, stored copy, thumbnail, placeholder) on the blocking pool";
    images_refused: Counter = Counter::default(), "images_refused", "Image uploads answered 503 because image processing stayed busy for media.queue_wait_ms";
    slow_consumers: Counter = Counter::default(), "slow_consumers", "Sessions closed with 4429 because their outbound queue overflowed";
    events_dropped: Counter = Counter::default(), "events_held_dropped", "Live events dropped while waiting for a device to get their message (sync replays them)";
    rate_limited: Counter = Counter::default(), "rate_limited", "Client frames refused by the rate limit";
    messages_expired: Counter = Counter::default(), "messages_expired", "Messages purged because their conversation's retention period passed";

    bus_published: Counter = Counter::default(), "bus_published", "Frames this node published on the cluster bus";
    bus_received: Counter = Counter::default(), "bus_received", "Frames this node received from other nodes";
    bus_up: Gauge = Gauge::default(), "bus_up", "1 while the cluster bus subscription and heartbeat work (cluster mode only)";
    cluster_nodes: Gauge = Gauge::default(), "cluster_nodes", "Live nodes this node sees (cluster mode only)";
    forwarded: Counter = Counter::default(), "forwarded", "Requests forwarded to the owner node of a conversation";
    forward_failed: Counter = Counter::default(), "forward_failed", "Forwarded requests answered `unavailable` (owner gone or no answer in time)";
    resyncs: Counter = Counter::default(), "resyncs", "Times this node repaired its sessions from the store after missed bus frames";
}

impl Metrics {
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
