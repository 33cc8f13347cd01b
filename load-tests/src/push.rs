//! `push`: push-notification throughput through the bridge. G groups of S members: member 0
//! of each group is online and sends; the other S-1 devices never connect and have a webhook
//! push target that points at a receiver in this process (plain HTTP/1.1 on loopback, which
//! answers 200 at once, so the bridge is what is measured). Each round sends one message per
//! group and waits until every offline device's notification for it has arrived.
//!
//! Reports notifications/s per round, the delay from the ack (the commit) to the receiver's
//! accept, and checks the outcome: every offline device notified once per round, none twice,
//! with the badge its unread count (the round number).

use crate::client::*;
use futures_util::{SinkExt, StreamExt};
use parley_protocol::ServerFrame;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// One request the receiver accepted.
struct Hit {
    device: String,
    conv: String,
    seq: u64,
    badge: u64,
    kind: String,
    at_us: u64,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

pub struct Config {
    pub groups: usize,
    pub size: usize,
    pub rounds: usize,
    pub server_pids: Vec<u32>,
    /// Seconds a round may take before the rest counts as missing.
    pub round_timeout: u64,
}

pub async fn push(base: &str, cfg: Config) -> Value {
    assert!(
        cfg.size >= 2,
        "a group needs a sender and at least one offline member"
    );
    let t0 = Instant::now();
    let hits: Hits = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(receive(listener, hits.clone(), t0));

    let run = std::process::id();
    let names: Vec<String> = (0..cfg.groups * cfg.size)
        .map(|i| format!("p{run}x{i}"))
        .collect();
    let logins = users(base, names, 8).await;
    let offline: Vec<Login> = (0..logins.len())
        .filter(|i| i % cfg.size != 0)
        .map(|i| logins[i].clone())
        .collect();
    register_targets(base, &offline, &hook).await;
    let convs = create_groups(base, &logins, cfg.groups, cfg.size).await;
    let mut senders = Vec::new();
    for g in 0..cfg.groups {
        senders.push(connect(base, &logins[g * cfg.size].token).await);
    }

    let cpu_before = crate::cpu::ticks(&cfg.server_pids);
    let per_round = cfg.groups * (cfg.size - 1);
    let mut delay = hist();
    let mut rounds = Vec::new();
    let mut acked = HashMap::new(); // (conv, seq) -> (round, ack time µs)
    for round in 0..cfg.rounds {
        let start_us = t0.elapsed().as_micros() as u64;
        for (g, ws) in senders.iter_mut().enumerate() {
            let seq = send_one(ws, &convs[g], &format!("r{round}g{g}")).await;
            acked.insert(
                (convs[g].clone(), seq),
                (round, t0.elapsed().as_micros() as u64),
            );
        }
        let wanted: HashSet<(String, u64)> = acked
            .iter()
            .filter(|(_, (r, _))| *r == round)
            .map(|(k, _)| k.clone())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(cfg.round_timeout);
        let (got, last_us) = loop {
            let (n, last) = count_for(&hits, &wanted);
            if n >= per_round || Instant::now() > deadline {
                break (n, last);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let secs = (last_us.saturating_sub(start_us) as f64 / 1e6).max(1e-6);
        rounds.push(json!({
            "round": round + 1,
            "notified": got,
            "notifications_per_s": (got as f64 / secs).round(),
            "first_ack_to_last_accept_s": secs,
        }));
    }
    // Late duplicates would arrive now, if any.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_ticks = crate::cpu::ticks(&cfg.server_pids).saturating_sub(cpu_before);
    check(
        &hits, &acked, per_round, cfg.rounds, &mut delay, rounds, cpu_ticks, &cfg,
    )
}

#[allow(clippy::too_many_arguments)]
fn check(
    hits: &Hits,
    acked: &HashMap<(String, u64), (usize, u64)>,
    per_round: usize,
    rounds_n: usize,
    delay: &mut hdrhistogram::Histogram<u64>,
    rounds: Vec<Value>,
    cpu_ticks: u64,
    cfg: &Config,
) -> Value {
    let hits = hits.lock().unwrap();
    let mut seen = HashSet::new();
    let (mut dups, mut wrong_badge, mut other) = (0u64, 0u64, 0u64);
    for h in hits.iter() {
        let Some((round, ack_us)) = acked.get(&(h.conv.clone(), h.seq)) else {
            other += 1;
            continue;
        };
        if h.kind != "message" {
            other += 1;
            continue;
        }
        if !seen.insert((h.device.clone(), h.conv.clone(), h.seq)) {
            dups += 1;
            continue;
        }
        if h.badge != *round as u64 + 1 {
            wrong_badge += 1;
        }
        let _ = delay.record(h.at_us.saturating_sub(*ack_us).max(1));
    }
    let expected = (per_round * rounds_n) as u64;
    let notified = seen.len() as u64;
    let ticks_per_s = 100.0; // USER_HZ on Linux
    json!({
        "scenario": "push",
        "groups": cfg.groups, "group_size": cfg.size, "rounds": rounds_n,
        "offline_devices": per_round,
        "acked": acked.len(),
        "notified": notified,
        "rounds_detail": rounds,
        "commit_to_accept": summary(delay),
        "server_cpu_s": cpu_ticks as f64 / ticks_per_s,
        "server_cpu_us_per_notification": if notified > 0 {
            (cpu_ticks as f64 / ticks_per_s * 1e6 / notified as f64).round()
        } else { 0.0 },
        "duplicates": dups, "gaps": 0, "undelivered": expected.saturating_sub(notified),
        "wrong_badge": wrong_badge, "other_requests": other,
        "complete": dups == 0 && wrong_badge == 0 && notified == expected,
    })
}

/// How many distinct wanted notifications have arrived, and when the last of them did.
fn count_for(hits: &Hits, wanted: &HashSet<(String, u64)>) -> (usize, u64) {
    let hits = hits.lock().unwrap();
    let mut seen = HashSet::new();
    let mut last = 0;
    for h in hits.iter() {
        let key = (h.conv.clone(), h.seq);
        if wanted.contains(&key) && seen.insert((h.device.as_str(), key)) {
            last = last.max(h.at_us);
        }
    }
    (seen.len(), last)
}

async fn send_one(ws: &mut Ws, conv: &str, id: &str) -> u64 {
    let f = json!({"type": "send", "id": id, "conversation_id": conv, "text": "push load"});
    ws.send(Message::Text(f.to_string().into()))
        .await
        .expect("send");
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<ServerFrame>(&t) {
                Ok(ServerFrame::Ack(a)) => return a.seq,
                Ok(ServerFrame::Error { .. }) => panic!("send refused: {t}"),
                _ => {}
            },
            Ok(Some(Ok(_))) => {}
            other => panic!("sender socket: {other:?}"),
        }
    }
}

async fn register_targets(base: &str, devices: &[Login], hook: &str) {
    let chunk = devices.len().div_ceil(8).max(1);
    let mut handles = Vec::new();
    for part in devices.chunks(chunk) {
        let (base, part, hook) = (base.to_string(), part.to_vec(), hook.to_string());
        handles.push(tokio::task::spawn_blocking(move || {
            let a = agent();
            for d in part {
                let url = format!("{base}/v1/devices/{}/push", d.device_id);
                let body = json!({"provider": "webhook", "endpoint": hook, "payload": "id_only"});
                let resp = a
                    .put(&url)
                    .header("Authorization", &format!("Bearer {}", d.token))
                    .send_json(&body)
                    .expect("set push target");
                assert_eq!(resp.status().as_u16(), 204, "set push target");
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

async fn create_groups(base: &str, logins: &[Login], groups: usize, size: usize) -> Vec<String> {
    let mut convs = Vec::new();
    for g in 0..groups {
        let members = &logins[g * size..(g + 1) * size];
        let ids: Vec<String> = members[1..].iter().map(|m| m.user_id.clone()).collect();
        let (base, token) = (base.to_string(), members[0].token.clone());
        let conv = tokio::task::spawn_blocking(move || {
            let (s, v) = post(
                &agent(),
                &format!("{base}/v1/conversations"),
                Some(&token),
                json!({"kind": "group", "title": "push load", "members": ids}),
            );
            assert_eq!(s, 201, "create group: {v}");
            v["conversation_id"].as_str().unwrap().to_string()
        })
        .await
        .unwrap();
        convs.push(conv);
    }
    convs
}

/// The webhook receiver: HTTP/1.1 keep-alive, every request answered 200 at once.
async fn receive(listener: TcpListener, hits: Hits, t0: Instant) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve(stream, hits.clone(), t0));
    }
}

async fn serve(stream: TcpStream, hits: Hits, t0: Instant) {
    let mut r = BufReader::new(stream);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        let at_us = t0.elapsed().as_micros() as u64;
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            hits.lock().unwrap().push(Hit {
                device: s("device_id"),
                conv: s("conversation_id"),
                seq: v["seq"].as_u64().unwrap_or(0),
                badge: v["badge"].as_u64().unwrap_or(0),
                kind: s("type"),
                at_us,
            });
        }
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        if r.get_mut().write_all(ok).await.is_err() {
            return;
        }
    }
}
