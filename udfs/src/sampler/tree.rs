//! The sampling tree. Random best-of-N is a tree of one layer; PRS has two or more layers,
//! each after the first revising the best candidate found so far.

use futures::future::try_join_all;

use super::{derive_seed, Candidate, PromptInput, RewardPreference, Sampler, WorkStats};
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
        let (text, parent, feedback) = if layer == 0 {
            (question.clone(), None, None)
        } else {
            let best = best_index(&candidates).ok_or_else(|| {
                PrsError::arg(s.method.function_name(), "no scored candidate to refine")
            })?;
            let answer = candidates[best].response.clone().unwrap_or_default();
            let parent = candidates[best].sample_index;
            let feedback = if s.feedback {
                let fb_text = s.templates.feedback.render(&[
                    ("question", &question),
                    ("answer", &answer),
                    ("preference", pref_text),
                ]);
                let seed_for =
                    |got: usize| derive_seed(s.run_seed, &input.id_text, layer, -1 - got as i32);
                let got = generate(s, &fb_text, &seed_for, 1, &mut stats).await?;
                Some(
                    got.into_iter()
                        .next()
                        .map(|(c, _)| c.text)
                        .unwrap_or_default(),
                )
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

        // generate the layer in requests of at most max_choices_per_request samples
        let start = next_index;
        let chunk = s.max_choices_per_request.max(1);
        let mut futs = Vec::new();
        let mut offset = 0;
        while offset < width {
            let count = chunk.min(width - offset);
            let first = start + offset;
            futs.push(generate_owned(s, &text, input, layer, first, count));
            offset += count;
        }
        let mut layer_choices = Vec::with_capacity(width);
        for (choices, st) in try_join_all(futs).await? {
            layer_choices.extend(choices);
            stats.add(&st);
        }

        // score the layer against the original prompt
        let texts: Vec<String> = layer_choices
            .iter()
            .map(|(c, _)| {
                s.templates.reward.render(&[
                    ("prompt", &reward_prompt),
                    ("response", &c.text),
                    ("preference", preference.unwrap_or("")),
                ])
            })
            .collect();
        let scores = s.reward.score(&texts).await?;
        stats.reward_texts += texts.len() as u64;
        if scores.len() != layer_choices.len() {
            return Err(PrsError::arg(
                "reward",
                format!(
                    "expected {} scores, got {}",
                    layer_choices.len(),
                    scores.len()
                ),
            ));
        }
        for (i, ((choice, seed), score)) in layer_choices.into_iter().zip(scores).enumerate() {
            candidates.push(Candidate {
                layer,
                sample_index: (start + i) as i32,
                parent_index: parent,
                feedback: feedback.clone(),
                response: Some(choice.text),
                reward: Some(score),
                is_best: false,
                finish_reason: choice.finish_reason,
                seed: Some(seed),
                error: None,
            });
        }
        next_index += width;
    }
    if let Some(best) = best_index(&candidates) {
        candidates[best].is_best = true;
    }
    Ok((candidates, stats))
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

impl WorkStats {
    fn add(&mut self, o: &WorkStats) {
        self.policy_requests += o.policy_requests;
        self.reward_texts += o.reward_texts;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
    }
}

async fn generate_owned(
    s: &Sampler,
    text: &str,
    input: &PromptInput,
    layer: i32,
    first: usize,
    count: usize,
) -> Result<(Vec<(Choice, i64)>, WorkStats)> {
    let mut stats = WorkStats::default();
    let seed_for =
        |got: usize| derive_seed(s.run_seed, &input.id_text, layer, (first + got) as i32);
    let out = generate(s, text, &seed_for, count, &mut stats).await?;
    Ok((out, stats))
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
