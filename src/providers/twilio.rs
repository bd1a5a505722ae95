//! Twilio-style routes: the Messages API (SMS) and the Calls API (voice), with status
//! callbacks checked by `X-Twilio-Signature`.
//! SKELETON: the interface the rest of the code builds on; the helper fills it in.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Provider, ProviderContext};
use crate::config::Secret;

/// `[routes.twilio]`, for `provider = "twilio"` (SMS) and `provider = "twilio-voice"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// `https://api.twilio.com` unless a compatible API lives elsewhere.
    #[serde(default = "default_base")]
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: Secret,
    /// The number or alphanumeric id to send from (else the route's / template's sender).
    pub from: Option<String>,
    /// A Messaging Service instead of `from` (SMS only).
    pub messaging_service_sid: Option<String>,
}

fn default_base() -> String {
    "https://api.twilio.com".into()
}

impl TwilioConfig {
    pub fn problems(&self, route: &str) -> Vec<String> {
        let _ = route;
        Vec::new()
    }
}

/// `voice` false: SMS through Messages; true: calls that speak the code.
pub fn build(
    cfg: &TwilioConfig,
    voice: bool,
    ctx: ProviderContext,
) -> anyhow::Result<Arc<dyn Provider>> {
    let _ = (cfg, voice, ctx);
    anyhow::bail!("Twilio routes are not built yet")
}
