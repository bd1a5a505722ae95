//! SGate merchants: their keys, products and modes, and the system key pair responses are
//! signed with.
//!
//! A merchant is a tenant of kind `sgate` (its API key, enabled flag and IP allow-list are the
//! tenant's) with an RSA public key, a sandbox flag and one app: code expiry 5 minutes, one
//! send per minute per number, and one template per product name carrying the `stcpay` text.

use std::sync::Arc;

use anyhow::Context;

use super::{Service, ServiceError, ServiceResult};
use crate::crypto::{RsaSigner, RsaVerifier};
use crate::domain::code::CodeType;
use crate::domain::ids::{new_app_id, random_alnum};
use crate::domain::limits::LimitSetting;
use crate::domain::sgate;
use crate::store::{App, Merchant, MerchantUpdate, NewMerchant, NewTenant, Template};

/// The name of the SGate signing key in the store.
const SYSTEM_KEY: &str = "sgate";

fn system_key_context() -> String {
    format!("system-key:{SYSTEM_KEY}")
}

/// A new merchant's settings, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct MerchantInput {
    pub name: String,
    /// PEM, PKCS#8 or PKCS#1.
    pub public_key_pem: String,
    pub sandbox: bool,
    pub app_names: Vec<String>,
}

/// Changes to a merchant; `None` keeps the setting.
#[derive(Debug, Clone, Default)]
pub struct MerchantChange {
    pub public_key_pem: Option<String>,
    pub sandbox: Option<bool>,
    /// Replaces the product names.
    pub app_names: Option<Vec<String>>,
}

/// Parsed keys and the system signer, shared by every request.
#[derive(Default)]
pub struct KeyCache {
    signer: tokio::sync::OnceCell<Arc<RsaSigner>>,
    /// Merchant public keys by their PEM.
    verifiers: super::cache::BoundedCache<RsaVerifier>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyCache(***)")
    }
}

fn public_key(pem: &str) -> ServiceResult<RsaVerifier> {
    RsaVerifier::from_pem(pem).map_err(|e| ServiceError::invalid("public-key", e.to_string()))
}

/// The product names, checked, without repeats, in the order given.
fn product_names(names: &[String]) -> ServiceResult<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if let Some(problem) = sgate::app_name_problem(n) {
            return Err(ServiceError::invalid(
                "app-name",
                format!("{n:?} {problem}"),
            ));
        }
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    Ok(out)
}

/// The template that carries a product's text.
fn product_template(name: &str, now_ms: i64) -> Template {
    Template {
        template_id: 0,
        tenant_id: 0,
        app_id: String::new(),
        name: name.to_string(),
        text: sgate::message_text(name),
        code_type: CodeType::Numeric.as_i64(),
        code_length: sgate::CODE_LENGTH,
        speech_rate: 50,
        language: "EN".into(),
        max_duration: 59,
        repeat_cnt: 1,
        sender_id: None,
        created_ms: now_ms,
    }
}

impl Service {
    /// Registers a merchant with a fresh API key. Its public key is stored as PKCS#8 PEM.
    pub async fn create_merchant(&self, input: MerchantInput) -> ServiceResult<Merchant> {
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(ServiceError::invalid("name", "must be 1-64 characters"));
        }
        let key = public_key(&input.public_key_pem)?;
        let names = product_names(&input.app_names)?;
        let now_ms = self.now_ms();
        let merchant = self
            .store
            .insert_merchant(&NewMerchant {
                tenant: NewTenant {
                    name: name.to_string(),
                    api_key: random_alnum(24),
                    // A merchant signs with its RSA key; it has no shared secret.
                    secret_enc: String::new(),
                    created_ms: now_ms,
                },
                public_key: key.to_pem().map_err(|e| ServiceError::Internal(e.into()))?,
                sandbox: input.sandbox,
                app: App {
                    app_id: new_app_id(),
                    tenant_id: 0,
                    name: "sgate".into(),
                    code_expiry: sgate::CODE_EXPIRY_MINUTES,
                    total_limit: LimitSetting::default(),
                    // One send per minute per number: the period limit's atomic window.
                    phone_limit: LimitSetting {
                        enabled: true,
                        unit: Some(3),
                        period: Some(1),
                        limit: Some(1),
                    },
                    created_ms: now_ms,
                },
                templates: names.iter().map(|n| product_template(n, now_ms)).collect(),
            })
            .await?;
        tracing::info!(
            tenant.id = merchant.tenant.id,
            merchant.name = %merchant.tenant.name,
            merchant.sandbox = merchant.sandbox,
            "merchant created"
        );
        Ok(merchant)
    }

    pub async fn list_merchants(&self) -> ServiceResult<Vec<Merchant>> {
        Ok(self.store.list_merchants().await?)
    }

    pub async fn merchant_by_key(&self, api_key: &str) -> ServiceResult<Option<Merchant>> {
        Ok(self.store.merchant_by_key(api_key).await?)
    }

    /// Changes a merchant's key, mode or product names.
    pub async fn update_merchant(
        &self,
        api_key: &str,
        change: MerchantChange,
    ) -> ServiceResult<Merchant> {
        let public_key = match &change.public_key_pem {
            Some(pem) => Some(
                public_key(pem)?
                    .to_pem()
                    .map_err(|e| ServiceError::Internal(e.into()))?,
            ),
            None => None,
        };
        let now_ms = self.now_ms();
        let templates = match &change.app_names {
            Some(names) => Some(
                product_names(names)?
                    .iter()
                    .map(|n| product_template(n, now_ms))
                    .collect(),
            ),
            None => None,
        };
        self.store
            .update_merchant(
                api_key,
                &MerchantUpdate {
                    public_key,
                    sandbox: change.sandbox,
                    templates,
                },
            )
            .await?
            .ok_or(ServiceError::NotFound("merchant"))
    }

    /// Records a request nonce; `false` when the tenant used it within its window (a replay).
    pub async fn remember_nonce(
        &self,
        tenant_id: i64,
        nonce: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> ServiceResult<bool> {
        Ok(self
            .store
            .remember_nonce(tenant_id, nonce, now_ms, expires_ms)
            .await?)
    }

    /// Whether the tenant used this nonce within its window (nothing is recorded).
    pub async fn nonce_seen(
        &self,
        tenant_id: i64,
        nonce: &str,
        now_ms: i64,
    ) -> ServiceResult<bool> {
        Ok(self.store.nonce_seen(tenant_id, nonce, now_ms).await?)
    }

    /// The merchant's public key, parsed once per distinct PEM.
    pub fn merchant_verifier(&self, merchant: &Merchant) -> ServiceResult<RsaVerifier> {
        let cache = &self.keys_cache.verifiers;
        if let Some(v) = cache.get(&merchant.public_key) {
            return Ok(v);
        }
        let v = RsaVerifier::from_pem(&merchant.public_key)
            .with_context(|| format!("the stored public key of merchant {}", merchant.tenant.id))
            .map_err(ServiceError::Internal)?;
        cache.put(&merchant.public_key, v.clone());
        Ok(v)
    }

    /// The key pair SGate responses are signed with: generated on first use (by whichever
    /// process gets there first; the others adopt it), sealed under the master key.
    pub async fn system_signer(&self) -> ServiceResult<Arc<RsaSigner>> {
        self.keys_cache
            .signer
            .get_or_try_init(|| async {
                let (sealed, _) = match self.store.system_key(SYSTEM_KEY).await? {
                    Some(k) => k,
                    None => {
                        let signer = tokio::task::spawn_blocking(RsaSigner::generate)
                            .await
                            .context("generating the system key")
                            .map_err(ServiceError::Internal)?
                            .map_err(|e| ServiceError::Internal(e.into()))?;
                        let private = signer
                            .to_pkcs8_base64()
                            .map_err(|e| ServiceError::Internal(e.into()))?;
                        let public = signer
                            .public_pem()
                            .map_err(|e| ServiceError::Internal(e.into()))?;
                        let stored = self
                            .store
                            .insert_system_key(
                                SYSTEM_KEY,
                                &self.keys.seal(&private, &system_key_context()),
                                &public,
                                self.now_ms(),
                            )
                            .await?;
                        tracing::info!("SGate system key pair generated");
                        stored
                    }
                };
                let private = self
                    .keys
                    .open(&sealed, &system_key_context())
                    .context("unsealing the SGate system key (is this the master key it was sealed under?)")
                    .map_err(ServiceError::Internal)?;
                RsaSigner::from_pkcs8_base64(&private)
                    .map(Arc::new)
                    .map_err(|e| ServiceError::Internal(e.into()))
            })
            .await
            .cloned()
    }

    /// The system public key (PEM) merchants verify responses with.
    pub async fn system_public_key(&self) -> ServiceResult<String> {
        self.system_signer()
            .await?
            .public_pem()
            .map_err(|e| ServiceError::Internal(e.into()))
    }
}
