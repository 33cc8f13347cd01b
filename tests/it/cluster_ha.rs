//! The cluster bus past one Redis (issue 16): 3 nodes over a Redis Cluster of 3 primaries
//! with a replica each (sharded pub/sub), and over a primary and replica behind 3 sentinels.
//! The standard cross-node load of `cluster` runs through a kill -9 of a primary (a shard's,
//! or Sentinel's); a replica takes over; every acked message is stored once, every message
//! delivered once and in order, and `/readyz` is red during the outage only. The client
//! contract runs on a Redis Cluster too (`PARLEY_TEST_BUS=cluster`, in `scripts/test`).
//! And the bus over TLS with an ACL user (`rediss://user:password@…`, `cluster.tls_ca`).

use crate::cluster::{cluster_on, load_through, report, serial, wait_ready};
use crate::common::*;
use crate::push::fakes::TestCa;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shard channels a primary serves subscribers on (`PUBSUB SHARDCHANNELS`).
fn shard_channels(r: &Redis) -> Vec<String> {
    r.cli(&["pubsub", "shardchannels"])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_cluster_spreads_the_channels_and_keeps_membership_on_one_slot() {
    let _one = serial().await;
    let s = cluster_on(3, BusKind::Cluster);
    let rc = s.redis_cluster.as_ref().unwrap();
    // Every primary carries channels: broadcasts are spread over the shards, and so are the
    // nodes' inboxes.
    let mut all = Vec::new();
    for i in 0..3 {
        let chans = shard_channels(&rc.nodes[i]);
        assert!(!chans.is_empty(), "primary {i} carries no channel");
        all.extend(chans);
    }
    assert_eq!(all.iter().filter(|c| c.contains(":node:")).count(), 3);
    assert_eq!(all.iter().filter(|c| c.contains(":all:")).count(), 16);
    // Membership and presence: one slot, on the primary that serves it.
    let home = rc.primary_of(rc.slot("{parley}:nodes"));
    assert_eq!(rc.nodes[home].cli(&["zcard", "{parley}:nodes"]).trim(), "3");
    // And the bus works: a message crosses nodes.
    let a = s.node(0).user("ann").await;
    let b = s.node(1).user("bob").await;
    let conv = s.node(0).direct(&a, &b).await;
    let mut on_b = Client::connect(&s.node(2).addr, Some(&b.token)).await;
    let mut on_a = Client::connect(&s.node(1).addr, Some(&a.token)).await;
    on_a.send_msg(&conv, "c1", "over the shards").await;
    let m = on_b.next_type("message").await;
    assert_eq!(m["text"], "over the shards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_of_a_cluster_shard_primary_under_load_loses_nothing() {
    let _one = serial().await;
    let mut s = cluster_on(3, BusKind::Cluster);
    let rc = Arc::new(Mutex::new(s.redis_cluster.take().unwrap()));
    let r = rc.clone();
    let reports = load_through(&mut s, |addrs| async move {
        // The shard holding membership and presence (and some channels).
        let victim = {
            let rc = r.lock().unwrap();
            rc.primary_of(rc.slot("{parley}:nodes"))
        };
        let killed = Instant::now();
        r.lock().unwrap().nodes[victim].kill();
        wait_ready(&addrs, 503, Duration::from_secs(6)).await;
        wait_ready(&addrs, 200, Duration::from_secs(30)).await;
        eprintln!("shard failover: ready again after {:?}", killed.elapsed());
        let rc = r.lock().unwrap();
        assert_ne!(rc.primary_of(rc.slot("{parley}:nodes")), victim);
    })
    .await;
    report("cluster shard failover", &reports);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_of_the_sentinel_primary_under_load_loses_nothing() {
    let _one = serial().await;
    let mut s = cluster_on(3, BusKind::Sentinel);
    let set = Arc::new(Mutex::new(s.sentinels.take().unwrap()));
    let r = set.clone();
    let reports = load_through(&mut s, |addrs| async move {
        let killed = Instant::now();
        r.lock().unwrap().primary.kill();
        wait_ready(&addrs, 503, Duration::from_secs(5)).await;
        wait_ready(&addrs, 200, Duration::from_secs(30)).await;
        eprintln!(
            "sentinel failover: ready again after {:?}",
            killed.elapsed()
        );
        let set = r.lock().unwrap();
        assert_eq!(
            set.current_primary(),
            set.replica.port,
            "the replica was promoted"
        );
    })
    .await;
    report("sentinel failover", &reports);
}

/// `redis-server` arguments: TLS only, on `port`, with a leaf of `ca`; the only user is the
/// ACL user `parley` (password `s3cret-pw`).
fn tls_acl_args(ca: &TestCa, port: u16) -> Vec<String> {
    let mut args = tls_args(ca, port);
    args.extend(words(
        "--user default off --user parley on >s3cret-pw ~* &* +@all",
    ));
    args
}

/// One argv word per word (redis-server quotes each argument): no spaces in the paths.
fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// TLS only, on `port`, with a leaf of `ca` (also between cluster nodes, replicas, sentinels).
fn tls_args(ca: &TestCa, port: u16) -> Vec<String> {
    let (cert, key) = ca.write_leaf();
    let path = |p: &std::path::Path| p.display().to_string();
    let tls = format!(
        "--port 0 --tls-port {port} --tls-cert-file {} --tls-key-file {} --tls-ca-cert-file {} \
         --tls-auth-clients no --tls-cluster yes --tls-replication yes",
        path(&cert),
        path(&key),
        path(&ca.ca_file)
    );
    words(&tls)
}

/// Two nodes on `url`, trusting `ca`: a message crosses them.
async fn two_nodes_carry_a_message(url: &str, ca: &TestCa) {
    let cfg = format!("{}tls_ca = \"{}\"\n", bus_config(url), ca.ca_file.display());
    let mut s = TestServer::builder().nodes(1).config(&cfg).start();
    let second = TestServer::join(s.dir.clone(), s.extra_config(), 1);
    s.peers.push(second);
    s.wait_for_cluster(2);
    let a = s.node(0).user("tina").await;
    let b = s.node(0).user("tom").await;
    let conv = s.node(0).direct(&a, &b).await;
    let mut on_b = Client::connect(&s.node(1).addr, Some(&b.token)).await;
    let mut on_a = Client::connect(&s.node(0).addr, Some(&a.token)).await;
    on_a.send_msg(&conv, "t1", "over TLS").await;
    assert_eq!(on_b.next_type("message").await["text"], "over TLS");
}

/// A Redis that speaks only TLS and knows only an ACL user: two nodes join over
/// `rediss://parley:…@localhost`, trusting the test CA (`cluster.tls_ca`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_bus_with_an_acl_user_carries_frames() {
    let _one = serial().await;
    let ca = TestCa::new();
    let port = free_port();
    let _redis = Redis::start_on(port, tls_acl_args(&ca, port));
    two_nodes_carry_a_message(
        &format!("rediss://parley:s3cret-pw@localhost:{port}/0"),
        &ca,
    )
    .await;
}

/// The same on a Redis Cluster of 3 primaries, TLS between its nodes too:
/// `rediss+cluster://parley:…@127.0.0.1:…`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_redis_cluster_with_an_acl_user_carries_frames() {
    let _one = serial().await;
    let ca = TestCa::new();
    let cli: Vec<String> = format!(
        "--tls --cacert {} --user parley --pass s3cret-pw",
        ca.ca_file.display()
    )
    .split_whitespace()
    .map(String::from)
    .collect();
    let rc = RedisCluster::start_custom(3, 0, &|port| tls_acl_args(&ca, port), &cli);
    let seeds: Vec<String> = rc
        .nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let url = format!("rediss+cluster://parley:s3cret-pw@{}", seeds.join(","));
    two_nodes_carry_a_message(&url, &ca).await;
}

/// The same behind Sentinel, TLS everywhere: the primary and replica know only `parley`, the
/// sentinels (no credentials asked) authenticate to them as `parley`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_sentinel_set_with_an_acl_user_carries_frames() {
    let _one = serial().await;
    let ca = TestCa::new();
    let cacert = format!("--tls --cacert {}", ca.ca_file.display());
    let set = Sentinels::start_custom(SentinelsWith {
        server_args: Some(&|port| tls_acl_args(&ca, port)),
        replica_args: words("--masteruser parley --masterauth s3cret-pw"),
        sentinel_args: Some(&|port| tls_args(&ca, port)),
        sentinel_conf:
            "sentinel auth-user mymaster parley\nsentinel auth-pass mymaster s3cret-pw\n".into(),
        server_cli: words(&format!("{cacert} --user parley --pass s3cret-pw")),
        sentinel_cli: words(&cacert),
    });
    let hosts: Vec<String> = set
        .sentinels
        .iter()
        .map(|x| format!("127.0.0.1:{}", x.port))
        .collect();
    let url = format!(
        "rediss+sentinel://parley:s3cret-pw@{}/mymaster",
        hosts.join(",")
    );
    two_nodes_carry_a_message(&url, &ca).await;
}
