//! v1.1 conversations (issue 12, items 5 and 6): a group's title and avatar, admin roles and
//! the successor of the last admin, and per-user settings (muted, archived, pinned) synced to
//! the user's devices with `settings` frames.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn patch(s: &TestServer, conv: &str, dev: &Dev, body: Value) -> (u16, Value) {
    s.http(
        "PATCH",
        &format!("/v1/conversations/{conv}"),
        Some(&dev.token),
        Some(body),
    )
    .await
}

async fn role(s: &TestServer, conv: &str, by: &Dev, user: &str, role: &str) -> (u16, Value) {
    s.http(
        "PUT",
        &format!("/v1/conversations/{conv}/members/{user}/role"),
        Some(&by.token),
        Some(json!({ "role": role })),
    )
    .await
}

async fn upload(s: &TestServer, dev: &Dev) -> String {
    let (st, body, _) = s
        .http_raw(
            "POST",
            "/v1/files",
            Some(&dev.token),
            Some(("application/octet-stream".into(), vec![7u8; 64])),
            vec![],
        )
        .await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["file_id"].as_str().unwrap().to_string()
}

fn updated(v: &Value) -> bool {
    v["type"] == "conversation" && v["event"] == "updated"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_title_avatar_and_roles() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let g = s.group(&a, &[&b, &c]).await;
    let mut wb = s.ws(&b).await;

    // Only an admin renames; the members are told with `updated`.
    assert_err(
        &patch(&s, &g, &b, json!({"title": "mine"})).await,
        403,
        "forbidden",
    );
    let (st, v) = patch(&s, &g, &a, json!({"title": "team"})).await;
    assert_eq!((st, v["title"].as_str()), (200, Some("team")), "{v}");
    assert_eq!(v["avatar"], Value::Null);
    let ev = wb.next_where(updated).await;
    assert_eq!(ev["conversation"]["title"], "team");

    // Validation: something to change, a title of 1-256 bytes, an avatar that is a file.
    assert_err(&patch(&s, &g, &a, json!({})).await, 400, "bad_request");
    assert_err(
        &patch(&s, &g, &a, json!({"title": " "})).await,
        400,
        "bad_request",
    );
    let long = "x".repeat(257);
    assert_err(
        &patch(&s, &g, &a, json!({"title": long})).await,
        400,
        "bad_request",
    );
    assert_err(
        &patch(&s, &g, &a, json!({"avatar": "no-such-file"})).await,
        400,
        "bad_request",
    );
    let theirs = upload(&s, &c).await;
    assert_err(
        &patch(&s, &g, &a, json!({"avatar": theirs})).await,
        400,
        "bad_request",
    );
    assert_err(
        &patch(&s, "missing", &a, json!({"title": "x"})).await,
        404,
        "not_found",
    );

    // The avatar: set (the members may download it), then cleared; the title stays.
    let f = upload(&s, &a).await;
    let (st, v) = patch(&s, &g, &a, json!({"avatar": f})).await;
    assert_eq!(
        (st, v["avatar"].as_str(), v["title"].as_str()),
        (200, Some(f.as_str()), Some("team"))
    );
    let ev = wb.next_where(updated).await;
    assert_eq!(ev["conversation"]["avatar"], f.as_str());
    let (st, _, _) = s
        .http_raw(
            "GET",
            &format!("/v1/files/{f}"),
            Some(&b.token),
            None,
            vec![],
        )
        .await;
    assert_eq!(st, 200, "a member reads the avatar");
    let (st, v) = s.get(&format!("/v1/conversations/{g}"), &c.token).await;
    assert_eq!((st, v["avatar"].as_str()), (200, Some(f.as_str())));
    let (st, v) = patch(&s, &g, &a, json!({"avatar": null, "title": null})).await;
    assert_eq!(
        (st, &v["avatar"], &v["title"]),
        (200, &Value::Null, &Value::Null)
    );
    wb.next_where(updated).await;

    // A direct conversation has no title, avatar or roles.
    let d = s.direct(&a, &b).await;
    assert_err(
        &patch(&s, &d, &a, json!({"title": "us"})).await,
        400,
        "bad_request",
    );
    assert_err(
        &role(&s, &d, &a, &b.user_id, "admin").await,
        400,
        "bad_request",
    );

    // Roles: only admins change them; a member becomes admin and back.
    assert_err(
        &role(&s, &g, &b, &c.user_id, "admin").await,
        403,
        "forbidden",
    );
    assert_err(
        &role(&s, &g, &a, &b.user_id, "king").await,
        400,
        "bad_request",
    );
    assert_err(&role(&s, &g, &a, "nobody", "admin").await, 404, "not_found");
    let (st, v) = role(&s, &g, &a, &b.user_id, "admin").await;
    assert_eq!(st, 200, "{v}");
    let mut admins: Vec<&str> = v["admins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    admins.sort();
    let mut want = vec![a.user_id.as_str(), b.user_id.as_str()];
    want.sort();
    assert_eq!(admins, want);
    let ev = wb.next_where(updated).await;
    assert_eq!(ev["conversation"]["admins"].as_array().unwrap().len(), 2);
    // The new admin may rename now.
    assert_eq!(patch(&s, &g, &b, json!({"title": "bob's"})).await.0, 200);
    let (st, v) = role(&s, &g, &a, &b.user_id, "member").await;
    assert_eq!((st, v["admins"].clone()), (200, json!([a.user_id])));
    // The last admin cannot step down.
    assert_err(
        &role(&s, &g, &a, &a.user_id, "member").await,
        409,
        "conflict",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_the_longest_standing_member_succeeds_the_last_admin() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let g = s.group(&a, &[&b]).await;
    let mut wa = s.ws(&a).await;
    wa.send_msg(&g, "m1", "before carol").await;
    // Carol joins later (joined_seq 1): Bob, a founding member, has been there longer.
    let (st, _) = s
        .post(
            &format!("/v1/conversations/{g}/members"),
            Some(&a.token),
            json!({"user_ids": [c.user_id]}),
        )
        .await;
    assert_eq!(st, 200);
    let mut wc = s.ws(&c).await;
    let (st, _) = s
        .delete(
            &format!("/v1/conversations/{g}/members/{}", a.user_id),
            &a.token,
        )
        .await;
    assert_eq!(st, 204);
    let ev = wc
        .next_where(|v| updated(v) && v["conversation"]["admins"] == json!([b.user_id]))
        .await;
    assert_eq!(ev["conversation"]["members"].as_array().unwrap().len(), 2);
    let (_, v) = s.get(&format!("/v1/conversations/{g}"), &c.token).await;
    assert_eq!(v["admins"], json!([b.user_id]));
    // And it holds: Bob administers (adds Alice back), Carol may not.
    assert_err(
        &s.post(
            &format!("/v1/conversations/{g}/members"),
            Some(&c.token),
            json!({"user_ids": [a.user_id]}),
        )
        .await,
        403,
        "forbidden",
    );
    let (st, _) = s
        .post(
            &format!("/v1/conversations/{g}/members"),
            Some(&b.token),
            json!({"user_ids": [a.user_id]}),
        )
        .await;
    assert_eq!(st, 200);
    // An admin removed by another admin: the same rule (here there is still one, no change).
    let (st, v) = s.get(&format!("/v1/conversations/{g}"), &b.token).await;
    assert_eq!((st, v["admins"].clone()), (200, json!([b.user_id])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_sync_across_the_users_devices() {
    let s = TestServer::start();
    let a1 = s.user("alice").await;
    let a2 = s.login("alice").await;
    let b = s.user("bob").await;
    let d = s.direct(&a1, &b).await;
    let mut w2 = s.ws(&a2).await;
    let mut wb = s.ws(&b).await;
    let put = |dev: &Dev, body: Value| {
        let path = format!("/v1/conversations/{d}/settings");
        let token = dev.token.clone();
        let s = &s;
        async move { s.http("PUT", &path, Some(&token), Some(body)).await }
    };

    let (st, v) = put(&a1, json!({"archived": true})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({"conversation_id": d, "muted_until": 0, "archived": true, "pinned_at": 0})
    );
    let f = w2.next_type("settings").await;
    assert_eq!(
        f,
        json!({"type": "settings", "conversation_id": d, "muted_until": 0, "archived": true, "pinned_at": 0})
    );
    let before = now_ms();
    let (_, v) = put(&a1, json!({"pinned": true, "muted_until": before + 60_000})).await;
    assert!(v["pinned_at"].as_i64().unwrap() >= before - 5_000, "{v}");
    assert_eq!(
        (v["archived"].as_bool(), v["muted_until"].as_i64()),
        (Some(true), Some(before + 60_000))
    );
    assert_eq!(w2.next_type("settings").await["pinned_at"], v["pinned_at"]);
    // Someone else's settings are not Bob's business.
    assert!(wb
        .collect_for(Duration::from_millis(300), |v| v["type"] == "settings")
        .await
        .is_empty());

    // A new message in an archived conversation leaves it archived (and pinned).
    wb.send_msg(&d, "b1", "hello").await;
    let (_, list) = s.get("/v1/conversations", &a2.token).await;
    let row = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conversation_id"] == d.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (row["archived"].as_bool(), row["unread"].as_u64()),
        (Some(true), Some(1)),
        "{row}"
    );
    assert_eq!(row["pinned_at"], v["pinned_at"]);
    assert_eq!(row["muted_until"].as_i64(), Some(before + 60_000));
    let (_, list) = s.get("/v1/conversations", &b.token).await;
    let row = &list["conversations"][0];
    assert_eq!(
        (
            row["archived"].as_bool(),
            row["pinned_at"].as_i64(),
            row["muted_until"].as_i64()
        ),
        (Some(false), Some(0), Some(0))
    );

    // Unpin and unarchive; a v1 body (muted_until alone) still works.
    let (_, v) = put(&a2, json!({"pinned": false, "archived": false})).await;
    assert_eq!(
        (v["pinned_at"].as_i64(), v["archived"].as_bool()),
        (Some(0), Some(false))
    );
    let (_, v) = put(&a2, json!({"muted_until": 0})).await;
    assert_eq!(v["muted_until"], 0);
    assert_err(&put(&a1, json!({})).await, 400, "bad_request");
    assert_err(
        &put(&a1, json!({"archived": "yes"})).await,
        400,
        "bad_request",
    );
    let c = s.user("carol").await;
    assert_err(&put(&c, json!({"archived": true})).await, 403, "forbidden");
}
