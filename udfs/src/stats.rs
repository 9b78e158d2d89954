//! Counters of the endpoint work of a session's queries, for job summaries.
//!
//! A [`JobStats`] can be installed in a session with [`JobStats::install`]; the sampling
//! functions and the `reward` UDF then count into it. The per-query view is also in
//! `EXPLAIN ANALYZE` (the execution node's metrics).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::prelude::SessionConfig;
use serde::Serialize;

/// Counters of the requests made while sampling one prompt, gathered through a task-local so
/// that the clients need not know which query node they work for.
#[derive(Debug, Default)]
pub struct CallCounters {
    pub retries: AtomicU64,
    pub policy_wait_ns: AtomicU64,
    pub reward_wait_ns: AtomicU64,
}

tokio::task_local! {
    /// Set by the execution node around each prompt's work.
    pub static CALL_COUNTERS: Arc<CallCounters>;
}

/// Count a retry against the current prompt's node, if any.
pub(crate) fn note_retry() {
    let _ = CALL_COUNTERS.try_with(|c| c.retries.fetch_add(1, Ordering::Relaxed));
}

/// Count time spent on a request (retries and their waits included) of `endpoint`.
pub(crate) fn note_wait(endpoint: &str, took: std::time::Duration) {
    let ns = took.as_nanos() as u64;
    let _ = CALL_COUNTERS.try_with(|c| match endpoint {
        "policy" => c.policy_wait_ns.fetch_add(ns, Ordering::Relaxed),
        _ => c.reward_wait_ns.fetch_add(ns, Ordering::Relaxed),
    });
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
            + stats.reward_requests.load(Ordering::Relaxed);
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
    reward_texts: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
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
    /// Texts scored by the reward model for the sampling functions.
    pub reward_texts: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// failed candidates by kind of error
    pub errors: BTreeMap<String, u64>,
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

    pub fn add_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_policy_request(&self) {
        self.policy_requests.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_reward_request(&self) {
        self.reward_requests.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion, Ordering::Relaxed);
    }

    /// A finished prompt with its candidates; `errors` are the kinds of its failed candidates.
    pub fn add_prompt(&self, candidates: u64, errors: &[String], from_checkpoint: bool) {
        self.prompts.fetch_add(1, Ordering::Relaxed);
        if from_checkpoint {
            self.prompts_from_checkpoint.fetch_add(1, Ordering::Relaxed);
        }
        self.candidates.fetch_add(candidates, Ordering::Relaxed);
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

    pub fn add_reward_texts(&self, n: u64) {
        self.reward_texts.fetch_add(n, Ordering::Relaxed);
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
        add(&self.reward_texts, s.reward_texts);
        add(&self.prompt_tokens, s.prompt_tokens);
        add(&self.completion_tokens, s.completion_tokens);
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
            reward_texts: g(&self.reward_texts),
            prompt_tokens: g(&self.prompt_tokens),
            completion_tokens: g(&self.completion_tokens),
            errors: self.errors.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }
}
