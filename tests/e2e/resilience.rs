//! Jobs that survive: retries of transient failures, per-row errors, never a fake reward.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::prelude::SessionContext;
use datafusion_prs::{JobStats, StatsSnapshot};
use serde_json::{json, Value};

use crate::common::*;

fn stats(ctx: &SessionContext) -> StatsSnapshot {
    ctx.state()
        .config()
        .get_extension::<JobStats>()
        .expect("the CLI context installs JobStats")
        .snapshot()
}

async fn forty_prompts(ctx: &SessionContext) {
    ctx.sql(
        "CREATE TABLE many AS SELECT value AS id, 'Question number ' || CAST(value AS VARCHAR) || '?' AS prompt \
         FROM generate_series(1, 40)",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn flaky_servers_still_give_every_row_its_own_reward() {
    let (url, fake) = start(Mode::Flaky).await;
    let ctx = context(
        &url,
        &url,
        &[("policy_model", "m"), ("reward_batch_size", "3")],
    )
    .await;
    forty_prompts(&ctx).await;
    let b = rows(
        &ctx,
        "SELECT * FROM prs_sample('many', 6) ORDER BY prompt_id, sample_index",
    )
    .await;
    assert_eq!(b.num_rows(), 240);
    assert_eq!(
        b.column_by_name("error").unwrap().null_count(),
        240,
        "{:?}",
        strings(&b, "error").into_iter().flatten().next()
    );
    let rewards = b
        .column_by_name("reward")
        .unwrap()
        .as_primitive::<Float64Type>();
    let responses = strings(&b, "response");
    let prompts = strings(&b, "prompt");
    let scores = fake.scores.lock().unwrap().clone();
    for i in 0..b.num_rows() {
        let text = format!(
            "Human: {}\nAssistant: {}",
            prompts[i].as_deref().unwrap(),
            responses[i].as_deref().unwrap()
        );
        assert_eq!(scores.get(&text), Some(&rewards.value(i)), "row {i}");
    }
    let s = stats(&ctx);
    // every 10th request failed, so there were retries, and none is left as an error
    assert!(
        s.retries
            >= (fake.counter.load(std::sync::atomic::Ordering::SeqCst) / 10).saturating_sub(1),
        "{s:?}"
    );
    assert!(s.retries > 5, "{s:?}");
    assert_eq!(s.failed_candidates, 0);
    assert_eq!(s.prompts, 40);
}

#[tokio::test]
async fn permanent_errors_become_error_rows_or_fail() {
    let (bad, fake) = start(Mode::Unauthorized).await;
    let (good, _) = start(Mode::Normal).await;
    let ctx = context(
        &bad,
        &good,
        &[("policy_model", "m"), ("preflight", "false")],
    )
    .await;
    let b = rows(&ctx, "SELECT * FROM prs_sample('p', 4)").await;
    // layer 0 fails for both prompts; layer 1 has nothing to refine
    assert_eq!(b.num_rows(), 8);
    let errors = strings(&b, "error");
    assert!(errors.iter().all(|e| e.is_some()));
    assert!(
        errors
            .iter()
            .filter(|e| e.as_deref().unwrap().contains("HTTP 401: invalid api key"))
            .count()
            == 4
    );
    assert_eq!(b.column_by_name("reward").unwrap().null_count(), 8);
    assert!(
        b.column_by_name("is_best")
            .unwrap()
            .as_boolean()
            .true_count()
            == 0
    );
    // 401 is not retried: one request per prompt
    assert_eq!(requests(&fake, "/chat/completions").len(), 2);
    let s = stats(&ctx);
    assert_eq!(s.retries, 0);
    assert_eq!(s.failed_candidates, 8);
    assert_eq!(s.errors.get("policy_http_401"), Some(&4));
    assert_eq!(s.errors.get("no_candidate_to_refine"), Some(&4));

    let ctx = context(&bad, &good, &[("policy_model", "m"), ("on_error", "fail")]).await;
    let e = query_error(&ctx, "SELECT * FROM prs_sample('p', 4)").await;
    assert!(e.contains("HTTP 401: invalid api key"), "{e}");
}

#[tokio::test]
async fn a_reward_that_cannot_be_read_is_null_never_zero() {
    let (good, _) = start(Mode::Normal).await;
    let (short, fake) = start(Mode::ShortScores).await;
    let ctx = context(
        &good,
        &short,
        &[
            ("retry_attempts", "3"),
            ("preflight", "false"),
            ("reward_batch_wait_ms", "0"),
            ("reward_input", "text"),
        ],
    )
    .await;
    let b = rows(&ctx, "SELECT * FROM random_sample('p', 2)").await;
    assert_eq!(b.num_rows(), 4);
    assert_eq!(b.column_by_name("reward").unwrap().null_count(), 4);
    assert_eq!(
        b.column_by_name("response").unwrap().null_count(),
        0,
        "responses are kept"
    );
    assert!(strings(&b, "error")
        .iter()
        .all(|e| e.as_deref().unwrap().contains("sent 2 texts, got 1 scores")));
    assert_eq!(
        b.column_by_name("is_best")
            .unwrap()
            .as_boolean()
            .true_count(),
        0
    );
    // a garbage answer is retried: 3 attempts per prompt
    assert_eq!(requests(&fake, "/pooling").len(), 6);
    assert_eq!(stats(&ctx).errors.get("reward_bad_response"), Some(&4));
}

#[tokio::test]
async fn preflight_fails_fast_with_what_is_wrong() {
    let (good, fake) = start(Mode::Normal).await;
    let (bad, _) = start(Mode::Unauthorized).await;

    // 401 on GET /models: no sampling request is made
    let ctx = context(&bad, &good, &[]).await;
    let e = query_error(&ctx, "SELECT * FROM prs_sample('p', 4)").await;
    assert!(
        e.contains("preflight check failed: policy endpoint")
            && e.contains("/v1/models answered HTTP 401: invalid api key"),
        "{e}"
    );

    // a model the server does not serve
    let ctx = context(&good, &good, &[("policy_model", "nope")]).await;
    let e = query_error(&ctx, "SELECT * FROM prs_sample('p', 4)").await;
    assert!(e.contains("model \"nope\" (prs.policy_model) not found; the server lists fake-model, m, my-model, rm"), "{e}");
    let ctx = context(&good, &good, &[("reward_model", "other-rm")]).await;
    let e = query_error(&ctx, "SELECT * FROM prs_sample('p', 4)").await;
    assert!(
        e.contains("model \"other-rm\" (prs.reward_model) not found"),
        "{e}"
    );
    assert!(requests(&fake, "/chat/completions").is_empty());

    // unreachable: within seconds
    let started = std::time::Instant::now();
    let ctx = context("http://127.0.0.1:9", &good, &[]).await;
    let e = query_error(&ctx, "SELECT * FROM prs_sample('p', 4)").await;
    assert!(e.contains("preflight check failed: policy endpoint http://127.0.0.1:9/v1/models could not be reached"), "{e}");
    assert!(started.elapsed().as_secs() < 5);
}

#[tokio::test]
async fn explain_analyze_shows_requests_retries_tokens_and_waits() {
    let (url, fake) = start(Mode::Flaky).await;
    let ctx = context(&url, &url, &[("policy_model", "m")]).await;
    forty_prompts(&ctx).await;
    let b = rows(
        &ctx,
        "EXPLAIN ANALYZE SELECT count(*) FROM prs_sample('many', 4)",
    )
    .await;
    let plan = strings(&b, "plan")
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n");
    let metric = |name: &str| -> String {
        let i = plan
            .find(&format!(" {name}="))
            .unwrap_or_else(|| panic!("{name} missing: {plan}"));
        plan[i + name.len() + 2..]
            .split([',', ']'])
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(metric("prompts"), "40");
    // every request sent counts, retried ones too: 40 prompts x 3 requests, plus retries
    let sent = requests(&fake, "/chat/completions").len();
    assert!(sent >= 120, "{sent}");
    assert_eq!(metric("policy_requests"), sent.to_string());
    assert_ne!(metric("retries"), "0");
    assert_eq!(metric("failed_candidates"), "0");
    assert!(
        metric("completion_tokens").ends_with('K')
            || metric("completion_tokens").parse::<u64>().unwrap() > 0
    );
    for wait in ["policy_wait", "reward_wait"] {
        let v = metric(wait);
        assert!(
            v.ends_with("ms") || v.ends_with("µs") || v.ends_with('s'),
            "{wait}={v}"
        );
    }
}

#[tokio::test]
async fn budget_stops_new_work_and_says_so() {
    let (url, fake) = start(Mode::Normal).await;
    let ctx = context(
        &url,
        &url,
        &[
            ("preflight", "false"),
            ("policy_model", "m"),
            ("max_requests", "10"),
            ("prompt_concurrency", "1"),
            ("reward_input", "text"),
        ],
    )
    .await;
    forty_prompts(&ctx).await;
    let b = rows(&ctx, "SELECT * FROM prs_sample('many', 4)").await;
    let errors = strings(&b, "error");
    let budget_rows = errors
        .iter()
        .flatten()
        .filter(|e| e.starts_with("budget: prs.max_requests = 10 reached"))
        .count();
    // each prompt costs 3 policy + 2 reward requests (text: one per layer, which concurrent
    // prompts may share); prompts start until 10 requests are made, and those started finish
    // (the overshoot is in-flight work). With a window of one, the next prompt starts when the
    // previous one has its first layer done, 2 requests later: at most 10 / 2 + 1 start.
    let made = fake.log.lock().unwrap().len();
    let started = 40 - budget_rows;
    assert!((2..=6).contains(&started), "{started} prompts started");
    assert!(
        made >= 10 && made <= started * 5,
        "{made} requests, {started} prompts"
    );
    assert_eq!(b.num_rows(), started * 4 + budget_rows);
    assert_eq!(
        stats(&ctx).errors.get("budget"),
        Some(&(budget_rows as u64))
    );

    // a token budget
    let ctx = context(
        &url,
        &url,
        &[
            ("preflight", "false"),
            ("max_generated_tokens", "1"),
            ("prompt_concurrency", "1"),
        ],
    )
    .await;
    forty_prompts(&ctx).await;
    let b = rows(
        &ctx,
        "SELECT count(error) AS e FROM random_sample('many', 2)",
    )
    .await;
    let e = b
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0);
    // one prompt per partition may start before the first usage arrives
    assert!((38..=39).contains(&e), "{e}");
}

#[tokio::test]
async fn reward_requests_are_micro_batched_across_prompts() {
    let (url, fake) = start(Mode::Normal).await;
    let ctx = context(
        &url,
        &url,
        &[
            ("preflight", "false"),
            ("policy_model", "m"),
            ("reward_batch_wait_ms", "50"),
            ("reward_input", "text"),
        ],
    )
    .await;
    forty_prompts(&ctx).await;
    let b = rows(&ctx, "SELECT * FROM random_sample('many', 2)").await;
    assert_eq!(b.num_rows(), 80);
    // 80 texts in batches of up to 32: a handful of requests, not one per prompt
    let batches = requests(&fake, "/pooling");
    assert!(batches.len() < 10, "{} reward requests", batches.len());
    assert!(batches
        .iter()
        .any(|r| r.body["input"].as_array().unwrap().len() > 2));
    // and every row still carries the score returned for its own text
    let scores = fake.scores.lock().unwrap().clone();
    let rewards = b
        .column_by_name("reward")
        .unwrap()
        .as_primitive::<Float64Type>();
    let (prompts, responses) = (strings(&b, "prompt"), strings(&b, "response"));
    for i in 0..b.num_rows() {
        let text = format!(
            "Human: {}\nAssistant: {}",
            prompts[i].as_deref().unwrap(),
            responses[i].as_deref().unwrap()
        );
        assert_eq!(scores.get(&text), Some(&rewards.value(i)));
    }
}

#[tokio::test]
async fn limit_stops_further_requests() {
    let (url, fake) = start(Mode::Slow).await;
    let ctx = context(
        &url,
        &url,
        &[
            ("preflight", "false"),
            ("policy_model", "m"),
            ("prompt_concurrency", "2"),
        ],
    )
    .await;
    forty_prompts(&ctx).await;
    let b = rows(&ctx, "SELECT * FROM random_sample('many', 1) LIMIT 1").await;
    assert_eq!(b.num_rows(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let made = requests(&fake, "/chat/completions").len();
    // two partitions at most, two prompts each in flight when the first row arrived
    assert!(made <= 8, "{made} generation requests after LIMIT 1");
}

#[tokio::test]
async fn replicas_share_work_and_a_down_one_is_routed_around() {
    // two healthy replicas: both get work (fewest outstanding requests first)
    let (a, fa) = start(Mode::Slow).await;
    let (b, fb) = start(Mode::Slow).await;
    let ctx = context(&a, &a, &[("policy_model", "m")]).await;
    set(&ctx, "policy_url", &format!("{a}/v1,{b}/v1")).await;
    forty_prompts(&ctx).await;
    let rows_ = rows(&ctx, "SELECT * FROM random_sample('many', 2)").await;
    assert_eq!(rows_.num_rows(), 80);
    let (na, nb) = (
        requests(&fa, "/chat/completions").len(),
        requests(&fb, "/chat/completions").len(),
    );
    assert_eq!(na + nb, 40);
    assert!(na >= 10 && nb >= 10, "{na} / {nb}");

    // one replica down: every row still completes, from the other one
    let (down, fdown) = start(Mode::Down).await;
    let (good, fgood) = start(Mode::Normal).await;
    let ctx = context(
        &good,
        &good,
        &[("policy_model", "m"), ("replica_eject_secs", "60")],
    )
    .await;
    set(&ctx, "policy_url", &format!("{down}/v1,{good}/v1")).await;
    forty_prompts(&ctx).await;
    let b = rows(&ctx, "SELECT * FROM random_sample('many', 2)").await;
    assert_eq!(b.num_rows(), 80);
    assert_eq!(b.column_by_name("error").unwrap().null_count(), 80);
    assert_eq!(requests(&fgood, "/chat/completions").len(), 40);
    let sent_to_down = requests(&fdown, "/chat/completions").len();
    // only the first wave, before it was ejected
    assert!(sent_to_down < 40, "{sent_to_down}");
    assert!(stats(&ctx).retries >= sent_to_down as u64);

    // every replica down: preflight says so
    let (down2, _) = start(Mode::Down).await;
    let ctx = context(&good, &good, &[("policy_model", "m")]).await;
    set(&ctx, "policy_url", &format!("{down}/v1,{down2}/v1")).await;
    let e = query_error(&ctx, "SELECT * FROM random_sample('p', 1)").await;
    assert!(
        e.contains("preflight check failed") && e.contains("HTTP 503"),
        "{e}"
    );
}

#[tokio::test]
async fn in_flight_limit_counts_sequences() {
    let (url, fake) = start(Mode::Slow).await;
    let ctx = context(
        &url,
        &url,
        &[
            ("preflight", "false"),
            ("policy_model", "m"),
            ("max_in_flight", "8"),
        ],
    )
    .await;
    forty_prompts(&ctx).await;
    let b = rows(&ctx, "SELECT * FROM random_sample('many', 4)").await;
    assert_eq!(b.num_rows(), 160);
    let most = fake
        .max_active_seqs
        .load(std::sync::atomic::Ordering::SeqCst);
    // two requests of n=4 at a time, not one request per prompt in flight
    assert_eq!(most, 8);
}

/// A `Retry-After` no clock can hold (1e300 seconds) is a wait like any other: bounded by the
/// retry settings, never a panic.
#[tokio::test]
async fn a_huge_retry_after_is_a_bounded_wait() {
    use axum::response::IntoResponse;
    let refusals = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(2));
    let front: Front = std::sync::Arc::new(move |path, _| {
        let refuse = path.ends_with("completions")
            && refusals
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok();
        refuse.then(|| {
            let status = axum::http::StatusCode::TOO_MANY_REQUESTS;
            (status, [("retry-after", "1e300")], "slow down").into_response()
        })
    });
    let (url, fake) = start_with(Mode::Normal, front).await;
    let ctx = context(
        &url,
        &url,
        &[
            ("preflight", "false"),
            ("policy_model", "m"),
            ("retry_deadline_secs", "1"),
        ],
    )
    .await;
    let started = std::time::Instant::now();
    let b = rows(&ctx, "SELECT * FROM random_sample('p', 2)").await;
    assert_eq!(b.num_rows(), 4);
    assert_eq!(
        b.column_by_name("error").unwrap().null_count(),
        4,
        "{:?}",
        strings(&b, "error")
    );
    // both prompts were throttled once, waited what retry_deadline_secs allows, and got through
    assert_eq!(requests(&fake, "/chat/completions").len(), 4);
    assert_eq!(stats(&ctx).retries, 2);
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}

/// A policy whose answers to "Question number 7?" hold "POISON pill" as choice `poisoned`
/// (the others are fine), and a reward server that refuses (HTTP 400) any batch holding it.
fn poison_front(poisoned: u64) -> Front {
    use axum::response::IntoResponse;
    std::sync::Arc::new(move |path, body| {
        if path.ends_with("completions") && user_text(body).contains("Question number 7?") {
            let n = body["n"].as_u64().unwrap_or(1);
            let choices: Vec<Value> = (0..n)
                .map(|i| {
                    let text = match i == poisoned {
                        true => "POISON pill".to_string(),
                        false => format!("fine answer {i}"),
                    };
                    json!({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"})
                })
                .collect();
            let answer =
                json!({"choices": choices, "usage": {"prompt_tokens": 3, "completion_tokens": 2}});
            return Some(axum::Json(answer).into_response());
        }
        let refused = body["input"]
            .as_array()
            .is_some_and(|texts| texts.iter().any(|t| t.to_string().contains("POISON")));
        refused.then(|| {
            let detail = json!({"detail": "an input holds a token this model refuses"});
            (axum::http::StatusCode::BAD_REQUEST, axum::Json(detail)).into_response()
        })
    })
}

/// The reward server refuses a batch for one text in it (HTTP 400): the batch is split until
/// only that text fails; the other prompts' texts sent with it get their rewards.
#[tokio::test]
async fn a_text_the_reward_server_refuses_fails_alone() {
    let front = poison_front(0);
    let (url, fake) = start_with(Mode::Normal, front).await;
    let ctx = context(
        &url,
        &url,
        &[
            ("preflight", "false"),
            ("policy_model", "m"),
            ("reward_input", "text"),
            ("reward_batch_size", "8"),
            ("reward_batch_wait_ms", "50"),
        ],
    )
    .await;
    forty_prompts(&ctx).await;
    let b = rows(&ctx, "SELECT * FROM random_sample('many', 1)").await;
    assert_eq!(b.num_rows(), 40);
    let (errors, responses) = (strings(&b, "error"), strings(&b, "response"));
    let rewards = b.column_by_name("reward").unwrap();
    let mut poisoned = 0;
    for i in 0..b.num_rows() {
        let bad = responses[i].as_deref().unwrap().contains("POISON");
        poisoned += usize::from(bad);
        assert_eq!(errors[i].is_some(), bad, "row {i}: {:?}", errors[i]);
        assert_eq!(rewards.is_null(i), bad, "row {i}");
        if bad {
            let e = errors[i].as_deref().unwrap();
            assert!(e.contains("HTTP 400: an input holds a token"), "{e}");
        }
    }
    assert_eq!(poisoned, 1);
    // the text was batched with other prompts' texts, and each split halved its batch
    let inputs: Vec<Vec<String>> = requests(&fake, "/pooling")
        .iter()
        .map(|r| {
            let texts = r.body["input"].as_array().unwrap();
            texts
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    let holds_poison = |batch: &Vec<String>| batch.iter().any(|t| t.contains("POISON"));
    let refused: Vec<&Vec<String>> = inputs.iter().filter(|b| holds_poison(b)).collect();
    assert!(refused[0].len() > 1, "{refused:?}");
    assert_eq!(refused.last().unwrap().len(), 1, "{refused:?}");
    let levels = 8f64.log2() as usize; // ⌈log2 reward_batch_size⌉
    assert!(refused.len() <= 1 + levels, "{refused:?}");
    // the splits' requests: at most two per level, beyond the batches themselves
    let is_split = |i: usize| {
        inputs[..i]
            .iter()
            .any(|earlier| holds_poison(earlier) && inputs[i].iter().all(|t| earlier.contains(t)))
    };
    let splits = (0..inputs.len()).filter(|&i| is_split(i)).count();
    assert!(
        (2..=2 * levels).contains(&splits),
        "{splits} split requests in {inputs:?}"
    );
    let s = stats(&ctx);
    assert_eq!(s.failed_candidates, 1);
    assert_eq!(s.errors.get("reward_http_400"), Some(&1));
}

/// Within one prompt too: of a prompt's four candidates, the one the reward model refuses
/// fails alone; its siblings keep their rewards and one of them is best.
#[tokio::test]
async fn a_refused_candidate_does_not_fail_its_siblings() {
    let front = poison_front(1);
    let (url, _fake) = start_with(Mode::Normal, front).await;
    let ctx = context(
        &url,
        &url,
        &[
            ("preflight", "false"),
            ("policy_model", "m"),
            ("reward_input", "text"),
        ],
    )
    .await;
    forty_prompts(&ctx).await;
    let b = rows(
        &ctx,
        "SELECT response, error, reward, is_best FROM random_sample('many', 4) \
         WHERE prompt LIKE '%Question number 7?%' ORDER BY sample_index",
    )
    .await;
    assert_eq!(b.num_rows(), 4);
    let (errors, responses) = (strings(&b, "error"), strings(&b, "response"));
    let rewards = b.column_by_name("reward").unwrap();
    for i in 0..4 {
        let bad = responses[i].as_deref().unwrap().contains("POISON");
        assert_eq!(errors[i].is_some(), bad, "row {i}: {:?}", errors[i]);
        assert_eq!(rewards.is_null(i), bad, "row {i}");
    }
    assert_eq!(errors.iter().filter(|e| e.is_some()).count(), 1);
    let best = b.column_by_name("is_best").unwrap().as_boolean();
    assert_eq!(best.true_count(), 1, "one of the scored siblings is best");
    assert_eq!(stats(&ctx).failed_candidates, 1);
}

/// A query dropped while its reward requests are being retried (Ctrl-C, a LIMIT satisfied)
/// takes its retries with it: nothing keeps calling the server afterwards.
#[tokio::test]
async fn a_dropped_query_stops_its_reward_retries() {
    use futures::StreamExt;
    let (good, _) = start(Mode::Normal).await;
    let (down, fake) = start(Mode::Down).await;
    let ctx = context(
        &good,
        &down,
        &[
            ("preflight", "false"),
            ("policy_model", "m"),
            ("reward_input", "text"),
            ("retry_attempts", "1000"),
            ("retry_deadline_secs", "600"),
        ],
    )
    .await;
    forty_prompts(&ctx).await;
    let df = ctx
        .sql("SELECT * FROM random_sample('many', 2)")
        .await
        .unwrap();
    let mut stream = df.execute_stream().await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_millis(500), stream.next()).await;
    assert!(
        first.is_err(),
        "a row came while every reward request fails"
    );
    assert!(fake.counter.load(SeqCst) > 10, "the retries were going on");
    drop(stream);
    // a request on the wire when the query was dropped may still arrive
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let at_drop = fake.counter.load(SeqCst);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let later = fake.counter.load(SeqCst);
    assert_eq!(
        later,
        at_drop,
        "{} reward requests after the query was dropped",
        later - at_drop
    );
}

/// A policy server that takes 60 ms a request, counts the most requests it held at once, and
/// reports `waiting` requests in vLLM's gauges at `/metrics` (404 when `None`).
async fn gauged_policy(waiting: Option<u64>) -> (String, Arc<AtomicU64>) {
    use axum::routing::{get, post};
    let (active, most) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let seen = most.clone();
    let complete = move || {
        let (active, most) = (active.clone(), most.clone());
        async move {
            let now = active.fetch_add(1, SeqCst) + 1;
            most.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(60)).await;
            active.fetch_sub(1, SeqCst);
            axum::Json(json!({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "An answer."},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2}
            }))
        }
    };
    let metrics = move || async move {
        match waiting {
            Some(w) => (
                axum::http::StatusCode::OK,
                format!("vllm:num_requests_running{{model_name=\"m\"}} 1\nvllm:num_requests_waiting{{model_name=\"m\"}} {w}\n"),
            ),
            None => (axum::http::StatusCode::NOT_FOUND, "no route".to_string()),
        }
    };
    let app = axum::Router::new()
        .route(
            "/v1/models",
            get(|| async { axum::Json(json!({"data": [{"id": "m"}]})) }),
        )
        .route("/v1/chat/completions", post(complete))
        .route("/metrics", get(metrics));
    (serve(app).await, seen)
}

#[tokio::test]
async fn the_window_grows_only_while_the_server_reports_an_empty_queue() {
    let (reward, _fake) = start(Mode::Normal).await;
    // one place in the window (of 4 at most): without growth, one request at a time
    for (waiting, grow, grows) in [
        (Some(0), "true", true),
        (Some(5), "true", false),
        (None, "true", false),
        (Some(0), "false", false),
    ] {
        let (policy, most) = gauged_policy(waiting).await;
        let ctx = context(
            &policy,
            &reward,
            &[("prompt_concurrency", "1"), ("grow_window", grow)],
        )
        .await;
        // one partition: one window
        ctx.sql("SET datafusion.execution.target_partitions = 1")
            .await
            .unwrap();
        forty_prompts(&ctx).await;
        let b = rows(&ctx, "SELECT count(*) FROM random_sample('many', 1)").await;
        assert_eq!(b.column(0).as_primitive::<Int64Type>().value(0), 40);
        let most = most.load(SeqCst);
        match grows {
            true => assert!(most > 1, "an idle server got {most} request(s) at once"),
            false => assert_eq!(most, 1, "{waiting:?} waiting, grow_window = {grow}"),
        }
    }
}
