//! `prs sim`: a SIMULATOR of a policy server and a reward server, for demos, tests and
//! benchmarks. It is not a language model: the "responses" are deterministic word salad built
//! from the request text, and the "rewards" measure how many words of the question a response
//! reuses plus seeded noise. It speaks the real wire formats over real HTTP:
//!
//! * policy (OpenAI-compatible, under `/v1`): `GET /v1/models`, `POST /v1/chat/completions`,
//!   `POST /v1/completions` (honours `n`, `seed`, `max_tokens`; same request, same text);
//! * reward, at the root: `POST /pooling` (vLLM), `POST /classify` (vLLM), `POST /get_reward`
//!   (OpenRLHF), `POST /predict` (TEI).

pub mod engine;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Json, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
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
#[derive(Debug, Clone, Copy, Default)]
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
}

impl TextStyle {
    /// Choice `i`'s text for (prompt, seed): the favourite answer for a `repeat_share` of
    /// them, then the think block around it when `think`.
    fn write(&self, prompt: &str, seed: i64, i: u64, text: (String, usize, bool)) -> String {
        let u = (fnv(prompt) ^ (seed as u64).rotate_left(29) ^ i.wrapping_mul(0x51_7cc1)) % 10_000;
        let (answer, _, truncated) = if (u as f64) < self.repeat_share * 10_000.0 {
            sim_text(prompt, 0, 0, usize::MAX, Some(24))
        } else {
            text
        };
        if !self.think {
            return answer;
        }
        let (thought, _, _) = sim_text(prompt, seed ^ 0x7b1c, i, usize::MAX, Some(16));
        match truncated {
            true => format!("<think>Let me see. {thought} {answer}"),
            false => format!("<think>Let me see. {thought}</think>\n\n{answer}"),
        }
    }
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
        // the n samples of a request share one prefill of the prompt (parallel sampling), and
        // with a prefix cache, so do all requests for the same prompt
        let first = engine.prefill_tokens(fnv(prompt), prompt_tokens);
        let runs = lengths.iter().enumerate().map(|(i, l)| {
            let prefill = if i == 0 { first } else { 0 };
            engine.generate(l.unwrap_or(1).min(max_tokens.max(1)), prefill, priority)
        });
        futures::future::join_all(runs).await;
    }
    let mut completion_tokens = 0;
    let choices: Vec<Value> = (0..n)
        .map(|i| {
            let written = sim_text(prompt, seed, i, max_tokens, lengths[i as usize]);
            let (words, truncated) = (written.1, written.2);
            let text = sim.style.write(prompt, seed, i, written);
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

/// SplitMix64: a tiny deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
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
            "data": t.iter().enumerate().map(|(i, x)| json!({"index": i, "object": "pooling", "data": [sim_score(x)]})).collect::<Vec<_>>()
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
                let p = 1.0 / (1.0 + (-sim_score(x)).exp());
                json!({"index": i, "label": "LABEL_0", "probs": [p, 1.0 - p], "num_classes": 2})
            }).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn get_reward(State(sim): State<Sim>, Json(body): Json<Value>) -> Response {
    match scored_texts(&sim, &body, "query").await {
        Ok(t) => Json(json!({"rewards": t.iter().map(|x| sim_score(x)).collect::<Vec<_>>()}))
            .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn predict(State(sim): State<Sim>, Json(body): Json<Value>) -> Response {
    match scored_texts(&sim, &body, "inputs").await {
        Ok(t) => Json(json!(t
            .iter()
            .map(|x| json!([{"score": sim_score(x), "label": "LABEL_0"}]))
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

    #[test]
    fn score_rewards_overlap() {
        let q = "Human: explain photosynthesis in plants\nAssistant: ";
        let good = sim_score(&format!("{q}photosynthesis explain plants"));
        let bad = sim_score(&format!("{q}zzz"));
        assert!(good > bad, "{good} vs {bad}");
        assert!(good.is_finite());
    }
}
