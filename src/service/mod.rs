//! The service layer: one home for every use case. HTTP dialects, the CLI and background jobs
//! call these methods; they speak domain types and [`ServiceError`], never wire formats.

mod backfill;
mod cache;
mod catalog;
mod delivery;
mod flows;
pub mod jobs;
mod merchants;
mod receipts;
mod sgate;
mod tenants;
mod verification;

use std::sync::Arc;

pub use backfill::{BackfillRateInput, PostbackInput};
pub use catalog::{AppInput, FlowInput, TemplateInput};
pub use merchants::{MerchantChange, MerchantInput};
pub use receipts::ReceiptOutcome;
pub use sgate::{OtpDetail, OtpFailure};
pub use tenants::{CreatedTenant, ip_allowed, parse_allow_entry};
pub use verification::{RecordView, SendInput, SendResult, VerifyResult};

use crate::clock::SharedClock;
use crate::config::DeliveryConfig;
use crate::crypto::Keys;
use crate::metrics::Metrics;
use crate::providers::ReceiptSink;
use crate::providers::routing::Routing;
use crate::store::{SharedStore, StoreError};

/// Why a use case did not succeed. Each dialect maps these to its own codes in one place.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A field broke a rule.
    #[error("{field} {reason}")]
    Invalid { field: String, reason: String },
    /// The object does not exist for this tenant (another tenant's object included).
    #[error("{0} does not exist")]
    NotFound(&'static str),
    /// A name or key that must be unique is taken.
    #[error("{0} already exists")]
    Duplicate(&'static str),
    /// The orderId was used before; the existing send's id is given back.
    #[error("orderId already used")]
    DuplicateOrder { verification_id: String },
    /// The object exists but its state forbids the call.
    #[error("{0}")]
    Rejected(String),
    /// The session's wrong-code budget is spent.
    #[error("verification attempts exceeded")]
    AttemptsExceeded {
        verification_id: String,
        to: String,
        channel: String,
    },
    #[error("period total send limit reached")]
    TotalLimit,
    #[error("period phone send limit reached")]
    PhoneLimit,
    /// An SGate OTP rule refused the call (each has its own SGate code).
    #[error("{0}")]
    Otp(OtpFailure),
    /// The cached tenant row the request was authenticated with has changed (the dialect
    /// authenticates again against the fresh row; see [`crate::store::TenantGuard`]).
    #[error("the tenant changed since the request was authenticated")]
    TenantChanged,
    #[error("{0}")]
    Internal(#[from] anyhow::Error),
}

impl ServiceError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        ServiceError::Invalid {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TenantChanged => ServiceError::TenantChanged,
            e => ServiceError::Internal(anyhow::Error::new(e)),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Everything a use case needs, cheap to clone.
#[derive(Clone)]
pub struct Service {
    pub store: SharedStore,
    pub clock: SharedClock,
    pub keys: Arc<Keys>,
    pub routing: Arc<Routing>,
    pub metrics: Arc<Metrics>,
    pub jobs: Arc<jobs::JobRuntime>,
    /// Where receipts go that must wait for their submit to be recorded.
    pub receipts: ReceiptSink,
    secrets: Arc<tenants::SecretCache>,
    tenants: Arc<tenants::TenantCache>,
    keys_cache: Arc<merchants::KeyCache>,
}

impl Service {
    pub fn new(
        store: SharedStore,
        clock: SharedClock,
        keys: Arc<Keys>,
        routing: Arc<Routing>,
        delivery: DeliveryConfig,
        receipts: ReceiptSink,
    ) -> Self {
        Self {
            store,
            clock,
            keys,
            routing,
            metrics: Arc::new(Metrics::new()),
            jobs: Arc::new(jobs::JobRuntime::new(delivery)),
            receipts,
            secrets: Arc::default(),
            tenants: Arc::default(),
            keys_cache: Arc::default(),
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}
