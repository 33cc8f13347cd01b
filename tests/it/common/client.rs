//! A WebSocket client of the contract (tokio-tungstenite), with waits that name what they
//! wait for.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(Clone, Debug)]
pub struct Dev {
    pub user_id: String,
    pub device_id: String,
    pub token: String,
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    pub ready: Value,
}

pub const WAIT: Duration = Duration::from_secs(10);

impl Client {
    /// Connects with the token in the Authorization header and waits for `ready`.
    pub async fn connect(addr: &str, token: Option<&str>) -> Client {
        let mut ws = Self::raw(addr, token).await;
        let ready = next_json(&mut ws, WAIT).await.expect("ready frame");
        assert_eq!(ready["type"], "ready", "{ready}");
        Client { ws, ready }
    }

    /// Connects without waiting for anything.
    pub async fn raw(addr: &str, token: Option<&str>) -> Ws {
        let mut req = format!("ws://{addr}/v1/ws").into_client_request().unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("Authorization", format!("Bearer {t}").parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("ws connect");
        ws
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("ws send");
    }

    /// Sends a message and waits for its ack (skipping other frames). Returns the ack.
    pub async fn send_msg(&mut self, conv: &str, id: &str, text: &str) -> Value {
        self.send(json!({"type": "send", "id": id, "conversation_id": conv, "text": text}))
            .await;
        let a = self
            .next_where(|v| (v["type"] == "ack" || v["type"] == "error") && v["id"] == id)
            .await;
        assert_eq!(a["type"], "ack", "{a}");
        a
    }

    /// The next frame of any type.
    pub async fn next(&mut self) -> Value {
        next_json(&mut self.ws, WAIT).await.expect("a frame")
    }

    /// The next frame matching `pred`; frames before it are dropped.
    pub async fn next_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match next_json(&mut self.ws, left).await {
                Some(v) if pred(&v) => return v,
                Some(_) => continue,
                None => panic!("no matching frame within {WAIT:?}"),
            }
        }
    }

    pub async fn next_type(&mut self, t: &str) -> Value {
        self.next_where(|v| v["type"] == t).await
    }

    /// Frames matching `pred` that arrive within `d`.
    pub async fn collect_for(&mut self, d: Duration, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + d;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return out;
            }
            match next_json(&mut self.ws, left).await {
                Some(v) if pred(&v) => out.push(v),
                Some(_) => {}
                None => return out,
            }
        }
    }

    /// Syncs until `more` is false; returns every message, deleted and expired frame received.
    pub async fn sync_all(&mut self, limit: u32) -> Vec<Value> {
        let mut out = Vec::new();
        for round in 0..1000 {
            let id = format!("sync-{round}");
            self.send(json!({"type": "sync", "id": id, "limit": limit}))
                .await;
            loop {
                let v = self.next().await;
                match v["type"].as_str().unwrap() {
                    "message" | "deleted" | "expired" => out.push(v),
                    "synced" if v["id"] == id => {
                        if v["more"] == false {
                            return out;
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
        panic!("sync did not finish");
    }

    /// Waits for the server to close; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        close_code(&mut self.ws, WAIT).await
    }
}

/// Reads until a text frame parses as JSON, or `None` on close, error or timeout.
pub async fn next_json(ws: &mut Ws, d: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return Some(serde_json::from_str(&t).expect("server sent JSON"))
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Reads until the close frame; returns its code (None if the socket ended without one).
pub async fn close_code(ws: &mut Ws, d: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => return Some(u16::from(f.code)),
            Ok(Some(Ok(Message::Close(None)))) => return Some(u16::from(CloseCode::Status)),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return None,
            Err(_) => panic!("no close within {d:?}"),
        }
    }
}

impl Client {
    /// Sends a raw text frame (not necessarily JSON).
    pub async fn send_text(&mut self, t: &str) {
        self.ws
            .send(Message::Text(t.to_string().into()))
            .await
            .expect("ws send");
    }

    /// Waits for the `error` answering the frame `id` and checks its code.
    pub async fn expect_error(&mut self, id: &str, code: &str) -> Value {
        let e = self.next_where(|v| v["id"] == id).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "answer to {id}: {e}"
        );
        e
    }
}
