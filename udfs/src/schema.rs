//! The output schema of `prs_sample` / `random_sample`, and turning candidates into Arrow.

use std::borrow::Borrow;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, MapBuilder, RecordBatch,
    StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;

use crate::error::Result;
use crate::sampler::{Candidate, Method, Stopped};

/// Output column names, in order.
pub const COLUMNS: [&str; 25] = [
    "prompt_id",
    "prompt",
    "preference",
    "method",
    "layer",
    "sample_index",
    "parent_index",
    "feedback",
    "response",
    "answer",
    "reward",
    "rewards",
    "is_best",
    "judge_wins",
    "judge_consistent",
    "duplicate_of",
    "finish_reason",
    "seed",
    "policy_model",
    "reward_model",
    "error",
    "reference",
    "verified",
    "group_size",
    "stopped",
];

/// One row per candidate. `prompt_id` keeps the type of the input's id column (Utf8 when the
/// id is derived from the prompt text).
pub fn output_schema(id_type: &DataType) -> SchemaRef {
    let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        Field::new("prompt_id", id_type.clone(), true),
        utf8("prompt", true),
        utf8("preference", true),
        utf8("method", false),
        Field::new("layer", DataType::Int32, false),
        Field::new("sample_index", DataType::Int32, false),
        Field::new("parent_index", DataType::Int32, true),
        utf8("feedback", true),
        utf8("response", true),
        utf8("answer", true),
        Field::new("reward", DataType::Float64, true),
        Field::new("rewards", rewards_type(), true),
        Field::new("is_best", DataType::Boolean, false),
        Field::new("judge_wins", DataType::Int32, true),
        Field::new("judge_consistent", DataType::Float64, true),
        Field::new("duplicate_of", DataType::Int32, true),
        utf8("finish_reason", true),
        Field::new("seed", DataType::Int64, true),
        utf8("policy_model", true),
        utf8("reward_model", true),
        utf8("error", true),
        utf8("reference", true),
        Field::new("verified", DataType::Boolean, true),
        Field::new("group_size", DataType::Int32, false),
        utf8("stopped", true),
    ]))
}

/// The type of `rewards`: each reward component's score by its name (`rewards['safe']`).
pub fn rewards_type() -> DataType {
    use datafusion::arrow::array::Array;
    rewards_builder().finish().data_type().clone()
}

fn rewards_builder() -> MapBuilder<StringBuilder, Float64Builder> {
    MapBuilder::new(None, StringBuilder::new(), Float64Builder::new())
}

/// A `rewards` column of `rows`: each component's score by name, null where a row has none.
pub fn rewards_column<'a>(
    rows: impl Iterator<Item = Option<&'a std::collections::BTreeMap<String, f64>>>,
) -> Result<ArrayRef> {
    let mut column = rewards_builder();
    for row in rows {
        for (name, score) in row.into_iter().flatten() {
            column.keys().append_value(name);
            column.values().append_value(*score);
        }
        column.append(row.is_some())?;
    }
    Ok(Arc::new(column.finish()))
}

/// A finished prompt: its input and its candidates.
#[derive(Debug, Clone)]
pub struct PromptResult {
    pub id: ScalarValue,
    pub prompt: Option<String>,
    pub preference: Option<String>,
    pub method: Method,
    pub policy_model: Option<String>,
    pub reward_model: Option<String>,
    /// The prompt's reference answer.
    pub reference: Option<String>,
    /// Why it stopped getting samples (`None`: it was never sampled).
    pub stopped: Option<Stopped>,
    pub candidates: Vec<Candidate>,
}

/// Build one batch (full schema) from finished prompts.
pub fn to_batch<R: Borrow<PromptResult>>(schema: &SchemaRef, results: &[R]) -> Result<RecordBatch> {
    let rows: usize = results.iter().map(|r| r.borrow().candidates.len()).sum();
    let mut ids = Vec::with_capacity(rows);
    let mut layer = Int32Builder::with_capacity(rows);
    let mut sample_index = Int32Builder::with_capacity(rows);
    let mut parent_index = Int32Builder::with_capacity(rows);
    let mut feedback = StringBuilder::new();
    let mut response = StringBuilder::new();
    let mut answer = StringBuilder::new();
    let mut reward = Float64Builder::with_capacity(rows);
    let mut is_best = BooleanBuilder::with_capacity(rows);
    let mut judge_wins = Int32Builder::with_capacity(rows);
    let mut judge_consistent = Float64Builder::with_capacity(rows);
    let mut duplicate_of = Int32Builder::with_capacity(rows);
    let mut finish_reason = StringBuilder::new();
    let mut seed = Int64Builder::with_capacity(rows);
    let mut error = StringBuilder::new();
    let mut verified = BooleanBuilder::with_capacity(rows);
    let mut group_size = Int32Builder::with_capacity(rows);
    for r in results {
        let r = r.borrow();
        for c in &r.candidates {
            ids.push(r.id.clone());
            layer.append_value(c.layer);
            sample_index.append_value(c.sample_index);
            parent_index.append_option(c.parent_index);
            feedback.append_option(c.feedback.as_deref());
            response.append_option(c.response.as_deref());
            answer.append_option(c.answer.as_deref());
            reward.append_option(c.reward);
            is_best.append_value(c.is_best);
            judge_wins.append_option(c.judge_wins);
            judge_consistent.append_option(c.judge_consistent);
            duplicate_of.append_option(c.duplicate_of);
            finish_reason.append_option(c.finish_reason.as_deref());
            seed.append_option(c.seed);
            error.append_option(c.error.as_deref());
            verified.append_option(c.verified);
            group_size.append_value(i32::try_from(r.candidates.len()).unwrap_or(i32::MAX));
        }
    }
    let ids = match ids.is_empty() {
        true => datafusion::arrow::array::new_empty_array(schema.field(0).data_type()),
        false => ScalarValue::iter_to_array(ids)?,
    };
    let text = |value: fn(&PromptResult) -> Option<&str>| per_prompt(results, value);
    let columns: Vec<ArrayRef> = vec![
        ids,
        text(|r| r.prompt.as_deref()),
        text(|r| r.preference.as_deref()),
        text(|r| Some(r.method.as_str())),
        Arc::new(layer.finish()),
        Arc::new(sample_index.finish()),
        Arc::new(parent_index.finish()),
        Arc::new(feedback.finish()),
        Arc::new(response.finish()),
        Arc::new(answer.finish()),
        Arc::new(reward.finish()),
        rewards_column(
            results
                .iter()
                .flat_map(|r| r.borrow().candidates.iter().map(|c| c.rewards.as_ref())),
        )?,
        Arc::new(is_best.finish()),
        Arc::new(judge_wins.finish()),
        Arc::new(judge_consistent.finish()),
        Arc::new(duplicate_of.finish()),
        Arc::new(finish_reason.finish()),
        Arc::new(seed.finish()),
        text(|r| r.policy_model.as_deref()),
        text(|r| r.reward_model.as_deref()),
        Arc::new(error.finish()),
        text(|r| r.reference.as_deref()),
        Arc::new(verified.finish()),
        Arc::new(group_size.finish()),
        text(|r| r.stopped.map(|s| s.as_str())),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A text column of one value per prompt, repeated for each of its candidates.
fn per_prompt<R: Borrow<PromptResult>>(
    results: &[R],
    value: fn(&PromptResult) -> Option<&str>,
) -> ArrayRef {
    let mut column = StringBuilder::new();
    for r in results {
        let r = r.borrow();
        for _ in &r.candidates {
            column.append_option(value(r));
        }
    }
    Arc::new(column.finish())
}

/// A stored prompt's columns by name, each of the type [`output_schema`] gives it.
struct Stored<'a>(&'a RecordBatch);

fn bad(what: &str) -> crate::error::PrsError {
    crate::error::PrsError::Input {
        source_name: "checkpoint".into(),
        reason: format!("column {what} has an unexpected type"),
    }
}

impl<'a> Stored<'a> {
    fn col(&self, name: &str) -> Result<&'a ArrayRef> {
        let at = COLUMNS.iter().position(|c| *c == name);
        at.and_then(|i| self.0.columns().get(i))
            .ok_or_else(|| bad(name))
    }
    fn text(&self, name: &str) -> Result<&'a datafusion::arrow::array::StringArray> {
        use datafusion::arrow::array::AsArray;
        self.col(name)?.as_string_opt().ok_or_else(|| bad(name))
    }
    fn number<T: datafusion::arrow::datatypes::ArrowPrimitiveType>(
        &self,
        name: &str,
    ) -> Result<&'a datafusion::arrow::array::PrimitiveArray<T>> {
        use datafusion::arrow::array::AsArray;
        self.col(name)?.as_primitive_opt().ok_or_else(|| bad(name))
    }
    fn boolean(&self, name: &str) -> Result<&'a datafusion::arrow::array::BooleanArray> {
        use datafusion::arrow::array::AsArray;
        self.col(name)?.as_boolean_opt().ok_or_else(|| bad(name))
    }
}

/// Read back one prompt's rows (full schema) written by [`to_batch`].
pub fn from_batch(batch: &RecordBatch) -> Result<PromptResult> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, Int32Type, Int64Type};
    if batch.num_rows() == 0 {
        return Err(bad("(no rows)"));
    }
    let c = Stored(batch);
    let (text, int32) = (|n| c.text(n), |n| c.number::<Int32Type>(n));
    let (prompt, preference, method) = (text("prompt")?, text("preference")?, text("method")?);
    let (layer, sample_index) = (int32("layer")?, int32("sample_index")?);
    let parent_index = int32("parent_index")?;
    let (feedback, response, answer) = (text("feedback")?, text("response")?, text("answer")?);
    let reward = c.number::<Float64Type>("reward")?;
    let rewards = c
        .col("rewards")?
        .as_map_opt()
        .ok_or_else(|| bad("rewards"))?;
    let is_best = c.boolean("is_best")?;
    let judge_wins = int32("judge_wins")?;
    let judge_consistent = c.number::<Float64Type>("judge_consistent")?;
    let duplicate_of = int32("duplicate_of")?;
    let finish_reason = text("finish_reason")?;
    let seed = c.number::<Int64Type>("seed")?;
    let (policy_model, reward_model) = (text("policy_model")?, text("reward_model")?);
    let (error, reference) = (text("error")?, text("reference")?);
    let verified = c.boolean("verified")?;
    let stopped = opt_text(text("stopped")?, 0)
        .map(|s| s.parse::<Stopped>().map_err(|_| bad("stopped")))
        .transpose()?;
    let method: Method = method.value(0).parse().map_err(|_| bad("method"))?;
    let candidates = (0..batch.num_rows())
        .map(|r| Candidate {
            layer: layer.value(r),
            sample_index: sample_index.value(r),
            parent_index: nullable(parent_index, r),
            feedback: opt_text(feedback, r),
            response: opt_text(response, r),
            answer: opt_text(answer, r),
            reward: nullable(reward, r),
            rewards: component_scores(rewards, r),
            verified: verified.is_valid(r).then(|| verified.value(r)),
            is_best: is_best.value(r),
            judge_wins: nullable(judge_wins, r),
            judge_consistent: nullable(judge_consistent, r),
            duplicate_of: nullable(duplicate_of, r),
            finish_reason: opt_text(finish_reason, r),
            seed: nullable(seed, r),
            error: opt_text(error, r),
        })
        .collect();
    Ok(PromptResult {
        id: ScalarValue::try_from_array(c.col("prompt_id")?, 0)?,
        prompt: opt_text(prompt, 0),
        preference: opt_text(preference, 0),
        method,
        policy_model: opt_text(policy_model, 0),
        reward_model: opt_text(reward_model, 0),
        reference: opt_text(reference, 0),
        stopped,
        candidates,
    })
}

/// Row `r` of a number column, `None` when null.
fn nullable<T: datafusion::arrow::datatypes::ArrowPrimitiveType>(
    a: &datafusion::arrow::array::PrimitiveArray<T>,
    r: usize,
) -> Option<T::Native> {
    use datafusion::arrow::array::Array;
    a.is_valid(r).then(|| a.value(r))
}

/// Row `r` of a text column, `None` when null.
fn opt_text(a: &datafusion::arrow::array::StringArray, r: usize) -> Option<String> {
    use datafusion::arrow::array::Array;
    a.is_valid(r).then(|| a.value(r).to_string())
}

/// Row `r` of a `rewards` column: each component's score by name; `None` when null.
fn component_scores(
    rewards: &datafusion::arrow::array::MapArray,
    r: usize,
) -> Option<std::collections::BTreeMap<String, f64>> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Float64Type;
    if rewards.is_null(r) {
        return None;
    }
    let entries = rewards.value(r);
    let names = entries.column(0).as_string_opt::<i32>()?;
    let scores = entries.column(1).as_primitive_opt::<Float64Type>()?;
    Some(
        (0..entries.len())
            .filter(|&i| scores.is_valid(i))
            .map(|i| (names.value(i).to_string(), scores.value(i)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_match() {
        let s = output_schema(&DataType::Int64);
        let names: Vec<_> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, COLUMNS);
    }

    #[test]
    fn batch_keeps_id_type_and_values() {
        let s = output_schema(&DataType::Int64);
        let r = PromptResult {
            id: ScalarValue::Int64(Some(9)),
            prompt: Some("p".into()),
            preference: None,
            method: Method::Random,
            policy_model: Some("m".into()),
            reward_model: Some("r".into()),
            reference: Some("42".into()),
            stopped: Some(Stopped::Uniform),
            candidates: vec![
                Candidate {
                    sample_index: 0,
                    reward: Some(1.0),
                    ..Default::default()
                },
                Candidate {
                    sample_index: 1,
                    response: Some("r <think>".into()),
                    answer: Some("r".into()),
                    reward: Some(2.0),
                    rewards: Some([("helpful".to_string(), 3.0), ("safe".to_string(), 0.5)].into()),
                    verified: Some(true),
                    is_best: true,
                    judge_wins: Some(2),
                    judge_consistent: Some(0.5),
                    duplicate_of: Some(0),
                    ..Default::default()
                },
            ],
        };
        let b = to_batch(&s, std::slice::from_ref(&r)).unwrap();
        assert_eq!(b.num_rows(), 2);
        let back = from_batch(&b).unwrap();
        assert_eq!(back.id, r.id);
        assert_eq!(back.candidates, r.candidates);
        assert_eq!(back.policy_model, r.policy_model);
        assert_eq!(back.reference, r.reference);
        assert_eq!(back.stopped, r.stopped);
        assert_eq!(b.column(0).data_type(), &DataType::Int64);
        assert_eq!(to_batch::<PromptResult>(&s, &[]).unwrap().num_rows(), 0);
    }
}
