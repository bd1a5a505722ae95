//! Tenants: the owners of API keys, and the checks on who may call.

use std::net::IpAddr;

use anyhow::Context;
use ipnet::IpNet;

use super::{Service, ServiceError, ServiceResult};
use crate::domain::ids::random_alnum;
use crate::store::{NewTenant, Tenant, TenantGuard, tenant_kind};

/// Unsealed API secrets keyed by their sealed form.
pub type SecretCache = super::cache::BoundedCache<String>;

/// Tenant rows by API key, as last read from the store.
///
/// A cached row only lets a request skip the lookup on the calls that check a
/// [`TenantGuard`] in their own transaction (send, resend, verify): if the row changed
/// meanwhile (the CLI disabled the tenant or changed its allow-list), that call fails with
/// [`ServiceError::TenantChanged`] and the dialect authenticates again on the fresh row.
pub type TenantCache = super::cache::BoundedCache<Tenant>;

/// A new tenant with its secret in the clear, shown once.
#[derive(Debug)]
pub struct CreatedTenant {
    pub tenant: Tenant,
    pub api_secret: String,
}

fn kind_noun(kind: &str) -> &'static str {
    if kind == tenant_kind::SGATE {
        "merchant"
    } else {
        "tenant"
    }
}

fn secret_context(api_key: &str) -> String {
    format!("tenant-secret:{api_key}")
}

/// Parses one allow-list entry: an address or a CIDR block. Returns its canonical form.
pub fn parse_allow_entry(s: &str) -> Option<String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc().to_string());
    }
    s.parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

/// Whether `ip` is allowed by the list (an empty list allows everyone).
pub fn ip_allowed(list: &[String], ip: IpAddr) -> bool {
    if list.is_empty() {
        return true;
    }
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    list.iter().any(|entry| {
        if let Ok(net) = entry.parse::<IpNet>() {
            net.contains(&ip)
        } else {
            entry.parse::<IpAddr>().is_ok_and(|a| a == ip)
        }
    })
}

impl Service {
    /// Creates a tenant with a fresh API key and secret; the secret is sealed at rest.
    pub async fn create_tenant(&self, name: &str) -> ServiceResult<CreatedTenant> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(ServiceError::invalid("name", "must be 1-64 characters"));
        }
        let api_key = random_alnum(16);
        let api_secret = random_alnum(32);
        let tenant = self
            .store
            .insert_tenant(&NewTenant {
                name: name.to_string(),
                secret_enc: self.keys.seal(&api_secret, &secret_context(&api_key)),
                api_key,
                created_ms: self.now_ms(),
            })
            .await?;
        tracing::info!(tenant.id = tenant.id, tenant.name = %tenant.name, "tenant created");
        Ok(CreatedTenant { tenant, api_secret })
    }

    /// The tenant row of `api_key`, read from the store now (and remembered for
    /// [`Service::cached_tenant`]).
    pub async fn tenant_by_key(&self, api_key: &str) -> ServiceResult<Option<Tenant>> {
        let tenant = self.store.tenant_by_key(api_key).await?;
        match &tenant {
            Some(t) => self.tenants.put(api_key, t.clone()),
            None => self.tenants.remove(api_key),
        }
        Ok(tenant)
    }

    /// The tenant row of `api_key` as last read, if it was: only for calls that carry its
    /// [`TenantGuard`] into their store transaction.
    pub fn cached_tenant(&self, api_key: &str) -> Option<(Tenant, TenantGuard)> {
        self.tenants.get(api_key).map(|t| {
            let guard = TenantGuard::of(&t);
            (t, guard)
        })
    }

    /// The tenant's API secret, unsealed to check a signature.
    ///
    /// Unsealed secrets are kept in memory keyed by their sealed form, which never changes
    /// for a given secret. The tenant row itself (enabled, allow-list) is read on every request
    /// or checked by the request's own transaction (see [`TenantCache`]), so `tenant disable`
    /// applies at once.
    pub fn tenant_secret(&self, tenant: &Tenant) -> ServiceResult<String> {
        if let Some(s) = self.secrets.get(&tenant.secret_enc) {
            return Ok(s);
        }
        let secret = self
            .keys
            .open(&tenant.secret_enc, &secret_context(&tenant.api_key))
            .with_context(|| format!("unsealing the API secret of tenant {}", tenant.id))
            .map_err(ServiceError::Internal)?;
        self.secrets.put(&tenant.secret_enc, secret.clone());
        Ok(secret)
    }

    /// The Buka tenants (merchants are listed by [`Service::list_merchants`]).
    pub async fn list_tenants(&self) -> ServiceResult<Vec<Tenant>> {
        let mut all = self.store.list_tenants().await?;
        all.retain(|t| t.kind == tenant_kind::BUKA);
        Ok(all)
    }

    /// Enables or disables the key of a tenant of `kind` (`tenant` or `merchant` commands).
    pub async fn set_tenant_enabled(
        &self,
        kind: &str,
        api_key: &str,
        enabled: bool,
    ) -> ServiceResult<()> {
        if self
            .store
            .set_tenant_enabled(kind, api_key, enabled)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound(kind_noun(kind)))
        }
    }

    /// Replaces the IP allow-list of a tenant of `kind` (empty = allow all). Entries are
    /// validated.
    pub async fn set_tenant_allow_ips(
        &self,
        kind: &str,
        api_key: &str,
        entries: &[String],
    ) -> ServiceResult<Vec<String>> {
        let mut list = Vec::with_capacity(entries.len());
        for e in entries {
            let parsed = parse_allow_entry(e).ok_or_else(|| {
                ServiceError::invalid(
                    "allow-ip",
                    format!("{e:?} is not an IP address or CIDR block"),
                )
            })?;
            list.push(parsed);
        }
        if self
            .store
            .set_tenant_allow_ips(kind, api_key, &list)
            .await?
        {
            Ok(list)
        } else {
            Err(ServiceError::NotFound(kind_noun(kind)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_entries() {
        assert_eq!(
            parse_allow_entry("10.0.0.7/8").as_deref(),
            Some("10.0.0.0/8")
        );
        assert_eq!(parse_allow_entry("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(parse_allow_entry("::1").as_deref(), Some("::1"));
        assert_eq!(parse_allow_entry("nope"), None);
        assert_eq!(parse_allow_entry("10.0.0.0/33"), None);
    }

    #[test]
    fn allow_list_matching() {
        let list = vec!["10.0.0.0/8".to_string(), "192.168.1.5".to_string()];
        assert!(ip_allowed(&list, "10.1.2.3".parse().unwrap()));
        assert!(ip_allowed(&list, "192.168.1.5".parse().unwrap()));
        assert!(!ip_allowed(&list, "192.168.1.6".parse().unwrap()));
        assert!(ip_allowed(&list, "::ffff:10.9.9.9".parse().unwrap()));
        assert!(ip_allowed(&[], "8.8.8.8".parse().unwrap()));
    }
}
