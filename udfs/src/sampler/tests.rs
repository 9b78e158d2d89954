use std::sync::Mutex;

use super::*;
use crate::client::{Choice, Usage};
use crate::config::PrsConfig;
use crate::error::{PrsError, Result};
use crate::text::RewardItem;
use async_trait::async_trait;

/// A policy that records every request and answers `min(n, cap)` choices.
struct FakePolicy {
    cap: usize,
    /// Asks for one sample per request (a server known to ignore `n`).
    single: bool,
    calls: Mutex<Vec<(String, usize, i64)>>,
}

#[async_trait]
impl Policy for FakePolicy {
    async fn complete(
        &self,
        text: &str,
        n: usize,
        seed: i64,
        _depth: u32,
    ) -> Result<(Vec<Choice>, Usage)> {
        let k = self.calls.lock().unwrap().len();
        self.calls.lock().unwrap().push((text.to_string(), n, seed));
        let choices = (0..n.min(self.cap))
            .map(|i| Choice {
                text: format!("answer-{k}-{i}"),
                finish_reason: Some("stop".into()),
            })
            .collect();
        Ok((
            choices,
            Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
            },
        ))
    }
    async fn model(&self) -> Result<String> {
        Ok("fake".into())
    }
    fn one_per_request(&self) -> bool {
        self.single
    }
}

/// A reward that scores by a hash of the text and records what it returned; it fails the
/// call numbered `fail_call` (0-based) with a server error.
#[derive(Default)]
struct FakeReward {
    scored: Mutex<Vec<(String, f64)>>,
    calls: Mutex<usize>,
    fail_call: Option<usize>,
}

fn fake_score(text: &str) -> f64 {
    let h = text
        .bytes()
        .fold(7u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
    (h % 1000) as f64 / 10.0
}

#[async_trait]
impl Reward for FakeReward {
    async fn score(&self, items: &[RewardItem]) -> Result<Vec<f64>> {
        // the conversation as a server with the UltraRM template would render it
        let texts: Vec<String> = items
            .iter()
            .map(|i| match i {
                RewardItem::Text { text, .. } => text.clone(),
                RewardItem::Chat { user, assistant } => {
                    format!("Human: {user}\nAssistant: {assistant}")
                }
            })
            .collect();
        let call = {
            let mut c = self.calls.lock().unwrap();
            *c += 1;
            *c - 1
        };
        if Some(call) == self.fail_call {
            return Err(PrsError::Status {
                endpoint: crate::error::EndpointKind::Reward,
                url: "http://rm/pooling".into(),
                status: 503,
                message: "overloaded".into(),
                retry_after: None,
            });
        }
        let out: Vec<f64> = texts.iter().map(|t| fake_score(t)).collect();
        let mut s = self.scored.lock().unwrap();
        for (t, v) in texts.iter().zip(&out) {
            s.push((t.clone(), *v));
        }
        Ok(out)
    }
    fn model_label(&self) -> String {
        "fake-rm".into()
    }
}

fn sampler(
    method: Method,
    widths: Vec<usize>,
    feedback: bool,
    cap: usize,
) -> (Sampler, Arc<FakePolicy>, Arc<FakeReward>) {
    let policy = Arc::new(FakePolicy {
        cap,
        single: false,
        calls: Mutex::new(vec![]),
    });
    let reward = Arc::new(FakeReward::default());
    let s = Sampler {
        method,
        widths,
        feedback,
        max_choices_per_request: 4,
        run_seed: 7,
        preference_in_prompt: true,
        reward_preference: RewardPreference::Auto,
        on_error: OnError::Row,
        best_excludes_truncated: false,
        unique_max_extra: None,
        answer_pattern: None,
        check: None,
        reward_from_verdict: false,
        adaptive: None,
        templates: Templates::from_config(&PrsConfig::default()).unwrap(),
        policy: policy.clone(),
        reward: reward.clone(),
        components: None,
        judge: None,
    };
    (s, policy, reward)
}

fn input() -> PromptInput {
    PromptInput {
        id_text: "42".into(),
        prompt: Some("Name a colour.".into()),
        preference: Some("I like short answers.".into()),
        preference_per_row: true,
        reference: None,
    }
}

#[tokio::test]
async fn random_sampling_shape_and_best() {
    let (s, policy, reward) = sampler(Method::Random, vec![6], true, 100);
    let Sampled {
        candidates: c,
        error_kinds,
        ..
    } = s.sample(&input()).await.unwrap();
    assert_eq!(c.len(), 6);
    assert_eq!(
        c.iter().map(|c| c.sample_index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5]
    );
    assert!(c
        .iter()
        .all(|c| c.layer == 0 && c.parent_index.is_none() && c.feedback.is_none()));
    // 6 samples at most 4 per request: two requests, n=4 then n=2, with the prompt + preference
    let calls = policy.calls.lock().unwrap().clone();
    let mut ns: Vec<usize> = calls.iter().map(|c| c.1).collect();
    ns.sort();
    assert_eq!(ns, vec![2, 4]);
    assert!(calls
        .iter()
        .all(|c| c.0 == "Name a colour.\n\nI like short answers."));
    assert_eq!(calls.len(), 2);
    assert!(error_kinds.is_empty());
    // each stored reward is the one returned for that response's text
    let scored = reward.scored.lock().unwrap().clone();
    for cand in &c {
        let resp = cand.response.as_deref().unwrap();
        let hit = scored
            .iter()
            .find(|(t, _)| t.ends_with(&format!("Assistant: {resp}")))
            .unwrap();
        assert_eq!(Some(hit.1), cand.reward);
        // per-row preference goes into the reward prompt (auto)
        assert!(hit
            .0
            .starts_with("Human: Name a colour.\n\nI like short answers.\nAssistant: "));
    }
    let best: Vec<_> = c.iter().filter(|c| c.is_best).collect();
    assert_eq!(best.len(), 1);
    let max = c.iter().filter_map(|c| c.reward).fold(f64::MIN, f64::max);
    assert_eq!(best[0].reward, Some(max));
}

#[tokio::test]
async fn prs_call_graph() {
    let (s, policy, _reward) = sampler(Method::Prs, vec![3, 3], true, 100);
    let c = s.sample(&input()).await.unwrap().candidates;
    assert_eq!(c.len(), 6);
    let calls = policy.calls.lock().unwrap().clone();
    // layer 0 request, one feedback request (n=1), one layer-1 request
    assert_eq!(calls.len(), 3);
    let layer0: Vec<_> = c.iter().filter(|c| c.layer == 0).collect();
    let best0 = layer0
        .iter()
        .max_by(|a, b| a.reward.partial_cmp(&b.reward).unwrap())
        .unwrap();
    let best_text = best0.response.clone().unwrap();
    let (fb_req, fb_n, _) = &calls[1];
    assert_eq!(*fb_n, 1);
    assert!(fb_req.contains(&best_text), "feedback request holds y0*");
    assert!(fb_req.contains("I like short answers."));
    let feedback = "answer-1-0"; // the fake's reply to the second call
    let (rev_req, rev_n, _) = &calls[2];
    assert_eq!(*rev_n, 3);
    assert!(rev_req.contains(&best_text) && rev_req.contains(feedback));
    for cand in c.iter().filter(|c| c.layer == 1) {
        assert_eq!(cand.parent_index, Some(best0.sample_index));
        assert_eq!(cand.feedback.as_deref(), Some(feedback));
    }
    assert_eq!(
        c.iter().map(|c| c.sample_index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5]
    );
    assert_eq!(c.iter().filter(|c| c.is_best).count(), 1);
}

#[tokio::test]
async fn prs_without_feedback_and_deeper_trees() {
    let (s, policy, _) = sampler(Method::Prs, vec![2, 1, 1], false, 100);
    let c = s.sample(&input()).await.unwrap().candidates;
    assert_eq!(c.len(), 4);
    assert_eq!(
        c.iter().map(|c| c.layer).collect::<Vec<_>>(),
        vec![0, 0, 1, 2]
    );
    assert!(c.iter().all(|c| c.feedback.is_none()));
    // no feedback calls: one request per layer
    assert_eq!(policy.calls.lock().unwrap().len(), 3);
    // layer 2 revises the best of layers 0 and 1
    let best01 = c[..3]
        .iter()
        .max_by(|a, b| {
            a.reward
                .partial_cmp(&b.reward)
                .unwrap()
                .then(b.sample_index.cmp(&a.sample_index))
        })
        .unwrap();
    assert_eq!(c[3].parent_index, Some(best01.sample_index));
}

#[tokio::test]
async fn tops_up_when_server_ignores_n() {
    let (s, policy, _) = sampler(Method::Random, vec![3], true, 1);
    let Sampled {
        candidates: c,
        error_kinds,
        ..
    } = s.sample(&input()).await.unwrap();
    assert_eq!(c.len(), 3);
    let calls = policy.calls.lock().unwrap().clone();
    assert_eq!(calls.iter().map(|c| c.1).collect::<Vec<_>>(), vec![3, 2, 1]);
    // each top-up uses the seed of the first sample it asks for
    let seeds: Vec<i64> = calls.iter().map(|c| c.2).collect();
    assert_eq!(
        seeds,
        (0..3)
            .map(|i| derive_seed(7, "42", 0, i))
            .collect::<Vec<_>>()
    );
    assert_eq!(c.iter().map(|c| c.seed.unwrap()).collect::<Vec<_>>(), seeds);
    assert_eq!(calls.len(), 3);
    assert!(error_kinds.is_empty());
}

#[tokio::test]
async fn empty_prompt_makes_no_calls() {
    let (s, policy, _) = sampler(Method::Prs, vec![2, 2], true, 100);
    for p in [None, Some("  ".to_string())] {
        let c = s
            .sample(&PromptInput {
                prompt: p,
                ..input()
            })
            .await
            .unwrap()
            .candidates;
        assert_eq!(c.len(), 1);
        assert!(c[0].error.as_deref().unwrap().contains("null or empty"));
        assert!(!c[0].is_best);
    }
    assert!(policy.calls.lock().unwrap().is_empty());
}

#[test]
fn seeds_are_deterministic_and_distinct() {
    assert_eq!(derive_seed(1, "a", 0, 0), derive_seed(1, "a", 0, 0));
    let all = [
        derive_seed(1, "a", 0, 0),
        derive_seed(2, "a", 0, 0),
        derive_seed(1, "b", 0, 0),
        derive_seed(1, "a", 1, 0),
        derive_seed(1, "a", 0, 1),
    ];
    for i in 0..all.len() {
        assert!((0..=i32::MAX as i64).contains(&all[i]));
        for j in 0..i {
            assert_ne!(all[i], all[j]);
        }
    }
}

#[test]
fn default_widths_split_n() {
    assert_eq!(default_widths(16), vec![8, 8]);
    assert_eq!(default_widths(5), vec![3, 2]);
    assert_eq!(default_widths(1), vec![1]);
}

#[tokio::test]
async fn failed_rewards_are_null_and_best_is_among_scored() {
    let (mut s, _, _) = sampler(Method::Prs, vec![3, 3], true, 100);
    s.reward = Arc::new(FakeReward {
        fail_call: Some(1),
        ..FakeReward::default()
    });
    let Sampled {
        candidates: c,
        error_kinds,
        ..
    } = s.sample(&input()).await.unwrap();
    assert_eq!(c.len(), 6);
    for cand in &c[3..] {
        assert!(cand.reward.is_none() && cand.response.is_some());
        assert!(cand
            .error
            .as_deref()
            .unwrap()
            .contains("HTTP 503: overloaded"));
    }
    assert_eq!(error_kinds, vec!["reward_http_503"; 3]);
    let best: Vec<_> = c.iter().filter(|c| c.is_best).collect();
    assert_eq!(best.len(), 1);
    assert_eq!(best[0].layer, 0);

    s.on_error = OnError::Fail;
    s.reward = Arc::new(FakeReward {
        fail_call: Some(0),
        ..FakeReward::default()
    });
    assert!(s.sample(&input()).await.is_err());
}

#[tokio::test]
async fn one_request_per_sample_gives_the_rows_of_the_top_up() {
    let (mut s, _, _) = sampler(Method::Prs, vec![3, 3], true, 1);
    let topped_up = s.sample(&input()).await.unwrap().candidates;
    let policy = Arc::new(FakePolicy {
        cap: 1,
        single: true,
        calls: Mutex::new(vec![]),
    });
    s.policy = policy.clone();
    let single = s.sample(&input()).await.unwrap().candidates;
    // every request asked for one sample, each with its own sample's seed
    let calls = policy.calls.lock().unwrap().clone();
    assert!(calls.iter().all(|c| c.1 == 1), "{calls:?}");
    assert_eq!(calls.len(), 3 + 1 + 3, "3 samples, 1 feedback, 3 revisions");
    let seeds = |c: &[Candidate]| {
        c.iter()
            .map(|c| (c.sample_index, c.seed))
            .collect::<Vec<_>>()
    };
    assert_eq!(seeds(&single), seeds(&topped_up));
    let expected: Vec<i64> = (0..3).map(|i| derive_seed(7, "42", 0, i)).collect();
    let mut layer0: Vec<i64> = calls[..3].iter().map(|c| c.2).collect();
    layer0.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(layer0, want);
}

#[test]
fn truncated_candidates_are_best_only_when_all_are() {
    let c = |reward: f64, finish: &str| Candidate {
        reward: Some(reward),
        finish_reason: Some(finish.into()),
        ..Candidate::default()
    };
    let mixed = [c(1.0, "stop"), c(3.0, "length"), c(2.0, "stop")];
    assert_eq!(best_index(&mixed, false), Some(1));
    assert_eq!(best_index(&mixed, true), Some(2));
    let all_cut = [c(1.0, "length"), c(3.0, "length")];
    assert_eq!(best_index(&all_cut, true), Some(1));
    assert_eq!(best_index(&[], true), None);
}

/// A policy whose choice `i` of a request is `answer(seed, i)`; it records (text, n, seed).
struct ScriptPolicy {
    answer: fn(i64, usize) -> String,
    calls: Mutex<Vec<(String, usize, i64)>>,
}

#[async_trait]
impl Policy for ScriptPolicy {
    async fn complete(
        &self,
        text: &str,
        n: usize,
        seed: i64,
        _depth: u32,
    ) -> Result<(Vec<Choice>, Usage)> {
        self.calls.lock().unwrap().push((text.to_string(), n, seed));
        let choices = (0..n)
            .map(|i| Choice {
                text: (self.answer)(seed, i),
                finish_reason: Some("stop".into()),
            })
            .collect();
        Ok((choices, Usage::default()))
    }
    async fn model(&self) -> Result<String> {
        Ok("script".into())
    }
}

fn scripted(
    method: Method,
    widths: Vec<usize>,
    answer: fn(i64, usize) -> String,
) -> (Sampler, Arc<ScriptPolicy>, Arc<FakeReward>) {
    let (mut s, _, reward) = sampler(method, widths, true, 100);
    let policy = Arc::new(ScriptPolicy {
        answer,
        calls: Mutex::new(vec![]),
    });
    s.policy = policy.clone();
    (s, policy, reward)
}

/// The first request of each prompt answers the same text `n` times; later ones are fresh.
fn repeats_first_request(seed: i64, i: usize) -> String {
    if seed == derive_seed(7, "42", 0, 0) {
        " the  same\n".into()
    } else {
        format!("fresh {seed} {i}")
    }
}

#[tokio::test]
async fn unique_resamples_repeats_with_the_next_seeds() {
    let (mut s, policy, _) = scripted(Method::Random, vec![4], repeats_first_request);
    s.unique_max_extra = Some(4);
    let out = s.sample(&input()).await.unwrap();
    let texts: Vec<&str> = out
        .candidates
        .iter()
        .map(|c| c.response.as_deref().unwrap())
        .collect();
    let distinct: std::collections::HashSet<_> = texts.iter().collect();
    assert_eq!(distinct.len(), 4, "{texts:?}");
    assert_eq!(texts[0], " the  same\n", "the first of a text stays");
    // three repeats, asked again in one request of n=3 seeded past the prompt's n
    assert_eq!(out.checks.extra_samples, 3);
    assert_eq!(out.checks.duplicates_kept, 0);
    let calls = policy.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!((calls[1].1, calls[1].2), (3, derive_seed(7, "42", 0, 4)));
    assert!(out.candidates[1..]
        .iter()
        .all(|c| c.seed == Some(derive_seed(7, "42", 0, 4)) && c.duplicate_of.is_none()));
    // the same run gives the same rows
    let (mut again, _, _) = scripted(Method::Random, vec![4], repeats_first_request);
    again.unique_max_extra = Some(4);
    assert_eq!(again.sample(&input()).await.unwrap(), out);
}

#[tokio::test]
async fn unique_keeps_and_marks_repeats_when_the_extra_samples_run_out() {
    let (mut s, policy, _) = scripted(Method::Prs, vec![3, 2], |_, _| "same".into());
    s.unique_max_extra = Some(2);
    let out = s.sample(&input()).await.unwrap();
    let c = &out.candidates;
    assert_eq!(c.len(), 5);
    assert_eq!(c[0].duplicate_of, None);
    // every later candidate (layer 1 too) still repeats candidate 0
    assert!(c[1..].iter().all(|c| c.duplicate_of == Some(0)), "{c:?}");
    assert_eq!(out.checks.extra_samples, 2);
    assert_eq!(out.checks.duplicates_kept, 4);
    // the layer-0 request, one of n=2 for both repeats, feedback, layer 1: nothing more
    let ns: Vec<usize> = policy.calls.lock().unwrap().iter().map(|c| c.1).collect();
    assert_eq!(ns, vec![3, 2, 1, 2]);
    // off: no extra request, nothing marked
    let (s, policy, _) = scripted(Method::Prs, vec![3, 2], |_, _| "same".into());
    let out = s.sample(&input()).await.unwrap();
    assert!(out.candidates.iter().all(|c| c.duplicate_of.is_none()));
    assert!(out.checks.is_empty());
    assert_eq!(policy.calls.lock().unwrap().len(), 3);
}

/// A reasoning policy: a think block, then the answer; one sample in four never finishes
/// thinking.
fn thinks(seed: i64, i: usize) -> String {
    match i {
        3 => "<think>still going".into(),
        _ => format!("<think>scratch {seed}</think>\n\nFinal {seed} {i}"),
    }
}

#[tokio::test]
async fn answer_pattern_scores_and_revises_the_answer_only() {
    let (mut s, policy, reward) = scripted(Method::Prs, vec![4, 2], thinks);
    s.answer_pattern = crate::text::AnswerPattern::from_setting("think").unwrap();
    let out = s.sample(&input()).await.unwrap();
    let scored = reward.scored.lock().unwrap().clone();
    assert_eq!(scored.len(), 5, "the unfinished sample is not scored");
    assert!(
        scored.iter().all(|(t, _)| !t.contains("scratch")),
        "{scored:?}"
    );
    let calls = policy.calls.lock().unwrap().clone();
    // feedback and revise prompts carry the best answer, not its think block
    assert!(calls[1..].iter().all(|(t, _, _)| !t.contains("scratch")));
    assert!(calls[2].0.contains("Final "));
    for c in &out.candidates {
        let response = c.response.as_deref().unwrap();
        assert!(response.starts_with("<think>"), "the response keeps it all");
        match c.sample_index {
            3 => {
                assert!(c.answer.is_none() && c.reward.is_none());
                assert!(c.error.as_deref().unwrap().contains("</think>"), "{c:?}");
            }
            _ => assert!(c.answer.as_deref().unwrap().starts_with("Final ")),
        }
    }
    assert_eq!(out.error_kinds, vec!["no_answer"]);
}

fn checking(verifier: crate::config::Verifier) -> Option<Arc<crate::verify::Check>> {
    Some(Arc::new(crate::verify::Check {
        verifier,
        answer_pattern: None,
        timeout: std::time::Duration::from_secs(1),
    }))
}

#[tokio::test]
async fn each_answer_is_checked_against_the_reference() {
    let (mut s, _, reward) = sampler(Method::Prs, vec![2, 2], true, 100);
    s.check = checking(crate::config::Verifier::Regex);
    // the fake policy answers `answer-{request}-{i}`: the pattern holds for the first of each
    let with_reference = PromptInput {
        reference: Some("-0$".into()),
        ..input()
    };
    let out = s.sample(&with_reference).await.unwrap();
    let verified: Vec<_> = out.candidates.iter().map(|c| c.verified).collect();
    assert_eq!(verified, [Some(true), Some(false), Some(true), Some(false)]);
    assert!(out.error_kinds.is_empty());
    // the reward model still scores every candidate: `verified` sits beside the reward
    assert!(out.candidates.iter().all(|c| c.reward.is_some()));
    assert_eq!(reward.scored.lock().unwrap().len(), 4);
    // no reference (or no verifier): nothing is checked
    let out = s.sample(&input()).await.unwrap();
    assert!(out.candidates.iter().all(|c| c.verified.is_none()));
}

#[tokio::test]
async fn a_check_that_cannot_decide_is_an_error_row_not_a_verdict() {
    let (mut s, _, _) = sampler(Method::Random, vec![3], true, 100);
    s.check = checking(crate::config::Verifier::Regex);
    // not a regular expression: no check can decide
    let bad = PromptInput {
        reference: Some("(".into()),
        ..input()
    };
    let out = s.sample(&bad).await.unwrap();
    assert_eq!(out.error_kinds, vec!["verify"; 3]);
    for c in &out.candidates {
        assert_eq!(c.verified, None);
        assert_eq!(
            c.reward, None,
            "a candidate that failed its check is not scored"
        );
        let error = c.error.as_deref().unwrap();
        assert!(
            error.starts_with("verify: the answer could not be checked against the reference")
                && error.contains("not a regular expression"),
            "{error}"
        );
    }
    // with on_error = fail, the prompt fails
    s.on_error = OnError::Fail;
    assert!(s.sample(&bad).await.is_err());
}

#[tokio::test]
async fn with_reward_protocol_verify_the_verdict_is_the_reward() {
    let (mut s, _, reward) = sampler(Method::Prs, vec![2, 2], true, 100);
    s.check = checking(crate::config::Verifier::Regex);
    s.reward_from_verdict = true;
    let with_reference = PromptInput {
        reference: Some("-0$".into()),
        ..input()
    };
    let out = s.sample(&with_reference).await.unwrap();
    let rewards: Vec<_> = out.candidates.iter().map(|c| c.reward).collect();
    assert_eq!(rewards, [Some(1.0), Some(0.0), Some(1.0), Some(0.0)]);
    assert!(
        out.candidates[0].is_best,
        "ties go to the lowest sample_index"
    );
    assert_eq!(out.reward_texts, 0);
    assert!(
        reward.scored.lock().unwrap().is_empty(),
        "no reward model was asked"
    );
    // no reference: nothing to reward by, each candidate says so
    let out = s.sample(&input()).await.unwrap();
    // (layer 0 fails, so layer 1 has nothing to refine)
    let kinds = [
        "verify",
        "verify",
        "no_candidate_to_refine",
        "no_candidate_to_refine",
    ];
    assert_eq!(out.error_kinds, kinds);
    assert!(out.candidates.iter().all(|c| c.reward.is_none()));
    assert!(out.candidates[0]
        .error
        .as_deref()
        .unwrap()
        .contains("this prompt has none"));
}

fn adaptive(pairs: bool) -> Option<super::AdaptivePlan> {
    Some(super::AdaptivePlan {
        pairs,
        explore: 3,
        threshold: 0.4,
        min_spread: 0.5,
        pair_margin: 1.0,
    })
}

#[tokio::test]
async fn adaptive_groups_fill_mixed_prompts_and_stop_uniform_ones() {
    let (mut s, policy, _) = sampler(Method::Random, vec![8], true, 100);
    s.check = checking(crate::config::Verifier::Regex);
    s.adaptive = adaptive(false);
    // the first answer of each request is right: mixed after the first round, filled to 8
    let mixed = PromptInput {
        reference: Some("-0$".into()),
        ..input()
    };
    let out = s.sample(&mixed).await.unwrap();
    assert_eq!(out.candidates.len(), 8);
    assert_eq!(out.stopped, Some(super::Stopped::Full));
    let indices: Vec<i32> = out.candidates.iter().map(|c| c.sample_index).collect();
    assert_eq!(indices, (0..8).collect::<Vec<_>>());
    // rounds of 3, then the rest (5, as 4 + 1 at most 4 per request)
    let ns: Vec<usize> = policy.calls.lock().unwrap().iter().map(|c| c.1).collect();
    assert_eq!(ns, [3, 4, 1]);
    // every answer right: three agreeing verdicts stop the prompt
    let uniform = PromptInput {
        reference: Some("answer".into()),
        ..input()
    };
    let out = s.sample(&uniform).await.unwrap();
    assert_eq!(out.candidates.len(), 3);
    assert_eq!(out.stopped, Some(super::Stopped::Uniform));
    assert!(out.candidates.iter().all(|c| c.verified == Some(true)));
}

#[tokio::test]
async fn adaptive_pairs_stop_at_the_first_pair() {
    let (mut s, _, _) = sampler(Method::Random, vec![8], true, 100);
    s.check = checking(crate::config::Verifier::Regex);
    s.adaptive = adaptive(true);
    let mixed = PromptInput {
        reference: Some("-0$".into()),
        ..input()
    };
    let out = s.sample(&mixed).await.unwrap();
    assert_eq!(out.candidates.len(), 3);
    assert_eq!(out.stopped, Some(super::Stopped::Pair));
    assert_eq!(out.candidates.iter().filter(|c| c.is_best).count(), 1);
    // adaptive off: n samples, stopped full
    s.adaptive = None;
    let out = s.sample(&mixed).await.unwrap();
    assert_eq!(
        (out.candidates.len(), out.stopped),
        (8, Some(super::Stopped::Full))
    );
}

#[tokio::test]
async fn the_check_reads_the_answer_the_pattern_found() {
    let (mut s, _, _) = sampler(Method::Random, vec![3], true, 100);
    // `answer-{request}-{i}`: the answer is i
    s.answer_pattern = crate::text::AnswerPattern::from_setting(r"answer-\d+-(\d+)").unwrap();
    s.check = checking(crate::config::Verifier::Math);
    let zero = PromptInput {
        reference: Some("0".into()),
        ..input()
    };
    let out = s.sample(&zero).await.unwrap();
    let verified: Vec<_> = out.candidates.iter().map(|c| c.verified).collect();
    assert_eq!(verified, [Some(true), Some(false), Some(false)]);
}
