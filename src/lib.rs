//! The `prs` application: the job CLI and the built-in simulator.
//! The plugin itself (table functions, clients, samplers) is the `datafusion-prs` crate in `udfs/`.

pub mod cli;
pub mod dry_run;
pub mod sim;
