//! CloudFormation custom resources: who to answer ([`Target`]), what to answer ([`Response`],
//! at most 4,096 bytes) and how ([`Responder`]: a PUT to the validated pre-signed S3
//! `ResponseURL` with the SDK's own HTTPS connector, before the Lambda deadline).

mod responder;
mod response;

pub use responder::{validate_response_url, Responder};
pub use response::{Response, MAX_BODY_BYTES};

use crate::error::Error;
use serde_json::Value;

/// Where and to whom a response goes: read leniently, so that a request that is otherwise
/// malformed can still be answered FAILED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub request_type: String,
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub physical_resource_id: Option<String>,
}

impl Target {
    /// Fails only when there is no way to answer (no ResponseURL or identifiers).
    pub fn from_request(raw: &Value) -> Result<Self, Error> {
        let text = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_string);
        let required = |k: &str| {
            text(k).filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::InvalidInput(format!("the request has no {k}, so it cannot be answered"))
            })
        };
        Ok(Target {
            request_type: text("RequestType").unwrap_or_default(),
            response_url: required("ResponseURL")?,
            stack_id: required("StackId")?,
            request_id: required("RequestId")?,
            logical_resource_id: required("LogicalResourceId")?,
            physical_resource_id: text("PhysicalResourceId").filter(|v| !v.is_empty()),
        })
    }
}

/// The invocation deadline (Lambda gives milliseconds since the epoch) as a monotonic instant.
pub fn deadline_instant(deadline_ms: u64) -> tokio::time::Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    tokio::time::Instant::now()
        + std::time::Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}
