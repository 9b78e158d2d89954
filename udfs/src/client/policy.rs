//! OpenAI-compatible policy client: `/chat/completions` or `/completions`, `n`, `seed`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, Semaphore};

use super::Endpoint;
use crate::config::{PolicyApi, PrsConfig};
use crate::error::{EndpointKind, PrsError, Result};
use crate::stats::JobStats;
use crate::templates::Template;

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

/// Sampling settings sent with every request.
#[derive(Debug, Clone)]
pub struct SamplingParams {
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: i32,
    pub presence_penalty: f64,
    pub max_tokens: u32,
    pub stop: Vec<String>,
}

impl SamplingParams {
    pub fn from_config(cfg: &PrsConfig) -> Result<Self> {
        let stop = parse_stop(&cfg.stop)?;
        if !(0.0..=100.0).contains(&cfg.temperature) {
            return Err(PrsError::setting(
                "temperature",
                cfg.temperature.to_string(),
                "must be between 0 and 100",
            ));
        }
        if !(cfg.top_p > 0.0 && cfg.top_p <= 1.0) {
            return Err(PrsError::setting(
                "top_p",
                cfg.top_p.to_string(),
                "must be in (0, 1]",
            ));
        }
        if cfg.max_tokens == 0 {
            return Err(PrsError::setting("max_tokens", "0", "must be at least 1"));
        }
        Ok(SamplingParams {
            temperature: cfg.temperature,
            top_p: cfg.top_p,
            top_k: cfg.top_k,
            presence_penalty: cfg.presence_penalty,
            max_tokens: cfg.max_tokens,
            stop,
        })
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
    messages: Option<Vec<Message<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    n: usize,
    seed: i64,
    temperature: f64,
    top_p: f64,
    /// Left out when `prs.top_k` is negative.
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<i32>,
    presence_penalty: f64,
    max_tokens: u32,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
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
}

impl PolicyClient {
    pub fn new(cfg: &PrsConfig, prompt_template: Template, stats: Arc<JobStats>) -> Result<Self> {
        let endpoint = Endpoint::new(EndpointKind::Policy, &cfg.policy_url, cfg, stats)?;
        let model = cfg.policy_model.trim();
        Ok(PolicyClient {
            endpoint,
            api: cfg.policy_api,
            configured_model: (!model.is_empty()).then(|| model.to_string()),
            model: OnceCell::new(),
            params: SamplingParams::from_config(cfg)?,
            prompt_template,
            in_flight: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            in_flight_limit: cfg.max_in_flight.max(1),
        })
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
                    self.endpoint.bad_response(
                        "models",
                        "the server lists no models; set prs.policy_model / PRS_POLICY_MODEL",
                    )
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
        let list: ModelList = ep.twice(|| ep.get_json("models")).await?;
        let ids: Vec<String> = list.data.into_iter().map(|m| m.id).collect();
        match &self.configured_model {
            Some(m) if !ids.contains(m) => {
                Err(PrsError::Preflight(format!(
                "policy endpoint {}: model {m:?} (prs.policy_model) not found; the server lists {}",
                ep.url("models"),
                if ids.is_empty() { "no models".to_string() } else { ids.join(", ") }
            )))
            }
            None if ids.is_empty() => Err(PrsError::Preflight(format!(
                "policy endpoint {} lists no models; set prs.policy_model",
                ep.url("models")
            ))),
            _ => Ok(()),
        }
    }

    /// One request for `n` samples of `user_text` with `seed`. Returns what the server gave
    /// (possibly fewer than `n`; more is an error) and its token usage.
    pub async fn complete(
        &self,
        user_text: &str,
        n: usize,
        seed: i64,
    ) -> Result<(Vec<Choice>, Usage)> {
        let model = self.model().await?;
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
        let p = &self.params;
        let body = CompletionRequest {
            model: &model,
            messages,
            prompt,
            n,
            seed,
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: (p.top_k >= 0).then_some(p.top_k),
            presence_penalty: p.presence_penalty,
            max_tokens: p.max_tokens,
            stop: &p.stop,
        };

        // the limit counts sequences being generated, not requests
        let _permit = self
            .in_flight
            .acquire_many(permits(n, self.in_flight_limit))
            .await
            .map_err(|_| self.endpoint.bad_response(path, "client shut down"))?;
        self.endpoint
            .with_retry(|| self.request_once(path, &body, n))
            .await
    }

    async fn request_once(
        &self,
        path: &str,
        body: &CompletionRequest<'_>,
        n: usize,
    ) -> Result<(Vec<Choice>, Usage)> {
        self.endpoint.stats.record_policy_request();
        let resp: CompletionResponse = self.endpoint.post_json(path, body).await?;
        let usage = resp.usage.unwrap_or_default();
        self.endpoint
            .stats
            .record_tokens(usage.prompt_tokens, usage.completion_tokens);
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
        let err = PolicyClient::new(&cfg, t, Arc::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("prs.policy_url") && err.contains("PRS_POLICY_URL"),
            "{err}"
        );
    }
}
