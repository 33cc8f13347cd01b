//! `nats`: the `direct` workload against NATS JetStream, the peer that bounds what a persisted,
//! acknowledged transport costs on this machine (issue 15, target 5). It has no chat semantics:
//! no users, conversations, receipts or per-device cursors, so it is a floor, not a rival.
//!
//! Each pair is a sender and a receiver on their own connections, as in `direct`. The sender
//! publishes to `chat.<pair>` through JetStream: its ack means the stream stored the message
//! (with `sync_interval: always`, on disk). The receiver reads the pair's subject through a
//! durable pull consumer and acks every 64th message (AckPolicy::All), as `direct`'s receiver
//! reports `received` every 64th seq. Every payload carries the pair's message number, so the
//! receiver checks order and completeness as `direct` does.

use crate::client::{hist, Order};
use crate::peer_run::{now_us, tally, Finish, Pacer, Received, Sent, Workload};
use async_nats::jetstream::{self, consumer, stream};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const STREAM: &str = "PARLEY_PEERS";

/// Message number and send time (µs since the run began) ahead of the text.
fn payload(n: u64, sent_us: u64, text: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(16 + text.len());
    p.extend_from_slice(&n.to_le_bytes());
    p.extend_from_slice(&sent_us.to_le_bytes());
    p.extend_from_slice(text);
    p
}

fn header(p: &[u8]) -> Option<(u64, u64)> {
    let n = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
    let t = u64::from_le_bytes(p.get(8..16)?.try_into().ok()?);
    Some((n, t))
}

/// A fresh stream for the run: the previous run's messages would count as deliveries.
async fn fresh_stream(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url).await.expect("nats: connect");
    let js = jetstream::new(client);
    let _ = js.delete_stream(STREAM).await;
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["chat.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("nats: create the stream");
    js
}

pub async fn direct(url: &str, w: &Workload) -> Value {
    let admin = fresh_stream(url).await;
    let text = vec![b'x'; w.size];
    let t0 = Instant::now();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(w.pairs + 1));
    let (mut senders, mut receivers) = (Vec::new(), Vec::new());
    for i in 0..w.pairs {
        let subject = format!("chat.{i}");
        // The receiver's own connection, as a device has its own socket.
        let rjs = jetstream::new(async_nats::connect(url).await.expect("nats: connect"));
        let consumer: consumer::PullConsumer = rjs
            .create_consumer_on_stream(
                consumer::pull::Config {
                    durable_name: Some(format!("r{i}")),
                    filter_subject: subject.clone(),
                    ack_policy: consumer::AckPolicy::All,
                    ..Default::default()
                },
                STREAM,
            )
            .await
            .expect("nats: create a consumer");
        let (done_tx, done_rx) = tokio::sync::watch::channel(0u64);
        receivers.push(tokio::spawn(receive(consumer, t0, Finish::new(done_rx))));
        let sjs = jetstream::new(async_nats::connect(url).await.expect("nats: connect"));
        let (text, start, w2) = (text.clone(), start.clone(), w.clone());
        senders.push(tokio::spawn(async move {
            start.wait().await;
            let sent = send(&sjs, &subject, &text, Pacer::new(&w2, i), t0).await;
            let _ = done_tx.send(sent.1);
            sent
        }));
    }
    let report = tally("nats_direct", w, start, senders, receivers).await;
    let _ = admin.delete_stream(STREAM).await;
    report
}

/// One sender: paced by `pace`, each publish awaited for its stream ack. Returns the ack
/// histogram, the messages acked and the errors (the first one ends this pair's sending).
async fn send(
    js: &jetstream::Context,
    subject: &str,
    text: &[u8],
    mut pace: Pacer,
    t0: Instant,
) -> Sent {
    let mut ack_h = hist();
    let (mut n, mut acked, mut errors) = (0u64, 0u64, 0u64);
    let mut inflight = FuturesUnordered::new();
    loop {
        if pace.finished(inflight.len(), errors) {
            break;
        }
        let busy = inflight.len();
        tokio::select! {
            biased;
            Some((res, sent)) = inflight.next(), if !inflight.is_empty() => match res {
                Ok(()) => {
                    acked += 1;
                    let _ = ack_h.record(now_us(t0).saturating_sub(sent).max(1));
                }
                Err(()) => errors += 1,
            },
            _ = pace.next(busy, errors) => {
                n += 1;
                let now = now_us(t0);
                match js.publish(subject.to_string(), payload(n, now, text).into()).await {
                    Ok(ack) => inflight.push(async move {
                        let res = tokio::time::timeout(Duration::from_secs(10), ack).await;
                        (res.map_err(|_| ()).and_then(|r| r.map(|_| ()).map_err(|_| ())), now)
                    }),
                    Err(_) => errors += 1,
                }
            }
        }
    }
    (ack_h, acked, errors)
}

/// One receiver: reads until `finish` says it is done.
async fn receive(consumer: consumer::PullConsumer, t0: Instant, mut finish: Finish) -> Received {
    let mut e2e = hist();
    let mut order = Order::default();
    let Ok(mut msgs) = consumer.messages().await else {
        return (e2e, order);
    };
    let mut last_msg = None;
    loop {
        if finish.reached(&order) {
            break;
        }
        tokio::select! {
            m = tokio::time::timeout(Duration::from_millis(200), msgs.next()) => match m {
                Ok(Some(Ok(m))) => {
                    let Some((n, sent)) = header(&m.payload) else { continue };
                    if !order.see(n) {
                        continue;
                    }
                    let now = now_us(t0);
                    let _ = e2e.record(now.saturating_sub(sent).max(1));
                    if n % 64 == 0 {
                        let _ = m.ack().await;
                    } else {
                        last_msg = Some(m);
                    }
                }
                Ok(Some(Err(_))) | Err(_) => {}
                Ok(None) => break,
            },
            _ = finish.sender_done() => {}
        }
    }
    if let Some(m) = last_msg {
        let _ = m.ack().await;
    }
    (e2e, order)
}

/// `count` idle client connections, and the server's RSS per connection they added.
pub async fn idle(url: &str, count: usize, server_pid: u32, hold: u64) -> Value {
    let pid = server_pid.to_string();
    let before = crate::client::rss_kib(&pid);
    let t = Instant::now();
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        match async_nats::connect(url).await {
            Ok(c) => held.push(c),
            Err(_) => break,
        }
    }
    // Let the server settle (its per-connection buffers are allocated by then).
    tokio::time::sleep(Duration::from_secs(hold.max(2))).await;
    let after = crate::client::rss_kib(&pid);
    let per = match (before, after) {
        (Some(b), Some(a)) if !held.is_empty() => {
            Some(((a.saturating_sub(b)) as f64 * 1024.0 / held.len() as f64).round())
        }
        _ => None,
    };
    json!({
        "scenario": "nats_idle",
        "connections": held.len(),
        "connect_s": t.elapsed().as_secs_f64(),
        "server_rss_kib_before": before,
        "server_rss_kib_after": after,
        "server_bytes_per_connection": per,
        "complete": held.len() == count,
    })
}
