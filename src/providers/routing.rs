//! Routes: which provider carries a channel, with its sender, prices and receipt timeout.
//!
//! Routes are tried in configuration order. A flow node with `channelCut` 0 moves to another
//! route than the previous attempt on its channel used, when there is one; `channelCut` 1
//! keeps that route. Per-country rules, priorities and health come with the real upstream
//! providers.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Provider;
use crate::domain::Channel;

/// `[[routes]]`: one upstream route.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique; shown in records, logs and metrics, and part of the hook URL.
    pub name: String,
    /// `smpp`, `kannel`, `twilio`, `twilio-voice`, `vonage` or `console`.
    pub provider: String,
    /// Channels this route carries (`sms`, `call`); default: every channel its provider can.
    pub channels: Option<Vec<String>>,
    /// ISO 3166 countries this route serves (e.g. `["NL", "BE"]`); empty: every country.
    #[serde(default)]
    pub countries: Vec<String>,
    /// E.164 prefixes this route serves (e.g. `["3161", "3162"]`); empty: every number.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Lower goes first (default 100); equal priorities keep configuration order.
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// Sender id when the template names none.
    pub sender: Option<String>,
    /// Receipt timeout of this route, seconds (default `delivery.receipt_timeout_secs`).
    pub receipt_timeout_secs: Option<i64>,
    /// Throughput cap, messages per second.
    pub max_per_second: Option<f64>,
    /// Most submits waiting for the upstream's answer at once (the SMPP window).
    pub window: Option<usize>,
    /// Price of one SMS segment by destination: keys `default`, ISO countries (`NL`) or E.164
    /// prefixes (`3161`); the longest matching prefix wins, then the country, then `default`.
    #[serde(default)]
    pub sms_price: BTreeMap<String, String>,
    /// Price of one started call billing block, keyed as `sms_price`.
    #[serde(default)]
    pub call_price: BTreeMap<String, String>,
    /// Call billing increments, e.g. `20+20` (default `60+60`).
    pub bill_period: Option<String>,
    /// Consecutive failures that open the route's circuit (default 5).
    #[serde(default = "default_circuit_failures")]
    pub circuit_failures: u32,
    /// How long an open circuit keeps the route out of use, seconds (default 30).
    #[serde(default = "default_circuit_cooldown")]
    pub circuit_cooldown_secs: u64,
    pub smpp: Option<super::smpp::SmppConfig>,
    pub kannel: Option<super::kannel::KannelConfig>,
    pub twilio: Option<super::twilio::TwilioConfig>,
    pub vonage: Option<super::vonage::VonageConfig>,
}

fn default_priority() -> i64 {
    100
}
fn default_circuit_failures() -> u32 {
    5
}
fn default_circuit_cooldown() -> u64 {
    30
}

pub struct Route {
    pub name: String,
    pub provider: Arc<dyn Provider>,
    /// Sender id when the template names none.
    pub default_sender: Option<String>,
    pub price_per_segment_micros: i64,
    pub price_per_call_block_micros: i64,
    /// Call billing increments (first block, further blocks), seconds.
    pub bill_period: (u32, u32),
    /// How long an accepted message may wait for its receipt before it counts as failed.
    pub receipt_timeout_ms: i64,
}

/// Which route a flow node wants, relative to the route the previous attempt on its channel
/// used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteChoice<'a> {
    /// The first route that carries the channel.
    First,
    /// Another route than this one, if the channel has one (`channelCut` 0).
    Other(&'a str),
    /// This route, if it still carries the channel (`channelCut` 1).
    Same(&'a str),
}

#[derive(Default)]
pub struct Routing {
    routes: Vec<Route>,
}

impl Routing {
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    /// The first route for a channel, if any route carries it.
    pub fn pick(&self, channel: Channel) -> Option<(usize, &Route)> {
        self.choose(channel, RouteChoice::First)
    }

    /// The route for a channel as `choice` asks, falling back to the first that carries it.
    pub fn choose(&self, channel: Channel, choice: RouteChoice<'_>) -> Option<(usize, &Route)> {
        let mut carrying = self
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.provider.supports(channel));
        let wanted = match choice {
            RouteChoice::First => None,
            RouteChoice::Other(prev) => carrying.clone().find(|(_, r)| r.name != prev),
            RouteChoice::Same(prev) => carrying.clone().find(|(_, r)| r.name == prev),
        };
        wanted.or_else(|| carrying.next())
    }

    /// A route by name, with its index.
    pub fn by_name(&self, name: &str) -> Option<(usize, &Route)> {
        self.routes.iter().enumerate().find(|(_, r)| r.name == name)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::providers::memory::MemoryProvider;

    fn route(name: &str) -> Route {
        Route {
            name: name.into(),
            provider: Arc::new(MemoryProvider::named(name, Arc::new(SystemClock))),
            default_sender: None,
            price_per_segment_micros: 0,
            price_per_call_block_micros: 0,
            bill_period: (60, 60),
            receipt_timeout_ms: 600_000,
        }
    }

    #[test]
    fn channel_cut_moves_or_keeps_the_route() {
        let r = Routing::new(vec![route("a"), route("b")]);
        let name = |c| r.choose(Channel::Sms, c).map(|(_, r)| r.name.clone());
        assert_eq!(name(RouteChoice::First).as_deref(), Some("a"));
        assert_eq!(name(RouteChoice::Other("a")).as_deref(), Some("b"));
        assert_eq!(name(RouteChoice::Other("b")).as_deref(), Some("a"));
        assert_eq!(name(RouteChoice::Same("b")).as_deref(), Some("b"));
        // A route that is gone: the first one.
        assert_eq!(name(RouteChoice::Same("gone")).as_deref(), Some("a"));
        assert!(r.choose(Channel::Sna, RouteChoice::First).is_none());
    }

    #[test]
    fn one_route_is_used_even_when_another_is_asked_for() {
        let r = Routing::new(vec![route("only")]);
        let (_, chosen) = r.choose(Channel::Call, RouteChoice::Other("only")).unwrap();
        assert_eq!(chosen.name, "only");
    }
}
