//! The test harness: real server processes (`server`) and the requests tests make of them
//! (`api`), a real Redis (`redis`; a Redis Cluster or a Sentinel set: `redis_cluster`), a
//! WebSocket client (`client`), and small helpers for waiting on conditions and checking errors.
#![allow(dead_code)]

mod api;
mod client;
mod redis;
mod redis_cluster;
mod server;

pub use client::*;
pub use redis::Redis;
pub use redis_cluster::{RedisCluster, Sentinels, SentinelsWith};
pub use server::*;

use serde_json::Value;
use std::time::{Duration, Instant};

/// A port nothing listens on right now, for a process that must listen at a fixed address
/// (Redis, S3, a node restarted where its clients know it), never handed out twice in this
/// process.
///
/// The port is taken below the kernel's ephemeral range (`ip_local_port_range`), where the
/// kernel never puts anything by itself: a node listening on port 0, or any outgoing
/// connection, gets its port from that range, so it can never take a port handed out here
/// between this check and the process binding it (the cause of "a node exited" in CI).
pub fn free_port() -> u16 {
    static NEXT: std::sync::Mutex<Option<u32>> = std::sync::Mutex::new(None);
    let (low, span) = fixed_port_range();
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    // Each test process starts at its own place in the range, so two suites run side by
    // side (by hand) rarely try the same ports.
    let at = next.get_or_insert_with(|| std::process::id().wrapping_mul(7919) % span);
    for _ in 0..span {
        let port = (low + *at % span) as u16;
        *at = (*at + 1) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{}", low + span);
}

/// The ports below the ephemeral range: `(first, how many)`.
fn fixed_port_range() -> (u32, u32) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(12000).max(1024);
    assert!(
        low < ephemeral_low,
        "the ephemeral range starts at {ephemeral_low}"
    );
    (low, ephemeral_low - low)
}

/// Polls `cond` every 20 ms for up to `within`; true as soon as it holds.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of an unlabelled metric in a node's Prometheus text (0 when absent).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// The async form: polls `cond` every 20 ms for up to `within`.
pub async fn eventually<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// The status of `GET /readyz` on `addr`, or 0 if nothing answers.
pub fn readyz(addr: &str) -> u16 {
    agent(Duration::from_secs(3))
        .get(&format!("http://{addr}/readyz"))
        .call()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// `GET url` as JSON (Null if nothing or no JSON answers).
pub fn get_json(url: &str) -> Value {
    match agent(Duration::from_secs(2)).get(url).call() {
        Ok(mut r) => r.body_mut().read_json().unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Checks an HTTP answer against the contract's error shape.
#[track_caller]
pub fn assert_err(answer: &(u16, Value), status: u16, code: &str) {
    let (st, v) = answer;
    assert_eq!(
        (*st, v["error"]["code"].as_str()),
        (status, Some(code)),
        "expected {status} {code}, got {st} {v}"
    );
}

/// Milliseconds since the Unix epoch, as the server stamps `ts`.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The seqs of a list of message frames.
pub fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().map(|f| f["seq"].as_u64().unwrap()).collect()
}

/// Every message's text and meta as stored, earlier versions included, read straight from the
/// database file.
pub fn stored_texts(db: &std::path::Path) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut st = c
        .prepare(
            "SELECT COALESCE(text, '') || COALESCE(meta, '') FROM messages
             UNION ALL SELECT COALESCE(text, '') || COALESCE(meta, '') FROM message_versions",
        )
        .unwrap();
    let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// A real PNG of `w`x`h` noisy pixels and no metadata (the server decodes images, so a fake
/// one is refused; a clean small one is stored byte for byte).
pub fn test_png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = x
            .wrapping_mul(2_654_435_761)
            .wrapping_add(y.wrapping_mul(40_503));
        image::Rgb([(v >> 3) as u8, (v >> 11) as u8, (v >> 19) as u8])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}
