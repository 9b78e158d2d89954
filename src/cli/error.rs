//! What can go wrong in the command line, typed; the texts are what `Error: ...` prints.

use std::fmt;
use std::path::PathBuf;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion_prs::PrsError;

use super::summary::exit;

/// Which statement of a script failed (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub index: usize,
    pub count: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "statement {} of {}", self.index, self.count)
    }
}

/// An error of the `prs` command line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `prs sql` without SQL.
    #[error("no SQL given: pass statements as an argument, with -f FILE, or on standard input (on a terminal, `prs sql` alone opens a shell)")]
    NoSql,
    /// `prs report` could not read its input or write the page.
    #[error("prs report: {0}")]
    Report(String),
    /// The interactive shell's line editor failed.
    #[error("the interactive shell failed: {0}")]
    Shell(String),
    /// `--dry-run` of the interactive shell.
    #[error("--dry-run needs a script (an argument, -f FILE or standard input), not the interactive shell")]
    ShellDryRun,
    /// A `-f FILE` that cannot be read.
    #[error("cannot read SQL file {}: {source}", path.display())]
    ReadSqlFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A `--set` item without `=`.
    #[error("--set {0:?}: expected NAME=VALUE")]
    SetSyntax(String),
    /// A setting (environment, flag) that is unknown or has a bad value.
    #[error(transparent)]
    Settings(#[from] PrsError),
    /// `prs sim --host/--port` that do not make an address (a usage error).
    #[error("--host/--port {addr}: {source}")]
    SimAddress {
        addr: String,
        source: std::net::AddrParseError,
    },
    /// The simulator could not listen.
    #[error("cannot listen on {addr}: {source}")]
    SimListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// `prs sql --sim`: the simulator could not start.
    #[error("cannot start the simulator: {0}")]
    SimStart(#[source] std::io::Error),
    /// The script does not parse.
    #[error("SQL syntax: {0}")]
    Syntax(#[source] DataFusionError),
    /// A statement failed to plan or run; `at` is omitted for a script of one statement.
    #[error("{}{source}", prefix(.at))]
    Statement {
        at: Option<Position>,
        source: DataFusionError,
    },
    /// A `COPY` target could not be staged or put in place; the previous output is untouched.
    #[error("{}COPY to {}: {source}; the previous output is left as it was", prefix(.at), target.display())]
    Output {
        at: Option<Position>,
        target: PathBuf,
        source: std::io::Error,
    },
    /// A result could not be rendered as a table.
    #[error(transparent)]
    Format(#[from] ArrowError),
    /// The statements ran on a cluster, but the executors' counters of some queries could not
    /// be read (each entry says which statement and why), so the summary cannot vouch for them.
    #[error(
        "the statements ran, but the executors' counters of {} could not be read, so the job \
         summary and prs.max_failed_share cannot vouch for them; check the rows' `error` \
         column ({})",
        queries(.0.len()),
        .0.join("; ")
    )]
    Uncounted(Vec<String>),
    /// A cluster could not be set up, reached or read.
    #[cfg(feature = "cluster")]
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// `--cluster` given to a build without the `cluster` feature.
    #[cfg(not(feature = "cluster"))]
    #[error(
        "--cluster {url}: this prs was built without the `cluster` feature; rebuild with default \
         features"
    )]
    ClusterNotBuilt { url: String },
    /// `--summary-json PATH` could not be written.
    #[error("cannot write --summary-json {}: {source}", path.display())]
    WriteSummary {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CliError {
    /// The failure of statement `at` (`None` for a script of one statement).
    pub fn at(at: Option<Position>) -> impl FnOnce(DataFusionError) -> CliError {
        move |source| CliError::Statement { at, source }
    }

    /// The process exit code this error ends with.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::SimAddress { .. } => exit::USAGE,
            _ => exit::ERROR,
        }
    }
}

/// `"statement i of n: "`, or nothing for a script of one statement.
pub fn prefix(at: &Option<Position>) -> String {
    at.map(|p| format!("{p}: ")).unwrap_or_default()
}

fn queries(n: usize) -> String {
    if n == 1 {
        "one query".to_string()
    } else {
        format!("{n} queries")
    }
}
