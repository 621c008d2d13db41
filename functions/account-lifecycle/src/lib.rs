//! The account-lifecycle function's handler (the binary in `main.rs` only starts it): one
//! invocation is a direct EventBridge event or onboard request, or an SQS
//! batch answered with a partial batch response so one bad account never fails its neighbours.

use futures::StreamExt;
use serde_json::Value;
use shared::error::ErrorReport;
use shared::inbound::{parse_body, parse_request, Request};
use shared::lambda::{batch_response, is_sqs_batch, message_id, receive_count};
use shared::notify::{self, Failure};
use shared::report::{log_report, Outcome};
use shared::{engine::Engine, error::Error};

/// Handles one invocation payload.
///
/// * SQS batch: every message is parsed and worked (messages for the same account in order,
///   accounts concurrently up to MAX_CONCURRENT_ACCOUNTS); failed messages are returned in
///   `batchItemFailures`, so SQS redelivers them and, after maxReceiveCount, parks them in the DLQ.
/// * Anything else: one event or onboard request; the report is the return value, and a failed
///   account is an error (so asynchronous invocations are retried and then sent to their
///   failure destination).
pub async fn handle(engine: &Engine, payload: Value) -> Result<Value, Error> {
    if is_sqs_batch(&payload) {
        return Ok(handle_batch(engine, &payload).await);
    }
    let request = parse_request(&payload).inspect_err(log_rejected)?;
    let report = engine.run(request).await;
    log_report(&report);
    match report.deciding_error() {
        Some(err) if report.outcome == Outcome::Failed => {
            Err(failure_error(report.account_id.as_deref(), err))
        }
        _ => serde_json::to_value(&report).map_err(|e| Error::InvalidInput(e.to_string())),
    }
}

/// (SQS message id, request) pairs, in arrival order.
type Messages = Vec<(String, Request)>;

async fn handle_batch(engine: &Engine, payload: &Value) -> Value {
    let records = payload
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let max_receives = engine.config().max_receives;
    let Parsed {
        groups,
        mut failures,
        mut notices,
    } = parse_records(&records, max_receives);
    let counts: std::collections::HashMap<String, u32> = records
        .iter()
        .map(|r| (message_id(r).to_string(), receive_count(r)))
        .collect();
    let counts = &counts;
    // The chain sequence each message carries (shared::chain).
    let chains: std::collections::HashMap<String, u64> = records
        .iter()
        .filter_map(|r| Some((message_id(r).to_string(), shared::chain::of_record(r)?)))
        .collect();
    let chains = &chains;
    let failed: Vec<(Vec<String>, Vec<Failure>)> = futures::stream::iter(groups)
        .map(|(_, items)| work_group(engine, items, (counts, chains), max_receives))
        .buffer_unordered(engine.config().max_concurrent_accounts)
        .collect()
        .await;
    for (ids, found) in failed {
        failures.extend(ids);
        notices.extend(found);
    }
    notify_failures(engine, &notices).await;
    // Keep SQS's order of identifiers for readable logs.
    failures.sort_by_key(|id| records.iter().position(|r| message_id(r) == id));
    batch_response(failures)
}

/// A batch's records read: the requests grouped by account (so two messages for one account
/// never race each other), and the records refused, with the notices of those refused for the
/// last time.
struct Parsed {
    groups: Vec<(Option<String>, Messages)>,
    failures: Vec<String>,
    notices: Vec<Failure>,
}

fn parse_records(records: &[Value], max_receives: u32) -> Parsed {
    let mut parsed = Parsed {
        groups: Vec::new(),
        failures: Vec::new(),
        notices: Vec::new(),
    };
    for record in records {
        let id = message_id(record).to_string();
        let body = record
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match parse_body(body) {
            Err(e) => {
                log_rejected(&e);
                if notify::is_final(receive_count(record), max_receives, e.retry()) {
                    parsed.notices.push(Failure {
                        account_id: "?".into(),
                        account_name: None,
                        ou_id: None,
                        license: None,
                        kind: e.kind().into(),
                        code: None,
                        reason: format!("message {id}: {e}"),
                        parked: receive_count(record) >= max_receives,
                    });
                }
                parsed.failures.push(id);
            }
            Ok(request) => {
                let key = match &request {
                    Request::Work(w) => Some(w.account_id.to_string()),
                    Request::Skip { .. } => None,
                };
                match parsed
                    .groups
                    .iter_mut()
                    .find(|(k, _)| k.is_some() && *k == key)
                {
                    Some((_, items)) => items.push((id, request)),
                    None => parsed.groups.push((key, vec![(id, request)])),
                }
            }
        }
    }
    parsed
}

/// One account's messages, in order: the failed message ids, and the notices of those failed
/// for the last time.
async fn work_group(
    engine: &Engine,
    items: Messages,
    (counts, chains): (
        &std::collections::HashMap<String, u32>,
        &std::collections::HashMap<String, u64>,
    ),
    max_receives: u32,
) -> (Vec<String>, Vec<Failure>) {
    let items = without_redundant_grant_changes(items);
    let mut failed = Vec::new();
    let mut notices = Vec::new();
    for (id, request) in items {
        let report = engine.run_chained(request, chains.get(&id).copied()).await;
        log_report(&report);
        if report.outcome == Outcome::Failed {
            let count = counts.get(&id).copied().unwrap_or(1);
            let retry = report
                .deciding_error()
                .map_or(shared::error::Retry::Retryable, |e| e.retry);
            if notify::is_final(count, max_receives, retry) {
                notices.extend(notify::failures_of(&report, count >= max_receives));
            }
            failed.push(id);
        }
    }
    (failed, notices)
}

/// One account's messages of a batch, less the `grant-change` runs another message of the
/// group makes redundant: every run reads the account afresh, and a `grant-change` run asks
/// for nothing else. Kept: every other message, and one `grant-change` run when nothing else
/// runs the account. (Change events come in bursts, one per grant and status; the dropped
/// messages are done, not failed.)
fn without_redundant_grant_changes(items: Messages) -> Messages {
    let is_change = |r: &Request| r.is_grant_change();
    let others = items.iter().any(|(_, r)| !is_change(r));
    let mut kept_one = false;
    let before = items.len();
    let kept: Messages = items
        .into_iter()
        .filter(|(_, r)| {
            if !is_change(r) {
                return true;
            }
            let keep = !others && !kept_one;
            kept_one |= keep;
            keep
        })
        .collect();
    if kept.len() < before {
        tracing::info!(
            dropped = before - kept.len(),
            "grant-change runs already covered by another message of the batch"
        );
    }
    kept
}

/// Puts the batch's final failures on the notification queue (when one is configured).
async fn notify_failures(engine: &Engine, notices: &[Failure]) {
    if let Some(queue) = &engine.config().notify_queue_url {
        notify::queue_failures(&engine.clients().sqs, queue, notices).await;
    }
}

/// The error a direct invocation fails with: the deciding error itself (same kind, so
/// `errorType` says `NotInOrganization.permanent`, not `GrantFailed` with an empty grant ARN),
/// with the account named where its text does not already name it.
fn failure_error(account: Option<&str>, err: &ErrorReport) -> Error {
    let account = account.unwrap_or("?");
    let error = Error::from_report(err, "onboard");
    if error.to_string().contains(account) {
        return error;
    }
    match error {
        Error::InvalidInput(m) => Error::InvalidInput(format!("account {account}: {m}")),
        Error::Config(m) => Error::Config(format!("account {account}: {m}")),
        Error::Aws {
            service,
            operation,
            code,
            message,
            retry,
        } => Error::Aws {
            service,
            operation,
            code,
            message: format!("account {account}: {message}"),
            retry,
        },
        other => other,
    }
}

fn log_rejected(e: &Error) {
    tracing::error!(kind = e.kind(), retry = %e.retry(), error = %e, "input rejected before any AWS call");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shared::error::Retry;

    #[test]
    fn a_burst_of_grant_changes_for_one_account_is_one_run() {
        let msg = |id: &str, reason: &str| {
            let body = json!({"accountId": "210987654321", "reason": reason}).to_string();
            (
                id.to_string(),
                parse_body(&body).expect("a valid onboard request"),
            )
        };
        let ids = |items: Messages| items.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        // (case, messages in order, kept)
        let cases: Vec<(&str, Messages, Vec<&str>)> = vec![
            ("one change", vec![msg("1", "grant-change")], vec!["1"]),
            (
                "three changes",
                vec![
                    msg("1", "grant-change"),
                    msg("2", "grant-change"),
                    msg("3", "grant-change"),
                ],
                vec!["1"],
            ),
            (
                "a re-check covers the changes",
                vec![
                    msg("1", "grant-change"),
                    msg("2", "recheck"),
                    msg("3", "grant-change"),
                ],
                vec!["2"],
            ),
            (
                "other runs are all kept",
                vec![msg("1", "recheck"), msg("2", "reconcile")],
                vec!["1", "2"],
            ),
        ];
        for (case, items, kept) in cases {
            assert_eq!(ids(without_redundant_grant_changes(items)), kept, "{case}");
        }
    }

    /// An account outside the organization fails a direct invocation as
    /// `NotInOrganization.permanent` naming the account, not as `GrantFailed` with an empty ARN.
    #[test]
    fn failure_keeps_the_kind_of_the_deciding_error() {
        let not_member = Error::NotInOrganization {
            account: "210987654321".into(),
            reason: "You specified an account that doesn't exist.".into(),
        };
        let e = failure_error(Some("210987654321"), &ErrorReport::from(&not_member));
        assert_eq!(
            (e.kind(), e.retry()),
            ("NotInOrganization", Retry::Permanent)
        );
        assert_eq!(e.to_string(), not_member.to_string());
        assert!(!e.to_string().contains("grant  is"));

        let denied = Error::Aws {
            service: "license-manager",
            operation: "CreateGrant",
            code: "AccessDeniedException".into(),
            message: "no".into(),
            retry: Retry::Permanent,
        };
        let e = failure_error(Some("210987654321"), &ErrorReport::from(&denied));
        assert_eq!(
            (e.kind(), e.aws_code()),
            ("Aws", Some("AccessDeniedException"))
        );
        assert!(e.to_string().contains("account 210987654321"), "{e}");

        let throttled = Error::Aws {
            service: "license-manager",
            operation: "ListReceivedLicenses",
            code: "RateLimitExceededException".into(),
            message: "slow down".into(),
            retry: Retry::Retryable,
        };
        let e = failure_error(Some("210987654321"), &ErrorReport::from(&throttled));
        assert!(e.is_retryable());
        assert_eq!(e.aws_code(), Some("RateLimitExceededException"));
    }
}
