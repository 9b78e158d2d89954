//! The pairwise LLM judge (`prs.judge_top_k`) against fake judges: every pair of a prompt's top
//! candidates is asked in both orders, a judge that agrees with itself moves `is_best`, and one
//! that only shows its position bias never does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Json, State};
use axum::routing::{get, post};
use axum::Router;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int32Type};
use datafusion_prs::JobStats;
use serde_json::{json, Value};

use crate::common::*;

/// How a fake judge decides.
#[derive(Clone, Copy, PartialEq)]
enum Taste {
    /// Prefers the answer the fake reward model scores lower, whichever order it sees.
    LowerScore,
    /// Always says the first answer is better.
    FirstPosition,
    /// Never ends with a verdict (as a judge cut at judge_max_tokens).
    Silent,
}

#[derive(Clone)]
struct FakeJudge {
    taste: Taste,
    /// (answer A, answer B) of every request.
    asked: Arc<Mutex<Vec<(String, String)>>>,
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let rest = text.split_once(start).map_or("", |(_, r)| r);
    rest.split_once(end).map_or(rest, |(a, _)| a)
}

async fn chat(State(j): State<FakeJudge>, Json(body): Json<Value>) -> Json<Value> {
    let text = user_text(&body);
    let a = between(&text, "### Answer A\n", "\n\n### Answer B").to_string();
    let b = between(&text, "### Answer B\n", "\n\n### Judgement").to_string();
    let verdict = match j.taste {
        Taste::LowerScore if score_of(&a) < score_of(&b) => "A reads better. [[A]]",
        Taste::LowerScore => "B reads better. [[B]]",
        Taste::FirstPosition => "The first one. [[A]]",
        Taste::Silent => "Both answers have merits, and on balance I would say that",
    };
    j.asked.lock().unwrap().push((a, b));
    Json(
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": verdict},
        "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 5}}),
    )
}

async fn start_judge(taste: Taste) -> (String, FakeJudge) {
    let judge = FakeJudge {
        taste,
        asked: Arc::default(),
    };
    let app = Router::new()
        .route(
            "/v1/models",
            get(|| async { Json(json!({"data": [{"id": "judge-model"}]})) }),
        )
        .route("/v1/chat/completions", post(chat))
        .with_state(judge.clone());
    (serve(app).await, judge)
}

/// A candidate as the query gives it.
#[derive(Debug, Clone)]
struct Row {
    prompt_id: i64,
    response: String,
    reward: f64,
    is_best: bool,
    wins: Option<i32>,
    consistent: Option<f64>,
}

const QUERY: &str = "SELECT prompt_id, response, reward, is_best, judge_wins, judge_consistent \
                     FROM random_sample('p', 4)";

async fn judged(taste: Taste) -> (Vec<Row>, FakeJudge, datafusion_prs::StatsSnapshot) {
    let (policy, _p) = start(Mode::Normal).await;
    let (reward, _r) = start(Mode::Normal).await;
    let (judge_url, judge) = start_judge(taste).await;
    let ctx = context(
        &policy,
        &reward,
        &[
            ("judge_url", &format!("{judge_url}/v1")),
            ("judge_top_k", "3"),
        ],
    )
    .await;
    let (rows, stats) = run(&ctx).await;
    (rows, judge, stats)
}

/// The candidates of [`QUERY`] and the job's counters so far.
async fn run(
    ctx: &datafusion::prelude::SessionContext,
) -> (Vec<Row>, datafusion_prs::StatsSnapshot) {
    let b = rows(ctx, QUERY).await;
    let ids = strings(&b, "prompt_id");
    let responses = strings(&b, "response");
    let reward = b
        .column_by_name("reward")
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone();
    let best = b.column_by_name("is_best").unwrap().as_boolean().clone();
    let wins = b
        .column_by_name("judge_wins")
        .unwrap()
        .as_primitive::<Int32Type>()
        .clone();
    let consistent = b
        .column_by_name("judge_consistent")
        .unwrap()
        .as_primitive::<Float64Type>()
        .clone();
    let out = (0..b.num_rows())
        .map(|i| Row {
            prompt_id: ids[i].as_deref().unwrap().parse().unwrap(),
            response: responses[i].clone().unwrap(),
            reward: reward.value(i),
            is_best: best.value(i),
            wins: wins.is_valid(i).then(|| wins.value(i)),
            consistent: consistent.is_valid(i).then(|| consistent.value(i)),
        })
        .collect();
    let stats = JobStats::of(ctx.state().config()).snapshot();
    (out, stats)
}

/// Each prompt's candidates, highest reward first.
fn by_prompt(rows: &[Row]) -> HashMap<i64, Vec<Row>> {
    let mut out: HashMap<i64, Vec<Row>> = HashMap::new();
    for r in rows {
        out.entry(r.prompt_id).or_default().push(r.clone());
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| b.reward.partial_cmp(&a.reward).unwrap());
    }
    out
}

#[tokio::test]
async fn every_pair_is_asked_in_both_orders_and_a_consistent_judge_decides() {
    let (rows, judge, stats) = judged(Taste::LowerScore).await;
    assert_eq!(rows.len(), 8);
    // 2 prompts, 3 pairs each, both orders
    let asked = judge.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 12);
    for (a, b) in &asked {
        assert!(
            asked.contains(&(b.clone(), a.clone())),
            "{a} / {b} asked once"
        );
    }
    assert_eq!(stats.judge_requests, 12);
    assert_eq!(
        (
            stats.checks.judge_pairs,
            stats.checks.judge_inconsistent_pairs
        ),
        (6, 0)
    );
    let mut moved = 0;
    for (id, prompt) in by_prompt(&rows) {
        // the top 3 by reward were compared; the fourth was not
        let (top, rest) = prompt.split_at(3);
        assert!(rest
            .iter()
            .all(|r| r.wins.is_none() && r.consistent.is_none() && !r.is_best));
        assert!(
            top.iter().all(|r| r.consistent == Some(1.0)),
            "{id}: {top:?}"
        );
        // the judge's order of the three: each wins against those it likes less
        let mut liked: Vec<&Row> = top.iter().collect();
        liked.sort_by(|a, b| {
            score_of(&a.response)
                .partial_cmp(&score_of(&b.response))
                .unwrap()
        });
        for (rank, r) in liked.iter().enumerate() {
            assert_eq!(r.wins, Some(2 - rank as i32), "{id}: {liked:?}");
        }
        let best: Vec<&Row> = prompt.iter().filter(|r| r.is_best).collect();
        assert_eq!(best.len(), 1, "{id}");
        assert_eq!(
            best[0].response, liked[0].response,
            "{id}: the judge decides"
        );
        moved += usize::from(best[0].response != top[0].response);
    }
    assert!(
        moved > 0,
        "the judge never disagreed with the reward: the test shows nothing"
    );
}

#[tokio::test]
async fn a_judge_that_only_shows_its_position_bias_never_moves_is_best() {
    let (rows, judge, stats) = judged(Taste::FirstPosition).await;
    assert_eq!(judge.asked.lock().unwrap().len(), 12);
    assert_eq!(
        (
            stats.checks.judge_pairs,
            stats.checks.judge_inconsistent_pairs
        ),
        (6, 6)
    );
    for (id, prompt) in by_prompt(&rows) {
        assert!(prompt[0].is_best, "{id}: the reward's best stays best");
        assert!(prompt[1..].iter().all(|r| !r.is_best));
        for r in &prompt[..3] {
            assert_eq!((r.wins, r.consistent), (Some(0), Some(0.0)), "{id}");
        }
    }
}

#[tokio::test]
async fn a_judge_without_a_url_or_with_one_candidate_is_refused() {
    let (policy, _p) = start(Mode::Normal).await;
    let (reward, _r) = start(Mode::Normal).await;
    let ctx = context(&policy, &reward, &[("judge_top_k", "2")]).await;
    let e = query_error(&ctx, QUERY).await;
    assert!(e.contains("prs.judge_url"), "{e}");
    let ctx = context(
        &policy,
        &reward,
        &[("judge_top_k", "1"), ("judge_url", "http://127.0.0.1:9/v1")],
    )
    .await;
    let e = query_error(&ctx, QUERY).await;
    assert!(e.contains("judge_top_k") && e.contains("2 or more"), "{e}");
}

#[tokio::test]
async fn a_judge_that_fails_leaves_the_choice_to_the_reward_and_says_so() {
    let (policy, _p) = start(Mode::Normal).await;
    let (reward, _r) = start(Mode::Normal).await;
    let (down, _d) = start(Mode::Down).await;
    let judge_url = format!("{down}/v1");
    let settings = [
        ("judge_url", judge_url.as_str()),
        ("judge_top_k", "3"),
        ("retry_attempts", "2"),
        ("preflight", "false"),
    ];
    let ctx = context(&policy, &reward, &settings).await;
    let b = rows(&ctx, QUERY).await;
    assert_eq!(b.num_rows(), 8);
    assert_eq!(b.column_by_name("judge_wins").unwrap().null_count(), 8);
    let best = b.column_by_name("is_best").unwrap().as_boolean();
    assert_eq!(best.true_count(), 2, "one best per prompt, by reward");
    let stats = JobStats::of(ctx.state().config()).snapshot();
    assert_eq!(stats.checks.judge_failed_prompts, 2);
    assert_eq!(stats.failed_candidates, 0, "the candidates stand as scored");
    // with the preflight, the query stops first and names the judge
    let ctx = context(&policy, &reward, &settings[..3]).await;
    let e = query_error(&ctx, QUERY).await;
    assert!(e.contains("the judge (prs.judge_url)"), "{e}");
}

#[tokio::test]
async fn answers_without_a_verdict_are_counted_apart_from_position_bias() {
    let (rows, _judge, stats) = judged(Taste::Silent).await;
    let c = &stats.checks;
    let counts = (
        c.judge_pairs,
        c.judge_inconsistent_pairs,
        c.judge_no_verdict_pairs,
    );
    assert_eq!(counts, (6, 0, 6));
    for prompt in by_prompt(&rows).values() {
        assert!(prompt[0].is_best);
        assert!(prompt[..3]
            .iter()
            .all(|r| r.wins == Some(0) && r.consistent == Some(0.0)));
    }
}

#[tokio::test]
async fn the_judges_answers_are_journaled_and_a_failed_judge_is_asked_again() {
    let (policy, _p) = start(Mode::Normal).await;
    let (reward, _r) = start(Mode::Normal).await;
    let (judge_url, judge) = start_judge(Taste::LowerScore).await;
    let dir = tempfile::tempdir().unwrap();
    let judge_url = format!("{judge_url}/v1");
    let settings = [
        ("judge_url", judge_url.as_str()),
        ("judge_top_k", "3"),
        ("checkpoint_dir", dir.path().to_str().unwrap()),
    ];
    let ctx = context(&policy, &reward, &settings).await;
    let plan = explain(&ctx, QUERY).await;
    assert!(
        plan.contains(&format!("judge={judge_url}")) && plan.contains("top_k=3"),
        "{plan}"
    );
    let key = |r: &Row| {
        let consistent = r.consistent.map(f64::to_bits);
        (
            r.prompt_id,
            r.response.clone(),
            r.is_best,
            r.wins,
            consistent,
        )
    };
    let (first, _) = run(&ctx).await;
    let asked = judge.asked.lock().unwrap().len();
    assert_eq!(asked, 12);
    let (again, _) = run(&ctx).await;
    assert_eq!(
        judge.asked.lock().unwrap().len(),
        asked,
        "served from the checkpoint"
    );
    let mut a: Vec<_> = first.iter().map(key).collect();
    let mut b: Vec<_> = again.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // a judge that fails leaves its prompts out of the checkpoint: the next run asks again
    let (down, down_fake) = start(Mode::Down).await;
    let down_url = format!("{down}/v1");
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("judge_url", down_url.as_str()),
        ("judge_top_k", "3"),
        ("retry_attempts", "1"),
        ("preflight", "false"),
        ("checkpoint_dir", dir.path().to_str().unwrap()),
    ];
    let ctx = context(&policy, &reward, &settings).await;
    run(&ctx).await;
    let failed = requests(&down_fake, "").len();
    assert!(failed > 0);
    let (_, stats) = run(&ctx).await;
    assert!(requests(&down_fake, "").len() > failed, "asked again");
    assert_eq!(stats.checks.judge_failed_prompts, 4, "two prompts, twice");
}

#[tokio::test]
async fn the_simulator_judges_maths_answers_by_their_truth() {
    let style = prs_sim::TextStyle {
        math: true,
        ..Default::default()
    };
    let (sim, ctx) = sim_context(style, &[("verifier", "math")]).await;
    let judge_url = sim.policy_url();
    for (k, v) in [("judge_url", judge_url.as_str()), ("judge_top_k", "3")] {
        set(&ctx, k, v).await;
    }
    let b = rows(
        &ctx,
        "SELECT prompt_id, bool_or(judge_wins IS NOT NULL AND verified) AS a_right_one_compared, \
                bool_or(is_best AND verified) AS best_is_right \
         FROM random_sample('data/math/prompts.parquet', 8) GROUP BY prompt_id",
    )
    .await;
    let compared = b.column(1).as_boolean();
    let best = b.column(2).as_boolean();
    let mut contested = 0;
    for i in 0..b.num_rows() {
        if compared.value(i) {
            contested += 1;
            assert!(
                best.value(i),
                "row {i}: a right answer was compared, and lost"
            );
        }
    }
    assert!(contested > 50, "{contested}");
    let checks = JobStats::of(ctx.state().config()).snapshot().checks;
    assert!(checks.judge_pairs > 0);
    assert_eq!(
        (
            checks.judge_inconsistent_pairs,
            checks.judge_no_verdict_pairs
        ),
        (0, 0)
    );
}
