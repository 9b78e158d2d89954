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

pub mod admission;
pub mod cost;
pub mod exec;
mod pipeline;
pub mod runtime;
pub mod single_flight;
pub mod stats;
