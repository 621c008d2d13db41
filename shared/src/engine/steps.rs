//! The grant steps a decision executes (each rate-limited, then one look at what it changed,
//! never a wait), and the failures a decision reports as a license's error.

use super::drive::{note, replace, update, Target};
use super::recheck::put_mark;
use super::tokens::{activation_client_token, grant_client_token};
use super::Engine;
use crate::aws::{self, GrantView, HeldLicense, NewGrant};
use crate::decide::{self, status, Failure, Source};
use crate::error::Error;
use crate::inbound::ActivationMark;
use crate::report::{CallLog, LicenseReport};

impl Engine {
    /// Reads the management side's view of the organization's received grants
    /// (`ListReceivedGrantsForOrganization`): the account's grants in it join `own`.
    pub(super) async fn find_child(
        &self,
        target: &Target<'_>,
        license: &HeldLicense,
        own: &mut Vec<GrantView>,
        calls: &CallLog,
    ) -> Result<(), Error> {
        let lm = &self.clients.license_manager;
        self.limiter
            .acquire("ListReceivedGrantsForOrganization")
            .await;
        let found =
            match aws::organization_received_grants(lm, &license.arn, &target.principal, calls)
                .await
            {
                Ok(found) => found,
                // Documented for the management account only: a delegated
                // administrator may be refused; the member side was read already.
                Err(Error::Aws { code, .. }) if code.starts_with("AccessDenied") => Vec::new(),
                Err(e) => return Err(e),
            };
        for g in found {
            if g.grantee == target.principal && !own.iter().any(|o| o.arn == g.arn) {
                own.push(g);
            }
        }
        Ok(())
    }

    /// AcceptGrant (as the member); an empty answer is taken as DISABLED.
    pub(super) async fn accept(
        &self,
        target: &Target<'_>,
        grant: &GrantView,
        own: &mut [GrantView],
        calls: &CallLog,
        report: &mut LicenseReport,
    ) -> Result<(), Error> {
        let member_lm = &target.member.license_manager;
        self.limiter.acquire("AcceptGrant").await;
        let (s, v) = aws::accept_grant(member_lm, &grant.arn, calls).await?;
        report.actions.push("AcceptGrant".into());
        let s = if s.is_empty() {
            status::DISABLED.to_string()
        } else {
            s
        };
        update(own, &grant.arn, s, v, None);
        Ok(())
    }

    /// An activation the decision asked for: CreateGrantVersion Status=ACTIVE as `source` says.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn activate_step(
        &self,
        target: &Target<'_>,
        grant: &GrantView,
        source: Source,
        marks: &mut Vec<ActivationMark>,
        own: &mut Vec<GrantView>,
        calls: &CallLog,
        report: &mut LicenseReport,
    ) -> Result<(), Error> {
        note(report, grant, source);
        let how = decide::activate_as(grant, source, target.behavior.as_str(), false);
        self.activate(target, grant, how, None, marks, own, calls)
            .await?;
        report.actions.push("ActivateGrant".into());
        Ok(())
    }

    /// The child taking over from our grant (a switch to organization/OU mode), or our grant
    /// from the child (a switch back): activated with ALL_GRANTS_PERMITTED_BY_ISSUER.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn take_over(
        &self,
        target: &Target<'_>,
        grant: &GrantView,
        replaces: &GrantView,
        marks: &mut Vec<ActivationMark>,
        own: &mut Vec<GrantView>,
        calls: &CallLog,
        report: &mut LicenseReport,
    ) -> Result<(), Error> {
        let source = if grant.name == target.own_grant_name {
            Source::Account
        } else {
            Source::Organization
        };
        note(report, grant, source);
        let how = decide::activate_as(grant, source, target.behavior.as_str(), true);
        self.activate(target, grant, how, Some(replaces), marks, own, calls)
            .await?;
        report
            .actions
            .push("ActivateGrant(ALL_GRANTS_PERMITTED_BY_ISSUER)".into());
        Ok(())
    }

    /// CreateGrantVersion Status=ACTIVE (as the member), remembered in `marks`; then one look
    /// (no waiting) at what it changed: the grant it `replaces` (a new version), and the grant
    /// itself when the activation did not answer ACTIVE (activation is asynchronous).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn activate(
        &self,
        target: &Target<'_>,
        grant: &GrantView,
        how: decide::ActivateAs,
        replaces: Option<&GrantView>,
        marks: &mut Vec<ActivationMark>,
        own: &mut Vec<GrantView>,
        calls: &CallLog,
    ) -> Result<(), Error> {
        let token = activation_client_token(&grant.arn, &grant.version);
        self.limiter.acquire("CreateGrantVersion").await;
        let (_answered, v) = match &how {
            decide::ActivateAs::Member(behavior) => {
                let member_lm = &target.member.license_manager;
                let b = behavior.as_deref();
                aws::activate_grant(member_lm, &grant.arn, &grant.version, &token, b, calls).await?
            }
            decide::ActivateAs::Grantor(behavior) => {
                let lm = &self.clients.license_manager;
                aws::activate_grant_as_grantor(
                    lm,
                    &grant.arn,
                    &grant.version,
                    &token,
                    behavior,
                    calls,
                )
                .await?
            }
        };
        put_mark(
            marks,
            ActivationMark {
                grant_arn: grant.arn.clone(),
                version: v.clone(),
                bulk: false,
            },
        );
        // An `ACTIVE` answer is not taken at its word: what `CreateGrantVersion` answers while
        // the activation is still processing is undocumented (`pendingActivationAnswer`), so
        // the grant itself is looked at, with what the activation `replaces`, at once.
        update(own, &grant.arn, status::DISABLED.to_string(), v, None);
        let looks: Vec<&str> = replaces
            .map(|r| r.arn.as_str())
            .into_iter()
            .chain(std::iter::once(grant.arn.as_str()))
            .collect();
        for _ in &looks {
            self.limiter.acquire("GetGrant").await;
        }
        let lm = &self.clients.license_manager;
        let looked =
            futures::future::try_join_all(looks.iter().map(|arn| aws::get_grant(lm, arn, calls)))
                .await?;
        for g in looked {
            if g.arn == grant.arn {
                if let Some(m) = marks.iter_mut().find(|m| m.grant_arn == grant.arn) {
                    if m.version.is_empty() {
                        m.version = g.version.clone();
                    }
                }
            }
            replace(own, g);
        }
        Ok(())
    }

    /// DeleteGrant (grantor side): a failed grant, or one retired by a migration; the
    /// observation then shows it DELETED.
    pub(super) async fn delete_grant(
        &self,
        own: &mut [GrantView],
        failed: &GrantView,
        reason: &str,
        calls: &CallLog,
        report: &mut LicenseReport,
    ) -> Result<(), Error> {
        self.limiter.acquire("DeleteGrant").await;
        let lm = &self.clients.license_manager;
        let s = aws::delete_grant(lm, &failed.arn, &failed.version, reason, calls).await?;
        report.actions.push("DeleteGrant".into());
        let s = if s.is_empty() {
            status::DELETED.to_string()
        } else {
            s
        };
        update(own, &failed.arn, s, String::new(), None);
        Ok(())
    }

    /// CreateGrant with the deterministic token of `generation` and the operations the
    /// management account may pass on; one GetGrant look when it answers PENDING_WORKFLOW.
    pub(super) async fn create_grant(
        &self,
        target: &Target<'_>,
        license: &HeldLicense,
        generation: usize,
        calls: &CallLog,
        report: &mut LicenseReport,
    ) -> Result<GrantView, Error> {
        let operations = grant_operations(&self.config.allowed_operations, license)?;
        self.warn_dropped_operations(&operations, report);
        let token = grant_client_token(target.account, &license.arn, generation);
        self.limiter.acquire("CreateGrant").await;
        let created = aws::create_grant(
            &self.clients.license_manager,
            &NewGrant {
                client_token: &token,
                name: &target.own_grant_name,
                license_arn: &license.arn,
                principal: &target.principal,
                home_region: &self.config.license_home_region,
                allowed_operations: &operations,
            },
            calls,
        )
        .await?;
        report.actions.push("CreateGrant".into());
        report.grant_source = Some(Source::Account.as_str().into());
        report.grant_arn = Some(created.arn.clone());
        report.status_after = Some(created.status.clone());
        if created.status != status::PENDING_WORKFLOW {
            return Ok(created);
        }
        // One look (no waiting): short workflows are done by now. A token that names a grant
        // since deleted or rejected shows it here; the next decision then takes the next
        // generation, whatever the listing showed.
        self.limiter.acquire("GetGrant").await;
        let mut looked = aws::get_grant(&self.clients.license_manager, &created.arn, calls).await?;
        if looked.name.is_empty() {
            looked.name = created.name;
        }
        Ok(looked)
    }

    /// [`Engine::create_grant`], what it answered (or showed on a look) put into `own`.
    pub(super) async fn create_own(
        &self,
        target: &Target<'_>,
        license: &HeldLicense,
        generation: usize,
        own: &mut Vec<GrantView>,
        calls: &CallLog,
        report: &mut LicenseReport,
    ) -> Result<(), Error> {
        let created = self
            .create_grant(target, license, generation, calls, report)
            .await?;
        replace(own, created);
        Ok(())
    }

    /// A warning (once) naming the configured operations the grant leaves out.
    fn warn_dropped_operations(&self, operations: &[String], report: &mut LicenseReport) {
        let dropped: Vec<&String> = self
            .config
            .allowed_operations
            .iter()
            .filter(|op| !operations.contains(op))
            .collect();
        if !dropped.is_empty() {
            let warning = format!(
                "ALLOWED_OPERATIONS {} not granted: the granting account does not hold them for this license",
                dropped
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            if !report.warnings.contains(&warning) {
                report.warnings.push(warning);
            }
        }
    }

    /// A decision's failure as the classified error of this license.
    pub(super) fn failure(
        &self,
        failure: Failure,
        target: &Target<'_>,
        license: &HeldLicense,
        report: &mut LicenseReport,
    ) -> Error {
        match failure {
            Failure::ActiveLicenseConflict { grant, reason } => {
                note(
                    report,
                    &grant,
                    decide::source_of(&grant, &[], &target.own_grant_name),
                );
                conflict_error(&grant, &reason, conflicting_grant(target, license))
            }
            Failure::ChildFailed { grant } => {
                note(report, &grant, Source::Organization);
                child_failed_error(&grant)
            }
            // Not a failure: reported as held back by `drive_grant`.
            Failure::OperatorDeactivated { grant, .. } => {
                note(report, &grant, Source::Organization);
                Error::GrantFailed {
                    grant_arn: grant.arn.clone(),
                    status: grant.status.clone(),
                    reason: "deactivated in bulk by an operator".into(),
                }
            }
            Failure::ParentFailed { parent } => {
                note(report, &parent, Source::Organization);
                parent_failed_error(&parent)
            }
            Failure::TooManyGenerations { grant, count } => {
                if let Some(g) = &grant {
                    note(report, g, Source::Account);
                }
                too_many_generations_error(grant.as_ref(), count, target, license)
            }
        }
    }
}

/// `ActiveLicenseConflict`: the grant stays DISABLED, naming the account's other active grant
/// for the product when there is one.
fn conflict_error(grant: &GrantView, reason: &str, other: Option<&GrantView>) -> Error {
    Error::ActiveLicenseConflict(match other {
        Some(other) => format!(
            "grant {} stays DISABLED: {reason} (the account's active grant {} for license {})",
            grant.arn, other.arn, other.license_arn
        ),
        None => format!("grant {} stays DISABLED: {reason}", grant.arn),
    })
}

/// The account-level grant of an organization/OU grant failed: it belongs to that grant.
fn child_failed_error(grant: &GrantView) -> Error {
    Error::GrantFailed {
        grant_arn: grant.arn.clone(),
        status: grant.status.clone(),
        reason: format!(
            "the account-level grant of organization/OU grant {} failed ({}); it belongs to that grant: fix the cause in the account, then re-create or re-activate the organization grant",
            grant.parent_arn,
            grant.status_reason.as_deref().unwrap_or("no reason given"),
        ),
    }
}

/// The organization/OU grant covering the account failed: no per-account grant beside it.
fn parent_failed_error(parent: &GrantView) -> Error {
    Error::GrantFailed {
        grant_arn: parent.arn.clone(),
        status: parent.status.clone(),
        reason: format!(
            "the organization/OU grant covering this account failed ({}); no per-account grant is made beside it",
            parent.status_reason.as_deref().unwrap_or("no reason given"),
        ),
    }
}

/// As many grants as `decide::MAX_GRANT_GENERATIONS` were made for the account and license.
fn too_many_generations_error(
    grant: Option<&GrantView>,
    count: usize,
    target: &Target<'_>,
    license: &HeldLicense,
) -> Error {
    Error::GrantFailed {
        grant_arn: grant.map(|g| g.arn.clone()).unwrap_or_else(|| {
            format!("(none: {} for account {})", license.arn, target.account)
        }),
        status: grant
            .map(|g| g.status.clone())
            .unwrap_or_else(|| status::DELETED.to_string()),
        reason: format!(
            "{count} grants were made for this account and license already (limit {}); look at why they failed or were rejected, then delete them by hand to start over",
            decide::MAX_GRANT_GENERATIONS
        ),
    }
}

/// The configured operations the management account may pass on for this license: a grant
/// never carries more than its grantor holds. None left is a configuration error.
pub(crate) fn grant_operations(
    configured: &[String],
    license: &HeldLicense,
) -> Result<Vec<String>, Error> {
    let Some(held) = &license.allowed_operations else {
        return Ok(configured.to_vec());
    };
    let ops: Vec<String> = configured
        .iter()
        .filter(|op| held.contains(op))
        .cloned()
        .collect();
    if ops.is_empty() {
        return Err(Error::Config(format!(
            "none of ALLOWED_OPERATIONS ({}) is held by the granting account for license {} (it holds: {})",
            configured.join(","),
            license.arn,
            if held.is_empty() {
                "nothing".to_string()
            } else {
                held.join(",")
            }
        )));
    }
    Ok(ops)
}

/// Another ACTIVE grant of the account for the same product, when the held licenses say so.
fn conflicting_grant<'a>(target: &'a Target<'_>, license: &HeldLicense) -> Option<&'a GrantView> {
    let sku = license.sku.as_deref()?;
    target.seen.iter().find(|g| {
        g.status == status::ACTIVE
            && g.license_arn != license.arn
            && g.grantee == target.principal
            && target
                .held
                .iter()
                .any(|h| h.arn == g.license_arn && h.sku.as_deref() == Some(sku))
    })
}
