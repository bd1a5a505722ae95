//! The Buka envelope and the one mapping from service errors to Buka status codes.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::service::ServiceError;

/// A Buka answer that is not a success.
#[derive(Debug)]
pub struct BukaError {
    pub status: &'static str,
    pub reason: String,
    pub data: Value,
}

impl BukaError {
    pub fn new(status: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            data: Value::Null,
        }
    }

    /// `-22`: a parameter broke a rule; the reason names it.
    pub fn param(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::new("-22", format!("parameter error: {field} {reason}"))
    }

    /// `-18`: an internal fault, logged with context and answered generically.
    pub fn internal(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new("-18", "system exception")
    }
}

impl From<ServiceError> for BukaError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid { field, reason } => BukaError::param(&field, reason),
            ServiceError::NotFound(what) => BukaError::new("-24", format!("{what} does not exist")),
            ServiceError::Duplicate(what) => {
                BukaError::new("-20", format!("{what} already exists"))
            }
            ServiceError::DuplicateOrder { verification_id } => BukaError {
                status: "-20",
                reason: "orderId already exists".into(),
                data: json!({ "verificationId": verification_id }),
            },
            ServiceError::Rejected(reason) => BukaError::new("-21", reason),
            ServiceError::AttemptsExceeded {
                verification_id,
                to,
                channel,
            } => BukaError {
                status: "-23",
                reason: "verification attempts exceeded".into(),
                data: json!({"verificationId": verification_id, "to": to, "channel": channel, "matched": 2}),
            },
            ServiceError::TotalLimit => BukaError::new("-27", "period total send limit reached"),
            ServiceError::PhoneLimit => BukaError::new("-28", "period phone send limit reached"),
            // Only SGate calls raise these; a Buka path reaching one is a bug.
            ServiceError::Otp(f) => BukaError::internal(&format!("SGate rule on a Buka call: {f}")),
            // The handler authenticates again when this comes back (auth::FastCaller); if the
            // row changed once more in between, the caller is told to sign again.
            ServiceError::TenantChanged => BukaError::new("-1", "authentication failed"),
            ServiceError::Internal(e) => BukaError::internal(&format!("{e:#}")),
        }
    }
}

impl IntoResponse for BukaError {
    fn into_response(self) -> Response {
        Json(json!({"status": self.status, "reason": self.reason, "data": self.data}))
            .into_response()
    }
}

/// Wraps a handler's result: success is `{"status":"0","reason":"success","data":…}`.
pub fn reply(result: Result<Value, BukaError>) -> Response {
    match result {
        Ok(data) => Json(json!({"status": "0", "reason": "success", "data": data})).into_response(),
        Err(e) => e.into_response(),
    }
}
