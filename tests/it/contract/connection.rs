//! The connection itself: bad input, rate limits, authentication, heartbeats, slow consumers, many sessions at once.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_error_codes_and_keeps_the_connection() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let conv = s.direct(&a, &b).await;
    let mut w = s.ws(&a).await;

    w.ws_send_text("this is not json").await;
    assert_eq!(w.next_type("error").await["code"], "bad_request");
    w.send(json!({"type": "launch_rockets", "id": "r"})).await;
    let e = w.next_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("bad_request"), Some("r"))
    );
    w.send(json!({"type": "send", "id": "t", "conversation_id": conv, "text": "x".repeat(16 * 1024 + 1)})).await;
    let e = w.next_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_str()),
        (Some("too_large"), Some("t"))
    );
    let big_meta: String = "y".repeat(4100);
    w.send(json!({"type": "send", "id": "m", "conversation_id": conv, "text": "x", "meta": {"v": big_meta}})).await;
    assert_eq!(w.next_type("error").await["code"], "too_large");
    w.send(json!({"type": "send", "id": "n", "conversation_id": conv, "text": "x", "meta": [1]}))
        .await;
    assert_eq!(w.next_type("error").await["code"], "bad_request");
    w.send(json!({"type": "send", "id": "e", "conversation_id": conv}))
        .await;
    assert_eq!(w.next_type("error").await["code"], "bad_request");
    w.send(json!({"type": "send", "id": "u", "conversation_id": "nope", "text": "x"}))
        .await;
    assert_eq!(w.next_where(|v| v["id"] == "u").await["code"], "not_found");
    // A non-member.
    let mut wc = s.ws(&c).await;
    wc.send(json!({"type": "send", "id": "nm", "conversation_id": conv, "text": "let me in"}))
        .await;
    assert_eq!(
        wc.next_where(|v| v["id"] == "nm").await["code"],
        "forbidden"
    );
    wc.send(json!({"type": "history", "id": "nh", "conversation_id": conv}))
        .await;
    assert_eq!(
        wc.next_where(|v| v["id"] == "nh").await["code"],
        "forbidden"
    );
    // Still open and working.
    w.send_msg(&conv, "ok", "fine").await;

    // A frame over 64 KiB closes with 1009.
    w.ws_send_text(&"z".repeat(70 * 1024)).await;
    assert_eq!(w.closed().await, Some(1009));
    let stored = s.all_messages(&a, &conv).await;
    assert_eq!(seqs(&stored), vec![1]);
}

impl Client {
    async fn ws_send_text(&mut self, t: &str) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                t.to_string().into(),
            ))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_is_rate_limited_then_closed_with_4429() {
    let s = TestServer::builder()
        .config("[limits]\nrate_per_sec = 5\nrate_burst = 5\nrate_strikes = 20")
        .start();
    let a = s.user("alice").await;
    let mut w = s.ws(&a).await;
    for i in 0..40 {
        w.send(json!({"type": "typing", "conversation_id": format!("c{i}")}))
            .await;
    }
    let limited = w.next_where(|v| v["code"] == "rate_limited").await;
    assert_eq!(limited["type"], "error");
    assert_eq!(w.closed().await, Some(4429));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_by_frame_deadline_and_bad_tokens() {
    let s = TestServer::builder()
        .config("[auth]\nauth_timeout_ms = 400")
        .start();
    let a = s.user("alice").await;
    // By first frame.
    let mut ws = Client::raw(&s.addr, None).await;
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "auth", "token": a.token}).to_string().into(),
    ))
    .await
    .unwrap();
    let ready = next_json(&mut ws, WAIT).await.unwrap();
    assert_eq!(
        (ready["type"].as_str(), ready["device_id"].as_str()),
        (Some("ready"), Some(a.device_id.as_str()))
    );
    assert!(ready["heartbeat_ms"].as_u64().unwrap() > 0);
    assert!(ready["session_id"].as_str().is_some());
    // Still open after the deadline once authenticated.
    // (This waits for a deadline to pass, the 400 ms configured above, not for an event.)
    tokio::time::sleep(Duration::from_millis(600)).await;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "sync", "id": "s"}).to_string().into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws, WAIT).await.unwrap()["type"], "synced");

    // No auth frame in time.
    let mut ws = Client::raw(&s.addr, None).await;
    assert_eq!(close_code(&mut ws, WAIT).await, Some(4408));
    // Bad token by header and by frame.
    let mut ws = Client::raw(&s.addr, Some("garbage")).await;
    assert_eq!(close_code(&mut ws, WAIT).await, Some(4401));
    let mut ws = Client::raw(&s.addr, None).await;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "auth", "token": "garbage"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws, WAIT).await, Some(4401));
    // Anything but auth first.
    let mut ws = Client::raw(&s.addr, None).await;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        json!({"type": "sync", "id": "1"}).to_string().into(),
    ))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws, WAIT).await, Some(4401));
    // A token signed with another secret.
    let forged = {
        let parts: Vec<&str> = a.token.split('.').collect();
        format!("{}.{}.{}", parts[0], parts[1], "AAAA")
    };
    let mut ws = Client::raw(&s.addr, Some(&forged)).await;
    assert_eq!(close_code(&mut ws, WAIT).await, Some(4401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_is_dropped_by_heartbeat() {
    let s = TestServer::builder()
        .config("[gateway]\nheartbeat_ms = 100\nheartbeat_timeout_ms = 400")
        .start();
    let a = s.user("alice").await;
    let mut live = s.ws(&a).await;
    let mut silent = s.ws(&s.login("alice").await).await;
    // `live` keeps reading (tungstenite answers pings while it reads); `silent` does not.
    let frames = live
        .collect_for(Duration::from_millis(1200), |_| true)
        .await;
    assert!(frames.is_empty());
    // The silent one was dropped: reading now finds the socket closed.
    let mut ended = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        use futures_util::StreamExt;
        match tokio::time::timeout(Duration::from_secs(1), silent.ws.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Ping(_)))) => continue,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => {
                ended = true;
                break;
            }
            Err(_) => break,
        }
    }
    assert!(ended, "silent peer not dropped");
    // The reading one is still served.
    live.send(json!({"type": "sync", "id": "still"})).await;
    assert_eq!(live.next_type("synced").await["id"], "still");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_and_loses_nothing() {
    let s = TestServer::builder()
        .config("[limits]\noutbound_queue = 128\nslow_consumer_grace_ms = 300\nrate_per_sec = 100000\nrate_burst = 100000\nuser_rate_per_sec = 100000\nuser_rate_burst = 100000")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut wa = s.ws(&a).await;
    // Bob connects with a tiny receive buffer and stops reading.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(s.addr.parse().unwrap()).await.unwrap();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/v1/ws", s.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", b.token).parse().unwrap(),
    );
    let (mut slow, _) =
        tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let text = "w".repeat(15_000);
    // ~30 MB: far more than the loopback socket buffers absorb, so Bob really falls behind.
    let n = 2000u64;
    // Alice keeps reading her acks while she sends (at most 64 outstanding): with an outbound
    // queue of 128 she would otherwise be a slow consumer herself on a busy machine.
    let (mut sent, mut acked) = (0u64, 0u64);
    while acked < n {
        while sent < n && sent - acked < 64 {
            wa.send(json!({"type": "send", "id": format!("f{sent}"), "conversation_id": conv, "text": text}))
                .await;
            sent += 1;
        }
        let v = wa
            .next_where(|v| v["type"] == "ack" || v["type"] == "error")
            .await;
        assert_eq!(v["type"], "ack", "{v}");
        acked += 1;
    }
    // Bob's frames may still be on their way (over the bus, in a cluster on a busy machine):
    // were he to read before his node judged him, he would catch up and never be slow.
    let nodes = s.node_count();
    let judged = eventually(Duration::from_secs(60), || async {
        let mut closed = 0;
        for _ in 0..nodes {
            // Round-robin: one request per node.
            let (_, text, _) = s.http_raw("GET", "/metrics", None, None, vec![]).await;
            closed += metric(
                &String::from_utf8_lossy(&text),
                "parley_slow_consumers_total",
            );
        }
        closed >= 1
    })
    .await;
    assert!(judged, "Bob's node never closed him as a slow consumer");
    // Now read: whatever was buffered, then the 4429 close.
    let code = close_code(&mut slow, Duration::from_secs(20)).await;
    assert_eq!(code, Some(4429));
    // Reconnect and sync: everything is there, once.
    let mut wb = s.ws(&b).await;
    let got = wb.sync_all(200).await;
    assert_eq!(seqs(&got), (1..=n).collect::<Vec<_>>());
}

/// Regression: a read permit held by a session's spawned future while the session waited
/// (ctx.wait) on another read deadlocked every read once all permits were taken that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_connecting_and_syncing_at_once_do_not_stall_reads() {
    let s = TestServer::builder()
        .config("[storage]\nreaders = 1")
        .start();
    let hub = s.user("hub").await;
    let mut devs = Vec::new();
    for i in 0..12 {
        let d = s.user(&format!("p{i}")).await;
        s.direct(&hub, &d).await;
        devs.push(d);
    }
    for _round in 0..3 {
        let mut tasks = Vec::new();
        for d in devs.clone() {
            let addr = s.addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = Client::connect(&addr, Some(&d.token)).await;
                c.sync_all(10).await;
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("a session stalled")
                .unwrap();
        }
    }
    let (st, _) = s
        .http(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "hub", "password": "password123"})),
        )
        .await;
    assert_eq!(st, 200, "reads still served");
}

/// A frame or a message over `max_frame_bytes` closes with 1009; the node goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_limit_closes_with_1009() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let s = TestServer::builder()
        .config("[limits]\nmax_frame_bytes = 4096")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut w = s.ws(&a).await;
    let big = format!(
        r#"{{"type":"typing","conversation_id":"{}"}}"#,
        "x".repeat(8192)
    );
    w.ws.send(Message::Text(big.into())).await.unwrap();
    assert_eq!(close_code(&mut w.ws, WAIT).await, Some(1009));
    // The node goes on serving, a frame just under the limit too.
    let mut w = s.ws(&a).await;
    let ack = w.send_msg(&conv, "after-1009", &"y".repeat(3000)).await;
    assert_eq!(ack["seq"], 1);
    // A message in fragments (RFC 6455 §5.4) is one frame to the contract.
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let send = json!({"type": "send", "id": "in-parts", "conversation_id": conv, "text": "hi"});
    let send = send.to_string().into_bytes();
    let (head, tail) = send.split_at(10);
    let first = Frame::message(head.to_vec(), OpCode::Data(Data::Text), false);
    let rest = Frame::message(tail.to_vec(), OpCode::Data(Data::Continue), true);
    w.ws.send(Message::Frame(first)).await.unwrap();
    w.ws.send(Message::Frame(rest)).await.unwrap();
    let ack = w.next_where(|v| v["id"] == "in-parts").await;
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_u64()),
        (Some("ack"), Some(2))
    );
    // Fragments that add up to more than the limit close with 1009 too.
    let first = Frame::message(vec![b'x'; 3000], OpCode::Data(Data::Text), false);
    let rest = Frame::message(vec![b'x'; 3000], OpCode::Data(Data::Continue), true);
    w.ws.send(Message::Frame(first)).await.unwrap();
    w.ws.send(Message::Frame(rest)).await.unwrap();
    assert_eq!(close_code(&mut w.ws, WAIT).await, Some(1009));
}

/// Upgrades the router never sees: a bad handshake is 400, another path 404, and a plain GET
/// of the WebSocket's path 400, each with the contract's JSON error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_refusals_have_the_error_shape() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::builder().start();
    // What the server answers within a second (a refusal also closes the connection).
    let raw = |head: String| {
        let addr = s.addr.clone();
        async move {
            let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
            c.write_all(head.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let wait = Duration::from_secs(1);
            let _ = tokio::time::timeout(wait, c.read_to_end(&mut out)).await;
            String::from_utf8_lossy(&out).into_owned()
        }
    };
    let upgrade = |path: &str, key: bool| {
        let key = if key {
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        } else {
            ""
        };
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\n{key}\r\n"
        )
    };
    let no_key = raw(upgrade("/v1/ws", false)).await;
    assert!(no_key.starts_with("HTTP/1.1 400"), "{no_key}");
    assert!(no_key.contains(r#""code":"bad_request""#), "{no_key}");
    let elsewhere = raw(upgrade("/v1/users", true)).await;
    assert!(elsewhere.starts_with("HTTP/1.1 404"), "{elsewhere}");
    assert!(elsewhere.contains(r#""code":"not_found""#), "{elsewhere}");
    let ok = raw(upgrade("/v1/ws", true)).await;
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    // The accept key of RFC 6455's own example.
    assert!(ok.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{ok}");
    let (st, body) = s.http("GET", "/v1/ws", None, None).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
}
