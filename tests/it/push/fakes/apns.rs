//! A fake APNs provider API: HTTP/2 only (ALPN `h2`; an HTTP/1.1 request gets 505).
//!
//! `POST /3/device/<token>` checks what APNs checks: `authorization: bearer <JWT>` verified as
//! ES256 with the team's public key, `kid` and `iss`, `iat` at most an hour old by the test
//! clock (else 403 ExpiredProviderToken) and not in the future; `apns-topic`; a known
//! `apns-push-type`, and priority 5 for `background`; `apns-collapse-id` of at most 64 bytes;
//! `apns-id` a UUID; `apns-expiration` a number; a JSON body with `aps`, at most 4096 bytes.
//! It answers 200 with `apns-id`, or by the token's first four hex digits:
//!
//! | prefix | answer |
//! |---|---|
//! | `0000` | 200 |
//! | `dead` | 410 Unregistered, `timestamp` = `UNREGISTERED_AT` |
//! | `e0e0` | 410 ExpiredToken, no timestamp |
//! | `bad0` | 400 BadDeviceToken |
//! | `bad1` | 400 DeviceTokenNotForTopic |
//! | `bad2` | 400 TopicDisallowed |
//! | `bad3` | 400 InvalidPushType |
//! | `f0f0` | 403 ExpiredProviderToken the first time it sees this token, then 200 |
//! | `f1f1` | 403 InvalidProviderToken |
//! | `a1a1` | 429 TooManyProviderTokenUpdates |
//! | `c0de` | 429 TooManyRequests, `retry-after: 9` |
//! | `5000` | 500 InternalServerError |
//! | `5030` | 503 ServiceUnavailable |
//! | `1d1e` | 400 IdleTimeout |
//! | `5105` | 200 after 5 s |
//! | `60a0` | 200, then a graceful GOAWAY on the connection |

use super::{serve, split_jws, Reply, Req, Server, TestCa, TestClock};
use hyper::Version;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const KEY_ID: &str = "KEYID12345";
pub const TEAM_ID: &str = "TEAMID1234";
pub const TOPIC: &str = "chat.parley.app";
pub const UNREGISTERED_AT: i64 = 1_700_000_000_123;

#[derive(Debug, Clone)]
pub struct Push {
    pub token: String,
    pub headers: HashMap<String, String>,
    pub jwt: String,
    pub iat: u64,
    pub body: Value,
    pub body_len: usize,
    pub conn: usize,
}

#[derive(Default)]
pub struct State {
    /// Requests that passed the checks, in order.
    pub pushes: Vec<Push>,
    /// Requests refused by a check (status, reason).
    pub refused: Vec<(u16, String)>,
}

pub struct FakeApns {
    pub server: Server,
    pub state: Arc<Mutex<State>>,
}

impl FakeApns {
    /// `public_key`: the team key's uncompressed P-256 point.
    pub async fn start(ca: &TestCa, clock: &TestClock, public_key: Vec<u8>) -> FakeApns {
        let state = Arc::new(Mutex::new(State::default()));
        let (st, clock) = (state.clone(), clock.clone());
        let server = serve(Some(ca.acceptor(&[b"h2"])), move |r: Req| {
            let (st, clock, pk) = (st.clone(), clock.clone(), public_key.clone());
            async move { handle(&st, &clock, &pk, r).await }
        })
        .await;
        FakeApns { server, state }
    }

    pub fn base_url(&self) -> String {
        self.server.url("")
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// The distinct provider tokens accepted so far.
    pub fn jwts(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for p in &self.state().pushes {
            if !seen.contains(&p.jwt) {
                seen.push(p.jwt.clone());
            }
        }
        seen
    }
}

fn reason(status: u16, r: &str) -> Reply {
    Reply::json(status, json!({ "reason": r }))
}

/// The checks APNs makes before it looks at the device token.
fn check(
    clock: &TestClock,
    pk: &[u8],
    r: &Req,
) -> Result<(String, u64, Value), (u16, &'static str)> {
    if r.version != Version::HTTP_2 {
        return Err((505, "HTTP2Required"));
    }
    if r.method != "POST" || !r.path.starts_with("/3/device/") {
        return Err((404, "BadPath"));
    }
    let jwt = r
        .header("authorization")
        .and_then(|a| a.strip_prefix("bearer "))
        .ok_or((403, "MissingProviderToken"))?;
    let jws = split_jws(jwt).ok_or((403, "InvalidProviderToken"))?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pk)
        .verify(jws.input.as_bytes(), &jws.signature)
        .map_err(|_| (403, "InvalidProviderToken"))?;
    if jws.header != json!({"alg": "ES256", "kid": KEY_ID}) || jws.claims["iss"] != TEAM_ID {
        return Err((403, "InvalidProviderToken"));
    }
    let iat = jws.claims["iat"]
        .as_u64()
        .ok_or((403, "InvalidProviderToken"))?;
    let now = clock.unix();
    if iat > now + 60 {
        return Err((403, "InvalidProviderToken"));
    }
    if now - iat.min(now) > 3600 {
        return Err((403, "ExpiredProviderToken"));
    }
    check_headers(r)?;
    if r.body.is_empty() {
        return Err((400, "PayloadEmpty"));
    }
    if r.body.len() > 4096 {
        return Err((413, "PayloadTooLarge"));
    }
    let body: Value = serde_json::from_slice(&r.body).map_err(|_| (400, "BadPayload"))?;
    if !body["aps"].is_object() {
        return Err((400, "BadPayload"));
    }
    Ok((jwt.to_string(), iat, body))
}

/// The `apns-*` headers, as APNs checks them.
fn check_headers(r: &Req) -> Result<(), (u16, &'static str)> {
    match r.header("apns-topic") {
        None => return Err((400, "MissingTopic")),
        Some(t) if t != TOPIC => return Err((400, "BadTopic")),
        _ => {}
    }
    let push_type = r.header("apns-push-type").unwrap_or("");
    if ![
        "alert",
        "background",
        "voip",
        "complication",
        "fileprovider",
        "mdm",
        "location",
        "liveactivity",
        "pushtotalk",
    ]
    .contains(&push_type)
    {
        return Err((400, "InvalidPushType"));
    }
    let priority = r.header("apns-priority").unwrap_or("10");
    if !["1", "5", "10"].contains(&priority) || (push_type == "background" && priority != "5") {
        return Err((400, "BadPriority"));
    }
    if r.header("apns-collapse-id").is_some_and(|c| c.len() > 64) {
        return Err((400, "BadCollapseId"));
    }
    if r.header("apns-expiration")
        .is_some_and(|e| e.parse::<u64>().is_err())
    {
        return Err((400, "BadExpirationDate"));
    }
    if r.header("apns-id")
        .is_some_and(|id| uuid::Uuid::try_parse(id).is_err())
    {
        return Err((400, "BadMessageId"));
    }
    Ok(())
}

async fn handle(st: &Mutex<State>, clock: &TestClock, pk: &[u8], r: Req) -> Reply {
    let (jwt, iat, body) = match check(clock, pk, &r) {
        Ok(x) => x,
        Err((s, why)) => {
            st.lock().unwrap().refused.push((s, why.to_string()));
            return reason(s, why);
        }
    };
    let token = r.path["/3/device/".len()..].to_string();
    let headers = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let seen = {
        let mut st = st.lock().unwrap();
        st.pushes.push(Push {
            token: token.clone(),
            headers,
            jwt,
            iat,
            body,
            body_len: r.body.len(),
            conn: r.conn,
        });
        st.pushes.iter().filter(|p| p.token == token).count()
    };
    let id = r
        .header("apns-id")
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let ok = || Reply::new(200).header("apns-id", id.clone());
    match token.get(..4).unwrap_or("") {
        "0000" => ok(),
        "dead" => Reply::json(
            410,
            json!({"reason": "Unregistered", "timestamp": UNREGISTERED_AT}),
        ),
        "e0e0" => reason(410, "ExpiredToken"),
        "bad0" => reason(400, "BadDeviceToken"),
        "bad1" => reason(400, "DeviceTokenNotForTopic"),
        "bad2" => reason(400, "TopicDisallowed"),
        "bad3" => reason(400, "InvalidPushType"),
        "f0f0" if seen == 1 => reason(403, "ExpiredProviderToken"),
        "f0f0" => ok(),
        "f1f1" => reason(403, "InvalidProviderToken"),
        "a1a1" => reason(429, "TooManyProviderTokenUpdates"),
        "c0de" => reason(429, "TooManyRequests").header("retry-after", "9"),
        "5000" => reason(500, "InternalServerError"),
        "5030" => reason(503, "ServiceUnavailable"),
        "1d1e" => reason(400, "IdleTimeout"),
        "5105" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ok()
        }
        "60a0" => {
            let mut r = ok();
            r.goaway = true;
            r
        }
        _ => reason(400, "BadDeviceToken"),
    }
}
