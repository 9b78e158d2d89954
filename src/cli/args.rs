//! The command line's arguments (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use datafusion_prs::PrsConfig;

use super::error::CliError;

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
        engine_config: prs_sim::engine::EngineConfig,
        #[command(flatten)]
        style: prs_sim::TextStyle,
    },
    /// Run a Ballista scheduler that knows prs' functions (feature `cluster`)
    #[cfg(feature = "cluster")]
    Scheduler(crate::cluster::SchedulerArgs),
    /// Run a Ballista executor that knows prs' functions; it calls the endpoints itself, with
    /// API keys from its own environment (feature `cluster`)
    #[cfg(feature = "cluster")]
    Executor(crate::cluster::ExecutorArgs),
    /// Write a picture of a run (reward distributions, best-of-k curves, PRS revisions, data
    /// checks, chosen vs rejected) as one self-contained HTML page
    Report(ReportArgs),
    /// List every setting with its current value (defaults + environment), env variable and description
    Settings {
        /// Print the markdown table (docs/sql.md) of settings and their defaults instead
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// SQL text; several statements separated by `;`. Without it and without -f, statements are
    /// read from standard input, or, on a terminal, an interactive shell opens
    pub sql: Option<String>,
    /// Read SQL from files (run in order, after the SQL argument); `-` is standard input
    #[arg(short = 'f', long = "file")]
    pub files: Vec<PathBuf>,
    /// Start the built-in simulator on 127.0.0.1 and point the policy, reward and judge URLs at it
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
    /// prs.judge_url: the pairwise judge's OpenAI-compatible base URL (with --set judge_top_k=3)
    #[arg(long)]
    pub judge_url: Option<String>,
    /// prs.judge_model (default: first model listed by the judge's server)
    #[arg(long)]
    pub judge_model: Option<String>,
    /// Any setting, as NAME=VALUE (repeatable), e.g. --set temperature=0.7
    #[arg(short = 'c', long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

impl SettingArgs {
    /// Apply the flags onto `cfg` (after defaults and environment).
    pub fn apply(&self, cfg: &mut PrsConfig) -> Result<(), CliError> {
        let named = [
            ("policy_url", &self.policy_url),
            ("policy_model", &self.policy_model),
            ("reward_url", &self.reward_url),
            ("reward_model", &self.reward_model),
            ("reward_protocol", &self.reward_protocol),
            ("judge_url", &self.judge_url),
            ("judge_model", &self.judge_model),
        ];
        for (key, value) in named {
            if let Some(v) = value {
                cfg.set_checked(key, v, &format!("--{}", key.replace('_', "-")))?;
            }
        }
        for item in &self.set {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| CliError::SetSyntax(item.clone()))?;
            cfg.set_checked(k, v, "--set")?;
        }
        Ok(())
    }
}

/// `prs report` flags (see [`prs_report::Report`]).
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The candidates: a Parquet file, directory or glob with the output schema of
    /// random_sample / prs_sample (several runs UNIONed too; a `run` column names each)
    pub candidates: std::path::PathBuf,
    /// Where to write the page
    #[arg(short = 'o', long = "output", default_value = "out/report.html")]
    pub output: std::path::PathBuf,
    /// The job summary (`prs sql --summary-json PATH`): requests, tokens, wall time
    #[arg(long, value_name = "PATH")]
    pub summary: Option<std::path::PathBuf>,
    /// DPO pairs written by queries/dpo_pairs*.sql (prompt, chosen, rejected, ...): their
    /// statistics instead of best vs worst recomputed from the candidates
    #[arg(long, value_name = "PATH")]
    pub pairs: Option<std::path::PathBuf>,
}

impl From<ReportArgs> for prs_report::Report {
    fn from(a: ReportArgs) -> Self {
        prs_report::Report {
            candidates: a.candidates,
            output: a.output,
            summary: a.summary,
            pairs: a.pairs,
        }
    }
}
