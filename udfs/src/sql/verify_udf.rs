//! `verify(response, reference)`: whether a response's final answer matches a reference answer,
//! under the session's `prs.verifier` (`math` when it is `none`), `prs.answer_pattern` and
//! `prs.verify_timeout_ms`, so that any table of answers can be checked in SQL.
//!
//! True or false; null when the response or reference is null, or when the check could not
//! decide (it ran out of time, a number was too large): a guess is never made. The checks of a
//! batch run off the async runtime's worker threads.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::internal_err;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::config::{PrsConfig, Verifier};
use crate::verify::{verdict_column, Check};

/// The `verify` function, ready to register.
pub fn verify_udf() -> ScalarUDF {
    AsyncScalarUDF::new(Arc::new(VerifyUdf {
        signature: Signature::one_of(vec![TypeSignature::String(2)], Volatility::Immutable),
    }))
    .into_scalar_udf()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct VerifyUdf {
    signature: Signature,
}

impl ScalarUDFImpl for VerifyUdf {
    fn name(&self) -> &str {
        "verify"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        internal_err!("verify() is asynchronous and runs through invoke_async_with_args")
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for VerifyUdf {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let cfg = PrsConfig::from_session(&args.config_options)?;
        let check = Arc::new(Check::from_config(&cfg, Verifier::Math)?);
        let rows = args.number_rows;
        let texts = args
            .args
            .iter()
            .map(|a| Ok(cast(&a.to_array(rows)?, &DataType::Utf8)?))
            .collect::<DfResult<Vec<_>>>()?;
        let (response, reference) = (texts[0].as_string::<i32>(), texts[1].as_string::<i32>());
        let values = verdict_column(check, response, reference, "verify()").await;
        Ok(ColumnarValue::Array(Arc::new(values)))
    }
}
