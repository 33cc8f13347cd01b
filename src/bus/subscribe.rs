//! The bus's reads: the subscriber tasks and what a received frame does.
//!
//! It exists to keep the one promise the layer above relies on, whichever Redis it is: when
//! frames may have been missed, `Inbound::resync` is called, once the subscription works again.
//! - On one server (or Sentinel's primary), one classic pub/sub connection; it is pinged, and
//!   a new one is made (asking the sentinels again) when it dies.
//! - On a Redis Cluster, sharded subscriptions on the cluster connection, which the redis
//!   crate resubscribes after reconnects and slot moves. Whether they really deliver is checked
//!   end to end: every second the node publishes an empty probe on each of its channels that
//!   delivered nothing for half a second; a channel silent for 3 s (a dead shard, a slot moved
//!   away: `sunsubscribe`) makes the bus unhealthy and is subscribed again, and when every
//!   channel delivers again, the node resyncs.

use super::backend::{Conn, IO_TIMEOUT};
use super::publish::Batch;
use super::{frame, Bus, Inbound, NodeFrame};
use futures_util::StreamExt;
use redis::{PushInfo, PushKind, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

impl Bus {
    pub(super) async fn subscriber(
        self: Arc<Self>,
        inbound: Arc<dyn Inbound>,
        mut first: Option<redis::aio::PubSub>,
    ) {
        let mut warned = false;
        loop {
            let ps = match first.take() {
                Some(ps) => Ok(ps),
                None => self.subscribe().await,
            };
            match ps {
                Ok(ps) => {
                    warned = false;
                    self.subscribed.store(true, Ordering::Release);
                    tracing::info!(node = %self.node_id, "cluster bus: subscribed");
                    // Whatever was published before this point is in the store: repair from it.
                    inbound.resync();
                    let (mut sink, mut stream) = ps.split();
                    // A subscription can also die silently (a hung server): ping it. (While
                    // subscribed, PING answers ["pong", ""], not +PONG.)
                    let mut ping = tokio::time::interval(IO_TIMEOUT);
                    loop {
                        tokio::select! {
                            m = stream.next() => match m {
                                Some(msg) => self.on_message(msg.get_payload_bytes(), &*inbound),
                                None => break,
                            },
                            _ = ping.tick() => {
                                let pong = tokio::time::timeout(IO_TIMEOUT * 2, sink.ping::<redis::Value>()).await;
                                if !matches!(pong, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                    self.subscribed.store(false, Ordering::Release);
                    tracing::warn!("cluster bus: subscription lost; reconnecting");
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "cluster bus: cannot subscribe; retrying");
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub(super) fn on_message(&self, bytes: &[u8], inbound: &dyn Inbound) {
        let (from, frame) = match frame::decode(bytes) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = ?e, "cluster bus: frame refused");
                return;
            }
        };
        if *from == *self.node_id {
            return; // our own broadcast
        }
        self.metrics.bus_received.inc();
        if let NodeFrame::Left = frame {
            tracing::info!(node = %from, "node left the cluster");
            let live = self
                .live()
                .iter()
                .filter(|n| ***n != *from)
                .cloned()
                .collect();
            self.set_live(live, inbound);
            return;
        }
        inbound.frame(&from, frame);
    }

    /// SSUBSCRIBE to `channels` on the cluster connection (it remembers them and resubscribes
    /// after reconnects), one command per channel: they are on different slots.
    pub(super) async fn ssubscribe(&self, channels: &[String]) -> redis::RedisResult<()> {
        let sub = async {
            let Conn::Cluster(c) = self.connect().await? else {
                unreachable!("sharded pub/sub only on a Redis Cluster")
            };
            let subs = channels.iter().map(|ch| {
                let mut c = c.clone();
                async move { c.ssubscribe(ch).await }
            });
            futures_util::future::join_all(subs)
                .await
                .into_iter()
                .collect::<redis::RedisResult<()>>()
        };
        match tokio::time::timeout(IO_TIMEOUT * 2, sub).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "ssubscribe timed out",
            ))),
        }
    }

    pub(super) async fn sharded_subscriber(
        self: Arc<Self>,
        inbound: Arc<dyn Inbound>,
        mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    ) {
        let channels = self.subscriptions();
        let stale_after = IO_TIMEOUT * 3;
        let mut seen: HashMap<Vec<u8>, Instant> = HashMap::new();
        let mut up = false;
        let mut warned = false;
        let mut tick = tokio::time::interval(IO_TIMEOUT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                p = pushes.recv() => {
                    let Some(p) = p else { return };
                    match p.kind {
                        PushKind::SMessage => {
                            if let [Value::BulkString(ch), Value::BulkString(payload)] = &p.data[..] {
                                seen.insert(ch.clone(), Instant::now());
                                if !payload.is_empty() {
                                    self.on_message(payload, &*inbound);
                                }
                            }
                        }
                        PushKind::Disconnection | PushKind::SUnsubscribe => {
                            // Frames may be lost until every channel delivers again.
                            if let (PushKind::SUnsubscribe, Some(Value::BulkString(ch))) = (&p.kind, p.data.first()) {
                                seen.remove(ch);
                            } else {
                                seen.clear();
                            }
                            if up {
                                tracing::warn!(kind = ?p.kind, "cluster bus: a shard subscription dropped");
                            }
                            up = false;
                            self.subscribed.store(false, Ordering::Release);
                        }
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let stale: Vec<String> = channels
                        .iter()
                        .filter(|c| seen.get(c.as_bytes()).is_none_or(|t| now - *t > stale_after))
                        .cloned()
                        .collect();
                    if stale.is_empty() && !up {
                        up = true;
                        warned = false;
                        self.subscribed.store(true, Ordering::Release);
                        tracing::info!(node = %self.node_id, "cluster bus: subscribed (sharded)");
                        // Whatever was published before this point is in the store.
                        inbound.resync();
                    } else if !stale.is_empty() {
                        if up {
                            tracing::warn!(channels = ?stale, "cluster bus: channels stopped delivering");
                        }
                        up = false;
                        self.subscribed.store(false, Ordering::Release);
                        if let Err(e) = self.ssubscribe(&stale).await {
                            if !warned {
                                warned = true;
                                tracing::warn!(error = %e, "cluster bus: cannot subscribe; retrying");
                            }
                        }
                    }
                    // Probe only what delivered nothing lately: the broadcast channels carry
                    // every node's probes and frames, so an idle cluster probes each about
                    // once a second in all, not once per node.
                    let quiet: Vec<&String> = channels
                        .iter()
                        .filter(|c| seen.get(c.as_bytes()).is_none_or(|t| now - *t >= IO_TIMEOUT / 2))
                        .collect();
                    self.probe(&quiet).await;
                }
            }
        }
    }

    /// An empty SPUBLISH on each channel: it comes back to every subscriber of it.
    async fn probe(&self, channels: &[&String]) {
        if channels.is_empty() {
            return;
        }
        let Ok(c) = self.connect().await else { return };
        let mut batch = Batch::new(true);
        for ch in channels {
            batch.publish(ch, b"");
        }
        if let Err(e) = batch.run(&c).await {
            tracing::debug!(error = %e, "cluster bus: probe failed");
        }
    }
}
