//! The end-to-end tests, one binary: each module is one subject (see docs/architecture.md's layout
//! section). One binary instead of one per file links the whole stack (DataFusion, Ballista,
//! the HTTP servers) once, which saves CI several minutes and gigabytes of disk.
//!
//! `cargo test --test e2e MODULE::` runs one subject, e.g. `cargo test --test e2e shape::`.

mod common;

mod cli;
#[cfg(feature = "cluster")]
mod cluster;
mod data_checks;
mod docs;
mod http_endpoints;
mod judge;
mod outputs;
mod portable_requests;
mod report;
mod resilience;
mod resume;
mod reward_components;
mod reward_input;
mod secrets;
mod shape;
mod shell;
mod verified;
