//! The chains table's calls: one item per account (`account`, the partition key), its
//! `seq`, `state`, `expires` (the table's TTL attribute), and a waiting chain's `body`, or a
//! running one's `poked`. Every call is recorded in the caller's `CallLog` as the IAM action
//! it needs; none counts as a write (the table is ct-entitlements' own bookkeeping, not a change
//! to the organization).

use super::{Item, State, RUNNING_SECONDS};
use crate::error::{aws_error, Error};
use crate::report::{CallLog, Side};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;

const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(account: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("account".to_string(), s(account))])
}

/// The item DynamoDB answered, when it has the attributes of one.
fn item_of(attrs: &HashMap<String, AttributeValue>) -> Option<Item> {
    let num = |k: &str| attrs.get(k)?.as_n().ok()?.parse::<u64>().ok();
    Some(Item {
        seq: num("seq")?,
        state: State::parse(attrs.get("state")?.as_s().ok()?)?,
        expires: num("expires")?,
        body: attrs.get("body").and_then(|b| b.as_s().ok()).cloned(),
        poked: attrs
            .get("poked")
            .and_then(|p| p.as_bool().ok())
            .copied()
            .unwrap_or(false),
    })
}

/// What a run's claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The run is the chain's current one (the item now says running, under its sequence).
    Mine,
    /// A later message of the chain exists: this one is stale.
    Superseded,
}

/// One conditional `UpdateItem` of `account`'s item: `update` when `condition` holds, the
/// attribute names `#<name>` standing for themselves and `values` bound as given. The item as
/// it was (`Some`, when it had one), or `None` when the condition failed.
async fn update(
    (db, table, calls): (&Client, &str, &CallLog),
    account: &str,
    (update, condition): (&str, &str),
    values: &[(&str, AttributeValue)],
) -> Result<Option<Option<Item>>, Error> {
    calls.record(Side::Own, "dynamodb:UpdateItem", false);
    let mut request = db
        .update_item()
        .table_name(table)
        .set_key(Some(key(account)))
        .update_expression(update)
        .condition_expression(condition)
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld);
    for name in ["seq", "state", "expires", "body", "poked"] {
        if update.contains(&format!("#{name}")) || condition.contains(&format!("#{name}")) {
            request = request.expression_attribute_names(format!("#{name}"), name);
        }
    }
    for (name, value) in values {
        request = request.expression_attribute_values(*name, value.clone());
    }
    match request
        .send()
        .await
        .map_err(|e| aws_error("dynamodb", "UpdateItem", e))
    {
        Ok(out) => Ok(Some(out.attributes().and_then(item_of))),
        Err(e) if e.aws_code() == Some(CONDITION_FAILED) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Claims `account`'s chain for a run of the message with sequence `seq`: unless a live item
/// names a later sequence, the item becomes `running` under `seq` (its mark and body
/// cleared).
pub(crate) async fn claim(
    db: &Client,
    table: &str,
    account: &str,
    seq: u64,
    now: u64,
    calls: &CallLog,
) -> Result<Claim, Error> {
    let found = update(
        (db, table, calls),
        account,
        (
            "SET #seq = :seq, #state = :running, #expires = :expires REMOVE #body, #poked",
            "attribute_not_exists(#seq) OR #seq <= :seq OR #expires <= :now",
        ),
        &[
            (":seq", n(seq)),
            (":running", s(State::Running.as_str())),
            (":expires", n(now + RUNNING_SECONDS)),
            (":now", n(now)),
        ],
    )
    .await?;
    Ok(if found.is_some() {
        Claim::Mine
    } else {
        Claim::Superseded
    })
}

/// Whether the item `update` answered was marked (`poked`).
fn was_poked(found: Option<Option<Item>>) -> bool {
    found.flatten().is_some_and(|old| old.poked)
}

/// The run under `mine` queued its re-check (`body`, sequence `next`): the item becomes
/// `waiting` under `next` until `expires`. Whether a change marked the chain while it ran
/// (then the caller brings the re-check forward). A later sequence in the item leaves it as
/// it is: `Ok(false)`.
pub(crate) async fn wait(
    db: &Client,
    table: &str,
    account: &str,
    (mine, next): (u64, u64),
    body: &str,
    expires: u64,
    calls: &CallLog,
) -> Result<bool, Error> {
    let found = update(
        (db, table, calls),
        account,
        (
            "SET #seq = :next, #state = :waiting, #expires = :expires, #body = :body REMOVE #poked",
            "#seq = :mine",
        ),
        &[
            (":next", n(next)),
            (":mine", n(mine)),
            (":waiting", s(State::Waiting.as_str())),
            (":expires", n(expires)),
            (":body", s(body)),
        ],
    )
    .await?;
    Ok(was_poked(found))
}

/// The run under `mine` ended the chain (nothing left to wait for): the item becomes `ended`
/// until `expires`. Whether a change marked the chain while it ran (then the caller queues one
/// more run). A later sequence in the item leaves it: `Ok(false)`.
pub(crate) async fn end(
    db: &Client,
    table: &str,
    account: &str,
    mine: u64,
    expires: u64,
    calls: &CallLog,
) -> Result<bool, Error> {
    let found = update(
        (db, table, calls),
        account,
        (
            "SET #state = :ended, #expires = :expires REMOVE #body, #poked",
            "#seq = :mine",
        ),
        &[
            (":mine", n(mine)),
            (":ended", s(State::Ended.as_str())),
            (":expires", n(expires)),
        ],
    )
    .await?;
    Ok(was_poked(found))
}

/// The run under `mine` failed: its message comes again, and the chain holds nothing back
/// meanwhile (the item expires now). Every message of the account then runs, the delayed
/// re-check it may have superseded included, as without chains: a failure never waits on the
/// queue's visibility timeout alone. A later sequence in the item leaves it as it is.
pub(crate) async fn release(
    db: &Client,
    table: &str,
    account: &str,
    mine: u64,
    now: u64,
    calls: &CallLog,
) -> Result<(), Error> {
    let values = [(":mine", n(mine)), (":now", n(now))];
    let updated = ("SET #expires = :now", "#seq = :mine");
    update((db, table, calls), account, updated, &values).await?;
    Ok(())
}

/// Marks a running chain (sequence `seq`) so its run goes on at once when it ends: `true`. A
/// chain that moved on meanwhile is left as it is: `false` (its run ended, or another began;
/// the caller reads it again).
pub(crate) async fn poke(
    db: &Client,
    table: &str,
    account: &str,
    seq: u64,
    calls: &CallLog,
) -> Result<bool, Error> {
    let values = [
        (":seq", n(seq)),
        (":running", s(State::Running.as_str())),
        (":yes", AttributeValue::Bool(true)),
    ];
    let updated = ("SET #poked = :yes", "#seq = :seq AND #state = :running");
    Ok(update((db, table, calls), account, updated, &values)
        .await?
        .is_some())
}

/// A waiting chain's re-check (sequence `old`) was sent again now under `next`: the item
/// becomes `queued` under it, so the delayed one is stale when it comes. A chain that moved on
/// meanwhile is left as it is.
pub(crate) async fn forward(
    db: &Client,
    table: &str,
    account: &str,
    (old, next): (u64, u64),
    expires: u64,
    calls: &CallLog,
) -> Result<(), Error> {
    let values = [
        (":next", n(next)),
        (":old", n(old)),
        (":queued", s(State::Queued.as_str())),
        (":expires", n(expires)),
    ];
    let updated = (
        "SET #seq = :next, #state = :queued, #expires = :expires REMOVE #body, #poked",
        "#seq = :old",
    );
    update((db, table, calls), account, updated, &values).await?;
    Ok(())
}

/// Marks accounts' chains queued (`(account, sequence of the message sent)`), 25 per
/// `BatchWriteItem`; what DynamoDB leaves unprocessed is written once more, then left (an
/// unmarked account only lets an event through to a second run).
pub(crate) async fn mark_queued(
    db: &Client,
    table: &str,
    queued: &[(String, u64)],
    expires: u64,
    calls: &CallLog,
) -> Result<(), Error> {
    for chunk in queued.chunks(25) {
        let mut requests = chunk
            .iter()
            .map(|(account, seq)| {
                let mut item = key(account);
                item.insert("seq".into(), n(*seq));
                item.insert("state".into(), s(State::Queued.as_str()));
                item.insert("expires".into(), n(expires));
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|p| WriteRequest::builder().put_request(p).build())
                    .map_err(|e| Error::InvalidInput(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for _ in 0..2 {
            if requests.is_empty() {
                break;
            }
            calls.record(Side::Own, "dynamodb:BatchWriteItem", false);
            let out = db
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .await
                .map_err(|e| aws_error("dynamodb", "BatchWriteItem", e))?;
            requests = out
                .unprocessed_items()
                .and_then(|u| u.get(table))
                .cloned()
                .unwrap_or_default();
        }
    }
    Ok(())
}

/// The items of `accounts` (100 per `BatchGetItem`, consistent reads); keys DynamoDB leaves
/// unprocessed are asked once more, then counted as no item.
pub(crate) async fn read_items(
    db: &Client,
    table: &str,
    accounts: &[&str],
    calls: &CallLog,
) -> Result<HashMap<String, Item>, Error> {
    let mut items = HashMap::new();
    for chunk in accounts.chunks(100) {
        let mut keys: Vec<HashMap<String, AttributeValue>> = chunk.iter().map(|a| key(a)).collect();
        for _ in 0..2 {
            if keys.is_empty() {
                break;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| Error::InvalidInput(e.to_string()))?;
            calls.record(Side::Own, "dynamodb:BatchGetItem", false);
            let out = db
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(|e| aws_error("dynamodb", "BatchGetItem", e))?;
            for attrs in out
                .responses()
                .and_then(|r| r.get(table))
                .into_iter()
                .flatten()
            {
                if let (Some(account), Some(item)) = (
                    attrs.get("account").and_then(|a| a.as_s().ok()),
                    item_of(attrs),
                ) {
                    items.insert(account.clone(), item);
                }
            }
            keys = out
                .unprocessed_keys()
                .and_then(|u| u.get(table))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
        }
    }
    Ok(items)
}

/// [`read_items`] for callers that go on without chains when the table cannot be read (every
/// run then starts, as without a table): the items, or `None`, the error logged.
pub(crate) async fn read_or_none(
    db: &Client,
    table: &str,
    accounts: &[&str],
    calls: &CallLog,
) -> Option<HashMap<String, Item>> {
    match read_items(db, table, accounts, calls).await {
        Ok(items) => Some(items),
        Err(e) => {
            tracing::warn!(error = %e, "chains table unreadable; going on without chains");
            None
        }
    }
}

/// [`mark_queued`] as every sender needs it: queued until `now_secs` + [`super::QUEUED_SECONDS`],
/// best effort (an unmarked account only lets a later event through to a second run; the error
/// is logged).
pub(crate) async fn mark_queued_best_effort(
    db: &Client,
    table: &str,
    queued: &[(String, u64)],
    now_secs: u64,
    calls: &CallLog,
) {
    let expires = now_secs + super::QUEUED_SECONDS;
    if let Err(e) = mark_queued(db, table, queued, expires, calls).await {
        tracing::warn!(error = %e, accounts = queued.len(), "queued accounts' chains not marked");
    }
}
