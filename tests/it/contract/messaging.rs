//! Sending: acks, fan-out to every device with carbons, idempotent retries, gapless seq, receipts, and an idle actor rebuilt from storage.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_acks_and_fans_out_to_every_device_with_carbons() {
    let s = TestServer::start();
    let a1 = s.user("alice").await;
    let a2 = s.login("alice").await;
    let b1 = s.user("bob").await;
    let b2 = s.login("bob").await;
    let conv = s.direct(&a1, &b1).await;
    let mut wa1 = s.ws(&a1).await;
    let mut wa2 = s.ws(&a2).await;
    let mut wb1 = s.ws(&b1).await;
    let mut wb2 = s.ws(&b2).await;

    wa1.send(json!({"type": "send", "id": "c-1", "conversation_id": conv, "text": "hello", "meta": {"k": 1}}))
        .await;
    let ack = wa1.next_type("ack").await;
    assert_eq!(ack["id"], "c-1");
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["conversation_id"], conv.as_str());
    assert!(ack.get("duplicate").is_none());

    for w in [&mut wb1, &mut wb2] {
        let m = w.next_type("message").await;
        assert_eq!(m["seq"], 1);
        assert_eq!(m["text"], "hello");
        assert_eq!(m["meta"], json!({"k": 1}));
        assert_eq!(m["sender_id"], a1.user_id.as_str());
        assert_eq!(m["sender_device_id"], a1.device_id.as_str());
        assert_eq!(m["message_id"], ack["message_id"]);
        assert!(
            m.get("client_id").is_none(),
            "client_id only to the sender's devices: {m}"
        );
    }
    let carbon = wa2.next_type("message").await;
    assert_eq!(carbon["client_id"], "c-1");
    assert_eq!(carbon["seq"], 1);
    // The sending device gets the ack, not the message.
    let extra = wa1
        .collect_for(Duration::from_millis(300), |v| v["type"] == "message")
        .await;
    assert!(extra.is_empty(), "{extra:?}");

    // `to` sends into the direct conversation.
    wb1.send(json!({"type": "send", "id": "x", "to": a1.user_id, "text": "hi back"}))
        .await;
    let ack = wb1.next_type("ack").await;
    assert_eq!(
        (ack["conversation_id"].as_str(), ack["seq"].as_u64()),
        (Some(conv.as_str()), Some(2))
    );
    assert_eq!(wa1.next_type("message").await["seq"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_new_user_creates_direct_conversation() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let mut wa = s.ws(&a).await;
    let mut wb = s.ws(&b).await;
    wa.send(json!({"type": "send", "id": "1", "to": b.user_id, "text": "first"}))
        .await;
    let ack = wa.next_type("ack").await;
    let conv = ack["conversation_id"].as_str().unwrap().to_string();
    let ev = wb.next_type("conversation").await;
    assert_eq!(ev["event"], "created");
    assert_eq!(ev["conversation"]["conversation_id"], conv.as_str());
    let m = wb.next_type("message").await;
    assert_eq!(
        (m["seq"].as_u64(), m["text"].as_str()),
        (Some(1), Some("first"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_with_same_id_is_idempotent() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut w = s.ws(&a).await;
    let first = w.send_msg(&conv, "same", "once").await;
    let again = w.send_msg(&conv, "same", "once").await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["seq"], first["seq"]);
    assert_eq!(again["message_id"], first["message_id"]);
    assert_eq!(again["ts"], first["ts"]);
    // Across a reconnect, too.
    drop(w);
    let mut w = s.ws(&a).await;
    let third = w.send_msg(&conv, "same", "once").await;
    assert_eq!(
        (third["duplicate"].as_bool(), third["seq"].as_u64()),
        (Some(true), first["seq"].as_u64())
    );
    // Two copies in flight at once still store one message.
    w.send(json!({"type": "send", "id": "pair", "conversation_id": conv, "text": "x"}))
        .await;
    w.send(json!({"type": "send", "id": "pair", "conversation_id": conv, "text": "x"}))
        .await;
    let x = w.next_type("ack").await;
    let y = w.next_type("ack").await;
    assert_eq!(x["seq"], y["seq"]);
    let stored = s.all_messages(&a, &conv).await;
    assert_eq!(seqs(&stored), vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_is_gapless_under_concurrent_senders() {
    let s = TestServer::start();
    let mut devs = Vec::new();
    for i in 0..4 {
        devs.push(s.user(&format!("u{i}")).await);
    }
    let others: Vec<&Dev> = devs[1..].iter().collect();
    let g = s.group(&devs[0], &others).await;
    let mut tasks = Vec::new();
    for (i, d) in devs.iter().enumerate() {
        let mut w = s.ws(d).await;
        let g = g.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..50 {
                w.send(json!({"type": "send", "id": format!("{i}-{k}"), "conversation_id": g, "text": format!("{i}/{k}")}))
                    .await;
            }
            let mut acks = Vec::new();
            while acks.len() < 50 {
                let v = w.next_type("ack").await;
                acks.push(v["seq"].as_u64().unwrap());
            }
            acks
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(all, (1..=200).collect::<Vec<u64>>());
    let stored = s.all_messages(&devs[0], &g).await;
    assert_eq!(seqs(&stored), (1..=200).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_flow_to_senders_and_never_move_backwards() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b1 = s.user("bob").await;
    let b2 = s.login("bob").await;
    let conv = s.direct(&a, &b1).await;
    let mut wa = s.ws(&a).await;
    let mut wb1 = s.ws(&b1).await;
    let mut wb2 = s.ws(&b2).await;
    for i in 1..=3 {
        wa.send_msg(&conv, &format!("m{i}"), "hi").await;
    }
    wb1.send(json!({"type": "received", "conversation_id": conv, "seq": 2}))
        .await;
    let r = wa.next_type("receipt").await;
    assert_eq!(
        r,
        json!({"type": "receipt", "conversation_id": conv, "user_id": b1.user_id, "kind": "delivered", "seq": 2})
    );

    wb1.send(json!({"type": "read", "conversation_id": conv, "seq": 3}))
        .await;
    let r = wa
        .next_where(|v| v["type"] == "receipt" && v["kind"] == "read")
        .await;
    assert_eq!(r["seq"], 3);
    // The reader's other device hears of the read too.
    let r2 = wb2
        .next_where(|v| v["type"] == "receipt" && v["kind"] == "read")
        .await;
    assert_eq!(
        (r2["seq"].as_u64(), r2["user_id"].as_str()),
        (Some(3), Some(b1.user_id.as_str()))
    );

    // Older positions move nothing and send nothing.
    wb2.send(json!({"type": "read", "conversation_id": conv, "seq": 1}))
        .await;
    wb2.send(json!({"type": "received", "conversation_id": conv, "seq": 1}))
        .await;
    let late = wa
        .collect_for(Duration::from_millis(400), |v| v["type"] == "receipt")
        .await;
    assert!(late.is_empty(), "receipt moved backwards: {late:?}");

    let (_, v) = s
        .http("GET", "/v1/conversations", Some(&b1.token), None)
        .await;
    let c = &v["conversations"][0];
    assert_eq!(
        (
            c["read_seq"].as_u64(),
            c["unread"].as_u64(),
            c["last_seq"].as_u64()
        ),
        (Some(3), Some(0), Some(3))
    );
    let (_, v) = s
        .http("GET", "/v1/conversations", Some(&a.token), None)
        .await;
    assert_eq!(
        v["conversations"][0]["unread"], 0,
        "own messages are not unread"
    );

    wa.send_msg(&conv, "m4", "more").await;
    wa.send_msg(&conv, "m5", "more").await;
    let (_, v) = s
        .http("GET", "/v1/conversations", Some(&b2.token), None)
        .await;
    assert_eq!(v["conversations"][0]["unread"], 2);
}

/// An idle conversation actor stops and is rebuilt from storage: seq continues without a gap,
/// the idempotency of earlier sends still holds, and receipts keep their positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_conversation_actor_is_rebuilt_from_storage() {
    let s = TestServer::builder()
        .config("[actors]\nconversation_idle_secs = 1")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut wa = s.ws(&a).await;
    let mut wb = s.ws(&b).await;
    wa.send_msg(&conv, "1", "one").await;
    wa.send_msg(&conv, "2", "two").await;
    wb.send(json!({"type": "read", "conversation_id": conv, "seq": 2}))
        .await;
    wa.next_where(|v| v["type"] == "receipt" && v["kind"] == "read")
        .await;
    let actors = |text: &str| -> Option<i64> {
        text.lines()
            .find(|l| l.starts_with("parley_conversation_actors "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
    };
    let stopped = eventually(Duration::from_secs(30), || async {
        let (_, body, _) = s.http_raw("GET", "/metrics", None, None, vec![]).await;
        actors(&String::from_utf8_lossy(&body)) == Some(0)
    })
    .await;
    assert!(stopped, "the idle actor never stopped");
    let again = wa.send_msg(&conv, "2", "two").await;
    assert_eq!(
        (again["duplicate"].as_bool(), again["seq"].as_u64()),
        (Some(true), Some(2))
    );
    assert_eq!(wa.send_msg(&conv, "3", "three").await["seq"], 3);
    // Bob's read position survived: reading 2 again sends nothing, reading 3 does.
    wb.send(json!({"type": "read", "conversation_id": conv, "seq": 2}))
        .await;
    wb.send(json!({"type": "read", "conversation_id": conv, "seq": 3}))
        .await;
    let r = wa
        .next_where(|v| v["type"] == "receipt" && v["kind"] == "read")
        .await;
    assert_eq!(r["seq"], 3);
}
