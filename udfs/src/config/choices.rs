//! Settings that take one of a few named values. Each is an enum that DataFusion's config
//! system reads and writes ([`ConfigField`]), so `SET prs.on_error = 'explode'` fails at the
//! `SET`, naming the valid values, and code matches on variants instead of strings.

use std::fmt;
use std::str::FromStr;

use datafusion::common::config::{ConfigField, Visit};
use datafusion::error::{DataFusionError, Result as DfResult};

use crate::error::PrsError;

/// Declares a setting's enum with its names (the first is the canonical one, the others are
/// accepted aliases), parsing (trimmed, case-insensitive), display and [`ConfigField`].
macro_rules! choice {
    (
        $(#[$doc:meta])*
        $name:ident, setting = $setting:literal {
            $( $(#[$vdoc:meta])* $variant:ident = $text:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vdoc])* $variant ),+
        }

        impl $name {
            /// Every value, in the order the settings reference lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical name, as `SHOW ALL` prints it.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = PrsError;
            fn from_str(value: &str) -> Result<Self, PrsError> {
                match value.trim().to_ascii_lowercase().as_str() {
                    $($text $(| $alias)* => Ok($name::$variant),)+
                    _ => Err(PrsError::setting($setting, value, expected(Self::ALL))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ConfigField for $name {
            fn visit<V: Visit>(&self, v: &mut V, key: &str, description: &'static str) {
                v.some(key, self, description)
            }

            fn set(&mut self, _key: &str, value: &str) -> DfResult<()> {
                *self = parse_setting(value)?;
                Ok(())
            }
        }
    };
}

/// A setting's value parsed, its error the reason alone (DataFusion names the setting).
fn parse_setting<T: FromStr<Err = PrsError>>(value: &str) -> DfResult<T> {
    value.parse().map_err(|e: PrsError| match e {
        PrsError::InvalidSetting { reason, .. } => DataFusionError::Configuration(reason),
        other => DataFusionError::Configuration(other.to_string()),
    })
}

/// "expected one of a, b, c"
fn expected<T: fmt::Display>(all: &[T]) -> String {
    let names: Vec<String> = all.iter().map(|v| v.to_string()).collect();
    format!("expected one of {}", names.join(", "))
}

choice! {
    /// What a candidate that still fails after retries becomes (`prs.on_error`).
    OnError, setting = "on_error" {
        /// A row with `error` set and a null reward; the query goes on.
        Row = "row",
        /// The query fails.
        Fail = "fail",
    }
}

choice! {
    /// Whether the text scored by the reward model carries the preference
    /// (`prs.reward_preference`).
    RewardPreference, setting = "reward_preference" {
        /// Only when the preference came from a column of the input (the reference's behaviour).
        Auto = "auto",
        Always = "always",
        Never = "never",
    }
}

choice! {
    /// How a candidate's answer is checked against the prompt's reference answer
    /// (`prs.verifier`).
    Verifier, setting = "verifier" {
        /// No check: `verified` is null.
        None = "none" | "off",
        /// The answer (the last `\boxed{...}`, else the whole answer) equals the reference,
        /// whitespace aside.
        Exact = "exact",
        /// Both read as numbers, equal within a relative 1e-6.
        Numeric = "numeric",
        /// Mathematical equivalence of the final answers, computed exactly.
        Math = "math",
        /// The reference is a regular expression the answer matches.
        Regex = "regex",
    }
}

choice! {
    /// Whether a prompt's samples come in rounds that stop early (`prs.adaptive`).
    Adaptive, setting = "adaptive" {
        /// Every prompt gets `n` samples.
        Off = "off" | "none",
        /// For GRPO groups: a prompt with both outcomes is filled to `n`, one whose outcomes
        /// agree stops early.
        Groups = "groups",
        /// For DPO pairs: a prompt stops at its first right-and-wrong pair, or early when its
        /// outcomes agree.
        Pairs = "pairs",
    }
}

choice! {
    /// Which OpenAI-compatible API the policy client calls (`prs.policy_api`).
    PolicyApi, setting = "policy_api" {
        /// `POST {url}/chat/completions` with the text as the user message.
        Chat = "chat",
        /// `POST {url}/completions` with the text put into `prompt_template`.
        Completions = "completions" | "completion",
    }
}

choice! {
    /// How samples are asked for (`prs.policy_n`).
    PolicyN, setting = "policy_n" {
        /// `n` samples in one request, until a server answers with fewer choices than asked:
        /// from then on one request per sample for that endpoint.
        Auto = "auto",
        /// Always `n` in one request (fewer choices are topped up one request after another).
        Native = "native",
        /// One request per sample, sent at once.
        Single = "single",
    }
}

choice! {
    /// Which of several policy servers a request goes to (`prs.policy_routing`).
    PolicyRouting, setting = "policy_routing" {
        /// A prompt's requests stay on one server (its prefix cache serves what they share),
        /// unless that server has a quarter more outstanding requests than the average.
        Prompt = "prompt",
        /// Each request to the server with the fewest outstanding requests.
        LeastLoaded = "least_loaded" | "least-loaded",
    }
}

choice! {
    /// How to talk to the reward server (`prs.reward_protocol`).
    RewardProtocol, setting = "reward_protocol" {
        /// vLLM `POST {url}/pooling` with `input`; score = last value of each item's `data`.
        VllmPooling = "vllm-pooling",
        /// vLLM `POST {url}/classify` with `input`; score = `probs[0]`.
        VllmClassify = "vllm-classify",
        /// OpenRLHF `POST {url}/get_reward` with `{"query": [...]}`; scores in `rewards`.
        OpenRlhf = "openrlhf",
        /// Text Embeddings Inference `POST {url}/predict` with `{"inputs": [...], "raw_scores": true}`.
        Tei = "tei",
        /// No reward model: a sampled candidate's reward is 1.0 when its answer matches the
        /// prompt's reference (`prs.verifier`, `math` when `none`), else 0.0.
        Verify = "verify",
    }
}

choice! {
    /// How the scores of several reward components make one reward (`prs.reward_aggregate`).
    RewardAggregate, setting = "reward_aggregate" {
        /// The sum of each component's score times its weight.
        Weighted = "weighted",
        /// The lowest score among the components that have a weight above 0.
        Min = "min",
        /// The weighted mean of the scores less `prs.reward_uncertainty_weight` times their
        /// weighted standard deviation (for an ensemble of one reward model family).
        MeanMinusStd = "mean_minus_std" | "mean-minus-std",
    }
}

choice! {
    /// What the reward server is sent for each response (`prs.reward_input`).
    RewardInput, setting = "reward_input" {
        /// `chat` for vllm-pooling and vllm-classify, or wherever reward_chat_template_file is
        /// set; `text` for the other protocols, or when reward_template(_file) is set.
        Auto = "auto",
        /// The text of `reward_template`, many per request.
        Text = "text",
        /// The conversation in the reward model's own chat template: rendered by the client
        /// from reward_chat_template_file, else sent as `messages` for the server to apply.
        Chat = "chat",
    }
}

impl RewardProtocol {
    /// vLLM's protocols: they take a `model`, `messages` and `add_special_tokens`.
    pub fn is_vllm(&self) -> bool {
        matches!(self, Self::VllmPooling | Self::VllmClassify)
    }
}

/// Most extra samples per prompt for `prs.unique` (`prs.unique_max_extra`): `n`, as many as
/// the prompt has candidates, or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxExtra {
    #[default]
    PerN,
    Count(usize),
}

impl MaxExtra {
    /// The number for a prompt of `n` candidates.
    pub fn of(&self, n: usize) -> usize {
        match self {
            MaxExtra::PerN => n,
            MaxExtra::Count(k) => *k,
        }
    }
}

impl FromStr for MaxExtra {
    type Err = PrsError;
    fn from_str(value: &str) -> Result<Self, PrsError> {
        let v = value.trim();
        if v.eq_ignore_ascii_case("n") {
            return Ok(MaxExtra::PerN);
        }
        v.parse().map(MaxExtra::Count).map_err(|_| {
            PrsError::setting(
                "unique_max_extra",
                value,
                "expected n (as many as the prompt's candidates) or a whole number",
            )
        })
    }
}

impl fmt::Display for MaxExtra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxExtra::PerN => f.write_str("n"),
            MaxExtra::Count(k) => write!(f, "{k}"),
        }
    }
}

impl ConfigField for MaxExtra {
    fn visit<V: Visit>(&self, v: &mut V, key: &str, description: &'static str) {
        v.some(key, self, description)
    }

    fn set(&mut self, _key: &str, value: &str) -> DfResult<()> {
        *self = parse_setting(value)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_both_ways_and_bad_ones_list_the_valid_ones() {
        for p in RewardProtocol::ALL {
            assert_eq!(p.as_str().parse::<RewardProtocol>().unwrap(), *p);
        }
        assert_eq!(
            " Completion ".parse::<PolicyApi>().unwrap(),
            PolicyApi::Completions
        );
        assert_eq!("FAIL".parse::<OnError>().unwrap(), OnError::Fail);
        let e = "explode".parse::<OnError>().unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid setting prs.on_error = \"explode\": expected one of row, fail"
        );
        let mut v = RewardPreference::Auto;
        let e = ConfigField::set(&mut v, "", "sometimes")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected one of auto, always, never"), "{e}");
        ConfigField::set(&mut v, "", "Never").unwrap();
        assert_eq!(v, RewardPreference::Never);
        assert_eq!(v.to_string(), "never");
    }

    #[test]
    fn max_extra_is_n_or_a_number() {
        assert_eq!("N".parse::<MaxExtra>().unwrap().of(8), 8);
        assert_eq!(" 3".parse::<MaxExtra>().unwrap().of(8), 3);
        assert_eq!(MaxExtra::Count(0).to_string(), "0");
        let e = "lots".parse::<MaxExtra>().unwrap_err().to_string();
        assert!(
            e.contains("unique_max_extra") && e.contains("whole number"),
            "{e}"
        );
    }
}
