//! The account-lifecycle function's handler (the binary in `main.rs` only starts it): one
//! invocation is a direct EventBridge event or onboard request, or an SQS
//! batch answered with a partial batch response so one bad account never fails its neighbours.

use serde_json::Value;
use shared::error::ErrorReport;
use shared::inbound::{parse_request, Request};
use shared::lambda::each_record;
use shared::notify::Notices;
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
    if let Some(response) = handle_batch(engine, &payload).await {
        return Ok(response);
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

/// An SQS batch (`None` for any other payload): every record read first (a record refused
/// fails, its notice noted when final), the requests grouped by account (so two messages for
/// one account never race each other; a skipped request alone), each account's messages run
/// in order less the redundant `grant-change` runs, and the batch's final failures queued once.
async fn handle_batch(engine: &Engine, payload: &Value) -> Option<Value> {
    let notices = Notices::default();
    let read = |record: &Value| {
        let request = notices
            .read(engine, record)
            .inspect_err(log_rejected)
            .ok()?;
        let key = match &request {
            Request::Work(w) => Some(w.account_id.to_string()),
            Request::Skip { .. } => None,
        };
        Some((key, request))
    };
    let work = |messages| async {
        let messages = without_redundant_grant_changes(messages);
        notices.run(engine, messages).await
    };
    let lanes = engine.config().max_concurrent_accounts;
    let response = each_record(payload, lanes, read, work).await?;
    notices.queue(engine).await;
    Some(response)
}

/// One account's messages of a batch, less the `grant-change` runs another message of the
/// group makes redundant: every run reads the account afresh, and a `grant-change` run asks
/// for nothing else. Kept: every other message, and one `grant-change` run when nothing else
/// runs the account. (Change events come in bursts, one per grant and status; the dropped
/// messages are done, not failed.)
fn without_redundant_grant_changes<I>(items: Vec<(I, Request)>) -> Vec<(I, Request)> {
    let is_change = |r: &Request| r.is_grant_change();
    let others = items.iter().any(|(_, r)| !is_change(r));
    let mut kept_one = false;
    let before = items.len();
    let kept: Vec<_> = items
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
    use shared::inbound::parse_body;

    /// (SQS message id, request) pairs, in arrival order.
    type Messages = Vec<(String, Request)>;

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
