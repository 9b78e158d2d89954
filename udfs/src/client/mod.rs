//! HTTP clients for the policy (OpenAI-compatible) and reward endpoints.
//!
//! `client` itself is a `pub mod` of the crate because hosts (the benchmark) use it as a module
//! (`datafusion_prs::client::{PolicyClient, RewardClient}`); its files are private to this
//! folder, and everyone else uses its face (the `use` list below).

mod keys;
mod load;
mod policy;
mod reward;
mod url;

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::config::PrsConfig;
use crate::error::{EndpointKind, PrsError, Result};
use crate::run::{JobStats, PromptTally};

/// How failed requests are retried (from the `retry_*` settings).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub attempts: usize,
    pub initial: Duration,
    pub max_delay: Duration,
    pub deadline: Duration,
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.initial)
            .with_max_delay(self.max_delay)
            .with_max_times(self.attempts - 1)
            .with_total_delay(Some(self.deadline))
    }
}

use crate::redact::redact_urls;
// The face. Public: the clients, what a completion returns, and binding keys to endpoints.
pub use keys::bind_keys_to_own_endpoints;
pub use load::ServerLoad;
pub use policy::{Choice, PolicyClient, PolicySettings, Usage};
pub use reward::{RewardClient, RewardProtocol, RewardSettings};
// For the other wings (`sampler`, `durability`): a score or its error, for a whole batch.
pub(crate) use reward::{all_failed, all_scored, Scored};
use url::parse_base_url;

/// How every request to an endpoint is made: timeouts, retries, the size of an answer, and
/// when a failing replica is set aside. Shared by the policy and reward endpoints.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EndpointSettings {
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
    /// Most bytes read of one answer (`prs.max_response_bytes`).
    max_response_bytes: u64,
    eject_after: u32,
    eject_for: Duration,
}

impl EndpointSettings {
    /// The endpoint settings of `cfg` (`*_timeout_secs`, `retry_*`, `max_response_bytes`,
    /// `replica_eject_*`).
    pub fn from_config(cfg: &PrsConfig) -> Self {
        EndpointSettings {
            connect_timeout: Duration::from_secs(cfg.connect_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(cfg.request_timeout_secs.max(1)),
            retry: RetryPolicy {
                attempts: cfg.retry_attempts.max(1),
                initial: Duration::from_millis(cfg.retry_initial_delay_ms),
                max_delay: Duration::from_millis(
                    cfg.retry_max_delay_ms.max(cfg.retry_initial_delay_ms),
                ),
                deadline: Duration::from_secs(cfg.retry_deadline_secs),
            },
            max_response_bytes: cfg.max_response_bytes,
            eject_after: cfg.replica_eject_after.max(1),
            eject_for: Duration::from_secs(cfg.replica_eject_secs),
        }
    }
}

/// The servers of an endpoint: its URL setting (one or more comma-separated base URLs),
/// checked. Shown without credentials.
#[derive(Clone)]
pub(crate) struct Servers {
    kind: EndpointKind,
    /// The setting as given, for the message of a client that cannot be built.
    url: String,
    bases: Vec<Url>,
}

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Servers")
            .field("kind", &self.kind)
            .field("url", &redact_urls(&self.url))
            .finish()
    }
}

impl Servers {
    /// The servers of `kind` at `url`; none at all is [`PrsError::MissingEndpoint`].
    pub fn parse(kind: EndpointKind, url: &str) -> Result<Self> {
        let setting = kind.url_setting();
        let bases = url
            .split(',')
            .filter(|u| !u.trim().is_empty())
            .map(|u| parse_base_url(setting, u))
            .collect::<Result<Vec<_>>>()?;
        if bases.is_empty() {
            return Err(PrsError::MissingEndpoint(kind));
        }
        Ok(Servers {
            kind,
            url: url.to_string(),
            bases,
        })
    }
}

/// What a client needs to know about its endpoint for requests and error messages.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub kind: EndpointKind,
    /// One or more servers (a comma-separated URL setting) sharing the work.
    replicas: Arc<Vec<Replica>>,
    /// Which replica `url()` names, for a single-replica view (preflight of each replica).
    only: Option<usize>,
    /// Keep a prompt's requests on one replica ([`Endpoint::by_prompt`]).
    by_prompt: bool,
    eject_after: u32,
    eject_for: Duration,
    pub http: reqwest::Client,
    /// Bearer token, from the environment only. Never printed.
    api_key: Option<String>,
    retry: RetryPolicy,
    /// Most bytes read of one answer (`prs.max_response_bytes`).
    max_response_bytes: u64,
    pub stats: Arc<JobStats>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("kind", &self.kind)
            .field("base", &self.base_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One server of an endpoint, with what routing needs to know about it.
#[derive(Debug)]
struct Replica {
    base: Url,
    /// Whether the endpoint's API key goes to this server (see [`keys`]): never to a URL that
    /// carries its own credentials, which reqwest sends as Basic auth (two `Authorization`
    /// headers would be a request servers answer unpredictably).
    keyed: bool,
    outstanding: AtomicUsize,
    consecutive_failures: AtomicU32,
    /// Milliseconds since [`EPOCH`] until which the replica gets no work (0 = healthy).
    ejected_until_ms: AtomicU64,
}

/// How far above the average load a replica may be before a prompt's requests leave it for
/// another ([`Endpoint::by_prompt`]).
const AFFINITY_SLACK: f64 = 0.25;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

impl Replica {
    fn healthy(&self, now: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) <= now
    }
}

/// Counts a request as outstanding on its replica while it lives.
struct Outstanding<'a>(&'a Replica);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Endpoint {
    /// The endpoint of `servers`, requests made as `settings` say, with its API key from the
    /// environment.
    pub fn new(
        servers: &Servers,
        settings: &EndpointSettings,
        stats: Arc<JobStats>,
    ) -> Result<Self> {
        let kind = servers.kind;
        let api_key = std::env::var(kind.api_key_env())
            .ok()
            .filter(|k| !k.is_empty());
        let replicas = servers
            .bases
            .iter()
            .map(|base| Replica {
                keyed: api_key.is_some()
                    && base.username().is_empty()
                    && base.password().is_none()
                    && keys::may_send_key(kind, base),
                base: base.clone(),
                outstanding: AtomicUsize::new(0),
                consecutive_failures: AtomicU32::new(0),
                ejected_until_ms: AtomicU64::new(0),
            })
            .collect();
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|e| {
                PrsError::setting(
                    kind.url_setting(),
                    &servers.url,
                    format!("cannot build HTTP client: {e}"),
                )
            })?;
        Ok(Endpoint {
            kind,
            replicas: Arc::new(replicas),
            only: None,
            by_prompt: false,
            eject_after: settings.eject_after,
            eject_for: settings.eject_for,
            http,
            api_key,
            retry: settings.retry,
            max_response_bytes: settings.max_response_bytes,
            stats,
        })
    }

    /// The configured URL(s), comma-separated.
    pub fn base_str(&self) -> String {
        self.replicas
            .iter()
            .map(|r| redact_urls(r.base.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One view per replica, each sending only to its server (for per-server checks).
    pub fn each_replica(&self) -> Vec<Endpoint> {
        (0..self.replicas.len())
            .map(|i| Endpoint {
                only: Some(i),
                ..self.clone()
            })
            .collect()
    }

    /// `{base}/{path}` of the first (or only) replica, for messages (without credentials).
    pub fn url(&self, path: &str) -> String {
        redact_urls(&join(&self.replicas[self.only.unwrap_or(0)].base, path))
    }

    /// How many servers share the work.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// The base URL of replica `i`, for messages.
    pub fn replica_base(&self, i: usize) -> String {
        self.replicas
            .get(i)
            .map(|r| redact_urls(r.base.as_str()))
            .unwrap_or_default()
    }

    /// Route the requests of one prompt (the prompt whose work runs in the task) to one
    /// replica, whose prefix cache then serves what they share, unless that replica is loaded
    /// [`AFFINITY_SLACK`] above the average.
    pub fn by_prompt(self, on: bool) -> Self {
        Endpoint {
            by_prompt: on,
            ..self
        }
    }

    /// The replica for the next request (its index): with [`Endpoint::by_prompt`], the
    /// prompt's own replica unless it is overloaded; else the healthy one with the fewest
    /// outstanding requests; when every replica is ejected, the one that comes back first.
    pub fn next_replica(&self) -> usize {
        if let Some(i) = self.only {
            return i;
        }
        let now = now_ms();
        if self.by_prompt && self.replicas.len() > 1 {
            let key = crate::run::prompt_key_in_scope();
            if let Some(i) = key.and_then(|k| self.prompt_replica(&k, now)) {
                return i;
            }
        }
        let by = |pred: &dyn Fn(&Replica) -> bool, key: &dyn Fn(&Replica) -> u64| {
            self.replicas
                .iter()
                .enumerate()
                .filter(|(_, r)| pred(r))
                .min_by_key(|(_, r)| key(r))
                .map(|(i, _)| i)
        };
        by(&|r| r.healthy(now), &|r| {
            r.outstanding.load(Ordering::Relaxed) as u64
        })
        .or_else(|| by(&|_| true, &|r| r.ejected_until_ms.load(Ordering::Relaxed)))
        .unwrap_or(0)
    }

    /// Consistent hashing with bounded loads: the healthy replicas in the order the prompt's
    /// `key` gives them (rendezvous hashing on each replica's URL, so a prompt keeps its
    /// replica when others are ejected or added), the first whose outstanding requests are
    /// below `(1 + AFFINITY_SLACK)` × the average, counting this request. One always is (the
    /// least loaded is at most the average); `None` when no replica is healthy.
    fn prompt_replica(&self, key: &str, now: u64) -> Option<usize> {
        let load = |i: usize| self.replicas[i].outstanding.load(Ordering::Relaxed);
        let mut healthy: Vec<usize> = (0..self.replicas.len())
            .filter(|&i| self.replicas[i].healthy(now))
            .collect();
        let total: usize = healthy.iter().map(|&i| load(i)).sum();
        let average = (total + 1) as f64 / healthy.len().max(1) as f64;
        let cap = (average * (1.0 + AFFINITY_SLACK)).ceil() as usize;
        healthy.sort_by_cached_key(|&i| {
            let mut h = std::hash::DefaultHasher::new();
            (key, self.replicas[i].base.as_str()).hash(&mut h);
            std::cmp::Reverse(h.finish())
        });
        healthy.into_iter().find(|&i| load(i) < cap)
    }

    fn pick(&self) -> (usize, &Replica) {
        let i = self.next_replica();
        (i, &self.replicas[i])
    }

    /// Record how a request to `r` went; repeated transient failures eject it for a while.
    fn record(&self, r: &Replica, failed_transiently: bool) {
        if !failed_transiently {
            r.consecutive_failures.store(0, Ordering::Relaxed);
            return;
        }
        let n = r.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.eject_after && self.replicas.len() > 1 {
            r.ejected_until_ms.store(
                now_ms() + self.eject_for.as_millis() as u64,
                Ordering::Relaxed,
            );
            r.consecutive_failures.store(0, Ordering::Relaxed);
            tracing::warn!(
                endpoint = self.kind.as_str(),
                replica = %redact_urls(r.base.as_str()),
                "{n} failures in a row: no work for this replica for {}s",
                self.eject_for.as_secs()
            );
        }
    }

    fn authorize(
        &self,
        replica: &Replica,
        req: reqwest::RequestBuilder,
    ) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) if replica.keyed => req.bearer_auth(key),
            _ => req,
        }
    }

    /// Run `op` (one request and the reading of its answer) with retries: transient failures
    /// are retried with exponential backoff and jitter, honouring `Retry-After` (up to a
    /// minute, or `retry_max_delay_ms` if longer), up to `retry_attempts` attempts and
    /// `retry_deadline_secs` of waiting in all.
    pub async fn with_retry<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let cap = self.retry.max_delay.max(Duration::from_secs(60));
        let deadline = self.retry.deadline;
        let mut waited = Duration::ZERO;
        let started = std::time::Instant::now();
        let out = op
            .retry(self.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(PrsError::is_transient)
            .adjust(move |e: &PrsError, planned| {
                next_wait(planned, e.retry_after(), cap, deadline, &mut waited)
            })
            .notify(|e: &PrsError, wait| {
                self.stats.record_retry();
                tracing::debug!(endpoint = self.kind.as_str(), error = %e, wait_ms = wait.as_millis() as u64, "retrying");
            })
            .await;
        // reward time is counted by the reward client around the whole (possibly shared) batch
        if self.kind == EndpointKind::Policy {
            PromptTally::record_wait(self.kind, started.elapsed());
        }
        out
    }

    /// For preflight checks: one attempt, and one more after a short pause if it was transient.
    pub async fn twice<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match op().await {
            Err(e) if e.is_transient() => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                op().await
            }
            other => other,
        }
    }

    /// The text each healthy replica serves at `path` from its root (`/metrics`), read under
    /// the size cap with a short timeout, in replica order (ejected replicas are left out);
    /// `None` for one that did not answer it with success. No retries: a caller polling the
    /// path asks again soon.
    pub async fn get_text_from_each(&self, path: &str) -> Vec<Option<String>> {
        let now = now_ms();
        let healthy = self.replicas.iter().filter(|r| r.healthy(now));
        let gets = healthy.map(|replica| async move {
            let url = replica.base.join(path).ok()?;
            let req = self.authorize(replica, self.http.get(url.clone()));
            let resp = req.timeout(Duration::from_secs(2)).send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let shown = redact_urls(url.as_str());
            let bytes = self.read_body(resp, &shown, false).await.ok()?;
            String::from_utf8(bytes).ok()
        });
        futures::future::join_all(gets).await
    }

    /// One GET, no retry (wrap in [`Endpoint::with_retry`]).
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let (_, replica) = self.pick();
        let url = join(&replica.base, path);
        let req = self.authorize(replica, self.http.get(&url));
        self.send_to(replica, req, redact_urls(&url)).await
    }

    /// One POST, no retry (wrap in [`Endpoint::with_retry`]).
    pub async fn post_json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.post_json_to_any(path, body).await.map(|(t, _)| t)
    }

    /// One POST, no retry, to the next replica; the answer and which replica gave it.
    pub async fn post_json_to_any<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(T, usize)> {
        let (i, replica) = self.pick();
        let url = join(&replica.base, path);
        let req = self.authorize(replica, self.http.post(&url).json(body));
        self.send_to(replica, req, redact_urls(&url))
            .await
            .map(|t| (t, i))
    }

    async fn send_to<T: DeserializeOwned>(
        &self,
        replica: &Replica,
        req: reqwest::RequestBuilder,
        url: String,
    ) -> Result<T> {
        replica.outstanding.fetch_add(1, Ordering::Relaxed);
        let _outstanding = Outstanding(replica);
        let out = self.send(req, url).await;
        self.record(replica, out.as_ref().is_err_and(|e| e.is_transient()));
        out
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: String,
    ) -> Result<T> {
        tracing::trace!(endpoint = self.kind.as_str(), %url, "request");
        let resp = req.send().await.map_err(|e| self.unreachable(&url, &e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let bytes = self.read_body(resp, &url, !status.is_success()).await?;
        if !status.is_success() {
            let message = error_message(&bytes);
            tracing::debug!(endpoint = self.kind.as_str(), %url, status = status.as_u16(), %message, "endpoint error");
            return Err(PrsError::Status {
                endpoint: self.kind,
                url,
                status: status.as_u16(),
                message,
                retry_after,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| PrsError::BadResponse {
            endpoint: self.kind,
            url,
            reason: format!("{e}; body starts with {:?}", snippet(&bytes)),
        })
    }

    /// The body of `resp`, read chunk by chunk and never past `max_response_bytes`: a longer
    /// answer is [`PrsError::ResponseTooLarge`] (at once when its `Content-Length` says so),
    /// except an error answer (`cut`), whose start is kept for its message.
    async fn read_body(
        &self,
        mut resp: reqwest::Response,
        url: &str,
        cut: bool,
    ) -> Result<Vec<u8>> {
        let limit = self.max_response_bytes;
        let declared = resp.content_length();
        let too_large = || PrsError::ResponseTooLarge {
            endpoint: self.kind,
            url: url.to_string(),
            limit,
            declared,
        };
        if !cut && declared.is_some_and(|len| len > limit) {
            return Err(too_large());
        }
        let first = declared.unwrap_or(0).min(limit).min(1 << 20);
        let mut body = Vec::with_capacity(usize::try_from(first).unwrap_or(0));
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.unreachable(url, &e))? {
            let room = limit.saturating_sub(body.len() as u64);
            if chunk.len() as u64 <= room {
                body.extend_from_slice(&chunk);
                continue;
            }
            if !cut {
                return Err(too_large());
            }
            let room = usize::try_from(room)
                .unwrap_or(chunk.len())
                .min(chunk.len());
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        Ok(body)
    }

    fn unreachable(&self, url: &str, e: &reqwest::Error) -> PrsError {
        let reason = if e.is_timeout() {
            "the request timed out (prs.request_timeout_secs / prs.connect_timeout_secs)"
                .to_string()
        } else if e.is_connect() {
            format!("connection failed ({})", root_cause(e))
        } else {
            root_cause(e)
        };
        PrsError::Unreachable {
            endpoint: self.kind,
            url: url.to_string(),
            reason,
        }
    }

    pub fn bad_response(&self, path: &str, reason: impl Into<String>) -> PrsError {
        PrsError::BadResponse {
            endpoint: self.kind,
            url: self.url(path),
            reason: reason.into(),
        }
    }
}

/// Run a preflight `check` on every replica. A replica that cannot be reached is tolerated (with a
/// warning) while another one passes; anything else (a missing model, a wrong protocol) fails.
pub(crate) async fn check_replicas<F, Fut>(endpoint: &Endpoint, check: F) -> Result<()>
where
    F: Fn(Endpoint) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut passed = 0;
    let mut down = Vec::new();
    for replica in endpoint.each_replica() {
        match check(replica).await {
            Ok(()) => passed += 1,
            Err(e) if e.is_transient() => down.push(e),
            Err(PrsError::Preflight(m)) => return Err(PrsError::Preflight(m)),
            Err(e) => return Err(PrsError::Preflight(e.to_string())),
        }
    }
    if passed == 0 {
        let reasons: Vec<String> = down.iter().map(|e| e.to_string()).collect();
        return Err(PrsError::Preflight(reasons.join("; ")));
    }
    for e in down {
        tracing::warn!("preflight: {e}; the other replicas take the work");
    }
    Ok(())
}

/// A `Retry-After` value: delay-seconds (any number, however large: the wait is bounded by
/// [`next_wait`]) or an HTTP date. Anything else (negative, not a number, not a date) asks for
/// nothing.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        // NaN and negative numbers ask for nothing; a number past what a Duration holds (1e300,
        // inf) asks for the longest wait there is
        return (secs >= 0.0).then(|| Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait before the next attempt: the server's `retry_after` capped at `cap`, else the
/// backoff's `planned` wait, and never past `deadline` of waiting in all (`waited` so far, which
/// this adds to). `None` (no retry left) when the backoff has none left or the deadline is spent.
fn next_wait(
    planned: Option<Duration>,
    retry_after: Option<Duration>,
    cap: Duration,
    deadline: Duration,
    waited: &mut Duration,
) -> Option<Duration> {
    let planned = planned?;
    let left = deadline.saturating_sub(*waited);
    if left.is_zero() {
        return None;
    }
    let wait = retry_after.map_or(planned, |r| r.min(cap)).min(left);
    *waited = waited.saturating_add(wait);
    Some(wait)
}

/// `{base}/{path}`, keeping a query string of the base after the path
/// (`http://h/v1?api-version=2` + `models` = `http://h/v1/models?api-version=2`).
fn join(base: &Url, path: &str) -> String {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.to_string()
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.chars().take(200).collect()
}

/// The server's own error message, from OpenAI's `{"error": {"message": ...}}`, FastAPI's
/// `{"detail": ...}`, a plain `{"message": ...}` / `{"error": "..."}`, or the raw body.
pub(crate) fn error_message(bytes: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        let found = v
            .pointer("/error/message")
            .or_else(|| v.get("detail"))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error"));
        if let Some(found) = found {
            return match found {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
    }
    let s = snippet(bytes);
    if s.trim().is_empty() {
        "(empty body)".to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shapes() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad model"}}"#),
            "bad model"
        );
        assert_eq!(error_message(br#"{"detail":"pinned"}"#), "pinned");
        assert_eq!(error_message(br#"{"error":"oops"}"#), "oops");
        assert_eq!(
            error_message(b"Internal Server Error"),
            "Internal Server Error"
        );
        assert_eq!(error_message(b""), "(empty body)");
    }

    #[test]
    fn paths_go_before_the_query() {
        let base = parse_base_url("policy_url", "http://u:p@h:8/v1/?api-version=2").unwrap();
        assert_eq!(
            join(&base, "models"),
            "http://u:p@h:8/v1/models?api-version=2"
        );
        let base = parse_base_url("reward_url", "http://h:8").unwrap();
        assert_eq!(join(&base, "pooling"), "http://h:8/pooling");
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_and_never_overflows() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let parse = |v| parse_retry_after(v, now);
        assert_eq!(parse("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse("1e300"), Some(Duration::MAX));
        assert_eq!(parse("inf"), Some(Duration::MAX));
        assert_eq!(parse("-1"), None);
        assert_eq!(parse("NaN"), None);
        assert_eq!(parse("soon"), None);
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:47 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
    }

    #[test]
    fn waits_are_bounded_by_the_cap_and_the_deadline() {
        let (cap, deadline) = (Duration::from_secs(60), Duration::from_secs(5));
        let ms = Duration::from_millis;
        let mut waited = Duration::ZERO;
        // no retry left stays so
        assert_eq!(
            next_wait(None, Some(ms(1)), cap, deadline, &mut waited),
            None
        );
        // the backoff's wait, or the server's
        assert_eq!(
            next_wait(Some(ms(10)), None, cap, deadline, &mut waited),
            Some(ms(10))
        );
        assert_eq!(
            next_wait(Some(ms(10)), Some(ms(20)), cap, deadline, &mut waited),
            Some(ms(20))
        );
        // a huge Retry-After: what is left of the deadline, then no more retries
        let huge = Some(Duration::MAX);
        assert_eq!(
            next_wait(Some(ms(10)), huge, cap, deadline, &mut waited),
            Some(ms(4970))
        );
        assert_eq!(
            next_wait(Some(ms(10)), None, cap, deadline, &mut waited),
            None
        );
        // the cap, with a deadline far away
        let mut waited = Duration::ZERO;
        let far = Duration::from_secs(600);
        assert_eq!(
            next_wait(Some(ms(10)), huge, cap, far, &mut waited),
            Some(cap)
        );
    }

    /// Three replicas behind one endpoint, requests routed by prompt or not.
    fn three(by_prompt: bool) -> Endpoint {
        let cfg = PrsConfig::default();
        let servers = Servers::parse(
            EndpointKind::Policy,
            "http://a:1/v1,http://b:2/v1,http://c:3/v1",
        );
        let settings = EndpointSettings::from_config(&cfg);
        Endpoint::new(&servers.unwrap(), &settings, Arc::default())
            .unwrap()
            .by_prompt(by_prompt)
    }

    fn load(e: &Endpoint, loads: [usize; 3]) {
        for (r, l) in e.replicas.iter().zip(loads) {
            r.outstanding.store(l, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn a_prompt_keeps_its_replica_unless_it_is_overloaded() {
        use crate::run::PromptScope;
        let e = three(true);
        let in_scope = |key: &str| {
            let e = e.clone();
            PromptScope::new(key, None).run(async move { e.next_replica() })
        };
        // unloaded: every request of a prompt goes to the same replica, and prompts spread
        let mut homes = std::collections::HashMap::new();
        for p in 0..60 {
            let key = format!("prompt-{p}");
            let home = in_scope(&key).await;
            for _ in 0..3 {
                assert_eq!(in_scope(&key).await, home, "{key} moved");
            }
            homes.insert(key, home);
        }
        let used: std::collections::HashSet<_> = homes.values().collect();
        assert_eq!(used.len(), 3, "60 prompts on {used:?}");
        // a little busier than the others is still home (9 + 1 of 24 is under 1.25 × 8)
        let (key, home) = homes.iter().next().map(|(k, h)| (k.clone(), *h)).unwrap();
        let mut loads = [7, 7, 7];
        loads[home] = 9;
        load(&e, loads);
        assert_eq!(in_scope(&key).await, home);
        // a quarter above the average: the next replica in the prompt's order, never home
        loads = [6, 6, 6];
        loads[home] = 12;
        load(&e, loads);
        let away = in_scope(&key).await;
        assert_ne!(away, home);
        // an ejected home: the prompt goes elsewhere and comes back when it returns
        load(&e, [0, 0, 0]);
        e.replicas[home]
            .ejected_until_ms
            .store(now_ms() + 60_000, Ordering::Relaxed);
        assert_ne!(in_scope(&key).await, home);
        e.replicas[home]
            .ejected_until_ms
            .store(0, Ordering::Relaxed);
        assert_eq!(in_scope(&key).await, home);
        // outside a prompt (preflight), the least loaded
        load(&e, [5, 1, 3]);
        assert_eq!(e.next_replica(), 1);
    }

    #[tokio::test]
    async fn least_loaded_routing_ignores_the_prompt() {
        use crate::run::PromptScope;
        let e = three(false);
        for loads in [[5, 1, 3], [0, 4, 4], [2, 2, 1]] {
            load(&e, loads);
            let want = (0..3).min_by_key(|&i| loads[i]).unwrap();
            for p in 0..10 {
                let e = e.clone();
                let got = PromptScope::new(&format!("prompt-{p}"), None)
                    .run(async move { e.next_replica() })
                    .await;
                assert_eq!(got, want, "{loads:?}");
            }
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(parse_base_url("policy_url", "http://127.0.0.1:8000/v1/").is_ok());
        assert!(parse_base_url("policy_url", "localhost:8000").is_err());
        assert!(parse_base_url("policy_url", "ftp://x").is_err());
        assert!(parse_base_url("policy_url", "not a url").is_err());
    }
}
