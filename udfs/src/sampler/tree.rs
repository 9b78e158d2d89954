//! The sampling tree. Random best-of-N is a tree of one layer; PRS has two or more layers,
//! each after the first revising the best candidate found so far.
//!
//! Failures that survive the clients' retries become rows with `error` set and a null reward
//! (`on_error = row`), or fail the query (`on_error = fail`). A reward is never invented.

use futures::future::join_all;

use super::{derive_seed, Candidate, OnError, PromptInput, RewardPreference, Sampler, WorkStats};
use crate::client::Choice;
use crate::error::{PrsError, Result};

/// Text put in `{preference}` when a prompt has none.
const NO_PREFERENCE: &str = "(no particular preference stated)";

/// PRS's default shape: ceil(n/2) then floor(n/2), dropping an empty layer (n = 1).
pub fn default_widths(n: usize) -> Vec<usize> {
    [n.div_ceil(2), n / 2]
        .into_iter()
        .filter(|w| *w > 0)
        .collect()
}

/// A failure that becomes rows: its message and its kind.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    kind: String,
}

impl Failure {
    fn from_error(stage: &str, e: &PrsError) -> Self {
        Failure {
            message: format!("{stage}: {e}"),
            kind: e.kind(),
        }
    }
}

impl Sampler {
    /// Keep going with a failure (`row`) or stop the query (`fail`).
    fn absorb(&self, stage: &str, e: PrsError) -> Result<Failure> {
        match self.on_error {
            OnError::Row => Ok(Failure::from_error(stage, &e)),
            OnError::Fail => Err(e),
        }
    }
}

pub(super) async fn run(
    s: &Sampler,
    input: &PromptInput,
    prompt: &str,
) -> Result<(Vec<Candidate>, WorkStats)> {
    let mut stats = WorkStats::default();
    let preference = input.preference.as_deref().filter(|p| !p.trim().is_empty());
    let question = match preference {
        Some(z) if s.preference_in_prompt => format!("{prompt}\n\n{z}"),
        _ => prompt.to_string(),
    };
    let reward_prompt = match (s.reward_preference, preference) {
        (RewardPreference::Always, Some(z)) => format!("{prompt}\n\n{z}"),
        (RewardPreference::Auto, Some(z)) if input.preference_per_row => format!("{prompt}\n\n{z}"),
        _ => prompt.to_string(),
    };
    let pref_text = preference.unwrap_or(NO_PREFERENCE);

    let mut candidates: Vec<Candidate> = Vec::new();
    let mut next_index = 0usize;
    for (layer, &width) in s.widths.iter().enumerate() {
        let layer = layer as i32;
        let start = next_index;
        next_index += width;

        // what this layer asks the policy: the question, or a revision of the best so far
        let (text, parent, feedback) = if layer == 0 {
            (question.clone(), None, None)
        } else {
            let Some(best) = best_index(&candidates) else {
                let failure = Failure {
                    message: "no scored candidate in the earlier layers to refine".into(),
                    kind: "no_candidate_to_refine".into(),
                };
                push_failed(
                    &mut candidates,
                    &mut stats,
                    layer,
                    start,
                    width,
                    None,
                    None,
                    None,
                    &failure,
                );
                continue;
            };
            let answer = candidates[best].response.clone().unwrap_or_default();
            let parent = candidates[best].sample_index;
            let feedback = if s.feedback {
                let fb_prompt = s.templates.feedback.render(&[
                    ("question", &question),
                    ("answer", &answer),
                    ("preference", pref_text),
                ]);
                let seed_for =
                    |got: usize| derive_seed(s.run_seed, &input.id_text, layer, -1 - got as i32);
                match generate(s, &fb_prompt, &seed_for, 1, &mut stats).await {
                    Ok(got) => Some(
                        got.into_iter()
                            .next()
                            .map(|(c, _)| c.text)
                            .unwrap_or_default(),
                    ),
                    Err(e) => {
                        let failure = s.absorb("feedback", e)?;
                        push_failed(
                            &mut candidates,
                            &mut stats,
                            layer,
                            start,
                            width,
                            Some(parent),
                            None,
                            None,
                            &failure,
                        );
                        continue;
                    }
                }
            } else {
                None
            };
            let revise = match &feedback {
                Some(f) => s.templates.revise.render(&[
                    ("question", &question),
                    ("answer", &answer),
                    ("preference", pref_text),
                    ("feedback", f),
                ]),
                None => s.templates.revise_no_feedback.render(&[
                    ("question", &question),
                    ("answer", &answer),
                    ("preference", pref_text),
                ]),
            };
            (revise, Some(parent), feedback)
        };

        // generate the layer in requests of at most max_choices_per_request samples, at once
        let chunk = s.max_choices_per_request.max(1);
        let mut futs = Vec::new();
        let mut offset = 0;
        while offset < width {
            let count = chunk.min(width - offset);
            futs.push(generate_chunk(
                s,
                &text,
                input,
                layer,
                start + offset,
                count,
            ));
            offset += count;
        }
        // (first sample index, samples or the failure of that chunk)
        let mut layer_rows: Vec<Candidate> = Vec::with_capacity(width);
        for (first, count, result, st) in join_all(futs).await {
            stats.policy_requests += st.policy_requests;
            stats.prompt_tokens += st.prompt_tokens;
            stats.completion_tokens += st.completion_tokens;
            match result {
                Ok(choices) => {
                    for (i, (choice, seed)) in choices.into_iter().enumerate() {
                        layer_rows.push(Candidate {
                            layer,
                            sample_index: (first + i) as i32,
                            parent_index: parent,
                            feedback: feedback.clone(),
                            response: Some(choice.text),
                            finish_reason: choice.finish_reason,
                            seed: Some(seed),
                            ..Candidate::default()
                        });
                    }
                }
                Err(e) => {
                    let failure = s.absorb("policy", e)?;
                    let seed = derive_seed(s.run_seed, &input.id_text, layer, first as i32);
                    push_failed(
                        &mut layer_rows,
                        &mut stats,
                        layer,
                        first,
                        count,
                        parent,
                        feedback.clone(),
                        Some(seed),
                        &failure,
                    );
                }
            }
        }

        // score what was generated, against the original prompt
        let scored: Vec<usize> = (0..layer_rows.len())
            .filter(|&i| layer_rows[i].error.is_none())
            .collect();
        let texts: Vec<String> = scored
            .iter()
            .map(|&i| {
                s.templates.reward.render(&[
                    ("prompt", &reward_prompt),
                    ("response", layer_rows[i].response.as_deref().unwrap_or("")),
                    ("preference", preference.unwrap_or("")),
                ])
            })
            .collect();
        stats.reward_texts += texts.len() as u64;
        match s.reward.score(&texts).await {
            Ok(scores) if scores.len() == scored.len() => {
                for (&i, score) in scored.iter().zip(scores) {
                    layer_rows[i].reward = Some(score);
                }
            }
            Ok(scores) => {
                let e = PrsError::arg(
                    "reward",
                    format!("expected {} scores, got {}", scored.len(), scores.len()),
                );
                let failure = s.absorb("reward", e)?;
                mark_failed(&mut layer_rows, &scored, &mut stats, &failure);
            }
            Err(e) => {
                let failure = s.absorb("reward", e)?;
                mark_failed(&mut layer_rows, &scored, &mut stats, &failure);
            }
        }
        candidates.extend(layer_rows);
    }
    candidates.sort_by_key(|c| c.sample_index);
    if let Some(best) = best_index(&candidates) {
        candidates[best].is_best = true;
    }
    Ok((candidates, stats))
}

#[allow(clippy::too_many_arguments)]
fn push_failed(
    rows: &mut Vec<Candidate>,
    stats: &mut WorkStats,
    layer: i32,
    first: usize,
    count: usize,
    parent: Option<i32>,
    feedback: Option<String>,
    seed: Option<i64>,
    failure: &Failure,
) {
    for i in 0..count {
        rows.push(Candidate {
            layer,
            sample_index: (first + i) as i32,
            parent_index: parent,
            feedback: feedback.clone(),
            seed,
            error: Some(failure.message.clone()),
            ..Candidate::default()
        });
        stats.error_kinds.push(failure.kind.clone());
    }
}

/// Generated candidates whose scoring failed keep their text, get no reward and carry the error.
fn mark_failed(rows: &mut [Candidate], which: &[usize], stats: &mut WorkStats, failure: &Failure) {
    for &i in which {
        rows[i].error = Some(failure.message.clone());
        stats.error_kinds.push(failure.kind.clone());
    }
}

/// The highest reward among scored candidates; ties go to the lowest sample index.
fn best_index(c: &[Candidate]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, cand) in c.iter().enumerate() {
        if let Some(r) = cand.reward {
            if best.is_none_or(|(_, b)| r > b) {
                best = Some((i, r));
            }
        }
    }
    best.map(|(i, _)| i)
}

type Chunk = (usize, usize, Result<Vec<(Choice, i64)>>, WorkStats);

async fn generate_chunk(
    s: &Sampler,
    text: &str,
    input: &PromptInput,
    layer: i32,
    first: usize,
    count: usize,
) -> Chunk {
    let mut stats = WorkStats::default();
    let seed_for =
        |got: usize| derive_seed(s.run_seed, &input.id_text, layer, (first + got) as i32);
    let out = generate(s, text, &seed_for, count, &mut stats).await;
    (first, count, out, stats)
}

/// Ask for `count` samples, topping up when the server returns fewer choices than asked (some
/// servers ignore `n`). `seed_for(k)` is the seed of a request whose first sample is the k-th.
async fn generate(
    s: &Sampler,
    text: &str,
    seed_for: &(dyn Fn(usize) -> i64 + Sync),
    count: usize,
    stats: &mut WorkStats,
) -> Result<Vec<(Choice, i64)>> {
    let mut out: Vec<(Choice, i64)> = Vec::with_capacity(count);
    let mut empty_answers = 0;
    while out.len() < count {
        let want = count - out.len();
        let seed = seed_for(out.len());
        let (choices, usage) = s.policy.complete(text, want, seed).await?;
        stats.policy_requests += 1;
        stats.prompt_tokens += usage.prompt_tokens;
        stats.completion_tokens += usage.completion_tokens;
        if choices.len() > want {
            return Err(PrsError::arg(
                s.method.function_name(),
                format!("the policy returned {} choices for n={want}", choices.len()),
            ));
        }
        if choices.is_empty() {
            empty_answers += 1;
            if empty_answers >= 3 {
                return Err(PrsError::arg(
                    s.method.function_name(),
                    format!("the policy returned no choices three times for a request of n={want}"),
                ));
            }
        }
        out.extend(choices.into_iter().map(|c| (c, seed)));
    }
    Ok(out)
}
