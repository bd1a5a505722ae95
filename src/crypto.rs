//! Keys and the few cryptographic operations otpgate performs.
//!
//! - API secrets and pending codes are encrypted at rest with ChaCha20-Poly1305 under a key
//!   derived from the operator's master key.
//! - Codes are checked against an HMAC-SHA-256 over the session id and the code, compared in
//!   constant time.
//! - SGate signatures are MD5withRSA (RSASSA-PKCS1-v1_5 over MD5) of a hex digest, Base64;
//!   [`RsaSigner`] holds the system's key, [`RsaVerifier`] a merchant's public key.
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
    #[error("not an RSA public key in PEM (PKCS#8 `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`)")]
    BadPublicKey,
    #[error("the RSA key must be 2048 to 4096 bits, not {0}")]
    KeySize(usize),
    #[error("RSA: {0}")]
    Rsa(String),
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

/// Bits of the system key otpgate generates (the vendor's documented size).
pub const RSA_BITS: usize = 2048;

/// An RSA private key that signs SGate responses. `Debug` never shows it.
pub struct RsaSigner(rsa::PrivateKey);

impl fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RsaSigner(***)")
    }
}

impl RsaSigner {
    /// A fresh 2048-bit key (about 0.1 s optimised; run it off the async threads).
    pub fn generate() -> Result<Self, CryptoError> {
        rsa::PrivateKey::new(&mut rand_rsa::rng(), RSA_BITS)
            .map(Self)
            .map_err(|e| CryptoError::Rsa(e.to_string()))
    }

    /// The key as PKCS#8 DER in standard Base64, for sealing.
    pub fn to_pkcs8_base64(&self) -> Result<String, CryptoError> {
        use rsa::pkcs8::EncodePrivateKey;
        let der = self
            .0
            .to_pkcs8_der()
            .map_err(|e| CryptoError::Rsa(e.to_string()))?;
        Ok(STANDARD.encode(der.as_bytes()))
    }

    pub fn from_pkcs8_base64(b64: &str) -> Result<Self, CryptoError> {
        use rsa::pkcs8::DecodePrivateKey;
        let der = STANDARD.decode(b64).map_err(|_| CryptoError::Decrypt)?;
        rsa::PrivateKey::from_pkcs8_der(&der)
            .map(Self)
            .map_err(|e| CryptoError::Rsa(e.to_string()))
    }

    /// The public half as PEM (`-----BEGIN PUBLIC KEY-----`, X.509 SubjectPublicKeyInfo).
    pub fn public_pem(&self) -> Result<String, CryptoError> {
        use rsa::pkcs8::EncodePublicKey;
        self.0
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .map_err(|e| CryptoError::Rsa(e.to_string()))
    }

    /// MD5withRSA of `message`, Base64.
    pub fn sign_md5(&self, message: &[u8]) -> Result<String, CryptoError> {
        let sig = self
            .0
            .pkcs1v15_sign::<Md5>(message)
            .map_err(|e| CryptoError::Rsa(e.to_string()))?;
        Ok(STANDARD.encode(sig.as_slice()))
    }
}

/// An RSA public key that checks a merchant's signatures.
#[derive(Clone)]
pub struct RsaVerifier(rsa::PublicKey);

impl fmt::Debug for RsaVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaVerifier({} bits)", self.bits())
    }
}

impl RsaVerifier {
    /// Parses a PEM public key, PKCS#8 (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`), of
    /// 2048–4096 bits.
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        use rsa::pkcs1::DecodeRsaPublicKey;
        use rsa::pkcs8::DecodePublicKey;
        let pem = pem.trim();
        let key = rsa::PublicKey::from_public_key_pem(pem)
            .or_else(|_| rsa::PublicKey::from_pkcs1_pem(pem))
            .map_err(|_| CryptoError::BadPublicKey)?;
        let v = Self(key);
        if !(2048..=4096).contains(&v.bits()) {
            return Err(CryptoError::KeySize(v.bits()));
        }
        Ok(v)
    }

    pub fn bits(&self) -> usize {
        use rsa::traits::PublicKeyParts;
        self.0.size() * 8
    }

    /// The key as PKCS#8 PEM, whichever form it was given in.
    pub fn to_pem(&self) -> Result<String, CryptoError> {
        use rsa::pkcs8::EncodePublicKey;
        self.0
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .map_err(|e| CryptoError::Rsa(e.to_string()))
    }

    /// Whether `signature_b64` is a valid MD5withRSA signature of `message` (Base64 with or
    /// without padding; whitespace ignored).
    pub fn verify_md5(&self, message: &[u8], signature_b64: &str) -> bool {
        let compact: String = signature_b64
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let Ok(sig) = STANDARD
            .decode(&compact)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&compact))
        else {
            return false;
        };
        self.0.pkcs1v15_verify::<Md5>(message, &sig).is_ok()
    }
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

    #[test]
    fn md5_with_rsa_round_trips_and_reads_both_pem_forms() {
        let signer = RsaSigner::generate().unwrap();
        let pem = signer.public_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        let v = RsaVerifier::from_pem(&pem).unwrap();
        assert_eq!(v.bits(), 2048);
        let sig = signer
            .sign_md5(b"8a5908e27626d79d73dc14bd9ba00e72")
            .unwrap();
        assert!(v.verify_md5(b"8a5908e27626d79d73dc14bd9ba00e72", &sig));
        assert!(!v.verify_md5(b"8a5908e27626d79d73dc14bd9ba00e73", &sig));
        assert!(!v.verify_md5(b"8a5908e27626d79d73dc14bd9ba00e72", "not base64!"));
        // PKCS#1 form of the same key.
        use rsa::pkcs1::EncodeRsaPublicKey;
        let pkcs1 = signer
            .0
            .to_public_key()
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
        let v1 = RsaVerifier::from_pem(&pkcs1).unwrap();
        assert!(v1.verify_md5(b"8a5908e27626d79d73dc14bd9ba00e72", &sig));
        assert_eq!(v1.to_pem().unwrap(), pem);
        // The private key survives sealing's Base64 form.
        let again = RsaSigner::from_pkcs8_base64(&signer.to_pkcs8_base64().unwrap()).unwrap();
        assert_eq!(again.public_pem().unwrap(), pem);
        assert!(matches!(
            RsaVerifier::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
            Err(CryptoError::BadPublicKey)
        ));
    }
}
