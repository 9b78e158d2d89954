//! The policy and the reward model as the samplers see them ([`Policy`], [`Reward`]), and
//! their implementations by the HTTP clients.

use async_trait::async_trait;

use crate::client::{all_failed, Choice, PolicyClient, RewardClient, Scored, ServerLoad, Usage};
use crate::error::{EndpointKind, PrsError, Result};
use crate::text::RewardItem;

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

/// The reward model of a call that has none to ask: `prs.reward_protocol = verify` (rewards
/// come from the verdicts) or `prs.reward_components` (the components score). If it were
/// asked, it would say so rather than score.
pub struct NoModel {
    /// The label in the `reward_model` column.
    pub label: String,
    /// Why there is no model, e.g. "reward_protocol = verify has no reward model".
    pub why: &'static str,
}

#[async_trait]
impl Reward for NoModel {
    async fn score(&self, texts: &[RewardItem]) -> Result<Vec<f64>> {
        Err(PrsError::ServerFault {
            endpoint: EndpointKind::Reward,
            reason: format!(
                "{} texts were sent to be scored, but {}",
                texts.len(),
                self.why
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
