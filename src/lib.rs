//! otpgate: a self-hosted OTP verification gateway.
//!
//! Reading order, outside in:
//! - [`cli`] and [`app`]: the one binary, its subcommands and start-up;
//! - [`http`]: the front doors (the Buka/ITNIO dialect, health, OpenAPI);
//! - [`service`]: every use case, called from HTTP, the CLI and jobs alike, and the job
//!   runtime (workers, flows, receipts);
//! - [`metrics`]: Prometheus counters and the queue gauges;
//! - [`store`]: persistence behind one trait (SQLite today);
//! - [`providers`]: delivery back doors (console, in-memory) behind one trait;
//! - [`domain`]: pure types and rules with no I/O (phone numbers, codes, ids, SMS segments).

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod providers;
pub mod service;
pub mod store;
