//! Buka authentication: `Api-Key`, `Timestamp` (Unix seconds), `Sign` = MD5(key + secret +
//! timestamp). Checked in this order: key known and enabled (`-1`), caller IP in the tenant's
//! allow-list (`-2`), timestamp within the tolerance (`-16`), signature (`-1`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::envelope::BukaError;
use crate::crypto::buka_sign_matches;
use crate::http::AppState;
use crate::service::ip_allowed;
use crate::store::{Tenant, tenant_kind};

/// The authenticated tenant of a Buka request.
pub struct Caller(pub Tenant);

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = BukaError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let key = header(parts, "api-key")
            .ok_or_else(|| BukaError::new("-1", "authentication failed: Api-Key header missing"))?;
        let sign = header(parts, "sign")
            .ok_or_else(|| BukaError::new("-1", "authentication failed: Sign header missing"))?;
        let ts =
            header(parts, "timestamp").ok_or_else(|| BukaError::new("-16", "timestamp missing"))?;
        let tenant = st
            .service
            .tenant_by_key(key)
            .await
            .map_err(BukaError::from)?
            // An SGate merchant's key has no secret and signs nothing here.
            .filter(|t| t.enabled && t.kind == tenant_kind::BUKA)
            .ok_or_else(|| BukaError::new("-1", "authentication failed"))?;
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if !tenant.allow_ips.is_empty() && !ip.is_some_and(|ip| ip_allowed(&tenant.allow_ips, ip)) {
            tracing::warn!(tenant.id = tenant.id, client.ip = ?ip, "request from an address outside the allow-list");
            return Err(BukaError::new("-2", "restricted IP access"));
        }
        let ts_secs: i64 = ts.parse().map_err(|_| {
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
        if !buka_sign_matches(key, &secret, ts, sign) {
            return Err(BukaError::new("-1", "authentication failed"));
        }
        Ok(Caller(tenant))
    }
}
