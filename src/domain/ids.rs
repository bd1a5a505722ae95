//! Identifiers handed to callers.

use rand::Rng;

/// A 20-digit decimal verification id: 13 digits of Unix milliseconds, then 7 random digits.
/// Roughly time-ordered; uniqueness is enforced by the store, which asks for another on a clash.
pub fn new_verification_id(unix_ms: i64) -> String {
    let ms = unix_ms.clamp(0, 9_999_999_999_999);
    let tail: u32 = rand::rng().random_range(0..10_000_000);
    format!("{ms:013}{tail:07}")
}

/// Whether a string has the shape of a verification id.
pub fn is_verification_id(s: &str) -> bool {
    s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit())
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Random alphanumeric string from the CSPRNG.
pub fn random_alnum(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char)
        .collect()
}

/// `bytes` random bytes from the CSPRNG as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}

/// An SGate `sessionid`: 32 lowercase hex characters.
pub fn new_external_session_id() -> String {
    random_hex(16)
}

/// An SGate `requestId`: 32 upper-case hex characters.
pub fn new_request_id() -> String {
    random_hex(16).to_ascii_uppercase()
}

/// An app id: 8 random alphanumerics.
pub fn new_app_id() -> String {
    random_alnum(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_ids_are_20_digits_and_time_ordered() {
        let a = new_verification_id(1_700_000_000_000);
        let b = new_verification_id(1_700_000_000_001);
        assert!(is_verification_id(&a) && is_verification_id(&b));
        assert!(a < b);
        assert!(a.starts_with("1700000000000"));
    }

    #[test]
    fn app_ids_are_8_alnum() {
        let id = new_app_id();
        assert_eq!(id.len(), 8);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(new_app_id(), new_app_id());
    }

    #[test]
    fn hex_ids() {
        let s = new_external_session_id();
        assert_eq!(s.len(), 32);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        let r = new_request_id();
        assert_eq!(r.len(), 32);
        assert!(
            r.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        );
        assert_ne!(new_request_id(), r);
    }

    #[test]
    fn shape_check() {
        assert!(!is_verification_id("123"));
        assert!(!is_verification_id("1234567890123456789a"));
    }
}
