//! `receipts`: one group of S members (1,000 by default), each with its own device and socket.
//! The sender sends K messages, one every `gap` ms; every other member marks each one received
//! and then read as soon as it arrives. Reports, per message, the time from its send to the
//! sender's `receipt_summary` showing every recipient as delivered and as read, how many
//! summaries the sender got for it (the coalescing), and the latency of the receipts
//! endpoint for a full page (every reader, with times). Complete when every message reached
//! all recipients, read, in the summaries and in the endpoint's page.

use crate::client::*;
use futures_util::{SinkExt, StreamExt};
use parley_protocol::ServerFrame;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn get(agent: &ureq::Agent, url: &str, token: &str) -> (u16, Value) {
    let mut resp = agent
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .expect("http request");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

/// Per message: when it was sent, when the summaries showed all delivered / all read, and
/// how many summaries came.
#[derive(Default, Clone, Copy)]
struct Progress {
    sent: Option<Instant>,
    all_delivered: Option<Instant>,
    all_read: Option<Instant>,
    summaries: u64,
}

pub async fn receipts(base: &str, size: usize, messages: u64, gap_ms: u64) -> Value {
    assert!(size >= 2, "a group needs at least 2 members");
    let run = std::process::id();
    let names: Vec<String> = (0..size).map(|i| format!("r{run}x{i}")).collect();
    let logins = users(base, names, 8).await;
    let ids: Vec<&str> = logins[1..].iter().map(|m| m.user_id.as_str()).collect();
    let (base2, token, ids) = (base.to_string(), logins[0].token.clone(), json!(ids));
    let conv = tokio::task::spawn_blocking(move || {
        let (s, v) = post(
            &agent(),
            &format!("{base2}/v1/conversations"),
            Some(&token),
            json!({"kind": "group", "title": "receipts", "members": ids}),
        );
        assert_eq!(s, 201, "create group: {v}");
        v["conversation_id"].as_str().unwrap().to_string()
    })
    .await
    .unwrap();
    let recipients = (size - 1) as u64;
    // Members: mark each message received, then read, as it arrives.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut members = Vec::new();
    for login in &logins[1..size] {
        let mut ws = connect(base, &login.token).await;
        let mut stop = stop_rx.clone();
        members.push(tokio::spawn(async move {
            let mut order = Order::default();
            loop {
                tokio::select! {
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            if let Ok(ServerFrame::Message(msg)) = serde_json::from_str::<ServerFrame>(&t) {
                                if order.see(msg.seq) {
                                    for kind in ["received", "read"] {
                                        let f = json!({"type": kind, "conversation_id": msg.conversation_id, "seq": msg.seq});
                                        let _ = ws.send(Message::Text(f.to_string().into())).await;
                                    }
                                }
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    _ = stop.changed() => break,
                }
            }
            order
        }));
    }
    // The sender: sends, and follows the summaries of its messages.
    let mut ws = connect(base, &logins[0].token).await;
    let mut progress: HashMap<u64, Progress> = HashMap::new();
    let mut pending_sends: HashMap<String, Instant> = HashMap::new();
    let mut errors = 0u64;
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(gap_ms.max(1)));
    let deadline =
        Instant::now() + Duration::from_millis(gap_ms * messages) + Duration::from_secs(60);
    loop {
        let done = sent == messages
            && pending_sends.is_empty()
            && progress.values().all(|p| p.all_read.is_some());
        if done || Instant::now() > deadline {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if sent < messages => {
                let id = format!("r{sent}");
                let f = json!({"type": "send", "id": id, "conversation_id": conv, "text": "receipts load"});
                pending_sends.insert(id, Instant::now());
                sent += 1;
                if ws.send(Message::Text(f.to_string().into())).await.is_err() { break; }
            }
            m = tokio::time::timeout(Duration::from_secs(1), ws.next()) => match m {
                Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<ServerFrame>(&t) {
                    Ok(ServerFrame::Ack(a)) => {
                        let at = pending_sends.remove(&a.id);
                        progress.entry(a.seq).or_default().sent = at;
                    }
                    Ok(ServerFrame::Error { .. }) => errors += 1,
                    Ok(ServerFrame::ReceiptSummary { seq, delivered, read, .. }) => {
                        let p = progress.entry(seq).or_default();
                        p.summaries += 1;
                        let now = Instant::now();
                        if delivered >= recipients && p.all_delivered.is_none() {
                            p.all_delivered = Some(now);
                        }
                        if read >= recipients && p.all_read.is_none() {
                            p.all_read = Some(now);
                        }
                    }
                    _ => {}
                },
                Ok(Some(Ok(_))) | Err(_) => {}
                _ => break,
            }
        }
    }
    let _ = stop_tx.send(true);
    let (mut dups, mut gaps, mut missing) = (0u64, 0u64, 0u64);
    let top = progress.keys().max().copied().unwrap_or(0);
    for m in members {
        let order = m.await.unwrap();
        dups += order.dups;
        gaps += order.gaps;
        missing += top.saturating_sub(order.last);
    }
    let (mut to_delivered, mut to_read, mut per_message) = (hist(), hist(), hist());
    let mut unfinished = 0u64;
    for p in progress.values() {
        let Some(sent) = p.sent else { continue };
        match (p.all_delivered, p.all_read) {
            (Some(d), Some(r)) => {
                let _ = to_delivered.record((d - sent).as_micros().max(1) as u64);
                let _ = to_read.record((r - sent).as_micros().max(1) as u64);
            }
            _ => unfinished += 1,
        }
        let _ = per_message.record(p.summaries.max(1));
    }
    // The endpoint: a full page of readers of each message, timed.
    let (base2, token, conv2) = (base.to_string(), logins[0].token.clone(), conv.clone());
    let seqs: Vec<u64> = progress.keys().copied().collect();
    let (page_latency, short_pages) = tokio::task::spawn_blocking(move || {
        let a = agent();
        let mut h = hist();
        let mut short = 0u64;
        for round in 0..5 {
            for seq in &seqs {
                let url = format!(
                    "{base2}/v1/conversations/{conv2}/messages/{seq}/receipts?kind=read&limit={}",
                    recipients
                );
                let t = Instant::now();
                let (s, v) = get(&a, &url, &token);
                let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                let users = v["users"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                let timed = users.iter().filter(|u| u["at"].is_i64()).count() as u64;
                if round == 0 && (s != 200 || timed != recipients || v["read"] != json!(recipients))
                {
                    short += 1;
                }
            }
        }
        (h, short)
    })
    .await
    .unwrap();
    let summaries_total: u64 = progress.values().map(|p| p.summaries).sum();
    json!({
        "scenario": "receipts",
        "group_size": size, "messages": messages, "gap_ms": gap_ms,
        "acked": progress.values().filter(|p| p.sent.is_some()).count(),
        "summaries": summaries_total,
        "summaries_per_message": summary_counts(&per_message),
        "time_to_all_delivered": summary(&to_delivered),
        "time_to_all_read": summary(&to_read),
        "receipts_page_latency": summary(&page_latency),
        "unfinished": unfinished, "short_pages": short_pages,
        "duplicates": dups, "gaps": gaps, "undelivered": missing,
        "errors": errors,
        "complete": dups == 0 && gaps == 0 && missing == 0 && unfinished == 0 && short_pages == 0
            && sent == messages && errors == 0,
    })
}

/// Percentiles of a histogram of plain counts.
fn summary_counts(h: &hdrhistogram::Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "mean": (h.mean() * 10.0).round() / 10.0,
        "p50": h.value_at_quantile(0.5),
        "p99": h.value_at_quantile(0.99),
        "max": h.max(),
    })
}
