//! `plan`: account-lifecycle's dry run for named accounts, and the reading of its reports that
//! `coverage` and `backfill` share.

use crate::fail::Problem;
use crate::render;
use futures::StreamExt;
use serde::Serialize;
use shared::ids::AccountId;
use shared::inbound::{Request, Trigger, Work};
use shared::report::LicenseReport;
use shared::{engine::Engine, report::AccountReport, report::Outcome};

/// The grant status License Manager calls usable.
pub const ACTIVE: &str = "ACTIVE";

/// One dry-run report per account, in the order given, `max_concurrent_accounts` at a time
/// (the engine must be configured with DRY_RUN=true, as [`crate::context`] does).
pub async fn look(engine: &Engine, accounts: &[AccountId], trigger: &str) -> Vec<AccountReport> {
    let at_once = engine.config().max_concurrent_accounts.max(1);
    futures::stream::iter(accounts.iter().cloned())
        .map(|account| {
            engine.run(Request::Work(Work {
                account_id: account,
                trigger: Trigger::Onboard(trigger.into()),
                account_name: None,
                ou_id: None,
                ou_name: None,
                attempt: 0,
                backfill: false,
                first_seen: None,
                explicit: None,
                activations: Vec::new(),
            }))
        })
        .buffered(at_once)
        .collect()
        .await
}

/// What a dry run says of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// Every selected license is ACTIVE (or held back on purpose): nothing to do.
    Entitled,
    /// A run would write (create, accept, activate a grant…).
    WouldBeEntitled,
    /// A grant waits on License Manager (a workflow, an activation): nothing to write now.
    Waiting,
    /// Outside the selection or the scope (the reason says which).
    Skipped,
    /// The account could not be planned (the error says why).
    Failed,
}

impl Verdict {
    pub fn of(r: &AccountReport) -> Verdict {
        if r.outcome == Outcome::Failed || r.deciding_error().is_some() {
            return Verdict::Failed;
        }
        if r.outcome == Outcome::Skipped || r.licenses.is_empty() {
            return Verdict::Skipped;
        }
        let live = || r.licenses.iter().filter(|l| l.held_back.is_none());
        if live().any(|l| !l.actions.is_empty()) {
            Verdict::WouldBeEntitled
        } else if live()
            .all(|l| l.status_after.as_deref() == Some(ACTIVE) && l.pending_reason.is_none())
        {
            Verdict::Entitled
        } else {
            Verdict::Waiting
        }
    }
}

/// One license of an account, as the JSON documents show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseRow {
    pub license_arn: String,
    pub product_sku: Option<String>,
    pub product_name: Option<String>,
    /// The grant's status now (none: no grant).
    pub status: Option<String>,
    /// `account`, `organization` (a child of an organization/OU grant) or `repair`.
    pub source: Option<String>,
    /// The license's distribution mode: `account`, `organization` or `ou`.
    pub mode: Option<String>,
    pub grant_arn: Option<String>,
    /// The writes a run would make, in order.
    pub planned: Vec<String>,
    /// Why the grant is waited for.
    pub waiting_for: Option<String>,
    /// Why it is left as it is on purpose.
    pub held_back: Option<String>,
    pub error: Option<Problem>,
}

impl LicenseRow {
    pub fn of(l: &LicenseReport, verbose: bool) -> Self {
        LicenseRow {
            license_arn: l.license_arn.clone(),
            product_sku: l.product_sku.clone(),
            product_name: l.product_name.clone(),
            status: l.status_before.clone(),
            source: l.grant_source.clone(),
            mode: l.mode.clone(),
            grant_arn: l.grant_arn.clone(),
            planned: l.actions.clone(),
            waiting_for: l.pending_reason.clone(),
            held_back: l.held_back.clone(),
            error: l.error.as_ref().map(|e| Problem::from_report(e, verbose)),
        }
    }

    /// The SKU, else the license ARN.
    pub fn label(&self) -> String {
        self.product_sku
            .clone()
            .unwrap_or_else(|| self.license_arn.clone())
    }

    /// Whether the account has this license in use: ACTIVE, or held back on purpose.
    pub fn covered(&self) -> bool {
        self.held_back.is_some() || self.status.as_deref() == Some(ACTIVE)
    }
}

/// One account, as the JSON documents show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRow {
    pub account_id: String,
    pub account_name: Option<String>,
    pub result: Verdict,
    pub reason: Option<String>,
    pub error: Option<Problem>,
    pub licenses: Vec<LicenseRow>,
}

impl AccountRow {
    pub fn of(r: &AccountReport, verbose: bool) -> Self {
        let result = Verdict::of(r);
        AccountRow {
            account_id: r.account_id.clone().unwrap_or_default(),
            account_name: r.account_name.clone(),
            result,
            reason: r.reason.as_deref().map(crate::fail::one_line),
            error: r
                .deciding_error()
                .filter(|_| result == Verdict::Failed)
                .map(|e| Problem::from_report(e, verbose)),
            licenses: r
                .licenses
                .iter()
                .map(|l| LicenseRow::of(l, verbose))
                .collect(),
        }
    }
}

/// Accounts by verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    pub accounts: usize,
    pub entitled: usize,
    pub would_be_entitled: usize,
    pub waiting: usize,
    pub skipped: usize,
    pub failed: usize,
}

impl Tally {
    pub fn of(rows: &[AccountRow]) -> Self {
        let n = |v: Verdict| rows.iter().filter(|r| r.result == v).count();
        Tally {
            accounts: rows.len(),
            entitled: n(Verdict::Entitled),
            would_be_entitled: n(Verdict::WouldBeEntitled),
            waiting: n(Verdict::Waiting),
            skipped: n(Verdict::Skipped),
            failed: n(Verdict::Failed),
        }
    }

    /// `plan: 41 accounts, 38 would be entitled, 3 failed` (zero counts left out, failed always).
    pub fn line(&self, command: &str) -> String {
        let mut parts = vec![render::count(self.accounts, "account", "accounts")];
        for (n, what) in [
            (self.entitled, "entitled already"),
            (self.would_be_entitled, "would be entitled"),
            (self.waiting, "waiting on License Manager"),
            (self.skipped, "skipped"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.push(format!("{} failed", self.failed));
        format!("{command}: {}", parts.join(", "))
    }
}

/// The `plan` JSON document.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDocument {
    pub command: &'static str,
    pub summary: Tally,
    pub accounts: Vec<AccountRow>,
}

impl PlanDocument {
    pub fn of(reports: &[AccountReport], verbose: bool) -> Self {
        let accounts: Vec<AccountRow> =
            reports.iter().map(|r| AccountRow::of(r, verbose)).collect();
        PlanDocument {
            command: "plan",
            summary: Tally::of(&accounts),
            accounts,
        }
    }

    /// One row per license (per account when it has none), then the summary line.
    pub fn table(&self) -> String {
        let mut rows = Vec::new();
        for a in &self.accounts {
            let name = a.account_name.clone().unwrap_or_default();
            let account_level =
                a.result == Verdict::Failed && a.licenses.iter().all(|l| l.error.is_none());
            if a.licenses.is_empty() || account_level {
                let why = a
                    .error
                    .as_ref()
                    .map(|e| format!("error: {}", e.message))
                    .or_else(|| a.reason.clone())
                    .unwrap_or_default();
                rows.push([
                    a.account_id.clone(),
                    name,
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    verdict_word(a.result).into(),
                    why,
                ]);
                continue;
            }
            for l in &a.licenses {
                let planned = match (&l.error, &l.waiting_for, &l.held_back) {
                    (Some(e), _, _) => format!("error: {}", e.message),
                    (None, Some(why), _) if l.planned.is_empty() => format!("wait: {why}"),
                    (None, _, Some(why)) => format!("held back: {why}"),
                    (None, _, None) if l.planned.is_empty() => "none".into(),
                    (None, _, None) => l.planned.join(", "),
                };
                rows.push([
                    a.account_id.clone(),
                    name.clone(),
                    l.label(),
                    l.status.clone().unwrap_or_else(|| "(no grant)".into()),
                    l.source.clone().unwrap_or_else(|| "-".into()),
                    verdict_word(a.result).into(),
                    planned,
                ]);
            }
        }
        let mut out = render::table(
            [
                "Account",
                "Name",
                "License",
                "Grant status",
                "Source",
                "Result",
                "Planned",
            ],
            &rows,
        );
        out.push_str(&self.summary.line("plan"));
        out.push('\n');
        out
    }
}

/// A verdict in tables.
pub fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Entitled => "entitled",
        Verdict::WouldBeEntitled => "would be entitled",
        Verdict::Waiting => "waiting",
        Verdict::Skipped => "skipped",
        Verdict::Failed => "failed",
    }
}
