//! `storm`: K devices go offline at once, messages pile up for them, then all K reconnect at
//! once and sync. Reports the time until every device has synced everything it is owed, and
//! owed against delivered (which must be equal, each message once, in order).

use crate::client::*;
use futures_util::{SinkExt, StreamExt};
use parley_protocol::ServerFrame;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub async fn storm(base: &str, clients: usize, senders: usize, messages: u64) -> Value {
    let run = std::process::id();
    let senders = senders.clamp(1, clients);
    let names: Vec<String> = (0..clients)
        .map(|i| format!("st{run}r{i}"))
        .chain((0..senders).map(|i| format!("st{run}s{i}")))
        .collect();
    let logins = users(base, names, 8).await;
    let (receivers, sender_logins) = logins.split_at(clients);
    // Receiver i talks with sender i % senders.
    let convs: Vec<String> = {
        let mut handles = Vec::new();
        let chunk = clients.div_ceil(8);
        for part in 0..8 {
            let (base, r, s) = (base.to_string(), receivers.to_vec(), sender_logins.to_vec());
            handles.push(tokio::task::spawn_blocking(move || {
                let a = agent();
                (part * chunk..((part + 1) * chunk).min(r.len()))
                    .map(|i| direct_conversation(&a, &base, &s[i % s.len()], &r[i]))
                    .collect::<Vec<_>>()
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.extend(h.await.unwrap());
        }
        out
    };
    // Everyone online once (so the devices exist and hold cursors), then all drop at once.
    let online: Vec<Ws> =
        futures_util::stream::iter(receivers.iter().map(|l| connect(base, &l.token)))
            .buffer_unordered(256)
            .collect()
            .await;
    drop(online);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Messages pile up while they are away.
    let mut tasks = Vec::new();
    for (s, login) in sender_logins.iter().enumerate() {
        let mine: Vec<String> = convs
            .iter()
            .enumerate()
            .filter(|(i, _)| i % senders == s)
            .map(|(_, c)| c.clone())
            .collect();
        let mut ws = connect(base, &login.token).await;
        tasks.push(tokio::spawn(async move {
            let mut owed: HashMap<String, u64> = HashMap::new();
            let mut queue = mine.iter().flat_map(|c| (0..messages).map(move |k| (c.clone(), k)));
            let (mut inflight, mut errors, mut n) = (0usize, 0u64, 0u64);
            loop {
                while inflight < 64 {
                    let Some((conv, k)) = queue.next() else { break };
                    let f = json!({"type": "send", "id": format!("{n}"), "conversation_id": conv, "text": format!("owed {k}")});
                    n += 1;
                    ws.send(Message::Text(f.to_string().into())).await.expect("send");
                    inflight += 1;
                }
                if inflight == 0 {
                    break;
                }
                match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<ServerFrame>(&t) {
                        Ok(ServerFrame::Ack(a)) => {
                            inflight -= 1;
                            let e = owed.entry(a.conversation_id).or_default();
                            *e = (*e).max(a.seq);
                        }
                        Ok(ServerFrame::Error { .. }) => {
                            inflight -= 1;
                            errors += 1;
                        }
                        _ => {}
                    },
                    Ok(Some(Ok(_))) => {}
                    _ => panic!("sender connection failed"),
                }
            }
            (owed, errors)
        }));
    }
    let mut owed: HashMap<String, u64> = HashMap::new();
    let mut errors = 0;
    for t in tasks {
        let (o, e) = t.await.unwrap();
        owed.extend(o);
        errors += e;
    }
    let total_owed: u64 = owed.values().sum();

    // The storm: all reconnect at once and sync.
    let t0 = Instant::now();
    let meter = crate::cpu::Meter::start();
    let mut syncs = Vec::new();
    for (i, l) in receivers.iter().enumerate() {
        let (base, token, conv) = (base.to_string(), l.token.clone(), convs[i].clone());
        let want = owed.get(&conv).copied().unwrap_or(0);
        syncs.push(tokio::spawn(async move {
            let mut ws = connect(&base, &token).await;
            let mut order = Order::default();
            let mut round = 0;
            'sync: loop {
                let id = format!("s{round}");
                round += 1;
                let f = json!({"type": "sync", "id": id, "limit": 200});
                ws.send(Message::Text(f.to_string().into()))
                    .await
                    .expect("sync");
                loop {
                    match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            match serde_json::from_str::<ServerFrame>(&t) {
                                Ok(ServerFrame::Message(m)) => {
                                    order.see(m.seq);
                                }
                                Ok(ServerFrame::Synced { id: sid, more }) if sid == id => {
                                    if !more {
                                        break 'sync;
                                    }
                                    break;
                                }
                                _ => {}
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => break 'sync,
                    }
                }
            }
            let done = t0.elapsed();
            if order.last > 0 {
                let f = json!({"type": "received", "conversation_id": conv, "seq": order.last});
                let _ = ws.send(Message::Text(f.to_string().into())).await;
            }
            (order, want, done)
        }));
    }
    let mut per_client = hist();
    let (mut delivered, mut dups, mut gaps, mut short) = (0u64, 0u64, 0u64, 0u64);
    for s in syncs {
        let (order, want, done) = s.await.unwrap();
        let _ = per_client.record(done.as_micros() as u64);
        delivered += order.last.min(want) - order.gaps.min(order.last.min(want));
        dups += order.dups;
        gaps += order.gaps;
        short += want.saturating_sub(order.last);
    }
    let all_synced_s = t0.elapsed().as_secs_f64();
    let cpu = meter.report(&[("message", delivered)]);
    json!({
        "scenario": "storm",
        "clients": clients, "senders": senders, "messages_per_client": messages,
        "owed": total_owed,
        "delivered": delivered,
        "all_synced_s": (all_synced_s * 1000.0).round() / 1000.0,
        "time_to_synced": summary(&per_client),
        "duplicates": dups, "gaps": gaps, "undelivered": short,
        "errors": errors,
        "cpu": cpu,
        "complete": dups == 0 && gaps == 0 && short == 0 && delivered == total_owed,
    })
}
