//! Fake policy and reward servers on 127.0.0.1 for the integration tests, and helpers.
#![allow(dead_code)]

pub mod cli;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};

use axum::body::Body;
use axum::extract::{Json, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::prelude::SessionContext;
use datafusion_prs::PrsConfig;
use serde_json::{json, Value};

pub const API_KEY: &str = "sk-test-very-secret-0123";

pub fn set_key() {
    static ONCE: Once = Once::new();
    // Set once before any client exists; `cli::prs_command` keeps it from the `prs` children.
    ONCE.call_once(|| std::env::set_var("PRS_POLICY_API_KEY", API_KEY));
}

#[derive(Clone, Debug)]
pub struct Req {
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    pub auth: Option<String>,
    /// How many `Authorization` headers came (more than one is a client bug).
    pub auths: usize,
    pub body: Value,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    /// honour n
    Normal,
    /// return one choice whatever n is (like some real servers)
    IgnoreN,
    /// IgnoreN, and each request takes 25 ms
    IgnoreNSlow,
    /// return n + 1 choices
    TooMany,
    /// answer 400 with a FastAPI-style detail
    Reject,
    /// reward: return one score too few
    ShortScores,
    /// every 10th request fails: 429 with Retry-After, 500, 503, a dropped connection, or a
    /// 200 with a garbage body, in turn
    Flaky,
    /// answer 401 to every request
    Unauthorized,
    /// like Normal, but each request takes 25 ms
    Slow,
    /// answer 503 to everything (a replica that is down)
    Down,
    /// like transformers serve: `/v1/models` lists nothing, and a completion request with a
    /// field outside the OpenAI API gets 422 naming the fields
    Strict,
    /// 422 naming `temperature` (an OpenAI field) for every completion request
    RefuseTemperature,
    /// `/pooling` answers a hidden-state vector per token instead of a score
    HiddenStates,
    /// a reward model without a chat template: `messages` get 400, as vLLM answers
    NoChatTemplate,
    /// a confident policy: every odd choice of a request is the same text
    Repeats,
    /// a reasoning policy: `<think>SECRET ...</think>` before each answer; choice 2 of a
    /// request never stops thinking
    Thinks,
}

/// The fields of an OpenAI completion request the `Strict` fake accepts.
pub const OPENAI_FIELDS: &[&str] = &[
    "model",
    "messages",
    "prompt",
    "n",
    "seed",
    "temperature",
    "top_p",
    "presence_penalty",
    "max_tokens",
    "stop",
];

#[derive(Clone)]
pub struct Fake {
    pub log: Arc<Mutex<Vec<Req>>>,
    pub mode: Mode,
    pub counter: Arc<AtomicU64>,
    /// sequences being generated right now, and the most seen at once
    pub active_seqs: Arc<AtomicU64>,
    pub max_active_seqs: Arc<AtomicU64>,
    /// completion requests being answered right now, and the most seen at once
    pub active_requests: Arc<AtomicU64>,
    pub max_active_requests: Arc<AtomicU64>,
    /// text scored -> score returned
    pub scores: Arc<Mutex<HashMap<String, f64>>>,
}

pub fn score_of(text: &str) -> f64 {
    let h = text.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ b as u64).wrapping_mul(1099511628211)
    });
    (h % 100_000) as f64 / 1000.0 - 50.0
}

pub fn user_text(body: &Value) -> String {
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
        query: uri.query().map(str::to_string),
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        auths: headers.get_all("authorization").iter().count(),
        body: body.clone(),
    });
    let n = f.counter.fetch_add(1, Ordering::SeqCst);
    let seqs = if path.ends_with("completions") {
        body["n"].as_u64().unwrap_or(1)
    } else {
        0
    };
    let now = f.active_seqs.fetch_add(seqs, Ordering::SeqCst) + seqs;
    f.max_active_seqs.fetch_max(now, Ordering::SeqCst);
    let request = u64::from(seqs > 0);
    let now = f.active_requests.fetch_add(request, Ordering::SeqCst) + request;
    f.max_active_requests.fetch_max(now, Ordering::SeqCst);
    if matches!(f.mode, Mode::Slow | Mode::IgnoreNSlow) {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    f.active_seqs.fetch_sub(seqs, Ordering::SeqCst);
    f.active_requests.fetch_sub(request, Ordering::SeqCst);
    if f.mode == Mode::Flaky && n % 10 == 7 {
        return match (n / 10) % 5 {
            0 => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "0")],
                "slow down",
            )
                .into_response(),
            1 => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": {"message": "boom"}})),
            )
                .into_response(),
            2 => (StatusCode::SERVICE_UNAVAILABLE, "restarting").into_response(),
            3 => {
                // the connection is cut in the middle of the body
                let broken = futures::stream::iter(vec![
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"choices\": [")),
                    Err(std::io::Error::other("connection reset")),
                ]);
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from_stream(broken))
                    .unwrap()
            }
            _ => (StatusCode::OK, "<html>proxy error</html>").into_response(),
        };
    }
    if f.mode == Mode::Down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    if f.mode == Mode::Unauthorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "invalid api key"}})),
        )
            .into_response();
    }
    if f.mode == Mode::Reject {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"detail": "Server is pinned to '/tmp/model'"})),
        )
            .into_response();
    }
    let completion = path.ends_with("completions");
    if f.mode == Mode::Strict && completion {
        let unexpected: Vec<String> = body
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .filter(|k| !OPENAI_FIELDS.contains(&k.as_str()))
            .map(|k| format!("'{k}'"))
            .collect();
        if !unexpected.is_empty() {
            let detail = format!(
                "Unexpected fields in the request: {{{}}}",
                unexpected.join(", ")
            );
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "detail": detail })),
            )
                .into_response();
        }
    }
    if f.mode == Mode::RefuseTemperature && completion {
        let detail = "Unexpected fields in the request: {'temperature'}";
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "detail": detail })),
        )
            .into_response();
    }
    match path.as_str() {
        "/v1/models" if f.mode == Mode::Strict => Json(json!({"data": []})).into_response(),
        "/v1/models" => Json(
            json!({"data": [{"id": "fake-model"}, {"id": "m"}, {"id": "my-model"}, {"id": "rm"}]}),
        )
        .into_response(),
        "/v1/chat/completions" | "/v1/completions" => {
            let n = body["n"].as_u64().unwrap_or(1) as usize;
            let seed = body["seed"].as_i64().unwrap_or(0);
            let count = match f.mode {
                Mode::IgnoreN | Mode::IgnoreNSlow => 1,
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
                    let t = match f.mode {
                        Mode::Repeats if i % 2 == 1 => format!("{tag}  the same\n"),
                        Mode::Thinks if i == 2 => format!("<think>SECRET {t} and"),
                        Mode::Thinks => format!("<think>SECRET {t}</think>\n\n{t}"),
                        _ => t,
                    };
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
        "/pooling" | "/classify"
            if f.mode == Mode::NoChatTemplate && body.get("messages").is_some() =>
        {
            let detail = "As of transformers v4.44, default chat template is no longer allowed, so you must provide a chat template if the tokenizer does not define one.";
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"object": "error", "message": detail, "code": 400})),
            )
                .into_response()
        }
        "/pooling" | "/classify" | "/get_reward" | "/predict" => {
            let texts: Vec<String> = match body.get("messages").and_then(Value::as_array) {
                // one conversation, in this fake model's "chat template" (the UltraRM form)
                Some(turns) => vec![turns
                    .iter()
                    .map(|t| match t["role"].as_str() {
                        Some("user") => {
                            format!("Human: {}\n", t["content"].as_str().unwrap_or_default())
                        }
                        _ => format!("Assistant: {}", t["content"].as_str().unwrap_or_default()),
                    })
                    .collect()],
                None => ["input", "query", "inputs"]
                    .iter()
                    .find_map(|k| body.get(*k))
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|v| v.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
            };
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
                "/pooling" if f.mode == Mode::HiddenStates => Json(json!({"data": texts.iter().map(|_| json!({"data": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]})).collect::<Vec<_>>()})),
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

pub async fn start(mode: Mode) -> (String, Fake) {
    let fake = Fake {
        log: Arc::new(Mutex::new(vec![])),
        mode,
        counter: Arc::new(AtomicU64::new(0)),
        active_seqs: Arc::new(AtomicU64::new(0)),
        max_active_seqs: Arc::new(AtomicU64::new(0)),
        active_requests: Arc::new(AtomicU64::new(0)),
        max_active_requests: Arc::new(AtomicU64::new(0)),
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

pub fn requests(f: &Fake, suffix: &str) -> Vec<Req> {
    f.log
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.ends_with(suffix))
        .cloned()
        .collect()
}

/// The built-in simulator writing in `style`, and a [`context`] pointed at it (`extra`
/// settings too). Keep the handle: the simulator stops when it is dropped.
pub async fn sim_context(
    style: prs_sim::TextStyle,
    extra: &[(&str, &str)],
) -> (prs_sim::SimHandle, SessionContext) {
    let sim = prs_sim::start_with(([127, 0, 0, 1], 0).into(), None, style)
        .await
        .unwrap();
    let mut settings = vec![("policy_model", prs_sim::SIM_MODEL)];
    settings.extend_from_slice(extra);
    let policy = sim.policy_url();
    let ctx = context(policy.trim_end_matches("/v1"), &sim.reward_url(), &settings).await;
    (sim, ctx)
}

/// A context pointed at the fakes, with a two-prompt table `p`.
pub async fn context(policy: &str, reward: &str, extra: &[(&str, &str)]) -> SessionContext {
    set_key();
    let mut cfg = PrsConfig::default();
    // fast retries in tests
    cfg.set_checked("retry_initial_delay_ms", "1", "test")
        .unwrap();
    cfg.set_checked("retry_max_delay_ms", "5", "test").unwrap();
    cfg.set_checked("policy_url", &format!("{policy}/v1"), "test")
        .unwrap();
    cfg.set_checked("reward_url", reward, "test").unwrap();
    for (k, v) in extra {
        cfg.set_checked(k, v, "test").unwrap();
    }
    let ctx = datafusion_prs::session_context(cfg);
    ctx.sql(
        "CREATE TABLE p (id BIGINT, prompt VARCHAR, preference VARCHAR) AS VALUES \
         (10, 'What is rust?', 'Be brief.'), (20, 'Name a {answer} bird.', NULL)",
    )
    .await
    .unwrap();
    ctx
}

/// `SET prs.{key} = '{value}'` in `ctx` (quotes in the value escaped).
pub async fn set(ctx: &SessionContext, key: &str, value: &str) {
    let value = value.replace('\'', "''");
    ctx.sql(&format!("SET prs.{key} = '{value}'"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
}

pub async fn rows(ctx: &SessionContext, sql: &str) -> RecordBatch {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// The plan `EXPLAIN {sql}` shows, its lines joined.
pub async fn explain(ctx: &SessionContext, sql: &str) -> String {
    let b = rows(ctx, &format!("EXPLAIN {sql}")).await;
    let plan: Vec<String> = strings(&b, "plan").into_iter().flatten().collect();
    plan.join("\n")
}

pub async fn query_error(ctx: &SessionContext, sql: &str) -> String {
    match ctx.sql(sql).await {
        Err(e) => e.to_string(),
        Ok(df) => df
            .collect()
            .await
            .expect_err("query should fail")
            .to_string(),
    }
}

pub fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let a = b.column_by_name(name).unwrap();
    let a =
        datafusion::arrow::compute::cast(a, &datafusion::arrow::datatypes::DataType::Utf8).unwrap();
    a.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

/// Answers a request before the fake does (`path`, JSON body), or lets it through (`None`).
pub type Front = Arc<dyn Fn(&str, &Value) -> Option<Response> + Send + Sync>;

/// `start(mode)`, with `front` answering the POST requests it wants to (those are logged and
/// counted like the others): a server that misbehaves in one chosen way.
pub async fn start_with(mode: Mode, front: Front) -> (String, Fake) {
    let fake = Fake {
        log: Arc::new(Mutex::new(vec![])),
        mode,
        counter: Arc::new(AtomicU64::new(0)),
        active_seqs: Arc::new(AtomicU64::new(0)),
        max_active_seqs: Arc::new(AtomicU64::new(0)),
        active_requests: Arc::new(AtomicU64::new(0)),
        max_active_requests: Arc::new(AtomicU64::new(0)),
        scores: Arc::new(Mutex::new(HashMap::new())),
    };
    let f = fake.clone();
    let fronted = move |uri: Uri, headers: HeaderMap, body: Option<Json<Value>>| {
        let (f, front) = (f.clone(), front.clone());
        async move {
            let value = body.as_ref().map(|b| b.0.clone()).unwrap_or(Value::Null);
            match front(uri.path(), &value) {
                Some(answer) => {
                    f.log.lock().unwrap().push(Req {
                        path: uri.path().to_string(),
                        query: uri.query().map(str::to_string),
                        auth: None,
                        auths: 0,
                        body: value,
                    });
                    f.counter.fetch_add(1, Ordering::SeqCst);
                    answer
                }
                None => handle(State(f), uri, headers, body).await,
            }
        }
    };
    let app = Router::new()
        .route("/v1/models", get(handle))
        .fallback(post(fronted))
        .with_state(fake.clone());
    (serve(app).await, fake)
}

/// Serve `app` on 127.0.0.1; its base URL.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A hostile server: every POST is answered `status` with a body of `total` bytes (spaces),
/// streamed in 64 KiB chunks, chunked unless `declare` sends its Content-Length;
/// `GET /v1/models` lists nothing. Returns its URL and the bytes its bodies have handed to
/// the connections so far.
pub async fn start_huge_body(
    total: u64,
    declare: bool,
    status: StatusCode,
) -> (String, Arc<AtomicU64>) {
    static CHUNK: [u8; 1 << 16] = [b' '; 1 << 16];
    let sent = Arc::new(AtomicU64::new(0));
    let counted = sent.clone();
    let huge = move || {
        let counted = counted.clone();
        async move {
            let body = futures::stream::unfold(0u64, move |at| {
                let counted = counted.clone();
                async move {
                    let n = (total - at).min(CHUNK.len() as u64);
                    (n > 0).then(|| {
                        counted.fetch_add(n, Ordering::SeqCst);
                        let chunk = bytes::Bytes::from_static(&CHUNK[..n as usize]);
                        (Ok::<_, std::io::Error>(chunk), at + n)
                    })
                }
            });
            let mut answer = Response::builder()
                .status(status)
                .header("content-type", "application/json");
            if declare {
                answer = answer.header("content-length", total);
            }
            answer.body(Body::from_stream(body)).unwrap()
        }
    };
    let app = Router::new()
        .route("/v1/models", get(|| async { Json(json!({"data": []})) }))
        .fallback(post(huge));
    (serve(app).await, sent)
}
