//! `prs report`: the page of a run written from the simulator's candidates: every section there,
//! every chart with data; several runs, error rows, one method, one prompt; a table that is not
//! candidates refused with the columns it lacks.

mod common;

use common::cli::{prs, text, workdir};

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
