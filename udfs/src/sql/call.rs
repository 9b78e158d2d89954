//! [`SampleCall`]: what one `random_sample(...)` / `prs_sample(...)` call asks for, with its
//! settings and template texts resolved, and its wire form ([`CallWire`]) for other nodes.
//!
//! A call holds no secrets: API keys are read from each node's own environment when its
//! clients are built (see [`crate::run::CallRuntime`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use datafusion::config::ExtensionOptions;

use crate::config::PrsConfig;
use crate::error::{PrsError, Result};
use crate::sampler::{default_widths, Method};
use crate::text::{AnswerPattern, TemplateTexts, Templates};

/// What a sampling call asks for: everything another node needs to rebuild it.
#[derive(Clone)]
pub struct SampleCall {
    pub method: Method,
    /// The first argument: a Parquet path, directory, glob or session table name.
    pub source: String,
    pub n: usize,
    /// Session settings with the call's options applied.
    pub cfg: PrsConfig,
    /// Template texts (template files are read where the call is planned).
    pub templates: TemplateTexts,
    /// What the settings and texts parse into, checked when the call was made.
    parts: CallParts,
}

impl std::fmt::Debug for SampleCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the call as given; its parts are what it says, parsed
        f.debug_struct("SampleCall")
            .field("method", &self.method)
            .field("source", &self.source)
            .field("n", &self.n)
            .field("cfg", &self.cfg)
            .field("templates", &self.templates)
            .finish()
    }
}

/// What a call's settings and template texts parse into: its layer widths, templates and
/// answer pattern. Parsed once, when the call is made or read from the wire; its runtime is
/// built from them.
#[derive(Debug, Clone)]
pub(crate) struct CallParts {
    pub widths: Vec<usize>,
    pub templates: Templates,
    pub answer_pattern: Option<AnswerPattern>,
}

impl CallParts {
    /// Parse the template `texts` and the answer `pattern` of a call of checked `widths`.
    fn parse(widths: Vec<usize>, texts: &TemplateTexts, pattern: &str) -> Result<Self> {
        Ok(CallParts {
            widths,
            templates: Templates::parse(texts)?,
            answer_pattern: AnswerPattern::from_setting(pattern)?,
        })
    }
}

/// A call as it travels between nodes: method, source, n, every `prs.*` setting as text (file
/// settings left out: their content travels in `templates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallWire {
    pub method: Method,
    pub source: String,
    pub n: usize,
    pub settings: BTreeMap<String, String>,
    pub templates: TemplateTexts,
}

/// Settings that name files on the planning machine: their content travels in the templates.
const LOCAL_FILE_SETTINGS: &[&str] = &[
    "prompt_template_file",
    "feedback_template_file",
    "revise_template_file",
    "revise_no_feedback_template_file",
    "reward_template_file",
    "reward_chat_template_file",
    "judge_template_file",
];

impl SampleCall {
    /// Check `n` against the settings, read the templates and check them.
    pub fn new(method: Method, source: String, n: usize, cfg: PrsConfig) -> Result<Self> {
        let widths = widths_of(method, n, cfg.max_n, &cfg.widths)?;
        if cfg.adaptive != crate::config::Adaptive::Off && widths.len() > 1 {
            return Err(PrsError::setting(
                "adaptive",
                cfg.adaptive.as_str(),
                "adaptive sampling works on one layer of samples (random_sample); PRS's layers \
                 revise the best so far and are not sampled in rounds yet",
            ));
        }
        let templates = TemplateTexts::from_config(&cfg)?;
        let parts = CallParts::parse(widths, &templates, &cfg.answer_pattern)?;
        Ok(SampleCall {
            method,
            source,
            n,
            cfg,
            templates,
            parts,
        })
    }

    /// Layer widths, checked against `n` and `prs.max_n`.
    pub fn widths(&self) -> Result<Vec<usize>> {
        widths_of(self.method, self.n, self.cfg.max_n, &self.cfg.widths)
    }

    /// The call's settings and texts as parsed when it was made.
    pub(crate) fn parts(&self) -> &CallParts {
        &self.parts
    }

    /// The call as it travels.
    pub fn to_wire(&self) -> CallWire {
        let settings = self
            .cfg
            .0
            .entries()
            .into_iter()
            .filter(|e| !LOCAL_FILE_SETTINGS.contains(&e.key.as_str()))
            .filter_map(|e| Some((e.key, e.value?)))
            .collect();
        CallWire {
            method: self.method,
            source: self.source.clone(),
            n: self.n,
            settings,
            templates: self.templates.clone(),
        }
    }

    /// Rebuild a call from its wire form. Settings start from the defaults, not from this
    /// node's environment: the call runs as it was planned.
    pub fn from_wire(wire: CallWire) -> Result<Self> {
        let mut cfg = PrsConfig::default();
        for (key, value) in &wire.settings {
            cfg.set_checked(key, value, "the plan")?;
        }
        let widths = widths_of(wire.method, wire.n, cfg.max_n, &cfg.widths)?;
        let parts = CallParts::parse(widths, &wire.templates, &cfg.answer_pattern)?;
        Ok(SampleCall {
            method: wire.method,
            source: wire.source,
            n: wire.n,
            cfg,
            templates: wire.templates,
            parts,
        })
    }
}

/// The layer widths of a call of `method` for `n` (`prs.widths` is `widths`), checked against
/// `n` and `prs.max_n` (`max_n`).
fn widths_of(method: Method, n: usize, max_n: usize, widths: &str) -> Result<Vec<usize>> {
    let f = method.function_name();
    if n == 0 {
        return Err(PrsError::arg(f, "n must be at least 1, got 0"));
    }
    if n > max_n {
        return Err(PrsError::arg(
            f,
            format!(
                "n = {n} is above prs.max_n = {max_n} (raise it with SET prs.max_n = ... if you mean it)",
            ),
        ));
    }
    match method {
        Method::Random => Ok(vec![n]),
        Method::Prs => parse_widths(widths, n, f),
    }
}

/// Parse `8/4/4` into widths that must sum to `n`, each at least 1.
pub fn parse_widths(text: &str, n: usize, function: &str) -> Result<Vec<usize>> {
    if text.trim().is_empty() {
        return Ok(default_widths(n));
    }
    let widths = text
        .split('/')
        .map(|w| w.trim().parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| {
            PrsError::setting(
                "widths",
                text,
                "expected layer widths like 8/4/4 (positive integers separated by /)",
            )
        })?;
    if widths.contains(&0) {
        return Err(PrsError::setting(
            "widths",
            text,
            "every layer needs at least 1 sample",
        ));
    }
    let sum: usize = widths.iter().sum();
    if sum != n {
        return Err(PrsError::setting(
            "widths",
            text,
            format!("the widths sum to {sum} but {function} was asked for n = {n}"),
        ));
    }
    Ok(widths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_rules() {
        assert_eq!(parse_widths("", 16, "prs_sample").unwrap(), vec![8, 8]);
        assert_eq!(
            parse_widths("8/4/4", 16, "prs_sample").unwrap(),
            vec![8, 4, 4]
        );
        let e = parse_widths("8/4", 16, "prs_sample")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sum to 12") && e.contains("n = 16"), "{e}");
        assert!(parse_widths("8/0/8", 16, "prs_sample").is_err());
        assert!(parse_widths("8/x", 16, "prs_sample").is_err());
    }

    #[test]
    fn the_wire_form_keeps_the_call_and_its_field_names() {
        let mut cfg = PrsConfig::default();
        cfg.set_checked("temperature", "0.3", "test").unwrap();
        cfg.set_checked("widths", "2/1/1", "test").unwrap();
        let call = SampleCall::new(Method::Prs, "p.parquet".into(), 4, cfg).unwrap();
        let json = serde_json::to_value(call.to_wire()).unwrap();
        // the names other nodes of an older build read
        assert_eq!(json["method"], "prs");
        assert_eq!(json["source"], "p.parquet");
        assert_eq!(json["n"], 4);
        assert_eq!(json["settings"]["temperature"], "0.3");
        assert!(json["settings"].get("prompt_template_file").is_none());
        let back: CallWire = serde_json::from_value(json).unwrap();
        let back = SampleCall::from_wire(back).unwrap();
        assert_eq!(back.widths().unwrap(), vec![2, 1, 1]);
        assert_eq!(back.cfg.temperature, 0.3);
        assert_eq!(back.to_wire(), call.to_wire());
        let bad = serde_json::json!({"method": "greedy", "source": "p", "n": 1,
            "settings": {}, "templates": TemplateTexts::default()});
        let e = serde_json::from_value::<CallWire>(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("greedy") && e.contains("random"), "{e}");
    }
}
