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
    /// Which dialect the key signs for: [`tenant_kind::BUKA`] or [`tenant_kind::SGATE`].
    pub kind: String,
}

/// What a request authenticated against when it used a cached tenant row: the store call that
/// carries it first checks, in its own transaction, that the row still reads the same (enabled,
/// same sealed secret, same allow-list), and fails with [`super::StoreError::TenantChanged`]
/// otherwise. So a cached row never outlives a change another process (the CLI) made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantGuard {
    pub tenant_id: i64,
    pub secret_enc: String,
    /// The allow-list as stored: entries joined by commas.
    pub allow_ips: String,
}

impl TenantGuard {
    pub fn of(t: &Tenant) -> Self {
        Self {
            tenant_id: t.id,
            secret_enc: t.secret_enc.clone(),
            allow_ips: t.allow_ips.join(","),
        }
    }
}

/// Kinds of tenant: the dialect whose requests its API key may sign.
pub mod tenant_kind {
    /// A Buka/ITNIO tenant: API key and secret.
    pub const BUKA: &str = "buka";
    /// An SGate merchant: API key and RSA public key.
    pub const SGATE: &str = "sgate";
}

/// One of a merchant's product names and the template that carries its text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub name: String,
    pub template_id: i64,
}

/// An SGate merchant: a tenant of kind `sgate` with its key and products.
#[derive(Debug, Clone)]
pub struct Merchant {
    pub tenant: Tenant,
    /// PEM, PKCS#8 SubjectPublicKeyInfo.
    pub public_key: String,
    pub sandbox: bool,
    /// The app its sends belong to (code expiry, the per-number limit).
    pub app_id: String,
    pub products: Vec<Product>,
}

/// A new merchant: its tenant row, app and one template per product name (their tenant and
/// app ids are filled in by the store).
#[derive(Debug, Clone)]
pub struct NewMerchant {
    pub tenant: NewTenant,
    pub public_key: String,
    pub sandbox: bool,
    pub app: App,
    pub templates: Vec<Template>,
}

/// Changes to a merchant; `None` keeps a field. `templates` replaces the product list: names
/// that already have a template keep it, new names get the given template.
#[derive(Debug, Clone, Default)]
pub struct MerchantUpdate {
    pub public_key: Option<String>,
    pub sandbox: Option<bool>,
    pub templates: Option<Vec<Template>>,
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
    /// The session's id in a dialect that names sessions its own way (SGate's `sessionid`).
    pub external_id: Option<String>,
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
    /// The reason given when the receipt timeout passes.
    pub const NO_DELIVERY_REPORT: &str = "no delivery report";
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
    /// The flow node to schedule once this attempt is handed to its route.
    pub flow_step: Option<i64>,
    pub ring_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub termination_code: Option<i64>,
    /// Who holds the attempt's deliver job while it is handed to its route at once (see
    /// [`JobId::Attempt`]); `None` once the outcome is recorded or the claim moved to the queue.
    pub claim_owner: Option<String>,
    /// When that claim lapses.
    pub claim_lease_ms: Option<i64>,
}

impl Attempt {
    /// Whether the carrier has confirmed delivery (for a call: the call was answered).
    pub fn delivered(&self) -> bool {
        self.report_state == report::SUCCESS
    }
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
    pub ring_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub termination_code: Option<i64>,
    /// A move to another route (failover before the attempt was handed over).
    pub route: Option<String>,
    pub provider: Option<String>,
    pub sender: Option<String>,
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
    /// See [`Session::external_id`].
    pub external_id: Option<String>,
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
    /// The flow node to schedule once this attempt is handed to its route.
    pub flow_step: Option<i64>,
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
    /// Who delivers the attempt: its deliver job is written already claimed by them, and the
    /// attempt `sending`. Without one the job waits in the queue, due at once, and the attempt
    /// is `pending`.
    pub claim: Option<NewClaim>,
    /// The cached tenant row the request was authenticated with, checked first.
    pub guard: Option<TenantGuard>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Created {
        session_id: String,
        attempt_id: i64,
        /// The sealed code in effect for the session after this send.
        code_sealed: String,
        /// The attempt's deliver job, when it was written claimed.
        job: Option<JobRef>,
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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    pub attempt_id: Option<i64>,
}

/// Computes the keyed hash of the typed code for a session (the store never sees keys).
pub type CandidateHash = Box<dyn Fn(&Session) -> String + Send>;

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

/// Kinds of job.
pub mod job_kind {
    /// Hand an attempt to its route.
    pub const DELIVER: &str = "deliver";
    /// Fire a flow node.
    pub const FLOW: &str = "flow";
    /// The receipt timeout of an accepted attempt.
    pub const RECEIPT: &str = "receipt";
    /// Poll the routes that cannot push receipts.
    pub const SYNC: &str = "sync";
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub key: String,
    pub kind: String,
    pub session_id: Option<String>,
    /// deliver / receipt: the attempt; flow: the attempt before the node.
    pub attempt_id: Option<i64>,
    /// flow: the index of the node.
    pub step: Option<i64>,
    /// When it may run.
    pub due_ms: i64,
    pub owner: Option<String>,
    /// When the current claim lapses.
    pub lease_ms: Option<i64>,
    /// Claims so far; together with the owner, the token of the current claim.
    pub tries: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
}

impl Job {
    /// The claim this copy of the job was read under.
    pub fn claim(&self) -> JobRef {
        JobRef {
            id: JobId::Queued(self.id),
            owner: self.owner.clone().unwrap_or_default(),
            tries: self.tries,
        }
    }
}

/// One claim on one job: acting on a job whose claim lapsed (and was taken by someone else)
/// changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    pub id: JobId,
    pub owner: String,
    pub tries: i64,
}

/// Where a claimed job is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobId {
    /// A row of the job queue (`jobs.id`).
    Queued(i64),
    /// The deliver job of an attempt written to be handed to its route at once (a send's or a
    /// flow node's): its claim is kept on the attempt row itself (`claim_owner`,
    /// `claim_lease_ms`), so the commonest delivery writes and deletes no queue row. Should the
    /// claim lapse, [`super::Store::claim_jobs`] first moves it into the queue as an ordinary
    /// deliver job, where the next worker finds the attempt interrupted.
    Attempt(i64),
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobId::Queued(id) => write!(f, "{id}"),
            JobId::Attempt(id) => write!(f, "deliver:{id}"),
        }
    }
}

/// A job written already claimed, for work the writer goes on to do itself.
#[derive(Debug, Clone)]
pub struct NewClaim {
    pub owner: String,
    /// When the claim lapses if its owner disappears.
    pub lease_until_ms: i64,
}

impl NewClaim {
    /// The claim on the deliver job of attempt `attempt_id`, held on the attempt row.
    pub fn held_on(&self, attempt_id: i64) -> JobRef {
        JobRef {
            id: JobId::Attempt(attempt_id),
            owner: self.owner.clone(),
            tries: 1,
        }
    }
}

/// A job to write. Jobs are unique by key: writing one that exists does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub key: String,
    pub kind: &'static str,
    pub session_id: Option<String>,
    pub attempt_id: Option<i64>,
    pub step: Option<i64>,
    pub due_ms: i64,
}

impl NewJob {
    /// The deliver job of an attempt, waiting in the queue.
    pub fn deliver(session_id: &str, attempt_id: i64, due_ms: i64) -> Self {
        Self {
            key: format!("deliver:{attempt_id}"),
            kind: job_kind::DELIVER,
            session_id: Some(session_id.to_string()),
            attempt_id: Some(attempt_id),
            step: None,
            due_ms,
        }
    }

    /// Node `step` of a session's flow, after `previous_attempt`.
    pub fn flow(session_id: &str, previous_attempt: i64, step: i64, due_ms: i64) -> Self {
        Self {
            key: format!("flow:{session_id}:{step}"),
            kind: job_kind::FLOW,
            session_id: Some(session_id.to_string()),
            attempt_id: Some(previous_attempt),
            step: Some(step),
            due_ms,
        }
    }

    /// The receipt timeout of an attempt.
    pub fn receipt_timeout(attempt_id: i64, due_ms: i64) -> Self {
        Self {
            key: format!("receipt:{attempt_id}"),
            kind: job_kind::RECEIPT,
            session_id: None,
            attempt_id: Some(attempt_id),
            step: None,
            due_ms,
        }
    }

    /// The one receipt-polling job.
    pub fn sync(due_ms: i64) -> Self {
        Self {
            key: "sync".into(),
            kind: job_kind::SYNC,
            session_id: None,
            attempt_id: None,
            step: None,
            due_ms,
        }
    }
}

/// Which attempts an outcome may change: anything else was settled by someone else first. The
/// store checks it in the same statement that changes the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptGuard {
    /// No condition.
    Any,
    /// Gateway state is one of these.
    Gateway(&'static [&'static str]),
    /// No receipt has settled it: the report is `unknown` or `pending`, or failed only by the
    /// receipt timeout (a late receipt still tells the truth).
    Unconfirmed,
}

/// What becomes of a job when its work is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobNext {
    /// Done: the job is deleted.
    Delete,
    /// Free it to run again at `due_ms` (a retry), noting why.
    Retry { due_ms: i64, error: String },
    /// Free it to run again at `due_ms` (a recurring job).
    Reschedule { due_ms: i64 },
}

impl JobNext {
    /// When the job runs again, and the error that made it a retry; `None` when it is done.
    pub fn again(&self) -> Option<(i64, Option<&str>)> {
        match self {
            JobNext::Delete => None,
            JobNext::Retry { due_ms, error } => Some((*due_ms, Some(error))),
            JobNext::Reschedule { due_ms } => Some((*due_ms, None)),
        }
    }
}

/// One job's outcome, recorded in one transaction: the attempt's new state, the jobs that
/// follow from it, and the job itself.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub job: JobRef,
    pub now_ms: i64,
    pub attempt: Option<(i64, AttemptGuard, AttemptUpdate)>,
    pub follow_ups: Vec<NewJob>,
    pub next: JobNext,
    /// The console provider's record of the message (see [`Store::list_outbox`]).
    pub outbox: Option<OutboxEntry>,
}

/// What a worker finds when it picks up an attempt's deliver job.
// Read once per job and consumed at once.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum StartAttempt {
    /// The attempt was waiting and its session is open: it is now `sending`.
    Ready { attempt: Attempt, session: Session },
    /// The session was verified, locked or expired before the attempt went out.
    Closed { attempt: Attempt },
    /// The attempt was being handed to its route when its worker vanished: whether the route
    /// took it is unknown, so it is not sent again.
    Interrupted { attempt: Attempt, session: Session },
    /// Already settled, or gone: nothing to do.
    Settled,
}

/// A flow node's attempt, written when the node fires.
#[derive(Debug, Clone)]
pub struct FlowFire {
    pub job: JobRef,
    pub session_id: String,
    /// The verification id the new attempt belongs to (that of the attempt before it).
    pub verification_id: String,
    pub attempt: NewAttempt,
    pub now_ms: i64,
    pub claim: NewClaim,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowFired {
    /// The attempt and its (claimed) deliver job exist; the flow job is gone.
    Created {
        attempt_id: i64,
        job: JobRef,
        code_sealed: String,
    },
    /// The session ended first: nothing was written but the flow job's removal.
    Closed,
    /// The flow job's claim was lost: someone else has it.
    Lost,
}

/// The queue at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobStats {
    /// Every job, claimed or not, including those held on their attempts.
    pub total: i64,
    /// Of those, the deliver jobs held on their attempts ([`JobId::Attempt`]): attempts being
    /// handed to their routes right now. They are not rows of the queue ([`super::Store::list_jobs`]).
    pub in_flight: i64,
    /// Jobs whose time has come and that no one holds (or whose claim lapsed, on the queue or
    /// on an attempt).
    pub due: i64,
    /// The due time of the oldest of those.
    pub oldest_due_ms: Option<i64>,
}
