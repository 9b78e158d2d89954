//! `prs sql --dry-run`: what a script would cost, without calling any endpoint.
//!
//! Statements that only change the session (SET, CREATE EXTERNAL TABLE, CREATE VIEW, DROP) run;
//! every statement that would sample is planned, its sampling nodes found, and their prompts
//! counted by reading the input (Parquet only). `CREATE TABLE t AS <sampling query>` registers an
//! empty `t` with the right schema so that later statements still plan.

use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;
use datafusion_prs::exec::SampleExec;

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

async fn cost_of(ctx: &SessionContext, plan: &LogicalPlan) -> Result<Cost, String> {
    let state = ctx.state();
    let physical = state
        .create_physical_plan(plan)
        .await
        .map_err(|e| e.to_string())?;
    let mut nodes = Vec::new();
    sample_nodes(&physical, &mut nodes);
    let mut total = Cost::default();
    for node in nodes {
        let Some(exec) = node.downcast_ref::<SampleExec>() else {
            continue;
        };
        let batches = collect(exec.input().clone(), ctx.task_ctx())
            .await
            .map_err(|e| e.to_string())?;
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
        });
    }
    Ok(total)
}

/// Print the cost of each statement and the total; run only the statements that cost nothing.
pub async fn run(ctx: &SessionContext, script: &str) -> Result<Cost, String> {
    let statements = DFParser::parse_sql(script).map_err(|e| format!("SQL syntax: {e}"))?;
    let count = statements.len();
    let mut total = Cost::default();
    for (i, stmt) in statements.into_iter().enumerate() {
        let label = format!("statement {} of {count}", i + 1);
        let plan = match ctx.state().statement_to_plan(stmt).await {
            Ok(plan) => plan,
            // it reads what an earlier statement would have written (COPY ... TO)
            Err(e) if e.to_string().contains("not found") && e.to_string().contains("table") => {
                crate::cli::out(&format!(
                    "{label}: not planned, it reads output that a dry run does not write ({e})\n"
                ));
                continue;
            }
            Err(e) => return Err(format!("{label}: {e}")),
        };
        let cost = match &plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                let cost = cost_of(ctx, &create.input)
                    .await
                    .map_err(|e| format!("{label}: {e}"))?;
                let schema = Arc::new(create.input.schema().as_arrow().clone());
                let empty = MemTable::try_new(schema, vec![vec![]]).map_err(|e| e.to_string())?;
                ctx.register_table(create.name.clone(), Arc::new(empty))
                    .map_err(|e| format!("{label}: {e}"))?;
                cost
            }
            LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) => {
                ctx.execute_logical_plan(plan)
                    .await
                    .map_err(|e| format!("{label}: {e}"))?
                    .collect()
                    .await
                    .map_err(|e| format!("{label}: {e}"))?;
                Cost::default()
            }
            _ => cost_of(ctx, &plan)
                .await
                .map_err(|e| format!("{label}: {e}"))?,
        };
        if cost.sampling_calls > 0 {
            crate::cli::out(&format!(
                "{label}: {} sampling call(s) over {} prompts: {}\n",
                cost.sampling_calls,
                cost.prompts,
                cost.describe()
            ));
        }
        total.add(&cost);
    }
    crate::cli::out(&format!(
        "total: {} sampling call(s), {} prompts, {} (servers that ignore `n` and retries add \
         requests; nothing was called)\n",
        total.sampling_calls,
        total.prompts,
        total.describe()
    ));
    Ok(total)
}
