//! Persistence behind one trait.
//!
//! Every rule that guards money or abuse (orderId uniqueness, period limits, the wrong-code
//! budget, consuming a session once) is decided inside one store call, in one transaction, so
//! it holds under concurrency. A second backend (PostgreSQL) implements the same trait and must
//! pass the same contract tests.

pub mod model;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;

pub use model::*;

use crate::domain::session::VerifyOutcome;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the text names it (e.g. `apps.tenant_id, apps.name`).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database: {0}")]
    Db(String),
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    /// The call's [`TenantGuard`] no longer matches the tenant row: authenticate again.
    #[error("the tenant changed since the request was authenticated")]
    TenantChanged,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Reads a JSON column (limits, flow nodes, products) both backends store as text.
pub(crate) fn json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Writes a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| unreachable!("plain data serializes"))
}

/// Shared handle to the store.
pub type SharedStore = std::sync::Arc<dyn Store>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies the embedded migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> StoreResult<()>;
    /// Fired when a job may have become claimable elsewhere (PostgreSQL: LISTEN/NOTIFY from
    /// every node), so idle workers look at once instead of at their next poll. `None`: the
    /// backend has no such signal (SQLite: one process writes the database and wakes itself).
    /// Must be called from within a Tokio runtime.
    fn job_wakeups(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    // Tenants
    async fn insert_tenant(&self, t: &NewTenant) -> StoreResult<Tenant>;
    async fn tenant_by_key(&self, api_key: &str) -> StoreResult<Option<Tenant>>;
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// Buka tenants only (merchants are counted by `list_merchants`).
    async fn count_tenants(&self) -> StoreResult<i64>;
    /// Returns false when no tenant of that kind has that key.
    async fn set_tenant_enabled(
        &self,
        kind: &str,
        api_key: &str,
        enabled: bool,
    ) -> StoreResult<bool>;
    async fn set_tenant_allow_ips(
        &self,
        kind: &str,
        api_key: &str,
        allow: &[String],
    ) -> StoreResult<bool>;

    // SGate merchants
    /// Inserts the tenant (kind `sgate`), its app, its templates and the merchant row in one
    /// transaction.
    async fn insert_merchant(&self, m: &NewMerchant) -> StoreResult<Merchant>;
    /// Read on every signed request (so `merchant disable` applies at once).
    async fn merchant_by_key(&self, api_key: &str) -> StoreResult<Option<Merchant>>;
    async fn list_merchants(&self) -> StoreResult<Vec<Merchant>>;
    /// `None` when no merchant has that key.
    async fn update_merchant(
        &self,
        api_key: &str,
        update: &MerchantUpdate,
    ) -> StoreResult<Option<Merchant>>;
    /// Records a request nonce unless the tenant used it before and it has not expired;
    /// `false` for a replay. Drops a few expired nonces on the way.
    async fn remember_nonce(
        &self,
        tenant_id: i64,
        nonce: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> StoreResult<bool>;
    /// Whether the tenant used this nonce and it has not expired (nothing is written).
    async fn nonce_seen(&self, tenant_id: i64, nonce: &str, now_ms: i64) -> StoreResult<bool>;
    /// A server key by name: `(sealed private key, public PEM)`.
    async fn system_key(&self, name: &str) -> StoreResult<Option<(String, String)>>;
    /// Stores a server key unless one of that name exists, and returns the one stored (so
    /// two processes generating at once agree on the first).
    async fn insert_system_key(
        &self,
        name: &str,
        private_enc: &str,
        public_pem: &str,
        now_ms: i64,
    ) -> StoreResult<(String, String)>;
    /// The session with this dialect-specific id.
    async fn session_by_external(&self, external_id: &str) -> StoreResult<Option<Session>>;
    /// Remembers a send to a sandbox test number.
    async fn record_sandbox_send(
        &self,
        tenant_id: i64,
        mobile: &str,
        at_ms: i64,
    ) -> StoreResult<()>;
    /// When the tenant last sent to this sandbox test number.
    async fn sandbox_send(&self, tenant_id: i64, mobile: &str) -> StoreResult<Option<i64>>;

    // Apps, templates, flows
    async fn insert_app(&self, app: &App) -> StoreResult<()>;
    async fn update_app(&self, app: &App) -> StoreResult<()>;
    async fn get_app(&self, app_id: &str) -> StoreResult<Option<App>>;
    /// An app and (when asked for) a template, in one store call: what every send reads.
    async fn app_with_template(
        &self,
        app_id: &str,
        template_id: Option<i64>,
    ) -> StoreResult<(Option<App>, Option<Template>)>;
    /// Inserts and returns the new id.
    async fn insert_template(&self, t: &Template) -> StoreResult<i64>;
    async fn update_template(&self, t: &Template) -> StoreResult<()>;
    async fn get_template(&self, template_id: i64) -> StoreResult<Option<Template>>;
    async fn list_templates(&self, tenant_id: i64) -> StoreResult<Vec<Template>>;
    async fn insert_flow(&self, f: &Flow) -> StoreResult<i64>;
    async fn update_flow(&self, f: &Flow) -> StoreResult<()>;
    async fn get_flow(&self, flow_id: i64) -> StoreResult<Option<Flow>>;
    async fn list_flows(&self, tenant_id: i64) -> StoreResult<Vec<Flow>>;

    // Sends
    /// One atomic step: the caller's [`NewSend::guard`], orderId uniqueness, period limits (check and count), the session
    /// (new, or the resent one with its code refreshed if expired), the verification id and
    /// its first attempt.
    async fn create_send(&self, send: &NewSend) -> StoreResult<SendOutcome>;
    /// A verification id with its session, in one read.
    async fn verification_session(
        &self,
        verification_id: &str,
    ) -> StoreResult<Option<(Verification, Session)>>;
    async fn session_by_order(
        &self,
        tenant_id: i64,
        order_id: &str,
    ) -> StoreResult<Option<Session>>;
    async fn attempts_for_session(&self, session_id: &str) -> StoreResult<Vec<Attempt>>;
    /// One atomic verify in one store call: checks `guard` if given, finds the verification and
    /// its session, checks the tenant, computes the candidate hash with `hash` (given the session), decides, and records
    /// the result.
    async fn verify(
        &self,
        verification_id: &str,
        tenant_id: i64,
        guard: Option<TenantGuard>,
        hash: CandidateHash,
        now_ms: i64,
    ) -> StoreResult<VerifyLookup>;

    // Delivery engine
    /// Claims up to `limit` jobs whose time has come (or whose claim lapsed), oldest first,
    /// for `owner` until `lease_until_ms`. Deliver claims held on attempts
    /// ([`JobId::Attempt`]) whose lease lapsed are first moved into the queue, so they are
    /// among them.
    async fn claim_jobs(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<Job>>;
    /// Records a job's outcome in one transaction; `false` (and nothing written) when the
    /// claim is no longer held.
    async fn finish_job(&self, outcome: &JobOutcome) -> StoreResult<bool>;
    /// Writes jobs that do not exist yet (by key).
    async fn ensure_jobs(&self, jobs: &[NewJob], now_ms: i64) -> StoreResult<()>;
    /// Moves a waiting attempt to `sending` if its session is still open (see [`StartAttempt`]).
    async fn start_attempt(&self, attempt_id: i64, now_ms: i64) -> StoreResult<StartAttempt>;
    /// Writes a flow node's attempt and its deliver job if the session is still open and the
    /// flow job's claim is held, and removes the flow job.
    async fn fire_flow_step(&self, fire: &FlowFire) -> StoreResult<FlowFired>;
    /// A session and all its attempts, oldest first.
    async fn session_with_attempts(
        &self,
        session_id: &str,
    ) -> StoreResult<Option<(Session, Vec<Attempt>)>>;
    async fn attempt_by_message(
        &self,
        route: &str,
        message_id: &str,
    ) -> StoreResult<Option<Attempt>>;
    /// The attempt `attempt_id` if it is on `route` (a callback names its own attempt).
    async fn attempt_on_route(&self, route: &str, attempt_id: i64) -> StoreResult<Option<Attempt>>;
    /// Applies a delivery receipt if `guard` still holds, and drops the attempt's receipt
    /// timeout; `false` when the attempt had been settled already.
    async fn apply_receipt(
        &self,
        attempt_id: i64,
        guard: AttemptGuard,
        update: &AttemptUpdate,
    ) -> StoreResult<bool>;
    /// `(attempt id, message id)` of attempts on `route` still waiting for their receipt.
    async fn pending_receipts(&self, route: &str, limit: i64) -> StoreResult<Vec<(i64, String)>>;
    async fn job_stats(&self, now_ms: i64) -> StoreResult<JobStats>;
    /// The earliest due time of the jobs no one holds.
    async fn next_due_ms(&self) -> StoreResult<Option<i64>>;
    /// Frees every job `owner` holds (a worker stopping), moving its claims held on attempts
    /// into the queue.
    async fn release_claims(&self, owner: &str) -> StoreResult<u64>;
    /// Frees the claims no running worker can hold: with SQLite, where one process serves a
    /// database, every claim found at start-up.
    async fn recover_claims(&self, now_ms: i64) -> StoreResult<u64>;
    /// The queue's jobs in due order, for operators and tests (not the deliver claims held on
    /// attempts: [`JobStats::in_flight`] counts those).
    async fn list_jobs(&self, limit: i64) -> StoreResult<Vec<Job>>;

    // Conversion feedback
    async fn upsert_backfill_rate(&self, r: &BackfillRate) -> StoreResult<()>;
    async fn record_postback(&self, p: &Postback) -> StoreResult<()>;

    // Console outbox (rows are written with a delivery's outcome: [`JobOutcome::outbox`])
    async fn list_outbox(&self, limit: i64) -> StoreResult<Vec<OutboxEntry>>;
}
