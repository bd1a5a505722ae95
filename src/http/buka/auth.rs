//! Buka authentication: `Api-Key`, `Timestamp` (Unix seconds), `Sign` = MD5(key + secret +
//! timestamp). Checked in this order: key known and enabled (`-1`), caller IP in the tenant's
//! allow-list (`-2`), timestamp within the tolerance (`-16`), signature (`-1`).
//!
//! Two extractors run the same checks. [`Caller`] reads the tenant row from the store on every
//! request. [`FastCaller`], for the calls that write in one store transaction (send, sendRule,
//! resend, verify), checks against the tenant row as last read and hands its
//! [`TenantGuard`] to that transaction, which refuses it if the row changed meanwhile; then
//! [`FastCaller::run`] authenticates again on the fresh row. Either way a `tenant disable` or
//! `tenant allow-ip` from the CLI applies to the next request.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::envelope::BukaError;
use crate::crypto::buka_sign_matches;
use crate::http::AppState;
use crate::service::{ServiceError, ServiceResult, ip_allowed};
use crate::store::{Tenant, TenantGuard, tenant_kind};

/// The authenticated tenant of a Buka request, read from the store for this request.
pub struct Caller(pub Tenant);

/// The authenticated tenant of a Buka request whose store call checks a [`TenantGuard`].
pub struct FastCaller {
    tenant_id: i64,
    /// Set when the tenant row came from the cache.
    guard: Option<TenantGuard>,
    creds: Credentials,
}

/// A request's authentication headers and address.
struct Credentials {
    key: String,
    sign: String,
    ts: String,
    ip: Option<IpAddr>,
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl Credentials {
    fn of(parts: &Parts) -> Result<Self, BukaError> {
        let key = header(parts, "api-key")
            .ok_or_else(|| BukaError::new("-1", "authentication failed: Api-Key header missing"))?;
        let sign = header(parts, "sign")
            .ok_or_else(|| BukaError::new("-1", "authentication failed: Sign header missing"))?;
        let ts =
            header(parts, "timestamp").ok_or_else(|| BukaError::new("-16", "timestamp missing"))?;
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Self {
            key: key.to_string(),
            sign: sign.to_string(),
            ts: ts.to_string(),
            ip,
        })
    }

    /// Every check, in the contract's order, against `tenant` (the row of the key, if any).
    fn check(&self, st: &AppState, tenant: Option<Tenant>) -> Result<Tenant, BukaError> {
        let tenant = tenant
            // An SGate merchant's key has no secret and signs nothing here.
            .filter(|t| t.enabled && t.kind == tenant_kind::BUKA)
            .ok_or_else(|| BukaError::new("-1", "authentication failed"))?;
        if !tenant.allow_ips.is_empty()
            && !self.ip.is_some_and(|ip| ip_allowed(&tenant.allow_ips, ip))
        {
            return Err(BukaError::new("-2", "restricted IP access"));
        }
        let ts_secs: i64 = self.ts.parse().map_err(|_| {
            BukaError::new(
                "-16",
                "timestamp expires: Timestamp must be Unix time in seconds",
            )
        })?;
        let now = st.service.clock.now().timestamp();
        if now.abs_diff(ts_secs) > st.settings.timestamp_tolerance_secs.unsigned_abs() {
            return Err(BukaError::new("-16", "timestamp expires"));
        }
        let secret = st.service.tenant_secret(&tenant).map_err(BukaError::from)?;
        if !buka_sign_matches(&self.key, &secret, &self.ts, &self.sign) {
            return Err(BukaError::new("-1", "authentication failed"));
        }
        Ok(tenant)
    }

    /// Reads the tenant row now and checks against it.
    async fn check_fresh(&self, st: &AppState) -> Result<Tenant, BukaError> {
        let tenant = st
            .service
            .tenant_by_key(&self.key)
            .await
            .map_err(BukaError::from)?;
        let tenant_id = tenant.as_ref().map(|t| t.id);
        self.check(st, tenant).inspect_err(|e| {
            if e.status == "-2" {
                tracing::warn!(tenant.id = ?tenant_id, client.ip = ?self.ip, "request from an address outside the allow-list");
            }
        })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = BukaError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let creds = Credentials::of(parts)?;
        Ok(Caller(creds.check_fresh(st).await?))
    }
}

impl FromRequestParts<AppState> for FastCaller {
    type Rejection = BukaError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let creds = Credentials::of(parts)?;
        // A cached row that passes goes with its guard; one that fails may be out of date
        // (a tenant enabled again, an address added), so the answer comes from a fresh read.
        if let Some((tenant, guard)) = st.service.cached_tenant(&creds.key)
            && let Ok(tenant) = creds.check(st, Some(tenant))
        {
            return Ok(FastCaller {
                tenant_id: tenant.id,
                guard: Some(guard),
                creds,
            });
        }
        let tenant = creds.check_fresh(st).await?;
        Ok(FastCaller {
            tenant_id: tenant.id,
            guard: None,
            creds,
        })
    }
}

impl FastCaller {
    /// Runs `op` for the tenant, with the guard of the cached row it was authenticated with.
    /// If the row changed since, authenticates again on the fresh row and runs `op` once more
    /// (without a guard: the row was just read).
    pub async fn run<T, F, Fut>(&self, st: &AppState, op: F) -> Result<T, BukaError>
    where
        F: Fn(i64, Option<TenantGuard>) -> Fut,
        Fut: Future<Output = ServiceResult<T>>,
    {
        match op(self.tenant_id, self.guard.clone()).await {
            Err(ServiceError::TenantChanged) => {
                let tenant = self.creds.check_fresh(st).await?;
                Ok(op(tenant.id, None).await?)
            }
            other => Ok(other?),
        }
    }
}
