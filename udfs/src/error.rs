//! Typed errors of the plugin. Every error says what was wrong, where, and what to do;
//! they convert into [`DataFusionError`] so SQL users see the same text.

use datafusion::error::DataFusionError;

/// Which endpoint a request, a setting or a failure concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    /// The OpenAI-compatible server that generates samples and feedback.
    Policy,
    /// The server that scores candidates.
    Reward,
    /// The OpenAI-compatible chat model that compares candidates (`prs.judge_top_k`).
    Judge,
}

impl EndpointKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndpointKind::Policy => "policy",
            EndpointKind::Reward => "reward",
            EndpointKind::Judge => "judge",
        }
    }

    /// The setting holding its URL(s).
    pub fn url_setting(&self) -> &'static str {
        match self {
            EndpointKind::Policy => "policy_url",
            EndpointKind::Reward => "reward_url",
            EndpointKind::Judge => "judge_url",
        }
    }

    /// The environment variable feeding [`EndpointKind::url_setting`].
    pub fn url_env(&self) -> &'static str {
        match self {
            EndpointKind::Policy => "PRS_POLICY_URL",
            EndpointKind::Reward => "PRS_REWARD_URL",
            EndpointKind::Judge => "PRS_JUDGE_URL",
        }
    }

    /// The CLI flag feeding [`EndpointKind::url_setting`].
    pub fn url_flag(&self) -> &'static str {
        match self {
            EndpointKind::Policy => "policy-url",
            EndpointKind::Reward => "reward-url",
            EndpointKind::Judge => "judge-url",
        }
    }

    /// The setting naming its model.
    pub fn model_setting(&self) -> &'static str {
        match self {
            EndpointKind::Policy => "policy_model",
            EndpointKind::Reward => "reward_model",
            EndpointKind::Judge => "judge_model",
        }
    }

    /// The environment variable holding its API key (never a setting).
    pub fn api_key_env(&self) -> &'static str {
        match self {
            EndpointKind::Policy => "PRS_POLICY_API_KEY",
            EndpointKind::Reward => "PRS_REWARD_API_KEY",
            EndpointKind::Judge => "PRS_JUDGE_API_KEY",
        }
    }
}

impl std::fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = PrsError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum PrsError {
    /// A setting or per-call option has a value we cannot use.
    #[error("invalid setting prs.{key} = {value:?}: {reason}")]
    InvalidSetting {
        key: String,
        value: String,
        reason: String,
    },

    /// A per-call option key that does not exist.
    #[error("unknown setting {key:?} (in {function}); valid settings: {valid}")]
    UnknownOption {
        function: String,
        key: String,
        valid: String,
    },

    /// Wrong arguments to a table function or UDF.
    #[error("{function}: {reason}")]
    InvalidArgument { function: String, reason: String },

    /// An endpoint that must be configured is not.
    #[error("no {0} endpoint configured: set prs.{setting} (SQL `SET prs.{setting} = 'http://host:port/...'`), the environment variable {env}, or the CLI flag --{flag}",
        setting = .0.url_setting(), env = .0.url_env(), flag = .0.url_flag())]
    MissingEndpoint(EndpointKind),

    /// The input table cannot be used.
    #[error("input {source_name}: {reason}")]
    Input { source_name: String, reason: String },

    /// A template file or template text is unusable.
    #[error("template {name}: {reason}")]
    Template { name: String, reason: String },

    /// The endpoint could not be reached (connection refused, DNS, timeout...).
    #[error("{endpoint} endpoint {url} could not be reached: {reason}; check that the server is running and prs.{setting} is right",
        setting = .endpoint.url_setting())]
    Unreachable {
        endpoint: EndpointKind,
        url: String,
        reason: String,
    },

    /// The endpoint answered with an HTTP error status.
    #[error("{endpoint} endpoint {url} answered HTTP {status}: {message}")]
    Status {
        endpoint: EndpointKind,
        url: String,
        status: u16,
        message: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<std::time::Duration>,
    },

    /// The endpoint answered 2xx with a body we cannot use.
    #[error("{endpoint} endpoint {url} answered with an unexpected body: {reason}")]
    BadResponse {
        endpoint: EndpointKind,
        url: String,
        reason: String,
    },

    /// An endpoint's answer is larger than `prs.max_response_bytes`: a misbehaving server (or
    /// a proxy streaming something else) would otherwise fill the memory. Not retried.
    #[error("{endpoint} endpoint {url} sent a response of more than {limit} bytes{declared}, the limit prs.max_response_bytes; the rest was not read. Check the server (a proxy error page, a stream that never ends), or raise prs.max_response_bytes if answers this large are expected",
        declared = .declared.map(|d| format!(" (it declared Content-Length: {d})")).unwrap_or_default())]
    ResponseTooLarge {
        endpoint: EndpointKind,
        url: String,
        limit: u64,
        /// The `Content-Length` the server declared, when it declared one.
        declared: Option<u64>,
    },

    /// A server broke the protocol in a way retrying the request did not mend (no choices
    /// three times, fewer scores than texts).
    #[error("{endpoint} endpoint: {reason}")]
    ServerFault {
        endpoint: EndpointKind,
        reason: String,
    },

    /// `prs.answer_pattern` found no answer in a response.
    #[error("{0}")]
    NoAnswer(String),

    /// `prs.verifier` could not decide whether an answer matches its reference.
    #[error("the answer could not be checked against the reference: {0}")]
    Unverifiable(String),

    /// A serialised plan (sent between cluster nodes) cannot be read back.
    #[error("cannot rebuild a prs plan node sent by another node: {0}; check that the client, scheduler and executors run the same prs version")]
    BadPlan(String),

    /// A check before any work found an endpoint unusable.
    #[error("preflight check failed: {0} (prs.preflight = false skips this check)")]
    Preflight(String),

    /// One failure shared by several callers (a reward batch holding texts of many prompts).
    #[error(transparent)]
    Shared(std::sync::Arc<PrsError>),

    /// A reward component (`prs.reward_components`) could not score.
    #[error("reward component {name:?}: {source}")]
    Component {
        name: String,
        source: std::sync::Arc<PrsError>,
    },

    #[error(transparent)]
    DataFusion(#[from] DataFusionError),

    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

impl PrsError {
    /// Worth retrying: throttling, server errors, connection failures, timeouts, garbage bodies.
    /// 400, 401, 403, 404, 422 and every configuration error are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            PrsError::Status { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
            PrsError::Unreachable { .. } | PrsError::BadResponse { .. } => true,
            PrsError::Shared(e) | PrsError::Component { source: e, .. } => e.is_transient(),
            _ => false,
        }
    }

    /// How long the server asked us to wait.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            PrsError::Status { retry_after, .. } => *retry_after,
            PrsError::Shared(e) | PrsError::Component { source: e, .. } => e.retry_after(),
            _ => None,
        }
    }

    /// A short, stable name for the kind of failure, for job summaries.
    pub fn kind(&self) -> String {
        match self {
            PrsError::Status {
                endpoint, status, ..
            } => format!("{endpoint}_http_{status}"),
            PrsError::Unreachable { endpoint, .. } => format!("{endpoint}_unreachable"),
            PrsError::BadResponse { endpoint, .. } => format!("{endpoint}_bad_response"),
            PrsError::ServerFault { endpoint, .. } => format!("{endpoint}_fault"),
            PrsError::ResponseTooLarge { endpoint, .. } => format!("{endpoint}_response_too_large"),
            PrsError::MissingEndpoint(_) | PrsError::InvalidSetting { .. } => "config".into(),
            PrsError::Shared(e) | PrsError::Component { source: e, .. } => e.kind(),
            PrsError::NoAnswer(_) => "no_answer".into(),
            PrsError::Unverifiable(_) => "verify".into(),
            _ => "other".into(),
        }
    }

    pub(crate) fn setting(key: &str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        let value = value.into();
        PrsError::InvalidSetting {
            key: key.to_string(),
            // a URL's credentials never travel in an error
            value: crate::redact::shown_setting(key, &value),
            reason: reason.into(),
        }
    }

    pub(crate) fn arg(function: &str, reason: impl Into<String>) -> Self {
        PrsError::InvalidArgument {
            function: function.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<PrsError> for DataFusionError {
    fn from(e: PrsError) -> Self {
        match e {
            PrsError::DataFusion(e) => e,
            PrsError::InvalidSetting { .. }
            | PrsError::UnknownOption { .. }
            | PrsError::InvalidArgument { .. }
            | PrsError::MissingEndpoint(_)
            | PrsError::Template { .. }
            | PrsError::Input { .. } => DataFusionError::Plan(e.to_string()),
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
