//! Exit statuses and errors as one readable line: the shared error's kind and text, with the
//! SDK's debug descriptions (a dispatch failure is ~700 characters of nested structs) reduced
//! to what they mean. The full text is printed only with `--verbose`.

use serde::Serialize;
use shared::error::Error;
use shared::error::ErrorReport;

/// The process exit statuses (documented under `--help` and in docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for succeeded.
    Ok = 0,
    /// Some account failed, or an AWS call the command needs failed.
    Failed = 1,
    /// Bad arguments or configuration: nothing was done.
    Usage = 2,
    /// `backfill`: the wait ran out with queued accounts still pending (none failed).
    Pending = 3,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The status for a command that could not run because of `e`.
    pub fn of(e: &Error) -> Exit {
        match e.kind() {
            "InvalidInput" | "Configuration" => Exit::Usage,
            _ => Exit::Failed,
        }
    }
}

/// An error in a report or a JSON document: kind, AWS code when there is one, one-line message;
/// the full message only with `--verbose`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub retryable: bool,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Problem {
    pub fn from_report(e: &ErrorReport, verbose: bool) -> Self {
        let message = one_line(&e.message);
        Problem {
            kind: e.kind.clone(),
            code: e.code.clone(),
            retryable: e.retry == shared::error::Retry::Retryable,
            detail: (verbose && message != e.message).then(|| e.message.clone()),
            message,
        }
    }

    pub fn from_error(e: &Error, verbose: bool) -> Self {
        Self::from_report(&ErrorReport::from(e), verbose)
    }
}

/// The error as one line (the shared error's Display, SDK debug dumps reduced).
pub fn describe(e: &Error) -> String {
    one_line(&e.to_string())
}

/// Markers of an SDK debug description inside an error message.
const DUMP_MARKERS: &[&str] = &[
    "DispatchFailure(",
    "DispatchFailure {",
    "ConstructionFailure(",
    "ConstructionFailure {",
    "ConnectorError",
    "ResponseError(",
    "ResponseError {",
    "TimeoutError(",
    "TimeoutError {",
];

/// Reduces a message holding an SDK debug description to its prefix and what the description
/// says, in plain words; other messages come back on one line, unchanged otherwise.
pub fn one_line(message: &str) -> String {
    let flat = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(cut) = DUMP_MARKERS.iter().filter_map(|m| flat.find(m)).min() else {
        return flat;
    };
    let prefix = flat[..cut].trim_end();
    let cause = cause_of(&flat[cut..]);
    if prefix.is_empty() {
        cause
    } else {
        format!("{prefix} {cause}")
    }
}

/// What an SDK debug description means.
fn cause_of(dump: &str) -> String {
    let lower = dump.to_ascii_lowercase();
    let known: &[(&[&str], &str)] = &[
        (
            &["credential"],
            "no AWS credentials were found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
        ),
        (
            &["region must be set", "no region", "invalid region"],
            "no AWS region is set (AWS_REGION, or a profile's region)",
        ),
        (
            &["dns error", "failed to lookup address", "name or service not known"],
            "the AWS endpoint's name could not be resolved (no network?)",
        ),
        (&["connection refused"], "the AWS endpoint refused the connection"),
        (&["timed out", "timeout"], "the connection to AWS timed out"),
        (&["certificate", "tls"], "the TLS connection to AWS failed"),
    ];
    for (needles, meaning) in known {
        if needles.iter().any(|n| lower.contains(n)) {
            return (*meaning).to_string();
        }
    }
    // The first message the description quotes, if any.
    if let Some(start) = dump.find("message: \"") {
        let rest = &dump[start + "message: \"".len()..];
        if let Some(end) = rest.find('"') {
            return shared::error::truncate(&rest[..end], 200);
        }
    }
    "the request could not be sent (--verbose shows the SDK's description)".into()
}
