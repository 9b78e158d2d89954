//! The sampling tree. Random best-of-N is a tree of one layer; PRS has two or more layers,
//! each after the first revising the best candidate found so far.
//!
//! Each layer is three steps: what the layer asks the policy ([`Tree::ask`]: the question, or
//! feedback on the best-so-far and a revision of it), generating the layer
//! ([`Tree::generate_layer`]) and scoring it ([`Tree::score_layer`]).
//!
//! Failures that survive the clients' retries become rows with `error` set and a null reward
//! (`on_error = row`), or fail the query (`on_error = fail`). A reward is never invented.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;

use super::adaptive::{Next, Plan as AdaptivePlan, Stopped};
use super::components::{reward_prompt, score_texts, with_preference, Components, PromptView};
use super::judge::{apply, judge_seed, top_k};
use super::unique::{Extra, Seen};
use super::{
    best_index, derive_seed, truncated, Candidate, OnError, PromptInput, Sampled, Sampler,
};
use crate::client::Choice;
use crate::error::{EndpointKind, PrsError, Result};
use crate::run::DataChecks;
use crate::text::AnswerPattern;

/// Text put in `{preference}` when a prompt has none.
const NO_PREFERENCE: &str = "(no particular preference stated)";

/// Requests for one run of samples that may come back without any choice before the server
/// is at fault.
const EMPTY_ANSWERS_ALLOWED: usize = 3;

/// PRS's default shape: ceil(n/2) then floor(n/2), dropping an empty layer (n = 1).
pub fn default_widths(n: usize) -> Vec<usize> {
    [n.div_ceil(2), n / 2]
        .into_iter()
        .filter(|w| *w > 0)
        .collect()
}

impl Sampler {
    /// Candidates for one prompt. A null or empty prompt makes no calls and yields one row
    /// holding the error.
    pub async fn sample(&self, input: &PromptInput) -> Result<Sampled> {
        let prompt = match input.prompt.as_deref() {
            Some(p) if !p.trim().is_empty() => p,
            _ => {
                return Ok(Sampled::not_started(
                    "empty_prompt",
                    "prompt is null or empty; no request was made".into(),
                ))
            }
        };
        run(self, input, prompt).await
    }
}

/// A failure that becomes rows: its message and its kind.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    kind: String,
}

impl Sampler {
    /// Keep going with a failure (`row`) or stop the query (`fail`).
    fn absorb(&self, stage: &str, e: PrsError) -> Result<Failure> {
        match self.on_error {
            OnError::Row => Ok(Failure {
                message: format!("{stage}: {e}"),
                kind: e.kind(),
            }),
            OnError::Fail => Err(e),
        }
    }
}

/// Where a run of samples sits in the tree, and the lineage they carry.
#[derive(Debug, Clone)]
struct Slots {
    layer: i32,
    /// Sample index of the first.
    first: usize,
    count: usize,
    parent: Option<i32>,
    feedback: Option<String>,
    seed: Option<i64>,
}

impl Slots {
    /// Rows for these slots, each holding `failure`.
    fn failed(&self, failure: &Failure) -> Vec<Candidate> {
        (0..self.count)
            .map(|i| Candidate {
                layer: self.layer,
                sample_index: (self.first + i) as i32,
                parent_index: self.parent,
                feedback: self.feedback.clone(),
                seed: self.seed,
                error: Some(failure.message.clone()),
                ..Candidate::default()
            })
            .collect()
    }
}

/// What a layer asks the policy for: the text and the lineage of what comes back.
struct Ask {
    text: String,
    parent: Option<i32>,
    feedback: Option<String>,
}

/// A candidate's reward and, with components, each one's score; or the stage that failed it
/// and why.
type Outcome = std::result::Result<(f64, Option<BTreeMap<String, f64>>), (String, Arc<PrsError>)>;

/// One prompt's tree as it grows.
struct Tree<'a> {
    s: &'a Sampler,
    input: &'a PromptInput,
    /// The prompt as the policy sees it (with the preference when `preference_in_prompt`).
    question: String,
    /// The prompt as given.
    prompt: String,
    /// The prompt as the reward model sees it.
    reward_prompt: String,
    preference: Option<&'a str>,
    candidates: Vec<Candidate>,
    error_kinds: Vec<String>,
    reward_texts: u64,
    /// The texts so far, for `prs.unique`.
    seen: Seen,
    /// The extra samples left for duplicates (`None`: `prs.unique` is off).
    extra: Option<Extra>,
    checks: DataChecks,
    stopped: Stopped,
}

async fn run(s: &Sampler, input: &PromptInput, prompt: &str) -> Result<Sampled> {
    let mut tree = Tree::new(s, input, prompt);
    if let (Some(plan), [_]) = (&s.adaptive, s.widths.as_slice()) {
        tree.rounds(plan).await?;
        crate::run::first_layer_done();
        return tree.finish_judged().await;
    }
    let mut first = 0;
    for (layer, &width) in s.widths.iter().enumerate() {
        let slots = Slots {
            layer: layer as i32,
            first,
            count: width,
            parent: None,
            feedback: None,
            seed: None,
        };
        first += width;
        let Some(ask) = tree.ask(&slots).await? else {
            continue;
        };
        let mut rows = tree.generate_layer(&ask, &slots).await?;
        for row in &mut rows {
            tree.find_answer(row)?;
        }
        tree.make_unique(&ask, &mut rows).await?;
        tree.verify_layer(&mut rows).await?;
        tree.score_layer(&mut rows).await?;
        tree.candidates.extend(rows);
        // the prompt's place in the window goes to the next prompt
        crate::run::first_layer_done();
    }
    tree.finish_judged().await
}

impl<'a> Tree<'a> {
    fn new(s: &'a Sampler, input: &'a PromptInput, prompt: &str) -> Self {
        let preference = input.preference.as_deref().filter(|p| !p.trim().is_empty());
        let question = match preference {
            Some(z) if s.preference_in_prompt => with_preference(prompt, z),
            _ => prompt.to_string(),
        };
        let reward_prompt = reward_prompt(
            s.reward_preference,
            prompt,
            preference,
            input.preference_per_row,
        );
        Tree {
            s,
            input,
            question,
            prompt: prompt.to_string(),
            reward_prompt,
            preference,
            candidates: Vec::new(),
            error_kinds: Vec::new(),
            reward_texts: 0,
            seen: Seen::default(),
            extra: s.unique_max_extra.map(|max| Extra::new(s.n(), max)),
            checks: DataChecks::default(),
            stopped: Stopped::Full,
        }
    }

    /// Rows for `slots` holding `failure` (they are output too), their kind counted.
    fn failed_rows(&mut self, slots: &Slots, failure: &Failure) -> Vec<Candidate> {
        self.error_kinds
            .extend(std::iter::repeat_n(failure.kind.clone(), slots.count));
        slots.failed(failure)
    }

    /// What the layer in `slots` asks: the question (layer 0), or a revision of the best
    /// candidate so far with the policy's feedback on it. `None` when the layer cannot be
    /// asked (its rows, holding the failure, are already kept).
    async fn ask(&mut self, slots: &Slots) -> Result<Option<Ask>> {
        if slots.layer == 0 {
            return Ok(Some(Ask {
                text: self.question.clone(),
                parent: None,
                feedback: None,
            }));
        }
        let Some(best) = best_index(&self.candidates, self.s.best_excludes_truncated) else {
            let failure = Failure {
                message: "no scored candidate in the earlier layers to refine".into(),
                kind: "no_candidate_to_refine".into(),
            };
            let rows = self.failed_rows(slots, &failure);
            self.candidates.extend(rows);
            return Ok(None);
        };
        let best = &self.candidates[best];
        let answer = best.answer.clone().or_else(|| best.response.clone());
        let answer = answer.unwrap_or_default();
        let parent = best.sample_index;
        let feedback = match self.feedback(slots.layer, &answer).await {
            Ok(feedback) => feedback,
            Err(e) => {
                let failure = self.s.absorb("feedback", e)?;
                let slots = Slots {
                    parent: Some(parent),
                    ..slots.clone()
                };
                let rows = self.failed_rows(&slots, &failure);
                self.candidates.extend(rows);
                return Ok(None);
            }
        };
        Ok(Some(Ask {
            text: self.revise_text(&answer, feedback.as_deref()),
            parent: Some(parent),
            feedback,
        }))
    }

    /// The policy's feedback on `answer` against the preference (`None` when PRS runs
    /// without feedback).
    async fn feedback(&self, layer: i32, answer: &str) -> Result<Option<String>> {
        if !self.s.feedback {
            return Ok(None);
        }
        let prompt = self.s.templates.feedback.render(&[
            ("question", &self.question),
            ("answer", answer),
            ("preference", self.preference.unwrap_or(NO_PREFERENCE)),
        ]);
        let (s, id) = (self.s, &self.input.id_text);
        let seed_for = |got: usize| derive_seed(s.run_seed, id, layer, -1 - got as i32);
        // (asked before the layer's revisions: one step less deep)
        let got = generate(s, &prompt, &seed_for, 1, depth(layer).saturating_sub(1)).await?;
        let text = got
            .into_iter()
            .next()
            .map(|(c, _)| c.text)
            .unwrap_or_default();
        // a reasoning policy's feedback goes on without its scratchpad
        Ok(Some(match &s.answer_pattern {
            Some(think @ AnswerPattern::Think) => think.extract(&text).unwrap_or(text),
            _ => text,
        }))
    }

    /// The text asking for a revision of `answer` (with the feedback when there is some).
    fn revise_text(&self, answer: &str, feedback: Option<&str>) -> String {
        let preference = self.preference.unwrap_or(NO_PREFERENCE);
        let slots = [
            ("question", self.question.as_str()),
            ("answer", answer),
            ("preference", preference),
        ];
        match feedback {
            Some(f) => {
                let mut with_feedback = slots.to_vec();
                with_feedback.push(("feedback", f));
                self.s.templates.revise.render(&with_feedback)
            }
            None => self.s.templates.revise_no_feedback.render(&slots),
        }
    }

    /// Generate the layer in requests of at most `max_choices_per_request` samples, all at
    /// once. A request that fails makes rows holding the failure.
    async fn generate_layer(&mut self, ask: &Ask, slots: &Slots) -> Result<Vec<Candidate>> {
        let chunk = self.s.max_choices_per_request.max(1);
        let chunks: Vec<Slots> = (0..slots.count)
            .step_by(chunk)
            .map(|offset| Slots {
                first: slots.first + offset,
                count: chunk.min(slots.count - offset),
                parent: ask.parent,
                feedback: ask.feedback.clone(),
                ..slots.clone()
            })
            .collect();
        let (s, id) = (self.s, &self.input.id_text);
        let results = join_all(chunks.iter().map(|c| {
            let seed_for =
                move |got: usize| derive_seed(s.run_seed, id, c.layer, (c.first + got) as i32);
            async move { generate(s, &ask.text, &seed_for, c.count, depth(c.layer)).await }
        }))
        .await;
        let mut rows = Vec::with_capacity(slots.count);
        for (chunk, result) in chunks.into_iter().zip(results) {
            match result {
                Ok(choices) => {
                    rows.extend(choices.into_iter().enumerate().map(|(i, (choice, seed))| {
                        Candidate {
                            layer: chunk.layer,
                            sample_index: (chunk.first + i) as i32,
                            parent_index: chunk.parent,
                            feedback: chunk.feedback.clone(),
                            response: Some(choice.text),
                            finish_reason: choice.finish_reason,
                            seed: Some(seed),
                            ..Candidate::default()
                        }
                    }))
                }
                Err(e) => {
                    let failure = self.s.absorb("policy", e)?;
                    let chunk = Slots {
                        seed: Some(derive_seed(s.run_seed, id, chunk.layer, chunk.first as i32)),
                        ..chunk
                    };
                    rows.extend(self.failed_rows(&chunk, &failure));
                }
            }
        }
        Ok(rows)
    }

    /// With `prs.unique`: sample again, in rounds, the rows that repeat an earlier candidate of
    /// the prompt (their answers, with `prs.answer_pattern`), while extra samples are left;
    /// mark the ones still repeating.
    async fn make_unique(&mut self, ask: &Ask, rows: &mut [Candidate]) -> Result<()> {
        if self.extra.is_none() {
            return Ok(());
        }
        let (s, id) = (self.s, &self.input.id_text);
        let mut pending: Vec<usize> = (0..rows.len()).collect();
        loop {
            let repeats: Vec<(usize, i32)> = pending
                .iter()
                .filter_map(|&i| self.seen.admit(&rows[i]).map(|of| (i, of)))
                .collect();
            let Some(&(first_row, _)) = repeats.first() else {
                return Ok(());
            };
            let (k, first) = match self.extra.as_mut() {
                Some(extra) => extra.take(repeats.len()),
                None => (0, 0),
            };
            self.checks.extra_samples += k as u64;
            let layer = rows[first_row].layer;
            let seed_for = |got: usize| derive_seed(s.run_seed, id, layer, (first + got) as i32);
            let fresh = match k {
                0 => Ok(Vec::new()),
                _ => generate(s, &ask.text, &seed_for, k, depth(layer)).await,
            };
            let fresh = match fresh {
                Ok(fresh) => fresh,
                Err(e) => {
                    // the repeats stay: they are good samples, only not new ones
                    s.absorb("policy (an extra sample for a duplicate)", e)?;
                    Vec::new()
                }
            };
            let resampled = fresh.len();
            for (&(i, _), (choice, seed)) in repeats.iter().zip(fresh) {
                let row = &mut rows[i];
                row.response = Some(choice.text);
                row.finish_reason = choice.finish_reason;
                row.seed = Some(seed);
                row.answer = None;
                self.find_answer(row)?;
            }
            for &(i, of) in &repeats[resampled..] {
                rows[i].duplicate_of = Some(of);
                self.checks.duplicates_kept += 1;
            }
            if resampled == 0 {
                return Ok(());
            }
            pending = repeats[..resampled].iter().map(|&(i, _)| i).collect();
        }
    }

    /// With `prs.answer_pattern`: a generated row's answer. A row without one gets an error
    /// (it is never scored on its whole text).
    fn find_answer(&mut self, row: &mut Candidate) -> Result<()> {
        let Some(pattern) = &self.s.answer_pattern else {
            return Ok(());
        };
        let Some(response) = row.response.as_deref().filter(|_| row.error.is_none()) else {
            return Ok(());
        };
        match pattern.extract(response) {
            Some(answer) => row.answer = Some(answer),
            None => {
                let failure = self
                    .s
                    .absorb("answer", PrsError::NoAnswer(pattern.no_match()))?;
                row.error = Some(failure.message);
                self.error_kinds.push(failure.kind);
            }
        }
        Ok(())
    }

    /// `prs.adaptive`: one layer, sampled in rounds until the plan says stop.
    async fn rounds(&mut self, plan: &AdaptivePlan) -> Result<()> {
        let n = self.s.n();
        let verdicts = self.s.check.is_some() && self.input.reference.is_some();
        let ask = Ask {
            text: self.question.clone(),
            parent: None,
            feedback: None,
        };
        loop {
            let count = match plan.next(&self.candidates, n, verdicts) {
                Next::Stop(why) => {
                    self.stopped = why;
                    return Ok(());
                }
                Next::Sample(count) => count,
            };
            let slots = Slots {
                layer: 0,
                first: self.candidates.len(),
                count,
                parent: None,
                feedback: None,
                seed: None,
            };
            let mut rows = self.generate_layer(&ask, &slots).await?;
            if rows.is_empty() {
                return Ok(()); // never happens: a failed request gives error rows
            }
            for row in &mut rows {
                self.find_answer(row)?;
            }
            self.make_unique(&ask, &mut rows).await?;
            self.verify_layer(&mut rows).await?;
            self.score_layer(&mut rows).await?;
            self.candidates.extend(rows);
        }
    }

    /// Check each answer of the layer against the prompt's reference (`prs.verifier`), off
    /// the async workers. A check that cannot decide (out of time, a number too large) makes
    /// its candidate an error row: never a made-up verdict.
    async fn verify_layer(&mut self, rows: &mut [Candidate]) -> Result<()> {
        let (Some(check), Some(reference)) = (&self.s.check, &self.input.reference) else {
            return Ok(());
        };
        let which: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].error.is_none())
            .collect();
        let items = which
            .iter()
            // the answer `answer_pattern` found (the check is built without the pattern)
            .map(|&i| {
                let answer = rows[i].answer.as_ref().or(rows[i].response.as_ref());
                (answer.cloned(), Some(reference.clone()))
            })
            .collect();
        let verdicts = crate::verify::verdicts(check.clone(), items).await;
        for (&i, verdict) in which.iter().zip(verdicts) {
            match verdict {
                Ok(v) => rows[i].verified = v,
                Err(e) => {
                    let e = PrsError::Unverifiable(e.to_string());
                    let failure = self.s.absorb("verify", e)?;
                    rows[i].error = Some(failure.message);
                    self.error_kinds.push(failure.kind);
                }
            }
        }
        Ok(())
    }

    /// `reward_protocol = verify`: each checked candidate's reward is its verdict, 1.0 or
    /// 0.0. A prompt without a reference has no verdicts: its candidates are error rows.
    fn reward_verdicts(&mut self, rows: &mut [Candidate]) -> Result<()> {
        for row in rows.iter_mut().filter(|r| r.error.is_none()) {
            match row.verified {
                Some(v) => row.reward = Some(if v { 1.0 } else { 0.0 }),
                None => {
                    let e = PrsError::Unverifiable(
                        "reward_protocol = verify rewards answers by their reference, and this \
                         prompt has none (a null or empty value in the reference column, \
                         prs.reference_column)"
                            .into(),
                    );
                    let failure = self.s.absorb("reward", e)?;
                    row.error = Some(failure.message);
                    self.error_kinds.push(failure.kind);
                }
            }
        }
        Ok(())
    }

    /// Score what the layer generated, against the original prompt. Rows whose scoring failed
    /// keep their text, get no reward and carry the error.
    async fn score_layer(&mut self, rows: &mut [Candidate]) -> Result<()> {
        if self.s.reward_from_verdict {
            return self.reward_verdicts(rows);
        }
        let scored: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].error.is_none())
            .collect();
        // the answer `answer_pattern` found, else the whole response
        let texts: Vec<&str> = scored
            .iter()
            .map(|&i| {
                let text = rows[i].answer.as_deref().or(rows[i].response.as_deref());
                text.unwrap_or("")
            })
            .collect();
        if let Some(components) = &self.s.components {
            let outcomes = self.score_components(components, &texts).await;
            return self.keep_scores(rows, &scored, outcomes);
        }
        self.reward_texts += texts.len() as u64;
        let preference = self.preference.unwrap_or("");
        let format = &self.s.templates.reward;
        let outcomes = score_texts(
            self.s.reward.as_ref(),
            format,
            &self.reward_prompt,
            preference,
            &texts,
        )
        .await
        .into_iter()
        .map(|o| {
            o.map(|score| (score, None))
                .map_err(|e| ("reward".to_string(), e))
        })
        .collect();
        self.keep_scores(rows, &scored, outcomes)
    }

    /// Every component's score of `texts`, and their aggregate.
    async fn score_components(&mut self, components: &Components, texts: &[&str]) -> Vec<Outcome> {
        self.reward_texts += (texts.len() * components.models()) as u64;
        let view = PromptView {
            prompt: &self.prompt,
            preference: self.preference,
            per_row: self.input.preference_per_row,
            reference: self.input.reference.as_deref(),
        };
        let outcomes = components.score(&view, texts).await;
        outcomes
            .into_iter()
            .map(|o| match o {
                Ok(scores) => Ok((components.aggregate(&scores), Some(scores))),
                Err((name, source)) => {
                    let e = PrsError::Component { name, source };
                    Err(("reward".to_string(), Arc::new(e)))
                }
            })
            .collect()
    }

    /// Each scored row (`scored[k]` of `rows`) gets its outcome: a reward, or the error.
    fn keep_scores(
        &mut self,
        rows: &mut [Candidate],
        scored: &[usize],
        outcomes: Vec<Outcome>,
    ) -> Result<()> {
        for (&i, outcome) in scored.iter().zip(outcomes) {
            match outcome {
                Ok((reward, rewards)) => {
                    rows[i].reward = Some(reward);
                    rows[i].rewards = rewards;
                }
                Err((stage, e)) => {
                    let e = Arc::try_unwrap(e).unwrap_or_else(PrsError::Shared);
                    let failure = self.s.absorb(&stage, e)?;
                    rows[i].error = Some(failure.message);
                    self.error_kinds.push(failure.kind);
                }
            }
        }
        Ok(())
    }

    /// Candidates in sample order, the best marked, and with a judge, what it found.
    async fn finish_judged(self) -> Result<Sampled> {
        let (s, input) = (self.s, self.input);
        let preference = self.preference.unwrap_or(NO_PREFERENCE).to_string();
        let question = self.prompt.clone();
        let mut sampled = self.finish();
        let Some(judge) = &s.judge else {
            return Ok(sampled);
        };
        let top = top_k(&sampled.candidates, judge.top_k, s.best_excludes_truncated);
        if top.len() < 2 {
            return Ok(sampled);
        }
        let seed_of = judge_seed(s.run_seed, &input.id_text);
        let judged = judge
            .judge(&question, &preference, &sampled.candidates, &top, &seed_of)
            .await;
        match judged {
            Ok(judged) => apply(&judged, &mut sampled.candidates, &mut sampled.checks),
            // the candidates stand as scored: the judge's columns stay null, the reward decides
            Err(e) => {
                let failure = s.absorb("judge", e)?;
                tracing::warn!(prompt = %input.id_text, "the judge failed, the reward decides: {}", failure.message);
                sampled.checks.judge_failed_prompts += 1;
                sampled.unfinished = true;
            }
        }
        Ok(sampled)
    }

    /// Candidates in sample order, the best marked.
    fn finish(mut self) -> Sampled {
        self.candidates.sort_by_key(|c| c.sample_index);
        if let Some(best) = best_index(&self.candidates, self.s.best_excludes_truncated) {
            let best = &mut self.candidates[best];
            best.is_best = true;
            if self.s.best_excludes_truncated && truncated(best) {
                self.checks.all_truncated_prompts += 1;
            }
        }
        Sampled {
            candidates: self.candidates,
            error_kinds: self.error_kinds,
            reward_texts: self.reward_texts,
            checks: self.checks,
            stopped: Some(self.stopped),
            unfinished: false,
        }
    }
}

/// How deep in the tree a layer's requests are (a feedback request is one less): deeper work
/// goes first where the policy can order requests.
fn depth(layer: i32) -> u32 {
    2 * layer.max(0) as u32
}

/// Ask for `count` samples: in one request of `n = count`, topping up when the server
/// returns fewer choices than asked, or, once the policy takes one sample per request (a
/// server that ignores `n`), one request per remaining sample, all at once. `seed_for(k)` is
/// the seed of a request whose first sample is the k-th, so both ways give the same rows.
async fn generate(
    s: &Sampler,
    text: &str,
    seed_for: &(dyn Fn(usize) -> i64 + Sync),
    count: usize,
    depth: u32,
) -> Result<Vec<(Choice, i64)>> {
    let mut out: Vec<(Choice, i64)> = Vec::with_capacity(count);
    let mut empty_answers = 0;
    while out.len() < count {
        let want = count - out.len();
        if want > 1 && s.policy.one_per_request() {
            let first = out.len();
            let singles = join_all((first..count).map(|k| {
                let seed_for = move |got: usize| seed_for(k + got);
                async move { generate_one(s, text, &seed_for, depth).await }
            }));
            for single in singles.await {
                out.push(single?);
            }
            break;
        }
        let seed = seed_for(out.len());
        let (choices, _usage) = s.policy.complete(text, want, seed, depth).await?;
        if choices.is_empty() {
            empty_answers += 1;
            if empty_answers >= EMPTY_ANSWERS_ALLOWED {
                return Err(no_choices(want));
            }
        }
        out.extend(choices.into_iter().map(|c| (c, seed)));
    }
    Ok(out)
}

/// One sample in a request of its own (asked again when the answer holds no choice).
async fn generate_one(
    s: &Sampler,
    text: &str,
    seed_for: &(dyn Fn(usize) -> i64 + Sync),
    depth: u32,
) -> Result<(Choice, i64)> {
    let seed = seed_for(0);
    for _ in 0..EMPTY_ANSWERS_ALLOWED {
        let (choices, _usage) = s.policy.complete(text, 1, seed, depth).await?;
        if let Some(choice) = choices.into_iter().next() {
            return Ok((choice, seed));
        }
    }
    Err(no_choices(1))
}

fn no_choices(n: usize) -> PrsError {
    PrsError::ServerFault {
        endpoint: EndpointKind::Policy,
        reason: format!("returned no choices {EMPTY_ANSWERS_ALLOWED} times for a request of n={n}"),
    }
}
