//! What the four providers share: the clock their credentials are timed by, the fields every
//! payload carries, cutting a preview to a size limit, and turning HTTP failures into
//! outcomes.

use crate::push::http::{Failure, Reply};
use crate::push::{Kind, Notification, Outcome, Preview};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall clock the providers sign and expire credentials by (JWT `iat`/`exp`, the OAuth
/// token's lifetime, `apns-expiration`, `webhook-timestamp`). Tests move it forward to check
/// token lifetimes without waiting an hour.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

pub(crate) fn unix_secs(clock: &Clock) -> u64 {
    clock()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

pub(crate) fn kind_str(kind: Kind) -> &'static str {
    match kind {
        Kind::Message => "message",
        Kind::Clear => "clear",
    }
}

/// The preview a notification may carry: only a `Message`'s.
pub(crate) fn preview(n: &Notification) -> Option<&Preview> {
    match n.kind {
        Kind::Message => n.preview.as_ref(),
        Kind::Clear => None,
    }
}

/// `type`, `conversation_id`, `seq`, `badge`, `unread`, and `muted: true` for a muted
/// conversation: numbers (and the flag) as JSON values, or as strings where the provider wants
/// only strings (FCM `data`).
pub(crate) fn fields(n: &Notification, strings: bool) -> Map<String, Value> {
    let num = |v: u64| {
        if strings {
            json!(v.to_string())
        } else {
            json!(v)
        }
    };
    let mut m = Map::new();
    m.insert("type".into(), json!(kind_str(n.kind)));
    m.insert("conversation_id".into(), json!(n.conversation_id));
    m.insert("seq".into(), num(n.seq));
    m.insert("badge".into(), num(n.badge));
    m.insert("unread".into(), num(n.unread));
    if n.muted {
        let flag = if strings { json!("true") } else { json!(true) };
        m.insert("muted".into(), flag);
    }
    m
}

/// `build(preview)` with the preview cut (the body first, then the title, at character
/// boundaries, marked with "…") to the longest that makes the result at most `limit` bytes.
/// Without a preview, or if even an empty one does not fit, `build`'s output as it is.
pub(crate) fn fit(
    limit: usize,
    preview: Option<&Preview>,
    build: impl Fn(Option<&Preview>) -> Vec<u8>,
) -> Vec<u8> {
    let Some(orig) = preview else {
        return build(None);
    };
    let full = build(Some(orig));
    if full.len() <= limit {
        return full;
    }
    let with = |title: &str, body: &str| {
        build(Some(&Preview {
            title: title.to_string(),
            body: body.to_string(),
        }))
    };
    if let Some(out) = longest(&orig.body, limit, |b| with(&orig.title, b)) {
        return out;
    }
    longest(&orig.title, limit, |t| with(t, "")).unwrap_or(full)
}

/// `make(prefix of s + "…")` for the longest prefix that fits `limit` (`s` itself does not),
/// by bisection (the output grows with the prefix); `None` if not even `make("")` fits.
fn longest(s: &str, limit: usize, make: impl Fn(&str) -> Vec<u8>) -> Option<Vec<u8>> {
    let mut best = make("");
    if best.len() > limit {
        return None;
    }
    let (mut lo, mut hi) = (0, s.len());
    loop {
        let mut mid = (lo + hi) / 2;
        while !s.is_char_boundary(mid) {
            mid -= 1;
        }
        if mid <= lo {
            mid = lo + 1;
            while mid < hi && !s.is_char_boundary(mid) {
                mid += 1;
            }
        }
        if mid >= hi {
            return Some(best);
        }
        let out = make(&format!("{}…", &s[..mid]));
        if out.len() <= limit {
            (lo, best) = (mid, out);
        } else {
            hi = mid;
        }
    }
}

pub(crate) fn transient(reason: String, retry_after: Option<Duration>) -> Outcome {
    Outcome::Transient {
        retry_after,
        reason,
    }
}

/// A request that got no answer: worth retrying. A URL the client may not use: the target's
/// fault when users gave it (`user_url`: Web Push, webhooks), else the deployment's.
pub(crate) fn failed(provider: &str, f: Failure, user_url: bool) -> Outcome {
    match f {
        Failure::Transport(r) => transient(format!("{provider}: {r}"), None),
        Failure::Forbidden(r) if user_url => Outcome::InvalidTarget {
            reason: format!("{provider}: {r}"),
            since_ms: None,
        },
        Failure::Forbidden(r) => Outcome::Misconfigured {
            reason: format!("{provider}: {r}"),
        },
    }
}

/// The start of an answer's body, for reasons (bounded, lossy UTF-8).
pub(crate) fn snippet(reply: &Reply) -> String {
    let b = &reply.body[..reply.body.len().min(300)];
    String::from_utf8_lossy(b).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(p: Option<&Preview>) -> Vec<u8> {
        json!({"x": 1, "t": p.map(|p| &p.title), "b": p.map(|p| &p.body)})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn fit_cuts_the_body_then_the_title_at_char_boundaries() {
        let p = Preview {
            title: "Ålice".into(),
            body: "é\"".repeat(3000),
        };
        let out = fit(4096, Some(&p), build);
        assert!(out.len() <= 4096 && out.len() >= 4090, "{}", out.len());
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["t"], "Ålice");
        assert!(v["b"].as_str().unwrap().ends_with('…'));
        // Room for the title only: the body goes; less room: the title is cut too.
        let empty_body = Preview {
            title: p.title.clone(),
            body: String::new(),
        };
        let room = build(Some(&empty_body)).len();
        let v: Value = serde_json::from_slice(&fit(room, Some(&p), build)).unwrap();
        assert_eq!(
            (v["t"].as_str(), v["b"].as_str()),
            (Some("Ålice"), Some(""))
        );
        let v: Value = serde_json::from_slice(&fit(room - 1, Some(&p), build)).unwrap();
        assert_eq!((v["t"].as_str(), v["b"].as_str()), (Some("Å…"), Some("")));
        // Nothing to cut: returned as built.
        assert_eq!(fit(5, None, build), build(None));
        let short = Preview {
            title: "a".into(),
            body: "b".into(),
        };
        assert_eq!(fit(4096, Some(&short), build), build(Some(&short)));
    }
}
