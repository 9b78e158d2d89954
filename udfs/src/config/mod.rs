//! The one source of truth for settings: [`PrsConfig`].
//!
//! It is a DataFusion [`ConfigExtension`] under the `prs.` prefix, so `SET prs.x = ...` writes
//! it and `SHOW ALL` lists it. Environment variables (`PRS_<NAME>`) and the CLI's flags feed the
//! same struct through [`PrsConfig::set`]; per-call options of the table functions are applied
//! to a copy of it. API keys are deliberately *not* fields: they are read from the environment
//! by the clients only, so they can never show up in `SHOW ALL`, EXPLAIN or errors.
//!
//! `config` itself is a `pub mod` of the crate because hosts use it as a module
//! (`datafusion_prs::config::DEFAULT_PREFERENCE`, the setting types); its one file, `choices`,
//! is private, its types re-exported below.

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::extensions_options;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionConfig;

use crate::error::{PrsError, Result};

mod choices;
mod components;

pub use choices::{
    Adaptive, MaxExtra, OnError, PolicyApi, PolicyN, PolicyRouting, RewardAggregate, RewardInput,
    RewardPreference, RewardProtocol, Verifier,
};

/// The default preference used when the input table has no preference column.
pub const DEFAULT_PREFERENCE: &str =
    "I prefer answers that are accurate, helpful and clearly organised, with as much detail as the question calls for.";

/// The default reward text (`prs.reward_template`): the reference's UltraRM form.
pub const REWARD_TEMPLATE: &str = "Human: {prompt}\nAssistant: {response}";

extensions_options! {
    /// The fields of [`PrsConfig`] (reached through `Deref`).
    pub struct PrsSettings {
        /// OpenAI-compatible policy base URL, e.g. http://host:8000/v1; several, comma-separated, share the work
        pub policy_url: String, default = String::new()
        /// Policy model name; empty = the first id of GET {policy_url}/models
        pub policy_model: String, default = String::new()
        /// Policy API: `chat` (POST /chat/completions) or `completions` (POST /completions with prompt_template)
        pub policy_api: PolicyApi, default = PolicyApi::Chat
        /// Client-side prompt template for policy_api=completions; must hold {prompt}
        pub prompt_template: String, default = "{prompt}".to_string()
        /// File whose text replaces prompt_template (empty = unused)
        pub prompt_template_file: String, default = String::new()
        /// Sampling temperature
        pub temperature: f64, default = 0.8
        /// Nucleus sampling top_p
        pub top_p: f64, default = 1.0
        /// top_k sent to the server (a vLLM extension: dropped for a server that refuses it); -1 leaves it out of the request
        pub top_k: i32, default = 50
        /// Presence penalty
        pub presence_penalty: f64, default = 1.2
        /// Maximum generated tokens per sample
        pub max_tokens: u32, default = 1024
        /// JSON object merged into every policy request, e.g. {"min_p": 0.05}; a field the server refuses (HTTP 400/422 naming it) is dropped for that endpoint with a warning
        pub policy_extra_body: String, default = String::new()
        /// Stop sequence(s): empty = none, a plain string, or a JSON array of strings
        pub stop: String, default = String::new()
        /// Run seed: every request's seed derives from (seed, prompt id, layer, sample index)
        pub seed: u64, default = 0
        /// How samples are asked for: `auto` (`n` per request until a server answers with fewer choices than asked, then one request per sample), `native` (always `n`) or `single` (one request per sample)
        pub policy_n: PolicyN, default = PolicyN::Auto
        /// With several policy URLs: `prompt` sends a prompt's requests to one server, whose prefix cache then serves what they share, unless it has a quarter more requests outstanding than the average; `least_loaded` sends each request to the server with the fewest
        pub policy_routing: PolicyRouting, default = PolicyRouting::Prompt
        /// Send vLLM's `priority` with each request so deeper PRS layers run before new prompts' first layer (for servers run with --scheduling-policy priority)
        pub policy_priority: bool, default = false
        /// Most samples asked for in one request (`n`); a layer wider than this is split
        pub max_choices_per_request: usize, default = 16
        /// Most policy sequences (samples being generated) in flight at once, shared by all partitions of a call
        pub max_in_flight: usize, default = 1024
        /// Prompt window per partition: prompts in their first layer at once, scaled by the first layer's share of n (128 for random sampling, 64 for PRS's two halves); a prompt past its first layer makes room for the next, and up to 4× this many are worked on in all
        pub prompt_concurrency: usize, default = 128
        /// Start more prompts than `prompt_concurrency` lets while the policy servers report no waiting requests at /metrics (vLLM's and SGLang's gauges), up to 4 × `prompt_concurrency`; `false` keeps the window fixed
        pub grow_window: bool, default = true
        /// Upper bound for n (candidates per prompt)
        pub max_n: usize, default = 1024
        /// Seconds allowed to connect to an endpoint
        pub connect_timeout_secs: u64, default = 10
        /// Seconds allowed for one request, end to end
        pub request_timeout_secs: u64, default = 600
        /// Most bytes read of one answer from an endpoint; a longer answer is an error for its candidates (the rest is never read)
        pub max_response_bytes: u64, default = 33554432
        /// Attempts per request, the first included (transient failures only are retried)
        pub retry_attempts: usize, default = 6
        /// First retry delay in milliseconds (doubles each time, with jitter)
        pub retry_initial_delay_ms: u64, default = 500
        /// Longest wait between two attempts in milliseconds (a server's Retry-After may ask for more, up to a minute)
        pub retry_max_delay_ms: u64, default = 30000
        /// Most seconds spent waiting between the attempts of one request
        pub retry_deadline_secs: u64, default = 600
        /// What a candidate that still fails after retries becomes: `row` (a row with `error` set, reward null) or `fail` (the query fails)
        pub on_error: OnError, default = OnError::Row
        /// CLI: exit with status 3 when the share of failed candidates is above this (0 = any failure)
        pub max_failed_share: f64, default = 0.0
        /// Budget: policy + reward requests after which no new prompt starts (0 = no limit); counted per job (CLI run or session)
        pub max_requests: u64, default = 0
        /// Budget: generated tokens (from the servers' usage) after which no new prompt starts (0 = no limit)
        pub max_generated_tokens: u64, default = 0
        /// Before the first request, check that the endpoints answer and the configured models exist
        pub preflight: bool, default = true
        /// With several URLs: transient failures in a row after which a replica gets no work for a while
        pub replica_eject_after: u32, default = 3
        /// With several URLs: seconds an ejected replica gets no work
        pub replica_eject_secs: u64, default = 30
        /// Directory for durable per-prompt checkpoints (empty = off); re-running a query serves finished prompts from it
        pub checkpoint_dir: String, default = String::new()
        /// Reward endpoint base URL, e.g. http://host:8001; several, comma-separated, share the work
        pub reward_url: String, default = String::new()
        /// Reward model name sent to vllm-pooling / vllm-classify
        pub reward_model: String, default = String::new()
        /// Reward protocol: vllm-pooling, vllm-classify, openrlhf, tei, or verify (no reward model: the reward of a sampled candidate is 1.0 when its answer matches the prompt's reference under prs.verifier, math by default, else 0.0)
        pub reward_protocol: RewardProtocol, default = RewardProtocol::VllmPooling
        /// Text scored by the reward model; placeholders {prompt} {response} {preference}
        pub reward_template: String, default = REWARD_TEMPLATE.to_string()
        /// File whose text replaces reward_template (empty = unused)
        pub reward_template_file: String, default = String::new()
        /// What the reward model is sent: auto, text (reward_template) or chat (the conversation in the model's own chat template)
        pub reward_input: RewardInput, default = RewardInput::Auto
        /// Hugging Face tokenizer_config.json or .jinja file with the reward model's chat template, rendered here (empty = the server applies its own)
        pub reward_chat_template_file: String, default = String::new()
        /// Whether {prompt} in the reward text carries the preference: auto (only per-row preferences), always or never
        pub reward_preference: RewardPreference, default = RewardPreference::Auto
        /// Texts per reward request
        pub reward_batch_size: usize, default = 32
        /// Milliseconds a reward batch waits for texts of other prompts to fill up (0 = score each prompt's texts on their own)
        pub reward_batch_wait_ms: u64, default = 5
        /// Most reward texts being scored at once, shared by all partitions of a call
        pub reward_max_in_flight: usize, default = 1024
        /// Named reward components, a JSON array such as [{"name":"helpful","url":"http://rm1:8001","weight":0.7},{"name":"correct","verifier":"math"}]: each takes the reward settings as fields without the `reward_` prefix (url, protocol, model, template, input, batch_size, ...) and inherits the others; empty = the one reward model of reward_url
        pub reward_components: String, default = String::new()
        /// How the components' scores make `reward`: `weighted` (sum of weight × score), `min` (the lowest score) or `mean_minus_std` (weighted mean less reward_uncertainty_weight × weighted standard deviation)
        pub reward_aggregate: RewardAggregate, default = RewardAggregate::Weighted
        /// With reward_aggregate = mean_minus_std: how many standard deviations of disagreement are taken off the mean (with two components of equal weight, 1 makes it their minimum)
        pub reward_uncertainty_weight: f64, default = 0.5
        /// Pairwise LLM judge: OpenAI-compatible base URL of a chat model, e.g. http://host:8002/v1, that compares each prompt's top candidates (judge_top_k); several, comma-separated, share the work
        pub judge_url: String, default = String::new()
        /// Judge model name; empty = the first id of GET {judge_url}/models
        pub judge_model: String, default = String::new()
        /// File replacing the built-in judge template ({question} {preference} {answer_a} {answer_b}); the judge ends with [[A]], [[B]] or [[C]] (tie)
        pub judge_template_file: String, default = String::new()
        /// Compare each prompt's top k candidates by reward with the judge, every pair in both orders (k(k-1) requests per prompt); is_best goes to the most wins on which both orders agree; 0 = off
        pub judge_top_k: usize, default = 0
        /// Most tokens the judge writes per comparison
        pub judge_max_tokens: u32, default = 1024
        /// Prompt column; empty = `prompt` if present, else `instruction`
        pub prompt_column: String, default = String::new()
        /// Id column; if absent from the table, a stable id is derived from the prompt text
        pub id_column: String, default = "id".to_string()
        /// Response column that prs_score scores; empty = `response`
        pub response_column: String, default = String::new()
        /// Preference column; empty = `preference` if present, else default_preference for all rows
        pub preference_column: String, default = String::new()
        /// Reference-answer column (any type read as text), carried to the output and checked by prs.verifier; empty = `reference` if present
        pub reference_column: String, default = String::new()
        /// Preference used when the table has no preference column (empty = none)
        pub default_preference: String, default = DEFAULT_PREFERENCE.to_string()
        /// Whether the sampling prompt is prompt + "\n\n" + preference (false = the prompt alone)
        pub preference_in_prompt: bool, default = true
        /// PRS layer widths like 8/4/4 (must sum to n); empty = ceil(n/2)/floor(n/2)
        pub widths: String, default = String::new()
        /// PRS: generate feedback on the best-so-far before each refinement layer
        pub feedback: bool, default = true
        /// A candidate cut at max_tokens (finish_reason = length) is not is_best nor PRS's best-so-far, unless all of the prompt's are
        pub best_excludes_truncated: bool, default = false
        /// Resample a candidate whose text (its answer, with answer_pattern) repeats an earlier one of its prompt, after trimming and collapsing whitespace, with the next fresh seed
        pub unique: bool, default = false
        /// With unique: most extra samples per prompt, `n` (as many as the prompt's candidates) or a number; a duplicate still left is kept, with duplicate_of set
        pub unique_max_extra: MaxExtra, default = MaxExtra::PerN
        /// Regular expression whose first capture group is the answer of a response (scored, and carried by PRS's feedback and revise prompts), or `think` for the text after the last </think>; empty = the whole response
        pub answer_pattern: String, default = String::new()
        /// How a candidate's answer is checked against its prompt's reference (the `verified` column), and how verify() checks: `none`, `exact`, `numeric`, `math` (equivalence, computed exactly) or `regex` (the reference is a pattern); verify() uses `math` when this is `none`
        pub verifier: Verifier, default = Verifier::None
        /// Milliseconds one answer check may take; past it the check is an error (verify() gives null), never a guess
        pub verify_timeout_ms: u64, default = 1000
        /// Samples in rounds that stop early (random_sample): `off`, `groups` (a prompt with both outcomes is filled to n, one whose outcomes agree stops) or `pairs` (a prompt stops at its first right-and-wrong pair); outcomes are `verified`, else rewards
        pub adaptive: Adaptive, default = Adaptive::Off
        /// With adaptive: samples per round, the first included
        pub explore: usize, default = 3
        /// With adaptive: a prompt whose outcomes all agree stops when the posterior chance (Jeffreys prior) that its remaining samples would show the other outcome is below this
        pub adaptive_threshold: f64, default = 0.4
        /// With adaptive and no verdicts: rewards whose spread (best - worst) is below this count as one outcome
        pub min_reward_spread: f64, default = 0.5
        /// With adaptive = pairs and no verdicts: a best-worst reward gap above this is a pair
        pub pair_margin: f64, default = 1.0
        /// File replacing the built-in feedback template ({question} {answer} {preference})
        pub feedback_template_file: String, default = String::new()
        /// File replacing the built-in revise template ({question} {answer} {preference} {feedback})
        pub revise_template_file: String, default = String::new()
        /// File replacing the built-in revise-without-feedback template ({question} {answer} {preference})
        pub revise_no_feedback_template_file: String, default = String::new()
    }
}

/// Settings of the prs plugin (`prs.*`): [`PrsSettings`] registered under the `prs` prefix,
/// so that `SHOW ALL` and `information_schema.df_settings` list them as `prs.<name>`.
#[derive(Debug, Clone, Default)]
pub struct PrsConfig(pub PrsSettings);

impl std::ops::Deref for PrsConfig {
    type Target = PrsSettings;
    fn deref(&self) -> &PrsSettings {
        &self.0
    }
}

impl std::ops::DerefMut for PrsConfig {
    fn deref_mut(&mut self) -> &mut PrsSettings {
        &mut self.0
    }
}

impl ExtensionOptions for PrsConfig {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }
    fn set(&mut self, key: &str, value: &str) -> datafusion::error::Result<()> {
        self.set_checked(key, value, "SET prs.*")
            .map_err(|e| datafusion::error::DataFusionError::Configuration(e.to_string()))
    }
    fn entries(&self) -> Vec<ConfigEntry> {
        self.0
            .entries()
            .into_iter()
            .map(|mut e| {
                // what SHOW ALL, `prs settings` and Python show: never a URL's credentials
                e.value = e.value.map(|v| crate::redact::shown_setting(&e.key, &v));
                e.key = format!("{}.{}", Self::PREFIX, e.key);
                e
            })
            .collect()
    }
}

impl ConfigExtension for PrsConfig {
    const PREFIX: &'static str = "prs";
}

impl PrsConfig {
    /// Every setting's value exactly as set, URLs with their credentials: two configs with the
    /// same identity behave the same. For comparing in memory (which clients and work can be
    /// shared); never shown, logged or stored.
    pub(crate) fn identity(&self) -> String {
        format!("{:?}", self.0)
    }

    /// All setting names, in declaration order.
    pub fn keys() -> Vec<String> {
        PrsSettings::default()
            .entries()
            .into_iter()
            .map(|e| e.key)
            .collect()
    }

    /// The environment variable that feeds a setting: `PRS_<NAME>`.
    pub fn env_name(key: &str) -> String {
        format!("PRS_{}", key.to_ascii_uppercase())
    }

    /// Set one setting by name, with an error naming the valid keys when it does not exist.
    pub fn set_checked(&mut self, key: &str, value: &str, origin: &str) -> Result<()> {
        let key = key.trim();
        let key = key.strip_prefix("prs.").unwrap_or(key);
        let keys = Self::keys();
        if !keys.iter().any(|k| k == key) {
            return Err(PrsError::UnknownOption {
                function: origin.to_string(),
                key: key.to_string(),
                valid: keys.join(", "),
            });
        }
        let mut next = self.0.clone();
        ExtensionOptions::set(&mut next, key, value)
            .map_err(|e| match e {
                // the reason alone: the error names the setting and value itself
                DataFusionError::Configuration(reason) => reason,
                other => other.to_string(),
            })
            .and_then(|()| check_bounds(key, value))
            .and_then(|()| match key {
                "reward_components" => PrsConfig(next.clone()).components_from(value).map(|_| ()),
                _ => Ok(()),
            })
            .map_err(|reason| PrsError::setting(key, value, format!("{reason} (from {origin})")))?;
        self.0 = next;
        Ok(())
    }

    /// Defaults overlaid with every `PRS_<NAME>` environment variable that is set.
    pub fn from_env() -> Result<Self> {
        let mut cfg = PrsConfig::default();
        cfg.apply_env()?;
        Ok(cfg)
    }

    /// Overlay `PRS_<NAME>` environment variables onto this config.
    pub fn apply_env(&mut self) -> Result<()> {
        for key in Self::keys() {
            let env = Self::env_name(&key);
            if let Ok(value) = std::env::var(&env) {
                self.set_checked(&key, &value, &format!("environment variable {env}"))?;
            }
        }
        Ok(())
    }

    /// Parse `key=value, key=value` options (the last argument of the table functions) onto a
    /// copy of this config. Values may be quoted with double quotes to hold commas.
    pub fn with_options(&self, options: &str, function: &str) -> Result<Self> {
        let mut cfg = self.clone();
        for (key, value) in parse_options(options, function)? {
            cfg.set_checked(&key, &value, &format!("the options of {function}"))?;
        }
        Ok(cfg)
    }

    /// The config of a session: its `prs` extension if installed, otherwise defaults + env.
    pub fn from_session(options: &datafusion::config::ConfigOptions) -> Result<Self> {
        match options.extensions.get::<PrsConfig>() {
            Some(cfg) => Ok(cfg.clone()),
            None => PrsConfig::from_env(),
        }
    }
}

/// Reward settings that are about the set of components, not one of them.
const OF_THE_SET: &[&str] = &[
    "reward_components",
    "reward_aggregate",
    "reward_uncertainty_weight",
];

/// One named reward component (`prs.reward_components`).
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    /// Its name: the key of its score in the `rewards` column.
    pub name: String,
    /// Its weight in the aggregate (0: recorded, not counted).
    pub weight: f64,
    /// The call's settings with the component's fields applied.
    pub cfg: PrsConfig,
}

impl ComponentSpec {
    /// A verifier (`"verifier": "math"`, or `"protocol": "verify"`): its score is 1.0 when the
    /// answer matches the prompt's reference, else 0.0; no server is asked.
    pub fn verifier(&self) -> Option<Verifier> {
        (self.cfg.reward_protocol == RewardProtocol::Verify).then(|| match self.cfg.verifier {
            Verifier::None => Verifier::Math,
            v => v,
        })
    }

    /// A reward model's component needs a server: its own `url`, or `prs.reward_url`.
    pub fn check_url(&self) -> Result<()> {
        match self.verifier().is_none() && self.cfg.reward_url.trim().is_empty() {
            true => Err(PrsError::setting(
                "reward_components",
                &self.name,
                format!(
                    "reward component {:?} has no \"url\" and prs.reward_url is empty: give it \
                     a reward server's url, or a \"verifier\"",
                    self.name
                ),
            )),
            false => Ok(()),
        }
    }
}

/// The fields a reward component may set: each reward setting without its `reward_` prefix.
pub fn component_fields() -> Vec<String> {
    PrsConfig::keys()
        .into_iter()
        .filter(|k| !OF_THE_SET.contains(&k.as_str()))
        .filter_map(|k| k.strip_prefix("reward_").map(str::to_string))
        .collect()
}

/// The components `cfg.reward_components` lists, checked; none when it is empty.
pub fn component_specs(cfg: &PrsConfig) -> Result<Vec<ComponentSpec>> {
    let text = cfg.reward_components.trim();
    cfg.components_from(text)
        .map_err(|reason| PrsError::setting("reward_components", text, reason))
}

impl PrsConfig {
    /// The components `text` lists, each with these settings and its own fields applied; the
    /// error is the reason alone.
    fn components_from(&self, text: &str) -> std::result::Result<Vec<ComponentSpec>, String> {
        let written = components::parse(text, &component_fields())?;
        let mut specs = Vec::with_capacity(written.len());
        for w in written {
            let mut cfg = self.clone();
            cfg.reward_components = String::new();
            let origin = format!("reward component {:?}", w.name);
            for (key, value) in &w.settings {
                cfg.set_checked(key, value, &origin)
                    .map_err(|e| e.to_string())?;
            }
            let own_protocol = w.settings.iter().any(|(k, _)| k == "reward_protocol");
            if !w.verifier && !own_protocol && self.reward_protocol == RewardProtocol::Verify {
                return Err(format!(
                    "{origin} would inherit reward_protocol = verify, which asks no reward \
                     model: give it a \"protocol\" for its model, or a \"verifier\""
                ));
            }
            if w.verifier {
                if cfg.verifier == Verifier::None {
                    return Err(format!("{origin}: verifier none checks nothing"));
                }
                cfg.reward_protocol = RewardProtocol::Verify;
            }
            specs.push(ComponentSpec {
                name: w.name,
                weight: w.weight,
                cfg,
            });
        }
        Ok(specs)
    }
}

/// The most a count or size setting may be: far above any real job, far below what would
/// overflow the arithmetic built on it (a window of 2^62 prompts, a deadline past the clock's
/// end).
const MANY: u64 = 1 << 20;
/// The longest time setting: a week, in the setting's own unit.
const WEEK_SECS: u64 = 7 * 24 * 3600;
const WEEK_MS: u64 = WEEK_SECS * 1000;

/// The values a numeric setting may take, inclusive: anything outside makes no sense (a
/// window of no prompts hangs, 2^62 overflows), so it is refused when it is set, never
/// clamped behind the user's back.
const INTEGER_BOUNDS: &[(&str, u64, u64)] = &[
    ("max_tokens", 1, MANY),
    ("max_choices_per_request", 1, MANY),
    ("max_in_flight", 1, MANY),
    ("prompt_concurrency", 1, MANY),
    ("max_n", 1, MANY),
    ("connect_timeout_secs", 1, WEEK_SECS),
    ("request_timeout_secs", 1, WEEK_SECS),
    ("max_response_bytes", 1024, 1 << 40),
    ("retry_attempts", 1, 1000),
    ("retry_initial_delay_ms", 0, WEEK_MS),
    ("retry_max_delay_ms", 0, WEEK_MS),
    ("retry_deadline_secs", 0, WEEK_SECS),
    ("replica_eject_after", 1, 1000),
    ("replica_eject_secs", 0, WEEK_SECS),
    ("reward_batch_size", 1, MANY),
    ("reward_batch_wait_ms", 0, 60_000),
    ("reward_max_in_flight", 1, MANY),
    ("judge_top_k", 0, 32),
    ("judge_max_tokens", 1, MANY),
    ("verify_timeout_ms", 1, 3_600_000),
    ("explore", 1, MANY),
];

/// Bounds of floating-point settings, inclusive.
const FLOAT_BOUNDS: &[(&str, f64, f64)] = &[
    ("temperature", 0.0, 100.0),
    ("top_p", 0.0, 1.0),
    ("presence_penalty", -100.0, 100.0),
    ("max_failed_share", 0.0, 1.0),
    ("adaptive_threshold", 0.0, 1.0),
    ("min_reward_spread", 0.0, 1e12),
    ("pair_margin", 0.0, 1e12),
    ("reward_uncertainty_weight", 0.0, 1e6),
];

/// Why `value` (already parsed by its field) is out of `key`'s bounds, if it is.
fn check_bounds(key: &str, value: &str) -> std::result::Result<(), String> {
    let value = value.trim();
    if let Some((_, lo, hi)) = INTEGER_BOUNDS.iter().find(|(k, _, _)| *k == key) {
        return match value.parse::<u128>() {
            Ok(v) if v >= u128::from(*lo) && v <= u128::from(*hi) => Ok(()),
            _ => Err(format!("must be between {lo} and {hi}")),
        };
    }
    if let Some((_, lo, hi)) = FLOAT_BOUNDS.iter().find(|(k, _, _)| *k == key) {
        return match value.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= *lo && v <= *hi => Ok(()),
            _ => Err(format!("must be a number between {lo} and {hi}")),
        };
    }
    Ok(())
}

/// Split `a=1, b="x, y"` into pairs. Empty input gives no pairs.
pub fn parse_options(options: &str, function: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = options.chars().peekable();
    loop {
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ','))
            .collect::<String>()
            .trim()
            .to_string();
        match chars.next() {
            None if key.is_empty() => return Ok(out),
            Some(',') if key.is_empty() => continue,
            Some('=') if !key.is_empty() => {}
            Some('=') => {
                return Err(PrsError::arg(
                    function,
                    "an option has an empty key; write options as 'key=value, key=value'",
                ))
            }
            _ => {
                return Err(PrsError::arg(
                    function,
                    format!("option {key:?} has no value; write options as 'key=value, key=value'"),
                ))
            }
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let value = if chars.next_if_eq(&'"').is_some() {
            quoted_value(&mut chars, &key, function)?
        } else {
            let value: String = chars.by_ref().take_while(|c| *c != ',').collect();
            value.trim().to_string()
        };
        out.push((key, value));
    }
}

/// The rest of a double-quoted option value (the opening quote read), up to and including
/// the `,` after it; `\` escapes the next character.
fn quoted_value(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    key: &str,
    function: &str,
) -> Result<String> {
    let mut value = String::new();
    loop {
        match chars.next() {
            Some('\\') => value.extend(chars.next()),
            Some('"') => break,
            Some(c) => value.push(c),
            None => {
                return Err(PrsError::arg(
                    function,
                    format!("option {key:?}: unterminated double quote"),
                ))
            }
        }
    }
    while chars.next_if(|c| c.is_whitespace()).is_some() {}
    match chars.next() {
        None | Some(',') => Ok(value),
        Some(c) => Err(PrsError::arg(
            function,
            format!("option {key:?}: unexpected {c:?} after the quoted value"),
        )),
    }
}

/// A [`SessionConfig`] with the `prs` extension installed, fed by the environment.
pub fn session_config() -> Result<SessionConfig> {
    Ok(SessionConfig::new().with_option_extension(PrsConfig::from_env()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_override() {
        let base = PrsConfig::default();
        let cfg = base
            .with_options(
                "temperature=0.7, widths=8/4/4, feedback=false",
                "prs_sample",
            )
            .unwrap();
        assert_eq!(cfg.temperature, 0.7);
        assert_eq!(cfg.widths, "8/4/4");
        assert!(!cfg.feedback);
        // the base is untouched
        assert_eq!(base.temperature, 0.8);
        assert!(base.feedback);
    }

    #[test]
    fn quoted_values_keep_commas() {
        let pairs = parse_options(r#"stop="a, b", seed = 3"#, "f").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("stop".to_string(), "a, b".to_string()),
                ("seed".to_string(), "3".to_string())
            ]
        );
        assert!(parse_options("", "f").unwrap().is_empty());
        assert!(parse_options(" , ", "f").unwrap().is_empty());
    }

    #[test]
    fn unknown_key_lists_valid_ones() {
        let err = PrsConfig::default()
            .with_options("temprature=0.7", "prs_sample")
            .unwrap_err()
            .to_string();
        assert!(err.contains("temprature"), "{err}");
        assert!(err.contains("temperature"), "{err}");
        assert!(err.contains("widths"), "{err}");
    }

    #[test]
    fn bad_values_and_syntax_are_errors() {
        let err = PrsConfig::default()
            .with_options("temperature=hot", "prs_sample")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prs.temperature"), "{err}");
        assert!(parse_options("temperature", "f").is_err());
        assert!(parse_options("=3", "f").is_err());
        assert!(parse_options("stop=\"abc", "f").is_err());
    }

    #[test]
    fn settings_that_make_no_sense_are_refused_by_name() {
        let mut cfg = PrsConfig::default();
        for (key, value) in [
            ("prompt_concurrency", "4611686018427387904"),
            ("max_in_flight", "0"),
            ("reward_batch_size", "0"),
            ("reward_max_in_flight", "0"),
            ("retry_attempts", "0"),
            ("replica_eject_secs", "18446744073709551615"),
            ("temperature", "NaN"),
            ("top_p", "1.5"),
        ] {
            let e = cfg.set_checked(key, value, "test").unwrap_err().to_string();
            assert!(
                e.contains(&format!("prs.{key}")) && e.contains("between"),
                "{e}"
            );
        }
        // a refused value leaves the setting as it was
        assert_eq!(cfg.prompt_concurrency, 128);
        assert_eq!(cfg.max_in_flight, 1024);
        cfg.set_checked("prompt_concurrency", "1048576", "test")
            .unwrap();
        cfg.set_checked("retry_initial_delay_ms", "0", "test")
            .unwrap();
        assert_eq!(cfg.prompt_concurrency, 1 << 20);
        // every bounded setting exists
        let keys = PrsConfig::keys();
        for key in INTEGER_BOUNDS
            .iter()
            .map(|b| b.0)
            .chain(FLOAT_BOUNDS.iter().map(|b| b.0))
        {
            assert!(keys.iter().any(|k| k == key), "{key}");
        }
    }

    #[test]
    fn keys_have_env_names() {
        assert!(PrsConfig::keys().contains(&"policy_url".to_string()));
        assert_eq!(PrsConfig::env_name("policy_url"), "PRS_POLICY_URL");
        // no secrets among settings
        assert!(!PrsConfig::keys().iter().any(|k| k.contains("key")));
    }
}
