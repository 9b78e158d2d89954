//! The numbers of a report: SQL over the candidates table (registered as `c`, with a `series`
//! column added: the method, or `method / run` when the table has a `run` column), and the
//! best-of-k estimator.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

/// Columns a report needs.
pub const REQUIRED: &[&str] = &[
    "prompt_id",
    "method",
    "layer",
    "sample_index",
    "response",
    "reward",
    "is_best",
    "finish_reason",
    "error",
    "policy_model",
    "reward_model",
];

/// The view every query reads: the candidates with their series.
pub fn series_view(has_run: bool) -> String {
    let series = match has_run {
        true => "method || ' / ' || CAST(run AS VARCHAR)",
        false => "method",
    };
    format!("CREATE VIEW c AS SELECT *, {series} AS series FROM candidates")
}

/// Run `sql` and gather its rows.
pub async fn rows(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    ctx.sql(sql).await?.collect().await
}

/// Column `i` of every batch as text (nulls as "").
pub fn texts(batches: &[RecordBatch], i: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        let col = cast(b.column(i), &DataType::Utf8)?;
        let col = col.as_string::<i32>();
        out.extend((0..col.len()).map(|r| {
            let text = if col.is_valid(r) { col.value(r) } else { "" };
            text.to_string()
        }));
    }
    Ok(out)
}

/// Column `i` of every batch as numbers (nulls as NaN).
pub fn numbers(batches: &[RecordBatch], i: usize) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for b in batches {
        let col = cast(b.column(i), &DataType::Float64)?;
        let col = col.as_primitive::<Float64Type>();
        out.extend((0..col.len()).map(|r| {
            if col.is_valid(r) {
                col.value(r)
            } else {
                f64::NAN
            }
        }));
    }
    Ok(out)
}

/// The one number of a one-row, one-column query.
pub async fn scalar(ctx: &SessionContext, sql: &str) -> Result<f64> {
    let b = rows(ctx, sql).await?;
    numbers(&b, 0)?
        .into_iter()
        .next()
        .ok_or_else(|| DataFusionError::Execution(format!("no row from {sql}")))
}

/// Values grouped by a key column (`key`, `value` queries), keys in order.
pub async fn grouped(ctx: &SessionContext, sql: &str) -> Result<BTreeMap<String, Vec<f64>>> {
    let b = rows(ctx, sql).await?;
    let (keys, values) = (texts(&b, 0)?, numbers(&b, 1)?);
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (k, v) in keys.into_iter().zip(values) {
        if v.is_finite() {
            out.entry(k).or_default().push(v);
        }
    }
    Ok(out)
}

/// Each prompt's scored rewards per series: `series -> [rewards of one prompt]`.
pub async fn rewards_by_prompt(ctx: &SessionContext) -> Result<BTreeMap<String, Vec<Vec<f64>>>> {
    let b = rows(
        ctx,
        "SELECT series, CAST(prompt_id AS VARCHAR) AS p, reward FROM c \
         WHERE reward IS NOT NULL AND error IS NULL ORDER BY series, p",
    )
    .await?;
    let (series, prompts, rewards) = (texts(&b, 0)?, texts(&b, 1)?, numbers(&b, 2)?);
    let mut out: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for ((s, p), r) in series.into_iter().zip(prompts).zip(rewards) {
        out.entry(s).or_default().entry(p).or_default().push(r);
    }
    Ok(out
        .into_iter()
        .map(|(s, by_prompt)| (s, by_prompt.into_values().collect()))
        .collect())
}

/// `ln(m!)` for m = 0..=n.
fn ln_factorials(n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    let mut acc = 0.0;
    out.push(acc);
    for m in 1..=n {
        acc += (m as f64).ln();
        out.push(acc);
    }
    out
}

/// Expected best of `k` rewards drawn without replacement from `rewards` (unbiased, exact):
/// with the rewards sorted ascending, the i-th (1-based) is the best of a k-subset in
/// C(i-1, k-1) of the C(n, k) subsets. `None` when k is 0 or above n.
pub fn expected_best_of(rewards: &[f64], k: usize) -> Option<f64> {
    let n = rewards.len();
    if k == 0 || k > n {
        return None;
    }
    let mut sorted = rewards.to_vec();
    sorted.sort_by(f64::total_cmp);
    let lf = ln_factorials(n);
    let ln_choose = |a: usize, b: usize| lf[a] - lf[b] - lf[a - b];
    let total = ln_choose(n, k);
    Some(
        (k..=n)
            .map(|i| (ln_choose(i - 1, k - 1) - total).exp() * sorted[i - 1])
            .sum(),
    )
}

/// Best-of-k curve of one series: for k = 1..=max n, the mean over prompts that have at least
/// k scored candidates.
pub fn best_of_k_curve(prompts: &[Vec<f64>]) -> Vec<(usize, f64)> {
    let max_n = prompts.iter().map(Vec::len).max().unwrap_or(0);
    (1..=max_n)
        .filter_map(|k| {
            let values: Vec<f64> = prompts
                .iter()
                .filter_map(|r| expected_best_of(r, k))
                .collect();
            (!values.is_empty()).then(|| (k, mean(&values)))
        })
        .collect()
}

pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample standard deviation (NaN below two values).
pub fn stddev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return f64::NAN;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    match s.len() % 2 {
        0 => (s[mid - 1] + s[mid]) / 2.0,
        _ => s[mid],
    }
}

/// One row per key of a `key, count` query.
pub async fn counts(ctx: &SessionContext, sql: &str) -> Result<Vec<(String, i64)>> {
    let b = rows(ctx, sql).await?;
    let keys = texts(&b, 0)?;
    let mut values = Vec::new();
    for batch in &b {
        let col = cast(batch.column(1), &DataType::Int64)?;
        let col = col.as_primitive::<Int64Type>();
        values.extend((0..col.len()).map(|r| col.value(r)));
    }
    Ok(keys.into_iter().zip(values).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_of_k_matches_hand_computed_cases() {
        let r = [3.0, 1.0, 2.0];
        // k = 1: the mean; k = n: the max
        assert!((expected_best_of(&r, 1).unwrap() - 2.0).abs() < 1e-12);
        assert!((expected_best_of(&r, 3).unwrap() - 3.0).abs() < 1e-12);
        // k = 2 over {1,2,3}: pairs (1,2)->2, (1,3)->3, (2,3)->3: 8/3
        assert!((expected_best_of(&r, 2).unwrap() - 8.0 / 3.0).abs() < 1e-12);
        // four values, k = 2: maxima of the 6 pairs of {0,1,2,10}: 1,2,10,2,10,10 -> 35/6
        let r = [10.0, 0.0, 2.0, 1.0];
        assert!((expected_best_of(&r, 2).unwrap() - 35.0 / 6.0).abs() < 1e-12);
        assert_eq!(expected_best_of(&r, 5), None);
        assert_eq!(expected_best_of(&r, 0), None);
        // large n stays finite and between mean and max
        let many: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let e = expected_best_of(&many, 16).unwrap();
        assert!(e > 900.0 && e < 999.0, "{e}");
    }

    #[test]
    fn curves_average_over_prompts_with_enough_candidates() {
        let prompts = vec![vec![1.0, 3.0], vec![5.0]];
        let curve = best_of_k_curve(&prompts);
        assert_eq!(curve.len(), 2);
        assert!((curve[0].1 - (2.0 + 5.0) / 2.0).abs() < 1e-12);
        assert!(
            (curve[1].1 - 3.0).abs() < 1e-12,
            "only the first prompt has 2"
        );
    }

    #[test]
    fn spreads() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!((stddev(&[1.0, 3.0]) - 2f64.sqrt()).abs() < 1e-12);
        assert!(stddev(&[1.0]).is_nan() && mean(&[]).is_nan());
    }
}
