//! Running a call: what a planned call owns, and how its prompts go through it.
//!
//! * [`runtime`]: a planned call's clients, in-flight limits, sampler, checkpoint and budget;
//! * [`exec`]: the execution node and its output stream;
//! * [`pipeline`]: one partition's prompts through checkpoint, preflight, budget,
//!   sampler and store;
//! * [`admission`]: the prompt window, which prompts start when;
//! * [`prompt_scope`]: one prompt's work in progress, as its requests see it (its key, its
//!   place in the window, its tally);
//! * [`single_flight`]: identical work shared within a process;
//! * [`stats`]: job and prompt counters, the budget;
//! * [`cost`]: the dry-run cost model.
//!
//! The files are private to this folder; other wings and the crate root use its face below.

mod admission;
mod cost;
mod exec;
mod pipeline;
mod prompt_scope;
mod runtime;
mod single_flight;
mod stats;

// The face. Public (re-exported by the crate root): the node and the counters.
pub use exec::SampleExec;
pub use stats::{DataChecks, JobStats, StatsSnapshot};
// For the other wings: the runtime a plan holds (`sql`); from the prompt's scope, the tally
// the clients count into (`client`), the window's "first layer done" signal (`sampler`) and
// the key the journal records answers under (`durability`).
#[cfg(test)]
pub(crate) use prompt_scope::PromptScope;
pub(crate) use prompt_scope::{first_layer_done, key as prompt_key_in_scope, PromptTally};
pub(crate) use runtime::CallRuntime;
