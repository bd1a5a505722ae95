//! PostgreSQL, for several nodes against one database.
//!
//! Every atomic rule of the contract holds across processes: each store call is one
//! transaction, rows a rule reads are locked (`FOR UPDATE`), rules over rows that may not exist
//! yet (period limits, orderId) take a transaction-scoped advisory lock on their key, and jobs
//! are claimed with `FOR UPDATE SKIP LOCKED`. `accounts` holds tenants, merchants, the catalog
//! and the small tables; `engine` holds sends, verifies, attempts and jobs.

mod accounts;
mod engine;

use async_trait::async_trait;
use sqlx::PgPool;
use std::sync::{Arc, OnceLock};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;

use super::*;
use crate::store::model::*;

/// Embedded migrations, applied in order and recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_job_notify.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_delivery_indexes.sql"),
    ),
];

/// The channel `migrations/postgres/0002_job_notify.sql` notifies when a job becomes claimable.
const JOBS_CHANNEL: &str = "otpgate_jobs";

/// Serializes migrations of several nodes starting at once (`pg_advisory_lock` key).
const MIGRATION_LOCK: i64 = 0x6f74_7067_6174_6501;

/// The PostgreSQL store: a connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Fired when another transaction (on any node) made a job claimable.
    wake: Arc<Notify>,
    /// Whether the LISTEN task runs (started by the first [`Store::job_wakeups`]).
    listening: Arc<OnceLock<()>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgStore")
    }
}

pub(super) fn db_error(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        return StoreError::Conflict(format!(
            "{}: {}",
            d.constraint().unwrap_or("unique"),
            d.message()
        ));
    }
    StoreError::Db(e.to_string())
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        db_error(e)
    }
}

impl PgStore {
    /// Connects to `postgres://…` (`?options=-c%20search_path%3Dschema` selects a schema) and
    /// applies the migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let opts: PgConnectOptions = url
            .parse()
            .map_err(|e: sqlx::Error| StoreError::Db(format!("database URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Db(format!("connecting to PostgreSQL: {e}")))?;
        let store = Self {
            pool,
            wake: Arc::new(Notify::new()),
            listening: Arc::new(OnceLock::new()),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// LISTENs on the jobs channel on a connection of its own and turns each notification
    /// into a wake-up; reconnects (after a pause) when the connection is lost. Runs until the
    /// pool is closed.
    fn start_listening(&self) {
        let (pool, wake) = (self.pool.clone(), self.wake.clone());
        tokio::spawn(async move {
            let schema: String = loop {
                match sqlx::query_scalar("SELECT current_schema()")
                    .fetch_one(&pool)
                    .await
                {
                    Ok(s) => break s,
                    Err(_) if pool.is_closed() => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "job notifications: cannot read the schema; polling meanwhile");
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    }
                }
            };
            while !pool.is_closed() {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "job notifications: cannot connect; polling meanwhile");
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(JOBS_CHANNEL).await {
                    tracing::warn!(error = %e, "job notifications: LISTEN failed; polling meanwhile");
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    continue;
                }
                // Whatever was notified while not listening is found by the next poll.
                wake.notify_one();
                loop {
                    match listener.try_recv().await {
                        // Another schema's jobs (another deployment on this database).
                        Ok(Some(n)) if n.payload() != schema => {}
                        Ok(Some(_)) => wake.notify_one(),
                        // The connection dropped: reconnect and listen again.
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "job notifications: connection lost");
                            break;
                        }
                    }
                }
            }
        });
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn migrate(pool: &PgPool) -> StoreResult<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = async {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        for (version, sql) in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *conn)
                    .await?;
            if done.is_some() {
                continue;
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql)).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)")
                .bind(version)
                .bind(chrono::Utc::now().timestamp_millis())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok::<(), StoreError>(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    result
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> StoreResult<()> {
        migrate(&self.pool).await
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn job_wakeups(&self) -> Option<Arc<Notify>> {
        if self.listening.set(()).is_ok() {
            self.start_listening();
        }
        Some(self.wake.clone())
    }

    async fn insert_tenant(&self, t: &NewTenant) -> StoreResult<Tenant> {
        accounts::insert_tenant(&self.pool, t).await
    }

    async fn tenant_by_key(&self, api_key: &str) -> StoreResult<Option<Tenant>> {
        accounts::tenant_by_key(&self.pool, api_key).await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        accounts::list_tenants(&self.pool).await
    }

    async fn count_tenants(&self) -> StoreResult<i64> {
        accounts::count_tenants(&self.pool).await
    }

    async fn set_tenant_enabled(
        &self,
        kind: &str,
        api_key: &str,
        enabled: bool,
    ) -> StoreResult<bool> {
        accounts::set_tenant_enabled(&self.pool, kind, api_key, enabled).await
    }

    async fn set_tenant_allow_ips(
        &self,
        kind: &str,
        api_key: &str,
        allow: &[String],
    ) -> StoreResult<bool> {
        accounts::set_tenant_allow_ips(&self.pool, kind, api_key, allow).await
    }

    async fn insert_merchant(&self, m: &NewMerchant) -> StoreResult<Merchant> {
        accounts::insert_merchant(&self.pool, m).await
    }

    async fn merchant_by_key(&self, api_key: &str) -> StoreResult<Option<Merchant>> {
        accounts::merchant_by_key(&self.pool, api_key).await
    }

    async fn list_merchants(&self) -> StoreResult<Vec<Merchant>> {
        accounts::list_merchants(&self.pool).await
    }

    async fn update_merchant(
        &self,
        api_key: &str,
        update: &MerchantUpdate,
    ) -> StoreResult<Option<Merchant>> {
        accounts::update_merchant(&self.pool, api_key, update).await
    }

    async fn remember_nonce(
        &self,
        tenant_id: i64,
        nonce: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> StoreResult<bool> {
        accounts::remember_nonce(&self.pool, tenant_id, nonce, now_ms, expires_ms).await
    }

    async fn nonce_seen(&self, tenant_id: i64, nonce: &str, now_ms: i64) -> StoreResult<bool> {
        accounts::nonce_seen(&self.pool, tenant_id, nonce, now_ms).await
    }

    async fn system_key(&self, name: &str) -> StoreResult<Option<(String, String)>> {
        accounts::system_key(&self.pool, name).await
    }

    async fn insert_system_key(
        &self,
        name: &str,
        private_enc: &str,
        public_pem: &str,
        now_ms: i64,
    ) -> StoreResult<(String, String)> {
        accounts::insert_system_key(&self.pool, name, private_enc, public_pem, now_ms).await
    }

    async fn session_by_external(&self, external_id: &str) -> StoreResult<Option<Session>> {
        engine::session_by_external(&self.pool, external_id).await
    }

    async fn record_sandbox_send(
        &self,
        tenant_id: i64,
        mobile: &str,
        at_ms: i64,
    ) -> StoreResult<()> {
        accounts::record_sandbox_send(&self.pool, tenant_id, mobile, at_ms).await
    }

    async fn sandbox_send(&self, tenant_id: i64, mobile: &str) -> StoreResult<Option<i64>> {
        accounts::sandbox_send(&self.pool, tenant_id, mobile).await
    }

    async fn insert_app(&self, app: &App) -> StoreResult<()> {
        accounts::insert_app(&self.pool, app).await
    }

    async fn update_app(&self, app: &App) -> StoreResult<()> {
        accounts::update_app(&self.pool, app).await
    }

    async fn get_app(&self, app_id: &str) -> StoreResult<Option<App>> {
        accounts::get_app(&self.pool, app_id).await
    }

    async fn app_with_template(
        &self,
        app_id: &str,
        template_id: Option<i64>,
    ) -> StoreResult<(Option<App>, Option<Template>)> {
        accounts::app_with_template(&self.pool, app_id, template_id).await
    }

    async fn insert_template(&self, t: &Template) -> StoreResult<i64> {
        accounts::insert_template(&self.pool, t).await
    }

    async fn update_template(&self, t: &Template) -> StoreResult<()> {
        accounts::update_template(&self.pool, t).await
    }

    async fn get_template(&self, template_id: i64) -> StoreResult<Option<Template>> {
        accounts::get_template(&self.pool, template_id).await
    }

    async fn list_templates(&self, tenant_id: i64) -> StoreResult<Vec<Template>> {
        accounts::list_templates(&self.pool, tenant_id).await
    }

    async fn insert_flow(&self, f: &Flow) -> StoreResult<i64> {
        accounts::insert_flow(&self.pool, f).await
    }

    async fn update_flow(&self, f: &Flow) -> StoreResult<()> {
        accounts::update_flow(&self.pool, f).await
    }

    async fn get_flow(&self, flow_id: i64) -> StoreResult<Option<Flow>> {
        accounts::get_flow(&self.pool, flow_id).await
    }

    async fn list_flows(&self, tenant_id: i64) -> StoreResult<Vec<Flow>> {
        accounts::list_flows(&self.pool, tenant_id).await
    }

    async fn create_send(&self, send: &NewSend) -> StoreResult<SendOutcome> {
        engine::create_send(&self.pool, send).await
    }

    async fn verification_session(
        &self,
        verification_id: &str,
    ) -> StoreResult<Option<(Verification, Session)>> {
        engine::verification_session(&self.pool, verification_id).await
    }

    async fn session_by_order(
        &self,
        tenant_id: i64,
        order_id: &str,
    ) -> StoreResult<Option<Session>> {
        engine::session_by_order(&self.pool, tenant_id, order_id).await
    }

    async fn attempts_for_session(&self, session_id: &str) -> StoreResult<Vec<Attempt>> {
        engine::attempts_for_session(&self.pool, session_id).await
    }

    async fn verify(
        &self,
        verification_id: &str,
        tenant_id: i64,
        guard: Option<TenantGuard>,
        hash: CandidateHash,
        now_ms: i64,
    ) -> StoreResult<VerifyLookup> {
        engine::verify(
            &self.pool,
            verification_id,
            tenant_id,
            guard.as_ref(),
            hash,
            now_ms,
        )
        .await
    }

    async fn claim_jobs(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<Job>> {
        engine::claim_jobs(&self.pool, owner, now_ms, lease_until_ms, limit).await
    }

    async fn finish_job(&self, outcome: &JobOutcome) -> StoreResult<bool> {
        engine::finish_job(&self.pool, outcome).await
    }

    async fn ensure_jobs(&self, jobs: &[NewJob], now_ms: i64) -> StoreResult<()> {
        engine::ensure_jobs(&self.pool, jobs, now_ms).await
    }

    async fn start_attempt(&self, attempt_id: i64, now_ms: i64) -> StoreResult<StartAttempt> {
        engine::start_attempt(&self.pool, attempt_id, now_ms).await
    }

    async fn fire_flow_step(&self, fire: &FlowFire) -> StoreResult<FlowFired> {
        engine::fire_flow_step(&self.pool, fire).await
    }

    async fn session_with_attempts(
        &self,
        session_id: &str,
    ) -> StoreResult<Option<(Session, Vec<Attempt>)>> {
        engine::session_with_attempts(&self.pool, session_id).await
    }

    async fn attempt_by_message(
        &self,
        route: &str,
        message_id: &str,
    ) -> StoreResult<Option<Attempt>> {
        engine::attempt_by_message(&self.pool, route, message_id).await
    }

    async fn attempt_on_route(&self, route: &str, attempt_id: i64) -> StoreResult<Option<Attempt>> {
        engine::attempt_on_route(&self.pool, route, attempt_id).await
    }

    async fn apply_receipt(
        &self,
        attempt_id: i64,
        guard: AttemptGuard,
        update: &AttemptUpdate,
    ) -> StoreResult<bool> {
        engine::apply_receipt(&self.pool, attempt_id, guard, update).await
    }

    async fn pending_receipts(&self, route: &str, limit: i64) -> StoreResult<Vec<(i64, String)>> {
        engine::pending_receipts(&self.pool, route, limit).await
    }

    async fn job_stats(&self, now_ms: i64) -> StoreResult<JobStats> {
        engine::job_stats(&self.pool, now_ms).await
    }

    async fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        engine::next_due_ms(&self.pool).await
    }

    async fn release_claims(&self, owner: &str) -> StoreResult<u64> {
        engine::release_claims(&self.pool, owner).await
    }

    async fn recover_claims(&self, now_ms: i64) -> StoreResult<u64> {
        engine::recover_claims(&self.pool, now_ms).await
    }

    async fn list_jobs(&self, limit: i64) -> StoreResult<Vec<Job>> {
        engine::list_jobs(&self.pool, limit).await
    }

    async fn upsert_backfill_rate(&self, r: &BackfillRate) -> StoreResult<()> {
        accounts::upsert_backfill_rate(&self.pool, r).await
    }

    async fn record_postback(&self, p: &Postback) -> StoreResult<()> {
        accounts::record_postback(&self.pool, p).await
    }

    async fn list_outbox(&self, limit: i64) -> StoreResult<Vec<OutboxEntry>> {
        accounts::list_outbox(&self.pool, limit).await
    }
}
