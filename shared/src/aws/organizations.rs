//! AWS Organizations: the organization, its accounts, their OUs and tags.

use super::missing;
use crate::error::{aws_error, Error};
use crate::ids::AccountId;
use crate::report::{CallLog, Side};

/// The organization as the management account sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrgInfo {
    pub id: String,
    pub arn: String,
    pub management_account: String,
}

impl OrgInfo {
    /// `arn:aws:organizations::<mgmt>:ou/o-…/ou-…`, the principal of an OU grant.
    pub(crate) fn ou_arn(&self, ou_id: &str) -> String {
        let prefix = self.arn.split(":organization/").next().unwrap_or_default();
        format!("{prefix}:ou/{}/{ou_id}", self.id)
    }
}

/// A member account as Organizations sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberInfo {
    pub name: Option<String>,
    pub state: String,
    /// The direct parent OU (none when the account sits in the root).
    pub ou_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

pub(crate) async fn describe_organization(
    org: &aws_sdk_organizations::Client,
    calls: &CallLog,
) -> Result<OrgInfo, Error> {
    calls.record(Side::Own, "organizations:DescribeOrganization", false);
    let out = org
        .describe_organization()
        .send()
        .await
        .map_err(|e| aws_error("organizations", "DescribeOrganization", e))?;
    let o = out
        .organization()
        .ok_or_else(|| missing("DescribeOrganization", "Organization"))?;
    Ok(OrgInfo {
        id: o.id().unwrap_or_default().to_string(),
        arn: o.arn().unwrap_or_default().to_string(),
        management_account: o.master_account_id().unwrap_or_default().to_string(),
    })
}

/// What the caller already knows about an account, so `describe_member` need not ask.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MemberHints<'a> {
    /// The account's OU as a Control Tower event named it: no `ListParents`.
    pub ou_id: Option<&'a str>,
    /// No selection rule reads tags: no `ListTagsForResource` (the tags come back empty).
    pub skip_tags: bool,
}

/// DescribeAccount + ListParents + ListTagsForResource, at once, each only when the hints leave
/// it needed. DescribeAccount decides: an account outside the organization is
/// `NotInOrganization` whatever the others answered.
pub(crate) async fn describe_member(
    org: &aws_sdk_organizations::Client,
    account: &AccountId,
    hints: MemberHints<'_>,
    calls: &CallLog,
) -> Result<MemberInfo, Error> {
    let described = async {
        calls.record(Side::Own, "organizations:DescribeAccount", false);
        org.describe_account()
            .account_id(account.as_str())
            .send()
            .await
            .map_err(|e| match aws_error("organizations", "DescribeAccount", e) {
                Error::Aws { code, message, .. } if code == "AccountNotFoundException" => {
                    Error::NotInOrganization {
                        account: account.to_string(),
                        reason: message,
                    }
                }
                other => other,
            })
    };
    let parents = async {
        match hints.ou_id {
            Some(ou) => Ok(Some(ou.to_string())),
            None => parent_ou(org, account.as_str(), calls).await,
        }
    };
    let tags = async {
        if hints.skip_tags {
            return Ok(Vec::new());
        }
        account_tags(org, account.as_str(), calls).await
    };
    let (described, ou_id, tags) = futures::join!(described, parents, tags);
    let described = described?;
    let acct = described
        .account()
        .ok_or_else(|| missing("DescribeAccount", "Account"))?;
    let state = state_of(acct).unwrap_or_else(|| "ACTIVE".to_string());
    Ok(MemberInfo {
        name: acct.name().map(str::to_string),
        state,
        ou_id: ou_id?,
        tags: tags?,
    })
}

/// The parent OU of an account or an OU (`None` when its parent is the root).
pub(crate) async fn parent_ou(
    org: &aws_sdk_organizations::Client,
    child_id: &str,
    calls: &CallLog,
) -> Result<Option<String>, Error> {
    calls.record(Side::Own, "organizations:ListParents", false);
    let out = org
        .list_parents()
        .child_id(child_id)
        .send()
        .await
        .map_err(|e| aws_error("organizations", "ListParents", e))?;
    Ok(out
        .parents()
        .iter()
        .find(|p| {
            p.r#type()
                .is_some_and(|t| t.as_str() == "ORGANIZATIONAL_UNIT")
        })
        .and_then(|p| p.id().map(str::to_string)))
}

/// A member account as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedAccount {
    pub id: String,
    pub name: Option<String>,
    /// ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED, …
    pub state: String,
    /// The direct parent OU, when the listing walked the OU tree (none: in the root, or not
    /// known from this listing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ou_id: Option<String>,
}

fn listed(a: &aws_sdk_organizations::types::Account) -> Option<ListedAccount> {
    #[allow(deprecated)]
    let state = a
        .state()
        .map(|s| s.as_str().to_string())
        .or_else(|| a.status().map(|s| s.as_str().to_string()))
        .unwrap_or_else(|| "ACTIVE".to_string());
    Some(ListedAccount {
        id: a.id()?.to_string(),
        name: a.name().map(str::to_string),
        state,
        ou_id: None,
    })
}

/// Every account under `parent_id` (an OU or root), descending into child OUs.
pub(crate) async fn list_accounts_under(
    org: &aws_sdk_organizations::Client,
    parent_id: &str,
    calls: &CallLog,
) -> Result<Vec<ListedAccount>, Error> {
    let mut out = Vec::new();
    let mut pending = vec![parent_id.to_string()];
    while let Some(parent) = pending.pop() {
        let ou = parent.starts_with("ou-").then(|| parent.clone());
        let mut pages = org
            .list_accounts_for_parent()
            .parent_id(&parent)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            calls.record(Side::Own, "organizations:ListAccountsForParent", false);
            let page = page.map_err(|e| aws_error("organizations", "ListAccountsForParent", e))?;
            out.extend(page.accounts().iter().filter_map(listed).map(|mut a| {
                a.ou_id = ou.clone();
                a
            }));
        }
        let mut pages = org
            .list_organizational_units_for_parent()
            .parent_id(&parent)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            calls.record(
                Side::Own,
                "organizations:ListOrganizationalUnitsForParent",
                false,
            );
            let page = page
                .map_err(|e| aws_error("organizations", "ListOrganizationalUnitsForParent", e))?;
            pending.extend(
                page.organizational_units()
                    .iter()
                    .filter_map(|ou| ou.id().map(str::to_string)),
            );
        }
    }
    Ok(out)
}

/// Every account of the organization with its OU: the tree walked from the root
/// (`ListRoots`, then per OU `ListAccountsForParent` and `ListOrganizationalUnitsForParent`).
pub(crate) async fn list_organization(
    org: &aws_sdk_organizations::Client,
    calls: &CallLog,
) -> Result<Vec<ListedAccount>, Error> {
    calls.record(Side::Own, "organizations:ListRoots", false);
    let roots = org
        .list_roots()
        .send()
        .await
        .map_err(|e| aws_error("organizations", "ListRoots", e))?;
    let mut out = Vec::new();
    for root in roots.roots() {
        if let Some(id) = root.id() {
            out.extend(list_accounts_under(org, id, calls).await?);
        }
    }
    Ok(out)
}

/// An account's tags (every page).
pub(crate) async fn account_tags(
    org: &aws_sdk_organizations::Client,
    account: &str,
    calls: &CallLog,
) -> Result<Vec<(String, String)>, Error> {
    let mut tags = Vec::new();
    let mut pages = org
        .list_tags_for_resource()
        .resource_id(account)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        calls.record(Side::Own, "organizations:ListTagsForResource", false);
        let page = page.map_err(|e| aws_error("organizations", "ListTagsForResource", e))?;
        tags.extend(
            page.tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string())),
        );
    }
    Ok(tags)
}

/// What Organizations says of an account now, with `DescribeAccount` alone: `None` when it is
/// not in the organization (`AccountNotFoundException`), else its state (`ACTIVE`, `SUSPENDED`,
/// `PENDING_CLOSURE`, `CLOSED`, `PENDING_ACTIVATION`; empty when the answer has none). Any
/// other error comes back classified (a throttle stays retryable).
pub(crate) async fn account_state(
    org: &aws_sdk_organizations::Client,
    account: &AccountId,
    calls: &CallLog,
) -> Result<Option<String>, Error> {
    calls.record(Side::Own, "organizations:DescribeAccount", false);
    let out = match org
        .describe_account()
        .account_id(account.as_str())
        .send()
        .await
        .map_err(|e| aws_error("organizations", "DescribeAccount", e))
    {
        Ok(out) => out,
        Err(Error::Aws { code, .. }) if code == "AccountNotFoundException" => return Ok(None),
        Err(e) => return Err(e),
    };
    let acct = out
        .account()
        .ok_or_else(|| missing("DescribeAccount", "Account"))?;
    Ok(Some(state_of(acct).unwrap_or_default()))
}

/// An account's state (`State`, or the older `Status` when only that is there).
fn state_of(acct: &aws_sdk_organizations::types::Account) -> Option<String> {
    #[allow(deprecated)]
    acct.state()
        .map(|s| s.as_str().to_string())
        .or_else(|| acct.status().map(|s| s.as_str().to_string()))
}
