//! [`Check`]: how a candidate's answer is checked against a reference, by each verifier.

use std::time::Duration;

use num_rational::BigRational;
use num_traits::Signed;

use super::error::VerifyError;
use super::{exact, extract, math};
use crate::config::{PrsConfig, Verifier};
use crate::text::AnswerPattern;

/// How answers are checked: the verifier and the settings it reads.
#[derive(Debug, Clone)]
pub struct Check {
    pub verifier: Verifier,
    /// `prs.answer_pattern`: where the answer is in a response.
    pub answer_pattern: Option<AnswerPattern>,
    /// `prs.verify_timeout_ms`.
    pub timeout: Duration,
}

/// The outcome of one check: `None` when there is nothing to check (no verifier, no
/// reference), else whether the answer is right.
pub type Verdict = Result<Option<bool>, VerifyError>;

impl Check {
    /// The check the settings ask for; with `verifier = none`, `fallback` (the `verify()`
    /// function checks with `math` then).
    pub fn from_config(cfg: &PrsConfig, fallback: Verifier) -> crate::error::Result<Self> {
        Ok(Check {
            verifier: match cfg.verifier {
                Verifier::None => fallback,
                v => v,
            },
            answer_pattern: AnswerPattern::from_setting(&cfg.answer_pattern)?,
            timeout: Duration::from_millis(cfg.verify_timeout_ms),
        })
    }

    /// Check `response` against `reference` on the calling thread. The deepest answers need
    /// a deeper stack than an async worker's: queries go through [`super::verdicts`].
    pub fn verdict(&self, response: Option<&str>, reference: Option<&str>) -> Verdict {
        let Some(reference) = reference.filter(|r| !r.trim().is_empty()) else {
            return Ok(None);
        };
        if self.verifier == Verifier::None {
            return Ok(None);
        }
        let answer = match (&self.answer_pattern, response) {
            (_, None) => None,
            (Some(p), Some(r)) => p.extract(r),
            (None, Some(r)) => Some(r.to_string()),
        };
        let Some(answer) = answer else {
            return Ok(Some(false)); // no answer to be found
        };
        let mut budget = exact::Budget::new(self.timeout);
        let right = match self.verifier {
            Verifier::None => return Ok(None),
            Verifier::Exact => exact_text(&answer, reference),
            Verifier::Regex => matches_pattern(&answer, reference)?,
            Verifier::Numeric => numeric(&answer, reference, &mut budget)?,
            Verifier::Math => math_answer(&answer, reference, &mut budget)?,
        };
        Ok(Some(right))
    }
}

/// Whitespace collapsed.
fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn exact_text(answer: &str, reference: &str) -> bool {
    let answer = extract::last_boxed(answer).unwrap_or(answer);
    squeeze(answer) == squeeze(reference)
}

fn matches_pattern(answer: &str, reference: &str) -> Result<bool, VerifyError> {
    let re = regex::RegexBuilder::new(reference.trim())
        .size_limit(1 << 20)
        .build()
        .map_err(|e| VerifyError::BadPattern(e.to_string()))?;
    Ok(re.is_match(answer))
}

/// An answer read as maths; `Ok(None)` when it does not read as maths.
fn read(answer: &str) -> Result<Option<math::Parsed>, VerifyError> {
    math::parse(&math::normalize(answer))
}

fn reads_as_math(text: &str) -> bool {
    matches!(read(text), Ok(Some(_)))
}

fn math_answer(
    answer: &str,
    reference: &str,
    budget: &mut exact::Budget,
) -> Result<bool, VerifyError> {
    let (Some(answer), Some(reference)) = (
        extract::final_answer(answer, reads_as_math),
        extract::reference_answer(reference),
    ) else {
        return Ok(false);
    };
    let same_text = || {
        let plain = |s: &str| squeeze(&math::normalize(s)).to_lowercase().replace(' ', "");
        plain(answer) == plain(reference)
    };
    match (read(answer)?, read(reference)?) {
        (Some(a), Some(r)) => Ok(exact::equivalent(&a, &r, budget)?.unwrap_or_else(same_text)),
        _ => Ok(same_text()),
    }
}

/// Both as numbers, equal within a relative 1e-6.
fn numeric(answer: &str, reference: &str, budget: &mut exact::Budget) -> Result<bool, VerifyError> {
    let mut number = |s: &str| -> Result<Option<BigRational>, VerifyError> {
        match read(s)? {
            Some(math::Parsed::Expr(node)) => exact::number(&node, budget),
            _ => Ok(None),
        }
    };
    let (Some(answer), Some(reference)) = (
        extract::final_answer(answer, reads_as_math),
        extract::reference_answer(reference),
    ) else {
        return Ok(false);
    };
    let (Some(a), Some(r)) = (number(answer)?, number(reference)?) else {
        return Ok(false);
    };
    let scale = r.abs().max(BigRational::from_integer(1.into()));
    Ok((a - r).abs() * BigRational::from_integer(1_000_000.into()) <= scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(verifier: Verifier) -> Check {
        Check {
            verifier,
            answer_pattern: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn each_verifier() {
        let math = check(Verifier::Math);
        let yes = |c: &Check, resp: &str, reference: &str| c.verdict(Some(resp), Some(reference));
        assert_eq!(
            yes(&math, r"So the total is \boxed{ 579 }.", "579"),
            Ok(Some(true))
        );
        assert_eq!(yes(&math, "The answer is 578.", "579"), Ok(Some(false)));
        assert_eq!(yes(&math, "I do not know.", "579"), Ok(Some(false)));
        assert_eq!(yes(&math, "0.5", r"$\frac{1}{2}$"), Ok(Some(true)));
        assert_eq!(yes(&math, r"\boxed{Blue}", "blue"), Ok(Some(true)));
        assert_eq!(math.verdict(Some("579"), None), Ok(None));
        assert_eq!(math.verdict(None, Some("579")), Ok(Some(false)));
        assert_eq!(
            check(Verifier::None).verdict(Some("1"), Some("1")),
            Ok(None)
        );

        let exact = check(Verifier::Exact);
        assert_eq!(yes(&exact, r"\boxed{Paris}", " Paris "), Ok(Some(true)));
        assert_eq!(yes(&exact, "579.0", "579"), Ok(Some(false)));

        let numeric = check(Verifier::Numeric);
        assert_eq!(
            yes(&numeric, "about 3.1415927", "3.14159265"),
            Ok(Some(true))
        );
        assert_eq!(yes(&numeric, "3.14", "3.14159265"), Ok(Some(false)));

        let regex = check(Verifier::Regex);
        assert_eq!(yes(&regex, "It is 42 apples", r"\b42\b"), Ok(Some(true)));
        assert!(matches!(
            yes(&regex, "x", "("),
            Err(VerifyError::BadPattern(_))
        ));
    }

    #[test]
    fn the_answer_pattern_decides_where_the_answer_is() {
        let c = Check {
            answer_pattern: AnswerPattern::from_setting(r"Answer:\s*(\S+)").unwrap(),
            ..check(Verifier::Math)
        };
        assert_eq!(
            c.verdict(Some("3 or 4? Answer: 4"), Some("4")),
            Ok(Some(true))
        );
        assert_eq!(c.verdict(Some("it is 4"), Some("4")), Ok(Some(false)));
    }

    #[test]
    fn hostile_answers_are_errors_that_say_why() {
        let math = check(Verifier::Math);
        let huge = math.verdict(Some(r"\boxed{10^{10^{10^{10}}}}"), Some("1"));
        assert!(matches!(huge, Err(VerifyError::TooLarge(_))), "{huge:?}");
        let long = format!("$${}1$$", "1+".repeat(100_000));
        assert!(matches!(
            math.verdict(Some(&long), Some("1")),
            Err(VerifyError::TooLong { .. })
        ));
        // unbalanced braces: no boxed answer, the last number decides
        assert_eq!(
            math.verdict(Some(r"\boxed{{{{ 7"), Some("7")),
            Ok(Some(true))
        );
    }
}
