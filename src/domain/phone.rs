//! Phone numbers, parsed once at the edge with a real numbering plan (libphonenumber's
//! metadata, through the `rlibphonenumber` port).

use std::fmt;

/// Why a destination number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("must be 10-14 digits, country code first, optionally after a leading '+'")]
    Format,
    #[error("is not a possible number in the numbering plan of its country")]
    Impossible,
}

/// A valid international phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber {
    digits: String,
    country_code: u16,
    region: Option<String>,
}

impl PhoneNumber {
    /// Parses the Buka `to` form: 10–14 digits, country code first, an optional leading `+`.
    pub fn parse(raw: &str) -> Result<Self, PhoneError> {
        let digits = raw.strip_prefix('+').unwrap_or(raw);
        if !(10..=14).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PhoneError::Format);
        }
        Self::parse_international(digits)
    }

    /// Parses any length of international digits (no '+'), checking the numbering plan.
    pub fn parse_international(digits: &str) -> Result<Self, PhoneError> {
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PhoneError::Format);
        }
        let parsed = rlibphonenumber::PhoneNumber::parse(format!("+{digits}"), None)
            .map_err(|_| PhoneError::Impossible)?;
        // What `is_valid` does, without finding the region a second time for the answer
        // (for +1 numbers that means trying the patterns of every NANP region).
        let region = parsed
            .get_region_code()
            .filter(|r| parsed.is_valid_for_region(*r))
            .ok_or(PhoneError::Impossible)?;
        let country_code =
            u16::try_from(parsed.country_code).map_err(|_| PhoneError::Impossible)?;
        Ok(Self {
            digits: digits.to_string(),
            country_code,
            region: Some(region.to_string()),
        })
    }

    /// E.164 digits without the leading '+'.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// E.164 with the leading '+'.
    pub fn e164(&self) -> String {
        format!("+{}", self.digits)
    }

    pub fn country_code(&self) -> u16 {
        self.country_code
    }

    /// ISO 3166-1 alpha-2 region, when the numbering plan names one.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The mobile country code of the number's region, when known.
    pub fn mcc(&self) -> Option<u16> {
        self.region().and_then(super::mcc::mcc_for_region)
    }

    /// The number with its middle hidden, for logs: `+9185*****12`.
    pub fn masked(&self) -> String {
        mask_digits(&self.digits)
    }
}

impl fmt::Display for PhoneNumber {
    /// Displays masked, so a number never reaches a log in full by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Masks a string of digits, keeping the first four and the last two.
pub fn mask_digits(digits: &str) -> String {
    let n = digits.chars().count();
    if n <= 6 {
        return "*".repeat(n);
    }
    let head: String = digits.chars().take(4).collect();
    let tail: String = digits.chars().skip(n - 2).collect();
    format!("+{head}{}{tail}", "*".repeat(n - 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_plus() {
        let a = PhoneNumber::parse("14155552671").unwrap();
        let b = PhoneNumber::parse("+14155552671").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.digits(), "14155552671");
        assert_eq!(a.region(), Some("US"));
        assert_eq!(a.country_code(), 1);
        assert_eq!(a.mcc(), Some(310));
    }

    #[test]
    fn india_and_uk() {
        let n = PhoneNumber::parse("919856321412").unwrap();
        assert_eq!(n.region(), Some("IN"));
        assert_eq!(n.mcc(), Some(404));
        let n = PhoneNumber::parse("447400123456").unwrap();
        assert_eq!(n.region(), Some("GB"));
        assert_eq!(n.mcc(), Some(234));
    }

    #[test]
    fn rejects_bad_format() {
        for raw in [
            "",
            "+",
            "123",
            "12345678901234567",
            "1415555267a",
            "++14155552671",
            "1 4155552671",
        ] {
            assert_eq!(PhoneNumber::parse(raw), Err(PhoneError::Format), "{raw}");
        }
    }

    #[test]
    fn rejects_impossible_numbers() {
        // Country code 999 does not exist; +1 000 is not a valid NANP area code.
        assert_eq!(
            PhoneNumber::parse("9991234567890"),
            Err(PhoneError::Impossible)
        );
        assert_eq!(
            PhoneNumber::parse("10005552671"),
            Err(PhoneError::Impossible)
        );
    }

    #[test]
    fn masks_for_logs() {
        let n = PhoneNumber::parse("919856321412").unwrap();
        assert_eq!(n.masked(), "+9198******12");
        assert_eq!(format!("{n}"), "+9198******12");
        assert!(!format!("{n}").contains("563214"));
    }
}
