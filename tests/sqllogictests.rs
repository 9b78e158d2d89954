//! Runs every `tests/slt/*.slt` file against the project's own `SessionContext` (the one the
//! CLI uses), with the built-in simulator started on 127.0.0.1 and the endpoints pointed at it.
//! `PRS_SLT_UPDATE=1 cargo test --test sqllogictests` rewrites the expected results.
//! `cargo test --test sqllogictests -- NAME` runs only files whose name contains NAME.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;
use datafusion_prs::PrsConfig;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};

struct Db {
    ctx: SessionContext,
}

#[derive(Debug)]
struct SltError(String);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SltError {}

impl From<DataFusionError> for SltError {
    fn from(e: DataFusionError) -> Self {
        SltError(e.to_string())
    }
}

fn column_type(t: &DataType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() || matches!(t, DataType::Decimal128(..)) {
        DefaultColumnType::FloatingPoint
    } else {
        DefaultColumnType::Text
    }
}

#[async_trait]
impl AsyncDB for Db {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let mut statements = DFParser::parse_sql(sql)?;
        let stmt = statements
            .pop_front()
            .ok_or_else(|| SltError("empty statement".into()))?;
        let plan = self.ctx.state().statement_to_plan(stmt).await?;
        let df = self.ctx.execute_logical_plan(plan).await?;
        let schema = df.schema().clone();
        let batches = df.collect().await?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let opts = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for b in &batches {
            let fmts = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SltError(e.to_string()))?;
            for r in 0..b.num_rows() {
                let cells: Vec<String> = fmts
                    .iter()
                    .map(|f| {
                        let s = f.value(r).to_string().trim_end().to_string();
                        if s.is_empty() {
                            "(empty)".to_string()
                        } else {
                            s
                        }
                    })
                    .collect();
                // Multi-line cells (plans) continue on rows of their own, indentation shown as '-'.
                let mut first = Vec::new();
                let mut extra = Vec::new();
                for c in cells {
                    let mut lines = c.lines();
                    first.push(lines.next().unwrap_or("").to_string());
                    for l in lines {
                        let body = l.trim_start();
                        extra.push(vec![format!("{}{body}", "-".repeat(l.len() - body.len()))]);
                    }
                }
                rows.push(first);
                rows.extend(extra);
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "prs"
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let sim = Arc::new(prs_sim::start(([127, 0, 0, 1], 0).into()).await?);
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("tests/slt"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "slt"))
            .filter(|p| {
                filter
                    .as_deref()
                    .is_none_or(|f| p.to_string_lossy().contains(f))
            })
            .collect();
        files.sort();
        let update = std::env::var("PRS_SLT_UPDATE").is_ok_and(|v| v == "1");
        let mut failures = Vec::new();
        for file in &files {
            let sim = sim.clone();
            let make = move || {
                let sim = sim.clone();
                async move {
                    let mut cfg = PrsConfig::default();
                    cfg.set_checked("policy_url", &sim.policy_url(), "slt")
                        .map_err(|e| SltError(e.to_string()))?;
                    cfg.set_checked("reward_url", &sim.reward_url(), "slt")
                        .map_err(|e| SltError(e.to_string()))?;
                    Ok::<_, SltError>(Db {
                        ctx: datafusion_prs::session_context(cfg),
                    })
                }
            };
            let mut runner = Runner::new(make);
            let result = if update {
                runner
                    .update_test_file(
                        file,
                        " ",
                        sqllogictest::default_validator,
                        sqllogictest::default_normalizer,
                        sqllogictest::default_column_validator,
                    )
                    .await
                    .map_err(|e| e.to_string())
            } else {
                runner.run_file_async(file).await.map_err(|e| e.to_string())
            };
            match result {
                Ok(()) => println!("ok   {}", file.display()),
                Err(e) => {
                    println!("FAIL {}\n{e}", file.display());
                    failures.push(file.display().to_string());
                }
            }
        }
        if files.is_empty() {
            return Err("no .slt files found".into());
        }
        if !failures.is_empty() {
            return Err(format!(
                "{} slt file(s) failed: {}",
                failures.len(),
                failures.join(", ")
            )
            .into());
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
