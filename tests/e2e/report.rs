//! `prs report`: the page of a run written from the simulator's candidates: every section there,
//! every chart with data; several runs, error rows, one method, one prompt; a table that is not
//! candidates refused with the columns it lacks; the quickstart's page opened in a real
//! browser (headless Chromium): no errors, nothing fetched, every chart drawn at a real size.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::cli::{prs, root, text, workdir};

/// Run a `prs sql --sim` script in `dir`.
fn sample(dir: &std::path::Path, script: &str) {
    // error rows are part of what a report shows
    let args = ["sql", "--sim", "--quiet", "--set", "max_failed_share=1"];
    let mut args = args.to_vec();
    args.extend(["--summary-json", "out/summary.json", script]);
    let out = prs(dir, &args, &[]);
    assert!(out.status.success(), "{}", text(&out));
}

fn report(dir: &std::path::Path, args: &[&str]) -> (std::process::Output, String) {
    let mut all = vec!["report"];
    all.extend_from_slice(args);
    let out = prs(dir, &all, &[]);
    let html = std::fs::read_to_string(dir.join("out/report.html")).unwrap_or_default();
    (out, html)
}

/// The `<figure>` charts of a page, each with something drawn in it.
fn charts_with_data(html: &str) -> (usize, usize) {
    let figures: Vec<&str> = html.split("<figure").skip(1).collect();
    let drawn = figures
        .iter()
        .filter(|f| f.contains("<polyline") || f.contains("<circle"))
        .count();
    (figures.len(), drawn)
}

#[test]
fn a_report_of_several_runs_has_every_section_and_chart() {
    let dir = workdir();
    sample(
        dir.path(),
        "COPY (SELECT *, 'a' AS run FROM random_sample('data/prompts.parquet', 8) \
               UNION ALL SELECT *, 'a' AS run FROM prs_sample('data/prompts.parquet', 8) \
               UNION ALL SELECT *, 'think' AS run FROM random_sample('data/prompts.parquet', 2, 'answer_pattern=think')) \
         TO 'out/candidates.parquet' STORED AS PARQUET",
    );
    let (out, html) = report(
        dir.path(),
        &["out/candidates.parquet", "--summary", "out/summary.json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    for section in [
        "Run",
        "Reward distributions",
        "Best of k",
        "What PRS's revisions did",
        "Data checks",
        "Chosen vs rejected",
    ] {
        assert!(
            html.contains(&format!("<h2>{section}</h2>")),
            "no {section}"
        );
    }
    // components appear only where the candidates have them
    assert!(!html.contains("<h2>Reward components</h2>"));
    // the three series, the error rows by kind, the job summary
    assert!(
        html.contains("random / a") && html.contains("prs / a") && html.contains("random / think")
    );
    assert!(
        html.contains("<td>answer</td><td>48</td>"),
        "error rows by kind"
    );
    // the job summary's counters
    assert!(
        html.contains("<td>policy requests</td><td>")
            && !html.contains("<td>policy requests</td><td>–")
    );
    assert!(html.contains("candidates / s"));
    // nothing runs, nothing is fetched
    assert!(
        !html.contains("<script") && !html.contains("src=\"http") && !html.contains("href=\"http")
    );
    let (charts, drawn) = charts_with_data(&html);
    assert_eq!((charts, drawn), (5, 5), "every chart has data");
}

#[test]
fn one_method_one_prompt_and_a_table_that_is_not_candidates() {
    let dir = workdir();
    sample(
        dir.path(),
        "COPY (SELECT * FROM random_sample('data/prompts.parquet', 3) LIMIT 3) \
         TO 'out/one.parquet' STORED AS PARQUET",
    );
    let (out, html) = report(dir.path(), &["out/one.parquet"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(html.contains("No PRS candidates"));
    let (charts, drawn) = charts_with_data(&html);
    assert!(charts >= 3 && drawn == charts, "{charts} {drawn}");

    sample(
        dir.path(),
        "COPY (SELECT 1 AS x, 'y' AS response) TO 'out/bad.parquet' STORED AS PARQUET",
    );
    let out = prs(
        dir.path(),
        &["report", "out/bad.parquet", "-o", "out/bad.html"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out);
    assert!(
        err.contains("lacks the column(s) prompt_id, method, layer, sample_index, reward"),
        "{err}"
    );
    assert!(!dir.path().join("out/bad.html").exists());
}

/// The report's statistics on a table small enough to work out by hand: two prompts, one
/// failed candidate.
#[test]
fn statistics_match_a_table_worked_out_by_hand() {
    let dir = workdir();
    // prompt a: rewards 1, 3 (truncated, chosen), 2; prompt b: 0.5 (truncated), 1.5 (chosen),
    // and a failed candidate
    sample(
        dir.path(),
        "COPY (SELECT column1 AS prompt_id, 'random' AS method, 0 AS layer, column2 AS sample_index, \
                      column3 AS response, column4 AS reward, column5 AS is_best, \
                      column6 AS finish_reason, column7 AS error, 'pm' AS policy_model, \
                      'rm' AS reward_model \
               FROM (VALUES ('a', 0, 'x', 1.0, false, 'stop', CAST(NULL AS VARCHAR)), \
                            ('a', 1, 'yyy', 3.0, true, 'length', NULL), \
                            ('a', 2, 'zz', 2.0, false, 'stop', NULL), \
                            ('b', 0, 'p', 0.5, false, 'length', NULL), \
                            ('b', 1, 'qq', 1.5, true, 'stop', NULL), \
                            ('b', 2, NULL, NULL, false, NULL, 'policy: HTTP 500'))) \
         TO 'out/hand.parquet' STORED AS PARQUET",
    );
    let (out, html) = report(dir.path(), &["out/hand.parquet"]);
    assert!(out.status.success(), "{}", text(&out));
    // 2 prompts, 6 candidates, 5 scored, 1 failed, at the policy
    assert!(
        html.contains(
            "<td>random</td><td>2</td><td>6</td><td>5</td><td>1</td><td>pm</td><td>rm</td>"
        ),
        "run table"
    );
    assert!(
        html.contains("<td>policy</td><td>1</td>"),
        "failures by kind"
    );
    // truncated: 2 of 5 responses, 1 of 2 chosen; no copies; corr(reward, length) = 0.9631
    assert!(
        html.contains("<td>random</td><td>40.0 %</td><td>50.0 %</td><td>0.0 %</td><td>0.9631</td>"),
        "data checks"
    );
    // pairs: (3 vs 1) and (1.5 vs 0.5): chosen 2.25 ± 1.0607, rejected 0.75 ± 0.3536, lengths
    // 2.5 and 1
    assert!(
        html.contains(
            "<td>random</td><td>2</td><td>2.2500</td><td>1.0607</td><td>0.7500</td><td>0.3536</td>\
             <td>2.5000</td><td>1</td>"
        ),
        "chosen vs rejected"
    );
    // reward distribution: 5 scored, median 1.5, mean 1.6
    assert!(
        html.contains("<td>random</td><td>5</td><td>1.5000</td><td>1.6000</td>"),
        "rewards"
    );
}

#[test]
fn prs_report_in_sql_writes_when_run_not_when_planned() {
    let dir = workdir();
    sample(
        dir.path(),
        "COPY (SELECT * FROM random_sample('data/prompts.parquet', 2)) TO 'out/c.parquet' STORED AS PARQUET; \
         EXPLAIN SELECT * FROM prs_report('out/c.parquet', 'out/explained.html')",
    );
    assert!(!dir.path().join("out/explained.html").exists());
    let out = prs(
        dir.path(),
        &[
            "sql",
            "SELECT report, bytes > 1000 AS written FROM prs_report('out/c.parquet')",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("out/report.html") && stdout.contains("true"),
        "{stdout}"
    );
    assert!(dir.path().join("out/report.html").exists());
    for (sql, says) in [
        (
            "SELECT * FROM prs_report()",
            "takes 1 or 2 arguments, got 0",
        ),
        (
            "SELECT * FROM prs_report(1)",
            "candidates (the first argument) must be a string literal",
        ),
        (
            "SELECT * FROM prs_report('out/c.parquet', 2)",
            "output (the second argument)",
        ),
        (
            "SELECT * FROM prs_report('out/none.parquet', 'out/none.html')",
            "cannot read out/none.parquet",
        ),
    ] {
        let out = prs(dir.path(), &["sql", sql], &[]);
        assert_eq!(out.status.code(), Some(1), "{sql}");
        assert!(text(&out).contains(says), "{sql}: {}", text(&out));
    }
    assert!(!dir.path().join("out/none.html").exists());
}

/// The README quickstart ends by writing its page, which a real browser renders without
/// errors, fetching nothing, with every chart drawn. Needs Chromium (`.ci/run` installs
/// Debian's): without one the test fails under CI and is skipped elsewhere.
#[test]
fn the_quickstart_page_renders_in_a_browser() {
    let dir = workdir();
    let q = root().join("queries/quickstart.sql");
    let out = prs(
        dir.path(),
        &["sql", "--sim", "--quiet", "-f", q.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("out/report.html"));
    let html = std::fs::read_to_string(dir.path().join("out/report.html")).unwrap();
    // the job's counters so far are the page's summary
    assert!(
        html.contains("<td>policy requests</td><td>")
            && !html.contains("<td>policy requests</td><td>–"),
        "no job summary"
    );
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Chromium: install it (apt-get install chromium) or set PRS_CHROMIUM"
        );
        eprintln!("skipped: no Chromium (set PRS_CHROMIUM or install chromium)");
        return;
    };
    std::fs::write(dir.path().join("harness.html"), HARNESS).unwrap();
    let (dom, log) = browse(
        &chromium,
        dir.path(),
        &["--dump-dom", "--allow-file-access-from-files"],
        "harness.html",
    );
    let json = dom
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|r| r.split("</pre>").next())
        .unwrap_or_default()
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let found: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("the harness did not report ({e}): {json}\n{log}"));
    assert_eq!(
        found["sections"].as_array().map(Vec::len),
        Some(6),
        "{found}"
    );
    let charts = found["charts"].as_array().cloned().unwrap_or_default();
    assert_eq!(charts.len(), 5, "{found}");
    for c in &charts {
        let n = |k: &str| c[k].as_f64().unwrap_or(0.0);
        assert!(
            n("width") > 100.0 && n("height") > 100.0 && n("marks") >= 1.0,
            "{c}"
        );
    }
    assert_eq!(
        found["fetched"],
        serde_json::json!([]),
        "the page fetched something"
    );
    assert_eq!(found["parse_errors"], 0);
    // nothing on the page's console (the report has no script; the harness logs nothing)
    assert!(!log.contains(":CONSOLE"), "{log}");

    let shot = dir.path().join("report.png");
    let arg = format!("--screenshot={}", shot.display());
    browse(
        &chromium,
        dir.path(),
        &[&arg, "--window-size=1000,2600"],
        "out/report.html",
    );
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(png.starts_with(b"\x89PNG"), "no screenshot");
    // a blank page of that size compresses to a few KiB
    assert!(png.len() > 40_000, "{} bytes", png.len());
    let _ = std::fs::copy(
        &shot,
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("report.png"),
    );
}

/// Chromium from `PRS_CHROMIUM`, else the first of Debian's and Google's names on PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PRS_CHROMIUM") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Open `page` (in `dir`) headless with `args`; stdout and stderr (with the console log).
fn browse(chromium: &Path, dir: &Path, args: &[&str], page: &str) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", dir.join(page).display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium ran for 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Loads out/report.html in a frame and reports what the browser made of it: sections, each
/// chart's rendered size and drawn marks, what the page fetched, SVG parse errors.
const HARNESS: &str = r#"<!doctype html><html><head><meta charset="utf-8"></head><body>
<pre id="result">pending</pre>
<script>
const out = document.getElementById('result');
window.addEventListener('error', (e) => { out.textContent = 'error: ' + e.message; });
const frame = document.createElement('iframe');
frame.style.width = '1000px';
frame.style.height = '3000px';
frame.addEventListener('load', () => {
  try {
    const d = frame.contentDocument;
    const charts = [...d.querySelectorAll('figure svg')].map((svg) => {
      const r = svg.getBoundingClientRect();
      const marks = [...svg.querySelectorAll('polyline, circle')]
        .filter((e) => { const b = e.getBBox(); return b.width > 0 || b.height > 0; }).length;
      return { width: r.width, height: r.height, marks };
    });
    out.textContent = JSON.stringify({
      sections: [...d.querySelectorAll('h2')].map((h) => h.textContent),
      charts,
      fetched: frame.contentWindow.performance.getEntriesByType('resource').map((e) => e.name),
      parse_errors: d.querySelectorAll('parsererror').length,
    });
  } catch (e) {
    out.textContent = 'error: ' + e;
  }
});
frame.src = 'out/report.html';
document.body.appendChild(frame);
</script></body></html>"#;

/// 60,000 candidates of one prompt (a table whose prompt ids are all the same) make a report
/// in seconds, not minutes: the best-of-k estimator sorts a prompt's rewards once.
#[test]
fn sixty_thousand_candidates_of_one_prompt_report_in_seconds() {
    let dir = workdir();
    sample(
        dir.path(),
        "COPY (SELECT 'p' AS prompt_id, 'random' AS method, 0 AS layer, \
                      CAST(value AS INT) AS sample_index, 'r' || CAST(value % 97 AS VARCHAR) AS response, \
                      CAST((value * 7919) % 1000 AS DOUBLE) / 1000.0 AS reward, value = 0 AS is_best, \
                      'stop' AS finish_reason, CAST(NULL AS VARCHAR) AS error, 'pm' AS policy_model, \
                      'rm' AS reward_model \
               FROM generate_series(0, 59999)) \
         TO 'out/many.parquet' STORED AS PARQUET",
    );
    let mut child =
        crate::common::cli::prs_command(dir.path(), &["report", "out/many.parquet"], &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let started = Instant::now();
    // generous: a debug build on a loaded machine; before, this took minutes
    let limit = Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("prs report of 60,000 candidates of one prompt took over {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let html = std::fs::read_to_string(dir.path().join("out/report.html")).unwrap();
    assert!(
        html.contains("<td>random</td><td>1</td><td>60000</td><td>60000</td><td>0</td>"),
        "run table"
    );
}

/// Candidates whose prompt id is null are grouped by their prompt text (and preference): two
/// such prompts are two prompts, with a pair each, not one group nor none.
#[test]
fn prompts_without_an_id_are_told_apart_by_their_text() {
    let dir = workdir();
    sample(
        dir.path(),
        "COPY (SELECT CAST(NULL AS VARCHAR) AS prompt_id, column1 AS prompt, 'pref' AS preference, \
                      'random' AS method, 0 AS layer, column2 AS sample_index, column3 AS response, \
                      column4 AS reward, column5 AS is_best, 'stop' AS finish_reason, \
                      CAST(NULL AS VARCHAR) AS error, 'pm' AS policy_model, 'rm' AS reward_model \
               FROM (VALUES ('q1', 0, 'a', 1.0, false), ('q1', 1, 'bb', 2.0, true), \
                            ('q2', 0, 'c', 5.0, false), ('q2', 1, 'dd', 9.0, true))) \
         TO 'out/noid.parquet' STORED AS PARQUET",
    );
    let (out, html) = report(dir.path(), &["out/noid.parquet"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        html.contains("<td>random</td><td>2</td><td>4</td><td>4</td><td>0</td>"),
        "two prompts in the run table"
    );
    // pairs (2 vs 1) and (9 vs 5): chosen 5.5, rejected 3
    assert!(
        html.contains("<td>random</td><td>2</td><td>5.5000</td>"),
        "a pair per prompt"
    );
}

#[test]
fn a_report_of_reward_components_shows_each_and_how_they_agree() {
    let dir = workdir();
    sample(
        dir.path(),
        r#"SET prs.reward_components = '[{"name":"plain","weight":0.5},{"name":"bare","template":"{response}","weight":0.5}]';
           COPY (SELECT * FROM random_sample('data/prompts.parquet', 4))
           TO 'out/candidates.parquet' STORED AS PARQUET"#,
    );
    let (out, html) = report(dir.path(), &["out/candidates.parquet"]);
    assert!(out.status.success(), "{}", text(&out));
    let section = html
        .split("<h2>Reward components</h2>")
        .nth(1)
        .expect("a section for the components");
    let section = section.split("<h2>").next().unwrap();
    // one row per component, each with its count, and a column per component and the reward
    assert!(section.contains("<td>bare</td><td>96</td>"), "{section}");
    assert!(section.contains("<td>plain</td><td>96</td>"), "{section}");
    assert!(section.contains("<th>reward</th>"), "{section}");
    let (figures, drawn) = charts_with_data(section);
    assert_eq!((figures, drawn), (1, 1));
}
