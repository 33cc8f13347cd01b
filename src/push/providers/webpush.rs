//! Web Push: RFC 8030 (the request to the browser's push service), RFC 8291 (the payload,
//! encrypted for the subscription's keys), RFC 8292 (VAPID: the deployment's identity).
//!
//! **VAPID.** An ES256 JWT, header `{"typ":"JWT","alg":"ES256"}`, claims `{"aud": <origin of
//! the endpoint>, "exp": now + 12 h, "sub": <push.webpush.subject>}`, signed with the VAPID
//! key; one per push-service origin, re-signed when less than an hour of it is left (origins
//! kept: at most 1024).
//!
//! **Request.** `POST <subscription endpoint>`, headers `ttl: <seconds>`, `urgency: high` for
//! a message and `normal` for a clear, `topic: <collapse_key>` (when it is at most 32
//! characters of the base64url alphabet: a newer message replaces one still waiting in the
//! push service), `authorization: vapid t=<JWT>, k=<VAPID public key, base64url>`,
//! `content-encoding: aes128gcm`, `content-type: application/octet-stream`; the body is the
//! RFC 8291 encryption (a fresh sender key and salt each time, one 4096-byte record) of:
//!
//! ```json
//! {"type": "message", "conversation_id": "c_1", "seq": 42, "badge": 3, "unread": 2,
//!  "title": "Alice", "body": "hi"}
//! ```
//!
//! `title` and `body` only with a preview (cut so the JSON is at most 3993 bytes, the most
//! one record holds). A clear is `{"type": "clear", ...}`: the service worker closes the
//! notifications tagged with the conversation and updates the badge. A subscription without
//! `p256dh`/`auth` gets an empty push (no body, no content-encoding): the service worker
//! must fetch what to show.
//!
//! **Answers** (`classify`): 2xx `Accepted`; 404 and 410 `InvalidTarget` (the subscription
//! expired or was withdrawn); 401, 403, and a 400 that names the JWT/VAPID `Misconfigured`;
//! 408, 429, 5xx `Transient` (`Retry-After`); any other status (other 400s, 413, 3xx)
//! `Rejected`. An endpoint that is not an allowed `https` URL, and subscription keys that
//! are not a P-256 point and 16 bytes: `InvalidTarget`.

use super::common::{self, failed, transient, unix_secs, Clock};
use crate::config::WebPushConfig;
use crate::push::http::{Client, Reply};
use crate::push::jws::{b64url, b64url_decode, Es256};
use crate::push::{ece, Kind, Notification, Outcome, Preview, Provider, ProviderKind, Target};
use async_trait::async_trait;
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Uri};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// A VAPID JWT lives this long (RFC 8292: at most 24 h) ...
const VAPID_LIFETIME: u64 = 12 * 3600;
/// ... and is re-signed when less than this is left.
const VAPID_MARGIN: u64 = 3600;
const MAX_ORIGINS: usize = 1024;

pub struct WebPush {
    http: Client,
    key: Es256,
    public_key: String,
    subject: String,
    clock: Clock,
    /// origin -> (JWT, exp).
    vapid: Mutex<HashMap<String, (String, u64)>>,
}

impl WebPush {
    /// From `[push.webpush]` and the VAPID key (PKCS#8 PEM, P-256).
    pub fn new(
        cfg: &WebPushConfig,
        pem: &str,
        http: Client,
        clock: Clock,
    ) -> Result<WebPush, String> {
        if !(cfg.subject.starts_with("mailto:") || cfg.subject.starts_with("https:")) {
            return Err("push.webpush.subject must be a mailto: or https: URI".into());
        }
        let key = Es256::from_pem(pem).map_err(|e| format!("VAPID key: {e}"))?;
        Ok(WebPush {
            http,
            public_key: b64url(key.public_key()),
            key,
            subject: cfg.subject.clone(),
            clock,
            vapid: Mutex::new(HashMap::new()),
        })
    }

    /// The VAPID public key, base64url: the `applicationServerKey` browsers subscribe with.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    fn vapid(&self, origin: &str) -> Result<String, Outcome> {
        let now = unix_secs(&self.clock);
        let mut cache = self.vapid.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((jwt, exp)) = cache.get(origin) {
            if *exp > now + VAPID_MARGIN {
                return Ok(jwt.clone());
            }
        }
        let exp = now + VAPID_LIFETIME;
        let jwt = self
            .key
            .sign(
                &json!({"typ": "JWT", "alg": "ES256"}),
                &json!({"aud": origin, "exp": exp, "sub": self.subject}),
            )
            .map_err(|reason| Outcome::Misconfigured { reason })?;
        if cache.len() >= MAX_ORIGINS {
            cache.retain(|_, (_, e)| *e > now + VAPID_MARGIN);
            if cache.len() >= MAX_ORIGINS {
                cache.clear();
            }
        }
        cache.insert(origin.to_string(), (jwt.clone(), exp));
        Ok(jwt)
    }

    fn headers(&self, n: &Notification, jwt: &str, encrypted: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, v: &str| {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        put("ttl", &n.ttl.as_secs().to_string());
        put(
            "urgency",
            if n.kind == Kind::Message {
                "high"
            } else {
                "normal"
            },
        );
        if is_topic(&n.collapse_key) {
            put("topic", &n.collapse_key);
        }
        put(
            "authorization",
            &format!("vapid t={jwt}, k={}", self.public_key),
        );
        if encrypted {
            put("content-encoding", "aes128gcm");
            put("content-type", "application/octet-stream");
        }
        h
    }
}

/// RFC 8030 section 5.4: at most 32 characters of the URL and filename safe base64 alphabet.
fn is_topic(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The endpoint's origin, as VAPID's `aud`: scheme, host, and the port unless it is 443.
fn origin(endpoint: &str) -> Option<String> {
    let uri: Uri = endpoint.parse().ok()?;
    if uri.scheme_str() != Some("https") {
        return None;
    }
    let host = uri.host().filter(|h| !h.is_empty())?;
    Some(match uri.port_u16() {
        Some(p) if p != 443 => format!("https://{host}:{p}"),
        _ => format!("https://{host}"),
    })
}

/// The plaintext JSON (see the module doc).
pub fn payload(n: &Notification) -> Vec<u8> {
    common::fit(
        ece::MAX_PLAINTEXT,
        common::preview(n),
        |p: Option<&Preview>| {
            let mut m = common::fields(n, false);
            if let Some(p) = p {
                m.insert("title".into(), json!(p.title));
                m.insert("body".into(), json!(p.body));
            }
            Value::Object(m).to_string().into_bytes()
        },
    )
}

fn encrypt(target: &Target, plaintext: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let (Some(p256dh), Some(auth)) = (target.p256dh.as_deref(), target.auth.as_deref()) else {
        return Ok(None);
    };
    let ua_public = b64url_decode(p256dh).map_err(|e| format!("p256dh: {e}"))?;
    let auth = b64url_decode(auth).map_err(|e| format!("auth: {e}"))?;
    ece::encrypt(&ua_public, &auth, plaintext).map(Some)
}

/// A push service's answer in the bridge's terms (see the module doc).
pub fn classify(reply: &Reply) -> Outcome {
    let s = reply.status.as_u16();
    if reply.status.is_success() {
        return Outcome::Accepted;
    }
    let text = common::snippet(reply);
    let reason = format!("Web Push {s}: {text}");
    let lower = text.to_ascii_lowercase();
    match s {
        404 | 410 => Outcome::InvalidTarget {
            reason,
            since_ms: None,
        },
        401 | 403 => Outcome::Misconfigured { reason },
        400 if lower.contains("jwt") || lower.contains("vapid") => {
            Outcome::Misconfigured { reason }
        }
        408 | 429 | 500..=599 => transient(reason, reply.retry_after()),
        _ => Outcome::Rejected { reason },
    }
}

#[async_trait]
impl Provider for WebPush {
    fn kind(&self) -> ProviderKind {
        ProviderKind::WebPush
    }

    async fn deliver(&self, target: &Target, n: &Notification) -> Outcome {
        let invalid = |reason: String| Outcome::InvalidTarget {
            reason,
            since_ms: None,
        };
        let endpoint = target.endpoint.as_deref().unwrap_or("");
        let Some(origin) = origin(endpoint) else {
            return invalid(format!(
                "Web Push endpoint is not an https URL: {endpoint:?}"
            ));
        };
        let body = match encrypt(target, &payload(n)) {
            Ok(b) => b,
            Err(e) => return invalid(format!("Web Push subscription keys: {e}")),
        };
        let jwt = match self.vapid(&origin) {
            Ok(j) => j,
            Err(o) => return o,
        };
        let headers = self.headers(n, &jwt, body.is_some());
        let body = Bytes::from(body.unwrap_or_default());
        match self.http.send(Method::POST, endpoint, headers, body).await {
            Ok(reply) => classify(&reply),
            Err(f) => failed("Web Push", f, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    #[test]
    fn origins_topics_and_classification() {
        assert_eq!(
            origin("https://fcm.googleapis.com/fcm/send/x").unwrap(),
            "https://fcm.googleapis.com"
        );
        assert_eq!(
            origin("https://127.0.0.1:8443/push/a").unwrap(),
            "https://127.0.0.1:8443"
        );
        assert_eq!(origin("https://h:443/p").unwrap(), "https://h");
        assert!(origin("http://h/p").is_none());
        assert!(is_topic("abcdefghijklmnopqrstuvwxyz012345"));
        assert!(!is_topic("abcdefghijklmnopqrstuvwxyz0123456"));
        assert!(!is_topic("a=="));
        let r = |s: u16, body: &str| Reply {
            status: StatusCode::from_u16(s).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        };
        assert_eq!(classify(&r(201, "")), Outcome::Accepted);
        assert!(matches!(
            classify(&r(404, "")),
            Outcome::InvalidTarget { .. }
        ));
        assert!(matches!(
            classify(&r(410, "")),
            Outcome::InvalidTarget { .. }
        ));
        assert!(matches!(
            classify(&r(401, "")),
            Outcome::Misconfigured { .. }
        ));
        assert!(matches!(
            classify(&r(403, "")),
            Outcome::Misconfigured { .. }
        ));
        assert!(matches!(
            classify(&r(400, r#"{"reason":"BadJwtToken"}"#)),
            Outcome::Misconfigured { .. }
        ));
        assert!(matches!(
            classify(&r(400, "bad TTL")),
            Outcome::Rejected { .. }
        ));
        assert!(matches!(classify(&r(413, "")), Outcome::Rejected { .. }));
        assert!(matches!(classify(&r(429, "")), Outcome::Transient { .. }));
        assert!(matches!(classify(&r(502, "")), Outcome::Transient { .. }));
    }
}
