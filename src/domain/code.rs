//! One-time codes: their alphabets and generation from a CSPRNG.

use rand::Rng;

/// The Buka `codeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeType {
    Numeric = 1,
    Alpha = 2,
    Alphanumeric = 3,
    Hex = 4,
}

pub const DEFAULT_CODE_LENGTH: u8 = 4;
pub const MIN_CODE_LENGTH: u8 = 4;
pub const MAX_CODE_LENGTH: u8 = 10;

impl CodeType {
    pub fn from_i64(v: i64) -> Option<Self> {
        match v {
            1 => Some(CodeType::Numeric),
            2 => Some(CodeType::Alpha),
            3 => Some(CodeType::Alphanumeric),
            4 => Some(CodeType::Hex),
            _ => None,
        }
    }

    pub fn as_i64(self) -> i64 {
        self as i64
    }

    fn alphabet(self) -> &'static [u8] {
        match self {
            CodeType::Numeric => b"0123456789",
            CodeType::Alpha => b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            CodeType::Alphanumeric => b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
            CodeType::Hex => b"0123456789ABCDEF",
        }
    }
}

/// A code, held only as long as it takes to hash it and hand it to a provider.
/// Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(String);

impl Code {
    /// Generates a code of `len` symbols from the operating system-seeded CSPRNG.
    /// Every symbol is drawn uniformly (rejection sampling inside `random_range`),
    /// and leading zeros are kept.
    pub fn generate(kind: CodeType, len: u8) -> Self {
        let alphabet = kind.alphabet();
        let mut rng = rand::rng();
        let s = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
            .collect();
        Code(s)
    }

    /// A code the caller supplied (Buka `sendRule`).
    pub fn supplied(value: &str) -> Self {
        Code(value.to_string())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Code(***)")
    }
}

/// The form of a typed code that is compared: generated codes use upper-case alphabets,
/// so the user's input is upper-cased for them; supplied codes compare exactly.
pub fn normalize_input(input: &str, case_insensitive: bool) -> String {
    if case_insensitive {
        input.to_ascii_uppercase()
    } else {
        input.to_string()
    }
}

/// Where a template's text takes the code.
pub const PLACEHOLDER: &str = "##code##";

/// Renders a template text: every `##code##` becomes the code.
pub fn render(text: &str, code: &Code) -> String {
    text.replace(PLACEHOLDER, code.expose())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generates_from_the_right_alphabet_and_length() {
        for kind in [
            CodeType::Numeric,
            CodeType::Alpha,
            CodeType::Alphanumeric,
            CodeType::Hex,
        ] {
            for len in MIN_CODE_LENGTH..=MAX_CODE_LENGTH {
                let c = Code::generate(kind, len);
                assert_eq!(c.expose().len(), len as usize);
                assert!(c.expose().bytes().all(|b| kind.alphabet().contains(&b)));
            }
        }
    }

    #[test]
    fn numeric_codes_keep_leading_zeros_and_spread() {
        let mut firsts = HashSet::new();
        let mut seen = HashSet::new();
        for _ in 0..2000 {
            let c = Code::generate(CodeType::Numeric, 4);
            firsts.insert(c.expose().as_bytes()[0]);
            seen.insert(c.expose().to_string());
        }
        // Every leading digit, including '0', shows up in 2000 draws.
        assert_eq!(firsts.len(), 10);
        assert!(
            seen.len() > 1500,
            "codes should rarely repeat: {}",
            seen.len()
        );
    }

    #[test]
    fn debug_hides_the_value() {
        let c = Code::supplied("123456");
        assert!(!format!("{c:?}").contains("123456"));
    }

    #[test]
    fn renders_every_placeholder() {
        let c = Code::supplied("0042");
        assert_eq!(
            render("##code## is your code (##code##)", &c),
            "0042 is your code (0042)"
        );
    }

    #[test]
    fn code_types_round_trip() {
        for v in 1..=4 {
            assert_eq!(CodeType::from_i64(v).map(CodeType::as_i64), Some(v));
        }
        assert_eq!(CodeType::from_i64(0), None);
        assert_eq!(CodeType::from_i64(5), None);
    }
}
