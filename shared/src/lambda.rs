//! What every function's edge repeats: about Lambda's SQS event source, whether a payload is an
//! SQS batch, a record's message id and delivery count, and the partial batch response that
//! names the failed messages (so SQS deletes the rest and delivers only those again); and, for
//! the handlers that must answer whatever happens (a CloudFormation custom resource), work run
//! with its panic caught and told as a message.

use serde_json::{json, Value};

/// True for an SQS event (its first record comes from `aws:sqs`).
pub fn is_sqs_batch(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

/// A record's SQS message id (empty when absent).
pub fn message_id(record: &Value) -> &str {
    record
        .get("messageId")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// SQS's `ApproximateReceiveCount` of a record (1 when absent).
pub fn receive_count(record: &Value) -> u32 {
    record
        .pointer("/attributes/ApproximateReceiveCount")
        .and_then(Value::as_str)
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

/// The SQS partial batch response (`aws_lambda_events`' type) naming the failed messages.
pub fn batch_response(failed: Vec<String>) -> Value {
    use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .iter()
        .map(|id| {
            let mut item = BatchItemFailure::default();
            item.item_identifier = id.clone();
            item
        })
        .collect();
    // Serializing two strings cannot fail; if it ever did, the same answer by hand (never an
    // empty one, which would delete the failed messages).
    serde_json::to_value(&response).unwrap_or_else(|_| {
        json!({ "batchItemFailures": failed.iter().map(|id| json!({"itemIdentifier": id})).collect::<Vec<_>>() })
    })
}

/// Runs `work`, catching a panic in it: `Err` holds the panic's message. For handlers that owe
/// an answer whatever happens (a custom resource left unanswered blocks its stack for an hour).
pub async fn guarded<F: std::future::Future>(work: F) -> Result<F::Output, String> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|panic| panic_message(&*panic))
}

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_records_are_read_as_lambda_delivers_them() {
        let batch = json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m-1",
            "attributes": {"ApproximateReceiveCount": "3"}}]});
        assert!(is_sqs_batch(&batch));
        assert!(!is_sqs_batch(
            &json!({"Records": [{"eventSource": "aws:sns"}]})
        ));
        assert!(!is_sqs_batch(
            &json!({"detail-type": "AWS Service Event via CloudTrail"})
        ));
        let record = &batch["Records"][0];
        assert_eq!((message_id(record), receive_count(record)), ("m-1", 3));
        assert_eq!((message_id(&json!({})), receive_count(&json!({}))), ("", 1));
        assert_eq!(
            batch_response(vec!["m-1".into(), "m-7".into()]),
            json!({"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-7"}]})
        );
        assert_eq!(batch_response(vec![]), json!({"batchItemFailures": []}));
    }

    #[tokio::test]
    async fn guarded_work_answers_with_its_output_or_its_panic() {
        assert_eq!(guarded(async { 7 }).await, Ok(7));
        let n = 3;
        let boom = guarded(async move {
            if n == 3 {
                panic!("grant {n} vanished");
            }
            1
        })
        .await;
        assert_eq!(boom, Err("grant 3 vanished".to_string()));
        let fixed: Result<(), String> = guarded(async { panic!("fixed text") }).await;
        assert_eq!(fixed, Err("fixed text".to_string()));
    }
}
