//! OpenAI-compatible policy client: `/chat/completions` or `/completions`, `n`, `seed`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{OnceCell, Semaphore};

use super::load::ServerLoad;
use super::{Endpoint, EndpointSettings, Servers};
use crate::config::{PolicyApi, PolicyN, PolicyRouting, PrsConfig};
use crate::error::{EndpointKind, PrsError, Result};
use crate::run::JobStats;
use crate::text::Template;

/// One generated sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub text: String,
    pub finish_reason: Option<String>,
}

/// Token counts a server reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// Everything a policy client is built from, parsed and checked once: its servers, how
/// requests to them are made, what each request asks for and how many run at once.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    servers: Servers,
    endpoint: EndpointSettings,
    shape: PolicyRequestShape,
    /// Most sequences being generated at once (`prs.max_in_flight`).
    max_in_flight: usize,
    /// Which of several servers a request goes to (`prs.policy_routing`).
    routing: PolicyRouting,
}

impl PolicySettings {
    /// The policy settings of `cfg`: `policy_url` checked first, then the request's fields.
    pub fn from_config(cfg: &PrsConfig) -> Result<Self> {
        Self::of_kind(EndpointKind::Policy, cfg)
    }

    /// The judge's settings (`prs.judge_*`): its own URL, model and key, the chat API, greedy
    /// decoding (temperature 0) and `judge_max_tokens`; retries, timeouts and response limits
    /// as the session's.
    pub fn for_judge(cfg: &PrsConfig) -> Result<Self> {
        let mut judge = cfg.clone();
        judge.policy_url = cfg.judge_url.clone();
        judge.policy_model = cfg.judge_model.clone();
        judge.policy_api = PolicyApi::Chat;
        judge.temperature = 0.0;
        judge.top_p = 1.0;
        judge.top_k = -1;
        judge.presence_penalty = 0.0;
        judge.max_tokens = cfg.judge_max_tokens;
        judge.stop = String::new();
        judge.policy_extra_body = String::new();
        judge.policy_priority = false;
        judge.policy_routing = PolicyRouting::LeastLoaded;
        Self::of_kind(EndpointKind::Judge, &judge)
    }

    fn of_kind(kind: EndpointKind, cfg: &PrsConfig) -> Result<Self> {
        Ok(PolicySettings {
            servers: Servers::parse(kind, &cfg.policy_url)?,
            endpoint: EndpointSettings::from_config(cfg),
            shape: PolicyRequestShape::from_config(cfg)?,
            max_in_flight: cfg.max_in_flight.max(1),
            routing: cfg.policy_routing,
        })
    }
}

/// What every policy request asks for: the API and model, the sampling fields, the stop
/// sequences and the extension fields (parsed), and how samples are asked for.
#[derive(Debug, Clone)]
pub(crate) struct PolicyRequestShape {
    api: PolicyApi,
    /// `prs.policy_model`; none: the first model the server lists.
    model: Option<String>,
    params: SamplingParams,
    /// `top_k`, `priority` and `prs.policy_extra_body`, checked.
    extensions: Map<String, Value>,
    policy_n: PolicyN,
}

impl PolicyRequestShape {
    /// The request fields of `cfg`, parsed and checked.
    fn from_config(cfg: &PrsConfig) -> Result<Self> {
        let model = cfg.policy_model.trim();
        let params = SamplingParams {
            temperature: cfg.temperature,
            top_p: cfg.top_p,
            presence_penalty: cfg.presence_penalty,
            max_tokens: cfg.max_tokens,
            stop: parse_stop(&cfg.stop)?,
        };
        Ok(PolicyRequestShape {
            api: cfg.policy_api,
            model: (!model.is_empty()).then(|| model.to_string()),
            params: params.checked()?,
            extensions: extensions(cfg.top_k, cfg.policy_priority, &cfg.policy_extra_body)?,
            policy_n: cfg.policy_n,
        })
    }
}

/// Sampling settings sent with every request.
#[derive(Debug, Clone)]
pub struct SamplingParams {
    pub temperature: f64,
    pub top_p: f64,
    pub presence_penalty: f64,
    pub max_tokens: u32,
    pub stop: Vec<String>,
}

impl SamplingParams {
    /// These settings, if each is in its range.
    fn checked(self) -> Result<Self> {
        if !(0.0..=100.0).contains(&self.temperature) {
            return Err(PrsError::setting(
                "temperature",
                self.temperature.to_string(),
                "must be between 0 and 100",
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(PrsError::setting(
                "top_p",
                self.top_p.to_string(),
                "must be in (0, 1]",
            ));
        }
        if self.max_tokens == 0 {
            return Err(PrsError::setting("max_tokens", "0", "must be at least 1"));
        }
        Ok(self)
    }
}

/// Permits for `units` of work under a limit of `limit` (a request wider than the limit takes
/// all of it, so it runs alone rather than never).
pub(crate) fn permits(units: usize, limit: usize) -> u32 {
    units.clamp(1, limit.max(1)).min(u32::MAX as usize) as u32
}

fn parse_stop(value: &str) -> Result<Vec<String>> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(vec![]);
    }
    if v.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(v).map_err(|e| {
            PrsError::setting("stop", value, format!("not a JSON array of strings: {e}"))
        });
    }
    Ok(vec![value.to_string()])
}

/// The body of a `/chat/completions` (`messages`) or `/completions` (`prompt`) request.
#[derive(Debug, Serialize)]
struct CompletionRequest<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a [Message<'a>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    n: usize,
    seed: i64,
    temperature: f64,
    top_p: f64,
    presence_penalty: f64,
    max_tokens: u32,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    /// Fields that are not OpenAI's (`top_k`, `prs.policy_extra_body`) and that this endpoint
    /// has not refused.
    #[serde(flatten)]
    extensions: Map<String, Value>,
}

/// The OpenAI fields of a request: `prs.policy_extra_body` may not set them (each has its own
/// setting, and they are never dropped).
const OPENAI_FIELDS: &[&str] = &[
    "model",
    "messages",
    "prompt",
    "n",
    "seed",
    "temperature",
    "top_p",
    "presence_penalty",
    "max_tokens",
    "stop",
];

/// The extension fields sent with every request: `top_k` (unless negative), then the keys of
/// `prs.policy_extra_body` (`extra_body`).
fn extensions(top_k: i32, priority: bool, extra_body: &str) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    if top_k >= 0 {
        out.insert("top_k".into(), Value::from(top_k));
    }
    // vLLM's request priority (lower first); each request sets its own value
    if priority {
        out.insert(PRIORITY.into(), Value::from(0));
    }
    let text = extra_body.trim();
    if text.is_empty() {
        return Ok(out);
    }
    let bad = |reason: String| PrsError::setting("policy_extra_body", text, reason);
    let extra = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(extra)) => extra,
        Ok(_) => return Err(bad("expected a JSON object like {\"min_p\": 0.05}".into())),
        Err(e) => return Err(bad(format!("not JSON: {e}"))),
    };
    for (key, value) in extra {
        let ours = ["top_k", PRIORITY].contains(&key.as_str()) && out.contains_key(&key);
        if OPENAI_FIELDS.contains(&key.as_str()) || ours {
            return Err(bad(format!(
                "{key:?} is a field prs sets itself; use prs.{key} instead"
            )));
        }
        out.insert(key, value);
    }
    Ok(out)
}

/// vLLM's `priority` field, sent with `prs.policy_priority = true`.
const PRIORITY: &str = "priority";

/// What one request asks for, before its body is put together.
struct Ask<'a> {
    path: &'static str,
    model: &'a str,
    messages: Option<Vec<Message<'a>>>,
    prompt: Option<String>,
    n: usize,
    seed: i64,
    max_tokens: u32,
    /// How deep in the sampling tree (deeper goes first where the server orders requests).
    depth: u32,
}

/// Whether a server's error message names `field` (as a whole word: `top_k`, `'top_k'`,
/// `body.top_k`, not `top_k_extra`).
fn names_field(message: &str, field: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    message.match_indices(field).any(|(i, _)| {
        let before = message[..i].chars().next_back();
        let after = message[i + field.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

#[derive(Deserialize)]
struct CompletionResponse {
    #[serde(default)]
    choices: Vec<RawChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct RawChoice {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    message: Option<RawMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    content: Option<String>,
}

/// A client for one OpenAI-compatible policy server.
#[derive(Debug)]
pub struct PolicyClient {
    endpoint: Endpoint,
    api: PolicyApi,
    configured_model: Option<String>,
    model: OnceCell<String>,
    params: SamplingParams,
    prompt_template: Template,
    in_flight: Arc<Semaphore>,
    in_flight_limit: usize,
    /// Extension fields sent with every request, less those the server refused.
    extensions: RwLock<Map<String, Value>>,
    policy_n: PolicyN,
    /// Per replica: set (under `policy_n = auto`) once that server answered with fewer choices
    /// than asked.
    ignores_n: Vec<AtomicBool>,
    /// Set once a replica served no load gauges at `/metrics`: [`PolicyClient::server_load`]
    /// asks no more.
    no_load_gauges: AtomicBool,
    /// The last load read and when: the windows of all partitions share one reading per
    /// [`LOAD_FRESH_FOR`] (the lock makes concurrent askers wait for one request).
    last_load: tokio::sync::Mutex<Option<(std::time::Instant, ServerLoad)>>,
}

/// How long a reading of the servers' load answers every asker.
const LOAD_FRESH_FOR: std::time::Duration = std::time::Duration::from_millis(50);

impl PolicyClient {
    /// A client for the policy `settings` describe; `prompt_template` wraps the user text for
    /// `policy_api = completions`.
    pub fn new(
        settings: &PolicySettings,
        prompt_template: Template,
        stats: Arc<JobStats>,
    ) -> Result<Self> {
        let endpoint = Endpoint::new(&settings.servers, &settings.endpoint, stats)?
            .by_prompt(settings.routing == PolicyRouting::Prompt);
        let shape = settings.shape.clone();
        Ok(PolicyClient {
            api: shape.api,
            configured_model: shape.model,
            model: OnceCell::new(),
            params: shape.params,
            prompt_template,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            in_flight_limit: settings.max_in_flight,
            extensions: RwLock::new(shape.extensions),
            policy_n: shape.policy_n,
            ignores_n: (0..endpoint.replica_count())
                .map(|_| AtomicBool::new(false))
                .collect(),
            no_load_gauges: AtomicBool::new(false),
            last_load: tokio::sync::Mutex::new(None),
            endpoint,
        })
    }

    /// The load the policy servers report at `/metrics` (vLLM's and SGLang's gauges), summed
    /// over the healthy replicas; `None` once a replica served none (a server without them,
    /// or not reachable), and from then on.
    pub async fn server_load(&self) -> Option<ServerLoad> {
        if self.no_load_gauges.load(Ordering::Relaxed) {
            return None;
        }
        let mut last = self.last_load.lock().await;
        if let Some((at, load)) = *last {
            if at.elapsed() < LOAD_FRESH_FOR {
                return Some(load);
            }
        }
        let mut total = ServerLoad {
            running: 0.0,
            waiting: 0.0,
        };
        for text in self.endpoint.get_text_from_each("/metrics").await {
            let Some(load) = text.as_deref().and_then(super::load::parse_metrics) else {
                self.no_load_gauges.store(true, Ordering::Relaxed);
                tracing::debug!(
                    "the policy endpoint serves no load gauges at /metrics: the prompt window \
                     keeps its size"
                );
                return None;
            };
            total.running += load.running;
            total.waiting += load.waiting;
        }
        *last = Some((std::time::Instant::now(), total));
        Some(total)
    }

    /// Whether the next samples go one per request: always under `policy_n = single`, and
    /// under `auto` when the replica the next request goes to has shown that it ignores `n`
    /// (each replica on its own: a fleet may mix servers).
    pub fn one_per_request(&self) -> bool {
        match self.policy_n {
            PolicyN::Single => true,
            PolicyN::Native => false,
            PolicyN::Auto => self
                .ignores_n
                .get(self.endpoint.next_replica())
                .is_some_and(|f| f.load(Ordering::Relaxed)),
        }
    }

    /// Note an answer of replica `replica` with `got` choices for `n` asked: under `auto`,
    /// fewer means that server ignores `n` (said once per replica).
    fn note_choices(&self, got: usize, n: usize, replica: usize) {
        let short = self.policy_n == PolicyN::Auto && got < n && n > 1 && got > 0;
        let Some(flag) = self.ignores_n.get(replica).filter(|_| short) else {
            return;
        };
        if !flag.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the policy server {} answered a request for n={n} with {got} choice(s): it \
                 ignores `n`, so from now on each sample sent to it is its own request, sent at \
                 once (prs.policy_n = single does this from the start)",
                self.endpoint.replica_base(replica)
            );
        }
    }

    pub fn base_url(&self) -> String {
        self.endpoint.base_str()
    }

    pub fn max_tokens(&self) -> u32 {
        self.params.max_tokens
    }

    /// The configured model, for display before any call is made.
    pub fn configured_model(&self) -> Option<&str> {
        self.configured_model.as_deref()
    }

    /// The model: the configured one, else the first id from `GET {base}/models` (asked once).
    pub async fn model(&self) -> Result<String> {
        self.model
            .get_or_try_init(|| async {
                if let Some(m) = &self.configured_model {
                    return Ok(m.clone());
                }
                let list: ModelList = self
                    .endpoint
                    .with_retry(|| self.endpoint.get_json("models"))
                    .await?;
                list.data.into_iter().next().map(|m| m.id).ok_or_else(|| {
                    let setting = self.endpoint.kind.model_setting();
                    let env = PrsConfig::env_name(setting);
                    let reason = format!("the server lists no models; set prs.{setting} / {env}");
                    self.endpoint.bad_response("models", reason)
                })
            })
            .await
            .cloned()
    }

    /// Check that the server answers `GET {base}/models` and lists the configured model.
    pub async fn preflight(&self) -> Result<()> {
        super::check_replicas(&self.endpoint, |ep| self.preflight_one(ep)).await
    }

    async fn preflight_one(&self, ep: super::Endpoint) -> Result<()> {
        let (kind, setting) = (ep.kind, ep.kind.model_setting());
        let list: ModelList = ep.twice(|| ep.get_json("models")).await?;
        let ids: Vec<String> = list.data.into_iter().map(|m| m.id).collect();
        match &self.configured_model {
            // some servers (transformers serve, llama.cpp) list nothing: ask the model itself
            Some(m) if ids.is_empty() => self.probe(&ep, m).await,
            Some(m) if !ids.contains(m) => {
                Err(PrsError::Preflight(format!(
                "{kind} endpoint {}: model {m:?} (prs.{setting}) not found; the server lists {}",
                ep.url("models"),
                if ids.is_empty() { "no models".to_string() } else { ids.join(", ") }
            )))
            }
            None if ids.is_empty() => Err(PrsError::Preflight(format!(
                "{kind} endpoint {} lists no models; set prs.{setting}",
                ep.url("models")
            ))),
            _ => Ok(()),
        }
    }

    /// A one-token request for `model` to one replica: it answers, or the check fails.
    async fn probe(&self, ep: &super::Endpoint, model: &str) -> Result<()> {
        let ask = self.ask(model, "Say OK.", 1, 0, 1, 0);
        loop {
            let body = self.body(&ask);
            let answer = ep
                .twice(|| ep.post_json::<CompletionResponse, _>(ask.path, &body))
                .await;
            match answer {
                Ok(_) => return Ok(()),
                Err(e) if self.drop_refused(&body.extensions, &e) => continue,
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    return Err(PrsError::Preflight(format!(
                        "{} endpoint {} lists no models, and a one-token request for model \
                         {model:?} (prs.{}) failed: {e}",
                        ep.kind,
                        ep.url("models"),
                        ep.kind.model_setting()
                    )))
                }
            }
        }
    }

    /// One request for `n` samples of `user_text` with `seed`, `depth` deep in the sampling
    /// tree. Returns what the server gave (possibly fewer than `n`; more is an error) and its
    /// token usage.
    pub async fn complete(
        &self,
        user_text: &str,
        n: usize,
        seed: i64,
        depth: u32,
    ) -> Result<(Vec<Choice>, Usage)> {
        let model = self.model().await?;
        let ask = self.ask(&model, user_text, n, seed, self.params.max_tokens, depth);
        // the limit counts sequences being generated, not requests
        let _permit = self
            .in_flight
            .acquire_many(permits(n, self.in_flight_limit))
            .await
            .map_err(|_| self.endpoint.bad_response(ask.path, "client shut down"))?;
        loop {
            let body = self.body(&ask);
            let answer = self
                .endpoint
                .with_retry(|| self.request_once(ask.path, &body, n))
                .await;
            match answer {
                Err(e) if self.drop_refused(&body.extensions, &e) => continue,
                answer => return answer,
            }
        }
    }

    /// What a request asks for, in the configured API's shape.
    fn ask<'a>(
        &self,
        model: &'a str,
        user_text: &'a str,
        n: usize,
        seed: i64,
        max_tokens: u32,
        depth: u32,
    ) -> Ask<'a> {
        let (path, messages, prompt) = match self.api {
            PolicyApi::Chat => (
                "chat/completions",
                Some(vec![Message {
                    role: "user",
                    content: user_text,
                }]),
                None,
            ),
            PolicyApi::Completions => (
                "completions",
                None,
                Some(self.prompt_template.render(&[("prompt", user_text)])),
            ),
        };
        Ask {
            path,
            model,
            messages,
            prompt,
            n,
            seed,
            max_tokens,
            depth,
        }
    }

    /// The request body: the OpenAI fields, and the extensions this endpoint has not refused.
    fn body<'a>(&'a self, ask: &'a Ask<'a>) -> CompletionRequest<'a> {
        let p = &self.params;
        CompletionRequest {
            model: ask.model,
            messages: ask.messages.as_deref(),
            prompt: ask.prompt.as_deref(),
            n: ask.n,
            seed: ask.seed,
            temperature: p.temperature,
            top_p: p.top_p,
            presence_penalty: p.presence_penalty,
            max_tokens: ask.max_tokens,
            stop: &p.stop,
            extensions: self.current_extensions(ask.depth),
        }
    }

    /// The extensions this endpoint has not refused; the priority (if sent) puts deeper
    /// requests first (vLLM: lower runs earlier).
    fn current_extensions(&self, depth: u32) -> Map<String, Value> {
        let mut extensions = self
            .extensions
            .read()
            .map(|m| m.clone())
            .unwrap_or_default();
        if let Some(priority) = extensions.get_mut(PRIORITY) {
            *priority = Value::from(-i64::from(depth));
        }
        extensions
    }

    /// When `e` is the server refusing the request (400 / 422) and its message names one of
    /// the extension fields `sent`, stop sending those fields to this endpoint, say so once and
    /// count it; true if the request should be sent again without them. OpenAI fields are
    /// never dropped.
    fn drop_refused(&self, sent: &Map<String, Value>, e: &PrsError) -> bool {
        let PrsError::Status {
            status: 400 | 422,
            message,
            ..
        } = e
        else {
            return false;
        };
        let refused: Vec<&String> = sent.keys().filter(|k| names_field(message, k)).collect();
        if refused.is_empty() {
            return false;
        }
        let Ok(mut current) = self.extensions.write() else {
            return false;
        };
        for field in refused {
            if current.remove(field).is_some() {
                tracing::warn!(
                    "the {} endpoint {} refused the field {field:?} ({message}); \
                     it is no longer sent to this endpoint",
                    self.endpoint.kind,
                    self.endpoint.base_str()
                );
                self.endpoint
                    .stats
                    .record_refused_field(&format!("{}.{field}", self.endpoint.kind));
            }
        }
        true
    }

    async fn request_once(
        &self,
        path: &str,
        body: &CompletionRequest<'_>,
        n: usize,
    ) -> Result<(Vec<Choice>, Usage)> {
        // the judge's requests and tokens are its own: they are not the policy's generation
        let judge = self.endpoint.kind == EndpointKind::Judge;
        match judge {
            true => self.endpoint.stats.record_judge_request(),
            false => self.endpoint.stats.record_policy_request(),
        }
        let (resp, replica): (CompletionResponse, usize) =
            self.endpoint.post_json_to_any(path, body).await?;
        let usage = resp.usage.unwrap_or_default();
        if !judge {
            self.endpoint
                .stats
                .record_tokens(usage.prompt_tokens, usage.completion_tokens);
        }
        self.note_choices(resp.choices.len(), n, replica);
        if resp.choices.len() > n {
            return Err(self.endpoint.bad_response(
                path,
                format!("asked for n={n} choices, got {}", resp.choices.len()),
            ));
        }
        let mut out = Vec::with_capacity(resp.choices.len());
        for c in resp.choices {
            let text = match self.api {
                PolicyApi::Chat => c.message.and_then(|m| m.content).or(c.text),
                PolicyApi::Completions => c.text.or(c.message.and_then(|m| m.content)),
            };
            let Some(text) = text else {
                return Err(self.endpoint.bad_response(path, "a choice has no text"));
            };
            out.push(Choice {
                text,
                finish_reason: c.finish_reason,
            });
        }
        Ok((out, usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_parsing() {
        assert!(parse_stop("").unwrap().is_empty());
        assert_eq!(parse_stop("</s>").unwrap(), vec!["</s>"]);
        assert_eq!(parse_stop(r#"["a","b"]"#).unwrap(), vec!["a", "b"]);
        assert!(parse_stop("[1,2").is_err());
    }

    #[test]
    fn missing_url_names_setting_and_env() {
        let cfg = PrsConfig::default();
        let t = Template::parse("p", "{prompt}", &["prompt"], &[]).unwrap();
        let err = PolicySettings::from_config(&cfg)
            .and_then(|s| PolicyClient::new(&s, t, Arc::default()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("prs.policy_url") && err.contains("PRS_POLICY_URL"),
            "{err}"
        );
    }
}
