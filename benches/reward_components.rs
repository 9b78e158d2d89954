//! Reward components (issue: several judges, one decision). Not a test: run it with
//!
//!     cargo bench --profile dev --bench reward_components
//!
//! **Picks.** The simulator in maths mode writes answers to `PRS_BENCH_PROMPTS` questions
//! (default 2000), n = 8 each, and two simulated reward models score them, each the answer's
//! truth (1 or 0) plus its own error:
//! * **noisy**: noise uniform in ±`PRS_BENCH_NOISE` (default 1.0);
//! * **long**: noise ±0.3 and `PRS_BENCH_LENGTH_BIAS` (default 0.06) per word of the answer
//!   (answers run from 5 to 29 words), a model that prefers long answers whatever they say.
//!
//! Each is run alone and both as components under `weighted` (weights 0.5 and 0.5),
//! `mean_minus_std` (uncertainty weight 1, which for two components of equal weight is their
//! minimum, and 0.5) and `min`; three noisy models with other seeds as an ensemble of one
//! family; and the noisy model with the simulator as a judge of the top 3 (it knows the truth),
//! also one that answers `[[A]]` to 30 % of its comparisons whatever they say. For each it reports how often `is_best` is a
//! verified (right) answer, among the questions with both right and wrong candidates: the ones
//! where the pick matters. The candidates are the same in every run (same seeds).
//!
//! **Cost.** Two reward servers with the simulator's engine model: **fast** (5 ms a batch),
//! **slow** (20 ms a batch), each scoring one request at a time, sent text (`tei`) in batches. `PRS_BENCH_PROMPTS_COST`
//! prompts (default 400), n = 8, scored by each alone and by both as components; medians of
//! `PRS_BENCH_RUNS` runs (default 3). Two components should cost the slower one's time, not the
//! sum. Results: docs/benchmarks.md, "Reward components".

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use datafusion_prs::{JobStats, PrsConfig};
use prs_sim::engine::{EngineConfig, SchedulingPolicy};
use prs_sim::{math_question, SimHandle, TextStyle};

const N: usize = 8;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Questions `1..=count` with their references.
fn questions(count: u64) -> RecordBatch {
    let rows: Vec<(i64, String, String)> = (1..=count)
        .map(|i| {
            let (prompt, reference) = math_question(i);
            (i as i64, prompt, reference)
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("prompt", DataType::Utf8, false),
        Field::new("reference", DataType::Utf8, false),
    ]));
    let text = |f: fn(&(i64, String, String)) -> &str| {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            text(|r| &r.1),
            text(|r| &r.2),
        ],
    )
    .unwrap()
}

async fn sim(style: TextStyle, engine: Option<EngineConfig>) -> SimHandle {
    prs_sim::start_with("127.0.0.1:0".parse().unwrap(), engine, style)
        .await
        .unwrap()
}

/// A context on the policy `policy` with `settings`, the questions registered.
fn context(policy: &SimHandle, settings: &[(&str, String)], table: RecordBatch) -> SessionContext {
    let mut cfg = PrsConfig::default();
    cfg.set_checked("policy_url", &policy.policy_url(), "bench")
        .unwrap();
    cfg.set_checked("verifier", "math", "bench").unwrap();
    cfg.set_checked("preflight", "false", "bench").unwrap();
    for (k, v) in settings {
        cfg.set_checked(k, v, "bench").unwrap();
    }
    let ctx = datafusion_prs::session_context(cfg);
    ctx.register_batch("questions", table).unwrap();
    ctx
}

/// (questions where the pick matters, of them those whose best is right, and with a judge, the
/// share of its pairs whose two verdicts disagreed).
async fn picks(ctx: &SessionContext) -> (i64, i64, Option<f64>) {
    let sql = format!(
        "SELECT count(*) AS contested, count(*) FILTER (WHERE best_right) AS right
         FROM (SELECT prompt_id, bool_or(verified) AS any_right, bool_or(NOT verified) AS any_wrong,
                      bool_or(is_best AND verified) AS best_right
               FROM random_sample('questions', {N}) GROUP BY prompt_id)
         WHERE any_right AND any_wrong"
    );
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let value = |i: usize| {
        let c = batches[0].column(i).as_any().downcast_ref::<Int64Array>();
        c.map_or(0, |c| c.value(0))
    };
    let checks = JobStats::of(ctx.state().config()).snapshot().checks;
    let decided = checks.judge_pairs - checks.judge_no_verdict_pairs;
    let bias = (decided > 0).then(|| checks.judge_inconsistent_pairs as f64 / decided as f64);
    (value(0), value(1), bias)
}

fn components(named: &[(&str, &SimHandle)]) -> String {
    let each: Vec<String> = named
        .iter()
        .map(|(name, s)| {
            format!(
                r#"{{"name":"{name}","url":"{}","weight":0.5}}"#,
                s.reward_url()
            )
        })
        .collect();
    format!("[{}]", each.join(","))
}

async fn pick_quality() {
    let count: u64 = env("PRS_BENCH_PROMPTS", 2000);
    let math = TextStyle {
        math: true,
        ..TextStyle::default()
    };
    let policy = sim(math, None).await;
    let noisy = sim(
        TextStyle {
            reward_noise: env("PRS_BENCH_NOISE", 1.0),
            reward_seed: 1,
            ..math
        },
        None,
    )
    .await;
    let long = sim(
        TextStyle {
            reward_seed: 2,
            reward_length_bias: env("PRS_BENCH_LENGTH_BIAS", 0.06),
            ..math
        },
        None,
    )
    .await;
    let noisy_seed = |seed: u64| {
        sim(
            TextStyle {
                reward_noise: env("PRS_BENCH_NOISE", 1.0),
                reward_seed: seed,
                ..math
            },
            None,
        )
    };
    let (noisy3, noisy4) = (noisy_seed(3).await, noisy_seed(4).await);
    let both = components(&[("noisy", &noisy), ("long", &long)]);
    let three = components(&[("n1", &noisy), ("n3", &noisy3), ("n4", &noisy4)]);
    let with_rule = |c: &str, rule: &str, weight: &str| {
        vec![
            ("reward_components", c.to_string()),
            ("reward_aggregate", rule.to_string()),
            ("reward_uncertainty_weight", weight.to_string()),
        ]
    };
    let biased_judge = sim(
        TextStyle {
            judge_position_bias: 0.3,
            ..math
        },
        None,
    )
    .await;
    let judged = |judge: &SimHandle| {
        vec![
            ("reward_url", noisy.reward_url()),
            ("judge_url", judge.policy_url()),
            ("judge_top_k", "3".to_string()),
        ]
    };
    let runs: [(&str, Vec<(&str, String)>); 10] = [
        ("noisy alone", vec![("reward_url", noisy.reward_url())]),
        ("long alone", vec![("reward_url", long.reward_url())]),
        ("both, weighted", vec![("reward_components", both.clone())]),
        (
            "both, mean_minus_std (1)",
            with_rule(&both, "mean_minus_std", "1"),
        ),
        (
            "both, mean_minus_std (0.5)",
            with_rule(&both, "mean_minus_std", "0.5"),
        ),
        ("both, min", with_rule(&both, "min", "1")),
        (
            "three noisy seeds, weighted",
            vec![("reward_components", three.clone())],
        ),
        (
            "three noisy seeds, mean_minus_std (1)",
            with_rule(&three, "mean_minus_std", "1"),
        ),
        ("noisy + judge of the top 3", judged(&policy)),
        (
            "noisy + judge of the top 3, 30 % position bias",
            judged(&biased_judge),
        ),
    ];
    println!("## Picks: {count} questions, n = {N}");
    println!("| reward | contested questions | best is right | share | judge's position bias |");
    println!("|---|---|---|---|---|");
    for (name, settings) in runs {
        let (contested, right, bias) = picks(&context(&policy, &settings, questions(count))).await;
        println!(
            "| {name} | {contested} | {right} | {:.3} | {} |",
            right as f64 / contested.max(1) as f64,
            bias.map_or("–".to_string(), |b| format!("{:.3}", b))
        );
    }
}

async fn cost() {
    let count: u64 = env("PRS_BENCH_PROMPTS_COST", 400);
    let runs: usize = env("PRS_BENCH_RUNS", 3);
    let math = TextStyle {
        math: true,
        ..TextStyle::default()
    };
    let policy = sim(math, None).await;
    let reward_server = |batch_ms: f64| EngineConfig {
        step_ms: 10.0,
        per_seq_ms: 0.05,
        prefill_ms_per_1k_tokens: 2.0,
        max_seqs: 256,
        scheduling_policy: SchedulingPolicy::Fcfs,
        min_tokens: 40,
        length_shape: 2.5,
        reward_batch_ms: batch_ms,
        reward_text_ms: 0.2,
        reward_merge_requests: false,
        ignore_n: false,
        prefix_cache: false,
    };
    let fast = sim(math, Some(reward_server(5.0))).await;
    let slow = sim(math, Some(reward_server(20.0))).await;
    let both = components(&[("fast", &fast), ("slow", &slow)]);
    // text input, batched as TEI and vLLM batch it (conversations go one per request)
    let tei = ("reward_protocol", "tei".to_string());
    let configs: [(&str, (&str, String)); 3] = [
        ("fast alone", ("reward_url", fast.reward_url())),
        ("slow alone", ("reward_url", slow.reward_url())),
        ("both", ("reward_components", both)),
    ];
    println!("## Cost: {count} prompts, n = {N}, median of {runs} runs");
    println!("| reward | seconds (median) | min | max |");
    println!("|---|---|---|---|");
    for (name, setting) in configs {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let settings = [tei.clone(), setting.clone()];
            let ctx = context(&policy, &settings, questions(count));
            let started = Instant::now();
            let sql = format!("SELECT count(*) FROM random_sample('questions', {N})");
            ctx.sql(&sql).await.unwrap().collect().await.unwrap();
            times.push(started.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} |",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
    }
}

#[tokio::main]
async fn main() {
    let only = std::env::var("PRS_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "picks" {
        pick_quality().await;
    }
    if only.is_empty() || only == "cost" {
        cost().await;
    }
}
