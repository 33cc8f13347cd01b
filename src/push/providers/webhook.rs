//! Webhooks: an HTTPS POST to the app's own backend, signed per Standard Webhooks
//! (`push::sign`), for apps that deliver notifications themselves.
//!
//! **Request.** `POST <target endpoint>` (`https://`, or `http://` with
//! `push.webhook.allow_http`), headers `content-type: application/json`,
//! `webhook-id: <notification id>` (the same on every retry: an idempotency key),
//! `webhook-timestamp: <unix seconds of this attempt>`, `webhook-signature: v1,<base64
//! HMAC-SHA256 over "{id}.{timestamp}.{body}">` (one per configured secret, space-separated,
//! for rotation), `user-agent: parley-push`; the body (at most 4096 bytes: a preview is cut
//! to fit):
//!
//! ```json
//! {"type": "message", "id": "<notification id>", "user_id": "u_1", "device_id": "d_1",
//!  "conversation_id": "c_1", "seq": 42, "badge": 3, "unread": 2,
//!  "title": "Alice", "body": "hi"}
//! ```
//!
//! `title` and `body` only with a preview; a clear is `"type": "clear"`. A receiver should
//! check the signature with a Standard Webhooks library and reject timestamps more than five
//! minutes away.
//!
//! **Answers** (`classify`): 2xx `Accepted`; 410 `InvalidTarget` (the endpoint is gone);
//! 401 and 403 `Misconfigured` (the receiver refused the signature: the secret differs);
//! 408, 429, 5xx `Transient` (`Retry-After`); anything else, 3xx included (redirects are not
//! followed), `Rejected`. An endpoint that is not an allowed URL: `InvalidTarget`.

use super::common::{self, failed, transient, unix_secs, Clock};
use crate::push::http::{Client, Reply};
use crate::push::sign::{signature_header, WebhookKey};
use crate::push::{Notification, Outcome, Preview, Provider, ProviderKind, Target};
use async_trait::async_trait;
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::Method;
use serde_json::{json, Value};

const MAX_PAYLOAD: usize = 4096;

pub struct Webhook {
    http: Client,
    keys: Vec<WebhookKey>,
    clock: Clock,
}

impl Webhook {
    /// `secrets`: one or more `whsec_...` secrets separated by white space; every one signs.
    pub fn new(secrets: &str, http: Client, clock: Clock) -> Result<Webhook, String> {
        let keys = secrets
            .split_whitespace()
            .map(WebhookKey::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("webhook secret is empty".into());
        }
        Ok(Webhook { http, keys, clock })
    }
}

/// The JSON body (see the module doc).
pub fn payload(target: &Target, n: &Notification) -> Vec<u8> {
    common::fit(MAX_PAYLOAD, common::preview(n), |p: Option<&Preview>| {
        let mut m = common::fields(n, false);
        m.insert("id".into(), json!(n.id));
        m.insert("user_id".into(), json!(n.user_id));
        m.insert("device_id".into(), json!(target.device_id));
        if let Some(p) = p {
            m.insert("title".into(), json!(p.title));
            m.insert("body".into(), json!(p.body));
        }
        Value::Object(m).to_string().into_bytes()
    })
}

/// A receiver's answer in the bridge's terms (see the module doc).
pub fn classify(reply: &Reply) -> Outcome {
    let s = reply.status.as_u16();
    if reply.status.is_success() {
        return Outcome::Accepted;
    }
    let reason = format!("webhook {s}: {}", common::snippet(reply));
    match s {
        410 => Outcome::InvalidTarget {
            reason,
            since_ms: None,
        },
        401 | 403 => Outcome::Misconfigured { reason },
        408 | 429 | 500..=599 => transient(reason, reply.retry_after()),
        _ => Outcome::Rejected { reason },
    }
}

#[async_trait]
impl Provider for Webhook {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Webhook
    }

    async fn deliver(&self, target: &Target, n: &Notification) -> Outcome {
        let Some(url) = target.endpoint.as_deref().filter(|u| !u.is_empty()) else {
            return Outcome::InvalidTarget {
                reason: "webhook target without a URL".into(),
                since_ms: None,
            };
        };
        let body = payload(target, n);
        let ts = unix_secs(&self.clock);
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, v: &str| -> bool {
            match HeaderValue::from_str(v) {
                Ok(v) => h.insert(HeaderName::from_static(name), v).is_none(),
                Err(_) => false,
            }
        };
        put("content-type", "application/json");
        put("user-agent", "parley-push");
        put("webhook-timestamp", &ts.to_string());
        put(
            "webhook-signature",
            &signature_header(&self.keys, &n.id, ts, &body),
        );
        if !put("webhook-id", &n.id) {
            return Outcome::Rejected {
                reason: "webhook: the notification id is not a header value".into(),
            };
        }
        match self
            .http
            .send(Method::POST, url, h, Bytes::from(body))
            .await
        {
            Ok(reply) => classify(&reply),
            Err(f) => failed("webhook", f, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    #[test]
    fn classification() {
        let r = |s: u16| Reply {
            status: StatusCode::from_u16(s).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        assert_eq!(classify(&r(200)), Outcome::Accepted);
        assert_eq!(classify(&r(204)), Outcome::Accepted);
        assert!(matches!(classify(&r(410)), Outcome::InvalidTarget { .. }));
        assert!(matches!(classify(&r(401)), Outcome::Misconfigured { .. }));
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(classify(&r(s)), Outcome::Transient { .. }), "{s}");
        }
        for s in [301, 302, 400, 404, 413] {
            assert!(matches!(classify(&r(s)), Outcome::Rejected { .. }), "{s}");
        }
    }
}
