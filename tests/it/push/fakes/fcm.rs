//! A fake FCM HTTP v1 service and its OAuth2 token endpoint, on one HTTPS server.
//!
//! `POST /token` checks the JWT-bearer grant: `grant_type`, the RS256 signature against the
//! fixture's public key, `iss`, `scope`, `aud` (this endpoint's URL), `iat` near the test
//! clock and `exp - iat <= 3600`; it answers `{"access_token":"ya29.test-<n>",
//! "expires_in":<expires_in>,"token_type":"Bearer"}` (or, by `token_mode`, 400 invalid_grant
//! or 503).
//!
//! `POST /v1/projects/parley-test/messages:send` requires `Bearer` + a token it issued, a body
//! of at most 4096 bytes, and string `data` values (else FCM's own 400 bodies), then answers
//! by the registration token's prefix:
//!
//! | prefix | answer |
//! |---|---|
//! | `ok-` | 200 `{"name":"projects/parley-test/messages/<n>"}` |
//! | `dead-` | 404 UNREGISTERED |
//! | `bad-` | 400 INVALID_ARGUMENT "The registration token is not a valid FCM registration token" |
//! | `invalid-` | 400 INVALID_ARGUMENT "Invalid TTL" with a BadRequest field violation |
//! | `mismatch-` | 403 SENDER_ID_MISMATCH |
//! | `quota-` | 429 QUOTA_EXCEEDED, `Retry-After: 120` |
//! | `unavailable-` | 503 UNAVAILABLE, `Retry-After: 7` |
//! | `date-` | 503 UNAVAILABLE, `Retry-After` as an HTTP-date 30 s ahead |
//! | `internal-` | 500 INTERNAL |
//! | `thirdparty-` | 401 THIRD_PARTY_AUTH_ERROR |
//! | `unauth-` | 401 UNAUTHENTICATED without an FcmError, every time |
//! | `unauthonce-` | that the first time, then as `ok-` |
//! | `denied-` | 403 PERMISSION_DENIED without an FcmError |
//! | `slow-` | answers after 5 s |

use super::{serve, split_jws, Reply, Req, Server, TestCa, TestClock};
use parley::push::jws::pem_der;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub const PROJECT: &str = "parley-test";
pub const CLIENT_EMAIL: &str = "parley-test@parley-test.iam.gserviceaccount.com";
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const BAD_TOKEN: &str = "The registration token is not a valid FCM registration token";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TokenMode {
    Ok,
    InvalidGrant,
    Unavailable,
}

#[derive(Debug, Clone)]
pub struct Send {
    pub token: String,
    pub authorization: String,
    pub body: Value,
    pub body_len: usize,
}

pub struct State {
    pub token_mode: TokenMode,
    pub expires_in: u64,
    /// Verified assertions' claims, in order.
    pub assertions: Vec<Value>,
    /// Assertions refused (reason).
    pub refused: Vec<String>,
    issued: Vec<String>,
    pub sends: Vec<Send>,
    seen: HashMap<String, usize>,
}

pub struct FakeFcm {
    pub server: Server,
    pub state: Arc<Mutex<State>>,
}

impl FakeFcm {
    pub async fn start(ca: &TestCa, clock: &TestClock) -> FakeFcm {
        let state = Arc::new(Mutex::new(State {
            token_mode: TokenMode::Ok,
            expires_in: 3600,
            assertions: vec![],
            refused: vec![],
            issued: vec![],
            sends: vec![],
            seen: HashMap::new(),
        }));
        let public = pem_der(
            include_str!("../../../fixtures/push/test-only-rsa-public.pem"),
            "RSA PUBLIC KEY",
        )
        .unwrap();
        let (st, clock) = (state.clone(), clock.clone());
        let aud = Arc::new(Mutex::new(String::new()));
        let aud2 = aud.clone();
        let server = serve(Some(ca.acceptor(&[b"h2", b"http/1.1"])), move |r: Req| {
            let (st, clock, public, aud) =
                (st.clone(), clock.clone(), public.clone(), aud2.clone());
            async move {
                if r.path == "/token" {
                    let aud = aud.lock().unwrap().clone();
                    return token(&st, &clock, &public, &aud, &r);
                }
                if r.path != format!("/v1/projects/{PROJECT}/messages:send") || r.method != "POST" {
                    return Reply::json(
                        404,
                        json!({"error": {"code": 404, "status": "NOT_FOUND"}}),
                    );
                }
                send(&st, &r).await
            }
        })
        .await;
        *aud.lock().unwrap() = server.url("/token");
        FakeFcm { server, state }
    }

    pub fn base_url(&self) -> String {
        self.server.url("")
    }

    pub fn token_url(&self) -> String {
        self.server.url("/token")
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

fn form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%3a", ":")))
        .collect()
}

fn token(st: &Mutex<State>, clock: &TestClock, public: &[u8], aud: &str, r: &Req) -> Reply {
    let mut st = st.lock().unwrap();
    match st.token_mode {
        TokenMode::InvalidGrant => {
            return Reply::json(
                400,
                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
            )
        }
        TokenMode::Unavailable => return Reply::new(503).header("retry-after", "3"),
        TokenMode::Ok => {}
    }
    let f = form(&r.body);
    let check = || -> Result<Value, String> {
        if r.header("content-type") != Some("application/x-www-form-urlencoded") {
            return Err("content-type".into());
        }
        if f.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return Err("grant_type".into());
        }
        let jws = split_jws(f.get("assertion").ok_or("no assertion")?).ok_or("not a JWS")?;
        if jws.header["alg"] != "RS256" {
            return Err("alg".into());
        }
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
            .verify(jws.input.as_bytes(), &jws.signature)
            .map_err(|_| "signature")?;
        let c = jws.claims;
        let (iat, exp) = (
            c["iat"].as_u64().ok_or("iat")?,
            c["exp"].as_u64().ok_or("exp")?,
        );
        if c["iss"] != CLIENT_EMAIL || c["scope"] != SCOPE || c["aud"] != aud {
            return Err(format!("claims {c}"));
        }
        if exp <= iat || exp - iat > 3600 || iat.abs_diff(clock.unix()) > 60 {
            return Err(format!("times {c}"));
        }
        Ok(c)
    };
    match check() {
        Ok(c) => {
            st.assertions.push(c);
            let t = format!("ya29.test-{}", st.issued.len());
            st.issued.push(t.clone());
            Reply::json(
                200,
                json!({"access_token": t, "expires_in": st.expires_in, "token_type": "Bearer"}),
            )
        }
        Err(e) => {
            st.refused.push(e.clone());
            Reply::json(
                400,
                json!({"error": "invalid_grant", "error_description": e}),
            )
        }
    }
}

fn fcm_error(status: u16, gstatus: &str, code: Option<&str>, message: &str) -> Reply {
    let details: Vec<Value> = code
        .map(|c| json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}))
        .into_iter()
        .collect();
    Reply::json(
        status,
        json!({"error": {"code": status, "message": message, "status": gstatus, "details": details}}),
    )
}

async fn send(st: &Mutex<State>, r: &Req) -> Reply {
    let auth = r.header("authorization").unwrap_or("").to_string();
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let token = body["message"]["token"].as_str().unwrap_or("").to_string();
    let attempt = {
        let mut st = st.lock().unwrap();
        let issued = auth
            .strip_prefix("Bearer ")
            .is_some_and(|t| st.issued.iter().any(|i| i == t));
        st.sends.push(Send {
            token: token.clone(),
            authorization: auth.clone(),
            body: body.clone(),
            body_len: r.body.len(),
        });
        if !issued {
            return fcm_error(
                401,
                "UNAUTHENTICATED",
                None,
                "Request had invalid authentication credentials.",
            );
        }
        let n = st.seen.entry(token.clone()).or_default();
        *n += 1;
        *n
    };
    if r.body.len() > 4096 {
        return fcm_error(
            400,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "Android message is too big",
        );
    }
    if let Some(refused) = check_data(&body) {
        return refused;
    }
    answer(&token, attempt).await
}

/// FCM's answer to a non-string `data` value (ErrorCode page, Example 1).
fn check_data(body: &Value) -> Option<Reply> {
    let data = body["message"]["data"].as_object()?;
    let (i, (_, v)) = data.iter().enumerate().find(|(_, (_, v))| !v.is_string())?;
    let mut reply = fcm_error(
        400,
        "INVALID_ARGUMENT",
        None,
        &format!("Invalid value at 'message.data[{i}].value' (TYPE_STRING), {v}"),
    );
    let mut v: Value = serde_json::from_slice(&reply.body).unwrap();
    v["error"]["details"] = json!([{"@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": format!("message.data[{i}].value")}]}]);
    reply.body = v.to_string().into();
    Some(reply)
}

/// The answer the registration token's prefix cues (the table in the module doc).
async fn answer(token: &str, attempt: usize) -> Reply {
    let ok = || {
        Reply::json(
            200,
            json!({"name": format!("projects/{PROJECT}/messages/{attempt}")}),
        )
    };
    let cue = token.split('-').next().unwrap_or("");
    match cue {
        "ok" => ok(),
        "dead" => fcm_error(
            404,
            "NOT_FOUND",
            Some("UNREGISTERED"),
            "Requested entity was not found.",
        ),
        "bad" => fcm_error(400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), BAD_TOKEN),
        "invalid" => {
            let mut reply = fcm_error(
                400,
                "INVALID_ARGUMENT",
                Some("INVALID_ARGUMENT"),
                "Invalid TTL",
            );
            let mut v: Value = serde_json::from_slice(&reply.body).unwrap();
            v["error"]["details"]
                .as_array_mut()
                .unwrap()
                .push(json!({"@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message.android.ttl"}]}));
            reply.body = v.to_string().into();
            reply
        }
        "mismatch" => fcm_error(
            403,
            "PERMISSION_DENIED",
            Some("SENDER_ID_MISMATCH"),
            "SenderId mismatch",
        ),
        "quota" => fcm_error(
            429,
            "RESOURCE_EXHAUSTED",
            Some("QUOTA_EXCEEDED"),
            "Quota exceeded",
        )
        .header("retry-after", "120"),
        "unavailable" => fcm_error(503, "UNAVAILABLE", Some("UNAVAILABLE"), "overloaded")
            .header("retry-after", "7"),
        "date" => {
            let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
            fcm_error(503, "UNAVAILABLE", Some("UNAVAILABLE"), "overloaded")
                .header("retry-after", at)
        }
        "internal" => fcm_error(500, "INTERNAL", Some("INTERNAL"), "internal"),
        "thirdparty" => fcm_error(
            401,
            "UNAUTHENTICATED",
            Some("THIRD_PARTY_AUTH_ERROR"),
            "APNs auth error",
        ),
        "unauth" => fcm_error(
            401,
            "UNAUTHENTICATED",
            None,
            "Request had invalid authentication credentials.",
        ),
        "unauthonce" if attempt == 1 => fcm_error(401, "UNAUTHENTICATED", None, "expired"),
        "unauthonce" => ok(),
        "denied" => fcm_error(
            403,
            "PERMISSION_DENIED",
            None,
            "Permission 'cloudmessaging.messages.create' denied",
        ),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ok()
        }
        _ => fcm_error(
            400,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "unknown cue",
        ),
    }
}
