//! `prs.unique`: a candidate whose text (its answer, with `prs.answer_pattern`) repeats an
//! earlier one of its prompt (after trimming and collapsing whitespace) is sampled again with the next fresh seed, within a budget of
//! extra samples per prompt; one still repeating when the budget is spent is kept and marked
//! (`duplicate_of`). Extra seeds continue the prompt's sample indices past `n`, so the same
//! run gives the same rows.

use std::collections::HashMap;

use super::Candidate;

/// The text duplicates are compared by: whitespace trimmed and collapsed.
fn normal(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The texts of a prompt's candidates so far, each with the sample index of the first
/// candidate that had it.
#[derive(Debug, Default)]
pub(super) struct Seen(HashMap<String, i32>);

impl Seen {
    /// Take `c`'s text (its answer when it has one) if no earlier candidate had it; else the
    /// sample index of the one that did. A failed candidate repeats nothing.
    pub fn admit(&mut self, c: &Candidate) -> Option<i32> {
        let text = c.answer.as_deref().or(c.response.as_deref());
        let text = text.filter(|_| c.error.is_none())?;
        match self.0.entry(normal(text)) {
            std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(c.sample_index);
                None
            }
        }
    }
}

/// The extra samples of one prompt: how many are left and which seed index comes next.
#[derive(Debug)]
pub(super) struct Extra {
    left: usize,
    /// Sample index of the next extra sample's seed (starts at `n`).
    next_index: usize,
}

impl Extra {
    pub fn new(n: usize, max_extra: usize) -> Self {
        Extra {
            left: max_extra,
            next_index: n,
        }
    }

    /// Take up to `want` extra samples: their count and the seed index of the first.
    pub fn take(&mut self, want: usize) -> (usize, usize) {
        let k = want.min(self.left);
        let first = self.next_index;
        self.left -= k;
        self.next_index += k;
        (k, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(i: i32, text: &str) -> Candidate {
        Candidate {
            sample_index: i,
            response: Some(text.into()),
            ..Candidate::default()
        }
    }

    #[test]
    fn repeats_are_found_up_to_whitespace() {
        let mut seen = Seen::default();
        assert_eq!(seen.admit(&cand(0, "a  b\n")), None);
        assert_eq!(seen.admit(&cand(1, " a b")), Some(0));
        assert_eq!(seen.admit(&cand(2, "a b c")), None);
        assert_eq!(seen.admit(&cand(3, "A b")), None, "case matters");
        let same_answer = Candidate {
            answer: Some("a b c".into()),
            ..cand(5, "<think>other</think>a b c")
        };
        assert_eq!(seen.admit(&same_answer), Some(2), "answers are compared");
        let failed = Candidate {
            error: Some("x".into()),
            ..cand(4, "a b")
        };
        assert_eq!(seen.admit(&failed), None);
    }

    #[test]
    fn the_budget_bounds_extra_samples_and_seeds_continue_past_n() {
        let mut extra = Extra::new(8, 3);
        assert_eq!(extra.take(2), (2, 8));
        assert_eq!(extra.take(2), (1, 10));
        assert_eq!(extra.take(5), (0, 11));
    }
}
