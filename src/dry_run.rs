//! `prs sql --dry-run`: what a script would cost, without calling any endpoint.
//!
//! Statements that only change the session (SET, CREATE EXTERNAL TABLE, CREATE VIEW, DROP) run;
//! every statement that would sample is planned, its sampling nodes found, and their prompts
//! counted by reading the input (Parquet only). `CREATE TABLE t AS <sampling query>` registers an
//! empty `t` with the right schema so that later statements still plan.

use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;
use datafusion_prs::exec::SampleExec;

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
        format!(
            "{} policy requests, {reward} ({} texts scored), at most {} generated tokens",
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
        let per = exec.spec().cost_per_prompt();
        total.add(&Cost {
            sampling_calls: 1,
            prompts,
            policy_requests: prompts * per.policy_requests,
            reward_requests: prompts * per.reward_requests,
            min_reward_requests: (prompts * per.reward_texts)
                .div_ceil(per.reward_batch_size.max(1)),
            reward_texts: prompts * per.reward_texts,
            max_generated_tokens: prompts * per.max_generated_tokens,
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
        let plan = match ctx.state().statement_to_plan(stmt).await {
            Ok(plan) => plan,
            // it reads what an earlier statement would have written (COPY ... TO)
            Err(e) if e.to_string().contains("not found") && e.to_string().contains("table") => {
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
