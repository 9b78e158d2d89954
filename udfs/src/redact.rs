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

/// A setting's value as it may be shown: URLs without their credentials, also the URLs inside
/// a JSON setting (`reward_components`); other settings as they are.
pub fn shown_setting(key: &str, value: &str) -> String {
    let key = key.to_ascii_lowercase();
    if key.contains("url") {
        return redact_urls(value);
    }
    if !key.ends_with("components") {
        return value.to_string();
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(mut json) => {
            redact_json(&mut json);
            json.to_string()
        }
        // not JSON (refused when it is set): shown with every URL-like piece redacted
        Err(_) => redact_urls(value),
    }
}

/// Every string in `v` that holds a URL, redacted.
fn redact_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.contains("://") => *s = redact_urls(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        serde_json::Value::Object(fields) => {
            for (key, value) in fields.iter_mut() {
                match value {
                    serde_json::Value::String(s) if key.contains("url") => *s = redact_urls(s),
                    other => redact_json(other),
                }
            }
        }
        _ => {}
    }
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

    #[test]
    fn urls_inside_a_json_setting_are_never_shown() {
        let components = r#"[{"name":"a","url":"user:s3cret@host:8000","model":"m"},
            {"name":"b","protocol":"tei","url":"http://h:1/?key=s3cret"}]"#;
        let shown = shown_setting("reward_components", components);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("***@host:8000") && shown.contains("\"model\":\"m\""));
        assert_eq!(
            shown_setting("reward_url", "http://u:s3cret@h/"),
            "http://***@h/"
        );
        assert_eq!(shown_setting("temperature", "0.7"), "0.7");
        assert!(
            !shown_setting("reward_components", "[{\"url\": http://u:s3cret@h").contains("s3cret")
        );
    }
}
