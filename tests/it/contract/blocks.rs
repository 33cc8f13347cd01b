//! v1.1 blocking (issue 12, item 8): a block either way refuses a new direct conversation and
//! sends in the pair's direct conversation, and withholds typing (groups too) and presence;
//! unblocking restores all of it.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

fn presence_of(user: &str) -> impl Fn(&serde_json::Value) -> bool + '_ {
    move |v| v["type"] == "presence" && v["user_id"] == user
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_refuse_direct_sends_typing_and_presence_until_unblocked() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let d = s.direct(&a, &b).await;
    let g = s.group(&a, &[&b]).await;
    let mut wb = s.ws(&b).await;

    assert_err(
        &s.http(
            "PUT",
            &format!("/v1/blocks/{}", a.user_id),
            Some(&a.token),
            None,
        )
        .await,
        400,
        "bad_request",
    );
    assert_err(
        &s.http("PUT", "/v1/blocks/nobody", Some(&a.token), None)
            .await,
        404,
        "not_found",
    );
    let (st, _) = s
        .http(
            "PUT",
            &format!("/v1/blocks/{}", b.user_id),
            Some(&a.token),
            None,
        )
        .await;
    assert_eq!(st, 204);
    // Again: still one block, from the first time.
    let (st, _) = s
        .http(
            "PUT",
            &format!("/v1/blocks/{}", b.user_id),
            Some(&a.token),
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, v) = s.get("/v1/blocks", &a.token).await;
    assert_eq!(st, 200);
    let list = v["blocks"].as_array().unwrap();
    assert_eq!(
        (list.len(), list[0]["user_id"].as_str()),
        (1, Some(b.user_id.as_str())),
        "{v}"
    );
    assert!(list[0]["blocked_at"].as_i64().unwrap() > 0);
    assert_eq!(s.get("/v1/blocks", &b.token).await.1, json!({"blocks": []}));

    // Alice comes online: Bob is not told.
    let mut wa = s.ws(&a).await;
    assert!(wb
        .collect_for(Duration::from_millis(500), presence_of(&a.user_id))
        .await
        .is_empty());

    // Bob cannot send into their direct conversation nor start one; neither can Alice.
    wb.send(json!({"type": "send", "id": "b1", "conversation_id": d, "text": "hi"}))
        .await;
    wb.expect_error("b1", "forbidden").await;
    wb.send(json!({"type": "send", "id": "b2", "to": a.user_id, "text": "hi"}))
        .await;
    wb.expect_error("b2", "forbidden").await;
    assert_err(
        &s.post(
            "/v1/conversations",
            Some(&b.token),
            json!({"kind": "direct", "members": [a.user_id]}),
        )
        .await,
        403,
        "forbidden",
    );
    wa.send(json!({"type": "send", "id": "a1", "conversation_id": d, "text": "hi"}))
        .await;
    wa.expect_error("a1", "forbidden").await;
    // No typing across the block in the direct conversation.
    wa.send(json!({"type": "typing", "conversation_id": d}))
        .await;
    assert!(wb
        .collect_for(Duration::from_millis(500), |v| v["type"] == "typing")
        .await
        .is_empty());
    // A group they share is not affected; others are not either.
    wb.send_msg(&g, "g1", "in the group").await;
    wa.next_where(|v| v["type"] == "message" && v["conversation_id"] == g.as_str())
        .await;
    let (st, _) = s
        .post(
            "/v1/conversations",
            Some(&c.token),
            json!({"kind": "direct", "members": [a.user_id]}),
        )
        .await;
    assert_eq!(st, 201);

    // Unblock: everything is back.
    assert_eq!(
        s.delete(&format!("/v1/blocks/{}", b.user_id), &a.token)
            .await
            .0,
        204
    );
    assert_eq!(s.get("/v1/blocks", &a.token).await.1, json!({"blocks": []}));
    let ack = wb.send_msg(&d, "b3", "hi again").await;
    assert_eq!(ack["seq"], 1);
    wa.next_where(|v| v["type"] == "message" && v["conversation_id"] == d.as_str())
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the typing interval
    wa.send(json!({"type": "typing", "conversation_id": d}))
        .await;
    wb.next_where(|v| v["type"] == "typing" && v["user_id"] == a.user_id.as_str())
        .await;
    drop(wa);
    wb.next_where(|v| presence_of(&a.user_id)(v) && v["online"] == false)
        .await;
    let _wa = s.ws(&a).await;
    wb.next_where(|v| presence_of(&a.user_id)(v) && v["online"] == true)
        .await;
}

/// A block also covers the groups both are in (typing) and a presence already shown: at the
/// block each sees the other go offline, at the unblock online again, while both stay connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_hides_group_typing_and_takes_back_shown_presence() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let g = s.group(&a, &[&b, &c]).await;
    let mut wb = s.ws(&b).await;
    let mut wc = s.ws(&c).await;
    let mut wa = s.ws(&a).await;
    wb.next_where(|v| presence_of(&a.user_id)(v) && v["online"] == true)
        .await;

    let (st, _) = s
        .http(
            "PUT",
            &format!("/v1/blocks/{}", b.user_id),
            Some(&a.token),
            None,
        )
        .await;
    assert_eq!(st, 204);
    wb.next_where(|v| presence_of(&a.user_id)(v) && v["online"] == false)
        .await;
    wa.next_where(|v| presence_of(&b.user_id)(v) && v["online"] == false)
        .await;

    // Typing in the group reaches Carol, not Bob; Bob's typing does not reach Alice.
    wa.send(json!({"type": "typing", "conversation_id": g}))
        .await;
    wc.next_where(|v| v["type"] == "typing" && v["user_id"] == a.user_id.as_str())
        .await;
    wb.send(json!({"type": "typing", "conversation_id": g}))
        .await;
    wc.next_where(|v| v["type"] == "typing" && v["user_id"] == b.user_id.as_str())
        .await;
    assert!(wb
        .collect_for(Duration::from_millis(500), |v| v["type"] == "typing")
        .await
        .is_empty());
    assert!(wa
        .collect_for(Duration::from_millis(300), |v| v["type"] == "typing")
        .await
        .is_empty());

    assert_eq!(
        s.delete(&format!("/v1/blocks/{}", b.user_id), &a.token)
            .await
            .0,
        204
    );
    wb.next_where(|v| presence_of(&a.user_id)(v) && v["online"] == true)
        .await;
    wa.next_where(|v| presence_of(&b.user_id)(v) && v["online"] == true)
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the typing interval
    wa.send(json!({"type": "typing", "conversation_id": g}))
        .await;
    wb.next_where(|v| v["type"] == "typing" && v["user_id"] == a.user_id.as_str())
        .await;
}
