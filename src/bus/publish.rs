//! The bus's writes: the publisher task (frames and presence, in order, pipelined) and
//! `Batch`, the one place a group of commands becomes pipelines.
//!
//! It exists because a Redis Cluster refuses a pipeline whose keys span slots: there a batch
//! is split into one pipeline per slot (order is kept within a slot, which is all a channel
//! needs: a node's frames on one channel stay in order), sent concurrently; on one server it
//! stays one pipeline, as before.

use super::backend::{self, Conn, IO_TIMEOUT};
use super::{frame, Bus, NodeFrame, Op};
use futures_util::future::join_all;
use redis::Pipeline;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Commands grouped into pipelines: one per slot on a Redis Cluster, one in all otherwise.
pub(super) struct Batch {
    sharded: bool,
    pipes: BTreeMap<u16, Pipeline>,
}

impl Batch {
    pub fn new(sharded: bool) -> Batch {
        Batch {
            sharded,
            pipes: BTreeMap::new(),
        }
    }

    /// The pipeline for commands on `key`.
    pub fn on(&mut self, key: &str) -> &mut Pipeline {
        let slot = if self.sharded {
            backend::slot(key.as_bytes())
        } else {
            0
        };
        self.pipes.entry(slot).or_insert_with(redis::pipe)
    }

    /// PUBLISH, or SPUBLISH on a Redis Cluster.
    pub fn publish(&mut self, channel: &str, payload: &[u8]) {
        let sharded = self.sharded;
        let p = self.on(channel);
        if sharded {
            p.cmd("SPUBLISH").arg(channel).arg(payload).ignore();
        } else {
            p.publish(channel, payload).ignore();
        }
    }

    /// Sends every pipeline (concurrently); the first error, if any.
    pub async fn run(self, conn: &Conn) -> redis::RedisResult<()> {
        let runs = self.pipes.into_values().map(|p| {
            let mut c = conn.clone();
            async move {
                let r = tokio::time::timeout(IO_TIMEOUT * 3, p.query_async::<()>(&mut c)).await;
                r.unwrap_or_else(|_| {
                    Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "bus pipeline timed out",
                    )))
                })
            }
        });
        join_all(runs).await.into_iter().collect()
    }
}

impl Bus {
    pub(super) async fn publisher(self: Arc<Self>, mut rx: mpsc::Receiver<Op>) {
        let mut conn: Option<Conn> = None;
        let mut buf = Vec::with_capacity(256);
        let ttl = self.cfg.node_ttl_ms as i64;
        let users_key = self.users_key(&self.node_id);
        while rx.recv_many(&mut buf, 256).await > 0 {
            if conn.is_none() {
                conn = self.connect().await.ok();
            }
            let Some(c) = conn.as_ref() else {
                self.lost_publish.store(true, Ordering::Release);
                buf.clear();
                continue;
            };
            let mut batch = Batch::new(self.backend.sharded());
            let mut n = 0u64;
            for op in buf.drain(..) {
                match op {
                    Op::Publish { channel, payload } => {
                        n += 1;
                        batch.publish(&channel, &payload);
                    }
                    Op::Online(u) => {
                        batch
                            .on(&users_key)
                            .sadd(&users_key, u)
                            .ignore()
                            .pexpire(&users_key, ttl)
                            .ignore();
                    }
                    Op::Offline(u) => {
                        batch.on(&users_key).srem(&users_key, u).ignore();
                    }
                }
            }
            if self.lost_publish.swap(false, Ordering::AcqRel) {
                // Frames were dropped while Redis was away: every node repairs from the store.
                let resync = frame::encode(&self.node_id, NodeFrame::Resync);
                batch.publish(&self.broadcast_channel, &resync);
            }
            match batch.run(c).await {
                Ok(()) => {
                    self.metrics.bus_published.inc_by(n);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster bus: publish failed");
                    self.lost_publish.store(true, Ordering::Release);
                    conn = None;
                }
            }
        }
    }
}
