//! reconciler's invocation: the payload is parsed before any AWS call (a scheduled run is
//! recognised precisely, anything unrecognised is `InvalidInput` naming the field), then one
//! reconcile runs, its report is logged, and a failure keeps the kind of what failed.

use serde_json::Value;
use shared::reconcile::{self, ReconcileConfig, ReconcileReport};
use shared::{engine::Engine, error::Error, error::Retry, report::Outcome};

/// Whether `payload` is a batch from the change-event queue (which `handle` triages), as
/// opposed to a reconcile request. No AWS call.
pub fn is_change_batch(payload: &Value, config: &ReconcileConfig) -> bool {
    shared::changes::parse_batch(payload, config).is_some()
}

/// Handles one invocation: the report is the return value; a failed run is an error (so an
/// asynchronous invocation is retried, then sent to its failure destination).
pub async fn handle(
    engine: &Engine,
    config: &ReconcileConfig,
    payload: &Value,
) -> Result<Value, Error> {
    if let Some(batch) = shared::changes::parse_batch(payload, config) {
        let batch = batch.inspect_err(|e| {
            tracing::error!(kind = e.kind(), error = %e, "input rejected before any AWS call");
        })?;
        return Ok(change_batch(engine, config, &batch).await.0);
    }
    let (scope, dry_run) = reconcile::parse(payload, config).inspect_err(|e| {
        tracing::error!(kind = e.kind(), error = %e, "input rejected before any AWS call");
    })?;
    let report = reconcile::reconcile(engine, config, scope, dry_run).await;
    for offboarded in &report.offboarded {
        shared::report::log_report(offboarded);
    }
    let value = serde_json::to_value(&report).map_err(|e| Error::InvalidInput(e.to_string()))?;
    shared::report::emit(
        "reconcileReport",
        serde_json::json!({ "report": value.clone() }),
    );
    match failure(&report) {
        Some(err) => Err(err),
        None => Ok(value),
    }
}

/// A batch from the change-event queue: triaged as a whole, its report logged, and answered
/// with the records to deliver again (a throttle) or to leave for the dead-letter queue (not
/// a License Manager change event) as batch item failures: the rest of the batch is done.
pub async fn change_batch(
    engine: &Engine,
    config: &ReconcileConfig,
    batch: &shared::changes::ChangeBatch,
) -> (Value, ReconcileReport) {
    let report = shared::changes::run(engine, config, batch, config.dry_run).await;
    shared::report::emit("reconcileReport", serde_json::json!({ "report": report }));
    let failures: Vec<String> = report
        .rejected
        .keys()
        .chain(report.retried.iter())
        .cloned()
        .collect();
    (shared::lambda::batch_response(failures), report)
}

/// The error a reconcile report fails the invocation with, if any: the run's own error as it
/// was (same kind and retry class), else a summary of the departed accounts that could not be
/// offboarded (retryable when any of them can be retried).
pub fn failure(report: &ReconcileReport) -> Option<Error> {
    if let Some(err) = &report.error {
        return Some(Error::from_report(err, "reconcile"));
    }
    let failed: Vec<_> = report
        .offboarded
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .collect();
    let first = failed.first()?;
    let first_error = first.deciding_error();
    let retry = if failed.iter().any(|r| {
        r.deciding_error()
            .is_some_and(|e| e.retry == Retry::Retryable)
    }) {
        Retry::Retryable
    } else {
        Retry::Permanent
    };
    Some(Error::Aws {
        service: "ct-entitlements",
        operation: "offboard",
        code: first_error
            .map(|e| e.code.clone().unwrap_or_else(|| e.kind.clone()))
            .unwrap_or_else(|| "OffboardFailed".into()),
        message: format!(
            "{} departed account(s) could not be offboarded (see the accountReport lines); first: account {}: {}",
            failed.len(),
            first.account_id.as_deref().unwrap_or("?"),
            first_error.map(|e| e.message.as_str()).unwrap_or("no error reported"),
        ),
        retry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shared::error::ErrorReport;

    /// An engine whose clients point at a closed port: any AWS call would fail with an `Aws`
    /// error, so an `InvalidInput` answer proves the payload was rejected before any call.
    fn engine() -> Engine {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let config = shared::config::Config::from_lookup_per_request(|_| None).expect("defaults");
        Engine::new(
            config,
            shared::clients::Clients::from_sdk_config(&sdk, "us-east-1"),
        )
    }

    fn config() -> ReconcileConfig {
        ReconcileConfig::from_lookup(|k| {
            (k == "ONBOARDING_QUEUE_URL").then(|| "http://127.0.0.1:9/1/q".to_string())
        })
        .expect("valid")
    }

    #[tokio::test]
    async fn hostile_payloads_are_rejected_before_any_aws_call() {
        let engine = engine();
        for payload in [
            json!(null),
            json!([]),
            json!({"source": "anything"}),
            json!({"source": "aws.events"}),
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {"accounts": ["210987654321"]}}),
            json!({"source": "aws.controltower", "detail-type": "AWS Service Event via CloudTrail", "detail": {}}),
            json!({"accounts": null}),
            json!({"accounts": [" 210987654321"]}),
            json!({"ous": [null]}),
            json!({"dryRun": "false"}),
        ] {
            let err = handle(&engine, &config(), &payload)
                .await
                .expect_err(&payload.to_string());
            assert_eq!(err.kind(), "InvalidInput", "{payload}: {err}");
        }
    }

    /// Issue 16 §2: CloudTrail records denied Organizations calls too (`errorCode`); such an
    /// event is answered at once, ignored, with no AWS call (the engine's port is closed).
    #[tokio::test]
    async fn a_denied_organizations_call_is_ignored_without_any_aws_call() {
        let engine = engine();
        let config = ReconcileConfig::from_lookup(|k| match k {
            "ONBOARDING_QUEUE_URL" => Some("http://127.0.0.1:9/1/q".to_string()),
            "OFFBOARD_MODE" => Some("delete".to_string()),
            _ => None,
        })
        .expect("valid");
        for (event, code) in [
            ("CloseAccount", json!("AccessDenied")),
            ("RemoveAccountFromOrganization", json!("AccessDenied")),
            ("MoveAccount", json!("ConcurrentModificationException")),
            ("CloseAccount", json!(7)),
        ] {
            let payload = json!({
                "version": "0", "id": "e", "detail-type": "AWS API Call via CloudTrail",
                "source": "aws.organizations", "account": "111122223333",
                "time": "2026-11-30T00:00:00Z", "region": "us-east-1", "resources": [],
                "detail": {
                    "eventSource": "organizations.amazonaws.com", "eventName": event,
                    "requestParameters": {"accountId": "210987654321"},
                    "errorCode": code, "errorMessage": "denied"
                }
            });
            let report = handle(&engine, &config, &payload)
                .await
                .unwrap_or_else(|e| panic!("{event}: {e}"));
            assert_eq!(report["scope"], "ignored", "{report:#}");
            assert!(
                report["ignored"]
                    .as_str()
                    .is_some_and(|r| r.contains("errorCode")),
                "{report:#}"
            );
            assert_eq!(report["apiCalls"], json!({}), "{report:#}");
            assert_eq!(report["offboard"], json!([]), "{report:#}");
        }
    }

    /// A change-event batch whose records are not License Manager change events: each is
    /// answered as a batch item failure (to the dead-letter queue), with no AWS call (the
    /// engine's port is closed), and the invocation itself succeeds.
    #[tokio::test]
    async fn a_change_event_batch_answers_its_refused_records_as_item_failures() {
        let engine = engine();
        let config = ReconcileConfig {
            change_queue_url: Some("http://127.0.0.1:9/123456789012/changes".into()),
            ..config()
        };
        let arn = "arn:aws:sqs:us-east-1:123456789012:changes";
        let payload = json!({"Records": [
            {"messageId": "m1", "eventSource": "aws:sqs", "eventSourceARN": arn, "body": "[]"},
            {"messageId": "m2", "eventSource": "aws:sqs", "eventSourceARN": arn,
             "body": json!({"source": "aws.events", "detail-type": "Scheduled Event"}).to_string()},
        ]});
        let response = handle(&engine, &config, &payload).await.expect("answered");
        assert_eq!(
            response,
            json!({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]})
        );
        // A record of another queue in the batch: the wiring is wrong, the whole batch refused.
        let mixed = json!({"Records": [
            {"messageId": "m1", "eventSource": "aws:sqs", "eventSourceARN": arn, "body": "{}"},
            {"messageId": "m2", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:other", "body": "{}"},
        ]});
        let err = handle(&engine, &config, &mixed).await.expect_err("refused");
        assert_eq!(err.kind(), "InvalidInput", "{err}");
    }

    fn report(error: Option<ErrorReport>) -> ReconcileReport {
        ReconcileReport {
            error,
            ..ReconcileReport::empty("organization".into(), false)
        }
    }

    #[test]
    fn a_failed_run_keeps_the_kind_of_its_error() {
        assert!(failure(&report(None)).is_none());
        let throttled = Error::Aws {
            service: "organizations",
            operation: "ListAccounts",
            code: "TooManyRequestsException".into(),
            message: "slow down".into(),
            retry: Retry::Retryable,
        };
        let err = failure(&report(Some(ErrorReport::from(&throttled)))).expect("failure");
        assert_eq!(
            (err.kind(), err.aws_code(), err.retry()),
            ("Aws", Some("TooManyRequestsException"), Retry::Retryable)
        );
        let config = Error::Config("ONBOARDING_QUEUE_URL: gone".into());
        let err = failure(&report(Some(ErrorReport::from(&config)))).expect("failure");
        assert_eq!(err.kind(), "Configuration");
        assert_eq!(err.to_string(), config.to_string());
    }
}
