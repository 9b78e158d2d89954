//! Adaptive sampling against uniform sampling (issue: verified rewards and a budget that goes
//! where it matters). Not a test: run it with
//!
//!     cargo bench --profile dev --bench adaptive     # quick to build; the numbers are counts
//!
//! It starts the simulator in maths mode in this process (`prs sim --math`: each question has a
//! latent solve rate, 45 % always solved, 35 % never, 20 % in between; answers in varied
//! formats) and samples `PRS_BENCH_PROMPTS` questions (default 2000) with `random_sample`,
//! n = 8, `prs.verifier = math`, under one token budget (`max_generated_tokens`, a third of what
//! uniform sampling of every question costs):
//! * **uniform**: every prompt gets 8 samples;
//! * **groups** / **pairs**: `prs.adaptive` with its defaults;
//! * **oracle**: uniform sampling of only the questions whose solve rate is strictly between 0
//!   and 1, which it knows from the simulator: the ceiling.
//!
//! For each it reports the prompts sampled, the generated tokens, the informative GRPO groups
//! (8 candidates, both outcomes) and the verified DPO pairs (a right and a wrong candidate), each
//! per million generated tokens and as a ratio to uniform. The simulator and seeds are
//! deterministic, so the numbers are the same on every run. Results: docs/benchmarks.md,
//! "Adaptive sampling".
//!
//! `PRS_BENCH_ADAPTIVE="name=value,..."` applies settings to the adaptive runs, e.g.
//! `explore=2,adaptive_threshold=0.5`, to compare the rule's settings.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use datafusion_prs::{JobStats, PrsConfig};
use prs_sim::{math_question, solve_rate, TextStyle};

const N: usize = 8;

/// What one run gave.
struct Outcome {
    prompts: u64,
    tokens: u64,
    groups: u64,
    pairs: u64,
}

/// The question table: ids and questions `1..=count`, those `keep` accepts.
fn questions(count: u64, keep: impl Fn(&str) -> bool) -> RecordBatch {
    let rows: Vec<(i64, String, String)> = (1..=count)
        .map(|i| {
            let (prompt, reference) = math_question(i);
            (i as i64, prompt, reference)
        })
        .filter(|(_, p, _)| keep(p))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("prompt", DataType::Utf8, false),
        Field::new("reference", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.1.clone()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.2.clone()),
            )),
        ],
    )
    .unwrap()
}

async fn run(base: &PrsConfig, table: RecordBatch, settings: &[(&str, String)]) -> Outcome {
    let mut cfg = base.clone();
    for (k, v) in settings {
        cfg.set_checked(k, v, "bench").unwrap();
    }
    let ctx: SessionContext = datafusion_prs::session_context(cfg);
    ctx.register_batch("questions", table).unwrap();
    let sql = format!(
        "SELECT count(*) AS prompts,
                count(*) FILTER (WHERE g = {N} AND any_right AND any_wrong) AS groups,
                count(*) FILTER (WHERE any_right AND any_wrong) AS pairs
         FROM (SELECT prompt_id, max(group_size) AS g,
                      bool_or(verified) AS any_right, bool_or(NOT verified) AS any_wrong
               FROM random_sample('questions', {N})
               WHERE stopped IS DISTINCT FROM 'budget'
               GROUP BY prompt_id)"
    );
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let value = |i: usize| {
        let column = batches[0].column(i).as_any().downcast_ref::<Int64Array>();
        column.map_or(0, |c| c.value(0) as u64)
    };
    let stats = ctx.state().config().get_extension::<JobStats>().unwrap();
    Outcome {
        prompts: value(0),
        tokens: stats.snapshot().completion_tokens,
        groups: value(1),
        pairs: value(2),
    }
}

fn per_million(count: u64, tokens: u64) -> f64 {
    count as f64 * 1e6 / tokens.max(1) as f64
}

#[tokio::main]
async fn main() {
    let count: u64 = std::env::var("PRS_BENCH_PROMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let style = TextStyle {
        math: true,
        ..TextStyle::default()
    };
    let sim = prs_sim::start_with("127.0.0.1:0".parse().unwrap(), None, style)
        .await
        .unwrap();
    let mut base = PrsConfig::default();
    for (k, v) in [
        ("policy_url", sim.policy_url()),
        ("reward_url", sim.reward_url()),
        ("verifier", "math".into()),
        ("preflight", "false".into()),
    ] {
        base.set_checked(k, &v, "bench").unwrap();
    }
    let all = || questions(count, |_| true);
    // what uniform sampling of every question costs; the budget is a third of it, so that
    // every run spends it before the table runs out
    let full = run(&base, all(), &[]).await;
    let budget = ("max_generated_tokens", (full.tokens / 3).to_string());
    let between = |p: &str| {
        let rate = solve_rate(p, &style);
        rate > 0.0 && rate < 1.0
    };
    let mut adaptive: Vec<(&str, String)> = vec![budget.clone()];
    let tuning = std::env::var("PRS_BENCH_ADAPTIVE").unwrap_or_default();
    for pair in tuning.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .expect("PRS_BENCH_ADAPTIVE: name=value,...");
        adaptive.push((k.trim(), v.trim().to_string()));
    }
    let with = |mode: &str| {
        let mut s = adaptive.clone();
        s.push(("adaptive", mode.to_string()));
        s
    };
    let runs = [
        (
            "uniform",
            run(&base, all(), std::slice::from_ref(&budget)).await,
        ),
        ("groups", run(&base, all(), &with("groups")).await),
        ("pairs", run(&base, all(), &with("pairs")).await),
        (
            "oracle",
            run(
                &base,
                questions(count, between),
                std::slice::from_ref(&budget),
            )
            .await,
        ),
    ];
    println!(
        "{count} questions, n = {N}, budget {} generated tokens (uniform over all: {}); adaptive: {tuning:?}",
        budget.1, full.tokens
    );
    println!("| run | prompts | tokens | groups | groups/Mtok | × uniform | pairs | pairs/Mtok | × uniform |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let uniform = (
        per_million(runs[0].1.groups, runs[0].1.tokens),
        per_million(runs[0].1.pairs, runs[0].1.tokens),
    );
    for (name, o) in &runs {
        let (g, p) = (
            per_million(o.groups, o.tokens),
            per_million(o.pairs, o.tokens),
        );
        println!(
            "| {name} | {} | {} | {} | {g:.0} | {:.2} | {} | {p:.0} | {:.2} |",
            o.prompts,
            o.tokens,
            o.groups,
            g / uniform.0,
            o.pairs,
            p / uniform.1
        );
    }
}
