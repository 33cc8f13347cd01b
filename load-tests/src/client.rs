//! What every scenario needs: HTTP set-up calls, WebSocket connections with small buffers,
//! latency histograms, and /proc readings.

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub const PASSWORD: &str = "load-test-pw";

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

pub fn post(agent: &ureq::Agent, url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = agent.post(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.send_json(&body).expect("http request");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_json().unwrap_or(Value::Null))
}

#[derive(Clone, Debug)]
pub struct Login {
    pub user_id: String,
    pub device_id: String,
    pub token: String,
}

pub fn create_user(agent: &ureq::Agent, base: &str, name: &str) {
    let (s, v) = post(
        agent,
        &format!("{base}/v1/users"),
        None,
        json!({"username": name, "password": PASSWORD}),
    );
    assert!(s == 201 || s == 409, "create user {name}: {s} {v}");
}

pub fn login(agent: &ureq::Agent, base: &str, name: &str) -> Login {
    let (s, v) = post(
        agent,
        &format!("{base}/v1/sessions"),
        None,
        json!({"username": name, "password": PASSWORD}),
    );
    assert_eq!(s, 200, "login {name}: {v}");
    Login {
        user_id: v["user_id"].as_str().unwrap().into(),
        device_id: v["device_id"].as_str().unwrap().into(),
        token: v["token"].as_str().unwrap().into(),
    }
}

/// Creates (if needed) and logs in each name, on `threads` blocking threads.
pub async fn users(base: &str, names: Vec<String>, threads: usize) -> Vec<Login> {
    let chunk = names.len().div_ceil(threads.max(1)).max(1);
    let mut handles = Vec::new();
    for part in names.chunks(chunk) {
        let (base, part) = (base.to_string(), part.to_vec());
        handles.push(tokio::task::spawn_blocking(move || {
            let a = agent();
            part.iter()
                .map(|n| {
                    create_user(&a, &base, n);
                    login(&a, &base, n)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.extend(h.await.unwrap());
    }
    out
}

pub fn direct_conversation(agent: &ureq::Agent, base: &str, a: &Login, b: &Login) -> String {
    let (s, v) = post(
        agent,
        &format!("{base}/v1/conversations"),
        Some(&a.token),
        json!({"kind": "direct", "members": [b.user_id]}),
    );
    assert!(s == 201 || s == 200, "direct: {s} {v}");
    v["conversation_id"].as_str().unwrap().to_string()
}

pub fn ws_url(base: &str) -> String {
    format!("{}/v1/ws", base.replacen("http", "ws", 1))
}

/// Connects with small buffers (idle clients should be cheap) and waits for `ready`. A busy
/// node may refuse a handshake (408 when it could not read the request in time): retry with
/// backoff, as a real client would.
pub async fn connect(base: &str, token: &str) -> Ws {
    let mut delay = Duration::from_millis(100);
    for attempt in 1.. {
        match connect_once(base, token).await {
            Ok((ws, _)) => return ws,
            Err(e) if attempt < 8 => {
                eprintln!("connect attempt {attempt} failed ({e}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => panic!("ws connect failed {attempt} times: {e}"),
        }
    }
    unreachable!()
}

/// One attempt; the error names the HTTP status when the upgrade was refused.
pub async fn try_connect(base: &str, token: &str) -> Result<Ws, String> {
    connect_once(base, token).await.map(|(ws, _)| ws)
}

/// One connection attempt; returns the socket and its `ready` frame (the device's cursors).
pub async fn connect_once(base: &str, token: &str) -> Result<(Ws, String), String> {
    let mut req = ws_url(base)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let cfg = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(cfg), true)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"ready\"") => {
                return Ok((ws, t.to_string()))
            }
            Some(Ok(_)) => continue,
            other => return Err(format!("no ready frame: {other:?}")),
        }
    }
}

pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap()
}

/// Percentiles of a histogram of microseconds, in milliseconds.
pub fn summary(h: &Histogram<u64>) -> Value {
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

pub fn rss_kib(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Per-conversation order checker for one device: counts duplicates and gaps.
#[derive(Default, Clone, Debug)]
pub struct Order {
    pub last: u64,
    pub dups: u64,
    pub gaps: u64,
}

impl Order {
    /// Returns true if `seq` is new (to be counted as delivered).
    pub fn see(&mut self, seq: u64) -> bool {
        if seq <= self.last {
            self.dups += 1;
            return false;
        }
        if seq != self.last + 1 {
            self.gaps += seq - self.last - 1;
        }
        self.last = seq;
        true
    }
}
