//! The SQL functions against fake policy and reward servers on 127.0.0.1: request bodies,
//! seeds, the PRS call graph, rewards stored per response, the `n` top-up, all four reward
//! protocols, and endpoint errors.

use std::collections::HashMap;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use datafusion_prs::derive_seed;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn request_bodies_seeds_and_rewards() {
    let (url, fake) = start(Mode::Normal).await;
    let ctx = context(&url, &url, &[("seed", "99"), ("policy_model", "my-model")]).await;
    let b = rows(
        &ctx,
        "SELECT * FROM random_sample('p', 3) ORDER BY prompt_id, sample_index",
    )
    .await;
    assert_eq!(b.num_rows(), 6);

    let gens = requests(&fake, "/chat/completions");
    assert_eq!(gens.len(), 2, "one request per prompt (n=3 fits in one)");
    for r in &gens {
        let body = &r.body;
        assert_eq!(body["model"], "my-model");
        assert_eq!(body["n"], 3);
        assert_eq!(body["temperature"], 0.8);
        assert_eq!(body["top_p"], 1.0);
        assert_eq!(body["top_k"], 50);
        assert_eq!(body["presence_penalty"], 1.2);
        assert_eq!(body["max_tokens"], 1024);
        assert!(body.get("stop").is_none());
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(
            r.auth.as_deref(),
            Some(format!("Bearer {API_KEY}").as_str())
        );
    }
    let by_text: HashMap<String, i64> = gens
        .iter()
        .map(|r| (user_text(&r.body), r.body["seed"].as_i64().unwrap()))
        .collect();
    // prompt + preference; without a preference column value the default preference is used
    assert_eq!(
        by_text["What is rust?\n\nBe brief."],
        derive_seed(99, "10", 0, 0)
    );
    let default_pref = datafusion_prs::config::DEFAULT_PREFERENCE;
    assert_eq!(
        by_text[&format!("Name a {{answer}} bird.\n\n{default_pref}")],
        derive_seed(99, "20", 0, 0)
    );

    // the seed column is the seed sent; every reward is the one returned for that text
    let seeds = b
        .column_by_name("seed")
        .unwrap()
        .as_primitive::<Int64Type>();
    let rewards = b
        .column_by_name("reward")
        .unwrap()
        .as_primitive::<Float64Type>();
    let responses = strings(&b, "response");
    let prompts = strings(&b, "prompt");
    let scores = fake.scores.lock().unwrap().clone();
    for i in 0..b.num_rows() {
        let id = if i < 3 { "10" } else { "20" };
        assert_eq!(seeds.value(i), derive_seed(99, id, 0, 0));
        // per-row preference enters the reward text; the default one does not (auto)
        let human = if i < 3 {
            "What is rust?\n\nBe brief.".to_string()
        } else {
            prompts[i].clone().unwrap()
        };
        let text = format!(
            "Human: {human}\nAssistant: {}",
            responses[i].as_deref().unwrap()
        );
        assert_eq!(
            scores.get(&text),
            Some(&rewards.value(i)),
            "row {i}: {text}"
        );
    }
    // policy_model and reward_model columns; the key appears nowhere in the output
    assert!(strings(&b, "policy_model")
        .iter()
        .all(|m| m.as_deref() == Some("my-model")));
    for col in b.columns() {
        let text = format!("{:?}", col);
        assert!(!text.contains(API_KEY));
    }
}

#[tokio::test]
async fn prs_call_graph_over_http() {
    let (url, fake) = start(Mode::Normal).await;
    let ctx = context(&url, &url, &[("policy_model", "m"), ("preflight", "false")]).await;
    let b = rows(
        &ctx,
        "SELECT * FROM prs_sample('p', 4) WHERE prompt_id = 10 ORDER BY sample_index",
    )
    .await;
    assert_eq!(b.num_rows(), 4);
    let responses = strings(&b, "response");
    let rewards = b
        .column_by_name("reward")
        .unwrap()
        .as_primitive::<Float64Type>();
    let layers = b
        .column_by_name("layer")
        .unwrap()
        .as_primitive::<Int32Type>();
    let parents = b
        .column_by_name("parent_index")
        .unwrap()
        .as_primitive::<Int32Type>();
    let best0 = (0..2)
        .max_by(|&a, &c| rewards.value(a).total_cmp(&rewards.value(c)))
        .unwrap();
    let y0 = responses[best0].clone().unwrap();
    let gens: Vec<Req> = requests(&fake, "/chat/completions")
        .into_iter()
        .filter(|r| user_text(&r.body).contains("What is rust?"))
        .collect();
    // layer 0, feedback, layer 1
    assert_eq!(gens.len(), 3);
    let feedback_reqs: Vec<&Req> = gens
        .iter()
        .filter(|r| user_text(&r.body).contains("Feedback (bullet points)"))
        .collect();
    assert_eq!(feedback_reqs.len(), 1);
    let fb_text = user_text(&feedback_reqs[0].body);
    assert!(fb_text.contains(&y0), "feedback request holds y0*");
    assert!(fb_text.contains("Be brief."));
    assert_eq!(feedback_reqs[0].body["n"], 1);
    let feedback = strings(&b, "feedback")[2].clone().unwrap();
    assert!(feedback.starts_with("FEEDBACK"));
    let layer1: Vec<&Req> = gens
        .iter()
        .filter(|r| user_text(&r.body).contains("### Improved answer"))
        .collect();
    assert_eq!(layer1.len(), 1);
    let t = user_text(&layer1[0].body);
    assert!(t.contains(&y0) && t.contains(&feedback));
    assert_eq!(layer1[0].body["n"], 2);
    assert_eq!(layer1[0].body["seed"], derive_seed(0, "10", 1, 2));
    for i in 2..4 {
        assert_eq!(layers.value(i), 1);
        assert_eq!(parents.value(i), best0 as i32);
    }
    // the user text `{answer}` in prompt 20 is not expanded by the templates
    let p20: Vec<Req> = requests(&fake, "/chat/completions")
        .into_iter()
        .filter(|r| user_text(&r.body).contains("Name a {answer} bird."))
        .collect();
    assert_eq!(p20.len(), 3);
    // model discovery was not needed (policy_model set)
    assert!(requests(&fake, "/models").is_empty());
}

#[tokio::test]
async fn tops_up_when_the_server_ignores_n() {
    let (url, fake) = start(Mode::IgnoreN).await;
    let ctx = context(
        &url,
        &url,
        &[("preflight", "false"), ("policy_n", "native")],
    )
    .await;
    let b = rows(
        &ctx,
        "SELECT * FROM random_sample('p', 4) WHERE prompt_id = 10 ORDER BY sample_index",
    )
    .await;
    assert_eq!(b.num_rows(), 4);
    let gens: Vec<Req> = requests(&fake, "/chat/completions")
        .into_iter()
        .filter(|r| user_text(&r.body).starts_with("What is rust?"))
        .collect();
    let mut asked: Vec<(u64, i64)> = gens
        .iter()
        .map(|r| {
            (
                r.body["n"].as_u64().unwrap(),
                r.body["seed"].as_i64().unwrap(),
            )
        })
        .collect();
    asked.sort_by_key(|a| std::cmp::Reverse(a.0));
    assert_eq!(
        asked,
        (0..4)
            .map(|i| (4 - i as u64, derive_seed(0, "10", 0, i)))
            .collect::<Vec<_>>()
    );
    // the model came from GET /models (once)
    assert_eq!(requests(&fake, "/models").len(), 1);
    assert!(strings(&b, "policy_model")
        .iter()
        .all(|m| m.as_deref() == Some("fake-model")));
}

#[tokio::test]
async fn a_server_that_ignores_n_gets_one_request_per_sample_at_once() {
    let sql = "SELECT prompt_id, layer, sample_index, parent_index, seed, response, reward \
               FROM prs_sample('p', 8) ORDER BY prompt_id, sample_index";
    // `single` never asks for more than one sample, each with its own sample's seed
    let (single, fake) = start(Mode::IgnoreN).await;
    let ctx = context(
        &single,
        &single,
        &[("policy_model", "m"), ("policy_n", "single")],
    )
    .await;
    let expected = rows(&ctx, sql).await;
    assert!(requests(&fake, "/chat/completions")
        .iter()
        .all(|r| r.body["n"] == json!(1)));

    // `auto` (the default) finds out from the first short answer and then does the same
    let (ignores, fake) = start(Mode::IgnoreNSlow).await;
    let ctx = context(&ignores, &ignores, &[("policy_model", "m")]).await;
    let got = rows(&ctx, sql).await;
    for column in [
        "prompt_id",
        "layer",
        "sample_index",
        "parent_index",
        "seed",
        "response",
    ] {
        assert_eq!(
            strings(&got, column),
            strings(&expected, column),
            "{column}"
        );
    }
    let gens = requests(&fake, "/chat/completions");
    // at most one request per prompt asked for more than one sample before the client knew
    let wide = gens
        .iter()
        .filter(|r| r.body["n"].as_u64() > Some(1))
        .count();
    assert!(wide <= 2, "{wide} requests asked for n > 1");
    // the rest went as n=1 requests side by side, not one after another
    let at_once = fake
        .max_active_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(at_once >= 3, "at most {at_once} requests at once");

    // a server that honours `n`: the same tree, one request per layer and prompt
    let (honours, fake) = start(Mode::Normal).await;
    let ctx = context(&honours, &honours, &[("policy_model", "m")]).await;
    let native = rows(&ctx, sql).await;
    for column in ["prompt_id", "layer", "sample_index"] {
        assert_eq!(
            strings(&native, column),
            strings(&expected, column),
            "{column}"
        );
    }
    let samples = requests(&fake, "/chat/completions")
        .into_iter()
        .filter(|r| r.body["n"] == json!(4))
        .count();
    assert_eq!(samples, 4, "two layers of 4 for each of the 2 prompts");
}

/// Two replicas, one that ignores `n`: only that one gets one sample per request; the other
/// keeps getting whole layers in one request.
#[tokio::test]
async fn each_replica_is_marked_on_its_own_when_one_ignores_n() {
    let (ignores, a) = start(Mode::IgnoreNSlow).await;
    let (honours, b) = start(Mode::Slow).await;
    let ctx = context(
        &format!("{ignores}/v1,{honours}"),
        &honours,
        &[("policy_model", "m")],
    )
    .await;
    ctx.sql(
        "CREATE TABLE many AS SELECT value AS id, concat('Question ', CAST(value AS VARCHAR)) \
         AS prompt FROM generate_series(1, 16)",
    )
    .await
    .unwrap();
    let b_rows = rows(
        &ctx,
        "SELECT count(*) AS n, count(error) AS errors FROM prs_sample('many', 8)",
    )
    .await;
    assert_eq!(strings(&b_rows, "n"), vec![Some("128".to_string())]);
    assert_eq!(strings(&b_rows, "errors"), vec![Some("0".to_string())]);
    // the revision layer's requests (seeds of sample indices 4..8), more than one sample each
    let layer1: std::collections::HashSet<i64> = (1..=16)
        .flat_map(|id| (4..8).map(move |i| derive_seed(0, &id.to_string(), 1, i)))
        .collect();
    let wide_layer1 = |f: &Fake| {
        requests(f, "/chat/completions")
            .iter()
            .filter(|r| r.body["n"].as_u64() > Some(1))
            .filter(|r| r.body["seed"].as_i64().is_some_and(|s| layer1.contains(&s)))
            .count()
    };
    assert!(
        requests(&a, "/chat/completions")
            .iter()
            .any(|r| r.body["n"].as_u64() > Some(1)),
        "the first requests did not ask the ignoring server for n > 1"
    );
    assert_eq!(
        wide_layer1(&a),
        0,
        "the server that ignores n was asked for n > 1 again"
    );
    assert!(
        wide_layer1(&b) > 0,
        "the server that honours n got only single requests"
    );
}

#[tokio::test]
async fn more_choices_than_asked_is_an_error() {
    let (url, _fake) = start(Mode::TooMany).await;
    let ctx = context(&url, &url, &[("on_error", "fail")]).await;
    let e = query_error(&ctx, "SELECT * FROM random_sample('p', 2)").await;
    assert!(e.contains("asked for n=2 choices, got 3"), "{e}");
}

#[tokio::test]
async fn all_four_reward_protocols() {
    for (protocol, path, key) in [
        ("vllm-pooling", "/pooling", "input"),
        ("vllm-classify", "/classify", "input"),
        ("openrlhf", "/get_reward", "query"),
        ("tei", "/predict", "inputs"),
    ] {
        let (url, fake) = start(Mode::Normal).await;
        let ctx = context(
            &url,
            &url,
            &[
                ("reward_protocol", protocol),
                ("reward_model", "rm"),
                ("reward_batch_size", "2"),
                ("reward_input", "text"),
            ],
        )
        .await;
        let b = rows(&ctx, "SELECT response, reward FROM random_sample('p', 3)").await;
        assert_eq!(b.num_rows(), 6);
        // (the preflight check scores one "ping" text first)
        let calls: Vec<Req> = requests(&fake, path)
            .into_iter()
            .filter(|c| !c.body[key][0].as_str().unwrap().contains("ping"))
            .collect();
        // 3 texts per prompt in batches of 2: 2 requests per prompt
        assert_eq!(calls.len(), 4, "{protocol}");
        for c in &calls {
            let texts = c.body[key].as_array().unwrap();
            assert!(texts.len() <= 2);
            match protocol {
                "vllm-pooling" | "vllm-classify" => assert_eq!(c.body["model"], "rm"),
                "tei" => assert_eq!(c.body["raw_scores"], true),
                _ => assert!(c.body.get("model").is_none()),
            }
        }
        let scores = fake.scores.lock().unwrap().clone();
        let responses = strings(&b, "response");
        let rewards = b
            .column_by_name("reward")
            .unwrap()
            .as_primitive::<Float64Type>();
        for (i, response) in responses.iter().enumerate() {
            let suffix = format!("Assistant: {}", response.as_deref().unwrap());
            let (_, s) = scores.iter().find(|(t, _)| t.ends_with(&suffix)).unwrap();
            assert_eq!(*s, rewards.value(i), "{protocol}");
        }
        // the UDF re-scores through the same protocol
        let r = rows(&ctx, "SELECT reward('What is rust?', 'x') AS r").await;
        let got = r.column(0).as_primitive::<Float64Type>().value(0);
        assert_eq!(
            got,
            score_of("Human: What is rust?\nAssistant: x"),
            "{protocol}"
        );
    }
}

#[tokio::test]
async fn completions_api_uses_the_prompt_template() {
    let (url, fake) = start(Mode::Normal).await;
    let ctx = context(
        &url,
        &url,
        &[
            ("policy_api", "completions"),
            ("prompt_template", "<|user|>\n{prompt}\n<|assistant|>\n"),
            ("stop", "[\"</s>\"]"),
        ],
    )
    .await;
    let b = rows(&ctx, "SELECT finish_reason FROM random_sample('p', 1)").await;
    assert_eq!(b.num_rows(), 2);
    let calls = requests(&fake, "/v1/completions");
    assert_eq!(calls.len(), 2);
    assert!(calls
        .iter()
        .any(|c| c.body["prompt"] == "<|user|>\nWhat is rust?\n\nBe brief.\n<|assistant|>\n"));
    assert!(calls.iter().all(|c| c.body["stop"] == json!(["</s>"])));
    assert!(strings(&b, "finish_reason")
        .iter()
        .all(|f| f.as_deref() == Some("length")));
}

#[tokio::test]
async fn endpoint_errors_carry_the_server_message() {
    let (url, _fake) = start(Mode::Reject).await;
    let ctx = context(&url, &url, &[("policy_model", "m"), ("on_error", "fail")]).await;
    let e = query_error(&ctx, "SELECT * FROM prs_sample('p', 2)").await;
    assert!(
        e.contains("answered HTTP 400: Server is pinned to '/tmp/model'"),
        "{e}"
    );
    assert!(!e.contains(API_KEY));

    let (good, _) = start(Mode::Normal).await;
    let (short, _) = start(Mode::ShortScores).await;
    let ctx = context(
        &good,
        &short,
        &[
            ("on_error", "fail"),
            ("preflight", "false"),
            ("reward_batch_wait_ms", "0"),
            ("reward_input", "text"),
        ],
    )
    .await;
    let e = query_error(&ctx, "SELECT * FROM random_sample('p', 2)").await;
    assert!(e.contains("sent 2 texts, got 1 scores"), "{e}");

    // nothing listens on port 9: a clear, quick error
    let ctx = context(
        "http://127.0.0.1:9",
        &good,
        &[("connect_timeout_secs", "2"), ("on_error", "fail")],
    )
    .await;
    let started = std::time::Instant::now();
    let e = query_error(&ctx, "SELECT * FROM random_sample('p', 2)").await;
    assert!(
        e.contains("policy endpoint http://127.0.0.1:9/v1/models could not be reached"),
        "{e}"
    );
    assert!(started.elapsed().as_secs() < 10);
}

/// `LIMIT` reaches the scan: only the prompts that can fill it are started, not a whole
/// `prompt_concurrency` window of them.
#[tokio::test]
async fn limit_starts_only_the_prompts_it_needs() {
    let (url, fake) = start(Mode::Normal).await;
    let ctx = context(&url, &url, &[]).await;
    questions(&ctx, "many", 300).await;
    let b = rows(
        &ctx,
        "SELECT prompt_id FROM random_sample('many', 4) LIMIT 5",
    )
    .await;
    assert_eq!(b.num_rows(), 5);
    // 5 rows take 2 prompts of 4 candidates; the stream may start one more before it stops
    let gens = requests(&fake, "/chat/completions").len();
    assert!((2..=3).contains(&gens), "{gens} generation requests");

    // without a limit every prompt is sampled
    fake.log.lock().unwrap().clear();
    let all = rows(&ctx, "SELECT count(*) FROM random_sample('many', 4)").await;
    assert_eq!(all.column(0).as_primitive::<Int64Type>().value(0), 1200);
    assert_eq!(requests(&fake, "/chat/completions").len(), 300);
}

#[tokio::test]
async fn a_prompt_gives_its_place_to_the_next_once_its_first_layer_is_done() {
    // every request takes 25 ms, so the order of arrival shows what overlapped
    let (url, fake) = start(Mode::Slow).await;
    let ctx = context(
        &url,
        &url,
        &[
            ("policy_model", "m"),
            ("preflight", "false"),
            ("prompt_concurrency", "1"),
            ("reward_input", "text"),
        ],
    )
    .await;
    questions(&ctx, "three", 3).await;
    let b = rows(&ctx, "SELECT count(*) FROM prs_sample('three', 2)").await;
    assert_eq!(b.column(0).as_primitive::<Int64Type>().value(0), 6);
    let log = fake.log.lock().unwrap().clone();
    let is_generation = |r: &Req| r.path.ends_with("completions");
    let about = |r: &Req, q: &str| r.body.to_string().contains(q);
    let first = |q: &str, generation: bool| {
        log.iter()
            .position(|r| is_generation(r) == generation && about(r, q))
            .unwrap()
    };
    let last_generation = |q: &str| {
        log.iter()
            .rposition(|r| is_generation(r) && about(r, q))
            .unwrap()
    };
    // the second prompt starts after the first prompt's first layer is scored ...
    assert!(first("Question 1", false) < first("Question 2", true));
    // ... and before the first prompt's revision: not when the first prompt has finished
    assert!(
        first("Question 2", true) < last_generation("Question 1"),
        "{:#?}",
        log.iter()
            .map(|r| (&r.path, user_text(&r.body)))
            .collect::<Vec<_>>()
    );
    // one prompt in its first layer at a time: the third waits for the second's
    assert!(first("Question 2", false) < first("Question 3", true));
}

/// A table `name` of `count` prompts "Question 1", "Question 2", ...
async fn questions(ctx: &datafusion::prelude::SessionContext, name: &str, count: usize) {
    ctx.sql(&format!(
        "CREATE TABLE {name} AS SELECT value AS id, 'Question ' || CAST(value AS VARCHAR) AS prompt \
         FROM generate_series(1, {count})"
    ))
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
}

/// A server that sends more than `prs.max_response_bytes` (a stream that never ends, a huge
/// page) costs that candidate an error row naming the setting, quickly, and never more memory
/// than the limit: success bodies are refused, error bodies cut, a declared length refused
/// before reading.
#[tokio::test]
async fn an_answer_past_max_response_bytes_is_an_error_row() {
    use axum::http::StatusCode;
    use std::sync::atomic::Ordering::SeqCst;
    const GIB: u64 = 1 << 30;
    // far below a GiB: what was read of the answers, plus the buffers of the connections
    const READ_AT_MOST: u64 = 256 << 20;
    let (good, _) = start(Mode::Normal).await;
    let settings = [
        ("preflight", "false"),
        ("policy_model", "m"),
        ("reward_input", "text"),
        ("retry_attempts", "2"),
        ("max_response_bytes", "65536"),
    ];
    let run = |policy: String, reward: String| async move {
        let ctx = context(&policy, &reward, &settings).await;
        let started = std::time::Instant::now();
        let query = rows(&ctx, "SELECT * FROM random_sample('p', 2)");
        let b = tokio::time::timeout(std::time::Duration::from_secs(60), query)
            .await
            .expect("the run ends");
        assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
        assert_eq!(b.num_rows(), 4);
        assert_eq!(b.column_by_name("reward").unwrap().null_count(), 4);
        strings(&b, "error")
            .into_iter()
            .map(Option::unwrap)
            .collect::<Vec<_>>()
    };

    // the policy streams a GiB, chunked, without a Content-Length
    let (policy, sent) = start_huge_body(GIB, false, StatusCode::OK).await;
    for e in run(policy.clone(), good.clone()).await {
        assert!(
            e.contains(&format!("policy endpoint {policy}/v1/chat/completions"))
                && e.contains("more than 65536 bytes")
                && e.contains("raise prs.max_response_bytes"),
            "{e}"
        );
    }
    let read = sent.load(SeqCst);
    assert!(read < READ_AT_MOST, "{read} bytes sent");

    // the reward server declares a GiB: refused before reading it
    let (reward, sent) = start_huge_body(GIB, true, StatusCode::OK).await;
    for e in run(good.clone(), reward.clone()).await {
        assert!(
            e.contains(&format!("reward endpoint {reward}/pooling"))
                && e.contains("declared Content-Length: 1073741824")
                && e.contains("prs.max_response_bytes"),
            "{e}"
        );
    }
    let read = sent.load(SeqCst);
    assert!(read < READ_AT_MOST, "{read} bytes sent");

    // an error answer is cut at the limit: its status is what the row says
    let (reward, sent) = start_huge_body(GIB, false, StatusCode::SERVICE_UNAVAILABLE).await;
    for e in run(good.clone(), reward).await {
        assert!(e.contains("answered HTTP 503"), "{e}");
    }
    let read = sent.load(SeqCst);
    assert!(read < READ_AT_MOST, "{read} bytes sent");
}
