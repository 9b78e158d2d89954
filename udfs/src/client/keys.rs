//! Which servers get this process's API keys.
//!
//! Keys come from the environment only (`PRS_POLICY_API_KEY`, `PRS_REWARD_API_KEY`). By default
//! a process sends them to the endpoints its settings name: on one node those settings are the
//! process's own. A process that runs plans written by others, a cluster executor, calls
//! [`bind_keys_to_own_endpoints`] when it starts: from then on a key goes only to servers whose
//! origin (scheme, host and port) is listed in `PRS_POLICY_API_KEY_URLS` /
//! `PRS_REWARD_API_KEY_URLS` (comma-separated), or, where that is not set, in the process's own
//! `PRS_POLICY_URL` / `PRS_REWARD_URL`. A plan that names another server still runs against it,
//! without the key (a debug line says why), so a client of the cluster cannot collect the
//! executors' keys by pointing a query at a server of its own.

use std::sync::OnceLock;

use reqwest::Url;

use super::url::parse_base_url;
use crate::error::{EndpointKind, PrsError, Result};

/// Scheme, host and port.
type Origin = (String, String, u16);

/// The origins each kind's key may go to, once bound.
#[derive(Debug, Default)]
struct Bound {
    policy: Vec<Origin>,
    reward: Vec<Origin>,
    judge: Vec<Origin>,
}

static BOUND: OnceLock<Bound> = OnceLock::new();

fn origin(url: &Url) -> Origin {
    (
        url.scheme().to_string(),
        url.host_str().unwrap_or_default().to_ascii_lowercase(),
        url.port_or_known_default().unwrap_or(0),
    )
}

/// The environment variable listing the servers a kind's key may go to.
pub fn key_urls_env(kind: EndpointKind) -> &'static str {
    match kind {
        EndpointKind::Policy => "PRS_POLICY_API_KEY_URLS",
        EndpointKind::Reward => "PRS_REWARD_API_KEY_URLS",
        EndpointKind::Judge => "PRS_JUDGE_API_KEY_URLS",
    }
}

/// The origins `kind`'s key may go to, from the environment.
fn own_origins(kind: EndpointKind) -> Result<Vec<Origin>> {
    let (var, value) = match std::env::var(key_urls_env(kind)) {
        Ok(v) if !v.trim().is_empty() => (key_urls_env(kind), v),
        _ => (
            kind.url_env(),
            std::env::var(kind.url_env()).unwrap_or_default(),
        ),
    };
    let origins = value
        .split(',')
        .filter(|u| !u.trim().is_empty())
        .map(|u| parse_base_url(var, u).map(|url| origin(&url)))
        .collect::<Result<Vec<_>>>()?;
    if origins.is_empty() && std::env::var(kind.api_key_env()).is_ok_and(|k| !k.is_empty()) {
        tracing::warn!(
            "{} is set but neither {} nor {} names a server: the key will not be sent",
            kind.api_key_env(),
            key_urls_env(kind),
            kind.url_env()
        );
    }
    Ok(origins)
}

/// From now on, send each API key only to this process's own endpoints (see the module docs).
/// Call it once, at the start of a process that runs plans from others.
pub fn bind_keys_to_own_endpoints() -> Result<()> {
    let bound = Bound {
        policy: own_origins(EndpointKind::Policy)?,
        reward: own_origins(EndpointKind::Reward)?,
        judge: own_origins(EndpointKind::Judge)?,
    };
    BOUND.set(bound).map_err(|_| {
        PrsError::BadPlan("API keys were already bound to this process's endpoints".into())
    })
}

/// Whether `kind`'s key may go to the server at `url`.
pub(crate) fn may_send_key(kind: EndpointKind, url: &Url) -> bool {
    let Some(bound) = BOUND.get() else {
        return true;
    };
    let allowed = match kind {
        EndpointKind::Policy => &bound.policy,
        EndpointKind::Reward => &bound.reward,
        EndpointKind::Judge => &bound.judge,
    };
    let ok = allowed.contains(&origin(url));
    if !ok {
        tracing::debug!(
            "not sending {} to {}: it is not one of this process's own {} endpoints ({} or {})",
            kind.api_key_env(),
            url.origin().ascii_serialization(),
            kind,
            key_urls_env(kind),
            kind.url_env()
        );
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let o = |u: &str| origin(&Url::parse(u).unwrap());
        assert_eq!(o("http://Host:80/v1"), o("http://host/other"));
        assert_ne!(o("http://host:8000/v1"), o("http://host:8001/v1"));
        assert_ne!(o("http://host/v1"), o("https://host/v1"));
        assert_eq!(o("https://h/v1").2, 443);
    }
}
