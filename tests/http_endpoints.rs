//! The SQL functions against fake policy and reward servers on 127.0.0.1: request bodies,
//! seeds, the PRS call graph, rewards stored per response, the `n` top-up, all four reward
//! protocols, and endpoint errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once};

use axum::extract::{Json, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use datafusion::prelude::SessionContext;
use datafusion_prs::sampler::derive_seed;
use datafusion_prs::PrsConfig;
use serde_json::{json, Value};

const API_KEY: &str = "sk-test-very-secret-0123";

fn set_key() {
    static ONCE: Once = Once::new();
    // Only this test binary reads the variable; set it once before any client exists.
    ONCE.call_once(|| std::env::set_var("PRS_POLICY_API_KEY", API_KEY));
}

#[derive(Clone, Debug)]
struct Req {
    path: String,
    auth: Option<String>,
    body: Value,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// honour n
    Normal,
    /// return one choice whatever n is (like some real servers)
    IgnoreN,
    /// return n + 1 choices
    TooMany,
    /// answer 400 with a FastAPI-style detail
    Reject,
    /// reward: return one score too few
    ShortScores,
}

#[derive(Clone)]
struct Fake {
    log: Arc<Mutex<Vec<Req>>>,
    mode: Mode,
    /// text scored -> score returned
    scores: Arc<Mutex<HashMap<String, f64>>>,
}

fn score_of(text: &str) -> f64 {
    let h = text.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ b as u64).wrapping_mul(1099511628211)
    });
    (h % 100_000) as f64 / 1000.0 - 50.0
}

fn user_text(body: &Value) -> String {
    body.pointer("/messages/0/content")
        .or_else(|| body.get("prompt"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

async fn handle(
    State(f): State<Fake>,
    uri: Uri,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let path = uri.path().to_string();
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    f.log.lock().unwrap().push(Req {
        path: path.clone(),
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: body.clone(),
    });
    if f.mode == Mode::Reject {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"detail": "Server is pinned to '/tmp/model'"})),
        )
            .into_response();
    }
    match path.as_str() {
        "/v1/models" => Json(json!({"data": [{"id": "fake-model"}]})).into_response(),
        "/v1/chat/completions" | "/v1/completions" => {
            let n = body["n"].as_u64().unwrap_or(1) as usize;
            let seed = body["seed"].as_i64().unwrap_or(0);
            let count = match f.mode {
                Mode::IgnoreN => 1,
                Mode::TooMany => n + 1,
                _ => n,
            };
            let text = user_text(&body);
            let tag = if text.contains("Feedback (bullet points)") {
                "FEEDBACK"
            } else {
                "ANSWER"
            };
            let choices: Vec<Value> = (0..count)
                .map(|i| {
                    let t = format!("{tag} seed={seed} i={i}");
                    if path.ends_with("chat/completions") {
                        json!({"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"})
                    } else {
                        json!({"index": i, "text": t, "finish_reason": "length"})
                    }
                })
                .collect();
            Json(json!({"choices": choices, "usage": {"prompt_tokens": 3, "completion_tokens": 4}}))
                .into_response()
        }
        "/pooling" | "/classify" | "/get_reward" | "/predict" => {
            let texts: Vec<String> = ["input", "query", "inputs"]
                .iter()
                .find_map(|k| body.get(*k))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default();
            let mut scores: Vec<f64> = texts.iter().map(|t| score_of(t)).collect();
            {
                let mut m = f.scores.lock().unwrap();
                for (t, s) in texts.iter().zip(&scores) {
                    m.insert(t.clone(), *s);
                }
            }
            if f.mode == Mode::ShortScores {
                scores.pop();
            }
            match path.as_str() {
                "/pooling" => Json(json!({"data": scores.iter().map(|s| json!({"data": [0.0, s]})).collect::<Vec<_>>()})),
                "/classify" => Json(json!({"data": scores.iter().map(|s| json!({"probs": [s, 1.0 - s]})).collect::<Vec<_>>()})),
                "/get_reward" => Json(json!({"rewards": scores})),
                _ => Json(json!(scores.iter().map(|s| json!([{"score": s, "label": "LABEL_0"}])).collect::<Vec<_>>())),
            }
            .into_response()
        }
        _ => (StatusCode::NOT_FOUND, "no route").into_response(),
    }
}

async fn start(mode: Mode) -> (String, Fake) {
    let fake = Fake {
        log: Arc::new(Mutex::new(vec![])),
        mode,
        scores: Arc::new(Mutex::new(HashMap::new())),
    };
    let app = Router::new()
        .route("/v1/models", get(handle))
        .fallback(post(handle))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), fake)
}

fn requests(f: &Fake, suffix: &str) -> Vec<Req> {
    f.log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.ends_with(suffix))
        .cloned()
        .collect()
}

/// A context pointed at the fakes, with a two-prompt table `p`.
async fn context(policy: &str, reward: &str, extra: &[(&str, &str)]) -> SessionContext {
    set_key();
    let mut cfg = PrsConfig::default();
    cfg.set_checked("policy_url", &format!("{policy}/v1"), "test")
        .unwrap();
    cfg.set_checked("reward_url", reward, "test").unwrap();
    for (k, v) in extra {
        cfg.set_checked(k, v, "test").unwrap();
    }
    let ctx = prs::cli::context(cfg);
    ctx.sql(
        "CREATE TABLE p (id BIGINT, prompt VARCHAR, preference VARCHAR) AS VALUES \
         (10, 'What is rust?', 'Be brief.'), (20, 'Name a {answer} bird.', NULL)",
    )
    .await
    .unwrap();
    ctx
}

async fn rows(ctx: &SessionContext, sql: &str) -> RecordBatch {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

async fn query_error(ctx: &SessionContext, sql: &str) -> String {
    match ctx.sql(sql).await {
        Err(e) => e.to_string(),
        Ok(df) => df
            .collect()
            .await
            .expect_err("query should fail")
            .to_string(),
    }
}

fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let a = b.column_by_name(name).unwrap();
    let a =
        datafusion::arrow::compute::cast(a, &datafusion::arrow::datatypes::DataType::Utf8).unwrap();
    a.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

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
    let ctx = context(&url, &url, &[("policy_model", "m")]).await;
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
    let ctx = context(&url, &url, &[]).await;
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
async fn more_choices_than_asked_is_an_error() {
    let (url, _fake) = start(Mode::TooMany).await;
    let ctx = context(&url, &url, &[]).await;
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
            ],
        )
        .await;
        let b = rows(&ctx, "SELECT response, reward FROM random_sample('p', 3)").await;
        assert_eq!(b.num_rows(), 6);
        let calls = requests(&fake, path);
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
    let ctx = context(&url, &url, &[("policy_model", "m")]).await;
    let e = query_error(&ctx, "SELECT * FROM prs_sample('p', 2)").await;
    assert!(
        e.contains("answered HTTP 400: Server is pinned to '/tmp/model'"),
        "{e}"
    );
    assert!(!e.contains(API_KEY));

    let (good, _) = start(Mode::Normal).await;
    let (short, _) = start(Mode::ShortScores).await;
    let ctx = context(&good, &short, &[]).await;
    let e = query_error(&ctx, "SELECT * FROM random_sample('p', 2)").await;
    assert!(e.contains("sent 2 texts, got 1 scores"), "{e}");

    // nothing listens on port 9: a clear, quick error
    let ctx = context(
        "http://127.0.0.1:9",
        &good,
        &[("connect_timeout_secs", "2")],
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
