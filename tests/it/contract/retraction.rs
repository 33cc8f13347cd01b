//! MessageEvent for everyone (purged from storage) and hiding for oneself, live and through sync.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

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

    // The window (2 s) closes for the sender: wait until the message is older than that.
    let sent = wb.send_msg(&g, "b3", "late").await["ts"].as_i64().unwrap();
    assert!(eventually(Duration::from_secs(5), || async { now_ms() > sent + 2_000 }).await);
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
        s.wait_delivered(&b, &conv, 2).await;
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

/// Hidden messages do not count against a page's limit: a page past them still holds
/// `limit` messages, so an empty page always means there is nothing further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_read_on_past_hidden_messages() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let g = s.group(&a, &[&b]).await;
    let mut wa = s.ws(&a).await;
    for i in 1..=6 {
        wa.send_msg(&g, &format!("m{i}"), &format!("text {i}"))
            .await;
    }
    let mut wb = s.ws(&b).await;
    for seq in 3..=6 {
        let id = format!("h{seq}");
        wb.send(
            json!({"type": "delete", "id": id, "conversation_id": g, "seq": seq, "scope": "me"}),
        )
        .await;
        assert_eq!(wb.next_where(|v| v["id"] == id).await["type"], "ack");
    }
    let page = |query: &'static str| {
        let (s, g, token) = (&s, g.clone(), b.token.clone());
        async move {
            let path = format!("/v1/conversations/{g}/messages?{query}");
            let (status, v) = s.http("GET", &path, Some(&token), None).await;
            assert_eq!(status, 200, "{v}");
            seqs(v["messages"].as_array().unwrap())
        }
    };
    assert_eq!(
        page("limit=2").await,
        vec![1, 2],
        "newest page reads past 3..=6"
    );
    assert_eq!(page("limit=2&after_seq=0").await, vec![1, 2]);
    assert_eq!(page("limit=2&after_seq=2").await, Vec::<u64>::new());
    wb.send(json!({"type": "history", "id": "hi", "conversation_id": g, "limit": 1}))
        .await;
    let h = wb.next_where(|v| v["id"] == "hi").await;
    assert_eq!(seqs(h["messages"].as_array().unwrap()), vec![2]);
}
