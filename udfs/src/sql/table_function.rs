//! `random_sample(source, n [, options])` and `prs_sample(source, n [, options])`: the table
//! functions turn their SQL arguments into a [`SampleCall`] and return its [`SampleTable`].
//!
//! The call runs at planning (also for EXPLAIN / DESCRIBE): it checks the arguments and
//! settings, reads the input schema and returns a provider with a fixed output schema.
//! No endpoint is called until the plan executes.

use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;

use super::call::SampleCall;
use super::source;
use super::table_provider::SampleTable;
use crate::config::PrsConfig;
use crate::error::{PrsError, Result};
use crate::sampler::Method;

/// The table function for one sampling method.
#[derive(Debug)]
pub struct SampleFunction {
    method: Method,
    /// Plans are sent to other machines: the source must be files they can read.
    distributed: bool,
    /// Settings of a host whose session cannot hold the `prs` extension (one across an FFI
    /// boundary, as DataFusion's Python package): used instead of the session's.
    settings: Option<PrsConfig>,
}

impl SampleFunction {
    pub fn new(method: Method) -> Self {
        SampleFunction {
            method,
            distributed: false,
            settings: None,
        }
    }

    /// The function with fixed settings, whatever the calling session holds (a host that
    /// cannot install the `prs` config extension); per-call options still apply.
    pub fn with_settings(method: Method, settings: PrsConfig) -> Self {
        SampleFunction {
            method,
            distributed: false,
            settings: Some(settings),
        }
    }

    /// The function for a client whose plans run on other machines (a cluster): sources that
    /// are tables of the client's session are refused at planning.
    pub fn distributed(method: Method) -> Self {
        SampleFunction {
            method,
            distributed: true,
            settings: None,
        }
    }
}

/// A string literal argument of a table function (any of the string types).
pub fn literal_string(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _)
        | Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _)
        | Expr::Literal(ScalarValue::Utf8View(Some(s)), _) => Some(s.clone()),
        _ => None,
    }
}

fn literal_n(e: &Expr, function: &str) -> Result<i64> {
    let bad = |what: String| {
        PrsError::arg(
            function,
            format!("n (the second argument) must be a positive integer literal, got {what}"),
        )
    };
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Int8(Some(x)) => Ok(*x as i64),
            ScalarValue::Int16(Some(x)) => Ok(*x as i64),
            ScalarValue::Int32(Some(x)) => Ok(*x as i64),
            ScalarValue::Int64(Some(x)) => Ok(*x),
            ScalarValue::UInt8(Some(x)) => Ok(*x as i64),
            ScalarValue::UInt16(Some(x)) => Ok(*x as i64),
            ScalarValue::UInt32(Some(x)) => Ok(*x as i64),
            ScalarValue::UInt64(Some(x)) => i64::try_from(*x).map_err(|_| bad(x.to_string())),
            other => Err(bad(format!("{other} ({})", other.data_type()))),
        },
        other => Err(bad(format!("the expression {other}"))),
    }
}

/// The source argument of a table function (the first): a string literal.
pub(crate) fn source_arg(e: &Expr, function: &str) -> Result<String> {
    literal_string(e).ok_or_else(|| {
        PrsError::arg(
            function,
            "the source (first argument) must be a string literal: a Parquet path, glob or table name",
        )
    })
}

/// The settings of one call: `fixed` (a host whose session cannot hold the `prs` extension) or
/// the session's, with the call's options string (its last argument, a literal) over them.
pub(crate) fn call_settings(
    fixed: Option<&PrsConfig>,
    args: &TableFunctionArgs,
    options: Option<&Expr>,
    function: &str,
) -> Result<PrsConfig> {
    let options = match options {
        None => String::new(),
        Some(e) => literal_string(e).ok_or_else(|| {
            PrsError::arg(
                function,
                "options (the last argument) must be a string literal like 'temperature=0.7, reward_batch_size=16'",
            )
        })?,
    };
    let base = match fixed {
        Some(settings) => settings.clone(),
        None => PrsConfig::from_session(args.session().config_options())?,
    };
    base.with_options(&options, function)
}

impl SampleFunction {
    fn plan(&self, args: &TableFunctionArgs) -> Result<SampleTable> {
        let f = self.method.function_name();
        let exprs = args.exprs();
        if !(2..=3).contains(&exprs.len()) {
            return Err(PrsError::arg(
                f,
                format!(
                    "expected {f}(source, n [, options]), got {} argument(s)",
                    exprs.len()
                ),
            ));
        }
        let source_name = source_arg(&exprs[0], f)?;
        if self.distributed && !source::looks_like_path(&source_name) {
            return Err(PrsError::Input {
                source_name,
                reason: source::NOT_PORTABLE.into(),
            });
        }
        let n = literal_n(&exprs[1], f)?;
        let cfg = call_settings(self.settings.as_ref(), args, exprs.get(2), f)?;
        if n <= 0 {
            return Err(PrsError::arg(f, format!("n must be at least 1, got {n}")));
        }
        let call = SampleCall::new(self.method, source_name, n as usize, cfg)?;
        SampleTable::new(args.session(), call)
    }
}

impl TableFunctionImpl for SampleFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        Ok(Arc::new(self.plan(&args)?))
    }
}
