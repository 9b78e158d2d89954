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
use datafusion::config::ExtensionOptions;
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

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
use crate::templates::{TemplateTexts, Templates};

/// The table function for one sampling method.
#[derive(Debug)]
pub struct SampleFunction {
    method: Method,
    /// Plans are sent to other machines: the source must be files they can read.
    distributed: bool,
}

impl SampleFunction {
    pub fn new(method: Method) -> Self {
        SampleFunction {
            method,
            distributed: false,
        }
    }

    /// The function for a client whose plans run on other machines (a cluster): sources that
    /// are tables of the client's session are refused at planning.
    pub fn distributed(method: Method) -> Self {
        SampleFunction {
            method,
            distributed: true,
        }
    }
}

/// Why a session table cannot be the source of a call that runs on other machines.
pub(crate) const NOT_PORTABLE: &str = "a table of this session cannot be sent to other machines; \
     on a cluster give a Parquet file, directory or glob that the scheduler and every executor \
     can read at the same path";

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
        if self.distributed && !source::looks_like_path(&source_name) {
            return Err(PrsError::Input {
                source_name,
                reason: NOT_PORTABLE.into(),
            });
        }
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
        let call = SampleCall::new(self.method, source_name, n as usize, cfg)?;
        SampleTable::new(args.session(), call)
    }
}

/// What a sampling call asks for, with its settings and template texts resolved: everything
/// another node needs to rebuild the call (see [`SampleCall::to_json`]). Holds no secrets: API
/// keys are read from each node's own environment when its clients are built.
#[derive(Debug, Clone)]
pub struct SampleCall {
    pub method: Method,
    /// The first argument: a Parquet path, directory, glob or session table name.
    pub source: String,
    pub n: usize,
    /// Session settings with the call's options applied.
    pub cfg: PrsConfig,
    /// Template texts (template files are read where the call is planned).
    pub templates: TemplateTexts,
}

/// Settings that name files on the planning machine: their content travels in the templates.
const LOCAL_FILE_SETTINGS: &[&str] = &[
    "prompt_template_file",
    "feedback_template_file",
    "revise_template_file",
    "revise_no_feedback_template_file",
    "reward_template_file",
];

impl SampleCall {
    /// Check `n` against the settings, read the templates and check them.
    pub fn new(method: Method, source: String, n: usize, cfg: PrsConfig) -> Result<Self> {
        let mut call = SampleCall {
            method,
            source,
            n,
            cfg,
            templates: TemplateTexts::default(),
        };
        call.widths()?;
        call.templates = TemplateTexts::from_config(&call.cfg)?;
        Templates::parse(&call.templates)?;
        Ok(call)
    }

    /// Layer widths, checked against `n` and `prs.max_n`.
    pub fn widths(&self) -> Result<Vec<usize>> {
        let f = self.method.function_name();
        let n = self.n;
        if n == 0 {
            return Err(PrsError::arg(f, "n must be at least 1, got 0"));
        }
        if n > self.cfg.max_n {
            return Err(PrsError::arg(
                f,
                format!(
                    "n = {n} is above prs.max_n = {} (raise it with SET prs.max_n = ... if you mean it)",
                    self.cfg.max_n
                ),
            ));
        }
        match self.method {
            Method::Random => Ok(vec![n]),
            Method::Prs => parse_widths(&self.cfg.widths, n, f),
        }
    }

    /// The call as JSON: method, source, n, every `prs.*` setting (file settings replaced by
    /// the template texts).
    pub fn to_json(&self) -> serde_json::Value {
        let settings: serde_json::Map<String, serde_json::Value> = self
            .cfg
            .0
            .entries()
            .into_iter()
            .filter(|e| !LOCAL_FILE_SETTINGS.contains(&e.key.as_str()))
            .filter_map(|e| Some((e.key, serde_json::Value::String(e.value?))))
            .collect();
        serde_json::json!({
            "method": self.method.as_str(),
            "source": self.source,
            "n": self.n,
            "settings": settings,
            "templates": self.templates,
        })
    }

    /// Rebuild a call from [`SampleCall::to_json`]. Settings start from the defaults, not from
    /// this node's environment: the call runs as it was planned.
    pub fn from_json(v: &serde_json::Value) -> Result<Self> {
        let bad = |what: &str| PrsError::BadPlan(format!("sampling call: {what}"));
        let method = match v.get("method").and_then(|m| m.as_str()) {
            Some("random") => Method::Random,
            Some("prs") => Method::Prs,
            _ => return Err(bad("missing or unknown method")),
        };
        let source = v
            .get("source")
            .and_then(|s| s.as_str())
            .ok_or_else(|| bad("missing source"))?
            .to_string();
        let n = v
            .get("n")
            .and_then(|n| n.as_u64())
            .ok_or_else(|| bad("missing n"))? as usize;
        let mut cfg = PrsConfig::default();
        if let Some(settings) = v.get("settings").and_then(|s| s.as_object()) {
            for (key, value) in settings {
                let value = value
                    .as_str()
                    .ok_or_else(|| bad("a setting is not a string"))?;
                cfg.set_checked(key, value, "the plan")?;
            }
        }
        let templates: TemplateTexts = serde_json::from_value(
            v.get("templates")
                .cloned()
                .ok_or_else(|| bad("missing templates"))?,
        )
        .map_err(|e| bad(&format!("templates: {e}")))?;
        let call = SampleCall {
            method,
            source,
            n,
            cfg,
            templates,
        };
        call.widths()?;
        Ok(call)
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
    /// The call as planned (what a cluster node rebuilds this spec from).
    pub call: SampleCall,
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

impl SampleSpec {
    /// Build the clients, sampler, fingerprint and checkpoint of `call` over an input with
    /// `columns`. Calls nothing.
    pub fn build(call: SampleCall, columns: InputColumns, stats: Arc<JobStats>) -> Result<Self> {
        let widths = call.widths()?;
        let cfg = &call.cfg;
        let templates = Templates::parse(&call.templates)?;
        let policy = Arc::new(PolicyClient::new(
            cfg,
            templates.prompt.clone(),
            stats.clone(),
        )?);
        let reward = Arc::new(RewardClient::new(cfg, stats.clone())?);
        let sampler = Sampler {
            method: call.method,
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
        let description = call_description(cfg, &sampler, &columns.id_type);
        let fingerprint = hash_parts(&[&description.to_string()]);
        let checkpoint = (!cfg.checkpoint_dir.trim().is_empty())
            .then(|| Checkpoint::new(cfg.checkpoint_dir.trim(), &fingerprint, description));
        let schema = output_schema(&columns.id_type);
        Ok(SampleSpec {
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
            call,
        })
    }
}

/// What one prompt costs when the servers honour `n` (top-ups and retries add requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromptCost {
    pub policy_requests: u64,
    /// Reward requests if no batch held texts of other prompts (the most there can be).
    pub reward_requests: u64,
    /// Texts scored: one per candidate.
    pub reward_texts: u64,
    /// Texts per reward request at most (`reward_batch_size`).
    pub reward_batch_size: u64,
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
        let samples = s.n() as u64;
        PromptCost {
            policy_requests: s
                .widths
                .iter()
                .map(|w| w.div_ceil(per_request) as u64)
                .sum::<u64>()
                + feedback_calls,
            reward_requests: s.widths.iter().map(|w| w.div_ceil(batch) as u64).sum(),
            reward_texts: samples,
            reward_batch_size: batch as u64,
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
    /// Planned for a distributed engine, whose tasks (one per input partition) each count
    /// their own requests and tokens: the budget is split across them.
    split_budget: bool,
}

impl SampleTable {
    /// Resolve the call's source in `session` (reads its schema only) and build the call.
    pub fn new(session: &dyn Session, call: SampleCall) -> Result<Self> {
        let input = source::resolve(session, &call.source)?;
        let columns = source::columns(&call.source, &input.schema(), &call.cfg)?;
        let spec = SampleSpec::build(call, columns, JobStats::of(session.config()))?;
        Ok(SampleTable {
            schema: spec.schema.clone(),
            input,
            spec: Arc::new(spec),
            split_budget: false,
        })
    }

    /// For a distributed engine (Ballista and the like), where every task of the plan counts on
    /// its own: `max_requests` and `max_generated_tokens` are split evenly across the input's
    /// partitions (at least 1 each), so the job as a whole stays within them.
    pub fn with_budget_split_across_tasks(mut self) -> Self {
        self.split_budget = true;
        self
    }

    /// The call this table runs.
    pub fn call(&self) -> &SampleCall {
        &self.spec.call
    }

    /// The spec each of `tasks` tasks runs: the call's, or with its share of a split budget.
    fn spec_for(&self, tasks: usize) -> Result<Arc<SampleSpec>> {
        let cfg = &self.spec.call.cfg;
        let has_budget = cfg.max_requests > 0 || cfg.max_generated_tokens > 0;
        if !self.split_budget || tasks <= 1 || !has_budget {
            return Ok(self.spec.clone());
        }
        // 0 means no limit, so a share never rounds down to it
        let share = |total: u64| {
            if total == 0 {
                0
            } else {
                (total / tasks as u64).max(1)
            }
        };
        let mut call = self.spec.call.clone();
        call.cfg.max_requests = share(cfg.max_requests);
        call.cfg.max_generated_tokens = share(cfg.max_generated_tokens);
        let spec = SampleSpec::build(call, self.spec.columns.clone(), self.spec.stats.clone())?;
        Ok(Arc::new(spec))
    }
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
        limit: Option<usize>,
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
        let spec = self.spec_for(input.output_partitioning().partition_count())?;
        Ok(Arc::new(
            SampleExec::try_new(input, spec, self.schema.clone(), projection.cloned())?
                .with_limit(limit),
        ))
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
