//! Running a call: what a planned call owns, and how its prompts go through it.
//!
//! * [`runtime`]: a planned call's clients, in-flight limits, sampler, checkpoint and budget;
//! * [`exec`]: the execution node and its output stream;
//! * [`pipeline`]: one partition's prompts through checkpoint, preflight, budget,
//!   sampler and store;
//! * [`admission`]: the prompt window, which prompts start when;
//! * [`single_flight`]: identical work shared within a process;
//! * [`stats`]: job and prompt counters, the budget;
//! * [`cost`]: the dry-run cost model.
//!
//! The files are private to this folder; other wings and the crate root use its face below.

mod admission;
mod cost;
mod exec;
mod pipeline;
mod runtime;
mod single_flight;
mod stats;

// The face. Public (re-exported by the crate root): the node and the counters.
pub use exec::SampleExec;
pub use stats::{DataChecks, JobStats, StatsSnapshot};
// For the other wings: the runtime a plan holds (`sql`), the per-prompt tally the clients
// count into (`client`), and the window's "first layer done" signal (`sampler`).
pub(crate) use admission::first_layer_done;
pub(crate) use runtime::CallRuntime;
pub(crate) use stats::PromptTally;
