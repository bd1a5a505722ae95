use sqlx::PgPool;

use crate::store::*;

pub(super) async fn session_by_external(
    pool: &PgPool,
    external_id: &str,
) -> StoreResult<Option<Session>> {
    unimplemented!("session_by_external")
}

pub(super) async fn create_send(pool: &PgPool, send: &NewSend) -> StoreResult<SendOutcome> {
    unimplemented!("create_send")
}

pub(super) async fn verification_session(
    pool: &PgPool,
    verification_id: &str,
) -> StoreResult<Option<(Verification, Session)>> {
    unimplemented!("verification_session")
}

pub(super) async fn session_by_order(
    pool: &PgPool,
    tenant_id: i64,
    order_id: &str,
) -> StoreResult<Option<Session>> {
    unimplemented!("session_by_order")
}

pub(super) async fn attempts_for_session(
    pool: &PgPool,
    session_id: &str,
) -> StoreResult<Vec<Attempt>> {
    unimplemented!("attempts_for_session")
}

pub(super) async fn verify(
    pool: &PgPool,
    verification_id: &str,
    tenant_id: i64,
    hash: CandidateHash,
    now_ms: i64,
) -> StoreResult<VerifyLookup> {
    unimplemented!("verify")
}

pub(super) async fn claim_jobs(
    pool: &PgPool,
    owner: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: i64,
) -> StoreResult<Vec<Job>> {
    unimplemented!("claim_jobs")
}

pub(super) async fn finish_job(pool: &PgPool, outcome: &JobOutcome) -> StoreResult<bool> {
    unimplemented!("finish_job")
}

pub(super) async fn ensure_jobs(pool: &PgPool, jobs: &[NewJob], now_ms: i64) -> StoreResult<()> {
    unimplemented!("ensure_jobs")
}

pub(super) async fn start_attempt(
    pool: &PgPool,
    attempt_id: i64,
    now_ms: i64,
) -> StoreResult<StartAttempt> {
    unimplemented!("start_attempt")
}

pub(super) async fn fire_flow_step(pool: &PgPool, fire: &FlowFire) -> StoreResult<FlowFired> {
    unimplemented!("fire_flow_step")
}

pub(super) async fn session_with_attempts(
    pool: &PgPool,
    session_id: &str,
) -> StoreResult<Option<(Session, Vec<Attempt>)>> {
    unimplemented!("session_with_attempts")
}

pub(super) async fn attempt_by_message(
    pool: &PgPool,
    route: &str,
    message_id: &str,
) -> StoreResult<Option<Attempt>> {
    unimplemented!("attempt_by_message")
}

pub(super) async fn attempt_on_route(
    pool: &PgPool,
    route: &str,
    attempt_id: i64,
) -> StoreResult<Option<Attempt>> {
    unimplemented!("attempt_on_route")
}

pub(super) async fn apply_receipt(
    pool: &PgPool,
    attempt_id: i64,
    guard: AttemptGuard,
    update: &AttemptUpdate,
) -> StoreResult<bool> {
    unimplemented!("apply_receipt")
}

pub(super) async fn pending_receipts(
    pool: &PgPool,
    route: &str,
    limit: i64,
) -> StoreResult<Vec<(i64, String)>> {
    unimplemented!("pending_receipts")
}

pub(super) async fn job_stats(pool: &PgPool, now_ms: i64) -> StoreResult<JobStats> {
    unimplemented!("job_stats")
}

pub(super) async fn next_due_ms(pool: &PgPool) -> StoreResult<Option<i64>> {
    unimplemented!("next_due_ms")
}

pub(super) async fn release_claims(pool: &PgPool, owner: &str) -> StoreResult<u64> {
    unimplemented!("release_claims")
}

pub(super) async fn recover_claims(pool: &PgPool, now_ms: i64) -> StoreResult<u64> {
    unimplemented!("recover_claims")
}

pub(super) async fn list_jobs(pool: &PgPool, limit: i64) -> StoreResult<Vec<Job>> {
    unimplemented!("list_jobs")
}
