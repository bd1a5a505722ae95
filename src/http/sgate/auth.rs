//! SGate request authentication, in the contract's order: `User-Agent` (1211), the five `V-`
//! headers (1208), `V-Api-Version` 1 (1210), a known enabled merchant key (1201), the
//! merchant's IP allow-list (1205), the timestamp window (1204), the nonce not seen before
//! (1209), the MD5withRSA signature (1213).

use std::net::IpAddr;

use axum::http::HeaderMap;

use super::envelope::SgateError;
use crate::domain::sgate::{signing_digest, signing_string};
use crate::http::AppState;
use crate::service::ip_allowed;
use crate::store::Merchant;

/// Longest `V-Nonce-Str` accepted (the vendor: "under 128").
const NONCE_MAX: usize = 128;

/// The request as signed: everything the signature covers.
pub struct SignedRequest<'a> {
    pub headers: &'a HeaderMap,
    pub ip: Option<IpAddr>,
    /// Path and query as received, e.g. `/openApi/v1/otp/otpDetail?mobile=…`.
    pub url: &'a str,
    pub method: &'a str,
    /// The raw body (`""` for GET).
    pub body: &'a str,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The `V-Api-Key` the caller sent, if any (responses copy it).
pub fn api_key(headers: &HeaderMap) -> &str {
    header(headers, "v-api-key").unwrap_or("")
}

/// Authenticates a request; the merchant on success.
pub async fn authenticate(st: &AppState, req: &SignedRequest<'_>) -> Result<Merchant, SgateError> {
    let h = req.headers;
    if header(h, "user-agent").is_none() {
        return Err(SgateError::new(1211, "the User-Agent header is required"));
    }
    let mut values = [""; 5];
    for (slot, name) in values.iter_mut().zip([
        "V-Api-Key",
        "V-Api-Version",
        "V-Timestamp",
        "V-Nonce-Str",
        "V-Signature",
    ]) {
        *slot = header(h, name).ok_or_else(|| SgateError::new(1208, name))?;
    }
    let [key, version, timestamp, nonce, signature] = values;
    if version != "1" {
        return Err(SgateError::new(1210, "V-Api-Version must be 1"));
    }
    let merchant = st
        .service
        .merchant_by_key(key)
        .await
        .map_err(SgateError::from)?
        .filter(|m| m.tenant.enabled)
        .ok_or_else(|| SgateError::new(1201, "unknown or disabled V-Api-Key"))?;
    let allow = &merchant.tenant.allow_ips;
    if !allow.is_empty() && !req.ip.is_some_and(|ip| ip_allowed(allow, ip)) {
        tracing::warn!(tenant.id = merchant.tenant.id, client.ip = ?req.ip, "request from an address outside the allow-list");
        return Err(SgateError::new(
            1205,
            "this address is not in the merchant's allow-list",
        ));
    }
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| SgateError::new(1209, "V-Timestamp must be Unix time in seconds"))?;
    let svc = &st.service;
    let now_ms = svc.clock.now().timestamp_millis();
    let tolerance = st.settings.timestamp_tolerance_secs;
    if now_ms.div_euclid(1000).abs_diff(ts) > tolerance.unsigned_abs() {
        return Err(SgateError::new(
            1204,
            format!("V-Timestamp is more than {tolerance} s from the server's time"),
        ));
    }
    if nonce.chars().count() > NONCE_MAX {
        return Err(SgateError::new(
            1209,
            format!("V-Nonce-Str must be at most {NONCE_MAX} characters"),
        ));
    }
    let signed = signing_string(key, ts, nonce, req.url, req.method, req.body);
    let good = svc
        .merchant_verifier(&merchant)
        .map_err(SgateError::from)?
        .verify_md5(signing_digest(&signed).as_bytes(), signature);
    let tenant_id = merchant.tenant.id;
    let replay = SgateError::new(1209, "V-Nonce-Str was already used");
    if !good {
        // A forged request must not burn the nonce of a genuine one; a replayed nonce is
        // still reported first, as the contract orders the checks.
        if svc
            .nonce_seen(tenant_id, nonce, now_ms)
            .await
            .map_err(SgateError::from)?
        {
            return Err(replay);
        }
        tracing::warn!(tenant.id = tenant_id, "SGate signature did not verify");
        return Err(SgateError::new(
            1213,
            "V-Signature does not verify with the merchant's public key",
        ));
    }
    // Kept until its timestamp could no longer pass the window.
    let expires_ms = (ts + tolerance + 1) * 1000;
    if !svc
        .remember_nonce(tenant_id, nonce, now_ms, expires_ms)
        .await
        .map_err(SgateError::from)?
    {
        return Err(replay);
    }
    Ok(merchant)
}
