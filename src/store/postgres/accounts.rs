use sqlx::PgPool;

use crate::store::*;

pub(super) async fn insert_tenant(pool: &PgPool, t: &NewTenant) -> StoreResult<Tenant> {
    unimplemented!("insert_tenant")
}

pub(super) async fn tenant_by_key(pool: &PgPool, api_key: &str) -> StoreResult<Option<Tenant>> {
    unimplemented!("tenant_by_key")
}

pub(super) async fn list_tenants(pool: &PgPool) -> StoreResult<Vec<Tenant>> {
    unimplemented!("list_tenants")
}

pub(super) async fn count_tenants(pool: &PgPool) -> StoreResult<i64> {
    unimplemented!("count_tenants")
}

pub(super) async fn set_tenant_enabled(
    pool: &PgPool,
    kind: &str,
    api_key: &str,
    enabled: bool,
) -> StoreResult<bool> {
    unimplemented!("set_tenant_enabled")
}

pub(super) async fn set_tenant_allow_ips(
    pool: &PgPool,
    kind: &str,
    api_key: &str,
    allow: &[String],
) -> StoreResult<bool> {
    unimplemented!("set_tenant_allow_ips")
}

pub(super) async fn insert_merchant(pool: &PgPool, m: &NewMerchant) -> StoreResult<Merchant> {
    unimplemented!("insert_merchant")
}

pub(super) async fn merchant_by_key(pool: &PgPool, api_key: &str) -> StoreResult<Option<Merchant>> {
    unimplemented!("merchant_by_key")
}

pub(super) async fn list_merchants(pool: &PgPool) -> StoreResult<Vec<Merchant>> {
    unimplemented!("list_merchants")
}

pub(super) async fn update_merchant(
    pool: &PgPool,
    api_key: &str,
    update: &MerchantUpdate,
) -> StoreResult<Option<Merchant>> {
    unimplemented!("update_merchant")
}

pub(super) async fn remember_nonce(
    pool: &PgPool,
    tenant_id: i64,
    nonce: &str,
    now_ms: i64,
    expires_ms: i64,
) -> StoreResult<bool> {
    unimplemented!("remember_nonce")
}

pub(super) async fn nonce_seen(
    pool: &PgPool,
    tenant_id: i64,
    nonce: &str,
    now_ms: i64,
) -> StoreResult<bool> {
    unimplemented!("nonce_seen")
}

pub(super) async fn system_key(pool: &PgPool, name: &str) -> StoreResult<Option<(String, String)>> {
    unimplemented!("system_key")
}

pub(super) async fn insert_system_key(
    pool: &PgPool,
    name: &str,
    private_enc: &str,
    public_pem: &str,
    now_ms: i64,
) -> StoreResult<(String, String)> {
    unimplemented!("insert_system_key")
}

pub(super) async fn record_sandbox_send(
    pool: &PgPool,
    tenant_id: i64,
    mobile: &str,
    at_ms: i64,
) -> StoreResult<()> {
    unimplemented!("record_sandbox_send")
}

pub(super) async fn sandbox_send(
    pool: &PgPool,
    tenant_id: i64,
    mobile: &str,
) -> StoreResult<Option<i64>> {
    unimplemented!("sandbox_send")
}

pub(super) async fn insert_app(pool: &PgPool, app: &App) -> StoreResult<()> {
    unimplemented!("insert_app")
}

pub(super) async fn update_app(pool: &PgPool, app: &App) -> StoreResult<()> {
    unimplemented!("update_app")
}

pub(super) async fn get_app(pool: &PgPool, app_id: &str) -> StoreResult<Option<App>> {
    unimplemented!("get_app")
}

pub(super) async fn app_with_template(
    pool: &PgPool,
    app_id: &str,
    template_id: Option<i64>,
) -> StoreResult<(Option<App>, Option<Template>)> {
    unimplemented!("app_with_template")
}

pub(super) async fn insert_template(pool: &PgPool, t: &Template) -> StoreResult<i64> {
    unimplemented!("insert_template")
}

pub(super) async fn update_template(pool: &PgPool, t: &Template) -> StoreResult<()> {
    unimplemented!("update_template")
}

pub(super) async fn get_template(pool: &PgPool, template_id: i64) -> StoreResult<Option<Template>> {
    unimplemented!("get_template")
}

pub(super) async fn list_templates(pool: &PgPool, tenant_id: i64) -> StoreResult<Vec<Template>> {
    unimplemented!("list_templates")
}

pub(super) async fn insert_flow(pool: &PgPool, f: &Flow) -> StoreResult<i64> {
    unimplemented!("insert_flow")
}

pub(super) async fn update_flow(pool: &PgPool, f: &Flow) -> StoreResult<()> {
    unimplemented!("update_flow")
}

pub(super) async fn get_flow(pool: &PgPool, flow_id: i64) -> StoreResult<Option<Flow>> {
    unimplemented!("get_flow")
}

pub(super) async fn list_flows(pool: &PgPool, tenant_id: i64) -> StoreResult<Vec<Flow>> {
    unimplemented!("list_flows")
}

pub(super) async fn upsert_backfill_rate(pool: &PgPool, r: &BackfillRate) -> StoreResult<()> {
    unimplemented!("upsert_backfill_rate")
}

pub(super) async fn record_postback(pool: &PgPool, p: &Postback) -> StoreResult<()> {
    unimplemented!("record_postback")
}

pub(super) async fn insert_outbox(pool: &PgPool, e: &OutboxEntry) -> StoreResult<()> {
    unimplemented!("insert_outbox")
}

pub(super) async fn list_outbox(pool: &PgPool, limit: i64) -> StoreResult<Vec<OutboxEntry>> {
    unimplemented!("list_outbox")
}
