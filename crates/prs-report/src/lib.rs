//! The report page (`prs report`; `datafusion_prs.report` in Python): a picture of a sampling
//! run in one self-contained HTML page (inline SVG, no script, nothing from the network). The
//! numbers come from SQL over the candidates table ([`stats`]), the charts from plotters
//! ([`charts`]), the page from [`page`]; [`sql`] is the `prs_report` SQL function.

pub mod charts;
pub mod page;
pub mod sql;
pub mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use charts::Series;
use page::{num, Page};
use stats::{grouped, rows, texts};

/// A report to write: what it describes and where it goes.
#[derive(Debug, Clone)]
pub struct Report {
    /// The candidates: a Parquet file, directory or glob with the output schema of
    /// random_sample / prs_sample (several runs UNIONed too; a `run` column names each).
    pub candidates: PathBuf,
    /// Where to write the page.
    pub output: PathBuf,
    /// The job summary (`prs sql --summary-json PATH`): requests, tokens, wall time.
    pub summary: Option<PathBuf>,
    /// DPO pairs written by queries/dpo_pairs*.sql (prompt, chosen, rejected, ...): their
    /// statistics instead of best vs worst recomputed from the candidates.
    pub pairs: Option<PathBuf>,
}

/// Write the page of `args`; returns where.
pub async fn run(args: &Report) -> std::result::Result<PathBuf, String> {
    let summary = match &args.summary {
        Some(path) => Some(read_summary(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let what = What {
        candidates: &args.candidates,
        summary: summary.as_ref(),
        pairs: args.pairs.as_deref(),
    };
    write(&what, &args.output)
        .await
        .map_err(|e| e.to_string())?;
    Ok(args.output.clone())
}

/// What a report is made of.
#[derive(Debug, Clone, Copy)]
pub struct What<'a> {
    /// The candidates: a Parquet file, directory or glob.
    pub candidates: &'a Path,
    /// The job summary as `prs sql --summary-json` writes it.
    pub summary: Option<&'a serde_json::Value>,
    /// DPO pairs to describe instead of best vs worst of the candidates.
    pub pairs: Option<&'a Path>,
}

/// Write the page of `what` to `output`, all or nothing; returns its size in bytes.
pub async fn write(what: &What<'_>, output: &Path) -> Result<usize> {
    let ctx = datafusion_prs::session_context(datafusion_prs::PrsConfig::default());
    let html = build(&ctx, what).await?;
    let failed = |e: std::io::Error| {
        DataFusionError::Execution(format!("cannot write the report {}: {e}", output.display()))
    };
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    datafusion_prs::atomic::write(output, html.as_bytes()).map_err(failed)?;
    Ok(html.len())
}

/// The page of `what`, read through `ctx`.
pub async fn build(ctx: &SessionContext, what: &What<'_>) -> Result<String> {
    let layout = register(ctx, what.candidates).await?;
    ctx.sql(&stats::series_view(layout))
        .await?
        .collect()
        .await?;
    let mut page = Page::new(what.candidates);
    run_section(ctx, what.summary, &mut page).await?;
    rewards_section(ctx, &mut page).await?;
    if layout.rewards {
        components_section(ctx, &mut page).await?;
    }
    best_of_k_section(ctx, &mut page).await?;
    revisions_section(ctx, &mut page).await?;
    checks_section(ctx, &mut page).await?;
    pairs_section(ctx, what.pairs, &mut page).await?;
    Ok(page.finish())
}

/// Register the candidates as `candidates`, checking the columns; which optional ones it has.
async fn register(ctx: &SessionContext, path: &Path) -> Result<stats::Layout> {
    let text = path.to_string_lossy();
    ctx.register_parquet("candidates", text.as_ref(), ParquetReadOptions::default())
        .await
        .map_err(|e| DataFusionError::Plan(format!("cannot read {text}: {}", e.message())))?;
    let schema = ctx.table("candidates").await?.schema().clone();
    let missing: Vec<&str> = stats::REQUIRED
        .iter()
        .copied()
        .filter(|c| schema.field_with_unqualified_name(c).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(DataFusionError::Plan(format!(
            "{text} is not a table of candidates: it lacks the column(s) {} (write one with \
             COPY (SELECT * FROM prs_sample(...)) TO '...parquet')",
            missing.join(", ")
        )));
    }
    let has = |name: &str| schema.field_with_unqualified_name(name).is_ok();
    Ok(stats::Layout {
        run: has("run"),
        prompt: has("prompt"),
        preference: has("preference"),
        rewards: has("rewards"),
    })
}

/// Section 1, What ran: prompts, candidates, methods, models, failures by kind, the job summary.
async fn run_section(
    ctx: &SessionContext,
    summary: Option<&serde_json::Value>,
    page: &mut Page,
) -> Result<()> {
    let b = rows(
        ctx,
        "SELECT series, count(DISTINCT prompt_key), count(*), \
                count(*) FILTER (WHERE reward IS NOT NULL AND error IS NULL), \
                count(*) FILTER (WHERE error IS NOT NULL), \
                string_agg(DISTINCT policy_model, ', '), string_agg(DISTINCT reward_model, ', ') \
         FROM c GROUP BY series ORDER BY series",
    )
    .await?;
    let table: Vec<Vec<String>> = (0..7).map(|i| texts(&b, i)).collect::<Result<Vec<_>>>()?;
    let body: Vec<Vec<String>> = (0..table[0].len())
        .map(|r| table.iter().map(|col| col[r].clone()).collect())
        .collect();
    page.section("Run", "What was sampled, by method (and run).");
    page.table(
        &[
            "method",
            "prompts",
            "candidates",
            "scored",
            "failed",
            "policy model",
            "reward model",
        ],
        &body,
    );
    let kinds = stats::counts(
        ctx,
        "SELECT split_part(error, ':', 1) AS kind, count(*) FROM c WHERE error IS NOT NULL \
         GROUP BY kind ORDER BY count(*) DESC, kind",
    )
    .await?;
    match kinds.is_empty() {
        true => page.note("No failed candidates."),
        false => page.table(
            &["failed at", "candidates"],
            &kinds
                .iter()
                .map(|(k, n)| vec![k.clone(), n.to_string()])
                .collect::<Vec<_>>(),
        ),
    }
    if let Some(summary) = summary {
        page.table(&["job summary", ""], &summary_rows(summary));
    }
    Ok(())
}

/// A job summary written by `prs sql --summary-json`.
fn read_summary(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DataFusionError::Plan(format!("cannot read {}: {e}", path.display())))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        DataFusionError::Plan(format!(
            "{} is not a job summary (JSON): {e}",
            path.display()
        ))
    })?;
    // the counters sit at the top level of `prs sql --summary-json`
    if json.get("candidates").is_none() {
        return Err(DataFusionError::Plan(format!(
            "{} is not a job summary of prs sql --summary-json (no candidates count)",
            path.display()
        )));
    }
    Ok(json)
}

/// The job summary's requests, tokens, wall time and throughput.
fn summary_rows(stats: &serde_json::Value) -> Vec<Vec<String>> {
    let n = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let wall = n(&stats["wall_secs"]);
    let candidates = n(&stats["candidates"]);
    vec![
        vec!["policy requests".into(), num(n(&stats["policy_requests"]))],
        vec!["reward requests".into(), num(n(&stats["reward_requests"]))],
        vec!["prompt tokens".into(), num(n(&stats["prompt_tokens"]))],
        vec![
            "completion tokens".into(),
            num(n(&stats["completion_tokens"])),
        ],
        vec!["wall time (s)".into(), num(wall)],
        vec!["candidates / s".into(), num(candidates / wall)],
    ]
}

/// Section 2, Reward distributions per method and, for PRS, per layer, on one axis.
async fn rewards_section(ctx: &SessionContext, page: &mut Page) -> Result<()> {
    let groups = grouped(
        ctx,
        "SELECT CASE WHEN method = 'prs' THEN series || ' layer ' || CAST(layer AS VARCHAR) \
                     ELSE series END, reward \
         FROM c WHERE reward IS NOT NULL AND error IS NULL",
    )
    .await?;
    let groups: Vec<(String, Vec<f64>)> = groups.into_iter().collect();
    page.section(
        "Reward distributions",
        "Share of scored candidates per reward bin, by method and PRS layer; the vertical \
         lines are the medians.",
    );
    distribution_chart(
        page,
        "Reward distribution",
        ("reward", "share of candidates"),
        &groups,
        24,
    );
    page.table(
        &["group", "candidates", "median", "mean"],
        &groups
            .iter()
            .map(|(g, v)| {
                vec![
                    g.clone(),
                    v.len().to_string(),
                    num(stats::median(v)),
                    num(stats::mean(v)),
                ]
            })
            .collect::<Vec<_>>(),
    );
    Ok(())
}

/// Section 2b, Reward components (`prs.reward_components`): each component's distribution, and
/// how the components and the aggregate `reward` move together.
async fn components_section(ctx: &SessionContext, page: &mut Page) -> Result<()> {
    let names = texts(
        &rows(
            ctx,
            "SELECT DISTINCT unnest(map_keys(rewards)) AS name FROM c              WHERE rewards IS NOT NULL ORDER BY name",
        )
        .await?,
        0,
    )?;
    if names.is_empty() {
        return Ok(());
    }
    let quoted = |n: &str| format!("rewards['{}']", n.replace('\'', "''"));
    let columns: Vec<String> = names.iter().map(|n| quoted(n)).collect();
    let b = rows(
        ctx,
        &format!(
            "SELECT {}, reward FROM c WHERE rewards IS NOT NULL AND error IS NULL",
            columns.join(", ")
        ),
    )
    .await?;
    let values: Vec<Vec<f64>> = (0..=names.len())
        .map(|i| stats::numbers(&b, i))
        .collect::<Result<_>>()?;
    page.section(
        "Reward components",
        "Each component's raw score (the rewards column) per scored candidate, with the \
         vertical lines at the medians, and the correlation of every two components and of each \
         with the aggregate reward: components that always agree add nothing, and one that \
         disagrees with all the others is worth a look.",
    );
    let groups: Vec<(String, Vec<f64>)> = names
        .iter()
        .zip(&values)
        .map(|(n, v)| {
            (
                n.clone(),
                v.iter().copied().filter(|x| x.is_finite()).collect(),
            )
        })
        .collect();
    distribution_chart(
        page,
        "Component scores",
        ("score", "share of candidates"),
        &groups,
        24,
    );
    let mut head = vec!["component", "candidates", "median", "mean"];
    head.extend(names.iter().map(String::as_str));
    head.push("reward");
    let table: Vec<Vec<String>> = groups
        .iter()
        .zip(&values)
        .map(|((name, kept), mine)| {
            let mut row = vec![
                name.clone(),
                kept.len().to_string(),
                num(stats::median(kept)),
                num(stats::mean(kept)),
            ];
            row.extend(
                values
                    .iter()
                    .map(|other| num(stats::correlation(mine, other))),
            );
            row
        })
        .collect();
    page.table(&head, &table);
    Ok(())
}

/// Section 3, Expected best reward of k candidates, k = 1..n, per method (unbiased estimator).
async fn best_of_k_section(ctx: &SessionContext, page: &mut Page) -> Result<()> {
    let by_series = stats::rewards_by_prompt(ctx).await?;
    let series: Vec<Series> = by_series
        .iter()
        .map(|(label, prompts)| Series {
            label: label.clone(),
            points: stats::best_of_k_curve(prompts)
                .into_iter()
                .map(|(k, v)| (k as f64, v))
                .collect(),
        })
        .collect();
    page.section(
        "Best of k",
        "Expected best reward among k of a prompt's candidates, averaged over prompts: the \
         exact expectation over all k-subsets (not resampled), so methods compare at equal \
         budget.",
    );
    page.chart(charts::lines(
        "Expected best reward of k candidates",
        ("k", "expected best reward"),
        &series,
        &[],
    ));
    Ok(())
}

/// Section 4, What PRS's revisions did: best of later layers minus best of layer 0, per prompt.
async fn revisions_section(ctx: &SessionContext, page: &mut Page) -> Result<()> {
    let deltas = grouped(
        ctx,
        "SELECT series, max(reward) FILTER (WHERE layer >= 1) - max(reward) FILTER (WHERE layer = 0) \
         FROM c WHERE method = 'prs' AND reward IS NOT NULL AND error IS NULL \
         GROUP BY series, prompt_key",
    )
    .await?;
    page.section(
        "What PRS's revisions did",
        "Per prompt: the best reward of the revision layers minus the best of layer 0.",
    );
    if deltas.is_empty() {
        page.note("No PRS candidates with scored revisions in this table.");
        return Ok(());
    }
    let groups: Vec<(String, Vec<f64>)> = deltas.into_iter().collect();
    distribution_chart(
        page,
        "Best of revisions minus best of layer 0",
        ("reward gain", "share of prompts"),
        &groups,
        20,
    );
    let improved =
        |v: &[f64]| v.iter().filter(|d| **d > 0.0).count() as f64 / v.len().max(1) as f64;
    page.table(
        &["method", "prompts", "improved", "median gain"],
        &groups
            .iter()
            .map(|(g, v)| {
                vec![
                    g.clone(),
                    v.len().to_string(),
                    page::percent(improved(v)),
                    num(stats::median(v)),
                ]
            })
            .collect::<Vec<_>>(),
    );
    Ok(())
}

/// Section 5, Data checks: truncation, duplicates, reward vs length.
async fn checks_section(ctx: &SessionContext, page: &mut Page) -> Result<()> {
    let b = rows(
        ctx,
        "SELECT series, \
                avg(CASE WHEN finish_reason = 'length' THEN 1.0 ELSE 0.0 END), \
                avg(CASE WHEN finish_reason = 'length' THEN 1.0 ELSE 0.0 END) FILTER (WHERE is_best), \
                corr(reward, CAST(character_length(response) AS DOUBLE)) \
         FROM c WHERE response IS NOT NULL GROUP BY series ORDER BY series",
    )
    .await?;
    let dups = grouped(
        ctx,
        "SELECT series, 1.0 - CAST(count(DISTINCT regexp_replace(trim(response), '\\s+', ' ', 'g')) AS DOUBLE) / count(*) \
         FROM c WHERE response IS NOT NULL AND error IS NULL GROUP BY series, prompt_key",
    )
    .await?;
    let (labels, cut, cut_best, corr) = (
        texts(&b, 0)?,
        stats::numbers(&b, 1)?,
        stats::numbers(&b, 2)?,
        stats::numbers(&b, 3)?,
    );
    page.section(
        "Data checks",
        "Truncated candidates (finish_reason = length) overall and among the chosen, copies \
         within a prompt, and how much the reward tracks response length (a known bias of \
         reward models).",
    );
    let body: Vec<Vec<String>> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let dup = dups.get(l).map_or(f64::NAN, |v| stats::mean(v));
            vec![
                l.clone(),
                page::percent(cut[i]),
                page::percent(cut_best[i]),
                page::percent(dup),
                num(corr[i]),
            ]
        })
        .collect();
    page.table(
        &[
            "method",
            "truncated",
            "truncated among chosen",
            "copies within a prompt",
            "corr(reward, length)",
        ],
        &body,
    );
    let points = rows(
        ctx,
        "SELECT series, CAST(character_length(response) AS DOUBLE), reward FROM c \
         WHERE reward IS NOT NULL AND error IS NULL ORDER BY series, prompt_id, sample_index LIMIT 5000",
    )
    .await?;
    let (s, x, y) = (
        texts(&points, 0)?,
        stats::numbers(&points, 1)?,
        stats::numbers(&points, 2)?,
    );
    let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for ((s, x), y) in s.into_iter().zip(x).zip(y) {
        by.entry(s).or_default().push((x, y));
    }
    let series: Vec<Series> = by
        .into_iter()
        .map(|(label, points)| Series { label, points })
        .collect();
    page.chart(charts::dots(
        "Reward vs response length",
        ("response length (characters)", "reward"),
        &series,
    ));
    Ok(())
}

/// Section 6, chosen vs rejected: best vs worst per prompt (as queries/dpo_pairs.sql), or
/// the pairs file given.
async fn pairs_section(ctx: &SessionContext, pairs: Option<&Path>, page: &mut Page) -> Result<()> {
    let source = match pairs {
        Some(path) => {
            ctx.register_parquet(
                "pairs",
                path.to_string_lossy().as_ref(),
                ParquetReadOptions::default(),
            )
            .await
            .map_err(|e| {
                DataFusionError::Plan(format!("cannot read {}: {}", path.display(), e.message()))
            })?;
            "SELECT 'pairs' AS series, chosen, rejected, chosen_reward, rejected_reward FROM pairs"
                .to_string()
        }
        None => PAIRS_FROM_CANDIDATES.to_string(),
    };
    let margins = grouped(
        ctx,
        &format!("SELECT series, chosen_reward - rejected_reward FROM ({source})"),
    )
    .await?;
    page.section(
        "Chosen vs rejected",
        "The best and the worst candidate of each prompt whose rewards differ, as \
         queries/dpo_pairs.sql pairs them (or the pairs file given).",
    );
    let b = rows(ctx, &format!(
        "SELECT series, count(*), avg(chosen_reward), stddev(chosen_reward), avg(rejected_reward), stddev(rejected_reward), \
                avg(character_length(chosen)), avg(character_length(rejected)) FROM ({source}) GROUP BY series ORDER BY series"
    )).await?;
    let cols: Vec<Vec<String>> = (0..8)
        .map(|i| match i {
            0 | 1 => texts(&b, i),
            _ => stats::numbers(&b, i).map(|v| v.into_iter().map(num).collect()),
        })
        .collect::<Result<Vec<_>>>()?;
    let body: Vec<Vec<String>> = (0..cols[0].len())
        .map(|r| cols.iter().map(|c| c[r].clone()).collect())
        .collect();
    page.table(
        &[
            "method",
            "pairs",
            "chosen reward",
            "± sd",
            "rejected reward",
            "± sd",
            "chosen length",
            "rejected length",
        ],
        &body,
    );
    let groups: Vec<(String, Vec<f64>)> = margins.into_iter().collect();
    distribution_chart(
        page,
        "Reward margin of the pairs",
        ("chosen − rejected reward", "share of pairs"),
        &groups,
        20,
    );
    Ok(())
}

/// A chart of each group's distribution over `bins` bins on one axis, medians marked.
fn distribution_chart(
    page: &mut Page,
    title: &str,
    axes: (&str, &str),
    groups: &[(String, Vec<f64>)],
    bins: usize,
) {
    let (series, medians) = charts::distribution(groups, bins);
    page.chart(charts::lines(title, axes, &series, &medians));
}

/// Best vs worst scored candidate per prompt (`prompt_key`: see [`stats::series_view`]), kept
/// when their rewards differ.
const PAIRS_FROM_CANDIDATES: &str = "\
WITH ranked AS (
  SELECT series, prompt_key, response, reward,
         row_number() OVER (PARTITION BY series, prompt_key ORDER BY reward DESC, sample_index) AS best_rank,
         row_number() OVER (PARTITION BY series, prompt_key ORDER BY reward ASC, sample_index) AS worst_rank
  FROM c WHERE reward IS NOT NULL AND error IS NULL)
SELECT b.series, b.response AS chosen, w.response AS rejected,
       b.reward AS chosen_reward, w.reward AS rejected_reward
FROM ranked b JOIN ranked w
  ON b.series = w.series AND b.prompt_key = w.prompt_key AND b.best_rank = 1 AND w.worst_rank = 1
WHERE b.reward > w.reward";
