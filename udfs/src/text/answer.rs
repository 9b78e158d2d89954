//! The *answer* of a response (`prs.answer_pattern`): what the reward model scores and PRS's
//! feedback and revise prompts carry, when a policy writes more than its answer (a reasoning
//! model's `<think>…</think>` scratchpad, say). The `response` column keeps the whole text.

use regex::Regex;

use crate::error::{PrsError, Result};

/// The shorthand for reasoning models: the text after the last `</think>`.
pub const THINK: &str = "think";
const THINK_END: &str = "</think>";

/// How to find the answer in a response.
#[derive(Debug, Clone)]
pub enum AnswerPattern {
    /// The text after the last `</think>`, trimmed.
    Think,
    /// The first capture group of the first match, as is.
    Regex(Regex),
}

impl AnswerPattern {
    /// The pattern of the `answer_pattern` setting; `None` when it is empty (the answer is
    /// the whole response).
    pub fn from_setting(text: &str) -> Result<Option<Self>> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        if text.trim() == THINK {
            return Ok(Some(AnswerPattern::Think));
        }
        let bad = |reason: String| PrsError::setting("answer_pattern", text, reason);
        let re = Regex::new(text)
            .map_err(|e| bad(format!("not a regular expression (Rust regex syntax): {e}")))?;
        if re.captures_len() < 2 {
            return Err(bad(format!(
                "the pattern has no capture group; put the answer in one, e.g. \
                 (?s)Answer:\\s*(.*), or use the shorthand {THINK:?} for the text after the \
                 last {THINK_END}"
            )));
        }
        Ok(Some(AnswerPattern::Regex(re)))
    }

    /// The answer in `response`, or `None` when the pattern does not match (or its group did
    /// not take part in the match).
    pub fn extract(&self, response: &str) -> Option<String> {
        match self {
            AnswerPattern::Think => response
                .rfind(THINK_END)
                .map(|at| response[at + THINK_END.len()..].trim().to_string()),
            AnswerPattern::Regex(re) => re
                .captures(response)
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().to_string()),
        }
    }

    /// The pattern as written (for the fingerprint and the plan).
    pub fn source(&self) -> &str {
        match self {
            AnswerPattern::Think => THINK,
            AnswerPattern::Regex(re) => re.as_str(),
        }
    }

    /// Why a response has no answer, for its error row.
    pub fn no_match(&self) -> String {
        match self {
            AnswerPattern::Think => format!(
                "answer_pattern = {THINK}: the response has no {THINK_END} (still thinking \
                 when it stopped?); it is not scored on its whole text"
            ),
            AnswerPattern::Regex(re) => format!(
                "answer_pattern {:?} does not match the response (or its first group took \
                 no part in the match); it is not scored on its whole text",
                re.as_str()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_takes_the_text_after_the_last_block() {
        let p = AnswerPattern::from_setting(" think ").unwrap().unwrap();
        let r = "<think>maybe 3</think>no<think>it is 4</think>\n\nThe answer is 4.\n";
        assert_eq!(p.extract(r).as_deref(), Some("The answer is 4."));
        assert_eq!(p.extract("<think>cut off at max_tok"), None);
        assert_eq!(p.source(), "think");
    }

    #[test]
    fn a_regex_gives_its_first_group() {
        let p = AnswerPattern::from_setting(r"(?s)Answer:\s*(.*)")
            .unwrap()
            .unwrap();
        assert_eq!(p.extract("work\nAnswer: 42\nok").as_deref(), Some("42\nok"));
        assert_eq!(p.extract("no final line"), None);
        // a group that does not take part in the match is no answer
        let p = AnswerPattern::from_setting(r"x|(y)").unwrap().unwrap();
        assert_eq!(p.extract("x"), None);
        assert!(AnswerPattern::from_setting("").unwrap().is_none());
    }

    #[test]
    fn bad_patterns_say_why() {
        let e = AnswerPattern::from_setting("(unclosed")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("prs.answer_pattern") && e.contains("regular expression"),
            "{e}"
        );
        let e = AnswerPattern::from_setting("Answer: .*")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no capture group") && e.contains("think"), "{e}");
    }
}
