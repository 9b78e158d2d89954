//! Running a script: parse its statements, plan and run each, print what it returns, and read
//! back the counters of the jobs it ran on a cluster.

use datafusion::arrow::array::RecordBatch;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement};

use super::error::{prefix, CliError, Position};
use super::output;
use super::print::{print_result, terminal_text};

/// What a statement returned.
struct StatementResult {
    batches: Vec<RecordBatch>,
    columns: usize,
    /// An EXPLAIN (ANALYZE): its plans are text to print whole.
    explain: bool,
}

/// Run `;`-separated statements, printing results to stdout.
///
/// With `stage_copies`, a `COPY ... TO` a local path writes all or nothing (see [`output`]).
pub async fn run_script(
    ctx: &SessionContext,
    script: &str,
    max_width: usize,
    stage_copies: bool,
) -> Result<(), CliError> {
    let statements = DFParser::parse_sql(script).map_err(CliError::Syntax)?;
    let count = statements.len();
    // cluster queries whose counters could not be read back
    let mut uncounted = Vec::new();
    for (i, stmt) in statements.into_iter().enumerate() {
        // a script of one statement needs no position in its errors
        let at = (count > 1).then_some(Position {
            index: i + 1,
            count,
        });
        let result = run_statement(ctx, stmt, at, stage_copies).await?;
        // the jobs it ran on a cluster: their counters are the executors'
        if let Err(e) = cluster_counters(ctx).await {
            let at = prefix(&at);
            let message = format!("{at}the query ran, but {e}");
            eprintln!("prs: warning: {}", terminal_text(&message));
            uncounted.push(format!("{at}{e}"));
        }
        print_result(&result.batches, result.columns, result.explain, max_width)?;
    }
    if !uncounted.is_empty() {
        // fail closed: a scheduled job must not pass its failure check on counts it never saw
        return Err(CliError::Uncounted(uncounted));
    }
    Ok(())
}

/// Plan and run statement `at` and collect what it returns.
async fn run_statement(
    ctx: &SessionContext,
    stmt: Statement,
    at: Option<Position>,
    stage_copies: bool,
) -> Result<StatementResult, CliError> {
    let plan = ctx
        .state()
        .statement_to_plan(stmt)
        .await
        .map_err(CliError::at(at))?;
    let explain = matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_));
    let (plan, staged) = match stage_copies {
        true => output::stage(plan).map_err(|(target, source)| CliError::Output {
            at,
            target,
            source,
        })?,
        false => (plan, None),
    };
    let result = execute(ctx, plan, at).await;
    match (staged, &result) {
        (Some(staged), Ok(_)) => {
            let target = staged.target().to_path_buf();
            let kept = staged.publish().map_err(|source| CliError::Output {
                at,
                target: target.clone(),
                source,
            })?;
            warn_kept(&target, &kept, at);
        }
        (Some(staged), Err(_)) => staged.discard(),
        (None, _) => {}
    }
    let (batches, columns) = result?;
    Ok(StatementResult {
        batches,
        columns,
        explain,
    })
}

/// Say which data files of a directory target prs did not write and kept: a reader of the
/// directory reads them along with the output.
fn warn_kept(target: &std::path::Path, kept: &[std::path::PathBuf], at: Option<Position>) {
    if kept.is_empty() {
        return;
    }
    let names: Vec<String> = kept
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or(p.as_os_str())
                .to_string_lossy()
                .to_string()
        })
        .collect();
    let message = format!(
        "{}COPY to {}: kept {} file(s) that this COPY did not write, which a reader of the \
         directory reads too: {}; move them elsewhere if they are not part of this output",
        prefix(&at),
        target.display(),
        kept.len(),
        names.join(", ")
    );
    eprintln!("prs: warning: {}", terminal_text(&message));
}

/// Run a planned statement; its batches and how many columns it returns.
async fn execute(
    ctx: &SessionContext,
    plan: LogicalPlan,
    at: Option<Position>,
) -> Result<(Vec<RecordBatch>, usize), CliError> {
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(CliError::at(at))?;
    let columns = df.schema().fields().len();
    let batches = df.collect().await.map_err(CliError::at(at))?;
    Ok((batches, columns))
}

/// Add the counters of the jobs the last statement ran on a cluster to the session's; returns
/// how many jobs were counted (0 off a cluster).
#[cfg(feature = "cluster")]
async fn cluster_counters(ctx: &SessionContext) -> Result<usize, crate::cluster::ClusterError> {
    crate::cluster::absorb_job_counters(ctx).await
}

#[cfg(not(feature = "cluster"))]
async fn cluster_counters(_ctx: &SessionContext) -> Result<usize, CliError> {
    Ok(0)
}
