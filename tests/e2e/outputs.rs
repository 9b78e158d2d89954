//! `COPY ... TO` run by the CLI writes all or nothing: a failed run (preflight, an endpoint
//! error with `on_error = fail`, a SIGKILL) leaves the previous output byte for byte, and no
//! temporary is left where a glob over the target's directory would read it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::cli::{prs, prs_command, root, text, workdir};

/// `prs sql --sim -q --summary-json SUMMARY ARGS` in `dir`, which must succeed; its summary.
fn run_with_summary(dir: &Path, summary: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec![
        "sql",
        "--sim",
        "-q",
        "--summary-json",
        summary.to_str().unwrap(),
    ];
    all.extend(args);
    let out = prs(dir, &all, &[]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&std::fs::read(summary).unwrap()).unwrap()
}

/// Every file below `path` with its size and a hash of its bytes, in order.
fn snapshot(path: &Path) -> Vec<(PathBuf, usize, u64)> {
    let mut out = Vec::new();
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            out.extend(snapshot(&e));
        }
    } else {
        use std::hash::{Hash, Hasher};
        let bytes = std::fs::read(path).unwrap();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        out.push((path.to_path_buf(), bytes.len(), h.finish()));
    }
    out
}

/// Names in `dir` that are not `keep`.
fn others(dir: &Path, keep: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

/// `prs sim` on a free port with `args`, killed on drop.
struct Sim {
    child: std::process::Child,
    port: u16,
}

impl Sim {
    fn start(dir: &Path, args: &[&str]) -> Sim {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let port_text = port.to_string();
        let mut all = vec!["sim", "--port", &port_text];
        all.extend(args);
        let child = prs_command(dir, &all, &[])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sim did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Sim { child, port }
    }

    fn policy_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn reward_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const DOWN: &[(&str, &str)] = &[
    ("PRS_POLICY_URL", "http://127.0.0.1:1/v1"),
    ("PRS_REWARD_URL", "http://127.0.0.1:1"),
];

#[test]
fn a_failed_run_keeps_the_previous_file_and_directory() {
    let dir = workdir();
    let sim = Sim::start(dir.path(), &[]);
    for target in ["out/daily.parquet", "out/daily/"] {
        let copy = format!(
            "COPY (SELECT * FROM random_sample('data/prompts.parquet', 2)) TO '{target}' STORED AS PARQUET"
        );
        let first = prs(dir.path(), &["sql", "--sim", "-q", &copy], &[]);
        assert!(first.status.success(), "{}", text(&first));
        let path = dir.path().join(target.trim_end_matches('/'));
        let before = snapshot(&path);
        assert!(!before.is_empty());

        // preflight fails: the endpoints are down
        let failed = prs(dir.path(), &["sql", "-q", &copy], DOWN);
        assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
        assert_eq!(
            snapshot(&path),
            before,
            "{target} after a preflight failure"
        );

        // an endpoint error mid-run with on_error = fail: the policy answers, the reward is down
        let failed = prs(
            dir.path(),
            &[
                "sql",
                "-q",
                "--set",
                "preflight=false",
                "--set",
                "on_error=fail",
                "--set",
                "retry_attempts=1",
                &copy,
            ],
            &[
                ("PRS_POLICY_URL", &sim.policy_url()),
                ("PRS_POLICY_MODEL", "prs-sim-policy"),
                ("PRS_REWARD_URL", "http://127.0.0.1:1"),
            ],
        );
        assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
        assert!(
            text(&failed).contains("reward endpoint"),
            "{}",
            text(&failed)
        );
        assert_eq!(snapshot(&path), before, "{target} after a failure mid-run");
        assert_eq!(
            others(&dir.path().join("out"), &["daily.parquet", "daily"]),
            Vec::<String>::new()
        );

        // a good run replaces it
        let second = prs(
            dir.path(),
            &["sql", "--sim", "-q", "--set", "seed=9", &copy],
            &[],
        );
        assert!(second.status.success(), "{}", text(&second));
        assert_ne!(snapshot(&path), before, "{target} replaced by a good run");
    }
}

#[test]
fn a_killed_run_keeps_the_previous_file_and_directory_and_the_next_run_cleans_up() {
    let dir = workdir();
    // a slow server: an engine model where each step takes 20 ms
    let sim = Sim::start(dir.path(), &["--engine", "--step-ms", "20"]);
    let (policy, reward) = (sim.policy_url(), sim.reward_url());
    let env = [
        ("PRS_POLICY_URL", policy.as_str()),
        ("PRS_REWARD_URL", reward.as_str()),
        ("PRS_POLICY_MODEL", "prs-sim-policy"),
    ];
    for target in ["out/daily.parquet", "out/daily/"] {
        let copy = format!(
            "COPY (SELECT * FROM prs_sample('data/prompts.parquet', 8)) TO '{target}' \
             STORED AS PARQUET"
        );
        let run = |extra: &[&str]| {
            let mut args = vec!["sql", "-q"];
            args.extend(extra);
            args.push(&copy);
            prs_command(dir.path(), &args, &env)
        };
        let started = Instant::now();
        let first = run(&[]).output().unwrap();
        let whole = started.elapsed();
        assert!(first.status.success(), "{}", text(&first));
        let path = dir.path().join(target.trim_end_matches('/'));
        let before = snapshot(&path);

        // killed at points through a run that would write other rows (another seed)
        for share in [0.4, 0.8] {
            let mut job = run(&["--set", "seed=5"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let started = Instant::now();
            let mut finished = false;
            while started.elapsed() < whole.mul_f64(share) {
                if job.try_wait().unwrap().is_some() {
                    finished = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if finished {
                // a warm run can beat the first one: it ended before its kill and replaced the
                // output, as it should; later points would find that output, not the first
                break;
            }
            job.kill().unwrap(); // SIGKILL
            job.wait().unwrap();
            assert_eq!(
                snapshot(&path),
                before,
                "{target} killed at {share} of the run"
            );
        }
        // the next run (to completion) replaces it and removes the killed runs' temporaries
        let done = run(&["--set", "seed=5"]).output().unwrap();
        assert!(done.status.success(), "{}", text(&done));
        assert_ne!(snapshot(&path), before);
        let keep = ["daily.parquet", "daily"];
        assert_eq!(others(&dir.path().join("out"), &keep), Vec::<String>::new());
    }
}

#[test]
fn the_summary_is_replaced_whole_after_the_data() {
    let dir = workdir();
    let summary = dir.path().join("summary.json");
    std::fs::write(&summary, b"{\"old\": true}").unwrap();
    let copy = "COPY (SELECT * FROM random_sample('data/prompts.parquet', 1)) TO 'out/s.parquet'";
    let json = run_with_summary(dir.path(), &summary, &[copy]);
    assert_eq!(json["candidates"], 24);
    assert_eq!(
        others(dir.path(), &["data", "out", "summary.json"]),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_daily_refresh_samples_only_the_new_prompts() {
    let dir = workdir();
    let job = root().join("queries/daily_refresh.sql");
    let job = job.to_str().unwrap();
    let summary = dir.path().join("summary.json");
    let run = || run_with_summary(dir.path(), &summary, &["-f", job]);
    let day1 = run();
    assert_eq!(day1["prompts"], 24);
    assert_eq!(day1["prompts_from_checkpoint"], 0);
    let sft = dir.path().join("out/daily/sft.parquet");
    let day1_sft = snapshot(&sft);

    // day 2: two new prompts land next to yesterday's
    let ctx = datafusion::prelude::SessionContext::new();
    let new = dir.path().join("data/day2.parquet");
    let sql = format!(
        "COPY (SELECT CAST(column1 AS BIGINT) AS id, column2 AS prompt, column3 AS preference, \
         column4 AS topic FROM (VALUES \
         (101, 'Name three uses of a paperclip.', 'I like playful answers.', 'misc'), \
         (102, 'Why is the sea salty?', 'I want one paragraph.', 'science'))) TO '{}'",
        new.display()
    );
    ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let day2 = run();
    assert_eq!(day2["prompts"], 26);
    assert_eq!(day2["prompts_from_checkpoint"], 24);
    // PRS n=8 is a layer of 4, feedback and a layer of 4: 3 requests per new prompt
    assert_eq!(day2["policy_requests"], 2 * 3);
    assert_ne!(snapshot(&sft), day1_sft);
    let count = ctx
        .read_parquet(
            sft.to_str().unwrap(),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .unwrap()
        .count()
        .await
        .unwrap();
    assert_eq!(count, 26);
    // nothing new: nothing requested
    let day3 = run();
    assert_eq!(day3["policy_requests"], 0);
    assert_eq!(day3["prompts_from_checkpoint"], 26);
}

/// The values of column `col` of the Parquet files `path` (a file or a directory) holds,
/// sorted, read as a user reads them.
async fn values(path: &Path, col: &str) -> Vec<i64> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::prelude::{col as column, ParquetReadOptions, SessionContext};
    let mut path = path.display().to_string();
    if std::path::Path::new(&path).is_dir() {
        path.push('/');
    }
    let batches = SessionContext::new()
        .read_parquet(path, ParquetReadOptions::default())
        .await
        .unwrap()
        .select(vec![column(col)])
        .unwrap()
        .sort_by(vec![column(col)])
        .unwrap()
        .collect()
        .await
        .unwrap();
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

/// `prs sql -q SQL` in `dir`.
fn run_sql(dir: &Path, sql: &str) -> std::process::Output {
    prs(dir, &["sql", "-q", sql], &[])
}

/// A directory target keeps what it holds that prs did not write (a README, a checkpoint
/// directory) byte for byte, and each refresh replaces the files the previous one wrote.
#[tokio::test]
async fn a_directory_target_keeps_what_prs_did_not_write() {
    let dir = workdir();
    let target = dir.path().join("out/daily");
    std::fs::create_dir_all(target.join("checkpoint/journal")).unwrap();
    std::fs::write(target.join("README.md"), b"# the daily job's output\n").unwrap();
    std::fs::write(target.join("checkpoint/journal/000001.log"), b"answers").unwrap();
    std::fs::write(target.join("checkpoint/state"), b"finished prompts").unwrap();
    let kept = |d: &Path| {
        let mut s = snapshot(&d.join("README.md"));
        s.extend(snapshot(&d.join("checkpoint")));
        s
    };
    let before = kept(&target);
    for (from, to) in [(1, 3), (10, 12), (20, 21)] {
        let copy = format!(
            "COPY (SELECT value AS v FROM generate_series({from}, {to})) TO 'out/daily/' \
             STORED AS PARQUET"
        );
        let out = run_sql(dir.path(), &copy);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(kept(&target), before, "after writing {from}..={to}");
        // exactly the new rows: the previous run's files are gone
        assert_eq!(
            values(&target, "v").await,
            (from..=to).collect::<Vec<i64>>()
        );
    }
    assert_eq!(
        others(&dir.path().join("out"), &["daily"]),
        Vec::<String>::new()
    );
}

/// PARTITIONED BY: a partition the run writes replaces the one of the same name whole; a
/// partition it does not write stays as it was.
#[tokio::test]
async fn a_partitioned_rewrite_keeps_the_partitions_it_did_not_write() {
    let dir = workdir();
    let copy = |rows: &str| {
        format!(
            "COPY (SELECT CAST(column1 AS VARCHAR) AS day, CAST(column2 AS BIGINT) AS v \
             FROM (VALUES {rows})) TO 'out/parts/' STORED AS PARQUET PARTITIONED BY (day)"
        )
    };
    let out = run_sql(dir.path(), &copy("('mon', 1), ('mon', 2), ('tue', 3)"));
    assert!(out.status.success(), "{}", text(&out));
    let parts = dir.path().join("out/parts");
    let tuesday = snapshot(&parts.join("day=tue"));
    assert!(!tuesday.is_empty());

    // Monday again, with other rows; Tuesday not at all
    let out = run_sql(dir.path(), &copy("('mon', 7)"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(snapshot(&parts.join("day=tue")), tuesday, "tue untouched");
    assert_eq!(values(&parts.join("day=mon"), "v").await, vec![7]);
    assert_eq!(values(&parts, "v").await, vec![3, 7]);
}

/// A COPY that writes one file over a directory of that name is refused before it runs, and
/// the directory stays; so is one that writes a directory over a file.
#[test]
fn a_file_target_over_a_directory_is_an_error_and_the_directory_stays() {
    let dir = workdir();
    let target = dir.path().join("out/daily.parquet");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("part-0.parquet"), b"yesterday").unwrap();
    let before = snapshot(&target);
    let out = run_sql(
        dir.path(),
        "COPY (SELECT 1 AS v) TO 'out/daily.parquet' STORED AS PARQUET",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&target.display().to_string()) && err.contains("is a directory"),
        "{err}"
    );
    assert_eq!(snapshot(&target), before);

    let file = dir.path().join("out/flat");
    std::fs::write(&file, b"a file").unwrap();
    let out = run_sql(
        dir.path(),
        "COPY (SELECT 1 AS v) TO 'out/flat/' STORED AS PARQUET",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is a file"), "{}", text(&out));
    assert_eq!(std::fs::read(&file).unwrap(), b"a file");
    assert_eq!(
        others(&dir.path().join("out"), &["daily.parquet", "flat"]),
        Vec::<String>::new()
    );
}

/// Two runs writing the same target at once would delete each other's temporaries: the second
/// is refused at once, saying why, and the first finishes. A run writing another target in the
/// same directory is not held up, and neither touches the other's files.
#[test]
fn concurrent_runs_on_one_directory_keep_out_of_each_others_way() {
    let dir = workdir();
    // a slow server: an engine model where each step takes 20 ms
    let sim = Sim::start(dir.path(), &["--engine", "--step-ms", "20"]);
    let (policy, reward) = (sim.policy_url(), sim.reward_url());
    let env = [
        ("PRS_POLICY_URL", policy.as_str()),
        ("PRS_REWARD_URL", reward.as_str()),
        ("PRS_POLICY_MODEL", "prs-sim-policy"),
    ];
    let copy = "COPY (SELECT * FROM prs_sample('data/prompts.parquet', 8)) TO 'out/daily/' \
                STORED AS PARQUET";
    let mut first = prs_command(dir.path(), &["sql", "-q", copy], &env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // under way: it holds its target, or writes its temporary
    let out = dir.path().join("out");
    let started = Instant::now();
    while !out.exists() || others(&out, &[]).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the first run never started writing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = prs(dir.path(), &["sql", "-q", copy], &env);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        text(&second).contains("another prs run is writing") && text(&second).contains("out/daily"),
        "{}",
        text(&second)
    );
    let other = run_sql(
        dir.path(),
        "COPY (SELECT 1 AS v) TO 'out/other.parquet' STORED AS PARQUET",
    );
    assert!(other.status.success(), "{}", text(&other));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the test needs a slower first run"
    );
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", text(&first));
    assert!(!snapshot(&dir.path().join("out/daily")).is_empty());
    assert_eq!(
        others(&dir.path().join("out"), &["daily", "other.parquet"]),
        Vec::<String>::new()
    );
}
