//! The scheduling benchmark (issue: keep the GPUs full). Not a test: run it with
//!
//!     cargo bench --no-default-features --bench sampling   # release build, no Ballista needed
//!     cargo bench --profile dev --bench sampling           # quicker to build; more client CPU
//!
//! It starts `prs sim --engine` (a continuous-batching engine model, see crates/prs-sim/src/engine.rs) as
//! a child process and reports, for PRS (n = 16) and random sampling (n = 16) over
//! `PRS_BENCH_PROMPTS` prompts (default 1000):
//! * makespan ÷ lower bound, where the lower bound is the tokens generated ÷ the engine's peak
//!   token rate (max_seqs sequences per step);
//! * for PRS, the speedup over the reference implementation's stage-by-stage schedule (all
//!   layer-0 samples, then all rewards, then all feedback, then all revisions, then all rewards),
//!   run against the same simulator in the same process;
//! * client CPU time per 1,000 candidates and candidates/s against an instant simulator;
//! * from the simulator's own counters, where each gap to the lower bound went (prefill,
//!   under-full steps, no step running) and the makespan of the same sequences all queued at
//!   once, the floor for a client that cannot know response lengths;
//! * reward input sent as `messages` (one per request) against batched text, on an engine whose
//!   reward model merges concurrent requests as vLLM does;
//! * peak RSS of the CLI streaming Parquet to Parquet (`PRS_BENCH_RSS_PROMPTS`, default
//!   1000,100000).
//!
//! `PRS_BENCH_SET="name=value,..."` applies settings to every run (the pipelined and the
//! reference schedules alike), e.g. `prompt_concurrency=64,max_in_flight=512`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use datafusion_prs::client::{PolicyClient, PolicySettings, RewardClient, RewardSettings};
use datafusion_prs::derive_seed;
use datafusion_prs::JobStats;
use datafusion_prs::PrsConfig;
use datafusion_prs::RewardItem;
use datafusion_prs::Templates;
use futures::StreamExt;

/// Engine flags shared by the simulator and the lower bound.
const STEP_MS: f64 = 2.0;
const PER_SEQ_MS: f64 = 0.01;
const MAX_SEQS: usize = 256;

fn peak_tokens_per_sec(max_seqs: usize) -> f64 {
    max_seqs as f64 / ((STEP_MS + PER_SEQ_MS * max_seqs as f64) / 1000.0)
}

struct Sim {
    child: Child,
    port: u16,
    max_seqs: usize,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_sim(engine: bool, extra_args: &[&str]) -> Sim {
    start_sim_with(engine, MAX_SEQS, extra_args).await
}

/// A simulator whose engine runs at most `max_seqs` sequences at once.
async fn start_sim_with(engine: bool, max_seqs: usize, extra_args: &[&str]) -> Sim {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prs"));
    cmd.args(["sim", "--port", &port.to_string()]);
    if engine {
        cmd.args([
            "--engine",
            "--step-ms",
            &STEP_MS.to_string(),
            "--per-seq-ms",
            &PER_SEQ_MS.to_string(),
        ])
        .args(["--max-seqs", &max_seqs.to_string()]);
    }
    cmd.args(extra_args);
    let sim = Sim {
        child: cmd.stderr(Stdio::null()).spawn().expect("start prs sim"),
        port,
        max_seqs,
    };
    let url = format!("http://127.0.0.1:{port}/v1/models");
    for _ in 0..200 {
        if reqwest::get(&url).await.is_ok() {
            return sim;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("simulator did not start");
}

fn config(sim: &Sim) -> PrsConfig {
    let mut cfg = PrsConfig::default();
    for (k, v) in [
        ("policy_url", format!("http://127.0.0.1:{}/v1", sim.port)),
        ("reward_url", format!("http://127.0.0.1:{}", sim.port)),
        ("policy_model", "prs-sim-policy".to_string()),
        ("reward_model", "prs-sim-reward".to_string()),
        // batched text, as the stage-by-stage reference sends; the chat runs set it apart
        ("reward_input", "text".to_string()),
    ] {
        cfg.set_checked(k, &v, "bench").unwrap();
    }
    if let Ok(extra) = std::env::var("PRS_BENCH_SET") {
        for item in extra.split(',').filter(|i| !i.trim().is_empty()) {
            let (k, v) = item.split_once('=').expect("PRS_BENCH_SET: name=value,...");
            cfg.set_checked(k.trim(), v.trim(), "PRS_BENCH_SET")
                .unwrap();
        }
    }
    cfg
}

/// User + system CPU seconds of this process so far.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (1-based) of the whole line: 12 and 13 after ")"
    (ticks(11) + ticks(12)) / 100.0
}

struct Run {
    /// The engine's peak token rate (the lower bound's divisor).
    peak: f64,
    secs: f64,
    cpu: f64,
    candidates: u64,
    tokens: u64,
    /// The engine's counters over the run (engine simulator only).
    engine: Option<EngineDelta>,
}

/// Where a run's makespan went, from the simulator's `/sim/engine` counters.
#[derive(Clone, Copy)]
struct EngineDelta {
    busy: f64,
    prefill: f64,
    underfull: f64,
    /// The same sequences' makespan with all of them queued at the start (seconds).
    all_queued: f64,
}

async fn engine_counters(port: u16) -> Option<serde_json::Value> {
    let url = format!("http://127.0.0.1:{port}/sim/engine");
    let resp = reqwest::get(&url).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

/// With `PRS_BENCH_TRACE=1`, print the engine's under-full and prefill time per half second
/// while a run goes on (where in the run the slots were left empty).
fn trace_engine(port: u16) -> Option<tokio::task::JoinHandle<()>> {
    std::env::var("PRS_BENCH_TRACE").ok().filter(|v| v == "1")?;
    Some(tokio::spawn(async move {
        let t0 = Instant::now();
        let mut last = engine_counters(port).await;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = engine_counters(port).await;
            if let Some(d) = engine_delta(&last, &now) {
                eprintln!(
                    "  t={:>5.1}s busy {:>4.2}s prefill {:>4.2}s under-full {:>4.2}s",
                    t0.elapsed().as_secs_f64(),
                    d.busy,
                    d.prefill,
                    d.underfull
                );
            }
            last = now;
        }
    }))
}

fn engine_delta(
    before: &Option<serde_json::Value>,
    after: &Option<serde_json::Value>,
) -> Option<EngineDelta> {
    let (b, a) = (before.as_ref()?, after.as_ref()?);
    let secs = |k: &str| (a[k].as_f64().unwrap_or(0.0) - b[k].as_f64().unwrap_or(0.0)) / 1000.0;
    Some(EngineDelta {
        busy: secs("busy_ms"),
        prefill: secs("prefill_ms"),
        underfull: secs("underfull_ms"),
        all_queued: 0.0,
    })
}

/// The engine's split of a run between two counter snapshots, with the all-queued replay of
/// the sequences the run sent.
async fn run_delta(
    port: u16,
    before: &Option<serde_json::Value>,
    after: &Option<serde_json::Value>,
) -> Option<EngineDelta> {
    let mut delta = engine_delta(before, after)?;
    let from = before.as_ref()?["sequences"].as_u64()?;
    let url = format!("http://127.0.0.1:{port}/sim/engine/all-queued/{from}");
    let json: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
    delta.all_queued = json["makespan_ms"].as_f64()? / 1000.0;
    Some(delta)
}

async fn run_sql(sim: &Sim, cfg: PrsConfig, prompts: usize, sql: &str) -> Run {
    let ctx = datafusion_prs::session_context(cfg);
    make_prompts(&ctx, prompts).await;
    let before = engine_counters(sim.port).await;
    let trace = trace_engine(sim.port);
    let (t0, c0) = (Instant::now(), cpu_secs());
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    if let Some(t) = trace {
        t.abort();
    }
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs() - c0);
    let engine = run_delta(sim.port, &before, &engine_counters(sim.port).await).await;
    let candidates = batches[0].column(0).as_primitive::<Int64Type>().value(0) as u64;
    let stats = ctx
        .state()
        .config()
        .get_extension::<JobStats>()
        .unwrap()
        .snapshot();
    assert_eq!(stats.failed_candidates, 0, "{stats:?}");
    Run {
        peak: peak_tokens_per_sec(sim.max_seqs),
        secs,
        cpu,
        candidates,
        tokens: stats.completion_tokens,
        engine,
    }
}

async fn make_prompts(ctx: &SessionContext, n: usize) {
    ctx.sql(&format!(
        "CREATE TABLE prompts AS SELECT value AS id, \
         'Explain topic number ' || CAST(value AS VARCHAR) || ' clearly, with an example about rivers, markets or music.' AS prompt \
         FROM generate_series(1, {n})"
    ))
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
}

/// The reference implementation's schedule: each stage over the whole dataset, with a barrier
/// between stages. Same requests, seeds and templates as `prs_sample(.., 16)`.
async fn reference_prs(sim: &Sim, cfg: &PrsConfig, prompts: usize) -> Run {
    let stats = Arc::new(JobStats::default());
    let templates = Templates::from_config(cfg).unwrap();
    let policy = PolicySettings::from_config(cfg).unwrap();
    let policy =
        Arc::new(PolicyClient::new(&policy, templates.prompt.clone(), stats.clone()).unwrap());
    let reward = RewardSettings::from_config(cfg).unwrap();
    let reward = Arc::new(RewardClient::new(&reward, stats.clone()).unwrap());
    let pref = datafusion_prs::config::DEFAULT_PREFERENCE;
    let inflight = cfg.max_in_flight;
    let questions: Vec<(String, String)> = (1..=prompts)
        .map(|i| {
            let x = format!(
                "Explain topic number {i} clearly, with an example about rivers, markets or music."
            );
            (i.to_string(), format!("{x}\n\n{pref}"))
        })
        .collect();
    let before = engine_counters(sim.port).await;
    let (t0, c0) = (Instant::now(), cpu_secs());
    let generate = |jobs: Vec<(String, i32, i32, String, usize)>| {
        let policy = policy.clone();
        async move {
            futures::stream::iter(jobs)
                .map(|(id, layer, first, text, n)| {
                    let policy = policy.clone();
                    async move {
                        let seed = derive_seed(0, &id, layer, first);
                        let (choices, _) = policy.complete(&text, n, seed, 0).await.unwrap();
                        choices.into_iter().map(|c| c.text).collect::<Vec<_>>()
                    }
                })
                .buffered(inflight)
                .collect::<Vec<_>>()
                .await
        }
    };
    let score = |texts: Vec<Vec<String>>| {
        let reward = reward.clone();
        async move {
            // the reference scores the dataset in batches regardless of prompt boundaries
            let flat: Vec<String> = texts.iter().flatten().cloned().collect();
            let batches: Vec<Vec<String>> = flat.chunks(32).map(|c| c.to_vec()).collect();
            let scores: Vec<f64> = futures::stream::iter(batches)
                .map(|b| {
                    let reward = reward.clone();
                    let items: Vec<RewardItem> = b.into_iter().map(RewardItem::text).collect();
                    async move { reward.score(&items).await.unwrap() }
                })
                .buffered(cfg.reward_max_in_flight)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .flatten()
                .collect();
            let mut it = scores.into_iter();
            texts
                .iter()
                .map(|t| it.by_ref().take(t.len()).collect::<Vec<f64>>())
                .collect::<Vec<_>>()
        }
    };
    let reward_text = |q: &str, r: &str| format!("Human: {q}\nAssistant: {r}");
    // layer 0
    let layer0 = generate(
        questions
            .iter()
            .map(|(id, q)| (id.clone(), 0, 0, q.clone(), 8))
            .collect(),
    )
    .await;
    let s0 = score(
        layer0
            .iter()
            .zip(&questions)
            .map(|(rs, (_, q))| rs.iter().map(|r| reward_text(q, r)).collect())
            .collect(),
    )
    .await;
    let best: Vec<String> = layer0
        .iter()
        .zip(&s0)
        .map(|(rs, ss)| {
            let i = (0..ss.len())
                .max_by(|&a, &b| ss[a].total_cmp(&ss[b]))
                .unwrap();
            rs[i].clone()
        })
        .collect();
    // feedback
    let fb = generate(
        questions
            .iter()
            .zip(&best)
            .map(|((id, q), b)| {
                let t = templates.feedback.render(&[
                    ("question", q),
                    ("answer", b),
                    ("preference", pref),
                ]);
                (id.clone(), 1, -1, t, 1)
            })
            .collect(),
    )
    .await;
    // layer 1
    let layer1 = generate(
        questions
            .iter()
            .zip(&best)
            .zip(&fb)
            .map(|(((id, q), b), f)| {
                let t = templates.revise.render(&[
                    ("question", q),
                    ("answer", b),
                    ("preference", pref),
                    ("feedback", &f[0]),
                ]);
                (id.clone(), 1, 8, t, 8)
            })
            .collect(),
    )
    .await;
    score(
        layer1
            .iter()
            .zip(&questions)
            .map(|(rs, (_, q))| rs.iter().map(|r| reward_text(q, r)).collect())
            .collect(),
    )
    .await;
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs() - c0);
    let engine = run_delta(sim.port, &before, &engine_counters(sim.port).await).await;
    let s = stats.snapshot();
    Run {
        peak: peak_tokens_per_sec(sim.max_seqs),
        secs,
        cpu,
        candidates: (prompts * 16) as u64,
        tokens: s.completion_tokens,
        engine,
    }
}

fn report(name: &str, r: &Run) {
    let rate = format!(
        "candidates/s {:>8.0}  client CPU {:>6.3}s per 1000 candidates",
        r.candidates as f64 / r.secs,
        r.cpu * 1000.0 / r.candidates as f64
    );
    let Some(e) = r.engine else {
        // instant simulator: no engine, no lower bound
        println!("{name:<34} makespan {:>7.2}s  {rate}", r.secs);
        return;
    };
    let lower = r.tokens as f64 / r.peak;
    println!(
        "{name:<34} makespan {:>7.2}s  lower bound {:>7.2}s  ratio {:>5.3}  tokens {:>8}  {rate}",
        r.secs,
        lower,
        r.secs / lower,
        r.tokens,
    );
    // makespan - lower bound = prefill + under-full steps + time with no step running (idle,
    // or the simulator's timers lagging), + whatever the engine ran beyond the tokens the
    // client counted (nothing, when usage and the engine agree)
    let idle = r.secs - e.busy;
    let rest = (r.secs - lower) - e.prefill - e.underfull - idle;
    println!(
        "{:<34} gap {:>5.2}s = prefill {:>5.2}s + under-full steps {:>5.2}s + no step running {:>5.2}s{}",
        "",
        r.secs - lower,
        e.prefill,
        e.underfull,
        idle,
        if rest.abs() >= 0.01 {
            format!(" + tokens the client did not count {rest:>5.2}s")
        } else {
            String::new()
        }
    );
    // the same sequences with all of them queued at the start: prefill and the final drain
    // remain, waiting between stages does not
    println!(
        "{:<34} all queued at once: {:>5.2}s, ratio {:>5.3}; this run is {:>5.3}x that",
        "",
        e.all_queued,
        e.all_queued / lower,
        r.secs / e.all_queued
    );
}

#[tokio::main]
async fn main() {
    let prompts: usize = std::env::var("PRS_BENCH_PROMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    println!(
        "engine model: step {STEP_MS} ms + {PER_SEQ_MS} ms/sequence, max {MAX_SEQS} sequences, peak {:.0} tokens/s; {prompts} prompts",
        peak_tokens_per_sec(MAX_SEQS)
    );
    if std::env::var("PRS_BENCH_ONLY").is_ok_and(|v| v == "small") {
        small_jobs().await;
        return;
    }
    // `PRS_BENCH_ONLY=main`: only the two runs below, with `PRS_BENCH_N` samples (16)
    let only_main = std::env::var("PRS_BENCH_ONLY").is_ok_and(|v| v == "main");
    let n: usize = match only_main {
        true => std::env::var("PRS_BENCH_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(16),
        false => 16,
    };
    let sim = start_sim(true, &[]).await;
    let cfg = config(&sim);
    let prs = run_sql(
        &sim,
        cfg.clone(),
        prompts,
        &format!("SELECT count(*) FROM prs_sample('prompts', {n})"),
    )
    .await;
    report(&format!("prs_sample n={n} (pipelined)"), &prs);
    if !only_main {
        let reference = reference_prs(&sim, &cfg, prompts).await;
        report("PRS n=16, stage-by-stage reference", &reference);
        println!(
            "speedup of prs_sample over the stage-by-stage schedule: {:.2}x",
            reference.secs / prs.secs
        );
    }
    let random = run_sql(
        &sim,
        cfg.clone(),
        prompts,
        &format!("SELECT count(*) FROM random_sample('prompts', {n})"),
    )
    .await;
    report(&format!("random_sample n={n}"), &random);

    drop(sim);
    if only_main {
        return;
    }

    // the same runs against a server that ignores `n` (one choice per request), default settings
    let ignoring = start_sim(true, &["--ignore-n"]).await;
    let cfg = config(&ignoring);
    for (name, sql, honoured) in [
        (
            "prs_sample",
            "SELECT count(*) FROM prs_sample('prompts', 16)",
            &prs,
        ),
        (
            "random_sample",
            "SELECT count(*) FROM random_sample('prompts', 16)",
            &random,
        ),
    ] {
        let run = run_sql(&ignoring, cfg.clone(), prompts, sql).await;
        report(&format!("{name} n=16, server ignores n"), &run);
        println!(
            "{name}: makespan with a server that ignores n / with n honoured: {:.3}x",
            run.secs / honoured.secs
        );
    }
    drop(ignoring);

    // the same comparison with vLLM's prefix cache modelled on both sides: a prompt sent as
    // n single requests is prefilled once, as with n in one request
    let ignore_n_cached = if std::env::var("PRS_BENCH_PREFIX_CACHE").is_ok_and(|v| v == "0") {
        vec![]
    } else {
        vec![(false, "n honoured"), (true, "server ignores n")]
    };
    let mut honoured_secs = [0.0f64; 2];
    for (ignore, label) in ignore_n_cached {
        let args: &[&str] = if ignore {
            &["--prefix-cache", "--ignore-n"]
        } else {
            &["--prefix-cache"]
        };
        let sim = start_sim(true, args).await;
        let cfg = config(&sim);
        for (i, (name, sql)) in [
            (
                "prs_sample",
                "SELECT count(*) FROM prs_sample('prompts', 16)",
            ),
            (
                "random_sample",
                "SELECT count(*) FROM random_sample('prompts', 16)",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let run = run_sql(&sim, cfg.clone(), prompts, sql).await;
            report(&format!("{name} n=16, prefix cache, {label}"), &run);
            if ignore {
                println!(
                    "{name}, prefix cache: makespan with a server that ignores n / with n honoured: {:.3}x",
                    run.secs / honoured_secs[i]
                );
            } else {
                honoured_secs[i] = run.secs;
            }
        }
    }

    // reward input as conversations (`messages`, one per request, as vLLM takes them) against
    // batched text, on an engine whose reward model merges concurrent requests as vLLM does
    let merging = start_sim(true, &["--reward-merge-requests"]).await;
    let text = config(&merging);
    let mut chat = text.clone();
    chat.set_checked("reward_input", "chat", "bench").unwrap();
    for (name, sql) in [
        (
            "prs_sample",
            "SELECT count(*) FROM prs_sample('prompts', 16)",
        ),
        (
            "random_sample",
            "SELECT count(*) FROM random_sample('prompts', 16)",
        ),
    ] {
        let batched = run_sql(&merging, text.clone(), prompts, sql).await;
        report(
            &format!("{name} n=16, batched text, vLLM-like RM"),
            &batched,
        );
        let run = run_sql(&merging, chat.clone(), prompts, sql).await;
        report(&format!("{name} n=16, messages, vLLM-like RM"), &run);
        println!(
            "{name}: makespan with messages / with batched text: {:.3}x; client CPU {:.2}x",
            run.secs / batched.secs,
            run.cpu / batched.cpu
        );
    }
    drop(merging);

    small_jobs().await;

    let instant = start_sim(false, &[]).await;
    let cfg = config(&instant);
    let fast = run_sql(
        &instant,
        cfg,
        prompts,
        "SELECT count(*) FROM prs_sample('prompts', 16)",
    )
    .await;
    report("prs_sample n=16, instant simulator", &fast);

    // peak RSS of the CLI streaming a job from Parquet to Parquet (n = 4, short responses)
    let rss_sizes: Vec<usize> = std::env::var("PRS_BENCH_RSS_PROMPTS")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 100_000]);
    for n in rss_sizes {
        let (rss, secs) = cli_peak_rss(&instant, n).await;
        println!("prs sql, random_sample n=4 over {n:>6} prompts, Parquet to Parquet: peak RSS {rss:>6.1} MiB ({secs:.1}s)");
    }
}

/// Small jobs: `PRS_BENCH_SMALL_PROMPTS` (200) prompts, PRS n = 8, on a 64-slot engine, where a
/// fixed prompt window starts the last prompts late and ends in a long drain.
async fn small_jobs() {
    let prompts: usize = std::env::var("PRS_BENCH_SMALL_PROMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let sql = "SELECT count(*) FROM prs_sample('prompts', 8)";
    let sim = start_sim_with(true, 64, &[]).await;
    let run = run_sql(&sim, config(&sim), prompts, sql).await;
    report(
        &format!("prs_sample n=8, {prompts} prompts, 64 slots"),
        &run,
    );
    drop(sim);
    // deeper layers first at the server too (vLLM --scheduling-policy priority)
    let sim = start_sim_with(true, 64, &["--scheduling-policy", "priority"]).await;
    let mut cfg = config(&sim);
    cfg.set_checked("policy_priority", "true", "bench").unwrap();
    let run = run_sql(&sim, cfg, prompts, sql).await;
    report("the same, policy_priority = true", &run);
}

async fn cli_peak_rss(sim: &Sim, prompts: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("prompts.parquet");
    let ctx = SessionContext::new();
    make_prompts(&ctx, prompts).await;
    ctx.sql(&format!("COPY prompts TO '{}'", input.display()))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let summary = dir.path().join("summary.json");
    // row groups of 8192 rows: the Parquet writer would otherwise buffer up to a million rows
    let sql = format!(
        "SET datafusion.execution.parquet.max_row_group_size = 8192; \
         COPY (SELECT * FROM random_sample('{}', 4)) TO '{}'",
        input.display(),
        dir.path().join("out.parquet").display()
    );
    let status = Command::new(env!("CARGO_BIN_EXE_prs"))
        .args([
            "sql",
            "--policy-url",
            &format!("http://127.0.0.1:{}/v1", sim.port),
        ])
        .args(["--reward-url", &format!("http://127.0.0.1:{}", sim.port)])
        .args([
            "--set",
            "max_tokens=16",
            "--summary-json",
            summary.to_str().unwrap(),
            &sql,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
    (
        json["peak_rss_mb"].as_f64().unwrap_or(0.0),
        json["wall_secs"].as_f64().unwrap_or(0.0),
    )
}
