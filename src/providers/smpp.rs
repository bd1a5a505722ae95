//! SMPP 3.4 routes (rusmppc): binds, window, throughput, enquire_link, reconnect, receipts.
//! SKELETON: the interface the rest of the code builds on; the helper fills it in.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Provider, ProviderContext};
use crate::config::Secret;

/// `[routes.smpp]`: one SMPP bind (or a transmitter + receiver pair) to an SMSC.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppConfig {
    pub host: String,
    pub port: u16,
    pub system_id: String,
    pub password: Secret,
    #[serde(default)]
    pub system_type: String,
    /// `transceiver` (default) or `transmitter+receiver`.
    #[serde(default = "default_bind")]
    pub bind: String,
    #[serde(default = "default_enquire_link")]
    pub enquire_link_secs: u64,
    /// First reconnect wait; doubles up to `reconnect_max_secs`.
    #[serde(default = "default_reconnect")]
    pub reconnect_secs: u64,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_secs: u64,
    /// TON/NPI of the source address: derived from the sender when unset (alphanumeric 5/0,
    /// short code 3/0, else international 1/1).
    pub source_ton: Option<u8>,
    pub source_npi: Option<u8>,
}

fn default_bind() -> String {
    "transceiver".into()
}
fn default_enquire_link() -> u64 {
    30
}
fn default_reconnect() -> u64 {
    1
}
fn default_reconnect_max() -> u64 {
    60
}

impl SmppConfig {
    /// What is wrong with this section, each problem naming `routes.<route>.smpp.<field>`.
    pub fn problems(&self, route: &str) -> Vec<String> {
        let _ = route;
        Vec::new()
    }
}

/// Starts the bind in the background and returns the route's provider.
pub fn build(cfg: &SmppConfig, ctx: ProviderContext) -> anyhow::Result<Arc<dyn Provider>> {
    let _ = (cfg, ctx);
    anyhow::bail!("SMPP routes are not built yet")
}
