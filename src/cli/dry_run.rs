//! `prs sql --dry-run`: what a script would cost, without calling any endpoint.
//!
//! Statements that only change the session (SET, CREATE EXTERNAL TABLE, CREATE VIEW, DROP) run;
//! every statement that would sample is planned, its sampling nodes found, and their prompts
//! counted by reading the input (Parquet only). `CREATE TABLE t AS <sampling query>` registers an
//! empty `t` with the right schema so that later statements still plan.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{CopyToSource, DFParser, Statement};
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{ObjectName, Query, TableFactor, Visit, Visitor};
use datafusion_prs::SampleExec;

use crate::cli::error::{CliError, Position};
use crate::cli::print::out;

/// Totals of a script.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Cost {
    pub sampling_calls: u64,
    pub prompts: u64,
    pub policy_requests: u64,
    /// The most reward requests: every batch holds one prompt's layer only.
    pub reward_requests: u64,
    /// The fewest: batches filled across prompts.
    pub min_reward_requests: u64,
    pub reward_texts: u64,
    pub max_generated_tokens: u64,
    /// Most extra samples for duplicates (`prs.unique`): each may add a policy request, a
    /// reward text and a sample's tokens to the figures above.
    pub max_extra_samples: u64,
    /// Requests to the judge (`prs.judge_top_k`).
    pub judge_requests: u64,
}

impl Cost {
    /// Requests and tokens, in words.
    fn describe(&self) -> String {
        let reward = if self.min_reward_requests < self.reward_requests {
            // micro-batching fills batches across prompts as they finish together
            format!(
                "{} to {} reward requests",
                self.min_reward_requests, self.reward_requests
            )
        } else {
            format!("{} reward requests", self.reward_requests)
        };
        let extra = match self.max_extra_samples {
            0 => String::new(),
            // each extra sample may be a request, a text and a sample's tokens more
            e => format!(" (+ up to {e} extra samples for duplicates, prs.unique: as many more policy requests and texts)"),
        };
        let judge = match self.judge_requests {
            0 => String::new(),
            j => format!(", {j} judge requests"),
        };
        format!(
            "{} policy requests, {reward} ({} texts scored){judge}, at most {} generated tokens{extra}",
            self.policy_requests, self.reward_texts, self.max_generated_tokens
        )
    }

    fn add(&mut self, o: &Cost) {
        self.sampling_calls += o.sampling_calls;
        self.prompts += o.prompts;
        self.policy_requests += o.policy_requests;
        self.reward_requests += o.reward_requests;
        self.min_reward_requests += o.min_reward_requests;
        self.reward_texts += o.reward_texts;
        self.max_generated_tokens += o.max_generated_tokens;
        self.max_extra_samples += o.max_extra_samples;
        self.judge_requests += o.judge_requests;
    }
}

fn sample_nodes(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<Arc<dyn ExecutionPlan>>) {
    if plan.downcast_ref::<SampleExec>().is_some() {
        out.push(plan.clone());
        return;
    }
    for child in plan.children() {
        sample_nodes(child, out);
    }
}

/// The cost of running `plan`: its sampling nodes' prompts, counted by reading their inputs.
async fn cost_of(ctx: &SessionContext, plan: &LogicalPlan) -> Result<Cost, DataFusionError> {
    let physical = ctx.state().create_physical_plan(plan).await?;
    let mut nodes = Vec::new();
    sample_nodes(&physical, &mut nodes);
    let mut total = Cost::default();
    for node in nodes {
        let Some(exec) = node.downcast_ref::<SampleExec>() else {
            continue;
        };
        let batches = collect(exec.input().clone(), ctx.task_ctx()).await?;
        let prompts: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let per = exec.runtime().cost_per_prompt();
        total.add(&Cost {
            sampling_calls: 1,
            prompts,
            policy_requests: prompts * per.policy_requests,
            reward_requests: prompts * per.reward_requests,
            min_reward_requests: (prompts * per.reward_texts)
                .div_ceil(per.reward_batch_size.max(1)),
            reward_texts: prompts * per.reward_texts,
            max_generated_tokens: prompts * per.max_generated_tokens,
            max_extra_samples: prompts * per.max_extra_samples,
            judge_requests: prompts * per.judge_requests,
        });
    }
    Ok(total)
}

/// Print the cost of each statement and the total; run only the statements that cost nothing.
pub async fn run(ctx: &SessionContext, script: &str) -> Result<Cost, CliError> {
    let statements = DFParser::parse_sql(script).map_err(CliError::Syntax)?;
    let count = statements.len();
    let mut total = Cost::default();
    for (i, stmt) in statements.into_iter().enumerate() {
        let at = Position {
            index: i + 1,
            count,
        };
        let state = ctx.state();
        let plan = match state.statement_to_plan(stmt.clone()).await {
            Ok(plan) => plan,
            // it reads what an earlier statement would have written (COPY ... TO)
            Err(e) if reads_missing_table(&state, &stmt, &e).await => {
                out(&format!(
                    "{at}: not planned, it reads output that a dry run does not write ({e})\n"
                ));
                continue;
            }
            Err(e) => return Err(CliError::at(Some(at))(e)),
        };
        let cost = statement_cost(ctx, plan)
            .await
            .map_err(CliError::at(Some(at)))?;
        if cost.sampling_calls > 0 {
            out(&format!(
                "{at}: {} sampling call(s) over {} prompts: {}\n",
                cost.sampling_calls,
                cost.prompts,
                cost.describe()
            ));
        }
        total.add(&cost);
    }
    out(&format!(
        "total: {} sampling call(s), {} prompts, {} (servers that ignore `n` and retries add \
         requests; nothing was called)\n",
        total.sampling_calls,
        total.prompts,
        total.describe()
    ));
    Ok(total)
}

/// The cost of one planned statement, running it if it only changes the session. `CREATE
/// TABLE t AS <query>` registers an empty `t` with the query's schema instead of running it.
async fn statement_cost(ctx: &SessionContext, plan: LogicalPlan) -> Result<Cost, DataFusionError> {
    match &plan {
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
            let cost = cost_of(ctx, &create.input).await?;
            let schema = Arc::new(create.input.schema().as_arrow().clone());
            let empty = MemTable::try_new(schema, vec![vec![]])?;
            ctx.register_table(create.name.clone(), Arc::new(empty))?;
            Ok(cost)
        }
        LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) => {
            ctx.execute_logical_plan(plan).await?.collect().await?;
            Ok(Cost::default())
        }
        _ => cost_of(ctx, &plan).await,
    }
}

/// Whether `stmt` failed to plan (`error`) because a table it reads does not exist.
///
/// DataFusion 55 reports an unknown table as a plan error (`table '...' not found`, under a
/// diagnostic) with no structured kind, so this asks the catalog what planning asked it: is
/// there a table the statement reads (a FROM / JOIN relation, as a name or as a URL such as
/// `'out/x.parquet'`, or the table of `COPY t TO`) that no schema resolves? Table functions,
/// CTEs and the tables a statement creates or inserts into are not reads; a missing table
/// *function* or column is a real error.
async fn reads_missing_table(
    state: &SessionState,
    stmt: &Statement,
    error: &DataFusionError,
) -> bool {
    if !matches!(error.find_root(), DataFusionError::Plan(_)) {
        return false;
    }
    let normalize = state
        .config()
        .options()
        .sql_parser
        .enable_ident_normalization;
    for table in tables_read(stmt, normalize) {
        if missing(state, table).await {
            return true;
        }
    }
    false
}

/// Whether the session has no table `reference`: no such catalog or schema, or no such table in
/// it (a lookup that fails with an error is not "no").
async fn missing(state: &SessionState, reference: TableReference) -> bool {
    match state.schema_for_ref(reference.clone()) {
        Ok(schema) => matches!(schema.table(reference.table()).await, Ok(None)),
        Err(_) => true,
    }
}

/// The tables `stmt` reads by name, without table-function calls and CTEs.
fn tables_read(stmt: &Statement, normalize: bool) -> Vec<TableReference> {
    let mut reads = ReadTables::default();
    let _ = match stmt {
        Statement::Statement(s) => s.visit(&mut reads),
        Statement::CopyTo(copy) => match &copy.source {
            CopyToSource::Relation(name) => {
                reads.tables.push(name.clone());
                ControlFlow::Continue(())
            }
            CopyToSource::Query(query) => query.visit(&mut reads),
        },
        Statement::Explain(explain) => return tables_read(&explain.statement, normalize),
        Statement::CreateExternalTable(_) | Statement::Reset(_) => ControlFlow::Continue(()),
    };
    let reference = |name: ObjectName| object_name_to_table_reference(name, normalize).ok();
    let ctes: Vec<TableReference> = reads.ctes.into_iter().filter_map(reference).collect();
    reads
        .tables
        .into_iter()
        .filter_map(reference)
        .filter(|table| !ctes.contains(table))
        .collect()
}

/// Collects the relations of FROM and JOIN clauses, and the CTE names, of a statement.
#[derive(Default)]
struct ReadTables {
    tables: Vec<ObjectName>,
    ctes: Vec<ObjectName>,
}

impl Visitor for ReadTables {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        for cte in query.with.iter().flat_map(|with| &with.cte_tables) {
            self.ctes
                .push(ObjectName::from(vec![cte.alias.name.clone()]));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, table: &TableFactor) -> ControlFlow<()> {
        // with arguments it is a table function call, `prs_sample(...)`
        if let TableFactor::Table {
            name, args: None, ..
        } = table
        {
            self.tables.push(name.clone());
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion_prs::PrsConfig;

    use super::*;

    /// Plan `sql` (one statement) and say whether its failure is a missing table.
    async fn missing_table(ctx: &SessionContext, sql: &str) -> bool {
        let stmt = DFParser::parse_sql(sql).unwrap().pop_front().unwrap();
        let state = ctx.state();
        let error = state.statement_to_plan(stmt.clone()).await.unwrap_err();
        reads_missing_table(&state, &stmt, &error).await
    }

    #[tokio::test]
    async fn an_unknown_table_is_a_plan_error_under_a_diagnostic() {
        // what DataFusion 55 gives: no structured "table not found" kind to match on
        let ctx = datafusion_prs::session_context(PrsConfig::default());
        let stmt = DFParser::parse_sql("SELECT * FROM nowhere")
            .unwrap()
            .pop_front()
            .unwrap();
        let error = ctx.state().statement_to_plan(stmt).await.unwrap_err();
        assert!(
            matches!(&error, DataFusionError::Diagnostic(_, inner)
                if matches!(**inner, DataFusionError::Plan(_))),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn missing_tables_are_told_from_other_planning_errors() {
        let ctx = datafusion_prs::session_context(PrsConfig::default());
        ctx.sql("CREATE TABLE t AS VALUES (1)").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let unwritten = dir.path().join("out/x.parquet");
        // tables an earlier statement would have written: by name or as a file
        assert!(missing_table(&ctx, "SELECT * FROM nowhere").await);
        assert!(missing_table(&ctx, "SELECT * FROM t JOIN nowhere ON true").await);
        let by_path = format!("SELECT * FROM '{}'", unwritten.display());
        assert!(missing_table(&ctx, &by_path).await);
        // real errors
        assert!(!missing_table(&ctx, "SELECT * FROM no_such_function(1)").await);
        assert!(!missing_table(&ctx, "SELECT nope FROM t").await);
        assert!(!missing_table(&ctx, "WITH c AS (SELECT 1 AS a) SELECT b FROM c").await);
        assert!(!missing_table(&ctx, "CREATE TABLE u AS SELECT no_such_function(1)").await);
        assert!(!missing_table(&ctx, "INSERT INTO nowhere VALUES (1)").await);
        // ... and through EXPLAIN and COPY
        assert!(missing_table(&ctx, "EXPLAIN SELECT * FROM nowhere").await);
        assert!(missing_table(&ctx, "COPY nowhere TO 'x.parquet'").await);
        assert!(missing_table(&ctx, "COPY (SELECT * FROM nowhere) TO 'x.parquet'").await);
    }

    #[tokio::test]
    async fn a_script_reading_its_own_output_still_counts() {
        let ctx = datafusion_prs::session_context(PrsConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.parquet");
        let script = format!(
            "COPY (SELECT 1 AS a) TO '{0}' STORED AS PARQUET; SELECT * FROM '{0}'",
            file.display()
        );
        let cost = run(&ctx, &script).await.unwrap();
        assert_eq!(cost.sampling_calls, 0);
        assert!(!file.exists(), "a dry run writes nothing");
        let error = run(&ctx, "SELECT * FROM no_such_function(1)").await;
        assert!(
            matches!(&error, Err(CliError::Statement { at: Some(at), .. }) if at.index == 1),
            "{error:?}"
        );
    }
}
