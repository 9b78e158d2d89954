//! Verdicts for columns of answers and references, as SQL gives them: `verify()` and
//! `prs_score`'s `verified`. Null where either side is null, and where a check could not
//! decide (counted in one warning per batch): a SQL column cannot hold an error row.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, StringArray};

use super::bounded::verdicts;
use super::check::Check;

/// Whether each row's `response` matches its `reference`, checked off the async workers.
pub async fn verdict_column(
    check: Arc<Check>,
    response: &StringArray,
    reference: &StringArray,
    what: &str,
) -> BooleanArray {
    let text = |a: &StringArray, row| (!a.is_null(row)).then(|| a.value(row).to_string());
    let rows = response.len();
    let items: Vec<_> = (0..rows)
        .map(|row| (text(response, row), text(reference, row)))
        .collect();
    let nulls: Vec<bool> = items
        .iter()
        .map(|(a, r)| a.is_none() || r.is_none())
        .collect();
    let mut undecided = 0usize;
    let values: BooleanArray = verdicts(check, items)
        .await
        .into_iter()
        .zip(nulls)
        .map(|(verdict, null)| match verdict {
            _ if null => None,
            Ok(v) => v,
            Err(e) => {
                undecided += 1;
                tracing::debug!("{what}: {e}");
                None
            }
        })
        .collect();
    if undecided > 0 {
        tracing::warn!("{what}: {undecided} of {rows} checks could not decide and gave null");
    }
    values
}
