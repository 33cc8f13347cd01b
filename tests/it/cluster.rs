//! Cluster mode (issue 4): several `parley` processes on one Redis and one database. Each test
//! runs a steady cross-node send load, breaks something (a node killed with -9, a node
//! leaving gracefully, Redis restarted, a node joining), then checks that every acked message
//! is stored once with a gapless seq and that every receiving device got every message once,
//! in order. The client contract itself is rerun on 3 nodes by `scripts/test`.

use crate::common::*;
use futures_util::SinkExt;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const STREAMS: usize = 4;
const PER_STREAM: usize = 300;
const WINDOW: usize = 4;

/// One cluster test at a time: three nodes, Redis and the load generator already share two
/// cores, and a heartbeat starved past the (test-short) TTL would only add noise.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// `n` nodes with the per-connection rate limit lifted (the load is a fast windowed stream).
fn cluster(n: usize) -> TestServer {
    cluster_on(n, BusKind::Redis)
}

/// The same over a bus of this kind.
pub(crate) fn cluster_on(n: usize, bus: BusKind) -> TestServer {
    TestServer::builder()
        .nodes(n)
        .bus(bus)
        .config("[limits]\nrate_per_sec = 100000\nrate_burst = 100000\nuser_rate_per_sec = 100000\nuser_rate_burst = 100000")
        .start()
}

/// Connects to the first node, from `start` on, that accepts and sends `ready`.
async fn connect_any(addrs: &[String], start: usize, token: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = start;
    while Instant::now() < deadline {
        let addr = &addrs[i % addrs.len()];
        i += 1;
        let req = format!("ws://{addr}/v1/ws");
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(req)
                .unwrap();
        req.headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
        let Ok(Ok((mut ws, _))) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio_tungstenite::connect_async(req),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if let Some(ready) = next_json(&mut ws, Duration::from_secs(5)).await {
            if ready["type"] == "ready" {
                return Client { ws, ready };
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no node accepted a connection for 30 s");
}

pub(crate) struct SenderReport {
    acked: HashMap<String, u64>,
    /// Longest time without an ack while sends were outstanding: the recovery time the client
    /// saw.
    max_stall: Duration,
    reconnects: usize,
}

/// Sends ids m0..m{total} with `WINDOW` in flight, reconnecting (to the next node) when the
/// socket dies and resending whatever is not acked, with the same ids.
async fn sender(
    addrs: Arc<Vec<String>>,
    start: usize,
    dev: Dev,
    conv: String,
    total: usize,
    progress: Arc<AtomicUsize>,
) -> SenderReport {
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut last_ack = Instant::now();
    let mut max_stall = Duration::ZERO;
    let mut reconnects = 0;
    let mut node = start;
    loop {
        let mut c = connect_any(&addrs, node, &dev.token).await;
        let mut inflight: HashSet<String> = HashSet::new();
        let mut retry_at: HashMap<String, Instant> = HashMap::new();
        'conn: loop {
            if acked.len() == total {
                return SenderReport {
                    acked,
                    max_stall,
                    reconnects,
                };
            }
            let now = Instant::now();
            for k in 0..total {
                if inflight.len() >= WINDOW {
                    break;
                }
                let id = format!("m{k}");
                if acked.contains_key(&id)
                    || inflight.contains(&id)
                    || retry_at.get(&id).is_some_and(|t| *t > now)
                {
                    continue;
                }
                let f = json!({"type": "send", "id": id, "conversation_id": conv, "text": id});
                if c.ws
                    .send(Message::Text(f.to_string().into()))
                    .await
                    .is_err()
                {
                    break 'conn;
                }
                inflight.insert(id);
            }
            let Some(v) = next_json(&mut c.ws, Duration::from_secs(5)).await else {
                break 'conn;
            };
            let id = v["id"].as_str().unwrap_or_default().to_string();
            match v["type"].as_str() {
                Some("ack") => {
                    let seq = v["seq"].as_u64().unwrap();
                    if let Some(old) = acked.insert(id.clone(), seq) {
                        assert_eq!(old, seq, "two acks with different seqs for {id}");
                    } else {
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    inflight.remove(&id);
                    max_stall = max_stall.max(last_ack.elapsed());
                    last_ack = Instant::now();
                }
                Some("error") if inflight.contains(&id) => {
                    assert_eq!(v["code"], "unavailable", "{v}");
                    inflight.remove(&id);
                    retry_at.insert(id, Instant::now() + Duration::from_millis(100));
                }
                _ => {}
            }
        }
        reconnects += 1;
        node += 1;
    }
}

struct ReceiverReport {
    /// Every seq, deduplicated by seq the way a client does across reconnects.
    seqs: Vec<u64>,
    /// Frames that broke the order within one connection (a gap or a repeat): must be 0.
    disorder: Vec<String>,
}

/// Reads one conversation until it holds seq 1..=total; syncs on every (re)connect and
/// acknowledges each message with `received`.
async fn receiver(
    addrs: Arc<Vec<String>>,
    start: usize,
    dev: Dev,
    conv: String,
    total: u64,
) -> ReceiverReport {
    let mut have = 0u64; // holds 1..=have
    let mut seqs = Vec::new();
    let mut disorder = Vec::new();
    let mut node = start;
    let deadline = Instant::now() + Duration::from_secs(90);
    while have < total {
        assert!(
            Instant::now() < deadline,
            "receiver stuck at {have}/{total}"
        );
        let mut c = connect_any(&addrs, node, &dev.token).await;
        node += 1;
        let mut conn_last = 0u64;
        let mut round = 0;
        let sync = |round: usize| json!({"type": "sync", "id": format!("s{round}"), "limit": 100});
        if c.ws
            .send(Message::Text(sync(round).to_string().into()))
            .await
            .is_err()
        {
            continue;
        }
        while have < total {
            let Some(v) = next_json(&mut c.ws, Duration::from_secs(10)).await else {
                break;
            };
            match v["type"].as_str() {
                Some("message") if v["conversation_id"] == conv.as_str() => {
                    let seq = v["seq"].as_u64().unwrap();
                    if conn_last != 0 && seq != conn_last + 1 {
                        disorder.push(format!("after {conn_last} got {seq}"));
                    }
                    conn_last = seq;
                    if seq == have + 1 {
                        have = seq;
                        seqs.push(seq);
                    } else if seq > have + 1 {
                        disorder.push(format!("gap: held {have}, got {seq}"));
                    }
                    let r = json!({"type": "received", "conversation_id": conv, "seq": have});
                    let _ = c.ws.send(Message::Text(r.to_string().into())).await;
                }
                Some("synced") if v["more"] == true => {
                    round += 1;
                    let _ =
                        c.ws.send(Message::Text(sync(round).to_string().into()))
                            .await;
                }
                _ => {}
            }
        }
    }
    ReceiverReport { seqs, disorder }
}

/// Runs the standard load over `s` (sender and receiver of each stream on different nodes),
/// calls `disrupt` once a quarter of the messages are acked, and checks everything after.
pub(crate) async fn load_through<F, Fut>(s: &mut TestServer, disrupt: F) -> Vec<SenderReport>
where
    F: FnOnce(Arc<Vec<String>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let n = s.node_count();
    let addrs: Arc<Vec<String>> = Arc::new((0..n).map(|i| s.node(i).addr.clone()).collect());
    let mut streams = Vec::new();
    for i in 0..STREAMS {
        let a = s.node(i % n).user(&format!("snd{i}")).await;
        let b = s.node((i + 1) % n).user(&format!("rcv{i}")).await;
        let conv = s.node(i % n).direct(&a, &b).await;
        streams.push((a, b, conv));
    }
    let progress = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for (i, (a, b, conv)) in streams.iter().cloned().enumerate() {
        receivers.push(tokio::spawn(receiver(
            addrs.clone(),
            i + 1,
            b,
            conv.clone(),
            PER_STREAM as u64,
        )));
        senders.push(tokio::spawn(sender(
            addrs.clone(),
            i,
            a,
            conv,
            PER_STREAM,
            progress.clone(),
        )));
    }
    let quarter = STREAMS * PER_STREAM / 4;
    let t = Instant::now();
    while progress.load(Ordering::Relaxed) < quarter {
        assert!(t.elapsed() < Duration::from_secs(60), "load did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    disrupt(addrs.clone()).await;

    let mut reports = Vec::new();
    for h in senders {
        reports.push(
            tokio::time::timeout(Duration::from_secs(120), h)
                .await
                .expect("senders finish")
                .unwrap(),
        );
    }
    let mut received = Vec::new();
    for h in receivers {
        received.push(
            tokio::time::timeout(Duration::from_secs(120), h)
                .await
                .expect("receivers finish")
                .unwrap(),
        );
    }
    // Stored: each stream exactly once per id, seq gapless, and the ack's seq is the stored one.
    // Read back through one ready peer (a peer has no round-robin of its own).
    let mut live = None;
    for i in 1..n {
        if s.node(i).is_running() && ready(&s.node(i).addr).await == 200 {
            live = Some(i);
            break;
        }
    }
    let live = live.expect("a ready node");
    for (((a, _, conv), rep), got) in streams.iter().zip(&reports).zip(&received) {
        let stored = s.node(live).all_messages(a, conv).await;
        let seqs: Vec<u64> = stored.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=PER_STREAM as u64).collect::<Vec<_>>(), "gapless");
        let mut by_id: HashMap<String, u64> = HashMap::new();
        for m in &stored {
            let id = m["text"].as_str().unwrap().to_string();
            assert!(
                by_id
                    .insert(id.clone(), m["seq"].as_u64().unwrap())
                    .is_none(),
                "{id} stored twice"
            );
        }
        assert_eq!(
            by_id, rep.acked,
            "every acked id stored once, at its acked seq"
        );
        assert!(got.disorder.is_empty(), "{:?}", got.disorder);
        assert_eq!(got.seqs, (1..=PER_STREAM as u64).collect::<Vec<_>>());
    }
    reports
}

pub(crate) fn report(name: &str, reports: &[SenderReport]) {
    let stall = reports.iter().map(|r| r.max_stall).max().unwrap();
    let reconnects: usize = reports.iter().map(|r| r.reconnects).sum();
    eprintln!("{name}: longest ack stall seen by a sender {stall:?}, reconnects {reconnects}");
}

pub(crate) async fn ready(addr: &str) -> u16 {
    let url = format!("http://{addr}/readyz");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(3)))
            .build()
            .into();
        agent
            .get(&url)
            .call()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    })
    .await
    .unwrap()
}

pub(crate) async fn wait_ready(addrs: &[String], want: u16, within: Duration) {
    let t = Instant::now();
    loop {
        let mut all = true;
        for a in addrs {
            all &= ready(a).await == want;
        }
        if all {
            return;
        }
        assert!(
            t.elapsed() < within,
            "nodes not all {want} on /readyz within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_of_a_node_under_load_loses_nothing() {
    let _one = serial().await;
    let mut s = cluster(3);
    let victim_pid = s.node(1).pid();
    let reports = load_through(&mut s, |_| async move {
        unsafe {
            libc::kill(victim_pid as i32, libc::SIGKILL);
        }
    })
    .await;
    assert!(reports.iter().map(|r| r.reconnects).sum::<usize>() > 0);
    report("kill -9", &reports);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_leave_hands_over_with_1012() {
    let _one = serial().await;
    let mut s = cluster(3);
    let leaving = s.node(2).addr.clone();
    let d = s.user("dora").await;
    let mut on_leaving = Client::connect(&leaving, Some(&d.token)).await;
    let pid = s.node(2).pid();
    let reports = load_through(&mut s, |_| async move {
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
        assert_eq!(on_leaving.closed().await, Some(1012));
    })
    .await;
    report("graceful leave", &reports);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restart_under_load_loses_nothing_and_readiness_follows() {
    let _one = serial().await;
    let mut s = cluster(3);
    let redis = Arc::new(std::sync::Mutex::new(s.redis.take().unwrap()));
    let r = redis.clone();
    let reports = load_through(&mut s, |addrs| async move {
        r.lock().unwrap().kill();
        wait_ready(&addrs, 503, Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        r.lock().unwrap().restart();
        wait_ready(&addrs, 200, Duration::from_secs(10)).await;
    })
    .await;
    report("redis restart", &reports);
}

/// Redis paused with SIGSTOP (not killed): its sockets stay open and nothing answers. Every
/// node must notice within a bounded time (readiness red), fail forwards with `unavailable`
/// (the clients retry with the same ids), and recover by itself after SIGCONT.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_bus_fails_fast_and_recovers_without_loss() {
    let _one = serial().await;
    let mut s = cluster(3);
    let redis = Arc::new(std::sync::Mutex::new(s.redis.take().unwrap()));
    let r = redis.clone();
    let reports = load_through(&mut s, |addrs| async move {
        r.lock().unwrap().pause();
        let stalled = Instant::now();
        wait_ready(&addrs, 503, Duration::from_secs(6)).await;
        eprintln!("stalled bus: every node red after {:?}", stalled.elapsed());
        tokio::time::sleep(Duration::from_secs(10).saturating_sub(stalled.elapsed())).await;
        r.lock().unwrap().resume();
        wait_ready(&addrs, 200, Duration::from_secs(15)).await;
    })
    .await;
    report("stalled bus (SIGSTOP 10 s)", &reports);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joining_under_load_takes_over_without_duplicates_or_gaps() {
    let _one = serial().await;
    let mut s = cluster(2);
    let dir = s.dir.clone();
    let extra = s.extra_config();
    let mut joined: Option<TestServer> = None;
    let slot = &mut joined;
    let reports = load_through(&mut s, |_| async move {
        *slot = Some(TestServer::join(dir, extra, 2));
    })
    .await;
    let joined = joined.unwrap();
    let (st, v) = joined.http("GET", "/healthz", None, None).await;
    assert_eq!(st, 200);
    assert_eq!(v["live"].as_array().unwrap().len(), 3, "{v}");
    report("join", &reports);
}

#[test]
fn a_second_node_without_the_bus_is_refused() {
    let s = TestServer::builder().nodes(1).start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another Parley node"), "{err}");
    // A cluster node cannot join a database that a lone node holds either.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parley"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--bus",
            "redis://127.0.0.1:1/0",
        ])
        .arg("--data-dir")
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a cluster bus"), "{err}");
}
