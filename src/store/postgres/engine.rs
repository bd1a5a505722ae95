//! Sends, verifies, attempts and the delivery engine's jobs, on PostgreSQL.
//!
//! The semantics are those of `store::sqlite`; what differs is how they hold across several
//! processes at READ COMMITTED. Each store call is one transaction (or one statement), and:
//!
//! - rules over rows that may not exist yet take a transaction-scoped advisory lock on their
//!   key before they check: an orderId (`order:<tenant>:<order id>`), an app's total limit
//!   (`limit:<app>`) and a number's limit (`limit:<app>:<phone>`), always in that order;
//! - rows a decision reads are locked first (`FOR NO KEY UPDATE`, which does not block the
//!   foreign-key checks of inserts that reference them): the session of a resend, a verify, a
//!   flow step or a start, the attempt being started;
//! - an outcome is recorded only while its job's claim (id, owner, tries) still holds, checked
//!   by the statement that changes or removes the job, and an attempt changes only if its
//!   [`AttemptGuard`] holds, checked by the statement that changes it;
//! - jobs are claimed with `FOR UPDATE SKIP LOCKED`, so two claimers never take the same job.
//!
//! Row locks are taken in one order everywhere (job, then attempt, then session) so that two
//! calls on the same rows wait for each other instead of deadlocking.

use sqlx::postgres::{PgRow, Postgres};
use sqlx::{PgPool, Row, Transaction};

use crate::crypto::ct_eq_str;
use crate::domain::session::{SessionStatus, VerifyOutcome, decide_verify};
use crate::store::*;

type Tx = Transaction<'static, Postgres>;

/// The session columns in the order [`session_at`] reads them, each prefixed with `$p`.
macro_rules! session_cols {
    ($p:literal) => {
        concat!(
            $p,
            "id, ",
            $p,
            "tenant_id, ",
            $p,
            "app_id, ",
            $p,
            "template_id, ",
            $p,
            "flow_id, ",
            $p,
            "phone, ",
            $p,
            "region, ",
            $p,
            "channel, ",
            $p,
            "code_hash, ",
            $p,
            "code_enc, ",
            $p,
            "code_type, ",
            $p,
            "code_length, ",
            $p,
            "case_insensitive, ",
            $p,
            "status, ",
            $p,
            "wrong_attempts, ",
            $p,
            "submitted, ",
            $p,
            "expires_ms, ",
            $p,
            "created_ms, ",
            $p,
            "verified_ms, ",
            $p,
            "order_id, ",
            $p,
            "external_id"
        )
    };
}

/// The verification columns in the order [`verification_from`] reads them.
macro_rules! verification_cols {
    ($p:literal) => {
        concat!(
            $p,
            "verification_id, ",
            $p,
            "session_id, ",
            $p,
            "tenant_id, ",
            $p,
            "channel, ",
            $p,
            "kind, ",
            $p,
            "created_ms"
        )
    };
}

/// The attempt columns ([`attempt_from`] reads them by name).
macro_rules! attempt_cols {
    () => {
        "id, session_id, verification_id, tenant_id, channel, route, provider, sender, \
         gateway_state, report_state, reason, provider_message_id, encoding, segments, mcc, mnc, \
         price_micros, rate_micros, bill_period, call_duration, charged_duration, created_ms, \
         send_ms, done_ms, flow_step, ring_ms, answer_ms, termination_code, claim_owner, \
         claim_lease_ms"
    };
}

/// The job columns ([`job_from`] reads them by name).
macro_rules! job_cols {
    () => {
        "id, key, kind, session_id, attempt_id, step, due_ms, owner, lease_ms, tries, last_error, \
         created_ms"
    };
}

/// Reads a session whose columns start at `at`, in [`session_cols`] order.
fn session_at(r: &PgRow, at: usize) -> StoreResult<Session> {
    let status: String = r.try_get(at + 13)?;
    Ok(Session {
        id: r.try_get(at)?,
        tenant_id: r.try_get(at + 1)?,
        app_id: r.try_get(at + 2)?,
        template_id: r.try_get(at + 3)?,
        flow_id: r.try_get(at + 4)?,
        phone: r.try_get(at + 5)?,
        region: r.try_get(at + 6)?,
        channel: r.try_get(at + 7)?,
        code_hash: r.try_get(at + 8)?,
        code_enc: r.try_get(at + 9)?,
        code_type: r.try_get(at + 10)?,
        code_length: r.try_get(at + 11)?,
        case_insensitive: r.try_get(at + 12)?,
        status: SessionStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("sessions.status {status:?}")))?,
        wrong_attempts: r.try_get(at + 14)?,
        submitted: r.try_get(at + 15)?,
        expires_ms: r.try_get(at + 16)?,
        created_ms: r.try_get(at + 17)?,
        verified_ms: r.try_get(at + 18)?,
        order_id: r.try_get(at + 19)?,
        external_id: r.try_get(at + 20)?,
    })
}

fn verification_from(r: &PgRow) -> StoreResult<Verification> {
    Ok(Verification {
        verification_id: r.try_get(0)?,
        session_id: r.try_get(1)?,
        tenant_id: r.try_get(2)?,
        channel: r.try_get(3)?,
        kind: r.try_get(4)?,
        created_ms: r.try_get(5)?,
    })
}

fn attempt_from(r: &PgRow) -> StoreResult<Attempt> {
    Ok(Attempt {
        id: r.try_get("id")?,
        session_id: r.try_get("session_id")?,
        verification_id: r.try_get("verification_id")?,
        tenant_id: r.try_get("tenant_id")?,
        channel: r.try_get("channel")?,
        route: r.try_get("route")?,
        provider: r.try_get("provider")?,
        sender: r.try_get("sender")?,
        gateway_state: r.try_get("gateway_state")?,
        report_state: r.try_get("report_state")?,
        reason: r.try_get("reason")?,
        provider_message_id: r.try_get("provider_message_id")?,
        encoding: r.try_get("encoding")?,
        segments: r.try_get("segments")?,
        mcc: r.try_get("mcc")?,
        mnc: r.try_get("mnc")?,
        price_micros: r.try_get("price_micros")?,
        rate_micros: r.try_get("rate_micros")?,
        bill_period: r.try_get("bill_period")?,
        call_duration: r.try_get("call_duration")?,
        charged_duration: r.try_get("charged_duration")?,
        created_ms: r.try_get("created_ms")?,
        send_ms: r.try_get("send_ms")?,
        done_ms: r.try_get("done_ms")?,
        flow_step: r.try_get("flow_step")?,
        ring_ms: r.try_get("ring_ms")?,
        answer_ms: r.try_get("answer_ms")?,
        termination_code: r.try_get("termination_code")?,
        claim_owner: r.try_get("claim_owner")?,
        claim_lease_ms: r.try_get("claim_lease_ms")?,
    })
}

fn job_from(r: &PgRow) -> StoreResult<Job> {
    Ok(Job {
        id: r.try_get("id")?,
        key: r.try_get("key")?,
        kind: r.try_get("kind")?,
        session_id: r.try_get("session_id")?,
        attempt_id: r.try_get("attempt_id")?,
        step: r.try_get("step")?,
        due_ms: r.try_get("due_ms")?,
        owner: r.try_get("owner")?,
        lease_ms: r.try_get("lease_ms")?,
        tries: r.try_get("tries")?,
        last_error: r.try_get("last_error")?,
        created_ms: r.try_get("created_ms")?,
    })
}

fn all<T>(rows: Vec<PgRow>, f: impl Fn(&PgRow) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(f).collect()
}

/// A read-only transaction whose statements all see one snapshot (for reads of several
/// statements).
async fn snapshot(pool: &PgPool) -> StoreResult<Tx> {
    Ok(pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?)
}

/// Takes the transaction-scoped advisory lock of `key`: held until commit or rollback.
async fn lock_key(tx: &mut Tx, key: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The session, locked against every other writer of it until the transaction ends.
async fn lock_session(tx: &mut Tx, id: &str) -> StoreResult<Option<Session>> {
    sqlx::query(concat!(
        "SELECT ",
        session_cols!(""),
        " FROM sessions WHERE id = $1 FOR NO KEY UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .map(|r| session_at(&r, 0))
    .transpose()
}

async fn load_attempts(
    conn: &mut sqlx::PgConnection,
    session_id: &str,
) -> StoreResult<Vec<Attempt>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        attempt_cols!(),
        " FROM attempts WHERE session_id = $1 ORDER BY id"
    ))
    .bind(session_id)
    .fetch_all(conn)
    .await?;
    all(rows, attempt_from)
}

/// Writes a job unless one with its key exists.
async fn insert_job(tx: &mut Tx, j: &NewJob, now_ms: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO jobs (key, kind, session_id, attempt_id, step, due_ms, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO NOTHING",
    )
    .bind(&j.key)
    .bind(j.kind)
    .bind(&j.session_id)
    .bind(j.attempt_id)
    .bind(j.step)
    .bind(j.due_ms)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts an attempt: straight into `sending`, its deliver job held on the row by `claim`,
/// when it is handed to its route right away.
async fn insert_attempt(
    tx: &mut Tx,
    session_id: &str,
    verification_id: &str,
    tenant_id: i64,
    a: &NewAttempt,
    claim: Option<&NewClaim>,
    now_ms: i64,
) -> StoreResult<(i64, Option<JobRef>)> {
    let sending = a.sending.clone().unwrap_or_default();
    let handed = a.sending.is_some();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO attempts (session_id, verification_id, tenant_id, channel, route, provider, sender, \
         gateway_state, report_state, mcc, encoding, segments, price_micros, rate_micros, bill_period, \
         created_ms, send_ms, flow_step, claim_owner, claim_lease_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
         RETURNING id",
    )
    .bind(session_id)
    .bind(verification_id)
    .bind(tenant_id)
    .bind(&a.channel)
    .bind(&a.route)
    .bind(&a.provider)
    .bind(&a.sender)
    .bind(if handed { gateway::SENDING } else { gateway::PENDING })
    .bind(if handed { report::PENDING } else { report::UNKNOWN })
    .bind(a.mcc)
    .bind(sending.encoding)
    .bind(sending.segments)
    .bind(sending.price_micros)
    .bind(sending.rate_micros)
    .bind(sending.bill_period)
    .bind(now_ms)
    .bind(handed.then_some(now_ms))
    .bind(a.flow_step)
    .bind(claim.map(|c| &c.owner))
    .bind(claim.map(|c| c.lease_until_ms))
    .fetch_one(&mut **tx)
    .await?;
    Ok((id, claim.map(|c| c.held_on(id))))
}

/// Marks the session as having had an attempt handed to a route.
async fn mark_submitted(tx: &mut Tx, session_id: &str) -> StoreResult<()> {
    sqlx::query("UPDATE sessions SET submitted = TRUE WHERE id = $1 AND NOT submitted")
        .bind(session_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Counts sends in the window and, when under every limit, records this one. An app with no
/// active limit records nothing: a limit counts the sends made while it is enabled. The
/// caller holds the advisory locks of the limits (see [`create_send`]).
async fn check_and_count(tx: &mut Tx, s: &NewSend) -> StoreResult<Option<SendOutcome>> {
    if s.total_limit.is_none() && s.phone_limit.is_none() {
        return Ok(None);
    }
    if let Some(l) = s.total_limit {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM send_log WHERE app_id = $1 AND at_ms > $2")
                .bind(&s.app_id)
                .bind(s.now_ms - l.window_ms())
                .fetch_one(&mut **tx)
                .await?;
        if n >= l.limit {
            return Ok(Some(SendOutcome::TotalLimit));
        }
    }
    if let Some(l) = s.phone_limit {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM send_log WHERE app_id = $1 AND phone = $2 AND at_ms > $3",
        )
        .bind(&s.app_id)
        .bind(&s.phone)
        .bind(s.now_ms - l.window_ms())
        .fetch_one(&mut **tx)
        .await?;
        if n >= l.limit {
            return Ok(Some(SendOutcome::PhoneLimit));
        }
    }
    sqlx::query("INSERT INTO send_log (app_id, phone, at_ms) VALUES ($1, $2, $3)")
        .bind(&s.app_id)
        .bind(&s.phone)
        .bind(s.now_ms)
        .execute(&mut **tx)
        .await?;
    Ok(None)
}

pub(super) async fn session_by_external(
    pool: &PgPool,
    external_id: &str,
) -> StoreResult<Option<Session>> {
    sqlx::query(concat!(
        "SELECT ",
        session_cols!(""),
        " FROM sessions WHERE external_id = $1"
    ))
    .bind(external_id)
    .fetch_optional(pool)
    .await?
    .map(|r| session_at(&r, 0))
    .transpose()
}

/// Fails with [`StoreError::TenantChanged`] unless the tenant row still matches `guard`.
async fn check_tenant_guard(tx: &mut Tx, guard: Option<&TenantGuard>) -> StoreResult<()> {
    let Some(g) = guard else {
        return Ok(());
    };
    let same: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1 AND enabled AND secret_enc = $2 AND allow_ips = $3)",
    )
    .bind(g.tenant_id)
    .bind(&g.secret_enc)
    .bind(&g.allow_ips)
    .fetch_one(&mut **tx)
    .await?;
    if same {
        Ok(())
    } else {
        Err(StoreError::TenantChanged)
    }
}

/// One transaction. Locks, in this order: the orderId's advisory lock, the resent session's
/// row, the app's total-limit lock, the number's limit lock; each is taken before what it
/// guards is read, so a second node's send of the same order / app / number waits and then
/// sees the first one's rows.
pub(super) async fn create_send(pool: &PgPool, s: &NewSend) -> StoreResult<SendOutcome> {
    let mut tx = pool.begin().await?;
    check_tenant_guard(&mut tx, s.guard.as_ref()).await?;
    if let Some(order_id) = &s.order_id {
        lock_key(&mut tx, &format!("order:{}:{order_id}", s.tenant_id)).await?;
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT verification_id FROM orders WHERE tenant_id = $1 AND order_id = $2",
        )
        .bind(s.tenant_id)
        .bind(order_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(verification_id) = existing {
            return Ok(SendOutcome::DuplicateOrder { verification_id });
        }
    }
    // A resend first checks that its session is still open, before it counts.
    let (session_id, code_sealed, refresh) = match &s.target {
        SendTarget::New(n) => (s.verification_id.clone(), n.code.sealed.clone(), false),
        SendTarget::Resend { session_id, fresh } => {
            let Some(session) = lock_session(&mut tx, session_id).await? else {
                return Ok(SendOutcome::SessionMissing);
            };
            if session.status != SessionStatus::Pending {
                return Ok(SendOutcome::SessionClosed);
            }
            // The same code while it is valid; a fresh one once it has expired.
            match session.code_enc {
                Some(sealed) if s.now_ms < session.expires_ms => (session.id, sealed, false),
                _ => (session.id, fresh.sealed.clone(), true),
            }
        }
    };
    if s.total_limit.is_some() {
        lock_key(&mut tx, &format!("limit:{}", s.app_id)).await?;
    }
    if s.phone_limit.is_some() {
        lock_key(&mut tx, &format!("limit:{}:{}", s.app_id, s.phone)).await?;
    }
    if let Some(outcome) = check_and_count(&mut tx, s).await? {
        tx.commit().await?;
        return Ok(outcome);
    }
    let a = &s.attempt;
    match &s.target {
        SendTarget::New(n) => {
            sqlx::query(
                "INSERT INTO sessions (id, tenant_id, app_id, template_id, flow_id, phone, region, channel, \
                 code_hash, code_enc, code_type, code_length, case_insensitive, status, submitted, expires_ms, \
                 created_ms, order_id, external_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'pending', $14, $15, $16, $17, $18)",
            )
            .bind(&session_id)
            .bind(s.tenant_id)
            .bind(&n.app_id)
            .bind(n.template_id)
            .bind(n.flow_id)
            .bind(&n.phone)
            .bind(&n.region)
            .bind(&a.channel)
            .bind(&n.code.hash)
            .bind(&n.code.sealed)
            .bind(n.code_type)
            .bind(n.code_length)
            .bind(n.case_insensitive)
            .bind(a.sending.is_some())
            .bind(n.code.expires_ms)
            .bind(s.now_ms)
            .bind(&s.order_id)
            .bind(&n.external_id)
            .execute(&mut *tx)
            .await?;
        }
        SendTarget::Resend { fresh, .. } => {
            sqlx::query(
                "UPDATE sessions SET code_hash = CASE WHEN $1 THEN $2 ELSE code_hash END, \
                 code_enc = CASE WHEN $1 THEN $3 ELSE code_enc END, \
                 expires_ms = CASE WHEN $1 THEN $4 ELSE expires_ms END, \
                 submitted = submitted OR $5 WHERE id = $6",
            )
            .bind(refresh)
            .bind(&fresh.hash)
            .bind(&fresh.sealed)
            .bind(fresh.expires_ms)
            .bind(a.sending.is_some())
            .bind(&session_id)
            .execute(&mut *tx)
            .await?;
        }
    }
    sqlx::query(
        "INSERT INTO verifications (verification_id, session_id, tenant_id, channel, kind, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&s.verification_id)
    .bind(&session_id)
    .bind(s.tenant_id)
    .bind(&a.channel)
    .bind(s.kind)
    .bind(s.now_ms)
    .execute(&mut *tx)
    .await?;
    if let Some(order_id) = &s.order_id {
        sqlx::query(
            "INSERT INTO orders (tenant_id, order_id, verification_id) VALUES ($1, $2, $3)",
        )
        .bind(s.tenant_id)
        .bind(order_id)
        .bind(&s.verification_id)
        .execute(&mut *tx)
        .await?;
    }
    let (attempt_id, job) = insert_attempt(
        &mut tx,
        &session_id,
        &s.verification_id,
        s.tenant_id,
        a,
        s.claim.as_ref(),
        s.now_ms,
    )
    .await?;
    if job.is_none() {
        insert_job(
            &mut tx,
            &NewJob::deliver(&session_id, attempt_id, s.now_ms),
            s.now_ms,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(SendOutcome::Created {
        session_id,
        attempt_id,
        code_sealed,
        job,
    })
}

pub(super) async fn verification_session(
    pool: &PgPool,
    verification_id: &str,
) -> StoreResult<Option<(Verification, Session)>> {
    sqlx::query(concat!(
        "SELECT ",
        verification_cols!("v."),
        ", ",
        session_cols!("s."),
        " FROM verifications v JOIN sessions s ON s.id = v.session_id WHERE v.verification_id = $1"
    ))
    .bind(verification_id)
    .fetch_optional(pool)
    .await?
    .map(|r| Ok((verification_from(&r)?, session_at(&r, 6)?)))
    .transpose()
}

pub(super) async fn session_by_order(
    pool: &PgPool,
    tenant_id: i64,
    order_id: &str,
) -> StoreResult<Option<Session>> {
    sqlx::query(concat!(
        "SELECT ",
        session_cols!("s."),
        " FROM orders o JOIN verifications v ON v.verification_id = o.verification_id \
         JOIN sessions s ON s.id = v.session_id WHERE o.tenant_id = $1 AND o.order_id = $2"
    ))
    .bind(tenant_id)
    .bind(order_id)
    .fetch_optional(pool)
    .await?
    .map(|r| session_at(&r, 0))
    .transpose()
}

pub(super) async fn attempts_for_session(
    pool: &PgPool,
    session_id: &str,
) -> StoreResult<Vec<Attempt>> {
    let mut conn = pool.acquire().await?;
    load_attempts(&mut conn, session_id).await
}

/// Locks the session row (`FOR NO KEY UPDATE OF s`) before deciding, so concurrent verifies
/// of one session run one after the other, each seeing what the one before recorded: exactly
/// one correct code consumes it, and every wrong code counts.
pub(super) async fn verify(
    pool: &PgPool,
    verification_id: &str,
    tenant_id: i64,
    guard: Option<&TenantGuard>,
    hash: CandidateHash,
    now_ms: i64,
) -> StoreResult<VerifyLookup> {
    let mut tx = pool.begin().await?;
    check_tenant_guard(&mut tx, guard).await?;
    let row = sqlx::query(concat!(
        "SELECT ",
        verification_cols!("v."),
        ", ",
        session_cols!("s."),
        " FROM verifications v JOIN sessions s ON s.id = v.session_id \
         WHERE v.verification_id = $1 FOR NO KEY UPDATE OF s"
    ))
    .bind(verification_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(VerifyLookup::Unknown);
    };
    let verification = verification_from(&row)?;
    let mut session = session_at(&row, 6)?;
    if verification.tenant_id != tenant_id {
        return Ok(VerifyLookup::Foreign);
    }
    let candidate_hash = hash(&session);
    let matches = ct_eq_str(&session.code_hash, &candidate_hash);
    let outcome = decide_verify(&session.state(), now_ms, matches);
    match outcome {
        VerifyOutcome::Matched => {
            // Consumed: the sealed code is no longer needed by anything.
            sqlx::query(
                "UPDATE sessions SET status = 'verified', verified_ms = $1, code_enc = NULL \
                 WHERE id = $2",
            )
            .bind(now_ms)
            .bind(&session.id)
            .execute(&mut *tx)
            .await?;
            session.status = SessionStatus::Verified;
            session.verified_ms = Some(now_ms);
            session.code_enc = None;
        }
        VerifyOutcome::Wrong { locked_now } => {
            sqlx::query(
                "UPDATE sessions SET wrong_attempts = wrong_attempts + 1, \
                 status = CASE WHEN $1 THEN 'locked' ELSE status END, \
                 code_enc = CASE WHEN $1 THEN NULL ELSE code_enc END WHERE id = $2",
            )
            .bind(locked_now)
            .bind(&session.id)
            .execute(&mut *tx)
            .await?;
            session.wrong_attempts += 1;
            if locked_now {
                session.status = SessionStatus::Locked;
                session.code_enc = None;
            }
        }
        _ => {}
    }
    tx.commit().await?;
    Ok(VerifyLookup::Checked {
        outcome,
        verification,
        session,
    })
}

/// One statement: picks the due jobs no one holds (or whose lease lapsed), oldest first,
/// skipping rows another transaction has locked (being claimed or finished right now), and
/// claims them. Two claimers at once never get the same job.
pub(super) async fn claim_jobs(
    pool: &PgPool,
    owner: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: i64,
) -> StoreResult<Vec<Job>> {
    adopt_attempt_claims(pool, Adopt::Lapsed(now_ms)).await?;
    let rows = sqlx::query(concat!(
        "WITH picked AS (SELECT id FROM jobs WHERE due_ms <= $3 AND (lease_ms IS NULL OR lease_ms <= $3) \
         ORDER BY due_ms, id LIMIT $4 FOR UPDATE SKIP LOCKED), \
         claimed AS (UPDATE jobs SET owner = $1, lease_ms = $2, tries = jobs.tries + 1 \
         FROM picked WHERE jobs.id = picked.id RETURNING jobs.*) \
         SELECT ",
        job_cols!(),
        " FROM claimed ORDER BY due_ms, id"
    ))
    .bind(owner)
    .bind(lease_until_ms)
    .bind(now_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    all(rows, job_from)
}

/// The SET clause of an attempt update: each column keeps its value where the update has none.
macro_rules! attempt_update_sql {
    ($where:literal) => {
        concat!(
            "UPDATE attempts SET gateway_state = COALESCE($1, gateway_state), report_state = COALESCE($2, report_state), \
             reason = COALESCE($3, reason), provider_message_id = COALESCE($4, provider_message_id), \
             encoding = COALESCE($5, encoding), segments = COALESCE($6, segments), mnc = COALESCE($7, mnc), \
             price_micros = COALESCE($8, price_micros), rate_micros = COALESCE($9, rate_micros), \
             bill_period = COALESCE($10, bill_period), call_duration = COALESCE($11, call_duration), \
             charged_duration = COALESCE($12, charged_duration), send_ms = COALESCE($13, send_ms), \
             done_ms = COALESCE($14, done_ms), ring_ms = COALESCE($15, ring_ms), \
             answer_ms = COALESCE($16, answer_ms), termination_code = COALESCE($17, termination_code), \
             route = COALESCE($18, route), provider = COALESCE($19, provider), sender = COALESCE($20, sender) \
             WHERE id = $21 ",
            $where,
            " RETURNING ",
            attempt_cols!()
        )
    };
}

/// Applies `u` to the attempt if `guard` allows it (checked in the same statement, on the row
/// as it is once locked); returns the attempt as changed, or `None` when it was not.
async fn guarded_update(
    tx: &mut Tx,
    id: i64,
    guard: AttemptGuard,
    u: &AttemptUpdate,
) -> StoreResult<Option<Attempt>> {
    let sql = match guard {
        AttemptGuard::Any => attempt_update_sql!(""),
        AttemptGuard::Gateway(_) => attempt_update_sql!("AND gateway_state = ANY($22)"),
        AttemptGuard::Unconfirmed => attempt_update_sql!(
            "AND (report_state IN ('unknown', 'pending') \
             OR (report_state = 'fail' AND reason = 'no delivery report'))"
        ),
    };
    let mut q = sqlx::query(sql)
        .bind(&u.gateway_state)
        .bind(&u.report_state)
        .bind(&u.reason)
        .bind(&u.provider_message_id)
        .bind(&u.encoding)
        .bind(u.segments)
        .bind(u.mnc)
        .bind(u.price_micros)
        .bind(u.rate_micros)
        .bind(&u.bill_period)
        .bind(u.call_duration)
        .bind(u.charged_duration)
        .bind(u.send_ms)
        .bind(u.done_ms)
        .bind(u.ring_ms)
        .bind(u.answer_ms)
        .bind(u.termination_code)
        .bind(&u.route)
        .bind(&u.provider)
        .bind(&u.sender)
        .bind(id);
    if let AttemptGuard::Gateway(states) = guard {
        q = q.bind(states);
    }
    let Some(row) = q.fetch_optional(&mut **tx).await? else {
        return Ok(None);
    };
    let attempt = attempt_from(&row)?;
    let handed_over = matches!(
        u.gateway_state.as_deref(),
        Some(gateway::SENDING | gateway::SUCCESS | gateway::FAIL)
    );
    if handed_over {
        mark_submitted(tx, &attempt.session_id).await?;
    }
    Ok(Some(attempt))
}

/// The job's own change comes first and carries the claim check (and locks the job row, or
/// the attempt row holding the claim): when the claim is no longer held, it changes no row and
/// nothing else is written.
pub(super) async fn finish_job(pool: &PgPool, o: &JobOutcome) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    match o.job.id {
        JobId::Queued(id) => {
            let changed = match &o.next {
                JobNext::Delete => {
                    sqlx::query("DELETE FROM jobs WHERE id = $1 AND owner = $2 AND tries = $3")
                        .bind(id)
                        .bind(&o.job.owner)
                        .bind(o.job.tries)
                        .execute(&mut *tx)
                        .await?
                }
                JobNext::Retry { due_ms, error } => sqlx::query(
                    "UPDATE jobs SET owner = NULL, lease_ms = NULL, due_ms = $4, last_error = $5 \
                         WHERE id = $1 AND owner = $2 AND tries = $3",
                )
                .bind(id)
                .bind(&o.job.owner)
                .bind(o.job.tries)
                .bind(due_ms)
                .bind(error)
                .execute(&mut *tx)
                .await?,
                JobNext::Reschedule { due_ms } => {
                    sqlx::query(
                        "UPDATE jobs SET owner = NULL, lease_ms = NULL, due_ms = $4 \
                         WHERE id = $1 AND owner = $2 AND tries = $3",
                    )
                    .bind(id)
                    .bind(&o.job.owner)
                    .bind(o.job.tries)
                    .bind(due_ms)
                    .execute(&mut *tx)
                    .await?
                }
            }
            .rows_affected();
            if changed == 0 {
                return Ok(false);
            }
        }
        JobId::Attempt(attempt_id) => {
            let session_id: Option<String> = sqlx::query_scalar(
                "UPDATE attempts SET claim_owner = NULL, claim_lease_ms = NULL \
                 WHERE id = $1 AND claim_owner = $2 RETURNING session_id",
            )
            .bind(attempt_id)
            .bind(&o.job.owner)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(session_id) = session_id else {
                return Ok(false);
            };
            // Run again later: the job moves into the queue.
            if let Some((due_ms, error)) = o.next.again() {
                let j = NewJob::deliver(&session_id, attempt_id, due_ms);
                sqlx::query(
                    "INSERT INTO jobs (key, kind, session_id, attempt_id, due_ms, tries, last_error, created_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO NOTHING",
                )
                .bind(&j.key)
                .bind(j.kind)
                .bind(&j.session_id)
                .bind(j.attempt_id)
                .bind(j.due_ms)
                .bind(o.job.tries)
                .bind(error)
                .bind(o.now_ms)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    if let Some((id, guard, update)) = &o.attempt {
        guarded_update(&mut tx, *id, *guard, update).await?;
    }
    for j in &o.follow_ups {
        insert_job(&mut tx, j, o.now_ms).await?;
    }
    if let Some(e) = &o.outbox {
        super::accounts::insert_outbox(&mut *tx, e).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Which attempt claims [`adopt_attempt_claims`] moves into the queue.
pub(super) enum Adopt<'a> {
    /// Those whose lease lapsed by this time.
    Lapsed(i64),
    /// Those of one owner (a node stopping).
    Owner(&'a str),
}

/// Moves deliver claims held on attempts into the queue as free deliver jobs, due when the
/// attempt was handed over (the next worker finds it interrupted); returns how many moved. One
/// statement: the attempt rows are locked as they are picked (skipping those an outcome is
/// being recorded for right now), so a claim is either finished by its owner or moved, never
/// both.
pub(super) async fn adopt_attempt_claims(pool: &PgPool, which: Adopt<'_>) -> StoreResult<u64> {
    macro_rules! adopt {
        ($cond:literal) => {
            concat!(
                "WITH picked AS (SELECT id FROM attempts WHERE claim_lease_ms IS NOT NULL AND ",
                $cond,
                " ORDER BY claim_lease_ms FOR UPDATE SKIP LOCKED), \
                 freed AS (UPDATE attempts a SET claim_owner = NULL, claim_lease_ms = NULL \
                 FROM picked WHERE a.id = picked.id \
                 RETURNING a.id, a.session_id, COALESCE(a.send_ms, a.created_ms) AS due_ms, a.created_ms), \
                 queued AS (INSERT INTO jobs (key, kind, session_id, attempt_id, due_ms, tries, created_ms) \
                 SELECT 'deliver:' || id, 'deliver', session_id, id, due_ms, 1, created_ms FROM freed \
                 ON CONFLICT (key) DO NOTHING) \
                 SELECT COUNT(*) FROM freed"
            )
        };
    }
    let moved: i64 = match which {
        Adopt::Lapsed(at) => {
            sqlx::query_scalar(adopt!("claim_lease_ms <= $1"))
                .bind(at)
                .fetch_one(pool)
                .await?
        }
        Adopt::Owner(owner) => {
            sqlx::query_scalar(adopt!("claim_owner = $1"))
                .bind(owner)
                .fetch_one(pool)
                .await?
        }
    };
    Ok(moved as u64)
}

pub(super) async fn ensure_jobs(pool: &PgPool, jobs: &[NewJob], now_ms: i64) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    for j in jobs {
        insert_job(&mut tx, j, now_ms).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Locks the attempt, then its session (the order every call here takes them in), decides
/// and moves the attempt to `sending` in the same transaction.
pub(super) async fn start_attempt(
    pool: &PgPool,
    attempt_id: i64,
    now_ms: i64,
) -> StoreResult<StartAttempt> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(concat!(
        "SELECT ",
        attempt_cols!(),
        " FROM attempts WHERE id = $1 FOR NO KEY UPDATE"
    ))
    .bind(attempt_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(StartAttempt::Settled);
    };
    let attempt = attempt_from(&row)?;
    let Some(session) = lock_session(&mut tx, &attempt.session_id).await? else {
        return Ok(StartAttempt::Settled);
    };
    match attempt.gateway_state.as_str() {
        gateway::CREATE | gateway::PENDING => {
            if session.status != SessionStatus::Pending || now_ms >= session.expires_ms {
                return Ok(StartAttempt::Closed { attempt });
            }
            let update = AttemptUpdate {
                gateway_state: Some(gateway::SENDING.into()),
                report_state: Some(report::PENDING.into()),
                send_ms: Some(now_ms),
                ..AttemptUpdate::default()
            };
            let attempt = guarded_update(&mut tx, attempt_id, AttemptGuard::Any, &update)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("attempt {attempt_id} vanished")))?;
            tx.commit().await?;
            Ok(StartAttempt::Ready { attempt, session })
        }
        gateway::SENDING => Ok(StartAttempt::Interrupted { attempt, session }),
        _ => Ok(StartAttempt::Settled),
    }
}

/// Removes the flow job under its claim (which also locks it), then locks the session and
/// writes the node's attempt and its claimed deliver job if the session is still open.
pub(super) async fn fire_flow_step(pool: &PgPool, f: &FlowFire) -> StoreResult<FlowFired> {
    let JobId::Queued(flow_job) = f.job.id else {
        return Ok(FlowFired::Lost);
    };
    let mut tx = pool.begin().await?;
    let removed = sqlx::query("DELETE FROM jobs WHERE id = $1 AND owner = $2 AND tries = $3")
        .bind(flow_job)
        .bind(&f.job.owner)
        .bind(f.job.tries)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed == 0 {
        return Ok(FlowFired::Lost);
    }
    let session = match lock_session(&mut tx, &f.session_id).await? {
        Some(s) if s.status == SessionStatus::Pending && f.now_ms < s.expires_ms => s,
        _ => {
            tx.commit().await?;
            return Ok(FlowFired::Closed);
        }
    };
    let Some(code_sealed) = session.code_enc.clone() else {
        tx.commit().await?;
        return Ok(FlowFired::Closed);
    };
    let (attempt_id, job) = insert_attempt(
        &mut tx,
        &session.id,
        &f.verification_id,
        session.tenant_id,
        &f.attempt,
        Some(&f.claim),
        f.now_ms,
    )
    .await?;
    if f.attempt.sending.is_some() {
        mark_submitted(&mut tx, &session.id).await?;
    }
    let job =
        job.ok_or_else(|| StoreError::Corrupt("a claimed attempt without its claim".into()))?;
    tx.commit().await?;
    Ok(FlowFired::Created {
        attempt_id,
        job,
        code_sealed,
    })
}

pub(super) async fn session_with_attempts(
    pool: &PgPool,
    session_id: &str,
) -> StoreResult<Option<(Session, Vec<Attempt>)>> {
    let mut tx = snapshot(pool).await?;
    let session = sqlx::query(concat!(
        "SELECT ",
        session_cols!(""),
        " FROM sessions WHERE id = $1"
    ))
    .bind(session_id)
    .fetch_optional(&mut *tx)
    .await?
    .map(|r| session_at(&r, 0))
    .transpose()?;
    let result = match session {
        Some(s) => Some((s, load_attempts(&mut tx, session_id).await?)),
        None => None,
    };
    tx.commit().await?;
    Ok(result)
}

pub(super) async fn attempt_by_message(
    pool: &PgPool,
    route: &str,
    message_id: &str,
) -> StoreResult<Option<Attempt>> {
    sqlx::query(concat!(
        "SELECT ",
        attempt_cols!(),
        " FROM attempts WHERE route = $1 AND provider_message_id = $2 \
         AND provider_message_id IS NOT NULL ORDER BY id DESC LIMIT 1"
    ))
    .bind(route)
    .bind(message_id)
    .fetch_optional(pool)
    .await?
    .map(|r| attempt_from(&r))
    .transpose()
}

pub(super) async fn attempt_on_route(
    pool: &PgPool,
    route: &str,
    attempt_id: i64,
) -> StoreResult<Option<Attempt>> {
    sqlx::query(concat!(
        "SELECT ",
        attempt_cols!(),
        " FROM attempts WHERE id = $1 AND route = $2"
    ))
    .bind(attempt_id)
    .bind(route)
    .fetch_optional(pool)
    .await?
    .map(|r| attempt_from(&r))
    .transpose()
}

/// Locks the attempt's receipt-timeout job first (jobs before attempts, as `finish_job` of
/// that very job takes them), then applies the receipt under its guard and drops the job.
pub(super) async fn apply_receipt(
    pool: &PgPool,
    attempt_id: i64,
    guard: AttemptGuard,
    update: &AttemptUpdate,
) -> StoreResult<bool> {
    let key = format!("receipt:{attempt_id}");
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT id FROM jobs WHERE key = $1 FOR UPDATE")
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?;
    let applied = guarded_update(&mut tx, attempt_id, guard, update)
        .await?
        .is_some();
    if applied {
        sqlx::query("DELETE FROM jobs WHERE key = $1")
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(applied)
}

pub(super) async fn pending_receipts(
    pool: &PgPool,
    route: &str,
    limit: i64,
) -> StoreResult<Vec<(i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, provider_message_id FROM attempts WHERE route = $1 AND report_state = 'pending' \
         AND provider_message_id IS NOT NULL ORDER BY id LIMIT $2",
    )
    .bind(route)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub(super) async fn job_stats(pool: &PgPool, now_ms: i64) -> StoreResult<JobStats> {
    // One statement: one snapshot.
    type Counts = (i64, i64, Option<i64>, i64, i64, Option<i64>);
    let (total, due, oldest_due_ms, in_flight, lapsed, oldest_lapsed): Counts = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM jobs), \
         (SELECT COUNT(*) FROM jobs WHERE due_ms <= $1 AND (lease_ms IS NULL OR lease_ms <= $1)), \
         (SELECT MIN(due_ms) FROM jobs WHERE due_ms <= $1 AND (lease_ms IS NULL OR lease_ms <= $1)), \
         COUNT(*), COUNT(*) FILTER (WHERE claim_lease_ms <= $1), \
         MIN(COALESCE(send_ms, created_ms)) FILTER (WHERE claim_lease_ms <= $1) \
         FROM attempts WHERE claim_lease_ms IS NOT NULL",
    )
    .bind(now_ms)
    .fetch_one(pool)
    .await?;
    Ok(JobStats {
        total: total + in_flight,
        in_flight,
        due: due + lapsed,
        oldest_due_ms: oldest_due_ms.into_iter().chain(oldest_lapsed).min(),
    })
}

pub(super) async fn next_due_ms(pool: &PgPool) -> StoreResult<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT due_ms FROM jobs WHERE owner IS NULL ORDER BY due_ms LIMIT 1")
            .fetch_optional(pool)
            .await?,
    )
}

pub(super) async fn release_claims(pool: &PgPool, owner: &str) -> StoreResult<u64> {
    let held_on_attempts = adopt_attempt_claims(pool, Adopt::Owner(owner)).await?;
    Ok(
        sqlx::query("UPDATE jobs SET owner = NULL, lease_ms = NULL WHERE owner = $1")
            .bind(owner)
            .execute(pool)
            .await?
            .rows_affected()
            + held_on_attempts,
    )
}

/// Frees only the claims whose lease has lapsed (`lease_ms <= now_ms`, or no lease at all):
/// exactly those `claim_jobs` would take over anyway. Unlike SQLite, where one process serves
/// a database and every claim found at start-up is an orphan, other nodes may be running
/// against this database, and the claims they hold under a live lease are theirs: a starting
/// node leaves them alone. A claim of a node that died is freed here once its lease lapses
/// (or taken over by `claim_jobs` then). Returns how many claims were freed.
pub(super) async fn recover_claims(pool: &PgPool, now_ms: i64) -> StoreResult<u64> {
    let held_on_attempts = adopt_attempt_claims(pool, Adopt::Lapsed(now_ms)).await?;
    Ok(held_on_attempts
        + sqlx::query(
            "UPDATE jobs SET owner = NULL, lease_ms = NULL \
         WHERE owner IS NOT NULL AND (lease_ms IS NULL OR lease_ms <= $1)",
        )
        .bind(now_ms)
        .execute(pool)
        .await?
        .rows_affected())
}

pub(super) async fn list_jobs(pool: &PgPool, limit: i64) -> StoreResult<Vec<Job>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        job_cols!(),
        " FROM jobs ORDER BY due_ms, id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    all(rows, job_from)
}
