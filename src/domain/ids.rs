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
    fn shape_check() {
        assert!(!is_verification_id("123"));
        assert!(!is_verification_id("1234567890123456789a"));
    }
}
