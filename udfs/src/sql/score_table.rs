//! `prs_score(source [, options])`: every row of a table with a `reward` for it, scored through
//! the reward endpoint. The same scores as `SELECT *, reward(prompt, response, preference)`,
//! for hosts that cannot run an async scalar UDF (DataFusion's Python package, whose FFI
//! carries none), and for re-scoring a candidates table with another reward model.
//!
//! The source is a Parquet path, glob or table name, as for the samplers. The prompt and
//! preference columns are found as the samplers find theirs (`prs.prompt_column`,
//! `prs.preference_column`); the response is `response` (`prs.response_column`). The output
//! is the input's columns and then `reward` (Float64, null where the prompt or response is
//! null); an input column named `reward` is replaced. With `prs.verifier` and a reference
//! column (`prs.reference_column`, else `reference`), `verified` follows (Boolean, as
//! `verify()` gives it), replacing an input column of that name.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::internal_datafusion_err;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::TryStreamExt;

use super::reward_udf::RowScorer;
use super::source::{self, ColumnSettings};
use super::table_function::{call_settings, source_arg};
use crate::config::{PrsConfig, Verifier};
use crate::error::{PrsError, Result};
use crate::run::JobStats;
use crate::schema::{rewards_column, rewards_type};
use crate::verify::{verdict_column, Check};

/// The function's SQL name.
pub const NAME: &str = "prs_score";
/// The column it adds.
pub const REWARD: &str = "reward";
/// The column it adds with `prs.reward_components`: each component's score.
const REWARDS: &str = "rewards";
/// The column it adds with a verifier and a reference column.
const VERIFIED: &str = "verified";

/// The `prs_score` table function.
#[derive(Debug, Default)]
pub struct ScoreFunction {
    /// Settings of a host whose session cannot hold the `prs` extension (across an FFI
    /// boundary): used instead of the session's.
    settings: Option<PrsConfig>,
    /// Plans of this client run on other machines, which have no codec for this function.
    distributed: bool,
}

impl ScoreFunction {
    pub fn new() -> Self {
        Self::default()
    }

    /// The function with fixed settings, whatever the calling session holds; per-call options
    /// still apply.
    pub fn with_settings(settings: PrsConfig) -> Self {
        ScoreFunction {
            settings: Some(settings),
            distributed: false,
        }
    }

    /// For a client whose plans run on other machines: every call is refused at planning,
    /// naming what works there instead.
    pub fn distributed() -> Self {
        ScoreFunction {
            settings: None,
            distributed: true,
        }
    }

    fn plan(&self, args: &TableFunctionArgs) -> Result<ScoreTable> {
        if self.distributed {
            return Err(PrsError::arg(
                NAME,
                "prs_score runs in one process and is not sent to a cluster's executors; \
                 there, use SELECT *, reward(prompt, response) FROM ...",
            ));
        }
        let exprs = args.exprs();
        if !(1..=2).contains(&exprs.len()) {
            return Err(PrsError::arg(
                NAME,
                format!(
                    "expected {NAME}(source [, options]), got {} argument(s)",
                    exprs.len()
                ),
            ));
        }
        let source_name = source_arg(&exprs[0], NAME)?;
        let cfg = call_settings(self.settings.as_ref(), args, exprs.get(1), NAME)?;
        ScoreTable::new(args.session(), &source_name, &cfg)
    }
}

impl TableFunctionImpl for ScoreFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        Ok(Arc::new(self.plan(&args)?))
    }
}

/// What scores a batch: the same row scorer as `reward()`, and where the columns are.
struct Scorer {
    rows: RowScorer,
    prompt: usize,
    response: usize,
    preference: Option<usize>,
    /// With a verifier and a reference column: the check and the reference column.
    check: Option<(Arc<Check>, usize)>,
    /// The reference column, for verifier components.
    reference: Option<usize>,
    /// The input columns the output keeps, in order (all but an old `reward`).
    keep: Vec<usize>,
    /// The output: the kept columns, then `reward`.
    schema: SchemaRef,
}

impl fmt::Debug for Scorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scorer")
            .field("reward", &self.rows.describe())
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Scorer {
    fn new(
        source_name: &str,
        input: &SchemaRef,
        cfg: &PrsConfig,
        stats: Arc<JobStats>,
    ) -> Result<Self> {
        let named = ColumnSettings::from_config(cfg);
        let columns = source::columns(source_name, input, &named)?;
        let response = source::response_column(source_name, input, &named)?;
        let index = |name: &str| {
            input.index_of(name).map_err(|_| PrsError::Input {
                source_name: source_name.to_string(),
                reason: format!("column {name:?} vanished from the schema"),
            })
        };
        let check = match (cfg.verifier, &columns.reference) {
            (Verifier::None, _) | (_, None) => None,
            (_, Some(reference)) => Some((
                Arc::new(Check::from_config(cfg, Verifier::None)?),
                index(reference)?,
            )),
        };
        let rows = RowScorer::new(cfg, stats)?;
        let mut added = vec![Field::new(REWARD, DataType::Float64, true)];
        if rows.has_components() {
            added.push(Field::new(REWARDS, rewards_type(), true));
        }
        if check.is_some() {
            added.push(Field::new(VERIFIED, DataType::Boolean, true));
        }
        let keep: Vec<usize> = (0..input.fields().len())
            .filter(|i| added.iter().all(|a| a.name() != input.field(*i).name()))
            .collect();
        let mut fields: Vec<Field> = keep.iter().map(|i| input.field(*i).clone()).collect();
        fields.extend(added);
        Ok(Scorer {
            reference: columns.reference.as_deref().map(index).transpose()?,
            rows,
            prompt: index(&columns.prompt)?,
            response: index(&response)?,
            preference: columns.preference.as_deref().map(index).transpose()?,
            check,
            keep,
            schema: Arc::new(Schema::new_with_metadata(fields, input.metadata().clone())),
        })
    }

    /// `batch` (of the whole input schema) with its rewards.
    async fn score(&self, batch: RecordBatch) -> DfResult<RecordBatch> {
        let text = |i: usize| cast(batch.column(i), &DataType::Utf8);
        let prompt = text(self.prompt)?;
        let response = text(self.response)?;
        let preference = self.preference.map(text).transpose()?;
        let reference = self.reference.map(text).transpose()?;
        let scores = self
            .rows
            .score(
                prompt.as_string::<i32>(),
                response.as_string::<i32>(),
                preference.as_ref().map(|p| p.as_string::<i32>()),
                reference.as_ref().map(|r| r.as_string::<i32>()),
            )
            .await?;
        let mut columns: Vec<ArrayRef> =
            self.keep.iter().map(|i| batch.column(*i).clone()).collect();
        let reward = scores.iter().map(|s| s.as_ref().map(|(r, _)| *r));
        columns.push(Arc::new(Float64Array::from_iter(reward)));
        if self.rows.has_components() {
            let each = scores
                .iter()
                .map(|s| s.as_ref().and_then(|(_, m)| m.as_ref()));
            columns.push(rewards_column(each)?);
        }
        if let Some((check, reference)) = &self.check {
            let reference = text(*reference)?;
            let verified = verdict_column(
                check.clone(),
                response.as_string::<i32>(),
                reference.as_string::<i32>(),
                NAME,
            )
            .await;
            columns.push(Arc::new(verified));
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// The provider a `prs_score` call returns.
#[derive(Debug)]
pub struct ScoreTable {
    input: Arc<dyn TableProvider>,
    scorer: Arc<Scorer>,
}

impl ScoreTable {
    /// Resolve `source_name` in `session` (reads its schema only) and check its columns.
    pub fn new(session: &dyn Session, source_name: &str, cfg: &PrsConfig) -> Result<Self> {
        let input = source::resolve(session, source_name)?;
        let stats = JobStats::of(session.config());
        let scorer = Scorer::new(source_name, &input.schema(), cfg, stats)?;
        Ok(ScoreTable {
            input,
            scorer: Arc::new(scorer),
        })
    }
}

#[async_trait]
impl TableProvider for ScoreTable {
    fn schema(&self) -> SchemaRef {
        self.scorer.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // filters stay above this node (no pushdown, the default), so a LIMIT may go to the
        // input: only the rows it keeps are scored
        let input = self.input.scan(state, None, &[], limit).await?;
        Ok(Arc::new(ScoreExec::try_new(
            input,
            self.scorer.clone(),
            projection.cloned(),
        )?))
    }
}

/// The execution node: each input batch comes out with its rewards, in order, per partition.
#[derive(Debug)]
pub struct ScoreExec {
    input: Arc<dyn ExecutionPlan>,
    scorer: Arc<Scorer>,
    projection: Option<Vec<usize>>,
    props: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl ScoreExec {
    fn try_new(
        input: Arc<dyn ExecutionPlan>,
        scorer: Arc<Scorer>,
        projection: Option<Vec<usize>>,
    ) -> DfResult<Self> {
        let projected = match &projection {
            Some(p) => Arc::new(scorer.schema.project(p)?),
            None => scorer.schema.clone(),
        };
        let props = PlanProperties::new(
            EquivalenceProperties::new(projected),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(ScoreExec {
            input,
            scorer,
            projection,
            props: Arc::new(props),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for ScoreExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ScoreExec: {}", self.scorer.rows.describe())
    }
}

impl ExecutionPlan for ScoreExec {
    fn name(&self) -> &str {
        "ScoreExec"
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
            .map_err(|_| internal_datafusion_err!("ScoreExec takes one child"))?;
        Ok(Arc::new(ScoreExec::try_new(
            child,
            self.scorer.clone(),
            self.projection.clone(),
        )?))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let scored = MetricBuilder::new(&self.metrics).counter("scored_rows", partition);
        let scorer = self.scorer.clone();
        let projection = self.projection.clone();
        let out = self
            .input
            .execute(partition, context)?
            .and_then(move |batch| {
                let (scorer, projection, scored) =
                    (scorer.clone(), projection.clone(), scored.clone());
                async move {
                    let batch = scorer.score(batch).await?;
                    scored
                        .add(batch.num_rows() - batch.column(batch.num_columns() - 1).null_count());
                    match &projection {
                        Some(p) => Ok(batch.project(p)?),
                        None => Ok(batch),
                    }
                }
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.props.eq_properties.schema().clone(),
            out,
        )))
    }
}
