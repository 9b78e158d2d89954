//! The simulator's maths mode (`prs sim --math`): each prompt asks an arithmetic question with a
//! checkable answer (`What is 348 + 231?`), each question has a latent solve rate, the policy
//! writes a final answer in one of several formats, right or wrong, and the reward model scores
//! the truth plus noise. Everything is a pure function of (prompt, seed, choice), so benchmarks
//! can compute an oracle ([`crate::solve_rate`], [`sim_truth`]).

use crate::hash::{fnv, Rng};

/// A question the simulator reads: `What is A op B?` with `op` one of `+`, `-`, `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question {
    pub a: i64,
    pub op: char,
    pub b: i64,
}

impl Question {
    /// The right answer.
    pub fn value(&self) -> i128 {
        let (a, b) = (self.a as i128, self.b as i128);
        match self.op {
            '+' => a + b,
            '-' => a - b,
            _ => a * b,
        }
    }

    /// The question's own words, whatever text it was found in: what its solve rate hangs on.
    fn key(&self) -> String {
        format!("What is {} {} {}?", self.a, self.op, self.b)
    }
}

/// Question `index` (deterministic) and its reference answer as text:
/// `("Question 17: What is 348 + 231?", "579")`. `data/math/prompts.sql` writes the same
/// questions for 1 to 200 with the same arithmetic.
pub fn math_question(index: u64) -> (String, String) {
    let op = ['+', '-', '*'][(index % 3) as usize];
    let (a, b) = match op {
        '*' => (
            2 + ((index % 98) * 37 + 11) % 98,
            2 + ((index % 48) * 53 + 29) % 48,
        ),
        _ => (
            10 + ((index % 890) * 37 + 11) % 890,
            10 + ((index % 490) * 53 + 29) % 490,
        ),
    };
    let q = Question {
        a: a as i64,
        op,
        b: b as i64,
    };
    (
        format!("Question {index}: {}", q.key()),
        q.value().to_string(),
    )
}

/// The last `What is A op B?` in a text (a chat message, or a PRS prompt quoting the question).
pub fn question(text: &str) -> Option<Question> {
    text.rmatch_indices("What is")
        .find_map(|(at, m)| parse_question(&text[at + m.len()..]))
}

/// `A op B?` at the start of `rest`, spaces allowed around the operator.
fn parse_question(rest: &str) -> Option<Question> {
    let rest = rest.trim_start();
    let (a, rest) = leading_int(rest)?;
    let rest = rest.trim_start();
    let op = rest
        .chars()
        .next()
        .filter(|c| matches!(c, '+' | '-' | '*'))?;
    let (b, rest) = leading_int(rest[1..].trim_start())?;
    rest.trim_start()
        .starts_with('?')
        .then_some(Question { a, op, b })
}

/// An integer (optional `-`, 1 to 9 digits) at the start of `s`, and what follows it.
fn leading_int(s: &str) -> Option<(i64, &str)> {
    let sign = usize::from(s.starts_with('-'));
    let digits = s[sign..].bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let end = sign + digits;
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// How questions and answers are drawn: the shares of `TextStyle`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mix {
    pub(crate) always: f64,
    pub(crate) never: f64,
    /// The miss rate of an "always" question and the hit rate of a "never" one.
    pub(crate) edge: f64,
    pub(crate) hostile: f64,
}

/// A question's solve rate: a hash of its words picks the class (always solved but for a miss
/// rate `edge`, never solved but for a hit rate `edge`, or in between) and the rate in between.
pub(crate) fn rate(q: &Question, always: f64, never: f64, edge: f64) -> f64 {
    let edge = edge.clamp(0.0, 0.5);
    let mut rng = Rng(fnv(&q.key()) ^ 0x5eed_0fd1);
    let (class, between) = (rng.unit(), rng.unit());
    let always = always.clamp(0.0, 1.0);
    if class < always {
        1.0 - edge
    } else if class < always + never.clamp(0.0, 1.0) {
        edge
    } else {
        0.1 + 0.8 * between
    }
}

/// One written choice: text, words (tokens), whether max_tokens cut it, and whether its final
/// answer is right (`None`: no answer the sim could check, cut off or hostile).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Written {
    pub(crate) text: String,
    pub(crate) words: usize,
    pub(crate) truncated: bool,
    pub(crate) right: Option<bool>,
}

/// The number of final-answer formats [`final_sentence`] writes.
pub(crate) const FORMATS: usize = 9;

const REASONING: &[&str] = &[
    "first",
    "we",
    "compute",
    "the",
    "value",
    "carefully",
    "then",
    "check",
    "each",
    "digit",
    "carry",
    "over",
    "so",
    "step",
    "by",
    "now",
    "add",
    "it",
    "again",
    "hence",
    "thus",
    "write",
    "result",
    "working",
];

/// Choice `i` of a request with `seed` for a prompt asking `q`: a few reasoning words, then the
/// final answer (right with the question's solve rate, else off by 1 to 9), or for a
/// `hostile` share of choices an answer built to hurt a checker. Over `max_tokens` the
/// reasoning shrinks first; when even the answer does not fit, it is lost and the choice is cut.
pub(crate) fn write(
    q: &Question,
    prompt: &str,
    (seed, i): (i64, u64),
    max_tokens: usize,
    length: Option<usize>,
    mix: Mix,
) -> Written {
    let mut rng = Rng(fnv(prompt)
        ^ (seed as u64).wrapping_mul(0xd6e8_feb8_6659_fd93)
        ^ i.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ 0x6d61_7468);
    let hostile = rng.unit() < mix.hostile;
    let right = rng.unit() < rate(q, mix.always, mix.never, mix.edge);
    let (last, right) = if hostile {
        (hostile_answer(rng.below(4)), None)
    } else {
        let off = (1 + rng.below(9)) as i128;
        let off = if rng.below(2) == 0 { off } else { -off };
        let value = if right { q.value() } else { q.value() + off };
        (final_sentence(value, rng.below(FORMATS)), Some(right))
    };
    let answer_words = last.split_whitespace().count();
    let wanted = length
        .unwrap_or_else(|| answer_words + 4 + rng.below(21))
        .max(answer_words + 1);
    let max_tokens = max_tokens.max(1);
    if max_tokens <= answer_words {
        // not even the answer fits: cut in the reasoning, no final answer
        return Written {
            text: reasoning(&mut rng, max_tokens),
            words: max_tokens,
            truncated: true,
            right: None,
        };
    }
    let thinking = wanted.min(max_tokens) - answer_words;
    Written {
        text: format!("{}\n\n{last}", reasoning(&mut rng, thinking)),
        words: thinking + answer_words,
        truncated: false,
        right,
    }
}

/// `words` reasoning words as a sentence.
fn reasoning(rng: &mut Rng, words: usize) -> String {
    let picked: Vec<&str> = (0..words)
        .map(|_| REASONING[rng.below(REASONING.len())])
        .collect();
    let text = picked.join(" ");
    match text.get(..1) {
        Some(first) => format!("{}{}.", first.to_uppercase(), &text[1..]),
        None => text,
    }
}

/// The final answer `value` written in format `format` (0 to [`FORMATS`] - 1).
pub(crate) fn final_sentence(value: i128, format: usize) -> String {
    match format {
        0 => format!("Therefore the final answer is \\boxed{{{value}}}."),
        1 => format!("So we get \\boxed{{ {value} }}"),
        2 => format!("The answer is {value}."),
        3 => format!("Putting it together: ${value}$."),
        4 => format!("The total comes to {value}.0."),
        5 => format!("Hence $\\frac{{{}}}{{2}}$.", 2 * value),
        6 if (2 * value).abs() >= 1000 => format!("That gives {}/2.", commas(2 * value)),
        6 | 7 => format!("As a fraction, $\\dfrac{{{}}}{{3}}$.", 3 * value),
        _ => format!("Solving, \\( x = {value} \\)."),
    }
}

/// An integer with thousands commas: `-1,158`.
fn commas(n: i128) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// A final answer built to hurt a checker: a tower of powers, a 200 KB sum, unbalanced braces,
/// deeply nested parentheses.
pub(crate) fn hostile_answer(kind: usize) -> String {
    match kind {
        0 => "The answer is \\boxed{10^{10^{10^{10}}}}.".to_string(),
        1 => format!("The answer is \\boxed{{{}1}}.", "1+".repeat(100_000)),
        2 => "The answer is \\boxed{{{{7".to_string(),
        _ => format!(
            "The answer is \\boxed{{{}7{}}}.",
            "(".repeat(10_000),
            ")".repeat(10_000)
        ),
    }
}

/// Whether `response`'s final answer is right for the question in `prompt`: `None` when the
/// prompt asks no question the sim reads, or the response holds no final answer in a format the
/// sim writes (cut off, hostile, or not the sim's).
pub fn sim_truth(prompt: &str, response: &str) -> Option<bool> {
    let q = question(prompt)?;
    let (num, den) = final_answer(response)?;
    Some(num == q.value() * den)
}

/// The final answer of a response as a fraction (numerator, nonzero denominator), read in the
/// formats the sim writes, from its last paragraph.
fn final_answer(response: &str) -> Option<(i128, i128)> {
    let last = response.rsplit("\n\n").next()?.trim();
    let inner = if let Some(at) = last.rfind("\\boxed{") {
        braced(&last[at + "\\boxed".len()..])?.trim()
    } else if let Some(at) = last.rfind("\\(") {
        let (inside, _) = last[at + 2..].split_once("\\)")?;
        inside.trim().strip_prefix("x =")?.trim()
    } else if let Some((_, rest)) = last.split_once('$') {
        rest.split_once('$')?.0.trim()
    } else {
        let token = last.split_whitespace().last()?;
        token.strip_suffix('.').unwrap_or(token)
    };
    value(inner)
}

/// The text inside the braces `s` starts with, if they close.
fn braced(s: &str) -> Option<&str> {
    let mut depth = 0usize;
    for (k, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => return Some(&s[1..k]),
            '}' => depth = depth.checked_sub(1)?,
            _ if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

/// A value as the sim writes one: `579`, `579.0`, `-1,158/2`, `\frac{1158}{2}`, `\dfrac{..}{..}`.
fn value(s: &str) -> Option<(i128, i128)> {
    let frac = s
        .strip_prefix("\\frac")
        .or_else(|| s.strip_prefix("\\dfrac"));
    let (num, den) = match frac {
        Some(rest) => {
            let num = braced(rest)?;
            let den = braced(&rest[num.len() + 2..])?;
            (integer(num)?, integer(den)?)
        }
        None => match s.split_once('/') {
            Some((num, den)) => (integer(num)?, integer(den)?),
            None => (integer(s.strip_suffix(".0").unwrap_or(s))?, 1),
        },
    };
    (den != 0).then_some((num, den))
}

/// An integer: optional `-`, digits, optionally in comma-separated groups of three.
fn integer(s: &str) -> Option<i128> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || digits.len() > 30 {
        return None;
    }
    let groups: Vec<&str> = digits.split(',').collect();
    let grouped = groups.len() == 1
        || (!groups[0].is_empty()
            && groups[0].len() <= 3
            && groups[1..].iter().all(|g| g.len() == 3));
    let plain: String = groups.concat();
    if !grouped || !plain.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i128 = plain.parse().ok()?;
    Some(if s.starts_with('-') { -n } else { n })
}

/// 1 when the final answer of `Human: {prompt}\nAssistant: {response}` is right, else 0;
/// `None` when the text asks no question the sim reads.
pub(crate) fn truth_of(text: &str) -> Option<f64> {
    let (prompt, response) = text.rsplit_once("\nAssistant:")?;
    question(prompt)?;
    Some(match sim_truth(prompt, response) {
        Some(true) => 1.0,
        _ => 0.0,
    })
}

/// How the simulated reward model errs in maths mode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Judge {
    /// Noise uniform in [-noise, noise], a hash of the response (and `seed`).
    pub noise: f64,
    pub seed: u64,
    /// Reward per word of the response.
    pub length_bias: f64,
}

/// The maths reward of `Human: {prompt}\nAssistant: {response}`: 1 when the response's final
/// answer is right, else 0, plus the judge's noise and length bias; `None` when the text asks
/// no question the sim reads.
pub(crate) fn score(text: &str, judge: Judge) -> Option<f64> {
    let truth = truth_of(text)?;
    let (_, response) = text.rsplit_once("\nAssistant:")?;
    let hash = match judge.seed {
        0 => fnv(response),
        seed => fnv(&format!("{seed}:{response}")),
    };
    // 601 steps from -noise to noise (0.001 apart at the default 0.3)
    let noise = judge.noise * ((hash % 601) as f64 / 300.0 - 1.0);
    let length = judge.length_bias * response.split_whitespace().count() as f64;
    Some(((truth + noise + length) * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TextStyle;

    fn style(hostile_share: f64) -> TextStyle {
        TextStyle {
            math: true,
            hostile_share,
            ..TextStyle::default()
        }
    }

    /// Choice `i` of (prompt, seed) as the simulator writes it, and whether it chose it right.
    fn sample(style: &TextStyle, prompt: &str, seed: i64, i: u64, max: usize) -> Written {
        style.written(prompt, (seed, i), max, None)
    }

    /// The format a final answer was written in, read back from its markers.
    fn format_of(text: &str) -> Option<usize> {
        let last = text.rsplit("\n\n").next()?;
        let markers = [
            "\\boxed{",
            "\\boxed{ ",
            "The answer is",
            ": $",
            ".0.",
            "\\frac",
            "/2.",
            "\\dfrac",
            "\\(",
        ];
        markers.iter().rposition(|m| last.contains(m))
    }

    #[test]
    fn questions_read_back_with_their_value() {
        for index in 0..3000 {
            let (prompt, reference) = math_question(index);
            let q = question(&prompt).unwrap();
            assert_eq!(q.value().to_string(), reference, "{prompt}");
            // quoted in a PRS revision prompt, after the question, the answer under review
            let revise = format!(
                "Improve the answer.\n\n### Question\n{prompt}\n\n### Current answer\nStep \
                 by step.\n\nThe answer is 12.\n\n### Improved answer\n"
            );
            assert_eq!(question(&revise), Some(q));
            assert_eq!(solve_rate(&revise), solve_rate(&prompt));
        }
        assert_eq!(
            math_question(17).0,
            "Question 17: What is 54 * 20?",
            "the shape data/math/prompts.sql writes"
        );
        assert_eq!(question("What is the capital of France?"), None);
        assert_eq!(
            question("What is 3 + 4? What is 5 * 6 ?").map(|q| q.value()),
            Some(30)
        );
        assert_eq!(question("What is 10-12?").map(|q| q.value()), Some(-2));
    }

    fn solve_rate(prompt: &str) -> f64 {
        crate::solve_rate(prompt, &style(0.0))
    }

    /// Rows of data/math/prompts.parquet (`SELECT * ... WHERE id IN (...)`): the SQL and
    /// `math_question` write the same questions and references.
    #[test]
    fn the_sql_writes_the_same_questions() {
        let rows = [
            (1, "Question 1: What is 58 - 92?", "-34"),
            (2, "Question 2: What is 87 * 41?", "3567"),
            (3, "Question 3: What is 132 + 198?", "330"),
            (17, "Question 17: What is 54 * 20?", "1080"),
            (100, "Question 100: What is 161 - 439?", "-278"),
            (199, "Question 199: What is 264 - 296?", "-32"),
            (200, "Question 200: What is 63 * 23?", "1449"),
        ];
        for (id, prompt, reference) in rows {
            assert_eq!(
                math_question(id),
                (prompt.to_string(), reference.to_string())
            );
            assert_eq!(
                question(prompt).map(|q| q.value().to_string()),
                Some(reference.into())
            );
        }
        let sql = include_str!("../../../data/math/prompts.sql");
        for piece in [
            "'Question '",
            "': What is '",
            "'?' AS prompt",
            "% 3",
            "AS reference",
        ] {
            assert!(sql.contains(piece), "{piece}");
        }
    }

    #[test]
    fn answers_are_deterministic_and_seeded() {
        let s = style(0.1);
        let (prompt, _) = math_question(5);
        let a = sample(&s, &prompt, 1, 0, 256);
        assert_eq!(a, sample(&s, &prompt, 1, 0, 256));
        let others: Vec<String> = (0..8)
            .map(|i| sample(&s, &prompt, 2, i, 256).text)
            .collect();
        assert!(others.iter().any(|t| *t != a.text));
        assert_eq!(
            crate::solve_rate(&prompt, &s),
            crate::solve_rate(&prompt, &s)
        );
    }

    #[test]
    fn solve_shares_match_the_mix() {
        let s = style(0.0);
        let (mut always, mut never, mut right, mut expected) = (0, 0, 0usize, 0.0);
        let (mut always_right, mut never_right) = (0, 0);
        for index in 1..=2000 {
            let (prompt, _) = math_question(index);
            let rate = crate::solve_rate(&prompt, &s);
            assert!((0.0..=1.0).contains(&rate));
            let hits = (0..20)
                .filter(|&i| sample(&s, &prompt, 7, i, 256).right == Some(true))
                .count();
            if rate == 1.0 {
                (always, always_right) = (always + 1, always_right + hits);
            } else if rate == 0.0 {
                (never, never_right) = (never + 1, never_right + hits);
            } else {
                assert!((0.1..=0.9).contains(&rate), "{rate}");
            }
            right += hits;
            expected += 20.0 * rate;
        }
        let share = |k: usize| k as f64 / 2000.0;
        assert!((share(always) - 0.45).abs() < 0.04, "{always}");
        assert!((share(never) - 0.35).abs() < 0.04, "{never}");
        assert!(
            (right as f64 - expected).abs() / 40_000.0 < 0.02,
            "{right} vs {expected}"
        );
        assert!(always_right as f64 / (20.0 * always as f64) > 0.95);
        assert!((never_right as f64 / (20.0 * never as f64)) < 0.05);
    }

    #[test]
    fn every_format_appears_and_the_truth_reads_back() {
        let plain = style(0.05);
        let styles = [
            plain,
            TextStyle {
                think: true,
                repeat_share: 0.3,
                ..plain
            },
        ];
        let (mut formats, mut counts) = ([0usize; FORMATS], [0usize; 3]);
        for style in &styles {
            for index in 0..200 {
                let (prompt, _) = math_question(index);
                for (seed, i, max) in [(0, 0, 256), (1, 1, 256), (2, 2, 4), (3, 3, 6), (4, 4, 9)] {
                    let w = sample(style, &prompt, seed, i, max);
                    assert_eq!(sim_truth(&prompt, &w.text), w.right, "{prompt}: {}", w.text);
                    // a favourite answer (`repeat_share`) is whole whatever the draw's length
                    if w.truncated && style.repeat_share == 0.0 {
                        assert_eq!(w.right, None);
                    }
                    counts[match w.right {
                        Some(true) => 0,
                        Some(false) => 1,
                        None => 2,
                    }] += 1;
                    if let Some(f) = w.right.and_then(|_| format_of(&w.text)) {
                        formats[f] += 1;
                    }
                }
            }
        }
        assert!(counts.iter().all(|&c| c > 100), "{counts:?}");
        assert!(formats.iter().all(|&c| c > 10), "{formats:?}");
    }

    #[test]
    fn the_parser_reads_each_format_and_nothing_else() {
        for value in [579i128, -42, 0, 1080, -1234, 7] {
            for format in 0..FORMATS {
                let text = format!("Some words.\n\n{}", final_sentence(value, format));
                assert_eq!(final_answer(&text), Some((value * den(&text), den(&text))));
            }
        }
        assert_eq!(
            final_sentence(300, 6),
            final_sentence(300, 7),
            "under 1000: \\dfrac"
        );
        assert_eq!(final_sentence(579, 5), "Hence $\\frac{1158}{2}$.");
        assert_eq!(final_sentence(1080, 6), "That gives 2,160/2.");
        assert_eq!(final_sentence(-600, 6), "That gives -1,200/2.");
        for kind in 0..4 {
            let text = format!("Let me think.\n\n{}", hostile_answer(kind));
            assert_eq!(final_answer(&text), None, "{kind}");
        }
        assert_eq!(hostile_answer(1).len() / 1000, 200);
        for bad in [
            "Cut off in the middle of.",
            "\\boxed{}",
            "1,23/2",
            "$12",
            "The answer is five.",
        ] {
            assert_eq!(final_answer(bad), None, "{bad}");
        }
        assert_eq!(sim_truth("no question here", "The answer is 5."), None);
        assert_eq!(
            sim_truth("What is 2 + 3?", "Hm.\n\nThe answer is 5."),
            Some(true)
        );
        assert_eq!(
            sim_truth("What is 2 + 3?", "Hm.\n\n\\boxed{ 6 }"),
            Some(false)
        );
    }

    /// The denominator a final sentence uses.
    fn den(text: &str) -> i128 {
        match (text.contains("frac"), text.contains("/2")) {
            (true, _) if text.contains("dfrac") => 3,
            (true, _) | (false, true) => 2,
            _ => 1,
        }
    }

    #[test]
    fn hostile_answers_come_at_their_share() {
        let s = style(0.1);
        let mut kinds = [0usize; 4];
        let markers = ["10^{10^", "1+1+1+1+", "\\boxed{{{{7", "((((((((7"];
        for index in 0..1000 {
            let (prompt, _) = math_question(index);
            for i in 0..4 {
                let w = sample(&s, &prompt, 11, i, 256);
                if let Some(k) = markers.iter().position(|m| w.text.contains(m)) {
                    assert_eq!(w.right, None);
                    assert_eq!(sim_truth(&prompt, &w.text), None);
                    kinds[k] += 1;
                }
            }
        }
        let share = kinds.iter().sum::<usize>() as f64 / 4000.0;
        assert!((share - 0.1).abs() < 0.02, "{share}");
        assert!(kinds.iter().all(|&k| k > 40), "{kinds:?}");
        assert!(sample(&style(0.0), "What is 1 + 1?", 1, 0, 256)
            .right
            .is_some());
    }

    #[test]
    fn the_reward_is_the_truth_plus_noise() {
        let s = style(0.05);
        let (mut right, mut wrong) = (0, 0);
        for index in 0..300 {
            let (prompt, _) = math_question(index);
            let w = sample(&s, &prompt, 3, 0, 256);
            let reward = s.score(&format!("Human: {prompt}\nAssistant: {}", w.text));
            let chat = crate::chat_text(&serde_json::json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": w.text},
            ]))
            .unwrap();
            assert_eq!(s.score(&chat), reward, "the chat form scores alike");
            if w.right == Some(true) {
                assert!((0.7..=1.3).contains(&reward), "{reward}");
                right += 1;
            } else {
                assert!((-0.3..=0.3).contains(&reward), "{reward}");
                wrong += 1;
            }
        }
        assert!(right > 50 && wrong > 50, "{right} {wrong}");
        let salad = "Human: explain plants\nAssistant: plants explain";
        assert_eq!(s.score(salad), crate::sim_score(salad));
    }
}
