//! `status`: the grants the management account distributed, with the accounts' names.

use crate::render;
use serde::Serialize;
use shared::aws::GrantView;
use shared::error::aws_error;
use shared::ids::{account_of_root_principal, AccountId};
use shared::{engine::Engine, error::Error};
use std::collections::BTreeMap;

/// Account names: `ListAccounts` for the whole organization, `DescribeAccount` for a few named
/// accounts. An account Organizations does not know is left out.
pub async fn account_names(
    orgs: &aws_sdk_organizations::Client,
    only: &[AccountId],
) -> Result<BTreeMap<String, String>, Error> {
    let mut names = BTreeMap::new();
    if only.is_empty() || only.len() > 20 {
        let mut pages = orgs.list_accounts().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| shared::error::aws_error("organizations", "ListAccounts", e))?;
            for a in page.accounts() {
                if let (Some(id), Some(name)) = (a.id(), a.name()) {
                    names.insert(id.to_string(), name.to_string());
                }
            }
        }
        return Ok(names);
    }
    for id in only {
        match orgs
            .describe_account()
            .account_id(id.as_str())
            .send()
            .await
            .map_err(|e| aws_error("organizations", "DescribeAccount", e))
        {
            Ok(out) => {
                if let Some(name) = out.account().and_then(|a| a.name()) {
                    names.insert(id.to_string(), name.to_string());
                }
            }
            Err(e) if e.aws_code() == Some("AccountNotFoundException") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(names)
}

/// License ARN → product SKU of the licenses the management account holds (empty when they
/// cannot be read: the SKUs only label the rows).
pub async fn license_skus(engine: &Engine) -> BTreeMap<String, String> {
    match engine.held_marketplace_licenses().await {
        Ok(held) => held
            .iter()
            .filter_map(|l| Some((l.arn.clone(), l.sku.clone()?)))
            .collect(),
        Err(_) => BTreeMap::new(),
    }
}

/// Grants distributed to each account (every grant when none is named).
pub async fn grants(engine: &Engine, accounts: &[AccountId]) -> Result<Vec<GrantView>, Error> {
    engine.distributed_grants(accounts).await
}

/// One grant, as the JSON document shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantRow {
    /// The grantee account (none: the grant is to the organization or an OU).
    pub account_id: Option<String>,
    pub account_name: Option<String>,
    pub grantee: String,
    pub license_arn: String,
    /// The license's product SKU, when the management account holds it.
    pub product_sku: Option<String>,
    pub grant_arn: String,
    pub grant_name: String,
    pub status: String,
    pub status_reason: Option<String>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusSummary {
    pub grants: usize,
    pub accounts: usize,
    /// Grants to the organization or an OU.
    pub parent_grants: usize,
    pub by_status: BTreeMap<String, usize>,
}

/// The `status` JSON document.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDocument {
    pub command: &'static str,
    pub summary: StatusSummary,
    pub grants: Vec<GrantRow>,
}

impl StatusDocument {
    /// `names`: account id → name; `skus`: license ARN → product SKU.
    pub fn of(
        grants: &[GrantView],
        names: &BTreeMap<String, String>,
        skus: &BTreeMap<String, String>,
    ) -> Self {
        let mut rows: Vec<GrantRow> = grants
            .iter()
            .map(|g| {
                let account = account_of_root_principal(&g.grantee).map(str::to_string);
                GrantRow {
                    account_name: account.as_ref().and_then(|a| names.get(a).cloned()),
                    account_id: account,
                    grantee: g.grantee.clone(),
                    license_arn: g.license_arn.clone(),
                    product_sku: skus.get(&g.license_arn).cloned(),
                    grant_arn: g.arn.clone(),
                    grant_name: g.name.clone(),
                    status: g.status.clone(),
                    status_reason: g.status_reason.clone(),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            (&a.grantee, &a.license_arn, &a.grant_arn).cmp(&(
                &b.grantee,
                &b.license_arn,
                &b.grant_arn,
            ))
        });
        let mut summary = StatusSummary {
            grants: rows.len(),
            ..StatusSummary::default()
        };
        let mut accounts: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.account_id.as_deref())
            .collect();
        accounts.dedup();
        summary.accounts = accounts.len();
        summary.parent_grants = rows.iter().filter(|r| r.account_id.is_none()).count();
        for r in &rows {
            *summary.by_status.entry(r.status.clone()).or_default() += 1;
        }
        StatusDocument {
            command: "status",
            summary,
            grants: rows,
        }
    }

    /// `status: 9 grants to 3 accounts (1 to the organization or an OU): 8 ACTIVE, 1 PENDING_ACCEPT`.
    pub fn line(&self) -> String {
        let s = &self.summary;
        let mut line = format!(
            "status: {} to {}",
            render::count(s.grants, "grant", "grants"),
            render::count(s.accounts, "account", "accounts")
        );
        if s.parent_grants > 0 {
            line.push_str(&format!(
                " ({} to the organization or an OU)",
                s.parent_grants
            ));
        }
        if !s.by_status.is_empty() {
            let by: Vec<String> = s
                .by_status
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            line.push_str(&format!(": {}", by.join(", ")));
        }
        line
    }

    pub fn table(&self) -> String {
        let short = |arn: &str| arn.rsplit([':', '/']).next().unwrap_or(arn).to_string();
        let rows: Vec<[String; 5]> = self
            .grants
            .iter()
            .map(|g| {
                [
                    g.account_id.clone().unwrap_or_else(|| g.grantee.clone()),
                    g.account_name.clone().unwrap_or_default(),
                    g.product_sku
                        .clone()
                        .unwrap_or_else(|| short(&g.license_arn)),
                    short(&g.grant_arn),
                    g.status.clone(),
                ]
            })
            .collect();
        let mut out = render::table(["Account", "Name", "License", "Grant", "Status"], &rows);
        out.push_str(&self.line());
        out.push('\n');
        out
    }
}
