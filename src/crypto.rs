//! Keys and the few cryptographic operations otpgate performs.
//!
//! - API secrets and pending codes are encrypted at rest with ChaCha20-Poly1305 under a key
//!   derived from the operator's master key.
//! - Codes are checked against an HMAC-SHA-256 over the session id and the code, compared in
//!   constant time.
//! - Buka `Sign` is MD5(apiKey + apiSecret + Timestamp), compared case-insensitively in
//!   constant time.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the master key must be 32 bytes, given as 64 hex characters or standard base64")]
    BadMasterKey,
    #[error("a stored secret could not be decrypted (wrong master key, or the data was altered)")]
    Decrypt,
}

/// The operator's master key. Its `Debug` never shows it.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    /// Parses 64 hex characters or standard base64 of exactly 32 bytes.
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        let s = s.trim();
        let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(s).map_err(|_| CryptoError::BadMasterKey)?
        } else {
            STANDARD.decode(s).map_err(|_| CryptoError::BadMasterKey)?
        };
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self(arr))
    }

    /// A fresh random key and its base64 form.
    pub fn generate() -> (Self, String) {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        (Self(k), STANDARD.encode(k))
    }

    fn derive(&self, label: &str) -> [u8; 32] {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// Keys derived from the master key.
#[derive(Clone)]
pub struct Keys {
    cipher: ChaCha20Poly1305,
    code_key: [u8; 32],
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(***)")
    }
}

impl Keys {
    pub fn new(master: &MasterKey) -> Self {
        let enc = master.derive("otpgate/at-rest-encryption/v1");
        let cipher = ChaCha20Poly1305::new_from_slice(&enc)
            .unwrap_or_else(|_| unreachable!("the derived key is 32 bytes"));
        Self {
            cipher,
            code_key: master.derive("otpgate/code-hash/v1"),
        }
    }

    /// Encrypts `plain`, bound to `context` (e.g. the row it belongs to), as `v1.<base64url>`.
    pub fn seal(&self, plain: &str, context: &str) -> String {
        let mut nonce_bytes = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce_bytes);
        let nonce = Nonce::from(nonce_bytes);
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .unwrap_or_else(|_| {
                unreachable!("ChaCha20-Poly1305 encryption does not fail in memory")
            });
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        format!("v1.{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Decrypts what [`Keys::seal`] produced for the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<String, CryptoError> {
        let body = sealed.strip_prefix("v1.").ok_or(CryptoError::Decrypt)?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Decrypt)?;
        if raw.len() < 12 + 16 {
            return Err(CryptoError::Decrypt);
        }
        let (n, ct) = raw.split_at(12);
        let nonce_bytes: [u8; 12] = n.try_into().map_err(|_| CryptoError::Decrypt)?;
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Decrypt)
    }

    /// The keyed hash a code is checked against: HMAC-SHA-256(code key, session id ‖ 0 ‖ code).
    pub fn code_hash(&self, session_id: &str, code: &str) -> String {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.code_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(session_id.as_bytes());
        mac.update(&[0]);
        mac.update(code.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Constant-time equality of two strings (length may leak, content does not).
pub fn ct_eq_str(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The Buka signature: lower-case hex MD5 of `api_key + api_secret + timestamp`.
pub fn buka_sign(api_key: &str, api_secret: &str, timestamp: &str) -> String {
    let mut h = Md5::new();
    h.update(api_key.as_bytes());
    h.update(api_secret.as_bytes());
    h.update(timestamp.as_bytes());
    hex::encode(h.finalize())
}

/// Whether a caller's `Sign` matches, ignoring case, in constant time.
pub fn buka_sign_matches(api_key: &str, api_secret: &str, timestamp: &str, given: &str) -> bool {
    let expected = buka_sign(api_key, api_secret, timestamp);
    ct_eq_str(&expected, &given.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&MasterKey::parse(&"11".repeat(32)).unwrap())
    }

    #[test]
    fn vendor_worked_example() {
        assert_eq!(
            buka_sign("bDqJFiq9", "7bz1lzh9", "1630468800"),
            "05d7a50893e22a5c4bb3216ae3396c7c"
        );
        assert!(buka_sign_matches(
            "bDqJFiq9",
            "7bz1lzh9",
            "1630468800",
            "05D7A50893E22A5C4BB3216AE3396C7C"
        ));
        assert!(!buka_sign_matches(
            "bDqJFiq9",
            "7bz1lzh9",
            "1630468801",
            "05d7a50893e22a5c4bb3216ae3396c7c"
        ));
    }

    #[test]
    fn master_key_forms() {
        assert!(MasterKey::parse(&"ab".repeat(32)).is_ok());
        let (_, b64) = MasterKey::generate();
        assert!(MasterKey::parse(&b64).is_ok());
        assert!(MasterKey::parse("short").is_err());
        assert!(MasterKey::parse(&"ab".repeat(31)).is_err());
        assert!(!format!("{:?}", MasterKey::parse(&b64).unwrap()).contains(&b64));
    }

    #[test]
    fn seal_round_trips_and_binds_context() {
        let k = keys();
        let sealed = k.seal("s3cret", "tenant:1");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(k.open(&sealed, "tenant:1").unwrap(), "s3cret");
        assert!(k.open(&sealed, "tenant:2").is_err());
        assert_ne!(k.seal("s3cret", "tenant:1"), sealed, "nonces differ");
        let other = Keys::new(&MasterKey::parse(&"22".repeat(32)).unwrap());
        assert!(other.open(&sealed, "tenant:1").is_err());
        assert!(k.open("v1.AAAA", "tenant:1").is_err());
        assert!(k.open("garbage", "tenant:1").is_err());
    }

    #[test]
    fn code_hash_is_keyed_and_bound_to_the_session() {
        let k = keys();
        let h = k.code_hash("s1", "1234");
        assert_eq!(h.len(), 64);
        assert_eq!(h, k.code_hash("s1", "1234"));
        assert_ne!(h, k.code_hash("s2", "1234"));
        assert_ne!(h, k.code_hash("s1", "1235"));
        assert!(ct_eq_str(&h, &k.code_hash("s1", "1234")));
    }
}
