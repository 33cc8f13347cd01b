//! Firebase Cloud Messaging, HTTP v1, authorised by a service account (OAuth2 JWT bearer,
//! RFC 7523).
//!
//! **Token.** An RS256 assertion `{"iss": client_email, "scope":
//! "https://www.googleapis.com/auth/firebase.messaging", "aud": <token URL>, "iat": now,
//! "exp": now + 3600}` (header `{"alg":"RS256","typ":"JWT","kid": private_key_id}`) is posted
//! to the token URL (`push.fcm.token_url`, else the key file's `token_uri`) as
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`. The access token
//! is cached, one fetch at a time, until `expires_in` minus 5 minutes (minus half of it if it
//! is shorter than 10 minutes). A send answered 401 without an FCM error code refreshes it
//! and is sent once more.
//!
//! **Request.** `POST {base_url}/v1/projects/{project_id}/messages:send`, headers
//! `authorization: Bearer <access token>`, `content-type: application/json`; the body (at most
//! 4096 bytes: a preview is cut to fit):
//!
//! ```json
//! {"message": {
//!   "token": "<registration token>",
//!   "data": {"type": "message", "conversation_id": "c_1", "seq": "42", "badge": "3",
//!            "unread": "2"},
//!   "notification": {"title": "Alice", "body": "hi"},
//!   "android": {"collapse_key": "<collapse_key>", "priority": "high", "ttl": "86400s",
//!               "notification": {"tag": "<collapse_key>"}}}}
//! ```
//!
//! `data` values are strings (FCM refuses anything else). `notification` and
//! `android.notification` are there only with a preview; without one the message is
//! data-only and the app renders it. A `clear` is always data-only (`"type": "clear"`) with
//! `"priority": "normal"`: the app cancels the notification tagged with the collapse key and
//! sets the badge. `ttl` is the notification's, at most 28 days.
//!
//! **Answers** (`classify`), by the `FcmError` detail's `errorCode` first, then the status:
//! UNREGISTERED, SENDER_ID_MISMATCH, and INVALID_ARGUMENT saying "not a valid FCM registration
//! token" without field violations: `InvalidTarget`; any other INVALID_ARGUMENT, other 400s,
//! 413: `Rejected`; QUOTA_EXCEEDED: `Transient` after at least 60 s; UNAVAILABLE, INTERNAL,
//! 408, 429, 5xx: `Transient` (`Retry-After`); THIRD_PARTY_AUTH_ERROR (APNS_AUTH_ERROR), 401
//! after a refresh, 403 and 404 without a code, 3xx: `Misconfigured`. The token endpoint:
//! 400/401/403 (invalid_grant, ...) `Misconfigured`, 408/429/5xx and no answer `Transient`.

use super::common::{self, failed, transient, unix_secs, Clock};
use crate::config::FcmConfig;
use crate::push::http::{Client, Reply};
use crate::push::jws::Rs256;
use crate::push::{Kind, Notification, Outcome, Preview, Provider, ProviderKind, Target};
use async_trait::async_trait;
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const MAX_PAYLOAD: usize = 4096;
const MAX_TTL_SECS: u64 = 28 * 86400;

#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: String,
    #[serde(default)]
    token_uri: String,
    #[serde(default)]
    project_id: String,
}

struct AccessToken {
    value: String,
    refresh_at: SystemTime,
}

pub struct Fcm {
    http: Client,
    send_url: String,
    token_url: String,
    client_email: String,
    key_id: String,
    key: Rs256,
    clock: Clock,
    token: Mutex<Option<AccessToken>>,
}

/// What an FCM answer calls for.
#[derive(Debug, PartialEq)]
pub enum Class {
    Done(Outcome),
    /// 401 without an FCM error: the access token was refused; get a new one.
    Reauthenticate(String),
}

impl Fcm {
    /// From `[push.fcm]` and the service account's JSON key file.
    pub fn new(cfg: &FcmConfig, key_json: &str, http: Client, clock: Clock) -> Result<Fcm, String> {
        let sa: ServiceAccount =
            serde_json::from_str(key_json).map_err(|e| format!("FCM key file: {e}"))?;
        let project = if cfg.project_id.is_empty() {
            &sa.project_id
        } else {
            &cfg.project_id
        };
        if project.is_empty() {
            return Err("push.fcm.project_id is empty and the key file has none".into());
        }
        let token_url = if cfg.token_url.is_empty() {
            sa.token_uri.clone()
        } else {
            cfg.token_url.clone()
        };
        if token_url.is_empty() {
            return Err("push.fcm.token_url is empty and the key file has no token_uri".into());
        }
        let key = Rs256::from_pem(&sa.private_key).map_err(|e| format!("FCM key file: {e}"))?;
        Ok(Fcm {
            http,
            send_url: format!(
                "{}/v1/projects/{project}/messages:send",
                cfg.base_url.trim_end_matches('/')
            ),
            token_url,
            client_email: sa.client_email,
            key_id: sa.private_key_id,
            key,
            clock,
            token: Mutex::new(None),
        })
    }

    /// The cached access token, or a new one (also when `stale` is the cached one).
    async fn access_token(&self, stale: Option<&str>) -> Result<String, Outcome> {
        let mut cached = self.token.lock().await;
        if let Some(t) = &*cached {
            if (self.clock)() < t.refresh_at && stale != Some(t.value.as_str()) {
                return Ok(t.value.clone());
            }
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn fetch_token(&self) -> Result<AccessToken, Outcome> {
        let now = unix_secs(&self.clock);
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if !self.key_id.is_empty() {
            header["kid"] = json!(self.key_id);
        }
        let claims = json!({"iss": self.client_email, "scope": SCOPE, "aud": self.token_url,
                            "iat": now, "exp": now + 3600});
        let jwt = self.key.sign(&header, &claims).map_err(misconfigured)?;
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={jwt}"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let reply = self
            .http
            .send(Method::POST, &self.token_url, headers, Bytes::from(form))
            .await
            .map_err(|f| failed("FCM token", f, false))?;
        let s = reply.status.as_u16();
        if !reply.status.is_success() {
            let reason = format!("FCM token endpoint {s}: {}", common::snippet(&reply));
            return Err(match s {
                408 | 429 | 500..=599 => transient(reason, reply.retry_after()),
                _ => Outcome::Misconfigured { reason },
            });
        }
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            expires_in: u64,
        }
        let a: Answer = serde_json::from_slice(&reply.body)
            .map_err(|e| misconfigured(format!("FCM token endpoint: {e}")))?;
        let margin = if a.expires_in >= 600 {
            300
        } else {
            a.expires_in / 2
        };
        Ok(AccessToken {
            value: a.access_token,
            refresh_at: (self.clock)() + Duration::from_secs(a.expires_in - margin),
        })
    }

    async fn post(&self, body: &Bytes, bearer: &str) -> Result<Reply, Outcome> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let auth = HeaderValue::from_str(&format!("Bearer {bearer}"))
            .map_err(|_| misconfigured("FCM access token is not a header value".into()))?;
        headers.insert(AUTHORIZATION, auth);
        self.http
            .send(Method::POST, &self.send_url, headers, body.clone())
            .await
            .map_err(|f| failed("FCM", f, false))
    }

    async fn send(&self, body: Bytes) -> Result<Outcome, Outcome> {
        let bearer = self.access_token(None).await?;
        let reply = self.post(&body, &bearer).await?;
        match classify(&reply) {
            Class::Done(o) => Ok(o),
            Class::Reauthenticate(_) => {
                let bearer = self.access_token(Some(&bearer)).await?;
                let reply = self.post(&body, &bearer).await?;
                Ok(match classify(&reply) {
                    Class::Done(o) => o,
                    Class::Reauthenticate(reason) => Outcome::Misconfigured { reason },
                })
            }
        }
    }
}

fn misconfigured(reason: String) -> Outcome {
    Outcome::Misconfigured { reason }
}

/// The JSON body of the send request (see the module doc).
pub fn message(token: &str, n: &Notification) -> Vec<u8> {
    common::fit(MAX_PAYLOAD, common::preview(n), |p: Option<&Preview>| {
        let mut android = json!({
            "collapse_key": n.collapse_key,
            "priority": if n.kind == Kind::Message { "high" } else { "normal" },
            "ttl": format!("{}s", n.ttl.as_secs().min(MAX_TTL_SECS)),
        });
        let mut m = json!({"token": token, "data": common::fields(n, true)});
        if let Some(p) = p {
            m["notification"] = json!({"title": p.title, "body": p.body});
            android["notification"] = json!({"tag": n.collapse_key});
        }
        m["android"] = android;
        json!({ "message": m }).to_string().into_bytes()
    })
}

/// An FCM send answer in the bridge's terms (see the module doc).
pub fn classify(reply: &Reply) -> Class {
    let s = reply.status.as_u16();
    if reply.status.is_success() {
        return Class::Done(Outcome::Accepted);
    }
    let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let e = &v["error"];
    let details = e["details"].as_array().cloned().unwrap_or_default();
    let is = |d: &Value, t: &str| d["@type"].as_str().is_some_and(|x| x.ends_with(t));
    let code = details
        .iter()
        .find(|d| is(d, "google.firebase.fcm.v1.FcmError"))
        .and_then(|d| d["errorCode"].as_str())
        .unwrap_or("");
    let field_violations = details.iter().any(|d| {
        is(d, "google.rpc.BadRequest")
            && d["fieldViolations"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
    });
    let message = e["message"].as_str().unwrap_or("");
    let status = e["status"].as_str().unwrap_or("");
    let reason = format!(
        "FCM {s} {}: {message}",
        if code.is_empty() { status } else { code }
    );
    let ra = reply.retry_after();
    let invalid = |reason| {
        Class::Done(Outcome::InvalidTarget {
            reason,
            since_ms: None,
        })
    };
    let done = Class::Done;
    match code {
        "UNREGISTERED" | "SENDER_ID_MISMATCH" => invalid(reason),
        "INVALID_ARGUMENT"
            if !field_violations
                && message
                    .to_ascii_lowercase()
                    .contains("not a valid fcm registration token") =>
        {
            invalid(reason)
        }
        "INVALID_ARGUMENT" => done(Outcome::Rejected { reason }),
        "QUOTA_EXCEEDED" => {
            let at_least = Duration::from_secs(60);
            done(transient(
                reason,
                Some(ra.map_or(at_least, |d| d.max(at_least))),
            ))
        }
        "UNAVAILABLE" | "INTERNAL" => done(transient(reason, ra)),
        "THIRD_PARTY_AUTH_ERROR" | "APNS_AUTH_ERROR" => done(Outcome::Misconfigured { reason }),
        _ => match s {
            401 => Class::Reauthenticate(reason),
            403 | 404 | 300..=399 => done(Outcome::Misconfigured { reason }),
            408 | 429 | 500..=599 => done(transient(reason, ra)),
            _ => done(Outcome::Rejected { reason }),
        },
    }
}

#[async_trait]
impl Provider for Fcm {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Fcm
    }

    async fn deliver(&self, target: &Target, n: &Notification) -> Outcome {
        let Some(token) = target.token.as_deref().filter(|t| !t.is_empty()) else {
            return Outcome::InvalidTarget {
                reason: "FCM target without a token".into(),
                since_ms: None,
            };
        };
        let body = Bytes::from(message(token, n));
        match self.send(body).await {
            Ok(o) | Err(o) => o,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    fn reply(status: u16, code: Option<&str>, message: &str, extra: Option<Value>) -> Reply {
        let mut details = vec![];
        if let Some(c) = code {
            details.push(json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}));
        }
        if let Some(x) = extra {
            details.push(x);
        }
        let body = json!({"error": {"code": status, "message": message, "status": "X", "details": details}});
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    fn kind(c: Class) -> &'static str {
        match c {
            Class::Reauthenticate(_) => "reauth",
            Class::Done(Outcome::Accepted) => "accepted",
            Class::Done(Outcome::Transient { .. }) => "transient",
            Class::Done(Outcome::InvalidTarget { .. }) => "invalid",
            Class::Done(Outcome::Rejected { .. }) => "rejected",
            Class::Done(Outcome::Misconfigured { .. }) => "misconfigured",
        }
    }

    #[test]
    fn classification_table() {
        let bad_token = "The registration token is not a valid FCM registration token";
        let violation = json!({"@type": "type.googleapis.com/google.rpc.BadRequest",
                               "fieldViolations": [{"field": "message.data[0].value"}]});
        for (status, code, msg, extra, want) in [
            (200, None, "", None, "accepted"),
            (
                404,
                Some("UNREGISTERED"),
                "Requested entity was not found.",
                None,
                "invalid",
            ),
            (403, Some("SENDER_ID_MISMATCH"), "", None, "invalid"),
            (400, Some("INVALID_ARGUMENT"), bad_token, None, "invalid"),
            (
                400,
                Some("INVALID_ARGUMENT"),
                bad_token,
                Some(violation.clone()),
                "rejected",
            ),
            (
                400,
                Some("INVALID_ARGUMENT"),
                "Invalid value at 'message.data[0].value'",
                Some(violation),
                "rejected",
            ),
            (400, None, "bad", None, "rejected"),
            (413, None, "too big", None, "rejected"),
            (429, Some("QUOTA_EXCEEDED"), "", None, "transient"),
            (503, Some("UNAVAILABLE"), "", None, "transient"),
            (500, Some("INTERNAL"), "", None, "transient"),
            (502, None, "", None, "transient"),
            (
                401,
                Some("THIRD_PARTY_AUTH_ERROR"),
                "",
                None,
                "misconfigured",
            ),
            (401, Some("APNS_AUTH_ERROR"), "", None, "misconfigured"),
            (
                401,
                None,
                "Request had invalid authentication credentials.",
                None,
                "reauth",
            ),
            (403, None, "Permission denied", None, "misconfigured"),
            (404, None, "no such project", None, "misconfigured"),
        ] {
            assert_eq!(
                kind(classify(&reply(status, code, msg, extra))),
                want,
                "{status} {code:?} {msg}"
            );
        }
        // QUOTA_EXCEEDED waits at least a minute, longer if Retry-After says so.
        let mut r = reply(429, Some("QUOTA_EXCEEDED"), "", None);
        let Class::Done(Outcome::Transient { retry_after, .. }) = classify(&r) else {
            panic!()
        };
        assert_eq!(retry_after, Some(Duration::from_secs(60)));
        r.headers
            .insert("retry-after", HeaderValue::from_static("90"));
        let Class::Done(Outcome::Transient { retry_after, .. }) = classify(&r) else {
            panic!()
        };
        assert_eq!(retry_after, Some(Duration::from_secs(90)));
    }
}
