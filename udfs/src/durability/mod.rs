//! What survives a crash: resume from disk, and the file operations it is built on.
//!
//! * [`checkpoint`]: each finished prompt's candidates, as Parquet, for resume;
//! * [`journal`]: each answer recorded as it arrives, so a re-run repeats only what was in
//!   flight;
//! * [`atomic`]: atomic, fsynced writes and renames (also used by hosts publishing outputs).
//!
//! The files are private to this folder, except `atomic`: it stays a `pub mod` because the
//! public API re-exports it as a module (`datafusion_prs::atomic`, used by the `prs` CLI and
//! the report crate to publish their outputs). Other wings use the face below (and `atomic`).

pub mod atomic;
mod checkpoint;
mod journal;

// The face, for the other wings (`run`): checkpoint keys and store, the journal and its
// journaled endpoints.
pub(crate) use checkpoint::{hash_parts, prompt_key, Checkpoint};
pub(crate) use journal::{Journal, JournaledPolicy, JournaledReward};
