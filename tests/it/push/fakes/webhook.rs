//! A fake webhook receiver that verifies Standard Webhooks signatures.
//!
//! `POST /hook/<cue>` requires `webhook-id`, a `webhook-timestamp` within 5 minutes of the test
//! clock, and a `webhook-signature` with a `v1,` entry equal (constant time) to the base64
//! HMAC-SHA256, keyed with the decoded secret, of `"{id}.{timestamp}.{body}"`; else 401. Then
//! by cue:
//!
//! | cue | answer |
//! |---|---|
//! | `ok` | 204 |
//! | `gone` | 410 |
//! | `rate` | 429, `retry-after: 13` |
//! | `unavailable` | 503 |
//! | `badgateway` | 502 |
//! | `redirect` | 302 to another URL (not to be followed) |
//! | `notfound` | 404 |
//! | `slow` | 204 after 5 s |
//!
//! A cue given a script (`FakeReceiver::script`) answers from it first, one entry per
//! request, and 204 once it is used up: how the end-to-end tests make one endpoint fail on cue
//! (429 with a `Retry-After`, 503), or hold a request unanswered (a bridge killed
//! mid-delivery), and then succeed.
//!
//! `start_plain` serves plain HTTP/1.1, for `allow_http`.

use super::{same, serve, Reply, Req, Server, TestCa, TestClock};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::hmac;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Hook {
    pub cue: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub body_len: usize,
    /// The status answered; 0 for a request held unanswered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Step {
    /// This status, with this `Retry-After` if any.
    Answer(u16, Option<&'static str>),
    /// No answer, until the client or the fake goes away.
    Hold,
    /// This status after this many milliseconds (a receiver that takes its time).
    Slow(u16, u64),
}

#[derive(Default)]
pub struct State {
    pub hooks: Vec<Hook>,
    pub refused: Vec<(u16, String)>,
    script: HashMap<String, VecDeque<Step>>,
}

pub struct FakeReceiver {
    pub server: Server,
    pub state: Arc<Mutex<State>>,
    plain: bool,
}

/// Verifies one Standard Webhooks signature header for `secret` (`whsec_<base64>`).
pub fn verify(secret: &str, id: &str, ts: &str, body: &[u8], signatures: &str) -> bool {
    let Ok(key) = STANDARD.decode(secret.trim_start_matches("whsec_")) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let mut ctx = hmac::Context::with_key(&key);
    for part in [id.as_bytes(), b".", ts.as_bytes(), b".", body] {
        ctx.update(part);
    }
    let expected = ctx.sign();
    signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| {
            STANDARD
                .decode(s)
                .is_ok_and(|sig| same(&sig, expected.as_ref()))
        })
}

impl FakeReceiver {
    pub async fn start(ca: &TestCa, clock: &TestClock, secret: &str) -> FakeReceiver {
        Self::start_with(Some(ca), clock, secret).await
    }

    pub async fn start_plain(clock: &TestClock, secret: &str) -> FakeReceiver {
        Self::start_with(None, clock, secret).await
    }

    async fn start_with(ca: Option<&TestCa>, clock: &TestClock, secret: &str) -> FakeReceiver {
        let state = Arc::new(Mutex::new(State::default()));
        let (st, clock, secret) = (state.clone(), clock.clone(), secret.to_string());
        let tls = ca.map(|ca| ca.acceptor(&[b"h2", b"http/1.1"]));
        let server = serve(tls, move |r: Req| {
            let (st, clock, secret) = (st.clone(), clock.clone(), secret.clone());
            async move { handle(&st, &clock, &secret, r).await }
        })
        .await;
        FakeReceiver {
            server,
            state,
            plain: ca.is_none(),
        }
    }

    pub fn url(&self, cue: &str) -> String {
        let scheme = if self.plain { "http" } else { "https" };
        format!("{scheme}://{}/hook/{cue}", self.server.addr)
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Requests to `cue` are answered by `steps` in order, then with 204.
    pub fn script(&self, cue: &str, steps: Vec<Step>) {
        self.state().script.insert(cue.to_string(), steps.into());
    }

    /// What was received, in order: the requests that passed the signature check.
    pub fn hooks(&self) -> Vec<Hook> {
        self.state().hooks.clone()
    }
}

async fn handle(st: &Mutex<State>, clock: &TestClock, secret: &str, r: Req) -> Reply {
    let refuse = |s: u16, why: &str| {
        st.lock().unwrap().refused.push((s, why.to_string()));
        Reply::new(s).body(why.to_string())
    };
    let Some(cue) = r.path.strip_prefix("/hook/").map(String::from) else {
        return refuse(404, "no such path");
    };
    let (Some(id), Some(ts), Some(sig)) = (
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        r.header("webhook-signature"),
    ) else {
        return refuse(401, "missing webhook-* headers");
    };
    let Ok(t) = ts.parse::<u64>() else {
        return refuse(401, "bad timestamp");
    };
    if t.abs_diff(clock.unix()) > 300 {
        return refuse(401, "timestamp too far from now");
    }
    if !verify(secret, id, ts, &r.body, sig) {
        return refuse(401, "signature does not verify");
    }
    let headers = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let mut hook = Hook {
        cue: cue.clone(),
        headers,
        body,
        body_len: r.body.len(),
        status: 0,
        at: Instant::now(),
    };
    let step = {
        let mut st = st.lock().unwrap();
        let step = st
            .script
            .get_mut(&cue)
            .map(|q| q.pop_front().unwrap_or(Step::Answer(204, None)));
        hook.status = match &step {
            Some(Step::Answer(s, _) | Step::Slow(s, _)) => *s,
            Some(Step::Hold) => 0,
            None => table_status(&cue),
        };
        st.hooks.push(hook);
        step
    };
    match step {
        Some(Step::Answer(s, retry_after)) => {
            let reply = Reply::new(s);
            return match retry_after {
                Some(r) => reply.header("retry-after", r),
                None => reply,
            };
        }
        Some(Step::Hold) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Reply::new(504);
        }
        Some(Step::Slow(s, ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return Reply::new(s);
        }
        None => {}
    }
    match cue.as_str() {
        "ok" => Reply::new(204),
        "gone" => Reply::new(410),
        "rate" => Reply::new(429).header("retry-after", "13"),
        "unavailable" => Reply::new(503),
        "badgateway" => Reply::new(502),
        "redirect" => Reply::new(302).header("location", "https://127.0.0.1:1/elsewhere"),
        "notfound" => Reply::new(404),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Reply::new(204)
        }
        _ => Reply::new(400),
    }
}

/// The status the cue table answers (see the module doc).
fn table_status(cue: &str) -> u16 {
    match cue {
        "ok" | "slow" => 204,
        "gone" => 410,
        "rate" => 429,
        "unavailable" => 503,
        "badgateway" => 502,
        "redirect" => 302,
        "notfound" => 404,
        _ => 400,
    }
}

#[cfg(test)]
mod tests {
    use super::verify;

    #[test]
    fn the_receivers_verifier_accepts_the_standard_webhooks_vector_only() {
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let (id, ts) = ("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", "1649367553");
        let sig = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        assert!(verify(secret, id, ts, body, sig));
        assert!(
            verify(secret, id, ts, body, &format!("v1,AAAA {sig}")),
            "any listed signature"
        );
        assert!(
            !verify("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", id, ts, body, sig),
            "wrong key"
        );
        assert!(
            !verify(secret, id, "1649367554", body, sig),
            "other timestamp"
        );
        assert!(!verify(secret, id, ts, b"{}", sig), "other body");
    }
}
