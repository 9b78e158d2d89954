//! Ballista: a scheduler and two executors on 127.0.0.1 (child processes of the `prs` binary)
//! run PRS over a prompt table split into Parquet files, against the fake servers. The result
//! equals the single-node run's; an executor killed mid-query either has its tasks re-run by
//! the other executor or fails the query clearly, and a re-run never asks for a prompt that was
//! finished (checkpointed) before.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use datafusion_prs::PrsConfig;

use crate::common::*;

const PROMPTS_PER_FILE: usize = 3;
const FILES: usize = 4;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on {port}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scheduler and executors; all killed on drop.
struct Cluster {
    url: String,
    scheduler: Child,
    executors: Vec<(Child, PathBuf)>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// A cluster whose executors hold a policy key bound to no endpoint of theirs.
    fn start(executors: usize) -> Cluster {
        Cluster::start_keyed(executors, "")
    }

    /// A cluster whose executors' policy key may go to `own` (their `PRS_POLICY_URL`).
    fn start_keyed(executors: usize, own: &str) -> Cluster {
        Cluster::start_in(executors, own, None)
    }

    /// Like [`Cluster::start_keyed`], with the executors working in `cwd` (a relative path
    /// names a file there, which this test process, the client, does not have).
    fn start_in(executors: usize, own: &str, cwd: Option<&Path>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut scheduler = Command::new(env!("CARGO_BIN_EXE_prs"))
            .args(["scheduler", "--bind", &format!("127.0.0.1:{port}")])
            .args([
                "--external-host",
                "127.0.0.1",
                "--executor-timeout-secs",
                "3",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "the scheduler", &mut scheduler);
        let mut cluster = Cluster {
            url: format!("df://127.0.0.1:{port}"),
            scheduler,
            executors: vec![],
            _dir: dir,
        };
        for i in 0..executors {
            let (flight, grpc) = (free_port(), free_port());
            let work = cluster._dir.path().join(format!("executor-{i}"));
            let mut command = Command::new(env!("CARGO_BIN_EXE_prs"));
            if let Some(cwd) = cwd {
                command.current_dir(cwd);
            }
            let mut child = command
                .args(["executor", "--scheduler", &format!("127.0.0.1:{port}")])
                .args(["--bind-host", "127.0.0.1", "--external-host", "127.0.0.1"])
                .args(["--flight-port", &flight.to_string()])
                .args(["--grpc-port", &grpc.to_string()])
                .args(["--concurrent-tasks", "2", "--heartbeat-secs", "1"])
                .arg("--work-dir")
                .arg(&work)
                // keys come from each executor's own environment, never from the plan
                .env("PRS_POLICY_API_KEY", API_KEY)
                .env("PRS_POLICY_URL", own)
                .env_remove("PRS_POLICY_API_KEY_URLS")
                .env_remove("PRS_REWARD_API_KEY")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            wait_for_port(flight, "an executor", &mut child);
            cluster.executors.push((child, work));
        }
        // executors register with the scheduler right after they listen
        std::thread::sleep(Duration::from_millis(500));
        cluster
    }

    fn kill_executor(&mut self, i: usize) {
        self.executors[i].0.kill().unwrap(); // SIGKILL: no goodbye to the scheduler
        self.executors[i].0.wait().unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (c, _) in &mut self.executors {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.scheduler.kill();
        let _ = self.scheduler.wait();
    }
}

fn prompt_text(i: usize) -> String {
    format!("Tell me about topic-{i:02}-end.")
}

/// `FILES` Parquet files of `PROMPTS_PER_FILE` prompts each (one partition per file).
async fn prompt_dir(dir: &Path) -> String {
    let ctx = SessionContext::new();
    for f in 0..FILES {
        let rows: Vec<String> = (0..PROMPTS_PER_FILE)
            .map(|j| {
                let i = f * PROMPTS_PER_FILE + j;
                format!("({i}, '{}', 'Be concrete.')", prompt_text(i))
            })
            .collect();
        let path = dir.join(format!("part-{f}.parquet"));
        ctx.sql(&format!(
            "COPY (SELECT CAST(column1 AS BIGINT) AS id, column2 AS prompt, column3 AS preference \
             FROM (VALUES {})) TO '{}' STORED AS PARQUET",
            rows.join(", "),
            path.display()
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    }
    dir.display().to_string()
}

/// Fake servers in `mode` and a prompt directory (deleted with the returned guard).
async fn fixture(mode: Mode) -> (String, Fake, String, tempfile::TempDir) {
    let (url, fake) = start(mode).await;
    let data = tempfile::tempdir().unwrap();
    let source = prompt_dir(data.path()).await;
    (url, fake, source, data)
}

/// `sql` run on one machine with default test settings: what the cluster must reproduce.
async fn single_node(url: &str, sql: &str) -> Vec<RecordBatch> {
    collect(&datafusion_prs::session_context(settings(url, &[])), sql)
        .await
        .unwrap()
}

fn settings(url: &str, extra: &[(&str, &str)]) -> PrsConfig {
    let mut cfg = PrsConfig::default();
    for (k, v) in [
        ("policy_url", format!("{url}/v1").as_str()),
        ("reward_url", url),
        ("retry_initial_delay_ms", "1"),
        ("retry_max_delay_ms", "5"),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    {
        cfg.set_checked(k, v, "test").unwrap();
    }
    cfg
}

fn query(source: &str) -> String {
    format!(
        "SELECT prompt_id, layer, sample_index, parent_index, response, reward, is_best, seed, error \
         FROM prs_sample('{source}', 4) ORDER BY prompt_id, layer, sample_index"
    )
}

async fn collect(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<Vec<RecordBatch>> {
    ctx.sql(sql).await?.collect().await
}

fn table(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

fn cluster_ctx(cluster: &Cluster, cfg: PrsConfig) -> SessionContext {
    prs::cluster::client_context(&cluster.url, cfg).unwrap()
}

fn has_files(dir: &Path) -> bool {
    walk(dir).next().is_some()
}

fn walk(dir: &Path) -> impl Iterator<Item = PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    std::iter::from_fn(move || {
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(
                    std::fs::read_dir(&p)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|e| e.path()),
                );
            } else {
                return Some(p);
            }
        }
        None
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_result_equals_single_node() {
    let (url, fake, source, _data) = fixture(Mode::Normal).await;
    let sql = query(&source);

    let single = single_node(&url, &sql).await;
    fake.log.lock().unwrap().clear();

    let cluster = Cluster::start_keyed(2, &format!("{url}/v1"));
    let distributed = collect(&cluster_ctx(&cluster, settings(&url, &[])), &sql)
        .await
        .unwrap();

    let rows: usize = distributed.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, FILES * PROMPTS_PER_FILE * 4);
    assert_eq!(table(&single), table(&distributed));

    // the executors made the requests, with the key from their own environment
    let generations = requests(&fake, "/chat/completions");
    assert!(!generations.is_empty());
    let bearer = format!("Bearer {API_KEY}");
    assert!(generations
        .iter()
        .all(|r| r.auth.as_deref() == Some(bearer.as_str())));
    // both executors ran tasks (each keeps shuffle output for the tasks it ran)
    for (_, work) in &cluster.executors {
        assert!(has_files(work), "no task ran on {}", work.display());
    }
}

#[tokio::test]
async fn a_session_table_and_prs_score_are_refused_with_a_clear_error_on_the_cluster() {
    let (url, _fake) = start(Mode::Normal).await;
    let cluster = Cluster::start(1);
    let ctx = cluster_ctx(&cluster, settings(&url, &[]));
    ctx.sql("CREATE TABLE t (prompt VARCHAR) AS VALUES ('hi')")
        .await
        .unwrap();
    let err = match collect(&ctx, "SELECT * FROM random_sample('t', 2)").await {
        Ok(_) => panic!("a client-side table cannot be read by the scheduler"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("input t:") && err.contains("every executor can read"),
        "{err}"
    );
    // prs_score has no wire form: refused at planning, naming what works on a cluster
    let err = match collect(&ctx, "SELECT * FROM prs_score('data/prompts.parquet')").await {
        Ok(_) => panic!("prs_score is not sent to executors"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("prs_score runs in one process") && err.contains("reward(prompt, response)"),
        "{err}"
    );
}

fn assert_no_request_for(log: &[Req], finished: &BTreeSet<i64>) {
    for r in log.iter().filter(|r| r.path.ends_with("/chat/completions")) {
        let text = user_text(&r.body);
        for id in finished {
            assert!(
                !text.contains(&prompt_text(*id as usize)),
                "prompt {id} was finished (checkpointed) but was requested again"
            );
        }
    }
}

/// Prompt ids in the checkpoint files under `dir`.
async fn checkpointed(dir: &Path) -> BTreeSet<i64> {
    let ctx = SessionContext::new();
    let mut ids = BTreeSet::new();
    for file in walk(dir).filter(|p| p.extension().is_some_and(|x| x == "parquet")) {
        let batches = ctx
            .read_parquet(
                file.display().to_string(),
                datafusion::prelude::ParquetReadOptions::default(),
            )
            .await
            .unwrap()
            .select_columns(&["prompt_id"])
            .unwrap()
            .collect()
            .await
            .unwrap();
        for b in batches {
            let col = b.column(0);
            let col = datafusion::arrow::compute::cast(
                col,
                &datafusion::arrow::datatypes::DataType::Int64,
            )
            .unwrap();
            let col = col
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .unwrap();
            ids.extend(col.iter().flatten());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_killed_mid_query_then_rerun_sends_no_finished_prompt() {
    let (url, fake, source, _data) = fixture(Mode::Slow).await;
    let sql = query(&source);
    let expected = single_node(&url, &sql).await;

    let ck = tempfile::tempdir().unwrap();
    let ck_path = ck.path().to_str().unwrap().to_string();
    // one prompt at a time per task: the query takes long enough to be interrupted
    let extra = [
        ("checkpoint_dir", ck_path.as_str()),
        ("prompt_concurrency", "1"),
    ];
    let mut cluster = Cluster::start(2);
    let ctx = cluster_ctx(&cluster, settings(&url, &extra));
    let running = {
        let sql = sql.clone();
        tokio::spawn(async move { collect(&ctx, &sql).await })
    };
    // kill an executor once some prompts are finished and others are not
    let started = Instant::now();
    let finished_at_kill = loop {
        let done = checkpointed(ck.path()).await;
        if done.len() >= 2 {
            break done;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(finished_at_kill.len() < FILES * PROMPTS_PER_FILE);
    let requests_before_kill = fake.log.lock().unwrap().len();
    cluster.kill_executor(0);
    let first = tokio::time::timeout(Duration::from_secs(120), running)
        .await
        .expect("the query neither finished nor failed within 120 s")
        .unwrap();
    eprintln!(
        "first run after the kill: {}",
        match &first {
            Ok(_) => "finished (lost tasks re-run)".to_string(),
            Err(e) => format!("failed: {e}"),
        }
    );
    match &first {
        // Ballista ran the lost tasks again on the other executor
        Ok(batches) => assert_eq!(table(batches), table(&expected)),
        // or the query failed, and says so
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    // the tasks Ballista ran again skipped the prompts finished before the kill
    let after_kill: Vec<Req> = fake.log.lock().unwrap()[requests_before_kill..].to_vec();
    assert_no_request_for(&after_kill, &finished_at_kill);

    // re-run: prompts finished before are served from the checkpoint, never requested
    let finished = checkpointed(ck.path()).await;
    assert!(!finished.is_empty());
    fake.log.lock().unwrap().clear();
    let again = collect(&cluster_ctx(&cluster, settings(&url, &extra)), &sql)
        .await
        .unwrap();
    assert_eq!(table(&again), table(&expected));
    assert_no_request_for(&fake.log.lock().unwrap(), &finished);
    if first.is_ok() {
        assert!(
            requests(&fake, "/chat/completions").is_empty(),
            "a finished query's re-run requests nothing"
        );
    }
}

/// Run the `prs` CLI (off the async runtime), returning its output.
async fn run_cli(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_prs"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn cli_args(cluster: &Cluster, url: &str, summary: &Path, sql: String) -> Vec<String> {
    vec![
        "sql".into(),
        "--quiet".into(),
        "--cluster".into(),
        cluster.url.clone(),
        "--policy-url".into(),
        format!("{url}/v1"),
        "--reward-url".into(),
        url.to_string(),
        "--summary-json".into(),
        summary.display().to_string(),
        sql,
    ]
}

fn summary_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `prs sql --cluster`: settings from SET and from flags reach the executors' requests, and
/// the job summary counts the executors' work (read from the scheduler's job metrics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_runs_a_script_on_the_cluster() {
    let (url, fake, source, data) = fixture(Mode::Normal).await;
    let cluster = Cluster::start(2);
    let summary = data.path().join("summary.json");
    let sql = format!(
        "SET prs.temperature = 0.25; \
         SELECT prompt_id, count(*) AS candidates, max(reward) AS best \
         FROM prs_sample('{source}', 4) GROUP BY prompt_id ORDER BY prompt_id"
    );
    let output = run_cli(cli_args(&cluster, &url, &summary, sql)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("ran on the cluster"), "{stderr}");
    let prompts = FILES * PROMPTS_PER_FILE;
    assert!(stdout.contains(&format!("{prompts} row(s)")), "{stdout}");
    let generations = requests(&fake, "/chat/completions");
    assert!(!generations.is_empty());
    assert!(generations.iter().all(|r| r.body["temperature"] == 0.25));

    // the summary has the executors' counts, and they agree with what the servers saw
    let s = summary_json(&summary);
    assert_eq!(s["cluster"], cluster.url.as_str(), "{s}");
    assert_eq!(s["prompts"], prompts as u64, "{s}");
    assert_eq!(s["candidates"], 4 * prompts as u64, "{s}");
    assert_eq!(s["failed_candidates"], 0, "{s}");
    assert_eq!(s["policy_requests"], generations.len() as u64, "{s}");
    assert_eq!(s["reward_texts"], 4 * prompts as u64, "{s}");
    assert!(s["completion_tokens"].as_u64().unwrap() > 0, "{s}");
}

/// On a cluster too, a job whose candidates all failed exits with the too-many-failures code,
/// whether its query returned rows or filled a `CREATE TABLE ... AS` (which DataFusion plans
/// and runs inside the statement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_on_the_cluster_applies_max_failed_share() {
    let (url, _fake, source, data) = fixture(Mode::Reject).await;
    let cluster = Cluster::start(1);
    let summary = data.path().join("summary.json");
    for query in [
        format!("SELECT count(*) FROM random_sample('{source}', 2)"),
        format!("CREATE TABLE c AS SELECT * FROM random_sample('{source}', 2)"),
    ] {
        let sql = format!("SET prs.retry_attempts = 1; SET prs.preflight = false; {query}");
        let output = run_cli(cli_args(&cluster, &url, &summary, sql)).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{query}: {stderr}");
        let s = summary_json(&summary);
        let prompts = (FILES * PROMPTS_PER_FILE) as u64;
        assert_eq!(s["prompts"], prompts, "{query}: {s}");
        assert_eq!(s["candidates"], 2 * prompts, "{query}: {s}");
        assert_eq!(s["failed_candidates"], 2 * prompts, "{query}: {s}");
        assert_eq!(s["failed_share"], 1.0, "{query}: {s}");
        // not measured on a cluster: unknown, not zero
        assert!(
            s["reward_requests"].is_null() && s["errors"].is_null(),
            "{s}"
        );
    }
}

/// `reward(prompt, response)` on the cluster scores the same texts with the same results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reward_udf_on_the_cluster_equals_single_node() {
    let (url, fake, source, _data) = fixture(Mode::Normal).await;
    let sql = format!(
        "SELECT id, reward(prompt, concat('An answer to ', prompt)) AS r FROM '{source}' ORDER BY id"
    );
    let single = single_node(&url, &sql).await;
    fake.log.lock().unwrap().clear();
    let cluster = Cluster::start(2);
    let distributed = collect(&cluster_ctx(&cluster, settings(&url, &[])), &sql)
        .await
        .unwrap();
    assert_eq!(table(&single), table(&distributed));
    let rows: usize = distributed.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, FILES * PROMPTS_PER_FILE);
    assert!(
        !requests(&fake, "/pooling").is_empty(),
        "the executors scored the texts"
    );
}

/// A budget holds for the whole job on a cluster: each task (one per input partition) gets an
/// even share, so the executors together stay within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_holds_for_the_whole_job_on_the_cluster() {
    let (url, fake, source, _data) = fixture(Mode::Normal).await;
    let cluster = Cluster::start(2);
    // FILES = 4 tasks, 2 requests each; a prompt costs 1 generation + 1 reward request
    // (preflight probes are not counted: off, so the servers see only counted requests)
    // (text input: one reward request holds both texts)
    let extra = [
        ("max_requests", "8"),
        ("prompt_concurrency", "1"),
        ("preflight", "false"),
        ("reward_input", "text"),
    ];
    let ctx = cluster_ctx(&cluster, settings(&url, &extra));
    let sql = format!(
        "SELECT prompt_id, count(*) AS rows, max(error) AS error \
         FROM random_sample('{source}', 2) GROUP BY prompt_id ORDER BY prompt_id"
    );
    let shown = table(&collect(&ctx, &sql).await.unwrap());
    let generations = requests(&fake, "/chat/completions").len();
    let rewards = requests(&fake, "/pooling").len();
    assert!(
        generations + rewards <= 8,
        "{generations} + {rewards} requests\n{shown}"
    );
    assert_eq!(
        generations, FILES,
        "one prompt per task fits its share\n{shown}"
    );
    let over = shown.matches("budget: prs.max_requests").count();
    assert_eq!(over, FILES * (PROMPTS_PER_FILE - 1), "{shown}");
}

/// A client of the cluster cannot collect the executors' keys: a query naming the client's own
/// server runs there without the key, while the executors' own endpoint still gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_send_their_keys_only_to_their_own_endpoints() {
    let (own, own_fake, source, _data) = fixture(Mode::Normal).await;
    let (attacker, attacker_fake) = start(Mode::Normal).await;
    let cluster = Cluster::start_keyed(1, &format!("{own}/v1"));
    let sql = format!("SELECT count(*) AS c FROM random_sample('{source}', 1)");
    let ctx = cluster_ctx(&cluster, settings(&attacker, &[("preflight", "false")]));
    collect(&ctx, &sql).await.unwrap();
    let stolen = attacker_fake.log.lock().unwrap().clone();
    assert!(
        !stolen.is_empty(),
        "the query ran against the client's server"
    );
    assert!(
        stolen.iter().all(|r| r.auth.is_none()),
        "the executor's key reached a server the plan named: {:?}",
        stolen.iter().map(|r| &r.auth).collect::<Vec<_>>()
    );
    let ctx = cluster_ctx(&cluster, settings(&own, &[("preflight", "false")]));
    collect(&ctx, &sql).await.unwrap();
    let bearer = format!("Bearer {API_KEY}");
    let sent = requests(&own_fake, "/chat/completions");
    assert!(
        !sent.is_empty()
            && sent
                .iter()
                .all(|r| r.auth.as_deref() == Some(bearer.as_str()))
    );
}

/// The addresses listening on TCP `port` (IPv4), from /proc/net/tcp.
fn listening_on(port: u16) -> Vec<std::net::Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, p) = fields.get(1)?.split_once(':')?;
            // state 0A: LISTEN
            if u16::from_str_radix(p, 16).ok()? != port || *fields.get(3)? != "0A" {
                return None;
            }
            let ip = u32::from_str_radix(addr, 16).ok()?;
            Some(std::net::Ipv4Addr::from(ip.swap_bytes()))
        })
        .collect()
}

/// Without an address, the scheduler and executor listen on loopback only.
#[test]
fn scheduler_and_executor_listen_on_loopback_by_default() {
    let dir = tempfile::tempdir().unwrap();
    // a port alone: the default host
    let port = free_port();
    let mut scheduler = Command::new(env!("CARGO_BIN_EXE_prs"))
        .args(["scheduler", "--bind", &port.to_string()])
        .args(["--executor-timeout-secs", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, "the scheduler", &mut scheduler);
    let (flight, grpc) = (free_port(), free_port());
    let mut executor = Command::new(env!("CARGO_BIN_EXE_prs"))
        .args(["executor", "--scheduler", &format!("localhost:{port}")])
        .args(["--flight-port", &flight.to_string()])
        .args(["--grpc-port", &grpc.to_string()])
        .arg("--work-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(flight, "the executor", &mut executor);
    let loopback = std::net::Ipv4Addr::LOCALHOST;
    let (s, e) = (listening_on(port), listening_on(flight));
    let _ = executor.kill();
    let _ = scheduler.kill();
    let _ = (executor.wait(), scheduler.wait());
    assert_eq!(s, vec![loopback], "scheduler");
    assert_eq!(e, vec![loopback], "executor");
}

/// What the executors' files hold: it must never reach the client, an error or a server.
const EXECUTOR_SECRET: &str = "TOP-SECRET-of-the-executor-7f3a";

/// A working directory for the executors only, holding files the client does not have (both
/// run on this machine: a relative path names a file there, and nothing where the test runs).
/// `secret.jinja` renders to itself as a chat template; `secret.txt` is a valid reward
/// template.
fn executor_world() -> tempfile::TempDir {
    let world = tempfile::tempdir().unwrap();
    let jinja = format!("{EXECUTOR_SECRET} api_key=sk-exec-0000");
    std::fs::write(world.path().join("secret.jinja"), jinja).unwrap();
    let text = format!("{EXECUTOR_SECRET} {{response}}");
    std::fs::write(world.path().join("secret.txt"), text).unwrap();
    for name in ["secret.jinja", "secret.txt"] {
        assert!(
            !Path::new(name).exists(),
            "{name} must exist in the executors' world only"
        );
    }
    world
}

/// Every request the fake got, as text, for searching.
fn everything_sent(fake: &Fake) -> String {
    fake.log
        .lock()
        .unwrap()
        .iter()
        .map(|r| format!("{} {:?} {}\n", r.path, r.query, r.body))
        .collect()
}

/// A sampling call's template files are read on the client, at planning, and only their
/// content travels: a file that exists only where the executors run is a planning error on
/// the client (never sent, nothing requested), and a client's file may be gone by the time the
/// executors run the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampling_call_sends_template_content_never_a_path_to_the_executors() {
    let (url, fake, source, data) = fixture(Mode::Normal).await;
    let world = executor_world();
    let cluster = Cluster::start_in(1, "", Some(world.path()));
    let ctx = cluster_ctx(&cluster, settings(&url, &[("preflight", "false")]));
    for (setting, file) in [
        ("reward_chat_template_file", "secret.jinja"),
        ("reward_template_file", "secret.txt"),
        ("prompt_template_file", "secret.txt"),
    ] {
        let sql = format!("SELECT * FROM random_sample('{source}', 1, '{setting}={file}')");
        let err = match ctx.sql(&sql).await {
            Ok(_) => panic!("{setting}: a file the client does not have was not refused"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("cannot read file") && err.contains(file),
            "{setting}: {err}"
        );
        assert!(!err.contains(EXECUTOR_SECRET), "{setting}: {err}");
    }
    assert!(
        fake.log.lock().unwrap().is_empty(),
        "a call refused at planning ran: {}",
        everything_sent(&fake)
    );

    // the client's template, read at planning: its file is gone before the executors run
    let mine = data.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    let template = mine.join("chat.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}",
    )
    .unwrap();
    let sql = format!(
        "SELECT prompt_id, reward, error FROM random_sample('{source}', 1, \
         'reward_chat_template_file={}') ORDER BY prompt_id",
        template.display()
    );
    let planned = ctx.sql(&sql).await.unwrap();
    std::fs::remove_dir_all(&mine).unwrap();
    let batches = planned.collect().await.unwrap();
    let shown = table(&batches);
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, FILES * PROMPTS_PER_FILE, "{shown}");
    assert!(!shown.contains("cannot read"), "{shown}");
    let scored: Vec<String> = requests(&fake, "/pooling")
        .iter()
        .flat_map(|r| r.body["input"].as_array().cloned().unwrap_or_default())
        .map(|t| t.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(scored.len(), FILES * PROMPTS_PER_FILE, "{scored:?}");
    assert!(
        scored
            .iter()
            .all(|t| t.starts_with("<|user|>Tell me about topic-") && t.contains("<|assistant|>")),
        "the executors rendered the client's template: {scored:?}"
    );
}

/// A plan is data a client wrote: one naming file settings (which an honest client never
/// sends) makes no node read those files. The call runs with the template texts it carries.
#[tokio::test]
async fn a_plan_naming_a_file_setting_makes_no_node_read_it() {
    use datafusion::catalog::TableProvider;
    use datafusion::common::TableReference;
    use datafusion_prs::SampleTable;
    use datafusion_prs::TemplateTexts;

    let data = tempfile::tempdir().unwrap();
    let source = prompt_dir(data.path()).await;
    let world = executor_world();
    let secret = |name: &str| world.path().join(name).display().to_string();
    let mut settings = serde_json::Map::new();
    settings.insert("policy_url".into(), "http://127.0.0.1:9/v1".into());
    settings.insert("reward_url".into(), "http://127.0.0.1:9".into());
    for (setting, file) in [
        ("reward_chat_template_file", "secret.jinja"),
        ("reward_template_file", "secret.txt"),
        ("prompt_template_file", "secret.txt"),
        ("feedback_template_file", "secret.txt"),
        ("revise_template_file", "secret.txt"),
        ("revise_no_feedback_template_file", "secret.txt"),
    ] {
        settings.insert(setting.into(), secret(file).into());
    }
    let wire = serde_json::json!({
        "method": "prs", "source": source, "n": 2,
        "settings": settings,
        "templates": TemplateTexts::from_config(&PrsConfig::default()).unwrap(),
    });
    let mut buf = b"prs-sample-table/1\n".to_vec();
    buf.extend(serde_json::to_vec(&wire).unwrap());

    // decoded as the scheduler does
    let server = SessionContext::new_with_config(prs::cluster::server_config());
    let schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::empty());
    let provider: std::sync::Arc<dyn TableProvider> = prs::cluster::logical_codec()
        .try_decode_table_provider(&buf, &TableReference::bare("t"), schema, &server.task_ctx())
        .unwrap();
    let call = provider.downcast_ref::<SampleTable>().unwrap().call();
    assert_eq!(
        call.templates,
        TemplateTexts::from_config(&PrsConfig::default()).unwrap()
    );
    let shown = format!("{call:?}");
    assert!(!shown.contains(EXECUTOR_SECRET), "{shown}");
}

/// The wire form of an honest client's call: template content, no file setting, no path.
#[tokio::test]
async fn a_call_travels_with_template_content_and_without_file_settings() {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::datasource::source_as_provider;
    use datafusion::logical_expr::LogicalPlan;
    use datafusion_proto::bytes::{
        logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
    };
    use datafusion_prs::RewardMode;
    use datafusion_prs::SampleCall;
    use datafusion_prs::SampleTable;

    let data = tempfile::tempdir().unwrap();
    let source = prompt_dir(data.path()).await;
    let files = tempfile::tempdir().unwrap();
    let (reward_file, prompt_file) = (
        files.path().join("reward.txt").display().to_string(),
        files.path().join("prompt.txt").display().to_string(),
    );
    let reward_text = "CLIENT-REWARD-TEMPLATE {prompt} => {response}";
    let prompt_text = "CLIENT-PROMPT-TEMPLATE {prompt}";
    std::fs::write(&reward_file, reward_text).unwrap();
    std::fs::write(&prompt_file, prompt_text).unwrap();
    let cfg = settings(
        "http://127.0.0.1:9",
        &[
            ("reward_template_file", reward_file.as_str()),
            ("prompt_template_file", prompt_file.as_str()),
            ("reward_input", "text"),
        ],
    );
    let ctx = datafusion_prs::session_context(cfg);
    let plan = ctx
        .sql(&format!("SELECT * FROM prs_sample('{source}', 2)"))
        .await
        .unwrap()
        .into_optimized_plan()
        .unwrap();
    let codec = prs::cluster::logical_codec();
    let bytes = logical_plan_to_bytes_with_extension_codec(&plan, codec.as_ref()).unwrap();
    let sent = String::from_utf8_lossy(&bytes);
    assert!(!sent.contains(files.path().to_str().unwrap()), "{sent}");
    assert!(!sent.contains("_template_file"), "{sent}");
    assert!(sent.contains("CLIENT-REWARD-TEMPLATE"), "{sent}");

    let server = SessionContext::new_with_config(prs::cluster::server_config());
    let back =
        logical_plan_from_bytes_with_extension_codec(&bytes, &server.task_ctx(), codec.as_ref())
            .unwrap();
    let mut calls: Vec<SampleCall> = vec![];
    back.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if let Some(t) = source_as_provider(&scan.source)?.downcast_ref::<SampleTable>() {
                calls.push(t.call().clone());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .unwrap();
    let [call] = &calls[..] else {
        panic!("one sampling call in {back}")
    };
    assert_eq!(call.templates.reward, reward_text);
    assert_eq!(call.templates.prompt, prompt_text);
    assert_eq!(call.templates.reward_input, RewardMode::Text);
    assert!(call.cfg.reward_template_file.is_empty());
    assert!(call.cfg.prompt_template_file.is_empty());
}

/// `reward()` and `reward_input()` run on the executors with the client's session settings,
/// which Ballista ships with every query: a file setting among them must not make an executor
/// read its own file and send it to the client (in an error or a result) or to a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reward_on_the_cluster_never_reads_a_file_the_client_names() {
    let (url, fake, source, _data) = fixture(Mode::Normal).await;
    let world = executor_world();
    let cluster = Cluster::start_in(1, "", Some(world.path()));
    let mut leaks = vec![];
    for extra in [
        [
            ("reward_chat_template_file", "secret.jinja"),
            ("reward_input", "chat"),
        ],
        [
            ("reward_template_file", "secret.txt"),
            ("reward_input", "text"),
        ],
    ] {
        let ctx = cluster_ctx(&cluster, settings(&url, &extra));
        // a column argument: evaluated on the executors, never folded on the client
        for function in ["reward", "reward_input"] {
            let sql = format!("SELECT {function}(prompt, 'an answer') AS r FROM '{source}'");
            fake.log.lock().unwrap().clear();
            let outcome = match collect(&ctx, &sql).await {
                Ok(batches) => table(&batches),
                Err(e) => e.to_string(),
            };
            if outcome.contains(EXECUTOR_SECRET) {
                leaks.push(format!("{extra:?} {function}(): to the client: {outcome}"));
            }
            // ... and says why, rather than failing on whatever the file held
            assert!(
                outcome.contains("a cluster executor reads no file a query names"),
                "{extra:?} {function}(): {outcome}"
            );
            let sent = everything_sent(&fake);
            if sent.contains(EXECUTOR_SECRET) {
                leaks.push(format!("{extra:?} {function}(): to the server: {sent}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "an executor read a file the client named:\n{}",
        leaks.join("\n")
    );
}
