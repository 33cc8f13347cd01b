//! Web Push message encryption: RFC 8291 (`aes128gcm`, RFC 8188), one record.
//!
//! Why by hand with ring: the `ece` crate's only real backend is OpenSSL, and ring already
//! has P-256 ECDH, HMAC-SHA-256 (an HKDF with one block of output is one HMAC) and
//! AES-128-GCM. The work is split at the ECDH seam: `encrypt` makes the ephemeral key and
//! salt and does the ECDH; `encrypt_with_secret` and `schedule` are pure functions of the
//! shared secret, so RFC 8291's example (section 5) is checked byte for byte in the tests
//! below. ring cannot import a static ECDH private key, so only its ECDH itself is left to
//! the round trip through the fake push service (`tests/it/push`), which decrypts as a
//! browser does.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The record size everyone uses (RFC 8291's example, web-push, autopush).
pub const RS: u32 = 4096;
/// The largest plaintext that fits one 4096-byte record with its 86-byte header:
/// 4096 - 86 - 1 (delimiter) - 16 (tag).
pub const MAX_PLAINTEXT: usize = 3993;

/// RFC 8291's key schedule, every intermediate kept so tests can compare it with the RFC.
#[derive(Debug, PartialEq, Eq)]
pub struct Schedule {
    pub prk_key: [u8; 32],
    pub ikm: [u8; 32],
    pub prk: [u8; 32],
    pub cek: [u8; 16],
    pub nonce: [u8; 12],
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// Section 3.3-3.4 of RFC 8291, then RFC 8188's CEK and nonce.
pub fn schedule(
    ecdh_secret: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    auth: &[u8],
    salt: &[u8],
) -> Schedule {
    let prk_key = hmac256(auth, &[ecdh_secret]);
    let ikm = hmac256(&prk_key, &[b"WebPush: info\0", ua_public, as_public, &[1]]);
    let prk = hmac256(salt, &[&ikm]);
    let cek_full = hmac256(&prk, &[b"Content-Encoding: aes128gcm\0", &[1]]);
    let nonce_full = hmac256(&prk, &[b"Content-Encoding: nonce\0", &[1]]);
    let mut cek = [0; 16];
    cek.copy_from_slice(&cek_full[..16]);
    let mut nonce = [0; 12];
    nonce.copy_from_slice(&nonce_full[..12]);
    Schedule {
        prk_key,
        ikm,
        prk,
        cek,
        nonce,
    }
}

fn check_keys(ua_public: &[u8], auth: &[u8]) -> Result<(), String> {
    if ua_public.len() != 65 || ua_public[0] != 4 {
        return Err("p256dh is not an uncompressed P-256 point (65 bytes)".into());
    }
    if auth.len() != 16 {
        return Err(format!("auth is {} bytes, not 16", auth.len()));
    }
    Ok(())
}

/// The whole `aes128gcm` body: header (salt, rs, keyid = `as_public`) and one record.
pub fn encrypt_with_secret(
    ecdh_secret: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    auth: &[u8],
    salt: &[u8; 16],
    plaintext: &[u8],
) -> Result<Vec<u8>, String> {
    check_keys(ua_public, auth)?;
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(format!(
            "payload of {} bytes is over {MAX_PLAINTEXT}",
            plaintext.len()
        ));
    }
    let s = schedule(ecdh_secret, ua_public, as_public, auth, salt);
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &s.cek).map_err(|_| "bad CEK")?);
    let mut record = Vec::with_capacity(plaintext.len() + 17);
    record.extend_from_slice(plaintext);
    record.push(2); // the last (and only) record's delimiter; no padding
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(s.nonce),
        Aad::empty(),
        &mut record,
    )
    .map_err(|_| "AES-GCM seal failed")?;
    let mut out = Vec::with_capacity(86 + record.len());
    out.extend_from_slice(salt);
    out.extend_from_slice(&RS.to_be_bytes());
    out.push(as_public.len() as u8);
    out.extend_from_slice(as_public);
    out.extend_from_slice(&record);
    Ok(out)
}

/// Encrypts `plaintext` for a subscription: `ua_public` is its `p256dh` (65 bytes), `auth` its
/// 16-byte auth secret. A fresh sender key pair and salt for every message.
pub fn encrypt(ua_public: &[u8], auth: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, String> {
    check_keys(ua_public, auth)?;
    let rng = SystemRandom::new();
    let private = EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| "no ECDH key")?;
    let as_public = private.compute_public_key().map_err(|_| "no ECDH key")?;
    let mut salt = [0; 16];
    rng.fill(&mut salt).map_err(|_| "no random salt")?;
    // ring checks that the peer's point is on the curve.
    let secret = agree_ephemeral(
        private,
        &UnparsedPublicKey::new(&ECDH_P256, ua_public),
        |s| s.to_vec(),
    )
    .map_err(|_| "p256dh is not a point on P-256".to_string())?;
    encrypt_with_secret(
        &secret,
        ua_public,
        as_public.as_ref(),
        auth,
        &salt,
        plaintext,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::jws::b64url_decode as d;

    // RFC 8291 section 5 (every value recomputed in /work/notes/push-research.md, section 3.3).
    const AS_PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const ECDH_SECRET: &str = "kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs";
    const PLAINTEXT: &[u8] = b"When I grow up, I want to be a watermelon";
    const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    #[test]
    fn rfc8291_key_schedule_byte_for_byte() {
        let s = schedule(
            &d(ECDH_SECRET).unwrap(),
            &d(UA_PUBLIC).unwrap(),
            &d(AS_PUBLIC).unwrap(),
            &d(AUTH).unwrap(),
            &d(SALT).unwrap(),
        );
        assert_eq!(
            s.prk_key.to_vec(),
            d("Snr3JMxaHVDXHWJn5wdC52WjpCtd2EIEGBykDcZW32k").unwrap()
        );
        assert_eq!(
            s.ikm.to_vec(),
            d("S4lYMb_L0FxCeq0WhDx813KgSYqU26kOyzWUdsXYyrg").unwrap()
        );
        assert_eq!(
            s.prk.to_vec(),
            d("09_eUZGrsvxChDCGRCdkLiDXrReGOEVeSCdCcPBSJSc").unwrap()
        );
        assert_eq!(s.cek.to_vec(), d("oIhVW04MRdy2XN9CiKLxTg").unwrap());
        assert_eq!(s.nonce.to_vec(), d("4h_95klXJ5E_qnoN").unwrap());
    }

    #[test]
    fn rfc8291_body_byte_for_byte() {
        let salt: [u8; 16] = d(SALT).unwrap().try_into().unwrap();
        let body = encrypt_with_secret(
            &d(ECDH_SECRET).unwrap(),
            &d(UA_PUBLIC).unwrap(),
            &d(AS_PUBLIC).unwrap(),
            &d(AUTH).unwrap(),
            &salt,
            PLAINTEXT,
        )
        .unwrap();
        assert_eq!(
            body.len(),
            144,
            "the RFC's Content-Length: 145 is off by one"
        );
        assert_eq!(body, d(BODY).unwrap());
        // One changed input byte changes the output: the comparison can fail.
        let other = encrypt_with_secret(
            &d(ECDH_SECRET).unwrap(),
            &d(UA_PUBLIC).unwrap(),
            &d(AS_PUBLIC).unwrap(),
            &d(AUTH).unwrap(),
            &salt,
            b"When I grow up, I want to be a watermelOn",
        )
        .unwrap();
        assert_ne!(other, body);
    }

    #[test]
    fn bad_keys_and_oversized_payloads_are_refused() {
        let ua = d(UA_PUBLIC).unwrap();
        let auth = d(AUTH).unwrap();
        assert!(encrypt(&ua[..64], &auth, b"x").is_err());
        assert!(encrypt(&ua, &auth[..15], b"x").is_err());
        let mut off_curve = ua.clone();
        off_curve[64] ^= 1;
        assert!(encrypt(&off_curve, &auth, b"x")
            .unwrap_err()
            .contains("not a point"));
        assert!(encrypt(&ua, &auth, &[b'a'; MAX_PLAINTEXT + 1]).is_err());
        let body = encrypt(&ua, &auth, &[b'a'; MAX_PLAINTEXT]).unwrap();
        assert_eq!(body.len(), 4096);
    }
}
