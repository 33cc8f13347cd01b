//! Each provider against its fake: the exact request it sends, every class of answer mapped
//! to its `Outcome`, credentials reused and renewed on time, transport failures as
//! `Transient`, payloads cut to the provider's limit.
//!
//! Providers are built the way `parley push` builds them (`providers::build_with_clock`,
//! from a TOML config), trusting the fakes' test CA through `push.extra_ca_file`, with a
//! 1 s request timeout and a clock the test moves.

mod apns;
mod fcm;
mod webhook;
mod webpush;

use super::fakes::{pem, TestCa, TestClock};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parley::config::Config;
use parley::push::providers::build_with_clock;
use parley::push::{Kind, Notification, Outcome, Preview, Provider, ProviderKind, Target};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A collapse key as the bridge makes them: base64url, at most 32 characters.
pub const CK: &str = "Zm9vYmFyYmF6cXV4LTEyMzQ1Njc4OTA_";

/// The `[push]` section every test starts from.
pub fn push_toml(ca: &TestCa) -> String {
    format!(
        "[push]\nextra_ca_file = \"{}\"\nrequest_timeout_ms = 1000\nconcurrency = 16\n",
        ca.ca_file.display()
    )
}

/// The one provider `toml` configures.
pub fn provider(toml: &str, clock: &TestClock) -> Arc<dyn Provider> {
    let cfg = Config::load(Some(toml)).unwrap();
    let mut ps = build_with_clock(&cfg.push, clock.clock()).unwrap();
    assert_eq!(ps.len(), 1, "one provider configured");
    ps.pop().unwrap()
}

/// A P-256 key as a PKCS#8 PEM file in `dir` (an APNs `.p8`, a VAPID key), and its public
/// point.
pub fn p256_key(dir: &Path, name: &str) -> (PathBuf, Vec<u8>) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, pem("PRIVATE KEY", pkcs8.as_ref())).unwrap();
    (path, key.public_key().as_ref().to_vec())
}

pub fn note(kind: Kind, preview: Option<(&str, &str)>) -> Notification {
    Notification {
        id: uuid::Uuid::new_v4().to_string(),
        kind,
        user_id: "u_1".into(),
        conversation_id: "c_1".into(),
        seq: 42,
        badge: 3,
        unread: 2,
        preview: preview.map(|(t, b)| Preview {
            title: t.into(),
            body: b.into(),
        }),
        muted: false,
        collapse_key: CK.into(),
        ttl: Duration::from_secs(3600),
    }
}

pub fn target(provider: ProviderKind, token: Option<&str>, endpoint: Option<&str>) -> Target {
    Target {
        provider,
        device_id: "d_1".into(),
        token: token.map(String::from),
        endpoint: endpoint.map(String::from),
        p256dh: None,
        auth: None,
        registered_at: 0,
    }
}

/// The outcome's variant, for tables.
pub fn class(o: &Outcome) -> &'static str {
    match o {
        Outcome::Accepted => "accepted",
        Outcome::Transient { .. } => "transient",
        Outcome::InvalidTarget { .. } => "invalid",
        Outcome::Rejected { .. } => "rejected",
        Outcome::Misconfigured { .. } => "misconfigured",
    }
}

pub fn retry_after(o: &Outcome) -> Option<Duration> {
    match o {
        Outcome::Transient { retry_after, .. } => *retry_after,
        _ => None,
    }
}

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A preview far over every provider's limit, with multi-byte characters and characters
/// JSON escapes.
pub fn huge_preview() -> Option<(&'static str, &'static str)> {
    let body: &'static str = Box::leak("é\"x".repeat(4000).into_boxed_str());
    Some(("Alice", body))
}

#[tokio::test]
async fn build_makes_one_provider_per_configured_service() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (p8, _) = p256_key(dir.path(), "apns.p8");
    let (vapid, vapid_public) = p256_key(dir.path(), "vapid.pem");
    let sa = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/push/test-only-service-account.json"
    );
    let toml = format!(
        "{}[push.fcm]\ncredentials_file = \"{sa}\"\n\
         [push.apns]\nkey_file = \"{}\"\nkey_id = \"K\"\nteam_id = \"T\"\ntopic = \"a.b\"\n\
         [push.webpush]\nvapid_key_file = \"{}\"\nsubject = \"mailto:ops@parley.test\"\n\
         [push.webhook]\nsecret = \"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\"\n",
        push_toml(&ca),
        p8.display(),
        vapid.display()
    );
    let cfg = Config::load(Some(&toml)).unwrap();
    let kinds: Vec<ProviderKind> = build_with_clock(&cfg.push, TestClock::default().clock())
        .unwrap()
        .iter()
        .map(|p| p.kind())
        .collect();
    assert_eq!(
        kinds,
        [
            ProviderKind::Fcm,
            ProviderKind::Apns,
            ProviderKind::WebPush,
            ProviderKind::Webhook
        ]
    );
    let k = parley::push::providers::vapid_public_key(&cfg.push)
        .unwrap()
        .unwrap();
    assert_eq!(
        base64::Engine::decode(&URL_SAFE_NO_PAD, k).unwrap(),
        vapid_public
    );
    // Configuration errors are reported, not ignored.
    for bad in [
        toml.replace("key_id = \"K\"", "key_id = \"\""),
        toml.replace("mailto:ops@parley.test", "ops@parley.test"),
        toml.replace("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "whsec_c2hvcnQ="),
        toml.replace(&p8.display().to_string(), "/nonexistent.p8"),
    ] {
        let cfg = Config::load(Some(&bad)).unwrap();
        assert!(build_with_clock(&cfg.push, TestClock::default().clock()).is_err());
    }
}
