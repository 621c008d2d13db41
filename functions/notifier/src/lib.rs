//! notifier: drains the notification queue (batches of up to 1,000 final failures, or what
//! 5 minutes gathered) and publishes one summary per batch to the failure topic
//! (`shared::notify::summarize`: grouped by error kind and license, what to do next, a Logs
//! Insights query).

use serde_json::{json, Value};
use shared::error::Error;
use shared::notify::{summarize, Failure};
use shared::report::{CallLog, Side};

/// What the notifier needs.
pub struct App {
    pub sns: aws_sdk_sns::Client,
    pub topic_arn: String,
    /// The stack's name, in the subject.
    pub stack: String,
}

/// Settings from the environment (`FAILURE_TOPIC_ARN`, `STACK_NAME`).
pub fn settings(lookup: impl Fn(&str) -> Option<String>) -> Result<(String, String), Error> {
    let topic = lookup("FAILURE_TOPIC_ARN")
        .filter(|t| t.starts_with("arn:"))
        .ok_or_else(|| Error::Config("FAILURE_TOPIC_ARN: an SNS topic ARN is required".into()))?;
    let stack = lookup("STACK_NAME").unwrap_or_else(|| "ct-entitlements".into());
    Ok((topic, stack))
}

/// The failures an SQS batch carries, and how many bodies were not failures.
pub fn failures(payload: &Value) -> Result<(Vec<Failure>, usize), Error> {
    let records = payload
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Error::InvalidInput(
                "the notifier takes an SQS batch of failure records (Records)".into(),
            )
        })?;
    let mut out = Vec::new();
    let mut unreadable = 0;
    for r in records {
        match r
            .get("body")
            .and_then(Value::as_str)
            .and_then(|b| serde_json::from_str::<Failure>(b).ok())
        {
            Some(f) => out.push(f),
            None => unreadable += 1,
        }
    }
    Ok((out, unreadable))
}

/// One invocation: one SNS message for the whole batch (none for a batch with no failure).
pub async fn handle(app: &App, payload: &Value) -> Result<Value, Error> {
    let (failures, unreadable) = failures(payload)?;
    if unreadable > 0 {
        tracing::error!(
            unreadable,
            "notification records that are not failures were dropped"
        );
    }
    if failures.is_empty() {
        return Ok(json!({"published": false, "failures": 0, "unreadable": unreadable}));
    }
    let (subject, message) = summarize(&failures, &app.stack);
    // SNS subjects: at most 100 printable ASCII characters.
    let subject: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(100)
        .collect();
    let calls = CallLog::default();
    calls.record(Side::Own, "sns:Publish", true);
    app.sns
        .publish()
        .topic_arn(&app.topic_arn)
        .subject(subject)
        .message(message)
        .send()
        .await
        .map_err(|e| shared::error::aws_error("sns", "Publish", e))?;
    shared::report::emit(
        "notification",
        json!({"failures": failures.len(), "unreadable": unreadable}),
    );
    Ok(json!({"published": true, "failures": failures.len(), "unreadable": unreadable}))
}
