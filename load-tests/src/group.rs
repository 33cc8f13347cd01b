//! `group`: G groups of S members; one sender per group sends at a share of the total rate.
//! Reports deliveries/s, per-delivery latency, and the latency until the last member has a
//! message; checks that every member received every acked message once, in order.

use crate::client::*;
use futures_util::{SinkExt, StreamExt};
use parley_protocol::ServerFrame;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub async fn group(base: &str, groups: usize, size: usize, rate: u64, duration: u64) -> Value {
    assert!(size >= 2, "a group needs at least 2 members");
    let run = std::process::id();
    let names: Vec<String> = (0..groups * size).map(|i| format!("g{run}x{i}")).collect();
    let logins = users(base, names, 8).await;
    let mut convs = Vec::new();
    for g in 0..groups {
        let members = &logins[g * size..(g + 1) * size];
        let ids: Vec<&str> = members[1..].iter().map(|m| m.user_id.as_str()).collect();
        let (base2, token, ids) = (base.to_string(), members[0].token.clone(), json!(ids));
        let conv = tokio::task::spawn_blocking(move || {
            let (s, v) = post(
                &agent(),
                &format!("{base2}/v1/conversations"),
                Some(&token),
                json!({"kind": "group", "title": "load", "members": ids}),
            );
            assert_eq!(s, 201, "create group: {v}");
            v["conversation_id"].as_str().unwrap().to_string()
        })
        .await
        .unwrap();
        convs.push(conv);
    }
    let t0 = Instant::now();
    // Receivers: every member but the sender.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(Vec::<u64>::new());
    let mut receivers = Vec::new();
    for g in 0..groups {
        for m in 1..size {
            let mut ws = connect(base, &logins[g * size + m].token).await;
            let mut stop = stop_rx.clone();
            receivers.push(tokio::spawn(async move {
                let mut order = Order::default();
                // (seq, latency µs) of each new delivery.
                let mut got: Vec<(u64, u64)> = Vec::new();
                let mut target: Option<u64> = None;
                let mut give_up: Option<Instant> = None;
                loop {
                    if let Some(t) = target {
                        if order.last >= t || give_up.is_some_and(|g| g.elapsed() > Duration::from_secs(20)) {
                            break;
                        }
                    }
                    tokio::select! {
                        m = tokio::time::timeout(Duration::from_millis(200), ws.next()) => match m {
                            Ok(Some(Ok(Message::Text(t)))) => {
                                if let Ok(ServerFrame::Message(msg)) = serde_json::from_str::<ServerFrame>(&t) {
                                    if order.see(msg.seq) {
                                        let sent = msg.meta.as_ref().and_then(|v| v["t"].as_u64()).unwrap_or(0);
                                        got.push((msg.seq, (t0.elapsed().as_micros() as u64).saturating_sub(sent).max(1)));
                                        if msg.seq % 64 == 0 {
                                            let f = json!({"type": "received", "conversation_id": msg.conversation_id, "seq": msg.seq});
                                            let _ = ws.send(Message::Text(f.to_string().into())).await;
                                        }
                                    }
                                }
                            }
                            Ok(Some(Ok(_))) | Err(_) => {}
                            _ => break,
                        },
                        _ = stop.changed() => {
                            target = Some(stop.borrow()[g]);
                            give_up = Some(Instant::now());
                        }
                    }
                }
                (g, order, got, target.unwrap_or(0))
            }));
        }
    }
    // One sender per group, open loop.
    let per_group = Duration::from_secs_f64(groups as f64 / rate.max(1) as f64);
    let start = Instant::now();
    let meter = crate::cpu::Meter::start();
    let mut senders = Vec::new();
    for (g, conv) in convs.iter().enumerate() {
        let mut ws = connect(base, &logins[g * size].token).await;
        let conv = conv.clone();
        senders.push(tokio::spawn(async move {
            let offset = per_group.mul_f64(g as f64 / groups as f64);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, per_group);
            let stop_at = Instant::now() + Duration::from_secs(duration);
            let mut inflight = 0usize;
            let (mut n, mut max_seq, mut errors) = (0u64, 0u64, 0u64);
            loop {
                let sending = Instant::now() < stop_at;
                if !sending && inflight == 0 {
                    break;
                }
                tokio::select! {
                    _ = tick.tick(), if sending => {
                        let f = json!({"type": "send", "id": format!("g{n}"), "conversation_id": conv, "text": "group load", "meta": {"t": t0.elapsed().as_micros() as u64}});
                        n += 1;
                        if ws.send(Message::Text(f.to_string().into())).await.is_err() { break; }
                        inflight += 1;
                    }
                    m = tokio::time::timeout(Duration::from_secs(10), ws.next()) => match m {
                        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<ServerFrame>(&t) {
                            Ok(ServerFrame::Ack(a)) => { inflight -= 1; max_seq = max_seq.max(a.seq); }
                            Ok(ServerFrame::Error { .. }) => { inflight -= 1; errors += 1; }
                            _ => {}
                        },
                        Ok(Some(Ok(_))) => {}
                        _ => break,
                    }
                }
            }
            (max_seq, errors)
        }));
    }
    let mut targets = Vec::new();
    let mut errors = 0;
    for s in senders {
        let (m, e) = s.await.unwrap();
        targets.push(m);
        errors += e;
    }
    let send_secs = start.elapsed().as_secs_f64().max(0.001);
    let _ = stop_tx.send(targets.clone());
    let mut per_delivery = hist();
    // (group, seq) -> (members that got it, latest arrival)
    let mut last_member: HashMap<(usize, u64), (usize, u64)> = HashMap::new();
    let (mut delivered, mut dups, mut gaps, mut missing) = (0u64, 0u64, 0u64, 0u64);
    let receivers = futures_util::future::join_all(receivers).await;
    for r in receivers {
        let (g, order, got, target) = r.unwrap();
        dups += order.dups;
        gaps += order.gaps;
        missing += target.saturating_sub(order.last);
        for (seq, lat) in got {
            if seq <= target {
                delivered += 1;
                let _ = per_delivery.record(lat);
                let e = last_member.entry((g, seq)).or_insert((0, 0));
                e.0 += 1;
                e.1 = e.1.max(lat);
            }
        }
    }
    let mut to_last = hist();
    for (_, (count, lat)) in last_member.iter() {
        if *count == size - 1 {
            let _ = to_last.record(*lat);
        }
    }
    let acked: u64 = targets.iter().sum();
    let cpu = meter.report(&[("message", acked), ("delivery", delivered)]);
    json!({
        "scenario": "group",
        "groups": groups, "group_size": size, "target_rate": rate, "duration_s": duration,
        "acked": acked,
        "deliveries": delivered,
        "deliveries_per_s": (delivered as f64 / send_secs).round(),
        "delivery_latency": summary(&per_delivery),
        "latency_to_last_member": summary(&to_last),
        "duplicates": dups, "gaps": gaps, "undelivered": missing,
        "errors": errors,
        "cpu": cpu,
        "complete": dups == 0 && gaps == 0 && missing == 0 && delivered == acked * (size as u64 - 1),
    })
}
