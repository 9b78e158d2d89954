//! The pairwise LLM judge (`prs.judge_top_k`): after scoring, a chat model compares each
//! prompt's top candidates by reward two at a time, every pair in both orders. A verdict counts
//! only when both orders agree; the candidate with the most such wins becomes `is_best`, and
//! ties and inconsistent verdicts leave the choice to the reward.

use std::sync::Arc;

use futures::future::join_all;

use super::{best_index, derive_seed, Candidate, Policy};
use crate::error::Result;
use crate::run::DataChecks;
use crate::text::Template;

/// What the judge said of one order of a pair: answer A better, answer B better, or a tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    A,
    B,
    Tie,
}

/// The verdict at the end of a judge's answer: its last `[[A]]`, `[[B]]` or `[[C]]` (tie), as
/// the MT-Bench judges write it; `None` when it gives none.
pub fn verdict(answer: &str) -> Option<Verdict> {
    [
        ("[[A]]", Verdict::A),
        ("[[B]]", Verdict::B),
        ("[[C]]", Verdict::Tie),
    ]
    .into_iter()
    .filter_map(|(mark, v)| answer.rfind(mark).map(|at| (at, v)))
    .max_by_key(|(at, _)| *at)
    .map(|(_, v)| v)
}

/// A pair's outcome from its two orders: `first` with the higher-ranked candidate as A,
/// `second` with it as B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairOutcome {
    /// Both orders prefer the higher-ranked candidate.
    First,
    /// Both orders prefer the lower-ranked one.
    Second,
    /// Both orders call it a tie.
    Tie,
    /// The orders disagree: the judge's position showed, not its view.
    Inconsistent,
    /// An order's answer held no verdict (cut at `judge_max_tokens`, or off the format).
    NoVerdict,
}

impl PairOutcome {
    pub fn of(first: Option<Verdict>, second: Option<Verdict>) -> Self {
        match (first, second) {
            (Some(Verdict::A), Some(Verdict::B)) => PairOutcome::First,
            (Some(Verdict::B), Some(Verdict::A)) => PairOutcome::Second,
            (Some(Verdict::Tie), Some(Verdict::Tie)) => PairOutcome::Tie,
            (Some(_), Some(_)) => PairOutcome::Inconsistent,
            _ => PairOutcome::NoVerdict,
        }
    }
}

/// The judge of a call: a chat model, its template and how many candidates it compares.
pub struct Judge {
    pub policy: Arc<dyn Policy>,
    /// `{question}`, `{preference}`, `{answer_a}`, `{answer_b}`.
    pub template: Template,
    /// `prs.judge_top_k`, at least 2.
    pub top_k: usize,
}

/// What the judge made of one prompt's top candidates.
#[derive(Debug, Default, PartialEq)]
pub struct Judged {
    /// (candidate index, consistent wins, share of its pairs whose orders agreed), for each
    /// candidate compared.
    pub compared: Vec<(usize, i32, f64)>,
    /// The candidate to mark best.
    pub best: Option<usize>,
    pub pairs: u64,
    pub inconsistent: u64,
    pub no_verdict: u64,
}

impl Judge {
    /// Compare the top `top_k` of `candidates` (scored, by reward; `reward_best` first) in
    /// every pair and both orders, all requests at once. `seed_of(k)` is the seed of request k.
    pub async fn judge(
        &self,
        question: &str,
        preference: &str,
        candidates: &[Candidate],
        top: &[usize],
        seed_of: &(dyn Fn(i32) -> i64 + Sync),
    ) -> Result<Judged> {
        let pairs: Vec<(usize, usize)> = (0..top.len())
            .flat_map(|i| (i + 1..top.len()).map(move |j| (i, j)))
            .collect();
        let ask = |a: usize, b: usize, k: i32| {
            let text = |i: usize| {
                let c = &candidates[top[i]];
                c.answer.as_deref().or(c.response.as_deref()).unwrap_or("")
            };
            let prompt = self.template.render(&[
                ("question", question),
                ("preference", preference),
                ("answer_a", text(a)),
                ("answer_b", text(b)),
            ]);
            async move {
                let (choices, _) = self.policy.complete(&prompt, 1, seed_of(k), 0).await?;
                Ok::<_, crate::error::PrsError>(choices.first().and_then(|c| verdict(&c.text)))
            }
        };
        let asked = pairs.iter().enumerate().flat_map(|(p, &(i, j))| {
            let k = 2 * p as i32;
            [ask(i, j, k), ask(j, i, k + 1)]
        });
        let verdicts = join_all(asked)
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let outcomes: Vec<PairOutcome> = verdicts
            .chunks(2)
            .map(|two| PairOutcome::of(two[0], two[1]))
            .collect();
        Ok(tally(top, &pairs, &outcomes))
    }
}

/// Each compared candidate's consistent wins and consistency, and the best: the most wins,
/// ties going to the higher reward (earlier in `top`); `top[0]` when no one won.
fn tally(top: &[usize], pairs: &[(usize, usize)], outcomes: &[PairOutcome]) -> Judged {
    let mut wins = vec![0i32; top.len()];
    let mut agreed = vec![0u32; top.len()];
    let (mut inconsistent, mut no_verdict) = (0, 0);
    for (&(i, j), outcome) in pairs.iter().zip(outcomes) {
        match outcome {
            PairOutcome::First => wins[i] += 1,
            PairOutcome::Second => wins[j] += 1,
            PairOutcome::Tie => {}
            PairOutcome::Inconsistent => {
                inconsistent += 1;
                continue;
            }
            PairOutcome::NoVerdict => {
                no_verdict += 1;
                continue;
            }
        }
        agreed[i] += 1;
        agreed[j] += 1;
    }
    let others = (top.len().max(2) - 1) as f64;
    let best = (0..top.len()).fold(None::<usize>, |best, i| match best {
        Some(b) if wins[b] >= wins[i] => Some(b),
        _ => Some(i),
    });
    Judged {
        compared: (0..top.len())
            .map(|i| (top[i], wins[i], f64::from(agreed[i]) / others))
            .collect(),
        best: best.map(|i| top[i]),
        pairs: pairs.len() as u64,
        inconsistent,
        no_verdict,
    }
}

/// The candidates the judge compares: up to `k` scored ones by reward, highest first (ties:
/// lowest sample index), the reward's best first (with `exclude_truncated`, candidates cut at
/// `max_tokens` only when all are).
pub fn top_k(candidates: &[Candidate], k: usize, exclude_truncated: bool) -> Vec<usize> {
    let Some(first) = best_index(candidates, exclude_truncated) else {
        return Vec::new();
    };
    let truncated = |c: &Candidate| c.finish_reason.as_deref() == Some("length");
    let eligible =
        |c: &Candidate| !exclude_truncated || truncated(c) == truncated(&candidates[first]);
    let mut rest: Vec<usize> = (0..candidates.len())
        .filter(|&i| i != first && candidates[i].reward.is_some() && eligible(&candidates[i]))
        .collect();
    rest.sort_by(|&a, &b| {
        let (ra, rb) = (candidates[a].reward, candidates[b].reward);
        rb.partial_cmp(&ra)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(candidates[a].sample_index.cmp(&candidates[b].sample_index))
    });
    std::iter::once(first).chain(rest).take(k).collect()
}

/// Mark what the judge found on `candidates` and count its pairs into `checks`.
pub fn apply(judged: &Judged, candidates: &mut [Candidate], checks: &mut DataChecks) {
    for &(i, wins, consistent) in &judged.compared {
        candidates[i].judge_wins = Some(wins);
        candidates[i].judge_consistent = Some(consistent);
    }
    if let Some(best) = judged.best {
        for (i, c) in candidates.iter_mut().enumerate() {
            c.is_best = i == best;
        }
    }
    checks.judge_pairs += judged.pairs;
    checks.judge_inconsistent_pairs += judged.inconsistent;
    checks.judge_no_verdict_pairs += judged.no_verdict;
}

/// The seed of the judge's `k`-th request for a prompt.
pub fn judge_seed(run_seed: u64, prompt_id: &str) -> impl Fn(i32) -> i64 + Sync + '_ {
    move |k| derive_seed(run_seed, prompt_id, -1, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_verdict_counts() {
        assert_eq!(verdict("A is clearer. [[A]]"), Some(Verdict::A));
        assert_eq!(verdict("Not [[A]]: on reflection [[B]]"), Some(Verdict::B));
        assert_eq!(verdict("[[C]]"), Some(Verdict::Tie));
        assert_eq!(verdict("A is better"), None);
        assert_eq!(verdict("[A]"), None);
    }

    #[test]
    fn a_verdict_counts_only_when_both_orders_agree() {
        use PairOutcome::{First, Inconsistent, Second};
        use Verdict::{A, B};
        let tie = Some(Verdict::Tie);
        assert_eq!(PairOutcome::of(Some(A), Some(B)), First);
        assert_eq!(PairOutcome::of(Some(B), Some(A)), Second);
        assert_eq!(PairOutcome::of(tie, tie), PairOutcome::Tie);
        // always the first position, always the second: position bias, not a view
        assert_eq!(PairOutcome::of(Some(A), Some(A)), Inconsistent);
        assert_eq!(PairOutcome::of(Some(B), Some(B)), Inconsistent);
        assert_eq!(PairOutcome::of(Some(A), tie), Inconsistent);
        // no verdict is not a position bias: counted apart
        assert_eq!(PairOutcome::of(None, Some(B)), PairOutcome::NoVerdict);
        assert_eq!(PairOutcome::of(Some(A), None), PairOutcome::NoVerdict);
    }

    #[test]
    fn the_most_consistent_wins_is_best_and_ties_go_to_the_reward() {
        use PairOutcome::*;
        let top = [7, 3, 5];
        let pairs = [(0, 1), (0, 2), (1, 2)];
        // the third-ranked beats both, consistently
        let t = tally(&top, &pairs, &[Inconsistent, Second, Second]);
        assert_eq!(t.best, Some(5));
        assert_eq!(t.compared, vec![(7, 0, 0.5), (3, 0, 0.5), (5, 2, 1.0)]);
        assert_eq!((t.pairs, t.inconsistent), (3, 1));
        // one win each: the reward's order decides
        let t = tally(&top, &pairs, &[Second, First, Second]);
        assert_eq!(t.best, Some(7));
        // a judge that gives no verdict counts for no one
        let t = tally(&top, &pairs, &[NoVerdict, First, NoVerdict]);
        assert_eq!((t.best, t.inconsistent, t.no_verdict), (Some(7), 0, 2));
        assert_eq!(t.compared, vec![(7, 1, 0.5), (3, 0, 0.0), (5, 0, 0.5)]);
        // a judge that only ever shows its position bias changes nothing
        let t = tally(&top, &pairs, &[Inconsistent, Inconsistent, Inconsistent]);
        assert_eq!(t.best, Some(7));
        assert!(t.compared.iter().all(|&(_, w, c)| w == 0 && c == 0.0));
        assert_eq!(t.inconsistent, 3);
    }

    #[test]
    fn the_top_k_by_reward_with_the_rewards_best_first() {
        let c = |i: i32, reward: Option<f64>, finish: &str| Candidate {
            sample_index: i,
            reward,
            finish_reason: Some(finish.into()),
            ..Candidate::default()
        };
        let all = vec![
            c(0, Some(1.0), "stop"),
            c(1, Some(3.0), "length"),
            c(2, None, "stop"),
            c(3, Some(2.0), "stop"),
            c(4, Some(2.0), "stop"),
        ];
        assert_eq!(top_k(&all, 3, false), vec![1, 3, 4]);
        assert_eq!(top_k(&all, 10, false), vec![1, 3, 4, 0]);
        // truncated candidates stay out while others exist
        assert_eq!(top_k(&all, 3, true), vec![3, 4, 0]);
        assert!(top_k(&[c(0, None, "stop")], 3, false).is_empty());
    }
}
