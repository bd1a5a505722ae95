//! The embedded SQLite store: one file, WAL, one writer thread and a pool of readers.
//!
//! All writes run on a dedicated writer thread that owns the only writing connection, so every
//! write is serialized with every other: the period-limit check and its count, orderId
//! uniqueness and verify are atomic without further locking. The writer commits in groups:
//! it takes every job waiting in its queue, runs them in one transaction, commits once, and
//! only then answers each caller (a failed commit fails every job of the group; a failed job
//! fails alone: see [`writer_loop`]). One store call costs one hand-off to the writer, not one
//! per statement.
//! Readers never block the writer in WAL mode.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use tokio::sync::oneshot;

use super::*;
use crate::crypto::ct_eq_str;
use crate::domain::session::{SessionStatus, decide_verify};

/// The embedded migrations, in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_jobs.sql")),
    (3, include_str!("../../migrations/sqlite/0003_sgate.sql")),
    (
        4,
        include_str!("../../migrations/sqlite/0004_delivery_indexes.sql"),
    ),
];

/// Most jobs committed together.
const MAX_GROUP: usize = 128;

/// A unit of work for the writer: `run` inside the group's transaction (see [`writer_loop`]),
/// `finish` after the commit.
trait WriteJob: Send {
    /// Runs the job (again, if its group is run a second time); `false` when it failed.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller; `commit_error` when the group's commit failed.
    fn finish(self: Box<Self>, commit_error: Option<&str>);
}

struct WriteOp<T, F> {
    f: F,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> WriteJob for WriteOp<T, F>
where
    T: Send,
    F: Fn(&Connection) -> StoreResult<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.f)(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit_error: Option<&str>) {
        let result = match (commit_error, self.result) {
            (Some(e), Some(Ok(_))) => Err(StoreError::Db(format!("commit failed: {e}"))),
            (_, Some(r)) => r,
            (_, None) => Err(StoreError::Db("write job did not run".into())),
        };
        let _ = self.reply.send(result);
    }
}

type BoxedJob = Box<dyn WriteJob>;

/// Runs one transaction-control statement, prepared once per connection.
fn control(conn: &Connection, sql: &'static str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs every job of `group` in the open transaction, each in its own savepoint when
/// `isolated` (a failing job then rolls back alone). Returns whether every job succeeded.
fn run_group(conn: &Connection, group: &mut [BoxedJob], isolated: bool) -> bool {
    let mut all_ok = true;
    for job in group.iter_mut() {
        if isolated {
            let _ = control(conn, "SAVEPOINT job");
        }
        // A job that panics fails alone (its caller gets an error); the writer carries on.
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(conn)))
            .unwrap_or(false);
        if isolated {
            if !ok {
                let _ = control(conn, "ROLLBACK TO job");
            }
            let _ = control(conn, "RELEASE job");
        } else if !ok {
            // The group's other work is undone with it; the caller runs it again isolated.
            return false;
        }
        all_ok &= ok;
    }
    all_ok
}

/// The writer: takes every job waiting (up to [`MAX_GROUP`]), runs them in one transaction,
/// commits once and answers each caller after the commit.
///
/// The jobs run straight in the transaction first: almost every group succeeds whole, and a
/// savepoint per job would cost two statements and a copy of every page the job touches into
/// its sub-journal. When a job fails, the group is rolled back and run again with a savepoint
/// per job, so the failing job fails alone and the others commit. (Jobs are `Fn`: running one
/// twice does the same work.)
fn writer_loop(conn: Connection, jobs: mpsc::Receiver<BoxedJob>) {
    // Answers every job of a group that could not start its transaction.
    let fail = |group: Vec<BoxedJob>, e: rusqlite::Error| {
        let msg = e.to_string();
        for job in group {
            job.finish(Some(&msg));
        }
    };
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = control(&conn, "BEGIN IMMEDIATE") {
            fail(group, e);
            continue;
        }
        if !run_group(&conn, &mut group, false) {
            let _ = conn.execute_batch("ROLLBACK");
            if group.len() > 1 {
                if let Err(e) = control(&conn, "BEGIN IMMEDIATE") {
                    fail(group, e);
                    continue;
                }
                run_group(&conn, &mut group, true);
            } else {
                // A job alone: its failure is its answer, and nothing is left to commit.
                for job in group {
                    job.finish(None);
                }
                continue;
            }
        }
        let commit_error = control(&conn, "COMMIT").err().map(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            e.to_string()
        });
        for job in group {
            job.finish(commit_error.as_deref());
        }
    }
}

/// WAL pages past which the checkpointer restarts the log instead of only copying it back.
const CHECKPOINT_RESTART_PAGES: i64 = 4000;

/// How often the writer or the checkpointer, finding the database locked, tries again.
const BUSY_POLL: Duration = Duration::from_micros(100);

/// Busy handlers retry every [`BUSY_POLL`] for about `limit` in all. SQLite's own
/// (`busy_timeout`) sleeps 1, 2, 5, 10, 15… ms between tries, so a writer held up by a
/// checkpoint restarting the WAL (a few milliseconds: its fsync) slept on for up to 33 ms after
/// the lock was free, with every caller queued behind it.
fn busy_retry(tries: i32, limit: Duration) -> bool {
    if BUSY_POLL * tries.max(0).unsigned_abs() >= limit {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

fn writer_busy(tries: i32) -> bool {
    busy_retry(tries, Duration::from_secs(10))
}

fn checkpointer_busy(tries: i32) -> bool {
    busy_retry(tries, Duration::from_secs(1))
}

/// Checkpoints the WAL from its own connection every half second, so the writer never pays
/// for it (the copy into the database and its fsync). `PASSIVE` never blocks the writer or
/// readers. The thread ends when the store is dropped.
fn checkpoint_loop(path: PathBuf, stop: mpsc::Receiver<()>) {
    let Ok(conn) = Connection::open(&path) else {
        return;
    };
    let _ = conn.busy_handler(Some(checkpointer_busy));
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(Duration::from_millis(500)) {
        // (busy, pages in the WAL, pages checkpointed)
        let state: rusqlite::Result<(i64, i64, i64)> =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            });
        if let Ok((_, wal, _)) = state
            && wal > CHECKPOINT_RESTART_PAGES
        {
            // Under constant load the WAL only grows: restart it once readers allow.
            let _ = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
        }
    }
}

/// Idle read-only connections, opened on demand.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn take(&self) -> StoreResult<Connection> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(c) => Ok(c),
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(Duration::from_secs(10))?;
                // Pages come from the mapped file instead of a read() per cache miss.
                conn.execute_batch("PRAGMA mmap_size = 268435456;")?;
                conn.set_prepared_statement_cache_capacity(64);
                Ok(conn)
            }
        }
    }

    fn put(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < 16 {
            idle.push(conn);
        }
    }
}

/// Apps, templates and flows, kept in memory. They change only through this store (one server
/// per database file, and no CLI command edits them), so the store's own updates are the only
/// invalidation needed. An entry is valid while the generation it was read under is current;
/// every update moves the generation on (updates are rare; sends read these on every call).
#[derive(Default)]
struct CatalogCache {
    generation: std::sync::atomic::AtomicU64,
    apps: Mutex<HashMap<String, (u64, App)>>,
    templates: Mutex<HashMap<i64, (u64, Template)>>,
    flows: Mutex<HashMap<i64, (u64, Flow)>>,
}

/// Entries one cache map holds at most before it starts over.
const CATALOG_CACHE_MAX: usize = 10_000;

impl CatalogCache {
    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Called after an update commits.
    fn invalidate(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn get<K: std::hash::Hash + Eq, V: Clone>(
        &self,
        map: &Mutex<HashMap<K, (u64, V)>>,
        key: &K,
    ) -> Option<V> {
        let now = self.generation();
        let map = map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(g, _)| *g == now)
            .map(|(_, v)| v.clone())
    }

    /// Keeps `value`, read under generation `read_at`.
    fn put<K: std::hash::Hash + Eq, V>(
        &self,
        map: &Mutex<HashMap<K, (u64, V)>>,
        read_at: u64,
        key: K,
        value: V,
    ) {
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CATALOG_CACHE_MAX {
            map.clear();
        }
        map.insert(key, (read_at, value));
    }
}

pub struct SqliteStore {
    catalog: Arc<CatalogCache>,
    jobs: mpsc::Sender<BoxedJob>,
    /// Dropping the store stops the checkpoint thread.
    _checkpointer: Option<mpsc::Sender<()>>,
    /// `None` for an in-memory database, whose reads go through the writer.
    readers: Option<Arc<Readers>>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, msg) = &e
            && (f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
        {
            return StoreError::Conflict(msg.clone().unwrap_or_else(|| e.to_string()));
        }
        StoreError::Db(e.to_string())
    }
}

fn open_writer(path: Option<&PathBuf>) -> StoreResult<Connection> {
    let conn = match path {
        Some(p) => Connection::open(p)?,
        None => Connection::open_in_memory()?,
    };
    conn.busy_handler(Some(writer_busy))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )?;
    // The writer serves the hot lookups and every verify: a 64 MiB page cache (the default is
    // 8 MiB) keeps the recent sessions' pages in memory as the database grows.
    conn.execute_batch("PRAGMA cache_size = -65536;")?;
    // Statement journals and sorts in memory, not in files under /var/tmp.
    conn.execute_batch("PRAGMA temp_store = MEMORY;")?;
    if path.is_some() {
        // The checkpoint thread does it (see `checkpoint_loop`).
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
    }
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://PATH` or `sqlite::memory:`).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::Db(format!("not a sqlite URL: {url}")));
        }
        let path = crate::config::sqlite_path(url);
        if let Some(dir) = path
            .as_ref()
            .and_then(|p| p.parent())
            .filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(StoreError::Db(format!(
                "directory {} does not exist",
                dir.display()
            )));
        }
        let writer = tokio::task::spawn_blocking({
            let path = path.clone();
            move || open_writer(path.as_ref())
        })
        .await
        .map_err(|e| StoreError::Db(e.to_string()))??;
        let (tx, rx) = mpsc::channel::<BoxedJob>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(writer, rx))
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        let checkpointer = match &path {
            Some(p) => {
                let (stop, stopped) = mpsc::channel();
                let p = p.clone();
                std::thread::Builder::new()
                    .name("sqlite-checkpoint".into())
                    .spawn(move || checkpoint_loop(p, stopped))
                    .map_err(|e| {
                        StoreError::Db(format!("cannot start the checkpoint thread: {e}"))
                    })?;
                Some(stop)
            }
            None => None,
        };
        Ok(Self {
            catalog: Arc::default(),
            jobs: tx,
            _checkpointer: checkpointer,
            readers: path.map(|path| {
                Arc::new(Readers {
                    path,
                    idle: Mutex::new(Vec::new()),
                })
            }),
        })
    }

    /// Runs `f` on the writer, inside the current group's transaction (`f` may run twice: see
    /// [`writer_loop`]).
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: BoxedJob = Box::new(WriteOp {
            f,
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Db("the writer thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Db("the writer thread dropped a job".into()))?
    }

    /// Runs a primary-key lookup inline, on the calling thread, with a pooled reader.
    ///
    /// An indexed point read in WAL mode takes microseconds and never waits for the writer,
    /// so handing it to another thread would cost more than the read. Anything that can
    /// return many rows goes through [`Self::read`] instead.
    async fn lookup<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let Some(readers) = &self.readers else {
            return self.write(f).await;
        };
        let conn = readers.take()?;
        let result = f(&conn);
        readers.put(conn);
        result
    }

    /// Runs `f` on a reader connection on a blocking thread.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let Some(readers) = self.readers.clone() else {
            return self.write(f).await;
        };
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = f(&conn);
            readers.put(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Db(format!("reader task failed: {e}")))?
    }
}

/// The tenant columns in the order [`tenant_from`] reads them.
macro_rules! tenant_cols {
    () => {
        "id, name, api_key, secret_enc, enabled, allow_ips, created_ms, kind"
    };
}

fn tenant_by_key_sql() -> &'static str {
    concat!(
        "SELECT ",
        tenant_cols!(),
        " FROM tenants WHERE api_key = ?1"
    )
}

fn tenants_sql() -> &'static str {
    concat!("SELECT ", tenant_cols!(), " FROM tenants ORDER BY id")
}

fn tenant_from(r: &Row) -> rusqlite::Result<Tenant> {
    let allow: String = r.get(5)?;
    Ok(Tenant {
        id: r.get(0)?,
        name: r.get(1)?,
        api_key: r.get(2)?,
        secret_enc: r.get(3)?,
        enabled: r.get::<_, i64>(4)? != 0,
        allow_ips: allow
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        created_ms: r.get(6)?,
        kind: r.get(7)?,
    })
}

/// A merchant row joined to its tenant: the tenant's columns, then the merchant's.
fn merchant_sql(filter: &str) -> String {
    format!(
        "SELECT t.id, t.name, t.api_key, t.secret_enc, t.enabled, t.allow_ips, t.created_ms, t.kind, \
         m.public_key, m.sandbox, m.app_id, m.products \
         FROM merchants m JOIN tenants t ON t.id = m.tenant_id {filter}"
    )
}

fn merchant_row(r: &Row) -> rusqlite::Result<(Merchant, String)> {
    Ok((
        Merchant {
            tenant: tenant_from(r)?,
            public_key: r.get(8)?,
            sandbox: r.get::<_, i64>(9)? != 0,
            app_id: r.get(10)?,
            products: Vec::new(),
        },
        r.get(11)?,
    ))
}

fn merchant_from((mut m, products): (Merchant, String)) -> StoreResult<Merchant> {
    m.products = json(&products, "merchants.products")?;
    Ok(m)
}

fn load_merchant(conn: &Connection, api_key: &str) -> StoreResult<Option<Merchant>> {
    conn.prepare_cached(&merchant_sql("WHERE t.api_key = ?1"))?
        .query_row([api_key], merchant_row)
        .optional()?
        .map(merchant_from)
        .transpose()
}

/// Inserts `app` for `tenant_id` (a new merchant's app gets its tenant id in the same
/// transaction).
fn insert_app_row(conn: &Connection, app: &App, tenant_id: i64) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO apps (app_id, tenant_id, name, code_expiry, total_limit, phone_limit, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        app.app_id,
        tenant_id,
        app.name,
        app.code_expiry,
        to_json(&app.total_limit),
        to_json(&app.phone_limit),
        app.created_ms
    ])?;
    Ok(())
}

fn insert_template_row(conn: &Connection, t: &Template) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO templates (tenant_id, app_id, name, text, code_type, code_length, speech_rate, \
             language, max_duration, repeat_cnt, sender_id, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING template_id",
        )?
        .query_row(
            params![
                t.tenant_id,
                t.app_id,
                t.name,
                t.text,
                t.code_type,
                t.code_length,
                t.speech_rate,
                t.language,
                t.max_duration,
                t.repeat_cnt,
                t.sender_id,
                t.created_ms
            ],
            |r| r.get(0),
        )?)
}

/// The merchant's products for `templates`' names, in order: a name that already has a
/// template under the app keeps it, a new one gets its template inserted.
fn products_for(
    conn: &Connection,
    tenant_id: i64,
    app_id: &str,
    templates: &[Template],
) -> StoreResult<Vec<Product>> {
    let mut products = Vec::with_capacity(templates.len());
    for t in templates {
        let existing: Option<i64> = conn
            .prepare_cached("SELECT template_id FROM templates WHERE app_id = ?1 AND name = ?2")?
            .query_row(params![app_id, t.name], |r| r.get(0))
            .optional()?;
        let template_id = match existing {
            Some(id) => id,
            None => {
                let mut t = t.clone();
                t.tenant_id = tenant_id;
                t.app_id = app_id.to_string();
                insert_template_row(conn, &t)?
            }
        };
        products.push(Product {
            name: t.name.clone(),
            template_id,
        });
    }
    Ok(products)
}

fn insert_merchant(conn: &Connection, m: &NewMerchant) -> StoreResult<Merchant> {
    let t = &m.tenant;
    let tenant_id: i64 = conn
        .prepare_cached(
            "INSERT INTO tenants (name, api_key, secret_enc, created_ms, kind) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        )?
        .query_row(
            params![t.name, t.api_key, t.secret_enc, t.created_ms, tenant_kind::SGATE],
            |r| r.get(0),
        )?;
    let a = &m.app;
    insert_app_row(conn, a, tenant_id)?;
    let products = products_for(conn, tenant_id, &a.app_id, &m.templates)?;
    conn.prepare_cached(
        "INSERT INTO merchants (tenant_id, public_key, sandbox, app_id, products) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        tenant_id,
        m.public_key,
        m.sandbox as i64,
        a.app_id,
        to_json(&products)
    ])?;
    load_merchant(conn, &t.api_key)?
        .ok_or_else(|| StoreError::Db("the new merchant could not be read back".into()))
}

fn update_merchant(
    conn: &Connection,
    api_key: &str,
    u: &MerchantUpdate,
) -> StoreResult<Option<Merchant>> {
    let Some(m) = load_merchant(conn, api_key)? else {
        return Ok(None);
    };
    let products = match &u.templates {
        Some(templates) => products_for(conn, m.tenant.id, &m.app_id, templates)?,
        None => m.products.clone(),
    };
    conn.prepare_cached(
        "UPDATE merchants SET public_key = ?1, sandbox = ?2, products = ?3 WHERE tenant_id = ?4",
    )?
    .execute(params![
        u.public_key.as_ref().unwrap_or(&m.public_key),
        u.sandbox.unwrap_or(m.sandbox) as i64,
        to_json(&products),
        m.tenant.id
    ])?;
    load_merchant(conn, api_key)
}

fn remember_nonce(
    conn: &Connection,
    tenant_id: i64,
    nonce: &str,
    now_ms: i64,
    expires_ms: i64,
) -> StoreResult<bool> {
    // A bounded sweep keeps the table to the live window without a job of its own.
    conn.prepare_cached(
        "DELETE FROM request_nonces WHERE (tenant_id, nonce) IN \
         (SELECT tenant_id, nonce FROM request_nonces WHERE expires_ms <= ?1 LIMIT 32)",
    )?
    .execute([now_ms])?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO request_nonces (tenant_id, nonce, expires_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (tenant_id, nonce) DO UPDATE SET expires_ms = excluded.expires_ms \
             WHERE request_nonces.expires_ms <= ?4",
        )?
        .execute(params![tenant_id, nonce, expires_ms, now_ms])?;
    Ok(inserted == 1)
}

/// Apps keep their limits as JSON text; this reads the raw row, [`app_from`] parses it.
type AppRow = (App, String, String);

fn app_row(r: &Row) -> rusqlite::Result<AppRow> {
    Ok((
        App {
            app_id: r.get("app_id")?,
            tenant_id: r.get("tenant_id")?,
            name: r.get("name")?,
            code_expiry: r.get("code_expiry")?,
            total_limit: Default::default(),
            phone_limit: Default::default(),
            created_ms: r.get("created_ms")?,
        },
        r.get("total_limit")?,
        r.get("phone_limit")?,
    ))
}

fn app_from((mut app, total, phone): AppRow) -> StoreResult<App> {
    app.total_limit = json(&total, "apps.total_limit")?;
    app.phone_limit = json(&phone, "apps.phone_limit")?;
    Ok(app)
}

fn template_from(r: &Row) -> rusqlite::Result<Template> {
    Ok(Template {
        template_id: r.get("template_id")?,
        tenant_id: r.get("tenant_id")?,
        app_id: r.get("app_id")?,
        name: r.get("name")?,
        text: r.get("text")?,
        code_type: r.get("code_type")?,
        code_length: r.get("code_length")?,
        speech_rate: r.get("speech_rate")?,
        language: r.get("language")?,
        max_duration: r.get("max_duration")?,
        repeat_cnt: r.get("repeat_cnt")?,
        sender_id: r.get("sender_id")?,
        created_ms: r.get("created_ms")?,
    })
}

fn flow_row(r: &Row) -> rusqlite::Result<(Flow, String)> {
    Ok((
        Flow {
            flow_id: r.get("flow_id")?,
            tenant_id: r.get("tenant_id")?,
            name: r.get("name")?,
            nodes: Vec::new(),
            created_ms: r.get("created_ms")?,
        },
        r.get("nodes")?,
    ))
}

fn flow_from((mut flow, nodes): (Flow, String)) -> StoreResult<Flow> {
    flow.nodes = json(&nodes, "flows.nodes")?;
    Ok(flow)
}

/// The session columns in the order [`session_row`] reads them (by index: reading by name
/// scans every column name for every field).
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

/// Reads a session whose columns start at `at`, in [`session_cols`] order.
fn session_at(r: &Row, at: usize) -> rusqlite::Result<(Session, String)> {
    Ok((
        Session {
            id: r.get(at)?,
            tenant_id: r.get(at + 1)?,
            app_id: r.get(at + 2)?,
            template_id: r.get(at + 3)?,
            flow_id: r.get(at + 4)?,
            phone: r.get(at + 5)?,
            region: r.get(at + 6)?,
            channel: r.get(at + 7)?,
            code_hash: r.get(at + 8)?,
            code_enc: r.get(at + 9)?,
            code_type: r.get(at + 10)?,
            code_length: r.get(at + 11)?,
            case_insensitive: r.get::<_, i64>(at + 12)? != 0,
            status: SessionStatus::Pending,
            wrong_attempts: r.get(at + 14)?,
            submitted: r.get::<_, i64>(at + 15)? != 0,
            expires_ms: r.get(at + 16)?,
            created_ms: r.get(at + 17)?,
            verified_ms: r.get(at + 18)?,
            order_id: r.get(at + 19)?,
            external_id: r.get(at + 20)?,
        },
        r.get(at + 13)?,
    ))
}

fn session_row(r: &Row) -> rusqlite::Result<(Session, String)> {
    session_at(r, 0)
}

fn session_from((mut s, status): (Session, String)) -> StoreResult<Session> {
    s.status = SessionStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("sessions.status {status:?}")))?;
    Ok(s)
}

fn load_session(conn: &Connection, id: &str) -> StoreResult<Option<Session>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        session_cols!(""),
        " FROM sessions WHERE id = ?1"
    ))?
    .query_row([&id], session_row)
    .optional()?
    .map(session_from)
    .transpose()
}

fn load_app(conn: &Connection, id: &str) -> StoreResult<Option<App>> {
    conn.prepare_cached("SELECT * FROM apps WHERE app_id = ?1")?
        .query_row([id], app_row)
        .optional()?
        .map(app_from)
        .transpose()
}

fn load_template(conn: &Connection, id: i64) -> StoreResult<Option<Template>> {
    Ok(conn
        .prepare_cached("SELECT * FROM templates WHERE template_id = ?1")?
        .query_row([id], template_from)
        .optional()?)
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

fn verification_from(r: &Row) -> rusqlite::Result<Verification> {
    Ok(Verification {
        verification_id: r.get(0)?,
        session_id: r.get(1)?,
        tenant_id: r.get(2)?,
        channel: r.get(3)?,
        kind: r.get(4)?,
        created_ms: r.get(5)?,
    })
}

fn attempt_from(r: &Row) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        id: r.get("id")?,
        session_id: r.get("session_id")?,
        verification_id: r.get("verification_id")?,
        tenant_id: r.get("tenant_id")?,
        channel: r.get("channel")?,
        route: r.get("route")?,
        provider: r.get("provider")?,
        sender: r.get("sender")?,
        gateway_state: r.get("gateway_state")?,
        report_state: r.get("report_state")?,
        reason: r.get("reason")?,
        provider_message_id: r.get("provider_message_id")?,
        encoding: r.get("encoding")?,
        segments: r.get("segments")?,
        mcc: r.get("mcc")?,
        mnc: r.get("mnc")?,
        price_micros: r.get("price_micros")?,
        rate_micros: r.get("rate_micros")?,
        bill_period: r.get("bill_period")?,
        call_duration: r.get("call_duration")?,
        charged_duration: r.get("charged_duration")?,
        created_ms: r.get("created_ms")?,
        send_ms: r.get("send_ms")?,
        done_ms: r.get("done_ms")?,
        flow_step: r.get("flow_step")?,
        ring_ms: r.get("ring_ms")?,
        answer_ms: r.get("answer_ms")?,
        termination_code: r.get("termination_code")?,
        claim_owner: r.get("claim_owner")?,
        claim_lease_ms: r.get("claim_lease_ms")?,
    })
}

fn load_attempt(conn: &Connection, id: i64) -> StoreResult<Option<Attempt>> {
    Ok(conn
        .prepare_cached("SELECT * FROM attempts WHERE id = ?1")?
        .query_row([id], attempt_from)
        .optional()?)
}

fn load_attempts(conn: &Connection, session_id: &str) -> StoreResult<Vec<Attempt>> {
    Ok(conn
        .prepare_cached("SELECT * FROM attempts WHERE session_id = ?1 ORDER BY id")?
        .query_map([session_id], attempt_from)?
        .collect::<Result<_, _>>()?)
}

fn job_from(r: &Row) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        key: r.get(1)?,
        kind: r.get(2)?,
        session_id: r.get(3)?,
        attempt_id: r.get(4)?,
        step: r.get(5)?,
        due_ms: r.get(6)?,
        owner: r.get(7)?,
        lease_ms: r.get(8)?,
        tries: r.get(9)?,
        last_error: r.get(10)?,
        created_ms: r.get(11)?,
    })
}

/// The job columns in the order [`job_from`] reads them.
macro_rules! job_cols {
    () => {
        "id, key, kind, session_id, attempt_id, step, due_ms, owner, lease_ms, tries, last_error, created_ms"
    };
}

/// Writes a job unless one with its key exists.
fn insert_job(conn: &Connection, j: &NewJob, now_ms: i64) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO jobs (key, kind, session_id, attempt_id, step, due_ms, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (key) DO NOTHING",
    )?
    .execute(params![
        j.key,
        j.kind,
        j.session_id,
        j.attempt_id,
        j.step,
        j.due_ms,
        now_ms
    ])?;
    Ok(())
}

/// Inserts an attempt: straight into `sending`, its deliver job held on the row by `claim`,
/// when it is handed to its route right away.
fn insert_attempt(
    conn: &Connection,
    session_id: &str,
    verification_id: &str,
    tenant_id: i64,
    a: &NewAttempt,
    claim: Option<&NewClaim>,
    now_ms: i64,
) -> StoreResult<(i64, Option<JobRef>)> {
    let sending = a.sending.clone().unwrap_or_default();
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO attempts (session_id, verification_id, tenant_id, channel, route, provider, sender, \
             gateway_state, report_state, mcc, encoding, segments, price_micros, rate_micros, bill_period, \
             created_ms, send_ms, flow_step, claim_owner, claim_lease_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20) \
             RETURNING id",
        )?
        .query_row(
            params![
                session_id,
                verification_id,
                tenant_id,
                a.channel,
                a.route,
                a.provider,
                a.sender,
                if a.sending.is_some() { gateway::SENDING } else { gateway::PENDING },
                if a.sending.is_some() { report::PENDING } else { report::UNKNOWN },
                a.mcc,
                sending.encoding,
                sending.segments,
                sending.price_micros,
                sending.rate_micros,
                sending.bill_period,
                now_ms,
                a.sending.as_ref().map(|_| now_ms),
                a.flow_step,
                claim.map(|c| &c.owner),
                claim.map(|c| c.lease_until_ms),
            ],
            |r| r.get(0),
        )?;
    Ok((id, claim.map(|c| c.held_on(id))))
}
/// Counts sends in the window and, when under every limit, records this one. An app with no
/// active limit records nothing: a limit counts the sends made while it is enabled.
fn check_and_count(conn: &Connection, s: &NewSend) -> StoreResult<Option<SendOutcome>> {
    if s.total_limit.is_none() && s.phone_limit.is_none() {
        return Ok(None);
    }
    if let Some(l) = s.total_limit {
        let n: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM send_log WHERE app_id = ?1 AND at_ms > ?2")?
            .query_row(params![s.app_id, s.now_ms - l.window_ms()], |r| r.get(0))?;
        if n >= l.limit {
            return Ok(Some(SendOutcome::TotalLimit));
        }
    }
    if let Some(l) = s.phone_limit {
        let n: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM send_log WHERE app_id = ?1 AND phone = ?2 AND at_ms > ?3",
            )?
            .query_row(params![s.app_id, s.phone, s.now_ms - l.window_ms()], |r| {
                r.get(0)
            })?;
        if n >= l.limit {
            return Ok(Some(SendOutcome::PhoneLimit));
        }
    }
    conn.prepare_cached("INSERT INTO send_log (app_id, phone, at_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![s.app_id, s.phone, s.now_ms])?;
    Ok(None)
}

/// Fails with [`StoreError::TenantChanged`] unless the tenant row still matches `guard`.
fn check_tenant_guard(conn: &Connection, guard: Option<&TenantGuard>) -> StoreResult<()> {
    let Some(g) = guard else {
        return Ok(());
    };
    let same = conn
        .prepare_cached(
            "SELECT 1 FROM tenants WHERE id = ?1 AND enabled = 1 AND secret_enc = ?2 AND allow_ips = ?3",
        )?
        .exists(params![g.tenant_id, g.secret_enc, g.allow_ips])?;
    if same {
        Ok(())
    } else {
        Err(StoreError::TenantChanged)
    }
}

fn create_send(conn: &Connection, s: &NewSend) -> StoreResult<SendOutcome> {
    check_tenant_guard(conn, s.guard.as_ref())?;
    if let Some(order_id) = &s.order_id {
        let existing: Option<String> = conn
            .prepare_cached(
                "SELECT verification_id FROM orders WHERE tenant_id = ?1 AND order_id = ?2",
            )?
            .query_row(params![s.tenant_id, order_id], |r| r.get(0))
            .optional()?;
        if let Some(verification_id) = existing {
            return Ok(SendOutcome::DuplicateOrder { verification_id });
        }
    }
    // A resend first checks that its session is still open, before it counts.
    let (session_id, code_sealed, refresh) = match &s.target {
        SendTarget::New(n) => (s.verification_id.clone(), n.code.sealed.clone(), false),
        SendTarget::Resend { session_id, fresh } => {
            let Some(session) = load_session(conn, session_id)? else {
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
    if let Some(outcome) = check_and_count(conn, s)? {
        return Ok(outcome);
    }
    let a = &s.attempt;
    match &s.target {
        SendTarget::New(n) => {
            conn.prepare_cached(
                "INSERT INTO sessions (id, tenant_id, app_id, template_id, flow_id, phone, region, channel, \
                 code_hash, code_enc, code_type, code_length, case_insensitive, status, submitted, expires_ms, \
                 created_ms, order_id, external_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'pending', ?14, ?15, ?16, ?17, ?18)",
            )?
            .execute(params![
                session_id,
                s.tenant_id,
                n.app_id,
                n.template_id,
                n.flow_id,
                n.phone,
                n.region,
                a.channel,
                n.code.hash,
                n.code.sealed,
                n.code_type,
                n.code_length,
                n.case_insensitive as i64,
                a.sending.is_some() as i64,
                n.code.expires_ms,
                s.now_ms,
                s.order_id,
                n.external_id,
            ])?;
        }
        SendTarget::Resend { fresh, .. } => {
            conn.prepare_cached(
                "UPDATE sessions SET code_hash = CASE WHEN ?1 THEN ?2 ELSE code_hash END, \
                 code_enc = CASE WHEN ?1 THEN ?3 ELSE code_enc END, \
                 expires_ms = CASE WHEN ?1 THEN ?4 ELSE expires_ms END, \
                 submitted = MAX(submitted, ?5) WHERE id = ?6",
            )?
            .execute(params![
                refresh,
                fresh.hash,
                fresh.sealed,
                fresh.expires_ms,
                a.sending.is_some() as i64,
                session_id
            ])?;
        }
    }
    conn.prepare_cached(
        "INSERT INTO verifications (verification_id, session_id, tenant_id, channel, kind, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![s.verification_id, session_id, s.tenant_id, a.channel, s.kind, s.now_ms])?;
    if let Some(order_id) = &s.order_id {
        conn.prepare_cached(
            "INSERT INTO orders (tenant_id, order_id, verification_id) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![s.tenant_id, order_id, s.verification_id])?;
    }
    let (attempt_id, job) = insert_attempt(
        conn,
        &session_id,
        &s.verification_id,
        s.tenant_id,
        a,
        s.claim.as_ref(),
        s.now_ms,
    )?;
    if job.is_none() {
        insert_job(
            conn,
            &NewJob::deliver(&session_id, attempt_id, s.now_ms),
            s.now_ms,
        )?;
    }
    Ok(SendOutcome::Created {
        session_id,
        attempt_id,
        code_sealed,
        job,
    })
}

/// Applies `u` to the attempt if `guard` allows it (checked in the same statement); returns
/// the attempt's session id when it did. With `release`, the attempt's deliver claim must be
/// held by that owner too, and is cleared in the same statement.
///
/// The statement sets only the columns `u` changes: a column assigned, even to its own value,
/// makes SQLite rewrite every index entry that covers it (route and message id, the pending
/// receipts), which was most of an outcome's cost. The few shapes in use stay prepared.
fn guarded_update(
    conn: &Connection,
    id: i64,
    guard: AttemptGuard,
    u: &AttemptUpdate,
    release: Option<&String>,
) -> StoreResult<Option<String>> {
    use std::fmt::Write as _;
    let mut sets = String::new();
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&id];
    macro_rules! set {
        ($($col:ident),* $(,)?) => {$(
            if let Some(v) = &u.$col {
                args.push(v);
                let sep = if sets.is_empty() { "" } else { ", " };
                let _ = write!(sets, "{sep}{} = ?{}", stringify!($col), args.len());
            }
        )*};
    }
    set!(
        gateway_state,
        report_state,
        reason,
        provider_message_id,
        encoding,
        segments,
        mnc,
        price_micros,
        rate_micros,
        bill_period,
        call_duration,
        charged_duration,
        send_ms,
        done_ms,
        ring_ms,
        answer_ms,
        termination_code,
        route,
        provider,
        sender,
    );
    if release.is_some() {
        let sep = if sets.is_empty() { "" } else { ", " };
        let _ = write!(sets, "{sep}claim_owner = NULL, claim_lease_ms = NULL");
    }
    let mut sql = if sets.is_empty() {
        // Nothing to change: whether the guard holds is the answer.
        String::from("SELECT session_id FROM attempts WHERE id = ?1")
    } else {
        format!("UPDATE attempts SET {sets} WHERE id = ?1")
    };
    match guard {
        AttemptGuard::Any => {}
        AttemptGuard::Gateway(states) => {
            sql.push_str(" AND gateway_state IN (");
            for (i, state) in states.iter().enumerate() {
                args.push(state);
                let sep = if i == 0 { "" } else { ", " };
                let _ = write!(sql, "{sep}?{}", args.len());
            }
            if states.is_empty() {
                sql.push_str("NULL");
            }
            sql.push(')');
        }
        AttemptGuard::Unconfirmed => sql.push_str(
            " AND (report_state IN ('unknown', 'pending') \
             OR (report_state = 'fail' AND reason = 'no delivery report'))",
        ),
    }
    if let Some(owner) = &release {
        args.push(owner);
        let _ = write!(sql, " AND claim_owner = ?{}", args.len());
    }
    if !sets.is_empty() {
        sql.push_str(" RETURNING session_id");
    }
    let session_id: Option<String> = conn
        .prepare_cached(&sql)?
        .query_row(args.as_slice(), |r| r.get(0))
        .optional()?;
    let Some(session_id) = session_id else {
        return Ok(None);
    };
    let handed_over = matches!(
        u.gateway_state.as_deref(),
        Some(gateway::SENDING | gateway::SUCCESS | gateway::FAIL)
    );
    if handed_over {
        conn.prepare_cached("UPDATE sessions SET submitted = 1 WHERE id = ?1 AND submitted = 0")?
            .execute([&session_id])?;
    }
    Ok(Some(session_id))
}

/// Ends `owner`'s claim on the deliver job held on attempt `attempt_id`, applying `update`
/// under `guard` in the same statement when given; returns the attempt's session id, or
/// `None` (and nothing changed) when the claim is no longer held.
fn release_attempt_claim(
    conn: &Connection,
    attempt_id: i64,
    owner: &String,
    update: Option<(AttemptGuard, &AttemptUpdate)>,
) -> StoreResult<Option<String>> {
    if let Some((guard, u)) = update
        && let Some(session_id) = guarded_update(conn, attempt_id, guard, u, Some(owner))?
    {
        return Ok(Some(session_id));
    }
    // No update, or its guard (or the claim) failed: the claim alone decides.
    Ok(conn
        .prepare_cached(
            "UPDATE attempts SET claim_owner = NULL, claim_lease_ms = NULL \
             WHERE id = ?1 AND claim_owner = ?2 RETURNING session_id",
        )?
        .query_row(params![attempt_id, owner], |r| r.get(0))
        .optional()?)
}

/// The job's own change comes first and carries the claim check: when the claim is no longer
/// held, it changes no row and nothing else is written.
fn finish_job(conn: &Connection, o: &JobOutcome) -> StoreResult<bool> {
    let mut attempt_done = false;
    match o.job.id {
        JobId::Queued(id) => {
            let claim = params![id, o.job.owner, o.job.tries];
            let changed = match &o.next {
                JobNext::Delete => conn
                    .prepare_cached("DELETE FROM jobs WHERE id = ?1 AND owner = ?2 AND tries = ?3")?
                    .execute(claim)?,
                JobNext::Retry { due_ms, error } => conn
                    .prepare_cached(
                        "UPDATE jobs SET owner = NULL, lease_ms = NULL, due_ms = ?4, last_error = ?5 \
                         WHERE id = ?1 AND owner = ?2 AND tries = ?3",
                    )?
                    .execute(params![id, o.job.owner, o.job.tries, due_ms, error])?,
                JobNext::Reschedule { due_ms } => conn
                    .prepare_cached(
                        "UPDATE jobs SET owner = NULL, lease_ms = NULL, due_ms = ?4 \
                         WHERE id = ?1 AND owner = ?2 AND tries = ?3",
                    )?
                    .execute(params![id, o.job.owner, o.job.tries, due_ms])?,
            };
            if changed == 0 {
                return Ok(false);
            }
        }
        JobId::Attempt(attempt_id) => {
            let update = match &o.attempt {
                Some((id, guard, u)) if *id == attempt_id => {
                    attempt_done = true;
                    Some((*guard, u))
                }
                _ => None,
            };
            let Some(session_id) = release_attempt_claim(conn, attempt_id, &o.job.owner, update)?
            else {
                return Ok(false);
            };
            // Run again later: the job moves into the queue.
            if let Some((due_ms, error)) = o.next.again() {
                let j = NewJob::deliver(&session_id, attempt_id, due_ms);
                conn.prepare_cached(
                    "INSERT INTO jobs (key, kind, session_id, attempt_id, due_ms, tries, last_error, created_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (key) DO NOTHING",
                )?
                .execute(params![
                    j.key,
                    j.kind,
                    j.session_id,
                    j.attempt_id,
                    j.due_ms,
                    o.job.tries,
                    error,
                    o.now_ms
                ])?;
            }
        }
    }
    if let Some((id, guard, update)) = &o.attempt
        && !attempt_done
    {
        guarded_update(conn, *id, *guard, update, None)?;
    }
    for j in &o.follow_ups {
        insert_job(conn, j, o.now_ms)?;
    }
    if let Some(e) = &o.outbox {
        insert_outbox_row(conn, e)?;
    }
    Ok(true)
}

/// Which attempt claims [`adopt_attempt_claims`] moves into the queue.
enum Adopt<'a> {
    /// Those whose lease lapsed by this time.
    Lapsed(i64),
    /// Those of one owner (a worker stopping).
    Owner(&'a str),
    /// Every one (SQLite at start-up: no other process can hold them).
    All,
}

/// Moves deliver claims held on attempts into the queue as free deliver jobs, due when the
/// attempt was handed over (the next worker finds it interrupted); returns how many moved.
fn adopt_attempt_claims(conn: &Connection, which: Adopt<'_>) -> StoreResult<u64> {
    let (cond, args): (&str, Vec<&dyn rusqlite::ToSql>) = match &which {
        Adopt::Lapsed(at) => ("AND claim_lease_ms <= ?1", vec![at]),
        Adopt::Owner(owner) => ("AND claim_owner = ?1", vec![owner]),
        Adopt::All => ("", vec![]),
    };
    let held = conn
        .prepare_cached(&format!(
            "SELECT 1 FROM attempts WHERE claim_lease_ms IS NOT NULL {cond} LIMIT 1"
        ))?
        .exists(args.as_slice())?;
    if !held {
        return Ok(0);
    }
    conn.prepare_cached(&format!(
        "INSERT INTO jobs (key, kind, session_id, attempt_id, due_ms, tries, created_ms) \
         SELECT 'deliver:' || id, 'deliver', session_id, id, COALESCE(send_ms, created_ms), 1, created_ms \
         FROM attempts WHERE claim_lease_ms IS NOT NULL {cond} ON CONFLICT (key) DO NOTHING"
    ))?
    .execute(args.as_slice())?;
    Ok(conn
        .prepare_cached(&format!(
            "UPDATE attempts SET claim_owner = NULL, claim_lease_ms = NULL \
             WHERE claim_lease_ms IS NOT NULL {cond}"
        ))?
        .execute(args.as_slice())? as u64)
}

fn insert_outbox_row(conn: &Connection, e: &OutboxEntry) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO console_outbox (at_ms, channel, to_number, sender, text, verification_id, attempt_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![e.at_ms, e.channel, e.to, e.sender, e.text, e.verification_id, e.attempt_id])?;
    Ok(())
}

fn start_attempt(conn: &Connection, id: i64, now_ms: i64) -> StoreResult<StartAttempt> {
    let Some(attempt) = load_attempt(conn, id)? else {
        return Ok(StartAttempt::Settled);
    };
    let Some(session) = load_session(conn, &attempt.session_id)? else {
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
            guarded_update(conn, id, AttemptGuard::Any, &update, None)?;
            let attempt = load_attempt(conn, id)?
                .ok_or_else(|| StoreError::Corrupt(format!("attempt {id} vanished")))?;
            Ok(StartAttempt::Ready { attempt, session })
        }
        gateway::SENDING => Ok(StartAttempt::Interrupted { attempt, session }),
        _ => Ok(StartAttempt::Settled),
    }
}

fn fire_flow_step(conn: &Connection, f: &FlowFire) -> StoreResult<FlowFired> {
    // The flow job's removal carries the claim check.
    let JobId::Queued(flow_job) = f.job.id else {
        return Ok(FlowFired::Lost);
    };
    let removed = conn
        .prepare_cached("DELETE FROM jobs WHERE id = ?1 AND owner = ?2 AND tries = ?3")?
        .execute(params![flow_job, f.job.owner, f.job.tries])?;
    if removed == 0 {
        return Ok(FlowFired::Lost);
    }
    let session = match load_session(conn, &f.session_id)? {
        Some(s) if s.status == SessionStatus::Pending && f.now_ms < s.expires_ms => s,
        _ => return Ok(FlowFired::Closed),
    };
    let Some(code_sealed) = session.code_enc.clone() else {
        return Ok(FlowFired::Closed);
    };
    let (attempt_id, job) = insert_attempt(
        conn,
        &session.id,
        &f.verification_id,
        session.tenant_id,
        &f.attempt,
        Some(&f.claim),
        f.now_ms,
    )?;
    if f.attempt.sending.is_some() {
        conn.prepare_cached("UPDATE sessions SET submitted = 1 WHERE id = ?1 AND submitted = 0")?
            .execute([&session.id])?;
    }
    let job =
        job.ok_or_else(|| StoreError::Corrupt("a claimed attempt without its claim".into()))?;
    Ok(FlowFired::Created {
        attempt_id,
        job,
        code_sealed,
    })
}

fn load_verification_session(
    conn: &Connection,
    id: &str,
) -> StoreResult<Option<(Verification, Session)>> {
    conn.prepare_cached(concat!(
        "SELECT ",
        verification_cols!("v."),
        ", ",
        session_cols!("s."),
        " FROM verifications v JOIN sessions s ON s.id = v.session_id WHERE v.verification_id = ?1"
    ))?
    .query_row([id], |r| Ok((verification_from(r)?, session_at(r, 6)?)))
    .optional()?
    .map(|(v, s)| Ok((v, session_from(s)?)))
    .transpose()
}

fn verify(
    conn: &Connection,
    verification_id: &str,
    tenant_id: i64,
    guard: Option<&TenantGuard>,
    hash: &CandidateHash,
    now_ms: i64,
) -> StoreResult<VerifyLookup> {
    check_tenant_guard(conn, guard)?;
    let Some((verification, mut session)) = load_verification_session(conn, verification_id)?
    else {
        return Ok(VerifyLookup::Unknown);
    };
    if verification.tenant_id != tenant_id {
        return Ok(VerifyLookup::Foreign);
    }
    let session_id = session.id.clone();
    let candidate_hash = hash(&session);
    let candidate_hash = candidate_hash.as_str();
    let matches = ct_eq_str(&session.code_hash, candidate_hash);
    let outcome = decide_verify(&session.state(), now_ms, matches);
    match outcome {
        VerifyOutcome::Matched => {
            // Consumed: the sealed code is no longer needed by anything.
            conn.prepare_cached("UPDATE sessions SET status = 'verified', verified_ms = ?1, code_enc = NULL WHERE id = ?2")?
                .execute(params![now_ms, session_id])?;
            session.status = SessionStatus::Verified;
            session.verified_ms = Some(now_ms);
            session.code_enc = None;
        }
        VerifyOutcome::Wrong { locked_now } => {
            conn.prepare_cached(
                "UPDATE sessions SET wrong_attempts = wrong_attempts + 1, \
                 status = CASE WHEN ?1 THEN 'locked' ELSE status END, \
                 code_enc = CASE WHEN ?1 THEN NULL ELSE code_enc END WHERE id = ?2",
            )?
            .execute(params![locked_now, session_id])?;
            session.wrong_attempts += 1;
            if locked_now {
                session.status = SessionStatus::Locked;
                session.code_enc = None;
            }
        }
        _ => {}
    }
    Ok(VerifyLookup::Checked {
        outcome,
        verification,
        session,
    })
}

fn migrate(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
    )?;
    for (version, sql) in MIGRATIONS {
        let done: Option<i64> = conn
            .query_row(
                "SELECT version FROM schema_migrations WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()?;
        if done.is_none() {
            conn.execute_batch(sql)?;
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)",
                params![version, chrono::Utc::now().timestamp_millis()],
            )?;
        }
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        self.write(migrate).await
    }

    /// Goes through the writer, so readiness fails when writes cannot be made.
    async fn ping(&self) -> StoreResult<()> {
        self.write(|c| {
            Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(|_| ())?)
        })
        .await
    }

    async fn insert_tenant(&self, t: &NewTenant) -> StoreResult<Tenant> {
        let t = t.clone();
        self.write(move |c| {
            Ok(c.prepare_cached(
                concat!("INSERT INTO tenants (name, api_key, secret_enc, created_ms) VALUES (?1, ?2, ?3, ?4) RETURNING ", tenant_cols!()),
            )?
            .query_row(params![t.name, t.api_key, t.secret_enc, t.created_ms], tenant_from)?)
        })
        .await
    }

    /// On the writer's connection: it is hot on every signed request, and the writer's page
    /// cache stays warm (a reader's is dropped whenever the writer commits), which costs less
    /// than a read transaction even with the hop. It still reads the row every time, so
    /// `tenant disable` from the CLI applies at once.
    async fn tenant_by_key(&self, api_key: &str) -> StoreResult<Option<Tenant>> {
        let key = api_key.to_string();
        self.write(move |c| {
            Ok(c.prepare_cached(tenant_by_key_sql())?
                .query_row([&key], tenant_from)
                .optional()?)
        })
        .await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.read(|c| {
            Ok(c.prepare_cached(tenants_sql())?
                .query_map([], tenant_from)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn count_tenants(&self) -> StoreResult<i64> {
        self.write(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM tenants WHERE kind = 'buka'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn set_tenant_enabled(
        &self,
        kind: &str,
        api_key: &str,
        enabled: bool,
    ) -> StoreResult<bool> {
        let (kind, key) = (kind.to_string(), api_key.to_string());
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE tenants SET enabled = ?1 WHERE api_key = ?2 AND kind = ?3",
            )?
            .execute(params![enabled as i64, key, kind])?
                == 1)
        })
        .await
    }

    async fn set_tenant_allow_ips(
        &self,
        kind: &str,
        api_key: &str,
        allow: &[String],
    ) -> StoreResult<bool> {
        let (kind, key) = (kind.to_string(), api_key.to_string());
        let list = allow.join(",");
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE tenants SET allow_ips = ?1 WHERE api_key = ?2 AND kind = ?3",
            )?
            .execute(params![list, key, kind])?
                == 1)
        })
        .await
    }

    async fn insert_merchant(&self, m: &NewMerchant) -> StoreResult<Merchant> {
        let m = m.clone();
        self.write(move |c| insert_merchant(c, &m)).await
    }

    /// On the writer's warm connection, like [`Store::tenant_by_key`].
    async fn merchant_by_key(&self, api_key: &str) -> StoreResult<Option<Merchant>> {
        let key = api_key.to_string();
        self.write(move |c| load_merchant(c, &key)).await
    }

    async fn list_merchants(&self) -> StoreResult<Vec<Merchant>> {
        self.read(|c| {
            c.prepare_cached(&merchant_sql("ORDER BY t.id"))?
                .query_map([], merchant_row)?
                .map(|r| merchant_from(r?))
                .collect()
        })
        .await
    }

    async fn update_merchant(
        &self,
        api_key: &str,
        update: &MerchantUpdate,
    ) -> StoreResult<Option<Merchant>> {
        let key = api_key.to_string();
        let u = update.clone();
        self.write(move |c| update_merchant(c, &key, &u)).await
    }

    async fn remember_nonce(
        &self,
        tenant_id: i64,
        nonce: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> StoreResult<bool> {
        let nonce = nonce.to_string();
        self.write(move |c| remember_nonce(c, tenant_id, &nonce, now_ms, expires_ms))
            .await
    }

    async fn nonce_seen(&self, tenant_id: i64, nonce: &str, now_ms: i64) -> StoreResult<bool> {
        let nonce = nonce.to_string();
        self.write(move |c| {
            Ok(c.prepare_cached(
                "SELECT 1 FROM request_nonces WHERE tenant_id = ?1 AND nonce = ?2 AND expires_ms > ?3",
            )?
            .query_row(params![tenant_id, nonce, now_ms], |_| Ok(()))
            .optional()?
            .is_some())
        })
        .await
    }

    async fn system_key(&self, name: &str) -> StoreResult<Option<(String, String)>> {
        let name = name.to_string();
        self.write(move |c| {
            Ok(
                c.prepare_cached(
                    "SELECT private_enc, public_pem FROM system_keys WHERE name = ?1",
                )?
                .query_row([&name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
            )
        })
        .await
    }

    async fn insert_system_key(
        &self,
        name: &str,
        private_enc: &str,
        public_pem: &str,
        now_ms: i64,
    ) -> StoreResult<(String, String)> {
        let (name, private_enc, public_pem) = (
            name.to_string(),
            private_enc.to_string(),
            public_pem.to_string(),
        );
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO system_keys (name, private_enc, public_pem, created_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (name) DO NOTHING",
            )?
            .execute(params![name, private_enc, public_pem, now_ms])?;
            Ok(c.prepare_cached("SELECT private_enc, public_pem FROM system_keys WHERE name = ?1")?
                .query_row([&name], |r| Ok((r.get(0)?, r.get(1)?)))?)
        })
        .await
    }

    async fn session_by_external(&self, external_id: &str) -> StoreResult<Option<Session>> {
        let id = external_id.to_string();
        self.lookup(move |c| {
            c.prepare_cached(concat!(
                "SELECT ",
                session_cols!(""),
                " FROM sessions WHERE external_id = ?1"
            ))?
            .query_row([&id], session_row)
            .optional()?
            .map(session_from)
            .transpose()
        })
        .await
    }

    async fn record_sandbox_send(
        &self,
        tenant_id: i64,
        mobile: &str,
        at_ms: i64,
    ) -> StoreResult<()> {
        let mobile = mobile.to_string();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO sandbox_sends (tenant_id, mobile, at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (tenant_id, mobile) DO UPDATE SET at_ms = excluded.at_ms",
            )?
            .execute(params![tenant_id, mobile, at_ms])?;
            Ok(())
        })
        .await
    }

    async fn sandbox_send(&self, tenant_id: i64, mobile: &str) -> StoreResult<Option<i64>> {
        let mobile = mobile.to_string();
        self.lookup(move |c| {
            Ok(c.prepare_cached(
                "SELECT at_ms FROM sandbox_sends WHERE tenant_id = ?1 AND mobile = ?2",
            )?
            .query_row(params![tenant_id, mobile], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn insert_app(&self, a: &App) -> StoreResult<()> {
        let a = a.clone();
        self.write(move |c| insert_app_row(c, &a, a.tenant_id))
            .await
    }

    async fn update_app(&self, a: &App) -> StoreResult<()> {
        let a = a.clone();
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE apps SET name = ?1, code_expiry = ?2, total_limit = ?3, phone_limit = ?4 WHERE app_id = ?5",
            )?
            .execute(params![
                a.name,
                a.code_expiry,
                to_json(&a.total_limit),
                to_json(&a.phone_limit),
                a.app_id
            ])?;
            Ok(())
        })
        .await?;
        self.catalog.invalidate();
        Ok(())
    }

    /// From the catalog cache, else on the writer's warm connection.
    async fn get_app(&self, app_id: &str) -> StoreResult<Option<App>> {
        if let Some(app) = self.catalog.get(&self.catalog.apps, &app_id.to_string()) {
            return Ok(Some(app));
        }
        let read_at = self.catalog.generation();
        let id = app_id.to_string();
        let app = self.write(move |c| load_app(c, &id)).await?;
        if let Some(a) = &app {
            self.catalog
                .put(&self.catalog.apps, read_at, a.app_id.clone(), a.clone());
        }
        Ok(app)
    }

    async fn app_with_template(
        &self,
        app_id: &str,
        template_id: Option<i64>,
    ) -> StoreResult<(Option<App>, Option<Template>)> {
        let cached_app = self.catalog.get(&self.catalog.apps, &app_id.to_string());
        let cached_template = template_id.map(|t| self.catalog.get(&self.catalog.templates, &t));
        match (cached_app, cached_template) {
            (Some(app), None) => return Ok((Some(app), None)),
            (Some(app), Some(Some(t))) => return Ok((Some(app), Some(t))),
            _ => {}
        }
        let read_at = self.catalog.generation();
        let id = app_id.to_string();
        let (app, template) = self
            .write(move |c| {
                let template = match template_id {
                    Some(t) => load_template(c, t)?,
                    None => None,
                };
                Ok((load_app(c, &id)?, template))
            })
            .await?;
        if let Some(a) = &app {
            self.catalog
                .put(&self.catalog.apps, read_at, a.app_id.clone(), a.clone());
        }
        if let Some(t) = &template {
            self.catalog
                .put(&self.catalog.templates, read_at, t.template_id, t.clone());
        }
        Ok((app, template))
    }

    async fn insert_template(&self, t: &Template) -> StoreResult<i64> {
        let t = t.clone();
        self.write(move |c| insert_template_row(c, &t)).await
    }

    async fn update_template(&self, t: &Template) -> StoreResult<()> {
        let t = t.clone();
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE templates SET name = ?1, text = ?2, code_type = ?3, code_length = ?4, speech_rate = ?5, \
                 language = ?6, max_duration = ?7, repeat_cnt = ?8, sender_id = ?9 WHERE template_id = ?10",
            )?
            .execute(params![
                t.name,
                t.text,
                t.code_type,
                t.code_length,
                t.speech_rate,
                t.language,
                t.max_duration,
                t.repeat_cnt,
                t.sender_id,
                t.template_id
            ])?;
            Ok(())
        })
        .await?;
        self.catalog.invalidate();
        Ok(())
    }

    /// From the catalog cache, else on the writer's warm connection.
    async fn get_template(&self, template_id: i64) -> StoreResult<Option<Template>> {
        if let Some(t) = self.catalog.get(&self.catalog.templates, &template_id) {
            return Ok(Some(t));
        }
        let read_at = self.catalog.generation();
        let template = self.write(move |c| load_template(c, template_id)).await?;
        if let Some(t) = &template {
            self.catalog
                .put(&self.catalog.templates, read_at, t.template_id, t.clone());
        }
        Ok(template)
    }

    async fn list_templates(&self, tenant_id: i64) -> StoreResult<Vec<Template>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT * FROM templates WHERE tenant_id = ?1 ORDER BY template_id",
            )?
            .query_map([tenant_id], template_from)?
            .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn insert_flow(&self, f: &Flow) -> StoreResult<i64> {
        let f = f.clone();
        self.write(move |c| {
            Ok(c.prepare_cached(
                "INSERT INTO flows (tenant_id, name, nodes, created_ms) VALUES (?1, ?2, ?3, ?4) RETURNING flow_id",
            )?
            .query_row(params![f.tenant_id, f.name, to_json(&f.nodes), f.created_ms], |r| r.get(0))?)
        })
        .await
    }

    async fn update_flow(&self, f: &Flow) -> StoreResult<()> {
        let f = f.clone();
        self.write(move |c| {
            c.prepare_cached("UPDATE flows SET name = ?1, nodes = ?2 WHERE flow_id = ?3")?
                .execute(params![f.name, to_json(&f.nodes), f.flow_id])?;
            Ok(())
        })
        .await?;
        self.catalog.invalidate();
        Ok(())
    }

    async fn get_flow(&self, flow_id: i64) -> StoreResult<Option<Flow>> {
        if let Some(f) = self.catalog.get(&self.catalog.flows, &flow_id) {
            return Ok(Some(f));
        }
        let read_at = self.catalog.generation();
        let flow = self
            .lookup(move |c| {
                c.prepare_cached("SELECT * FROM flows WHERE flow_id = ?1")?
                    .query_row([flow_id], flow_row)
                    .optional()?
                    .map(flow_from)
                    .transpose()
            })
            .await?;
        if let Some(f) = &flow {
            self.catalog
                .put(&self.catalog.flows, read_at, f.flow_id, f.clone());
        }
        Ok(flow)
    }

    async fn list_flows(&self, tenant_id: i64) -> StoreResult<Vec<Flow>> {
        self.read(move |c| {
            c.prepare_cached("SELECT * FROM flows WHERE tenant_id = ?1 ORDER BY flow_id")?
                .query_map([tenant_id], flow_row)?
                .map(|r| flow_from(r?))
                .collect()
        })
        .await
    }

    async fn create_send(&self, send: &NewSend) -> StoreResult<SendOutcome> {
        let send = send.clone();
        self.write(move |c| create_send(c, &send)).await
    }

    async fn verification_session(
        &self,
        verification_id: &str,
    ) -> StoreResult<Option<(Verification, Session)>> {
        let id = verification_id.to_string();
        self.lookup(move |c| load_verification_session(c, &id))
            .await
    }

    async fn session_by_order(
        &self,
        tenant_id: i64,
        order_id: &str,
    ) -> StoreResult<Option<Session>> {
        let order_id = order_id.to_string();
        self.read(move |c| {
            c.prepare_cached(
                concat!(
                    "SELECT ",
                    session_cols!("s."),
                    " FROM orders o JOIN verifications v ON v.verification_id = o.verification_id \
                     JOIN sessions s ON s.id = v.session_id WHERE o.tenant_id = ?1 AND o.order_id = ?2"
                ),
            )?
            .query_row(params![tenant_id, order_id], session_row)
            .optional()?
            .map(session_from)
            .transpose()
        })
        .await
    }

    async fn attempts_for_session(&self, session_id: &str) -> StoreResult<Vec<Attempt>> {
        let id = session_id.to_string();
        self.read(move |c| load_attempts(c, &id)).await
    }

    async fn verify(
        &self,
        verification_id: &str,
        tenant_id: i64,
        guard: Option<TenantGuard>,
        hash: CandidateHash,
        now_ms: i64,
    ) -> StoreResult<VerifyLookup> {
        let id = verification_id.to_string();
        self.write(move |c| verify(c, &id, tenant_id, guard.as_ref(), &hash, now_ms))
            .await
    }

    async fn claim_jobs(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<Job>> {
        let owner = owner.to_string();
        self.write(move |c| {
            adopt_attempt_claims(c, Adopt::Lapsed(now_ms))?;
            Ok(c.prepare_cached(concat!(
                "UPDATE jobs SET owner = ?1, tries = tries + 1, lease_ms = ?2 WHERE id IN \
                 (SELECT id FROM jobs WHERE due_ms <= ?3 AND (lease_ms IS NULL OR lease_ms <= ?3) \
                 ORDER BY due_ms LIMIT ?4) RETURNING ",
                job_cols!()
            ))?
            .query_map(params![owner, lease_until_ms, now_ms, limit], job_from)?
            .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn finish_job(&self, outcome: &JobOutcome) -> StoreResult<bool> {
        let outcome = outcome.clone();
        self.write(move |c| finish_job(c, &outcome)).await
    }

    async fn ensure_jobs(&self, jobs: &[NewJob], now_ms: i64) -> StoreResult<()> {
        let jobs = jobs.to_vec();
        self.write(move |c| {
            for j in &jobs {
                insert_job(c, j, now_ms)?;
            }
            Ok(())
        })
        .await
    }

    async fn start_attempt(&self, attempt_id: i64, now_ms: i64) -> StoreResult<StartAttempt> {
        self.write(move |c| start_attempt(c, attempt_id, now_ms))
            .await
    }

    async fn fire_flow_step(&self, fire: &FlowFire) -> StoreResult<FlowFired> {
        let fire = fire.clone();
        self.write(move |c| fire_flow_step(c, &fire)).await
    }

    async fn session_with_attempts(
        &self,
        session_id: &str,
    ) -> StoreResult<Option<(Session, Vec<Attempt>)>> {
        let id = session_id.to_string();
        // A handful of rows by key: inline, like the other point reads.
        self.lookup(move |c| match load_session(c, &id)? {
            Some(s) => Ok(Some((s, load_attempts(c, &id)?))),
            None => Ok(None),
        })
        .await
    }

    async fn attempt_by_message(
        &self,
        route: &str,
        message_id: &str,
    ) -> StoreResult<Option<Attempt>> {
        let (route, message_id) = (route.to_string(), message_id.to_string());
        self.write(move |c| {
            Ok(c.prepare_cached(
                "SELECT * FROM attempts WHERE route = ?1 AND provider_message_id = ?2 \
                 AND provider_message_id IS NOT NULL ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![route, message_id], attempt_from)
            .optional()?)
        })
        .await
    }

    async fn attempt_on_route(&self, route: &str, attempt_id: i64) -> StoreResult<Option<Attempt>> {
        let route = route.to_string();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT * FROM attempts WHERE id = ?1 AND route = ?2")?
                    .query_row(params![attempt_id, route], attempt_from)
                    .optional()?,
            )
        })
        .await
    }

    async fn apply_receipt(
        &self,
        attempt_id: i64,
        guard: AttemptGuard,
        update: &AttemptUpdate,
    ) -> StoreResult<bool> {
        let update = update.clone();
        self.write(move |c| {
            let applied = guarded_update(c, attempt_id, guard, &update, None)?.is_some();
            if applied {
                c.prepare_cached("DELETE FROM jobs WHERE key = ?1")?
                    .execute([format!("receipt:{attempt_id}")])?;
            }
            Ok(applied)
        })
        .await
    }

    async fn pending_receipts(&self, route: &str, limit: i64) -> StoreResult<Vec<(i64, String)>> {
        let route = route.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, provider_message_id FROM attempts WHERE route = ?1 AND report_state = 'pending' \
                 AND provider_message_id IS NOT NULL ORDER BY id LIMIT ?2",
            )?
            .query_map(params![route, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn job_stats(&self, now_ms: i64) -> StoreResult<JobStats> {
        self.read(move |c| {
            let total: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM jobs")?
                .query_row([], |r| r.get(0))?;
            let (due, oldest_due_ms): (i64, Option<i64>) = c
                .prepare_cached(
                    "SELECT COUNT(*), MIN(due_ms) FROM jobs WHERE due_ms <= ?1 \
                     AND (lease_ms IS NULL OR lease_ms <= ?1)",
                )?
                .query_row([now_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let (in_flight, lapsed, oldest_lapsed): (i64, i64, Option<i64>) = c
                .prepare_cached(
                    "SELECT COUNT(*), COUNT(CASE WHEN claim_lease_ms <= ?1 THEN 1 END), \
                     MIN(CASE WHEN claim_lease_ms <= ?1 THEN COALESCE(send_ms, created_ms) END) \
                     FROM attempts WHERE claim_lease_ms IS NOT NULL",
                )?
                .query_row([now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(JobStats {
                total: total + in_flight,
                in_flight,
                due: due + lapsed,
                oldest_due_ms: oldest_due_ms.into_iter().chain(oldest_lapsed).min(),
            })
        })
        .await
    }

    async fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        self.lookup(|c| {
            // In index order, stopping at the first free job (MIN() with a WHERE scans all).
            Ok(c.prepare_cached(
                "SELECT due_ms FROM jobs WHERE owner IS NULL ORDER BY due_ms LIMIT 1",
            )?
            .query_row([], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn release_claims(&self, owner: &str) -> StoreResult<u64> {
        let owner = owner.to_string();
        self.write(move |c| {
            let held_on_attempts = adopt_attempt_claims(c, Adopt::Owner(&owner))?;
            Ok(
                c.prepare_cached("UPDATE jobs SET owner = NULL, lease_ms = NULL WHERE owner = ?1")?
                    .execute([&owner])? as u64
                    + held_on_attempts,
            )
        })
        .await
    }

    async fn recover_claims(&self, now_ms: i64) -> StoreResult<u64> {
        self.write(move |c| {
            let held_on_attempts = adopt_attempt_claims(c, Adopt::All)?;
            Ok(c.prepare_cached(
                "UPDATE jobs SET owner = NULL, lease_ms = NULL WHERE owner IS NOT NULL AND due_ms <= ?1",
            )?
            .execute([now_ms])? as u64
                + held_on_attempts)
        })
        .await
    }

    async fn list_jobs(&self, limit: i64) -> StoreResult<Vec<Job>> {
        self.read(move |c| {
            Ok(c.prepare_cached(concat!(
                "SELECT ",
                job_cols!(),
                " FROM jobs ORDER BY due_ms, id LIMIT ?1"
            ))?
            .query_map([limit], job_from)?
            .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn upsert_backfill_rate(&self, r: &BackfillRate) -> StoreResult<()> {
        let r = r.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO backfill_rates (tenant_id, app_id, mcc, backfill_number, backfill_base, rate_bp, \
                 callback_ms, received_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (app_id, mcc) DO UPDATE SET \
                 backfill_number = excluded.backfill_number, backfill_base = excluded.backfill_base, \
                 rate_bp = excluded.rate_bp, callback_ms = excluded.callback_ms, received_ms = excluded.received_ms",
            )?
            .execute(params![
                r.tenant_id,
                r.app_id,
                r.mcc,
                r.backfill_number,
                r.backfill_base,
                r.rate_bp,
                r.callback_ms,
                r.received_ms
            ])?;
            Ok(())
        })
        .await
    }

    async fn record_postback(&self, p: &Postback) -> StoreResult<()> {
        let p = p.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO postbacks (verification_id, tenant_id, app_id, number, backfill_ms, received_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (verification_id) DO UPDATE SET \
                 number = excluded.number, backfill_ms = excluded.backfill_ms, received_ms = excluded.received_ms",
            )?
            .execute(params![p.verification_id, p.tenant_id, p.app_id, p.number, p.backfill_ms, p.received_ms])?;
            Ok(())
        })
        .await
    }

    async fn list_outbox(&self, limit: i64) -> StoreResult<Vec<OutboxEntry>> {
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT * FROM console_outbox ORDER BY id DESC LIMIT ?1")?
                    .query_map([limit], |r| {
                        Ok(OutboxEntry {
                            id: r.get("id")?,
                            at_ms: r.get("at_ms")?,
                            channel: r.get("channel")?,
                            to: r.get("to_number")?,
                            sender: r.get("sender")?,
                            text: r.get("text")?,
                            verification_id: r.get("verification_id")?,
                            attempt_id: r.get("attempt_id")?,
                        })
                    })?
                    .collect::<Result<_, _>>()?,
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::limits::LimitSetting;

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let s = SqliteStore::connect(&url).await.unwrap();
        s.migrate().await.unwrap();
        (s, dir)
    }

    fn app(id: &str, name: &str) -> App {
        App {
            app_id: id.into(),
            tenant_id: 1,
            name: name.into(),
            code_expiry: 5,
            total_limit: LimitSetting::default(),
            phone_limit: LimitSetting::default(),
            created_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_failing_job_does_not_undo_the_rest_of_its_group() {
        let (s, _dir) = store().await;
        s.insert_tenant(&NewTenant {
            name: "t".into(),
            api_key: "k".into(),
            secret_enc: "x".into(),
            created_ms: 0,
        })
        .await
        .unwrap();
        // Queued together, so they share commits: every other name is a duplicate.
        let results = futures::future::join_all((0..40).map(|i| {
            let a = app(&format!("app{i:05}"), &format!("name{}", i / 2));
            let s = &s;
            async move { s.insert_app(&a).await }
        }))
        .await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let conflicts = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Conflict(_))))
            .count();
        assert_eq!((ok, conflicts), (20, 20));
        for (i, result) in results.iter().enumerate() {
            let found = s.get_app(&format!("app{i:05}")).await.unwrap();
            assert_eq!(found.is_some(), result.is_ok(), "app {i}");
        }
    }

    /// A group with failing jobs is run again with a savepoint per job: the jobs that
    /// succeed are applied once, not twice, and each caller gets its own result.
    #[tokio::test]
    async fn a_group_run_again_applies_each_job_once() {
        let (s, _dir) = store().await;
        s.write(|c| {
            c.execute_batch(
                "CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0);",
            )?;
            Ok(())
        })
        .await
        .unwrap();
        let results = futures::future::join_all((0..60).map(|i| {
            let s = &s;
            async move {
                s.write(move |c| {
                    c.execute("UPDATE counter SET n = n + 1", [])?;
                    if i % 3 == 0 {
                        return Err(StoreError::Db(format!("job {i} fails")));
                    }
                    Ok(i)
                })
                .await
            }
        }))
        .await;
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(*v, i, "job {i}"),
                Err(e) => assert!(i % 3 == 0 && e.to_string().contains(&format!("job {i} fails"))),
            }
        }
        let n: i64 = s
            .write(|c| Ok(c.query_row("SELECT n FROM counter", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(
            n, 40,
            "the 40 jobs that succeed count once each; the failing ones not at all"
        );
    }

    #[tokio::test]
    async fn cached_apps_and_templates_follow_updates() {
        let (s, _dir) = store().await;
        s.insert_tenant(&NewTenant {
            name: "t".into(),
            api_key: "k".into(),
            secret_enc: "x".into(),
            created_ms: 0,
        })
        .await
        .unwrap();
        let mut a = app("app00001", "before");
        s.insert_app(&a).await.unwrap();
        let mut t = Template {
            template_id: 0,
            tenant_id: 1,
            app_id: a.app_id.clone(),
            name: "tpl".into(),
            text: "##code## old".into(),
            code_type: 1,
            code_length: 4,
            speech_rate: 50,
            language: "EN".into(),
            max_duration: 59,
            repeat_cnt: 1,
            sender_id: None,
            created_ms: 0,
        };
        t.template_id = s.insert_template(&t).await.unwrap();
        // Read twice: the second comes from the cache.
        for _ in 0..2 {
            let (got_app, got_t) = s
                .app_with_template("app00001", Some(t.template_id))
                .await
                .unwrap();
            assert_eq!(got_app.unwrap().name, "before");
            assert_eq!(got_t.unwrap().text, "##code## old");
        }
        a.name = "after".into();
        s.update_app(&a).await.unwrap();
        t.text = "##code## new".into();
        s.update_template(&t).await.unwrap();
        let (got_app, got_t) = s
            .app_with_template("app00001", Some(t.template_id))
            .await
            .unwrap();
        assert_eq!(got_app.unwrap().name, "after");
        assert_eq!(got_t.unwrap().text, "##code## new");
        assert_eq!(s.get_app("app00001").await.unwrap().unwrap().name, "after");
        assert!(s.get_app("missing1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_writer_carries_on() {
        let (s, _dir) = store().await;
        let r: StoreResult<()> = s
            .write(|_| -> StoreResult<()> { panic!("a bug in a write job") })
            .await;
        assert!(r.is_err());
        s.ping().await.unwrap();
        assert_eq!(s.count_tenants().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn migrations_are_idempotent_and_reopen_works() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        {
            let s = SqliteStore::connect(&url).await.unwrap();
            s.migrate().await.unwrap();
            s.migrate().await.unwrap();
            s.insert_app(&app("a1", "one")).await.unwrap_err(); // no tenant 1: foreign key
        }
        let s = SqliteStore::connect(&url).await.unwrap();
        s.migrate().await.unwrap();
        assert_eq!(s.count_tenants().await.unwrap(), 0);
        let missing = SqliteStore::connect("sqlite:///nonexistent-dir/x.db").await;
        assert!(matches!(missing, Err(StoreError::Db(m)) if m.contains("does not exist")));
    }
}
