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
    /// The account exists but is not ready yet (e.g. `PENDING_ACTIVATION`): try again later.
    #[error("account {account} is {state}, not ACTIVE yet; it is tried again later")]
    AccountNotReady { account: String, state: String },
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
            Error::AccountNotReady { .. } => Retry::Retryable,
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
            Error::AccountNotReady { .. } => "AccountNotReady",
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
    // DynamoDB (the chains table).
    "ProvisionedThroughputExceededException",
    "InternalServerError",
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

/// At most this many characters of an input are echoed into an error message or a log line.
pub const ECHO_MAX_CHARS: usize = 64;

/// Bounds untrusted text for messages and logs: unchanged when at most `max` characters,
/// otherwise its first `max` characters then `… (N bytes)`.
pub fn truncate(raw: &str, max: usize) -> String {
    match raw.char_indices().nth(max) {
        None => raw.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes)", &raw[..cut], raw.len()),
    }
}

/// Quotes an input for an error message, bounded: `"abc"`, or for a long one
/// `"<first 64 characters>"… (N bytes)`. Every parser echoes what it rejects through this.
pub fn echo(raw: &str) -> String {
    match raw.char_indices().nth(ECHO_MAX_CHARS) {
        None => format!("{raw:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &raw[..cut], raw.len()),
    }
}

/// What a JSON value is, for "got …" in error messages: `null`, `true`, `a number (42)`,
/// `"text"` (bounded by [`echo`]), `an array`, `an object`.
pub fn describe(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("a number ({})", truncate(&n.to_string(), ECHO_MAX_CHARS)),
        Value::String(s) => echo(s),
        Value::Array(a) if a.is_empty() => "an empty array".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// `got …` for a field that may be absent: `missing`, or `got <describe(value)>`.
pub fn got(value: Option<&serde_json::Value>) -> String {
    match value {
        None => "missing".into(),
        Some(v) => format!("got {}", describe(v)),
    }
}

/// A failure as it appears in reports ([`crate::report`] re-exports it); [`Error::from_report`]
/// rebuilds the error from it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReport {
    pub kind: String,
    pub retry: Retry,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

impl From<&Error> for ErrorReport {
    fn from(e: &Error) -> Self {
        ErrorReport {
            kind: e.kind().to_string(),
            retry: e.retry(),
            code: e.aws_code().map(str::to_string),
            message: e.to_string(),
        }
    }
}

impl Error {
    /// Rebuilds the error an [`ErrorReport`] was made from (same
    /// `kind()`, `retry()` and, for every variant but `Aws`, the same text), so a function that
    /// fails because of a reported error says what it was, not `GrantFailed` with an empty ARN.
    /// An `Aws` error, or a kind this build does not know, comes back as an `Aws` error
    /// (`ct-entitlements:<operation>`) whose code is the original code (or kind) and whose
    /// message is the original text.
    pub fn from_report(report: &ErrorReport, operation: &'static str) -> Error {
        let msg = report.message.as_str();
        let rebuilt = match report.kind.as_str() {
            "InvalidInput" => msg
                .strip_prefix("invalid input: ")
                .map(|m| Error::InvalidInput(m.to_string())),
            "Configuration" => msg
                .strip_prefix("configuration error: ")
                .map(|m| Error::Config(m.to_string())),
            "NotInOrganization" => msg.strip_prefix("account ").and_then(|rest| {
                rest.split_once(" is not an active member of the organization: ")
                    .map(|(account, reason)| Error::NotInOrganization {
                        account: account.to_string(),
                        reason: reason.to_string(),
                    })
            }),
            "AccountNotReady" => msg
                .strip_prefix("account ")
                .and_then(|rest| rest.strip_suffix(", not ACTIVE yet; it is tried again later"))
                .and_then(|rest| rest.split_once(" is "))
                .map(|(account, state)| Error::AccountNotReady {
                    account: account.to_string(),
                    state: state.to_string(),
                }),
            "AssumeRole" => msg.strip_prefix("cannot assume ").and_then(|rest| {
                rest.split_once(": ").map(|(role_arn, message)| Error::AssumeRole {
                    role_arn: role_arn.to_string(),
                    message: message.to_string(),
                    retry: report.retry,
                })
            }),
            "ActiveLicenseConflict" => msg
                .strip_suffix("; set ACTIVATION_OVERRIDE_BEHAVIOR=ALL_GRANTS_PERMITTED_BY_ISSUER to replace the other grant")
                .map(|m| Error::ActiveLicenseConflict(m.to_string())),
            "WorkflowDeadline" => msg.strip_prefix("grant ").and_then(|rest| {
                let (grant_arn, rest) = rest.split_once(" still ")?;
                let (status, rest) = rest.rsplit_once(" after the ")?;
                let deadline_secs = rest.strip_suffix("s deadline")?.parse().ok()?;
                Some(Error::WorkflowDeadline {
                    grant_arn: grant_arn.to_string(),
                    status: status.to_string(),
                    deadline_secs,
                })
            }),
            "GrantFailed" => msg.strip_prefix("grant ").and_then(|rest| {
                let (grant_arn, rest) = rest.split_once(" is ")?;
                let (status, reason) = rest.split_once(": ")?;
                Some(Error::GrantFailed {
                    grant_arn: grant_arn.to_string(),
                    status: status.to_string(),
                    reason: reason.to_string(),
                })
            }),
            _ => None,
        };
        rebuilt
            .filter(|e| e.kind() == report.kind && e.retry() == report.retry)
            .unwrap_or_else(|| Error::Aws {
                service: "ct-entitlements",
                operation,
                code: report.code.clone().unwrap_or_else(|| report.kind.clone()),
                message: report.message.clone(),
                retry: report.retry,
            })
    }
}

#[cfg(test)]
mod echo_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn echo_is_bounded() {
        assert_eq!(echo("abc"), "\"abc\"");
        assert_eq!(echo(&"x".repeat(64)), format!("{:?}", "x".repeat(64)));
        let huge = "1".repeat(1 << 20);
        let e = echo(&huge);
        assert_eq!(e, format!("{:?}… (1048576 bytes)", "1".repeat(64)));
        // Multi-byte characters are never cut in half.
        assert_eq!(
            truncate(&"é".repeat(70), 64),
            format!("{}… (140 bytes)", "é".repeat(64))
        );
        assert_eq!(truncate("short", 64), "short");
    }

    #[test]
    fn describe_says_what_was_there() {
        assert_eq!(describe(&json!(null)), "null");
        assert_eq!(describe(&json!(12)), "a number (12)");
        assert_eq!(describe(&json!(["a"])), "an array");
        assert_eq!(describe(&json!([])), "an empty array");
        assert_eq!(describe(&json!({})), "an object");
        assert_eq!(describe(&json!(false)), "false");
        assert_eq!(describe(&json!("x")), "\"x\"");
        assert_eq!(got(None), "missing");
        assert_eq!(got(Some(&json!(null))), "got null");
    }

    /// A 1 MB input is echoed as 64 characters and its size, by every shared parser.
    #[test]
    fn every_shared_parser_echoes_bounded() {
        use crate::config::{parse_bool, parse_num, LicenseRef, OverrideBehavior};
        let huge = "arn:".to_string() + &"x".repeat(1 << 20);
        let messages = [
            LicenseRef::parse(&huge, "LICENSE_ARNS").err(),
            LicenseRef::parse(&huge[4..], "PRODUCT_SKUS").err(),
            LicenseRef::parse(&format!("{huge} "), "Entitlements").err(),
            OverrideBehavior::parse(&huge, "ActivationOverrideBehavior").err(),
            parse_bool(Some(&huge), "DRY_RUN", false).err(),
            parse_num(Some(huge.clone()), "MAX", 1, 1, 2).err(),
            crate::ids::AccountId::parse(&huge).err(),
            crate::inbound::parse_request(&json!({ "accountId": huge })).err(),
            crate::inbound::parse_request(&json!({ "source": huge })).err(),
        ];
        for m in messages {
            let m = m.map(|e| e.to_string()).unwrap_or_default();
            assert!(
                m.contains(" bytes)") && m.len() < 300,
                "{}",
                &m[..m.len().min(300)]
            );
        }
    }

    #[test]
    fn errors_survive_a_report_round_trip() {
        let all = [
            Error::InvalidInput("bad: thing".into()),
            Error::Config("X: y".into()),
            Error::NotInOrganization {
                account: "210987654321".into(),
                reason: "its state is SUSPENDED".into(),
            },
            Error::AccountNotReady {
                account: "210987654321".into(),
                state: "PENDING_ACTIVATION".into(),
            },
            Error::AssumeRole {
                role_arn: "arn:aws:iam::210987654321:role/AWSControlTowerExecution".into(),
                message: "AccessDenied: not: authorized".into(),
                retry: Retry::Permanent,
            },
            Error::ActiveLicenseConflict("account 210987654321 already has one".into()),
            Error::WorkflowDeadline {
                grant_arn: "arn:aws:license-manager::111122223333:grant:g-1".into(),
                status: "PENDING_WORKFLOW".into(),
                deadline_secs: 3600,
            },
            Error::GrantFailed {
                grant_arn: "arn:aws:license-manager::111122223333:grant:g-1".into(),
                status: "REJECTED".into(),
                reason: "by: the recipient".into(),
            },
        ];
        for e in &all {
            let back = Error::from_report(&ErrorReport::from(e), "onboard");
            assert_eq!(
                (back.kind(), back.retry(), back.to_string()),
                (e.kind(), e.retry(), e.to_string())
            );
        }
        let aws = Error::Aws {
            service: "license-manager",
            operation: "CreateGrant",
            code: "AccessDeniedException".into(),
            message: "no".into(),
            retry: Retry::Permanent,
        };
        let back = Error::from_report(&ErrorReport::from(&aws), "onboard");
        assert_eq!(back.kind(), "Aws");
        assert_eq!(back.aws_code(), Some("AccessDeniedException"));
        assert!(back
            .to_string()
            .contains("license-manager:CreateGrant failed"));
    }
}
