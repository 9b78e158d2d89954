//! Better data: unique candidates (`prs.unique`), the answer of a reasoning policy
//! (`prs.answer_pattern`) and truncation-aware selection, against fake servers and the
//! simulator.

use std::collections::{BTreeMap, HashSet};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use datafusion::prelude::SessionContext;
use datafusion_prs::{JobStats, StatsSnapshot};

use crate::common::*;

fn stats(ctx: &SessionContext) -> StatsSnapshot {
    JobStats::of(ctx.state().config()).snapshot()
}

/// Each prompt's responses, whitespace collapsed (as `prs.unique` compares them).
fn responses_by_prompt(b: &RecordBatch) -> BTreeMap<i64, Vec<String>> {
    texts_by_prompt(b, "response")
}

fn texts_by_prompt(b: &RecordBatch, column: &str) -> BTreeMap<i64, Vec<String>> {
    let ids = b
        .column_by_name("prompt_id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (i, r) in strings(b, column).into_iter().enumerate() {
        let r = r.unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
        out.entry(ids.value(i)).or_default().push(r);
    }
    out
}

fn distinct(texts: &[String]) -> usize {
    texts.iter().collect::<HashSet<_>>().len()
}

fn policy_requests(fake: &Fake) -> usize {
    requests(fake, "completions").len()
}

#[tokio::test]
async fn unique_gives_n_distinct_candidates_and_counts_the_extra_samples() {
    let sql = |method: &str, options: &str| {
        format!("SELECT prompt_id, response, duplicate_of, seed FROM {method}('p', 8, '{options}')")
    };
    for method in ["random_sample", "prs_sample"] {
        // without it, a confident policy spends the budget on copies
        let (url, fake) = start(Mode::Repeats).await;
        let ctx = context(&url, &url, &[("policy_model", "m")]).await;
        let plain = responses_by_prompt(&rows(&ctx, &sql(method, "")).await);
        assert!(plain.values().all(|r| distinct(r) < 8), "{plain:?}");
        let plain_requests = policy_requests(&fake);

        let (url, fake) = start(Mode::Repeats).await;
        let ctx = context(&url, &url, &[("policy_model", "m")]).await;
        let b = rows(&ctx, &sql(method, "unique=true")).await;
        let unique = responses_by_prompt(&b);
        assert_eq!(unique.len(), 2);
        assert!(
            unique.values().all(|r| r.len() == 8 && distinct(r) == 8),
            "{unique:?}"
        );
        assert_eq!(b.column_by_name("duplicate_of").unwrap().null_count(), 16);
        let extra = stats(&ctx).checks.extra_samples as usize;
        let extra_requests = policy_requests(&fake) - plain_requests;
        // each extra request carries at least one extra sample, within n per prompt
        assert!(extra_requests >= 1 && extra_requests <= extra && extra <= 16);
        if method == "random_sample" {
            // per prompt: 3 copies asked again in one request (n=3), of which 1 is a copy
            // again (n=1): 4 extra samples in 2 extra requests
            assert_eq!((extra, extra_requests), (8, 4));
        }
        // the same run gives the same rows
        let (url, _fake) = start(Mode::Repeats).await;
        let again = context(&url, &url, &[("policy_model", "m")]).await;
        assert_eq!(rows(&again, &sql(method, "unique=true")).await, b);
    }
}

#[tokio::test]
async fn copies_left_when_the_extra_samples_run_out_are_kept_and_marked() {
    let (url, _fake) = start(Mode::Repeats).await;
    let ctx = context(&url, &url, &[("policy_model", "m")]).await;
    let b = rows(
        &ctx,
        "SELECT prompt_id, sample_index, duplicate_of FROM random_sample('p', 8, \
         'unique=true, unique_max_extra=1') ORDER BY prompt_id, sample_index",
    )
    .await;
    assert_eq!(b.num_rows(), 16);
    let dup = b
        .column_by_name("duplicate_of")
        .unwrap()
        .as_primitive::<Int32Type>();
    // copies at 1, 3, 5, 7: the one extra sample replaces 3; 5 and 7 still repeat 1
    let marked: Vec<Option<i32>> = (0..8)
        .map(|i| dup.is_valid(i).then(|| dup.value(i)))
        .collect();
    assert_eq!(
        marked,
        vec![None, None, None, None, None, Some(1), None, Some(1)]
    );
    let checks = stats(&ctx).checks;
    assert_eq!((checks.extra_samples, checks.duplicates_kept), (2, 4));
}

#[tokio::test]
async fn a_reasoning_policy_is_scored_and_revised_on_its_answer_only() {
    let (url, fake) = start(Mode::Thinks).await;
    let ctx = context(&url, &url, &[("policy_model", "m")]).await;
    let b = rows(
        &ctx,
        "SELECT * FROM prs_sample('p', 6, 'widths=3/3, answer_pattern=think') \
         ORDER BY prompt_id, sample_index",
    )
    .await;
    assert_eq!(b.num_rows(), 12);
    // the reward server and the feedback and revise prompts never see a think block
    let scored: Vec<String> = ["/pooling"]
        .iter()
        .flat_map(|p| requests(&fake, p))
        .map(|r| r.body.to_string())
        .collect();
    assert!(!scored.is_empty());
    assert!(scored.iter().all(|b| !b.contains("SECRET")), "{scored:?}");
    let later: Vec<String> = requests(&fake, "completions")
        .iter()
        .map(|r| user_text(&r.body))
        .filter(|t| t.contains("Feedback (bullet points)") || t.contains("Improved answer"))
        .collect();
    assert_eq!(later.len(), 4, "a feedback and a revise request per prompt");
    assert!(later.iter().all(|t| !t.contains("SECRET")), "{later:?}");
    assert!(later
        .iter()
        .any(|t| t.contains("### Feedback\nFEEDBACK seed=")));
    // the response column keeps it all; the answer column holds the answer
    let (responses, answers, errors) = (
        strings(&b, "response"),
        strings(&b, "answer"),
        strings(&b, "error"),
    );
    let reward = b
        .column_by_name("reward")
        .unwrap()
        .as_primitive::<Float64Type>();
    for i in 0..12 {
        assert!(responses[i]
            .as_deref()
            .unwrap()
            .starts_with("<think>SECRET"));
        if i % 3 == 2 {
            // choice 2 of each request never stopped thinking: an error row, not scored
            assert!(answers[i].is_none() && reward.is_null(i));
            assert!(
                errors[i].as_deref().unwrap().contains("</think>"),
                "{errors:?}"
            );
        } else {
            let answer = answers[i].as_deref().unwrap();
            assert!(answer.starts_with("ANSWER seed=") && !answer.contains("think"));
            assert!(reward.is_valid(i) && errors[i].is_none());
        }
    }
    assert_eq!(stats(&ctx).errors.get("no_answer"), Some(&4));
}

#[tokio::test]
async fn a_prompt_with_only_truncated_candidates_still_has_a_best_and_is_counted() {
    // the fake's /completions answers finish_reason = length for every sample
    let (url, _fake) = start(Mode::Normal).await;
    let ctx = context(
        &url,
        &url,
        &[("policy_model", "m"), ("policy_api", "completions")],
    )
    .await;
    let b = rows(
        &ctx,
        "SELECT prompt_id FROM random_sample('p', 4, 'best_excludes_truncated=true') WHERE is_best",
    )
    .await;
    assert_eq!(b.num_rows(), 2);
    assert_eq!(stats(&ctx).checks.all_truncated_prompts, 2);
}

#[tokio::test]
async fn the_simulator_repeats_itself_and_thinks_when_asked() {
    let style = prs_sim::TextStyle {
        repeat_share: 0.5,
        think: true,
        ..Default::default()
    };
    let (_sim, ctx) = sim_context(style, &[]).await;
    let sql = |options: &str| {
        format!("SELECT prompt_id, response, answer FROM random_sample('p', 8, '{options}')")
    };
    // the thinking differs, the answers repeat
    let plain = rows(&ctx, &sql("answer_pattern=think")).await;
    assert!(responses_by_prompt(&plain)
        .values()
        .all(|r| distinct(r) == 8));
    let plain = texts_by_prompt(&plain, "answer");
    assert!(plain.values().all(|r| distinct(r) < 8), "{plain:?}");
    let b = rows(&ctx, &sql("unique=true, answer_pattern=think")).await;
    assert!(texts_by_prompt(&b, "answer")
        .values()
        .all(|r| distinct(r) == 8));
    assert!(stats(&ctx).checks.extra_samples > 0);
    let answers = strings(&b, "answer");
    assert!(answers.iter().all(|a| a
        .as_deref()
        .is_some_and(|a| !a.is_empty() && !a.contains("think>"))));
}
