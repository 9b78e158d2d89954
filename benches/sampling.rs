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
    /// (seconds into the run, tokens the engine generated so far) every [`PROFILE_EVERY`].
    profile: Vec<(f64, u64)>,
}

/// (seconds into a run, tokens the engine generated so far), filled while the run goes on.
type Profile = std::sync::Mutex<Vec<(f64, u64)>>;

/// How often the engine's token counter is read during a run, for the tail profile.
const PROFILE_EVERY: Duration = Duration::from_millis(50);

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

/// Read the engine's token counter every [`PROFILE_EVERY`] until aborted; the samples, taken
/// from the returned handle's vector, show how full the engine ran over time.
fn profile_engine(port: u16) -> (tokio::task::JoinHandle<()>, Arc<Profile>) {
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = samples.clone();
    let task = tokio::spawn(async move {
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(PROFILE_EVERY);
        loop {
            tick.tick().await;
            let at = t0.elapsed().as_secs_f64();
            if let Some(tokens) = engine_counters(port)
                .await
                .and_then(|c| c["tokens"].as_u64())
            {
                out.lock().unwrap().push((at, tokens));
            }
        }
    });
    (task, samples)
}

/// The engine's output over a run as shares of its peak rate: per tenth of the makespan, and
/// when the tail starts (the end of the last [`PROFILE_EVERY`] interval at 90 % of the peak or
/// more).
struct Tail {
    tenths: Vec<f64>,
    full_until: f64,
}

fn tail(profile: &[(f64, u64)], peak: f64, secs: f64) -> Option<Tail> {
    let (&(t0, k0), _) = profile.split_first()?;
    let tokens_at = |t: f64| -> f64 {
        // linear between samples; the counter before the first sample is the first's
        let i = profile.partition_point(|&(at, _)| at <= t);
        match (i.checked_sub(1).map(|j| profile[j]), profile.get(i)) {
            (Some((a, ka)), Some(&(b, kb))) => {
                ka as f64 + (kb as f64 - ka as f64) * (t - a) / (b - a).max(1e-9)
            }
            (Some((_, ka)), None) => ka as f64,
            (None, _) => k0 as f64,
        }
    };
    let share = |a: f64, b: f64| (tokens_at(b) - tokens_at(a)) / (peak * (b - a).max(1e-9));
    let tenths = (0..10)
        .map(|i| {
            share(
                t0 + secs * i as f64 / 10.0,
                t0 + secs * (i + 1) as f64 / 10.0,
            )
        })
        .collect();
    let full_until = profile
        .windows(2)
        .filter(|w| (w[1].1 - w[0].1) as f64 >= 0.9 * peak * (w[1].0 - w[0].0))
        .map(|w| w[1].0 - t0)
        .fold(0.0, f64::max);
    Some(Tail { tenths, full_until })
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

async fn run_sql(sim: &Sim, cfg: PrsConfig, prompts: usize, sql: impl AsRef<str>) -> Run {
    let sql = sql.as_ref();
    let ctx = datafusion_prs::session_context(cfg);
    make_prompts(&ctx, prompts).await;
    let before = engine_counters(sim.port).await;
    let trace = trace_engine(sim.port);
    let (profiler, profile) = profile_engine(sim.port);
    let (t0, c0) = (Instant::now(), cpu_secs());
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs() - c0);
    profiler.abort();
    if let Some(t) = trace {
        t.abort();
    }
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
        profile: taken(&profile),
    }
}

fn taken(profile: &Profile) -> Vec<(f64, u64)> {
    std::mem::take(&mut *profile.lock().unwrap())
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

/// The clients a hand-written schedule sends with, counting into `stats`.
struct Clients {
    stats: Arc<JobStats>,
    templates: Templates,
    policy: Arc<PolicyClient>,
    reward: Arc<RewardClient>,
}

fn clients(cfg: &PrsConfig) -> Clients {
    let stats = Arc::new(JobStats::default());
    let templates = Templates::from_config(cfg).unwrap();
    let policy = PolicySettings::from_config(cfg).unwrap();
    let policy =
        Arc::new(PolicyClient::new(&policy, templates.prompt.clone(), stats.clone()).unwrap());
    let reward = RewardSettings::from_config(cfg).unwrap();
    let reward = Arc::new(RewardClient::new(&reward, stats.clone()).unwrap());
    Clients {
        stats,
        templates,
        policy,
        reward,
    }
}

/// The reference implementation's schedule: each stage over the whole dataset, with a barrier
/// between stages. Same requests, seeds and templates as `prs_sample(.., n)` (n even).
async fn reference_prs(sim: &Sim, cfg: &PrsConfig, prompts: usize, n: usize) -> Run {
    let half = n / 2;
    let Clients {
        stats,
        templates,
        policy,
        reward,
    } = clients(cfg);
    let pref = datafusion_prs::config::DEFAULT_PREFERENCE;
    let (inflight, run_seed) = (cfg.max_in_flight, cfg.seed);
    let questions: Vec<(String, String)> = (1..=prompts)
        .map(|i| {
            let x = format!(
                "Explain topic number {i} clearly, with an example about rivers, markets or music."
            );
            (i.to_string(), format!("{x}\n\n{pref}"))
        })
        .collect();
    let before = engine_counters(sim.port).await;
    let (profiler, profile) = profile_engine(sim.port);
    let (t0, c0) = (Instant::now(), cpu_secs());
    let generate = |jobs: Vec<(String, i32, i32, String, usize)>| {
        let policy = policy.clone();
        async move {
            futures::stream::iter(jobs)
                .map(|(id, layer, first, text, n)| {
                    let policy = policy.clone();
                    async move {
                        let seed = derive_seed(run_seed, &id, layer, first);
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
            .map(|(id, q)| (id.clone(), 0, 0, q.clone(), half))
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
                (id.clone(), 1, half as i32, t, half)
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
    profiler.abort();
    let engine = run_delta(sim.port, &before, &engine_counters(sim.port).await).await;
    let s = stats.snapshot();
    Run {
        peak: peak_tokens_per_sec(sim.max_seqs),
        secs,
        cpu,
        candidates: (prompts * 2 * half) as u64,
        tokens: s.completion_tokens,
        engine,
        profile: taken(&profile),
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
    if let Some(t) = tail(&r.profile, r.peak, r.secs) {
        let tenths: Vec<String> = t
            .tenths
            .iter()
            .map(|s| format!("{:.0}", s * 100.0))
            .collect();
        println!(
            "{:<34} % of peak by tenth of the run: {}; full (>= 90 %) until {:.2}s, tail {:.2}s ({:.0} % of the run)",
            "",
            tenths.join(" "),
            t.full_until,
            r.secs - t.full_until,
            (r.secs - t.full_until) / r.secs * 100.0
        );
    }
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
    if std::env::var("PRS_BENCH_ONLY").is_ok_and(|v| v == "replicas") {
        replica_runs().await;
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
        let reference = reference_prs(&sim, &cfg, prompts, 16).await;
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
    replica_runs().await;

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

/// Small jobs (issue 27): PRS n = 8 over 100 to 300 prompts against 64 and 256 running
/// sequences, with a reward model that merges concurrent requests (as vLLM and TEI do), a
/// server that honours `n` and one that ignores it; the stage-by-stage reference at 200 prompts
/// and 64 sequences; and random sampling on the server that ignores `n` against a plain client
/// that sends every sample as its own request. `PRS_BENCH_SHAPES="200x64,300x256i"` picks
/// shapes (prompts x sequences, `i`: the server ignores `n`).
async fn small_jobs() {
    let shapes = std::env::var("PRS_BENCH_SHAPES").unwrap_or_else(|_| {
        "100x64,200x64,300x64,100x256,200x256,300x256,200x64i,300x256i".to_string()
    });
    let n = 8;
    for shape in shapes.split(',').filter(|s| !s.trim().is_empty()) {
        let shape = shape.trim();
        let ignore_n = shape.ends_with('i');
        let (prompts, seqs) = shape
            .trim_end_matches('i')
            .split_once('x')
            .and_then(|(p, s)| Some((p.parse::<usize>().ok()?, s.parse::<usize>().ok()?)))
            .expect("PRS_BENCH_SHAPES: PROMPTSxSEQUENCES[i],...");
        let extra = std::env::var("PRS_BENCH_SIM_ARGS").unwrap_or_default();
        let mut args = vec!["--reward-merge-requests"];
        if ignore_n {
            args.push("--ignore-n");
        }
        args.extend(extra.split_whitespace());
        let sim = start_sim_with(true, seqs, &args).await;
        let server = if ignore_n { ", ignores n" } else { "" };
        let sample = |method: &str| {
            let sql = format!("SELECT count(*) FROM {method}('prompts', {n})");
            run_sql(&sim, config(&sim), prompts, sql)
        };
        let prs = sample("prs_sample").await;
        report(&format!("prs n={n}, {prompts}x{seqs}{server}"), &prs);
        if !ignore_n && (prompts, seqs) == (200, 64) {
            let reference = reference_prs(&sim, &config(&sim), prompts, n).await;
            report(&format!("stage-by-stage, {prompts}x{seqs}"), &reference);
            println!(
                "{:<34} speedup of prs_sample over the stage-by-stage schedule: {:.2}x",
                "",
                reference.secs / prs.secs
            );
        }
        if ignore_n && (prompts, seqs) == (300, 256) {
            let random = sample("random_sample").await;
            report(&format!("random n={n}, {prompts}x{seqs}{server}"), &random);
            let plain = plain_client(&sim, &config(&sim), prompts, n).await;
            report(
                &format!("plain n=1 client, {prompts}x{seqs}{server}"),
                &plain,
            );
            println!(
                "{:<34} random_sample / plain n = 1 client: {:.3}x",
                "",
                random.secs / plain.secs
            );
        }
    }
}

/// Prefix reuse across replicas (issue 27): PRS n = 8 over `PRS_BENCH_REPLICA_PROMPTS` (300)
/// prompts against two simulator replicas of 128 sequences, each with its own prefix cache,
/// routed by prompt (`policy_routing = prompt`) or to the least loaded replica, with `n`
/// honoured and ignored. Reports the makespan and the prefill the replicas did.
async fn replica_runs() {
    let prompts: usize = std::env::var("PRS_BENCH_REPLICA_PROMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for ignore_n in [false, true] {
        let mut args = vec!["--reward-merge-requests", "--prefix-cache"];
        if ignore_n {
            args.push("--ignore-n");
        }
        let mut secs_by = vec![];
        for routing in ["least_loaded", "prompt"] {
            // fresh replicas: empty prefix caches
            let sims = [
                start_sim_with(true, 128, &args).await,
                start_sim_with(true, 128, &args).await,
            ];
            let urls = |suffix: &str| {
                sims.iter()
                    .map(|s| format!("http://127.0.0.1:{}{suffix}", s.port))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let mut cfg = config(&sims[0]);
            cfg.set_checked("policy_url", &urls("/v1"), "bench")
                .unwrap();
            cfg.set_checked("reward_url", &urls(""), "bench").unwrap();
            cfg.set_checked("policy_routing", routing, "bench").unwrap();
            let ctx = datafusion_prs::session_context(cfg);
            make_prompts(&ctx, prompts).await;
            let mut before = vec![];
            for s in &sims {
                before.push(engine_counters(s.port).await);
            }
            let t0 = Instant::now();
            ctx.sql("SELECT count(*) FROM prs_sample('prompts', 8)")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let secs = t0.elapsed().as_secs_f64();
            let (mut prefill, mut tokens) = (0.0, 0.0);
            for (s, b) in sims.iter().zip(&before) {
                let after = engine_counters(s.port).await;
                if let Some(d) = engine_delta(b, &after) {
                    prefill += d.prefill;
                }
                let t = |v: &Option<serde_json::Value>| {
                    v.as_ref().and_then(|v| v["tokens"].as_f64()).unwrap_or(0.0)
                };
                tokens += t(&after) - t(b);
            }
            let lower = tokens / (2.0 * peak_tokens_per_sec(128));
            let server = if ignore_n {
                "server ignores n"
            } else {
                "n honoured"
            };
            println!(
                "prs n=8, {prompts} prompts, 2 replicas x 128, {server}, routing {routing:<12} makespan {secs:>6.2}s  ratio {:>5.3}  prefill {prefill:>5.2}s (both replicas)",
                secs / lower
            );
            secs_by.push(secs);
        }
        println!(
            "{:<34} routing by prompt / least loaded: {:.3}x",
            "",
            secs_by[1] / secs_by[0]
        );
    }
}

/// A plain client for random sampling against a server that ignores `n`: every sample its own
/// request (as many at once as `max_in_flight`), each response scored as it arrives. Same
/// texts and seeds as `random_sample(.., n)`, so the same sequences.
async fn plain_client(sim: &Sim, cfg: &PrsConfig, prompts: usize, n: usize) -> Run {
    let Clients {
        stats,
        policy,
        reward,
        ..
    } = clients(cfg);
    let pref = datafusion_prs::config::DEFAULT_PREFERENCE;
    let run_seed = cfg.seed;
    let jobs: Vec<(String, String, usize)> = (1..=prompts)
        .flat_map(|i| {
            let q = format!(
                "Explain topic number {i} clearly, with an example about rivers, markets or music.\n\n{pref}"
            );
            (0..n).map(move |k| (i.to_string(), q.clone(), k))
        })
        .collect();
    let before = engine_counters(sim.port).await;
    let (profiler, profile) = profile_engine(sim.port);
    let (t0, c0) = (Instant::now(), cpu_secs());
    futures::stream::iter(jobs)
        .map(|(id, q, k)| {
            let (policy, reward) = (policy.clone(), reward.clone());
            async move {
                let seed = derive_seed(run_seed, &id, 0, k as i32);
                let (choices, _) = policy.complete(&q, 1, seed, 0).await.unwrap();
                let text = format!("Human: {q}\nAssistant: {}", choices[0].text);
                reward.score(&[RewardItem::text(text)]).await.unwrap();
            }
        })
        .buffer_unordered(cfg.max_in_flight)
        .collect::<Vec<()>>()
        .await;
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs() - c0);
    profiler.abort();
    let engine = run_delta(sim.port, &before, &engine_counters(sim.port).await).await;
    Run {
        peak: peak_tokens_per_sec(sim.max_seqs),
        secs,
        cpu,
        candidates: (prompts * n) as u64,
        tokens: stats.snapshot().completion_tokens,
        engine,
        profile: taken(&profile),
    }
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
