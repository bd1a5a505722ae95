//! Routing: match rules, priorities, prices, circuits, failover between routes.
