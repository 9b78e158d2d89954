//! `datafusion_prs._native`: the prs table functions for DataFusion's Python package, through
//! the DataFusion FFI (`datafusion-ffi`, the version the `datafusion` 55 wheel is built with).
//!
//! * [`Settings`]: a validated `PrsConfig` (defaults, then `PRS_*` environment variables, then
//!   keywords), with the CLI's error texts;
//! * [`SampleFunction`]: `random_sample` / `prs_sample` / `prs_score` with those settings,
//!   handed to `SessionContext.register_udtf` as a `datafusion_table_function` capsule;
//! * [`Simulator`]: the built-in simulator, for notebooks and tests without a GPU.
//!
//! The functions' work (HTTP requests, timers) runs on a tokio runtime this module owns: the
//! FFI enters it around every call and every poll of our streams. No panic crosses the
//! boundary: planning is guarded here, and the execution streams catch their own.

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::{Arc, OnceLock};

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion_ffi::proto::logical_extension_codec::FFI_LogicalExtensionCodec;
use datafusion_ffi::udtf::FFI_TableFunction;
use datafusion_prs::{
    Method, PrsConfig, SampleFunction as PrsFunction, ScoreFunction, SCORE_FUNCTION_NAME,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict};

const TABLE_FUNCTION_CAPSULE: &CStr = c"datafusion_table_function";
const CODEC_CAPSULE: &CStr = c"datafusion_logical_extension_codec";

/// The runtime the functions' requests run on, started on first use.
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("prs-python")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the prs runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| PyRuntimeError::new_err(e.clone()))
}

/// Validated settings: every `prs.*` setting, as the CLI and SQL know them.
#[pyclass(module = "datafusion_prs._native", frozen, skip_from_py_object)]
#[derive(Clone)]
struct Settings(PrsConfig);

#[pymethods]
impl Settings {
    /// Defaults, then `PRS_*` environment variables (when `env`), then `values` (name to text).
    #[new]
    #[pyo3(signature = (values, env = true))]
    fn new(values: Vec<(String, String)>, env: bool) -> PyResult<Self> {
        let mut cfg = match env {
            true => PrsConfig::from_env(),
            false => Ok(PrsConfig::default()),
        }
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
        for (key, value) in values {
            cfg.set_checked(&key, &value, "datafusion_prs.register")
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
        }
        Ok(Settings(cfg))
    }

    /// Every setting as `{name: value}` (names without the `prs.` prefix).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        use datafusion::config::ExtensionOptions;
        let out = PyDict::new(py);
        // the shown entries: a URL's credentials stay out of notebooks
        for entry in self.0.entries() {
            let key = entry.key.strip_prefix("prs.").unwrap_or(&entry.key);
            out.set_item(key, entry.value)?;
        }
        Ok(out)
    }
}

/// A table function whose planning may not unwind across the FFI.
#[derive(Debug)]
struct Guarded(Arc<dyn TableFunctionImpl>);

impl TableFunctionImpl for Guarded {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        catch_unwind(AssertUnwindSafe(|| self.0.call_with_args(args))).unwrap_or_else(|_| {
            Err(DataFusionError::Execution(
                "prs: planning the call panicked; this is a bug, please report it".into(),
            ))
        })
    }
}

/// `random_sample`, `prs_sample` or `prs_score` with fixed settings, for
/// `SessionContext.register_udtf`.
#[pyclass(module = "datafusion_prs._native", frozen)]
struct SampleFunction {
    /// `None`: `prs_score`.
    method: Option<Method>,
    settings: PrsConfig,
}

#[pymethods]
impl SampleFunction {
    #[new]
    fn new(name: &str, settings: &Settings) -> PyResult<Self> {
        let method = match name {
            SCORE_FUNCTION_NAME => None,
            _ => Some(
                Method::ALL
                    .into_iter()
                    .find(|m| m.function_name() == name || m.as_str() == name)
                    .ok_or_else(|| {
                        PyValueError::new_err(format!(
                            "no prs table function {name:?}; expected random_sample, prs_sample or prs_score"
                        ))
                    })?,
            ),
        };
        Ok(SampleFunction {
            method,
            settings: settings.0.clone(),
        })
    }

    /// The SQL name.
    #[getter]
    fn name(&self) -> &'static str {
        match self.method {
            Some(method) => method.function_name(),
            None => SCORE_FUNCTION_NAME,
        }
    }

    /// The capsule `datafusion.udtf` takes; `session` carries the codec of the calling
    /// context.
    fn __datafusion_table_function__<'py>(
        &self,
        py: Python<'py>,
        session: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let codec = logical_codec(session)?;
        let settings = self.settings.clone();
        let function: Arc<dyn TableFunctionImpl> = match self.method {
            Some(method) => Arc::new(PrsFunction::with_settings(method, settings)),
            None => Arc::new(ScoreFunction::with_settings(settings)),
        };
        let handle = runtime()?.handle().clone();
        let ffi =
            FFI_TableFunction::new_with_ffi_codec(Arc::new(Guarded(function)), Some(handle), codec);
        PyCapsule::new_with_value(py, ffi, TABLE_FUNCTION_CAPSULE)
    }
}

/// The logical codec of the calling session: from its `__datafusion_logical_extension_codec__`
/// or the capsule itself.
fn logical_codec(session: Bound<'_, PyAny>) -> PyResult<FFI_LogicalExtensionCodec> {
    let attr = "__datafusion_logical_extension_codec__";
    let capsule = match session.hasattr(attr)? {
        true => session.getattr(attr)?.call0()?,
        false => session,
    };
    let capsule = capsule.cast::<PyCapsule>().map_err(|_| {
        PyValueError::new_err(
            "expected a datafusion SessionContext (or its logical extension codec capsule); \
             is the datafusion package version 55?",
        )
    })?;
    let data: NonNull<FFI_LogicalExtensionCodec> =
        capsule.pointer_checked(Some(CODEC_CAPSULE))?.cast();
    // SAFETY: the capsule was checked to hold this type under its name, and lives while we
    // clone from it
    Ok(unsafe { data.as_ref() }.clone())
}

/// The built-in simulator (NOT a model: deterministic word salad and a toy reward), on
/// 127.0.0.1 and a free port, until `stop()` or until it is dropped.
#[pyclass(module = "datafusion_prs._native")]
struct Simulator {
    handle: Option<prs_sim::SimHandle>,
}

#[pymethods]
impl Simulator {
    #[new]
    #[pyo3(signature = (repeat_share = 0.0, think = false, math = false, hostile_share = 0.0))]
    fn new(
        py: Python<'_>,
        repeat_share: f64,
        think: bool,
        math: bool,
        hostile_share: f64,
    ) -> PyResult<Self> {
        let rt = runtime()?;
        let style = prs_sim::TextStyle {
            repeat_share,
            think,
            math,
            hostile_share,
            ..Default::default()
        };
        let handle = py
            .detach(|| rt.block_on(prs_sim::start_with(([127, 0, 0, 1], 0).into(), None, style)))
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the simulator: {e}")))?;
        Ok(Simulator {
            handle: Some(handle),
        })
    }

    /// The policy base URL (`http://127.0.0.1:PORT/v1`).
    #[getter]
    fn policy_url(&self) -> PyResult<String> {
        Ok(self.running()?.policy_url())
    }

    /// The reward base URL.
    #[getter]
    fn reward_url(&self) -> PyResult<String> {
        Ok(self.running()?.reward_url())
    }

    /// The settings that point the functions at this simulator.
    fn settings(&self) -> PyResult<std::collections::BTreeMap<&'static str, String>> {
        let sim = self.running()?;
        Ok(std::collections::BTreeMap::from([
            ("policy_url", sim.policy_url()),
            ("reward_url", sim.reward_url()),
            ("policy_model", prs_sim::SIM_MODEL.to_string()),
            ("reward_model", prs_sim::SIM_REWARD_MODEL.to_string()),
        ]))
    }

    /// Requests answered so far: `{"policy": n, "reward": m}`.
    fn requests(&self) -> PyResult<std::collections::BTreeMap<&'static str, u64>> {
        let (policy, reward) = self.running()?.requests.counts();
        Ok(std::collections::BTreeMap::from([
            ("policy", policy),
            ("reward", reward),
        ]))
    }

    fn stop(&mut self) {
        self.handle = None;
    }
}

impl Simulator {
    fn running(&self) -> PyResult<&prs_sim::SimHandle> {
        self.handle
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("the simulator was stopped"))
    }
}

/// The statements of a script (separated by `;` outside strings and comments), as written.
#[pyfunction]
fn split_statements(script: &str) -> PyResult<Vec<String>> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, script)
        .tokenize_with_location()
        .map_err(|e| PyValueError::new_err(format!("cannot read the SQL: {e}")))?;
    // (line, column) of each `;`, 1-based, columns in characters
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(script.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = |line: u64, column: u64| -> usize {
        let start = line_starts
            .get((line as usize).saturating_sub(1))
            .copied()
            .unwrap_or(script.len());
        script[start..]
            .char_indices()
            .nth((column as usize).saturating_sub(1))
            .map_or(script.len(), |(i, _)| start + i)
    };
    let mut out = Vec::new();
    let mut from = 0;
    let ends = tokens
        .iter()
        .filter(|t| t.token == Token::SemiColon)
        .map(|t| offset(t.span.start.line, t.span.start.column))
        .chain(std::iter::once(script.len()));
    for end in ends {
        let statement = script[from..end].trim();
        if !statement.is_empty() && !only_comments(statement) {
            out.push(statement.to_string());
        }
        from = (end + 1).min(script.len());
    }
    Ok(out)
}

/// Whether `text` holds nothing but `--` comments and blank lines.
fn only_comments(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with("--"))
}

/// Write the page of `prs report` for a table of candidates; returns the path written.
#[pyfunction]
#[pyo3(signature = (candidates, output, summary = None, pairs = None))]
fn report(
    py: Python<'_>,
    candidates: std::path::PathBuf,
    output: std::path::PathBuf,
    summary: Option<std::path::PathBuf>,
    pairs: Option<std::path::PathBuf>,
) -> PyResult<String> {
    let rt = runtime()?;
    let args = prs_report::Report {
        candidates,
        output,
        summary,
        pairs,
    };
    let written = py
        .detach(|| rt.block_on(prs_report::run(&args)))
        .map_err(PyValueError::new_err)?;
    Ok(written.display().to_string())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(split_statements, m)?)?;
    m.add_function(wrap_pyfunction!(report, m)?)?;
    m.add_class::<Settings>()?;
    m.add_class::<SampleFunction>()?;
    m.add_class::<Simulator>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
