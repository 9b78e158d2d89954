//! `SampleExec`: the execution node of a sampling call. A unary node over the input scan; each
//! input partition's prompts are sampled concurrently and rows stream out as prompts finish.
//! Dropping the stream (e.g. `LIMIT`) drops the in-flight requests.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, RecordOutput, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::{stream, FutureExt, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use datafusion::common::stats::Precision;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};

use crate::checkpoint::prompt_key;
use crate::sampler::{Candidate, Method, PromptInput, WorkStats};
use crate::schema::{to_batch, PromptResult};
use crate::single_flight::ExecGuard;
use crate::stats::{CallCounters, CALL_COUNTERS};
use crate::table_function::SampleSpec;

/// Finished prompts gathered into one output batch when they are ready together.
const PROMPTS_PER_BATCH: usize = 32;

#[derive(Debug)]
pub struct SampleExec {
    input: Arc<dyn ExecutionPlan>,
    spec: Arc<SampleSpec>,
    /// Full output schema.
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    /// The query needs at most this many rows (`LIMIT`): fewer prompts start at once.
    limit: Option<usize>,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Shared by this node's open partition streams: the node counts once in its flight.
    open_streams: std::sync::Mutex<std::sync::Weak<ExecGuard>>,
}

impl SampleExec {
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        spec: Arc<SampleSpec>,
        schema: SchemaRef,
        projection: Option<Vec<usize>>,
    ) -> DfResult<Self> {
        let projected = match &projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema.clone(),
        };
        let partitions = input.output_partitioning().partition_count();
        let props = PlanProperties::new(
            EquivalenceProperties::new(projected),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(SampleExec {
            input,
            spec,
            schema,
            projection,
            limit: None,
            props: Arc::new(props),
            metrics: ExecutionPlanMetricsSet::new(),
            open_streams: std::sync::Mutex::new(std::sync::Weak::new()),
        })
    }
}

impl SampleExec {
    /// Rows the query needs at most (a `LIMIT` pushed into the scan): the node starts only as
    /// many prompts at once as could fill them (`ceil(limit / n)`), and more only while the
    /// consumer still wants rows, so `LIMIT 5` over a large table samples a prompt or two,
    /// not `prompt_concurrency` of them.
    pub fn with_limit(mut self, limit: Option<usize>) -> Self {
        self.limit = limit;
        self
    }

    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// Prompts started at once: `prompt_concurrency`, or fewer under a limit.
    fn prompts_at_once(&self) -> usize {
        let n = self.spec.sampler.n();
        let all = self.spec.prompt_concurrency.max(1);
        match self.limit {
            Some(rows) => all.min(rows.div_ceil(n.max(1)).max(1)),
            None => all,
        }
    }

    /// The sampling call this node runs.
    pub fn spec(&self) -> &Arc<SampleSpec> {
        &self.spec
    }

    /// The node reading the prompts.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// Output columns, as indices into the full output schema (`None`: all).
    pub fn projection(&self) -> Option<&[usize]> {
        self.projection.as_deref()
    }
}

impl DisplayAs for SampleExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let s = &self.spec.sampler;
        let n = s.n();
        write!(f, "SampleExec: method={}, n={n}", s.method.as_str())?;
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        if s.method == Method::Prs {
            // the tree's shape only means something for PRS
            let widths: Vec<String> = s.widths.iter().map(|w| w.to_string()).collect();
            write!(f, ", widths={}, feedback={}", widths.join("/"), s.feedback)?;
        }
        write!(
            f,
            ", policy={} model={}, reward={} protocol={}",
            self.spec.policy.base_url(),
            self.spec
                .policy
                .configured_model()
                .unwrap_or("(from /models)"),
            self.spec.reward.base_url(),
            self.spec.reward.protocol().as_str(),
        )
    }
}

/// Counters shown by EXPLAIN ANALYZE.
struct Counters {
    prompts: Count,
    policy_requests: Count,
    reward_texts: Count,
    prompt_tokens: Count,
    completion_tokens: Count,
    failed_candidates: Count,
    from_checkpoint: Count,
    /// Rows produced (one per candidate; one for a prompt that could not start).
    candidates: Count,
    retries: Count,
    policy_wait: Time,
    reward_wait: Time,
}

impl ExecutionPlan for SampleExec {
    fn name(&self) -> &str {
        "SampleExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [child] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("SampleExec takes one child".into()))?;
        Ok(Arc::new(
            SampleExec::try_new(
                child,
                self.spec.clone(),
                self.schema.clone(),
                self.projection.clone(),
            )?
            .with_limit(self.limit),
        ))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if let Some(checkpoint) = &self.spec.checkpoint {
            checkpoint.prepare()?;
        }
        // the input's exact row count, when its statistics know it, feeds progress and ETA
        let args = StatisticsArgs::new().with_partition(Some(partition));
        if let Ok(stats) = StatisticsContext::new().compute(self.input.as_ref(), &args) {
            if let Precision::Exact(rows) = stats.num_rows {
                self.spec.stats.add_expected_prompts(rows as u64);
            }
        }
        let input = self.input.execute(partition, context)?;
        // this node counts once in its flight while any of its streams is open, so results are
        // kept only when a second node of the same call runs at the same time
        let flight_guard = {
            let mut live = self
                .open_streams
                .lock()
                .map_err(|_| DataFusionError::Internal("SampleExec stream lock poisoned".into()))?;
            match live.upgrade() {
                Some(guard) => guard,
                None => {
                    let guard = Arc::new(self.spec.flight.register_exec());
                    *live = Arc::downgrade(&guard);
                    guard
                }
            }
        };
        let spec = self.spec.clone();
        let schema = self.schema.clone();
        let projection = self.projection.clone();
        let out_schema = self.props.eq_properties.schema().clone();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let m = |name: &'static str| MetricBuilder::new(&self.metrics).counter(name, partition);
        let counters = Arc::new(Counters {
            prompts: m("prompts"),
            policy_requests: m("policy_requests"),
            reward_texts: m("reward_texts"),
            prompt_tokens: m("prompt_tokens"),
            completion_tokens: m("completion_tokens"),
            failed_candidates: m("failed_candidates"),
            from_checkpoint: m("prompts_from_checkpoint"),
            candidates: m("candidates"),
            retries: m("retries"),
            policy_wait: MetricBuilder::new(&self.metrics).subset_time("policy_wait", partition),
            reward_wait: MetricBuilder::new(&self.metrics).subset_time("reward_wait", partition),
        });

        let extract_spec = spec.clone();
        let jobs = input
            .map(move |batch| prompts_of(&extract_spec, &batch?))
            .map_ok(|jobs| stream::iter(jobs.into_iter().map(Ok::<_, DataFusionError>)))
            .try_flatten();
        let concurrency = self.prompts_at_once();
        let results = jobs
            .map_ok(move |(id, input)| {
                let spec = spec.clone();
                let counters = counters.clone();
                async move {
                    let key = prompt_key(&spec.fingerprint, &input);
                    let flight = spec.flight.clone();
                    let work = {
                        let key = key.clone();
                        move || {
                            async move {
                                produce(spec, counters, key, id, input)
                                    .await
                                    .map(Arc::new)
                                    .map_err(Arc::new)
                            }
                            .boxed()
                        }
                    };
                    flight
                        .run(key, work)
                        .await
                        .map_err(|e| match Arc::try_unwrap(e) {
                            Ok(e) => e,
                            Err(shared) => DataFusionError::Shared(shared),
                        })
                }
            })
            .try_buffer_unordered(concurrency);
        let batches = results
            .try_ready_chunks(PROMPTS_PER_BATCH)
            .map_err(|e| e.1)
            .and_then(move |chunk| {
                let schema = schema.clone();
                let projection = projection.clone();
                let baseline = baseline.clone();
                async move {
                    // compute here is turning candidates into Arrow; the rest is waiting
                    let timer = baseline.elapsed_compute().timer();
                    let batch = to_batch(&schema, &chunk)?;
                    let batch = match &projection {
                        Some(p) => batch.project(p)?,
                        None => batch,
                    };
                    timer.done();
                    Ok(batch.record_output(&baseline))
                }
            });
        let batches = batches.inspect(move |_| {
            let _held = &flight_guard;
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(out_schema, batches)))
    }
}

/// The row of a prompt that was not started because the budget is spent.
fn budget_rows(reason: String) -> (Vec<Candidate>, WorkStats) {
    (
        vec![Candidate {
            error: Some(format!(
                "budget: {reason}; no request was made for this prompt"
            )),
            ..Candidate::default()
        }],
        WorkStats {
            error_kinds: vec!["budget".into()],
            ..WorkStats::default()
        },
    )
}

/// One prompt's rows: from the checkpoint when it holds them, else sampled (and then stored).
async fn produce(
    spec: Arc<SampleSpec>,
    counters: Arc<Counters>,
    key: String,
    id: ScalarValue,
    input: PromptInput,
) -> DfResult<PromptResult> {
    if spec.checkpoint.is_some() {
        let (s, k) = (spec.clone(), key.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            s.checkpoint.as_ref().and_then(|c| c.load(&k, &s.schema))
        })
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if let Some(result) = loaded {
            counters.prompts.add(1);
            counters.from_checkpoint.add(1);
            counters.candidates.add(result.candidates.len());
            spec.stats
                .add_prompt(result.candidates.len() as u64, &[], true);
            return Ok(result);
        }
    }
    let has_prompt = input
        .prompt
        .as_deref()
        .is_some_and(|p| !p.trim().is_empty());
    if has_prompt {
        spec.preflight().await?;
    }
    let calls = Arc::new(CallCounters::default());
    let (candidates, stats) = match spec.budget.exhausted(&spec.stats) {
        Some(reason) if has_prompt => budget_rows(reason),
        _ => {
            CALL_COUNTERS
                .scope(calls.clone(), spec.sampler.sample(&input))
                .await?
        }
    };
    counters
        .retries
        .add(calls.retries.load(Ordering::Relaxed) as usize);
    counters.policy_wait.add_duration(Duration::from_nanos(
        calls.policy_wait_ns.load(Ordering::Relaxed),
    ));
    counters.reward_wait.add_duration(Duration::from_nanos(
        calls.reward_wait_ns.load(Ordering::Relaxed),
    ));
    counters.prompts.add(1);
    counters.policy_requests.add(stats.policy_requests as usize);
    counters.reward_texts.add(stats.reward_texts as usize);
    counters.prompt_tokens.add(stats.prompt_tokens as usize);
    counters
        .completion_tokens
        .add(stats.completion_tokens as usize);
    counters.failed_candidates.add(stats.error_kinds.len());
    counters.candidates.add(candidates.len());
    let called = stats.policy_requests > 0;
    let policy_model = if called {
        Some(spec.sampler.policy.model().await?)
    } else {
        None
    };
    let result = PromptResult {
        id,
        prompt: input.prompt,
        preference: input.preference,
        method: spec.sampler.method,
        policy_model,
        reward_model: called.then(|| spec.sampler.reward.model_label()),
        candidates,
    };
    // only complete prompts are kept: a re-run retries the failed ones
    let complete = called && result.candidates.iter().all(|c| c.error.is_none());
    if complete && spec.checkpoint.is_some() {
        let s = spec.clone();
        let stored = result.clone();
        tokio::task::spawn_blocking(move || match &s.checkpoint {
            Some(c) => c.store(&key, &s.schema, &stored),
            None => Ok(()),
        })
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))??;
    }
    spec.stats
        .add_prompt(result.candidates.len() as u64, &stats.error_kinds, false);
    spec.stats.add_reward_texts(stats.reward_texts);
    Ok(result)
}

fn text_column(batch: &RecordBatch, name: &str) -> DfResult<ArrayRef> {
    let col = batch.column_by_name(name).ok_or_else(|| {
        DataFusionError::Execution(format!("input column {name:?} missing from the scan"))
    })?;
    Ok(cast(col, &DataType::Utf8)?)
}

/// A stable id for a prompt without one: the first 16 hex digits of SHA-256 of its text.
pub fn derived_id(prompt: &str) -> String {
    let d = Sha256::digest(prompt.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The prompts of one input batch.
fn prompts_of(spec: &SampleSpec, batch: &RecordBatch) -> DfResult<Vec<(ScalarValue, PromptInput)>> {
    let cols = &spec.columns;
    let prompts = text_column(batch, &cols.prompt)?;
    let prompts = prompts.as_string::<i32>();
    let prefs = match &cols.preference {
        Some(p) => Some(text_column(batch, p)?),
        None => None,
    };
    let ids = match &cols.id {
        Some(name) => Some(batch.column_by_name(name).cloned().ok_or_else(|| {
            DataFusionError::Execution(format!("input column {name:?} missing from the scan"))
        })?),
        None => None,
    };
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let prompt = prompts
            .is_valid(row)
            .then(|| prompts.value(row).to_string());
        let (id, id_text) = match &ids {
            Some(arr) => {
                let v = ScalarValue::try_from_array(arr, row)?;
                let text = if v.is_null() {
                    derived_id(prompt.as_deref().unwrap_or(""))
                } else {
                    scalar_text(&v)
                };
                (v, text)
            }
            None => {
                let text = derived_id(prompt.as_deref().unwrap_or(""));
                (ScalarValue::Utf8(Some(text.clone())), text)
            }
        };
        let row_pref = prefs.as_ref().and_then(|p| {
            let p = p.as_string::<i32>();
            (p.is_valid(row) && !p.value(row).trim().is_empty()).then(|| p.value(row).to_string())
        });
        let (preference, per_row) = match row_pref {
            Some(p) => (Some(p), true),
            None => (spec.default_preference.clone(), false),
        };
        out.push((
            id,
            PromptInput {
                id_text,
                prompt,
                preference,
                preference_per_row: per_row,
            },
        ));
    }
    Ok(out)
}

/// The id as plain text (no quotes), for seeds.
fn scalar_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}
