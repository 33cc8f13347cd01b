//! Slow and hostile HTTP clients: headers that never finish (slowloris), a body that stops
//! arriving, one user's uploads at once, and WebSocket handshakes that never authenticate.
//! Each is answered and bounded, and the node keeps serving everyone else. A quiet WebSocket
//! is not a stalled body.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Sends `head` (and nothing more) on a new connection; returns what the server answers
/// before it closes, and how long that took.
fn hold_open(addr: &str, head: &str, within: Duration) -> (String, Duration) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(within)).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    (String::from_utf8_lossy(&got).to_string(), started.elapsed())
}

fn json_body(resp: &str) -> Value {
    resp.split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b.trim()).ok())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_stalled_bodies_are_cut_off() {
    let s = TestServer::builder()
        .nodes(1)
        .config("[gateway]\nrequest_header_timeout_ms = 1000\nbody_timeout_ms = 500")
        .start();
    let addr = s.addr.clone();
    // Slowloris: many connections that never finish their headers.
    let loris: Vec<_> = (0..20)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                hold_open(
                    &addr,
                    "GET /healthz HTTP/1.1\r\nHost: x\r\n",
                    Duration::from_secs(5),
                )
            })
        })
        .collect();
    // Everyone else is served meanwhile.
    let (st, _) = s.http("GET", "/healthz", None, None).await;
    assert_eq!(st, 200);
    for t in loris {
        let (_, took) = t.join().unwrap();
        assert!(
            took < Duration::from_secs(4),
            "a slowloris connection lived {took:?}"
        );
    }
    // A body that stops arriving: 400 with the contract's shape.
    let head = "POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\"";
    let (resp, took) = hold_open(&addr, head, Duration::from_secs(5));
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert_eq!(json_body(&resp)["error"]["code"], "bad_request", "{resp}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let a = s.user("alice").await; // and the API still works
    assert!(!a.token.is_empty());
    // A WebSocket's frames are not a request body: a session quiet for longer than the
    // limit (no frame either way before the 15 s heartbeat) is still served.
    let mut quiet = s.ws(&a).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    quiet.send(json!({"type": "sync", "id": "quiet"})).await;
    assert_eq!(quiet.next_type("synced").await["id"], "quiet");
}

/// Whether the server answered (or closed) a connection that is still sending its request.
fn answered(c: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    !matches!(c.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_per_user_and_pending_handshakes_are_capped() {
    let s = TestServer::builder()
        .nodes(1)
        .config("[limits]\nmax_concurrent_uploads = 2\n[gateway]\nmax_pending_auth = 3\nbody_timeout_ms = 30000")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    // Two uploads of Alice's that are still arriving.
    let head = format!(
        "POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\npartial",
        a.token
    );
    let open_slow = || {
        let mut c = TcpStream::connect(&s.addr).unwrap();
        c.write_all(head.as_bytes()).unwrap();
        c.set_nonblocking(true).unwrap();
        c
    };
    let mut slow: Vec<TcpStream> = (0..2).map(|_| open_slow()).collect();
    let upload = |dev: &Dev| {
        let token = dev.token.clone();
        let s = &s;
        async move {
            s.http_raw(
                "POST",
                "/v1/files",
                Some(&token),
                Some(("application/octet-stream".into(), b"hello".to_vec())),
                vec![],
            )
            .await
        }
    };
    // A quick upload can reach the handler before a slow one takes its place (CI's load):
    // then that slow one is refused and the quick one stored. Such a slow upload, answered
    // already, is opened again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let third = loop {
        for c in slow.iter_mut() {
            if answered(c) {
                *c = open_slow();
            }
        }
        if upload(&a).await.0 == 429 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(third, "a third concurrent upload was not refused");
    let (st, body, _) = upload(&a).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    assert_eq!(
        upload(&b).await.0,
        201,
        "another user's upload is not affected"
    );
    slow.clear(); // the slow uploads end: Alice may upload again
    assert!(
        eventually(Duration::from_secs(5), || async {
            upload(&a).await.0 == 201
        })
        .await
    );

    // Handshakes that never authenticate take at most max_pending_auth places.
    let mut pending = Vec::new();
    for _ in 0..3 {
        pending.push(Client::raw(&s.addr, None).await);
    }
    use tokio_tungstenite::tungstenite;
    let req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/v1/ws",
        s.addr
    ))
    .unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(resp)) => {
            let v: Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(
                (resp.status().as_u16(), v["error"]["code"].as_str()),
                (503, Some("unavailable"))
            );
        }
        other => panic!(
            "a fourth pending handshake was accepted: {:?}",
            other.map(|_| ())
        ),
    }
    // One of them authenticates: its place is free for another.
    use futures_util::SinkExt;
    pending[0]
        .send(tungstenite::Message::Text(
            json!({"type": "auth", "token": b.token}).to_string().into(),
        ))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut pending[0], WAIT).await.unwrap()["type"],
        "ready"
    );
    let fourth = eventually(Duration::from_secs(5), || async {
        let req = tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/v1/ws",
            s.addr
        ))
        .unwrap();
        tokio_tungstenite::connect_async(req).await.is_ok()
    })
    .await;
    assert!(fourth);
}
