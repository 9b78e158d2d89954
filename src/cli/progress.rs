//! The progress line on stderr while `prs sql` runs, fed by the job counters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion_prs::{JobStats, StatsSnapshot};
use indicatif::{ProgressBar, ProgressStyle};

/// A progress line: prompts, candidates/s, tokens/s, errors; a bar with ETA once the number
/// of prompts is known.
pub struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Start showing `stats`; `on_cluster`: the counters arrive only when each query ends.
    pub fn start(stats: Arc<JobStats>, on_cluster: bool) -> Progress {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        let shown = bar.clone();
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let s = stats.snapshot();
                if s.prompts > 0 || s.policy_requests > 0 {
                    show(&shown, &s, started);
                }
            }
        });
        if on_cluster {
            bar.set_message("running on the cluster; counts arrive when the query ends");
        }
        Progress { bar, ticker }
    }

    /// Stop and erase the line.
    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

/// Show the counters `s` of a job started at `started`.
fn show(bar: &ProgressBar, s: &StatsSnapshot, started: Instant) {
    if s.expected_prompts > 0 {
        // known total: a bar with ETA
        if bar.length() != Some(s.expected_prompts) {
            bar.set_length(s.expected_prompts);
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} prompts, ETA {eta} | {msg}",
            ) {
                bar.set_style(style);
            }
        }
        bar.set_position(s.prompts.min(s.expected_prompts));
    }
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    bar.set_message(format!(
        "{} prompts done, {} candidates ({:.0}/s), {:.0} tokens/s, {} failed, {} retries",
        s.prompts,
        s.candidates,
        s.candidates as f64 / secs,
        s.completion_tokens as f64 / secs,
        s.failed_candidates,
        s.retries
    ));
}
