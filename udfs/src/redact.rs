//! What may be shown of a setting: endpoint URLs without their credentials. A leaf module,
//! so that errors, settings and clients can all use it.

/// `value` (one URL or several, comma-separated) as it may be shown or stored: the userinfo
/// and the query string of each URL become `***` (`http://***@host:8000/v1?***`), so that
/// credentials written into a URL reach their server (as Basic auth or a query) and nowhere
/// else: not `SHOW ALL`, errors, EXPLAIN, logs, checkpoints, summaries or output columns.
/// Works on text that does not parse as a URL too: a malformed URL can hold a password.
pub fn redact_urls(value: &str) -> String {
    value
        .split(',')
        .map(redact_one)
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one(url: &str) -> String {
    let authority_start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let (head, rest) = url.split_at(authority_start);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let mut out = String::from(head);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str("***");
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..=q]);
            out.push_str("***");
            if let Some(hash) = tail[q..].find('#') {
                out.push_str(&tail[q + hash..]);
            }
        }
        None => out.push_str(tail),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_never_shown() {
        for (url, shown) in [
            ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
            ("http://user:s3cret@host:8000/v1", "http://***@host:8000/v1"),
            (
                "https://tok@host/v1?api_key=s3cret",
                "https://***@host/v1?***",
            ),
            ("http://host/v1?key=s3cret#frag", "http://host/v1?***#frag"),
            ("user:s3cret@host:8000", "***@host:8000"),
            ("http://a:p@w@host/", "http://***@host/"),
            (
                "http://u:s3cret@a:1/v1, http://b:2/v1?k=s3cret",
                "http://***@a:1/v1, http://b:2/v1?***",
            ),
            ("", ""),
        ] {
            assert_eq!(redact_urls(url), shown, "{url}");
            assert!(!redact_urls(url).contains("s3cret"));
        }
    }
}
