//! The job summary of `prs sql`: exit codes, the stderr lines, `--summary-json`.

use std::path::Path;
use std::time::Instant;

use datafusion::prelude::SessionContext;
use datafusion_prs::PrsConfig;
use datafusion_prs::{JobStats, StatsSnapshot};

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

/// The share of the judge's pairs with two verdicts whose verdicts disagreed; `None` without
/// such pairs.
fn position_bias(c: &datafusion_prs::DataChecks) -> Option<f64> {
    let decided = c.judge_pairs.saturating_sub(c.judge_no_verdict_pairs);
    (decided > 0).then(|| c.judge_inconsistent_pairs as f64 / decided as f64)
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
    /// With a judge (`prs.judge_top_k`): the share of pairs whose two orders disagreed.
    pub judge_position_bias: Option<f64>,
    #[serde(flatten)]
    pub stats: StatsSnapshot,
}

impl Summary {
    /// The summary of a job started at `started` that ended with `error` (`None`: every
    /// statement ran), from the counters and settings of its session (`None`: it never got
    /// one).
    pub fn new(
        ctx: Option<&SessionContext>,
        error: Option<String>,
        started: Instant,
        cluster: Option<String>,
    ) -> Summary {
        let stats = ctx
            .map(|c| JobStats::of(c.state().config()).snapshot())
            .unwrap_or_default();
        let max_failed_share = ctx
            .and_then(|c| PrsConfig::from_session(c.state().config_options()).ok())
            .map(|c| c.max_failed_share)
            .unwrap_or(0.0);
        let failed_share = if stats.candidates == 0 {
            0.0
        } else {
            stats.failed_candidates as f64 / stats.candidates as f64
        };
        let exit_code = match &error {
            Some(_) => exit::ERROR,
            None if failed_share > max_failed_share => exit::TOO_MANY_FAILURES,
            None => exit::OK,
        };
        Summary {
            exit_code,
            error,
            wall_secs: started.elapsed().as_secs_f64(),
            failed_share,
            max_failed_share,
            peak_rss_mb: peak_rss_mb(),
            cluster,
            judge_position_bias: position_bias(&stats.checks),
            stats,
        }
    }

    /// The summary lines on stderr.
    pub fn print(&self) {
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
        let c = &s.checks;
        if c.extra_samples + c.duplicates_kept + c.all_truncated_prompts > 0 {
            eprintln!(
                "prs: data checks: {} extra samples for duplicates, {} duplicates kept (extra \
                 samples ran out), {} prompts with only truncated candidates",
                c.extra_samples, c.duplicates_kept, c.all_truncated_prompts
            );
        }
        if c.judge_pairs > 0 {
            let bias = self
                .judge_position_bias
                .map_or("–".to_string(), |b| format!("{:.1}%", 100.0 * b));
            eprintln!(
                "prs: judge: {} pairs compared in both orders ({} requests); position bias {bias} \
                 (pairs whose two verdicts disagreed); {} pairs without a verdict; those pairs \
                 leave the choice to the reward",
                c.judge_pairs, s.judge_requests, c.judge_no_verdict_pairs
            );
        }
        if c.judge_failed_prompts > 0 {
            eprintln!(
                "prs: judge: failed for {} prompts, whose best the reward chose",
                c.judge_failed_prompts
            );
        }
        if !s.refused_fields.is_empty() {
            let fields: Vec<&str> = s.refused_fields.keys().map(String::as_str).collect();
            eprintln!(
                "prs: request fields a server refused, no longer sent to it: {}",
                fields.join(", ")
            );
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

    /// The summary as JSON: on a cluster, the counters the executors do not report are null
    /// (unknown), not zero.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).unwrap_or_default();
        if self.cluster.is_some() {
            for field in ["reward_requests", "errors"] {
                if let Some(v) = json.get_mut(field) {
                    *v = serde_json::Value::Null;
                }
            }
        }
        json
    }

    /// Write [`Summary::to_json`] to `path`, pretty-printed.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(&self.to_json())?;
        // all or nothing, like the outputs it describes
        datafusion_prs::atomic::write(path, &json)
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
