use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let cli = prs::cli::Cli::parse();
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // colour codes only for a terminal: not in a log file, a pipe or a CI log
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let code = prs::cli::run(cli).await;
    std::process::exit(code);
}
