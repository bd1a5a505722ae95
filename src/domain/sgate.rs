//! The SGate payout-API OTP rules, without I/O: the Saudi number formats and their effective
//! number, the sandbox test numbers, the `stcpay` message text, and the JSON string both sides
//! sign (`shared/spec/sgate-payout.md` §2.3, §2.6).

use serde::Serialize;

/// How long an SGate code stays valid, in minutes (`{ECPIRY}`).
pub const CODE_EXPIRY_MINUTES: i64 = 5;
/// SGate codes: six digits, leading zeros kept.
pub const CODE_LENGTH: i64 = 6;
/// At most this many characters in `mobile`.
pub const MOBILE_MAX_CHARS: usize = 13;
/// At most this many characters in `appname`.
pub const APP_NAME_MAX_CHARS: usize = 32;
/// The sandbox test numbers' code.
pub const TEST_CODE: &str = "123456";
/// The only OTP type.
pub const OTP_TYPE: &str = "stcpay";

/// The vendor's `stcpay` template, byte for byte (its typos are part of the contract).
pub const STCPAY_TEMPLATE: &str = "{CODE} is OTP to varify your STCPAY account , please input within {ECPIRY} minutes. - {APP_NAME}";

/// The sandbox test numbers (effective form) and their fixed session ids.
pub const TEST_NUMBERS: [(&str, &str); 6] = [
    ("512345678", "10290d703f8254593ff93533f00af153"),
    ("500000001", "a3f551d80f05a0e3e9056869fda18485"),
    ("500000002", "e8cffbb22c2e09af7004c92b82a4275f"),
    ("500000003", "05121e9b019b6ac4bd938322dcaf73ef"),
    ("500000004", "9e1aac7c1f6719e12e3384ced6782887"),
    ("500000005", "c6cfc53d34b2c93eaaa9d430397dead0"),
];

/// The 9-digit effective number `5xxxxxxxx` of one of the four accepted forms (`5xxxxxxxx`,
/// `05xxxxxxxx`, `9665xxxxxxxx`, `+9665xxxxxxxx`); `None` for anything else.
pub fn effective_number(mobile: &str) -> Option<&str> {
    if mobile.len() > MOBILE_MAX_CHARS {
        return None;
    }
    let eff = mobile
        .strip_prefix("+966")
        .or_else(|| mobile.strip_prefix("966"))
        .or_else(|| mobile.strip_prefix('0'))
        .unwrap_or(mobile);
    let ok = eff.len() == 9 && eff.starts_with('5') && eff.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(eff)
}

/// The international digits (no '+') of an effective number.
pub fn international(effective: &str) -> String {
    format!("966{effective}")
}

/// The fixed session id of a sandbox test number.
pub fn test_session(effective: &str) -> Option<&'static str> {
    TEST_NUMBERS
        .iter()
        .find(|(n, _)| *n == effective)
        .map(|(_, s)| *s)
}

/// The test number whose fixed session id this is.
pub fn test_number_of_session(session_id: &str) -> Option<&'static str> {
    TEST_NUMBERS
        .iter()
        .find(|(_, s)| *s == session_id)
        .map(|(n, _)| *n)
}

/// The message text for `app_name`, with the engine's `##code##` placeholder where the vendor
/// writes `{CODE}`.
pub fn message_text(app_name: &str) -> String {
    STCPAY_TEMPLATE
        .replace("{ECPIRY}", &CODE_EXPIRY_MINUTES.to_string())
        .replace("{APP_NAME}", app_name)
        .replace("{CODE}", crate::domain::code::PLACEHOLDER)
}

/// Why an app name cannot be configured.
pub fn app_name_problem(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("must not be empty")
    } else if name.chars().count() > APP_NAME_MAX_CHARS {
        Some("must be at most 32 characters")
    } else if name.contains(crate::domain::code::PLACEHOLDER) || name.chars().any(char::is_control)
    {
        Some("must not contain control characters or the code placeholder")
    } else {
        None
    }
}

/// The object both sides sign, in the vendor's key order.
#[derive(Serialize)]
struct Signed<'a> {
    api_key: &'a str,
    timestamp: i64,
    nonce_str: &'a str,
    url: &'a str,
    method: &'a str,
    body: &'a str,
}

/// The signed string: one line, no spaces, non-ASCII and `/` unescaped (serde_json escapes
/// neither).
pub fn signing_string(
    api_key: &str,
    timestamp: i64,
    nonce: &str,
    url: &str,
    method: &str,
    body: &str,
) -> String {
    serde_json::to_string(&Signed {
        api_key,
        timestamp,
        nonce_str: nonce,
        url,
        method,
        body,
    })
    .unwrap_or_else(|_| unreachable!("strings and a number serialize"))
}

/// MD5 of the signed string as 32 lowercase hex characters: what the RSA key signs.
pub fn signing_digest(signing_string: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(signing_string.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_formats_share_one_effective_number() {
        for m in ["512345678", "0512345678", "966512345678", "+966512345678"] {
            assert_eq!(effective_number(m), Some("512345678"), "{m}");
        }
        for bad in [
            "",
            "412345678",
            "51234567",
            "5123456789",
            "00512345678",
            "+96651234567a",
            "+9660512345678",
            "9715 12345678",
            "+971512345678",
            " 512345678",
            "٥١٢٣٤٥٦٧٨",
        ] {
            assert_eq!(effective_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn vendor_md5_example() {
        let s = signing_string(
            "xxxxxxxxxxxxxx",
            1686647706,
            "TIj5tZ3gM6FbprYlKNR2",
            "/openApi/v1/payee/custom/list",
            "GET",
            "",
        );
        assert_eq!(
            s,
            r#"{"api_key":"xxxxxxxxxxxxxx","timestamp":1686647706,"nonce_str":"TIj5tZ3gM6FbprYlKNR2","url":"/openApi/v1/payee/custom/list","method":"GET","body":""}"#
        );
        assert_eq!(signing_digest(&s), "8a5908e27626d79d73dc14bd9ba00e72");
    }

    #[test]
    fn signing_string_keeps_slashes_and_non_ascii() {
        let s = signing_string("k", 1, "n", "/a/b?x=1", "POST", r#"{"appname":"متجر/1"}"#);
        assert!(s.contains(r#""body":"{\"appname\":\"متجر/1\"}""#), "{s}");
    }

    #[test]
    fn message_text_is_the_vendor_template() {
        assert_eq!(
            message_text("TestApp").replace("##code##", "012345"),
            "012345 is OTP to varify your STCPAY account , please input within 5 minutes. - TestApp"
        );
    }

    #[test]
    fn test_numbers_and_their_sessions() {
        assert_eq!(
            test_session("500000003"),
            Some("05121e9b019b6ac4bd938322dcaf73ef")
        );
        assert_eq!(
            test_number_of_session("10290d703f8254593ff93533f00af153"),
            Some("512345678")
        );
        assert_eq!(test_session("512345679"), None);
    }
}
