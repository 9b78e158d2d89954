//! The `prs` command line: run SQL jobs, run the simulator, list settings.
//!
//! Laid out as datafusion-cli is: [`args`] (the flags), [`job`] (`prs sql` from script to
//! summary), [`exec`] (running statements), [`print`] (stdout), [`progress`] (the stderr
//! line), [`summary`] (exit codes and the job summary), [`settings`], [`error`].

pub mod args;
pub mod dry_run;
pub mod error;
pub mod exec;
pub mod job;
pub mod output;
pub mod print;
pub mod progress;
pub mod settings;
pub mod shell;
pub mod summary;

use std::net::SocketAddr;

pub use args::{Cli, Command, SettingArgs, SqlArgs};
pub use error::CliError;
pub use exec::run_script;
pub use print::{out, terminal_text};
pub use settings::settings_markdown;
pub use summary::{exit, Summary};

use prs_sim as sim;

/// Run the CLI; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Sql(args) => return job::run_sql(&args).await,
        Command::Sim {
            host,
            port,
            engine,
            engine_config,
            style,
        } => run_sim(&host, port, engine.then_some(engine_config), style).await,
        #[cfg(feature = "cluster")]
        Command::Scheduler(args) => run_scheduler(&args).await,
        #[cfg(feature = "cluster")]
        Command::Executor(args) => run_executor(&args).await,
        Command::Report(args) => match prs_report::run(&args.into()).await {
            Ok(path) => {
                eprintln!("prs: wrote {}", terminal_text(&path.display().to_string()));
                Ok(exit::OK)
            }
            Err(e) => Err(CliError::Report(e)),
        },
        Command::Settings { markdown } => settings::print_settings(markdown).map(|()| exit::OK),
    };
    result.unwrap_or_else(|e| {
        eprintln!("Error: {}", terminal_text(&e.to_string()));
        e.exit_code()
    })
}

/// `prs sim`: serve until Ctrl-C.
async fn run_sim(
    host: &str,
    port: u16,
    engine: Option<sim::engine::EngineConfig>,
    style: sim::TextStyle,
) -> Result<i32, CliError> {
    let addr = format!("{host}:{port}");
    let addr: SocketAddr = addr
        .parse()
        .map_err(|source| CliError::SimAddress { addr, source })?;
    let handle = sim::start_with(addr, engine, style)
        .await
        .map_err(|source| CliError::SimListen { addr, source })?;
    eprintln!(
        "prs simulator (NOT a real model) listening on {}\n  policy: {}  (model {})\n  reward: {}  (vllm-pooling, vllm-classify, openrlhf, tei)",
        handle.addr,
        handle.policy_url(),
        sim::SIM_MODEL,
        handle.reward_url()
    );
    let _ = tokio::signal::ctrl_c().await;
    Ok(exit::OK)
}

/// `prs scheduler`: serve until Ctrl-C (exit 0) or until the scheduler stops (exit 1).
#[cfg(feature = "cluster")]
async fn run_scheduler(args: &crate::cluster::SchedulerArgs) -> Result<i32, CliError> {
    let s = crate::cluster::start_scheduler(args).await?;
    eprintln!(
        "prs scheduler listening on {} (clients: prs sql --cluster df://{}:{})",
        s.addr,
        args.external_host,
        s.addr.port()
    );
    Ok(tokio::select! {
        _ = tokio::signal::ctrl_c() => exit::OK,
        _ = s.task => exit::ERROR,
    })
}

/// `prs executor`: run until stopped.
#[cfg(feature = "cluster")]
async fn run_executor(args: &crate::cluster::ExecutorArgs) -> Result<i32, CliError> {
    eprintln!(
        "prs executor: registering with {} (flight port {}, grpc port {})",
        args.scheduler, args.flight_port, args.grpc_port
    );
    crate::cluster::run_executor(args).await?;
    Ok(exit::OK)
}
