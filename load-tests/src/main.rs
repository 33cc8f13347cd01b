//! `parley-load`: drives real Parley nodes the way a fleet of clients would, and checks the
//! outcome as well as the speed.
//!
//! Scenarios (each bounded in count and time, loopback only):
//! - `direct`: pairs of users exchange 1:1 messages; reports acked msgs/s, ack latency and
//!   end-to-end delivery latency, and checks that every acked message reached its receiver
//!   exactly once, in seq order.
//! - `connect`: opens N authenticated idle connections and reports the setup rate and the
//!   server's resident memory per connection.

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parley_protocol::ServerFrame;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(name = "parley-load", about = "Load generator for Parley")]
struct Cli {
    /// Base URL of a node (http://host:port).
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// Write every figure as JSON to this file.
    #[arg(long, global = true)]
    json: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Pairs of users exchange 1:1 messages.
    Direct {
        #[arg(long, default_value_t = 20)]
        pairs: usize,
        /// Messages in flight per sender (closed loop).
        #[arg(long, default_value_t = 32)]
        window: usize,
        /// Target rate in msgs/s over all senders (open loop); 0 = as fast as the window allows.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Message text size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Open idle authenticated connections and measure memory per connection.
    Connect {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Users to spread the devices over.
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// PID of the server, to read its RSS from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Seconds to hold the connections before measuring.
        #[arg(long, default_value_t = 3)]
        hold: u64,
    },
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn post(agent: &ureq::Agent, url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = agent.post(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.send_json(&body).expect("http request");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

#[derive(Clone)]
struct Login {
    user_id: String,
    token: String,
}

fn create_user(agent: &ureq::Agent, base: &str, name: &str) {
    let (s, v) = post(
        agent,
        &format!("{base}/v1/users"),
        None,
        json!({"username": name, "password": "load-test-pw"}),
    );
    assert!(s == 201 || s == 409, "create user {name}: {s} {v}");
}

fn login(agent: &ureq::Agent, base: &str, name: &str) -> Login {
    let (s, v) = post(
        agent,
        &format!("{base}/v1/sessions"),
        None,
        json!({"username": name, "password": "load-test-pw"}),
    );
    assert_eq!(s, 200, "login {name}: {v}");
    Login {
        user_id: v["user_id"].as_str().unwrap().into(),
        token: v["token"].as_str().unwrap().into(),
    }
}

fn ws_url(base: &str) -> String {
    format!("{}/v1/ws", base.replacen("http", "ws", 1))
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects with small buffers (idle clients should be cheap) and waits for `ready`.
async fn connect(base: &str, token: &str) -> Ws {
    let mut req = ws_url(base).into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let cfg = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(cfg), true)
        .await
        .expect("ws connect");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"ready\"") => return ws,
            Some(Ok(_)) => continue,
            other => panic!("no ready frame: {other:?}"),
        }
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).unwrap()
}

fn summary(h: &Histogram<u64>) -> Value {
    let ms = |v: u64| v as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

fn machine() -> Value {
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.to_string()))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory": mem.trim(),
        "kernel": kernel.trim(),
    })
}

fn rss_kib(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let report = match cli.cmd {
        Cmd::Direct {
            pairs,
            window,
            rate,
            duration,
            size,
        } => direct(&cli.url, pairs, window, rate, duration, size).await,
        Cmd::Connect {
            connections,
            users,
            server_pid,
            hold,
        } => connect_scenario(&cli.url, connections, users, server_pid, hold).await,
    };
    let ok = report["complete"].as_bool().unwrap_or(true);
    let mut report = report;
    report["machine"] = machine();
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).expect("write json");
    }
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    if !ok {
        eprintln!("FAILED: completeness check");
        std::process::exit(1);
    }
}

async fn direct(
    base: &str,
    pairs: usize,
    window: usize,
    rate: u64,
    duration: u64,
    size: usize,
) -> Value {
    let run = std::process::id();
    let base = base.to_string();
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
    let errors = Arc::new(AtomicU64::new(0));
    // Every sender starts at once, after all connections are up, so set-up does not show up
    // as latency.
    let start = Arc::new(tokio::sync::Barrier::new(pairs + 1));
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for (i, (s, r, conv)) in setup.into_iter().enumerate() {
        let mut rws = connect(&base, &r.token).await;
        let mut sws = connect(&base, &s.token).await;
        let (done_tx, mut done_rx) = tokio::sync::watch::channel(0u64);
        receivers.push(tokio::spawn(async move {
            let mut e2e = hist();
            let mut last = 0u64;
            let (mut dups, mut gaps) = (0u64, 0u64);
            let deadline_after_done = Duration::from_secs(15);
            let mut done_at: Option<Instant> = None;
            loop {
                let target = *done_rx.borrow();
                if target > 0 && last >= target {
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
                                if m.seq <= last { dups += 1; continue; }
                                if m.seq != last + 1 { gaps += m.seq - last - 1; }
                                last = m.seq;
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
            (e2e, last, dups, gaps)
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
                                errors.fetch_add(1, Ordering::Relaxed);
                                eprintln!("error {code:?} for {id:?}");
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
    let send_secs = t_send
        .elapsed()
        .as_secs_f64()
        .min(duration as f64)
        .max(0.001);
    let (mut delivered, mut dups, mut gaps, mut short) = (0u64, 0u64, 0u64, 0u64);
    for (r, target) in receivers.into_iter().zip(targets) {
        let (h, last, d, g) = r.await.unwrap();
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
        "errors": errors.load(Ordering::Relaxed),
        "complete": complete,
    })
}

async fn connect_scenario(
    base: &str,
    n: usize,
    users: usize,
    server_pid: Option<u32>,
    hold: u64,
) -> Value {
    let run = std::process::id();
    let users = users.max(1);
    let base_s = base.to_string();
    // One device (one login) per connection.
    let t_setup = Instant::now();
    let logins: Vec<Login> = {
        let mut handles = Vec::new();
        let per_thread = n.div_ceil(8);
        for t in 0..8 {
            let base = base_s.clone();
            handles.push(tokio::task::spawn_blocking(move || {
                let agent = agent();
                let mut out = Vec::new();
                for k in (t * per_thread)..((t + 1) * per_thread).min(n) {
                    let name = format!("c{run}x{}", k % users);
                    if k < users {
                        create_user(&agent, &base, &name);
                    }
                    out.push(name);
                }
                out
            }));
        }
        let mut names = Vec::new();
        for h in handles {
            names.extend(h.await.unwrap());
        }
        // Users exist now; log every device in.
        let chunks: Vec<Vec<String>> = names
            .chunks(n.div_ceil(8).max(1))
            .map(|c| c.to_vec())
            .collect();
        let mut handles = Vec::new();
        for chunk in chunks {
            let base = base_s.clone();
            handles.push(tokio::task::spawn_blocking(move || {
                let agent = agent();
                chunk
                    .iter()
                    .map(|name| login(&agent, &base, name))
                    .collect::<Vec<_>>()
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.extend(h.await.unwrap());
        }
        out
    };
    let setup_s = t_setup.elapsed().as_secs_f64();
    let pid = server_pid.map(|p| p.to_string());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server_before = pid.as_deref().and_then(rss_kib);
    let client_before = rss_kib("self");
    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut pending = futures_util::stream::iter(logins.iter().map(|l| connect(base, &l.token)))
        .buffer_unordered(256);
    while let Some(ws) = pending.next().await {
        conns.push(ws);
    }
    let connect_s = t0.elapsed().as_secs_f64();
    // Keep answering pings while holding.
    let readers: Vec<_> = conns
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} }))
        .collect();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let server_after = pid.as_deref().and_then(rss_kib);
    let client_after = rss_kib("self");
    let per = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => json!(((b as f64 - a as f64) * 1024.0 / n as f64).round()),
        _ => Value::Null,
    };
    let report = json!({
        "scenario": "connect",
        "connections": n,
        "logins_s": (setup_s * 10.0).round() / 10.0,
        "connect_s": (connect_s * 100.0).round() / 100.0,
        "connections_per_s": (n as f64 / connect_s).round(),
        "server_rss_kib_before": server_before, "server_rss_kib_after": server_after,
        "server_bytes_per_connection": per(server_before, server_after),
        "client_bytes_per_connection": per(client_before, client_after),
        "complete": readers.len() == n,
    });
    for r in readers {
        r.abort();
    }
    report
}
