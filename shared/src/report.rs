//! The per-account report: one structured JSON log line per account, and the function's return
//! value for a direct invocation.

pub(crate) use crate::error::ErrorReport;

use crate::error::Retry;
use crate::metrics::{emf_members, Metric};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The release, one source of truth: the workspace's `version` in Cargo.toml (the template's
/// `SemanticVersion` and `Version` output and CHANGELOG.md are tested to match it).
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One structured log line: `{"type": kind, "version": VERSION, ...fields}`.
pub fn report_line(kind: &str, fields: Value) -> String {
    let mut line = serde_json::Map::new();
    line.insert("type".into(), json!(kind));
    line.insert("version".into(), json!(VERSION));
    match fields {
        Value::Object(m) => line.extend(m),
        other => {
            line.insert("value".into(), other);
        }
    }
    Value::Object(line).to_string()
}

/// Prints [`report_line`] to stdout (CloudWatch Logs, one line per report).
pub fn emit(kind: &str, fields: Value) {
    println!("{}", report_line(kind, fields));
}

/// An `accountReport` line at `now` (Unix seconds): the report, the version and the report's
/// metrics in CloudWatch's Embedded Metric Format ([`crate::metrics`]).
pub fn account_report_line(report: &AccountReport, now: u64) -> String {
    let mut fields = account_metrics(report, crate::metrics::function(), now);
    match serde_json::to_value(report) {
        Ok(value) => {
            fields.insert("report".into(), value);
        }
        Err(e) => tracing::error!(error = %e, "could not serialize a report"),
    }
    report_line("accountReport", Value::Object(fields))
}

/// The EMF members of one account report at `now` (Unix seconds): the `_aws` directive, the
/// `Function` and `Outcome` dimensions, and the metrics (only those that apply).
pub(crate) fn account_metrics(
    report: &AccountReport,
    function: &str,
    now: u64,
) -> Map<String, Value> {
    emf_members(
        function,
        &outcome_name(report.outcome),
        report.metrics(now),
        now,
    )
}

/// The outcome as the report line spells it (its serde name), so `Outcome` and `report.outcome`
/// always agree.
fn outcome_name(outcome: Outcome) -> String {
    match serde_json::to_value(outcome) {
        Ok(Value::String(name)) => name,
        _ => format!("{outcome:?}").to_lowercase(),
    }
}

/// Prints [`account_report_line`] now.
/// One JSON line per account (for CloudWatch Logs Insights), and a warning for a failed one.
pub fn log_report(report: &AccountReport) {
    emit_account_report(report);
    if report.outcome == Outcome::Failed {
        tracing::warn!(account = ?report.account_id, error = ?report.deciding_error(), "account not entitled");
    }
}

pub fn emit_account_report(report: &AccountReport) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!("{}", account_report_line(report, now));
}

/// [`emit`] of `{"report": report}`.
pub fn emit_report<T: Serialize>(kind: &str, report: &T) {
    match serde_json::to_value(report) {
        Ok(value) => emit(kind, json!({ "report": value })),
        Err(e) => tracing::error!(error = %e, "could not serialize a report"),
    }
}

/// How an account ended this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Every selected license is ACTIVE in the account.
    Entitled,
    /// Some grant is still in workflow; a delayed re-check is queued.
    Pending,
    /// Nothing to do for this account (not selected, or a FAILED Control Tower event).
    Skipped,
    /// Dry run: the plan is in the report, nothing was written.
    Planned,
    /// At least one step failed; `error` says whether a retry can help.
    Failed,
    /// The account's per-account grants were deactivated or deleted (offboarding).
    Offboarded,
}

/// One service-linked role in the member account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlrReport {
    pub service: String,
    /// `existed`, `created` or `wouldCreate`.
    pub action: String,
}

/// One license in the account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseReport {
    pub license_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_sku: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_arn: Option<String>,
    /// `account` (a grant to this account), `organization` (a child of an org or OU grant) or
    /// `repair` (organization/OU mode: ct-entitlements' own grant to the account, kept until
    /// the child under the parent is ACTIVE; made where the child failed or never came).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_source: Option<String>,
    /// The license's distribution mode (`account`, `organization`, `ou`: LICENSE_DISTRIBUTION).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Grant status before this run; none = no grant existed.
    pub status_before: Option<String>,
    pub status_after: Option<String>,
    /// Write steps taken (or, in a dry run, planned), in order.
    pub actions: Vec<String>,
    /// Why ct-entitlements leaves this license as it is, on purpose (an operator deactivated
    /// the organization/OU grant's account-level grants in bulk): not waited for, not a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_back: Option<String>,
    /// Why the grant is not ACTIVE yet, when it is waited for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<String>,
    /// Configuration that did not fully apply (e.g. operations the grantor does not hold).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
}

/// The report for one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountReport {
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ou_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ou_name: Option<String>,
    pub trigger: String,
    pub outcome: Outcome,
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub service_linked_roles: Vec<SlrReport>,
    pub licenses: Vec<LicenseReport>,
    /// Seconds until the queued re-check, when the outcome is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recheck_in_seconds: Option<u64>,
    pub attempt: u32,
    /// AWS calls made with the function's own role, by IAM action.
    pub api_calls: BTreeMap<String, u32>,
    /// AWS calls made inside the account with the assumed role, by IAM action.
    pub member_api_calls: BTreeMap<String, u32>,
    pub write_calls: u32,
    pub duration_ms: u64,
    /// Unix seconds when this account's work first started (re-checks carry it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<u64>,
    /// Activations requested in this run (grant, version they made): a re-check does not
    /// request them again while the grant is still being activated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub activations_requested: Vec<crate::inbound::ActivationMark>,
    /// What the run did with the account's chain (`CHAIN_TABLE`, [`crate::chain`]):
    /// `superseded` (a later message of the chain exists: nothing else done), `waiting`,
    /// `forwarded` (a change came while it ran: its re-check was sent at once), `ended`,
    /// `followed` (a change came while it ran: one more run queued), `released` (failed: the
    /// message comes again, and the chain holds nothing back meanwhile), or `unavailable: <error>` (the table could not be read or
    /// written; the run went on without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    /// The re-check this run queued, as `(chain sequence, body)`, for the chain's item.
    #[serde(skip)]
    pub(crate) recheck_sent: Option<(u64, String)>,
}

impl AccountReport {
    /// A report of nothing done yet (outcome `failed` until the run says otherwise).
    pub fn empty(account_id: Option<String>, trigger: String, dry_run: bool) -> Self {
        AccountReport {
            account_id,
            account_name: None,
            ou_id: None,
            ou_name: None,
            trigger,
            outcome: Outcome::Failed,
            dry_run,
            reason: None,
            service_linked_roles: Vec::new(),
            licenses: Vec::new(),
            recheck_in_seconds: None,
            attempt: 0,
            api_calls: Default::default(),
            member_api_calls: Default::default(),
            write_calls: 0,
            duration_ms: 0,
            first_seen: None,
            activations_requested: Vec::new(),
            chain: None,
            error: None,
            recheck_sent: None,
        }
    }

    /// The error that decides this account's fate: the account-level one, else the first
    /// license failure (retryable ones first, so a retry is not lost behind a permanent one).
    pub fn deciding_error(&self) -> Option<&ErrorReport> {
        self.error.as_ref().or_else(|| {
            let errors = || self.licenses.iter().filter_map(|l| l.error.as_ref());
            errors()
                .find(|e| e.retry == Retry::Retryable)
                .or_else(|| errors().next())
        })
    }

    /// The metrics this report yields at `now` (Unix seconds), in the order of the report
    /// line: counts of accounts, grant steps, re-checks, calls and throttles, the duration,
    /// and the time to ACTIVE (entitled) or spent pending.
    fn metrics(&self, now: u64) -> Vec<Metric<'static>> {
        let actions = |name: &str| {
            self.licenses
                .iter()
                .flat_map(|l| &l.actions)
                .filter(|a| *a == name)
                .count()
        };
        let throttled = self
            .licenses
            .iter()
            .filter_map(|l| l.error.as_ref())
            .chain(self.error.as_ref())
            .filter(|e| {
                e.code
                    .as_deref()
                    .is_some_and(|c| c.contains("Throttl") || c.contains("RateLimit"))
            })
            .count();
        let calls: u32 = self
            .api_calls
            .values()
            .chain(self.member_api_calls.values())
            .sum();
        let since_first = self.first_seen.map(|f| now.saturating_sub(f));
        let mut metrics: Vec<Metric<'static>> = vec![
            ("Accounts", json!(1), "Count"),
            ("GrantsCreated", json!(actions("CreateGrant")), "Count"),
            ("GrantsAccepted", json!(actions("AcceptGrant")), "Count"),
            ("GrantsActivated", json!(actions("ActivateGrant")), "Count"),
            (
                "Rechecks",
                json!(u8::from(self.recheck_in_seconds.is_some())),
                "Count",
            ),
            ("ApiCalls", json!(calls), "Count"),
            ("Throttled", json!(throttled), "Count"),
            ("DurationMs", json!(self.duration_ms), "Milliseconds"),
        ];
        match self.outcome {
            Outcome::Entitled => metrics.push((
                "TimeToActiveSeconds",
                json!(since_first.unwrap_or(self.duration_ms / 1000)),
                "Seconds",
            )),
            Outcome::Pending => {
                metrics.push(("PendingSeconds", json!(since_first.unwrap_or(0)), "Seconds"))
            }
            _ => {}
        }
        metrics
    }
}

/// Whose credentials make a call: the function's own role, or the role assumed in the
/// member account. The function's IAM policy must allow exactly the `Own` actions
/// (see `crate::permissions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Own,
    Member,
}

/// The AWS calls made while working on one account, by IAM action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calls {
    /// With the function's own role.
    pub own: BTreeMap<String, u32>,
    /// With the role assumed in the member account.
    pub member: BTreeMap<String, u32>,
    pub writes: u32,
}

/// Counts the AWS calls made while working on one account.
#[derive(Debug, Default)]
pub struct CallLog {
    inner: Mutex<Calls>,
}

impl CallLog {
    /// Records one call of IAM action `action`; `write` marks calls that change something.
    pub fn record(&self, side: Side, action: &str, write: bool) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let map = match side {
            Side::Own => &mut guard.own,
            Side::Member => &mut guard.member,
        };
        *map.entry(action.to_string()).or_default() += 1;
        if write {
            guard.writes += 1;
        }
    }

    pub fn snapshot(&self) -> Calls {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
