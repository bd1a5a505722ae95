//! One integration-test binary: every test starts the real server (see `harness`).

mod harness;
#[path = "../common/pg_schema.rs"]
mod pg_schema;

mod auth;
mod catalog;
mod cli;
mod cluster;
mod concurrency;
mod crash;
mod delivery;
mod flows;
mod metrics;
mod openapi;
mod peers;
mod routing;
mod sgate;
mod sgate_example;
mod smpp;
mod upstream_http;
mod verification;
