//! Counters of the endpoint work of a session's queries, for job summaries.
//!
//! A [`JobStats`] can be installed in a session with [`JobStats::install`]; the sampling
//! functions and the `reward` UDF then count into it. The per-query view is also in
//! `EXPLAIN ANALYZE` (the execution node's metrics).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::prelude::SessionConfig;
use serde::Serialize;

use super::prompt_scope::{PromptScope, PromptTally};
use crate::error::EndpointKind;

/// What the clients count into the tally of the prompt being sampled: each event is
/// recorded once, through [`JobStats`]'s `record_*` methods, which add to the job's totals and,
/// through the prompt's scope ([`super::prompt_scope`]), to the current prompt's tally.
impl PromptTally {
    /// Time spent on a request of `endpoint` (retries and their waits included).
    pub(crate) fn record_wait(endpoint: EndpointKind, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        PromptScope::tally(|t| {
            let wait = match endpoint {
                EndpointKind::Policy => &t.policy_wait_ns,
                EndpointKind::Reward => &t.reward_wait_ns,
                // the judge's time is part of the prompt's, not of either endpoint's
                EndpointKind::Judge => return,
            };
            wait.fetch_add(ns, Ordering::Relaxed);
        });
    }

    /// The tally as a prompt's work (what the sampler reports is added by the caller).
    pub fn work(&self) -> PromptWork {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PromptWork {
            policy_requests: g(&self.policy_requests),
            prompt_tokens: g(&self.prompt_tokens),
            completion_tokens: g(&self.completion_tokens),
            retries: g(&self.retries),
            policy_wait: Duration::from_nanos(g(&self.policy_wait_ns)),
            reward_wait: Duration::from_nanos(g(&self.reward_wait_ns)),
            ..PromptWork::default()
        }
    }
}

/// What one finished prompt cost and produced: the one record of a prompt's work, added to
/// the job's totals ([`JobStats::add_prompt`]) and to the execution node's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptWork {
    pub from_checkpoint: bool,
    /// Rows produced (one per candidate; one for a prompt that could not start).
    pub candidates: u64,
    /// The kind of error of each failed candidate.
    pub error_kinds: Vec<String>,
    /// Texts sent to the reward model.
    pub reward_texts: u64,
    /// Policy requests sent (every attempt).
    pub policy_requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub retries: u64,
    pub policy_wait: Duration,
    pub reward_wait: Duration,
    pub checks: DataChecks,
}

/// What the data checks of the sampler did (`prs.unique`, `prs.best_excludes_truncated`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DataChecks {
    /// Samples asked for again because they repeated an earlier candidate of their prompt.
    pub extra_samples: u64,
    /// Candidates kept although they repeat an earlier one (the extra samples ran out).
    pub duplicates_kept: u64,
    /// Prompts whose scored candidates were all truncated, so the best is one of them.
    pub all_truncated_prompts: u64,
    /// Pairs of candidates the judge compared (`prs.judge_top_k`), each in both orders.
    #[serde(default)]
    pub judge_pairs: u64,
    /// Of them, the pairs whose two orders disagreed: the judge's position bias.
    #[serde(default)]
    pub judge_inconsistent_pairs: u64,
    /// Of them, the pairs where an order's answer held no verdict.
    #[serde(default)]
    pub judge_no_verdict_pairs: u64,
    /// Prompts the judge could not compare (its requests failed): the reward decided.
    #[serde(default)]
    pub judge_failed_prompts: u64,
}

impl DataChecks {
    pub fn add(&mut self, o: &DataChecks) {
        self.extra_samples += o.extra_samples;
        self.duplicates_kept += o.duplicates_kept;
        self.all_truncated_prompts += o.all_truncated_prompts;
        self.judge_pairs += o.judge_pairs;
        self.judge_inconsistent_pairs += o.judge_inconsistent_pairs;
        self.judge_failed_prompts += o.judge_failed_prompts;
        self.judge_no_verdict_pairs += o.judge_no_verdict_pairs;
    }

    /// Whether anything was counted.
    pub fn is_empty(&self) -> bool {
        *self == DataChecks::default()
    }
}

/// Limits on the work a job may start (`max_requests`, `max_generated_tokens`; 0 = none).
/// Checked before each prompt starts: prompts in flight finish, so a job may overshoot by the
/// work of the prompts in flight.
#[derive(Debug, Clone, Copy, Default)]
pub struct Budget {
    pub max_requests: u64,
    pub max_generated_tokens: u64,
}

impl Budget {
    /// Why no new prompt may start, if the budget is spent.
    pub fn exhausted(&self, stats: &JobStats) -> Option<String> {
        let requests = stats.policy_requests.load(Ordering::Relaxed)
            + stats.reward_requests.load(Ordering::Relaxed)
            + stats.judge_requests.load(Ordering::Relaxed);
        if self.max_requests > 0 && requests >= self.max_requests {
            return Some(format!(
                "prs.max_requests = {} reached ({requests} requests made)",
                self.max_requests
            ));
        }
        let tokens = stats.completion_tokens.load(Ordering::Relaxed);
        if self.max_generated_tokens > 0 && tokens >= self.max_generated_tokens {
            return Some(format!(
                "prs.max_generated_tokens = {} reached ({tokens} tokens generated)",
                self.max_generated_tokens
            ));
        }
        None
    }
}

#[derive(Debug, Default)]
pub struct JobStats {
    expected_prompts: AtomicU64,
    prompts: AtomicU64,
    prompts_from_checkpoint: AtomicU64,
    candidates: AtomicU64,
    failed_candidates: AtomicU64,
    retries: AtomicU64,
    policy_requests: AtomicU64,
    reward_requests: AtomicU64,
    judge_requests: AtomicU64,
    reward_texts: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    refused_fields: Mutex<BTreeMap<String, u64>>,
    checks: Mutex<DataChecks>,
}

/// A point-in-time copy of [`JobStats`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatsSnapshot {
    /// Prompts the running calls will read, where the input's statistics say (0 = unknown).
    pub expected_prompts: u64,
    pub prompts: u64,
    pub prompts_from_checkpoint: u64,
    pub candidates: u64,
    pub failed_candidates: u64,
    pub retries: u64,
    pub policy_requests: u64,
    pub reward_requests: u64,
    /// Requests to the judge (`prs.judge_top_k`).
    pub judge_requests: u64,
    /// Texts scored by the reward model for the sampling functions.
    pub reward_texts: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// failed candidates by kind of error
    pub errors: BTreeMap<String, u64>,
    /// Request fields a server refused and that were then dropped for it (`policy.top_k`),
    /// counted once per sampling call that dropped them.
    pub refused_fields: BTreeMap<String, u64>,
    /// Duplicates resampled and kept, prompts with only truncated candidates.
    pub checks: DataChecks,
}

impl JobStats {
    /// Install a fresh instance in `config` and return it.
    pub fn install(config: &mut SessionConfig) -> Arc<JobStats> {
        let stats = Arc::new(JobStats::default());
        config.set_extension(stats.clone());
        stats
    }

    /// The session's instance, or a private one when none is installed.
    pub fn of(config: &SessionConfig) -> Arc<JobStats> {
        config.get_extension::<JobStats>().unwrap_or_default()
    }

    /// Prompts a starting partition will read (from exact input statistics).
    pub fn add_expected_prompts(&self, n: u64) {
        self.expected_prompts.fetch_add(n, Ordering::Relaxed);
    }

    /// A retry of a request (of either endpoint).
    pub(crate) fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        PromptScope::tally(|t| {
            t.retries.fetch_add(1, Ordering::Relaxed);
        });
    }

    /// A policy request sent (each attempt counts).
    pub(crate) fn record_policy_request(&self) {
        self.policy_requests.fetch_add(1, Ordering::Relaxed);
        PromptScope::tally(|t| {
            t.policy_requests.fetch_add(1, Ordering::Relaxed);
        });
    }

    /// Tokens a policy server reported for one answer.
    pub(crate) fn record_tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion, Ordering::Relaxed);
        PromptScope::tally(|t| {
            t.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
            t.completion_tokens.fetch_add(completion, Ordering::Relaxed);
        });
    }

    /// A request refused for an extension field, which is dropped for the endpoint.
    pub(crate) fn record_refused_field(&self, field: &str) {
        if let Ok(mut m) = self.refused_fields.lock() {
            *m.entry(field.to_string()).or_default() += 1;
        }
    }

    /// A request to the judge (each attempt counts).
    pub(crate) fn record_judge_request(&self) {
        self.judge_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A reward request sent (each attempt counts). A batch may hold texts of many prompts,
    /// so it counts for the job only.
    pub(crate) fn record_reward_request(&self) {
        self.reward_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A finished prompt. Requests, tokens and retries were counted as they happened.
    pub fn add_prompt(&self, work: &PromptWork) {
        self.prompts.fetch_add(1, Ordering::Relaxed);
        if work.from_checkpoint {
            self.prompts_from_checkpoint.fetch_add(1, Ordering::Relaxed);
        }
        self.candidates
            .fetch_add(work.candidates, Ordering::Relaxed);
        self.reward_texts
            .fetch_add(work.reward_texts, Ordering::Relaxed);
        if let Ok(mut c) = self.checks.lock() {
            c.add(&work.checks);
        }
        let errors = &work.error_kinds;
        self.failed_candidates
            .fetch_add(errors.len() as u64, Ordering::Relaxed);
        if !errors.is_empty() {
            if let Ok(mut m) = self.errors.lock() {
                for kind in errors {
                    *m.entry(kind.clone()).or_default() += 1;
                }
            }
        }
    }

    /// Add counters gathered elsewhere (a cluster's executors, say) to these.
    pub fn absorb(&self, s: &StatsSnapshot) {
        let add = |a: &AtomicU64, v: u64| a.fetch_add(v, Ordering::Relaxed);
        add(&self.expected_prompts, s.expected_prompts);
        add(&self.prompts, s.prompts);
        add(&self.prompts_from_checkpoint, s.prompts_from_checkpoint);
        add(&self.candidates, s.candidates);
        add(&self.failed_candidates, s.failed_candidates);
        add(&self.retries, s.retries);
        add(&self.policy_requests, s.policy_requests);
        add(&self.reward_requests, s.reward_requests);
        add(&self.judge_requests, s.judge_requests);
        add(&self.reward_texts, s.reward_texts);
        add(&self.prompt_tokens, s.prompt_tokens);
        add(&self.completion_tokens, s.completion_tokens);
        if let Ok(mut c) = self.checks.lock() {
            c.add(&s.checks);
        }
        if let Ok(mut m) = self.refused_fields.lock() {
            for (field, n) in &s.refused_fields {
                *m.entry(field.clone()).or_default() += n;
            }
        }
        if let Ok(mut m) = self.errors.lock() {
            for (kind, n) in &s.errors {
                *m.entry(kind.clone()).or_default() += n;
            }
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            expected_prompts: g(&self.expected_prompts),
            prompts: g(&self.prompts),
            prompts_from_checkpoint: g(&self.prompts_from_checkpoint),
            candidates: g(&self.candidates),
            failed_candidates: g(&self.failed_candidates),
            retries: g(&self.retries),
            policy_requests: g(&self.policy_requests),
            reward_requests: g(&self.reward_requests),
            judge_requests: g(&self.judge_requests),
            reward_texts: g(&self.reward_texts),
            prompt_tokens: g(&self.prompt_tokens),
            completion_tokens: g(&self.completion_tokens),
            errors: self.errors.lock().map(|m| m.clone()).unwrap_or_default(),
            refused_fields: self
                .refused_fields
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default(),
            checks: self.checks.lock().map(|c| *c).unwrap_or_default(),
        }
    }
}
