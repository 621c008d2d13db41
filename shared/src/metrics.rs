//! CloudWatch metrics from the report lines themselves, in the Embedded Metric Format (AWS,
//! "Specification: Embedded metric format"): CloudWatch Logs turns the `_aws` directive and the
//! top-level members it names into metrics, so reporting costs no `PutMetricData` call and no
//! permission. The format is one JSON object, so this is a few lines of our own rather than a
//! crate (the EMF crates bring their own loggers and flush tasks, which these functions do not
//! need). Dimensions are a small fixed set, the function and the outcome: never an account id.

use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// The CloudWatch namespace of every metric.
pub(crate) const NAMESPACE: &str = "ct-entitlements";

static FUNCTION: OnceLock<&'static str> = OnceLock::new();

/// Names the function (its binary) for the `Function` dimension; set once at init.
pub(crate) fn set_function(name: &'static str) {
    let _ = FUNCTION.set(name);
}

/// The `Function` dimension: the binary name set at init.
pub(crate) fn function() -> &'static str {
    FUNCTION.get().copied().unwrap_or("unknown")
}

/// One metric of a report line: its name, its value and its CloudWatch unit.
pub(crate) type Metric<'a> = (&'a str, Value, &'a str);

/// The EMF members of one report line at `now` (Unix seconds): the `_aws` directive naming
/// `metrics` under the `Function` and `Outcome` dimensions, the two dimensions, and the
/// metrics' values. Which metrics an account report yields is the report's own business
/// ([`crate::report::account_metrics`]).
pub(crate) fn emf_members(
    function: &str,
    outcome: &str,
    metrics: Vec<Metric<'_>>,
    now: u64,
) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert(
        "_aws".into(),
        json!({
            "Timestamp": now.saturating_mul(1000),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function", "Outcome"], ["Function"]],
                "Metrics": metrics
                    .iter()
                    .map(|(name, _, unit)| json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    out.insert("Function".into(), json!(function));
    out.insert("Outcome".into(), json!(outcome));
    for (name, value, _) in metrics {
        out.insert(name.into(), value);
    }
    out
}

#[cfg(test)]
mod tests;
