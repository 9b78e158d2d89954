//! The `prs` command line: run SQL jobs, run the simulator, list settings.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::config::ExtensionOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;
use datafusion_prs::stats::{JobStats, StatsSnapshot};
use datafusion_prs::PrsConfig;

use crate::sim;

#[derive(Debug, Parser)]
#[command(
    name = "prs",
    version,
    about = "PRS and best-of-N sampling for LLM alignment data, as SQL over Parquet",
    after_help = "Settings: `prs settings` lists them all. Each can be given as PRS_<NAME> in the environment, \
                  --set name=value here, or SET prs.name = value in SQL. API keys come only from \
                  PRS_POLICY_API_KEY and PRS_REWARD_API_KEY."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing syntax), e.g. `info` or `datafusion_prs=debug`
    #[arg(long, global = true, env = "PRS_LOG", default_value = "warn")]
    pub log: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run SQL statements (SET, CREATE, COPY ... TO, SELECT), separated by `;`
    Sql(Box<SqlArgs>),
    /// Run the built-in SIMULATOR of a policy server (/v1) and a reward server (/pooling, /classify, /get_reward, /predict)
    Sim {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Model a continuous-batching engine: generation and scoring take time (see the flags
        /// below); without it every answer is instant
        #[arg(long)]
        engine: bool,
        #[command(flatten)]
        engine_config: crate::sim::engine::EngineConfig,
    },
    /// Run a Ballista scheduler that knows prs' functions (feature `cluster`)
    #[cfg(feature = "cluster")]
    Scheduler(crate::cluster::SchedulerArgs),
    /// Run a Ballista executor that knows prs' functions; it calls the endpoints itself, with
    /// API keys from its own environment (feature `cluster`)
    #[cfg(feature = "cluster")]
    Executor(crate::cluster::ExecutorArgs),
    /// List every setting with its current value (defaults + environment), env variable and description
    Settings {
        /// Print the README's markdown table of settings and their defaults instead
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// SQL text; several statements separated by `;`
    pub sql: Option<String>,
    /// Read SQL from files (run in order, after the SQL argument)
    #[arg(short = 'f', long = "file")]
    pub files: Vec<PathBuf>,
    /// Start the built-in simulator on 127.0.0.1 and point the policy and reward URLs at it
    #[arg(long)]
    pub sim: bool,
    /// Run the queries on a Ballista cluster: the scheduler's address, df://host:port (see
    /// `prs scheduler` / `prs executor`)
    #[arg(long, env = "PRS_CLUSTER", value_name = "URL")]
    pub cluster: Option<String>,
    /// Print how many prompts, requests and at most how many generated tokens the script would
    /// cost, without calling any endpoint (only SET / CREATE EXTERNAL TABLE / VIEW statements run)
    #[arg(long)]
    pub dry_run: bool,
    /// No progress bar (it is also off when stderr is not a terminal)
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the job summary (counters, errors by kind, exit code) as JSON to this file
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
    /// Widest cell printed in result tables (longer text is cut with …; 0 = no limit)
    #[arg(long, default_value_t = 60)]
    pub max_width: usize,
    #[command(flatten)]
    pub settings: SettingArgs,
}

/// Flags that feed the same settings as `SET prs.*` and `PRS_*`.
#[derive(Debug, Args, Default)]
pub struct SettingArgs {
    /// prs.policy_url: OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1
    #[arg(long)]
    pub policy_url: Option<String>,
    /// prs.policy_model (default: first model listed by the server)
    #[arg(long)]
    pub policy_model: Option<String>,
    /// prs.reward_url: reward server base URL, e.g. http://127.0.0.1:8001
    #[arg(long)]
    pub reward_url: Option<String>,
    /// prs.reward_model
    #[arg(long)]
    pub reward_model: Option<String>,
    /// prs.reward_protocol: vllm-pooling | vllm-classify | openrlhf | tei
    #[arg(long)]
    pub reward_protocol: Option<String>,
    /// Any setting, as NAME=VALUE (repeatable), e.g. --set temperature=0.7
    #[arg(short = 'c', long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

impl SettingArgs {
    /// Apply the flags onto `cfg` (after defaults and environment).
    pub fn apply(&self, cfg: &mut PrsConfig) -> Result<(), String> {
        let named = [
            ("policy_url", &self.policy_url),
            ("policy_model", &self.policy_model),
            ("reward_url", &self.reward_url),
            ("reward_model", &self.reward_model),
            ("reward_protocol", &self.reward_protocol),
        ];
        for (key, value) in named {
            if let Some(v) = value {
                cfg.set_checked(key, v, &format!("--{}", key.replace('_', "-")))
                    .map_err(|e| e.to_string())?;
            }
        }
        for item in &self.set {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("--set {item:?}: expected NAME=VALUE"))?;
            cfg.set_checked(k, v, "--set").map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Run the CLI; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Sql(args) => run_sql(&args).await,
        Command::Sim {
            host,
            port,
            engine,
            engine_config,
        } => {
            let addr: SocketAddr = match format!("{host}:{port}").parse() {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("Error: --host/--port {host}:{port}: {e}");
                    return 2;
                }
            };
            match sim::start_with(addr, engine.then_some(engine_config)).await {
                Ok(handle) => {
                    eprintln!(
                        "prs simulator (NOT a real model) listening on {}\n  policy: {}  (model {})\n  reward: {}  (vllm-pooling, vllm-classify, openrlhf, tei)",
                        handle.addr,
                        handle.policy_url(),
                        sim::SIM_MODEL,
                        handle.reward_url()
                    );
                    let _ = tokio::signal::ctrl_c().await;
                    0
                }
                Err(e) => {
                    eprintln!("Error: cannot listen on {addr}: {e}");
                    1
                }
            }
        }
        #[cfg(feature = "cluster")]
        Command::Scheduler(args) => match crate::cluster::start_scheduler(&args).await {
            Ok(s) => {
                eprintln!(
                    "prs scheduler listening on {} (clients: prs sql --cluster df://{}:{})",
                    s.addr,
                    args.external_host,
                    s.addr.port()
                );
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => exit::OK,
                    _ = s.task => exit::ERROR,
                }
            }
            Err(e) => {
                eprintln!("Error: {e}");
                exit::ERROR
            }
        },
        #[cfg(feature = "cluster")]
        Command::Executor(args) => {
            eprintln!(
                "prs executor: registering with {} (flight port {}, grpc port {})",
                args.scheduler, args.flight_port, args.grpc_port
            );
            match crate::cluster::run_executor(&args).await {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("Error: {e}");
                    exit::ERROR
                }
            }
        }
        Command::Settings { markdown: true } => {
            out(&settings_markdown());
            exit::OK
        }
        Command::Settings { markdown: false } => match PrsConfig::from_env() {
            Ok(cfg) => {
                for entry in cfg.entries() {
                    let name = entry.key.trim_start_matches("prs.");
                    out(&format!(
                        "prs.{:<34} {:<28} {}\n    {}\n",
                        name,
                        PrsConfig::env_name(name),
                        entry.value.unwrap_or_default().replace('\n', "\\n"),
                        entry.description
                    ));
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("Error: {e}");
                exit::ERROR
            }
        },
    }
}

/// Write to stdout. A reader that went away (`prs settings | head`) is not an error; any other
/// failure to write is reported once on stderr.
pub fn out(text: &str) {
    use std::io::Write;
    static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let Err(e) = std::io::stdout().lock().write_all(text.as_bytes()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe
            && !REPORTED.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            eprintln!("Error: cannot write results to stdout: {e}");
        }
    }
}

/// The settings as the README's markdown table (defaults, not the environment).
pub fn settings_markdown() -> String {
    let mut out = String::from("| setting | env | default | meaning |\n|---|---|---|---|\n");
    for entry in PrsConfig::default().entries() {
        let name = entry.key.trim_start_matches("prs.");
        let value = entry.value.unwrap_or_default();
        let value = if value.is_empty() {
            "(empty)".to_string()
        } else {
            format!("`{}`", value.replace('\n', "\\n").replace('|', "\\|"))
        };
        out.push_str(&format!(
            "| `prs.{name}` | `{}` | {value} | {} |\n",
            PrsConfig::env_name(name),
            entry.description.replace('|', "\\|")
        ));
    }
    out
}

/// Exit codes of `prs sql`.
pub mod exit {
    /// Every statement ran and no more candidates failed than `prs.max_failed_share` allows.
    pub const OK: i32 = 0;
    /// A statement failed (bad SQL, bad input or settings, or an endpoint error with on_error=fail).
    pub const ERROR: i32 = 1;
    /// Bad command-line usage (from clap).
    pub const USAGE: i32 = 2;
    /// The job ran, but the share of failed candidates is above `prs.max_failed_share`.
    pub const TOO_MANY_FAILURES: i32 = 3;
}

/// The job summary printed to stderr and written by `--summary-json`.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub exit_code: i32,
    pub error: Option<String>,
    pub wall_secs: f64,
    pub failed_share: f64,
    pub max_failed_share: f64,
    /// Peak resident memory of the process (Linux; 0 elsewhere).
    pub peak_rss_mb: f64,
    /// The scheduler the queries ran on (`--cluster`); the counters are then the executors'.
    pub cluster: Option<String>,
    #[serde(flatten)]
    pub stats: StatsSnapshot,
}

impl Summary {
    fn print(&self) {
        let s = &self.stats;
        let requests = match &self.cluster {
            // executors report reward texts, not the requests their batches made
            Some(_) => format!(
                "{} policy requests, {} texts scored",
                s.policy_requests, s.reward_texts
            ),
            None => format!(
                "{} policy + {} reward requests ({} texts scored)",
                s.policy_requests, s.reward_requests, s.reward_texts
            ),
        };
        eprintln!(
            "prs: {} prompts ({} from checkpoint), {} candidates, {} failed ({:.1}%), {} retries, \
             {requests}, {} prompt + {} completion tokens, {:.1}s, peak RSS {:.0} MiB",
            s.prompts,
            s.prompts_from_checkpoint,
            s.candidates,
            s.failed_candidates,
            100.0 * self.failed_share,
            s.retries,
            s.prompt_tokens,
            s.completion_tokens,
            self.wall_secs,
            self.peak_rss_mb
        );
        if let Some(url) = &self.cluster {
            eprintln!(
                "prs: ran on the cluster at {url}: counters from the executors' finished tasks; \
                 failures by kind are in the rows' `error` column"
            );
        }
        if !s.errors.is_empty() {
            let kinds: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
            eprintln!("prs: failed candidates by kind: {}", kinds.join(", "));
        }
        if self.exit_code == exit::TOO_MANY_FAILURES {
            eprintln!(
                "prs: failed share {:.4} is above prs.max_failed_share = {} (exit {})",
                self.failed_share,
                self.max_failed_share,
                exit::TOO_MANY_FAILURES
            );
        }
    }
}

/// VmHWM of this process in MiB, from /proc (0 where there is none).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn run_sql(args: &SqlArgs) -> i32 {
    let started = std::time::Instant::now();
    let mut ctx_out = None;
    let result = run_sql_inner(args, &mut ctx_out).await;
    let stats = ctx_out
        .as_ref()
        .map(|c: &SessionContext| JobStats::of(c.state().config()).snapshot())
        .unwrap_or_default();
    let max_failed_share = ctx_out
        .as_ref()
        .and_then(|c| PrsConfig::from_session(c.state().config_options()).ok())
        .map(|c| c.max_failed_share)
        .unwrap_or(0.0);
    let failed_share = if stats.candidates == 0 {
        0.0
    } else {
        stats.failed_candidates as f64 / stats.candidates as f64
    };
    let exit_code = match &result {
        Err(e) => {
            eprintln!("Error: {e}");
            exit::ERROR
        }
        Ok(()) if failed_share > max_failed_share => exit::TOO_MANY_FAILURES,
        Ok(()) => exit::OK,
    };
    let summary = Summary {
        exit_code,
        error: result.err(),
        wall_secs: started.elapsed().as_secs_f64(),
        failed_share,
        max_failed_share,
        peak_rss_mb: peak_rss_mb(),
        cluster: args.cluster.clone(),
        stats,
    };
    if summary.stats.prompts > 0 {
        summary.print();
    }
    if let Some(path) = &args.summary_json {
        let mut json = serde_json::to_value(&summary).unwrap_or_default();
        if summary.cluster.is_some() {
            // the executors' metrics do not have these: say unknown, not zero
            for field in ["reward_requests", "errors"] {
                if let Some(v) = json.get_mut(field) {
                    *v = serde_json::Value::Null;
                }
            }
        }
        let written = serde_json::to_vec_pretty(&json)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(path, json).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("Error: cannot write --summary-json {}: {e}", path.display());
            return exit::ERROR;
        }
    }
    summary.exit_code
}

async fn run_sql_inner(args: &SqlArgs, ctx_out: &mut Option<SessionContext>) -> Result<(), String> {
    let mut script = String::new();
    if let Some(sql) = &args.sql {
        script.push_str(sql);
        script.push_str(";\n");
    }
    for f in &args.files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read SQL file {}: {e}", f.display()))?;
        script.push_str(&text);
        script.push_str(";\n");
    }
    if script.trim().is_empty() {
        return Err("no SQL given: pass statements as an argument or with -f FILE".into());
    }
    let mut cfg = PrsConfig::from_env().map_err(|e| e.to_string())?;
    args.settings.apply(&mut cfg)?;
    let _sim = if args.sim {
        let handle = sim::start(([127, 0, 0, 1], 0).into())
            .await
            .map_err(|e| format!("cannot start the simulator: {e}"))?;
        cfg.policy_url = handle.policy_url();
        cfg.reward_url = handle.reward_url();
        cfg.policy_model = sim::SIM_MODEL.to_string();
        cfg.reward_model = sim::SIM_REWARD_MODEL.to_string();
        eprintln!(
            "using the built-in simulator (not a real model) at {}",
            handle.addr
        );
        Some(handle)
    } else {
        None
    };
    if args.dry_run {
        // nothing is called: a cost estimate needs no endpoint
        let placeholder = "http://dry-run.invalid";
        if cfg.policy_url.trim().is_empty() {
            cfg.policy_url = placeholder.to_string();
        }
        if cfg.reward_url.trim().is_empty() {
            cfg.reward_url = placeholder.to_string();
        }
    }
    let ctx = match &args.cluster {
        // a dry run plans here and reads only the inputs: Ballista's planner would hide the
        // sampling nodes inside the job it sends
        Some(url) if args.dry_run => {
            eprintln!("dry run: planned on this machine, not on the cluster at {url}");
            datafusion_prs::session_context(cfg)
        }
        Some(url) => cluster_context(url, cfg)?,
        None => datafusion_prs::session_context(cfg),
    };
    *ctx_out = Some(ctx.clone());
    if args.dry_run {
        return crate::dry_run::run(&ctx, &script).await.map(|_| ());
    }
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let progress = show_progress.then(|| {
        let (bar, ticker) = progress_bar(JobStats::of(ctx.state().config()));
        if args.cluster.is_some() {
            // the counters arrive from the scheduler when each query ends
            bar.set_message("running on the cluster; counts arrive when the query ends");
        }
        (bar, ticker)
    });
    let mut result = run_script(&ctx, &script, args.max_width).await;
    if let Some(url) = &args.cluster {
        result = result.map_err(|e| cluster_error(url, e));
    }
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    result
}

/// A progress line on stderr fed by the job counters: prompts, candidates/s, tokens/s, errors.
fn progress_bar(
    stats: std::sync::Arc<JobStats>,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let shown = bar.clone();
    let started = std::time::Instant::now();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            let s = stats.snapshot();
            if s.prompts == 0 && s.policy_requests == 0 {
                continue;
            }
            if s.expected_prompts > 0 {
                // known total: a bar with ETA
                if shown.length() != Some(s.expected_prompts) {
                    shown.set_length(s.expected_prompts);
                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} prompts, ETA {eta} | {msg}",
                    ) {
                        shown.set_style(style);
                    }
                }
                shown.set_position(s.prompts.min(s.expected_prompts));
            }
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            shown.set_message(format!(
                "{} prompts done, {} candidates ({:.0}/s), {:.0} tokens/s, {} failed, {} retries",
                s.prompts,
                s.candidates,
                s.candidates as f64 / secs,
                s.completion_tokens as f64 / secs,
                s.failed_candidates,
                s.retries
            ));
        }
    });
    (bar, ticker)
}

#[cfg(feature = "cluster")]
fn cluster_context(url: &str, cfg: PrsConfig) -> Result<SessionContext, String> {
    crate::cluster::client_context(url, cfg)
}

#[cfg(feature = "cluster")]
async fn cluster_counters(ctx: &SessionContext) -> Result<usize, String> {
    crate::cluster::absorb_job_counters(ctx).await
}

#[cfg(not(feature = "cluster"))]
async fn cluster_counters(_ctx: &SessionContext) -> Result<usize, String> {
    Ok(0)
}

#[cfg(feature = "cluster")]
fn cluster_error(url: &str, e: String) -> String {
    crate::cluster::explain_error(url, e)
}

#[cfg(not(feature = "cluster"))]
fn cluster_error(_url: &str, e: String) -> String {
    e
}

#[cfg(not(feature = "cluster"))]
fn cluster_context(url: &str, _cfg: PrsConfig) -> Result<SessionContext, String> {
    Err(format!(
        "--cluster {url}: this prs was built without the `cluster` feature; rebuild with default features"
    ))
}

/// Run `;`-separated statements, printing results to stdout.
pub async fn run_script(
    ctx: &SessionContext,
    script: &str,
    max_width: usize,
) -> Result<(), String> {
    let statements = DFParser::parse_sql(script).map_err(|e| format!("SQL syntax: {e}"))?;
    let total = statements.len();
    // cluster queries whose counters could not be read back
    let mut uncounted = Vec::new();
    for (i, stmt) in statements.into_iter().enumerate() {
        let where_ = if total > 1 {
            format!("statement {} of {total}: ", i + 1)
        } else {
            String::new()
        };
        let state = ctx.state();
        let plan = state
            .statement_to_plan(stmt)
            .await
            .map_err(|e| format!("{where_}{e}"))?;
        // plans are multi-line text meant to be read whole: never cut them
        let explain = matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_));
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| format!("{where_}{e}"))?;
        let schema = df.schema().clone();
        let batches = df.collect().await.map_err(|e| format!("{where_}{e}"))?;
        // the jobs it ran on a cluster: their counters are the executors'
        if let Err(e) = cluster_counters(ctx).await {
            eprintln!("prs: warning: {where_}the query ran, but {e}");
            uncounted.push(format!("{where_}{e}"));
        }
        if schema.fields().is_empty() {
            continue;
        }
        if let Some(text) = explain.then(|| explain_text(&batches)).flatten() {
            out(&text);
            continue;
        }
        let shown = shorten(&batches, max_width).map_err(|e| e.to_string())?;
        let table = pretty_format_batches(&shown).map_err(|e| e.to_string())?;
        out(&format!("{table}\n"));
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        out(&format!("{rows} row(s)\n"));
    }
    if !uncounted.is_empty() {
        // fail closed: a scheduled job must not pass its failure check on counts it never saw
        return Err(format!(
            "the statements ran, but the executors' counters of {} could not be read, so the job \
             summary and prs.max_failed_share cannot vouch for them; check the rows' `error` \
             column ({})",
            if uncounted.len() == 1 {
                "one query".to_string()
            } else {
                format!("{} queries", uncounted.len())
            },
            uncounted.join("; ")
        ));
    }
    Ok(())
}

/// EXPLAIN output as plain text: each plan under its type, whole lines, no table around them
/// (`None` if the result is not the usual two text columns).
fn explain_text(batches: &[RecordBatch]) -> Option<String> {
    let mut text = String::new();
    for b in batches {
        let col = |i: usize| {
            b.columns()
                .get(i)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        };
        let (kind, plan) = (col(0)?, col(1)?);
        for row in 0..b.num_rows() {
            text.push_str(&format!(
                "## {}\n{}\n",
                kind.value(row),
                plan.value(row).trim_end()
            ));
        }
    }
    Some(text)
}

/// Render every cell as text on one line, cut to `max_width` characters.
fn shorten(
    batches: &[RecordBatch],
    max_width: usize,
) -> Result<Vec<RecordBatch>, datafusion::arrow::error::ArrowError> {
    let opts = FormatOptions::default().with_null("NULL");
    batches
        .iter()
        .map(|b| {
            let fields: Vec<Field> = b
                .schema()
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), DataType::Utf8, true))
                .collect();
            let cols = b
                .columns()
                .iter()
                .map(|c| {
                    let fmt = ArrayFormatter::try_new(c.as_ref(), &opts)?;
                    let values: Vec<String> = (0..c.len())
                        .map(|i| {
                            let s = fmt.value(i).to_string().replace('\n', "\\n");
                            if max_width > 0 && s.chars().count() > max_width {
                                let mut cut: String =
                                    s.chars().take(max_width.saturating_sub(1)).collect();
                                cut.push('…');
                                cut
                            } else {
                                s
                            }
                        })
                        .collect();
                    Ok::<_, datafusion::arrow::error::ArrowError>(Arc::new(StringArray::from(
                        values,
                    ))
                        as ArrayRef)
                })
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        })
        .collect()
}
