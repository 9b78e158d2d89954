//! `random_sample(source, n [, options])` and `prs_sample(source, n [, options])`.
//!
//! The call runs at planning (also for EXPLAIN / DESCRIBE): it checks the arguments and
//! settings, reads the input schema and returns a [`SampleTable`] with a fixed output schema.
//! No endpoint is called until the plan executes.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use crate::checkpoint::{hash_parts, Checkpoint};
use crate::client::{PolicyClient, RewardClient};
use crate::config::PrsConfig;
use crate::error::{PrsError, Result};
use crate::exec::SampleExec;
use crate::sampler::{default_widths, Method, OnError, RewardPreference, Sampler};
use crate::schema::output_schema;
use crate::single_flight::{flight_for, Flight};
use crate::source::{self, InputColumns};
use crate::stats::{Budget, JobStats};
use crate::templates::Templates;

/// The table function for one sampling method.
#[derive(Debug)]
pub struct SampleFunction {
    method: Method,
}

impl SampleFunction {
    pub fn new(method: Method) -> Self {
        SampleFunction { method }
    }
}

fn literal_string(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _)
        | Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _)
        | Expr::Literal(ScalarValue::Utf8View(Some(s)), _) => Some(s.clone()),
        _ => None,
    }
}

fn literal_n(e: &Expr, function: &str) -> Result<i64> {
    let bad = |what: String| {
        PrsError::arg(
            function,
            format!("n (the second argument) must be a positive integer literal, got {what}"),
        )
    };
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Int8(Some(x)) => Ok(*x as i64),
            ScalarValue::Int16(Some(x)) => Ok(*x as i64),
            ScalarValue::Int32(Some(x)) => Ok(*x as i64),
            ScalarValue::Int64(Some(x)) => Ok(*x),
            ScalarValue::UInt8(Some(x)) => Ok(*x as i64),
            ScalarValue::UInt16(Some(x)) => Ok(*x as i64),
            ScalarValue::UInt32(Some(x)) => Ok(*x as i64),
            ScalarValue::UInt64(Some(x)) => i64::try_from(*x).map_err(|_| bad(x.to_string())),
            other => Err(bad(format!("{other} ({})", other.data_type()))),
        },
        other => Err(bad(format!("the expression {other}"))),
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

impl SampleFunction {
    fn plan(&self, args: &TableFunctionArgs) -> Result<SampleTable> {
        let f = self.method.function_name();
        let exprs = args.exprs();
        if !(2..=3).contains(&exprs.len()) {
            return Err(PrsError::arg(
                f,
                format!(
                    "expected {f}(source, n [, options]), got {} argument(s)",
                    exprs.len()
                ),
            ));
        }
        let source_name = literal_string(&exprs[0]).ok_or_else(|| {
            PrsError::arg(
                f,
                "the source (first argument) must be a string literal: a Parquet path, glob or table name",
            )
        })?;
        let n = literal_n(&exprs[1], f)?;
        let options = match exprs.get(2) {
            None => String::new(),
            Some(e) => literal_string(e).ok_or_else(|| {
                PrsError::arg(f, "options (third argument) must be a string literal like 'temperature=0.7, widths=8/8'")
            })?,
        };
        let cfg =
            PrsConfig::from_session(args.session().config_options())?.with_options(&options, f)?;
        if n <= 0 {
            return Err(PrsError::arg(f, format!("n must be at least 1, got {n}")));
        }
        let n = n as usize;
        if n > cfg.max_n {
            return Err(PrsError::arg(
                f,
                format!(
                    "n = {n} is above prs.max_n = {} (raise it with SET prs.max_n = ... if you mean it)",
                    cfg.max_n
                ),
            ));
        }
        let widths = match self.method {
            Method::Random => vec![n],
            Method::Prs => parse_widths(&cfg.widths, n, f)?,
        };
        let templates = Templates::from_config(&cfg)?;
        let input = source::resolve(args.session(), &source_name)?;
        let columns = source::columns(&source_name, &input.schema(), &cfg)?;
        let stats = JobStats::of(args.session().config());
        let policy = Arc::new(PolicyClient::new(
            &cfg,
            templates.prompt.clone(),
            stats.clone(),
        )?);
        let reward = Arc::new(RewardClient::new(&cfg, stats.clone())?);
        let sampler = Sampler {
            method: self.method,
            widths,
            feedback: cfg.feedback,
            max_choices_per_request: cfg.max_choices_per_request.max(1),
            run_seed: cfg.seed,
            preference_in_prompt: cfg.preference_in_prompt,
            reward_preference: RewardPreference::parse(&cfg.reward_preference)?,
            on_error: OnError::parse(&cfg.on_error)?,
            templates,
            policy: policy.clone(),
            reward: reward.clone(),
        };
        let default_preference =
            Some(cfg.default_preference.clone()).filter(|p| !p.trim().is_empty());
        let description = call_description(&cfg, &sampler, &columns.id_type);
        let fingerprint = hash_parts(&[&description.to_string()]);
        let checkpoint = (!cfg.checkpoint_dir.trim().is_empty())
            .then(|| Checkpoint::new(cfg.checkpoint_dir.trim(), &fingerprint, description));
        let schema = output_schema(&columns.id_type);
        Ok(SampleTable {
            schema: schema.clone(),
            input,
            spec: Arc::new(SampleSpec {
                source: source_name,
                columns,
                default_preference,
                prompt_concurrency: cfg.prompt_concurrency.max(1),
                sampler: Arc::new(sampler),
                stats,
                policy,
                reward,
                flight: flight_for(&fingerprint),
                preflight: cfg.preflight.then(tokio::sync::OnceCell::new),
                budget: Budget {
                    max_requests: cfg.max_requests,
                    max_generated_tokens: cfg.max_generated_tokens,
                },
                fingerprint,
                checkpoint,
                schema,
            }),
        })
    }
}

impl TableFunctionImpl for SampleFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        Ok(Arc::new(self.plan(&args)?))
    }
}

/// What a planned sampling call does, shared by its provider and execution node.
#[derive(Debug)]
pub struct SampleSpec {
    pub source: String,
    pub columns: InputColumns,
    pub default_preference: Option<String>,
    pub prompt_concurrency: usize,
    pub sampler: Arc<Sampler>,
    pub policy: Arc<PolicyClient>,
    pub reward: Arc<RewardClient>,
    pub stats: Arc<JobStats>,
    /// Hash of everything that determines a prompt's output.
    pub fingerprint: String,
    pub checkpoint: Option<Checkpoint>,
    pub flight: Arc<Flight>,
    /// Full output schema.
    pub schema: SchemaRef,
    pub budget: Budget,
    /// Present when the preflight check is on; holds its outcome once it ran.
    pub preflight: Option<tokio::sync::OnceCell<std::result::Result<(), String>>>,
}

/// What one prompt costs when the servers honour `n` (top-ups and retries add requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromptCost {
    pub policy_requests: u64,
    pub reward_requests: u64,
    /// Every sample and feedback at `max_tokens`.
    pub max_generated_tokens: u64,
}

impl SampleSpec {
    pub fn cost_per_prompt(&self) -> PromptCost {
        let s = &self.sampler;
        let per_request = s.max_choices_per_request.max(1);
        let batch = self.reward.batch_size().max(1);
        let feedback_calls = if s.feedback && s.widths.len() > 1 {
            s.widths.len() as u64 - 1
        } else {
            0
        };
        let samples: u64 = s.widths.iter().map(|w| *w as u64).sum();
        PromptCost {
            policy_requests: s
                .widths
                .iter()
                .map(|w| w.div_ceil(per_request) as u64)
                .sum::<u64>()
                + feedback_calls,
            reward_requests: s.widths.iter().map(|w| w.div_ceil(batch) as u64).sum(),
            max_generated_tokens: (samples + feedback_calls) * self.policy.max_tokens() as u64,
        }
    }

    /// Run the preflight check once per call (before its first request); later callers get the
    /// same outcome.
    pub async fn preflight(&self) -> Result<()> {
        let Some(cell) = &self.preflight else {
            return Ok(());
        };
        let inner = |e: PrsError| match e {
            PrsError::Preflight(m) => m,
            other => other.to_string(),
        };
        cell.get_or_init(|| async {
            self.policy.preflight().await.map_err(inner)?;
            self.reward.preflight().await.map_err(inner)
        })
        .await
        .clone()
        .map_err(PrsError::Preflight)
    }
}

/// Everything that determines a prompt's output under this call, as JSON: hashed into the
/// call fingerprint and written to the checkpoint's `call.json`. No secrets: keys are not
/// settings. Without `policy_model` the model is whatever the URL serves, so the URL stands in.
fn call_description(
    cfg: &PrsConfig,
    s: &Sampler,
    id_type: &datafusion::arrow::datatypes::DataType,
) -> serde_json::Value {
    let t = &s.templates;
    serde_json::json!({
        "version": 1,
        "method": s.method.as_str(),
        "widths": s.widths,
        "feedback": s.feedback,
        "preference_in_prompt": s.preference_in_prompt,
        "reward_preference": cfg.reward_preference.trim().to_ascii_lowercase(),
        "seed": s.run_seed,
        "max_choices_per_request": s.max_choices_per_request,
        "policy_api": cfg.policy_api.trim().to_ascii_lowercase(),
        "policy_model": if cfg.policy_model.trim().is_empty() { format!("(first model of {})", cfg.policy_url.trim()) } else { cfg.policy_model.trim().to_string() },
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "top_k": cfg.top_k,
        "presence_penalty": cfg.presence_penalty,
        "max_tokens": cfg.max_tokens,
        "stop": cfg.stop,
        "reward_protocol": cfg.reward_protocol.trim().to_ascii_lowercase(),
        "reward_model": s.reward.model_label(),
        "templates": {
            "prompt": t.prompt.source(),
            "feedback": t.feedback.source(),
            "revise": t.revise.source(),
            "revise_no_feedback": t.revise_no_feedback.source(),
            "reward": t.reward.source(),
        },
        "id_type": id_type.to_string(),
    })
}

/// The provider a sampling call returns.
#[derive(Debug)]
pub struct SampleTable {
    schema: SchemaRef,
    input: Arc<dyn TableProvider>,
    spec: Arc<SampleSpec>,
}

#[async_trait]
impl TableProvider for SampleTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let in_schema = self.input.schema();
        let cols = &self.spec.columns;
        let mut wanted = vec![cols.prompt.as_str()];
        wanted.extend(cols.id.as_deref());
        wanted.extend(cols.preference.as_deref());
        let mut indices = Vec::new();
        for name in wanted {
            let i = in_schema.index_of(name)?;
            if !indices.contains(&i) {
                indices.push(i);
            }
        }
        let input = self.input.scan(state, Some(&indices), &[], None).await?;
        Ok(Arc::new(SampleExec::try_new(
            input,
            self.spec.clone(),
            self.schema.clone(),
            projection.cloned(),
        )?))
    }
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
}
