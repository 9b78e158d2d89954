//! `prs sql`: a job of SQL statements, from its script and settings to its summary.

use std::io::IsTerminal;
use std::time::Instant;

use datafusion::prelude::SessionContext;
use datafusion_prs::JobStats;
use datafusion_prs::PrsConfig;

use super::args::SqlArgs;
use super::error::CliError;
use super::exec::run_script;
use super::print::terminal_text;
use super::progress::Progress;
use super::summary::{exit, Summary};
use prs_sim as sim;

/// Run a job and print its summary; returns the exit code.
pub async fn run_sql(args: &SqlArgs) -> i32 {
    let started = Instant::now();
    let mut ctx = None;
    let result = run_job(args, started, &mut ctx).await;
    if let Err(e) = &result {
        eprintln!("Error: {}", terminal_text(&e.to_string()));
    }
    let error = result.err().map(|e| e.to_string());
    let summary = Summary::new(ctx.as_ref(), error, started, args.cluster.clone());
    if summary.stats.prompts > 0 {
        summary.print();
    }
    if let Some(path) = &args.summary_json {
        if let Err(source) = summary.write_json(path) {
            let path = path.clone();
            let e = CliError::WriteSummary { path, source };
            eprintln!("Error: {}", terminal_text(&e.to_string()));
            return exit::ERROR;
        }
    }
    summary.exit_code
}

/// Run the job's statements (or count their cost, `--dry-run`); `ctx_out` gets the session
/// once there is one, for the summary.
async fn run_job(
    args: &SqlArgs,
    started: Instant,
    ctx_out: &mut Option<SessionContext>,
) -> Result<(), CliError> {
    let source = read_script(args)?;
    let mut cfg = PrsConfig::from_env()?;
    args.settings.apply(&mut cfg)?;
    let _sim = if args.sim {
        Some(start_sim(&mut cfg).await?)
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
    let ctx = session(args, cfg)?;
    *ctx_out = Some(ctx.clone());
    // on a cluster the executors write COPY targets: they cannot be staged from here
    let stage_copies = args.cluster.is_none();
    if args.cluster.is_none() {
        // the page is written here, from files this machine reads
        prs_report::sql::register(&ctx, started);
    }
    let script = match source {
        Source::Script(script) => script,
        Source::Shell if args.dry_run => return Err(CliError::ShellDryRun),
        Source::Shell => return super::shell::run(&ctx, args.max_width, stage_copies).await,
    };
    if args.dry_run {
        return super::dry_run::run(&ctx, &script).await.map(|_| ());
    }
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let progress = show_progress
        .then(|| Progress::start(JobStats::of(ctx.state().config()), args.cluster.is_some()));
    let mut result = run_script(&ctx, &script, args.max_width, stage_copies).await;
    if let Some(url) = &args.cluster {
        result = result.map_err(|e| explain_cluster_error(url, e));
    }
    if let Some(progress) = progress {
        progress.finish();
    }
    result
}

/// Where a job's statements come from.
enum Source {
    Script(String),
    /// No SQL and a terminal on standard input: the interactive shell.
    Shell,
}

/// The SQL argument, then each file (`-` is standard input), as one script; without either,
/// standard input (`prs sql < job.sql`), or the shell when it is a terminal.
fn read_script(args: &SqlArgs) -> Result<Source, CliError> {
    let mut script = String::new();
    if let Some(sql) = &args.sql {
        script.push_str(sql);
        script.push_str(";\n");
    }
    for f in &args.files {
        let text = match f.as_os_str() == "-" {
            true => read_stdin(),
            false => std::fs::read_to_string(f),
        };
        let text = text.map_err(|source| CliError::ReadSqlFile {
            path: f.clone(),
            source,
        })?;
        script.push_str(&text);
        script.push_str(";\n");
    }
    if args.sql.is_none() && args.files.is_empty() {
        if std::io::stdin().is_terminal() {
            return Ok(Source::Shell);
        }
        script = read_stdin().map_err(|source| CliError::ReadSqlFile {
            path: "-".into(),
            source,
        })?;
    }
    if script.trim().is_empty() {
        return Err(CliError::NoSql);
    }
    Ok(Source::Script(script))
}

fn read_stdin() -> std::io::Result<String> {
    std::io::read_to_string(std::io::stdin())
}

/// Start the built-in simulator on a free local port and point `cfg` at it.
async fn start_sim(cfg: &mut PrsConfig) -> Result<sim::SimHandle, CliError> {
    // maths mode: questions like data/math/prompts.parquet's get right and wrong answers;
    // every other prompt is answered as before
    let style = sim::TextStyle {
        math: true,
        ..sim::TextStyle::default()
    };
    let handle = sim::start_with(([127, 0, 0, 1], 0).into(), None, style)
        .await
        .map_err(CliError::SimStart)?;
    cfg.policy_url = handle.policy_url();
    cfg.reward_url = handle.reward_url();
    cfg.policy_model = sim::SIM_MODEL.to_string();
    cfg.reward_model = sim::SIM_REWARD_MODEL.to_string();
    // the simulator judges too: `SET prs.judge_top_k = 3` is all a script needs
    cfg.judge_url = handle.policy_url();
    cfg.judge_model = sim::SIM_MODEL.to_string();
    eprintln!(
        "using the built-in simulator (not a real model) at {}",
        handle.addr
    );
    Ok(handle)
}

/// The job's session: local, or a client of the cluster at `--cluster`.
fn session(args: &SqlArgs, cfg: PrsConfig) -> Result<SessionContext, CliError> {
    match &args.cluster {
        // a dry run plans here and reads only the inputs: Ballista's planner would hide the
        // sampling nodes inside the job it sends
        Some(url) if args.dry_run => {
            eprintln!("dry run: planned on this machine, not on the cluster at {url}");
            Ok(datafusion_prs::session_context(cfg))
        }
        Some(url) => cluster_context(url, cfg),
        None => Ok(datafusion_prs::session_context(cfg)),
    }
}

#[cfg(feature = "cluster")]
fn cluster_context(url: &str, cfg: PrsConfig) -> Result<SessionContext, CliError> {
    Ok(crate::cluster::client_context(url, cfg)?)
}

#[cfg(not(feature = "cluster"))]
fn cluster_context(url: &str, _cfg: PrsConfig) -> Result<SessionContext, CliError> {
    Err(CliError::ClusterNotBuilt {
        url: url.to_string(),
    })
}

/// A script's error on the cluster at `url`, said plainly when it is about reaching the
/// scheduler or about a table that cannot travel.
#[cfg(feature = "cluster")]
fn explain_cluster_error(url: &str, e: CliError) -> CliError {
    match crate::cluster::explain_error(url, &e.to_string()) {
        Some(explained) => CliError::Cluster(explained),
        None => e,
    }
}

#[cfg(not(feature = "cluster"))]
fn explain_cluster_error(_url: &str, e: CliError) -> CliError {
    e
}
