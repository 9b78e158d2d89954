//! Credentials written into endpoint URLs (`http://user:pass@host`, `?api_key=...`) reach their
//! own server and are shown nowhere else: not in `SHOW ALL`, `prs settings`, EXPLAIN, errors,
//! trace logs, the summary JSON, the checkpoint's files, the output's `reward_model` column or
//! the report page.

use std::path::Path;

use crate::common::cli::{prs, text, workdir};
use crate::common::*;

const SECRET: &str = "s3cret";

/// Environment variables one run sets differently.
type Overrides = Vec<(&'static str, String)>;

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `http://alice:s3cret@127.0.0.1:PORT{path}?api_key=qs3cret`
fn with_credentials(url: &str, path: &str) -> String {
    let host = url.trim_start_matches("http://");
    format!("http://alice:{SECRET}@{host}{path}?api_key=q{SECRET}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_urls_reach_their_server_and_nowhere_else() {
    let (url, fake) = start(Mode::Normal).await;
    let (down, _) = start(Mode::Down).await;
    let dir = workdir();
    let policy = with_credentials(&url, "/v1");
    let reward = with_credentials(&url, "");
    let env = [
        ("PRS_POLICY_URL", policy.as_str()),
        ("PRS_REWARD_URL", reward.as_str()),
        ("PRS_LOG", "trace"),
        ("PRS_RETRY_ATTEMPTS", "1"),
        // a URL's own credentials win over the kind's key: never two Authorization headers
        ("PRS_POLICY_API_KEY", "k3y-policy"),
        ("PRS_REWARD_API_KEY", "k3y-reward"),
    ];
    let job = "SET prs.checkpoint_dir = 'ck';
        SELECT name, value FROM information_schema.df_settings WHERE name LIKE 'prs.%url';
        SHOW ALL;
        EXPLAIN SELECT * FROM prs_sample('data/prompts.parquet', 2);
        COPY (SELECT * FROM prs_sample('data/prompts.parquet', 2)) TO 'out/c.parquet';
        SELECT DISTINCT reward_model, policy_model FROM 'out/c.parquet';";
    let broken = with_credentials(&down, "/v1");
    let bad_scheme = format!("ftp://alice:{SECRET}@host/v1");
    let components = format!(
        r#"[{{"name":"a","url":"{reward}","weight":0.5}},{{"name":"b","url":"{reward}","template":"{{response}}"}}]"#
    );
    let runs: Vec<(Vec<String>, Overrides)> = vec![
        (
            [
                "sql",
                "--max-width",
                "0",
                "--summary-json",
                "out/s.json",
                job,
            ]
            .map(String::from)
            .to_vec(),
            vec![],
        ),
        (["settings"].map(String::from).to_vec(), vec![]),
        (
            ["report", "out/c.parquet", "-o", "out/r.html"]
                .map(String::from)
                .to_vec(),
            vec![],
        ),
        // a server that is down: the error names the endpoint, not its password
        (
            [
                "sql",
                "--summary-json",
                "out/down.json",
                "SELECT * FROM random_sample('data/prompts.parquet', 1)",
            ]
            .map(String::from)
            .to_vec(),
            vec![("PRS_POLICY_URL", broken.clone())],
        ),
        // a URL that is not one
        (
            [
                "sql",
                "SELECT * FROM random_sample('data/prompts.parquet', 1)",
            ]
            .map(String::from)
            .to_vec(),
            vec![("PRS_REWARD_URL", bad_scheme.clone())],
        ),
        // reward components: a credential inside the JSON setting
        (
            [
                "sql",
                "--max-width",
                "0",
                "SET prs.checkpoint_dir = 'ck2'; SHOW ALL;
                 EXPLAIN SELECT * FROM random_sample('data/prompts.parquet', 2);
                 COPY (SELECT * FROM random_sample('data/prompts.parquet', 2)) TO 'out/c2.parquet';
                 SELECT DISTINCT reward_model FROM 'out/c2.parquet';
                 SELECT * FROM prs_score('out/c2.parquet') LIMIT 1;",
            ]
            .map(String::from)
            .to_vec(),
            vec![("PRS_REWARD_COMPONENTS", components.clone())],
        ),
    ];
    let mut outputs = Vec::new();
    for (args, overrides) in runs {
        let work = dir.path().to_path_buf();
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in overrides {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v));
        }
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            prs(&work, &args, &env)
        })
        .await
        .unwrap();
        outputs.push(out);
    }
    let job_out = text(&outputs[0]);
    assert!(outputs[0].status.success(), "{job_out}");
    assert!(
        job_out.contains("TRACE"),
        "the trace log was on:\n{job_out}"
    );
    assert!(job_out.contains("***@127.0.0.1"), "{job_out}");
    assert!(outputs[2].status.success(), "{}", text(&outputs[2]));
    assert!(!outputs[3].status.success());
    assert!(
        text(&outputs[3]).contains("***@127.0.0.1"),
        "{}",
        text(&outputs[3])
    );
    assert!(!outputs[4].status.success());
    assert!(
        text(&outputs[4]).contains("prs.reward_url"),
        "{}",
        text(&outputs[4])
    );
    let components_out = text(&outputs[5]);
    assert!(outputs[5].status.success(), "{components_out}");
    assert!(components_out.contains("weighted(a="), "{components_out}");
    for out in &outputs {
        let all = text(out);
        assert!(!all.contains(SECRET), "a credential was shown:\n{all}");
        assert!(!all.contains("k3y-"), "an API key was shown:\n{all}");
    }
    let written = files(dir.path());
    assert!(written.iter().any(|f| f.ends_with("call.json")));
    assert!(written.iter().any(|f| f.ends_with("r.html")));
    for file in written {
        let bytes = std::fs::read(&file).unwrap();
        let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
        assert!(!found, "{} holds a credential", file.display());
    }
    // ... and the server got them: Basic auth from the userinfo, the query string kept
    let log = fake.log.lock().unwrap();
    assert!(!log.is_empty());
    let basic = "Basic YWxpY2U6czNjcmV0"; // alice:s3cret
    assert!(
        log.iter()
            .all(|r| r.auth.as_deref() == Some(basic) && r.auths == 1),
        "{:?}",
        log.iter()
            .map(|r| (r.auth.clone(), r.auths))
            .collect::<Vec<_>>()
    );
    assert!(log
        .iter()
        .all(|r| r.query.as_deref() == Some("api_key=qs3cret")));
}
