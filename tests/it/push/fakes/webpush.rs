//! A fake Web Push service (RFC 8030) that checks VAPID (RFC 8292) and decrypts every payload
//! as the browser would (RFC 8291), with the subscription's private key.
//!
//! `subscribe(cue)` makes a subscription like a browser's: a P-256 key pair (ring's
//! `EphemeralPrivateKey`, which can do one ECDH: each subscription decrypts one message) and
//! a 16-byte auth secret, with the endpoint `https://127.0.0.1:<port>/push/<cue>-<n>`.
//!
//! `POST /push/<cue>-<n>` requires a numeric `TTL` (400 otherwise), at most one valid
//! `Urgency`, a `Topic` of at most 32 base64url characters, `Authorization: vapid t=..., k=...`
//! with `k` the deployment's VAPID key (403 otherwise) and `t` an ES256 JWT verified with `k`
//! whose `aud` is this origin, `exp` in the next 24 h by the test clock and `sub` a `mailto:`
//! or `https:` URI (401 otherwise), a body of at most 4096 bytes (413), and
//! `Content-Encoding: aes128gcm` for a non-empty body. It records the decryption (or why it
//! failed), then answers by cue:
//!
//! | cue | answer |
//! |---|---|
//! | `ok` | 201 with `Location` |
//! | `gone` | 410 |
//! | `notfound` | 404 |
//! | `toolarge` | 413 |
//! | `rate` | 429, `Retry-After: 11` |
//! | `unavailable` | 503 |
//! | `unauth` | 401 |
//! | `forbidden` | 403 |
//! | `badjwt` | 400 `{"reason":"BadJwtToken"}` (Apple's answer to a bad VAPID JWT) |
//! | `slow` | 201 after 5 s |

use super::{b64url_decode, serve, split_jws, Reply, Req, Server, TestCa, TestClock};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{UnparsedPublicKey as VerifyKey, ECDSA_P256_SHA256_FIXED};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Subscription {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

#[derive(Debug, Clone)]
pub struct Push {
    pub cue: String,
    pub headers: HashMap<String, String>,
    pub vapid_jwt: String,
    pub vapid_claims: Value,
    pub body_len: usize,
    /// The plaintext, or why it could not be decrypted.
    pub decrypted: Result<Vec<u8>, String>,
}

#[derive(Default)]
pub struct State {
    pub pushes: Vec<Push>,
    pub refused: Vec<(u16, String)>,
    keys: HashMap<String, (EphemeralPrivateKey, Vec<u8>, Vec<u8>)>,
}

pub struct FakePushService {
    pub server: Server,
    pub state: Arc<Mutex<State>>,
    next: Mutex<usize>,
}

impl FakePushService {
    /// `vapid_public`: the deployment's VAPID key, base64url (what browsers subscribed with).
    pub async fn start(ca: &TestCa, clock: &TestClock, vapid_public: String) -> FakePushService {
        let state = Arc::new(Mutex::new(State::default()));
        let (st, clock) = (state.clone(), clock.clone());
        let origin = Arc::new(Mutex::new(String::new()));
        let o2 = origin.clone();
        let server = serve(Some(ca.acceptor(&[b"h2", b"http/1.1"])), move |r: Req| {
            let (st, clock, k, origin) = (
                st.clone(),
                clock.clone(),
                vapid_public.clone(),
                o2.lock().unwrap().clone(),
            );
            async move { handle(&st, &clock, &k, &origin, r).await }
        })
        .await;
        *origin.lock().unwrap() = format!("https://{}", server.addr);
        FakePushService {
            server,
            state,
            next: Mutex::new(0),
        }
    }

    pub fn subscribe(&self, cue: &str) -> Subscription {
        let rng = SystemRandom::new();
        let private = EphemeralPrivateKey::generate(&ECDH_P256, &rng).unwrap();
        let public = private.compute_public_key().unwrap().as_ref().to_vec();
        let mut auth = vec![0; 16];
        rng.fill(&mut auth).unwrap();
        let id = {
            let mut n = self.next.lock().unwrap();
            *n += 1;
            format!("{cue}-{n}")
        };
        let s = Subscription {
            endpoint: self.server.url(&format!("/push/{id}")),
            p256dh: URL_SAFE_NO_PAD.encode(&public),
            auth: URL_SAFE_NO_PAD.encode(&auth),
        };
        self.state
            .lock()
            .unwrap()
            .keys
            .insert(id, (private, public, auth));
        s
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    for p in parts {
        ctx.update(p);
    }
    ctx.sign().as_ref().to_vec()
}

/// RFC 8291 decryption given the ECDH secret (the receiver's side of section 3).
pub fn decrypt_with_secret(
    secret: &[u8],
    ua_public: &[u8],
    auth: &[u8],
    body: &[u8],
) -> Result<Vec<u8>, String> {
    if body.len() < 21 {
        return Err("short body".into());
    }
    let salt = &body[..16];
    let rs = u32::from_be_bytes(body[16..20].try_into().unwrap()) as usize;
    let idlen = body[20] as usize;
    let as_public = body.get(21..21 + idlen).ok_or("short key id")?;
    let record = &body[21 + idlen..];
    if idlen != 65 || rs < 18 || record.len() > rs || record.len() < 17 {
        return Err(format!(
            "bad header: rs {rs}, idlen {idlen}, record {}",
            record.len()
        ));
    }
    let prk_key = hmac256(auth, &[secret]);
    let ikm = hmac256(&prk_key, &[b"WebPush: info\0", ua_public, as_public, &[1]]);
    let prk = hmac256(salt, &[&ikm]);
    let cek = &hmac256(&prk, &[b"Content-Encoding: aes128gcm\0", &[1]])[..16];
    let nonce = &hmac256(&prk, &[b"Content-Encoding: nonce\0", &[1]])[..12];
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, cek).unwrap());
    let mut buf = record.to_vec();
    let plain = key
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).unwrap(),
            Aad::empty(),
            &mut buf,
        )
        .map_err(|_| "AES-GCM tag does not verify")?;
    let end = plain.iter().rposition(|&b| b != 0).ok_or("no delimiter")?;
    if plain[end] != 2 {
        return Err(format!(
            "delimiter {:#x}, not 0x02 (last record)",
            plain[end]
        ));
    }
    Ok(plain[..end].to_vec())
}

/// Checks `vapid t=<jwt>, k=<key>` (RFC 8292 section 3): the signature with `k`, `aud`, `sub`,
/// and `exp` against `now`. Returns the claims.
pub fn verify_vapid(
    header: &str,
    aud: &str,
    now: u64,
) -> Result<(String, String, Value), (u16, String)> {
    let rest = header
        .strip_prefix("vapid ")
        .ok_or((401, "not vapid".to_string()))?;
    let mut t = None;
    let mut k = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.to_string()),
            Some(("k", v)) => k = Some(v.to_string()),
            _ => {}
        }
    }
    let (t, k) = (
        t.ok_or((401, "no t".to_string()))?,
        k.ok_or((401, "no k".to_string()))?,
    );
    let key = b64url_decode(&k).ok_or((401, "k not base64url".to_string()))?;
    let jws = split_jws(&t).ok_or((401, "t not a JWS".to_string()))?;
    VerifyKey::new(&ECDSA_P256_SHA256_FIXED, &key)
        .verify(jws.input.as_bytes(), &jws.signature)
        .map_err(|_| (401, "bad signature".to_string()))?;
    if jws.header["alg"] != "ES256" {
        return Err((401, "alg".into()));
    }
    let c = jws.claims;
    let exp = c["exp"].as_u64().ok_or((401, "no exp".to_string()))?;
    if c["aud"] != aud {
        return Err((401, format!("aud {} is not {aud}", c["aud"])));
    }
    if exp <= now || exp > now + 24 * 3600 {
        return Err((401, format!("exp {exp} vs now {now}")));
    }
    let sub = c["sub"].as_str().unwrap_or("");
    if !(sub.starts_with("mailto:") || sub.starts_with("https:")) {
        return Err((401, format!("sub {sub:?}")));
    }
    Ok((t, k, c))
}

fn check_headers(r: &Req) -> Result<(), String> {
    let ttl = r.headers.get_all("ttl").iter().count();
    if ttl != 1
        || r.header("ttl")
            .and_then(|t| t.parse::<u64>().ok())
            .is_none()
    {
        return Err("TTL".into());
    }
    let urgency: Vec<_> = r.headers.get_all("urgency").iter().collect();
    if urgency.len() > 1
        || urgency.first().is_some_and(|u| {
            !["very-low", "low", "normal", "high"].contains(&u.to_str().unwrap_or(""))
        })
    {
        return Err("Urgency".into());
    }
    let topic_ok = |t: &str| {
        t.len() <= 32
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if r.header("topic").is_some_and(|t| !topic_ok(t)) {
        return Err("Topic".into());
    }
    if !r.body.is_empty() && r.header("content-encoding") != Some("aes128gcm") {
        return Err("Content-Encoding".into());
    }
    Ok(())
}

/// Decrypts as the browser holding `key` (its private key, public key, auth secret) would.
fn decrypt(
    key: Option<(EphemeralPrivateKey, Vec<u8>, Vec<u8>)>,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let (private, public, auth) =
        key.ok_or("no key: unknown subscription, or its one decryption is used")?;
    if body.is_empty() {
        return Err("empty body".into());
    }
    let as_public = body.get(21..86).unwrap_or(&[]).to_vec();
    let secret = agree_ephemeral(
        private,
        &UnparsedPublicKey::new(&ECDH_P256, &as_public),
        |s| s.to_vec(),
    )
    .map_err(|_| "ECDH with the sender's key failed".to_string())?;
    decrypt_with_secret(&secret, &public, &auth, body)
}

async fn handle(
    st: &Mutex<State>,
    clock: &TestClock,
    vapid_public: &str,
    origin: &str,
    r: Req,
) -> Reply {
    let refuse = |s: u16, why: String| {
        st.lock().unwrap().refused.push((s, why.clone()));
        Reply::new(s).body(why)
    };
    let Some(id) = r.path.strip_prefix("/push/").map(String::from) else {
        return refuse(404, "no such path".into());
    };
    if let Err(why) = check_headers(&r) {
        return refuse(400, why);
    }
    let (jwt, k, claims) = match verify_vapid(
        r.header("authorization").unwrap_or(""),
        origin,
        clock.unix(),
    ) {
        Ok(x) => x,
        Err((s, why)) => return refuse(s, why),
    };
    if k != vapid_public {
        return refuse(
            403,
            "k is not the key this subscription was made with".into(),
        );
    }
    if r.body.len() > 4096 {
        return refuse(413, "over 4096 bytes".into());
    }
    let key = st.lock().unwrap().keys.remove(&id);
    let decrypted = decrypt(key, &r.body);
    let cue = id
        .rsplit_once('-')
        .map_or(id.as_str(), |(c, _)| c)
        .to_string();
    let headers = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    st.lock().unwrap().pushes.push(Push {
        cue: cue.clone(),
        headers,
        vapid_jwt: jwt,
        vapid_claims: claims,
        body_len: r.body.len(),
        decrypted,
    });
    match cue.as_str() {
        "ok" => Reply::new(201).header("location", format!("{origin}/message/{id}")),
        "gone" => Reply::new(410),
        "notfound" => Reply::new(404),
        "toolarge" => Reply::new(413),
        "rate" => Reply::new(429).header("retry-after", "11"),
        "unavailable" => Reply::new(503),
        "unauth" => Reply::new(401),
        "forbidden" => Reply::new(403),
        "badjwt" => Reply::json(400, serde_json::json!({"reason": "BadJwtToken"})),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Reply::new(201)
        }
        _ => Reply::new(400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJodHRwczovL3B1c2guZXhhbXBsZS5uZXQiLCJleHAiOjE0NTM1MjM3NjgsInN1YiI6Im1haWx0bzpwdXNoQGV4YW1wbGUuY29tIn0.i3CYb7t4xfxCDquptFOepC9GAu_HLGkMlMuCGSK2rpiUfnK9ojFwDXb1JrErtmysazNjjvW2L9OkSSHzvoD1oA";
    const K: &str =
        "BA1Hxzyi1RUM1b5wjxsn7nGxAszw2u61m164i3MrAIxHF6YK5h4SDYic-dRuU_RCPCfA5aq9ojSwk5Y2EmClBPs";

    #[test]
    fn the_vapid_verifier_accepts_rfc8292s_example_and_refuses_changes() {
        let h = format!("vapid t={T}, k={K}");
        let now = 1453523768 - 3600;
        let (_, _, c) = verify_vapid(&h, "https://push.example.net", now).unwrap();
        assert_eq!(c["sub"], "mailto:push@example.com");
        assert!(verify_vapid(&h, "https://other.example.net", now).is_err());
        assert!(
            verify_vapid(&h, "https://push.example.net", 1453523768).is_err(),
            "expired"
        );
        let mut tampered = T.to_string();
        tampered.pop();
        tampered.push('B');
        assert!(verify_vapid(
            &format!("vapid t={tampered}, k={K}"),
            "https://push.example.net",
            now
        )
        .is_err());
    }

    #[test]
    fn the_fakes_decryption_reads_rfc8291s_example() {
        let d = |s| b64url_decode(s).unwrap();
        let body = d("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN");
        let secret = d("kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs");
        let ua = d("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4");
        let auth = d("BTBZMqHH6r4Tts7J_aSIgg");
        assert_eq!(
            decrypt_with_secret(&secret, &ua, &auth, &body).unwrap(),
            b"When I grow up, I want to be a watermelon"
        );
        let mut wrong_auth = auth.clone();
        wrong_auth[0] ^= 1;
        assert!(decrypt_with_secret(&secret, &ua, &wrong_auth, &body).is_err());
    }
}
