//! Offboarding: the grants ct-entitlements made to a departed account, deactivated or deleted
//! from the grantor's side.

use super::reporting::{empty_report, finish};
use super::tokens::token;
use super::Engine;
use crate::aws::{self, GrantView};
use crate::decide::{is_terminal, status};
use crate::error::Error;
use crate::ids::AccountId;
use crate::report::{AccountReport, CallLog, ErrorReport, LicenseReport, Outcome};
use std::time::Instant;

/// What offboarding does to a departed account's per-account grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffboardMode {
    /// CreateGrantVersion Status=DISABLED: reversible.
    Deactivate,
    /// DeleteGrant: terminal; a returning account gets a new grant.
    Delete,
}

impl Engine {
    /// Deactivates (or deletes) the grants the management account made to `account`, from the
    /// grantor side (no role in the account is needed, so this works for suspended or departed
    /// accounts). `license_arns` limits it to those licenses. Org/OU child grants are untouched.
    pub async fn offboard(
        &self,
        account: &AccountId,
        license_arns: Option<&[String]>,
        mode: OffboardMode,
        trigger: &str,
    ) -> AccountReport {
        let started = Instant::now();
        let calls = CallLog::default();
        let mut report = empty_report(
            Some(account.to_string()),
            trigger.to_string(),
            self.config.dry_run,
        );
        if let Err(e) = self
            .offboard_grants(account, license_arns, mode, &calls, &mut report)
            .await
        {
            report.error = Some(ErrorReport::from(&e));
        }
        report.outcome = if report.deciding_error().is_some() {
            Outcome::Failed
        } else if self.config.dry_run {
            Outcome::Planned
        } else {
            Outcome::Offboarded
        };
        finish(report, &calls, started)
    }

    async fn offboard_grants(
        &self,
        account: &AccountId,
        license_arns: Option<&[String]>,
        mode: OffboardMode,
        calls: &CallLog,
        report: &mut AccountReport,
    ) -> Result<(), Error> {
        let lm = &self.clients.license_manager;
        let principal = account.root_principal(&self.config.partition);
        let grants = aws::grants_to_principal(lm, &principal, calls).await?;
        // Only the grants ct-entitlements made: never a child of an organization/OU grant
        // (whether or not License Manager lists those here), never one made by hand.
        let own_name = self.own_grant_name(account);
        let ours = grants
            .iter()
            .filter(|g| !is_terminal(&g.status) && g.name == own_name);
        for grant in ours {
            if license_arns.is_some_and(|only| !only.contains(&grant.license_arn)) {
                continue;
            }
            let line = self.offboard_grant(grant, mode, calls).await;
            report.licenses.push(line);
        }
        Ok(())
    }

    /// One grant of ours: deactivated (when ACTIVE) or deleted, unless this is a dry run; its
    /// report line, a failed write's error in it.
    async fn offboard_grant(
        &self,
        grant: &GrantView,
        mode: OffboardMode,
        calls: &CallLog,
    ) -> LicenseReport {
        let lm = &self.clients.license_manager;
        let mut line = LicenseReport {
            license_arn: grant.license_arn.clone(),
            grant_arn: Some(grant.arn.clone()),
            grant_source: Some("account".into()),
            status_before: Some(grant.status.clone()),
            status_after: Some(grant.status.clone()),
            ..LicenseReport::default()
        };
        let action = match mode {
            OffboardMode::Deactivate if grant.status == status::ACTIVE => Some("DeactivateGrant"),
            OffboardMode::Deactivate => None,
            OffboardMode::Delete => Some("DeleteGrant"),
        };
        if let Some(action) = action {
            line.actions.push(action.to_string());
            if !self.config.dry_run {
                let result = match mode {
                    OffboardMode::Deactivate => {
                        let token = token(&format!("deactivate|{}|{}", grant.arn, grant.version));
                        aws::deactivate_grant(lm, &grant.arn, &grant.version, &token, calls)
                            .await
                            .map(|(s, _)| s)
                    }
                    OffboardMode::Delete => {
                        aws::delete_grant(
                            lm,
                            &grant.arn,
                            &grant.version,
                            "ct-entitlements offboarding",
                            calls,
                        )
                        .await
                    }
                };
                match result {
                    Ok(s) => line.status_after = Some(s),
                    Err(e) => line.error = Some(ErrorReport::from(&e)),
                }
            }
        }
        line
    }
}
