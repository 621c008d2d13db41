//! Onboarding one account: `run` a request, observe the account (organization, its facts,
//! the held licenses; then its roles and grants from both sides, at once), choose its
//! licenses, drive each of them (concurrently, bounded) and queue a re-check while any waits.

use super::chained::{superseded, Claimed};
use super::drive::{LicenseRun, Target};
use super::recheck::put_mark;
use super::reporting::{empty_report, finish, outcome, trigger_name};
use super::selection::{resolve, Selected};
use super::Engine;
use crate::aws::{self, GrantView, HeldLicense, MemberInfo, OrgInfo};
use crate::clients::MemberClients;
use crate::config::OverrideBehavior;
use crate::error::Error;
use crate::ids::AccountId;
use crate::inbound::{ActivationMark, Request, Work};
use crate::report::{AccountReport, CallLog, ErrorReport, LicenseReport, Outcome, SlrReport};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Instant;

/// What is read about an account before its licenses are chosen.
struct Facts {
    org: OrgInfo,
    member: MemberInfo,
    held: Arc<Vec<HeldLicense>>,
}

/// What is read about an account's grants and roles, from its side and the grantor's.
struct AccountView {
    member_clients: MemberClients,
    slrs: Vec<SlrReport>,
    /// The grants the account received (its own view).
    received: Vec<GrantView>,
    /// The grants to the account's root principal (the grantor's view).
    direct: Vec<GrantView>,
    /// The principals whose grants cover the account: the organization, then the OUs above
    /// it, nearest first.
    covering: Vec<String>,
    /// The grants to those principals.
    parent_grants: Vec<GrantView>,
}

impl Engine {
    /// Works one request to completion and reports it. Never panics on input; every failure is
    /// in the report's `error` (or a license's), classified retryable or permanent.
    pub async fn run(&self, request: Request) -> AccountReport {
        self.run_chained(request, None).await
    }

    /// [`Engine::run`] for a message of an account's chain with sequence `chain` (an SQS
    /// record's `chainSeq` message attribute): with `CHAIN_TABLE` set, the run first claims the
    /// account's chain (a superseded message ends there, skipped) and leaves it waiting or
    /// ended ([`crate::chain`]).
    pub async fn run_chained(&self, request: Request, chain: Option<u64>) -> AccountReport {
        let started = Instant::now();
        let calls = CallLog::default();
        // Boxed: the run's future is deep; keep it off the callers' stack types.
        let claim = Box::pin(self.claim_chain(&request, chain, &calls));
        let work = Box::pin(self.work(&request, &calls));
        // A message without a sequence claims under a new one, which no item can be ahead of:
        // its claim goes beside the run's first calls. One with a sequence is claimed first,
        // so a superseded message makes no other call.
        let (claimed, mut report) = match chain {
            None => futures::join!(claim, work),
            Some(_) => match claim.await {
                Claimed::Superseded => return finish(superseded(&request), &calls, started),
                claimed => (claimed, work.await),
            },
        };
        if let Claimed::Unavailable(_, why) = &claimed {
            report.chain = Some(format!("unavailable: {why}"));
        }
        if let (Claimed::Mine(mine) | Claimed::Unavailable(mine, _), Request::Work(work)) =
            (claimed, &request)
        {
            Box::pin(self.settle_chain(work, mine, &calls, &mut report)).await;
        }
        finish(report, &calls, started)
    }

    /// The report of one request, worked.
    async fn work(&self, request: &Request, calls: &CallLog) -> AccountReport {
        match request {
            Request::Skip { account_id, reason } => {
                let mut r = empty_report(
                    account_id.clone(),
                    "controlTowerFailed".into(),
                    self.config.dry_run,
                );
                r.outcome = Outcome::Skipped;
                r.reason = Some(reason.clone());
                r
            }
            Request::Work(work) => {
                let mut r = empty_report(
                    Some(work.account_id.to_string()),
                    trigger_name(&work.trigger),
                    self.config.dry_run,
                );
                r.account_name = work.account_name.clone();
                r.ou_id = work.ou_id.clone();
                r.ou_name = work.ou_name.clone();
                r.attempt = work.attempt;
                r.first_seen = work.first_seen;
                // Boxed: the whole onboarding future is deep; keep it off the caller's stack type.
                let mut result = Box::pin(self.onboard(work, calls, &mut r)).await;
                // The OU an event or a queued message names is a claim that may no longer hold
                // (the account moved, the OU was deleted): a failure it caused is never the
                // end; the truth is read again (no hint) and the work goes on.
                if let Err(e) = &result {
                    if work.ou_id.is_some() && is_stale_ou(e) {
                        let fresh = Work {
                            ou_id: None,
                            ou_name: None,
                            ..work.clone()
                        };
                        r.ou_id = None;
                        r.ou_name = None;
                        r.licenses.clear();
                        result = Box::pin(self.onboard(&fresh, calls, &mut r)).await;
                    }
                }
                match result {
                    Ok(marks) => r.activations_requested = marks,
                    Err(e) => r.error = Some(ErrorReport::from(&e)),
                }
                r.outcome = outcome(&r);
                r
            }
        }
    }

    async fn onboard(
        &self,
        work: &Work,
        calls: &CallLog,
        report: &mut AccountReport,
    ) -> Result<Vec<ActivationMark>, Error> {
        let account = &work.account_id;
        let Some(facts) = self.observe_member(work, calls, report).await? else {
            return Ok(Vec::new());
        };
        let Some((licenses, behavior)) = self.choose_licenses(work, &facts, calls, report).await?
        else {
            return Ok(Vec::new());
        };

        let principal = account.root_principal(&self.config.partition);
        let view = self
            .observe_account(account, &principal, &facts, calls)
            .await?;
        report.service_linked_roles = view.slrs;

        // Everything seen about the account, each grant once (the member's view first).
        let seen = seen_once(view.received, view.direct);
        let parents = with_member_parents(view.parent_grants, &seen, &view.covering);
        let target = Target {
            account,
            principal,
            member: &view.member_clients,
            behavior,
            own_grant_name: self.own_grant_name(account),
            held: &facts.held,
            seen: &seen,
            activations: self.known_activations(work),
            attempt: work.attempt,
            promising: view.covering.iter().take(2).cloned().collect(),
        };
        let runs = self
            .drive_licenses(&target, &licenses, &parents, calls)
            .await;
        let pending = runs.iter().any(|r| r.pending);
        let marks = take_runs(runs, report);
        self.remember(&marks);
        self.recheck_if_pending(work, pending, &marks, calls, report)
            .await?;
        Ok(marks)
    }

    /// The organization (cached), the account's facts and the held licenses (cached), at once;
    /// `None` (the report says why) when the account is not onboarded: the management account,
    /// the account ct-entitlements runs in. An account not ACTIVE is an error.
    async fn observe_member(
        &self,
        work: &Work,
        calls: &CallLog,
        report: &mut AccountReport,
    ) -> Result<Option<Facts>, Error> {
        let account = &work.account_id;
        // The organization (cached), the account's facts and the held licenses (cached) do not
        // depend on each other.
        // A Control Tower event names the OU the account was just placed in; tags are read only
        // when a selection rule uses them.
        let hints = aws::MemberHints {
            ou_id: work.ou_id.as_deref().filter(|ou| crate::ids::is_ou_id(ou)),
            skip_tags: work.explicit.is_some()
                || (self.config.account_tag_filter.is_none()
                    && self.config.licenses_tag_key.is_none()),
        };
        let (org, member, held) = futures::try_join!(
            self.org_info(calls),
            aws::describe_member(&self.clients.organizations, account, hints, calls),
            self.held_licenses(calls),
        )?;
        if org.management_account == account.as_str() {
            report.reason = Some("the management account is not onboarded as a member".into());
            report.outcome = Outcome::Skipped;
            return Ok(None);
        }
        if self.config.self_account_id.as_ref() == Some(account) {
            report.reason = Some(
                "this is the account ct-entitlements runs in; it holds the licenses and is never granted to"
                    .into(),
            );
            report.outcome = Outcome::Skipped;
            return Ok(None);
        }
        check_state(account, &member)?;
        if member.ou_id != report.ou_id {
            report.ou_name = None;
        }
        report.account_name = member.name.clone().or(report.account_name.take());
        report.ou_id = member.ou_id.clone();
        Ok(Some(Facts { org, member, held }))
    }

    /// The licenses to drive for the account (the request's, or the configured selection's with
    /// those inherited from the OUs above), and how an activation overrides; a selection that
    /// matches no held license is a license's error in the report. `None` (the report says why
    /// when nothing else is in it) when there is nothing to drive.
    async fn choose_licenses(
        &self,
        work: &Work,
        facts: &Facts,
        calls: &CallLog,
        report: &mut AccountReport,
    ) -> Result<Option<(Vec<HeldLicense>, OverrideBehavior)>, Error> {
        let Facts { member, held, .. } = facts;
        let refs = match &work.explicit {
            Some(explicit) => explicit
                .licenses
                .iter()
                .cloned()
                .map(Selected::Ref)
                .collect(),
            None => {
                if let Some(reason) = self.excluded(&member.ou_id, &member.tags) {
                    report.reason = Some(reason);
                    report.outcome = Outcome::Skipped;
                    return Ok(None);
                }
                self.selection_for(&member.ou_id, &member.tags)?
            }
        };
        let behavior = work
            .explicit
            .as_ref()
            .and_then(|e| e.override_behavior)
            .unwrap_or(self.config.override_behavior);
        let (mut licenses, unmatched) = resolve(&refs, held);
        if work.explicit.is_none() {
            let ancestors = self.inherited_from(&member.ou_id, calls).await?;
            for l in self.inherited(&ancestors, held) {
                if !licenses.iter().any(|o| o.arn == l.arn) {
                    licenses.push(l);
                }
            }
        }
        for missing in unmatched {
            let err = Error::Config(format!(
                "{missing} matches no AVAILABLE AWS/Marketplace license held by the granting account"
            ));
            report.licenses.push(LicenseReport {
                license_arn: missing.to_string(),
                error: Some(ErrorReport::from(&err)),
                ..LicenseReport::default()
            });
        }
        if licenses.is_empty() {
            if report.licenses.is_empty() {
                report.reason = Some("no licenses are selected for this account".into());
                report.outcome = Outcome::Skipped;
            }
            return Ok(None);
        }
        Ok(Some((licenses, behavior)))
    }

    /// Member side (assume role, then roles and received grants) and management side (the
    /// account's grants, the covering grants) at once.
    async fn observe_account(
        &self,
        account: &AccountId,
        principal: &str,
        facts: &Facts,
        calls: &CallLog,
    ) -> Result<AccountView, Error> {
        let management_side = async {
            futures::try_join!(
                aws::grants_to_principal(&self.clients.license_manager, principal, calls),
                self.covering_side(&facts.org, &facts.member, calls),
            )
        };
        let ((member_clients, slrs, received), (direct, (covering, parent_grants))) =
            futures::try_join!(self.member_side(account, calls), management_side)?;
        Ok(AccountView {
            member_clients,
            slrs,
            received,
            direct,
            covering,
            parent_grants,
        })
    }

    /// Assumes the role in the account, then ensures its service-linked roles and reads the
    /// grants it received, at once.
    async fn member_side(
        &self,
        account: &AccountId,
        calls: &CallLog,
    ) -> Result<(MemberClients, Vec<SlrReport>, Vec<GrantView>), Error> {
        let role_arn = account.role_arn(&self.config.partition, &self.config.execution_role_name);
        let credentials = aws::assume_role(
            &self.clients.sts,
            &role_arn,
            &format!("ct-entitlements-{account}"),
            self.config.assume_role_attempts,
            self.config.assume_role_backoff,
            calls,
        )
        .await?;
        let member_clients = self.clients.members.member_clients(credentials);
        let (slrs, received) = futures::try_join!(
            self.ensure_slrs(&member_clients, calls),
            aws::received_grants(&member_clients.license_manager, calls),
        )?;
        Ok((member_clients, slrs, received))
    }

    /// The principals whose grants cover the account: the organization and every OU above
    /// it (the organization's are read while the OUs above are walked), and their grants.
    pub(super) async fn covering_side(
        &self,
        org: &OrgInfo,
        member: &MemberInfo,
        calls: &CallLog,
    ) -> Result<(Vec<String>, Vec<GrantView>), Error> {
        let (org_grants, ancestors) = futures::try_join!(
            self.covering_grants(std::slice::from_ref(&org.arn), calls),
            self.ancestor_ous(member.ou_id.as_deref(), calls),
        )?;
        let ous: Vec<String> = ancestors.iter().map(|ou| org.ou_arn(ou)).collect();
        let mut grants = org_grants;
        grants.extend(self.covering_grants(&ous, calls).await?);
        let mut covering = vec![org.arn.clone()];
        covering.extend(ous);
        Ok((covering, grants))
    }

    /// Looks up the member's service-linked roles (one listing) and creates the missing ones
    /// at once.
    async fn ensure_slrs(
        &self,
        member: &MemberClients,
        calls: &CallLog,
    ) -> Result<Vec<SlrReport>, Error> {
        let paths = aws::service_role_paths(&member.iam, calls).await?;
        let steps = aws::MEMBER_SLR_SERVICES.iter().map(|service| {
            let present = paths.contains(&format!("/aws-service-role/{service}/"));
            async move {
                let action = if present {
                    "existed"
                } else if self.config.dry_run {
                    "wouldCreate"
                } else if aws::create_slr(&member.iam, service, calls).await? {
                    "created"
                } else {
                    "existed"
                };
                Ok::<_, Error>(SlrReport {
                    service: service.to_string(),
                    action: action.to_string(),
                })
            }
        });
        futures::future::try_join_all(steps).await
    }

    /// Drives every license (`max_concurrent_licenses` at once, in order), each with the
    /// account's grants and the covering grants for it.
    async fn drive_licenses(
        &self,
        target: &Target<'_>,
        licenses: &[HeldLicense],
        parents: &[GrantView],
        calls: &CallLog,
    ) -> Vec<LicenseRun> {
        futures::stream::iter(licenses.iter())
            .map(|license| {
                let own: Vec<GrantView> = target
                    .seen
                    .iter()
                    .filter(|g| g.license_arn == license.arn && g.grantee == target.principal)
                    .cloned()
                    .collect();
                let parents: Vec<GrantView> = parents
                    .iter()
                    .filter(|g| g.license_arn == license.arn)
                    .cloned()
                    .collect();
                self.ensure_license(target, license, own, parents, calls)
            })
            .buffered(self.config.max_concurrent_licenses)
            .collect()
            .await
    }
}

/// An account's state from Organizations: ACTIVE goes on; one leaving or gone is not in the
/// organization; any other (PENDING_ACTIVATION, states newer than this code) is on its way.
fn check_state(account: &AccountId, member: &MemberInfo) -> Result<(), Error> {
    match member.state.as_str() {
        "ACTIVE" => Ok(()),
        "SUSPENDED" | "PENDING_CLOSURE" | "CLOSED" => Err(Error::NotInOrganization {
            account: account.to_string(),
            reason: format!("its state is {}", member.state),
        }),
        // PENDING_ACTIVATION and states newer than this code: the account is on its way.
        other => Err(Error::AccountNotReady {
            account: account.to_string(),
            state: other.to_string(),
        }),
    }
}

/// The grants the account received and those to it, each once (the member's view first).
fn seen_once(received: Vec<GrantView>, direct: Vec<GrantView>) -> Vec<GrantView> {
    let mut seen: Vec<GrantView> = Vec::new();
    for g in received.into_iter().chain(direct) {
        if !seen.iter().any(|s| s.arn == g.arn) {
            seen.push(g);
        }
    }
    seen
}

/// The covering grants read from the grantor's side, and those seen among the account's
/// grants to a covering principal (each once).
fn with_member_parents(
    parent_grants: Vec<GrantView>,
    seen: &[GrantView],
    covering: &[String],
) -> Vec<GrantView> {
    let mut parents: Vec<GrantView> = parent_grants;
    for g in seen.iter().filter(|g| covering.contains(&g.grantee)) {
        if !parents.iter().any(|p| p.arn == g.arn) {
            parents.push(g.clone());
        }
    }
    parents
}

/// Puts each license's report in the account's, and gathers the activations requested (one per
/// grant).
fn take_runs(runs: Vec<LicenseRun>, report: &mut AccountReport) -> Vec<ActivationMark> {
    let mut marks: Vec<ActivationMark> = Vec::new();
    for run in runs {
        for mark in run.marks {
            put_mark(&mut marks, mark);
        }
        report.licenses.push(run.report);
    }
    marks
}

/// Whether Organizations said an OU (a parent or child id it was asked about) does not exist:
/// what a stale OU in a request causes.
fn is_stale_ou(e: &Error) -> bool {
    matches!(
        e.aws_code(),
        Some(
            "ChildNotFoundException"
                | "ParentNotFoundException"
                | "OrganizationalUnitNotFoundException"
        )
    )
}
