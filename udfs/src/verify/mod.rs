//! Verified rewards: whether a candidate's answer matches the prompt's reference answer.
//!
//! * [`extract`]: where the final answer of a text is (`\boxed{}`, a math span, a number);
//! * [`math`]: an answer read as maths (the grammar is `udfs/src/verify/math.pest`);
//! * [`exact`]: exact evaluation (big rationals) and when two answers are the same;
//! * [`bounded`]: checks run off the async runtime, each under `prs.verify_timeout_ms`;
//! * [`check`]: [`Check`], each verifier's rule;
//! * [`column`]: verdicts for SQL columns (`verify()`, `prs_score`);
//! * [`error`]: [`VerifyError`], why a check could not decide.
//!
//! A check is exact, bounded and visible: it gives true, false or an error that says why it
//! could not decide (a time limit, a number too large), never a made-up 0 or 1. The files are
//! private to this folder; other wings use the face below.

mod bounded;
mod check;
mod column;
mod error;
mod exact;
mod extract;
mod math;

// The face: the check, and running checks off the runtime.
pub(crate) use bounded::verdicts;
pub(crate) use check::Check;
pub(crate) use column::verdict_column;
