//! Web Push (RFC 8030 + 8291 + 8292) against `fakes::webpush`.

use super::{class, huge_preview, note, p256_key, provider, push_toml, retry_after, target, CK};
use crate::push::fakes::webpush::{FakePushService, Subscription};
use crate::push::fakes::{TestCa, TestClock};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parley::push::{Kind, Outcome, Provider, ProviderKind, Target};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const SUBJECT: &str = "mailto:ops@parley.test";

struct Setup {
    ca: TestCa,
    _dir: tempfile::TempDir,
    key: std::path::PathBuf,
    clock: TestClock,
    fake: FakePushService,
    p: Arc<dyn Provider>,
}

fn toml(ca: &TestCa, key: &Path, allow_private: bool) -> String {
    format!(
        "{}allow_private_endpoints = {allow_private}\n[push.webpush]\nvapid_key_file = \"{}\"\nsubject = \"{SUBJECT}\"\n",
        push_toml(ca),
        key.display()
    )
}

async fn setup() -> Setup {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::default();
    let (key, public) = p256_key(dir.path(), "vapid.pem");
    let fake = FakePushService::start(&ca, &clock, URL_SAFE_NO_PAD.encode(&public)).await;
    let p = provider(&toml(&ca, &key, true), &clock);
    Setup {
        ca,
        _dir: dir,
        key,
        clock,
        fake,
        p,
    }
}

fn to(s: &Subscription) -> Target {
    Target {
        p256dh: Some(s.p256dh.clone()),
        auth: Some(s.auth.clone()),
        ..target(ProviderKind::WebPush, None, Some(&s.endpoint))
    }
}

fn decrypted(s: &Setup, i: usize) -> Value {
    let st = s.fake.state();
    let plain = st.pushes[i]
        .decrypted
        .as_ref()
        .expect("decrypts with the subscription's keys");
    serde_json::from_slice(plain).unwrap()
}

#[tokio::test]
async fn the_payload_decrypts_with_the_subscriptions_keys() {
    let s = setup().await;
    let full = note(Kind::Message, Some(("Alice", "hi")));
    assert_eq!(
        s.p.deliver(&to(&s.fake.subscribe("ok")), &full).await,
        Outcome::Accepted
    );
    assert_eq!(
        s.p.deliver(&to(&s.fake.subscribe("ok")), &note(Kind::Clear, None))
            .await,
        Outcome::Accepted
    );
    assert!(
        s.fake.state().refused.is_empty(),
        "{:?}",
        s.fake.state().refused
    );
    assert_eq!(
        decrypted(&s, 0),
        json!({"type": "message", "conversation_id": "c_1", "seq": 42, "badge": 3, "unread": 2,
               "title": "Alice", "body": "hi"})
    );
    assert_eq!(
        decrypted(&s, 1),
        json!({"type": "clear", "conversation_id": "c_1", "seq": 42, "badge": 3, "unread": 2})
    );
    let st = s.fake.state();
    let h = &st.pushes[0].headers;
    assert_eq!(
        (
            h["ttl"].as_str(),
            h["urgency"].as_str(),
            h["topic"].as_str()
        ),
        ("3600", "high", CK)
    );
    assert_eq!(h["content-encoding"], "aes128gcm");
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(st.pushes[1].headers["urgency"], "normal");
    let c = &st.pushes[0].vapid_claims;
    assert_eq!(c["aud"], format!("https://{}", s.fake.server.addr));
    assert_eq!(c["sub"], SUBJECT);
    assert!(
        c["exp"]
            .as_u64()
            .unwrap()
            .abs_diff(s.clock.unix() + 12 * 3600)
            <= 2,
        "{c}"
    );
    assert_eq!(
        st.pushes[0].vapid_jwt, st.pushes[1].vapid_jwt,
        "one VAPID JWT per origin"
    );
}

#[tokio::test]
async fn the_vapid_jwt_is_resigned_an_hour_before_it_expires() {
    let s = setup().await;
    let n = note(Kind::Message, None);
    for advance in [0, 10 * 3600 + 3590, 20] {
        s.clock.advance(advance);
        assert_eq!(
            s.p.deliver(&to(&s.fake.subscribe("ok")), &n).await,
            Outcome::Accepted
        );
    }
    let st = s.fake.state();
    let jwts: Vec<&str> = st.pushes.iter().map(|p| p.vapid_jwt.as_str()).collect();
    assert_eq!(jwts[0], jwts[1], "10 h 59 min 50 s old: reused");
    assert_ne!(jwts[1], jwts[2], "11 h old: re-signed");
}

#[tokio::test]
async fn every_answer_maps_to_its_outcome() {
    let s = setup().await;
    let n = note(Kind::Message, None);
    for (cue, want, after) in [
        ("gone", "invalid", None),
        ("notfound", "invalid", None),
        ("unauth", "misconfigured", None),
        ("forbidden", "misconfigured", None),
        ("badjwt", "misconfigured", None),
        ("toolarge", "rejected", None),
        ("rate", "transient", Some(11)),
        ("unavailable", "transient", None),
        ("slow", "transient", None),
    ] {
        let o = s.p.deliver(&to(&s.fake.subscribe(cue)), &n).await;
        assert_eq!(class(&o), want, "{cue}: {o:?}");
        assert_eq!(
            retry_after(&o),
            after.map(Duration::from_secs),
            "{cue}: {o:?}"
        );
    }
    let cues: Vec<String> = s
        .fake
        .state()
        .pushes
        .iter()
        .map(|p| p.cue.clone())
        .collect();
    assert_eq!(
        cues,
        [
            "gone",
            "notfound",
            "unauth",
            "forbidden",
            "badjwt",
            "toolarge",
            "rate",
            "unavailable",
            "slow"
        ]
    );
    // A push service that knows another VAPID key refuses ours.
    let (_, other) = p256_key(s._dir.path(), "other.pem");
    let strict = FakePushService::start(&s.ca, &s.clock, URL_SAFE_NO_PAD.encode(other)).await;
    let o = s.p.deliver(&to(&strict.subscribe("ok")), &n).await;
    assert_eq!(class(&o), "misconfigured", "{o:?}");
    assert_eq!(strict.state().refused[0].0, 403);
}

#[tokio::test]
async fn without_keys_an_empty_push_and_bad_keys_are_an_invalid_target() {
    let s = setup().await;
    let n = note(Kind::Message, Some(("Alice", "hi")));
    let sub = s.fake.subscribe("ok");
    let bare = target(ProviderKind::WebPush, None, Some(&sub.endpoint));
    assert_eq!(s.p.deliver(&bare, &n).await, Outcome::Accepted);
    {
        let st = s.fake.state();
        assert_eq!(st.pushes[0].body_len, 0);
        assert!(!st.pushes[0].headers.contains_key("content-encoding"));
    }
    let sub = s.fake.subscribe("ok");
    for (p256dh, auth) in [
        ("AAAA", sub.auth.as_str()),
        (sub.p256dh.as_str(), "AAAA"),
        ("!", "!"),
    ] {
        let t = Target {
            p256dh: Some(p256dh.into()),
            auth: Some(auth.into()),
            ..to(&sub)
        };
        let o = s.p.deliver(&t, &n).await;
        assert_eq!(class(&o), "invalid", "{o:?}");
    }
    for endpoint in [
        None,
        Some("http://127.0.0.1:1/push/ok-1"),
        Some("not a url"),
    ] {
        let t = Target {
            endpoint: endpoint.map(String::from),
            ..to(&sub)
        };
        assert_eq!(class(&s.p.deliver(&t, &n).await), "invalid", "{endpoint:?}");
    }
    assert_eq!(s.fake.state().pushes.len(), 1, "nothing more was sent");
}

#[tokio::test]
async fn private_addresses_are_refused_by_default() {
    let s = setup().await;
    let strict = provider(&toml(&s.ca, &s.key, false), &s.clock);
    let o = strict
        .deliver(&to(&s.fake.subscribe("ok")), &note(Kind::Message, None))
        .await;
    assert_eq!(class(&o), "invalid", "{o:?}");
    assert!(format!("{o:?}").contains("not a public address"), "{o:?}");
    assert_eq!(s.fake.server.connections(), 0);
}

#[tokio::test]
async fn the_payload_is_cut_to_fit_one_4096_byte_record() {
    let s = setup().await;
    let n = note(Kind::Message, huge_preview());
    assert_eq!(
        s.p.deliver(&to(&s.fake.subscribe("ok")), &n).await,
        Outcome::Accepted
    );
    let st = s.fake.state();
    let plain = st.pushes[0].decrypted.as_ref().unwrap();
    assert!(plain.len() <= 3993 && plain.len() > 3987, "{}", plain.len());
    assert!(st.pushes[0].body_len <= 4096);
    let v: Value = serde_json::from_slice(plain).unwrap();
    assert!(v["body"].as_str().unwrap().ends_with('…'));
}
