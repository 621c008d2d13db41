//! A message per failure, aggregated (issue 12): when an account ends failed for good (a
//! permanent error on its first delivery, or any error on the delivery after which SQS parks the
//! message), account-lifecycle puts one small record per failing license on the notification
//! queue; the notifier drains that queue in batches (up to 1,000 records or 5 minutes) and
//! publishes one summary per batch, grouped by error kind and license, so a backfill of 1,000
//! accounts with one bad license sends one message, not 1,000. [`Notices`] is what
//! account-lifecycle does with each message of its SQS batch: read it, run it, note its final
//! failures, and queue them once the batch is done.

use crate::engine::Engine;
use crate::error::Error;
use crate::inbound::{parse_body, Request};
use crate::report::{log_report, AccountReport, Outcome};
use crate::Retry;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// One account's failure as the notification queue carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ou_id: Option<String>,
    /// The license that failed (none: the account's own step failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub reason: String,
    /// True when SQS parks the message now (dead-letter queue); false for a permanent error
    /// reported on its first delivery.
    pub parked: bool,
}

/// Whether this delivery's failure is the one to report: a permanent error on the first
/// delivery (it will fail the same way each time), or any error on the last delivery before
/// the dead-letter queue. Never twice for one message.
fn is_final(receive_count: u32, max_receives: u32, retry: Retry) -> bool {
    (retry == Retry::Permanent && receive_count <= 1) || receive_count >= max_receives
}

/// The records of a failed report: one per failing license, or one for the account's error.
fn failures_of(report: &AccountReport, parked: bool) -> Vec<Failure> {
    let base = |license: Option<String>, e: &crate::report::ErrorReport| Failure {
        account_id: report.account_id.clone().unwrap_or_else(|| "?".into()),
        account_name: report.account_name.clone(),
        ou_id: report.ou_id.clone(),
        license,
        kind: e.kind.clone(),
        code: e.code.clone(),
        reason: clip(&e.message, 400),
        parked,
    };
    let mut out: Vec<Failure> = report
        .licenses
        .iter()
        .filter_map(|l| {
            l.error
                .as_ref()
                .map(|e| base(Some(l.license_arn.clone()), e))
        })
        .collect();
    if let Some(e) = &report.error {
        out.push(base(None, e));
    }
    out
}

/// `text` cut to `max` characters (a reason quoted in a notification).
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// Cuts `text` to at most `max_bytes` bytes, at the last character boundary at or before it
/// (`String::truncate` panics when the cut falls inside a multi-byte character: `×`, `—`, `…`).
fn cut_at_char_boundary(text: &mut String, max_bytes: usize) {
    if text.len() <= max_bytes {
        return;
    }
    let mut cut = max_bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
}

/// What to do about each kind of failure (docs/operations.md).
pub(crate) fn next_step(kind: &str) -> &'static str {
    match kind {
        "Configuration" => "fix the stack's license selection (LicenseArns, ProductSkus, OuLicenseRules) or the account's licenses tag, then redrive the dead-letter queue",
        "ActiveLicenseConflict" => "the account already has an active license for this product from another subscription: deactivate one, or set ActivationOverrideBehavior, then redrive",
        "AssumeRole" => "check that the execution role exists in the account and trusts this stack's function role, then redrive",
        "NotInOrganization" => "the account left the organization or is suspended: nothing to do unless it returns",
        "WorkflowDeadline" | "GrantFailed" => "look at the grant in License Manager (Granted licenses) and at its StatusReason; redrive once it can succeed",
        "Aws" => "an AWS call kept failing (the code says which); redrive when the cause is fixed",
        "InvalidInput" => "a message was not understood; it is parked as it came",
        _ => "see the report line (saved query \"why did account X fail\") and redrive when fixed",
    }
}

/// Longest SNS message this builds before its closing lines (SNS allows 256 KB).
const MAX_MESSAGE_BYTES: usize = 200_000;
/// Accounts named per group; the rest are counted.
const NAMED_PER_GROUP: usize = 20;

/// One summary of `failures`: (subject, message). Groups by kind and license, largest first;
/// each names up to 20 accounts (id, name, OU, reason) and says what to do next.
pub fn summarize(failures: &[Failure], stack: &str) -> (String, String) {
    let mut groups: BTreeMap<(String, String), Vec<&Failure>> = BTreeMap::new();
    for f in failures {
        groups
            .entry((f.kind.clone(), f.license.clone().unwrap_or_default()))
            .or_default()
            .push(f);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let accounts: std::collections::BTreeSet<&str> =
        failures.iter().map(|f| f.account_id.as_str()).collect();
    let parked = failures.iter().filter(|f| f.parked).count();
    let subject = format!(
        "ct-entitlements ({stack}): {} account(s) not entitled",
        accounts.len()
    );
    let mut message = format!(
        "{} account(s) not entitled ({} failure(s), {} parked in the dead-letter queue), in {} group(s):\n",
        accounts.len(),
        failures.len(),
        parked,
        groups.len()
    );
    for ((kind, license), items) in &groups {
        let license = if license.is_empty() {
            "(the account's own steps)"
        } else {
            license
        };
        // Each account once (a failure reported first, then again when parked).
        let mut seen = std::collections::BTreeSet::new();
        let items: Vec<&&Failure> = items
            .iter()
            .filter(|f| seen.insert(f.account_id.as_str()))
            .collect();
        message.push_str(&format!(
            "\n== {} account(s) × {kind} — {license}\nWhat to do: {}\n",
            items.len(),
            next_step(kind)
        ));
        for f in items.iter().take(NAMED_PER_GROUP) {
            message.push_str(&format!(
                "- {} {} (OU {}): {}{}\n",
                f.account_id,
                f.account_name.as_deref().unwrap_or(""),
                f.ou_id.as_deref().unwrap_or("?"),
                f.code
                    .as_deref()
                    .map(|c| format!("{c}: "))
                    .unwrap_or_default(),
                f.reason
            ));
        }
        if items.len() > NAMED_PER_GROUP {
            message.push_str(&format!("- … and {} more\n", items.len() - NAMED_PER_GROUP));
        }
        if message.len() > MAX_MESSAGE_BYTES {
            cut_at_char_boundary(&mut message, MAX_MESSAGE_BYTES);
            message.push_str("\n… (cut: see the logs)\n");
            break;
        }
    }
    message.push_str(
        "\nCloudWatch Logs Insights (account-lifecycle's log groups):\n\
         fields @timestamp, report.accountId, report.error.kind, report.error.message, report.licenses.0.error.message\n\
         | filter type = \"accountReport\" and Outcome = \"failed\"\n\
         | sort @timestamp desc\n",
    );
    (subject, message)
}

/// Puts final failures on the notification queue. Best effort: the messages themselves are
/// still failed and parked as usual if this fails, so an error is logged, not returned.
async fn queue_failures(sqs: &aws_sdk_sqs::Client, queue: &str, notices: &[Failure]) {
    if notices.is_empty() {
        return;
    }
    let bodies: Vec<String> = notices
        .iter()
        .filter_map(|n| serde_json::to_string(n).ok())
        .collect();
    let calls = crate::report::CallLog::default();
    if let Err(e) = crate::aws::send_batch(sqs, queue, &bodies, &calls).await {
        tracing::error!(error = %e, failures = notices.len(), "could not queue failure notifications");
    }
}

/// The final failures of one SQS batch of account-lifecycle messages: noted as the batch's
/// messages are read ([`Notices::read`]) and run ([`Notices::run`]), and put on the
/// notification queue once the batch is done ([`Notices::queue`]).
#[derive(Debug, Default)]
pub struct Notices(Mutex<Vec<Failure>>);

impl Notices {
    /// Reads one SQS record's body into its request. A body that is not understood is the
    /// error (the message fails), noted when this delivery is its final one.
    pub fn read(&self, engine: &Engine, record: &Value) -> Result<Request, Error> {
        let body = record
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default();
        parse_body(body).inspect_err(|e| {
            let max_receives = engine.config().max_receives;
            let receives = crate::lambda::receive_count(record);
            if is_final(receives, max_receives, e.retry()) {
                self.note(vec![Failure {
                    account_id: "?".into(),
                    account_name: None,
                    ou_id: None,
                    license: None,
                    kind: e.kind().into(),
                    code: None,
                    reason: format!("message {}: {e}", crate::lambda::message_id(record)),
                    parked: receives >= max_receives,
                }]);
            }
        })
    }

    /// Runs one account's messages in order (each under the chain sequence its record
    /// carries, [`crate::chain`]), logs each report, and notes the failures of those that
    /// failed for the last time (after the last run): the records whose run failed.
    pub async fn run<'a>(
        &self,
        engine: &Engine,
        messages: Vec<(&'a Value, Request)>,
    ) -> Vec<&'a Value> {
        let max_receives = engine.config().max_receives;
        let mut failed = Vec::new();
        let mut notices = Vec::new();
        for (record, request) in messages {
            let chain = crate::chain::of_record(record);
            let report = engine.run_chained(request, chain).await;
            log_report(&report);
            if report.outcome == Outcome::Failed {
                let count = crate::lambda::receive_count(record);
                let retry = report
                    .deciding_error()
                    .map_or(Retry::Retryable, |e| e.retry);
                if is_final(count, max_receives, retry) {
                    notices.extend(failures_of(&report, count >= max_receives));
                }
                failed.push(record);
            }
        }
        self.note(notices);
        failed
    }

    /// Puts the noted failures on the notification queue (when one is configured).
    pub async fn queue(self, engine: &Engine) {
        let notices = self.0.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = &engine.config().notify_queue_url {
            queue_failures(&engine.clients().sqs, queue, &notices).await;
        }
    }

    fn note(&self, found: Vec<Failure>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SNS's limit on a message: 256 KB.
    const SNS_MAX_MESSAGE_BYTES: usize = 256 * 1024;

    fn failure(account: usize, kind: &str, license: &str) -> Failure {
        Failure {
            account_id: format!("{account:012}"),
            account_name: Some(format!("acct-{account}")),
            ou_id: Some("ou-ab12-cdef3456".into()),
            license: Some(license.into()),
            kind: kind.into(),
            code: None,
            reason: "matches no AVAILABLE license".into(),
            parked: true,
        }
    }

    #[test]
    fn a_thousand_failures_of_one_bad_license_are_one_summary() {
        let mut failures: Vec<Failure> = (0..1000)
            .map(|i| failure(i, "Configuration", "arn:l-bad"))
            .collect();
        failures.push(failure(5000, "AssumeRole", "arn:l-good"));
        let (subject, message) = summarize(&failures, "prod");
        assert_eq!(
            subject,
            "ct-entitlements (prod): 1001 account(s) not entitled"
        );
        assert!(
            message.contains("== 1000 account(s) × Configuration — arn:l-bad"),
            "{message}"
        );
        assert!(message.contains("== 1 account(s) × AssumeRole — arn:l-good"));
        assert!(message.contains("… and 980 more"));
        assert!(message.contains("What to do: fix the stack's license selection"));
        assert!(message.contains("acct-0 (OU ou-ab12-cdef3456)"));
        assert!(message.len() < 256 * 1024);
        // Largest group first.
        assert!(message.find("1000 account(s) ×") < message.find("1 account(s) × AssumeRole"));
    }

    /// The cut of a long summary falls inside a multi-byte character (`×`, `—`, `…`) for one of
    /// three paddings of the text before it: no panic, valid text within SNS's limit.
    #[test]
    fn a_summary_cut_inside_a_multi_byte_character_stays_within_the_limit() {
        for ch in ['×', '—', '…'] {
            let mut cut_inside = false;
            for pad in 0..ch.len_utf8() {
                let mut f = failure(1, &format!("Aws{}", "x".repeat(pad)), "");
                // A license name of 300,000 bytes of `ch`: the group's header crosses the limit.
                f.license = Some(ch.to_string().repeat(300_000 / ch.len_utf8()));
                let (_, message) =
                    std::panic::catch_unwind(|| summarize(std::slice::from_ref(&f), "prod"))
                        .unwrap_or_else(|_| panic!("{ch:?} padded {pad}: summarize panicked"));
                assert!(
                    message.len() <= SNS_MAX_MESSAGE_BYTES,
                    "{ch:?} padded {pad}: {} bytes",
                    message.len()
                );
                let cut = message
                    .find("\n… (cut: see the logs)\n")
                    .expect("cut marked");
                assert!(
                    cut <= MAX_MESSAGE_BYTES && cut > MAX_MESSAGE_BYTES - ch.len_utf8(),
                    "{ch:?} padded {pad}: cut at {cut}"
                );
                assert!(message[..cut].ends_with(ch), "{ch:?} padded {pad}");
                // The license runs past the limit: the cut is short of it only inside a `ch`.
                cut_inside |= cut != MAX_MESSAGE_BYTES;
                assert!(message.ends_with("| sort @timestamp desc\n"));
            }
            assert!(cut_inside, "{ch:?}: no padding put the cut inside it");
        }
    }

    /// An engine whose clients point at a closed port (no AWS call is made here).
    fn engine() -> Engine {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let config = crate::config::Config::from_lookup_per_request(|_| None).expect("defaults");
        Engine::new(
            config,
            crate::clients::Clients::from_sdk_config(&sdk, "us-east-1"),
        )
    }

    /// A body not understood fails its message; its notice is noted on its first delivery (a
    /// permanent error) and on the last before the dead-letter queue, never in between.
    #[test]
    fn a_refused_message_is_noted_when_final() {
        let engine = engine();
        let max = engine.config().max_receives;
        let record = |count: u32| {
            serde_json::json!({"messageId": "m-1", "body": "not json",
                "attributes": {"ApproximateReceiveCount": count.to_string()}})
        };
        let notices = Notices::default();
        for count in [1, 2, max] {
            let e = notices.read(&engine, &record(count)).expect_err("refused");
            assert_eq!(e.kind(), "InvalidInput");
        }
        let valid = serde_json::json!({"messageId": "m-2",
            "body": serde_json::json!({"accountId": "210987654321"}).to_string()});
        assert!(notices.read(&engine, &valid).is_ok());
        let noted = notices.0.into_inner().expect("not poisoned");
        assert_eq!(
            noted.iter().map(|f| f.parked).collect::<Vec<_>>(),
            [false, true]
        );
        assert!(noted
            .iter()
            .all(|f| f.account_id == "?" && f.kind == "InvalidInput"));
        assert!(noted[0].reason.starts_with("message m-1: "), "{noted:?}");
    }

    #[test]
    fn each_failure_is_reported_once() {
        use Retry::{Permanent, Retryable};
        // (receive count, max receives, retry, reported)
        for (count, max, retry, reported) in [
            (1, 5, Permanent, true),
            (2, 5, Permanent, false),
            (4, 5, Permanent, false),
            (5, 5, Permanent, true),
            (1, 5, Retryable, false),
            (4, 5, Retryable, false),
            (5, 5, Retryable, true),
            (7, 5, Retryable, true),
        ] {
            assert_eq!(
                is_final(count, max, retry),
                reported,
                "{count}/{max} {retry:?}"
            );
        }
    }
}
