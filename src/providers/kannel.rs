//! Kannel routes: `sendsms` with a dlr-url pointing at this route's hook.
//! SKELETON: the interface the rest of the code builds on; the helper fills it in.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Provider, ProviderContext};
use crate::config::Secret;

/// `[routes.kannel]`: a Kannel smsbox's sendsms interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KannelConfig {
    /// e.g. `http://127.0.0.1:13013/cgi-bin/sendsms`.
    pub url: String,
    pub username: String,
    pub password: Secret,
    /// Kannel `smsc` to force, if any.
    pub smsc: Option<String>,
    /// A shared secret Kannel's dlr-url carries back (`&token=`), checked by the hook.
    pub hook_token: Option<Secret>,
}

impl KannelConfig {
    pub fn problems(&self, route: &str) -> Vec<String> {
        let _ = route;
        Vec::new()
    }
}

pub fn build(cfg: &KannelConfig, ctx: ProviderContext) -> anyhow::Result<Arc<dyn Provider>> {
    let _ = (cfg, ctx);
    anyhow::bail!("Kannel routes are not built yet")
}
