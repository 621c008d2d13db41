//! What every function's edge repeats: its start ([`serve`]: logging, the SDK configuration,
//! the function's own state read once, then each invocation, its error reported as Lambda
//! reports function errors); about Lambda's SQS event source, the walk of an SQS batch
//! ([`each_record`]: its records read, worked, and answered with the partial batch response
//! that names the failed messages, so SQS deletes the rest and delivers only those again); and,
//! for the handlers that must answer whatever happens (a CloudFormation custom resource), work
//! run with its panic caught and told as a message.

use crate::error::Error;
use crate::function::FunctionError;
use futures::StreamExt;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;

/// Runs the function `name` until the runtime stops it: installs logging (named `name` for the
/// metrics), loads the SDK configuration (no AWS call), builds the function's state once with
/// `init` (a refusal is logged as an invalid configuration and returned, so Lambda reports an
/// initialization error and no invocation runs), then answers every invocation with `handle`,
/// whose error Lambda reports as `<Kind>.<retryable|permanent>` ([`FunctionError`]).
pub async fn serve<S, P, I, IF, H, HF>(
    name: &'static str,
    init: I,
    handle: H,
) -> Result<(), lambda_runtime::Error>
where
    S: Send + Sync + 'static,
    P: serde::de::DeserializeOwned + Send + 'static,
    I: FnOnce(aws_config::SdkConfig) -> IF,
    IF: Future<Output = Result<S, Error>>,
    H: Fn(Arc<S>, LambdaEvent<P>) -> HF + Send + Sync + 'static,
    HF: Future<Output = Result<Value, Error>>,
{
    crate::logging::init(name);
    let sdk_config = crate::clients::load_sdk_config().await;
    let state = Arc::new(
        init(sdk_config)
            .await
            .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?,
    );
    let handle = Arc::new(handle);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<P>| {
        let (state, handle) = (state.clone(), handle.clone());
        // Boxed: a handler's future can be a deep type (account-vending's is), kept out of
        // the runtime's own future's layout.
        async move { Box::pin(handle(state, event)).await.map_err(FunctionError) }
    }))
    .await
}

/// Walks an SQS batch once: `None` when `payload` is not an SQS batch (the caller's direct
/// invocation), else the partial batch response naming, in SQS's order, the failed messages.
///
/// Every record is first `read`, in SQS's order, into its lane and what to work; a record
/// `read` refuses (`None`) fails. The records of one lane are handed to `work` together, in
/// SQS's order, so they never race each other (a lane of `None`: the record alone); lanes are
/// worked concurrently, at most `lanes` at a time, in the order they first appear. `work`
/// answers the records of its lane that failed.
pub async fn each_record<'a, K, T, R, W, F>(
    payload: &'a Value,
    lanes: usize,
    mut read: R,
    work: W,
) -> Option<Value>
where
    K: PartialEq,
    R: FnMut(&'a Value) -> Option<(Option<K>, T)>,
    W: Fn(Lane<'a, T>) -> F,
    F: std::future::Future<Output = Vec<&'a Value>>,
{
    if !is_sqs_batch(payload) {
        return None;
    }
    let records: &[Value] = payload
        .get("Records")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let mut failed: Vec<&Value> = Vec::new();
    let mut grouped: Vec<(Option<K>, Lane<'a, T>)> = Vec::new();
    for record in records {
        let Some((key, item)) = read(record) else {
            failed.push(record);
            continue;
        };
        match grouped.iter_mut().find(|(k, _)| k.is_some() && *k == key) {
            Some((_, items)) => items.push((record, item)),
            None => grouped.push((key, vec![(record, item)])),
        }
    }
    let worked: Vec<Vec<&Value>> = futures::stream::iter(grouped)
        .map(|(_, items)| work(items))
        .buffer_unordered(lanes)
        .collect()
        .await;
    let mut failures: Vec<String> = failed
        .into_iter()
        .chain(worked.into_iter().flatten())
        .map(|r| message_id(r).to_string())
        .collect();
    // SQS's order of identifiers, for readable logs.
    failures.sort_by_key(|id| records.iter().position(|r| message_id(r) == id));
    Some(batch_response(failures))
}

/// One lane's records and what `read` made of each, in SQS's order.
type Lane<'a, T> = Vec<(&'a Value, T)>;

/// True for an SQS event (its first record comes from `aws:sqs`).
fn is_sqs_batch(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

/// A record's SQS message id (empty when absent).
pub(crate) fn message_id(record: &Value) -> &str {
    record
        .get("messageId")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// SQS's `ApproximateReceiveCount` of a record (1 when absent).
pub(crate) fn receive_count(record: &Value) -> u32 {
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
pub(crate) async fn guarded<F: std::future::Future>(work: F) -> Result<F::Output, String> {
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

    fn batch(bodies: &[(&str, &str)]) -> Value {
        let records: Vec<Value> = bodies
            .iter()
            .map(|(id, body)| json!({"eventSource": "aws:sqs", "messageId": id, "body": body}))
            .collect();
        json!({ "Records": records })
    }

    fn body(record: &Value) -> &str {
        record["body"].as_str().unwrap_or_default()
    }

    /// A record whose work fails is named in `batchItemFailures`, the others are not; a record
    /// `read` refuses fails without being worked; failures come in SQS's order.
    #[tokio::test]
    async fn each_record_names_the_failed_messages_in_sqs_order() {
        let payload = batch(&[
            ("m-1", "a:ok"),
            ("m-2", "b:fail"),
            ("m-3", "unreadable"),
            ("m-4", "a:fail"),
            ("m-5", "c:ok"),
        ]);
        let worked = std::sync::Mutex::new(Vec::new());
        let read = |r: &Value| {
            let (key, what) = body(r).split_once(':')?;
            Some((Some(key.to_string()), what.to_string()))
        };
        let response = each_record(&payload, 2, read, |items| async {
            let ids: Vec<&str> = items.iter().map(|(r, _)| message_id(r)).collect();
            worked.lock().expect("not poisoned").push(ids.join(","));
            items
                .into_iter()
                .filter(|(_, what)| what == "fail")
                .map(|(r, _)| r)
                .collect::<Vec<_>>()
        })
        .await;
        assert_eq!(
            response,
            Some(json!({"batchItemFailures": [
                {"itemIdentifier": "m-2"}, {"itemIdentifier": "m-3"}, {"itemIdentifier": "m-4"}
            ]}))
        );
        // One lane per key, its records together and in order; the refused record not worked.
        let mut lanes = worked.into_inner().expect("not poisoned");
        lanes.sort();
        assert_eq!(lanes, ["m-1,m-4", "m-2", "m-5"]);
    }

    /// Records of the `None` lane are worked each alone; lanes never exceed the limit.
    #[tokio::test]
    async fn each_record_works_keyless_records_alone_within_the_limit() {
        let payload = batch(&[("m-1", "x"), ("m-2", "x"), ("m-3", "x")]);
        let running = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        let sizes = std::sync::Mutex::new(Vec::new());
        let response = each_record(
            &payload,
            2,
            |_| Some((None::<()>, ())),
            |items: Vec<(&Value, ())>| {
                sizes.lock().expect("not poisoned").push(items.len());
                async {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = running.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    tokio::task::yield_now().await;
                    running.fetch_sub(1, SeqCst);
                    Vec::new()
                }
            },
        )
        .await;
        assert_eq!(response, Some(json!({"batchItemFailures": []})));
        assert_eq!(sizes.into_inner().expect("not poisoned"), [1, 1, 1]);
        assert_eq!(most.into_inner(), 2);
    }

    /// A payload that is not an SQS batch is left to the caller (`None`), nothing read or
    /// worked; so is a `Records` array with no record (as before the walker: no first record
    /// says `aws:sqs`). A batch whose every record is refused names them all, nothing worked.
    #[tokio::test]
    async fn each_record_answers_an_empty_batch_and_leaves_other_payloads() {
        fn never(_: &Value) -> Option<(Option<()>, ())> {
            panic!("nothing to read")
        }
        async fn no_work(_: Vec<(&Value, ())>) -> Vec<&Value> {
            panic!("nothing to work")
        }
        let empty = json!({"Records": []});
        assert_eq!(
            each_record(&empty, 1, never, no_work).await,
            None,
            "no first record: not an SQS batch, as before"
        );
        for payload in [
            json!({"Records": [{"eventSource": "aws:sns", "messageId": "m-1"}]}),
            json!({"detail-type": "AWS Service Event via CloudTrail"}),
            json!(null),
        ] {
            assert_eq!(
                each_record(&payload, 1, never, no_work).await,
                None,
                "{payload}"
            );
        }
        let all_refused = batch(&[("m-1", "")]);
        assert_eq!(
            each_record(&all_refused, 1, |_| None::<(Option<()>, ())>, no_work).await,
            Some(json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]}))
        );
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
