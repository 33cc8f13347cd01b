//! Accounts, sessions, the HTTP error shape, push targets and metrics.

use crate::common::*;
use serde_json::json;

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
