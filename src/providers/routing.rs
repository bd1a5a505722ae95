//! Routes: which provider carries a channel, with its sender, prices and receipt timeout.
//!
//! Routes are tried in configuration order. A flow node with `channelCut` 0 moves to another
//! route than the previous attempt on its channel used, when there is one; `channelCut` 1
//! keeps that route. Per-country rules, priorities and health come with the real upstream
//! providers.

use std::sync::Arc;

use super::Provider;
use crate::domain::Channel;

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
