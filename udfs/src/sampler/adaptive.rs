//! Adaptive allocation (`prs.adaptive`): a prompt's samples come in rounds, and a prompt stops
//! early when more samples are unlikely to teach anything.
//!
//! GRPO-style training learns only from groups that hold both outcomes, DPO only from prompts
//! with a right and a wrong answer. A prompt that is always (or never) solved costs its `n`
//! samples and gives neither. The rule for stopping it is a Bayesian one over the prompt's pass
//! rate `p`: with the Jeffreys prior Beta(½, ½), which puts its weight near 0 and 1 as real RL
//! prompt sets do, after `s` right and `f` wrong verdicts `p` is Beta(½ + s, ½ + f). When all
//! verdicts so far agree (say all right), the chance that the `m` samples left would show the
//! other outcome is `1 − E[p^m]`; the prompt stops when that chance is below
//! `prs.adaptive_threshold`. With the default 0.4 and `n = 8`, three agreeing verdicts stop a
//! prompt (the chance is then 0.37; after two it is 0.48). `docs/benchmarks.md` has the
//! measurements behind the defaults.
//!
//! * `groups`: a prompt whose verdicts disagree is filled to `n` at once (a full informative
//!   group); one whose verdicts agree gets another round, or stops (`uniform`).
//! * `pairs`: a prompt stops as soon as it holds a right and a wrong answer (`pair`); one whose
//!   verdicts agree stops by the same rule as `groups`.
//!
//! Without a verifier (or a reference) the outcomes are the rewards: they "agree" while their
//! spread (best − worst) is below `prs.min_reward_spread`, and make a pair once it is above
//! `prs.pair_margin`.

use super::Candidate;

/// `prs.adaptive` and the settings of its rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub pairs: bool,
    /// Samples in the first round and each later one (`prs.explore`).
    pub explore: usize,
    /// `prs.adaptive_threshold`.
    pub threshold: f64,
    /// `prs.min_reward_spread`.
    pub min_spread: f64,
    /// `prs.pair_margin`.
    pub pair_margin: f64,
}

/// Why a prompt stopped getting samples (the `stopped` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stopped {
    /// It got all `n`.
    #[default]
    Full,
    /// Its outcomes agreed, and more samples were unlikely to change that.
    Uniform,
    /// It holds a right and a wrong answer (`pairs`).
    Pair,
    /// The job's budget was spent before it started.
    Budget,
}

impl std::str::FromStr for Stopped {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            Stopped::Full,
            Stopped::Uniform,
            Stopped::Pair,
            Stopped::Budget,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
        .ok_or_else(|| format!("not a reason to stop: {s:?}"))
    }
}

impl Stopped {
    pub fn as_str(&self) -> &'static str {
        match self {
            Stopped::Full => "full",
            Stopped::Uniform => "uniform",
            Stopped::Pair => "pair",
            Stopped::Budget => "budget",
        }
    }
}

/// What a prompt does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Sample(usize),
    Stop(Stopped),
}

/// The outcomes of a prompt's candidates so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Outcomes {
    right: usize,
    wrong: usize,
    /// Best and worst reward, when outcomes are rewards.
    spread: Option<f64>,
}

impl Outcomes {
    fn of(candidates: &[Candidate], verdicts: bool) -> Self {
        let mut o = Outcomes::default();
        if verdicts {
            for v in candidates.iter().filter_map(|c| c.verified) {
                if v {
                    o.right += 1;
                } else {
                    o.wrong += 1;
                }
            }
            return o;
        }
        let rewards: Vec<f64> = candidates.iter().filter_map(|c| c.reward).collect();
        let max = rewards.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = rewards.iter().copied().fold(f64::INFINITY, f64::min);
        // rewards count as one kind of outcome until they spread
        o.right = rewards.len();
        o.spread = (!rewards.is_empty()).then_some(max - min);
        o
    }
}

impl Plan {
    /// After `candidates` of a prompt of `n`: another round, or stop. `verdicts`: the outcomes
    /// are `verified` (a verifier and a reference), else rewards.
    pub fn next(&self, candidates: &[Candidate], n: usize, verdicts: bool) -> Next {
        let k = candidates.len();
        if k >= n {
            return Next::Stop(Stopped::Full);
        }
        let round = self.explore.max(1).min(n - k);
        let o = Outcomes::of(candidates, verdicts);
        let (mixed, pair) = match o.spread {
            None => (o.right > 0 && o.wrong > 0, o.right > 0 && o.wrong > 0),
            Some(spread) => (spread >= self.min_spread, spread > self.pair_margin),
        };
        if self.pairs && pair {
            return Next::Stop(Stopped::Pair);
        }
        if mixed {
            return Next::Sample(if self.pairs { round } else { n - k });
        }
        if o.right + o.wrong == 0 {
            return Next::Sample(round); // nothing to judge by yet (failed candidates)
        }
        // all agree: stop when the rest would likely agree too
        let (agree, disagree) = (o.right.max(o.wrong), o.right.min(o.wrong));
        if other_outcome_chance(agree, disagree, n - k) < self.threshold {
            Next::Stop(Stopped::Uniform)
        } else {
            Next::Sample(round)
        }
    }
}

/// The posterior chance that `m` more samples show at least one outcome other than the one
/// seen `agree` times (and the other `disagree` times), under the Jeffreys prior:
/// `1 − E[p^m]` for `p ~ Beta(½ + agree, ½ + disagree)`.
pub fn other_outcome_chance(agree: usize, disagree: usize, m: usize) -> f64 {
    let (a, total) = (0.5 + agree as f64, 1.0 + (agree + disagree) as f64);
    let all_agree: f64 = (0..m)
        .map(|j| (a + j as f64) / (total + j as f64))
        .product();
    1.0 - all_agree
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(v: &[bool]) -> Vec<Candidate> {
        v.iter()
            .map(|&b| Candidate {
                verified: Some(b),
                ..Candidate::default()
            })
            .collect()
    }

    fn plan(pairs: bool) -> Plan {
        Plan {
            pairs,
            explore: 3,
            threshold: 0.4,
            min_spread: 0.5,
            pair_margin: 1.0,
        }
    }

    #[test]
    fn the_posterior_chance_of_the_other_outcome() {
        // Beta(2.5, 0.5): E[p^6] = 2.5/3 · 3.5/4 · ... · 7.5/8
        let e: f64 = [2.5, 3.5, 4.5, 5.5, 6.5, 7.5]
            .iter()
            .map(|a| a / (a + 0.5))
            .product();
        assert!((other_outcome_chance(2, 0, 6) - (1.0 - e)).abs() < 1e-12);
        // the more agree, the less chance; nothing left, no chance
        assert!(other_outcome_chance(3, 0, 5) < other_outcome_chance(2, 0, 6));
        assert!((other_outcome_chance(3, 0, 5) - 0.372).abs() < 0.001);
        assert!((other_outcome_chance(2, 0, 6) - 0.477).abs() < 0.001);
        assert_eq!(other_outcome_chance(5, 0, 0), 0.0);
    }

    #[test]
    fn groups_fill_mixed_prompts_and_stop_uniform_ones() {
        let p = plan(false);
        assert_eq!(p.next(&[], 8, true), Next::Sample(3));
        assert_eq!(
            p.next(&verdicts(&[true, false, true]), 8, true),
            Next::Sample(5)
        );
        assert_eq!(
            p.next(&verdicts(&[true; 3]), 8, true),
            Next::Stop(Stopped::Uniform)
        );
        assert_eq!(
            p.next(&verdicts(&[false; 3]), 8, true),
            Next::Stop(Stopped::Uniform)
        );
        // two agreeing verdicts are not enough with n = 8
        assert_eq!(p.next(&verdicts(&[true; 2]), 8, true), Next::Sample(3));
        assert_eq!(
            p.next(&verdicts(&[true; 8]), 8, true),
            Next::Stop(Stopped::Full)
        );
        // failed candidates say nothing: another round
        let failed = vec![Candidate::default(); 3];
        assert_eq!(p.next(&failed, 8, true), Next::Sample(3));
    }

    #[test]
    fn pairs_stop_at_the_first_pair() {
        let p = plan(true);
        assert_eq!(
            p.next(&verdicts(&[true, false]), 8, true),
            Next::Stop(Stopped::Pair)
        );
        assert_eq!(
            p.next(&verdicts(&[true; 3]), 8, true),
            Next::Stop(Stopped::Uniform)
        );
        assert_eq!(
            p.next(&verdicts(&[true; 7]), 8, true),
            Next::Stop(Stopped::Uniform)
        );
    }

    #[test]
    fn without_verdicts_rewards_decide() {
        let rewards = |r: &[f64]| -> Vec<Candidate> {
            r.iter()
                .map(|&x| Candidate {
                    reward: Some(x),
                    ..Candidate::default()
                })
                .collect()
        };
        let g = plan(false);
        assert_eq!(
            g.next(&rewards(&[0.1, 0.2, 0.3]), 8, false),
            Next::Stop(Stopped::Uniform)
        );
        assert_eq!(
            g.next(&rewards(&[0.1, 0.9, 0.3]), 8, false),
            Next::Sample(5)
        );
        let p = plan(true);
        assert_eq!(
            p.next(&rewards(&[0.1, 0.9, 0.3]), 8, false),
            Next::Sample(3)
        );
        assert_eq!(
            p.next(&rewards(&[0.1, 1.5, 0.3]), 8, false),
            Next::Stop(Stopped::Pair)
        );
    }
}
