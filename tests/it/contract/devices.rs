//! v1.1 devices and sign-out (docs/protocol.md, "Devices and sessions"): the device list,
//! revoking a device, signing out, refresh tokens (rotation, reuse), logging in to an existing
//! device, password change, account deletion, and the rate limits beyond one connection.
//! On 3 nodes (`PARLEY_TEST_NODES=3`) every request goes round-robin to the nodes, so a
//! revocation on one node is checked on the others; `revoke_reaches_every_node` pins the
//! nodes explicitly.

use crate::common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// Logs in (optionally to an existing device) and returns the whole answer.
async fn login_raw(
    s: &TestServer,
    name: &str,
    password: &str,
    device: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({"username": name, "password": password, "device_name": "phone"});
    if let Some(d) = device {
        body["device_id"] = json!(d);
    }
    s.post("/v1/sessions", None, body).await
}

fn dev_of(v: &Value) -> Dev {
    Dev {
        user_id: v["user_id"].as_str().unwrap().to_string(),
        device_id: v["device_id"].as_str().unwrap().to_string(),
        token: v["token"].as_str().unwrap().to_string(),
    }
}

async fn devices(s: &TestServer, d: &Dev) -> Vec<Value> {
    let (st, v) = s.get("/v1/devices", &d.token).await;
    assert_eq!(st, 200, "{v}");
    v["devices"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_list_and_revoke() {
    let s = TestServer::start();
    let a1 = s.user("alice").await;
    let a2 = s.login("alice").await;
    let bob = s.user("bob").await;
    let (st, _) = s
        .http(
            "PUT",
            &format!("/v1/devices/{}/push", a2.device_id),
            Some(&a2.token),
            Some(json!({"provider": "webhook", "endpoint": "https://push.example/x"})),
        )
        .await;
    assert_eq!(st, 204);
    let list = devices(&s, &a1).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let me = list
        .iter()
        .find(|d| d["device_id"] == a1.device_id)
        .unwrap();
    assert_eq!(me["current"], true);
    assert!(me["created_at"].as_i64().unwrap() > 0);
    assert!(me.get("last_seen_at").is_some() && me.get("name").is_some());
    let other = list
        .iter()
        .find(|d| d["device_id"] == a2.device_id)
        .unwrap();
    assert_eq!(other["current"], false);
    assert_eq!(other["push"]["provider"], "webhook", "{other}");

    // last_seen_at: set by a connection (now while connected, its end afterwards).
    let c = s.ws(&a2).await;
    drop(c);
    let seen = eventually(Duration::from_secs(5), || async {
        devices(&s, &a1)
            .await
            .iter()
            .any(|d| d["device_id"] == a2.device_id && d["last_seen_at"].as_i64().is_some())
    })
    .await;
    assert!(seen, "last_seen_at after a connection");

    let mut c2 = s.ws(&a2).await;
    // Not mine, and unknown: not_found.
    let (st, v) = s
        .delete(&format!("/v1/devices/{}", a2.device_id), &bob.token)
        .await;
    assert_err(&(st, v), 404, "not_found");
    let (st, v) = s.delete("/v1/devices/nope", &a1.token).await;
    assert_err(&(st, v), 404, "not_found");

    let (st, _) = s
        .delete(&format!("/v1/devices/{}", a2.device_id), &a1.token)
        .await;
    assert_eq!(st, 204);
    assert_eq!(c2.closed().await, Some(4401));
    // Its token fails on every node the round-robin reaches, at once on the node that revoked
    // it and on the others as soon as the bus brings them the revocation.
    assert!(
        refused_everywhere(&s, "/v1/devices", &a2.token).await,
        "a revoked token still works on some node"
    );
    for _ in 0..s.node_count() {
        let (st, v) = s.get("/v1/devices", &a2.token).await;
        assert_err(&(st, v), 401, "unauthorized");
    }
    let mut ws = Client::raw(&s.pick(), Some(&a2.token)).await;
    assert_eq!(close_code(&mut ws, WAIT).await, Some(4401));
    // Its push target went with it; the other device is untouched.
    let list = devices(&s, &a1).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["device_id"], a1.device_id);
    // A device may revoke itself through this endpoint too.
    let (st, _) = s
        .delete(&format!("/v1/devices/{}", a1.device_id), &a1.token)
        .await;
    assert_eq!(st, 204);
    // In a cluster the next request may reach a node the bus has not told yet (as above).
    assert!(
        refused_everywhere(&s, "/v1/users/me", &a1.token).await,
        "a self-revoked token still works on some node"
    );
}

/// Whether `token` soon gets 401 on every node the round-robin reaches (the bound is for a
/// bus slowed by a loaded machine; a pass returns at once).
async fn refused_everywhere(s: &TestServer, path: &str, token: &str) -> bool {
    eventually(Duration::from_secs(10), || async {
        let mut all = true;
        for _ in 0..s.node_count() {
            all &= s.get(path, token).await.0 == 401;
        }
        all
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_reaches_every_node() {
    let s = TestServer::builder().nodes(3).start();
    let a1 = s.user("alice").await;
    let a2 = s.login("alice").await;
    // a2's token is used (and cached) on every node, and a2 is connected to nodes 1 and 2.
    for i in 0..3 {
        let (st, _) = s.node(i).get("/v1/users/me", &a2.token).await;
        assert_eq!(st, 200);
    }
    let mut on1 = Client::connect(&s.node(1).addr, Some(&a2.token)).await;
    let mut on2 = Client::connect(&s.node(2).addr, Some(&a2.token)).await;
    let (st, _) = s
        .node(0)
        .delete(&format!("/v1/devices/{}", a2.device_id), &a1.token)
        .await;
    assert_eq!(st, 204);
    assert_eq!(on1.closed().await, Some(4401));
    assert_eq!(on2.closed().await, Some(4401));
    // At once: the other nodes refuse the token as soon as their sessions have closed (the
    // same broadcast clears their token check).
    for i in 0..3 {
        let (st, v) = s.node(i).get("/v1/users/me", &a2.token).await;
        assert_err(&(st, v), 401, "unauthorized");
    }
    let (st, _) = s.node(2).get("/v1/users/me", &a1.token).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_this_device() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let keep = s.login("alice").await;
    let mut c = s.ws(&a).await;
    let (st, _) = s.delete("/v1/sessions/current", &a.token).await;
    assert_eq!(st, 204);
    assert_eq!(c.closed().await, Some(4401));
    assert!(
        refused_everywhere(&s, "/v1/users/me", &a.token).await,
        "a signed-out token still works on some node"
    );
    let (st, v) = s.delete("/v1/sessions/current", &a.token).await;
    assert_err(&(st, v), 401, "unauthorized");
    assert_eq!(devices(&s, &keep).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_reuse_revokes() {
    let s = TestServer::start();
    s.user("alice").await;
    let (st, v) = login_raw(&s, "alice", "password123", None).await;
    assert_eq!(st, 200);
    let dev = dev_of(&v);
    let r1 = v["refresh_token"].as_str().unwrap().to_string();

    let (st, v) = s
        .post("/v1/sessions/refresh", None, json!({"refresh_token": r1}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["device_id"], dev.device_id);
    assert_eq!(v["user_id"], dev.user_id);
    assert!(v["expires_at"].as_i64().unwrap() > now_ms());
    let r2 = v["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r2, r1);
    let fresh = dev_of(&v);
    let (st, _) = s.get("/v1/users/me", &fresh.token).await;
    assert_eq!(st, 200);

    // A made-up token (even naming the device) is refused and revokes nothing.
    let forged = format!("{}.AAAA.AAAA", dev.device_id);
    let (st, v) = s
        .post(
            "/v1/sessions/refresh",
            None,
            json!({"refresh_token": forged}),
        )
        .await;
    assert_err(&(st, v), 401, "unauthorized");
    let (st, _) = s.get("/v1/users/me", &fresh.token).await;
    assert_eq!(st, 200);
    let (st, v) = s
        .post("/v1/sessions/refresh", None, json!({"refresh": 1}))
        .await;
    assert_err(&(st, v), 400, "bad_request");

    // The spent r1 again: reuse, so the device is revoked (its live session closes 4401).
    let mut c = s.ws(&fresh).await;
    let (st, v) = s
        .post("/v1/sessions/refresh", None, json!({"refresh_token": r1}))
        .await;
    assert_err(&(st, v), 401, "unauthorized");
    assert_eq!(c.closed().await, Some(4401));
    // In a cluster the next request may reach a node the bus has not told yet (the session
    // that closed may be on the revoking node).
    assert!(
        refused_everywhere(&s, "/v1/users/me", &fresh.token).await,
        "the revoked device's token still works on some node"
    );
    let (st, _) = s
        .post("/v1/sessions/refresh", None, json!({"refresh_token": r2}))
        .await;
    assert_eq!(st, 401, "the current one died with the device");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_to_my_device_keeps_what_it_is_owed() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&b, &a).await;
    let mut cb = s.ws(&b).await;
    for i in 0..3 {
        cb.send_msg(&conv, &format!("m{i}"), &format!("owed {i}"))
            .await;
    }
    // The phone's token is gone (expired, app reinstalled): log in again to the same device.
    let (st, v) = login_raw(&s, "alice", "password123", Some(&a.device_id)).await;
    assert_eq!(st, 200, "{v}");
    let again = dev_of(&v);
    assert_eq!(again.device_id, a.device_id);
    assert!(v["refresh_token"].is_string());
    assert_eq!(devices(&s, &again).await.len(), 1, "no new device");
    let mut ca = s.ws(&again).await;
    let mut got: BTreeSet<String> = BTreeSet::new();
    let pushed = ca
        .collect_for(Duration::from_millis(1500), |v| v["type"] == "message")
        .await;
    let synced = ca.sync_all(50).await;
    for m in pushed.iter().chain(synced.iter()) {
        got.insert(m["text"].as_str().unwrap_or_default().to_string());
    }
    let want: BTreeSet<String> = (0..3).map(|i| format!("owed {i}")).collect();
    assert_eq!(got, want);

    // A new login (no device_id) starts "now": it is owed nothing of the past.
    let (_, v) = login_raw(&s, "alice", "password123", None).await;
    let newer = dev_of(&v);
    assert_ne!(newer.device_id, a.device_id);
    let mut cn = s.ws(&newer).await;
    assert!(cn.sync_all(50).await.is_empty());

    // Someone else's device, an unknown one, a wrong password.
    let (st, v) = login_raw(&s, "bob", "password123", Some(&a.device_id)).await;
    assert_err(&(st, v), 404, "not_found");
    let (st, v) = login_raw(&s, "alice", "password123", Some("nope")).await;
    assert_err(&(st, v), 404, "not_found");
    let (st, v) = login_raw(&s, "alice", "wrong-password", Some(&a.device_id)).await;
    assert_err(&(st, v), 401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_can_sign_out_other_devices() {
    let s = TestServer::start();
    let a1 = s.user("alice").await;
    let a2 = s.login("alice").await;
    let put = |token: String, body: Value| {
        let s = &s;
        async move {
            s.http("PUT", "/v1/users/me/password", Some(&token), Some(body))
                .await
        }
    };
    let (st, v) = put(
        a1.token.clone(),
        json!({"old": "wrong-password", "new": "password456"}),
    )
    .await;
    assert_err(&(st, v), 403, "forbidden");
    let (st, v) = put(
        a1.token.clone(),
        json!({"old": "password123", "new": "short"}),
    )
    .await;
    assert_err(&(st, v), 400, "bad_request");
    // Without sign_out_others every device stays.
    let (st, _) = put(
        a1.token.clone(),
        json!({"old": "password123", "new": "password456"}),
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = s.get("/v1/users/me", &a2.token).await;
    assert_eq!(st, 200);
    let mut c2 = s.ws(&a2).await;
    let (st, _) = put(
        a1.token.clone(),
        json!({"old": "password456", "new": "password789", "sign_out_others": true}),
    )
    .await;
    assert_eq!(st, 204);
    assert_eq!(c2.closed().await, Some(4401));
    assert!(
        refused_everywhere(&s, "/v1/users/me", &a2.token).await,
        "a signed-out device's token still works on some node"
    );
    let (st, _) = s.get("/v1/users/me", &a1.token).await;
    assert_eq!(st, 200);
    let (st, _) = login_raw(&s, "alice", "password456", None).await;
    assert_eq!(st, 401);
    let (st, _) = login_raw(&s, "alice", "password789", None).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_my_account() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let group = s.group(&b, &[&a, &c]).await;
    let direct = s.direct(&b, &a).await;
    let mut ca = s.ws(&a).await;
    ca.send_msg(&group, "g1", "hello group").await;
    ca.send_msg(&direct, "d1", "hello bob").await;
    let mut cc = s.ws(&c).await;

    let del = |token: String, body: Value| {
        let s = &s;
        async move {
            s.http("DELETE", "/v1/users/me", Some(&token), Some(body))
                .await
        }
    };
    let (st, v) = del(a.token.clone(), json!({"password": "wrong-password"})).await;
    assert_err(&(st, v), 403, "forbidden");
    let (st, _) = del(a.token.clone(), json!({"password": "password123"})).await;
    assert_eq!(st, 204);
    assert_eq!(ca.closed().await, Some(4401));
    assert!(
        refused_everywhere(&s, "/v1/users/me", &a.token).await,
        "a deleted account's token still works on some node"
    );
    let (st, _) = login_raw(&s, "alice", "password123", None).await;
    assert_eq!(st, 401);

    // The group's members saw alice leave; her message stays, under her (now unknown) id.
    let ev = cc
        .next_where(|v| v["type"] == "conversation" && v["event"] == "member_removed")
        .await;
    assert_eq!(ev["conversation"]["conversation_id"], group, "{ev}");
    let (st, v) = s.get(&format!("/v1/conversations/{group}"), &b.token).await;
    assert_eq!(st, 200);
    let members = v["members"].to_string();
    assert!(!members.contains(&a.user_id), "{v}");
    let msgs = s.all_messages(&b, &group).await;
    assert!(msgs
        .iter()
        .any(|m| m["sender_id"] == a.user_id && m["text"] == "hello group"));
    // The direct conversation stays for bob, with her message.
    let msgs = s.all_messages(&b, &direct).await;
    assert!(msgs
        .iter()
        .any(|m| m["sender_id"] == a.user_id && m["text"] == "hello bob"));
    let (st, v) = s.get("/v1/users?username=alice", &b.token).await;
    assert_err(&(st, v), 404, "not_found");
    // The username is free again; the new account is someone else.
    let fresh = s.user("alice").await;
    assert_ne!(fresh.user_id, a.user_id);
    let (st, _) = s
        .get(&format!("/v1/conversations/{group}"), &fresh.token)
        .await;
    assert_ne!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_registration_are_limited_per_address() {
    // One node: the budget is per node (docs/protocol.md), and requests must all reach it.
    let s = TestServer::builder()
        .nodes(1)
        .config("[limits]\nip_auth_per_min = 6\nip_auth_burst = 3\n")
        .start();
    let n = s.node(0);
    let (st, _) = n
        .post(
            "/v1/users",
            None,
            json!({"username": "alice", "password": "password123"}),
        )
        .await;
    assert_eq!(st, 201);
    for _ in 0..2 {
        let (st, _) = login_raw(n, "alice", "wrong-password", None).await;
        assert_eq!(st, 401);
    }
    let (status, body, headers) = n
        .http_raw(
            "POST",
            "/v1/sessions",
            None,
            Some((
                "application/json".into(),
                json!({"username": "alice", "password": "password123"})
                    .to_string()
                    .into_bytes(),
            )),
            vec![],
        )
        .await;
    assert_eq!(status, 429);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    let retry: u64 = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.parse().unwrap())
        .expect("Retry-After");
    assert!((1..=10).contains(&retry), "{retry}");
    let (st, _) = n
        .post(
            "/v1/users",
            None,
            json!({"username": "bob", "password": "password123"}),
        )
        .await;
    assert_eq!(st, 429);
    // One token every 10 s: after Retry-After a login succeeds.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (st, _) = login_raw(n, "alice", "password123", None).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_are_limited_per_user_over_its_connections() {
    // Both connections on one node: the budget is per node (docs/protocol.md).
    let s = TestServer::builder()
        .nodes(1)
        .config("[limits]\nuser_rate_per_sec = 1\nuser_rate_burst = 4\nrate_strikes = 100\n")
        .start();
    let n = s.node(0);
    let a1 = n.user("alice").await;
    let a2 = n.login("alice").await;
    let b = n.user("bob").await;
    let conv = n.direct(&a1, &b).await;
    let mut c1 = Client::connect(&n.addr, Some(&a1.token)).await;
    let mut c2 = Client::connect(&n.addr, Some(&a2.token)).await;
    let mut cb = Client::connect(&n.addr, Some(&b.token)).await;
    for i in 0..2 {
        c1.send_msg(&conv, &format!("x{i}"), "hi").await;
        c2.send_msg(&conv, &format!("y{i}"), "hi").await;
    }
    c1.send(json!({"type": "send", "id": "over", "conversation_id": conv, "text": "hi"}))
        .await;
    c1.expect_error("over", "rate_limited").await;
    c2.send(json!({"type": "send", "id": "over2", "conversation_id": conv, "text": "hi"}))
        .await;
    c2.expect_error("over2", "rate_limited").await;
    // Another user's budget is its own.
    cb.send_msg(&conv, "b1", "fine").await;
}
