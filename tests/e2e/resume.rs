//! Durable resume and single-flight: re-runs serve finished prompts from the checkpoint with
//! zero requests, torn files are redone, new settings never reuse old results, a killed CLI
//! loses at most the prompts in flight, and a call referenced twice samples once.

use std::path::Path;
use std::process::Command;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;

use crate::common::*;

fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out
}

fn generation_requests(f: &Fake) -> usize {
    requests(f, "/chat/completions").len()
}

fn clear(f: &Fake) {
    f.log.lock().unwrap().clear();
}

const SAMPLE: &str = "SELECT * FROM prs_sample('p', 4) ORDER BY prompt_id, sample_index";

fn table(b: &RecordBatch) -> String {
    pretty_format_batches(std::slice::from_ref(b))
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn rerun_serves_finished_prompts_with_zero_requests() {
    let (url, fake) = start(Mode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().to_str().unwrap();
    let first = rows(
        &context(&url, &url, &[("checkpoint_dir", ck)]).await,
        SAMPLE,
    )
    .await;
    assert_eq!(parquet_files(dir.path()).len(), 2, "one file per prompt");
    assert!(generation_requests(&fake) > 0);

    clear(&fake);
    let again = rows(
        &context(&url, &url, &[("checkpoint_dir", ck)]).await,
        SAMPLE,
    )
    .await;
    assert_eq!(table(&first), table(&again));
    assert!(
        fake.log.lock().unwrap().is_empty(),
        "no request at all, not even preflight"
    );

    // a torn file is ignored and only its prompt is sampled again
    let files = parquet_files(dir.path());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&files[0])
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
    drop(f);
    clear(&fake);
    let repaired = rows(
        &context(&url, &url, &[("checkpoint_dir", ck)]).await,
        SAMPLE,
    )
    .await;
    assert_eq!(table(&first), table(&repaired));
    assert_eq!(
        generation_requests(&fake),
        3,
        "layer 0, feedback and layer 1 of one prompt"
    );

    // a file holding another prompt's rows (copied over) is detected by its key
    std::fs::copy(&files[1], &files[0]).unwrap();
    clear(&fake);
    let again = rows(
        &context(&url, &url, &[("checkpoint_dir", ck)]).await,
        SAMPLE,
    )
    .await;
    assert_eq!(table(&first), table(&again));
    assert_eq!(generation_requests(&fake), 3);

    // a setting that changes outputs changes the fingerprint: nothing stale is served
    clear(&fake);
    let other = rows(
        &context(
            &url,
            &url,
            &[("checkpoint_dir", ck), ("temperature", "0.3")],
        )
        .await,
        SAMPLE,
    )
    .await;
    assert_eq!(other.num_rows(), 8);
    assert_eq!(generation_requests(&fake), 6);
    let dirs = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(dirs, 2, "one directory per configuration");
    // ... while a setting that does not (concurrency) reuses the checkpoint
    clear(&fake);
    rows(
        &context(
            &url,
            &url,
            &[("checkpoint_dir", ck), ("prompt_concurrency", "1")],
        )
        .await,
        SAMPLE,
    )
    .await;
    assert_eq!(generation_requests(&fake), 0);
}

#[tokio::test]
async fn prompts_with_failures_are_not_kept() {
    let (good, _) = start(Mode::Normal).await;
    let (short, _) = start(Mode::ShortScores).await;
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().to_str().unwrap();
    let ctx = context(
        &good,
        &short,
        &[
            ("checkpoint_dir", ck),
            ("retry_attempts", "1"),
            ("preflight", "false"),
        ],
    )
    .await;
    let b = rows(&ctx, SAMPLE).await;
    assert_eq!(b.num_rows(), 8);
    assert!(parquet_files(dir.path()).is_empty());
}

#[tokio::test]
async fn unwritable_checkpoint_dir_is_a_clear_error() {
    let (url, fake) = start(Mode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let ck = file.join("checkpoints");
    let ctx = context(&url, &url, &[("checkpoint_dir", ck.to_str().unwrap())]).await;
    let e = query_error(&ctx, SAMPLE).await;
    assert!(
        e.contains("prs.checkpoint_dir") && e.contains("cannot create the directory"),
        "{e}"
    );
    assert!(fake.log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_call_referenced_twice_samples_once() {
    let (url, fake) = start(Mode::Normal).await;
    let ctx = context(&url, &url, &[("preflight", "false")]).await;
    rows(&ctx, "SELECT count(*) FROM prs_sample('p', 4)").await;
    let once = generation_requests(&fake);
    assert_eq!(once, 6);

    for sql in [
        "SELECT count(*) FROM prs_sample('p', 4) a JOIN prs_sample('p', 4) b \
         ON a.prompt_id = b.prompt_id AND a.sample_index = b.sample_index AND a.response = b.response",
        "WITH s AS (SELECT * FROM prs_sample('p', 4)) \
         SELECT count(*) FROM s a JOIN s b ON a.prompt_id = b.prompt_id AND a.sample_index = b.sample_index AND a.reward = b.reward",
        "SELECT count(*) FROM (SELECT * FROM prs_sample('p', 4) UNION ALL SELECT * FROM prs_sample('p', 4))",
    ] {
        clear(&fake);
        let b = rows(&ctx, sql).await;
        let n = b.column(0).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap().value(0);
        assert!(n == 8 || n == 16, "{sql}: {n}");
        assert_eq!(generation_requests(&fake), once, "{sql}");
    }
    // a different call is not shared, nor one that differs only in what becomes of its rows
    for other in [
        "seed=5",
        "on_error=fail",
        "max_requests=1000",
        "retry_attempts=2",
    ] {
        clear(&fake);
        let sql = format!("SELECT count(*) FROM prs_sample('p', 4) a JOIN prs_sample('p', 4, '{other}') b ON a.prompt_id = b.prompt_id");
        rows(&ctx, &sql).await;
        assert_eq!(generation_requests(&fake), 2 * once, "{other}");
    }
}

/// `n` prompts ("Prompt number i", ids 1..=n) in `work/name`.
async fn numbered_prompts(work: &Path, name: &str, n: usize) -> std::path::PathBuf {
    let path = work.join(name);
    SessionContext::new()
        .sql(&format!(
            "COPY (SELECT value AS id, 'Prompt number ' || CAST(value AS VARCHAR) AS prompt FROM generate_series(1, {n})) TO '{}'",
            path.display()
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    path
}

/// The CLI writing PRS n = 4 over `prompts` to `out` against the fake at `url`, with
/// `checkpoint_dir = ck` and the `--set`s in `sets`.
fn prs_job(
    work: &Path,
    url: &str,
    prompts: &Path,
    out: &str,
    ck: &Path,
    sets: &[String],
) -> Command {
    let sql = format!(
        "COPY (SELECT * FROM prs_sample('{}', 4)) TO '{out}'",
        prompts.display()
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prs"));
    cmd.current_dir(work)
        .args([
            "sql",
            "--policy-url",
            &format!("{url}/v1"),
            "--reward-url",
            url,
        ])
        .args(["--set", &format!("checkpoint_dir={}", ck.display())]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    cmd.arg(sql)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// The rows of `work/a` and `work/b` (lineage, texts, rewards, seeds), which must be equal and
/// number `expected`.
async fn assert_same_rows(work: &Path, a: &str, b: &str, expected: usize) {
    let ctx = SessionContext::new().enable_url_table();
    let q = |f: &str| {
        format!(
            "SELECT prompt_id, sample_index, layer, parent_index, response, reward, is_best, seed, feedback FROM '{}' ORDER BY prompt_id, sample_index",
            work.join(f).display()
        )
    };
    let a = rows(&ctx, &q(a)).await;
    assert_eq!(a.num_rows(), expected);
    assert_eq!(table(&a), table(&rows(&ctx, &q(b)).await));
}

/// The CLI killed with SIGKILL at several points, then re-run to the end: the output equals an
/// uninterrupted run's, and prompts finished before a kill are never requested again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_rerun_loses_nothing_finished() {
    let (url, fake) = start(Mode::Slow).await;
    let work = tempfile::tempdir().unwrap();
    let prompts = numbered_prompts(work.path(), "many.parquet", 40).await;
    let ck = work.path().join("ck");
    let sets = ["prompt_concurrency=4".to_string()];
    let run = |out: &str, ck: &Path| prs_job(work.path(), &url, &prompts, out, ck, &sets);
    let finished_prompts = |ck: &Path| -> Vec<String> {
        if !ck.exists() {
            return vec![];
        }
        parquet_files(ck)
            .into_iter()
            .map(|f| {
                let bytes = std::fs::read(f).unwrap();
                let text = String::from_utf8_lossy(&bytes).to_string();
                // the prompt text is stored plainly in the file
                let i = text.find("Prompt number ").unwrap();
                let tail: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == ' ')
                    .collect();
                tail.trim_end().to_string()
            })
            .collect()
    };
    for kill_after_ms in [300u64, 500, 700] {
        let mut child = run("out.parquet", &ck).spawn().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(kill_after_ms)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let done = finished_prompts(&ck);
        clear(&fake);
        // the next run (killed again or not) never asks for a finished prompt
        let mut next = run("out.parquet", &ck).spawn().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        next.kill().unwrap();
        next.wait().unwrap();
        for r in requests(&fake, "/chat/completions") {
            let t = user_text(&r.body);
            for p in &done {
                assert!(
                    !t.contains(&format!("{p}\n")) && !t.ends_with(p.as_str()),
                    "{p} was finished but requested again"
                );
            }
        }
    }
    let status = run("out.parquet", &ck).status().unwrap();
    assert!(status.success());
    let status = run("clean.parquet", &work.path().join("ck-clean"))
        .status()
        .unwrap();
    assert!(status.success());
    assert_same_rows(work.path(), "out.parquet", "clean.parquet", 160).await;
}

/// The key of a policy request as the fake saw it: what was asked, how many, which seed.
fn policy_request_keys(f: &Fake) -> Vec<String> {
    requests(f, "/chat/completions")
        .iter()
        .map(|r| format!("{}|{}|{}", user_text(&r.body), r.body["n"], r.body["seed"]))
        .collect()
}

/// With the answers journal, a SIGKILL loses only the requests in flight: a re-run sends again
/// at most as many policy requests as could be in flight at the kill (here 4), never the layers
/// and feedback the killed run had been answered, and the final output equals an uninterrupted
/// run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_repeats_only_the_requests_in_flight() {
    let (url, fake) = start(Mode::Slow).await;
    let work = tempfile::tempdir().unwrap();
    let prompts = numbered_prompts(work.path(), "p.parquet", 24).await;
    const IN_FLIGHT: usize = 4;
    // at most 4 sequences (so at most 4 requests) in flight; 8 prompts at once
    let sets = [
        format!("max_in_flight={IN_FLIGHT}"),
        "prompt_concurrency=8".to_string(),
    ];
    let run = |out: &str, ck: &Path| prs_job(work.path(), &url, &prompts, out, ck, &sets);
    let ck = work.path().join("ck");
    let mut asked_before: std::collections::HashSet<String> = Default::default();
    let mut repeated = 0;
    let kills = [400u64, 700, 1000];
    for kill_after_ms in kills {
        let mut child = run("out.parquet", &ck).spawn().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(kill_after_ms)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let asked = policy_request_keys(&fake);
        repeated += asked.iter().filter(|k| asked_before.contains(*k)).count();
        asked_before.extend(asked);
        clear(&fake);
    }
    let status = run("out.parquet", &ck).status().unwrap();
    assert!(status.success());
    let asked = policy_request_keys(&fake);
    repeated += asked.iter().filter(|k| asked_before.contains(*k)).count();
    asked_before.extend(asked);
    let total = asked_before.len();
    assert!(
        repeated <= IN_FLIGHT * kills.len(),
        "{repeated} policy requests sent again after {} kills ({} distinct asked)",
        kills.len(),
        total
    );
    // every request of the job was asked: 24 prompts x (2 layers + 1 feedback)
    assert_eq!(total, 72);

    let status = run("clean.parquet", &work.path().join("ck-clean"))
        .status()
        .unwrap();
    assert!(status.success());
    assert_same_rows(work.path(), "out.parquet", "clean.parquet", 96).await;
}

/// A prompt whose every policy answer comes from the journal (its rewards failed the first
/// time) is sampled without a policy request on the re-run: it still gets its model columns,
/// equals an uninterrupted run's rows, and is kept, so a third run sends nothing at all.
#[tokio::test]
async fn a_prompt_answered_from_the_journal_is_finished_and_kept() {
    const RANDOM: &str = "SELECT * FROM random_sample('p', 4) ORDER BY prompt_id, sample_index";
    let (policy, policy_fake) = start(Mode::Normal).await;
    let (down, _) = start(Mode::Down).await;
    let (reward, reward_fake) = start(Mode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let clean_ck = dir.path().join("clean");
    let settings = |ck: &Path| {
        vec![
            ("checkpoint_dir", ck.to_str().unwrap().to_string()),
            ("retry_attempts", "1".to_string()),
            ("preflight", "false".to_string()),
            ("policy_model", "m".to_string()),
            ("reward_model", "rm".to_string()),
        ]
    };
    let run = |reward: String, ck: std::path::PathBuf| {
        let policy = policy.clone();
        async move {
            let s = settings(&ck);
            let s: Vec<(&str, &str)> = s.iter().map(|(k, v)| (*k, v.as_str())).collect();
            rows(&context(&policy, &reward, &s).await, RANDOM).await
        }
    };
    // the rewards fail: every policy answer is in the journal, no prompt is kept
    let failed = run(down.clone(), ck.clone()).await;
    assert!(strings(&failed, "error").iter().all(|e| e.is_some()));
    assert!(parquet_files(&ck).is_empty());

    clear(&policy_fake);
    let resumed = run(reward.clone(), ck.clone()).await;
    assert_eq!(
        generation_requests(&policy_fake),
        0,
        "answers from the journal"
    );
    assert_eq!(parquet_files(&ck).len(), 2, "both prompts kept");
    let clean = run(reward.clone(), clean_ck).await;
    assert_eq!(table(&resumed), table(&clean));
    for column in ["policy_model", "reward_model"] {
        assert!(
            strings(&resumed, column).iter().all(|m| m.is_some()),
            "{column} of a resumed prompt"
        );
    }

    clear(&policy_fake);
    clear(&reward_fake);
    let third = run(reward.clone(), ck.clone()).await;
    assert_eq!(table(&third), table(&clean));
    assert!(policy_fake.log.lock().unwrap().is_empty());
    assert!(reward_fake.log.lock().unwrap().is_empty());
}
