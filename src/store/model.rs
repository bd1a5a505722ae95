//! The rows the store reads and writes. Times are Unix milliseconds; money is micro-units.

use crate::domain::flow::FlowNode;
use crate::domain::limits::LimitSetting;
use crate::domain::session::{SessionState, SessionStatus};

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub name: String,
    pub api_key: String,
    pub secret_enc: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: i64,
    pub name: String,
    pub api_key: String,
    pub secret_enc: String,
    pub enabled: bool,
    pub allow_ips: Vec<String>,
    pub created_ms: i64,
}

#[derive(Debug, Clone)]
pub struct App {
    pub app_id: String,
    pub tenant_id: i64,
    pub name: String,
    pub code_expiry: i64,
    pub total_limit: LimitSetting,
    pub phone_limit: LimitSetting,
    pub created_ms: i64,
}

impl App {
    /// When a code issued at `now_ms` stops being valid.
    pub fn code_expires_ms(&self, now_ms: i64) -> i64 {
        now_ms + self.code_expiry * 60_000
    }
}

#[derive(Debug, Clone)]
pub struct Template {
    pub template_id: i64,
    pub tenant_id: i64,
    pub app_id: String,
    pub name: String,
    pub text: String,
    pub code_type: i64,
    pub code_length: i64,
    pub speech_rate: i64,
    pub language: String,
    pub max_duration: i64,
    pub repeat_cnt: i64,
    pub sender_id: Option<String>,
    pub created_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Flow {
    pub flow_id: i64,
    pub tenant_id: i64,
    pub name: String,
    pub nodes: Vec<FlowNode>,
    pub created_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub tenant_id: i64,
    pub app_id: String,
    pub template_id: Option<i64>,
    pub flow_id: Option<i64>,
    pub phone: String,
    pub region: Option<String>,
    pub channel: String,
    pub code_hash: String,
    pub code_enc: Option<String>,
    pub code_type: i64,
    pub code_length: i64,
    pub case_insensitive: bool,
    pub status: SessionStatus,
    pub wrong_attempts: i64,
    pub submitted: bool,
    pub expires_ms: i64,
    pub created_ms: i64,
    pub verified_ms: Option<i64>,
    pub order_id: Option<String>,
}

impl Session {
    pub fn state(&self) -> SessionState {
        SessionState {
            status: self.status,
            wrong_attempts: self.wrong_attempts,
            expires_at_ms: self.expires_ms,
            submitted: self.submitted,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Verification {
    pub verification_id: String,
    pub session_id: String,
    pub tenant_id: i64,
    pub channel: String,
    pub kind: String,
    pub created_ms: i64,
}

/// Gateway state of an attempt.
pub mod gateway {
    pub const CREATE: &str = "create";
    pub const PENDING: &str = "pending";
    pub const SENDING: &str = "sending";
    pub const SUCCESS: &str = "success";
    pub const FAIL: &str = "fail";
    pub const UNKNOWN: &str = "unknown";
}

/// Report (delivery receipt) state of an attempt.
pub mod report {
    pub const UNKNOWN: &str = "unknown";
    pub const PENDING: &str = "pending";
    pub const SUCCESS: &str = "success";
    pub const FAIL: &str = "fail";
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: i64,
    pub session_id: String,
    pub verification_id: String,
    pub tenant_id: i64,
    pub channel: String,
    pub route: String,
    pub provider: String,
    pub sender: Option<String>,
    pub gateway_state: String,
    pub report_state: String,
    pub reason: Option<String>,
    pub provider_message_id: Option<String>,
    pub encoding: Option<String>,
    pub segments: Option<i64>,
    pub mcc: Option<i64>,
    pub mnc: Option<i64>,
    pub price_micros: Option<i64>,
    pub rate_micros: Option<i64>,
    pub bill_period: Option<String>,
    pub call_duration: Option<i64>,
    pub charged_duration: Option<i64>,
    pub created_ms: i64,
    pub send_ms: Option<i64>,
    pub done_ms: Option<i64>,
}

/// What changes on an attempt; `None` leaves a column as it is.
#[derive(Debug, Clone, Default)]
pub struct AttemptUpdate {
    pub gateway_state: Option<String>,
    pub report_state: Option<String>,
    pub reason: Option<String>,
    pub provider_message_id: Option<String>,
    pub encoding: Option<String>,
    pub segments: Option<i64>,
    pub mnc: Option<i64>,
    pub price_micros: Option<i64>,
    pub rate_micros: Option<i64>,
    pub bill_period: Option<String>,
    pub call_duration: Option<i64>,
    pub charged_duration: Option<i64>,
    pub send_ms: Option<i64>,
    pub done_ms: Option<i64>,
}

/// A code ready to be stored: its keyed hash and its sealed form.
#[derive(Debug, Clone)]
pub struct StoredCode {
    pub hash: String,
    pub sealed: String,
    pub expires_ms: i64,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub app_id: String,
    pub template_id: Option<i64>,
    pub flow_id: Option<i64>,
    pub phone: String,
    pub region: Option<String>,
    pub code: StoredCode,
    pub code_type: i64,
    pub code_length: i64,
    pub case_insensitive: bool,
}

#[derive(Debug, Clone)]
pub enum SendTarget {
    /// send / sendRule: a new session whose id is the new verification id.
    New(NewSession),
    /// resend: the session; `fresh` replaces its code only if it has expired.
    Resend {
        session_id: String,
        fresh: StoredCode,
    },
}

#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub channel: String,
    pub route: String,
    pub provider: String,
    pub sender: Option<String>,
    pub mcc: Option<i64>,
    /// Set when the attempt is handed to its route right after the commit: it is written
    /// straight in the `sending` state with what is known of the message.
    pub sending: Option<SendingInfo>,
}

/// What is known of a message when it is handed to its route.
#[derive(Debug, Clone, Default)]
pub struct SendingInfo {
    pub encoding: Option<String>,
    pub segments: Option<i64>,
    pub price_micros: Option<i64>,
    pub rate_micros: Option<i64>,
    pub bill_period: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewSend {
    pub tenant_id: i64,
    pub app_id: String,
    pub phone: String,
    pub verification_id: String,
    pub kind: &'static str,
    pub order_id: Option<String>,
    pub total_limit: Option<crate::domain::limits::PeriodLimit>,
    pub phone_limit: Option<crate::domain::limits::PeriodLimit>,
    pub target: SendTarget,
    pub attempt: NewAttempt,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Created {
        session_id: String,
        attempt_id: i64,
        /// The sealed code in effect for the session after this send.
        code_sealed: String,
    },
    DuplicateOrder {
        verification_id: String,
    },
    TotalLimit,
    PhoneLimit,
    /// Resend of a session that is verified or locked.
    SessionClosed,
    /// Resend of a session that does not exist.
    SessionMissing,
}

#[derive(Debug, Clone)]
pub struct BackfillRate {
    pub tenant_id: i64,
    pub app_id: String,
    pub mcc: i64,
    pub backfill_number: Option<i64>,
    pub backfill_base: Option<i64>,
    /// Percent × 100 (two decimals).
    pub rate_bp: i64,
    pub callback_ms: i64,
    pub received_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Postback {
    pub verification_id: String,
    pub tenant_id: i64,
    pub app_id: String,
    pub number: Option<String>,
    pub backfill_ms: i64,
    pub received_ms: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    #[serde(skip)]
    pub id: i64,
    pub at_ms: i64,
    pub channel: String,
    pub to: String,
    pub sender: Option<String>,
    pub text: String,
    pub verification_id: String,
}

/// Computes the keyed hash of the typed code for a session (the store never sees keys).
pub type CandidateHash = Box<dyn FnOnce(&Session) -> String + Send>;

/// What one verify found and decided.
// Returned once per verify and consumed at once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum VerifyLookup {
    /// No such verification id.
    Unknown,
    /// The verification id belongs to another tenant.
    Foreign,
    Checked {
        outcome: crate::domain::session::VerifyOutcome,
        verification: Verification,
        /// The session after the verify.
        session: Session,
    },
}
