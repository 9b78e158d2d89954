//! The prompt pipeline of one partition: each prompt comes from the checkpoint when it holds
//! it, else (once the preflight check passed and while the budget lasts) is sampled and then
//! stored; prompts start as the window lets them ([`super::admission`]), and a prompt
//! that another node of the same call is already working on is awaited, not sampled twice.

use std::sync::Arc;

use datafusion::common::{exec_datafusion_err, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder, Time};
use futures::{FutureExt, Stream, TryStreamExt};

use super::admission::{self, Window};
use super::prompt_scope::{PromptScope, PromptTally};
use super::runtime::CallRuntime;
use super::stats::PromptWork;
use crate::durability::prompt_key;
use crate::sampler::{PromptInput, Sampled};
use crate::schema::PromptResult;

/// A partition's counters in the node's metrics (`EXPLAIN ANALYZE`).
pub(crate) struct SampleMetrics {
    prompts: Count,
    policy_requests: Count,
    reward_texts: Count,
    prompt_tokens: Count,
    completion_tokens: Count,
    failed_candidates: Count,
    from_checkpoint: Count,
    /// Rows produced (one per candidate; one for a prompt that could not start).
    candidates: Count,
    retries: Count,
    extra_samples: Count,
    duplicates_kept: Count,
    all_truncated_prompts: Count,
    policy_wait: Time,
    reward_wait: Time,
}

impl SampleMetrics {
    pub fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        let count = |name: &'static str| MetricBuilder::new(metrics).counter(name, partition);
        let time = |name: &'static str| MetricBuilder::new(metrics).subset_time(name, partition);
        SampleMetrics {
            prompts: count("prompts"),
            policy_requests: count("policy_requests"),
            reward_texts: count("reward_texts"),
            prompt_tokens: count("prompt_tokens"),
            completion_tokens: count("completion_tokens"),
            failed_candidates: count("failed_candidates"),
            from_checkpoint: count("prompts_from_checkpoint"),
            candidates: count("candidates"),
            retries: count("retries"),
            extra_samples: count("extra_samples"),
            duplicates_kept: count("duplicates_kept"),
            all_truncated_prompts: count("all_truncated_prompts"),
            policy_wait: time("policy_wait"),
            reward_wait: time("reward_wait"),
        }
    }

    fn record(&self, w: &PromptWork) {
        let add = |c: &Count, v: u64| c.add(usize::try_from(v).unwrap_or(usize::MAX));
        add(&self.prompts, 1);
        add(&self.from_checkpoint, u64::from(w.from_checkpoint));
        add(&self.candidates, w.candidates);
        add(&self.failed_candidates, w.error_kinds.len() as u64);
        add(&self.reward_texts, w.reward_texts);
        add(&self.policy_requests, w.policy_requests);
        add(&self.prompt_tokens, w.prompt_tokens);
        add(&self.completion_tokens, w.completion_tokens);
        add(&self.retries, w.retries);
        add(&self.extra_samples, w.checks.extra_samples);
        add(&self.duplicates_kept, w.checks.duplicates_kept);
        add(&self.all_truncated_prompts, w.checks.all_truncated_prompts);
        self.policy_wait.add_duration(w.policy_wait);
        self.reward_wait.add_duration(w.reward_wait);
    }
}

/// What a partition's prompts run with.
#[derive(Clone)]
pub(crate) struct PromptPipeline {
    pub runtime: Arc<CallRuntime>,
    pub metrics: Arc<SampleMetrics>,
}

impl PromptPipeline {
    /// Each prompt's result, in the order they finish, started as `window` lets them.
    pub fn run(
        self,
        prompts: impl Stream<Item = Result<(ScalarValue, PromptInput)>> + Send + 'static,
        window: Window,
    ) -> impl Stream<Item = Result<Arc<PromptResult>>> + Send + 'static {
        let places = window.places();
        admission::grow(&places, window, self.runtime.sampler.policy.clone());
        prompts
            .map_ok(move |(id, input)| {
                let key = prompt_key(&self.runtime.fingerprint, &input);
                let work = self.clone().shared(key.clone(), id, input);
                admission::enter(places.clone(), key, work)
            })
            .try_buffer_unordered(window.in_progress)
    }

    /// The prompt's result, computed once by whichever node of the call asks first.
    async fn shared(
        self,
        key: String,
        id: ScalarValue,
        input: PromptInput,
    ) -> Result<Arc<PromptResult>> {
        let flight = self.runtime.flight.clone();
        let work = {
            let key = key.clone();
            move || {
                async move {
                    self.produce(key, id, input)
                        .await
                        .map(Arc::new)
                        .map_err(Arc::new)
                }
                .boxed()
            }
        };
        flight
            .run(key, work)
            .await
            .map_err(|e| match Arc::try_unwrap(e) {
                Ok(e) => e,
                Err(shared) => DataFusionError::Shared(shared),
            })
    }

    /// One prompt's rows: from the checkpoint when it holds them, else sampled (and stored).
    async fn produce(
        self,
        key: String,
        id: ScalarValue,
        input: PromptInput,
    ) -> Result<PromptResult> {
        if let Some(result) = self.load(&key).await? {
            self.record(&PromptWork {
                from_checkpoint: true,
                candidates: result.candidates.len() as u64,
                ..PromptWork::default()
            });
            return Ok(result);
        }
        // A prompt whose answers all came from the journal sent no request, yet was sampled
        // exactly as an uninterrupted run samples it: it gets the same model columns and is
        // kept in the checkpoint, so no later run replays it again.
        let (sampled, tally, started) = self.sample(&input).await?;
        let answered = sampled.candidates.iter().any(|c| c.response.is_some());
        let called = started && (tally.policy_requests > 0 || answered);
        let rt = &self.runtime;
        let policy_model = match called {
            true => Some(rt.sampler.policy.model().await?),
            false => None,
        };
        let unfinished = sampled.unfinished;
        let result = PromptResult {
            id,
            prompt: input.prompt,
            preference: input.preference,
            method: rt.sampler.method,
            policy_model,
            reward_model: called.then(|| rt.sampler.reward.model_label()),
            reference: input.reference,
            stopped: sampled.stopped,
            candidates: sampled.candidates,
        };
        // only complete prompts are kept: a re-run retries the failed ones
        if called && !unfinished && result.candidates.iter().all(|c| c.error.is_none()) {
            self.store(key, &result).await?;
        }
        self.record(&PromptWork {
            candidates: result.candidates.len() as u64,
            error_kinds: sampled.error_kinds,
            reward_texts: sampled.reward_texts,
            checks: sampled.checks,
            ..tally
        });
        Ok(result)
    }

    /// Sample the prompt (after the preflight check), or, with the budget spent, one row
    /// saying so; with the work its requests cost, and whether it was sampled (false for an
    /// empty prompt or a spent budget: no model saw it).
    async fn sample(&self, input: &PromptInput) -> Result<(Sampled, PromptWork, bool)> {
        let rt = &self.runtime;
        let has_prompt = input
            .prompt
            .as_deref()
            .is_some_and(|p| !p.trim().is_empty());
        if has_prompt {
            rt.preflight().await?;
        }
        let tally = Arc::new(PromptTally::default());
        let sampled = match rt.budget.exhausted(&rt.stats) {
            Some(reason) if has_prompt => {
                let row = Sampled::not_started(
                    "budget",
                    format!("budget: {reason}; no request was made for this prompt"),
                );
                return Ok((row, tally.work(), false));
            }
            _ => PromptScope::counting(tally.clone(), rt.sampler.sample(input)).await?,
        };
        Ok((sampled, tally.work(), has_prompt))
    }

    /// The prompt's rows if the checkpoint holds them.
    async fn load(&self, key: &str) -> Result<Option<PromptResult>> {
        if self.runtime.checkpoint.is_none() {
            return Ok(None);
        }
        let (rt, key) = (self.runtime.clone(), key.to_string());
        tokio::task::spawn_blocking(move || {
            rt.checkpoint
                .as_ref()
                .and_then(|c| c.load(&key, &rt.schema))
        })
        .await
        .map_err(|e| exec_datafusion_err!("reading the checkpoint stopped: {e}"))
    }

    /// Keep the prompt's rows in the checkpoint (durably, before they are output).
    async fn store(&self, key: String, result: &PromptResult) -> Result<()> {
        if self.runtime.checkpoint.is_none() {
            return Ok(());
        }
        let (rt, stored) = (self.runtime.clone(), result.clone());
        tokio::task::spawn_blocking(move || match &rt.checkpoint {
            Some(c) => c.store(&key, &rt.schema, &stored),
            None => Ok(()),
        })
        .await
        .map_err(|e| exec_datafusion_err!("writing the checkpoint stopped: {e}"))?
        .map_err(DataFusionError::from)
    }

    /// One record of a finished prompt's work, into the node's metrics and the job's totals.
    fn record(&self, work: &PromptWork) {
        self.metrics.record(work);
        self.runtime.stats.add_prompt(work);
    }
}
