//! One license of one account: observe → `decide::decide` → execute, until the decision is to
//! stop or wait; what was done and seen goes into the license's report.

use super::recheck::put_mark;
use super::Engine;
use crate::aws::{GrantView, HeldLicense};
use crate::clients::MemberClients;
use crate::config::{Mode, OverrideBehavior};
use crate::decide::{self, is_terminal, Failure, Next, Observation, Source, WaitReason};
use crate::error::Error;
use crate::ids::AccountId;
use crate::inbound::ActivationMark;
use crate::report::{CallLog, ErrorReport, LicenseReport};

/// Decide/execute rounds per license and invocation (create, accept, activate, look: four).
const MAX_STEPS: usize = 8;

/// The report's `grantSource` for a grant of ct-entitlements' own to an account whose license
/// is distributed to the organization or OUs (a stop-gap until the account-level grant under
/// the parent works: an older per-account grant during a migration, or a repair).
pub(crate) const REPAIR_SOURCE: &str = "repair";

/// DeleteGrant's reason for our grant, retired by a migration.
const RETIRE_REASON: &str = "ct-entitlements: replaced by the account's grant under an organization/OU grant (LICENSE_DISTRIBUTION)";
/// DeleteGrant's reason for a failed child, cleared.
const CLEAR_CHILD_REASON: &str =
    "ct-entitlements: the account's roles are in place; clearing a failed account-level grant";
/// DeleteGrant's reason for our grant whose workflow failed, replaced.
const REPLACE_REASON: &str = "ct-entitlements: replacing a grant whose workflow failed";

/// The account a license is driven for, and how.
pub(super) struct Target<'a> {
    pub(super) account: &'a AccountId,
    pub(super) principal: String,
    pub(super) member: &'a MemberClients,
    pub(super) behavior: OverrideBehavior,
    pub(super) own_grant_name: String,
    pub(super) held: &'a [HeldLicense],
    /// Every grant seen for the account (all licenses), to name a conflicting one.
    pub(super) seen: &'a [GrantView],
    pub(super) activations: Vec<ActivationMark>,
    /// Delayed re-checks before this run.
    pub(super) attempt: u32,
    /// The principals whose grants promise the account a child: the organization, and the
    /// account's own OU (not the OUs above it).
    pub(super) promising: Vec<String>,
}

/// What happened to one license, beyond its report.
pub(super) struct LicenseRun {
    pub(super) report: LicenseReport,
    pub(super) pending: bool,
    pub(super) marks: Vec<ActivationMark>,
}

/// What one license's drive has observed, and done, so far.
struct Drive {
    /// The account's grants for the license.
    own: Vec<GrantView>,
    /// The organization/OU grants covering the account for the license.
    parents: Vec<GrantView>,
    /// The organization's received grants were read (`FindChild`).
    org_side_read: bool,
    /// The covering grants come from a short-lived per-container cache; before a write that
    /// depends on them (an activation, a takeover, a repair, clearing a child) they are read
    /// again, once: an operator's bulk deactivation a moment ago must not be undone.
    parents_fresh: bool,
    /// A failed grant was deleted in this run.
    replaced: bool,
}

impl Engine {
    pub(super) async fn ensure_license(
        &self,
        target: &Target<'_>,
        license: &HeldLicense,
        own: Vec<GrantView>,
        parents: Vec<GrantView>,
        calls: &CallLog,
    ) -> LicenseRun {
        let mut report = LicenseReport {
            license_arn: license.arn.clone(),
            product_sku: license.sku.clone(),
            product_name: license.product_name.clone().or(license.name.clone()),
            ..LicenseReport::default()
        };
        let mut marks = Vec::new();
        let result = self
            .drive_grant(
                target,
                license,
                own,
                parents,
                &mut marks,
                calls,
                &mut report,
            )
            .await;
        // In organization/OU mode a grant of ct-entitlements' own to the account is a stop-gap
        // (an older one kept until the child takes over, or a repair where no child works).
        if report
            .mode
            .as_deref()
            .and_then(|m| Mode::parse(m, "mode").ok())
            .is_some_and(Mode::has_parent_grant)
            && report.grant_source.as_deref() == Some(Source::Account.as_str())
        {
            report.grant_source = Some(REPAIR_SOURCE.to_string());
        }
        match result {
            Ok(pending) => LicenseRun {
                report,
                pending,
                marks,
            },
            Err(e) => {
                report.error = Some(ErrorReport::from(&e));
                LicenseRun {
                    report,
                    pending: false,
                    marks,
                }
            }
        }
    }

    /// Observe → decide → execute, until the decision is to stop or wait. Returns true when
    /// only time can move the grant further (re-check later).
    #[allow(clippy::too_many_arguments)]
    async fn drive_grant(
        &self,
        target: &Target<'_>,
        license: &HeldLicense,
        own: Vec<GrantView>,
        parents: Vec<GrantView>,
        marks: &mut Vec<ActivationMark>,
        calls: &CallLog,
        report: &mut LicenseReport,
    ) -> Result<bool, Error> {
        let mut drive = Drive {
            parents_fresh: parents.is_empty(),
            own,
            parents,
            org_side_read: false,
            replaced: false,
        };
        let mut first = true;
        let mode = self
            .config
            .mode_of(&license.arn, license.sku.as_deref().unwrap_or_default());
        report.mode = Some(mode.as_str().to_string());
        for _ in 0..MAX_STEPS {
            let next = self.next_step(target, license, mode, &drive, marks);
            if first && !matches!(next, Next::FindChild { .. }) {
                first = false;
                report.status_before = status_before(&next, target);
            }
            if depends_on_parents(&next) && !drive.parents_fresh && !self.config.dry_run {
                drive.parents_fresh = true;
                self.refresh_parents(license, &mut drive.parents, calls)
                    .await?;
                continue;
            }
            let step = self.take_step(next, target, license, &mut drive, marks, calls, report);
            if let Some(pending) = step.await? {
                return Ok(pending);
            }
        }
        // Out of steps: whatever is left is looked at again later.
        Ok(!self.config.dry_run)
    }

    /// The decision on what is observed now, with the activations known before this run and
    /// those requested in it.
    fn next_step(
        &self,
        target: &Target<'_>,
        license: &HeldLicense,
        mode: Mode,
        drive: &Drive,
        marks: &[ActivationMark],
    ) -> Next {
        let mut activations = target.activations.clone();
        for mark in marks.iter() {
            put_mark(&mut activations, mark.clone());
        }
        let parents = &drive.parents;
        decide::decide(&Observation {
            license_arn: &license.arn,
            own: &drive.own,
            parents,
            activations: &activations,
            own_grant_name: &target.own_grant_name,
            org_side_read: drive.org_side_read,
            replaced_this_run: drive.replaced,
            attempt: target.attempt,
            retiring: !mode.has_parent_grant()
                && parents.iter().any(|p| {
                    !is_terminal(&p.status)
                        && p.name
                            == crate::model::grant::parent_grant_name(
                                &self.config.grant_name_prefix,
                                &p.grantee,
                            )
                }),
            child_promised: parents
                .iter()
                .any(|p| target.promising.contains(&p.grantee)),
            mode,
        })
    }

    /// Reads the grants to the covering principals for `license` again (the cache refreshed
    /// with what was read).
    async fn refresh_parents(
        &self,
        license: &HeldLicense,
        parents: &mut Vec<GrantView>,
        calls: &CallLog,
    ) -> Result<(), Error> {
        let principals: Vec<String> = parents.iter().map(|p| p.grantee.clone()).collect();
        let mut unique: Vec<String> = Vec::new();
        for p in principals {
            if !unique.contains(&p) {
                unique.push(p);
            }
        }
        let fresh: Vec<GrantView> = self
            .covering_grants_fresh(&unique, calls)
            .await?
            .into_iter()
            .filter(|g| g.license_arn == license.arn)
            .collect();
        // What was read now replaces what was cached; a parent seen only on the
        // member's side stays.
        for g in fresh {
            match parents.iter_mut().find(|p| p.arn == g.arn) {
                Some(p) => *p = g,
                None => parents.push(g),
            }
        }
        Ok(())
    }

    /// Executes one decision: `Some(pending)` when the drive stops there (true: only time can
    /// move the grant further), `None` when it observes and decides again.
    #[allow(clippy::too_many_arguments)]
    async fn take_step(
        &self,
        next: Next,
        target: &Target<'_>,
        license: &HeldLicense,
        drive: &mut Drive,
        marks: &mut Vec<ActivationMark>,
        calls: &CallLog,
        report: &mut LicenseReport,
    ) -> Result<Option<bool>, Error> {
        let own = &mut drive.own;
        match next {
            Next::Done { grant, source } => {
                note(report, &grant, source);
                return Ok(Some(false));
            }
            Next::Wait {
                grant,
                source,
                reason,
            } => return Ok(Some(self.wait(&grant, source, reason, marks, report))),
            Next::Fail(Failure::OperatorDeactivated { grant, parent }) => {
                held_back(report, &grant, &parent);
                return Ok(Some(false));
            }
            Next::Fail(failure) => return Err(self.failure(failure, target, license, report)),
            Next::AwaitParent => {
                report.grant_source = Some(Source::Organization.as_str().into());
                report.pending_reason = Some(WaitReason::ParentNotYet.as_str().to_string());
                return Ok(Some(!self.config.dry_run));
            }
            Next::FindChild { parent } => {
                note(report, &parent, Source::Organization);
                self.find_child(target, license, own, calls).await?;
                drive.org_side_read = true;
            }
            planned if self.config.dry_run => {
                plan(report, &planned);
                return Ok(Some(false));
            }
            Next::Accept { grant, source } => {
                note(report, &grant, source);
                self.accept(target, &grant, own, calls, report).await?;
            }
            Next::Activate { grant, source } => {
                self.activate_step(target, &grant, source, marks, own, calls, report)
                    .await?;
            }
            Next::Create { generation } => {
                self.create_own(target, license, generation, own, calls, report)
                    .await?;
            }
            Next::TakeOver { grant, replaces } => {
                self.take_over(target, &grant, &replaces, marks, own, calls, report)
                    .await?;
            }
            Next::Retire { grant } => {
                note(report, &grant, Source::Account);
                self.delete_grant(own, &grant, RETIRE_REASON, calls, report)
                    .await?;
            }
            Next::DeleteChild { failed } => {
                note(report, &failed, Source::Organization);
                self.delete_grant(own, &failed, CLEAR_CHILD_REASON, calls, report)
                    .await?;
                drive.replaced = true;
            }
            Next::Replace { failed, generation } => {
                note(report, &failed, Source::Account);
                self.delete_grant(own, &failed, REPLACE_REASON, calls, report)
                    .await?;
                drive.replaced = true;
                self.create_own(target, license, generation, own, calls, report)
                    .await?;
            }
        }
        Ok(None)
    }

    /// A grant only time moves further: reported as pending (a re-check later, unless this is
    /// a dry run). A bulk activation is waited for once: the next look activates it
    /// individually.
    fn wait(
        &self,
        grant: &GrantView,
        source: Source,
        reason: WaitReason,
        marks: &mut Vec<ActivationMark>,
        report: &mut LicenseReport,
    ) -> bool {
        note(report, grant, source);
        report.pending_reason = Some(reason.as_str().to_string());
        if reason == WaitReason::BulkActivation && !self.config.dry_run {
            // Waited for once: the next look activates it individually.
            put_mark(
                marks,
                ActivationMark {
                    grant_arn: grant.arn.clone(),
                    version: grant.version.clone(),
                    bulk: true,
                },
            );
        }
        !self.config.dry_run
    }
}

/// The status of the grant a license's first decision is about, if any: the report's
/// `statusBefore`.
fn status_before(next: &Next, target: &Target<'_>) -> Option<String> {
    match next {
        Next::Done { grant, .. } | Next::Accept { grant, .. } | Next::Activate { grant, .. } => {
            Some(grant.status.clone())
        }
        Next::Wait { grant, source, .. } if *source == Source::Account => {
            Some(grant.status.clone())
        }
        Next::Wait { grant, .. } if grant.grantee == target.principal => Some(grant.status.clone()),
        Next::Replace { failed, .. } | Next::DeleteChild { failed } => Some(failed.status.clone()),
        Next::Retire { grant }
        | Next::TakeOver {
            replaces: grant, ..
        } => Some(grant.status.clone()),
        Next::Fail(Failure::ActiveLicenseConflict { grant, .. })
        | Next::Fail(Failure::ChildFailed { grant }) => Some(grant.status.clone()),
        _ => None,
    }
}

/// Whether a decision writes on the strength of the covering grants (read again first).
fn depends_on_parents(next: &Next) -> bool {
    matches!(
        next,
        Next::Activate {
            source: Source::Organization,
            ..
        } | Next::TakeOver { .. }
            | Next::Create { .. }
            | Next::DeleteChild { .. }
    )
}

/// An organization/OU grant an operator changed: its children are not activated one by one.
fn held_back(report: &mut LicenseReport, grant: &GrantView, parent: &GrantView) {
    note(report, grant, Source::Organization);
    report.held_back = Some(format!(
        "organization/OU grant {} was changed by someone other than ct-entitlements ({}): its account-level grants were deactivated in bulk, and ct-entitlements does not activate them account by account; bulk-activate that grant again to resume",
        parent.arn,
        parent.status_reason.as_deref().unwrap_or("no reason given"),
    ));
}

/// A dry run's decision: the grant it is about, and the actions it would take.
fn plan(report: &mut LicenseReport, planned: &Next) {
    match planned {
        Next::Accept { grant, source } | Next::Activate { grant, source } => {
            note(report, grant, *source)
        }
        Next::Replace { failed, .. } => note(report, failed, Source::Account),
        Next::DeleteChild { failed } => note(report, failed, Source::Organization),
        Next::TakeOver { grant, .. } => note(report, grant, Source::Organization),
        Next::Retire { grant } => note(report, grant, Source::Account),
        _ => report.grant_source = Some(Source::Account.as_str().into()),
    }
    report.actions = planned.planned_actions();
}

/// Records which grant a license report is about.
pub(super) fn note(report: &mut LicenseReport, grant: &GrantView, source: Source) {
    report.grant_arn = Some(grant.arn.clone());
    report.grant_source = Some(source.as_str().into());
    report.status_after = Some(grant.status.clone());
}

/// Sets a grant's status (and version, reason when given) in the observation.
pub(super) fn update(
    own: &mut [GrantView],
    arn: &str,
    status: String,
    version: String,
    reason: Option<String>,
) {
    if let Some(g) = own.iter_mut().find(|g| g.arn == arn) {
        g.status = status;
        if !version.is_empty() {
            g.version = version;
        }
        if reason.is_some() {
            g.status_reason = reason;
        }
    }
}

/// Puts a freshly read grant into the observation (replacing the older view of it).
pub(super) fn replace(own: &mut Vec<GrantView>, mut grant: GrantView) {
    match own.iter_mut().find(|g| g.arn == grant.arn) {
        Some(g) => {
            if grant.name.is_empty() {
                grant.name = std::mem::take(&mut g.name);
            }
            *g = grant
        }
        None => own.push(grant),
    }
}
