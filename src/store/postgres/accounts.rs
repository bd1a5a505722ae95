//! Tenants, merchants, the catalog (apps, templates, flows) and the small tables.
//!
//! The semantics are those of the SQLite store, minus its in-memory catalog cache: several
//! nodes share the database and none could see another's updates, so every read is a query.
//! JSON columns are TEXT holding exactly what SQLite stores.

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, PgPool, Row};

use crate::store::*;

/// The tenant columns in the order [`tenant_at`] reads them.
macro_rules! tenant_cols {
    () => {
        "id, name, api_key, secret_enc, enabled, allow_ips, created_ms, kind"
    };
}

/// A merchant row joined to its tenant: the tenant's columns, then the merchant's.
macro_rules! merchant_select {
    () => {
        "SELECT t.id, t.name, t.api_key, t.secret_enc, t.enabled, t.allow_ips, t.created_ms, t.kind, \
         m.public_key, m.sandbox, m.app_id, m.products \
         FROM merchants m JOIN tenants t ON t.id = m.tenant_id "
    };
}

/// The app columns in the order [`app_at`] reads them.
macro_rules! app_cols {
    ($p:literal) => {
        concat!(
            $p,
            "app_id, ",
            $p,
            "tenant_id, ",
            $p,
            "name, ",
            $p,
            "code_expiry, ",
            $p,
            "total_limit, ",
            $p,
            "phone_limit, ",
            $p,
            "created_ms"
        )
    };
}

/// The template columns in the order [`template_at`] reads them.
macro_rules! template_cols {
    ($p:literal) => {
        concat!(
            $p,
            "template_id, ",
            $p,
            "tenant_id, ",
            $p,
            "app_id, ",
            $p,
            "name, ",
            $p,
            "text, ",
            $p,
            "code_type, ",
            $p,
            "code_length, ",
            $p,
            "speech_rate, ",
            $p,
            "language, ",
            $p,
            "max_duration, ",
            $p,
            "repeat_cnt, ",
            $p,
            "sender_id, ",
            $p,
            "created_ms"
        )
    };
}

/// The flow columns in the order [`flow_from`] reads them.
macro_rules! flow_cols {
    () => {
        "flow_id, tenant_id, name, nodes, created_ms"
    };
}

fn split_allow(allow: &str) -> Vec<String> {
    allow
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A tenant whose columns start at `at`, in [`tenant_cols`] order.
fn tenant_at(r: &PgRow, at: usize) -> StoreResult<Tenant> {
    let allow: String = r.try_get(at + 5)?;
    Ok(Tenant {
        id: r.try_get(at)?,
        name: r.try_get(at + 1)?,
        api_key: r.try_get(at + 2)?,
        secret_enc: r.try_get(at + 3)?,
        enabled: r.try_get(at + 4)?,
        allow_ips: split_allow(&allow),
        created_ms: r.try_get(at + 6)?,
        kind: r.try_get(at + 7)?,
    })
}

fn tenant_from(r: PgRow) -> StoreResult<Tenant> {
    tenant_at(&r, 0)
}

fn merchant_from(r: PgRow) -> StoreResult<Merchant> {
    let products: String = r.try_get(11)?;
    Ok(Merchant {
        tenant: tenant_at(&r, 0)?,
        public_key: r.try_get(8)?,
        sandbox: r.try_get(9)?,
        app_id: r.try_get(10)?,
        products: json(&products, "merchants.products")?,
    })
}

/// An app whose columns start at `at`, in [`app_cols`] order.
fn app_at(r: &PgRow, at: usize) -> StoreResult<App> {
    let total: String = r.try_get(at + 4)?;
    let phone: String = r.try_get(at + 5)?;
    Ok(App {
        app_id: r.try_get(at)?,
        tenant_id: r.try_get(at + 1)?,
        name: r.try_get(at + 2)?,
        code_expiry: r.try_get(at + 3)?,
        total_limit: json(&total, "apps.total_limit")?,
        phone_limit: json(&phone, "apps.phone_limit")?,
        created_ms: r.try_get(at + 6)?,
    })
}

/// A template whose columns start at `at`, in [`template_cols`] order.
fn template_at(r: &PgRow, at: usize) -> StoreResult<Template> {
    Ok(Template {
        template_id: r.try_get(at)?,
        tenant_id: r.try_get(at + 1)?,
        app_id: r.try_get(at + 2)?,
        name: r.try_get(at + 3)?,
        text: r.try_get(at + 4)?,
        code_type: r.try_get(at + 5)?,
        code_length: r.try_get(at + 6)?,
        speech_rate: r.try_get(at + 7)?,
        language: r.try_get(at + 8)?,
        max_duration: r.try_get(at + 9)?,
        repeat_cnt: r.try_get(at + 10)?,
        sender_id: r.try_get(at + 11)?,
        created_ms: r.try_get(at + 12)?,
    })
}

fn flow_from(r: PgRow) -> StoreResult<Flow> {
    let nodes: String = r.try_get(3)?;
    Ok(Flow {
        flow_id: r.try_get(0)?,
        tenant_id: r.try_get(1)?,
        name: r.try_get(2)?,
        nodes: json(&nodes, "flows.nodes")?,
        created_ms: r.try_get(4)?,
    })
}

// Tenants

pub(super) async fn insert_tenant(pool: &PgPool, t: &NewTenant) -> StoreResult<Tenant> {
    let row = sqlx::query(concat!(
        "INSERT INTO tenants (name, api_key, secret_enc, created_ms) VALUES ($1, $2, $3, $4) RETURNING ",
        tenant_cols!()
    ))
    .bind(&t.name)
    .bind(&t.api_key)
    .bind(&t.secret_enc)
    .bind(t.created_ms)
    .fetch_one(pool)
    .await?;
    tenant_from(row)
}

pub(super) async fn tenant_by_key(pool: &PgPool, api_key: &str) -> StoreResult<Option<Tenant>> {
    sqlx::query(concat!(
        "SELECT ",
        tenant_cols!(),
        " FROM tenants WHERE api_key = $1"
    ))
    .bind(api_key)
    .fetch_optional(pool)
    .await?
    .map(tenant_from)
    .transpose()
}

pub(super) async fn list_tenants(pool: &PgPool) -> StoreResult<Vec<Tenant>> {
    sqlx::query(concat!(
        "SELECT ",
        tenant_cols!(),
        " FROM tenants ORDER BY id"
    ))
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(tenant_from)
    .collect()
}

pub(super) async fn count_tenants(pool: &PgPool) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM tenants WHERE kind = $1")
            .bind(tenant_kind::BUKA)
            .fetch_one(pool)
            .await?,
    )
}

pub(super) async fn set_tenant_enabled(
    pool: &PgPool,
    kind: &str,
    api_key: &str,
    enabled: bool,
) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE tenants SET enabled = $1 WHERE api_key = $2 AND kind = $3")
        .bind(enabled)
        .bind(api_key)
        .bind(kind)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn set_tenant_allow_ips(
    pool: &PgPool,
    kind: &str,
    api_key: &str,
    allow: &[String],
) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE tenants SET allow_ips = $1 WHERE api_key = $2 AND kind = $3")
        .bind(allow.join(","))
        .bind(api_key)
        .bind(kind)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

// SGate merchants

async fn load_merchant<'e>(
    db: impl PgExecutor<'e>,
    api_key: &str,
) -> StoreResult<Option<Merchant>> {
    sqlx::query(concat!(merchant_select!(), "WHERE t.api_key = $1"))
        .bind(api_key)
        .fetch_optional(db)
        .await?
        .map(merchant_from)
        .transpose()
}

async fn insert_template_row<'e>(db: impl PgExecutor<'e>, t: &Template) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO templates (tenant_id, app_id, name, text, code_type, code_length, speech_rate, \
         language, max_duration, repeat_cnt, sender_id, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING template_id",
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
    .fetch_one(db)
    .await?)
}

/// The merchant's products for `templates`' names, in order: a name that already has a
/// template under the app keeps it, a new one gets its template inserted.
async fn products_for(
    conn: &mut PgConnection,
    tenant_id: i64,
    app_id: &str,
    templates: &[Template],
) -> StoreResult<Vec<Product>> {
    let mut products = Vec::with_capacity(templates.len());
    for t in templates {
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT template_id FROM templates WHERE app_id = $1 AND name = $2")
                .bind(app_id)
                .bind(&t.name)
                .fetch_optional(&mut *conn)
                .await?;
        let template_id = match existing {
            Some(id) => id,
            None => {
                let mut t = t.clone();
                t.tenant_id = tenant_id;
                t.app_id = app_id.to_string();
                insert_template_row(&mut *conn, &t).await?
            }
        };
        products.push(Product {
            name: t.name.clone(),
            template_id,
        });
    }
    Ok(products)
}

pub(super) async fn insert_merchant(pool: &PgPool, m: &NewMerchant) -> StoreResult<Merchant> {
    let mut tx = pool.begin().await?;
    let t = &m.tenant;
    let tenant_id: i64 = sqlx::query_scalar(
        "INSERT INTO tenants (name, api_key, secret_enc, created_ms, kind) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&t.name)
    .bind(&t.api_key)
    .bind(&t.secret_enc)
    .bind(t.created_ms)
    .bind(tenant_kind::SGATE)
    .fetch_one(&mut *tx)
    .await?;
    let a = &m.app;
    insert_app_row(&mut *tx, a, tenant_id).await?;
    let products = products_for(&mut tx, tenant_id, &a.app_id, &m.templates).await?;
    sqlx::query(
        "INSERT INTO merchants (tenant_id, public_key, sandbox, app_id, products) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant_id)
    .bind(&m.public_key)
    .bind(m.sandbox)
    .bind(&a.app_id)
    .bind(to_json(&products))
    .execute(&mut *tx)
    .await?;
    let merchant = load_merchant(&mut *tx, &t.api_key)
        .await?
        .ok_or_else(|| StoreError::Db("the new merchant could not be read back".into()))?;
    tx.commit().await?;
    Ok(merchant)
}

pub(super) async fn merchant_by_key(pool: &PgPool, api_key: &str) -> StoreResult<Option<Merchant>> {
    load_merchant(pool, api_key).await
}

pub(super) async fn list_merchants(pool: &PgPool) -> StoreResult<Vec<Merchant>> {
    sqlx::query(concat!(merchant_select!(), "ORDER BY t.id"))
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(merchant_from)
        .collect()
}

pub(super) async fn update_merchant(
    pool: &PgPool,
    api_key: &str,
    update: &MerchantUpdate,
) -> StoreResult<Option<Merchant>> {
    let mut tx = pool.begin().await?;
    // The merchant row stays locked until the commit, so concurrent updates of one merchant
    // apply one after the other (each sees the products the previous one wrote).
    let Some(m) = sqlx::query(concat!(
        merchant_select!(),
        "WHERE t.api_key = $1 FOR UPDATE OF m"
    ))
    .bind(api_key)
    .fetch_optional(&mut *tx)
    .await?
    .map(merchant_from)
    .transpose()?
    else {
        return Ok(None);
    };
    let products = match &update.templates {
        Some(templates) => products_for(&mut tx, m.tenant.id, &m.app_id, templates).await?,
        None => m.products.clone(),
    };
    sqlx::query(
        "UPDATE merchants SET public_key = $1, sandbox = $2, products = $3 WHERE tenant_id = $4",
    )
    .bind(update.public_key.as_ref().unwrap_or(&m.public_key))
    .bind(update.sandbox.unwrap_or(m.sandbox))
    .bind(to_json(&products))
    .bind(m.tenant.id)
    .execute(&mut *tx)
    .await?;
    let merchant = load_merchant(&mut *tx, api_key).await?;
    tx.commit().await?;
    Ok(merchant)
}

/// Expired nonces one `remember_nonce` drops at most.
const NONCE_SWEEP: i64 = 32;

pub(super) async fn remember_nonce(
    pool: &PgPool,
    tenant_id: i64,
    nonce: &str,
    now_ms: i64,
    expires_ms: i64,
) -> StoreResult<bool> {
    let mut conn = pool.acquire().await?;
    // A bounded sweep keeps the table to the live window without a job of its own. It commits
    // on its own (the insert below holds at most one row lock, so two callers cannot deadlock
    // over each other's swept rows), and skips rows another sweep is deleting.
    sqlx::query(
        "DELETE FROM request_nonces WHERE (tenant_id, nonce) IN \
         (SELECT tenant_id, nonce FROM request_nonces WHERE expires_ms <= $1 \
          LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(now_ms)
    .bind(NONCE_SWEEP)
    .execute(&mut *conn)
    .await?;
    // Atomic under concurrency: a second caller waits for the first's row and re-checks the
    // expiry against what it wrote.
    let done = sqlx::query(
        "INSERT INTO request_nonces (tenant_id, nonce, expires_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, nonce) DO UPDATE SET expires_ms = excluded.expires_ms \
         WHERE request_nonces.expires_ms <= $4",
    )
    .bind(tenant_id)
    .bind(nonce)
    .bind(expires_ms)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn nonce_seen(
    pool: &PgPool,
    tenant_id: i64,
    nonce: &str,
    now_ms: i64,
) -> StoreResult<bool> {
    Ok(sqlx::query(
        "SELECT 1 FROM request_nonces WHERE tenant_id = $1 AND nonce = $2 AND expires_ms > $3",
    )
    .bind(tenant_id)
    .bind(nonce)
    .bind(now_ms)
    .fetch_optional(pool)
    .await?
    .is_some())
}

// Server keys

async fn read_system_key<'e>(
    db: impl PgExecutor<'e>,
    name: &str,
) -> StoreResult<Option<(String, String)>> {
    Ok(
        sqlx::query_as("SELECT private_enc, public_pem FROM system_keys WHERE name = $1")
            .bind(name)
            .fetch_optional(db)
            .await?,
    )
}

pub(super) async fn system_key(pool: &PgPool, name: &str) -> StoreResult<Option<(String, String)>> {
    read_system_key(pool, name).await
}

pub(super) async fn insert_system_key(
    pool: &PgPool,
    name: &str,
    private_enc: &str,
    public_pem: &str,
    now_ms: i64,
) -> StoreResult<(String, String)> {
    let mut conn = pool.acquire().await?;
    // A racing insert of the same name waits for the first to commit and does nothing; the read
    // that follows (a new snapshot) then sees the first one's key.
    sqlx::query(
        "INSERT INTO system_keys (name, private_enc, public_pem, created_ms) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(private_enc)
    .bind(public_pem)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    read_system_key(&mut *conn, name)
        .await?
        .ok_or_else(|| StoreError::Db(format!("system key {name:?} could not be read back")))
}

// Sandbox sends

pub(super) async fn record_sandbox_send(
    pool: &PgPool,
    tenant_id: i64,
    mobile: &str,
    at_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sandbox_sends (tenant_id, mobile, at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, mobile) DO UPDATE SET at_ms = excluded.at_ms",
    )
    .bind(tenant_id)
    .bind(mobile)
    .bind(at_ms)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn sandbox_send(
    pool: &PgPool,
    tenant_id: i64,
    mobile: &str,
) -> StoreResult<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT at_ms FROM sandbox_sends WHERE tenant_id = $1 AND mobile = $2")
            .bind(tenant_id)
            .bind(mobile)
            .fetch_optional(pool)
            .await?,
    )
}

// Apps

/// Inserts `app` for `tenant_id` (a new merchant's app gets its tenant id in the same
/// transaction).
async fn insert_app_row<'e>(db: impl PgExecutor<'e>, app: &App, tenant_id: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO apps (app_id, tenant_id, name, code_expiry, total_limit, phone_limit, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&app.app_id)
    .bind(tenant_id)
    .bind(&app.name)
    .bind(app.code_expiry)
    .bind(to_json(&app.total_limit))
    .bind(to_json(&app.phone_limit))
    .bind(app.created_ms)
    .execute(db)
    .await?;
    Ok(())
}

pub(super) async fn insert_app(pool: &PgPool, app: &App) -> StoreResult<()> {
    insert_app_row(pool, app, app.tenant_id).await
}

pub(super) async fn update_app(pool: &PgPool, app: &App) -> StoreResult<()> {
    sqlx::query(
        "UPDATE apps SET name = $1, code_expiry = $2, total_limit = $3, phone_limit = $4 WHERE app_id = $5",
    )
    .bind(&app.name)
    .bind(app.code_expiry)
    .bind(to_json(&app.total_limit))
    .bind(to_json(&app.phone_limit))
    .bind(&app.app_id)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn get_app(pool: &PgPool, app_id: &str) -> StoreResult<Option<App>> {
    sqlx::query(concat!(
        "SELECT ",
        app_cols!(""),
        " FROM apps WHERE app_id = $1"
    ))
    .bind(app_id)
    .fetch_optional(pool)
    .await?
    .map(|r| app_at(&r, 0))
    .transpose()
}

/// Both in one round trip (and one snapshot): every send reads them. The app and the template
/// are looked up independently, as two outer joins on a single row.
pub(super) async fn app_with_template(
    pool: &PgPool,
    app_id: &str,
    template_id: Option<i64>,
) -> StoreResult<(Option<App>, Option<Template>)> {
    let r = sqlx::query(concat!(
        "SELECT ",
        app_cols!("a."),
        ", ",
        template_cols!("t."),
        " FROM (SELECT 1) AS one \
         LEFT JOIN apps a ON a.app_id = $1 \
         LEFT JOIN templates t ON t.template_id = $2"
    ))
    .bind(app_id)
    .bind(template_id)
    .fetch_one(pool)
    .await?;
    // The key columns are NOT NULL in their tables: NULL here means no such row.
    let app = match r.try_get::<Option<String>, _>(0)? {
        Some(_) => Some(app_at(&r, 0)?),
        None => None,
    };
    let template = match r.try_get::<Option<i64>, _>(7)? {
        Some(_) => Some(template_at(&r, 7)?),
        None => None,
    };
    Ok((app, template))
}

// Templates

pub(super) async fn insert_template(pool: &PgPool, t: &Template) -> StoreResult<i64> {
    insert_template_row(pool, t).await
}

pub(super) async fn update_template(pool: &PgPool, t: &Template) -> StoreResult<()> {
    sqlx::query(
        "UPDATE templates SET name = $1, text = $2, code_type = $3, code_length = $4, speech_rate = $5, \
         language = $6, max_duration = $7, repeat_cnt = $8, sender_id = $9 WHERE template_id = $10",
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
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn get_template(pool: &PgPool, template_id: i64) -> StoreResult<Option<Template>> {
    sqlx::query(concat!(
        "SELECT ",
        template_cols!(""),
        " FROM templates WHERE template_id = $1"
    ))
    .bind(template_id)
    .fetch_optional(pool)
    .await?
    .map(|r| template_at(&r, 0))
    .transpose()
}

pub(super) async fn list_templates(pool: &PgPool, tenant_id: i64) -> StoreResult<Vec<Template>> {
    sqlx::query(concat!(
        "SELECT ",
        template_cols!(""),
        " FROM templates WHERE tenant_id = $1 ORDER BY template_id"
    ))
    .bind(tenant_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| template_at(r, 0))
    .collect()
}

// Flows

pub(super) async fn insert_flow(pool: &PgPool, f: &Flow) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO flows (tenant_id, name, nodes, created_ms) VALUES ($1, $2, $3, $4) RETURNING flow_id",
    )
    .bind(f.tenant_id)
    .bind(&f.name)
    .bind(to_json(&f.nodes))
    .bind(f.created_ms)
    .fetch_one(pool)
    .await?)
}

pub(super) async fn update_flow(pool: &PgPool, f: &Flow) -> StoreResult<()> {
    sqlx::query("UPDATE flows SET name = $1, nodes = $2 WHERE flow_id = $3")
        .bind(&f.name)
        .bind(to_json(&f.nodes))
        .bind(f.flow_id)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn get_flow(pool: &PgPool, flow_id: i64) -> StoreResult<Option<Flow>> {
    sqlx::query(concat!(
        "SELECT ",
        flow_cols!(),
        " FROM flows WHERE flow_id = $1"
    ))
    .bind(flow_id)
    .fetch_optional(pool)
    .await?
    .map(flow_from)
    .transpose()
}

pub(super) async fn list_flows(pool: &PgPool, tenant_id: i64) -> StoreResult<Vec<Flow>> {
    sqlx::query(concat!(
        "SELECT ",
        flow_cols!(),
        " FROM flows WHERE tenant_id = $1 ORDER BY flow_id"
    ))
    .bind(tenant_id)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(flow_from)
    .collect()
}

// Conversion feedback

pub(super) async fn upsert_backfill_rate(pool: &PgPool, r: &BackfillRate) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO backfill_rates (tenant_id, app_id, mcc, backfill_number, backfill_base, rate_bp, \
         callback_ms, received_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (app_id, mcc) DO UPDATE SET \
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
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn record_postback(pool: &PgPool, p: &Postback) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO postbacks (verification_id, tenant_id, app_id, number, backfill_ms, received_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (verification_id) DO UPDATE SET \
         number = excluded.number, backfill_ms = excluded.backfill_ms, received_ms = excluded.received_ms",
    )
    .bind(&p.verification_id)
    .bind(p.tenant_id)
    .bind(&p.app_id)
    .bind(&p.number)
    .bind(p.backfill_ms)
    .bind(p.received_ms)
    .execute(pool)
    .await?;
    Ok(())
}

// Console outbox

pub(super) async fn insert_outbox<'c, X: sqlx::PgExecutor<'c>>(
    ex: X,
    e: &OutboxEntry,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO console_outbox (at_ms, channel, to_number, sender, text, verification_id, attempt_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.at_ms)
    .bind(&e.channel)
    .bind(&e.to)
    .bind(&e.sender)
    .bind(&e.text)
    .bind(&e.verification_id)
    .bind(e.attempt_id)
    .execute(ex)
    .await?;
    Ok(())
}

/// Newest first. A negative `limit` means no limit, as in SQLite (`LIMIT NULL` in PostgreSQL).
pub(super) async fn list_outbox(pool: &PgPool, limit: i64) -> StoreResult<Vec<OutboxEntry>> {
    sqlx::query(
        "SELECT id, at_ms, channel, to_number, sender, text, verification_id, attempt_id \
         FROM console_outbox ORDER BY id DESC LIMIT $1",
    )
    .bind((limit >= 0).then_some(limit))
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| {
        Ok(OutboxEntry {
            id: r.try_get(0)?,
            at_ms: r.try_get(1)?,
            channel: r.try_get(2)?,
            to: r.try_get(3)?,
            sender: r.try_get(4)?,
            text: r.try_get(5)?,
            verification_id: r.try_get(6)?,
            attempt_id: r.try_get(7)?,
        })
    })
    .collect()
}
