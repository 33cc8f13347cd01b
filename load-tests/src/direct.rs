//! `direct`: pairs of users exchange 1:1 messages; acked msgs/s, ack and delivery latency,
//! and a completeness check.

use crate::client::*;
use futures_util::{SinkExt, StreamExt};
use parley_protocol::ServerFrame;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub async fn direct(
    urls: &[String],
    pairs: usize,
    window: usize,
    rate: u64,
    duration: u64,
    size: usize,
) -> Value {
    let run = std::process::id();
    let base = urls[0].clone();
    let setup = {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            let agent = agent();
            (0..pairs)
                .map(|i| {
                    let (sn, rn) = (format!("s{run}x{i}"), format!("r{run}x{i}"));
                    create_user(&agent, &base, &sn);
                    create_user(&agent, &base, &rn);
                    let s = login(&agent, &base, &sn);
                    let r = login(&agent, &base, &rn);
                    let (st, v) = post(
                        &agent,
                        &format!("{base}/v1/conversations"),
                        Some(&s.token),
                        json!({"kind": "direct", "members": [r.user_id]}),
                    );
                    assert!(st == 201 || st == 200, "{v}");
                    (s, r, v["conversation_id"].as_str().unwrap().to_string())
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap()
    };
    let t0 = Instant::now();
    let text = "x".repeat(size);
    let per_sender_interval = if rate == 0 {
        None
    } else {
        Some(Duration::from_secs_f64(pairs as f64 / rate as f64))
    };
    let errors: Arc<std::sync::Mutex<HashMap<String, u64>>> = Arc::default();
    // Every sender starts at once, after all connections are up, so set-up does not show up
    // as latency.
    let start = Arc::new(tokio::sync::Barrier::new(pairs + 1));
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for (i, (s, r, conv)) in setup.into_iter().enumerate() {
        // With several nodes, the receiver is on the node after the sender's: every message
        // crosses nodes (forwarded to its owner, fanned out over the bus).
        let mut rws = connect(&urls[(i + 1) % urls.len()], &r.token).await;
        let mut sws = connect(&urls[i % urls.len()], &s.token).await;
        let (done_tx, mut done_rx) = tokio::sync::watch::channel(0u64);
        receivers.push(tokio::spawn(async move {
            let mut e2e = hist();
            let mut order = Order::default();
            let deadline_after_done = Duration::from_secs(15);
            let mut done_at: Option<Instant> = None;
            loop {
                let target = *done_rx.borrow();
                if target > 0 && order.last >= target {
                    break;
                }
                if let Some(t) = done_at {
                    if t.elapsed() > deadline_after_done {
                        break;
                    }
                }
                let next = tokio::time::timeout(Duration::from_millis(200), rws.next());
                tokio::select! {
                    m = next => match m {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            if let Ok(ServerFrame::Message(m)) = serde_json::from_str::<ServerFrame>(&t) {
                                if !order.see(m.seq) { continue; }
                                let last = m.seq;
                                if let Some(sent) = m.meta.as_ref().and_then(|v| v["t"].as_u64()) {
                                    let now = t0.elapsed().as_micros() as u64;
                                    let _ = e2e.record(now.saturating_sub(sent).max(1));
                                }
                                if last % 64 == 0 {
                                    let f = json!({"type": "received", "conversation_id": m.conversation_id, "seq": last});
                                    let _ = rws.send(Message::Text(f.to_string().into())).await;
                                }
                            }
                        }
                        Ok(Some(Ok(_))) | Err(_) => {}
                        Ok(Some(Err(_))) | Ok(None) => break,
                    },
                    _ = done_rx.changed() => { done_at = Some(Instant::now()); }
                }
            }
            (e2e, order.last, order.dups, order.gaps)
        }));
        let text = text.clone();
        let errors = errors.clone();
        let start = start.clone();
        senders.push(tokio::spawn(async move {
            start.wait().await;
            let mut ack_h = hist();
            let mut inflight: HashMap<String, u64> = HashMap::new();
            let mut n = 0u64;
            let mut max_seq = 0u64;
            let stop = Instant::now() + Duration::from_secs(duration);
            // Stagger the senders' first ticks over one interval: an open-loop fleet, not a
            // synchronised burst.
            let mut tick = per_sender_interval.map(|p| {
                let offset = p.mul_f64(i as f64 / pairs as f64);
                tokio::time::interval_at(tokio::time::Instant::now() + offset, p)
            });
            loop {
                let sending = Instant::now() < stop;
                if !sending && inflight.is_empty() {
                    break;
                }
                let can_send = sending && inflight.len() < window;
                if can_send && tick.is_none() {
                    let id = format!("m{n}");
                    n += 1;
                    let now = t0.elapsed().as_micros() as u64;
                    let f = json!({"type": "send", "id": id, "conversation_id": conv, "text": text, "meta": {"t": now}});
                    if sws.send(Message::Text(f.to_string().into())).await.is_err() {
                        break;
                    }
                    inflight.insert(id, now);
                    continue;
                }
                let tick_fut = async {
                    match tick.as_mut() {
                        Some(t) if can_send => {
                            t.tick().await;
                        }
                        _ => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = tick_fut => {
                        let id = format!("m{n}");
                        n += 1;
                        let now = t0.elapsed().as_micros() as u64;
                        let f = json!({"type": "send", "id": id, "conversation_id": conv, "text": text, "meta": {"t": now}});
                        if sws.send(Message::Text(f.to_string().into())).await.is_err() { break; }
                        inflight.insert(id, now);
                    }
                    m = tokio::time::timeout(Duration::from_secs(10), sws.next()) => match m {
                        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<ServerFrame>(&t) {
                            Ok(ServerFrame::Ack(a)) => {
                                if let Some(sent) = inflight.remove(&a.id) {
                                    let now = t0.elapsed().as_micros() as u64;
                                    let _ = ack_h.record(now.saturating_sub(sent).max(1));
                                    max_seq = max_seq.max(a.seq);
                                }
                            }
                            Ok(ServerFrame::Error { id, code, .. }) => {
                                *errors.lock().unwrap().entry(code.as_str().to_string()).or_default() += 1;
                                if let Some(id) = id { inflight.remove(&id); }
                            }
                            _ => {}
                        },
                        Ok(Some(Ok(_))) => {}
                        _ => break,
                    }
                }
            }
            let _ = done_tx.send(max_seq);
            (ack_h, max_seq)
        }));
    }
    start.wait().await;
    let t_send = Instant::now();
    let meter = crate::cpu::Meter::start();
    let mut ack = hist();
    let mut e2e = hist();
    let mut acked = 0u64;
    let mut targets = Vec::new();
    for s in senders {
        let (h, max_seq) = s.await.unwrap();
        ack.add(&h).unwrap();
        acked += max_seq;
        targets.push(max_seq);
    }
    // Until the last ack, as for the peers (load-tests/peers): the last window drains after
    // the sending stopped.
    let send_secs = t_send.elapsed().as_secs_f64().max(0.001);
    let (mut delivered, mut dups, mut gaps, mut short) = (0u64, 0u64, 0u64, 0u64);
    let receivers = futures_util::future::join_all(receivers).await;
    let cpu = meter.report(&[("message", acked)]);
    for (r, target) in receivers.into_iter().zip(targets) {
        let (h, last, d, g) = r.unwrap();
        e2e.add(&h).unwrap();
        delivered += last.min(target);
        dups += d;
        gaps += g;
        short += target.saturating_sub(last);
    }
    let complete = dups == 0 && gaps == 0 && short == 0;
    json!({
        "scenario": "direct",
        "pairs": pairs, "window": window, "target_rate": rate, "duration_s": duration, "text_bytes": size,
        "acked": acked,
        "acked_per_s": (acked as f64 / send_secs).round(),
        "ack_latency": summary(&ack),
        "delivery_latency": summary(&e2e),
        "delivered": delivered,
        "duplicates": dups, "gaps": gaps, "undelivered": short,
        "errors": errors.lock().unwrap().values().sum::<u64>(),
        "errors_by_code": *errors.lock().unwrap(),
        "cpu": cpu,
        "complete": complete,
    })
}
