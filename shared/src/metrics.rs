//! CloudWatch metrics from the report lines themselves, in the Embedded Metric Format (AWS,
//! "Specification: Embedded metric format"): CloudWatch Logs turns the `_aws` directive and the
//! top-level members it names into metrics, so reporting costs no `PutMetricData` call and no
//! permission. The format is one JSON object, so this is a few lines of our own rather than a
//! crate (the EMF crates bring their own loggers and flush tasks, which these functions do not
//! need). Dimensions are a small fixed set, the function and the outcome: never an account id.

use crate::report::{AccountReport, Outcome};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "ct-entitlements";

static FUNCTION: OnceLock<&'static str> = OnceLock::new();

/// Names the function (its binary) for the `Function` dimension; set once at init.
pub fn set_function(name: &'static str) {
    let _ = FUNCTION.set(name);
}

/// The `Function` dimension: the binary name set at init.
pub fn function() -> &'static str {
    FUNCTION.get().copied().unwrap_or("unknown")
}

/// The outcome as the report line spells it (its serde name), so `Outcome` and `report.outcome`
/// always agree.
fn outcome_name(outcome: Outcome) -> String {
    match serde_json::to_value(outcome) {
        Ok(Value::String(name)) => name,
        _ => format!("{outcome:?}").to_lowercase(),
    }
}

/// The EMF members of one account report at `now` (Unix seconds): the `_aws` directive, the
/// `Function` and `Outcome` dimensions, and the metrics (only those that apply).
pub fn account_metrics(report: &AccountReport, function: &str, now: u64) -> Map<String, Value> {
    let actions = |name: &str| {
        report
            .licenses
            .iter()
            .flat_map(|l| &l.actions)
            .filter(|a| *a == name)
            .count()
    };
    let throttled = report
        .licenses
        .iter()
        .filter_map(|l| l.error.as_ref())
        .chain(report.error.as_ref())
        .filter(|e| {
            e.code
                .as_deref()
                .is_some_and(|c| c.contains("Throttl") || c.contains("RateLimit"))
        })
        .count();
    let calls: u32 = report
        .api_calls
        .values()
        .chain(report.member_api_calls.values())
        .sum();
    let since_first = report.first_seen.map(|f| now.saturating_sub(f));
    let mut metrics: Vec<(&str, Value, &str)> = vec![
        ("Accounts", json!(1), "Count"),
        ("GrantsCreated", json!(actions("CreateGrant")), "Count"),
        ("GrantsAccepted", json!(actions("AcceptGrant")), "Count"),
        ("GrantsActivated", json!(actions("ActivateGrant")), "Count"),
        (
            "Rechecks",
            json!(u8::from(report.recheck_in_seconds.is_some())),
            "Count",
        ),
        ("ApiCalls", json!(calls), "Count"),
        ("Throttled", json!(throttled), "Count"),
        ("DurationMs", json!(report.duration_ms), "Milliseconds"),
    ];
    match report.outcome {
        Outcome::Entitled => metrics.push((
            "TimeToActiveSeconds",
            json!(since_first.unwrap_or(report.duration_ms / 1000)),
            "Seconds",
        )),
        Outcome::Pending => {
            metrics.push(("PendingSeconds", json!(since_first.unwrap_or(0)), "Seconds"))
        }
        _ => {}
    }
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
    out.insert("Outcome".into(), json!(outcome_name(report.outcome)));
    for (name, value, _) in metrics {
        out.insert(name.into(), value);
    }
    out
}
