//! What a reward server is sent for each response (`prs.reward_input`).
//!
//! * **text**: `prs.reward_template` filled in (`Human: {prompt}\nAssistant: {response}` by
//!   default, the reference's UltraRM form); many texts per request, any protocol.
//! * **chat, rendered here**: the conversation (user: the prompt, assistant: the response) in
//!   the model's own chat template from `prs.reward_chat_template_file`; batched text, any
//!   protocol.
//! * **chat, as `messages`**: the conversation itself, for vLLM (`/pooling`, `/classify`) to
//!   apply the model's chat template. vLLM takes one conversation per such request.
//!
//! The mode is resolved once, at planning, and travels with the call; `templates::RewardFormat`
//! turns responses into [`RewardItem`]s.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::chat_template::ChatTemplateText;
use crate::config::{PrsConfig, RewardInput, RewardProtocol, REWARD_TEMPLATE};
use crate::error::{PrsError, Result};

/// The resolved reward input of a call, as it travels (the text template travels beside it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardMode {
    #[default]
    Text,
    Messages,
    Rendered(ChatTemplateText),
}

impl RewardMode {
    /// Resolve `prs.reward_input` against the protocol and the template settings.
    pub fn resolve(cfg: &PrsConfig) -> Result<Self> {
        let chat_file = cfg.reward_chat_template_file.trim();
        let custom_text =
            !cfg.reward_template_file.trim().is_empty() || cfg.reward_template != REWARD_TEMPLATE;
        let takes_messages = cfg.reward_protocol.is_vllm();
        let chat =
            match cfg.reward_input {
                RewardInput::Auto => !chat_file.is_empty() || (takes_messages && !custom_text),
                RewardInput::Text if !chat_file.is_empty() => return Err(PrsError::setting(
                    "reward_input",
                    "text",
                    "prs.reward_chat_template_file is set but only used with reward_input = chat \
                     (or auto); clear one of them",
                )),
                RewardInput::Text => false,
                RewardInput::Chat if custom_text => {
                    return Err(PrsError::setting(
                        "reward_input",
                        "chat",
                        "prs.reward_template / reward_template_file is set but only used with \
                     reward_input = text; clear one of them",
                    ))
                }
                RewardInput::Chat => true,
            };
        if !chat {
            Ok(RewardMode::Text)
        } else if !chat_file.is_empty() {
            Ok(RewardMode::Rendered(ChatTemplateText::read(chat_file)?))
        } else if takes_messages {
            Ok(RewardMode::Messages)
        } else {
            Err(PrsError::setting(
                "reward_input",
                "chat",
                format!(
                    "a {} server takes text only: set prs.reward_chat_template_file to the \
                     model's tokenizer_config.json so the conversation is rendered here, or use \
                     reward_input = text",
                    cfg.reward_protocol
                ),
            ))
        }
    }
}

/// One turn of OpenAI-style `messages`.
#[derive(Serialize)]
struct Turn<'a> {
    role: &'a str,
    content: &'a str,
}

/// A user → assistant conversation as `messages`.
fn messages<'a>(user: &'a str, assistant: &'a str) -> [Turn<'a>; 2] {
    [("user", user), ("assistant", assistant)].map(|(role, content)| Turn { role, content })
}

/// One response as the reward server gets it.
#[derive(Debug, Clone, PartialEq)]
pub enum RewardItem {
    /// Text scored as is; `has_bos`: it starts with the tokenizer's BOS already.
    Text { text: String, has_bos: bool },
    /// A conversation for the server to put into the model's chat template.
    Chat { user: String, assistant: String },
}

impl RewardItem {
    pub fn text(text: impl Into<String>) -> Self {
        RewardItem::Text {
            text: text.into(),
            has_bos: false,
        }
    }

    /// The item as a person reads it: the text, or the conversation as JSON `messages`.
    pub fn shown(&self) -> String {
        match self {
            RewardItem::Text { text, .. } => text.clone(),
            RewardItem::Chat { user, assistant } => {
                serde_json::to_string(&messages(user, assistant)).unwrap_or_default()
            }
        }
    }

    pub fn is_chat(&self) -> bool {
        matches!(self, RewardItem::Chat { .. })
    }

    /// The body of a request for `items` under `protocol`; a conversation goes alone, as
    /// `messages` (only vLLM takes those: the mode was checked at planning).
    pub fn body(
        protocol: RewardProtocol,
        model: Option<&str>,
        items: &[RewardItem],
    ) -> Result<Value> {
        let vllm = protocol.is_vllm();
        let mut body = match items {
            [RewardItem::Chat { user, assistant }] if vllm => {
                json!({ "messages": messages(user, assistant) })
            }
            _ => {
                let texts = items
                    .iter()
                    .map(|i| match i {
                        RewardItem::Text { text, .. } => Ok(text.as_str()),
                        RewardItem::Chat { .. } => Err(PrsError::setting(
                            "reward_input",
                            "chat",
                            format!("a conversation goes one per request, to vLLM only, not to {protocol}"),
                        )),
                    })
                    .collect::<Result<Vec<&str>>>()?;
                match protocol {
                    RewardProtocol::VllmPooling | RewardProtocol::VllmClassify => {
                        json!({ "input": texts })
                    }
                    RewardProtocol::OpenRlhf => json!({ "query": texts }),
                    RewardProtocol::Tei => json!({ "inputs": texts, "raw_scores": true }),
                    RewardProtocol::Verify => {
                        return Err(PrsError::setting(
                            "reward_protocol",
                            "verify",
                            "no reward server is sent texts with verify",
                        ))
                    }
                }
            }
        };
        if vllm {
            if let Some(m) = model {
                body["model"] = json!(m);
            }
            // the text starts with BOS already: vLLM must not add a second one
            if items
                .iter()
                .any(|i| matches!(i, RewardItem::Text { has_bos: true, .. }))
            {
                body["add_special_tokens"] = json!(false);
            }
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(options: &str) -> PrsConfig {
        PrsConfig::default().with_options(options, "test").unwrap()
    }

    #[test]
    fn auto_is_chat_for_vllm_and_text_elsewhere() {
        assert_eq!(RewardMode::resolve(&cfg("")).unwrap(), RewardMode::Messages);
        let c = cfg("reward_protocol=vllm-classify");
        assert_eq!(RewardMode::resolve(&c).unwrap(), RewardMode::Messages);
        for p in ["openrlhf", "tei"] {
            let c = cfg(&format!("reward_protocol={p}"));
            assert_eq!(RewardMode::resolve(&c).unwrap(), RewardMode::Text);
        }
        // a template set by hand means text
        let c = cfg("reward_template=Q: {prompt} A: {response}");
        assert_eq!(RewardMode::resolve(&c).unwrap(), RewardMode::Text);
    }

    #[test]
    fn conflicting_settings_say_which() {
        let e = RewardMode::resolve(&cfg("reward_input=chat,reward_protocol=tei"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("reward_chat_template_file") && e.contains("tei"),
            "{e}"
        );
        let e = RewardMode::resolve(&cfg("reward_input=chat,reward_template={response}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("reward_input = text"), "{e}");
        let e = RewardMode::resolve(&cfg("reward_input=text,reward_chat_template_file=x.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("reward_chat_template_file"), "{e}");
    }

    #[test]
    fn bodies_per_mode() {
        let chat = RewardItem::Chat {
            user: "q".into(),
            assistant: "a".into(),
        };
        let pooling = RewardProtocol::VllmPooling;
        assert_eq!(
            RewardItem::body(pooling, Some("rm"), std::slice::from_ref(&chat)).unwrap(),
            json!({"model": "rm", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
        );
        let bos = RewardItem::Text {
            text: "<s>x".into(),
            has_bos: true,
        };
        assert_eq!(
            RewardItem::body(
                RewardProtocol::VllmClassify,
                None,
                std::slice::from_ref(&bos)
            )
            .unwrap(),
            json!({"input": ["<s>x"], "add_special_tokens": false})
        );
        // other protocols have no such field
        assert_eq!(
            RewardItem::body(RewardProtocol::OpenRlhf, None, &[bos]).unwrap(),
            json!({"query": ["<s>x"]})
        );
        assert_eq!(
            RewardItem::body(pooling, None, &[RewardItem::text("t")]).unwrap(),
            json!({"input": ["t"]})
        );
        // never two conversations in one request, never one to a text-only protocol
        assert!(RewardItem::body(pooling, None, &[chat.clone(), chat.clone()]).is_err());
        assert!(RewardItem::body(RewardProtocol::Tei, None, &[chat]).is_err());
    }
}
