//! A reward model's own chat template (Hugging Face Jinja), rendered on the client.
//!
//! Reward models are trained on conversations in their tokenizer's chat template; scored
//! through any other text they give silently worse rewards. `prs.reward_chat_template_file`
//! names the model's `tokenizer_config.json` (its `chat_template`, `bos_token`, `eos_token`)
//! or a `.jinja` file; the client renders each (prompt, response) conversation with it and
//! sends plain text, which works with every reward protocol.
//!
//! Rendering uses minijinja with the Python-method compatibility of `minijinja-contrib`,
//! `trim_blocks` and `lstrip_blocks` on (as Hugging Face compiles templates), and
//! `raise_exception`. `strftime_now` is left undefined on purpose: templates then use their
//! fixed fallback date, so a reward never depends on the day a job ran.

use std::path::Path;

use minijinja::syntax::SyntaxConfig;
use minijinja::{context, Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use crate::error::{PrsError, Result};

const SETTING: &str = "prs.reward_chat_template_file";

/// A chat template as read on the planning machine: what travels to other nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatTemplateText {
    /// The file it was read from (for messages).
    pub file: String,
    /// The Jinja source.
    pub source: String,
    #[serde(default)]
    pub bos_token: Option<String>,
    #[serde(default)]
    pub eos_token: Option<String>,
}

fn template_error(reason: impl Into<String>) -> PrsError {
    PrsError::Template {
        name: SETTING.to_string(),
        reason: reason.into(),
    }
}

/// A special token as `tokenizer_config.json` writes it: a string or `{"content": ...}`.
fn token(config: &serde_json::Value, key: &str) -> Option<String> {
    let v = config.get(key)?;
    v.as_str()
        .or_else(|| v.get("content").and_then(serde_json::Value::as_str))
        .map(str::to_string)
}

/// The template in a `tokenizer_config.json`: a string, or a list of named templates of which
/// `default` is the one a tokenizer applies.
fn config_template(config: &serde_json::Value) -> Option<String> {
    match config.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(named) => named
            .iter()
            .find(|t| t.get("name").and_then(serde_json::Value::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

fn read(path: &Path) -> Result<String> {
    read_template_file(path).map_err(template_error)
}

/// The largest template file read (a `tokenizer_config.json` included): far above any real
/// one, small enough that a wrong path (a model's weights, /dev/zero) is a clear error.
pub const MAX_TEMPLATE_FILE_BYTES: u64 = 16 << 20;

/// Set in a process that runs plans others wrote (a cluster executor): it reads no template
/// file, since a setting naming one would make it read, and echo, a file of its own.
static NO_TEMPLATE_FILES: std::sync::OnceLock<()> = std::sync::OnceLock::new();

/// From now on, refuse to read template files named by settings. Call it at the start of a
/// process that runs plans from others: `prs_sample` and `prs_score` plans carry their
/// templates' text, and `reward()` there must get its template as text (`prs.reward_template`).
pub fn refuse_template_files() {
    let _ = NO_TEMPLATE_FILES.set(());
}

/// The text of a template file, at most [`MAX_TEMPLATE_FILE_BYTES`]; the error says why not.
pub(crate) fn read_template_file(path: &Path) -> std::result::Result<String, String> {
    use std::io::Read;
    if NO_TEMPLATE_FILES.get().is_some() {
        return Err(format!(
            "not reading {path:?}: a cluster executor reads no file a query names; give \
             reward() its template as text (prs.reward_template), or run it on one node"
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read file {path:?}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_TEMPLATE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read file {path:?}: {e}"))?;
    if bytes.len() as u64 > MAX_TEMPLATE_FILE_BYTES {
        return Err(format!(
            "{} is larger than {} MiB: is it really a template?",
            path.display(),
            MAX_TEMPLATE_FILE_BYTES >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("{} is not UTF-8 text: {e}", path.display()))
}

/// The work one rendering may do (minijinja's fuel: about one unit per instruction and per 64
/// bytes of data), so that a template that loops 10^9 times is an error, not a hang. A real
/// chat template renders a conversation in a few hundred units plus its text's size / 64.
pub const RENDER_FUEL: u64 = 2_000_000;

fn read_config(path: &Path) -> Result<serde_json::Value> {
    serde_json::from_str(&read(path)?).map_err(|e| {
        template_error(format!(
            "{} is not JSON ({e}); name a tokenizer_config.json or a .jinja file",
            path.display()
        ))
    })
}

impl ChatTemplateText {
    /// Read a `tokenizer_config.json` (newer models keep the template beside it in
    /// `chat_template.jinja`), or a `.jinja` file whose special tokens come from a
    /// `tokenizer_config.json` beside it, if there is one.
    pub fn read(file: &str) -> Result<Self> {
        let path = Path::new(file);
        let beside = |name: &str| path.parent().map(|dir| dir.join(name));
        let (source, config) = if file.ends_with(".json") {
            let config = read_config(path)?;
            let source = match config_template(&config) {
                Some(source) => source,
                None => match beside("chat_template.jinja").filter(|p| p.is_file()) {
                    Some(jinja) => read(&jinja)?,
                    None => {
                        return Err(template_error(format!(
                            "{file} has no chat_template (and no chat_template.jinja beside it): \
                             this model has no chat template; score it with \
                             prs.reward_input = text and a prs.reward_template"
                        )))
                    }
                },
            };
            (source, config)
        } else {
            let config = match beside("tokenizer_config.json").filter(|p| p.is_file()) {
                Some(p) => read_config(&p)?,
                None => serde_json::Value::Null,
            };
            (read(path)?, config)
        };
        Ok(ChatTemplateText {
            file: file.to_string(),
            source,
            bos_token: token(&config, "bos_token"),
            eos_token: token(&config, "eos_token"),
        })
    }
}

/// A compiled chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    text: ChatTemplateText,
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compile `text` and render a probe conversation, so that a template that cannot render
    /// a user/assistant exchange fails at planning, not on the first candidate.
    pub fn compile(text: &ChatTemplateText) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| template_error(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_fuel(Some(RENDER_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<Value, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(NAME, text.source.clone())
            .map_err(|e| template_error(format!("{}: {e}", text.file)))?;
        let template = ChatTemplate {
            env,
            text: text.clone(),
        };
        let probe = template.render("ping", "pong")?;
        if !(probe.contains("ping") && probe.contains("pong")) {
            let start: String = probe.chars().take(120).collect();
            return Err(template_error(format!(
                "{}: rendering the conversation user \"ping\", assistant \"pong\" gave {start:?}..., \
                 which does not hold both turns: is this the model's chat template?",
                text.file
            )));
        }
        Ok(template)
    }

    /// The conversation `user` → `assistant` as the model was trained to read it.
    pub fn render(&self, user: &str, assistant: &str) -> Result<String> {
        let messages = vec![
            context! { role => "user", content => user },
            context! { role => "assistant", content => assistant },
        ];
        let bos = self.text.bos_token.as_deref().unwrap_or("");
        let eos = self.text.eos_token.as_deref().unwrap_or("");
        self.env
            .get_template(NAME)
            .and_then(|t| {
                t.render(context! {
                    messages => messages,
                    bos_token => bos,
                    eos_token => eos,
                    add_generation_prompt => false,
                })
            })
            .map_err(|e| {
                let hint = match e.kind() {
                    ErrorKind::OutOfFuel => format!(
                        "; the template did more than {RENDER_FUEL} steps of work for one \
                         conversation: does it loop without end?"
                    ),
                    _ => String::new(),
                };
                template_error(format!("{}: {}{hint}", self.text.file, detailed(&e)))
            })
    }

    /// Whether `rendered` already starts with the tokenizer's BOS token (so a server must not
    /// add another).
    pub fn starts_with_bos(&self, rendered: &str) -> bool {
        self.text
            .bos_token
            .as_deref()
            .is_some_and(|bos| !bos.is_empty() && rendered.starts_with(bos))
    }

    pub fn text(&self) -> &ChatTemplateText {
        &self.text
    }
}

/// A Jinja error with the template's own message (raise_exception) and where it happened.
fn detailed(e: &Error) -> String {
    match e.line() {
        Some(line) => format!("{e} (line {line})"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Llama-3's template: BOS from the tokenizer, headers per role,
    /// raise_exception for roles out of order, add_generation_prompt.
    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}\
{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\
{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}\
{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}\
{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}\
{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    fn text(source: &str, bos: Option<&str>) -> ChatTemplateText {
        ChatTemplateText {
            file: "t.jinja".into(),
            source: source.into(),
            bos_token: bos.map(str::to_string),
            eos_token: Some("<|eot_id|>".into()),
        }
    }

    #[test]
    fn renders_a_llama3_shaped_template() {
        let t = ChatTemplate::compile(&text(LLAMA3, Some("<|begin_of_text|>"))).unwrap();
        let out = t.render("What is 2+2? ", "4").unwrap();
        assert_eq!(
            out,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
        );
        assert!(t.starts_with_bos(&out));
    }

    #[test]
    fn template_errors_name_the_file_and_reason() {
        // a template that insists on a system turn first
        let strict = "{% if messages[0]['role'] != 'system' %}{{ raise_exception('a system message must come first') }}{% endif %}";
        let e = ChatTemplate::compile(&text(strict, None))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a system message must come first") && e.contains("t.jinja"),
            "{e}"
        );
        let e = ChatTemplate::compile(&text("{% if %}", None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.jinja"), "{e}");
    }

    #[test]
    fn python_string_methods_work() {
        let t = "{% for m in messages %}{{ m['role'].upper() }}: {{ m['content'].strip() }}\n{% endfor %}";
        let out = ChatTemplate::compile(&text(t, None))
            .unwrap()
            .render("  hi ", "yo")
            .unwrap();
        assert_eq!(out, "USER: hi\nASSISTANT: yo\n");
    }

    #[test]
    fn reads_tokenizer_config_forms() {
        let dir = tempfile_dir();
        let cfg = dir.join("tokenizer_config.json");
        std::fs::write(
            &cfg,
            serde_json::json!({
                "bos_token": {"content": "<s>", "lstrip": false},
                "eos_token": "</s>",
                "chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "{{ bos_token }}d"}],
            })
            .to_string(),
        )
        .unwrap();
        let t = ChatTemplateText::read(cfg.to_str().unwrap()).unwrap();
        assert_eq!(t.source, "{{ bos_token }}d");
        assert_eq!(t.bos_token.as_deref(), Some("<s>"));
        assert_eq!(t.eos_token.as_deref(), Some("</s>"));
        // a .jinja beside a tokenizer_config.json takes its tokens
        let jinja = dir.join("rm.jinja");
        std::fs::write(&jinja, "{{ bos_token }}j").unwrap();
        let t = ChatTemplateText::read(jinja.to_str().unwrap()).unwrap();
        assert_eq!(
            (t.source.as_str(), t.bos_token.as_deref()),
            ("{{ bos_token }}j", Some("<s>"))
        );
        // no template at all: says what to do
        std::fs::write(&cfg, r#"{"bos_token": "<s>"}"#).unwrap();
        let e = ChatTemplateText::read(cfg.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no chat_template") && e.contains("reward_input = text"),
            "{e}"
        );
        // chat_template.jinja beside it (newer transformers)
        std::fs::write(dir.join("chat_template.jinja"), "beside").unwrap();
        let t = ChatTemplateText::read(cfg.to_str().unwrap()).unwrap();
        assert_eq!(t.source, "beside");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_template_that_never_ends_is_an_error_not_a_hang() {
        let started = std::time::Instant::now();
        // 10^10 steps (a single range stops at 10^5 elements)
        let endless = "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}\
                       {% endfor %}{% endfor %}{{ messages }}";
        let e = ChatTemplate::compile(&text(endless, None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fuel") && e.contains("loop without end"), "{e}");
        // string growth is work too
        let growing = "{% set s = namespace(t='x') %}{% for i in range(60) %}\
                       {% set s.t = s.t ~ s.t %}{% endfor %}{{ s.t }}{{ messages }}";
        assert!(ChatTemplate::compile(&text(growing, None)).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // a long conversation in a real template is fine
        let t = ChatTemplate::compile(&text(LLAMA3, Some("<s>"))).unwrap();
        let long = "word ".repeat(400_000);
        assert!(t.render(&long, "short").unwrap().len() > 2_000_000);
    }

    #[test]
    fn a_template_file_too_large_to_be_one_is_refused() {
        let dir = tempfile_dir();
        let big = dir.join("weights.jinja");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_TEMPLATE_FILE_BYTES + 1).unwrap();
        let e = ChatTemplateText::read(big.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than 16 MiB"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "prs-chat-template-{}-{}",
            std::process::id(),
            crate::durability::atomic::rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
