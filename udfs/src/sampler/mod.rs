//! The samplers: random best-of-N and PRS (preference-guided reflective sampling).
//!
//! Both work on one prompt at a time and talk to the endpoints only through the [`Policy`] and
//! [`Reward`] traits, so the algorithms are tested without HTTP and the execution node can run
//! many prompts at once.

mod adaptive;
mod components;
mod endpoints;
mod judge;
mod seed;
mod tree;
mod unique;

use std::sync::Arc;

use crate::run::DataChecks;
use crate::text::{AnswerPattern, Templates};
use crate::verify::Check;

pub use crate::config::{OnError, RewardPreference};
pub use adaptive::{Plan as AdaptivePlan, Stopped};
pub use components::{Components, PromptView, Scorer};
pub use endpoints::{NoModel, Policy, Reward};
pub use judge::Judge;
pub use seed::derive_seed;
pub use tree::default_widths;

/// Which sampler. Its names (`random`, `prs`) and SQL function names are mapped here only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Method {
    Random,
    Prs,
}

impl Method {
    pub const ALL: [Method; 2] = [Method::Random, Method::Prs];

    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Random => "random",
            Method::Prs => "prs",
        }
    }

    pub fn function_name(&self) -> &'static str {
        match self {
            Method::Random => "random_sample",
            Method::Prs => "prs_sample",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown sampling method {s:?}; expected random or prs"))
    }
}

impl From<Method> for &'static str {
    fn from(m: Method) -> Self {
        m.as_str()
    }
}

impl TryFrom<String> for Method {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

/// One prompt to sample for.
#[derive(Debug, Clone)]
pub struct PromptInput {
    /// The id as text, for seeds.
    pub id_text: String,
    pub prompt: Option<String>,
    pub preference: Option<String>,
    /// The preference came from a column of the input (not the default).
    pub preference_per_row: bool,
    /// The reference answer, from the reference column.
    pub reference: Option<String>,
}

/// One output candidate.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Candidate {
    pub layer: i32,
    pub sample_index: i32,
    pub parent_index: Option<i32>,
    pub feedback: Option<String>,
    pub response: Option<String>,
    /// What `prs.answer_pattern` found in the response (scored instead of it).
    pub answer: Option<String>,
    pub reward: Option<f64>,
    /// With `prs.reward_components`: each component's score (`reward` is their aggregate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewards: Option<std::collections::BTreeMap<String, f64>>,
    /// Whether the answer matches the prompt's reference (`prs.verifier`); `None` without a
    /// verifier or a reference, or when the candidate failed.
    pub verified: Option<bool>,
    pub is_best: bool,
    /// With `prs.judge_top_k`: the comparisons this candidate won with both orders agreeing;
    /// `None` when the judge did not compare it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge_wins: Option<i32>,
    /// With `prs.judge_top_k`: the share of its comparisons whose two orders agreed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge_consistent: Option<f64>,
    /// With `prs.unique`: the earlier candidate this one still repeats when the extra samples
    /// ran out.
    pub duplicate_of: Option<i32>,
    pub finish_reason: Option<String>,
    pub seed: Option<i64>,
    pub error: Option<String>,
}

/// One prompt's candidates, with what the sampler knows of their failures. Requests, tokens
/// and waits are counted by the clients (see [`crate::run::PromptTally`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampled {
    pub candidates: Vec<Candidate>,
    /// The kind of error of each failed candidate.
    pub error_kinds: Vec<String>,
    /// Texts sent to the reward model.
    pub reward_texts: u64,
    /// What the data checks did (duplicates resampled and kept, all candidates truncated).
    pub checks: DataChecks,
    /// Why the prompt stopped getting samples; `None` when it was never sampled.
    pub stopped: Option<Stopped>,
    /// A step failed without failing a candidate (the judge): the prompt is not checkpointed,
    /// so that a re-run tries it again.
    pub unfinished: bool,
}

/// Everything a sampling call needs, shared by all prompts of a query.
pub struct Sampler {
    pub method: Method,
    /// Layer widths; random sampling has one layer.
    pub widths: Vec<usize>,
    pub feedback: bool,
    pub max_choices_per_request: usize,
    pub run_seed: u64,
    pub preference_in_prompt: bool,
    pub reward_preference: RewardPreference,
    pub on_error: OnError,
    /// Truncated candidates (`finish_reason = length`) are best only when all are.
    pub best_excludes_truncated: bool,
    /// Resample duplicates within a prompt, at most this many extra samples (`None`: off).
    pub unique_max_extra: Option<usize>,
    /// Where the answer of a response is (`None`: the whole response).
    pub answer_pattern: Option<AnswerPattern>,
    /// How answers are checked against the prompt's reference (`None`: `prs.verifier = none`).
    pub check: Option<Arc<Check>>,
    /// `prs.reward_protocol = verify`: the reward is the verdict (1.0 or 0.0), no model scores.
    pub reward_from_verdict: bool,
    /// `prs.adaptive` (random sampling only): samples in rounds, stopping early.
    pub adaptive: Option<AdaptivePlan>,
    pub templates: Templates,
    pub policy: Arc<dyn Policy>,
    pub reward: Arc<dyn Reward>,
    /// `prs.reward_components`: the named components that score instead of `reward`.
    pub components: Option<Arc<Components>>,
    /// `prs.judge_top_k`: the judge that compares each prompt's top candidates.
    pub judge: Option<Arc<Judge>>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("method", &self.method)
            .field("widths", &self.widths)
            .field("feedback", &self.feedback)
            .finish()
    }
}

impl Sampled {
    /// The one row of a prompt that was not sampled, holding why.
    pub fn not_started(kind: &str, error: String) -> Self {
        Sampled {
            candidates: vec![Candidate {
                error: Some(error),
                ..Candidate::default()
            }],
            error_kinds: vec![kind.to_string()],
            reward_texts: 0,
            checks: DataChecks::default(),
            stopped: (kind == "budget").then_some(Stopped::Budget),
            unfinished: false,
        }
    }
}

impl Sampler {
    /// Candidates per prompt (`n`): the layer widths summed.
    pub fn n(&self) -> usize {
        self.widths.iter().sum()
    }

    /// What the `reward_model` column says.
    pub fn reward_label(&self) -> String {
        match &self.components {
            Some(c) => c.label(),
            None => self.reward.model_label(),
        }
    }
}

/// The highest reward among scored candidates; ties go to the lowest sample index. With
/// `exclude_truncated`, among those not cut at `max_tokens`, unless all of them were.
pub(crate) fn best_index(c: &[Candidate], exclude_truncated: bool) -> Option<usize> {
    let best_where = |eligible: &dyn Fn(&Candidate) -> bool| {
        let mut best: Option<(usize, f64)> = None;
        for (i, cand) in c.iter().enumerate() {
            if let Some(r) = cand.reward.filter(|_| eligible(cand)) {
                if best.is_none_or(|(_, b)| r > b) {
                    best = Some((i, r));
                }
            }
        }
        best.map(|(i, _)| i)
    };
    match exclude_truncated {
        true => best_where(&|cand| !truncated(cand)).or_else(|| best_where(&|_| true)),
        false => best_where(&|_| true),
    }
}

/// Cut at `max_tokens`.
fn truncated(c: &Candidate) -> bool {
    c.finish_reason.as_deref() == Some("length")
}

#[cfg(test)]
mod tests;
