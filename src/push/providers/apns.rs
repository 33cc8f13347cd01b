//! Apple Push Notification service: the HTTP/2 provider API with token authentication.
//!
//! **Connection.** One HTTP/2 connection to `push.apns.base_url`, kept open and shared by
//! every request, reopened after a GOAWAY or an error (`push::http`; the client refuses a
//! server that does not negotiate `h2`).
//!
//! **Provider token.** An ES256 JWT, header `{"alg":"ES256","kid":"<key_id>"}`, claims
//! `{"iss":"<team_id>","iat":<unix seconds>}`, signed with the `.p8` key. One token is shared
//! by every request and re-signed once it is 50 minutes old (Apple refuses one older than
//! 60 and answers TooManyProviderTokenUpdates to one renewed more often than every 20). An
//! ExpiredProviderToken answer re-signs it at once if it is at least 20 minutes old and sends
//! the notification once more; a younger one means the clock is wrong: `Misconfigured`.
//!
//! **Request.** `POST {base_url}/3/device/{device token, hex}`, headers
//! `authorization: bearer <JWT>`, `apns-topic: <topic>`, `apns-id: <notification id>` (when
//! it is a UUID: the same on every retry), `apns-collapse-id: <collapse_key>`,
//! `apns-expiration: <now + ttl, unix seconds; 0 when the ttl is 0>`, and for a message
//! `apns-push-type: alert`, `apns-priority: 10`, for a clear `apns-push-type: background`,
//! `apns-priority: 5`. The body (at most 4096 bytes: a preview is cut to fit):
//!
//! ```json
//! {"aps": {"alert": {"title": "Alice", "body": "hi"}, "sound": "default",
//!          "thread-id": "<conversation_id>", "badge": 3},
//!  "type": "message", "conversation_id": "c_1", "seq": 42, "badge": 3, "unread": 2}
//! ```
//!
//! Without a preview (`id_only`), the alert is `{"body": "New message"}` with
//! `"mutable-content": 1`: the app's notification service extension fetches the message and
//! replaces it (iOS wakes the extension only for such an alert). A muted conversation
//! (`"muted": true` in the body) gets no `alert`, `sound` or `thread-id`: `aps` is
//! `{"badge": N}`, a badge-only update. A clear is `{"aps": {"content-available": 1}, "type": "clear", ...}`
//! (a background push: the app removes the conversation's notifications and sets the badge
//! from `badge`; Apple throttles these and may drop them).
//!
//! **Answers** (`classify`, by `reason`, then the status): 200 `Accepted`; BadDeviceToken,
//! DeviceTokenNotForTopic, any 410 (Unregistered, ExpiredToken): `InvalidTarget`, with the
//! 410's `timestamp` (ms) as `since_ms`; BadTopic, MissingTopic, TopicDisallowed,
//! InvalidProviderToken, MissingProviderToken, BadCertificate, BadCertificateEnvironment,
//! Forbidden, TooManyProviderTokenUpdates, other 403s and 3xx: `Misconfigured`; IdleTimeout,
//! TooManyRequests, 429, 500, 503 (InternalServerError, ServiceUnavailable, Shutdown):
//! `Transient`; every other 4xx (BadCollapseId, BadExpirationDate, BadMessageId, BadPriority,
//! DuplicateHeaders, InvalidPushType, MissingDeviceToken, PayloadEmpty, PayloadTooLarge,
//! BadPath, MethodNotAllowed): `Rejected`.

use super::common::{self, failed, transient, unix_secs, Clock};
use crate::config::ApnsConfig;
use crate::push::http::{Client, Reply};
use crate::push::jws::Es256;
use crate::push::{Kind, Notification, Outcome, Preview, Provider, ProviderKind, Target};
use async_trait::async_trait;
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use hyper::Method;
use serde_json::{json, Map, Value};
use std::sync::Mutex;

const MAX_PAYLOAD: usize = 4096;
/// What an `id_only` alert says until the app's extension replaces it (and if it cannot).
pub const ID_ONLY_ALERT: &str = "New message";
/// A provider token is re-signed at this age (seconds) ...
const RESIGN_AFTER: u64 = 50 * 60;
/// ... and never younger than this, even when APNs says it expired.
const MIN_AGE: u64 = 20 * 60;

struct ProviderToken {
    jwt: String,
    iat: u64,
}

pub struct Apns {
    http: Client,
    base_url: String,
    topic: String,
    key_id: String,
    team_id: String,
    key: Es256,
    clock: Clock,
    token: Mutex<Option<ProviderToken>>,
}

#[derive(Debug, PartialEq)]
pub enum Class {
    Done(Outcome),
    /// 403 ExpiredProviderToken.
    TokenExpired(String),
}

impl Apns {
    /// From `[push.apns]` and the `.p8` key (PKCS#8 PEM).
    pub fn new(cfg: &ApnsConfig, p8: &str, http: Client, clock: Clock) -> Result<Apns, String> {
        for (name, v) in [
            ("key_id", &cfg.key_id),
            ("team_id", &cfg.team_id),
            ("topic", &cfg.topic),
        ] {
            if v.is_empty() {
                return Err(format!("push.apns.{name} must be set with an APNs key"));
            }
        }
        Ok(Apns {
            http,
            base_url: cfg.base_url.trim_end_matches('/').to_string(),
            topic: cfg.topic.clone(),
            key_id: cfg.key_id.clone(),
            team_id: cfg.team_id.clone(),
            key: Es256::from_pem(p8).map_err(|e| format!("APNs key: {e}"))?,
            clock,
            token: Mutex::new(None),
        })
    }

    /// The shared provider token; a new one if there is none, it is 50 minutes old, or
    /// `expired` is it and it is at least 20 minutes old. `Err` if `expired` is younger.
    fn provider_token(&self, expired: Option<&str>) -> Result<String, Outcome> {
        let now = unix_secs(&self.clock);
        let mut cached = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = &*cached {
            let age = now.saturating_sub(t.iat);
            let refused = expired == Some(t.jwt.as_str());
            if refused && age < MIN_AGE {
                return Err(Outcome::Misconfigured {
                    reason: format!(
                        "APNs: ExpiredProviderToken for a token signed {age} s ago: is the clock right?"
                    ),
                });
            }
            if !refused && age < RESIGN_AFTER {
                return Ok(t.jwt.clone());
            }
        }
        let jwt = self
            .key
            .sign(
                &json!({"alg": "ES256", "kid": self.key_id}),
                &json!({"iss": self.team_id, "iat": now}),
            )
            .map_err(|reason| Outcome::Misconfigured { reason })?;
        *cached = Some(ProviderToken {
            jwt: jwt.clone(),
            iat: now,
        });
        Ok(jwt)
    }

    fn headers(&self, n: &Notification, jwt: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, v: &str| {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        put("apns-topic", &self.topic);
        let (push_type, priority) = match n.kind {
            Kind::Message => ("alert", "10"),
            Kind::Clear => ("background", "5"),
        };
        put("apns-push-type", push_type);
        put("apns-priority", priority);
        let ttl = n.ttl.as_secs();
        let expiration = if ttl == 0 {
            0
        } else {
            unix_secs(&self.clock) + ttl
        };
        put("apns-expiration", &expiration.to_string());
        if !n.collapse_key.is_empty() && n.collapse_key.len() <= 64 {
            put("apns-collapse-id", &n.collapse_key);
        }
        if is_uuid(&n.id) {
            put("apns-id", &n.id.to_ascii_lowercase());
        }
        put("content-type", "application/json");
        if let Ok(v) = HeaderValue::from_str(&format!("bearer {jwt}")) {
            h.insert(AUTHORIZATION, v);
        }
        h
    }

    async fn post(
        &self,
        url: &str,
        n: &Notification,
        body: &Bytes,
        jwt: &str,
    ) -> Result<Reply, Outcome> {
        self.http
            .send(Method::POST, url, self.headers(n, jwt), body.clone())
            .await
            .map_err(|f| failed("APNs", f, false))
    }

    async fn send(&self, token: &str, n: &Notification) -> Result<Outcome, Outcome> {
        let url = format!("{}/3/device/{token}", self.base_url);
        let body = Bytes::from(payload(n));
        let jwt = self.provider_token(None)?;
        let reply = self.post(&url, n, &body, &jwt).await?;
        match classify(&reply) {
            Class::Done(o) => Ok(o),
            Class::TokenExpired(_) => {
                let jwt = self.provider_token(Some(&jwt))?;
                let reply = self.post(&url, n, &body, &jwt).await?;
                Ok(match classify(&reply) {
                    Class::Done(o) => o,
                    Class::TokenExpired(reason) => Outcome::Misconfigured { reason },
                })
            }
        }
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The JSON body (see the module doc).
pub fn payload(n: &Notification) -> Vec<u8> {
    common::fit(MAX_PAYLOAD, common::preview(n), |p: Option<&Preview>| {
        let mut aps = Map::new();
        match n.kind {
            Kind::Message => {
                let alert = match p {
                    Some(p) => Some(json!({"title": p.title, "body": p.body})),
                    // id_only: an alert the app's notification service extension replaces
                    // with the message it fetches (iOS runs the extension only for an
                    // alert with mutable-content; a badge-only push would show nothing).
                    None if !n.muted => Some(json!({"body": ID_ONLY_ALERT})),
                    None => None,
                };
                if let Some(alert) = alert {
                    aps.insert("alert".into(), alert);
                    aps.insert("sound".into(), json!("default"));
                    aps.insert("thread-id".into(), json!(n.conversation_id));
                    if p.is_none() {
                        aps.insert("mutable-content".into(), json!(1));
                    }
                }
                aps.insert("badge".into(), json!(n.badge));
            }
            Kind::Clear => {
                aps.insert("content-available".into(), json!(1));
            }
        }
        let mut body = common::fields(n, false);
        body.insert("aps".into(), Value::Object(aps));
        Value::Object(body).to_string().into_bytes()
    })
}

/// An APNs answer in the bridge's terms (see the module doc).
pub fn classify(reply: &Reply) -> Class {
    let s = reply.status.as_u16();
    if reply.status.is_success() {
        return Class::Done(Outcome::Accepted);
    }
    let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let r = v["reason"].as_str().unwrap_or("");
    let reason = format!("APNs {s} {r}");
    let done = Class::Done;
    let invalid = |since_ms| {
        done(Outcome::InvalidTarget {
            reason: reason.clone(),
            since_ms,
        })
    };
    match (s, r) {
        (_, "ExpiredProviderToken") => Class::TokenExpired(reason),
        (_, "BadDeviceToken" | "DeviceTokenNotForTopic") => invalid(None),
        (410, _) => invalid(v["timestamp"].as_i64()),
        (
            _,
            "BadTopic"
            | "MissingTopic"
            | "TopicDisallowed"
            | "InvalidProviderToken"
            | "MissingProviderToken"
            | "BadCertificate"
            | "BadCertificateEnvironment"
            | "Forbidden"
            | "TooManyProviderTokenUpdates",
        )
        | (403 | 300..=399, _) => done(Outcome::Misconfigured { reason }),
        (_, "IdleTimeout") | (408 | 429 | 500..=599, _) => {
            done(transient(reason, reply.retry_after()))
        }
        _ => done(Outcome::Rejected { reason }),
    }
}

#[async_trait]
impl Provider for Apns {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Apns
    }

    async fn deliver(&self, target: &Target, n: &Notification) -> Outcome {
        let token = target.token.as_deref().unwrap_or("");
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Outcome::InvalidTarget {
                reason: "APNs target without a hex device token".into(),
                since_ms: None,
            };
        }
        match self.send(token, n).await {
            Ok(o) | Err(o) => o,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    fn reply(status: u16, body: Value) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    fn kind(c: &Class) -> &'static str {
        match c {
            Class::TokenExpired(_) => "resign",
            Class::Done(Outcome::Accepted) => "accepted",
            Class::Done(Outcome::Transient { .. }) => "transient",
            Class::Done(Outcome::InvalidTarget { .. }) => "invalid",
            Class::Done(Outcome::Rejected { .. }) => "rejected",
            Class::Done(Outcome::Misconfigured { .. }) => "misconfigured",
        }
    }

    #[test]
    fn classification_table() {
        let table = [
            (200, "", "accepted"),
            (400, "BadDeviceToken", "invalid"),
            (400, "DeviceTokenNotForTopic", "invalid"),
            (410, "Unregistered", "invalid"),
            (410, "ExpiredToken", "invalid"),
            (400, "TopicDisallowed", "misconfigured"),
            (400, "BadTopic", "misconfigured"),
            (400, "MissingTopic", "misconfigured"),
            (403, "InvalidProviderToken", "misconfigured"),
            (403, "MissingProviderToken", "misconfigured"),
            (403, "BadCertificate", "misconfigured"),
            (403, "BadCertificateEnvironment", "misconfigured"),
            (403, "Forbidden", "misconfigured"),
            (429, "TooManyProviderTokenUpdates", "misconfigured"),
            (403, "ExpiredProviderToken", "resign"),
            (400, "IdleTimeout", "transient"),
            (429, "TooManyRequests", "transient"),
            (500, "InternalServerError", "transient"),
            (503, "ServiceUnavailable", "transient"),
            (503, "Shutdown", "transient"),
            (400, "BadCollapseId", "rejected"),
            (400, "BadExpirationDate", "rejected"),
            (400, "BadMessageId", "rejected"),
            (400, "BadPriority", "rejected"),
            (400, "DuplicateHeaders", "rejected"),
            (400, "InvalidPushType", "rejected"),
            (400, "MissingDeviceToken", "rejected"),
            (400, "PayloadEmpty", "rejected"),
            (413, "PayloadTooLarge", "rejected"),
            (404, "BadPath", "rejected"),
            (405, "MethodNotAllowed", "rejected"),
        ];
        for (status, r, want) in table {
            let c = classify(&reply(status, json!({ "reason": r })));
            assert_eq!(kind(&c), want, "{status} {r}");
        }
        let c = classify(&reply(
            410,
            json!({"reason": "Unregistered", "timestamp": 1508249865488i64}),
        ));
        assert!(matches!(
            c,
            Class::Done(Outcome::InvalidTarget {
                since_ms: Some(1508249865488),
                ..
            })
        ));
    }

    #[test]
    fn uuids() {
        assert!(is_uuid("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400g"));
    }
}
