//! Push set-up endpoints (v1.1): the Web Push VAPID public key a web app subscribes with.

use crate::common::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// A VAPID key as `openssl genpkey` writes it (PKCS#8 PEM), and its public point.
fn vapid_key(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let path = dir.join("vapid.pem");
    std::fs::write(&path, pem).unwrap();
    (path, key.public_key().as_ref().to_vec())
}

#[tokio::test]
async fn the_vapid_public_key_is_served_to_signed_in_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = vapid_key(dir.path());
    let toml = format!(
        "[push]\nin_process = false\n[push.webpush]\nvapid_key_file = \"{}\"\nsubject = \"mailto:ops@parley.test\"\n",
        key.display()
    );
    let srv = TestServer::builder().config(&toml).start();
    let d = srv.user("alice").await;
    // On every node: the same key, the one configured.
    for _ in 0..srv.node_count() {
        let (s, v) = srv.get("/v1/push/vapid", &d.token).await;
        assert_eq!(s, 200, "{v}");
        let k = URL_SAFE_NO_PAD
            .decode(v["public_key"].as_str().unwrap())
            .unwrap();
        assert_eq!(k, public, "the configured key's public point");
        assert_eq!((k.len(), k[0]), (65, 4), "an uncompressed P-256 point");
    }
    let anonymous = srv.http("GET", "/v1/push/vapid", None, None).await;
    assert_err(&anonymous, 401, "unauthorized");

    let plain = TestServer::start();
    let d = plain.user("bob").await;
    assert_err(
        &plain.get("/v1/push/vapid", &d.token).await,
        404,
        "not_found",
    );
}
