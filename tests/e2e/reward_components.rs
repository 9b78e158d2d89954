//! Named reward components (`prs.reward_components`) against fake reward servers: each
//! component's score in `rewards` is what its own server returned for the text in its own
//! format, `reward` follows `prs.reward_aggregate`, and a component that fails makes error rows
//! that name it.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Float64Type;

use crate::common::*;

/// Two text components on their own servers, each with its own protocol and template; the
/// prompt without its preference (`preference: never`), so the texts are easy to rebuild.
fn two_components(helpful: &str, safe: &str) -> String {
    format!(
        r#"[{{"name":"helpful","url":"{helpful}","protocol":"openrlhf","template":"H: {{prompt}} | {{response}}","preference":"never","weight":0.7}},
            {{"name":"safe","url":"{safe}","protocol":"tei","template":"S: {{response}}","preference":"never","weight":0.3}}]"#
    )
}

/// A candidate as the query gives it.
#[derive(Debug)]
struct Row {
    prompt_id: i64,
    prompt: String,
    response: String,
    reward: Option<f64>,
    helpful: Option<f64>,
    safe: Option<f64>,
    is_best: bool,
    error: Option<String>,
}

const QUERY: &str = "SELECT prompt_id, prompt, response, reward, rewards['helpful'] AS helpful, \
     rewards['safe'] AS safe, is_best, error, reward_model FROM random_sample('p', 4)";

fn read(b: &RecordBatch) -> Vec<Row> {
    let f64s = |name: &str| {
        let a = b
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Float64Type>();
        (0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i)))
            .collect::<Vec<_>>()
    };
    let (reward, helpful, safe) = (f64s("reward"), f64s("helpful"), f64s("safe"));
    let ids = strings(b, "prompt_id");
    let (prompts, responses, errors) = (
        strings(b, "prompt"),
        strings(b, "response"),
        strings(b, "error"),
    );
    let best = b.column_by_name("is_best").unwrap().as_boolean();
    (0..b.num_rows())
        .map(|i| Row {
            prompt_id: ids[i].as_deref().unwrap().parse().unwrap(),
            prompt: prompts[i].clone().unwrap(),
            response: responses[i].clone().unwrap_or_default(),
            reward: reward[i],
            helpful: helpful[i],
            safe: safe[i],
            is_best: best.value(i),
            error: errors[i].clone(),
        })
        .collect()
}

fn scores(f: &Fake) -> HashMap<String, f64> {
    f.scores.lock().unwrap().clone()
}

#[tokio::test]
async fn each_component_scores_in_its_own_format_and_the_reward_follows_the_rule() {
    let (policy, _p) = start(Mode::Normal).await;
    let (helpful_url, helpful) = start(Mode::Normal).await;
    let (safe_url, safe) = start(Mode::Normal).await;
    let ctx = context(&policy, "http://127.0.0.1:9", &[]).await;
    set(
        &ctx,
        "reward_components",
        &two_components(&helpful_url, &safe_url),
    )
    .await;
    let plan = explain(&ctx, QUERY).await;
    assert!(plan.contains("reward=weighted(helpful=openrlhf@"), "{plan}");
    for (rule, extra) in [("weighted", ""), ("min", ""), ("mean_minus_std", "0.5")] {
        set(&ctx, "reward_aggregate", rule).await;
        if !extra.is_empty() {
            set(&ctx, "reward_uncertainty_weight", extra).await;
        }
        let b = rows(&ctx, QUERY).await;
        let label = strings(&b, "reward_model")[0].clone().unwrap();
        assert!(
            label.starts_with(&format!("{rule}(helpful=openrlhf@"))
                && label.contains(", safe=tei@"),
            "{label}"
        );
        let rows = read(&b);
        assert_eq!(rows.len(), 8);
        let (h_scores, s_scores) = (scores(&helpful), scores(&safe));
        for r in &rows {
            assert_eq!(r.error, None);
            let h = h_scores[&format!("H: {} | {}", r.prompt, r.response)];
            let s = s_scores[&format!("S: {}", r.response)];
            assert_eq!((r.helpful, r.safe), (Some(h), Some(s)), "{r:?}");
            let expected = match rule {
                "weighted" => 0.7 * h + 0.3 * s,
                "min" => h.min(s),
                _ => {
                    let mean = 0.7 * h + 0.3 * s;
                    let var = 0.7 * (h - mean).powi(2) + 0.3 * (s - mean).powi(2);
                    mean - 0.5 * var.sqrt()
                }
            };
            assert!((r.reward.unwrap() - expected).abs() < 1e-9, "{rule}: {r:?}");
        }
        // the best of each prompt is the one with the highest aggregate
        for id in [10, 20] {
            let mine: Vec<&Row> = rows.iter().filter(|r| r.prompt_id == id).collect();
            let top = mine
                .iter()
                .map(|r| r.reward.unwrap())
                .fold(f64::MIN, f64::max);
            let best: Vec<&&Row> = mine.iter().filter(|r| r.is_best).collect();
            assert_eq!(best.len(), 1);
            assert_eq!(best[0].reward, Some(top), "{rule}");
        }
    }
    // each server saw only its own component's texts
    assert!(scores(&helpful).keys().all(|t| t.starts_with("H: ")));
    assert!(scores(&safe).keys().all(|t| t.starts_with("S: ")));
    assert!(!requests(&helpful, "/get_reward").is_empty());
    assert!(!requests(&safe, "/predict").is_empty());
}

#[tokio::test]
async fn a_component_that_fails_makes_error_rows_that_name_it() {
    let (policy, _p) = start(Mode::Normal).await;
    let (helpful_url, _h) = start(Mode::Normal).await;
    let (safe_url, _s) = start(Mode::Down).await;
    let ctx = context(
        &policy,
        "http://127.0.0.1:9",
        &[("retry_attempts", "2"), ("preflight", "false")],
    )
    .await;
    set(
        &ctx,
        "reward_components",
        &two_components(&helpful_url, &safe_url),
    )
    .await;
    let rows = read(&rows(&ctx, QUERY).await);
    assert_eq!(rows.len(), 8);
    for r in &rows {
        let e = r.error.as_deref().unwrap();
        assert!(e.starts_with("reward: reward component \"safe\": "), "{e}");
        // no partial aggregate passed off as complete
        assert_eq!(
            (r.reward, r.helpful, r.safe, r.is_best),
            (None, None, None, false)
        );
    }
    // with the preflight, the query stops before sampling and names the component
    set(&ctx, "preflight", "true").await;
    let e = query_error(&ctx, QUERY).await;
    assert!(e.contains("reward component \"safe\""), "{e}");
    assert!(!e.contains("reward component \"helpful\""), "{e}");
}

#[tokio::test]
async fn a_verifier_component_scores_the_verdict_and_weight_zero_is_recorded_only() {
    let style = prs_sim::TextStyle {
        math: true,
        ..Default::default()
    };
    let (sim, ctx) = sim_context(style, &[("verifier", "math")]).await;
    let components = format!(
        r#"[{{"name":"correct","verifier":"math"}},{{"name":"rm","url":"{}","weight":0}}]"#,
        sim.reward_url()
    );
    set(&ctx, "reward_components", &components).await;
    let sql = "SELECT verified, reward, rewards['correct'] AS correct, rewards['rm'] AS rm, error \
               FROM random_sample('data/math/prompts.parquet', 4) WHERE prompt_id <= 40";
    let b = rows(&ctx, sql).await;
    let verified = b.column_by_name("verified").unwrap().as_boolean();
    let col = |n: &str| {
        b.column_by_name(n)
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone()
    };
    let (reward, correct, rm) = (col("reward"), col("correct"), col("rm"));
    assert!(b.num_rows() >= 40, "{}", b.num_rows());
    let (mut right, mut wrong) = (0, 0);
    for i in 0..b.num_rows() {
        assert!(b.column_by_name("error").unwrap().is_null(i));
        let v = verified.value(i);
        assert_eq!(correct.value(i), if v { 1.0 } else { 0.0 });
        // weight 0: recorded, not counted
        assert!(rm.is_valid(i));
        assert_eq!(reward.value(i), correct.value(i));
        if v {
            right += 1
        } else {
            wrong += 1
        }
    }
    assert!(right > 0 && wrong > 0, "{right} right, {wrong} wrong");
}

#[tokio::test]
async fn without_components_rewards_is_null_and_bad_components_fail_at_set() {
    let (policy, _p) = start(Mode::Normal).await;
    let (reward, _r) = start(Mode::Normal).await;
    let ctx = context(&policy, &reward, &[]).await;
    let b = rows(&ctx, "SELECT reward, rewards FROM random_sample('p', 2)").await;
    assert_eq!(b.column(1).null_count(), 4);
    assert_eq!(b.column(0).null_count(), 0);
    let e = query_error(
        &ctx,
        r#"SET prs.reward_components = '[{"name":"a","colour":"red"}]'"#,
    )
    .await;
    assert!(e.contains("unknown field \"colour\""), "{e}");
}

#[tokio::test]
async fn components_resume_from_the_checkpoint_and_a_new_weight_is_a_new_call() {
    let (policy, _p) = start(Mode::Normal).await;
    let (helpful_url, helpful) = start(Mode::Normal).await;
    let (safe_url, safe) = start(Mode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        &policy,
        "http://127.0.0.1:9",
        &[("checkpoint_dir", dir.path().to_str().unwrap())],
    )
    .await;
    let components = two_components(&helpful_url, &safe_url);
    set(&ctx, "reward_components", &components).await;
    let scored = |f: &Fake| requests(f, "/get_reward").len() + requests(f, "/predict").len();
    let first = read(&rows(&ctx, QUERY).await);
    let asked = (scored(&helpful), scored(&safe));
    assert!(asked.0 > 0 && asked.1 > 0);
    let again = read(&rows(&ctx, QUERY).await);
    assert_eq!(
        (scored(&helpful), scored(&safe)),
        asked,
        "served from the checkpoint"
    );
    let key = |r: &Row| {
        (
            r.prompt_id,
            r.response.clone(),
            r.reward,
            r.helpful,
            r.safe,
            r.is_best,
        )
    };
    let mut a: Vec<_> = first.iter().map(key).collect();
    let mut b: Vec<_> = again.iter().map(key).collect();
    a.sort_by(|x, y| x.partial_cmp(y).unwrap());
    b.sort_by(|x, y| x.partial_cmp(y).unwrap());
    assert_eq!(a, b);
    // another weight decides differently: a call of its own, sampled and scored again
    set(&ctx, "reward_components", &components.replace("0.7", "0.6")).await;
    let reweighed = read(&rows(&ctx, QUERY).await);
    assert!(scored(&helpful) > asked.0 && scored(&safe) > asked.1);
    assert!(reweighed.iter().all(|r| r.error.is_none()));
}
