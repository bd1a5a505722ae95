//! The embedded SQLite store: one file, WAL, one writer connection and a pool of readers.
//!
//! Every write runs on the single writer connection, so each write transaction is serialized
//! with every other: the period-limit check and its count, orderId uniqueness and verify are
//! atomic without further locking. Readers never block the writer in WAL mode.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::*;
use crate::crypto::ct_eq_str;
use crate::domain::session::{SessionStatus, decide_verify};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await?;
        let reader = if crate::config::sqlite_path(url).is_none() {
            // An in-memory database exists once per connection: share the writer.
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.read_only(true))
                .await?
        };
        Ok(Self { writer, reader })
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin().await?)
    }
}

/// Maps a unique-constraint violation to [`StoreError::Conflict`].
fn conflict(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_string())
        }
        _ => StoreError::Db(e),
    }
}

fn json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| unreachable!("plain data serializes"))
}

fn tenant_from(r: &SqliteRow) -> StoreResult<Tenant> {
    let allow: String = r.try_get("allow_ips")?;
    Ok(Tenant {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        api_key: r.try_get("api_key")?,
        secret_enc: r.try_get("secret_enc")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        allow_ips: allow
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        created_ms: r.try_get("created_ms")?,
    })
}

fn app_from(r: &SqliteRow) -> StoreResult<App> {
    Ok(App {
        app_id: r.try_get("app_id")?,
        tenant_id: r.try_get("tenant_id")?,
        name: r.try_get("name")?,
        code_expiry: r.try_get("code_expiry")?,
        total_limit: json(&r.try_get::<String, _>("total_limit")?, "apps.total_limit")?,
        phone_limit: json(&r.try_get::<String, _>("phone_limit")?, "apps.phone_limit")?,
        created_ms: r.try_get("created_ms")?,
    })
}

fn template_from(r: &SqliteRow) -> StoreResult<Template> {
    Ok(Template {
        template_id: r.try_get("template_id")?,
        tenant_id: r.try_get("tenant_id")?,
        app_id: r.try_get("app_id")?,
        name: r.try_get("name")?,
        text: r.try_get("text")?,
        code_type: r.try_get("code_type")?,
        code_length: r.try_get("code_length")?,
        speech_rate: r.try_get("speech_rate")?,
        language: r.try_get("language")?,
        max_duration: r.try_get("max_duration")?,
        repeat_cnt: r.try_get("repeat_cnt")?,
        sender_id: r.try_get("sender_id")?,
        created_ms: r.try_get("created_ms")?,
    })
}

fn flow_from(r: &SqliteRow) -> StoreResult<Flow> {
    Ok(Flow {
        flow_id: r.try_get("flow_id")?,
        tenant_id: r.try_get("tenant_id")?,
        name: r.try_get("name")?,
        nodes: json(&r.try_get::<String, _>("nodes")?, "flows.nodes")?,
        created_ms: r.try_get("created_ms")?,
    })
}

fn session_from(r: &SqliteRow) -> StoreResult<Session> {
    let status: String = r.try_get("status")?;
    Ok(Session {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        app_id: r.try_get("app_id")?,
        template_id: r.try_get("template_id")?,
        flow_id: r.try_get("flow_id")?,
        phone: r.try_get("phone")?,
        region: r.try_get("region")?,
        channel: r.try_get("channel")?,
        code_hash: r.try_get("code_hash")?,
        code_enc: r.try_get("code_enc")?,
        code_type: r.try_get("code_type")?,
        code_length: r.try_get("code_length")?,
        case_insensitive: r.try_get::<i64, _>("case_insensitive")? != 0,
        status: SessionStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("sessions.status {status:?}")))?,
        wrong_attempts: r.try_get("wrong_attempts")?,
        submitted: r.try_get::<i64, _>("submitted")? != 0,
        expires_ms: r.try_get("expires_ms")?,
        created_ms: r.try_get("created_ms")?,
        verified_ms: r.try_get("verified_ms")?,
        order_id: r.try_get("order_id")?,
    })
}

fn verification_from(r: &SqliteRow) -> StoreResult<Verification> {
    Ok(Verification {
        verification_id: r.try_get("verification_id")?,
        session_id: r.try_get("session_id")?,
        tenant_id: r.try_get("tenant_id")?,
        channel: r.try_get("channel")?,
        kind: r.try_get("kind")?,
        created_ms: r.try_get("created_ms")?,
    })
}

fn attempt_from(r: &SqliteRow) -> StoreResult<Attempt> {
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
    })
}

/// Counts sends in the window and, when under every limit, records this one.
async fn check_and_count(
    tx: &mut Transaction<'static, Sqlite>,
    s: &NewSend,
) -> StoreResult<Option<SendOutcome>> {
    if let Some(l) = s.total_limit {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM send_log WHERE app_id = ? AND at_ms > ?")
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
            "SELECT COUNT(*) FROM send_log WHERE app_id = ? AND phone = ? AND at_ms > ?",
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
    sqlx::query("INSERT INTO send_log (app_id, phone, at_ms) VALUES (?, ?, ?)")
        .bind(&s.app_id)
        .bind(&s.phone)
        .bind(s.now_ms)
        .execute(&mut **tx)
        .await?;
    Ok(None)
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn insert_tenant(&self, t: &NewTenant) -> StoreResult<Tenant> {
        let row = sqlx::query(
            "INSERT INTO tenants (name, api_key, secret_enc, created_ms) VALUES (?, ?, ?, ?) RETURNING *",
        )
        .bind(&t.name)
        .bind(&t.api_key)
        .bind(&t.secret_enc)
        .bind(t.created_ms)
        .fetch_one(&self.writer)
        .await
        .map_err(conflict)?;
        tenant_from(&row)
    }

    async fn tenant_by_key(&self, api_key: &str) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query("SELECT * FROM tenants WHERE api_key = ?")
            .bind(api_key)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(tenant_from).transpose()
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let rows = sqlx::query("SELECT * FROM tenants ORDER BY id")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(tenant_from).collect()
    }

    async fn count_tenants(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
            .fetch_one(&self.writer)
            .await?)
    }

    async fn set_tenant_enabled(&self, api_key: &str, enabled: bool) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE tenants SET enabled = ? WHERE api_key = ?")
            .bind(enabled as i64)
            .bind(api_key)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_tenant_allow_ips(&self, api_key: &str, allow: &[String]) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE tenants SET allow_ips = ? WHERE api_key = ?")
            .bind(allow.join(","))
            .bind(api_key)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn insert_app(&self, a: &App) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO apps (app_id, tenant_id, name, code_expiry, total_limit, phone_limit, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.app_id)
        .bind(a.tenant_id)
        .bind(&a.name)
        .bind(a.code_expiry)
        .bind(to_json(&a.total_limit))
        .bind(to_json(&a.phone_limit))
        .bind(a.created_ms)
        .execute(&self.writer)
        .await
        .map_err(conflict)?;
        Ok(())
    }

    async fn update_app(&self, a: &App) -> StoreResult<()> {
        sqlx::query("UPDATE apps SET name = ?, code_expiry = ?, total_limit = ?, phone_limit = ? WHERE app_id = ?")
            .bind(&a.name)
            .bind(a.code_expiry)
            .bind(to_json(&a.total_limit))
            .bind(to_json(&a.phone_limit))
            .bind(&a.app_id)
            .execute(&self.writer)
            .await
            .map_err(conflict)?;
        Ok(())
    }

    async fn get_app(&self, app_id: &str) -> StoreResult<Option<App>> {
        let row = sqlx::query("SELECT * FROM apps WHERE app_id = ?")
            .bind(app_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(app_from).transpose()
    }

    async fn insert_template(&self, t: &Template) -> StoreResult<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO templates (tenant_id, app_id, name, text, code_type, code_length, speech_rate, language, \
             max_duration, repeat_cnt, sender_id, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             RETURNING template_id",
        )
        .bind(t.tenant_id)
        .bind(&t.app_id)
        .bind(&t.name)
        .bind(&t.text)
        .bind(t.code_type)
        .bind(t.code_length)
        .bind(t.speech_rate)
        .bind(&t.language)
        .bind(t.max_duration)
        .bind(t.repeat_cnt)
        .bind(&t.sender_id)
        .bind(t.created_ms)
        .fetch_one(&self.writer)
        .await
        .map_err(conflict)?;
        Ok(id)
    }

    async fn update_template(&self, t: &Template) -> StoreResult<()> {
        sqlx::query(
            "UPDATE templates SET name = ?, text = ?, code_type = ?, code_length = ?, speech_rate = ?, language = ?, \
             max_duration = ?, repeat_cnt = ?, sender_id = ? WHERE template_id = ?",
        )
        .bind(&t.name)
        .bind(&t.text)
        .bind(t.code_type)
        .bind(t.code_length)
        .bind(t.speech_rate)
        .bind(&t.language)
        .bind(t.max_duration)
        .bind(t.repeat_cnt)
        .bind(&t.sender_id)
        .bind(t.template_id)
        .execute(&self.writer)
        .await
        .map_err(conflict)?;
        Ok(())
    }

    async fn get_template(&self, template_id: i64) -> StoreResult<Option<Template>> {
        let row = sqlx::query("SELECT * FROM templates WHERE template_id = ?")
            .bind(template_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(template_from).transpose()
    }

    async fn list_templates(&self, tenant_id: i64) -> StoreResult<Vec<Template>> {
        let rows = sqlx::query("SELECT * FROM templates WHERE tenant_id = ? ORDER BY template_id")
            .bind(tenant_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(template_from).collect()
    }

    async fn insert_flow(&self, f: &Flow) -> StoreResult<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO flows (tenant_id, name, nodes, created_ms) VALUES (?, ?, ?, ?) RETURNING flow_id",
        )
        .bind(f.tenant_id)
        .bind(&f.name)
        .bind(to_json(&f.nodes))
        .bind(f.created_ms)
        .fetch_one(&self.writer)
        .await
        .map_err(conflict)?;
        Ok(id)
    }

    async fn update_flow(&self, f: &Flow) -> StoreResult<()> {
        sqlx::query("UPDATE flows SET name = ?, nodes = ? WHERE flow_id = ?")
            .bind(&f.name)
            .bind(to_json(&f.nodes))
            .bind(f.flow_id)
            .execute(&self.writer)
            .await
            .map_err(conflict)?;
        Ok(())
    }

    async fn get_flow(&self, flow_id: i64) -> StoreResult<Option<Flow>> {
        let row = sqlx::query("SELECT * FROM flows WHERE flow_id = ?")
            .bind(flow_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(flow_from).transpose()
    }

    async fn list_flows(&self, tenant_id: i64) -> StoreResult<Vec<Flow>> {
        let rows = sqlx::query("SELECT * FROM flows WHERE tenant_id = ? ORDER BY flow_id")
            .bind(tenant_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(flow_from).collect()
    }

    async fn create_send(&self, s: &NewSend) -> StoreResult<SendOutcome> {
        let mut tx = self.begin().await?;
        if let Some(order_id) = &s.order_id {
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT verification_id FROM orders WHERE tenant_id = ? AND order_id = ?",
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
                let row = sqlx::query("SELECT * FROM sessions WHERE id = ?")
                    .bind(session_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(session) = row.as_ref().map(session_from).transpose()? else {
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
        if let Some(outcome) = check_and_count(&mut tx, s).await? {
            return Ok(outcome);
        }
        match &s.target {
            SendTarget::New(n) => {
                sqlx::query(
                    "INSERT INTO sessions (id, tenant_id, app_id, template_id, flow_id, phone, region, channel, \
                     code_hash, code_enc, code_type, code_length, case_insensitive, status, expires_ms, created_ms, order_id) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                )
                .bind(&session_id)
                .bind(s.tenant_id)
                .bind(&n.app_id)
                .bind(n.template_id)
                .bind(n.flow_id)
                .bind(&n.phone)
                .bind(&n.region)
                .bind(&s.attempt.channel)
                .bind(&n.code.hash)
                .bind(&n.code.sealed)
                .bind(n.code_type)
                .bind(n.code_length)
                .bind(n.case_insensitive as i64)
                .bind(n.code.expires_ms)
                .bind(s.now_ms)
                .bind(&s.order_id)
                .execute(&mut *tx)
                .await
                .map_err(conflict)?;
            }
            SendTarget::Resend { fresh, .. } => {
                if refresh {
                    sqlx::query("UPDATE sessions SET code_hash = ?, code_enc = ?, expires_ms = ? WHERE id = ?")
                        .bind(&fresh.hash)
                        .bind(&fresh.sealed)
                        .bind(fresh.expires_ms)
                        .bind(&session_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        sqlx::query(
            "INSERT INTO verifications (verification_id, session_id, tenant_id, channel, kind, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.verification_id)
        .bind(&session_id)
        .bind(s.tenant_id)
        .bind(&s.attempt.channel)
        .bind(s.kind)
        .bind(s.now_ms)
        .execute(&mut *tx)
        .await
        .map_err(conflict)?;
        if let Some(order_id) = &s.order_id {
            sqlx::query(
                "INSERT INTO orders (tenant_id, order_id, verification_id) VALUES (?, ?, ?)",
            )
            .bind(s.tenant_id)
            .bind(order_id)
            .bind(&s.verification_id)
            .execute(&mut *tx)
            .await
            .map_err(conflict)?;
        }
        let attempt_id: i64 = sqlx::query_scalar(
            "INSERT INTO attempts (session_id, verification_id, tenant_id, channel, route, provider, sender, \
             gateway_state, report_state, mcc, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 'unknown', ?, ?) \
             RETURNING id",
        )
        .bind(&session_id)
        .bind(&s.verification_id)
        .bind(s.tenant_id)
        .bind(&s.attempt.channel)
        .bind(&s.attempt.route)
        .bind(&s.attempt.provider)
        .bind(&s.attempt.sender)
        .bind(s.attempt.mcc)
        .bind(s.now_ms)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SendOutcome::Created {
            session_id,
            attempt_id,
            code_sealed,
        })
    }

    async fn get_verification(&self, verification_id: &str) -> StoreResult<Option<Verification>> {
        let row = sqlx::query("SELECT * FROM verifications WHERE verification_id = ?")
            .bind(verification_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(verification_from).transpose()
    }

    async fn get_session(&self, session_id: &str) -> StoreResult<Option<Session>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id = ?")
            .bind(session_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(session_from).transpose()
    }

    async fn session_by_order(
        &self,
        tenant_id: i64,
        order_id: &str,
    ) -> StoreResult<Option<Session>> {
        let row = sqlx::query(
            "SELECT s.* FROM orders o JOIN verifications v ON v.verification_id = o.verification_id \
             JOIN sessions s ON s.id = v.session_id WHERE o.tenant_id = ? AND o.order_id = ?",
        )
        .bind(tenant_id)
        .bind(order_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(session_from).transpose()
    }

    async fn attempts_for_session(&self, session_id: &str) -> StoreResult<Vec<Attempt>> {
        let rows = sqlx::query("SELECT * FROM attempts WHERE session_id = ? ORDER BY id")
            .bind(session_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(attempt_from).collect()
    }

    async fn update_attempt(&self, id: i64, u: &AttemptUpdate) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let session_id: Option<String> = sqlx::query_scalar(
            "UPDATE attempts SET gateway_state = COALESCE(?, gateway_state), report_state = COALESCE(?, report_state), \
             reason = COALESCE(?, reason), provider_message_id = COALESCE(?, provider_message_id), \
             encoding = COALESCE(?, encoding), segments = COALESCE(?, segments), mnc = COALESCE(?, mnc), \
             price_micros = COALESCE(?, price_micros), rate_micros = COALESCE(?, rate_micros), \
             bill_period = COALESCE(?, bill_period), call_duration = COALESCE(?, call_duration), \
             charged_duration = COALESCE(?, charged_duration), send_ms = COALESCE(?, send_ms), \
             done_ms = COALESCE(?, done_ms) WHERE id = ? RETURNING session_id",
        )
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
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let handed_over = matches!(
            u.gateway_state.as_deref(),
            Some(gateway::SENDING | gateway::SUCCESS | gateway::FAIL)
        );
        if let (Some(session_id), true) = (session_id, handed_over) {
            sqlx::query("UPDATE sessions SET submitted = 1 WHERE id = ? AND submitted = 0")
                .bind(session_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn verify(
        &self,
        session_id: &str,
        candidate_hash: &str,
        now_ms: i64,
    ) -> StoreResult<Option<(VerifyOutcome, Session)>> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT * FROM sessions WHERE id = ?")
            .bind(session_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(mut session) = row.as_ref().map(session_from).transpose()? else {
            return Ok(None);
        };
        let matches = ct_eq_str(&session.code_hash, candidate_hash);
        let outcome = decide_verify(&session.state(), now_ms, matches);
        match outcome {
            VerifyOutcome::Matched => {
                // Consumed: the sealed code is no longer needed by anything.
                sqlx::query("UPDATE sessions SET status = 'verified', verified_ms = ?, code_enc = NULL WHERE id = ?")
                    .bind(now_ms)
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await?;
                session.status = SessionStatus::Verified;
                session.verified_ms = Some(now_ms);
                session.code_enc = None;
            }
            VerifyOutcome::Wrong { locked_now } => {
                let status = if locked_now { "locked" } else { "pending" };
                sqlx::query(
                    "UPDATE sessions SET wrong_attempts = wrong_attempts + 1, status = ?, \
                     code_enc = CASE WHEN ? = 'locked' THEN NULL ELSE code_enc END WHERE id = ?",
                )
                .bind(status)
                .bind(status)
                .bind(session_id)
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
        Ok(Some((outcome, session)))
    }

    async fn upsert_backfill_rate(&self, r: &BackfillRate) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO backfill_rates (tenant_id, app_id, mcc, backfill_number, backfill_base, rate_bp, callback_ms, received_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (app_id, mcc) DO UPDATE SET \
             backfill_number = excluded.backfill_number, backfill_base = excluded.backfill_base, \
             rate_bp = excluded.rate_bp, callback_ms = excluded.callback_ms, received_ms = excluded.received_ms",
        )
        .bind(r.tenant_id)
        .bind(&r.app_id)
        .bind(r.mcc)
        .bind(r.backfill_number)
        .bind(r.backfill_base)
        .bind(r.rate_bp)
        .bind(r.callback_ms)
        .bind(r.received_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn record_postback(&self, p: &Postback) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO postbacks (verification_id, tenant_id, app_id, number, backfill_ms, received_ms) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (verification_id) DO UPDATE SET \
             number = excluded.number, backfill_ms = excluded.backfill_ms, received_ms = excluded.received_ms",
        )
        .bind(&p.verification_id)
        .bind(p.tenant_id)
        .bind(&p.app_id)
        .bind(&p.number)
        .bind(p.backfill_ms)
        .bind(p.received_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn insert_outbox(&self, e: &OutboxEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO console_outbox (at_ms, channel, to_number, sender, text, verification_id) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(e.at_ms)
        .bind(&e.channel)
        .bind(&e.to)
        .bind(&e.sender)
        .bind(&e.text)
        .bind(&e.verification_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn list_outbox(&self, limit: i64) -> StoreResult<Vec<OutboxEntry>> {
        let rows = sqlx::query("SELECT * FROM console_outbox ORDER BY id DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxEntry {
                    id: r.try_get("id")?,
                    at_ms: r.try_get("at_ms")?,
                    channel: r.try_get("channel")?,
                    to: r.try_get("to_number")?,
                    sender: r.try_get("sender")?,
                    text: r.try_get("text")?,
                    verification_id: r.try_get("verification_id")?,
                })
            })
            .collect()
    }
}
