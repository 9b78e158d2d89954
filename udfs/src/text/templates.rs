//! Prompt templates: the project's own defaults, replaceable by files, filled in one pass.
//!
//! Placeholders are `{name}`. Substitution scans the template once, so text that a user or a
//! model wrote (a prompt holding `{answer}`, a response holding `{feedback}`) is inserted
//! verbatim and never expanded again. Braces that do not name a known placeholder stay as is.

use std::collections::BTreeMap;

use super::chat_template::ChatTemplate;
use super::reward_input::{RewardItem, RewardMode};
use crate::config::PrsConfig;
use crate::error::{PrsError, Result};
use serde_json::{json, Value};

/// Built-in feedback template: the policy judges the best answer so far against the preference.
pub const FEEDBACK_TEMPLATE: &str = "\
You are reviewing an assistant's answer for a particular user. Judge it fairly and point out \
concretely how it could better serve this user's stated preference. Write short bullet points; \
each one should name a part of the answer and say how to change it.

### Question
{question}

### Answer under review
{answer}

### The user's preference
{preference}

### Feedback (bullet points)
";

/// Built-in revise template (with feedback).
pub const REVISE_TEMPLATE: &str = "\
Improve the answer below so that it serves the user's preference better. Use the feedback as \
guidance. Reply with the improved answer only, without any remarks about the changes.

### Question
{question}

### Current answer
{answer}

### The user's preference
{preference}

### Feedback
{feedback}

### Improved answer
";

/// Built-in revise template (PRS without feedback).
pub const REVISE_NO_FEEDBACK_TEMPLATE: &str = "\
Improve the answer below so that it serves the user's preference better. Reply with the \
improved answer only, without any remarks about the changes.

### Question
{question}

### Current answer
{answer}

### The user's preference
{preference}

### Improved answer
";

/// Built-in judge template (`prs.judge_top_k`): two answers compared, the verdict last in the
/// MT-Bench convention.
pub const JUDGE_TEMPLATE: &str = "\
You are judging two answers to a user's question. Decide which answer serves this user better, \
given their preference. The order of the answers, their length and their style must not sway \
you: judge what they say. Explain your judgement in a few sentences, then end with your verdict \
on a line of its own, exactly one of: [[A]] if answer A is better, [[B]] if answer B is better, \
[[C]] if they are equally good.

### The user's preference
{preference}

### Question
{question}

### Answer A
{answer_a}

### Answer B
{answer_b}

### Judgement
";

/// A parsed template: literal pieces and placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    name: String,
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Slot(String),
}

impl Template {
    /// Parse `text`, recognising only the placeholders in `known`; `required` must all occur.
    pub fn parse(name: &str, text: &str, known: &[&str], required: &[&str]) -> Result<Self> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) if known.contains(&&after[..close]) => {
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Slot(after[..close].to_string()));
                    rest = &after[close + 1..];
                }
                _ => {
                    literal.push('{');
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        for req in required {
            if !parts.iter().any(|p| matches!(p, Part::Slot(s) if s == req)) {
                return Err(PrsError::Template {
                    name: name.to_string(),
                    reason: format!(
                        "it has no {{{req}}} placeholder (placeholders it may use: {})",
                        known
                            .iter()
                            .map(|k| format!("{{{k}}}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                });
            }
        }
        Ok(Template {
            name: name.to_string(),
            source: text.to_string(),
            parts,
        })
    }

    /// Fill the placeholders in one pass; a placeholder without a value becomes empty.
    pub fn render(&self, values: &[(&str, &str)]) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Slot(s) => {
                    if let Some((_, v)) = values.iter().find(|(k, _)| k == s) {
                        out.push_str(v);
                    }
                }
            }
        }
        out
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The template text as given.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Every template a sampling call uses, read and checked at planning.
#[derive(Debug, Clone)]
pub struct Templates {
    /// Wraps the user text for policy_api=completions.
    pub prompt: Template,
    pub feedback: Template,
    pub revise: Template,
    pub revise_no_feedback: Template,
    /// What the reward server is sent for each response.
    pub reward: RewardFormat,
    /// What each reward model among the components is sent, by component name.
    pub components: BTreeMap<String, RewardFormat>,
    /// What the judge is asked about each pair of candidates.
    pub judge: Template,
}

fn text_or_file(setting: &str, file: &str, inline: &str) -> Result<String> {
    if file.is_empty() {
        return Ok(inline.to_string());
    }
    super::chat_template::read_template_file(std::path::Path::new(file)).map_err(|reason| {
        PrsError::Template {
            name: setting.to_string(),
            reason,
        }
    })
}

const SAMPLE_SLOTS: &[&str] = &["question", "answer", "preference", "feedback"];

/// The texts of every template of a call, before parsing: what travels to other nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TemplateTexts {
    pub prompt: String,
    pub feedback: String,
    pub revise: String,
    pub revise_no_feedback: String,
    pub reward: String,
    /// `prs.reward_input` resolved at planning, with the chat template it reads.
    #[serde(default)]
    pub reward_input: RewardMode,
    /// The judge's template (`prs.judge_template_file`, else the built-in one).
    #[serde(default = "judge_template")]
    pub judge: String,
    /// The reward texts of each reward model among `prs.reward_components`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentTexts>,
}

fn judge_template() -> String {
    JUDGE_TEMPLATE.to_string()
}

/// What a reward component's model is sent: its own reward text and input, read where the
/// call is planned (its files are on that machine).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ComponentTexts {
    pub name: String,
    pub reward: String,
    pub reward_input: RewardMode,
}

impl ComponentTexts {
    /// The texts of each reward model among the components of `cfg`.
    fn from_config(cfg: &PrsConfig) -> Result<Vec<Self>> {
        crate::config::component_specs(cfg)?
            .into_iter()
            .filter(|c| c.verifier().is_none())
            .map(|c| {
                let file = format!("reward_template_file of reward component {:?}", c.name);
                Ok(ComponentTexts {
                    reward: text_or_file(
                        &file,
                        &c.cfg.reward_template_file,
                        &c.cfg.reward_template,
                    )?,
                    reward_input: RewardMode::resolve(&c.cfg)?,
                    name: c.name,
                })
            })
            .collect()
    }
}

impl TemplateTexts {
    /// Read the texts the settings name (template files are read here).
    pub fn from_config(cfg: &PrsConfig) -> Result<Self> {
        Ok(TemplateTexts {
            prompt: text_or_file(
                "prs.prompt_template_file",
                &cfg.prompt_template_file,
                &cfg.prompt_template,
            )?,
            feedback: text_or_file(
                "prs.feedback_template_file",
                &cfg.feedback_template_file,
                FEEDBACK_TEMPLATE,
            )?,
            revise: text_or_file(
                "prs.revise_template_file",
                &cfg.revise_template_file,
                REVISE_TEMPLATE,
            )?,
            revise_no_feedback: text_or_file(
                "prs.revise_no_feedback_template_file",
                &cfg.revise_no_feedback_template_file,
                REVISE_NO_FEEDBACK_TEMPLATE,
            )?,
            reward: text_or_file(
                "prs.reward_template_file",
                &cfg.reward_template_file,
                &cfg.reward_template,
            )?,
            reward_input: RewardMode::resolve(cfg)?,
            judge: text_or_file(
                "prs.judge_template_file",
                &cfg.judge_template_file,
                JUDGE_TEMPLATE,
            )?,
            components: ComponentTexts::from_config(cfg)?,
        })
    }
}

impl Templates {
    pub fn from_config(cfg: &PrsConfig) -> Result<Self> {
        Self::parse(&TemplateTexts::from_config(cfg)?)
    }

    /// Parse and check template texts.
    pub fn parse(t: &TemplateTexts) -> Result<Self> {
        Ok(Templates {
            prompt: Template::parse("prs.prompt_template", &t.prompt, &["prompt"], &["prompt"])?,
            feedback: Template::parse("feedback", &t.feedback, SAMPLE_SLOTS, &["answer"])?,
            revise: Template::parse("revise", &t.revise, SAMPLE_SLOTS, &["answer", "feedback"])?,
            revise_no_feedback: Template::parse(
                "revise_no_feedback",
                &t.revise_no_feedback,
                SAMPLE_SLOTS,
                &["answer"],
            )?,
            reward: RewardFormat::parse(&t.reward, &t.reward_input)?,
            judge: Template::parse(
                "judge",
                &t.judge,
                &["question", "preference", "answer_a", "answer_b"],
                &["answer_a", "answer_b"],
            )?,
            components: t
                .components
                .iter()
                .map(|c| {
                    Ok((
                        c.name.clone(),
                        RewardFormat::parse(&c.reward, &c.reward_input)?,
                    ))
                })
                .collect::<Result<_>>()?,
        })
    }
}

/// How responses become reward input, ready to use.
#[derive(Debug, Clone)]
pub enum RewardFormat {
    Text(Template),
    Messages,
    Rendered(Box<ChatTemplate>),
}

impl RewardFormat {
    /// Build the format of `mode`; `text` is the reward template (used in text mode).
    pub fn parse(text: &str, mode: &RewardMode) -> Result<Self> {
        Ok(match mode {
            RewardMode::Text => RewardFormat::Text(Template::parse(
                "prs.reward_template",
                text,
                &["prompt", "response", "preference"],
                &["response"],
            )?),
            RewardMode::Messages => RewardFormat::Messages,
            RewardMode::Rendered(t) => RewardFormat::Rendered(Box::new(ChatTemplate::compile(t)?)),
        })
    }

    /// What the server is sent for `response` to `prompt` (which carries the preference where
    /// the settings say so).
    pub fn item(&self, prompt: &str, response: &str, preference: &str) -> Result<RewardItem> {
        Ok(match self {
            RewardFormat::Text(t) => RewardItem::text(t.render(&[
                ("prompt", prompt),
                ("response", response),
                ("preference", preference),
            ])),
            RewardFormat::Messages => RewardItem::Chat {
                user: prompt.to_string(),
                assistant: response.to_string(),
            },
            RewardFormat::Rendered(t) => {
                let text = t.render(prompt, response)?;
                RewardItem::Text {
                    has_bos: t.starts_with_bos(&text),
                    text,
                }
            }
        })
    }

    /// What the fingerprint records of this format: the mode and its template text.
    pub fn describe(&self) -> Value {
        match self {
            RewardFormat::Text(t) => json!({ "input": "text", "template": t.source() }),
            RewardFormat::Messages => json!({ "input": "chat", "template": "(the server's)" }),
            RewardFormat::Rendered(t) => json!({
                "input": "chat",
                "template": t.text().source,
                "bos_token": t.text().bos_token,
                "eos_token": t.text().eos_token,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_never_reexpands_user_text() {
        let t = Template::parse(
            "t",
            "Q: {question}\nA: {answer}\nF: {feedback}",
            SAMPLE_SLOTS,
            &[],
        )
        .unwrap();
        let out = t.render(&[
            ("question", "what is {answer}?"),
            ("answer", "it is {feedback}"),
            ("feedback", "fine"),
        ]);
        assert_eq!(out, "Q: what is {answer}?\nA: it is {feedback}\nF: fine");
    }

    #[test]
    fn unknown_braces_stay_literal() {
        let t = Template::parse(
            "t",
            "json {\"a\": 1} {prompt} {other} {",
            &["prompt"],
            &["prompt"],
        )
        .unwrap();
        assert_eq!(t.render(&[("prompt", "x")]), "json {\"a\": 1} x {other} {");
    }

    #[test]
    fn required_placeholder_missing_is_an_error() {
        let err = Template::parse("revise", "no slots here", SAMPLE_SLOTS, &["answer"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("{answer}"), "{err}");
    }

    #[test]
    fn defaults_parse() {
        let cfg = PrsConfig::default()
            .with_options("reward_input=text", "test")
            .unwrap();
        let t = Templates::from_config(&cfg).unwrap();
        let r = t.reward.item("hi", "yo", "").unwrap();
        assert_eq!(
            r,
            crate::text::reward_input::RewardItem::text("Human: hi\nAssistant: yo")
        );
        let f = t.revise.render(&[
            ("question", "Q"),
            ("answer", "A"),
            ("preference", "P"),
            ("feedback", "F"),
        ]);
        assert!(f.contains("Q") && f.contains("A") && f.contains("P") && f.contains("F"));
    }

    #[test]
    fn missing_template_file_is_an_error() {
        let cfg = PrsConfig::default()
            .with_options("feedback_template_file=/no/such/file.txt", "test")
            .unwrap();
        let err = Templates::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("/no/such/file.txt"), "{err}");
    }
}
