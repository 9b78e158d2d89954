//! Verified rewards end to end: the simulator's maths mode (questions with a latent solve rate,
//! answers in many formats) through the samplers, the `math` verifier and adaptive sampling.

use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::prelude::SessionContext;

use crate::common::*;

const QUESTIONS: &str = "data/math/prompts.parquet";

async fn math_sim(hostile_share: f64) -> (prs_sim::SimHandle, SessionContext) {
    let style = prs_sim::TextStyle {
        math: true,
        hostile_share,
        ..Default::default()
    };
    sim_context(style, &[("verifier", "math")]).await
}

/// A row's prompt, response, verified and error.
type VerdictRow = (String, Option<String>, Option<bool>, Option<String>);

/// (prompt, response, verified, error) of every row.
fn verdict_rows(batches: &[RecordBatch]) -> Vec<VerdictRow> {
    let mut out = Vec::new();
    for b in batches {
        let text = |i: usize| b.column(i).as_string::<i32>().clone();
        let (prompt, response, error) = (text(0), text(1), text(3));
        let verified = b.column(2).as_boolean();
        for r in 0..b.num_rows() {
            let opt = |a: &datafusion::arrow::array::StringArray| {
                a.is_valid(r).then(|| a.value(r).to_string())
            };
            out.push((
                prompt.value(r).to_string(),
                opt(&response),
                verified.is_valid(r).then(|| verified.value(r)),
                opt(&error),
            ));
        }
    }
    out
}

async fn sample(ctx: &SessionContext, n: usize, options: &str) -> Vec<VerdictRow> {
    let sql = format!(
        "SELECT prompt, response, verified, error FROM random_sample('{QUESTIONS}', {n}, '{options}')"
    );
    verdict_rows(&ctx.sql(&sql).await.unwrap().collect().await.unwrap())
}

#[tokio::test]
async fn the_verifier_agrees_with_the_simulators_truth_in_every_format() {
    let (_sim, ctx) = math_sim(0.0).await;
    let rows = sample(&ctx, 8, "").await;
    assert_eq!(rows.len(), 1600);
    let (mut right, mut wrong) = (0, 0);
    for (prompt, response, verified, error) in &rows {
        assert_eq!(error, &None);
        let response = response.as_deref().unwrap();
        let Some(truth) = prs_sim::sim_truth(prompt, response) else {
            // cut at max_tokens before its answer: nothing to find
            assert_eq!(*verified, Some(false), "{response}");
            continue;
        };
        assert_eq!(*verified, Some(truth), "{prompt} / {response}");
        if truth {
            right += 1;
        } else {
            wrong += 1;
        }
    }
    assert!(right > 300 && wrong > 300, "{right} right, {wrong} wrong");
}

#[tokio::test]
async fn hostile_answers_neither_stall_the_job_nor_get_a_guess() {
    let (_sim, ctx) = math_sim(0.2).await;
    let started = Instant::now();
    let rows = sample(&ctx, 8, "verify_timeout_ms=500").await;
    assert_eq!(rows.len(), 1600);
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{:?}",
        started.elapsed()
    );
    let undecided = rows
        .iter()
        .filter(|r| r.3.as_deref().is_some_and(|e| e.starts_with("verify: ")))
        .count();
    assert!(undecided > 50, "{undecided} checks could not decide");
    for (prompt, response, verified, error) in &rows {
        let truth = prs_sim::sim_truth(prompt, response.as_deref().unwrap_or(""));
        match truth {
            Some(t) => assert_eq!(*verified, Some(t), "{response:?}"),
            // hostile: an error row that says why, or a verdict on what could be read
            None => assert!(error.is_some() || verified.is_some()),
        }
    }
}

#[tokio::test]
async fn adaptive_groups_spend_less_on_prompts_that_teach_nothing() {
    let (_sim, ctx) = math_sim(0.0).await;
    let sql = |adaptive: &str| {
        format!(
            "SELECT count(*) FILTER (WHERE any_right AND any_wrong AND g = 8) AS groups,
                    sum(g) AS candidates,
                    count(*) FILTER (WHERE stopped = 'uniform') AS stopped_early
             FROM (SELECT prompt_id, max(group_size) AS g, max(stopped) AS stopped,
                          bool_or(verified) AS any_right, bool_or(NOT verified) AS any_wrong
                   FROM random_sample('{QUESTIONS}', 8, 'adaptive={adaptive}') GROUP BY prompt_id)"
        )
    };
    let counts = |b: Vec<RecordBatch>| {
        let col = |i: usize| {
            datafusion::arrow::compute::cast(
                b[0].column(i),
                &datafusion::arrow::datatypes::DataType::Int64,
            )
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0)
        };
        (col(0), col(1), col(2))
    };
    let uniform = counts(ctx.sql(&sql("off")).await.unwrap().collect().await.unwrap());
    let adaptive = counts(
        ctx.sql(&sql("groups"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap(),
    );
    assert_eq!((uniform.1, uniform.2), (1600, 0));
    // most questions are always or never solved: they stop after three agreeing verdicts
    assert!(adaptive.2 > 120, "{adaptive:?}");
    assert!(adaptive.1 < 1000, "{adaptive:?}");
    // and more informative groups per candidate than uniform sampling gives
    let per = |(groups, candidates, _): (i64, i64, i64)| groups as f64 / candidates as f64;
    assert!(
        per(adaptive) > 1.3 * per(uniform),
        "{adaptive:?} vs {uniform:?}"
    );
}
