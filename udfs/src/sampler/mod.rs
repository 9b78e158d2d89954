//! The samplers: random best-of-N and PRS (preference-guided reflective sampling).
//!
//! Both work on one prompt at a time and talk to the endpoints only through the [`Policy`] and
//! [`Reward`] traits, so the algorithms are tested without HTTP and the execution node can run
//! many prompts at once.

mod adaptive;
mod seed;
mod tree;
mod unique;

use std::sync::Arc;

use async_trait::async_trait;

use crate::client::{all_failed, Choice, PolicyClient, RewardClient, Scored, ServerLoad, Usage};
use crate::error::{EndpointKind, PrsError, Result};
use crate::run::DataChecks;
use crate::text::{AnswerPattern, RewardItem, Templates};
use crate::verify::Check;

pub use crate::config::{OnError, RewardPreference};
pub use adaptive::{Plan as AdaptivePlan, Stopped};
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

/// The policy as the samplers see it.
#[async_trait]
pub trait Policy: Send + Sync {
    /// One request for up to `n` samples of `text` with `seed`; `depth` is how deep in the
    /// sampling tree it is (deeper work may go first).
    async fn complete(
        &self,
        text: &str,
        n: usize,
        seed: i64,
        depth: u32,
    ) -> Result<(Vec<Choice>, Usage)>;
    /// The model name (may ask the server once).
    async fn model(&self) -> Result<String>;
    /// Whether samples should be asked for one per request (the server ignores `n`, or
    /// `prs.policy_n = single`).
    fn one_per_request(&self) -> bool {
        false
    }
    /// The load the policy servers report (requests running and waiting), if they do.
    async fn server_load(&self) -> Option<ServerLoad> {
        None
    }
}

/// The "reward model" of `prs.reward_protocol = verify`: rewards come from the verdicts, so it
/// is never asked; if it were, it would say so rather than score.
pub struct Verdicts {
    /// The label in the `reward_model` column: `verify:<verifier>`.
    pub label: String,
}

#[async_trait]
impl Reward for Verdicts {
    async fn score(&self, texts: &[RewardItem]) -> Result<Vec<f64>> {
        Err(PrsError::ServerFault {
            endpoint: EndpointKind::Reward,
            reason: format!(
                "{} texts were sent to be scored, but reward_protocol = verify has no reward model",
                texts.len()
            ),
        })
    }

    fn model_label(&self) -> String {
        self.label.clone()
    }
}

/// The reward model as the samplers see it.
#[async_trait]
pub trait Reward: Send + Sync {
    /// One score per response, in order.
    async fn score(&self, texts: &[RewardItem]) -> Result<Vec<f64>>;
    /// One outcome per response, in order: where the model can tell, a response it refuses
    /// fails alone, not the responses scored with it. By default one failure fails all.
    async fn score_each(&self, texts: &[RewardItem]) -> Vec<Scored> {
        match self.score(texts).await {
            Ok(scores) if scores.len() == texts.len() => scores.into_iter().map(Ok).collect(),
            Ok(scores) => {
                let reason = format!("expected {} scores, got {}", texts.len(), scores.len());
                let e = PrsError::ServerFault {
                    endpoint: EndpointKind::Reward,
                    reason,
                };
                all_failed(texts.len(), e)
            }
            Err(e) => all_failed(texts.len(), e),
        }
    }
    fn model_label(&self) -> String;
}

#[async_trait]
impl Policy for PolicyClient {
    async fn complete(
        &self,
        text: &str,
        n: usize,
        seed: i64,
        depth: u32,
    ) -> Result<(Vec<Choice>, Usage)> {
        PolicyClient::complete(self, text, n, seed, depth).await
    }
    async fn model(&self) -> Result<String> {
        PolicyClient::model(self).await
    }
    fn one_per_request(&self) -> bool {
        PolicyClient::one_per_request(self)
    }
    async fn server_load(&self) -> Option<ServerLoad> {
        PolicyClient::server_load(self).await
    }
}

#[async_trait]
impl Reward for RewardClient {
    async fn score(&self, texts: &[RewardItem]) -> Result<Vec<f64>> {
        RewardClient::score(self, texts).await
    }
    async fn score_each(&self, texts: &[RewardItem]) -> Vec<Scored> {
        RewardClient::score_each(self, texts).await
    }
    fn model_label(&self) -> String {
        RewardClient::model_label(self)
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
    /// Whether the answer matches the prompt's reference (`prs.verifier`); `None` without a
    /// verifier or a reference, or when the candidate failed.
    pub verified: Option<bool>,
    pub is_best: bool,
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
        }
    }
}

impl Sampler {
    /// Candidates per prompt (`n`): the layer widths summed.
    pub fn n(&self) -> usize {
        self.widths.iter().sum()
    }
}

#[cfg(test)]
mod tests;
