//! Retention (v1.1): a conversation's period set by admins, the purge of expired messages and
//! their files, the `expired` notice in sync, and `undeliverable` for the sender.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

const CONFIG: &str = "[retention]\nmin_secs = 1\nsweep_interval_ms = 200\nbatch = 2";

async fn upload_png(s: &TestServer, dev: &Dev) -> String {
    let png = test_png(8, 8);
    let (st, body, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            Some(&dev.token),
            Some(("image/png".into(), png)),
            vec![],
        )
        .await;
    assert_eq!(st, 201);
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["file_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_messages_are_purged_and_reported() {
    let s = TestServer::builder().config(CONFIG).start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let g = s.group(&a, &[&b, &c]).await;
    let path = format!("/v1/conversations/{g}/retention");
    let mut wa = s.ws(&a).await;
    let mut wb = s.ws(&b).await;

    // Who may set it, and to what.
    let r = s
        .http(
            "PUT",
            &path,
            Some(&c.token),
            Some(json!({"retention_secs": 5})),
        )
        .await;
    assert_err(&r, 403, "forbidden");
    let r = s
        .http(
            "PUT",
            &path,
            Some(&a.token),
            Some(json!({"retention_secs": 0})),
        )
        .await;
    assert_err(&r, 400, "bad_request");
    let too_long = json!({"retention_secs": 200_000_000u64});
    assert_err(
        &s.http("PUT", &path, Some(&a.token), Some(too_long)).await,
        400,
        "bad_request",
    );
    let (st, v) = s
        .http(
            "PUT",
            &path,
            Some(&a.token),
            Some(json!({"retention_secs": 2})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["retention_secs"].as_u64(), v["effective_secs"].as_u64()),
        (Some(2), Some(2))
    );
    let f = wb.next_type("retention").await;
    assert_eq!(
        f,
        json!({"type": "retention", "conversation_id": g, "retention_secs": 2, "by": a.user_id})
    );
    let (st, v) = s.get(&path, &c.token).await;
    assert_eq!((st, v["expired_through"].as_u64()), (200, Some(0)));
    let other = s.user("mallory").await;
    assert_err(&s.get(&path, &other.token).await, 403, "forbidden");

    // Three messages, one with a file. Bob holds them; Carol's device never connects.
    let fid = upload_png(&s, &a).await;
    wa.send(json!({"type": "send", "id": "p", "conversation_id": g, "text": "pic", "attachments": [{"file_id": fid}]}))
        .await;
    assert_eq!(wa.next_where(|v| v["id"] == "p").await["type"], "ack");
    wa.send_msg(&g, "m2", "two").await;
    wa.send_msg(&g, "m3", "three").await;
    for _ in 0..3 {
        wb.next_type("message").await;
    }
    wb.send(json!({"type": "received", "conversation_id": g, "seq": 3}))
        .await;
    s.wait_delivered(&b, &g, 3).await;

    // The sweep purges all three (batches of 2) once they are 2 s old.
    let purged = eventually(Duration::from_secs(15), || async {
        s.get(&path, &a.token).await.1["expired_through"] == 3
    })
    .await;
    assert!(purged, "messages were not purged");
    let (st, page) = s
        .get(&format!("/v1/conversations/{g}/messages"), &b.token)
        .await;
    assert_eq!(st, 200);
    assert_eq!(page["messages"], json!([]));
    assert_eq!(s.get(&format!("/v1/files/{fid}"), &a.token).await.0, 404);

    // Alice learns that Carol's device lost them; Bob's held them, so nothing about Bob.
    let u = wa.next_type("undeliverable").await;
    assert_eq!(
        (
            u["conversation_id"].as_str(),
            u["user_id"].as_str(),
            u["device_id"].as_str()
        ),
        (
            Some(g.as_str()),
            Some(c.user_id.as_str()),
            Some(c.device_id.as_str())
        )
    );
    let (st, list) = s.get("/v1/undeliverable", &a.token).await;
    assert_eq!(st, 200);
    let rows = list["undeliverable"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(
        (
            rows[0]["from_seq"].as_u64(),
            rows[0]["to_seq"].as_u64(),
            rows[0]["lost"].as_u64()
        ),
        (Some(1), Some(3), Some(3))
    );
    assert!(s.get("/v1/undeliverable", &b.token).await.1["undeliverable"] == json!([]));
    let upto = rows[0]["ts"].as_i64().unwrap();
    let (st, v) = s
        .delete(&format!("/v1/undeliverable?upto={upto}"), &a.token)
        .await;
    assert_eq!((st, v["cleared"].as_u64()), (200, Some(1)));
    assert_eq!(
        s.get("/v1/undeliverable", &a.token).await.1["undeliverable"],
        json!([])
    );

    // Carol's device syncs: one `expired` notice for 1..3 instead of a silent gap, and then
    // new messages flow.
    let mut wc = s.ws(&c).await;
    let got = wc.sync_all(50).await;
    assert_eq!(
        got,
        vec![json!({"type": "expired", "conversation_id": g, "from_seq": 1, "to_seq": 3})]
    );
    wa.send_msg(&g, "m4", "four").await;
    let m = wc.next_type("message").await;
    assert_eq!(m["seq"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_members_may_set_it_and_null_restores_the_default() {
    let s = TestServer::builder().config(CONFIG).start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let d = s.direct(&a, &b).await;
    let path = format!("/v1/conversations/{d}/retention");
    let (st, v) = s
        .http(
            "PUT",
            &path,
            Some(&b.token),
            Some(json!({"retention_secs": 3600})),
        )
        .await;
    assert_eq!((st, v["retention_secs"].as_u64()), (200, Some(3600)));
    let (st, v) = s
        .http(
            "PUT",
            &path,
            Some(&a.token),
            Some(json!({"retention_secs": null})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        (v["retention_secs"].clone(), v["effective_secs"].as_u64()),
        (Value::Null, Some(157_680_000))
    );
    let r = s
        .http("PUT", &path, Some(&a.token), Some(json!({"days": 3})))
        .await;
    assert_err(&r, 400, "bad_request");
    let r = s
        .http(
            "PUT",
            "/v1/conversations/nope/retention",
            Some(&a.token),
            Some(json!({"retention_secs": 5})),
        )
        .await;
    assert_err(&r, 404, "not_found");
}
