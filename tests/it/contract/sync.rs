//! What a device is owed: sync pages, server-driven gap repair, history and HTTP paging.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

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
    s.wait_delivered(&b, &conv, 7).await;
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
