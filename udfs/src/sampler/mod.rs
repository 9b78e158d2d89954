//! The samplers: random best-of-N and PRS (preference-guided reflective sampling).
//!
//! Both work on one prompt at a time and talk to the endpoints only through the [`Policy`] and
//! [`Reward`] traits, so the algorithms are tested without HTTP and the execution node can run
//! many prompts at once.

mod seed;
mod tree;

use std::sync::Arc;

use async_trait::async_trait;

use crate::client::{Choice, PolicyClient, RewardClient, Usage};
use crate::error::{PrsError, Result};
use crate::templates::Templates;

pub use seed::derive_seed;
pub use tree::default_widths;

/// Which sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Random,
    Prs,
}

impl Method {
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

/// The policy as the samplers see it.
#[async_trait]
pub trait Policy: Send + Sync {
    /// One request for up to `n` samples of `text` with `seed`.
    async fn complete(&self, text: &str, n: usize, seed: i64) -> Result<(Vec<Choice>, Usage)>;
    /// The model name (may ask the server once).
    async fn model(&self) -> Result<String>;
}

/// The reward model as the samplers see it.
#[async_trait]
pub trait Reward: Send + Sync {
    /// One score per text, in order.
    async fn score(&self, texts: &[String]) -> Result<Vec<f64>>;
    fn model_label(&self) -> String;
}

#[async_trait]
impl Policy for PolicyClient {
    async fn complete(&self, text: &str, n: usize, seed: i64) -> Result<(Vec<Choice>, Usage)> {
        PolicyClient::complete(self, text, n, seed).await
    }
    async fn model(&self) -> Result<String> {
        PolicyClient::model(self).await
    }
}

#[async_trait]
impl Reward for RewardClient {
    async fn score(&self, texts: &[String]) -> Result<Vec<f64>> {
        RewardClient::score(self, texts).await
    }
    fn model_label(&self) -> String {
        RewardClient::model_label(self)
    }
}

/// Whether the text scored by the reward model carries the preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewardPreference {
    /// Only when the preference came from a column of the input (the reference's behaviour).
    Auto,
    Always,
    Never,
}

impl RewardPreference {
    pub fn parse(value: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => Err(PrsError::setting(
                "reward_preference",
                value,
                "expected auto, always or never",
            )),
        }
    }
}

/// What a candidate that still fails after retries becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// A row with `error` set and a null reward; the query goes on.
    Row,
    /// The query fails.
    Fail,
}

impl OnError {
    pub fn parse(value: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "row" => Ok(Self::Row),
            "fail" => Ok(Self::Fail),
            _ => Err(PrsError::setting("on_error", value, "expected row or fail")),
        }
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
}

/// One output candidate.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Candidate {
    pub layer: i32,
    pub sample_index: i32,
    pub parent_index: Option<i32>,
    pub feedback: Option<String>,
    pub response: Option<String>,
    pub reward: Option<f64>,
    pub is_best: bool,
    pub finish_reason: Option<String>,
    pub seed: Option<i64>,
    pub error: Option<String>,
}

/// Counters of the endpoint work one prompt cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkStats {
    pub policy_requests: u64,
    pub reward_texts: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The kind of error of each failed candidate.
    pub error_kinds: Vec<String>,
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

impl Sampler {
    /// Candidates per prompt (`n`): the layer widths summed.
    pub fn n(&self) -> usize {
        self.widths.iter().sum()
    }

    /// Candidates for one prompt. A null or empty prompt makes no calls and yields one row
    /// holding the error.
    pub async fn sample(&self, input: &PromptInput) -> Result<(Vec<Candidate>, WorkStats)> {
        let prompt = match input.prompt.as_deref() {
            Some(p) if !p.trim().is_empty() => p,
            _ => {
                return Ok((
                    vec![Candidate {
                        error: Some("prompt is null or empty; no request was made".into()),
                        ..Candidate::default()
                    }],
                    WorkStats {
                        error_kinds: vec!["empty_prompt".into()],
                        ..WorkStats::default()
                    },
                ))
            }
        };
        tree::run(self, input, prompt).await
    }
}

#[cfg(test)]
mod tests;
