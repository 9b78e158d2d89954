//! The simulator as a pairwise judge (`prs.judge_url` at the simulator): a prompt laid out as
//! prs's built-in judge template (`### Question`, `### Answer A`, `### Answer B`) gets a verdict
//! in the MT-Bench convention instead of a sample. In maths mode the judge knows each answer's
//! truth (a tie when both are right or both wrong); otherwise it compares the simulated
//! rewards. `--judge-position-bias` makes a share of its answers `[[A]]` whatever they say.

use crate::hash::fnv;

/// How the simulator judges: what it knows and how it leans.
pub(crate) struct Judge<'a> {
    /// Maths mode: answers are judged by their truth.
    pub math: bool,
    /// Share of comparisons answered `[[A]]` whatever they say.
    pub position_bias: f64,
    /// The simulated reward of `Human: {prompt}\nAssistant: {response}`.
    pub score: &'a dyn Fn(&str) -> f64,
}

/// The text between `start` and `end` in `text` (to its end without `end`).
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let (_, rest) = text.split_once(start)?;
    Some(rest.split_once(end).map_or(rest, |(inside, _)| inside))
}

/// The judge's answer to `prompt` (choice `i` of a request with `seed`), if `prompt` asks to
/// compare two answers.
pub(crate) fn verdict(judge: &Judge, prompt: &str, (seed, i): (i64, u64)) -> Option<String> {
    let question = between(prompt, "### Question\n", "\n\n### Answer A\n")?;
    let a = between(prompt, "### Answer A\n", "\n\n### Answer B\n")?;
    let b = between(prompt, "### Answer B\n", "\n\n### Judgement")?;
    let u = (fnv(prompt) ^ (seed as u64).rotate_left(23) ^ i.wrapping_mul(0x2f_1b3d)) % 10_000;
    if (u as f64) < judge.position_bias * 10_000.0 {
        return Some("Answer A comes first, and it is better. [[A]]".into());
    }
    let worth = |answer: &str| {
        let text = format!("Human: {question}\nAssistant: {answer}");
        match judge.math {
            true => crate::math::truth_of(&text).unwrap_or_else(|| (judge.score)(&text)),
            false => (judge.score)(&text),
        }
    };
    let (wa, wb) = (worth(a), worth(b));
    let mark = match wa.partial_cmp(&wb) {
        Some(std::cmp::Ordering::Greater) => "A",
        Some(std::cmp::Ordering::Less) => "B",
        _ => "C",
    };
    Some(format!(
        "Weighing both answers against the question: [[{mark}]]"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TextStyle;

    fn ask(question: &str, a: &str, b: &str) -> String {
        format!(
            "Judge.\n\n### The user's preference\nBe brief.\n\n### Question\n{question}\n\n\
             ### Answer A\n{a}\n\n### Answer B\n{b}\n\n### Judgement\n"
        )
    }

    #[test]
    fn the_judge_knows_the_truth_and_can_be_made_to_favour_a_position() {
        let (question, reference) = crate::math_question(7);
        let wrong = format!("It is {}1.", reference.trim());
        let math = TextStyle {
            math: true,
            ..TextStyle::default()
        };
        let right = format!("The answer is {reference}.");
        let say = |style: &TextStyle, a: &str, b: &str| {
            let score = |t: &str| style.score(t);
            let judge = Judge {
                math: style.math,
                position_bias: style.judge_position_bias,
                score: &score,
            };
            verdict(&judge, &ask(&question, a, b), (1, 0))
        };
        assert!(say(&math, &right, &wrong).unwrap().ends_with("[[A]]"));
        assert!(say(&math, &wrong, &right).unwrap().ends_with("[[B]]"));
        assert!(say(&math, &right, &right).unwrap().ends_with("[[C]]"));
        let biased = TextStyle {
            judge_position_bias: 1.0,
            ..math
        };
        assert!(say(&biased, &wrong, &right).unwrap().ends_with("[[A]]"));
        // anything else is not a comparison
        let judge = Judge {
            math: true,
            position_bias: 0.0,
            score: &|_: &str| 0.0,
        };
        assert_eq!(verdict(&judge, &question, (1, 0)), None);
    }
}
