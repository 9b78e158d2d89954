//! Reward-model client: four wire protocols, batched, many requests in flight.

use std::sync::Arc;

use std::sync::OnceLock;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use futures::FutureExt;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{Endpoint, EndpointSettings, Servers};
use crate::config::PrsConfig;
pub use crate::config::RewardProtocol;
use crate::error::{EndpointKind, PrsError, Result};
use crate::run::{JobStats, PromptTally};
use crate::text::RewardItem;

/// The wire format of each protocol (the setting itself is [`RewardProtocol`]).
impl RewardProtocol {
    fn path(&self) -> &'static str {
        match self {
            Self::VllmPooling => "pooling",
            Self::VllmClassify => "classify",
            Self::OpenRlhf => "get_reward",
            Self::Tei => "predict",
            // never sent: no client is built for it (see RewardSettings::from_config)
            Self::Verify => "",
        }
    }

    /// Read one score per text from a response body; never invents a value.
    pub fn scores(
        &self,
        body: &Value,
        expected: usize,
    ) -> std::result::Result<Vec<f64>, BadScores> {
        let scores: Vec<f64> = match self {
            Self::VllmPooling => items(body.get("data"), "data")?
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let data = item.get("data").ok_or(format!("data[{i}] has no `data`"))?;
                    pooled_score(data).map_err(|e| e.at(&format!("data[{i}].data")))
                })
                .collect::<std::result::Result<_, BadScores>>()?,
            Self::VllmClassify => items(body.get("data"), "data")?
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.pointer("/probs/0")
                        .and_then(Value::as_f64)
                        .ok_or(format!("data[{i}] has no numeric probs[0]"))
                })
                .collect::<std::result::Result<_, String>>()?,
            Self::OpenRlhf => items(body.get("rewards"), "rewards")?
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_f64().ok_or(format!("rewards[{i}] is not a number")))
                .collect::<std::result::Result<_, String>>()?,
            Self::Tei => items(Some(body), "the body")?
                .iter()
                .enumerate()
                .map(|(i, v)| tei_score(v).ok_or(format!("item {i} holds no score")))
                .collect::<std::result::Result<_, String>>()?,
            Self::Verify => {
                return Err("reward_protocol = verify has no reward server"
                    .to_string()
                    .into())
            }
        };
        if scores.len() != expected {
            let reason = format!("sent {expected} texts, got {} scores", scores.len());
            return Err(reason.into());
        }
        if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
            return Err(format!("score {i} is not a finite number").into());
        }
        Ok(scores)
    }
}

/// Scores that cannot be read from a reward server's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct BadScores {
    pub reason: String,
    /// The answer has the wrong kind of values (a hidden state): retrying will not mend it.
    pub permanent: bool,
}

impl std::fmt::Display for BadScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// A body that is not what the protocol promises: retried like a failed request.
impl From<String> for BadScores {
    fn from(reason: String) -> Self {
        BadScores {
            reason,
            permanent: false,
        }
    }
}

impl BadScores {
    /// The same, said of `place` in the body.
    fn at(self, place: &str) -> Self {
        BadScores {
            reason: format!("{place} {}", self.reason),
            ..self
        }
    }

    /// The error of a request to `path` of `endpoint`: a permanent fault, or a bad body that
    /// is retried like a failed request.
    fn into_error(self, endpoint: &Endpoint, path: &str) -> PrsError {
        if self.permanent {
            PrsError::ServerFault {
                endpoint: EndpointKind::Reward,
                reason: format!("{}: {}", endpoint.url(path), self.reason),
            }
        } else {
            endpoint.bad_response(path, self.reason)
        }
    }
}

fn items<'a>(v: Option<&'a Value>, what: &str) -> std::result::Result<&'a Vec<Value>, String> {
    v.and_then(Value::as_array)
        .ok_or_else(|| format!("{what} is not a list"))
}

/// The score in a vLLM pooling result: a number, or a per-token list whose last position is
/// a number or a one-number list. A position holding several numbers is a hidden state or a
/// multi-label output, not a score: that is an error, never its last element.
fn pooled_score(v: &Value) -> std::result::Result<f64, BadScores> {
    let last = match v {
        Value::Array(tokens) => tokens.last().ok_or("is an empty list".to_string())?,
        other => other,
    };
    let number = |n: &Value| n.as_f64().ok_or(format!("holds {n}, not a number").into());
    match last {
        Value::Array(position) if position.len() == 1 => number(&position[0]),
        // how the model is served, not a passing fault: asking again will not mend it
        Value::Array(position) => Err(BadScores {
            permanent: true,
            reason: format!(
            "holds a vector of {} numbers per position, not a score: the server returns hidden \
             states or several labels. Serve the model as a reward model (vLLM: its reward / \
             pooling runner with the model's score head), or use prs.reward_protocol = \
             vllm-classify for a classifier",
                position.len()
            ),
        }),
        n => number(n),
    }
}

/// TEI answers `[{"score": s, "label": ...}, ...]` per input (or a bare object / number).
fn tei_score(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Object(o) => o.get("score").and_then(Value::as_f64),
        Value::Array(a) => a.first().and_then(tei_score),
        _ => None,
    }
}

/// What sends one batch: shared by the client and its micro-batching task.
#[derive(Debug, Clone)]
struct BatchSender {
    endpoint: Endpoint,
    protocol: RewardProtocol,
    model: Option<String>,
    in_flight: Arc<Semaphore>,
    in_flight_limit: usize,
}

impl BatchSender {
    async fn score_batch(&self, texts: &[RewardItem]) -> Result<Vec<f64>> {
        let path = self.protocol.path();
        let body = RewardItem::body(self.protocol, self.model.as_deref(), texts)?;
        // the limit counts texts being scored, not requests
        let _permit = self
            .in_flight
            .acquire_many(super::policy::permits(texts.len(), self.in_flight_limit))
            .await
            .map_err(|_| self.endpoint.bad_response(path, "client shut down"))?;
        // a body that is not what the protocol promises is retried like a failed request
        self.endpoint
            .with_retry(|| async {
                self.endpoint.stats.record_reward_request();
                let resp: Value = self.endpoint.post_json(path, &body).await?;
                self.protocol
                    .scores(&resp, texts.len())
                    .map_err(|e| e.into_error(&self.endpoint, path))
            })
            .await
    }

    /// Score one batch, each text on its own outcome: when the server refuses a batch of
    /// several texts for what it holds (HTTP 400 / 413 / 422), each half is sent on its own,
    /// and so on down, so only the texts it refuses fail (at most 2·⌈log2 n⌉ more requests per
    /// refused text).
    fn score_split<'a>(&'a self, texts: &'a [RewardItem]) -> BoxFuture<'a, Vec<Scored>> {
        async move {
            match self.score_batch(texts).await {
                Ok(scores) => scores.into_iter().map(Ok).collect(),
                Err(e) if texts.len() > 1 && refuses_content(&e) => {
                    tracing::debug!(texts = texts.len(), error = %e, "reward batch refused: scoring each half on its own");
                    let (a, b) = texts.split_at(texts.len() / 2);
                    let (a, b) = futures::join!(self.score_split(a), self.score_split(b));
                    a.into_iter().chain(b).collect()
                }
                Err(e) => all_failed(texts.len(), e),
            }
        }
        .boxed()
    }

    /// Score in batches of `batch_size` (conversations one per request: vLLM takes one per
    /// request), sent concurrently; one outcome per text, in order.
    async fn score_all(&self, texts: &[RewardItem], batch_size: usize) -> Vec<Scored> {
        let per_request = if texts.iter().any(RewardItem::is_chat) {
            1
        } else {
            batch_size.max(1)
        };
        let batches = texts.chunks(per_request).map(|b| self.score_split(b));
        join_all(batches).await.into_iter().flatten().collect()
    }
}

/// One text's score, or why it has none (shared by the texts of a failed request).
pub type Scored = std::result::Result<f64, Arc<PrsError>>;

/// `n` texts that all fail for the same reason `e`.
pub(crate) fn all_failed(n: usize, e: impl Into<Arc<PrsError>>) -> Vec<Scored> {
    let e = e.into();
    (0..n).map(|_| Err(e.clone())).collect()
}

/// A refusal of what a batch holds (a text too long, a character the tokenizer rejects), not
/// of the request as such (401, 404: every text would fail alike).
fn refuses_content(e: &PrsError) -> bool {
    matches!(
        e,
        PrsError::Status {
            status: 400 | 413 | 422,
            ..
        }
    )
}

/// The scores of all texts, or the first failure among them (itself, unless other callers
/// share it).
pub(crate) fn all_scored(scored: Vec<Scored>) -> Result<Vec<f64>> {
    match scored.iter().find_map(|s| s.as_ref().err().cloned()) {
        None => Ok(scored.into_iter().flatten().collect()),
        Some(e) => {
            drop(scored);
            Err(Arc::try_unwrap(e).unwrap_or_else(PrsError::Shared))
        }
    }
}

/// Texts waiting to be scored together with other callers' texts.
struct Pending {
    texts: Vec<RewardItem>,
    reply: oneshot::Sender<Vec<Scored>>,
}

/// Everything a reward client is built from, parsed and checked once: its servers, how
/// requests to them are made, the protocol and model, and how texts are batched.
#[derive(Debug, Clone)]
pub struct RewardSettings {
    servers: Servers,
    endpoint: EndpointSettings,
    protocol: RewardProtocol,
    /// `prs.reward_model`; none: the server's own.
    model: Option<String>,
    /// Texts per request (`prs.reward_batch_size`).
    batch_size: usize,
    /// How long a batch waits to fill (`prs.reward_batch_wait_ms`).
    batch_wait: Duration,
    /// Most texts being scored at once (`prs.reward_max_in_flight`).
    max_in_flight: usize,
}

impl RewardSettings {
    /// The reward settings of `cfg`: the batch size checked first, then `reward_url`.
    pub fn from_config(cfg: &PrsConfig) -> Result<Self> {
        if cfg.reward_protocol == RewardProtocol::Verify {
            return Err(PrsError::setting(
                "reward_protocol",
                "verify",
                "there is no reward model to send texts to: with verify, sampled candidates are \
                 rewarded by checking their answers against the prompts' references; for a table \
                 of answers use verify(response, reference), or set a reward model's protocol",
            ));
        }
        if cfg.reward_batch_size == 0 {
            return Err(PrsError::setting(
                "reward_batch_size",
                "0",
                "must be at least 1",
            ));
        }
        let model = cfg.reward_model.trim();
        Ok(RewardSettings {
            servers: Servers::parse(EndpointKind::Reward, &cfg.reward_url)?,
            endpoint: EndpointSettings::from_config(cfg),
            protocol: cfg.reward_protocol,
            model: (!model.is_empty()).then(|| model.to_string()),
            batch_size: cfg.reward_batch_size,
            batch_wait: Duration::from_millis(cfg.reward_batch_wait_ms),
            max_in_flight: cfg.reward_max_in_flight.max(1),
        })
    }
}

/// A client for one reward server.
///
/// With `reward_batch_wait_ms > 0` (default), texts from concurrent callers (many prompts) are
/// gathered into shared requests of up to `reward_batch_size` texts, waiting at most that long
/// for a batch to fill.
#[derive(Debug)]
pub struct RewardClient {
    sender: BatchSender,
    batch_size: usize,
    wait: Duration,
    queue: OnceLock<mpsc::UnboundedSender<Pending>>,
}

impl RewardClient {
    /// A client for the reward server `settings` describe.
    pub fn new(settings: &RewardSettings, stats: Arc<JobStats>) -> Result<Self> {
        Ok(RewardClient {
            sender: BatchSender {
                endpoint: Endpoint::new(&settings.servers, &settings.endpoint, stats)?,
                protocol: settings.protocol,
                model: settings.model.clone(),
                in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
                in_flight_limit: settings.max_in_flight,
            },
            batch_size: settings.batch_size,
            wait: settings.batch_wait,
            queue: OnceLock::new(),
        })
    }

    pub fn base_url(&self) -> String {
        self.sender.endpoint.base_str()
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn protocol(&self) -> RewardProtocol {
        self.sender.protocol
    }

    /// The model name recorded in output rows: the setting, else the protocol.
    pub fn model_label(&self) -> String {
        self.sender
            .model
            .clone()
            .unwrap_or_else(|| format!("{}@{}", self.sender.protocol.as_str(), self.base_url()))
    }

    /// Check that the server scores one text with the configured protocol, and for vLLM with a
    /// configured model, that `GET {url}/v1/models` lists it.
    /// `probe` is a response in the call's reward input, so the check covers the input mode
    /// too (a server without a chat template refuses `messages`).
    pub async fn preflight(&self, probe: &RewardItem) -> Result<()> {
        super::check_replicas(&self.sender.endpoint, |ep| self.preflight_one(ep, probe)).await
    }

    async fn preflight_one(&self, endpoint: super::Endpoint, probe: &RewardItem) -> Result<()> {
        let protocol = self.sender.protocol;
        if let (Some(model), true) = (&self.sender.model, protocol.is_vllm()) {
            let list: Value = endpoint.twice(|| endpoint.get_json("v1/models")).await?;
            let ids: Vec<&str> = list
                .get("data")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m.get("id").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            if !ids.contains(&model.as_str()) {
                return Err(PrsError::Preflight(format!(
                    "reward endpoint {}: model {model:?} (prs.reward_model) not found; the server lists {}",
                    endpoint.url("v1/models"),
                    if ids.is_empty() { "no models".to_string() } else { ids.join(", ") }
                )));
            }
        }
        let path = protocol.path();
        let body = RewardItem::body(
            protocol,
            self.sender.model.as_deref(),
            std::slice::from_ref(probe),
        )?;
        endpoint
            .twice(|| async {
                let resp: Value = endpoint.post_json(path, &body).await?;
                protocol
                    .scores(&resp, 1)
                    .map_err(|e| e.into_error(&endpoint, path))
            })
            .await
            .map(|_| ())
            .map_err(|e| match e {
                e @ (PrsError::BadResponse { .. }
                | PrsError::Status {
                    status: 400 | 404 | 422,
                    ..
                }) => PrsError::Preflight(format!(
                    "{e} (is prs.reward_protocol = {} right?{})",
                    protocol.as_str(),
                    if probe.is_chat() {
                        " The server is sent conversations as `messages` \
                             (prs.reward_input = chat): it needs the model's chat template, \
                             else set prs.reward_chat_template_file or reward_input = text"
                    } else {
                        ""
                    }
                )),
                other => other,
            })
    }

    /// Score responses, in order; the first failure fails them all (see
    /// [`RewardClient::score_each`] for one outcome per response).
    pub async fn score(&self, texts: &[RewardItem]) -> Result<Vec<f64>> {
        all_scored(self.score_each(texts).await)
    }

    /// Score responses, in order, each with its own outcome: a text the server refuses fails
    /// alone, not the texts sent with it.
    pub async fn score_each(&self, texts: &[RewardItem]) -> Vec<Scored> {
        if texts.is_empty() {
            return vec![];
        }
        let started = std::time::Instant::now();
        // conversations go one per request: nothing to gather
        let out = if self.wait.is_zero() || texts.iter().any(RewardItem::is_chat) {
            self.sender.score_all(texts, self.batch_size).await
        } else {
            let (reply, answer) = oneshot::channel();
            let queued = self.queue().send(Pending {
                texts: texts.to_vec(),
                reply,
            });
            match (queued, answer.await) {
                (Ok(()), Ok(scored)) if scored.len() == texts.len() => scored,
                _ => {
                    let path = self.sender.protocol.path();
                    let stopped = self
                        .sender
                        .endpoint
                        .bad_response(path, "the reward batcher stopped");
                    all_failed(texts.len(), stopped)
                }
            }
        };
        PromptTally::record_wait(EndpointKind::Reward, started.elapsed());
        out
    }

    fn queue(&self) -> &mpsc::UnboundedSender<Pending> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(batcher(self.sender.clone(), self.batch_size, self.wait, rx));
            tx
        })
    }
}

/// Gather pending texts into batches (full, or after `wait`), send each batch group on its own
/// task and hand every caller its scores. Ends when the client is dropped; a group's task ends
/// when its callers are gone (their query dropped or cancelled), so no request outlives them.
async fn batcher(
    sender: BatchSender,
    batch_size: usize,
    wait: Duration,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    while let Some(first) = rx.recv().await {
        let mut count = first.texts.len();
        let mut group = vec![first];
        let deadline = tokio::time::Instant::now() + wait;
        while count < batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => {
                    count += p.texts.len();
                    group.push(p);
                }
                _ => break,
            }
        }
        tokio::spawn(score_group(sender.clone(), group, batch_size));
    }
}

/// Score a group of callers' texts and hand each caller its own; stop (dropping the requests
/// in flight and every retry to come) once no caller waits for an answer.
async fn score_group(sender: BatchSender, mut group: Vec<Pending>, batch_size: usize) {
    let texts: Vec<RewardItem> = group.iter().flat_map(|p| p.texts.iter().cloned()).collect();
    let scored = {
        let work = sender.score_all(&texts, batch_size);
        let abandoned = async {
            for p in group.iter_mut() {
                p.reply.closed().await;
            }
        };
        tokio::select! {
            scored = work => scored,
            () = abandoned => return,
        }
    };
    let mut rest = scored.into_iter();
    for p in group {
        let mine: Vec<Scored> = rest.by_ref().take(p.texts.len()).collect();
        let _ = p.reply.send(mine);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_all_four_protocols() {
        let p = RewardProtocol::VllmPooling;
        let body =
            json!({"data": [{"data": [0.1, 2.5]}, {"data": [[1.0], [-3.0]]}, {"data": 4.0}]});
        assert_eq!(p.scores(&body, 3).unwrap(), vec![2.5, -3.0, 4.0]);

        let c = RewardProtocol::VllmClassify;
        let body = json!({"data": [{"probs": [0.7, 0.3]}, {"probs": [0.2, 0.8]}]});
        assert_eq!(c.scores(&body, 2).unwrap(), vec![0.7, 0.2]);

        let o = RewardProtocol::OpenRlhf;
        assert_eq!(
            o.scores(&json!({"rewards": [1.5, -2.0]}), 2).unwrap(),
            vec![1.5, -2.0]
        );

        let t = RewardProtocol::Tei;
        let body =
            json!([[{"score": 0.9, "label": "LABEL_0"}], [{"score": -1.0, "label": "LABEL_0"}]]);
        assert_eq!(t.scores(&body, 2).unwrap(), vec![0.9, -1.0]);
    }

    #[test]
    fn never_invents_scores() {
        let o = RewardProtocol::OpenRlhf;
        assert!(o.scores(&json!({"rewards": [1.0]}), 2).is_err());
        assert!(o.scores(&json!({"rewards": [1.0, null]}), 2).is_err());
        assert!(o.scores(&json!({"oops": 1}), 1).is_err());
        let p = RewardProtocol::VllmPooling;
        assert!(p.scores(&json!({"data": [{"data": []}]}), 1).is_err());
    }

    #[test]
    fn pooled_scores() {
        // pooling: a number, per-token numbers, per-token one-number lists are scores
        let pool =
            |data: Value| RewardProtocol::VllmPooling.scores(&json!({"data": [{"data": data}]}), 1);
        assert_eq!(pool(json!(0.5)), Ok(vec![0.5]));
        assert_eq!(pool(json!([0.1, 0.2, 0.7])), Ok(vec![0.7]));
        assert_eq!(pool(json!([[0.1], [0.9]])), Ok(vec![0.9]));
        // a hidden state per position is refused, never read as its last element
        let e = pool(json!([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])).unwrap_err();
        assert!(e.permanent, "{e}");
        let reason = &e.reason;
        assert!(reason.contains("vector of 3 numbers") && reason.contains("reward model"));
        assert!(!pool(json!("x")).unwrap_err().permanent);
        assert!(pool(json!([])).is_err());
        assert!(pool(json!(["x"])).is_err());
        assert!("nope".parse::<RewardProtocol>().is_err());
    }
}
