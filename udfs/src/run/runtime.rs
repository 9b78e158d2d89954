//! [`CallRuntime`]: what a planned sampling call runs with. It owns the call's HTTP clients
//! (with their in-flight limits), its sampler, checkpoint, budget and preflight outcome, and
//! is shared by the provider and every partition of the execution node.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};

use super::cost::{CostSettings, PromptCost};
use super::single_flight::{flight_for, Flight};
use super::stats::{Budget, JobStats};
use crate::client::{PolicyClient, PolicySettings, RewardClient, RewardSettings};
use crate::config::{Adaptive, PrsConfig, RewardAggregate, RewardProtocol, Verifier};
use crate::durability::{hash_parts, Checkpoint, Journal, JournaledPolicy, JournaledReward};
use crate::error::{PrsError, Result};
use crate::sampler::{AdaptivePlan, Components, Judge, NoModel, Reward, Sampler, Scorer};
use crate::schema::output_schema;
use crate::sql::{InputColumns, SampleCall};
use crate::text::{RewardFormat, Templates};
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
    /// The reward model's client; `None` with `reward_protocol = verify` (no reward model)
    /// or with `prs.reward_components`.
    pub reward: Option<Arc<RewardClient>>,
    /// The clients of the reward models among `prs.reward_components`, by component name.
    pub component_clients: Vec<(String, Arc<RewardClient>)>,
    /// The judge's client (`prs.judge_top_k`).
    pub judge_client: Option<Arc<PolicyClient>>,
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
        let built = Components::build(cfg, &parts.templates.components, &stats)?;
        let (components, component_clients) = match built {
            Some((c, clients)) => (Some(Arc::new(c)), clients),
            None => (None, Vec::new()),
        };
        let (judge, judge_client) = match build_judge(cfg, &parts.templates, &stats)? {
            Some((judge, client)) => (Some(judge), Some(client)),
            None => (None, None),
        };
        let reward = match (cfg.reward_protocol, &components) {
            (RewardProtocol::Verify, _) | (_, Some(_)) => None,
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
            reward_from_verdict: reward.is_none() && components.is_none(),
            adaptive: adaptive_plan(cfg),
            check: check.clone(),
            templates: parts.templates.clone(),
            policy: policy.clone(),
            reward: sampler_reward(&reward, &components, &check),
            components,
            judge,
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
            component_clients,
            judge_client,
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
            // rewards come from the verdicts, or from the components' models (counted below)
            cost.reward_requests = 0;
            cost.reward_texts = 0;
        }
        for (name, client) in &self.component_clients {
            let format = self.sampler.templates.components.get(name);
            let settings = CostSettings {
                reward_batch_size: client.batch_size(),
                ..settings
            };
            let conversations = matches!(format, Some(RewardFormat::Messages));
            let own = PromptCost::of(&self.sampler.widths, &settings, conversations);
            cost.reward_requests += own.reward_requests;
            cost.reward_texts += own.reward_texts;
        }
        // duplicates may cost extra samples, each at max_tokens
        cost.max_extra_samples = self.sampler.unique_max_extra.unwrap_or(0) as u64;
        cost.max_generated_tokens += cost.max_extra_samples * u64::from(settings.max_tokens);
        if let Some(judge) = &self.sampler.judge {
            let k = judge.top_k.min(self.sampler.n()) as u64;
            cost.judge_requests = k * k.saturating_sub(1);
        }
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
            if let Some(reward) = &self.reward {
                reward.preflight(&probe).await.map_err(inner)?;
            }
            if let Some(judge) = &self.judge_client {
                let named = |e: PrsError| format!("the judge (prs.judge_url): {}", inner(e));
                judge.preflight().await.map_err(named)?;
            }
            for (name, client) in &self.component_clients {
                let Some(format) = self.sampler.templates.components.get(name) else {
                    continue;
                };
                let probe = format.item("ping", "pong", "").map_err(inner)?;
                let named = |e: PrsError| format!("reward component {name:?}: {}", inner(e));
                client.preflight(&probe).await.map_err(named)?;
            }
            Ok(())
        })
        .await
        .clone()
        .map_err(PrsError::Preflight)
    }
}

/// What the sampler's `reward` is: the reward model's client, or, where no one model scores,
/// one that says why when asked.
fn sampler_reward(
    client: &Option<Arc<RewardClient>>,
    components: &Option<Arc<Components>>,
    check: &Option<Arc<Check>>,
) -> Arc<dyn Reward> {
    match (client, components) {
        (Some(client), _) => client.clone(),
        (None, Some(c)) => Arc::new(NoModel {
            label: c.label(),
            why: "the reward components score candidates, not one reward model",
        }),
        (None, None) => Arc::new(NoModel {
            label: format!(
                "verify:{}",
                check.as_ref().map_or(Verifier::Math, |c| c.verifier)
            ),
            why: "reward_protocol = verify has no reward model",
        }),
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
        "reward_model": s.reward_label(),
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
    describe_scoring(cfg, s, &mut description);
    let extra_body = cfg.policy_extra_body.trim();
    if !extra_body.is_empty() {
        description["policy_extra_body"] = serde_json::Value::from(extra_body);
    }
    description
}

/// The reward components and the judge in a call's description, when the call has them (so
/// that calls without them keep their checkpoints).
fn describe_scoring(cfg: &PrsConfig, s: &Sampler, description: &mut serde_json::Value) {
    let t = &s.templates;
    if let Some(components) = &s.components {
        description["reward_components"] = describe_components(components, &t.components);
        description["reward_aggregate"] = components.rule.to_string().into();
        if components.rule == RewardAggregate::MeanMinusStd {
            description["reward_uncertainty_weight"] = components.uncertainty_weight.into();
        }
    }
    if let Some(judge) = &s.judge {
        let model = match cfg.judge_model.trim() {
            "" => format!(
                "(first model of {})",
                crate::redact::redact_urls(cfg.judge_url.trim())
            ),
            model => model.to_string(),
        };
        description["judge"] = serde_json::json!({
            "model": model,
            "top_k": judge.top_k,
            "max_tokens": cfg.judge_max_tokens,
            "template": judge.template.source(),
        });
    }
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
        journal: journal.clone(),
        component: None,
    });
    // built a moment ago, so held here only
    if let Some(judge) = sampler.judge.as_mut().and_then(Arc::get_mut) {
        judge.policy = Arc::new(JournaledPolicy {
            inner: judge.policy.clone(),
            journal: journal.clone(),
        });
    }
    let Some(components) = sampler.components.as_mut().and_then(Arc::get_mut) else {
        return;
    };
    for c in &mut components.list {
        if let Scorer::Model { reward, .. } = &mut c.scorer {
            *reward = Arc::new(JournaledReward {
                inner: reward.clone(),
                journal: journal.clone(),
                component: Some(c.name.clone()),
            });
        }
    }
}

/// What each component contributes to a call's fingerprint: its name and weight, and its
/// verifier, or its model, protocol and what the model is sent.
fn describe_components(
    components: &Components,
    formats: &std::collections::BTreeMap<String, RewardFormat>,
) -> serde_json::Value {
    let each = components.list.iter().map(|c| {
        let mut d = serde_json::json!({ "name": c.name, "weight": c.weight });
        match &c.scorer {
            Scorer::Verifier(check) => {
                d["verifier"] = check.verifier.to_string().into();
                d["verify_timeout_ms"] = (check.timeout.as_millis() as u64).into();
            }
            Scorer::Model {
                reward,
                preference,
                protocol,
                ..
            } => {
                d["reward_model"] = reward.model_label().into();
                d["reward_protocol"] = protocol.to_string().into();
                d["reward_preference"] = preference.to_string().into();
                if let Some(format) = formats.get(&c.name) {
                    d["reward_input"] = format.describe();
                }
            }
        }
        d
    });
    serde_json::Value::Array(each.collect())
}

/// The judge of `prs.judge_top_k` and its client; `None` when it is 0 (off).
fn build_judge(
    cfg: &PrsConfig,
    templates: &Templates,
    stats: &Arc<JobStats>,
) -> Result<Option<(Arc<Judge>, Arc<PolicyClient>)>> {
    match cfg.judge_top_k {
        0 => return Ok(None),
        1 => {
            return Err(PrsError::setting(
                "judge_top_k",
                "1",
                "one candidate has no other to be compared with: set 0 (off), or 2 or more",
            ))
        }
        _ => {}
    }
    if cfg.judge_url.trim().is_empty() {
        return Err(PrsError::setting(
            "judge_url",
            "",
            format!(
                "judge_top_k = {} compares candidates with a judge: set prs.judge_url to an \
                 OpenAI-compatible chat server (http://host:port/v1), or judge_top_k = 0",
                cfg.judge_top_k
            ),
        ));
    }
    let settings = PolicySettings::for_judge(cfg)?;
    let client = Arc::new(PolicyClient::new(
        &settings,
        templates.prompt.clone(),
        stats.clone(),
    )?);
    let judge = Judge {
        policy: client.clone(),
        template: templates.judge.clone(),
        top_k: cfg.judge_top_k,
    };
    Ok(Some((Arc::new(judge), client)))
}
