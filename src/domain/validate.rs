//! Small field rules shared by the dialects and the service.

/// Length in characters (not bytes) within `min..=max`.
pub fn char_len_between(s: &str, min: usize, max: usize) -> bool {
    let n = s.chars().count();
    (min..=max).contains(&n)
}

/// A sender id a carrier will take: up to 11 letters, digits and spaces with at least one
/// letter (alphanumeric sender), or up to 15 digits with an optional leading '+' (numeric).
pub fn is_valid_sender_id(s: &str) -> bool {
    let numeric = s.strip_prefix('+').unwrap_or(s);
    if !numeric.is_empty() && numeric.bytes().all(|b| b.is_ascii_digit()) {
        return numeric.len() <= 15;
    }
    !s.is_empty()
        && s.len() <= 11
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
        && s.bytes().any(|b| b.is_ascii_alphabetic())
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_lengths_count_characters() {
        assert!(char_len_between("测试任务流", 4, 32));
        assert!(!char_len_between("abc", 4, 32));
    }

    #[test]
    fn sender_ids() {
        assert!(is_valid_sender_id("OTPGATE"));
        assert!(is_valid_sender_id("My Bank"));
        assert!(is_valid_sender_id("+14155552671"));
        assert!(is_valid_sender_id("123456789012345"));
        assert!(!is_valid_sender_id("1234567890123456"));
        assert!(!is_valid_sender_id("ABCDEFGHIJKL"));
        assert!(!is_valid_sender_id(""));
        assert!(!is_valid_sender_id("bad-char"));
    }
}

/// Parses a non-negative decimal price with at most 6 places into micro-units.
pub fn parse_price(s: &str) -> Option<i64> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() || whole.len() > 12 || frac.len() > 6 {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let w: i64 = whole.parse().ok()?;
    let f: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    w.checked_mul(1_000_000)?.checked_add(f)
}

/// Formats micro-units as a decimal string with 6 places: `0.045000`.
pub fn format_micros(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
}

/// Parses call billing increments `FIRST+NEXT` in seconds, e.g. `20+20`.
pub fn parse_bill_period(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('+')?;
    let a: u32 = a.parse().ok()?;
    let b: u32 = b.parse().ok()?;
    (a > 0 && b > 0 && a <= 3600 && b <= 3600).then_some((a, b))
}

/// Rounds a call duration up to the billing increments: 0 stays 0; otherwise the first block,
/// then whole further blocks.
pub fn charged_duration(duration_secs: u32, (first, next): (u32, u32)) -> u32 {
    if duration_secs == 0 {
        0
    } else if duration_secs <= first {
        first
    } else {
        first + (duration_secs - first).div_ceil(next) * next
    }
}

/// The charged duration of a call and the billing blocks it started: `(seconds, blocks)`.
pub fn call_charge(duration_secs: u32, period: (u32, u32)) -> (u32, u32) {
    let charged = charged_duration(duration_secs, period);
    let blocks = if charged == 0 {
        0
    } else {
        1 + (charged - period.0) / period.1
    };
    (charged, blocks)
}

#[cfg(test)]
mod money_tests {
    use super::*;

    #[test]
    fn prices() {
        assert_eq!(parse_price("0"), Some(0));
        assert_eq!(parse_price("0.045"), Some(45_000));
        assert_eq!(parse_price("12.123456"), Some(12_123_456));
        assert_eq!(parse_price("1.1234567"), None);
        assert_eq!(parse_price("-1"), None);
        assert_eq!(parse_price(".5"), None);
        assert_eq!(parse_price("abc"), None);
        assert_eq!(format_micros(45_000), "0.045000");
        assert_eq!(format_micros(12_123_456), "12.123456");
    }

    #[test]
    fn billing_increments() {
        assert_eq!(parse_bill_period("20+20"), Some((20, 20)));
        assert_eq!(parse_bill_period("60+1"), Some((60, 1)));
        assert_eq!(parse_bill_period("0+20"), None);
        assert_eq!(parse_bill_period("20"), None);
        assert_eq!(charged_duration(0, (20, 20)), 0);
        assert_eq!(charged_duration(5, (20, 20)), 20);
        assert_eq!(charged_duration(20, (20, 20)), 20);
        assert_eq!(charged_duration(21, (20, 20)), 40);
        assert_eq!(charged_duration(61, (60, 1)), 61);
        assert_eq!(charged_duration(45, (30, 6)), 48);
        assert_eq!(call_charge(0, (20, 20)), (0, 0));
        assert_eq!(call_charge(20, (20, 20)), (20, 1));
        assert_eq!(call_charge(41, (20, 20)), (60, 3));
        assert_eq!(call_charge(45, (30, 6)), (48, 4));
    }
}
