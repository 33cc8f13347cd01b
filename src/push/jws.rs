//! Compact JWS (RFC 7515) signing with ring: ES256 for the APNs provider token and VAPID,
//! RS256 for the FCM service-account assertion.
//!
//! Why by hand: `jsonwebtoken` 9 (kept for the HS256 session tokens) cannot load an RSA
//! PKCS#8 key without extra PEM crates, and its later versions drop ring for aws-lc or
//! RustCrypto. A JWS is `b64url(header) "." b64url(claims) "." b64url(signature)`; ring
//! signs, with `ECDSA_P256_SHA256_FIXED_SIGNING` giving the 64-byte `r||s` that JWS wants (not
//! DER). Also here: base64url and PEM helpers shared by the push code.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use serde_json::Value;

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Base64url without padding; a trailing `=` padding is tolerated (some clients send it).
pub fn b64url_decode(text: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|e| format!("bad base64url: {e}"))
}

/// The DER inside the first PEM block labelled `label` (`-----BEGIN {label}-----`).
pub fn pem_der(text: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| format!("no \"{begin}\" block"))?
        + begin.len();
    let len = text[start..]
        .find(&end)
        .ok_or_else(|| format!("no \"{end}\" line"))?;
    let b64: String = text[start..start + len]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD
        .decode(b64)
        .map_err(|e| format!("bad PEM base64: {e}"))
}

/// A P-256 key for ES256.
pub struct Es256 {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Es256 {
    /// From PKCS#8 DER (an Apple `.p8` key, `openssl genpkey -algorithm EC`). ring needs the
    /// public key inside the document, which both of those include.
    pub fn from_pkcs8(der: &[u8]) -> Result<Es256, String> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| format!("not a PKCS#8 P-256 key: {e}"))?;
        Ok(Es256 { key, rng })
    }

    /// From a PEM `PRIVATE KEY` (PKCS#8) block.
    pub fn from_pem(text: &str) -> Result<Es256, String> {
        Es256::from_pkcs8(&pem_der(text, "PRIVATE KEY")?)
    }

    /// The uncompressed public point (65 bytes, `0x04 || X || Y`).
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> Result<String, String> {
        compact(header, claims, |input| {
            self.key
                .sign(&self.rng, input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "ES256 signing failed".to_string())
        })
    }
}

/// An RSA key for RS256 (RSASSA-PKCS1-v1_5 with SHA-256).
pub struct Rs256 {
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl Rs256 {
    /// From PKCS#8 DER (a Google service account's `private_key`).
    pub fn from_pkcs8(der: &[u8]) -> Result<Rs256, String> {
        let key = RsaKeyPair::from_pkcs8(der).map_err(|e| format!("not a PKCS#8 RSA key: {e}"))?;
        Ok(Rs256 {
            key,
            rng: SystemRandom::new(),
        })
    }

    pub fn from_pem(text: &str) -> Result<Rs256, String> {
        Rs256::from_pkcs8(&pem_der(text, "PRIVATE KEY")?)
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> Result<String, String> {
        compact(header, claims, |input| {
            let mut sig = vec![0; self.key.public().modulus_len()];
            self.key
                .sign(&RSA_PKCS1_SHA256, &self.rng, input, &mut sig)
                .map_err(|_| "RS256 signing failed".to_string())?;
            Ok(sig)
        })
    }
}

fn compact(
    header: &Value,
    claims: &Value,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<String, String> {
    let mut out = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&b64url(&sig));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
    use serde_json::json;

    fn parts(jws: &str) -> (Value, Value, Vec<u8>, String) {
        let p: Vec<&str> = jws.split('.').collect();
        assert_eq!(p.len(), 3);
        let h = serde_json::from_slice(&b64url_decode(p[0]).unwrap()).unwrap();
        let c = serde_json::from_slice(&b64url_decode(p[1]).unwrap()).unwrap();
        (
            h,
            c,
            b64url_decode(p[2]).unwrap(),
            format!("{}.{}", p[0], p[1]),
        )
    }

    #[test]
    fn es256_verifies_with_the_public_key_and_is_r_s_not_der() {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let k = Es256::from_pkcs8(pkcs8.as_ref()).unwrap();
        assert_eq!(k.public_key().len(), 65);
        let jws = k
            .sign(
                &json!({"alg":"ES256","kid":"K"}),
                &json!({"iss":"T","iat":1}),
            )
            .unwrap();
        let (h, c, sig, input) = parts(&jws);
        assert_eq!(h, json!({"alg":"ES256","kid":"K"}));
        assert_eq!(c["iss"], "T");
        assert_eq!(sig.len(), 64);
        let pk = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, k.public_key());
        pk.verify(input.as_bytes(), &sig).unwrap();
        assert!(pk.verify(b"other input", &sig).is_err());
    }

    #[test]
    fn rs256_verifies_with_the_fixture_public_key() {
        let sa: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/push/test-only-service-account.json"
        ))
        .unwrap();
        let k = Rs256::from_pem(sa["private_key"].as_str().unwrap()).unwrap();
        let jws = k
            .sign(&json!({"alg":"RS256","typ":"JWT"}), &json!({"a":1}))
            .unwrap();
        let (_, _, sig, input) = parts(&jws);
        let public = pem_der(
            include_str!("../../tests/fixtures/push/test-only-rsa-public.pem"),
            "RSA PUBLIC KEY",
        )
        .unwrap();
        let pk = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public);
        pk.verify(input.as_bytes(), &sig).unwrap();
        assert!(pk.verify(b"x", &sig).is_err());
    }

    #[test]
    fn pem_and_key_errors_are_reported() {
        assert!(pem_der("nothing", "PRIVATE KEY").is_err());
        assert!(
            Es256::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .is_err()
        );
        assert_eq!(b64url_decode("AQI=").unwrap(), vec![1, 2]);
    }
}
