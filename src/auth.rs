//! Passwords (argon2id) and session tokens (JWT, HS256).
//!
//! A token names one user and one device. The secret is configurable so that an application
//! backend can mint tokens for its own users without calling `POST /v1/sessions`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
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
    fn password_hash_verifies() {
        let a = Auth::new(b"s", 60, 64, 1).unwrap();
        let h = a.hash_password("pw").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(a.verify_password("pw", &h));
        assert!(!a.verify_password("px", &h));
    }
}
