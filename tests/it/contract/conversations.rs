//! Conversations: direct once per pair, groups and their limits, access, typing, presence and membership events.

use crate::common::*;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

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
