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
            while started.elapsed() < whole.mul_f64(share) {
                if job.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
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
