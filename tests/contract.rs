//! The client contract (docs/protocol.md), end to end: a real server process, real sockets.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().map(|f| f["seq"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sessions_and_http_errors() {
    let s = TestServer::start();
    let (st, v) = s
        .http(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": "alice", "password": "password123", "display_name": "Alice"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["username"], "alice");
    let uid = v["user_id"].as_str().unwrap().to_string();

    let (st, v) = s
        .http(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": "alice", "password": "password123"})),
        )
        .await;
    assert_eq!(st, 409);
    assert_eq!(v["error"]["code"], "conflict");

    let (st, v) = s
        .http(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": "bob", "password": "short"})),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["code"], "bad_request");

    let (st, v) = s
        .http("POST", "/v1/users", None, Some(json!({"username": 5})))
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    let (st, v) = s
        .http(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "alice", "password": "wrong-password"})),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (st, _) = s
        .http(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "nobody", "password": "password123"})),
        )
        .await;
    assert_eq!(st, 401);

    let a = s.login("alice").await;
    assert_eq!(a.user_id, uid);
    let (st, v) = s.http("GET", "/v1/users/me", Some(&a.token), None).await;
    assert_eq!(st, 200);
    assert_eq!(v["display_name"], "Alice");

    let (st, v) = s
        .http("GET", "/v1/users?username=alice", Some(&a.token), None)
        .await;
    assert_eq!((st, v["user_id"].as_str()), (200, Some(uid.as_str())));
    let (st, v) = s
        .http("GET", "/v1/users?username=zed", Some(&a.token), None)
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("not_found")));

    let (st, v) = s.http("GET", "/v1/users/me", None, None).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (st, _) = s
        .http("GET", "/v1/users/me", Some("not-a-token"), None)
        .await;
    assert_eq!(st, 401);
    let (st, v) = s.http("GET", "/v1/nope", None, None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("not_found")));

    let (st, v) = s.http("GET", "/healthz", None, None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("ok")));
    let (st, _) = s.http("GET", "/readyz", None, None).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_direct_once_groups_and_access() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;

    let (st, v) = s
        .http(
            "POST",
            "/v1/conversations",
            Some(&a.token),
            Some(json!({"kind": "direct", "members": [b.user_id]})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let d = v["conversation_id"].as_str().unwrap().to_string();
    // Again, from the other side: the same conversation, 200.
    let (st, v) = s
        .http(
            "POST",
            "/v1/conversations",
            Some(&b.token),
            Some(json!({"kind": "direct", "members": [a.user_id]})),
        )
        .await;
    assert_eq!((st, v["conversation_id"].as_str()), (200, Some(d.as_str())));

    let (st, _) = s
        .http(
            "POST",
            "/v1/conversations",
            Some(&a.token),
            Some(json!({"kind": "direct", "members": [b.user_id, c.user_id]})),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .http(
            "POST",
            "/v1/conversations",
            Some(&a.token),
            Some(json!({"kind": "direct", "members": ["nobody"]})),
        )
        .await;
    assert_eq!(st, 404);

    let (st, v) = s
        .http(
            "POST",
            "/v1/conversations",
            Some(&a.token),
            Some(json!({"kind": "group", "title": "team", "members": [b.user_id]})),
        )
        .await;
    assert_eq!(st, 201);
    let g = v["conversation_id"].as_str().unwrap().to_string();
    assert_eq!(v["admins"], json!([a.user_id]));
    assert_eq!(v["members"].as_array().unwrap().len(), 2);

    let (st, v) = s
        .http(
            "GET",
            &format!("/v1/conversations/{g}"),
            Some(&c.token),
            None,
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let (st, _) = s
        .http(
            "GET",
            &format!("/v1/conversations/{g}/messages"),
            Some(&c.token),
            None,
        )
        .await;
    assert_eq!(st, 403);
    let (st, _) = s
        .http("GET", "/v1/conversations/missing", Some(&c.token), None)
        .await;
    assert_eq!(st, 404);

    let (st, v) = s
        .http("GET", "/v1/conversations", Some(&b.token), None)
        .await;
    assert_eq!(st, 200);
    let ids: HashSet<&str> = v["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, HashSet::from([d.as_str(), g.as_str()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_member_limit_is_enforced() {
    let s = TestServer::builder()
        .config("[limits]\nmax_group_members = 3")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let d = s.user("dave").await;
    let (st, v) = s
        .http(
            "POST",
            "/v1/conversations",
            Some(&a.token),
            Some(json!({"kind": "group", "title": "t", "members": [b.user_id, c.user_id, d.user_id]})),
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (413, Some("too_large")));
    let g = s.group(&a, &[&b, &c]).await;
    let (st, v) = s
        .http(
            "POST",
            &format!("/v1/conversations/{g}/members"),
            Some(&a.token),
            Some(json!({"user_ids": [d.user_id]})),
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (413, Some("too_large")));
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_device_syncs_in_pages_exactly_once() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut wa = s.ws(&a).await;
    for i in 1..=7 {
        wa.send_msg(&conv, &format!("m{i}"), &format!("text {i}"))
            .await;
    }
    let mut wb = s.ws(&b).await;
    let c = &wb.ready["conversations"][0];
    assert_eq!(
        (c["last_seq"].as_u64(), c["delivered_seq"].as_u64()),
        (Some(7), Some(0))
    );
    let got = wb.sync_all(3).await;
    assert_eq!(seqs(&got), (1..=7).collect::<Vec<_>>());
    assert_eq!(got[6]["text"], "text 7");
    // Nothing more is owed in this session.
    assert!(wb.sync_all(3).await.is_empty());
    // Reported as received: a new session is owed nothing.
    wb.send(json!({"type": "received", "conversation_id": conv, "seq": 7}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(wb);
    let mut wb = s.ws(&b).await;
    assert_eq!(wb.ready["conversations"][0]["delivered_seq"], 7);
    assert!(wb.sync_all(100).await.is_empty());
    // Not reported: a new session is owed it again (with client_id for the sender's devices).
    let mut a2 = s.ws(&s.login("alice").await).await;
    assert!(
        a2.sync_all(100).await.is_empty(),
        "a new device starts at its creation"
    );
    wa.send_msg(&conv, "m8", "eight").await;
    let live = a2.next_type("message").await;
    assert_eq!(
        (live["seq"].as_u64(), live["client_id"].as_str()),
        (Some(8), Some("m8"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_gap_is_repaired_by_the_server_in_order() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut wa = s.ws(&a).await;
    for i in 1..=5 {
        wa.send_msg(&conv, &format!("m{i}"), "x").await;
    }
    // Bob connects behind by 5 and does not sync; a live message arrives.
    let mut wb = s.ws(&b).await;
    wa.send_msg(&conv, "m6", "x").await;
    let got = wb
        .collect_for(Duration::from_millis(800), |v| v["type"] == "message")
        .await;
    assert_eq!(seqs(&got), vec![1, 2, 3, 4, 5, 6], "in order, each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_http_paging() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut wa = s.ws(&a).await;
    for i in 1..=12 {
        wa.send_msg(&conv, &format!("m{i}"), &format!("{i}")).await;
    }
    wa.send(json!({"type": "history", "id": "h1", "conversation_id": conv, "limit": 5}))
        .await;
    let h = wa.next_type("history").await;
    assert_eq!(h["id"], "h1");
    assert_eq!(
        seqs(h["messages"].as_array().unwrap()),
        vec![8, 9, 10, 11, 12]
    );
    assert_eq!(h["messages"][0]["client_id"], "m8");
    wa.send(json!({"type": "history", "id": "h2", "conversation_id": conv, "before_seq": 8, "limit": 5})).await;
    let h = wa.next_type("history").await;
    assert_eq!(seqs(h["messages"].as_array().unwrap()), vec![3, 4, 5, 6, 7]);

    let (st, v) = s
        .http(
            "GET",
            &format!("/v1/conversations/{conv}/messages?before_seq=4"),
            Some(&b.token),
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(seqs(v["messages"].as_array().unwrap()), vec![1, 2, 3]);
    assert!(v["messages"][0].get("client_id").is_none());
    let (_, v) = s
        .http(
            "GET",
            &format!("/v1/conversations/{conv}/messages?after_seq=9&limit=2"),
            Some(&b.token),
            None,
        )
        .await;
    assert_eq!(seqs(v["messages"].as_array().unwrap()), vec![10, 11]);
    let (_, v) = s
        .http(
            "GET",
            &format!("/v1/conversations/{conv}/messages?limit=1000"),
            Some(&b.token),
            None,
        )
        .await;
    assert_eq!(
        v["messages"].as_array().unwrap().len(),
        12,
        "limit is capped, not refused"
    );
    let (st, _) = s
        .http(
            "GET",
            &format!("/v1/conversations/{conv}/messages?limit=abc"),
            Some(&b.token),
            None,
        )
        .await;
    assert_eq!(st, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retraction_purges_and_checks_permissions() {
    let s = TestServer::builder()
        .config("[limits]\nretract_window_secs = 2")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let g = s.group(&a, &[&b, &c]).await;
    let mut wa = s.ws(&a).await;
    let mut wb = s.ws(&b).await;
    let mut wc = s.ws(&c).await;
    wb.send_msg(&g, "b1", "secret one").await;
    wb.send_msg(&g, "b2", "secret two").await;
    wc.send_msg(&g, "c1", "carol's").await;

    // Carol may not retract Bob's message.
    wc.send(
        json!({"type": "delete", "id": "d0", "conversation_id": g, "seq": 1, "scope": "everyone"}),
    )
    .await;
    let e = wc.next_where(|v| v["id"] == "d0").await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );

    // Bob retracts his own.
    wb.send(
        json!({"type": "delete", "id": "d1", "conversation_id": g, "seq": 1, "scope": "everyone"}),
    )
    .await;
    let ack = wb.next_where(|v| v["id"] == "d1").await;
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_u64()),
        (Some("ack"), Some(1))
    );
    for w in [&mut wa, &mut wc] {
        let d = w.next_type("deleted").await;
        assert_eq!(
            d,
            json!({"type": "deleted", "conversation_id": g, "seq": 1, "scope": "everyone", "by": b.user_id})
        );
    }
    // The admin retracts Bob's second one.
    wa.send(
        json!({"type": "delete", "id": "d2", "conversation_id": g, "seq": 2, "scope": "everyone"}),
    )
    .await;
    assert_eq!(wa.next_where(|v| v["id"] == "d2").await["type"], "ack");

    // Purged in storage, not hidden: the database file holds no trace of the text.
    let stored = s.all_messages(&c, &g).await;
    assert_eq!(seqs(&stored), vec![1, 2, 3]);
    assert_eq!(stored[0]["deleted"], true);
    assert!(stored[0]["text"].is_null() && stored[0]["meta"].is_null());
    let rows = stored_texts(&s.dir.join("parley.db"));
    assert!(
        !rows.iter().any(|t| t.contains("secret")),
        "purged text still stored: {rows:?}"
    );
    assert!(rows.iter().any(|t| t.contains("carol's")));

    // Scope me: hidden for Carol's devices only.
    let c2 = s.login("carol").await;
    let mut wc2 = s.ws(&c2).await;
    wc.send(json!({"type": "delete", "id": "d3", "conversation_id": g, "seq": 3, "scope": "me"}))
        .await;
    assert_eq!(wc.next_where(|v| v["id"] == "d3").await["type"], "ack");
    let d = wc2.next_type("deleted").await;
    assert_eq!(
        (d["scope"].as_str(), d["seq"].as_u64()),
        (Some("me"), Some(3))
    );
    let (_, v) = s
        .http(
            "GET",
            &format!("/v1/conversations/{g}/messages"),
            Some(&c.token),
            None,
        )
        .await;
    assert_eq!(seqs(v["messages"].as_array().unwrap()), vec![1, 2]);
    let (_, v) = s
        .http(
            "GET",
            &format!("/v1/conversations/{g}/messages"),
            Some(&a.token),
            None,
        )
        .await;
    assert_eq!(seqs(v["messages"].as_array().unwrap()), vec![1, 2, 3]);

    // The window closes for the sender.
    wb.send_msg(&g, "b3", "late").await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    wb.send(
        json!({"type": "delete", "id": "d4", "conversation_id": g, "seq": 4, "scope": "everyone"}),
    )
    .await;
    let e = wb.next_where(|v| v["id"] == "d4").await;
    assert_eq!(e["code"], "forbidden");
    wb.send(
        json!({"type": "delete", "id": "d5", "conversation_id": g, "seq": 99, "scope": "everyone"}),
    )
    .await;
    assert_eq!(
        wb.next_where(|v| v["id"] == "d5").await["code"],
        "not_found"
    );
}

/// Every message's text and meta as stored, read straight from the database file.
fn stored_texts(db: &std::path::Path) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut st = c
        .prepare("SELECT COALESCE(text, '') || COALESCE(meta, '') FROM messages")
        .unwrap();
    let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_device_gets_retractions_in_sync() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut wa = s.ws(&a).await;
    wa.send_msg(&conv, "1", "one").await;
    wa.send_msg(&conv, "2", "two").await;
    {
        let mut wb = s.ws(&b).await;
        assert_eq!(wb.sync_all(10).await.len(), 2);
        wb.send(json!({"type": "received", "conversation_id": conv, "seq": 2}))
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // While Bob is away, Alice retracts message 1 (which Bob holds) and sends 3, then
    // retracts 3 (which Bob never saw).
    wa.send(json!({"type": "delete", "id": "x1", "conversation_id": conv, "seq": 1, "scope": "everyone"})).await;
    wa.next_where(|v| v["id"] == "x1").await;
    wa.send_msg(&conv, "3", "three").await;
    wa.send(json!({"type": "delete", "id": "x3", "conversation_id": conv, "seq": 3, "scope": "everyone"})).await;
    wa.next_where(|v| v["id"] == "x3").await;
    let mut wb = s.ws(&b).await;
    let got = wb.sync_all(10).await;
    let kinds: Vec<(String, u64)> = got
        .iter()
        .map(|v| {
            (
                v["type"].as_str().unwrap().to_string(),
                v["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(kinds.contains(&("deleted".into(), 1)), "{kinds:?}");
    assert!(kinds.contains(&("deleted".into(), 3)), "{kinds:?}");
    assert!(
        !got.iter().any(|v| v["type"] == "message"),
        "retracted content must not be sent: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_presence_and_membership_events() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let g = s.group(&a, &[&b]).await;
    let mut wa = s.ws(&a).await;
    let mut wb = s.ws(&b).await;
    let p = wa
        .next_where(|v| v["type"] == "presence" && v["user_id"] == b.user_id.as_str())
        .await;
    assert_eq!(p["online"], true);

    wb.send(json!({"type": "typing", "conversation_id": g}))
        .await;
    let t = wa.next_type("typing").await;
    assert_eq!(
        t,
        json!({"type": "typing", "conversation_id": g, "user_id": b.user_id})
    );
    // Rate limited: a second typing frame at once is not relayed.
    wb.send(json!({"type": "typing", "conversation_id": g}))
        .await;
    assert!(wa
        .collect_for(Duration::from_millis(300), |v| v["type"] == "typing")
        .await
        .is_empty());

    // Messages before Carol joins are not hers.
    wa.send_msg(&g, "before", "before carol").await;
    let mut wc = s.ws(&c).await;
    let (st, v) = s
        .http(
            "POST",
            &format!("/v1/conversations/{g}/members"),
            Some(&b.token),
            Some(json!({"user_ids": [c.user_id]})),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "only admins add"
    );
    let (st, _) = s
        .http(
            "POST",
            &format!("/v1/conversations/{g}/members"),
            Some(&a.token),
            Some(json!({"user_ids": [c.user_id]})),
        )
        .await;
    assert_eq!(st, 200);
    let ev = wc.next_type("conversation").await;
    assert_eq!(ev["event"], "member_added");
    let ev = wb.next_type("conversation").await;
    assert_eq!(ev["event"], "member_added");
    wa.send_msg(&g, "after", "after carol").await;
    let m = wc.next_type("message").await;
    assert_eq!(
        (m["seq"].as_u64(), m["text"].as_str()),
        (Some(2), Some("after carol"))
    );
    assert!(
        wc.sync_all(10).await.is_empty(),
        "nothing from before the join"
    );
    let (_, v) = s
        .http(
            "GET",
            &format!("/v1/conversations/{g}/messages"),
            Some(&c.token),
            None,
        )
        .await;
    assert_eq!(seqs(v["messages"].as_array().unwrap()), vec![2]);

    // Bob leaves; he is told, and can no longer send.
    let (st, _) = s
        .http(
            "DELETE",
            &format!("/v1/conversations/{g}/members/{}", b.user_id),
            Some(&b.token),
            None,
        )
        .await;
    assert_eq!(st, 204);
    let ev = wb.next_type("conversation").await;
    assert_eq!(ev["event"], "member_removed");
    wb.send(json!({"type": "send", "id": "z", "conversation_id": g, "text": "still here?"}))
        .await;
    let e = wb.next_where(|v| v["id"] == "z").await;
    assert_eq!(e["code"], "forbidden");

    // Carol (who still shares the group with Alice) goes offline.
    drop(wc);
    let p = wa
        .next_where(|v| {
            v["type"] == "presence" && v["user_id"] == c.user_id.as_str() && v["online"] == false
        })
        .await;
    assert!(p["last_seen"].as_i64().unwrap() > 0);
}

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
        .config("[limits]\noutbound_queue = 128\nslow_consumer_grace_ms = 300\nrate_per_sec = 100000\nrate_burst = 100000")
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
    // Now read: whatever was buffered, then the 4429 close.
    let code = close_code(&mut slow, Duration::from_secs(20)).await;
    assert_eq!(code, Some(4429));
    let (_, m) = s.http("GET", "/metrics", None, None).await;
    let _ = m;
    // Reconnect and sync: everything is there, once.
    let mut wb = s.ws(&b).await;
    let got = wb.sync_all(200).await;
    assert_eq!(seqs(&got), (1..=n).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_upload_range_etag_and_access_rules() {
    let s = TestServer::builder()
        .config("[limits]\nmax_file_bytes = 100000")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let conv = s.direct(&a, &b).await;
    let mut png = vec![
        0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
    ];
    png.extend((0..5000u32).map(|i| (i % 251) as u8));
    let (st, body, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            Some(&a.token),
            Some(("image/png".into(), png.clone())),
            vec![],
        )
        .await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
    let info: Value = serde_json::from_slice(&body).unwrap();
    let fid = info["file_id"].as_str().unwrap().to_string();
    assert_eq!(info["size"], png.len() as u64);
    assert_eq!(info["content_type"], "image/png");
    use sha2::Digest;
    assert_eq!(info["sha256"], hex::encode(sha2::Sha256::digest(&png)));

    // Declared type must match the bytes.
    let (st, body, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            Some(&a.token),
            Some(("image/png".into(), b"just text".to_vec())),
            vec![],
        )
        .await;
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&body));
    let (st, _, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            Some(&a.token),
            Some(("text/plain".into(), png.clone())),
            vec![],
        )
        .await;
    assert_eq!(st, 400);
    let (st, body, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            Some(&a.token),
            Some(("application/octet-stream".into(), vec![7u8; 100_001])),
            vec![],
        )
        .await;
    assert_eq!(st, 413);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"],
        "too_large"
    );
    let (st, _, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            None,
            Some(("text/plain".into(), b"x".to_vec())),
            vec![],
        )
        .await;
    assert_eq!(st, 401);

    // The uploader reads it, in full and by range; ETag revalidation works.
    let (st, bytes, hs) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&a.token),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(bytes, png);
    let etag = hs
        .iter()
        .find(|(k, _)| k == "etag")
        .map(|(_, v)| v.clone())
        .expect("etag");
    let ctype = hs
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(ctype, "image/png");
    let (st, bytes, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&a.token),
            None,
            vec![("Range".into(), "bytes=10-19".into())],
        )
        .await;
    assert_eq!(st, 206);
    assert_eq!(bytes, png[10..20].to_vec());
    let (st, _, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&a.token),
            None,
            vec![("If-None-Match".into(), etag)],
        )
        .await;
    assert_eq!(st, 304);

    // Bob may not read it before it is sent to him, nor attach it.
    let (st, _, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&b.token),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, 403);
    let mut wb = s.ws(&b).await;
    wb.send(json!({"type": "send", "id": "steal", "conversation_id": conv, "attachments": [{"file_id": fid}]})).await;
    assert_eq!(
        wb.next_where(|v| v["id"] == "steal").await["code"],
        "forbidden"
    );

    let mut wa = s.ws(&a).await;
    wa.send(json!({"type": "send", "id": "pic", "conversation_id": conv, "text": "look", "attachments": [{"file_id": fid}]}))
        .await;
    assert_eq!(wa.next_where(|v| v["id"] == "pic").await["type"], "ack");
    let m = wb.next_type("message").await;
    assert_eq!(m["attachments"][0]["file_id"], fid.as_str());
    assert_eq!(m["attachments"][0]["content_type"], "image/png");
    let (st, bytes, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&b.token),
            None,
            vec![],
        )
        .await;
    assert_eq!((st, bytes.len()), (200, png.len()));
    let (st, _, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&c.token),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, 403);
    let (st, _, _) = s
        .http_raw("GET", "/v1/files/nope", Some(&c.token), None, vec![])
        .await;
    assert_eq!(st, 404);

    // Retracting the message purges the attachment: Bob loses access, the blob is gone.
    wa.send(json!({"type": "delete", "id": "del", "conversation_id": conv, "seq": 1, "scope": "everyone"})).await;
    assert_eq!(wa.next_where(|v| v["id"] == "del").await["type"], "ack");
    let (st, _, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{fid}"),
            Some(&b.token),
            None,
            vec![],
        )
        .await;
    assert!(st == 403 || st == 404, "{st}");
    let sha = info["sha256"].as_str().unwrap();
    let blob = s
        .dir
        .join("files")
        .join(&sha[0..2])
        .join(&sha[2..4])
        .join(sha);
    assert!(!blob.exists(), "blob not purged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_targets_are_checked_and_per_device() {
    let s = TestServer::start();
    let a1 = s.user("alice").await;
    let a2 = s.login("alice").await;
    let path = format!("/v1/devices/{}/push", a1.device_id);
    let (st, _) = s
        .http(
            "PUT",
            &path,
            Some(&a1.token),
            Some(json!({"provider": "fcm", "token": "tok"})),
        )
        .await;
    assert_eq!(st, 204);
    let (st, v) = s
        .http(
            "PUT",
            &path,
            Some(&a2.token),
            Some(json!({"provider": "fcm", "token": "tok"})),
        )
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (403, Some("forbidden")));
    for bad in [
        json!({"provider": "fcm"}),
        json!({"provider": "apns", "token": ""}),
        json!({"provider": "webpush", "endpoint": "http://insecure"}),
        json!({"provider": "webhook"}),
        json!({"provider": "pigeon", "token": "x"}),
    ] {
        let (st, v) = s
            .http("PUT", &path, Some(&a1.token), Some(bad.clone()))
            .await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}"
        );
    }
    let (st, _) = s
        .http(
            "PUT",
            &path,
            Some(&a1.token),
            Some(json!({"provider": "webhook", "endpoint": "https://example.invalid/hook"})),
        )
        .await;
    assert_eq!(st, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exposed() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut w = s.ws(&a).await;
    w.send_msg(&conv, "1", "x").await;
    // In a cluster each node counts its own share: sum over the nodes.
    let mut texts = Vec::new();
    for i in 0..s.node_count() {
        let (st, body, _) = s
            .node(i)
            .http_raw("GET", "/metrics", None, None, vec![])
            .await;
        assert_eq!(st, 200);
        texts.push(String::from_utf8(body).unwrap());
    }
    let sum = |name: &str| -> f64 {
        texts
            .iter()
            .flat_map(|t| t.lines())
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .sum()
    };
    for (name, want) in [
        ("parley_connections", Some(1.0)),
        ("parley_acks_total", Some(1.0)),
        ("parley_ack_latency_seconds_count", Some(1.0)),
        ("parley_conversation_actors", Some(1.0)),
        ("parley_store_commit_seconds_count", None),
        ("parley_frames_in_total", None),
        ("parley_frames_out_total", None),
    ] {
        match want {
            Some(v) => assert_eq!(sum(name), v, "{name} in:\n{}", texts.join("\n")),
            None => assert!(sum(name) > 0.0, "{name} in:\n{}", texts.join("\n")),
        }
    }
    assert!(texts[0].contains("parley_store_batch_size_bucket"));
    if s.node_count() > 1 {
        assert_eq!(
            sum("parley_cluster_nodes"),
            (s.node_count() * s.node_count()) as f64
        );
        assert_eq!(sum("parley_bus_up"), s.node_count() as f64);
    }
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
    let mut stopped = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, body, _) = s.http_raw("GET", "/metrics", None, None, vec![]).await;
        if actors(&String::from_utf8_lossy(&body)) == Some(0) {
            stopped = true;
            break;
        }
    }
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
