//! [`CallRuntime`]: what a planned sampling call runs with. It owns the call's HTTP clients
//! (with their in-flight limits), its sampler, checkpoint, budget and preflight outcome, and
//! is shared by the provider and every partition of the execution node.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};

use super::cost::{CostSettings, PromptCost};
use super::single_flight::{flight_for, Flight};
use super::stats::{Budget, JobStats};
use crate::client::{PolicyClient, PolicySettings, RewardClient, RewardSettings};
use crate::config::{Adaptive, PrsConfig, RewardProtocol, Verifier};
use crate::durability::{hash_parts, Checkpoint, Journal, JournaledPolicy, JournaledReward};
use crate::error::{PrsError, Result};
use crate::sampler::{AdaptivePlan, Sampler, Verdicts};
use crate::schema::output_schema;
use crate::sql::{InputColumns, SampleCall};
use crate::text::RewardFormat;
use crate::verify::Check;

/// A planned call with everything it needs to run. Building it calls nothing.
#[derive(Debug)]
pub struct CallRuntime {
    /// The call as planned (what a cluster node rebuilds this runtime from).
    pub call: SampleCall,
    pub columns: InputColumns,
    pub default_preference: Option<String>,
    pub prompt_concurrency: usize,
    /// `prs.grow_window`: the prompt window grows while the policy servers have no queue.
    pub grow_window: bool,
    pub sampler: Arc<Sampler>,
    pub policy: Arc<PolicyClient>,
    /// The reward model's client; `None` with `reward_protocol = verify` (no reward model).
    pub reward: Option<Arc<RewardClient>>,
    pub stats: Arc<JobStats>,
    /// Hash of everything that determines a prompt's output.
    pub fingerprint: String,
    pub checkpoint: Option<Checkpoint>,
    pub flight: Arc<Flight>,
    /// Full output schema.
    pub schema: SchemaRef,
    pub budget: Budget,
    /// Present when the preflight check is on; holds its outcome once it ran.
    preflight: Option<tokio::sync::OnceCell<std::result::Result<(), String>>>,
}

impl CallRuntime {
    /// Build the clients, sampler, fingerprint and checkpoint of `call` over an input with
    /// `columns`.
    pub fn build(call: SampleCall, columns: InputColumns, stats: Arc<JobStats>) -> Result<Self> {
        let cfg = &call.cfg;
        let parts = call.parts();
        let policy = Arc::new(PolicyClient::new(
            &PolicySettings::from_config(cfg)?,
            parts.templates.prompt.clone(),
            stats.clone(),
        )?);
        let check = answer_check(cfg)?;
        let reward = match cfg.reward_protocol {
            RewardProtocol::Verify => None,
            _ => Some(Arc::new(RewardClient::new(
                &RewardSettings::from_config(cfg)?,
                stats.clone(),
            )?)),
        };
        let mut sampler = Sampler {
            method: call.method,
            widths: parts.widths.clone(),
            feedback: cfg.feedback,
            max_choices_per_request: cfg.max_choices_per_request.max(1),
            run_seed: cfg.seed,
            preference_in_prompt: cfg.preference_in_prompt,
            reward_preference: cfg.reward_preference,
            on_error: cfg.on_error,
            best_excludes_truncated: cfg.best_excludes_truncated,
            unique_max_extra: cfg.unique.then(|| cfg.unique_max_extra.of(call.n)),
            answer_pattern: parts.answer_pattern.clone(),
            reward_from_verdict: reward.is_none(),
            adaptive: adaptive_plan(cfg),
            check: check.clone(),
            templates: parts.templates.clone(),
            policy: policy.clone(),
            reward: match &reward {
                Some(client) => client.clone(),
                None => Arc::new(Verdicts {
                    label: format!(
                        "verify:{}",
                        check.as_ref().map_or(Verifier::Math, |c| c.verifier)
                    ),
                }),
            },
        };
        let description = call_description(cfg, &sampler, &columns.id_type);
        let fingerprint = hash_parts(&[&description.to_string()]);
        let checkpoint = (!cfg.checkpoint_dir.trim().is_empty())
            .then(|| Checkpoint::new(cfg.checkpoint_dir.trim(), &fingerprint, description));
        if let Some(c) = &checkpoint {
            journal_answers(&mut sampler, c);
        }
        Ok(CallRuntime {
            default_preference: Some(cfg.default_preference.clone())
                .filter(|p| !p.trim().is_empty()),
            prompt_concurrency: cfg.prompt_concurrency.max(1),
            grow_window: cfg.grow_window,
            sampler: Arc::new(sampler),
            schema: output_schema(&columns.id_type),
            columns,
            stats,
            policy,
            reward,
            flight: flight_for(&flight_key(&fingerprint, cfg)),
            preflight: cfg.preflight.then(tokio::sync::OnceCell::new),
            budget: Budget {
                max_requests: cfg.max_requests,
                max_generated_tokens: cfg.max_generated_tokens,
            },
            fingerprint,
            checkpoint,
            call,
        })
    }

    /// The runtime of one of `tasks` tasks that each count their own requests and tokens (a
    /// distributed engine): `max_requests` and `max_generated_tokens` split evenly (at least 1
    /// each), so the job as a whole stays within them.
    pub fn with_budget_share(self: &Arc<Self>, tasks: usize) -> Result<Arc<Self>> {
        let cfg = &self.call.cfg;
        let has_budget = cfg.max_requests > 0 || cfg.max_generated_tokens > 0;
        if tasks <= 1 || !has_budget {
            return Ok(self.clone());
        }
        // 0 means no limit, so a share never rounds down to it
        let share = |total: u64| {
            if total == 0 {
                0
            } else {
                (total / tasks as u64).max(1)
            }
        };
        let mut call = self.call.clone();
        call.cfg.max_requests = share(cfg.max_requests);
        call.cfg.max_generated_tokens = share(cfg.max_generated_tokens);
        let runtime = CallRuntime::build(call, self.columns.clone(), self.stats.clone())?;
        Ok(Arc::new(runtime))
    }

    /// What one prompt costs when the servers honour `n`.
    pub fn cost_per_prompt(&self) -> PromptCost {
        let conversations = matches!(self.sampler.templates.reward, RewardFormat::Messages);
        let settings = CostSettings {
            max_choices_per_request: self.sampler.max_choices_per_request,
            reward_batch_size: self.reward.as_ref().map_or(1, |r| r.batch_size()),
            feedback: self.sampler.feedback,
            max_tokens: self.policy.max_tokens(),
        };
        let mut cost = PromptCost::of(&self.sampler.widths, &settings, conversations);
        if self.reward.is_none() {
            // rewards come from the verdicts: nothing is sent to a reward model
            cost.reward_requests = 0;
            cost.reward_texts = 0;
        }
        // duplicates may cost extra samples, each at max_tokens
        cost.max_extra_samples = self.sampler.unique_max_extra.unwrap_or(0) as u64;
        cost.max_generated_tokens += cost.max_extra_samples * u64::from(settings.max_tokens);
        cost
    }

    /// Run the preflight check once per call (before its first request); later callers get the
    /// same outcome.
    pub async fn preflight(&self) -> Result<()> {
        let Some(cell) = &self.preflight else {
            return Ok(());
        };
        let inner = |e: PrsError| match e {
            PrsError::Preflight(m) => m,
            other => other.to_string(),
        };
        cell.get_or_init(|| async {
            self.policy.preflight().await.map_err(inner)?;
            let probe = self.sampler.templates.reward.item("ping", "pong", "");
            let probe = probe.map_err(inner)?;
            match &self.reward {
                Some(reward) => reward.preflight(&probe).await.map_err(inner),
                None => Ok(()),
            }
        })
        .await
        .clone()
        .map_err(PrsError::Preflight)
    }
}

/// How the call checks answers against references; `None` with `prs.verifier = none`.
/// `prs.adaptive` and its rule's settings; `None` when off.
fn adaptive_plan(cfg: &PrsConfig) -> Option<AdaptivePlan> {
    (cfg.adaptive != Adaptive::Off).then(|| AdaptivePlan {
        pairs: cfg.adaptive == Adaptive::Pairs,
        explore: cfg.explore.max(1),
        threshold: cfg.adaptive_threshold,
        min_spread: cfg.min_reward_spread,
        pair_margin: cfg.pair_margin,
    })
}

/// `reward_protocol = verify` checks with `math` unless a verifier is set. The sampler hands
/// the check each candidate's answer, already found by `answer_pattern`, so the check does not
/// look for it again.
fn answer_check(cfg: &PrsConfig) -> Result<Option<Arc<Check>>> {
    let verifier = match (cfg.verifier, cfg.reward_protocol) {
        (Verifier::None, RewardProtocol::Verify) => Verifier::Math,
        (Verifier::None, _) => return Ok(None),
        (v, _) => v,
    };
    Ok(Some(Arc::new(Check {
        answer_pattern: None,
        ..Check::from_config(cfg, verifier)?
    })))
}

/// What calls must share to share their work: the fingerprint and every setting, also those
/// that change what a prompt's rows become without changing its requests (`on_error`, the
/// budget, retries, the checkpoint). Never shown or stored, so URLs stay as they are.
fn flight_key(fingerprint: &str, cfg: &PrsConfig) -> String {
    hash_parts(&[fingerprint, &cfg.identity()])
}

/// Everything that determines a prompt's output under this call, as JSON: hashed into the
/// call fingerprint and written to the checkpoint's `call.json`. No secrets: keys are not
/// settings. Without `policy_model` the model is whatever the URL serves, so the URL stands in.
fn call_description(cfg: &PrsConfig, s: &Sampler, id_type: &DataType) -> serde_json::Value {
    let t = &s.templates;
    let policy_model = match cfg.policy_model.trim() {
        // shown in call.json: no credentials (changing a password keeps the checkpoint)
        "" => format!(
            "(first model of {})",
            crate::redact::redact_urls(cfg.policy_url.trim())
        ),
        model => model.to_string(),
    };
    let mut description = serde_json::json!({
        "version": 1,
        "method": s.method.as_str(),
        "widths": s.widths,
        "feedback": s.feedback,
        "preference_in_prompt": s.preference_in_prompt,
        "reward_preference": cfg.reward_preference.to_string(),
        "seed": s.run_seed,
        "max_choices_per_request": s.max_choices_per_request,
        "policy_api": cfg.policy_api.to_string(),
        "policy_model": policy_model,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "top_k": cfg.top_k,
        "presence_penalty": cfg.presence_penalty,
        "max_tokens": cfg.max_tokens,
        "stop": cfg.stop,
        "reward_protocol": cfg.reward_protocol.to_string(),
        "reward_model": s.reward.model_label(),
        "templates": {
            "prompt": t.prompt.source(),
            "feedback": t.feedback.source(),
            "revise": t.revise.source(),
            "revise_no_feedback": t.revise_no_feedback.source(),
        },
        "id_type": id_type.to_string(),
    });
    // text input keeps its old place, so that checkpoints of text-mode calls stay valid
    match &t.reward {
        RewardFormat::Text(template) => {
            description["templates"]["reward"] = template.source().into()
        }
        chat => description["reward_input"] = chat.describe(),
    }
    // only when set, so that calls without it keep their checkpoints
    if s.best_excludes_truncated {
        description["best_excludes_truncated"] = true.into();
    }
    if let Some(max_extra) = s.unique_max_extra {
        description["unique_max_extra"] = max_extra.into();
    }
    if let Some(pattern) = &s.answer_pattern {
        description["answer_pattern"] = pattern.source().into();
    }
    if let Some(plan) = &s.adaptive {
        description["adaptive"] = serde_json::json!({
            "pairs": plan.pairs,
            "explore": plan.explore,
            "threshold": plan.threshold,
            "min_reward_spread": plan.min_spread,
            "pair_margin": plan.pair_margin,
        });
    }
    if let Some(check) = &s.check {
        description["verifier"] = check.verifier.to_string().into();
        description["verify_timeout_ms"] = cfg.verify_timeout_ms.into();
    }
    let extra_body = cfg.policy_extra_body.trim();
    if !extra_body.is_empty() {
        description["policy_extra_body"] = serde_json::Value::from(extra_body);
    }
    description
}

/// Journal the sampler's answers in the checkpoint's folder as they arrive, so that a re-run
/// sends only what was in flight.
fn journal_answers(sampler: &mut Sampler, checkpoint: &Checkpoint) {
    let journal = Arc::new(Journal::new(checkpoint.dir()));
    sampler.policy = Arc::new(JournaledPolicy {
        inner: sampler.policy.clone(),
        journal: journal.clone(),
    });
    sampler.reward = Arc::new(JournaledReward {
        inner: sampler.reward.clone(),
        journal,
    });
}
