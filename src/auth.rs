//! Passwords (argon2id), session tokens (JWT, HS256) and (v1.1) refresh tokens.
//!
//! A token names one user and one device. The secret is configurable so that an application
//! backend can mint tokens for its own users without calling `POST /v1/sessions`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use jsonwebtoken::{
    decode, encode, Algorithm as JwtAlg, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// user id
    pub sub: String,
    /// device id
    pub did: String,
    pub iat: i64,
    /// expiry, seconds since the epoch
    pub exp: i64,
}

pub struct Auth {
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
    argon: Argon2<'static>,
    /// v1.1: signs refresh tokens, so that a genuine but spent one (reuse) can be told from
    /// a made-up one (which must not revoke anything).
    refresh_key: ring::hmac::Key,
    /// v1.1: signs short-lived media URLs (`media.url_secret`, else derived from the token
    /// secret, so every node of a cluster signs and checks the same way).
    media_key: ring::hmac::Key,
    pub token_ttl_secs: u64,
}

impl Auth {
    pub fn new(
        secret: &[u8],
        token_ttl_secs: u64,
        memory_kib: u32,
        iterations: u32,
    ) -> Result<Auth, String> {
        let params = Params::new(memory_kib, iterations, 1, None)
            .map_err(|e| format!("argon2 params: {e}"))?;
        let mut validation = Validation::new(JwtAlg::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Auth {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
            validation,
            argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            refresh_key: ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                &[b"refresh:", secret].concat(),
            ),
            media_key: ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                &[b"media-url:", secret].concat(),
            ),
            token_ttl_secs,
        })
    }

    pub fn hash_password(&self, password: &str) -> Result<String, String> {
        let salt =
            SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    }

    pub fn verify_password(&self, password: &str, hash: &str) -> bool {
        match PasswordHash::new(hash) {
            Ok(parsed) => self
                .argon
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Returns the token and its expiry (ms since the epoch).
    pub fn issue(&self, user_id: &str, device_id: &str, now_ms: i64) -> (String, i64) {
        let iat = now_ms / 1000;
        let exp = iat + self.token_ttl_secs as i64;
        let claims = Claims {
            sub: user_id.to_string(),
            did: device_id.to_string(),
            iat,
            exp,
        };
        let token = encode(&Header::new(JwtAlg::HS256), &claims, &self.enc)
            .expect("HS256 encoding cannot fail");
        (token, exp * 1000)
    }

    pub fn verify(&self, token: &str) -> Option<Claims> {
        decode::<Claims>(token, &self.dec, &self.validation)
            .ok()
            .map(|d| d.claims)
    }

    /// v1.1: a new refresh token for a device, `<device_id>.<nonce>.<mac>` (base64url; the
    /// MAC is HMAC-SHA256 over `<device_id>.<nonce>`), and the hash the store keeps.
    pub fn new_refresh_token(&self, device_id: &str) -> (String, String) {
        let body = format!("{device_id}.{}", B64.encode(rand::random::<[u8; 24]>()));
        let mac = ring::hmac::sign(&self.refresh_key, body.as_bytes());
        let token = format!("{body}.{}", B64.encode(mac.as_ref()));
        let hash = refresh_hash(&token);
        (token, hash)
    }

    /// v1.1: media URLs get their own secret (`media.url_secret`) instead of one derived
    /// from the token secret.
    pub fn with_media_secret(mut self, secret: &[u8]) -> Auth {
        if !secret.is_empty() {
            self.media_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        }
        self
    }

    /// v1.1: the signature of a media URL: HMAC-SHA256 over file id, user and expiry (ms),
    /// base64url.
    pub fn sign_media(&self, file_id: &str, user_id: &str, exp_ms: i64) -> String {
        let body = format!("media1\n{file_id}\n{user_id}\n{exp_ms}");
        B64.encode(ring::hmac::sign(&self.media_key, body.as_bytes()).as_ref())
    }

    /// Whether `sig` is this server's signature of the media URL (expiry not checked here).
    pub fn media_signed(&self, file_id: &str, user_id: &str, exp_ms: i64, sig: &str) -> bool {
        let body = format!("media1\n{file_id}\n{user_id}\n{exp_ms}");
        B64.decode(sig)
            .is_ok_and(|mac| ring::hmac::verify(&self.media_key, body.as_bytes(), &mac).is_ok())
    }

    /// The device a refresh token names, if this server signed it (spent or not).
    pub fn refresh_device<'t>(&self, token: &'t str) -> Option<&'t str> {
        let (body, mac) = token.rsplit_once('.')?;
        let mac = B64.decode(mac).ok()?;
        ring::hmac::verify(&self.refresh_key, body.as_bytes(), &mac).ok()?;
        body.split_once('.')
            .map(|(d, _)| d)
            .filter(|d| !d.is_empty())
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The stored form of a refresh token: hex SHA-256 (the token itself is never stored).
pub fn refresh_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_tamper() {
        let a = Auth::new(b"secret", 60, 64, 1).unwrap();
        let (t, exp) = a.issue("u1", "d1", 1_000_000);
        assert_eq!(exp, (1_000 + 60) * 1000);
        // iat 1000 s is long expired in real time
        assert!(a.verify(&t).is_none());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let (t, _) = a.issue("u1", "d1", now);
        let c = a.verify(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.did.as_str()), ("u1", "d1"));
        let other = Auth::new(b"other", 60, 64, 1).unwrap();
        assert!(other.verify(&t).is_none());
    }

    #[test]
    fn refresh_token_names_its_device_when_signed() {
        let a = Auth::new(b"secret", 60, 64, 1).unwrap();
        let (t, h) = a.new_refresh_token("dev1");
        assert_eq!(a.refresh_device(&t), Some("dev1"));
        assert_eq!(refresh_hash(&t), h);
        assert_ne!(a.new_refresh_token("dev1").0, t);
        assert_eq!(a.refresh_device("nodot"), None);
        let forged = format!("dev1.AAAA.{}", t.rsplit_once('.').unwrap().1);
        assert_eq!(a.refresh_device(&forged), None);
        let other = Auth::new(b"other", 60, 64, 1).unwrap();
        assert_eq!(other.refresh_device(&t), None);
    }

    #[test]
    fn media_urls_are_bound_to_file_user_expiry_and_secret() {
        let a = Auth::new(b"secret", 60, 64, 1).unwrap();
        let sig = a.sign_media("f1", "u1", 1000);
        assert!(a.media_signed("f1", "u1", 1000, &sig));
        assert!(!a.media_signed("f2", "u1", 1000, &sig));
        assert!(!a.media_signed("f1", "u2", 1000, &sig));
        assert!(!a.media_signed("f1", "u1", 1001, &sig));
        assert!(!a.media_signed("f1", "u1", 1000, "not base64!"));
        // Another node with the same token secret agrees; a configured media secret differs.
        let same = Auth::new(b"secret", 60, 64, 1).unwrap();
        assert!(same.media_signed("f1", "u1", 1000, &sig));
        let own = Auth::new(b"secret", 60, 64, 1)
            .unwrap()
            .with_media_secret(b"media");
        assert!(!own.media_signed("f1", "u1", 1000, &sig));
        let empty = Auth::new(b"secret", 60, 64, 1)
            .unwrap()
            .with_media_secret(b"");
        assert!(empty.media_signed("f1", "u1", 1000, &sig), "empty: derived");
    }

    #[test]
    fn password_hash_verifies() {
        let a = Auth::new(b"s", 60, 64, 1).unwrap();
        let h = a.hash_password("pw").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(a.verify_password("pw", &h));
        assert!(!a.verify_password("px", &h));
    }
}
