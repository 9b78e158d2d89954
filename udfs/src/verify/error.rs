//! Why a check could not decide.

use std::time::Duration;

/// Why a check could not decide.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "the answer is {chars} characters; a math check reads at most {max} (a final answer, \
         not a derivation)"
    )]
    TooLong { chars: usize, max: usize },
    #[error("the answer nests brackets deeper than {0}")]
    TooDeep(usize),
    #[error("a number in the answer grows past {0} bits, so it is not computed")]
    TooLarge(u64),
    #[error("the check took longer than prs.verify_timeout_ms ({} ms)", .0.as_millis())]
    TimedOut(Duration),
    #[error("no thread could be started for the check: {0}")]
    NoThread(String),
    #[error("the reference is not a regular expression (Rust regex syntax): {0}")]
    BadPattern(String),
}
