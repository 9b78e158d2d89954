//! [`SampleTable`]: the table provider a sampling call returns. It reads the input's schema at
//! planning and, when scanned, puts a [`SampleExec`] over the scan of the input's columns.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use super::call::SampleCall;
use super::source::{self, ColumnSettings};
use crate::error::Result;
use crate::run::{CallRuntime, JobStats, SampleExec};

/// The provider a sampling call returns.
#[derive(Debug)]
pub struct SampleTable {
    schema: SchemaRef,
    input: Arc<dyn TableProvider>,
    runtime: Arc<CallRuntime>,
    /// Planned for a distributed engine, whose tasks (one per input partition) each count
    /// their own requests and tokens: the budget is split across them.
    split_budget: bool,
}

impl SampleTable {
    /// Resolve the call's source in `session` (reads its schema only) and build the call.
    pub fn new(session: &dyn Session, call: SampleCall) -> Result<Self> {
        let input = source::resolve(session, &call.source)?;
        let named = ColumnSettings::from_config(&call.cfg);
        let columns = source::columns(&call.source, &input.schema(), &named)?;
        let runtime = CallRuntime::build(call, columns, JobStats::of(session.config()))?;
        Ok(SampleTable {
            schema: runtime.schema.clone(),
            input,
            runtime: Arc::new(runtime),
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
        &self.runtime.call
    }

    /// Indices of the input columns the sampler reads.
    fn input_columns(&self) -> DfResult<Vec<usize>> {
        let in_schema = self.input.schema();
        let cols = &self.runtime.columns;
        let mut wanted = vec![cols.prompt.as_str()];
        wanted.extend(cols.id.as_deref());
        wanted.extend(cols.preference.as_deref());
        wanted.extend(cols.reference.as_deref());
        let mut indices = Vec::new();
        for name in wanted {
            let i = in_schema.index_of(name)?;
            if !indices.contains(&i) {
                indices.push(i);
            }
        }
        Ok(indices)
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

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let indices = self.input_columns()?;
        let input = self.input.scan(state, Some(&indices), &[], None).await?;
        let runtime = if self.split_budget {
            let tasks = input.output_partitioning().partition_count();
            self.runtime.with_budget_share(tasks)?
        } else {
            self.runtime.clone()
        };
        Ok(Arc::new(
            SampleExec::try_new(input, runtime, self.schema.clone(), projection.cloned())?
                .with_limit(limit),
        ))
    }
}
