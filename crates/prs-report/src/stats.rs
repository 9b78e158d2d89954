//! The numbers of a report: SQL over the candidates table (registered as `c`, with a `series`
//! column added: the method, or `method / run` when the table has a `run` column, and a
//! `prompt_key` that tells prompts apart), and the best-of-k estimator.

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

/// The columns of the candidates table that change how the report reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Layout {
    /// A `run` column: several runs in one table.
    pub run: bool,
    /// A `prompt` column.
    pub prompt: bool,
    /// A `preference` column.
    pub preference: bool,
    /// A `rewards` column (reward components).
    pub rewards: bool,
}

/// The table every query reads, `c`: the candidates with their `series` and their
/// `prompt_key`, what groups a prompt's candidates. That is the prompt id; a row whose id is
/// null (a null in the sampled table's id column) is grouped by its prompt text and preference
/// instead, which the candidates of one such prompt share, so that unrelated prompts without
/// an id are never one group. A table without a `prompt` column has nothing to group such rows
/// by: each is its own prompt, numbered once (`c` is then materialised, so that every query
/// sees the same numbers).
pub fn series_view(layout: Layout) -> String {
    let series = match layout.run {
        true => "method || ' / ' || CAST(run AS VARCHAR)",
        false => "method",
    };
    let preference = match layout.preference {
        true => "coalesce(CAST(preference AS VARCHAR), '')",
        false => "''",
    };
    let (kind, without_id) = match layout.prompt {
        true => (
            "VIEW",
            format!("'text ' || coalesce(CAST(prompt AS VARCHAR), '') || chr(31) || {preference}"),
        ),
        false => (
            "TABLE",
            "'row ' || CAST(row_number() OVER () AS VARCHAR)".to_string(),
        ),
    };
    format!(
        "CREATE {kind} c AS SELECT *, {series} AS series, \
         CASE WHEN prompt_id IS NULL THEN {without_id} \
              ELSE 'id ' || CAST(prompt_id AS VARCHAR) END AS prompt_key \
         FROM candidates"
    )
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

/// Pearson's correlation of the pairs of `a` and `b` where both are finite; NaN with fewer
/// than two pairs or no spread.
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| (*x, *y))
        .collect();
    let n = pairs.len() as f64;
    if pairs.len() < 2 {
        return f64::NAN;
    }
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let cov: f64 = pairs.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let vx: f64 = pairs.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let vy: f64 = pairs.iter().map(|(_, y)| (y - my).powi(2)).sum();
    match vx > 0.0 && vy > 0.0 {
        true => cov / (vx * vy).sqrt(),
        false => f64::NAN,
    }
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
        "SELECT series, prompt_key, reward FROM c \
         WHERE reward IS NOT NULL AND error IS NULL ORDER BY series, prompt_key",
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

/// Weights below this share of the total (which is 1) are left out of a best-of-k sum: far
/// below what an f64 sum of thousands of terms resolves, so the result is exact to rounding.
const NEGLIGIBLE_WEIGHT: f64 = 1e-18;

/// Expected best of `k` rewards drawn without replacement from `rewards` (unbiased, exact):
/// with the rewards sorted ascending, the i-th (1-based) is the best of a k-subset in
/// C(i-1, k-1) of the C(n, k) subsets. `None` when k is 0 or above n.
pub fn expected_best_of(rewards: &[f64], k: usize) -> Option<f64> {
    if k == 0 || k > rewards.len() {
        return None;
    }
    Some(best_of_sorted(&sorted(rewards), k))
}

/// Expected best of k for every k = 1..=n at once (element k - 1), sorting once.
pub fn expected_best_of_all(rewards: &[f64]) -> Vec<f64> {
    let sorted = sorted(rewards);
    (1..=sorted.len())
        .map(|k| best_of_sorted(&sorted, k))
        .collect()
}

fn sorted(rewards: &[f64]) -> Vec<f64> {
    let mut sorted = rewards.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// `sum_i sorted[i-1] * C(i-1, k-1) / C(n, k)` for 1 <= k <= n, from the top down: the weight
/// of the best is k/n and each next one down is the last times (i-k)/(i-1), so no factorial is
/// formed (no overflow at any n). The weights shrink geometrically below the top, so the sum
/// stops once all that is left weighs less than [`NEGLIGIBLE_WEIGHT`]: about n/k terms instead
/// of n, which makes a whole curve O(n log n) rather than O(n²).
fn best_of_sorted(sorted: &[f64], k: usize) -> f64 {
    let n = sorted.len();
    let mut weight = k as f64 / n as f64;
    let mut sum = 0.0;
    let mut i = n;
    loop {
        sum += weight * sorted[i - 1];
        if i == k {
            return sum;
        }
        weight *= (i - k) as f64 / (i - 1) as f64;
        i -= 1;
        // the weights left are at most weight * q^j with q = (i-k)/(i-1): together at most
        // weight * (i-1)/(k-1)
        let left = weight * (i - 1) as f64 / (k - 1) as f64;
        if k > 1 && left < NEGLIGIBLE_WEIGHT {
            return sum;
        }
    }
}

/// Best-of-k curve of one series: for k = 1..=max n, the mean over prompts that have at least
/// k scored candidates. Each prompt is sorted once; the work is O(n log n) per prompt.
pub fn best_of_k_curve(prompts: &[Vec<f64>]) -> Vec<(usize, f64)> {
    let max_n = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut sums = vec![0.0; max_n];
    let mut counts = vec![0usize; max_n];
    for rewards in prompts {
        for (i, v) in expected_best_of_all(rewards).into_iter().enumerate() {
            sums[i] += v;
            counts[i] += 1;
        }
    }
    sums.into_iter()
        .zip(counts)
        .enumerate()
        .filter(|(_, (_, count))| *count > 0)
        .map(|(i, (sum, count))| (i + 1, sum / count as f64))
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

    /// The mean of the best of every k-subset, by enumerating them.
    fn brute_force(rewards: &[f64], k: usize) -> f64 {
        let n = rewards.len();
        let (mut sum, mut subsets) = (0.0, 0usize);
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize != k {
                continue;
            }
            let best = (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| rewards[i])
                .fold(f64::NEG_INFINITY, f64::max);
            sum += best;
            subsets += 1;
        }
        sum / subsets as f64
    }

    #[test]
    fn best_of_k_matches_every_subset_enumerated() {
        let cases: Vec<Vec<f64>> = vec![
            vec![0.3],
            vec![2.0, 2.0, 1.0],
            vec![-1.5, 4.0, 0.25, 4.0, -3.0, 7.5, 0.0],
            (0..12).map(|i| ((i * 37) % 11) as f64 - 4.5).collect(),
        ];
        for rewards in cases {
            let all = expected_best_of_all(&rewards);
            assert_eq!(all.len(), rewards.len());
            for k in 1..=rewards.len() {
                let want = brute_force(&rewards, k);
                assert!((all[k - 1] - want).abs() < 1e-9, "{rewards:?} k={k}");
                let one = expected_best_of(&rewards, k).unwrap();
                assert!((one - want).abs() < 1e-9, "{rewards:?} k={k}");
            }
        }
    }

    /// The textbook sum over all n terms with log-factorials, for checking large groups.
    fn full_sum(sorted: &[f64], k: usize) -> f64 {
        let n = sorted.len();
        let mut lf = vec![0.0f64; n + 1];
        for m in 1..=n {
            lf[m] = lf[m - 1] + (m as f64).ln();
        }
        let ln_choose = |a: usize, b: usize| lf[a] - lf[b] - lf[a - b];
        (k..=n)
            .map(|i| (ln_choose(i - 1, k - 1) - ln_choose(n, k)).exp() * sorted[i - 1])
            .sum()
    }

    #[test]
    fn sixty_thousand_candidates_of_one_prompt_in_seconds() {
        let rewards: Vec<f64> = (0..60_000u64)
            .map(|i| ((i * 7919) % 1000) as f64 / 1000.0)
            .collect();
        let started = std::time::Instant::now();
        let curve = best_of_k_curve(std::slice::from_ref(&rewards));
        let took = started.elapsed();
        // generous for a debug build on a loaded machine; the O(n²) sum took minutes
        assert!(took < std::time::Duration::from_secs(30), "{took:?}");
        assert_eq!(curve.len(), 60_000);
        let sorted = sorted(&rewards);
        for k in [1, 2, 3, 10, 100, 5_000, 59_999, 60_000] {
            let want = full_sum(&sorted, k);
            assert!((curve[k - 1].1 - want).abs() < 1e-7, "k={k}");
        }
        assert!((curve[0].1 - mean(&rewards)).abs() < 1e-12);
        assert_eq!(curve[59_999].1, 0.999);
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
    fn correlations() {
        let a = [1.0, 2.0, 3.0, f64::NAN];
        assert!((correlation(&a, &[2.0, 4.0, 6.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((correlation(&a, &[3.0, 2.0, 1.0, 0.0]) + 1.0).abs() < 1e-12);
        assert!(correlation(&a, &[5.0, 5.0, 5.0, 5.0]).is_nan());
        assert!(correlation(&[1.0], &[1.0]).is_nan());
        let r = correlation(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]);
        assert!((r - 0.8).abs() < 1e-12, "{r}");
    }

    #[test]
    fn spreads() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!((stddev(&[1.0, 3.0]) - 2f64.sqrt()).abs() < 1e-12);
        assert!(stddev(&[1.0]).is_nan() && mean(&[]).is_nan());
    }
}
