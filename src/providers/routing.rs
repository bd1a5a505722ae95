//! Routes: which provider carries a channel, with its sender and prices.
//!
//! Today there is one route per configured provider; per-country rules, priorities and health
//! come with the real upstream providers.

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
}

#[derive(Default)]
pub struct Routing {
    routes: Vec<Route>,
}

impl Routing {
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    /// The route for a channel, if any route carries it.
    pub fn pick(&self, channel: Channel) -> Option<(usize, &Route)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.provider.supports(channel))
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}
