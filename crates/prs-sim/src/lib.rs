//! `prs sim`: a SIMULATOR of a policy server and a reward server, for demos, tests and
//! benchmarks. It is not a language model: the "responses" are deterministic word salad built
//! from the request text, and the "rewards" measure how many words of the question a response
//! reuses plus seeded noise. In maths mode (`--math`, [`math_question`]) a prompt asking
//! `What is A op B?` gets a final answer, right at the question's [`solve_rate`] or off by a
//! little, and the reward is its truth ([`sim_truth`]) plus noise. It speaks the real wire
//! formats over real HTTP:
//!
//! * policy (OpenAI-compatible, under `/v1`): `GET /v1/models`, `POST /v1/chat/completions`,
//!   `POST /v1/completions` (honours `n`, `seed`, `max_tokens`; same request, same text);
//! * reward, at the root: `POST /pooling` (vLLM), `POST /classify` (vLLM), `POST /get_reward`
//!   (OpenRLHF), `POST /predict` (TEI).

pub mod engine;
mod hash;
mod judge;
mod math;

pub use math::{math_question, question, sim_truth, Question};

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Json, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hash::{fnv, Rng};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The model id the simulator serves.
pub const SIM_MODEL: &str = "prs-sim-policy";
/// The name `--sim` gives the simulated reward model.
pub const SIM_REWARD_MODEL: &str = "prs-sim-reward";

#[derive(Clone)]
struct Sim {
    model: String,
    /// When set, generation and scoring take the time this engine model says.
    engine: Option<Arc<engine::Engine>>,
    style: TextStyle,
    requests: Arc<Requests>,
}

/// Requests the simulator answered, by endpoint.
#[derive(Debug, Default)]
pub struct Requests {
    policy: std::sync::atomic::AtomicU64,
    reward: std::sync::atomic::AtomicU64,
}

impl Requests {
    /// (policy requests, reward requests) so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.policy.load(Relaxed), self.reward.load(Relaxed))
    }

    fn add(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How the simulated policy writes, beyond its word salad; `prs sim` takes each as a flag.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct TextStyle {
    /// Share of samples (0 to 1) that are the prompt's one favourite answer, whatever the
    /// seed: a confident model at low temperature, for `prs.unique`
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.0))]
    pub repeat_share: f64,
    /// Write like a reasoning model: `<think>...</think>` before the answer (a sample cut at
    /// max_tokens never closes it), for `prs.answer_pattern = think`
    #[cfg_attr(feature = "clap", arg(long))]
    pub think: bool,
    /// Maths mode: prompts asking `What is A op B?` get a final answer, right or wrong, in one
    /// of several formats, and the reward is its truth plus noise (other prompts: word salad)
    #[cfg_attr(feature = "clap", arg(long))]
    pub math: bool,
    /// With --math: share of questions always solved (solve rate 1, less --edge-miss)
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.45))]
    pub always_share: f64,
    /// With --math: share of questions never solved (solve rate 0, plus --edge-miss); the rest
    /// have a rate between 0.1 and 0.9
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.35))]
    pub never_share: f64,
    /// With --math: how often an always-solved question is missed and a never-solved one is
    /// hit (0.03: nearly always, nearly never)
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.0))]
    pub edge_miss: f64,
    /// With --math: share of samples whose final answer is built to hurt a checker (a tower of
    /// powers, a 200 KB sum, unbalanced braces, deep parentheses)
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.0))]
    pub hostile_share: f64,
    /// With --math: the reward model's noise, uniform in [-x, x] around the answer's truth
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.3))]
    pub reward_noise: f64,
    /// With --math: seeds the reward model's noise, so that reward models with different seeds
    /// err independently
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0))]
    pub reward_seed: u64,
    /// With --math: reward added per word of the response, a reward model that prefers long
    /// answers whatever they say
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.0))]
    pub reward_length_bias: f64,
    /// As a pairwise judge (prs.judge_url at the simulator): share of comparisons answered
    /// [[A]], the first answer, whatever the answers say
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.0))]
    pub judge_position_bias: f64,
}

impl Default for TextStyle {
    /// The flags' defaults: word salad, no repeats, no think block.
    fn default() -> Self {
        TextStyle {
            repeat_share: 0.0,
            think: false,
            math: false,
            always_share: 0.45,
            never_share: 0.35,
            edge_miss: 0.0,
            hostile_share: 0.0,
            reward_noise: 0.3,
            reward_seed: 0,
            reward_length_bias: 0.0,
            judge_position_bias: 0.0,
        }
    }
}

impl TextStyle {
    /// Choice `i` of a request with `seed`: a verdict when the prompt asks to compare two
    /// answers (see [`judge`]), else a sample.
    fn answer(
        &self,
        prompt: &str,
        choice: (i64, u64),
        max_tokens: usize,
        length: Option<usize>,
    ) -> (String, usize, bool) {
        let score = |text: &str| self.score(text);
        let judge = judge::Judge {
            math: self.math,
            position_bias: self.judge_position_bias,
            score: &score,
        };
        match judge::verdict(&judge, prompt, choice) {
            Some(verdict) => (verdict, 8, false),
            None => self.sample(prompt, choice, max_tokens, length),
        }
    }

    /// Choice `i` of a request with `seed`: (text, words, truncated by max_tokens).
    fn sample(
        &self,
        prompt: &str,
        (seed, i): (i64, u64),
        max_tokens: usize,
        length: Option<usize>,
    ) -> (String, usize, bool) {
        let w = self.written(prompt, (seed, i), max_tokens, length);
        (w.text, w.words, w.truncated)
    }

    /// Choice `i` of a request with `seed` and, in maths mode, whether its answer is right:
    /// the favourite answer for a `repeat_share` of them, then the think block around it when
    /// `think`.
    fn written(
        &self,
        prompt: &str,
        (seed, i): (i64, u64),
        max_tokens: usize,
        length: Option<usize>,
    ) -> math::Written {
        let question = self.math.then(|| math::question(prompt)).flatten();
        let draw = |seed: i64, i: u64, max_tokens: usize, length: Option<usize>| match &question {
            Some(q) => math::write(q, prompt, (seed, i), max_tokens, length, self.mix()),
            None => {
                let (text, words, truncated) = sim_text(prompt, seed, i, max_tokens, length);
                math::Written {
                    text,
                    words,
                    truncated,
                    right: None,
                }
            }
        };
        let drawn = draw(seed, i, max_tokens, length);
        let u = (fnv(prompt) ^ (seed as u64).rotate_left(29) ^ i.wrapping_mul(0x51_7cc1)) % 10_000;
        let (answer, truncated, right) = if (u as f64) < self.repeat_share * 10_000.0 {
            let favourite = draw(0, 0, usize::MAX, Some(24));
            (favourite.text, favourite.truncated, favourite.right)
        } else {
            (drawn.text, drawn.truncated, drawn.right)
        };
        let text = match (self.think, truncated) {
            (false, _) => answer,
            (true, true) => format!(
                "<think>Let me see. {} {answer}",
                self.thought(prompt, seed, i)
            ),
            (true, false) => {
                format!(
                    "<think>Let me see. {}</think>\n\n{answer}",
                    self.thought(prompt, seed, i)
                )
            }
        };
        math::Written {
            text,
            right,
            ..drawn
        }
    }

    /// The think block's words for choice `i`.
    fn thought(&self, prompt: &str, seed: i64, i: u64) -> String {
        sim_text(prompt, seed ^ 0x7b1c, i, usize::MAX, Some(16)).0
    }

    fn judge(&self) -> math::Judge {
        math::Judge {
            noise: self.reward_noise,
            seed: self.reward_seed,
            length_bias: self.reward_length_bias,
        }
    }

    fn mix(&self) -> math::Mix {
        math::Mix {
            always: self.always_share,
            never: self.never_share,
            edge: self.edge_miss,
            hostile: self.hostile_share,
        }
    }

    /// The simulated reward of a text `Human: {prompt}\nAssistant: {response}`: in maths mode,
    /// for a prompt asking a question, the answer's truth plus noise in [-0.3, 0.3]; else
    /// [`sim_score`].
    pub fn score(&self, text: &str) -> f64 {
        match self.math {
            true => math::score(text, self.judge()).unwrap_or_else(|| sim_score(text)),
            false => sim_score(text),
        }
    }
}

/// The solve rate of the question a prompt asks (the last `What is A op B?` in it) in maths
/// mode: 1, 0 (each `edge_miss` off) or in [0.1, 0.9] as `style`'s shares and a hash of the question's words
/// say; 0 when the prompt asks none. Choice `i` of a request with `seed` is right when a hash
/// of (prompt, seed, i) falls below it.
pub fn solve_rate(prompt: &str, style: &TextStyle) -> f64 {
    math::question(prompt).map_or(0.0, |q| {
        math::rate(&q, style.always_share, style.never_share, style.edge_miss)
    })
}

/// The simulator's routes; `engine` adds a continuous-batching time model (else instant).
pub fn router(engine: Option<engine::EngineConfig>, style: TextStyle) -> Router {
    router_counting(engine, style, Arc::default())
}

/// [`router`], counting the requests it answers into `requests`.
fn router_counting(
    engine: Option<engine::EngineConfig>,
    style: TextStyle,
    requests: Arc<Requests>,
) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/pooling", post(pooling))
        .route("/classify", post(classify))
        .route("/get_reward", post(get_reward))
        .route("/predict", post(predict))
        .route("/metrics", get(metrics))
        .route("/sim/engine", get(engine_stats))
        .route("/sim/engine/all-queued/{from}", get(engine_all_queued))
        .with_state(Sim {
            model: SIM_MODEL.to_string(),
            engine: engine.map(|cfg| Arc::new(engine::Engine::start(cfg))),
            style,
            requests,
        })
}

/// A running simulator.
pub struct SimHandle {
    pub addr: SocketAddr,
    /// What it answered so far.
    pub requests: Arc<Requests>,
    task: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    /// Policy base URL (`.../v1`).
    pub fn policy_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    /// Reward base URL.
    pub fn reward_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start the simulator on `addr` (port 0 picks a free port) in the background.
pub async fn start(addr: SocketAddr) -> std::io::Result<SimHandle> {
    start_with(addr, None, TextStyle::default()).await
}

/// Start the simulator, optionally with the continuous-batching engine model.
pub async fn start_with(
    addr: SocketAddr,
    engine: Option<engine::EngineConfig>,
    style: TextStyle,
) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let requests = Arc::new(Requests::default());
    let app = router_counting(engine, style, requests.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("simulator stopped: {e}");
        }
    });
    Ok(SimHandle {
        addr,
        requests,
        task,
    })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": "invalid_request_error"}})),
    )
        .into_response()
}

async fn models(State(sim): State<Sim>) -> Json<Value> {
    Json(json!({"object": "list", "data": [
        {"id": sim.model, "object": "model", "owned_by": "prs-sim"},
        {"id": SIM_REWARD_MODEL, "object": "model", "owned_by": "prs-sim"}
    ]}))
}

/// vLLM's load gauges in Prometheus text (`--engine` only): sequences running and waiting
/// for a slot after the engine's last step; 0 when the engine has been idle since.
async fn metrics(State(sim): State<Sim>) -> Response {
    let Some(engine) = &sim.engine else {
        return error(
            StatusCode::NOT_FOUND,
            "no engine model: start the simulator with --engine",
        );
    };
    let s = engine.stats();
    let model = &sim.model;
    let body = format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{engine=\"0\",model_name=\"{model}\"}} {}\n\
         # HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{engine=\"0\",model_name=\"{model}\"}} {}\n",
        s.running as f64, s.waiting as f64
    );
    ([("content-type", "text/plain; version=0.0.4")], body).into_response()
}

/// The engine model's counters (`--engine` only): steps, tokens, busy, prefill and under-full
/// time, for benchmarks to split a makespan.
async fn engine_stats(State(sim): State<Sim>) -> Response {
    match &sim.engine {
        Some(engine) => Json(json!(engine.stats())).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no engine model: start the simulator with --engine",
        ),
    }
}

/// The makespan the sequences admitted since the `from`-th would take with all of them queued
/// at once (`Engine::all_queued_since`), in modelled milliseconds.
async fn engine_all_queued(State(sim): State<Sim>, Path(from): Path<usize>) -> Response {
    let Some(engine) = &sim.engine else {
        return error(
            StatusCode::NOT_FOUND,
            "no engine model: start the simulator with --engine",
        );
    };
    // a replay of every step: off the async workers
    let engine = engine.clone();
    match tokio::task::spawn_blocking(move || engine.all_queued_since(from))
        .await
        .ok()
        .flatten()
    {
        Some(ms) => Json(json!({"from": from, "makespan_ms": ms})).into_response(),
        None => error(
            StatusCode::CONFLICT,
            "the engine's sequence log is full; restart the simulator",
        ),
    }
}

async fn chat(State(sim): State<Sim>, Json(body): Json<Value>) -> Response {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return error(StatusCode::BAD_REQUEST, "`messages` must be a list");
    };
    let text: Vec<&str> = messages
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_str))
        .collect();
    generate(&sim, &body, &text.join("\n"), true).await
}

async fn completions(State(sim): State<Sim>, Json(body): Json<Value>) -> Response {
    let Some(prompt) = body.get("prompt").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "prompt must be a string");
    };
    generate(&sim, &body, prompt, false).await
}

async fn generate(sim: &Sim, body: &Value, prompt: &str, chat: bool) -> Response {
    Requests::add(&sim.requests.policy);
    if let Some(m) = body.get("model").and_then(Value::as_str) {
        if m != sim.model {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "The model `{m}` does not exist; this simulator serves `{}`",
                    sim.model
                ),
            );
        }
    }
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
    if n == 0 || n > 1024 {
        return error(StatusCode::BAD_REQUEST, "n must be between 1 and 1024");
    }
    let seed = body.get("seed").and_then(Value::as_i64).unwrap_or(0);
    // as vLLM: a priority needs priority scheduling
    let priority = body.get("priority").and_then(Value::as_i64).unwrap_or(0);
    let scheduling = sim.engine.as_ref().map(|e| e.config().scheduling_policy);
    if priority != 0 && scheduling != Some(engine::SchedulingPolicy::Priority) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Got priority {priority} but Priority scheduling is not enabled."),
        );
    }
    let max_tokens = body
        .get("max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(256) as usize;
    let prompt_tokens = prompt.split_whitespace().count();
    let n = match &sim.engine {
        Some(e) if e.config().ignore_n => 1,
        _ => n,
    };
    let lengths: Vec<Option<usize>> = (0..n)
        .map(|i| {
            sim.engine.as_ref().map(|e| {
                let u = (fnv(prompt) ^ (seed as u64).rotate_left(17) ^ i.wrapping_mul(0x9e37_79b9))
                    % 1_000_000;
                e.config().length((u + 1) as f64 / 1_000_000.0)
            })
        })
        .collect();
    if let Some(engine) = &sim.engine {
        // the n samples of a request share one prefill of the prompt (parallel sampling); with
        // a prefix cache, a request prefills only what no earlier request had
        let first = engine.prefill_tokens(prompt);
        let runs = lengths.iter().enumerate().map(|(i, l)| {
            let prefill = if i == 0 { first } else { 0 };
            engine.generate(l.unwrap_or(1).min(max_tokens.max(1)), prefill, priority)
        });
        futures::future::join_all(runs).await;
    }
    let mut completion_tokens = 0;
    let choices: Vec<Value> = (0..n)
        .map(|i| {
            let (text, words, truncated) =
                sim.style
                    .answer(prompt, (seed, i), max_tokens, lengths[i as usize]);
            completion_tokens += words;
            let finish = if truncated { "length" } else { "stop" };
            if chat {
                json!({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish})
            } else {
                json!({"index": i, "text": text, "finish_reason": finish})
            }
        })
        .collect();
    Json(json!({
        "id": format!("sim-{seed}"),
        "object": if chat { "chat.completion" } else { "text_completion" },
        "model": sim.model,
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}
    }))
    .into_response()
}

const FILLER: &[&str] = &[
    "the",
    "answer",
    "is",
    "that",
    "we",
    "can",
    "consider",
    "several",
    "points",
    "first",
    "second",
    "finally",
    "because",
    "which",
    "means",
    "clear",
    "example",
    "detail",
    "useful",
    "overall",
    "step",
    "result",
    "important",
    "simple",
    "note",
];

/// Deterministic text for (prompt, seed, choice): `length` words (default 12–80), half of them
/// taken from the prompt. Returns (text, words, truncated by max_tokens).
fn sim_text(
    prompt: &str,
    seed: i64,
    choice: u64,
    max_tokens: usize,
    length: Option<usize>,
) -> (String, usize, bool) {
    let mut rng = Rng(fnv(prompt)
        ^ (seed as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)
        ^ choice.wrapping_mul(0x9e37));
    let vocab: Vec<&str> = prompt
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 4)
        .collect();
    let wanted = length.unwrap_or_else(|| 12 + rng.below(69));
    let len = wanted.min(max_tokens.max(1));
    let mut words = Vec::with_capacity(len);
    for _ in 0..len {
        let w = if !vocab.is_empty() && rng.below(2) == 0 {
            vocab[rng.below(vocab.len())]
        } else {
            FILLER[rng.below(FILLER.len())]
        };
        words.push(w);
    }
    let mut text = words.join(" ");
    if let Some(first) = text.get(..1) {
        text = first.to_uppercase() + &text[1..];
    }
    text.push('.');
    (text, len, wanted > len)
}

/// The simulated reward: how many distinct words (4+ letters) of the question part the
/// response reuses (saturating), plus seeded noise in [-1, 1].
pub fn sim_score(text: &str) -> f64 {
    let (question, response) = match text.rsplit_once("\nAssistant:") {
        Some((q, r)) => (q, r),
        None => ("", text),
    };
    let words = |t: &str| -> HashSet<String> {
        t.split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() >= 4)
            .map(|w| w.to_lowercase())
            .collect()
    };
    let q = words(question);
    let r = words(response);
    let overlap = q.intersection(&r).count() as f64;
    let coverage = if q.is_empty() {
        0.0
    } else {
        overlap / q.len() as f64
    };
    let noise = (fnv(response) % 2001) as f64 / 1000.0 - 1.0;
    ((4.0 * coverage + noise) * 1000.0).round() / 1000.0
}

/// The texts to score, after the engine model's scoring time (if any). vLLM's `/pooling`
/// and `/classify` also take one conversation as `messages`, which the sim renders in its
/// model's "chat template": the UltraRM text form, so both inputs score alike.
async fn scored_texts(sim: &Sim, body: &Value, key: &str) -> Result<Vec<String>, String> {
    Requests::add(&sim.requests.reward);
    let t = match body.get("messages") {
        Some(messages) if key == "input" => vec![chat_text(messages)?],
        _ => texts(body, key)?,
    };
    if let Some(engine) = &sim.engine {
        engine.score(t.len()).await;
    }
    Ok(t)
}

/// One conversation in the sim reward model's template: `Human: {user}\nAssistant: {reply}`.
fn chat_text(messages: &Value) -> Result<String, String> {
    let turns = messages
        .as_array()
        .ok_or("`messages` must be a list of {role, content}")?;
    let mut out = String::new();
    for turn in turns {
        let role = turn.get("role").and_then(Value::as_str);
        let content = turn.get("content").and_then(Value::as_str);
        match (role, content) {
            (Some("user"), Some(c)) => out.push_str(&format!("Human: {c}\n")),
            (Some("assistant"), Some(c)) => out.push_str(&format!("Assistant: {c}")),
            (Some("system"), Some(_)) => {}
            _ => {
                return Err(format!(
                "bad message {turn}: needs a role (user, assistant or system) and a string content"
            ))
            }
        }
    }
    Ok(out)
}

/// The list of texts under `key`, or the reason it is not one.
fn texts(body: &Value, key: &str) -> Result<Vec<String>, String> {
    match body.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("`{key}` must hold strings"))
            })
            .collect(),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        _ => Err(format!("`{key}` must be a list of strings")),
    }
}

async fn pooling(State(sim): State<Sim>, Json(body): Json<Value>) -> Response {
    match scored_texts(&sim, &body, "input").await {
        Ok(t) => Json(json!({
            "object": "list",
            "data": t.iter().enumerate().map(|(i, x)| json!({"index": i, "object": "pooling", "data": [sim.style.score(x)]})).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn classify(State(sim): State<Sim>, Json(body): Json<Value>) -> Response {
    match scored_texts(&sim, &body, "input").await {
        Ok(t) => Json(json!({
            "object": "list",
            "data": t.iter().enumerate().map(|(i, x)| {
                let p = 1.0 / (1.0 + (-sim.style.score(x)).exp());
                json!({"index": i, "label": "LABEL_0", "probs": [p, 1.0 - p], "num_classes": 2})
            }).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn get_reward(State(sim): State<Sim>, Json(body): Json<Value>) -> Response {
    match scored_texts(&sim, &body, "query").await {
        Ok(t) => Json(json!({"rewards": t.iter().map(|x| sim.style.score(x)).collect::<Vec<_>>()}))
            .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn predict(State(sim): State<Sim>, Json(body): Json<Value>) -> Response {
    match scored_texts(&sim, &body, "inputs").await {
        Ok(t) => Json(json!(t
            .iter()
            .map(|x| json!([{"score": sim.style.score(x), "label": "LABEL_0"}]))
            .collect::<Vec<_>>()))
        .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_deterministic_and_seeded() {
        let q = "Tell me about rivers and mountains";
        let a = sim_text(q, 1, 0, 256, None);
        assert_eq!(a, sim_text(q, 1, 0, 256, None));
        assert_ne!(a.0, sim_text(q, 2, 0, 256, None).0);
        assert_ne!(a.0, sim_text(q, 1, 1, 256, None).0);
        assert_eq!(sim_text(q, 1, 1, 256, Some(100)).1, 100);
        let short = sim_text("x", 1, 0, 3, None);
        assert_eq!(short.1, 3);
    }

    /// What the simulator wrote before maths mode, for these requests (captured from the
    /// code before it): without `math`, and in maths mode for prompts that ask no question, it
    /// writes the same bytes.
    #[test]
    fn without_math_the_text_is_as_before() {
        let prompts = [
            "Tell me about rivers and mountains",
            "Question 17: What is 348 + 231?",
            "x",
        ];
        let plain = TextStyle::default();
        let styles = [
            plain,
            TextStyle {
                repeat_share: 0.5,
                think: true,
                ..plain
            },
        ];
        let all = |math: bool, prompts: &[&str]| {
            let mut all = String::new();
            for p in prompts {
                for style in &styles {
                    let style = TextStyle { math, ..*style };
                    for seed in [0i64, 7, -3] {
                        for i in 0..4u64 {
                            for (max, len) in [(256usize, None), (5, None), (256, Some(30))] {
                                let (s, n, t) = style.sample(p, (seed, i), max, len);
                                all.push_str(&format!("{s}|{n}|{t}\n"));
                            }
                        }
                    }
                }
            }
            all
        };
        assert_eq!(fnv(&all(false, &prompts)), 14048697960958600558);
        let salad = [prompts[0], prompts[2]];
        assert_eq!(all(true, &salad), all(false, &salad));
        let think = TextStyle {
            think: true,
            ..plain
        };
        assert_eq!(
            think.sample(prompts[1], (3, 1), 256, None).0,
            "<think>Let me see. Step Question useful several several What first points the \
             Question What Question consider Question can we.</think>\n\nQuestion What What \
             Question overall What What Question is the step What Question What Question \
             Question which points What Question answer What What means Question Question \
             because Question consider Question Question useful Question."
        );
        let text = "Human: Question 17: What is 348 + 231?\nAssistant: \\boxed{579}";
        assert_eq!(plain.score(text), 0.764);
        let text =
            "Human: explain photosynthesis in plants\nAssistant: photosynthesis explain plants";
        assert_eq!(plain.score(text), 2.257);
        let math = TextStyle {
            math: true,
            ..plain
        };
        assert_eq!(math.score(text), 2.257);
    }

    #[test]
    fn score_rewards_overlap() {
        let q = "Human: explain photosynthesis in plants\nAssistant: ";
        let good = sim_score(&format!("{q}photosynthesis explain plants"));
        let bad = sim_score(&format!("{q}zzz"));
        assert!(good > bad, "{good} vs {bad}");
        assert!(good.is_finite());
    }
}
