//! Running a call: what a planned call owns, and how its prompts go through it.
//!
//! * [`runtime`]: a planned call's clients, in-flight limits, sampler, checkpoint and budget;
//! * [`exec`]: the execution node and its output stream;
//! * `pipeline` (private): one partition's prompts through checkpoint, preflight, budget,
//!   sampler and store;
//! * [`admission`]: the prompt window, which prompts start when;
//! * [`single_flight`]: identical work shared within a process;
//! * [`stats`]: job and prompt counters, the budget;
//! * [`cost`]: the dry-run cost model.

pub(crate) mod admission;
pub(crate) mod cost;
pub(crate) mod exec;
mod pipeline;
pub(crate) mod runtime;
pub(crate) mod single_flight;
pub(crate) mod stats;
