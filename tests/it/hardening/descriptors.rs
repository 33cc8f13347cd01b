//! Descriptor exhaustion: a node offered more connections than its open-file limit allows
//! refuses the excess with 503 and the JSON error shape, keeps serving and committing for the
//! sessions it has, counts the refusals, and takes new connections once load drops.
//! (`load-tests/fd-limit` does the same at 25,000 connections against a 20,000 limit.)

use crate::common::*;
use futures_util::future::join_all;
use serde_json::Value;
use tokio_tungstenite::tungstenite;

/// Opens a WebSocket with `token`; `Err(status, body)` if the upgrade was refused.
async fn open(addr: &str, token: &str) -> Result<Client, (u16, Value)> {
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/v1/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, _)) => {
            let ready = next_json(&mut ws, WAIT).await.expect("ready");
            Ok(Client { ws, ready })
        }
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            Err((
                resp.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ))
        }
        Err(e) => panic!("connect: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_connections_than_descriptors_are_refused_cleanly() {
    // 512 descriptors: 128 + 10% reserved for the node's own files leaves 333 connections,
    // 317 of them WebSocket sessions.
    let s = TestServer::builder().nodes(1).nofile(512).start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut sender = s.ws(&a).await;
    let mut receiver = s.ws(&b).await;
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..8 {
        let batch = join_all((0..50).map(|_| open(&s.addr, &a.token))).await;
        for r in batch {
            match r {
                Ok(c) => held.push(c),
                Err(e) => refused.push(e),
            }
        }
    }
    assert!(
        !refused.is_empty(),
        "400 offered, all {} accepted",
        held.len()
    );
    assert!(held.len() >= 250, "only {} accepted", held.len());
    for (st, body) in &refused {
        assert_eq!(
            (*st, body["error"]["code"].as_str()),
            (503, Some("unavailable")),
            "{body}"
        );
    }
    // The sessions it has are served, and it keeps committing.
    let ack = sender.send_msg(&conv, "still-works", "hi").await;
    assert_eq!(ack["seq"], 1);
    assert_eq!(receiver.next_type("message").await["text"], "hi");
    let (st, _) = s.http("GET", "/readyz", None, None).await;
    assert_eq!(st, 200);
    let (_, body, _) = s.http_raw("GET", "/metrics", None, None, vec![]).await;
    let text = String::from_utf8_lossy(&body);
    assert!(
        metric(&text, "parley_connections_refused_total") >= refused.len() as u64,
        "{text}"
    );
    // Load drops: new connections are taken again.
    held.truncate(held.len() - 50);
    let again = eventually(std::time::Duration::from_secs(10), || async {
        open(&s.addr, &a.token).await.is_ok()
    })
    .await;
    assert!(again, "no connection accepted after load dropped");
}
