//! `prs.reward_components`: named reward components, each a reward model or a verifier with
//! its own settings. The setting's JSON is read here; [`super::component_specs`] applies each
//! component's fields onto the call's settings (`url` sets `reward_url`, and so on), so that a
//! component's client, templates and checks are built exactly as the single reward model's
//! are.

use serde_json::Value;

/// The largest weight: far above any sensible one, far below what overflows a sum.
const MAX_WEIGHT: f64 = 1e6;

/// What to write, shown with every error about the setting.
const EXAMPLE: &str = r#"[{"name":"helpful","url":"http://rm1:8001","weight":0.7},{"name":"correct","verifier":"math","weight":0.3}]"#;

/// One component as written: its name, weight and the settings it sets (`reward_url`, ...,
/// `verifier`), in the order written; applied onto the call's settings by
/// [`super::component_specs`].
#[derive(Debug, Clone)]
pub(super) struct Written {
    pub name: String,
    pub weight: f64,
    pub settings: Vec<(String, String)>,
    /// `"verifier": ...` was given: the component is a verifier.
    pub verifier: bool,
}

/// The components `text` lists (none when it is empty), read and checked; `fields` are those
/// a component may set, without their `reward_` prefix. The error is the reason alone.
pub(super) fn parse(text: &str, fields: &[String]) -> Result<Vec<Written>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let example = |reason: String| format!("{reason}; expected a JSON array like {EXAMPLE}");
    let value: Value =
        serde_json::from_str(text).map_err(|e| example(format!("it is not valid JSON ({e})")))?;
    let Value::Array(items) = value else {
        return Err(example("it is not a JSON array of components".into()));
    };
    if items.is_empty() {
        return Err(
            "it lists no component (leave it empty to score with the one model of reward_url)"
                .into(),
        );
    }
    let mut written: Vec<Written> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let c = component(i, item, fields)?;
        if written.iter().any(|w| w.name == c.name) {
            return Err(format!("two components are named {:?}", c.name));
        }
        written.push(c);
    }
    if written.iter().all(|w| w.weight == 0.0) {
        return Err("every component has weight 0, so none decides the reward".into());
    }
    Ok(written)
}

/// The `i`-th component, read from `item`.
fn component(i: usize, item: &Value, fields: &[String]) -> Result<Written, String> {
    let Value::Object(object) = item else {
        return Err(format!("component {i} is not a JSON object"));
    };
    let name = match object.get("name") {
        Some(Value::String(n)) if valid_name(n) => n.clone(),
        // what it holds is not shown: it may be a URL with its credentials
        Some(_) => {
            return Err(format!(
                "component {i} has a name that is not a string of letters, digits, _ and -"
            ))
        }
        None => return Err(format!("component {i} has no \"name\"")),
    };
    let weight = match object.get("weight") {
        None => 1.0,
        Some(w) => w
            .as_f64()
            .filter(|w| (0.0..=MAX_WEIGHT).contains(w))
            .ok_or(format!(
                "component {name:?} has a weight that is not a number from 0 to {MAX_WEIGHT}"
            ))?,
    };
    let mut settings = Vec::new();
    let mut verifier = false;
    for (field, value) in object {
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            other => {
                let kind = match other {
                    Value::Array(_) => "a list",
                    Value::Object(_) => "an object",
                    _ => "null",
                };
                return Err(format!(
                    "reward component {name:?}: field {field:?} holds {kind}, not a value \
                     (several URLs go in one string, comma-separated)"
                ));
            }
        };
        match field.as_str() {
            "name" | "weight" => {}
            "verifier" => {
                verifier = true;
                settings.push(("verifier".to_string(), value));
            }
            other if fields.iter().any(|f| f == other) => {
                settings.push((format!("reward_{other}"), value));
            }
            other => {
                return Err(format!(
                    "reward component {name:?}: unknown field {other:?}; a component takes \
                     name, weight, verifier and the reward settings without their reward_ \
                     prefix: {}",
                    fields.join(", ")
                ))
            }
        }
    }
    Ok(Written {
        name,
        weight,
        settings,
        verifier,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use crate::config::*;
    use crate::error::Result;

    fn specs(json: &str) -> Result<Vec<ComponentSpec>> {
        let mut cfg = PrsConfig::default();
        cfg.set_checked("reward_url", "http://session-rm:1", "test")?;
        cfg.set_checked("reward_batch_size", "8", "test")?;
        cfg.0.reward_components = json.into();
        component_specs(&cfg)
    }

    #[test]
    fn components_take_reward_settings_and_inherit_the_rest() {
        let s = specs(
            r#"[{"name":"helpful","url":"http://rm1:8001","protocol":"vllm-pooling","weight":0.7},
                {"name":"safe","protocol":"tei","batch_size":4,"weight":0.3},
                {"name":"correct","verifier":"numeric"}]"#,
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            (
                s[0].name.as_str(),
                s[0].weight,
                s[0].cfg.reward_url.as_str()
            ),
            ("helpful", 0.7, "http://rm1:8001")
        );
        assert_eq!(s[0].cfg.reward_batch_size, 8, "inherited");
        assert_eq!(s[1].cfg.reward_url, "http://session-rm:1", "inherited");
        assert_eq!(
            (s[1].cfg.reward_protocol, s[1].cfg.reward_batch_size),
            (RewardProtocol::Tei, 4)
        );
        assert_eq!(s[1].verifier(), None);
        assert_eq!(
            (s[2].weight, s[2].verifier()),
            (1.0, Some(Verifier::Numeric))
        );
        assert!(s.iter().all(|c| c.cfg.reward_components.is_empty()));
        assert!(specs("").unwrap().is_empty());
    }

    #[test]
    fn bad_components_say_what_is_wrong() {
        for (json, says) in [
            ("{", "not valid JSON"),
            (r#"{"name":"a"}"#, "not a JSON array"),
            ("[]", "lists no component"),
            (r#"[{"url":"http://a:1"}]"#, "has no \"name\""),
            (r#"[{"name":"a b"}]"#, "letters, digits"),
            (
                r#"[{"name":"a"},{"name":"a"}]"#,
                "two components are named \"a\"",
            ),
            (r#"[{"name":"a","weight":-1}]"#, "a number from 0 to"),
            (r#"[{"name":"a","weight":1e300}]"#, "a number from 0 to"),
            (
                r#"[{"name":"a","weight":0}]"#,
                "every component has weight 0",
            ),
            (
                r#"[{"name":"a","colour":"red"}]"#,
                "unknown field \"colour\"",
            ),
            (
                r#"[{"name":"a","aggregate":"min"}]"#,
                "unknown field \"aggregate\"",
            ),
            (r#"[{"name":"a","protocol":"nope"}]"#, "reward_protocol"),
            (r#"[{"name":"a","batch_size":0}]"#, "between 1 and"),
            (r#"[{"name":"a","verifier":"none"}]"#, "checks nothing"),
            (
                r#"[{"name":"a","model":["x"]}]"#,
                "holds a list, not a value",
            ),
        ] {
            let e = specs(json).unwrap_err().to_string();
            assert!(e.contains(says), "{json}: {e}");
            assert!(e.contains("reward_components"), "{e}");
        }
        let mut cfg = PrsConfig::default();
        cfg.set_checked("reward_components", r#"[{"name":"a","model":"m"}]"#, "test")
            .unwrap();
        let e = component_specs(&cfg).unwrap()[0]
            .check_url()
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no \"url\""), "{e}");
        // a model never turns into a verifier by inheriting the session's protocol
        let mut cfg = PrsConfig::default();
        cfg.set_checked("reward_protocol", "verify", "test")
            .unwrap();
        let e = cfg
            .set_checked(
                "reward_components",
                r#"[{"name":"rm","url":"http://rm:1"}]"#,
                "test",
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("would inherit reward_protocol = verify"), "{e}");
        let ok = r#"[{"name":"rm","url":"http://rm:1","protocol":"tei"},{"name":"v","verifier":"math"}]"#;
        cfg.set_checked("reward_components", ok, "test").unwrap();
        let specs = component_specs(&cfg).unwrap();
        assert_eq!(
            (specs[0].verifier(), specs[1].verifier()),
            (None, Some(Verifier::Math))
        );
    }

    #[test]
    fn errors_never_show_a_components_credentials() {
        for json in [
            r#"[{"name":"a","url":"http://u:s3cret@h:1","colour":1}]"#,
            r#"[{"name":"a","url":["http://u:s3cret@h:1"]}]"#,
            r#"[{"name":"a","url":{"x":"http://u:s3cret@h:1"}}]"#,
            r#"[{"name":"http://u:s3cret@h:1"}]"#,
            r#"[{"name":["http://u:s3cret@h:1"]}]"#,
        ] {
            let e = specs(json).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{e}");
            let mut cfg = PrsConfig::default();
            let e = cfg
                .set_checked("reward_components", json, "test")
                .unwrap_err();
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
    }
}
