//! What survives a crash: resume from disk, and the file operations it is built on.
//!
//! * [`checkpoint`]: each finished prompt's candidates, as Parquet, for resume;
//! * [`journal`]: each answer recorded as it arrives, so a re-run repeats only what was in
//!   flight;
//! * [`atomic`]: atomic, fsynced writes and renames (also used by hosts publishing outputs).

pub mod atomic;
pub(crate) mod checkpoint;
pub(crate) mod journal;
