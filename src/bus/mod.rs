//! The bus between nodes of a cluster, over Redis (one server, a Sentinel-managed primary, or
//! a Redis Cluster: `backend`).
//!
//! It exists so that nodes need to know nothing about each other's addresses: every node
//! registers in Redis, subscribes once, and publishes. It carries three things, and owns the
//! Redis side of each:
//! - **Membership.** Every `heartbeat_ms` a node adds itself to a sorted set scored by Redis's
//!   own clock and trims entries older than `node_ttl_ms` (one Lua script, so node clocks never
//!   matter). The live set decides conversation ownership (`owner`, rendezvous hashing).
//! - **Frames.** One subscriber connection per node, on two channels: `{prefix}:all`
//!   (broadcasts: fan-out, receipts, presence) and `{prefix}:node:{id}` (requests forwarded to
//!   this node as a conversation's owner, and replies). Publishes go through one queue and one
//!   task, in order, pipelined in batches (`publish`).
//! - **On a Redis Cluster** the same, with sharded pub/sub: `{prefix}:node:{id}` lands on the
//!   slot of its name, and broadcasts are spread over `BROADCAST_CHANNELS` channels placed one
//!   per 1/16 of the slot space (so across every shard); each node publishes its broadcasts on
//!   one of them (chosen by its id: its broadcasts stay in order) and subscribes to all. The
//!   membership and presence keys share the hash tag `{prefix}`, so the heartbeat script and
//!   the presence pipeline stay on one slot.
//! - **Presence.** The users with sessions on a node: a Redis set per node whose TTL the
//!   heartbeat renews, so a dead node's users expire with it.
//!
//! Redis pub/sub is at most once. The bus does not hide that; it reports it: `Inbound::resync`
//! is called whenever frames may have been missed (a new subscription, another node that could
//! not publish), and the layer above repairs from the store, which is the source of truth.

mod backend;
pub mod frame;
mod publish;
mod subscribe;

use crate::config::ClusterConfig;
use crate::metrics::Metrics;
use backend::{Backend, Conn, IO_TIMEOUT};
use frame::NodeFrame;
use publish::Batch;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

pub type NodeId = Arc<str>;

/// What the bus hands to the layer above. Called from the bus's tasks: must not block.
pub trait Inbound: Send + Sync + 'static {
    fn frame(&self, from: &str, frame: NodeFrame);
    /// Frames may have been missed: repair every local session from the store.
    fn resync(&self);
    /// The live set changed; `gone` left or died.
    fn membership(&self, live: &[NodeId], gone: &[NodeId]);
    /// Users with sessions on this node (to restore presence after Redis lost it).
    fn local_users(&self) -> Vec<String>;
}

enum Op {
    Publish { channel: String, payload: Vec<u8> },
    Online(String),
    Offline(String),
}

/// Publishes queued beyond this are dropped (and trigger a cluster-wide resync).
const OP_QUEUE: usize = 65_536;
/// Broadcast channels on a Redis Cluster, one per 1/16 of the slot space.
const BROADCAST_CHANNELS: u16 = 16;

/// Renews this node's membership, drops expired nodes, keeps the node's user set alive, and
/// returns the live nodes. Redis's clock is the only clock involved.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return redis.call('ZRANGE', KEYS[1], 0, -1)
";

pub struct Bus {
    node_id: NodeId,
    cfg: ClusterConfig,
    backend: Backend,
    /// For heartbeats and queries; the publisher task has its own connection (on a Redis
    /// Cluster both are the one cluster connection).
    conn: tokio::sync::Mutex<Option<Conn>>,
    /// Where this node publishes its broadcasts.
    broadcast_channel: String,
    ops: mpsc::Sender<Op>,
    ops_rx: Mutex<Option<mpsc::Receiver<Op>>>,
    live: RwLock<Arc<Vec<NodeId>>>,
    subscribed: AtomicBool,
    beating: AtomicBool,
    lost_publish: AtomicBool,
    leaving: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Bus {
    pub fn new(cfg: &ClusterConfig, metrics: Arc<Metrics>) -> Result<Arc<Bus>, String> {
        let backend = Backend::open(&cfg.bus, &cfg.tls_ca)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let node_id: NodeId = Arc::from(&id[..12]);
        let (tx, rx) = mpsc::channel(OP_QUEUE);
        let broadcast_channel = if backend.sharded() {
            let all = broadcast_channels(&cfg.prefix);
            all[(score(&node_id, "broadcast") % all.len() as u64) as usize].clone()
        } else {
            format!("{}:all", cfg.prefix)
        };
        Ok(Arc::new(Bus {
            node_id,
            cfg: cfg.clone(),
            backend,
            conn: Default::default(),
            broadcast_channel,
            ops: tx,
            ops_rx: Mutex::new(Some(rx)),
            live: Default::default(),
            subscribed: AtomicBool::new(false),
            beating: AtomicBool::new(false),
            lost_publish: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            metrics,
        }))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// A membership or presence key; on a Redis Cluster they all share the slot of `{prefix}`.
    fn key(&self, k: &str) -> String {
        if self.backend.sharded() {
            format!("{{{}}}:{k}", self.cfg.prefix)
        } else {
            format!("{}:{k}", self.cfg.prefix)
        }
    }

    fn node_channel(&self, node: &str) -> String {
        format!("{}:node:{node}", self.cfg.prefix)
    }

    fn users_key(&self, node: &str) -> String {
        self.key(&format!("users:{node}"))
    }

    /// Every channel this node listens on: the broadcasts and its own.
    fn subscriptions(&self) -> Vec<String> {
        let mut all = if self.backend.sharded() {
            broadcast_channels(&self.cfg.prefix)
        } else {
            vec![self.broadcast_channel.clone()]
        };
        all.push(self.node_channel(&self.node_id));
        all
    }

    /// Registers this node (one heartbeat, so that it knows the live set before it serves) and
    /// starts the subscriber, publisher and heartbeat tasks on the current (actix) thread.
    pub async fn start(self: &Arc<Self>, inbound: Arc<dyn Inbound>) {
        // Subscribe first: once this node is in the live set, others forward requests to its
        // channel, and a frame published before the subscription exists is lost.
        let pushes = self.backend.take_pushes();
        let first = if pushes.is_some() {
            let subs = self.subscriptions();
            let inbox = self.node_channel(&self.node_id);
            tracing::info!(
                inbox = %inbox,
                inbox_slot = backend::slot(inbox.as_bytes()),
                broadcasts = %self.broadcast_channel,
                broadcasts_slot = backend::slot(self.broadcast_channel.as_bytes()),
                "cluster bus: sharded pub/sub on a Redis Cluster"
            );
            if let Err(e) = self.ssubscribe(&subs).await {
                tracing::warn!(error = %e, "cluster bus: cannot subscribe at start; retrying");
            }
            None
        } else {
            match self.subscribe().await {
                Ok(ps) => Some(ps),
                Err(e) => {
                    tracing::warn!(error = %e, "cluster bus: cannot subscribe at start; retrying");
                    None
                }
            }
        };
        let ok = match tokio::time::timeout(IO_TIMEOUT * 2, self.beat(&*inbound, false)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cluster bus: Redis unreachable at start; retrying");
                false
            }
            Err(_) => false,
        };
        self.beating.store(ok, Ordering::Release);
        let rx = self.ops_rx.lock().unwrap().take().expect("started once");
        // spawn_local: the inbound handlers start actors, which need the actix thread.
        tokio::task::spawn_local(self.clone().publisher(rx));
        match pushes {
            Some(p) => {
                tokio::task::spawn_local(self.clone().sharded_subscriber(inbound.clone(), p))
            }
            None => tokio::task::spawn_local(self.clone().subscriber(inbound.clone(), first)),
        };
        tokio::task::spawn_local(self.clone().heartbeat(inbound));
    }

    /// Starts only the publisher: for a process that sends to the nodes without being one (a
    /// push bridge telling users' devices about a dead target).
    pub fn start_publisher(self: &Arc<Self>) {
        let rx = self.ops_rx.lock().unwrap().take().expect("started once");
        tokio::task::spawn_local(self.clone().publisher(rx));
    }

    async fn subscribe(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let sub = async {
            let mut ps = self.backend.pubsub().await?;
            for ch in self.subscriptions() {
                ps.subscribe(&ch).await?;
            }
            redis::RedisResult::Ok(ps)
        };
        match tokio::time::timeout(IO_TIMEOUT * 2, sub).await {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "subscribe timed out",
            ))),
        }
    }

    /// True while the subscription is up and the last heartbeat reached Redis.
    pub fn healthy(&self) -> bool {
        self.subscribed.load(Ordering::Acquire) && self.beating.load(Ordering::Acquire)
    }

    pub fn live(&self) -> Arc<Vec<NodeId>> {
        self.live.read().unwrap().clone()
    }

    /// The owner of `key` among the live nodes (this node included, whatever Redis says: a node
    /// cut off from Redis keeps serving what it can, and the store's conditional append keeps
    /// two owners from ever writing the same seq).
    pub fn owner(&self, key: &str) -> NodeId {
        let live = self.live();
        let mut best = (score(&self.node_id, key), &self.node_id);
        for n in live.iter() {
            let s = score(n, key);
            if s > best.0 || (s == best.0 && n > best.1) {
                best = (s, n);
            }
        }
        best.1.clone()
    }

    pub fn broadcast(&self, frame: NodeFrame) {
        self.publish_on(self.broadcast_channel.clone(), frame);
    }

    pub fn send_to(&self, node: &str, frame: NodeFrame) {
        let channel = self.node_channel(node);
        self.publish_on(channel, frame);
    }

    fn publish_on(&self, channel: String, frame: NodeFrame) {
        let payload = frame::encode(&self.node_id, frame);
        self.enqueue(Op::Publish { channel, payload });
    }

    fn enqueue(&self, op: Op) {
        if self.ops.try_send(op).is_err() {
            self.lost_publish.store(true, Ordering::Release);
        }
    }

    pub fn user_online(&self, user: &str) {
        self.enqueue(Op::Online(user.to_string()));
    }

    pub fn user_offline(&self, user: &str) {
        self.enqueue(Op::Offline(user.to_string()));
    }

    /// For each user, whether some other live node holds a session of theirs.
    pub async fn online_elsewhere(&self, users: &[String]) -> redis::RedisResult<Vec<bool>> {
        let mut out = vec![false; users.len()];
        let others: Vec<NodeId> = self
            .live()
            .iter()
            .filter(|n| **n != self.node_id)
            .cloned()
            .collect();
        if users.is_empty() || others.is_empty() {
            return Ok(out);
        }
        let mut pipe = redis::pipe();
        for n in &others {
            pipe.smismember(self.users_key(n), users);
        }
        let mut c = self.conn().await?;
        let res: Vec<Vec<bool>> = match pipe.query_async(&mut c).await {
            Ok(r) => r,
            Err(e) => {
                self.drop_conn().await;
                return Err(e);
            }
        };
        for per_node in res {
            for (o, v) in out.iter_mut().zip(per_node) {
                *o |= v;
            }
        }
        Ok(out)
    }

    /// Graceful leave: out of the live set and presence now, and a `Left` broadcast so the
    /// others take over this node's conversations without waiting for the TTL.
    pub async fn leave(&self) {
        self.leaving.store(true, Ordering::Release);
        let mut batch = Batch::new(self.backend.sharded());
        let nodes = self.key("nodes");
        batch
            .on(&nodes)
            .zrem(&nodes, &*self.node_id)
            .ignore()
            .del(self.users_key(&self.node_id))
            .ignore();
        let left = frame::encode(&self.node_id, NodeFrame::Left);
        batch.publish(&self.broadcast_channel, &left);
        let res = async {
            let c = self.conn().await?;
            batch.run(&c).await
        };
        match tokio::time::timeout(IO_TIMEOUT * 2, res).await {
            Ok(Ok(())) => tracing::info!(node = %self.node_id, "left the cluster"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cluster leave failed; the TTL will expire"),
            Err(_) => tracing::warn!("cluster leave timed out; the TTL will expire"),
        }
    }

    async fn connect(&self) -> redis::RedisResult<Conn> {
        self.backend.connect().await
    }

    async fn conn(&self) -> redis::RedisResult<Conn> {
        let mut g = self.conn.lock().await;
        if let Some(c) = g.as_ref() {
            return Ok(c.clone());
        }
        let c = self.connect().await?;
        *g = Some(c.clone());
        Ok(c)
    }

    async fn drop_conn(&self) {
        *self.conn.lock().await = None;
    }

    /// One heartbeat; on a change of the live set, tells `inbound`.
    async fn beat(&self, inbound: &dyn Inbound, was_ok: bool) -> redis::RedisResult<()> {
        let script = redis::Script::new(HEARTBEAT);
        let mut c = self.conn().await?;
        let mut inv = script.key(self.key("nodes"));
        inv.key(self.users_key(&self.node_id))
            .arg(&*self.node_id)
            .arg(self.cfg.node_ttl_ms);
        let list: Vec<String> = match inv.invoke_async(&mut c).await {
            Ok(l) => l,
            Err(e) => {
                self.drop_conn().await;
                return Err(e);
            }
        };
        if !was_ok {
            // First beat, or Redis came back (perhaps empty): restore this node's presence.
            let users = inbound.local_users();
            let key = self.users_key(&self.node_id);
            let mut pipe = redis::pipe();
            pipe.del(&key).ignore();
            for chunk in users.chunks(1000) {
                pipe.sadd(&key, chunk).ignore();
            }
            pipe.pexpire(&key, self.cfg.node_ttl_ms as i64).ignore();
            pipe.query_async::<()>(&mut c).await?;
        }
        let mut live: Vec<NodeId> = list.into_iter().map(Arc::from).collect();
        live.sort();
        self.set_live(live, inbound);
        Ok(())
    }

    /// Replaces the live set (sorted) and, if it changed, tells `inbound` who is gone.
    fn set_live(&self, live: Vec<NodeId>, inbound: &dyn Inbound) {
        let old = self.live();
        if *old == live {
            return;
        }
        let gone: Vec<NodeId> = old.iter().filter(|n| !live.contains(n)).cloned().collect();
        tracing::info!(live = ?live, gone = ?gone, "cluster membership changed");
        *self.live.write().unwrap() = Arc::new(live.clone());
        self.metrics.cluster_nodes.set(live.len() as i64);
        inbound.membership(&live, &gone);
    }

    async fn heartbeat(self: Arc<Self>, inbound: Arc<dyn Inbound>) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.heartbeat_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ok = self.beating.load(Ordering::Acquire);
        loop {
            tick.tick().await;
            if self.leaving.load(Ordering::Acquire) {
                return;
            }
            match tokio::time::timeout(IO_TIMEOUT * 2, self.beat(&*inbound, ok)).await {
                Ok(Ok(())) => {
                    if !ok {
                        tracing::info!("cluster bus: heartbeat restored");
                    }
                    ok = true;
                }
                Ok(Err(e)) => {
                    if ok {
                        tracing::warn!(error = %e, "cluster bus: heartbeat failed");
                    }
                    ok = false;
                }
                Err(_) => {
                    if ok {
                        tracing::warn!("cluster bus: heartbeat timed out");
                    }
                    self.drop_conn().await;
                    ok = false;
                }
            }
            self.beating.store(ok, Ordering::Release);
            self.metrics.bus_up.set(self.healthy() as i64);
        }
    }
}

/// The broadcast channels of a Redis Cluster: `{prefix}:all:{n}`, the first `n` whose slot
/// falls in each 1/16 of the slot space, so that they spread over the shards (every node
/// computes the same list).
fn broadcast_channels(prefix: &str) -> Vec<String> {
    let width = 16384 / BROADCAST_CHANNELS;
    let mut found: Vec<Option<String>> = vec![None; BROADCAST_CHANNELS as usize];
    let mut n = 0u32;
    while found.iter().any(Option::is_none) {
        let ch = format!("{prefix}:all:{n}");
        let bucket = (backend::slot(ch.as_bytes()) / width) as usize;
        found[bucket].get_or_insert(ch);
        n += 1;
    }
    found.into_iter().flatten().collect()
}

/// Rendezvous score of (node, key): a fixed hash (FNV-1a, then a 64-bit finaliser), so every
/// node computes the same owner.
fn score(node: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in node.bytes().chain([0u8]).chain(key.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ceb9fe1a85ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::score;

    #[test]
    fn rendezvous_spreads_and_moves_only_the_dead_nodes_keys() {
        let nodes = ["a1", "b2", "c3"];
        fn owner(ns: &[&'static str], k: &str) -> &'static str {
            ns.iter().copied().max_by_key(|n| score(n, k)).unwrap()
        }
        let keys: Vec<String> = (0..3000).map(|i| format!("conv{i}")).collect();
        let mut counts = [0usize; 3];
        for k in &keys {
            counts[nodes.iter().position(|n| *n == owner(&nodes, k)).unwrap()] += 1;
        }
        assert!(counts.iter().all(|c| *c > 800), "{counts:?}");
        // Without c3, only c3's keys move.
        for k in &keys {
            let before = owner(&nodes, k);
            let after = owner(&nodes[..2], k);
            if before != "c3" {
                assert_eq!(before, after);
            }
        }
    }
}
