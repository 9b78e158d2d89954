//! `prs_report(candidates [, output])`: the report written from SQL, so that a job script (the
//! quickstart) or the shell ends with its picture. It returns one row, the page written and its
//! size. The page is written when the query runs (not when it is planned or EXPLAINed), all or
//! nothing, as `prs report` writes it, with the job's counters so far as its summary.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion_prs::literal_string;

use super::What;

/// The SQL name.
pub const NAME: &str = "prs_report";
/// Where the page goes when the call names no output.
pub const DEFAULT_OUTPUT: &str = "out/report.html";

/// The job summary so far (`prs sql --summary-json`'s fields), read when the page is written.
pub type SummaryFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// The `prs_report` table function.
#[derive(Clone, Default)]
pub struct ReportFunction {
    summary: Option<SummaryFn>,
}

impl ReportFunction {
    /// A function whose pages carry the job summary `summary` gives (none with `None`).
    pub fn new(summary: Option<SummaryFn>) -> ReportFunction {
        ReportFunction { summary }
    }
}

impl fmt::Debug for ReportFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportFunction")
            .field("summary", &self.summary.is_some())
            .finish()
    }
}

impl TableFunctionImpl for ReportFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let usage = |what: String| {
            DataFusionError::Plan(format!(
                "{NAME}(candidates [, output]): {what}; e.g. \
                 SELECT * FROM {NAME}('out/prs_candidates.parquet', '{DEFAULT_OUTPUT}')"
            ))
        };
        if exprs.is_empty() || exprs.len() > 2 {
            return Err(usage(format!(
                "takes 1 or 2 arguments, got {}",
                exprs.len()
            )));
        }
        let candidates = literal_string(&exprs[0]).ok_or_else(|| {
            usage("candidates (the first argument) must be a string literal: a Parquet path".into())
        })?;
        let output = match exprs.get(1) {
            None => DEFAULT_OUTPUT.to_string(),
            Some(e) => literal_string(e).ok_or_else(|| {
                usage("output (the second argument) must be a string literal: an .html path".into())
            })?,
        };
        let job = ReportJob {
            schema: schema(),
            candidates: candidates.into(),
            output: output.into(),
            summary: self.summary.clone(),
        };
        Ok(Arc::new(StreamingTable::try_new(
            schema(),
            vec![Arc::new(job)],
        )?))
    }
}

/// `report` (the page written) and `bytes` (its size).
fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("report", DataType::Utf8, false),
        Field::new("bytes", DataType::UInt64, false),
    ]))
}

/// One call's page, written when its one partition runs.
#[derive(Clone)]
struct ReportJob {
    schema: SchemaRef,
    candidates: PathBuf,
    output: PathBuf,
    summary: Option<SummaryFn>,
}

impl fmt::Debug for ReportJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportJob")
            .field("candidates", &self.candidates)
            .field("output", &self.output)
            .finish()
    }
}

impl ReportJob {
    async fn write(self) -> Result<RecordBatch> {
        let summary = self.summary.as_ref().map(|f| f());
        let what = What {
            candidates: &self.candidates,
            summary: summary.as_ref(),
            pairs: None,
        };
        let bytes = super::write(&what, &self.output).await?;
        let report = self.output.display().to_string();
        Ok(RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![report])),
                Arc::new(UInt64Array::from(vec![bytes as u64])),
            ],
        )?)
    }
}

impl PartitionStream for ReportJob {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let job = self.clone();
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(job.write()),
        ))
    }
}

/// Register `prs_report` in a job's local session, its pages carrying the job's counters and
/// the time since `started`.
pub fn register(ctx: &datafusion::prelude::SessionContext, started: std::time::Instant) {
    let stats = datafusion_prs::JobStats::of(ctx.state().config());
    let summary: SummaryFn = Arc::new(move || {
        let mut json = serde_json::to_value(stats.snapshot()).unwrap_or_default();
        if let Some(fields) = json.as_object_mut() {
            fields.insert("wall_secs".into(), started.elapsed().as_secs_f64().into());
        }
        json
    });
    ctx.register_udtf(NAME, Arc::new(ReportFunction::new(Some(summary))));
}
