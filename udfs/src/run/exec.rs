//! `SampleExec`: the execution node of a sampling call. A unary node over the input scan; each
//! input partition's prompts go through a [`PromptPipeline`] and rows stream out, in a
//! [`SampleStream`], as prompts finish. Dropping the stream (e.g. `LIMIT`) drops the in-flight
//! requests.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_datafusion_err, internal_err};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{RecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet, RecordOutput,
};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::stream::BoxStream;
use futures::{stream, Stream, StreamExt, TryStreamExt};

use super::admission::Window;
use super::pipeline::{PromptPipeline, SampleMetrics};
use super::runtime::CallRuntime;
use super::single_flight::ExecGuard;
use crate::sampler::Method;
use crate::schema::to_batch;
use crate::text::prompts_of;

/// Finished prompts gathered into one output batch when they are ready together.
const PROMPTS_PER_BATCH: usize = 32;

#[derive(Debug)]
pub struct SampleExec {
    input: Arc<dyn ExecutionPlan>,
    runtime: Arc<CallRuntime>,
    /// Full output schema.
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    /// The query needs at most this many rows (`LIMIT`): fewer prompts start at once.
    limit: Option<usize>,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    /// Shared by this node's open partition streams: the node counts once in its flight.
    open_streams: Mutex<Weak<ExecGuard>>,
}

impl SampleExec {
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        runtime: Arc<CallRuntime>,
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
            runtime,
            schema,
            projection,
            limit: None,
            props: Arc::new(props),
            metrics: ExecutionPlanMetricsSet::new(),
            open_streams: Mutex::new(Weak::new()),
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

    /// Which prompts start when: the window of `prompt_concurrency`, or fewer prompts under a
    /// limit.
    fn window(&self) -> Window {
        let s = &self.runtime.sampler;
        let n = s.n();
        let first_width = s.widths.first().copied().unwrap_or(n);
        let window = Window::new(self.runtime.prompt_concurrency, first_width, n)
            .growing(self.runtime.grow_window);
        match self.limit {
            Some(rows) => window.at_most(rows.div_ceil(n.max(1))),
            None => window,
        }
    }

    /// What the sampling call this node runs runs with.
    pub fn runtime(&self) -> &Arc<CallRuntime> {
        &self.runtime
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
        let s = &self.runtime.sampler;
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
        if let Some(max_extra) = s.unique_max_extra {
            write!(f, ", unique (up to {max_extra} extra samples)")?;
        }
        if let Some(pattern) = &s.answer_pattern {
            write!(f, ", answer_pattern={:?}", pattern.source())?;
        }
        write!(
            f,
            ", policy={} model={}, ",
            self.runtime.policy.base_url(),
            self.runtime
                .policy
                .configured_model()
                .unwrap_or("(from /models)"),
        )?;
        match &self.runtime.reward {
            Some(r) => write!(
                f,
                "reward={} protocol={}",
                r.base_url(),
                r.protocol().as_str()
            )?,
            // the components (each with its model and address), or the verifier
            None => write!(f, "reward={}", s.reward_label())?,
        }
        match (&s.judge, &self.runtime.judge_client) {
            (Some(judge), Some(client)) => write!(
                f,
                ", judge={} model={} top_k={}",
                client.base_url(),
                client.configured_model().unwrap_or("(from /models)"),
                judge.top_k
            ),
            _ => Ok(()),
        }
    }
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
            .map_err(|_| internal_datafusion_err!("SampleExec takes one child"))?;
        Ok(Arc::new(
            SampleExec::try_new(
                child,
                self.runtime.clone(),
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
        if let Some(checkpoint) = &self.runtime.checkpoint {
            checkpoint.prepare()?;
        }
        self.count_expected_prompts(partition);
        let input = self.input.execute(partition, context)?;
        let rt = self.runtime.clone();
        let prompts = input
            .map(move |batch| {
                let default_preference = rt.default_preference.as_deref();
                prompts_of(&rt.columns, default_preference, &batch?)
            })
            .map_ok(|prompts| stream::iter(prompts.into_iter().map(Ok)))
            .try_flatten();
        let pipeline = PromptPipeline {
            runtime: self.runtime.clone(),
            metrics: Arc::new(SampleMetrics::new(&self.metrics, partition)),
        };
        let results = pipeline.run(prompts, self.window());
        Ok(Box::pin(SampleStream::new(
            self,
            results,
            BaselineMetrics::new(&self.metrics, partition),
            self.flight_guard()?,
        )))
    }
}

impl SampleExec {
    /// The input's exact row count, when its statistics know it, feeds progress and ETA.
    fn count_expected_prompts(&self, partition: usize) {
        let args = StatisticsArgs::new().with_partition(Some(partition));
        if let Ok(stats) = StatisticsContext::new().compute(self.input.as_ref(), &args) {
            if let Precision::Exact(rows) = stats.num_rows {
                self.runtime.stats.add_expected_prompts(rows as u64);
            }
        }
    }

    /// This node counts once in its call's flight while any of its streams is open, so results
    /// are kept only when a second node of the same call runs at the same time.
    fn flight_guard(&self) -> DfResult<Arc<ExecGuard>> {
        let Ok(mut live) = self.open_streams.lock() else {
            return internal_err!("SampleExec stream lock poisoned");
        };
        Ok(match live.upgrade() {
            Some(guard) => guard,
            None => {
                let guard = Arc::new(self.runtime.flight.register_exec());
                *live = Arc::downgrade(&guard);
                guard
            }
        })
    }
}

/// The output of one partition: finished prompts gathered into record batches (up to
/// [`PROMPTS_PER_BATCH`] prompts that are ready together), projected as the query asks.
pub struct SampleStream {
    /// The projected output schema.
    schema: SchemaRef,
    batches: BoxStream<'static, DfResult<RecordBatch>>,
    /// Keeps the node counted in its call's flight while the stream lives.
    _flight: Arc<ExecGuard>,
    /// A poll panicked: the stream has ended (with an error).
    panicked: bool,
}

impl SampleStream {
    fn new(
        exec: &SampleExec,
        results: impl Stream<Item = DfResult<Arc<crate::schema::PromptResult>>> + Send + 'static,
        baseline: BaselineMetrics,
        flight: Arc<ExecGuard>,
    ) -> Self {
        let schema = exec.schema.clone();
        let projection = exec.projection.clone();
        let batches = results
            .try_ready_chunks(PROMPTS_PER_BATCH)
            .map_err(|e| e.1)
            .and_then(move |chunk| {
                // compute here is turning candidates into Arrow; the rest is waiting
                let timer = baseline.elapsed_compute().timer();
                let batch = to_batch(&schema, &chunk)
                    .map_err(DataFusionError::from)
                    .and_then(|batch| match &projection {
                        Some(p) => Ok(batch.project(p)?),
                        None => Ok(batch),
                    });
                timer.done();
                futures::future::ready(batch.map(|b| b.record_output(&baseline)))
            })
            .boxed();
        SampleStream {
            schema: exec.props.eq_properties.schema().clone(),
            batches,
            _flight: flight,
            panicked: false,
        }
    }
}

impl Stream for SampleStream {
    type Item = DfResult<RecordBatch>;

    /// A panic becomes the stream's last item, an error: it never unwinds into the host (one
    /// across an FFI boundary, as DataFusion's Python package, would abort).
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.panicked {
            return Poll::Ready(None);
        }
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.batches.poll_next_unpin(cx)
        }));
        polled.unwrap_or_else(|_| {
            self.panicked = true;
            Poll::Ready(Some(Err(internal_datafusion_err!(
                "prs: sampling panicked (see the message above); this is a bug, please report it"
            ))))
        })
    }
}

impl RecordBatchStream for SampleStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
