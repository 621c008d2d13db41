//! What every function's `main` shares: the classified error as Lambda reports it.

use crate::error::Error;
use lambda_runtime::Diagnostic;

/// A classified failure as Lambda reports it: `errorType` is `<Kind>.<retryable|permanent>`
/// (for example `InvalidInput.permanent`), `errorMessage` the error's text.
#[derive(Debug)]
pub(crate) struct FunctionError(pub Error);

impl From<Error> for FunctionError {
    fn from(e: Error) -> Self {
        FunctionError(e)
    }
}

impl From<FunctionError> for Diagnostic {
    fn from(e: FunctionError) -> Self {
        Diagnostic {
            error_type: format!("{}.{}", e.0.kind(), e.0.retry()),
            error_message: e.0.to_string(),
        }
    }
}
