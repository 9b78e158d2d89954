//! The `prs` application: the job CLI and the built-in simulator.
//! The plugin itself (table functions, clients, samplers) is the `datafusion-prs` crate in `udfs/`.

pub mod cli;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod dry_run;
pub mod report;
pub mod sim;
