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
    Ok(url)
}
