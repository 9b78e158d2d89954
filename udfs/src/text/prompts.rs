//! The prompts of an input batch: per row, the prompt text, its id (from the id column, or
//! derived from the text) and its preference (from the preference column, or the default).

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_datafusion_err, ScalarValue};
use datafusion::error::Result;
use sha2::{Digest, Sha256};

use crate::sampler::PromptInput;
use crate::sql::InputColumns;

/// A stable id for a prompt without one: the first 16 hex digits of SHA-256 of its text.
pub fn derived_id(prompt: &str) -> String {
    let d = Sha256::digest(prompt.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Each row's output `prompt_id` and what the sampler needs of it.
pub fn prompts_of(
    columns: &InputColumns,
    default_preference: Option<&str>,
    batch: &RecordBatch,
) -> Result<Vec<(ScalarValue, PromptInput)>> {
    let prompts = text_column(batch, &columns.prompt)?;
    let prompts = prompts.as_string::<i32>();
    let prefs = match &columns.preference {
        Some(p) => Some(text_column(batch, p)?),
        None => None,
    };
    let references = match &columns.reference {
        Some(r) => Some(text_column(batch, r)?),
        None => None,
    };
    // (a dictionary-encoded id is output as its values)
    let ids = match &columns.id {
        Some(name) => Some(cast(column(batch, name)?, &columns.id_type)?),
        None => None,
    };
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let prompt = prompts
            .is_valid(row)
            .then(|| prompts.value(row).to_string());
        let (id, id_text) = row_id(ids.as_ref(), row, prompt.as_deref())?;
        let row_pref = prefs.as_ref().and_then(|p| {
            let p = p.as_string::<i32>();
            (p.is_valid(row) && !p.value(row).trim().is_empty()).then(|| p.value(row).to_string())
        });
        let preference_per_row = row_pref.is_some();
        let preference = row_pref.or_else(|| default_preference.map(str::to_string));
        let reference = references.as_ref().and_then(|r| {
            let r = r.as_string::<i32>();
            r.is_valid(row).then(|| r.value(row).to_string())
        });
        out.push((
            id,
            PromptInput {
                id_text,
                prompt,
                preference,
                preference_per_row,
                reference,
            },
        ));
    }
    Ok(out)
}

/// The row's id as output value and as text (for seeds); derived from the prompt when the
/// table has no id column or the id is null.
fn row_id(
    ids: Option<&ArrayRef>,
    row: usize,
    prompt: Option<&str>,
) -> Result<(ScalarValue, String)> {
    let derived = || derived_id(prompt.unwrap_or(""));
    Ok(match ids {
        Some(arr) => {
            let v = ScalarValue::try_from_array(arr, row)?;
            let text = if v.is_null() {
                derived()
            } else {
                scalar_text(&v)
            };
            (v, text)
        }
        None => {
            let text = derived();
            (ScalarValue::Utf8(Some(text.clone())), text)
        }
    })
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| exec_datafusion_err!("input column {name:?} missing from the scan"))
}

fn text_column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    Ok(cast(column(batch, name)?, &DataType::Utf8)?)
}

/// The id as plain text (no quotes), for seeds.
fn scalar_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}
