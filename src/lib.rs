//! The `prs` application: the job CLI (`prs sql`, `prs sim`, `prs report`, `prs settings`, the
//! cluster roles). The plugin itself (table functions, clients, samplers) is the
//! `datafusion-prs` crate in `udfs/`; the simulator and the report page are the library crates
//! `prs-sim` and `prs-report` in `crates/`.

pub mod cli;
#[cfg(feature = "cluster")]
pub mod cluster;
