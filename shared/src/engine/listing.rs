//! Read-only listings for the operator's CLI (`status`, `coverage`): what the management
//! account distributed, and which accounts a scope covers. No decision is made here; each
//! listing is the one the engine and the reconciler read themselves.

use super::Engine;
use crate::aws::{self, GrantView, ListedAccount};
use crate::error::Error;
use crate::ids::AccountId;
use crate::report::CallLog;
use std::collections::BTreeSet;

impl Engine {
    /// The grants the management account distributed to `accounts` (their root principals,
    /// one listing per account), or every grant it distributed when none is named.
    pub async fn distributed_grants(
        &self,
        accounts: &[AccountId],
    ) -> Result<Vec<GrantView>, Error> {
        let lm = &self.clients.license_manager;
        let calls = CallLog::default();
        if accounts.is_empty() {
            return aws::all_distributed_grants(lm, &calls).await;
        }
        let mut out = Vec::new();
        for account in accounts {
            let principal = account.root_principal(&self.config.partition);
            out.extend(aws::grants_to_principal(lm, &principal, &calls).await?);
        }
        Ok(out)
    }

    /// The accounts under `ous` (each listed once, however the OUs nest), or in the whole
    /// organization when none is named, listed as the reconciler lists them (the OU tree from
    /// the root, `ListAccountsForParent` per OU); sorted by account id.
    pub async fn listed_accounts(&self, ous: &[String]) -> Result<Vec<ListedAccount>, Error> {
        let organizations = &self.clients.organizations;
        let calls = CallLog::default();
        let mut out = if ous.is_empty() {
            aws::list_organization(organizations, &calls).await?
        } else {
            let mut seen = BTreeSet::new();
            let mut out = Vec::new();
            for parent in ous {
                for account in aws::list_accounts_under(organizations, parent, &calls).await? {
                    if seen.insert(account.id.clone()) {
                        out.push(account);
                    }
                }
            }
            out
        };
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}
