//! One error type for the whole domain. Every variant says whether trying again later can help,
//! which decides between "report a batch item failure so SQS redelivers it" and "park it".

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::fmt;

/// Whether a failure can succeed on a later attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retry {
    /// Try again later (throttling, 5xx, a role not assumable yet, a grant still in workflow).
    Retryable,
    /// The same input will fail the same way: fix the event, the configuration or the account.
    Permanent,
}

/// The classified failures of ct-entitlements.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event or request could not be understood. Nothing was called.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A configuration value is malformed (names the variable) or does not match what the
    /// management account holds.
    #[error("configuration error: {0}")]
    Config(String),
    /// The account is not (or no longer) an active member of the organization.
    #[error("account {account} is not an active member of the organization: {reason}")]
    NotInOrganization { account: String, reason: String },
    /// The execution role in the member account could not be assumed.
    #[error("cannot assume {role_arn}: {message}")]
    AssumeRole {
        role_arn: String,
        message: String,
        retry: Retry,
    },
    /// An AWS call failed.
    #[error("{service}:{operation} failed: {code}: {message}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        code: String,
        message: String,
        retry: Retry,
    },
    /// Activation refused because the account already has an active license for the product
    /// from another subscription.
    #[error("{0}; set ACTIVATION_OVERRIDE_BEHAVIOR=ALL_GRANTS_PERMITTED_BY_ISSUER to replace the other grant")]
    ActiveLicenseConflict(String),
    /// A grant did not become active before the configured deadline.
    #[error("grant {grant_arn} still {status} after the {deadline_secs}s deadline")]
    WorkflowDeadline {
        grant_arn: String,
        status: String,
        deadline_secs: u64,
    },
    /// The grant is in a state we cannot move forward from on our own.
    #[error("grant {grant_arn} is {status}: {reason}")]
    GrantFailed {
        grant_arn: String,
        status: String,
        reason: String,
    },
}

impl Error {
    /// Whether a later attempt can succeed.
    pub fn retry(&self) -> Retry {
        match self {
            Error::AssumeRole { retry, .. } | Error::Aws { retry, .. } => *retry,
            Error::InvalidInput(_)
            | Error::Config(_)
            | Error::NotInOrganization { .. }
            | Error::ActiveLicenseConflict(_)
            | Error::WorkflowDeadline { .. }
            | Error::GrantFailed { .. } => Retry::Permanent,
        }
    }

    /// True when a later attempt can succeed.
    pub fn is_retryable(&self) -> bool {
        self.retry() == Retry::Retryable
    }

    /// A short, stable name for reports and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidInput(_) => "InvalidInput",
            Error::Config(_) => "Configuration",
            Error::NotInOrganization { .. } => "NotInOrganization",
            Error::AssumeRole { .. } => "AssumeRole",
            Error::Aws { .. } => "Aws",
            Error::ActiveLicenseConflict(_) => "ActiveLicenseConflict",
            Error::WorkflowDeadline { .. } => "WorkflowDeadline",
            Error::GrantFailed { .. } => "GrantFailed",
        }
    }

    /// The AWS error code, when the failure came from AWS.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Error codes that mean "slow down or try again" across the services we call.
const RETRYABLE_CODES: &[&str] = &[
    "RateLimitExceededException",
    "ServerInternalException",
    "ServiceUnavailableException",
    "ServiceFailure",
    "ServiceException",
    "InternalFailure",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "ConcurrentModificationException",
    "ConcurrentModification",
    "RequestLimitExceeded",
];

/// Classifies any SDK error into our error, keeping AWS's code and message.
pub fn aws_error<E, R>(service: &'static str, operation: &'static str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + fmt::Debug,
    R: fmt::Debug,
{
    let (code, message, retry) = match &err {
        SdkError::ServiceError(service_err) => {
            let meta = service_err.err();
            let code = meta.code().unwrap_or("Unknown").to_string();
            let message = meta.message().unwrap_or_default().to_string();
            let retry = if RETRYABLE_CODES.contains(&code.as_str()) {
                Retry::Retryable
            } else {
                Retry::Permanent
            };
            (code, message, retry)
        }
        SdkError::TimeoutError(_) => (
            "Timeout".to_string(),
            "request timed out".to_string(),
            Retry::Retryable,
        ),
        SdkError::DispatchFailure(failure) => (
            "DispatchFailure".to_string(),
            format!("{failure:?}"),
            Retry::Retryable,
        ),
        SdkError::ResponseError(_) => (
            "ResponseError".to_string(),
            "the response could not be read".to_string(),
            Retry::Retryable,
        ),
        SdkError::ConstructionFailure(_) => (
            "ConstructionFailure".to_string(),
            format!("{err:?}"),
            Retry::Permanent,
        ),
        _ => ("Unknown".to_string(), format!("{err:?}"), Retry::Retryable),
    };
    Error::Aws {
        service,
        operation,
        code,
        message,
        retry,
    }
}

impl fmt::Display for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retry::Retryable => f.write_str("retryable"),
            Retry::Permanent => f.write_str("permanent"),
        }
    }
}
