//! Endpoint base URLs as settings and environment variables give them.

use reqwest::Url;

use crate::error::{PrsError, Result};

/// Check a configured base URL. Empty means "not configured".
pub(crate) fn parse_base_url(setting: &'static str, value: &str) -> Result<Url> {
    let trimmed = value.trim().trim_end_matches('/');
    let url = Url::parse(trimmed).map_err(|e| {
        PrsError::setting(
            setting,
            value,
            format!("not a URL ({e}); expected something like http://127.0.0.1:8000/v1"),
        )
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(PrsError::setting(
            setting,
            value,
            format!("scheme {:?} is not http or https", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(|h| h.is_empty()) {
        return Err(PrsError::setting(setting, value, "the URL has no host"));
    }
    // what `redact_urls` shows: sending it would be sending `***` as a password
    if url.username() == "***" || url.query() == Some("***") {
        return Err(PrsError::setting(
            setting,
            value,
            "its credentials were redacted before they got here (a cluster ships settings as \
             shown); put the key in PRS_POLICY_API_KEY / PRS_REWARD_API_KEY on this process",
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_url_is_refused_not_sent() {
        let shown = crate::redact::redact_urls("http://alice:pw@host:8000/v1?api_key=k");
        let e = parse_base_url("prs.reward_url", &shown)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("prs.reward_url") && e.contains("redacted"),
            "{e}"
        );
        assert!(parse_base_url("prs.reward_url", "http://alice:pw@host:8000/v1").is_ok());
    }
}
