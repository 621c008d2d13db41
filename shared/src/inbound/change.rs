//! A change-event batch parsed before any AWS call: every record's source and id checked,
//! each body read into what it says ([`Item`]) or refused alone.

use super::reconcile::{change_event, check_sqs_record, event_label, GrantHint, Scope};
use crate::error::{describe, echo, Error};
use serde_json::Value;

/// The detail types `LicenseManagerChangesRule` matches.
const DETAIL_TYPES: [&str; 2] = ["Grant Change", "License Change"];

/// What one understood record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A `Grant Change` naming an account's grant.
    Hint(Box<GrantHint>),
    /// A `Grant Change` naming grants by ARN alone.
    Grants(Vec<String>),
    /// An event naming no account (a `License Change`, a detail without a grant): the
    /// configured scope, coalesced. The string says which event.
    Coalesce(String),
}

/// A batch from the change-event queue, parsed before any AWS call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeBatch {
    /// Every record's SQS message id, in order.
    pub(crate) ids: Vec<String>,
    /// What each understood record says (by record index).
    pub(crate) items: Vec<(usize, Item)>,
    /// Records refused, and why (by record index).
    pub(crate) rejected: Vec<(usize, String)>,
    /// Each record's receipt handle, when it has one (by record index): a record to deliver
    /// again is made visible again with it ([`crate::changes::retry_after`]).
    pub(crate) handles: Vec<Option<String>>,
    /// How many times each record was delivered, this time included (SQS's
    /// `ApproximateReceiveCount`; 1 when absent), by record index: how long a record to
    /// deliver again waits ([`crate::changes::retry_after`]).
    pub(crate) receives: Vec<u32>,
}

/// `Some` when `payload` is an SQS batch from the change-event queue `change_queue_url` (the
/// reconciler's `CHANGE_EVENT_QUEUE_URL`; the first record's `eventSourceARN` names it); then every record must come from that queue and carry a message
/// id, or the whole batch is refused (`InvalidInput`, no AWS call): the wiring is wrong. A
/// record whose body is not a License Manager change event is refused alone.
pub(crate) fn parse_batch(
    payload: &Value,
    change_queue_url: Option<&str>,
) -> Option<Result<ChangeBatch, Error>> {
    let queue = change_queue_url?.rsplit('/').next()?;
    let records = payload.get("Records")?.as_array()?;
    let from = |r: &Value| {
        r.get("eventSourceARN")
            .and_then(Value::as_str)
            .and_then(|arn| arn.rsplit(':').next())
            .map(str::to_string)
    };
    if from(records.first()?).as_deref() != Some(queue) {
        return None;
    }
    Some(parse_records(payload, records, queue))
}

fn parse_records(payload: &Value, records: &[Value], queue: &str) -> Result<ChangeBatch, Error> {
    let invalid = |msg: String| Error::InvalidInput(msg);
    if let Some(extra) = payload
        .as_object()
        .and_then(|o| o.keys().find(|k| k.as_str() != "Records"))
    {
        return Err(invalid(format!(
            "SQS event: unknown field {} beside Records",
            echo(extra)
        )));
    }
    let mut batch = ChangeBatch {
        ids: Vec::new(),
        items: Vec::new(),
        rejected: Vec::new(),
        handles: Vec::new(),
        receives: Vec::new(),
    };
    for (i, record) in records.iter().enumerate() {
        let field = |name: &str| record.get(name).and_then(Value::as_str);
        check_sqs_record(record, i, queue, "the change-event queue")?;
        let Some(id) = field("messageId").filter(|id| !id.is_empty()) else {
            return Err(invalid(format!(
                "SQS event: Records[{i}].messageId must be a non-empty string"
            )));
        };
        batch.ids.push(id.to_string());
        batch
            .handles
            .push(field("receiptHandle").map(str::to_string));
        batch.receives.push(crate::lambda::receive_count(record));
        match record_item(field("body")) {
            Ok(items) => batch.items.extend(items.into_iter().map(|item| (i, item))),
            Err(why) => batch.rejected.push((i, why)),
        }
    }
    Ok(batch)
}

/// What one record's body says, or why it is refused.
fn record_item(body: Option<&str>) -> Result<Vec<Item>, String> {
    let event: Value = body
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or("the body is not JSON")?;
    let obj = event.as_object().ok_or("the body is not a JSON object")?;
    let source = obj.get("source").and_then(Value::as_str);
    let detail_type = obj.get("detail-type").and_then(Value::as_str);
    if source != Some("aws.license-manager")
        || !detail_type.is_some_and(|t| DETAIL_TYPES.contains(&t))
    {
        return Err(format!(
            "not a License Manager Grant Change or License Change event (source {}, detail-type {})",
            obj.get("source").map_or_else(|| "nothing".into(), describe),
            obj.get("detail-type")
                .map_or_else(|| "nothing".into(), describe)
        ));
    }
    Ok(match change_event(obj) {
        Some(Some(Scope::GrantChanged(hints))) => {
            hints.into_iter().map(|h| Item::Hint(Box::new(h))).collect()
        }
        Some(Some(Scope::GrantArns(arns))) => vec![Item::Grants(arns)],
        _ => vec![Item::Coalesce(event_label(obj))],
    })
}

#[cfg(test)]
mod tests;
