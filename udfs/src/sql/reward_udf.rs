//! `reward(prompt, response [, preference])`: score existing rows through the reward endpoint.
//!
//! An async scalar UDF: each batch it receives is scored in reward batches sent concurrently.
//! Rows whose prompt or response is null get a null reward and cause no request.
//!
//! `reward_input(prompt, response [, preference])`: what `reward` would send for each row under
//! the current settings (the text, or the conversation as JSON `messages`), without sending it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, Float64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{internal_datafusion_err, internal_err};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::client::{RewardClient, RewardSettings};
use crate::config::PrsConfig;
use crate::error::PrsError;
use crate::run::JobStats;
use crate::sampler::{Components, PromptView, RewardPreference};
use crate::text::{RewardItem, Templates};

/// The `reward` function, ready to register.
pub fn reward_udf() -> ScalarUDF {
    AsyncScalarUDF::new(Arc::new(RewardUdf::new())).into_scalar_udf()
}

/// What scores rows, behind both `reward()` and `prs_score`: the reward client, the reward
/// text's format and how a row's preference goes in; or, with `prs.reward_components`, the
/// components.
#[derive(Debug)]
pub(crate) struct RowScorer {
    client: Option<Arc<RewardClient>>,
    components: Option<Arc<Components>>,
    templates: Templates,
    mode: RewardPreference,
}

/// A row's reward and, with components, each one's score.
pub(crate) type RowScore = (f64, Option<BTreeMap<String, f64>>);

impl RowScorer {
    pub fn new(cfg: &PrsConfig, stats: Arc<JobStats>) -> crate::error::Result<Self> {
        let templates = Templates::from_config(cfg)?;
        let (client, components) = match Components::build(cfg, &templates.components, &stats)? {
            Some((components, _)) => (None, Some(Arc::new(components))),
            None => {
                let settings = RewardSettings::from_config(cfg)?;
                (Some(Arc::new(RewardClient::new(&settings, stats)?)), None)
            }
        };
        Ok(RowScorer {
            client,
            components,
            templates,
            mode: cfg.reward_preference,
        })
    }

    /// Whether the rows get each component's score too.
    pub fn has_components(&self) -> bool {
        self.components.is_some()
    }

    /// What scores, as EXPLAIN shows it: the reward server and protocol, or the components.
    pub fn describe(&self) -> String {
        match (&self.client, &self.components) {
            (Some(c), _) => format!("reward={} protocol={}", c.base_url(), c.protocol().as_str()),
            (None, Some(c)) => format!("reward={}", c.label()),
            (None, None) => "reward=(none)".into(),
        }
    }

    /// The reward of each of the rows of prompt, response [, preference]: null where the
    /// prompt or the response is null (no request for those). `reference` is what verifier
    /// components check against.
    pub async fn score(
        &self,
        prompt: &StringArray,
        response: &StringArray,
        preference: Option<&StringArray>,
        reference: Option<&StringArray>,
    ) -> DfResult<Vec<Option<RowScore>>> {
        let mut out = vec![None; prompt.len()];
        let Some(client) = &self.client else {
            let rows = RowsView {
                prompt,
                response,
                preference,
                reference,
            };
            return self.score_components(&rows, out).await;
        };
        let (items, which) =
            reward_items(prompt, response, preference, &self.templates, self.mode)?;
        let scores = client.score(&items).await?;
        for (row, score) in which.into_iter().zip(scores) {
            out[row] = Some((score, None));
        }
        Ok(out)
    }

    /// Each row scored by every component, all rows at once (each component's client batches
    /// them); the first failure fails the call, naming its component.
    async fn score_components(
        &self,
        rows: &RowsView<'_>,
        mut out: Vec<Option<RowScore>>,
    ) -> DfResult<Vec<Option<RowScore>>> {
        let Some(components) = &self.components else {
            return Ok(out);
        };
        if let (None, Some(name)) = (rows.reference, components.verifier()) {
            return Err(DataFusionError::Plan(format!(
                "reward component {name:?} is a verifier: it checks answers against references, \
                 and there are none here (reward() takes none): score with prs_score over a \
                 table with a reference column (prs.reference_column), or leave the verifier out"
            )));
        }
        let which: Vec<usize> = (0..rows.prompt.len())
            .filter(|&r| rows.prompt.is_valid(r) && rows.response.is_valid(r))
            .collect();
        let scored = futures::future::join_all(which.iter().map(|&row| {
            let view = PromptView {
                prompt: rows.prompt.value(row),
                preference: rows
                    .preference
                    .and_then(|p| value(p, row))
                    .filter(|p| !p.trim().is_empty()),
                // a preference given as an argument is a per-row preference
                per_row: true,
                reference: rows.reference.and_then(|r| value(r, row)),
            };
            let response = rows.response.value(row);
            async move { components.score(&view, &[response]).await }
        }))
        .await;
        for (row, mut outcome) in which.into_iter().zip(scored) {
            match outcome.pop() {
                Some(Ok(scores)) => out[row] = Some((components.aggregate(&scores), Some(scores))),
                Some(Err((name, e))) => {
                    let e = PrsError::Component { name, source: e };
                    return Err(e.into());
                }
                None => return internal_err!("a row got no outcome from the reward components"),
            }
        }
        Ok(out)
    }
}

/// Row `row` of `a`, `None` when null.
fn value(a: &StringArray, row: usize) -> Option<&str> {
    a.is_valid(row).then(|| a.value(row))
}

/// The columns a batch of rows is scored from.
struct RowsView<'a> {
    prompt: &'a StringArray,
    response: &'a StringArray,
    preference: Option<&'a StringArray>,
    reference: Option<&'a StringArray>,
}

type CachedScorer = Option<(String, Arc<RowScorer>)>;

#[derive(Debug)]
pub struct RewardUdf {
    signature: Signature,
    /// The scorer for the last settings seen, reused across batches (connection pool).
    scorer: Mutex<CachedScorer>,
}

impl PartialEq for RewardUdf {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature
    }
}
impl Eq for RewardUdf {}
impl std::hash::Hash for RewardUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "prs-reward".hash(state)
    }
}

impl Default for RewardUdf {
    fn default() -> Self {
        Self::new()
    }
}

impl RewardUdf {
    pub fn new() -> Self {
        RewardUdf {
            signature: Signature::one_of(
                vec![TypeSignature::String(2), TypeSignature::String(3)],
                // calls a server: never constant-fold or deduplicate it
                Volatility::Volatile,
            ),
            scorer: Mutex::new(None),
        }
    }

    fn scorer(&self, cfg: &PrsConfig) -> DfResult<Arc<RowScorer>> {
        // every setting, URLs unredacted: any change a client or template would see builds a new one
        let key = cfg.identity();
        let mut guard = self
            .scorer
            .lock()
            .map_err(|_| internal_datafusion_err!("reward client cache poisoned"))?;
        if let Some((k, scorer)) = guard.as_ref() {
            if *k == key {
                return Ok(scorer.clone());
            }
        }
        let scorer = Arc::new(RowScorer::new(cfg, Arc::default())?);
        *guard = Some((key, scorer.clone()));
        Ok(scorer)
    }
}

impl ScalarUDFImpl for RewardUdf {
    fn name(&self) -> &str {
        "reward"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        internal_err!("reward() is asynchronous and runs through invoke_async_with_args")
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for RewardUdf {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let cfg = PrsConfig::from_session(&args.config_options)?;
        let scorer = self.scorer(&cfg)?;
        let arrays = string_args(&args)?;
        let preference = arrays.get(2).map(|a| a.as_string::<i32>());
        let scores = scorer
            .score(
                arrays[0].as_string(),
                arrays[1].as_string(),
                preference,
                None,
            )
            .await?;
        let rewards: Vec<Option<f64>> = scores.into_iter().map(|s| s.map(|(r, _)| r)).collect();
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(rewards))))
    }
}

/// The arguments of a call (prompt, response [, preference]) as text arrays of its rows.
fn string_args(args: &ScalarFunctionArgs) -> DfResult<Vec<datafusion::arrow::array::ArrayRef>> {
    let rows = args.number_rows;
    args.args
        .iter()
        .map(|a| Ok(cast(&a.to_array(rows)?, &DataType::Utf8)?))
        .collect()
}

/// What the reward server is sent for each row of `args` (prompt, response [, preference]),
/// with the row each belongs to; rows with a null prompt or response have none.
fn row_items(
    args: &ScalarFunctionArgs,
    templates: &Templates,
    mode: RewardPreference,
) -> DfResult<(Vec<RewardItem>, Vec<usize>)> {
    let arrays = string_args(args)?;
    let prompt = arrays[0].as_string::<i32>();
    let response = arrays[1].as_string::<i32>();
    let preference = arrays.get(2).map(|a| a.as_string::<i32>());
    Ok(reward_items(prompt, response, preference, templates, mode)?)
}

/// What the reward server is sent for each row of the columns prompt, response [, preference],
/// with the row each belongs to; rows with a null prompt or response have none. A preference
/// that is null or blank counts as none.
fn reward_items(
    prompt: &StringArray,
    response: &StringArray,
    preference: Option<&StringArray>,
    templates: &Templates,
    mode: RewardPreference,
) -> crate::error::Result<(Vec<RewardItem>, Vec<usize>)> {
    let rows = prompt.len();
    let mut items = Vec::with_capacity(rows);
    let mut which = Vec::with_capacity(rows);
    for row in 0..rows {
        if prompt.is_null(row) || response.is_null(row) {
            continue;
        }
        let pref = preference
            .filter(|p| p.is_valid(row))
            .map(|p| p.value(row))
            .filter(|p| !p.trim().is_empty());
        let x = prompt.value(row);
        // a preference given as an argument is a per-row preference
        let prompt_text = match (mode, pref) {
            (RewardPreference::Never, _) | (_, None) => x.to_string(),
            (_, Some(z)) => format!("{x}\n\n{z}"),
        };
        items.push(
            templates
                .reward
                .item(&prompt_text, response.value(row), pref.unwrap_or(""))?,
        );
        which.push(row);
    }
    Ok((items, which))
}

/// The `reward_input` function, ready to register.
pub fn reward_input_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(RewardInputUdf {
        signature: Signature::one_of(
            vec![TypeSignature::String(2), TypeSignature::String(3)],
            // reads template files named by settings
            Volatility::Stable,
        ),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct RewardInputUdf {
    signature: Signature,
}

impl ScalarUDFImpl for RewardInputUdf {
    fn name(&self) -> &str {
        "reward_input"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let cfg = PrsConfig::from_session(&args.config_options)?;
        let templates = Templates::from_config(&cfg)?;
        let (items, which) = row_items(&args, &templates, cfg.reward_preference)?;
        let mut out: Vec<Option<String>> = vec![None; args.number_rows];
        for (row, item) in which.into_iter().zip(items) {
            out[row] = Some(item.shown());
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_setting_change_builds_a_new_client() {
        let udf = RewardUdf::new();
        let mut base = PrsConfig::default();
        base.set_checked("reward_url", "http://u:first@127.0.0.1:1", "test")
            .unwrap();
        let first = udf.scorer(&base).unwrap();
        assert!(Arc::ptr_eq(&first, &udf.scorer(&base.clone()).unwrap()));
        for (key, value) in [
            ("max_response_bytes", "4096"),
            ("retry_attempts", "2"),
            ("retry_deadline_secs", "5"),
            ("reward_url", "http://other:1"),
            // a change SHOW ALL cannot see (it redacts the password) still counts
            ("reward_url", "http://u:second@127.0.0.1:1"),
        ] {
            let mut changed = base.clone();
            changed.set_checked(key, value, "test").unwrap();
            let scorer = udf.scorer(&changed).unwrap();
            assert!(!Arc::ptr_eq(&first, &scorer), "{key} = {value}");
            // back to the base: a new client again, not the changed one
            assert!(!Arc::ptr_eq(&scorer, &udf.scorer(&base).unwrap()));
        }
    }
}
