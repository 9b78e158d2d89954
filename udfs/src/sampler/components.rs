//! Reward components (`prs.reward_components`): several reward models and verifiers score each
//! candidate concurrently, each with its own client, format and checks, and one rule
//! (`prs.reward_aggregate`) makes their scores the candidate's reward.
//!
//! A candidate one component could not score gets no reward: it is an error row naming that
//! component, never an aggregate of the components that did answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;

use super::{Reward, RewardPreference};
use crate::client::{all_failed, RewardClient, RewardSettings, Scored};
use crate::config::{component_specs, PrsConfig, RewardAggregate, RewardProtocol};
use crate::error::{EndpointKind, PrsError, Result};
use crate::run::JobStats;
use crate::text::RewardFormat;
use crate::verify::Check;

/// How one component scores.
pub enum Scorer {
    /// A reward model, sent each candidate in the component's own format.
    Model {
        reward: Arc<dyn Reward>,
        format: RewardFormat,
        preference: RewardPreference,
        protocol: RewardProtocol,
    },
    /// A verifier: 1.0 when the answer matches the prompt's reference, else 0.0.
    Verifier(Arc<Check>),
}

/// One named component.
pub struct Component {
    pub name: String,
    /// Its weight in the aggregate; 0: recorded in `rewards`, not counted.
    pub weight: f64,
    pub scorer: Scorer,
}

/// The components of a call and how their scores make one reward.
pub struct Components {
    pub list: Vec<Component>,
    pub rule: RewardAggregate,
    /// `prs.reward_uncertainty_weight`, for `mean_minus_std`.
    pub uncertainty_weight: f64,
}

/// What the components see of a prompt.
pub struct PromptView<'a> {
    pub prompt: &'a str,
    pub preference: Option<&'a str>,
    /// The preference came from a column of the input.
    pub per_row: bool,
    pub reference: Option<&'a str>,
}

/// One candidate's score from every component, or the component that failed it and why.
pub type ComponentScores = Result<BTreeMap<String, f64>, (String, Arc<PrsError>)>;

impl std::fmt::Debug for Components {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// Components, and the clients of those that are reward models by name.
pub type Built = (Components, Vec<(String, Arc<RewardClient>)>);

impl Components {
    /// The components `cfg.reward_components` lists, with a client for each reward model and
    /// its format from `formats` (by name, as the call's templates parsed them); `None`
    /// without components.
    pub fn build(
        cfg: &PrsConfig,
        formats: &BTreeMap<String, RewardFormat>,
        stats: &Arc<JobStats>,
    ) -> Result<Option<Built>> {
        let specs = component_specs(cfg)?;
        if specs.is_empty() {
            return Ok(None);
        }
        let mut list = Vec::with_capacity(specs.len());
        let mut clients = Vec::new();
        for spec in specs {
            let named = |e: PrsError| {
                let reason = format!("reward component {:?}: {e}", spec.name);
                PrsError::setting("reward_components", &spec.name, reason)
            };
            spec.check_url()?;
            let scorer = match spec.verifier() {
                Some(v) => Scorer::Verifier(Arc::new(Check {
                    answer_pattern: None,
                    ..Check::from_config(&spec.cfg, v).map_err(named)?
                })),
                None => {
                    let settings = RewardSettings::from_config(&spec.cfg).map_err(named)?;
                    let client = RewardClient::new(&settings, stats.clone()).map_err(named)?;
                    let client = Arc::new(client);
                    let format = formats.get(&spec.name).cloned().ok_or_else(|| {
                        let e = "its reward template was not planned with the call";
                        named(PrsError::Preflight(e.into()))
                    })?;
                    clients.push((spec.name.clone(), client.clone()));
                    Scorer::Model {
                        reward: client,
                        format,
                        preference: spec.cfg.reward_preference,
                        protocol: spec.cfg.reward_protocol,
                    }
                }
            };
            list.push(Component {
                name: spec.name,
                weight: spec.weight,
                scorer,
            });
        }
        let components = Components {
            list,
            rule: cfg.reward_aggregate,
            uncertainty_weight: cfg.reward_uncertainty_weight,
        };
        Ok(Some((components, clients)))
    }

    /// Each text's scores from all components, asked at once; in order.
    pub async fn score(&self, prompt: &PromptView<'_>, texts: &[&str]) -> Vec<ComponentScores> {
        let each = join_all(self.list.iter().map(|c| c.score(prompt, texts))).await;
        (0..texts.len())
            .map(|i| {
                let mut scores = BTreeMap::new();
                for (c, outcomes) in self.list.iter().zip(&each) {
                    match outcomes.get(i) {
                        Some(Ok(s)) => scores.insert(c.name.clone(), *s),
                        Some(Err(e)) => return Err((c.name.clone(), e.clone())),
                        None => return Err((c.name.clone(), Arc::new(missing(texts.len())))),
                    };
                }
                Ok(scores)
            })
            .collect()
    }

    /// The reward the components' `scores` make under the call's rule.
    pub fn aggregate(&self, scores: &BTreeMap<String, f64>) -> f64 {
        let weighted: Vec<(f64, f64)> = self
            .list
            .iter()
            .filter_map(|c| Some((c.weight, *scores.get(&c.name)?)))
            .collect();
        aggregate(self.rule, self.uncertainty_weight, &weighted)
    }

    /// The first verifier among the components, by name.
    pub fn verifier(&self) -> Option<&str> {
        self.list
            .iter()
            .find(|c| matches!(c.scorer, Scorer::Verifier(_)))
            .map(|c| c.name.as_str())
    }

    /// Texts sent to reward models per candidate.
    pub fn models(&self) -> usize {
        self.list
            .iter()
            .filter(|c| matches!(c.scorer, Scorer::Model { .. }))
            .count()
    }

    /// What the `reward_model` column says: the rule and each component's model, e.g.
    /// `weighted(helpful=rm-7b, correct=verify:math)`.
    pub fn label(&self) -> String {
        let parts: Vec<String> = self
            .list
            .iter()
            .map(|c| {
                let model = match &c.scorer {
                    Scorer::Model { reward, .. } => reward.model_label(),
                    Scorer::Verifier(check) => format!("verify:{}", check.verifier),
                };
                format!("{}={model}", c.name)
            })
            .collect();
        format!("{}({})", self.rule, parts.join(", "))
    }
}

impl Component {
    /// One outcome per text.
    async fn score(&self, prompt: &PromptView<'_>, texts: &[&str]) -> Vec<Scored> {
        match &self.scorer {
            Scorer::Model {
                reward,
                format,
                preference,
                ..
            } => {
                let shown = reward_prompt(
                    *preference,
                    prompt.prompt,
                    prompt.preference,
                    prompt.per_row,
                );
                let z = prompt.preference.unwrap_or("");
                score_texts(reward.as_ref(), format, &shown, z, texts).await
            }
            Scorer::Verifier(check) => verdict_scores(check, prompt.reference, texts).await,
        }
    }
}

/// 1.0 for each text whose answer matches `reference`, 0.0 for each that does not; an error
/// for a check that cannot decide, and for every text of a prompt without a reference.
async fn verdict_scores(
    check: &Arc<Check>,
    reference: Option<&str>,
    texts: &[&str],
) -> Vec<Scored> {
    let Some(reference) = reference.filter(|r| !r.trim().is_empty()) else {
        let e = PrsError::Unverifiable(format!(
            "verifier {} rewards answers by their reference, and this prompt has none (a null \
             or empty value in the reference column, prs.reference_column)",
            check.verifier
        ));
        return all_failed(texts.len(), e);
    };
    let items = texts
        .iter()
        .map(|t| (Some(t.to_string()), Some(reference.to_string())))
        .collect();
    crate::verify::verdicts(check.clone(), items)
        .await
        .into_iter()
        .map(|verdict| match verdict {
            Ok(Some(v)) => Ok(if v { 1.0 } else { 0.0 }),
            Ok(None) => Err(Arc::new(PrsError::Unverifiable(
                "the check gave no verdict".into(),
            ))),
            Err(e) => Err(Arc::new(PrsError::Unverifiable(e.to_string()))),
        })
        .collect()
}

/// Score `texts` (responses, or their answers) with `reward`, each sent in `format` against
/// `reward_prompt`: one outcome per text, in order. A response the model refuses fails alone.
pub(super) async fn score_texts(
    reward: &dyn Reward,
    format: &RewardFormat,
    reward_prompt: &str,
    preference: &str,
    texts: &[&str],
) -> Vec<Scored> {
    let items = texts
        .iter()
        .map(|t| format.item(reward_prompt, t, preference))
        .collect::<Result<Vec<_>>>();
    let outcomes = match items {
        Ok(items) => reward.score_each(&items).await,
        Err(e) => return all_failed(texts.len(), e),
    };
    if outcomes.len() == texts.len() {
        return outcomes;
    }
    let e = outcomes
        .into_iter()
        .find_map(|o| o.err())
        .unwrap_or_else(|| Arc::new(missing(texts.len())));
    all_failed(texts.len(), e)
}

fn missing(expected: usize) -> PrsError {
    PrsError::ServerFault {
        endpoint: EndpointKind::Reward,
        reason: format!("expected {expected} scores"),
    }
}

/// The prompt as a reward model sees it: with the preference under `always`, or under `auto`
/// when the preference came from the input.
pub(super) fn reward_prompt(
    mode: RewardPreference,
    prompt: &str,
    preference: Option<&str>,
    per_row: bool,
) -> String {
    match (mode, preference) {
        (RewardPreference::Always, Some(z)) => with_preference(prompt, z),
        (RewardPreference::Auto, Some(z)) if per_row => with_preference(prompt, z),
        _ => prompt.to_string(),
    }
}

/// The prompt followed by the preference, as the policy and the reward models read them.
pub(super) fn with_preference(prompt: &str, preference: &str) -> String {
    format!("{prompt}\n\n{preference}")
}

/// `(weight, score)` pairs made one reward. Components of weight 0 take no part.
///
/// * `weighted`: the sum of weight × score;
/// * `min`: the lowest score;
/// * `mean_minus_std`: the weighted mean less `uncertainty_weight` × the weighted (population)
///   standard deviation: an ensemble that disagrees is trusted less.
pub fn aggregate(rule: RewardAggregate, uncertainty_weight: f64, scores: &[(f64, f64)]) -> f64 {
    let counted = scores.iter().filter(|(w, _)| *w > 0.0);
    match rule {
        RewardAggregate::Weighted => counted.map(|(w, s)| w * s).sum(),
        RewardAggregate::Min => counted.map(|(_, s)| *s).fold(f64::INFINITY, f64::min),
        RewardAggregate::MeanMinusStd => {
            let total: f64 = counted.clone().map(|(w, _)| w).sum();
            let mean = counted.clone().map(|(w, s)| w * s).sum::<f64>() / total;
            let variance = counted.map(|(w, s)| w * (s - mean).powi(2)).sum::<f64>() / total;
            mean - uncertainty_weight * variance.sqrt()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_of_aggregation() {
        let scores = [(0.7, 2.0), (0.3, -1.0), (0.0, -100.0)];
        let weighted = aggregate(RewardAggregate::Weighted, 1.0, &scores);
        assert!((weighted - (1.4 - 0.3)).abs() < 1e-12);
        // weight 0 is recorded, not counted: the worst counted score
        assert_eq!(aggregate(RewardAggregate::Min, 1.0, &scores), -1.0);
        // equal weights: mean 0.5, population std 1.5
        let ensemble = [(1.0, 2.0), (1.0, -1.0)];
        assert!(
            (aggregate(RewardAggregate::MeanMinusStd, 1.0, &ensemble) - (0.5 - 1.5)).abs() < 1e-12
        );
        assert!(
            (aggregate(RewardAggregate::MeanMinusStd, 2.0, &ensemble) - (0.5 - 3.0)).abs() < 1e-12
        );
        assert_eq!(
            aggregate(RewardAggregate::MeanMinusStd, 1.0, &[(1.0, 3.0)]),
            3.0
        );
        // weights move the mean and the spread: 3/4 of the weight at 2.0
        let uneven = [(3.0, 2.0), (1.0, -2.0)];
        let (mean, std) = (1.0, (0.75f64 * 1.0 + 0.25 * 9.0).sqrt());
        assert!(
            (aggregate(RewardAggregate::MeanMinusStd, 1.0, &uneven) - (mean - std)).abs() < 1e-12
        );
        // an ensemble that agrees loses nothing
        let agree = [(1.0, 1.5), (1.0, 1.5), (1.0, 1.5)];
        assert_eq!(aggregate(RewardAggregate::MeanMinusStd, 1.0, &agree), 1.5);
    }

    #[test]
    fn the_reward_prompt_carries_the_preference_as_set() {
        let p = |mode, per_row| reward_prompt(mode, "q", Some("z"), per_row);
        assert_eq!(p(RewardPreference::Always, false), "q\n\nz");
        assert_eq!(p(RewardPreference::Auto, false), "q");
        assert_eq!(p(RewardPreference::Auto, true), "q\n\nz");
        assert_eq!(p(RewardPreference::Never, true), "q");
        assert_eq!(
            reward_prompt(RewardPreference::Always, "q", None, true),
            "q"
        );
    }
}
