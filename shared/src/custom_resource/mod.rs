//! CloudFormation custom resources: who to answer ([`Target`]), what to answer ([`Response`],
//! at most 4,096 bytes) and how ([`Responder`]: a PUT to the validated pre-signed S3
//! `ResponseURL` with the SDK's own HTTPS connector, before the Lambda deadline). [`drive`]
//! answers one request, whatever happens to the [`Resource`]'s work.

mod driver;
mod responder;
mod response;

pub use driver::{drive, Limits, Reply, Resource};
pub use responder::{validate_response_url, Responder};
pub use response::Response;

use crate::error::Error;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

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

/// 2020-01-01T00:00:00Z in milliseconds: no real Lambda deadline is earlier.
const PLAUSIBLE_AFTER_MS: u64 = 1_577_836_800_000;
/// Lambda's longest timeout (15 minutes) plus a minute for clock skew: no real deadline is
/// further away than this.
const LONGEST_INVOCATION_MS: u64 = (15 * 60 + 60) * 1000;
/// The budget assumed when the deadline is implausible (`DEADLINE_FALLBACK_SECONDS`).
const DEFAULT_DEADLINE_FALLBACK: Duration = Duration::from_secs(15 * 60);
/// Environment variable overriding [`DEFAULT_DEADLINE_FALLBACK`].
const DEADLINE_FALLBACK_VAR: &str = "DEADLINE_FALLBACK_SECONDS";

/// Time left before a Lambda deadline given in milliseconds since the epoch, or `None` when
/// the value cannot be one: before 2020, or further away than the longest Lambda invocation.
/// (`cargo lambda watch` hands out a duration, 600000, where AWS gives an epoch time.)
pub(crate) fn time_left(deadline_ms: u64, now_ms: u64) -> Option<Duration> {
    if deadline_ms < PLAUSIBLE_AFTER_MS
        || deadline_ms > now_ms.saturating_add(LONGEST_INVOCATION_MS)
    {
        return None;
    }
    Some(Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

/// The invocation deadline (the runtime's `deadline_ms`) as a monotonic instant; `fallback`
/// ([`deadline_fallback`]) from now when the runtime's deadline is implausible (logged as a
/// warning: it never happens in AWS).
pub fn deadline(deadline_ms: u64, fallback: Duration) -> Instant {
    let now_ms = unix_ms();
    let left = time_left(deadline_ms, now_ms).unwrap_or_else(|| {
        tracing::warn!(
            deadline_ms,
            now_ms,
            fallback_secs = fallback.as_secs(),
            "the runtime's deadline is not an epoch time within 15 minutes (a local emulator?); using the fallback budget"
        );
        fallback
    });
    Instant::now() + left
}

/// `DEADLINE_FALLBACK_SECONDS` (10 to 900, default 900), read with `lookup` (the environment:
/// `|k| std::env::var(k).ok()`).
pub fn deadline_fallback(lookup: impl Fn(&str) -> Option<String>) -> Result<Duration, Error> {
    let raw = lookup(DEADLINE_FALLBACK_VAR)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    crate::config::parse_num(
        raw,
        DEADLINE_FALLBACK_VAR,
        DEFAULT_DEADLINE_FALLBACK.as_secs(),
        10,
        900,
    )
    .map(Duration::from_secs)
}

/// At most 40 characters of echoed input.
fn clip(raw: &str) -> String {
    match raw.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &raw[..cut]),
        None => raw.to_string(),
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The `ServiceTimeout` property name (CloudFormation's own, inside `ResourceProperties`).
pub(crate) const SERVICE_TIMEOUT: &str = "ServiceTimeout";
/// CloudFormation's default and longest wait for a custom resource's answer.
const DEFAULT_SERVICE_TIMEOUT: Duration = Duration::from_secs(3600);

/// CloudFormation's `ServiceTimeout` property: whole seconds from 1 to 3600, as a string (the
/// way CloudFormation passes scalars) or a number; absent, null or empty means the default,
/// one hour. It bounds how long the resource may take before it answers.
pub fn service_timeout(properties: &Value) -> Result<Duration, Error> {
    let bad = |got: &str| {
        Err(Error::InvalidInput(format!(
            "{SERVICE_TIMEOUT} {got} must be a whole number of seconds from 1 to 3600"
        )))
    };
    let secs = match properties.get(SERVICE_TIMEOUT) {
        None | Some(Value::Null) => return Ok(DEFAULT_SERVICE_TIMEOUT),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(DEFAULT_SERVICE_TIMEOUT),
        Some(Value::String(s)) => match s.trim().parse::<u64>() {
            Ok(n) => n,
            Err(_) => return bad(&format!("{:?}", clip(s))),
        },
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) => n,
            None => return bad(&n.to_string()),
        },
        Some(other) => return bad(&clip(&other.to_string())),
    };
    if !(1..=3600).contains(&secs) {
        return bad(&secs.to_string());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_767_225_600_000; // 2026-01-01

    #[test]
    fn epoch_deadlines_within_fifteen_minutes_are_used() {
        assert_eq!(
            time_left(NOW + 300_000, NOW),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            time_left(NOW + 900_000, NOW),
            Some(Duration::from_secs(900))
        );
        // Already past: no time left, but still a real deadline.
        assert_eq!(time_left(NOW - 5_000, NOW), Some(Duration::ZERO));
    }

    #[test]
    fn implausible_deadlines_are_unknown() {
        // cargo lambda watch: a duration (600 s), not an epoch time.
        assert_eq!(time_left(600_000, NOW), None);
        assert_eq!(time_left(0, NOW), None);
        assert_eq!(time_left(PLAUSIBLE_AFTER_MS - 1, NOW), None);
        // Further away than any Lambda invocation (seconds mistaken for milliseconds, say).
        assert_eq!(time_left(NOW + 3_600_000, NOW), None);
        assert_eq!(time_left(u64::MAX, NOW), None);
    }

    #[test]
    fn implausible_deadline_falls_back_to_the_budget() {
        // No window of real time: the deadline is the budget from the moment of the call, and
        // that moment lies between `before` and `after` (a monotonic clock).
        let budget = Duration::from_secs(120);
        let before = Instant::now();
        let d = deadline(600_000, budget);
        let after = Instant::now();
        assert!(
            d >= before + budget && d <= after + budget,
            "{:?} after the call began, {:?} after it ended",
            d - before,
            d - after
        );
    }

    #[test]
    fn service_timeout_forms() {
        for (props, secs) in [
            (json!({}), 3600),
            (json!({"ServiceTimeout": null}), 3600),
            (json!({"ServiceTimeout": ""}), 3600),
            (json!({"ServiceTimeout": "300"}), 300),
            (json!({"ServiceTimeout": " 60 "}), 60),
            (json!({"ServiceTimeout": 1}), 1),
            (json!({"ServiceTimeout": 3600}), 3600),
        ] {
            assert_eq!(
                service_timeout(&props).ok(),
                Some(Duration::from_secs(secs)),
                "{props}"
            );
        }
        for bad in [
            json!({"ServiceTimeout": "0"}),
            json!({"ServiceTimeout": 3601}),
            json!({"ServiceTimeout": "1h"}),
            json!({"ServiceTimeout": 1.5}),
            json!({"ServiceTimeout": -1}),
            json!({"ServiceTimeout": true}),
            json!({"ServiceTimeout": ["60"]}),
        ] {
            match service_timeout(&bad) {
                Err(Error::InvalidInput(msg)) => {
                    assert!(msg.starts_with("ServiceTimeout"), "{msg}")
                }
                other => panic!("{bad}: expected invalid input, got {other:?}"),
            }
        }
    }
}
