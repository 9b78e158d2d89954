//! The `prs` binary as a user runs it: the README quickstart, settings from the environment
//! and flags, bad input, and the standalone simulator.

use std::process::Command;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;

use crate::common::cli::{prs, prs_command, root, text, workdir};

/// EXPLAIN ANALYZE prints whole plan lines (never cut like wide result cells), with the
/// sampler's request and token counters.
#[test]
fn explain_analyze_prints_whole_plans_with_counters() {
    let dir = workdir();
    let out = prs(
        dir.path(),
        &[
            "sql",
            "--sim",
            "EXPLAIN ANALYZE SELECT count(*) FROM random_sample('data/prompts.parquet', 2)",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("SampleExec:"))
        .unwrap_or_else(|| panic!("no SampleExec line in {stdout}"));
    assert!(!line.contains('…'), "{line}");
    for counter in [
        "output_rows=48",
        "prompts=24",
        "policy_requests=24",
        "reward_texts=48",
        "retries=0",
        "failed_candidates=0",
        "completion_tokens=",
        "policy_wait=",
    ] {
        assert!(line.contains(counter), "{counter} missing from {line}");
    }
    assert!(stdout.starts_with("## Plan with Metrics\n"), "{stdout}");
}

#[tokio::test]
async fn quickstart_writes_candidates() {
    let dir = workdir();
    let q = root().join("queries/quickstart.sql");
    let out = prs(
        dir.path(),
        &["sql", "--sim", "-f", q.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let file = dir.path().join("out/prs_candidates.parquet");
    assert!(file.exists());
    let ctx = SessionContext::new().enable_url_table();
    let sql = format!(
        "SELECT count(*), count(DISTINCT prompt_id), sum(CAST(is_best AS BIGINT)), count(reward), count(error) FROM '{}'",
        file.display()
    );
    let b = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let v: Vec<i64> = (0..5)
        .map(|i| b[0].column(i).as_primitive::<Int64Type>().value(0))
        .collect();
    assert_eq!(v, vec![24 * 8, 24, 24, 24 * 8, 0]);
    // the summary table is printed
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("best_reward") && stdout.contains("24 row(s)"),
        "{stdout}"
    );
}

#[test]
fn bad_input_fails_cleanly() {
    let dir = workdir();
    let out = prs(
        dir.path(),
        &[
            "sql",
            "--sim",
            "COPY (SELECT * FROM prs_sample('data/missing.parquet', 4)) TO 'out/x.parquet'",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Error: ")
            && err.contains("input data/missing.parquet: file or directory not found"),
        "{err}"
    );
    assert!(!dir.path().join("out").exists(), "nothing written");

    // no SQL at all
    let out = prs(dir.path(), &["sql"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no SQL given"));

    // no policy URL: names the setting, env var and flag
    let out = prs(
        dir.path(),
        &["sql", "SELECT * FROM prs_sample('data/prompts.parquet', 2)"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(
        t.contains("prs.policy_url") && t.contains("PRS_POLICY_URL") && t.contains("--policy-url"),
        "{t}"
    );

    // which statement failed
    let out = prs(
        dir.path(),
        &[
            "sql",
            "--sim",
            "SELECT 1; SELECT * FROM prs_sample('data/prompts.parquet', 0)",
        ],
        &[],
    );
    assert!(text(&out).contains("statement 2 of 2: "), "{}", text(&out));
}

#[test]
fn settings_from_env_and_flags() {
    let dir = workdir();
    // PRS_MAX_N feeds prs.max_n
    let out = prs(
        dir.path(),
        &[
            "sql",
            "--sim",
            "SELECT count(*) FROM random_sample('data/prompts.parquet', 3)",
        ],
        &[("PRS_MAX_N", "2")],
    );
    assert!(
        text(&out).contains("n = 3 is above prs.max_n = 2"),
        "{}",
        text(&out)
    );
    // --set overrides the environment
    let out = prs(
        dir.path(),
        &[
            "sql",
            "--sim",
            "--set",
            "max_n=3",
            "SELECT count(*) AS c FROM random_sample('data/prompts.parquet', 3)",
        ],
        &[("PRS_MAX_N", "2")],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("| 72 |"));
    // unknown names and bad values are refused with the valid names
    let out = prs(
        dir.path(),
        &["sql", "--set", "temprature=1", "SELECT 1"],
        &[],
    );
    assert!(
        text(&out).contains("unknown setting \"temprature\""),
        "{}",
        text(&out)
    );
    let out = prs(
        dir.path(),
        &["sql", "SELECT 1"],
        &[("PRS_TEMPERATURE", "hot")],
    );
    assert!(text(&out).contains("PRS_TEMPERATURE"), "{}", text(&out));
    // SHOW ALL lists prs.* settings
    let out = prs(
        dir.path(),
        &["sql", "--max-width", "0", "SHOW ALL"],
        &[("PRS_POLICY_MODEL", "my-policy")],
    );
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("prs.policy_model") && s.contains("my-policy"),
        "{s}"
    );
    // `prs settings` documents every setting with its env name
    let out = prs(dir.path(), &["settings"], &[]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("prs.reward_protocol") && s.contains("PRS_REWARD_PROTOCOL"),
        "{s}"
    );
}

#[tokio::test]
async fn standalone_simulator_serves_both_apis() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_prs"))
        .args(["sim", "--port", &port.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut models = None;
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{base}/v1/models")).send().await {
            models = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let models = models.expect("simulator did not start");
    assert_eq!(models["data"][0]["id"], "prs-sim-policy");
    let body = serde_json::json!({"model": "prs-sim-policy", "messages": [{"role": "user", "content": "hello there world"}], "n": 3, "seed": 5});
    let a: serde_json::Value = http
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: serde_json::Value = http
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["choices"].as_array().unwrap().len(), 3);
    assert_eq!(a["choices"], b["choices"], "same seed, same text");
    let r: serde_json::Value = http
        .post(format!("{base}/get_reward"))
        .json(&serde_json::json!({"query": ["Human: hi\nAssistant: hello"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["rewards"][0].is_f64());
    let wrong = http
        .post(format!("{base}/v1/completions"))
        .json(&serde_json::json!({"model": "other", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 404);
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn readme_settings_table_is_current() {
    let readme = std::fs::read_to_string(root().join("docs/sql.md")).unwrap();
    let table = prs::cli::settings_markdown();
    assert!(
        readme.contains(&table),
        "docs/sql.md's settings table is stale: regenerate it with `cargo run -- settings --markdown`"
    );
    for key in datafusion_prs::PrsConfig::keys() {
        assert!(table.contains(&format!("`prs.{key}`")));
    }
}

#[test]
fn api_keys_never_leak() {
    let dir = workdir();
    let key = "sk-planted-secret-4f9a1c";
    let summary = dir.path().join("summary.json");
    let env = [
        ("PRS_POLICY_API_KEY", key),
        ("PRS_REWARD_API_KEY", key),
        ("PRS_LOG", "trace"),
    ];
    let scripts = [
        "EXPLAIN SELECT * FROM prs_sample('data/prompts.parquet', 2)",
        "SHOW ALL",
        "SELECT * FROM information_schema.df_settings",
        "SELECT * FROM prs_sample('data/prompts.parquet', 2)",
        "SELECT reward(prompt, 'x') FROM 'data/prompts.parquet'",
        "SELECT * FROM prs_sample('data/prompts.parquet', 2, 'policy_model=missing')",
        "SELECT * FROM prs_sample('data/missing.parquet', 2)",
    ];
    for sql in scripts {
        let out = prs(
            dir.path(),
            &[
                "sql",
                "--sim",
                "--max-width",
                "0",
                "--summary-json",
                summary.to_str().unwrap(),
                sql,
            ],
            &env,
        );
        let all = text(&out);
        assert!(!all.is_empty());
        assert!(!all.contains(key), "{sql} leaked the key:\n{all}");
        let json = std::fs::read_to_string(&summary).unwrap();
        assert!(!json.contains(key));
    }
    // the trace log did record requests (so the check above looked at real logs)
    let out = prs(
        dir.path(),
        &[
            "sql",
            "--sim",
            "SELECT count(*) FROM random_sample('data/prompts.parquet', 1)",
        ],
        &env,
    );
    assert!(text(&out).contains("TRACE"), "{}", text(&out));
}

#[test]
fn failed_share_sets_the_exit_code() {
    let dir = workdir();
    // every candidate fails: the reward protocol does not match what the URL serves
    let sql = "SELECT count(*) FROM random_sample('data/prompts.parquet', 1)";
    let base = [
        "sql",
        "--policy-url",
        "http://127.0.0.1:9/v1",
        "--reward-url",
        "http://127.0.0.1:9",
    ];
    let summary = dir.path().join("s.json");
    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        "--set",
        "preflight=false",
        "--set",
        "retry_attempts=1",
        "--summary-json",
        summary.to_str().unwrap(),
        sql,
    ]);
    let out = prs(dir.path(), &args, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("24 prompts")
            && t.contains("24 failed (100.0%)")
            && t.contains("policy_unreachable=24"),
        "{t}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["exit_code"], 3);
    // the Parquet footer told the job how many prompts to expect (progress and ETA)
    assert_eq!(json["expected_prompts"], 24);
    assert_eq!(json["failed_candidates"], 24);
    assert_eq!(json["errors"]["policy_unreachable"], 24);

    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        "--set",
        "preflight=false",
        "--set",
        "retry_attempts=1",
        "--set",
        "max_failed_share=1",
        sql,
    ]);
    assert_eq!(prs(dir.path(), &args, &[]).status.code(), Some(0));
}

#[test]
fn dry_run_counts_without_calling() {
    let dir = workdir();
    let q = root().join("queries/dpo_pairs.sql");
    // nothing listens on port 9: any request would fail the run
    let out = prs(
        dir.path(),
        &[
            "sql",
            "--dry-run",
            "--policy-url",
            "http://127.0.0.1:9/v1",
            "--reward-url",
            "http://127.0.0.1:9",
            "-f",
            q.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    // PRS n=16 over 24 prompts: widths 8/8 in one request each plus one feedback = 3 policy
    // requests, one reward request per candidate (conversations go to vLLM one each), at most
    // (16 + 1) x 1024 tokens per prompt
    assert!(
        s.contains("total: 1 sampling call(s), 24 prompts, 72 policy requests, 384 reward requests (384 texts scored), at most 417792 generated tokens"),
        "{s}"
    );
    assert!(!dir.path().join("out").exists(), "nothing written");

    // unique=true may ask for up to n extra samples per prompt: shown as an upper bound, and
    // their tokens are in the maximum
    let q = root().join("queries/dpo_pairs_filtered.sql");
    let out = prs(
        dir.path(),
        &["sql", "--dry-run", "-f", q.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("72 policy requests, 384 reward requests (384 texts scored), at most 811008 generated tokens (+ up to 384 extra samples for duplicates"),
        "{s}"
    );

    // no endpoint configured at all, and a cluster nobody runs: a cost estimate still plans,
    // here, and counts the same
    for extra in [&[][..], &["--cluster", "df://127.0.0.1:9"][..]] {
        let mut args = vec!["sql", "--dry-run", "-f", q.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = prs(dir.path(), &args, &[]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("total: 1 sampling call(s), 24 prompts"),
            "{extra:?}: {}",
            text(&out)
        );
    }
}

/// A reader that goes away early (`prs sql ... | head`) ends the output quietly, not in a panic.
#[test]
fn closed_stdout_is_not_a_crash() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_prs"))
        .args(["sql", "SELECT value FROM generate_series(1, 200000)"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before the table is written
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

/// `queries/dpo_pairs_filtered.sql`: with short answers (many cut at max_tokens) every pair has
/// distinct texts and a margin of at least 0.5, and the conversational file holds the same
/// pairs as role/content messages.
#[tokio::test]
async fn filtered_dpo_pairs_are_trainable_in_both_formats() {
    let dir = workdir();
    let q = root().join("queries/dpo_pairs_filtered.sql");
    let args = [
        "sql",
        "--sim",
        "--set",
        "max_tokens=40",
        "-f",
        q.to_str().unwrap(),
    ];
    let out = prs(dir.path(), &args, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let ctx = SessionContext::new().enable_url_table();
    let plain = dir.path().join("out/dpo_pairs_filtered.parquet");
    let chat = dir.path().join("out/dpo_pairs_conversational.parquet");
    let sql = format!(
        "SELECT count(*) AS pairs, \
                count(*) FILTER (WHERE regexp_replace(trim(chosen), '\\s+', ' ', 'g') = regexp_replace(trim(rejected), '\\s+', ' ', 'g')) AS copies, \
                count(*) FILTER (WHERE reward_margin < 0.5 OR reward_margin <> chosen_reward - rejected_reward) AS thin, \
                (SELECT count(*) FROM '{chat}' c JOIN '{plain}' p ON c.prompt_id = p.prompt_id \
                   WHERE c.chosen[1]['content'] = p.chosen AND c.rejected[1]['role'] = 'assistant' AND c.prompt[1]['content'] = p.prompt) AS matched \
         FROM '{plain}'",
        chat = chat.display(),
        plain = plain.display()
    );
    let b = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let v: Vec<i64> = (0..4)
        .map(|i| b[0].column(i).as_primitive::<Int64Type>().value(0))
        .collect();
    let pairs = v[0];
    assert!(pairs > 0 && pairs <= 24, "{v:?}");
    assert_eq!(
        v[1..],
        [0, 0, pairs],
        "copies, thin pairs, conversational rows matching"
    );
}

/// `prs sql < job.sql` and `prs sql -f -` read the script from standard input, as
/// datafusion-cli, duckdb and psql do.
#[test]
fn statements_come_from_standard_input() {
    use std::io::Write;
    let dir = workdir();
    let script = "SELECT count(*) AS n FROM random_sample('data/prompts.parquet', 2);\n\
                  SELECT 40 + 2 AS answer;\n";
    for args in [&["sql", "--sim"][..], &["sql", "--sim", "-f", "-"][..]] {
        let mut child = prs_command(dir.path(), args, &[])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("| 48 ") && stdout.contains("| 42 "),
            "{stdout}"
        );
    }
}

/// Text printed for a terminal shows control characters escaped: a prompt holding an OSC
/// sequence (retitles the terminal) or a CSI one (clears it) is shown as `\x1b]0;...`, in
/// result tables and error messages alike, while the data written to files keeps them.
#[tokio::test]
async fn control_characters_are_escaped_on_the_terminal_not_in_files() {
    let dir = workdir();
    let hostile = "'Hi' || chr(27) || ']0;evil' || chr(7) || chr(27) || '[2J' || chr(155) || 'x'";
    let make = format!(
        "COPY (SELECT CAST(1 AS BIGINT) AS id, {hostile} AS prompt) TO 'data/evil.parquet'"
    );
    let out = prs(dir.path(), &["sql", "-q", &make], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let raw = "Hi\u{1b}]0;evil\u{7}\u{1b}[2J\u{9b}x";
    let bad_bytes = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .chars()
            .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
            .collect::<Vec<char>>()
    };

    let out = prs(
        dir.path(),
        &[
            "sql",
            "--sim",
            "-q",
            "SELECT prompt, response FROM random_sample('data/evil.parquet', 1); \
             COPY (SELECT prompt FROM random_sample('data/evil.parquet', 1)) TO 'out/evil.parquet'",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(bad_bytes(&out.stdout), Vec::<char>::new(), "{}", text(&out));
    assert!(!out.stdout.contains(&0x1b), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r"Hi\x1b]0;evil\x07\x1b[2J\u{9b}x"),
        "{stdout}"
    );
    // the file keeps the text as it was
    let ctx = SessionContext::new().enable_url_table();
    let sql = format!(
        "SELECT prompt FROM '{}'",
        dir.path().join("out/evil.parquet").display()
    );
    let b = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let prompt = datafusion::arrow::compute::cast(
        b[0].column(0),
        &datafusion::arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    assert_eq!(prompt.as_string::<i32>().value(0), raw);

    // an error message quoting the text
    let out = prs(
        dir.path(),
        &["sql", "-q", &format!("SELECT * FROM '{raw}.parquet'")],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(bad_bytes(&out.stderr), Vec::<char>::new(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r"Hi\x1b]0;evil\x07\x1b[2J"),
        "{}",
        text(&out)
    );
}

/// Logs written to a pipe or a file carry no colour codes.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = workdir();
    let out = prs(
        dir.path(),
        &["sql", "--log", "debug", "SELECT 1 AS one"],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DEBUG"),
        "the run logged: {}",
        text(&out)
    );
    assert!(!out.stderr.contains(&0x1b), "{}", text(&out));
}

/// The DPO queries pair candidates of one prompt: prompts whose id is null (a null in the
/// input's id column) are told apart by their text, not dropped, and never merged into one
/// group that would pair one prompt's best with another's worst.
#[tokio::test]
async fn dpo_queries_keep_prompts_without_an_id_apart() {
    let dir = workdir();
    std::fs::remove_file(dir.path().join("data/prompts.parquet")).unwrap();
    let make = "COPY (SELECT CAST(column1 AS BIGINT) AS id, column2 AS prompt, \
                column3 AS preference FROM (VALUES \
                (NULL, 'Why is the sky blue?', 'I like short answers.'), \
                (NULL, 'Name three rivers of Africa.', 'I like lists.'), \
                (7, 'What makes bread rise?', 'I like detail.'))) \
                TO 'data/prompts.parquet' STORED AS PARQUET";
    let out = prs(dir.path(), &["sql", "-q", make], &[]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(
        dir.path().join("keep.sql"),
        "COPY candidates TO 'out/candidates.parquet' STORED AS PARQUET",
    )
    .unwrap();
    let ctx = SessionContext::new().enable_url_table();
    for (query, pairs) in [
        ("dpo_pairs.sql", "out/dpo_pairs.parquet"),
        ("dpo_pairs_filtered.sql", "out/dpo_pairs_filtered.parquet"),
        ("daily_refresh.sql", "out/daily/dpo.parquet"),
    ] {
        let q = root().join("queries").join(query);
        let out = prs(
            dir.path(),
            &[
                "sql",
                "--sim",
                "-q",
                "-f",
                q.to_str().unwrap(),
                "-f",
                "keep.sql",
            ],
            &[],
        );
        assert!(out.status.success(), "{query}: {}", text(&out));
        // each pair's chosen and rejected are candidates of the pair's prompt, the rejected
        // one that prompt's worst
        let cands = dir.path().join("out/candidates.parquet");
        let groups = rows(
            &ctx,
            &format!(
                "SELECT prompt, preference, response, CAST(reward AS VARCHAR) AS r FROM '{}' \
                 WHERE reward IS NOT NULL AND error IS NULL ORDER BY reward",
                cands.display()
            ),
        )
        .await;
        let pairs = rows(
            &ctx,
            &format!(
                "SELECT CAST(prompt_id AS VARCHAR) AS id, prompt, chosen, rejected, \
                        CAST(chosen_reward AS VARCHAR) AS c, \
                        CAST(rejected_reward AS VARCHAR) AS r FROM '{}'",
                dir.path().join(pairs).display()
            ),
        )
        .await;
        let mut without_id = 0;
        for p in &pairs {
            without_id += usize::from(p[0].is_none());
            let prompt = p[1].clone().unwrap();
            // the candidates of the pair's prompt (the filtered query adds the preference)
            let of: Vec<&Vec<Option<String>>> = groups
                .iter()
                .filter(|c| {
                    let (text, pref) = (c[0].clone().unwrap(), c[1].clone().unwrap());
                    prompt == text || prompt == format!("{text}\n\n{pref}")
                })
                .collect();
            let has = |response: &Option<String>, reward: &Option<String>| {
                of.iter().any(|c| c[2] == *response && c[3] == *reward)
            };
            assert!(
                has(&p[2], &p[4]),
                "{query}: chosen of {p:?} not of its prompt"
            );
            assert!(
                has(&p[3], &p[5]),
                "{query}: rejected of {p:?} not of its prompt"
            );
            assert_eq!(
                of[0][3], p[5],
                "{query}: rejected of {p:?} is its prompt's worst"
            );
        }
        assert!(
            without_id >= 1,
            "{query}: no pair of a prompt without an id: {pairs:?}"
        );
        std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    }
}

/// The rows of `sql`, each cell as text.
async fn rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<Option<String>>> {
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let columns: Vec<_> = b
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Utf8).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|c| {
                        let c = c.as_string::<i32>();
                        c.is_valid(r).then(|| c.value(r).to_string())
                    })
                    .collect(),
            );
        }
    }
    out
}
