//! Durable resume: each finished prompt's candidates are written to
//! `{checkpoint_dir}/{call fingerprint}/{key}.parquet` (temporary file, fsync,
//! rename, fsync of the directory) before its rows are emitted. Re-running the same query serves
//! those prompts from disk without any request.
//!
//! The call fingerprint hashes everything that determines a prompt's output (method, widths,
//! feedback, sampling settings, models, templates, seed, ...); the prompt key adds the prompt's
//! id, text and preference. A file that cannot be read, whose recorded key differs from its
//! name, or whose checksum does not match its rows is ignored (with a warning) and the prompt
//! is redone: a checkpoint never yields wrong rows. Prompts with failed candidates are not
//! stored, so a re-run retries them. The files are plain Parquet:
//! `CREATE EXTERNAL TABLE ck STORED AS PARQUET LOCATION '{checkpoint_dir}/{fingerprint}/'` reads them.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use datafusion::arrow::array::{new_null_array, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

use crate::error::{PrsError, Result};
use crate::sampler::PromptInput;
use crate::schema::{from_batch, to_batch, PromptResult};

const KEY_META: &str = "prs.key";
const CHECKSUM_META: &str = "prs.checksum";

/// Hex SHA-256 of the given parts, each length-prefixed (so parts cannot run together).
pub fn hash_parts(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of one prompt under a call fingerprint (also the single-flight key).
pub fn prompt_key(call_fingerprint: &str, input: &PromptInput) -> String {
    let mut parts = vec![
        call_fingerprint,
        &input.id_text,
        input.prompt.as_deref().unwrap_or("\u{0}null"),
        input.preference.as_deref().unwrap_or("\u{0}null"),
        if input.preference_per_row {
            "row"
        } else {
            "default"
        },
    ];
    // a new reference is a new verdict; a prompt without one keeps the key it always had
    if let Some(reference) = &input.reference {
        parts.extend(["reference", reference]);
    }
    hash_parts(&parts)
}

/// The checkpoint store of one sampling call.
#[derive(Debug)]
pub struct Checkpoint {
    root: PathBuf,
    dir: PathBuf,
    fingerprint: String,
    /// What the fingerprint stands for, written to `call.json` for people.
    description: serde_json::Value,
    prepared: OnceLock<std::result::Result<(), String>>,
}

impl Checkpoint {
    pub fn new(root: &str, fingerprint: &str, description: serde_json::Value) -> Self {
        let root = PathBuf::from(root);
        Checkpoint {
            dir: root.join(fingerprint),
            root,
            fingerprint: fingerprint.to_string(),
            description,
            prepared: OnceLock::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Create the directory and check that it is writable (once; before any request).
    pub fn prepare(&self) -> Result<()> {
        self.prepared
            .get_or_init(|| self.prepare_once().map_err(|e| e.to_string()))
            .clone()
            .map_err(|reason| PrsError::Input {
                source_name: format!("prs.checkpoint_dir {}", self.root.display()),
                reason,
            })
    }

    fn prepare_once(&self) -> std::io::Result<()> {
        let other_configs = fs::read_dir(&self.root)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("call.json").exists())
                    .filter(|e| e.file_name().to_string_lossy() != self.fingerprint)
                    .count()
            })
            .unwrap_or(0);
        let fresh = !self.dir.exists();
        // (durable names: a checkpoint file in a directory lost to a crash is lost with it)
        super::atomic::create_dir_all_durable(&self.dir)
            .map_err(|e| annotate(e, "cannot create the directory"))?;
        let probe = self.dir.join(format!(".probe-{}", std::process::id()));
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"ok"))
            .map_err(|e| annotate(e, "the directory is not writable"))?;
        let _ = fs::remove_file(&probe);
        let call = serde_json::to_vec_pretty(&self.description).unwrap_or_default();
        super::atomic::write(&self.dir.join("call.json"), &call)?;
        if fresh && other_configs > 0 {
            tracing::warn!(
                "checkpoint_dir {} holds results of {other_configs} other configuration(s); this \
                 configuration (fingerprint {}) is new, so nothing is reused",
                self.root.display(),
                &self.fingerprint[..16]
            );
        }
        Ok(())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.parquet"))
    }

    /// The stored result for `key`, if there is a sound one.
    pub fn load(&self, key: &str, schema: &SchemaRef) -> Option<PromptResult> {
        let path = self.path(key);
        if !path.exists() {
            return None;
        }
        match read(&path, key, schema) {
            Ok(r) => Some(r),
            Err(reason) => {
                tracing::warn!(
                    "ignoring checkpoint file {} ({reason}); the prompt is sampled again",
                    path.display()
                );
                None
            }
        }
    }

    /// Persist `result` durably under `key`.
    pub fn store(&self, key: &str, schema: &SchemaRef, result: &PromptResult) -> Result<()> {
        let path = self.path(key);
        let fail = |e: String| PrsError::Input {
            source_name: format!("prs.checkpoint_dir {}", self.root.display()),
            reason: format!("cannot write {}: {e}", path.display()),
        };
        let batch = to_batch(schema, std::slice::from_ref(result))?;
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![
                KeyValue::new(KEY_META.to_string(), key.to_string()),
                KeyValue::new(CHECKSUM_META.to_string(), checksum(result)),
            ]))
            .build();
        let mut buf = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props))
            .map_err(|e| fail(e.to_string()))?;
        writer.write(&batch).map_err(|e| fail(e.to_string()))?;
        writer.close().map_err(|e| fail(e.to_string()))?;
        if let Some(parent) = path.parent() {
            super::atomic::create_dir_all_durable(parent).map_err(|e| fail(e.to_string()))?;
        }
        super::atomic::write(&path, &buf).map_err(|e| fail(e.to_string()))
    }
}

fn annotate(e: std::io::Error, what: &str) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn read(path: &Path, key: &str, schema: &SchemaRef) -> std::result::Result<PromptResult, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let meta: HashMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .filter_map(|k| k.value.clone().map(|v| (k.key.clone(), v)))
                .collect()
        })
        .unwrap_or_default();
    if meta.get(KEY_META).map(String::as_str) != Some(key) {
        return Err("its recorded key does not match its name".into());
    }
    let reader = builder.build().map_err(|e| e.to_string())?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if batches.is_empty() {
        return Err("no rows".into());
    }
    let batch = concat_batches(&batches[0].schema(), &batches).map_err(|e| e.to_string())?;
    let batch = with_added_columns(batch, schema)?;
    if batch.schema().fields().len() != schema.fields().len() {
        return Err("its columns are not this version's output schema".into());
    }
    let batch = batch
        .with_schema(schema.clone())
        .map_err(|e| format!("its schema differs: {e}"))?;
    let result = from_batch(&batch).map_err(|e| e.to_string())?;
    if meta.get(CHECKSUM_META) != Some(&checksum(&result)) {
        return Err("checksum mismatch".into());
    }
    Ok(result)
}

/// Columns added to the output after checkpoints were first written: a prompt stored without
/// them gets them null, so that an upgrade keeps the checkpoints of calls that do not use them.
const ADDED_LATER: &[&str] = &["rewards", "judge_wins", "judge_consistent"];

/// `batch` with the [`ADDED_LATER`] columns it lacks, null, where `schema` has them.
fn with_added_columns(
    batch: RecordBatch,
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, String> {
    let stored = batch.schema();
    if ADDED_LATER.iter().all(|n| stored.index_of(n).is_ok()) {
        return Ok(batch);
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        match stored.index_of(field.name()) {
            Ok(i) => columns.push(batch.column(i).clone()),
            Err(_) if ADDED_LATER.contains(&field.name().as_str()) => {
                columns.push(new_null_array(field.data_type(), batch.num_rows()))
            }
            Err(_) => return Err(format!("it has no column {}", field.name())),
        }
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// A checksum over every value of a stored prompt.
fn checksum(r: &PromptResult) -> String {
    let text = serde_json::to_string(&(
        r.id.to_string(),
        &r.prompt,
        &r.preference,
        r.method.as_str(),
        &r.policy_model,
        &r.reward_model,
        &r.candidates,
    ))
    .unwrap_or_default();
    hash_parts(&[&text])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::{Candidate, Method};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;

    #[test]
    fn a_prompt_stored_before_the_newer_columns_is_still_read() {
        let schema = crate::schema::output_schema(&DataType::Int64);
        let stored = PromptResult {
            id: ScalarValue::Int64(Some(3)),
            prompt: Some("p".into()),
            preference: None,
            method: Method::Prs,
            policy_model: Some("m".into()),
            reward_model: Some("r".into()),
            reference: None,
            stopped: None,
            candidates: vec![Candidate {
                sample_index: 0,
                reward: Some(1.5),
                is_best: true,
                ..Candidate::default()
            }],
        };
        let batch = to_batch(&schema, std::slice::from_ref(&stored)).unwrap();
        // the file an older version wrote: the same columns without the added ones
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|&i| !ADDED_LATER.contains(&schema.field(i).name().as_str()))
            .collect();
        let old = batch.project(&keep).unwrap();
        assert_eq!(old.num_columns() + ADDED_LATER.len(), schema.fields().len());
        let read = from_batch(&with_added_columns(old, &schema).unwrap()).unwrap();
        assert_eq!(read.candidates, stored.candidates);
        assert_eq!(
            checksum(&read),
            checksum(&stored),
            "its checksum still matches"
        );
        // a file missing another column is not this version's
        let other = batch.project(&[0, 1, 2]).unwrap();
        assert!(with_added_columns(other, &schema).is_err());
    }
}
