//! v1.1 fixes of v1's rough edges (issue 12, items 12-16), found by writing a client from
//! docs/protocol.md alone.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

/// A live message during paging does not flood the device: the client's `limit` stays the
/// bound of every burst, and the next page still has the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_message_during_sync_paging_respects_the_page_bound() {
    let s = TestServer::builder()
        .config("[limits]\nrate_per_sec = 100000\nrate_burst = 100000\nuser_rate_per_sec = 100000\nuser_rate_burst = 100000")
        .start();
    // Before the client's first `sync` the server may start a catch-up of its own (a live
    // copy that reaches bob's node after he connected, or a cluster bus resync: both are
    // allowed), which leaves nothing for the pages. Then the scenario is set up again.
    for attempt in 0..3 {
        let a = s.user(&format!("alice{attempt}")).await;
        let b = s.user(&format!("bob{attempt}")).await;
        let conv = s.direct(&a, &b).await;
        let mut wa = s.ws(&a).await;
        for i in 0..120 {
            wa.send_msg(&conv, &format!("m{i}"), "x").await;
        }
        // In a cluster the live copies cross the bus after their acks; one that reached bob's
        // node after page 1 would be the next seq and be pushed at once (as it may be).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut wb = s.ws(&b).await;
        let Some(first) = first_page(&mut wb, 20).await else {
            continue;
        };
        // A live message arrives while the client is between pages.
        wa.send_msg(&conv, "live", "now").await;
        let burst = wb
            .collect_for(Duration::from_millis(700), |v| v["type"] == "message")
            .await;
        assert!(
            burst.len() <= 1,
            "the server pushed {} frames between pages",
            burst.len()
        );
        // Paging continues where it stopped, in bounded pages, and ends with everything once.
        let rest = wb.sync_all(20).await;
        let mut all: Vec<u64> = first.clone();
        all.extend(seqs(&burst));
        all.extend(seqs(&rest));
        all.sort();
        all.dedup();
        assert_eq!(all, (1..=121).collect::<Vec<_>>());
        return;
    }
    panic!("in three attempts the server always caught up before the client's first page");
}

/// The first `sync` page: its message seqs, if it is exactly `1..=limit` and says `more`
/// (else the server had caught up by itself).
async fn first_page(w: &mut Client, limit: u64) -> Option<Vec<u64>> {
    w.send(json!({"type": "sync", "id": "p1", "limit": limit}))
        .await;
    let mut first = Vec::new();
    loop {
        let v = w.next().await;
        match v["type"].as_str() {
            Some("message") => first.push(v["seq"].as_u64().unwrap()),
            Some("synced") if v["id"] == "p1" => {
                let whole = first == (1..=limit).collect::<Vec<_>>() && v["more"] == true;
                return whole.then_some(first);
            }
            _ => {}
        }
    }
}

/// A message the user hid before this device held it comes as `deleted` with scope `me` in
/// its place: no silent hole in seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_hidden_before_a_device_held_it_syncs_as_deleted_me() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut wa = s.ws(&a).await;
    for i in 1..=3 {
        wa.send_msg(&conv, &format!("m{i}"), "x").await;
    }
    // Bob hides seq 2 before his device ever held it.
    let mut phone = s.ws(&b).await;
    phone
        .send(
            json!({"type": "delete", "id": "h", "conversation_id": conv, "seq": 2, "scope": "me"}),
        )
        .await;
    assert_eq!(phone.next_where(|v| v["id"] == "h").await["type"], "ack");
    let mut w = s.ws(&b).await; // another socket of the same device: a fresh session

    let got = w.sync_all(10).await;
    let shape: Vec<(String, u64, String)> = got
        .iter()
        .map(|v| {
            (
                v["type"].as_str().unwrap().to_string(),
                v["seq"].as_u64().unwrap(),
                v["scope"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            ("message".into(), 1, "".into()),
            ("deleted".into(), 2, "me".into()),
            ("message".into(), 3, "".into())
        ]
    );
}

/// An `id` reused for a different message is `conflict`, not the original's ack; errors of
/// `received`, `read` and `typing` carry their frame's `id` when it has one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_ids_conflict_and_fire_and_forget_errors_carry_their_id() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let conv = s.direct(&a, &b).await;
    let mut wa = s.ws(&a).await;
    let first = wa.send_msg(&conv, "same", "hello").await;
    let again = wa.send_msg(&conv, "same", "hello").await;
    assert_eq!(
        (again["duplicate"].as_bool(), again["seq"].as_u64()),
        (Some(true), first["seq"].as_u64())
    );
    wa.send(
        json!({"type": "send", "id": "same", "conversation_id": conv, "text": "something else"}),
    )
    .await;
    wa.expect_error("same", "conflict").await;
    assert_eq!(s.all_messages(&a, &conv).await.len(), 1);

    let mut wc = s.ws(&c).await;
    wc.send(json!({"type": "read", "id": "r1", "conversation_id": conv, "seq": 1}))
        .await;
    wc.expect_error("r1", "forbidden").await;
    wc.send(json!({"type": "typing", "id": "t1", "conversation_id": "no-such"}))
        .await;
    wc.expect_error("t1", "not_found").await;
}
