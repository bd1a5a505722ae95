//! The SGate envelope `{code, message, data, sensitiveFields, requestId}`, its codes, and the
//! one mapping from service errors to them.

use serde::Serialize;

use crate::service::{OtpFailure, ServiceError};

/// `code` 200.
pub const SUCCESS: i64 = 200;
pub const SUCCESS_MESSAGE: &str = "Request succeeded.";

/// A call that did not succeed: its code, the message (the code's meaning, then what
/// exactly), and the HTTP status (200 for every business failure, 500 for a fault).
#[derive(Debug, Clone)]
pub struct SgateError {
    pub code: i64,
    pub message: String,
    pub http_status: u16,
}

/// Every code this dialect answers, in the vendor's order (the OpenAPI document lists them).
pub const CODES: [i64; 25] = [
    200, 1000, 1102, 1103, 1201, 1204, 1205, 1206, 1208, 1209, 1210, 1211, 1212, 1213, 1601, 1603,
    1604, 1605, 1606, 1607, 1608, 1609, 1610, 1611, 1612,
];

/// The codes answered with HTTP 500 (a fault on our side); every other one comes with 200.
pub const FAULT_CODES: [i64; 2] = [1000, 1206];

/// The vendor's meaning of each code this dialect answers.
pub fn meaning(code: i64) -> &'static str {
    match code {
        200 => "Success",
        1000 => "Failed",
        1102 => "Missing parameter",
        1103 => "Parameter validation failed",
        1201 => "APIKEY error",
        1204 => "Request expiration",
        1205 => "IP illegal",
        1206 => "System encryption error",
        1208 => "Missing request header",
        1209 => "Request header validation failed",
        1210 => "Invalid API version",
        1211 => "User Agent verification failed",
        1212 => "Trigger frequency limit",
        1213 => "Signature verification failed",
        1601 => "Message gateway exception",
        1603 => "Product name not configured",
        1604 => "The product name does not exist",
        1605 => "OTP type is invalid",
        1606 => "OTP verification failed",
        1607 => "OTP code is invalid or has expired",
        1608 => "OTP sending number mismatch",
        1609 => "OTP code error",
        1610 => "OTP sending credentials (sessionid) not matched",
        1611 => "OTP is currently being sent",
        1612 => "OTP sending number format error",
        _ => "Failed",
    }
}

impl SgateError {
    /// A business failure (HTTP 200): `"<meaning>: <detail>"`.
    pub fn new(code: i64, detail: impl std::fmt::Display) -> Self {
        Self {
            code,
            message: format!("{}: {detail}", meaning(code)),
            http_status: 200,
        }
    }

    /// 1102, naming the field.
    pub fn missing(field: &str) -> Self {
        Self::new(1102, format!("{field} is required"))
    }

    /// 1103, naming the field.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(1103, format!("{field} {reason}"))
    }

    /// A fault on our side: logged with its context, answered HTTP 500 without it.
    pub fn fault(code: i64, e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, sgate.code = code, "internal error");
        Self {
            code,
            message: meaning(code).to_string(),
            http_status: 500,
        }
    }
}

impl From<OtpFailure> for SgateError {
    fn from(f: OtpFailure) -> Self {
        let code = match f {
            OtpFailure::BadMobile => 1612,
            OtpFailure::NoProducts => 1603,
            OtpFailure::UnknownProduct => 1604,
            OtpFailure::BadType => 1605,
            OtpFailure::TooSoon => 1212,
            OtpFailure::NoRoute => 1601,
            OtpFailure::UnknownSession => 1610,
            OtpFailure::NumberMismatch => 1608,
            OtpFailure::WrongCode => 1609,
            OtpFailure::ExpiredOrUsed => 1607,
            OtpFailure::Locked => 1606,
            OtpFailure::Sending => 1611,
        };
        SgateError::new(code, f)
    }
}

impl From<ServiceError> for SgateError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Otp(f) => f.into(),
            ServiceError::Invalid { field, reason } => SgateError::invalid(&field, reason),
            ServiceError::PhoneLimit | ServiceError::TotalLimit => OtpFailure::TooSoon.into(),
            ServiceError::AttemptsExceeded { .. } => OtpFailure::Locked.into(),
            // SGate calls carry no tenant guard; reaching this is a bug.
            ServiceError::TenantChanged => {
                SgateError::fault(1000, &"tenant guard on an SGate call")
            }
            ServiceError::Internal(e) => SgateError::fault(1000, &format!("{e:#}")),
            // No SGate call can meet these (merchants own no orders, flows or other
            // tenants' objects): reaching one is a bug, answered as a fault and logged.
            other @ (ServiceError::NotFound(_)
            | ServiceError::Duplicate(_)
            | ServiceError::DuplicateOrder { .. }
            | ServiceError::Rejected(_)) => SgateError::fault(1000, &other),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, T: Serialize> {
    code: i64,
    message: &'a str,
    data: T,
    sensitive_fields: Empty,
    request_id: &'a str,
}

/// `{}`.
#[derive(Serialize)]
pub struct Empty {}

/// The response body, fields in the vendor's order.
pub fn body<T: Serialize>(result: &Result<T, SgateError>, request_id: &str) -> String {
    let text = match result {
        Ok(data) => serde_json::to_string(&Envelope {
            code: SUCCESS,
            message: SUCCESS_MESSAGE,
            data,
            sensitive_fields: Empty {},
            request_id,
        }),
        Err(e) => serde_json::to_string(&Envelope {
            code: e.code,
            message: &e.message,
            data: Empty {},
            sensitive_fields: Empty {},
            request_id,
        }),
    };
    text.unwrap_or_else(|_| unreachable!("plain data serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_code_has_its_own_meaning() {
        for c in CODES {
            assert!(c == 1000 || meaning(c) != meaning(1000), "{c}");
        }
        assert!(FAULT_CODES.iter().all(|c| CODES.contains(c)));
        let err: SgateError = OtpFailure::Sending.into();
        assert!(CODES.contains(&err.code));
    }

    #[test]
    fn envelope_keeps_the_vendor_field_order() {
        #[derive(Serialize)]
        struct D {
            mobile: &'static str,
            appname: &'static str,
        }
        let ok: Result<D, SgateError> = Ok(D {
            mobile: "+966512345678",
            appname: "TestApp",
        });
        assert_eq!(
            body(&ok, "758EFC622B2D51B4C37353D4C8BEA374"),
            r#"{"code":200,"message":"Request succeeded.","data":{"mobile":"+966512345678","appname":"TestApp"},"sensitiveFields":{},"requestId":"758EFC622B2D51B4C37353D4C8BEA374"}"#
        );
        let err: Result<D, SgateError> = Err(SgateError::missing("mobile"));
        assert_eq!(
            body(&err, "R"),
            r#"{"code":1102,"message":"Missing parameter: mobile is required","data":{},"sensitiveFields":{},"requestId":"R"}"#
        );
    }
}
