//! Talking to a test server: HTTP requests (ureq), the account and conversation helpers
//! most tests start with, and WebSocket clients. Running the processes is `server`'s.

use super::client::{Client, Dev};
use super::TestServer;
use serde_json::{json, Value};
use std::time::Duration;

impl TestServer {
    /// A URL on the next node (round-robin in a cluster).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.pick(), path)
    }

    /// One HTTP request with a JSON body; returns the status and the JSON answer (or Null).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, bytes, _) = self
            .http_raw(
                method,
                path,
                token,
                body.map(|b| ("application/json".to_string(), b.to_string().into_bytes())),
                vec![],
            )
            .await;
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }

    /// A raw HTTP request: body with its content type, extra headers; returns status, body
    /// bytes and the response headers.
    pub async fn http_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(String, Vec<u8>)>,
        headers: Vec<(String, String)>,
    ) -> (u16, Vec<u8>, Vec<(String, String)>) {
        let url = self.url(path);
        let method = method.to_string();
        let token = token.map(String::from);
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(20)))
                .build()
                .into();
            let mut req = ureq::http::Request::builder()
                .method(method.as_str())
                .uri(&url);
            if let Some(t) = &token {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let resp = match body {
                Some((ct, bytes)) => agent.run(req.header("Content-Type", ct).body(bytes).unwrap()),
                None => agent.run(req.body(()).unwrap()),
            };
            let mut resp = resp.expect("http request");
            let status = resp.status().as_u16();
            let hs = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            let bytes = resp.body_mut().read_to_vec().unwrap_or_default();
            (status, bytes, hs)
        })
        .await
        .unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.http("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.http("POST", path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        self.http("DELETE", path, Some(token), None).await
    }

    /// Creates a user and logs in one device.
    pub async fn user(&self, name: &str) -> Dev {
        let (s, v) = self
            .http(
                "POST",
                "/v1/users",
                None,
                Some(json!({"username": name, "password": "password123"})),
            )
            .await;
        assert_eq!(s, 201, "create user {name}: {v}");
        self.login(name).await
    }

    /// Logs in another device of an existing user.
    pub async fn login(&self, name: &str) -> Dev {
        let (s, v) = self
            .http(
                "POST",
                "/v1/sessions",
                None,
                Some(json!({"username": name, "password": "password123"})),
            )
            .await;
        assert_eq!(s, 200, "login {name}: {v}");
        Dev {
            user_id: v["user_id"].as_str().unwrap().to_string(),
            device_id: v["device_id"].as_str().unwrap().to_string(),
            token: v["token"].as_str().unwrap().to_string(),
        }
    }

    pub async fn direct(&self, a: &Dev, b: &Dev) -> String {
        let (s, v) = self
            .http(
                "POST",
                "/v1/conversations",
                Some(&a.token),
                Some(json!({"kind": "direct", "members": [b.user_id]})),
            )
            .await;
        assert!(s == 201 || s == 200, "direct: {s} {v}");
        v["conversation_id"].as_str().unwrap().to_string()
    }

    pub async fn group(&self, creator: &Dev, members: &[&Dev]) -> String {
        let ids: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
        let (s, v) = self
            .http(
                "POST",
                "/v1/conversations",
                Some(&creator.token),
                Some(json!({"kind": "group", "title": "g", "members": ids})),
            )
            .await;
        assert_eq!(s, 201, "group: {v}");
        v["conversation_id"].as_str().unwrap().to_string()
    }

    /// All messages of a conversation via HTTP (forward paging).
    pub async fn all_messages(&self, dev: &Dev, conv: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0u64;
        loop {
            let (s, v) = self
                .http(
                    "GET",
                    &format!("/v1/conversations/{conv}/messages?after_seq={after}&limit=200"),
                    Some(&dev.token),
                    None,
                )
                .await;
            assert_eq!(s, 200, "{v}");
            let page = v["messages"].as_array().unwrap().clone();
            if page.is_empty() {
                return out;
            }
            after = page.last().unwrap()["seq"].as_u64().unwrap();
            out.extend(page);
        }
    }

    /// Waits until `dev`'s delivered cursor in `conv` (as `GET /v1/conversations` shows it)
    /// reaches `seq`: a `received` is applied asynchronously.
    pub async fn wait_delivered(&self, dev: &Dev, conv: &str, seq: u64) {
        let reached = super::eventually(Duration::from_secs(10), || async {
            let (_, v) = self.get("/v1/conversations", &dev.token).await;
            v["conversations"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["conversation_id"] == conv && c["delivered_seq"].as_u64() >= Some(seq))
        })
        .await;
        assert!(reached, "delivered cursor of {conv} never reached {seq}");
    }

    /// A WebSocket on the next node (round-robin in a cluster).
    pub async fn ws(&self, dev: &Dev) -> Client {
        Client::connect(&self.pick(), Some(&dev.token)).await
    }
}
