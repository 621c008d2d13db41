//! Amazon SQS: re-checks, coalesced reconcile requests, batches and visibility changes.

use crate::error::{aws_error, Error, Retry};
use crate::report::{CallLog, Side};
use std::time::Duration;

/// Queues a delayed re-check on the onboarding queue.
pub async fn send_recheck(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    body: &str,
    delay: Duration,
    calls: &CallLog,
) -> Result<(), Error> {
    // Not through send_chained: one async layer less keeps callers' futures within the
    // compiler's layout depth (account-vending's main).
    calls.record(Side::Own, "sqs:SendMessage", true);
    recheck_request(sqs, queue_url, body, delay, None)
        .send()
        .await
        .map_err(|e| aws_error("sqs", "SendMessage", e))?;
    Ok(())
}

/// The `SendMessage` of a re-check: `body` after `delay` (at most SQS's 900 s), with chain
/// sequence `chain` when given.
fn recheck_request(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    body: &str,
    delay: Duration,
    chain: Option<u64>,
) -> aws_sdk_sqs::operation::send_message::builders::SendMessageFluentBuilder {
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(body)
        .delay_seconds(i32::try_from(delay.as_secs().min(900)).unwrap_or(900))
        .set_message_attributes(chain.map(chain_attribute))
}

/// [`send_recheck`], the message carrying chain sequence `chain` (the message attribute
/// [`crate::chain::ATTRIBUTE`]) when given.
pub(crate) async fn send_chained(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    body: &str,
    delay: Duration,
    chain: Option<u64>,
    calls: &CallLog,
) -> Result<(), Error> {
    calls.record(Side::Own, "sqs:SendMessage", true);
    recheck_request(sqs, queue_url, body, delay, chain)
        .send()
        .await
        .map_err(|e| aws_error("sqs", "SendMessage", e))?;
    Ok(())
}

/// The message attributes that carry chain sequence `seq`.
fn chain_attribute(
    seq: u64,
) -> std::collections::HashMap<String, aws_sdk_sqs::types::MessageAttributeValue> {
    let value = aws_sdk_sqs::types::MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(seq.to_string())
        .build();
    value
        .map(|v| std::collections::HashMap::from([(crate::chain::ATTRIBUTE.to_string(), v)]))
        .unwrap_or_default()
}

/// One message on the coalescing FIFO queue: one message group, and one deduplication id
/// for every message, so SQS accepts at most one per 5-minute deduplication interval (Amazon
/// SQS Developer Guide, "Exactly-once processing": a message with a deduplication id sent
/// within 5 minutes of one accepted with it is accepted and not delivered).
pub(crate) async fn send_coalesced(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    body: &str,
    calls: &CallLog,
) -> Result<(), Error> {
    calls.record(Side::Own, "sqs:SendMessage", true);
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(body)
        .message_group_id("reconcile")
        .message_deduplication_id("reconcile")
        .send()
        .await
        .map_err(|e| aws_error("sqs", "SendMessage", e))?;
    Ok(())
}

/// Makes SQS messages (`(message id, receipt handle, seconds)`) visible again after their
/// seconds (`ChangeMessageVisibilityBatch`, ten at a time). The first entry a batch could not change
/// fails the call; the messages then keep the visibility they have.
pub(crate) async fn change_visibility(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    entries: &[(String, String, i32)],
    calls: &CallLog,
) -> Result<(), Error> {
    use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry as Entry;
    for chunk in entries.chunks(10) {
        calls.record(Side::Own, "sqs:ChangeMessageVisibilityBatch", true);
        let batch = chunk
            .iter()
            .enumerate()
            .map(|(i, (_, handle, seconds))| {
                Entry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(*seconds)
                    .build()
                    .map_err(|e| Error::InvalidInput(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = sqs
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(batch))
            .send()
            .await
            .map_err(|e| aws_error("sqs", "ChangeMessageVisibilityBatch", e))?;
        if let Some(first) = out.failed().first() {
            let id = first.id().parse::<usize>().ok().and_then(|i| chunk.get(i));
            return Err(Error::Aws {
                service: "sqs",
                operation: "ChangeMessageVisibilityBatch",
                code: first.code().to_string(),
                message: format!(
                    "{} of {} message(s) not changed, the first {}: {}",
                    out.failed().len(),
                    chunk.len(),
                    id.map_or("?", |(m, _, _)| m.as_str()),
                    first.message().unwrap_or_default()
                ),
                retry: Retry::Retryable,
            });
        }
    }
    Ok(())
}

/// Sends bodies to a queue, ten per SendMessageBatch; entries SQS rejects are retried once.
/// Returns how many were sent.
pub(crate) async fn send_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    bodies: &[String],
    calls: &CallLog,
) -> Result<usize, Error> {
    let bodies: Vec<(String, Option<u64>)> = bodies.iter().map(|b| (b.clone(), None)).collect();
    send_batch_chained(sqs, queue_url, &bodies, calls).await
}

/// [`send_batch`], each body with the chain sequence its message carries, if any.
pub(crate) async fn send_batch_chained(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    bodies: &[(String, Option<u64>)],
    calls: &CallLog,
) -> Result<usize, Error> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let mut sent = 0;
    for chunk in bodies.chunks(10) {
        let mut entries: Vec<(String, &(String, Option<u64>))> = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| (i.to_string(), b))
            .collect();
        for attempt in 0..2 {
            calls.record(Side::Own, "sqs:SendMessageBatch", true);
            let batch = entries
                .iter()
                .map(|(id, (body, chain))| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(body.as_str())
                        .set_message_attributes(chain.map(chain_attribute))
                        .build()
                        .map_err(|e| Error::InvalidInput(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(batch))
                .send()
                .await
                .map_err(|e| aws_error("sqs", "SendMessageBatch", e))?;
            sent += out.successful().len();
            let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
            if failed.is_empty() {
                break;
            }
            if attempt == 1 {
                let first = &out.failed()[0];
                return Err(Error::Aws {
                    service: "sqs",
                    operation: "SendMessageBatch",
                    code: first.code().to_string(),
                    message: format!(
                        "{} message(s) not accepted: {}",
                        failed.len(),
                        first.message().unwrap_or_default()
                    ),
                    retry: Retry::Retryable,
                });
            }
            entries.retain(|(id, _)| failed.contains(&id.as_str()));
        }
    }
    Ok(sent)
}
