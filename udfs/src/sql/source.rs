//! Resolving the first argument of the sampling functions: a Parquet file, directory or glob,
//! or the name of a table registered in the session. Planning reads only the schema.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};

use crate::config::PrsConfig;
use crate::error::{PrsError, Result};

/// Which input columns a call reads.
#[derive(Debug, Clone, PartialEq)]
pub struct InputColumns {
    pub prompt: String,
    /// `None`: ids are derived from the prompt text.
    pub id: Option<String>,
    /// `None`: every row gets the default preference.
    pub preference: Option<String>,
    /// The reference answers (`None`: the table has none).
    pub reference: Option<String>,
    /// Type of the output `prompt_id`.
    pub id_type: DataType,
}

fn err(source: &str, reason: impl Into<String>) -> PrsError {
    PrsError::Input {
        source_name: source.to_string(),
        reason: reason.into(),
    }
}

/// Run an async catalog or listing call from the synchronous planning hook: on a scoped thread
/// with its own small runtime, so it works whatever runtime (if any) the caller is on.
fn run_blocking<F, T>(fut: F) -> Result<T>
where
    F: Future<Output = Result<T>> + Send,
    T: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| err("(planning)", format!("cannot start a runtime: {e}")))?;
                rt.block_on(fut)
            })
            .join()
            .map_err(|_| err("(planning)", "schema lookup thread panicked"))?
    })
}

/// Why a session table cannot be the source of a call that runs on other machines.
pub(crate) const NOT_PORTABLE: &str = "a table of this session cannot be sent to other machines; \
     on a cluster give a Parquet file, directory or glob that the scheduler and every executor \
     can read at the same path";

/// Whether `source` names files (a path, directory or glob) rather than a session table.
pub fn looks_like_path(source: &str) -> bool {
    source.contains('/')
        || source.contains('\\')
        || source.contains('*')
        || source.ends_with(".parquet")
        || Path::new(source).exists()
}

/// A relative path (file, directory or glob) made absolute against the current directory;
/// empty text and absolute paths are returned as they are. For the plan codecs: a path
/// travels to other nodes as the client meant it.
#[cfg(feature = "proto")]
pub fn absolute(path: &str) -> String {
    let trimmed = path.trim();
    if !trimmed.is_empty() && Path::new(trimmed).is_relative() {
        if let Ok(cwd) = std::env::current_dir() {
            return cwd.join(trimmed).display().to_string();
        }
    }
    path.to_string()
}

/// The provider for `source`.
pub fn resolve(session: &dyn Session, source: &str) -> Result<Arc<dyn TableProvider>> {
    let source = source.trim();
    if source.is_empty() {
        return Err(err(
            "''",
            "the source is empty; give a Parquet path or a table name",
        ));
    }
    let Some(state) = session.as_any().downcast_ref::<SessionState>() else {
        // a host across an FFI boundary (DataFusion's Python package): its tables are out of
        // reach, its files are not
        if !looks_like_path(source) {
            return Err(err(
                source,
                "the tables of this host's session cannot be read from here (a Python \
                 SessionContext, say); give a Parquet file, directory or glob (write a table \
                 with df.write_parquet(...))",
            ));
        }
        return listing(&SessionStateBuilder::new().build(), source);
    };
    let state = state.clone();
    if !looks_like_path(source) {
        let schema = state.schema_for_ref(source);
        let name = datafusion::common::TableReference::from(source)
            .table()
            .to_string();
        if let Ok(schema) = schema {
            let found =
                run_blocking(async move { schema.table(&name).await.map_err(PrsError::from) })?;
            if let Some(table) = found {
                return Ok(table);
            }
        }
        return Err(err(
            source,
            "no table of that name is registered and no such file exists; give a Parquet file, \
             directory or glob, or register the table first (CREATE EXTERNAL TABLE ... STORED AS PARQUET)",
        ));
    }
    listing(&state, source)
}

/// A Parquet file, directory or glob as a table (its schema read now).
fn listing(state: &SessionState, source: &str) -> Result<Arc<dyn TableProvider>> {
    let state = state.clone();
    let is_glob = source.contains('*') || source.contains('?') || source.contains('[');
    let path = Path::new(source);
    if !is_glob && !path.exists() {
        return Err(err(source, "file or directory not found"));
    }
    let mut url_text = source.to_string();
    if path.is_dir() && !url_text.ends_with('/') {
        url_text.push('/');
    }
    let url = ListingTableUrl::parse(&url_text)
        .map_err(|e| err(source, format!("not a usable path: {e}")))?;
    // A single file is read whatever its extension; directories and globs take *.parquet.
    let ext = if path.is_file() { "" } else { ".parquet" };
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(ext);
    let source_owned = source.to_string();
    let (options, url, schema) = run_blocking(async move {
        let schema = options
            .infer_schema(&state, &url)
            .await
            .map_err(|e| describe_read_error(&source_owned, e))?;
        Ok((options, url, schema))
    })?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

fn describe_read_error(source: &str, e: datafusion::error::DataFusionError) -> PrsError {
    let text = e.to_string();
    if text.contains("No files found") {
        err(source, "no Parquet files found there")
    } else if text.contains("magic") || text.contains("Parquet") || text.contains("parquet") {
        err(source, format!("not a readable Parquet file ({text})"))
    } else {
        err(source, text)
    }
}

/// A string type, or a dictionary of one (pandas categoricals, Spark and Polars write those).
fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_text(values),
        _ => false,
    }
}

/// The type ids are output as: their own, but a dictionary's values for a dictionary.
fn id_output_type(t: &DataType) -> DataType {
    match t {
        DataType::Dictionary(_, values) => id_output_type(values),
        other => other.clone(),
    }
}

/// The input columns a call names (`prs.prompt_column`, `id_column`, `preference_column`,
/// `response_column`), as given: empty means the defaults.
#[derive(Debug, Clone)]
pub(crate) struct ColumnSettings {
    pub prompt: String,
    pub id: String,
    pub preference: String,
    pub response: String,
    pub reference: String,
}

impl ColumnSettings {
    /// The column settings of `cfg`.
    pub fn from_config(cfg: &PrsConfig) -> Self {
        ColumnSettings {
            prompt: cfg.prompt_column.clone(),
            id: cfg.id_column.clone(),
            preference: cfg.preference_column.clone(),
            response: cfg.response_column.clone(),
            reference: cfg.reference_column.clone(),
        }
    }
}

/// The response column `prs_score` scores: `prs.response_column`, or `response`.
pub fn response_column(source: &str, schema: &SchemaRef, cfg: &ColumnSettings) -> Result<String> {
    text_column(
        source,
        schema,
        "response",
        "response_column",
        &cfg.response,
        &["response"],
    )?
    .ok_or_else(|| {
        err(
            source,
            format!(
                "no response column: expected `response` (or set prs.response_column); columns found: {}",
                found(schema)
            ),
        )
    })
}

/// The columns of `schema`, for messages.
fn found(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} ({})", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text column that `prs.<setting>` names (it must exist), or without it the first of
/// `defaults` that the table has.
fn text_column(
    source: &str,
    schema: &SchemaRef,
    what: &str,
    setting: &str,
    configured: &str,
    defaults: &[&str],
) -> Result<Option<String>> {
    let name = match configured.trim() {
        "" => defaults
            .iter()
            .find(|c| schema.field_with_name(c).is_ok())
            .map(|c| c.to_string()),
        c if schema.field_with_name(c).is_ok() => Some(c.to_string()),
        c => {
            return Err(err(
                source,
                format!(
                    "{what} column {c:?} (prs.{setting}) not found; columns found: {}",
                    found(schema)
                ),
            ))
        }
    };
    if let Some(field) = name.as_deref().and_then(|n| schema.field_with_name(n).ok()) {
        if !is_text(field.data_type()) {
            return Err(err(
                source,
                format!(
                    "{what} column {:?} is {}, not a string",
                    field.name(),
                    field.data_type()
                ),
            ));
        }
    }
    Ok(name)
}

/// Pick the prompt, id and preference columns of `schema` according to the settings.
pub fn columns(source: &str, schema: &SchemaRef, cfg: &ColumnSettings) -> Result<InputColumns> {
    let defaults = ["prompt", "instruction"];
    let prompt = text_column(source, schema, "prompt", "prompt_column", &cfg.prompt, &defaults)?
        .ok_or_else(|| {
            err(
                source,
                format!(
                    "no prompt column: expected `prompt` or `instruction` (or set prs.prompt_column); columns found: {}",
                    found(schema)
                ),
            )
        })?;
    let preference = text_column(
        source,
        schema,
        "preference",
        "preference_column",
        &cfg.preference,
        &["preference"],
    )?;
    let id_name = cfg.id.trim();
    let (id, id_type) = match schema
        .field_with_name(id_name)
        .ok()
        .filter(|_| !id_name.is_empty())
    {
        Some(f) => (Some(id_name.to_string()), id_output_type(f.data_type())),
        None => (None, DataType::Utf8),
    };
    Ok(InputColumns {
        prompt,
        id,
        preference,
        reference: reference_column(source, schema, &cfg.reference)?,
        id_type,
    })
}

/// The reference-answer column: `prs.reference_column`, else `reference` if present. Any
/// type that reads as text (numbers too: a reference is often `579`).
fn reference_column(source: &str, schema: &SchemaRef, configured: &str) -> Result<Option<String>> {
    let name = match configured.trim() {
        "" if schema.field_with_name("reference").is_ok() => "reference",
        "" => return Ok(None),
        c => c,
    };
    let field = schema.field_with_name(name).map_err(|_| {
        err(
            source,
            format!(
                "reference column {name:?} (prs.reference_column) not found; columns found: {}",
                found(schema)
            ),
        )
    })?;
    if !datafusion::arrow::compute::can_cast_types(field.data_type(), &DataType::Utf8) {
        return Err(err(
            source,
            format!(
                "reference column {name:?} is {}, which does not read as text",
                field.data_type()
            ),
        ));
    }
    Ok(Some(name.to_string()))
}
