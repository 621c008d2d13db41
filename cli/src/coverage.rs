//! `coverage`: every account of a scope × the licenses its selection asks for, each with the
//! grant's status and source, read with the same dry run as `plan`; totals, and who lacks what.

use crate::plan::{look, AccountRow, LicenseRow, Verdict};
use crate::render;
use serde::Serialize;
use shared::aws::ListedAccount;
use shared::ids::AccountId;
use shared::{engine::Engine, error::Error};
use std::collections::BTreeMap;

/// The accounts of a scope: named ones (their state is the run's to find), the accounts under
/// some OUs, or the whole organization, listed the way the reconciler lists them (the OU tree
/// from the root, `ListAccountsForParent` per OU).
pub async fn scope_accounts(
    engine: &Engine,
    named: &[AccountId],
    ous: &[String],
) -> Result<Vec<ListedAccount>, Error> {
    if !named.is_empty() {
        return Ok(named
            .iter()
            .map(|id| ListedAccount {
                id: id.to_string(),
                name: None,
                state: "ACTIVE".into(),
                ou_id: None,
            })
            .collect());
    }
    engine.listed_accounts(ous).await
}

/// Totals of one license.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseTotals {
    pub product_sku: Option<String>,
    pub product_name: Option<String>,
    /// Accounts whose selection asks for it.
    pub selected: usize,
    pub active: usize,
    pub lacking: usize,
}

/// The totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageSummary {
    pub accounts: usize,
    pub licenses: usize,
    /// Account × license pairs the selection asks for.
    pub selected: usize,
    /// Of those, the ACTIVE ones (or held back on purpose).
    pub active: usize,
    pub lacking: usize,
    pub accounts_covered: usize,
    pub accounts_lacking: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Per license ARN.
    pub by_license: BTreeMap<String, LicenseTotals>,
}

/// An account short of some license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lacking {
    pub account_id: String,
    pub account_name: Option<String>,
    /// The SKUs (or ARNs) it lacks.
    pub licenses: Vec<String>,
}

/// The `coverage` JSON document.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageDocument {
    pub command: &'static str,
    pub summary: CoverageSummary,
    pub accounts: Vec<AccountRow>,
    pub lacking: Vec<Lacking>,
}

/// Looks at every ACTIVE account of `listed`; the others are skipped with their state.
pub async fn coverage(
    engine: &Engine,
    listed: &[ListedAccount],
    verbose: bool,
) -> CoverageDocument {
    let active: Vec<AccountId> = listed
        .iter()
        .filter(|a| a.state == "ACTIVE")
        .filter_map(|a| AccountId::parse(&a.id).ok())
        .collect();
    let mut reports = look(engine, &active, "cli-coverage").await.into_iter();
    let mut rows = Vec::new();
    for a in listed {
        if a.state == "ACTIVE" && AccountId::parse(&a.id).is_ok() {
            if let Some(report) = reports.next() {
                let mut row = AccountRow::of(&report, verbose);
                row.account_name = row.account_name.or_else(|| a.name.clone());
                rows.push(row);
            }
        } else {
            rows.push(AccountRow {
                account_id: a.id.clone(),
                account_name: a.name.clone(),
                result: Verdict::Skipped,
                reason: Some(format!("account is {}", a.state)),
                error: None,
                licenses: Vec::new(),
            });
        }
    }
    CoverageDocument::of(rows)
}

impl CoverageDocument {
    pub fn of(accounts: Vec<AccountRow>) -> Self {
        let mut s = CoverageSummary {
            accounts: accounts.len(),
            ..CoverageSummary::default()
        };
        let mut lacking = Vec::new();
        for a in &accounts {
            match a.result {
                Verdict::Skipped => s.skipped += 1,
                Verdict::Failed => s.failed += 1,
                _ => {}
            }
            let mut short = Vec::new();
            for l in &a.licenses {
                let t = s.by_license.entry(l.license_arn.clone()).or_default();
                t.product_sku = t.product_sku.take().or_else(|| l.product_sku.clone());
                t.product_name = t.product_name.take().or_else(|| l.product_name.clone());
                t.selected += 1;
                s.selected += 1;
                if l.covered() {
                    t.active += 1;
                    s.active += 1;
                } else {
                    t.lacking += 1;
                    s.lacking += 1;
                    short.push(l.label());
                }
            }
            if !short.is_empty() {
                lacking.push(Lacking {
                    account_id: a.account_id.clone(),
                    account_name: a.account_name.clone(),
                    licenses: short,
                });
            } else if !a.licenses.is_empty() && a.result != Verdict::Failed {
                s.accounts_covered += 1;
            }
        }
        s.accounts_lacking = lacking.len();
        s.licenses = s.by_license.len();
        CoverageDocument {
            command: "coverage",
            summary: s,
            accounts,
            lacking,
        }
    }

    /// `coverage: 6 accounts, 3 licenses: 12 of 15 selected grants ACTIVE; 2 accounts lack a license; 1 skipped, 0 failed`.
    pub fn line(&self) -> String {
        let s = &self.summary;
        format!(
            "coverage: {}, {}: {} of {} selected grants ACTIVE; {} {} a license; {} skipped, {} failed",
            render::count(s.accounts, "account", "accounts"),
            render::count(s.licenses, "license", "licenses"),
            s.active,
            s.selected,
            render::count(s.accounts_lacking, "account", "accounts"),
            if s.accounts_lacking == 1 { "lacks" } else { "lack" },
            s.skipped,
            s.failed
        )
    }

    /// One row per account × license (per account when it has none).
    pub fn rows(&self) -> Vec<[String; 8]> {
        let mut rows = Vec::new();
        for a in &self.accounts {
            let name = a.account_name.clone().unwrap_or_default();
            if a.licenses.is_empty() {
                let detail = a
                    .error
                    .as_ref()
                    .map(|e| e.message.clone())
                    .or_else(|| a.reason.clone())
                    .unwrap_or_default();
                let status = match a.result {
                    Verdict::Failed => "FAILED",
                    _ => "SKIPPED",
                };
                rows.push([
                    a.account_id.clone(),
                    name,
                    String::new(),
                    String::new(),
                    status.into(),
                    String::new(),
                    String::new(),
                    detail,
                ]);
                continue;
            }
            for l in &a.licenses {
                rows.push([
                    a.account_id.clone(),
                    name.clone(),
                    l.label(),
                    l.license_arn.clone(),
                    cell_status(l).into(),
                    l.source.clone().unwrap_or_default(),
                    l.mode.clone().unwrap_or_default(),
                    cell_detail(l),
                ]);
            }
        }
        rows
    }

    pub fn table(&self) -> String {
        let rows: Vec<[String; 7]> = self
            .rows()
            .into_iter()
            .map(|[id, name, label, _arn, status, source, mode, detail]| {
                let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
                [
                    id,
                    name,
                    dash(label),
                    status,
                    dash(source),
                    dash(mode),
                    detail,
                ]
            })
            .collect();
        let mut out = render::table(
            [
                "Account", "Name", "License", "Status", "Source", "Mode", "Detail",
            ],
            &rows,
        );
        if !self.lacking.is_empty() {
            out.push_str("\nLacking:\n");
            for l in &self.lacking {
                let name = l
                    .account_name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  {}{name}: {}\n",
                    l.account_id,
                    l.licenses.join(", ")
                ));
            }
        }
        out.push_str(&self.line());
        out.push('\n');
        out
    }

    pub fn csv(&self) -> String {
        render::csv(
            [
                "account_id",
                "account_name",
                "license",
                "license_arn",
                "status",
                "source",
                "mode",
                "detail",
            ],
            &self.rows(),
        )
    }
}

/// A cell's status: the grant's, `MISSING` without one, `HELD_BACK` when left on purpose.
fn cell_status(l: &LicenseRow) -> &str {
    if l.held_back.is_some() {
        "HELD_BACK"
    } else {
        l.status.as_deref().unwrap_or("MISSING")
    }
}

fn cell_detail(l: &LicenseRow) -> String {
    if let Some(e) = &l.error {
        return format!("error: {}", e.message);
    }
    if let Some(why) = l.held_back.as_ref().or(l.waiting_for.as_ref()) {
        return why.clone();
    }
    if !l.planned.is_empty() {
        return format!("a run would: {}", l.planned.join(", "));
    }
    String::new()
}
