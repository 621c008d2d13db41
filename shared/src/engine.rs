//! The "ensure this account is entitled" engine: validate → organization → assume role →
//! service-linked roles → per license (concurrently, bounded) find or create the grant, accept,
//! activate → report. Grants still in workflow are re-checked later through the onboarding
//! queue, never waited for in a sleep loop.

use crate::aws::{self, GrantView, HeldLicense, NewGrant, OrgInfo};
use crate::clients::{Clients, MemberClients};
use crate::config::{Config, LicenseRef, OverrideBehavior, Selection};
use crate::error::Error;
use crate::event::{OnboardRequest, Request, Trigger, Work};
use crate::ids::AccountId;
use crate::report::{AccountReport, CallLog, ErrorReport, LicenseReport, Outcome, SlrReport};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Mutex, OnceCell};

/// How long the list of held licenses is reused across accounts of one container.
const HELD_LICENSES_TTL: Duration = Duration::from_secs(60);

/// Grant states, as License Manager spells them.
pub mod status {
    pub const ACTIVE: &str = "ACTIVE";
    pub const DISABLED: &str = "DISABLED";
    pub const PENDING_ACCEPT: &str = "PENDING_ACCEPT";
    pub const PENDING_WORKFLOW: &str = "PENDING_WORKFLOW";
    pub const WORKFLOW_COMPLETED: &str = "WORKFLOW_COMPLETED";
    pub const PENDING_DELETE: &str = "PENDING_DELETE";
    pub const FAILED_WORKFLOW: &str = "FAILED_WORKFLOW";
    pub const REJECTED: &str = "REJECTED";
    pub const DELETED: &str = "DELETED";
}

/// Terminal states: such a grant is never revived; the grantor makes a new one.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, status::REJECTED | status::DELETED)
}

/// States that only time moves forward.
fn is_in_workflow(status: &str) -> bool {
    matches!(
        status,
        status::PENDING_WORKFLOW | status::PENDING_DELETE | status::WORKFLOW_COMPLETED
    )
}

/// Preference among several live grants for one account and license.
fn rank(status: &str) -> u8 {
    match status {
        status::ACTIVE => 0,
        status::DISABLED => 1,
        status::PENDING_ACCEPT => 2,
        status::PENDING_WORKFLOW => 3,
        status::FAILED_WORKFLOW => 4,
        _ => 5,
    }
}

/// The best live grant among `grants`.
pub fn best_live(grants: &[GrantView]) -> Option<&GrantView> {
    grants
        .iter()
        .filter(|g| !is_terminal(&g.status))
        .min_by_key(|g| rank(&g.status))
}

/// Deterministic `ClientToken` for CreateGrant: the same account, license and generation always
/// give the same token, so a retried or duplicated create cannot make a second grant; the
/// replacement of a rejected or deleted grant has a higher generation, so a new token.
pub fn grant_client_token(account: &AccountId, license_arn: &str, generation: usize) -> String {
    token(&format!(
        "create-grant|{account}|{license_arn}|{generation}"
    ))
}

/// Deterministic `ClientToken` for an activation of one grant version.
pub fn activation_client_token(grant_arn: &str, source_version: &str) -> String {
    token(&format!("activate|{grant_arn}|{source_version}"))
}

fn token(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("cte-{hex}")
}

/// The engine: configuration and clients, built once at init and shared by every invocation.
pub struct Engine {
    config: Config,
    clients: Clients,
    org: OnceCell<OrgInfo>,
    held: Mutex<Option<(Instant, Arc<Vec<HeldLicense>>)>>,
    now: fn() -> SystemTime,
}

/// What offboarding does to a departed account's per-account grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffboardMode {
    /// CreateGrantVersion Status=DISABLED: reversible.
    Deactivate,
    /// DeleteGrant: terminal; a returning account gets a new grant.
    Delete,
}

/// The account a license is driven for, and how.
#[derive(Clone, Copy)]
struct Target<'a> {
    account: &'a AccountId,
    org: &'a OrgInfo,
    ou_id: Option<&'a str>,
    member: &'a MemberClients,
    behavior: OverrideBehavior,
}

/// What happened to one license, beyond its report.
struct LicenseRun {
    report: LicenseReport,
    pending: bool,
}

impl Engine {
    pub fn new(config: Config, clients: Clients) -> Self {
        Engine {
            config,
            clients,
            org: OnceCell::new(),
            held: Mutex::new(None),
            now: SystemTime::now,
        }
    }

    /// The same engine with another clock (tests of the workflow deadline).
    pub fn with_clock(mut self, now: fn() -> SystemTime) -> Self {
        self.now = now;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The AVAILABLE AWS/Marketplace licenses the management account holds, from the same
    /// short-lived cache `run` uses (callers that must pick one license before running).
    pub async fn held_marketplace_licenses(&self) -> Result<Arc<Vec<HeldLicense>>, Error> {
        self.held_licenses(&CallLog::default()).await
    }

    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// The organization (read once per container).
    pub async fn organization(&self, calls: &CallLog) -> Result<OrgInfo, Error> {
        self.org_info(calls).await
    }

    /// Works one request to completion and reports it. Never panics on input; every failure is
    /// in the report's `error` (or a license's), classified retryable or permanent.
    pub async fn run(&self, request: Request) -> AccountReport {
        let started = Instant::now();
        let calls = CallLog::default();
        let report = match &request {
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
                // Boxed: the whole onboarding future is deep; keep it off the caller's stack type.
                if let Err(e) = Box::pin(self.onboard(work, &calls, &mut r)).await {
                    r.error = Some(ErrorReport::from(&e));
                }
                r.outcome = outcome(&r);
                r
            }
        };
        finish(report, &calls, started)
    }

    async fn onboard(
        &self,
        work: &Work,
        calls: &CallLog,
        report: &mut AccountReport,
    ) -> Result<(), Error> {
        let account = &work.account_id;
        let org = self.org_info(calls).await?;
        if org.management_account == account.as_str() {
            report.reason = Some("the management account is not onboarded as a member".into());
            report.outcome = Outcome::Skipped;
            return Ok(());
        }
        let member = aws::describe_member(&self.clients.organizations, account, calls).await?;
        if member.state != "ACTIVE" {
            return Err(Error::NotInOrganization {
                account: account.to_string(),
                reason: format!("its state is {}", member.state),
            });
        }
        if member.ou_id != report.ou_id {
            report.ou_name = None;
        }
        report.account_name = member.name.clone().or(report.account_name.take());
        report.ou_id = member.ou_id.clone();

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
                    return Ok(());
                }
                self.selection_for(&member.ou_id, &member.tags)?
            }
        };
        let behavior = work
            .explicit
            .as_ref()
            .and_then(|e| e.override_behavior)
            .unwrap_or(self.config.override_behavior);
        let held = self.held_licenses(calls).await?;
        let (licenses, unmatched) = resolve(&refs, &held);
        for missing in unmatched {
            let err = Error::Config(format!(
                "{missing} matches no AVAILABLE AWS/Marketplace license held by the management account"
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
            return Ok(());
        }

        let role_arn = format!(
            "arn:aws:iam::{account}:role/{}",
            self.config.execution_role_name
        );
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

        report.service_linked_roles = self.ensure_slrs(&member_clients, calls).await?;

        let target = Target {
            account,
            org: &org,
            ou_id: member.ou_id.as_deref(),
            member: &member_clients,
            behavior,
        };
        let runs: Vec<LicenseRun> = futures::stream::iter(licenses.iter())
            .map(|license| self.ensure_license(&target, license, calls))
            .buffered(self.config.max_concurrent_licenses)
            .collect()
            .await;
        let pending = runs.iter().any(|r| r.pending);
        report.licenses.extend(runs.into_iter().map(|r| r.report));

        let queue_recheck = work.explicit.as_ref().is_none_or(|e| e.queue_recheck);
        if pending && queue_recheck {
            self.schedule_recheck(work, calls, report).await?;
        }
        Ok(())
    }

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
        let grants = aws::grants_to_principal(lm, &account.root_principal(), calls).await?;
        for grant in grants.iter().filter(|g| !is_terminal(&g.status)) {
            if license_arns.is_some_and(|only| !only.contains(&grant.license_arn)) {
                continue;
            }
            let mut line = LicenseReport {
                license_arn: grant.license_arn.clone(),
                grant_arn: Some(grant.arn.clone()),
                grant_source: Some("account".into()),
                status_before: Some(grant.status.clone()),
                status_after: Some(grant.status.clone()),
                ..LicenseReport::default()
            };
            let action = match mode {
                OffboardMode::Deactivate if grant.status == status::ACTIVE => {
                    Some("DeactivateGrant")
                }
                OffboardMode::Deactivate => None,
                OffboardMode::Delete => Some("DeleteGrant"),
            };
            if let Some(action) = action {
                line.actions.push(action.to_string());
                if !self.config.dry_run {
                    let result = match mode {
                        OffboardMode::Deactivate => {
                            let token =
                                token(&format!("deactivate|{}|{}", grant.arn, grant.version));
                            aws::deactivate_grant(lm, &grant.arn, &grant.version, &token, calls)
                                .await
                                .map(|(s, _)| s)
                        }
                        OffboardMode::Delete => {
                            aws::delete_grant(lm, &grant.arn, &grant.version, calls).await
                        }
                    };
                    match result {
                        Ok(s) => line.status_after = Some(s),
                        Err(e) => line.error = Some(ErrorReport::from(&e)),
                    }
                }
            }
            report.licenses.push(line);
        }
        Ok(())
    }

    /// Why an account is outside the configured scope, if it is.
    fn excluded(&self, ou_id: &Option<String>, tags: &[(String, String)]) -> Option<String> {
        if !self.config.target_ous.is_empty()
            && !ou_id
                .as_ref()
                .is_some_and(|ou| self.config.target_ous.contains(ou))
        {
            return Some(format!(
                "account's OU {} is not in TARGET_OUS",
                ou_id.as_deref().unwrap_or("(root)")
            ));
        }
        if let Some((key, value)) = &self.config.account_tag_filter {
            if !tags.iter().any(|(k, v)| k == key && v == value) {
                return Some(format!(
                    "account lacks the tag {key}={value} (ACCOUNT_TAG_FILTER)"
                ));
            }
        }
        None
    }

    /// The license references that apply to an account: its OU rule or the global selection,
    /// plus any named in its licenses tag.
    fn selection_for(
        &self,
        ou_id: &Option<String>,
        tags: &[(String, String)],
    ) -> Result<Vec<Selected>, Error> {
        let mut refs: Vec<Selected> =
            match ou_id.as_ref().and_then(|ou| self.config.ou_rules.get(ou)) {
                Some(rule) => rule.iter().cloned().map(Selected::Ref).collect(),
                None => match &self.config.selection {
                    Selection::AllMarketplace => vec![Selected::All],
                    Selection::Listed(list) => list.iter().cloned().map(Selected::Ref).collect(),
                    Selection::PerRequest => Vec::new(),
                },
            };
        if let Some(key) = &self.config.licenses_tag_key {
            for (_, value) in tags.iter().filter(|(k, _)| k == key) {
                for item in value.split_whitespace() {
                    let parsed = LicenseRef::parse(item, &format!("account tag {key}"))?;
                    if !refs.contains(&Selected::Ref(parsed.clone())) {
                        refs.push(Selected::Ref(parsed));
                    }
                }
            }
        }
        Ok(refs)
    }

    async fn org_info(&self, calls: &CallLog) -> Result<OrgInfo, Error> {
        self.org
            .get_or_try_init(|| aws::describe_organization(&self.clients.organizations, calls))
            .await
            .cloned()
    }

    async fn held_licenses(&self, calls: &CallLog) -> Result<Arc<Vec<HeldLicense>>, Error> {
        let mut cache = self.held.lock().await;
        if let Some((at, held)) = cache.as_ref() {
            if at.elapsed() < HELD_LICENSES_TTL {
                return Ok(held.clone());
            }
        }
        let held = Arc::new(aws::marketplace_licenses(&self.clients.license_manager, calls).await?);
        *cache = Some((Instant::now(), held.clone()));
        Ok(held)
    }

    async fn ensure_slrs(
        &self,
        member: &MemberClients,
        calls: &CallLog,
    ) -> Result<Vec<SlrReport>, Error> {
        let paths = aws::service_role_paths(&member.iam, calls).await?;
        let mut out = Vec::new();
        for service in aws::MEMBER_SLR_SERVICES {
            let path = format!("/aws-service-role/{service}/");
            let action = if paths.contains(&path) {
                "existed"
            } else if self.config.dry_run {
                "wouldCreate"
            } else if aws::create_slr(&member.iam, service, calls).await? {
                "created"
            } else {
                "existed"
            };
            out.push(SlrReport {
                service: service.to_string(),
                action: action.to_string(),
            });
        }
        Ok(out)
    }

    async fn ensure_license(
        &self,
        target: &Target<'_>,
        license: &HeldLicense,
        calls: &CallLog,
    ) -> LicenseRun {
        let mut report = LicenseReport {
            license_arn: license.arn.clone(),
            product_sku: license.sku.clone(),
            product_name: license.product_name.clone().or(license.name.clone()),
            ..LicenseReport::default()
        };
        match self.drive_grant(target, license, calls, &mut report).await {
            Ok(pending) => LicenseRun { report, pending },
            Err(e) => {
                report.error = Some(ErrorReport::from(&e));
                LicenseRun {
                    report,
                    pending: false,
                }
            }
        }
    }

    /// Finds or creates the account's grant and moves it as far toward ACTIVE as it goes now.
    /// Returns true when only time can move it further (re-check later).
    async fn drive_grant(
        &self,
        target: &Target<'_>,
        license: &HeldLicense,
        calls: &CallLog,
        report: &mut LicenseReport,
    ) -> Result<bool, Error> {
        let Target {
            account,
            org,
            ou_id,
            member,
            behavior,
        } = *target;
        let principal = account.root_principal();
        let received = aws::received_grants(&member.license_manager, &license.arn, calls).await?;
        // The org or OU grant itself may be visible to members; only this account's own grant
        // (direct, or a child of an org/OU grant) counts.
        let own: Vec<GrantView> = received
            .into_iter()
            .filter(|g| g.grantee == principal || g.parent_arn.contains(":grant:"))
            .filter(|g| g.status != status::WORKFLOW_COMPLETED)
            .collect();
        let mut grant = match best_live(&own) {
            Some(g) => {
                report.grant_source = Some(source_of(g));
                g.clone()
            }
            None => {
                let direct = aws::distributed_grants(
                    &self.clients.license_manager,
                    &license.arn,
                    &principal,
                    calls,
                )
                .await?;
                if let Some(g) = best_live(&direct) {
                    report.grant_source = Some("account".into());
                    g.clone()
                } else {
                    // An org or OU grant still distributing will give this account a child grant.
                    let mut principals = vec![org.arn.clone()];
                    principals.extend(ou_id.map(|ou| org.ou_arn(ou)));
                    for parent_principal in principals {
                        let parents = aws::distributed_grants(
                            &self.clients.license_manager,
                            &license.arn,
                            &parent_principal,
                            calls,
                        )
                        .await?;
                        if let Some(parent) = parents.iter().find(|g| {
                            is_in_workflow(&g.status) && g.status != status::WORKFLOW_COMPLETED
                        }) {
                            report.grant_arn = Some(parent.arn.clone());
                            report.grant_source = Some("organization".into());
                            report.status_before = Some(parent.status.clone());
                            report.status_after = Some(parent.status.clone());
                            return Ok(!self.config.dry_run);
                        }
                    }
                    let generation = direct.iter().filter(|g| is_terminal(&g.status)).count();
                    report.grant_source = Some("account".into());
                    if self.config.dry_run {
                        report.actions = vec!["CreateGrant".into(), "ActivateGrant".into()];
                        return Ok(false);
                    }
                    let created = self
                        .create_grant(account, license, &principal, generation, calls)
                        .await?;
                    report.actions.push("CreateGrant".into());
                    report.grant_arn = Some(created.arn.clone());
                    report.status_after = Some(created.status.clone());
                    created
                }
            }
        };
        if report.status_before.is_none() && report.actions.is_empty() {
            report.status_before = Some(grant.status.clone());
        }
        report.grant_arn = Some(grant.arn.clone());

        // At most accept then activate; anything else waits for the workflow.
        for _ in 0..3 {
            report.status_after = Some(grant.status.clone());
            match grant.status.as_str() {
                status::ACTIVE => return Ok(false),
                status::PENDING_ACCEPT if self.config.dry_run => {
                    report
                        .actions
                        .extend(["AcceptGrant".into(), "ActivateGrant".into()]);
                    return Ok(false);
                }
                status::PENDING_ACCEPT => {
                    let (s, v) =
                        aws::accept_grant(&member.license_manager, &grant.arn, calls).await?;
                    report.actions.push("AcceptGrant".into());
                    grant.status = if s.is_empty() {
                        status::DISABLED.into()
                    } else {
                        s
                    };
                    if !v.is_empty() {
                        grant.version = v;
                    }
                }
                status::DISABLED if self.config.dry_run => {
                    report.actions.push("ActivateGrant".into());
                    return Ok(false);
                }
                status::DISABLED => {
                    let token = activation_client_token(&grant.arn, &grant.version);
                    let (s, v) = aws::activate_grant(
                        &member.license_manager,
                        &grant.arn,
                        &grant.version,
                        &token,
                        behavior.as_str(),
                        calls,
                    )
                    .await?;
                    report.actions.push("ActivateGrant".into());
                    grant.status = s;
                    if !v.is_empty() {
                        grant.version = v;
                    }
                    if grant.status == status::DISABLED {
                        // Activation accepted but not applied yet: the workflow will finish it.
                        report.status_after = Some(grant.status.clone());
                        return Ok(!self.config.dry_run);
                    }
                }
                s if is_in_workflow(s) => return Ok(!self.config.dry_run),
                s => {
                    return Err(Error::GrantFailed {
                        grant_arn: grant.arn.clone(),
                        status: s.to_string(),
                        reason: grant.status_reason.clone().unwrap_or_else(|| {
                            "License Manager gave no reason; see the grant in the console".into()
                        }),
                    })
                }
            }
        }
        report.status_after = Some(grant.status.clone());
        Ok(grant.status != status::ACTIVE && !self.config.dry_run)
    }

    /// CreateGrant with the deterministic token. If the token names a grant that has since been
    /// rejected or deleted, the next generation is tried.
    async fn create_grant(
        &self,
        account: &AccountId,
        license: &HeldLicense,
        principal: &str,
        mut generation: usize,
        calls: &CallLog,
    ) -> Result<GrantView, Error> {
        let name = format!("{}-{account}", self.config.grant_name_prefix);
        for _ in 0..3 {
            let token = grant_client_token(account, &license.arn, generation);
            let created = aws::create_grant(
                &self.clients.license_manager,
                &NewGrant {
                    client_token: &token,
                    name: &name,
                    license_arn: &license.arn,
                    principal,
                    home_region: &self.config.license_home_region,
                    allowed_operations: &self.config.allowed_operations,
                },
                calls,
            )
            .await?;
            if created.status == status::PENDING_WORKFLOW {
                // One look (no waiting): short workflows are done by now, and the grant then
                // moves on in this same invocation; otherwise the re-check picks it up.
                return aws::get_grant(&self.clients.license_manager, &created.arn, calls).await;
            }
            if !is_terminal(&created.status) {
                return Ok(created);
            }
            generation += 1;
        }
        Err(Error::GrantFailed {
            grant_arn: String::new(),
            status: "REJECTED".into(),
            reason: "three consecutive client tokens returned terminal grants".into(),
        })
    }

    /// Queues a delayed re-check, or gives up past the deadline.
    async fn schedule_recheck(
        &self,
        work: &Work,
        calls: &CallLog,
        report: &mut AccountReport,
    ) -> Result<(), Error> {
        let now = (self.now)()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let first_seen = work.first_seen.unwrap_or(now);
        let deadline = self.config.workflow_deadline.as_secs();
        if now.saturating_sub(first_seen) >= deadline {
            for license in report.licenses.iter_mut().filter(|l| l.error.is_none()) {
                if license.status_after.as_deref() != Some(status::ACTIVE) {
                    let err = Error::WorkflowDeadline {
                        grant_arn: license.grant_arn.clone().unwrap_or_default(),
                        status: license.status_after.clone().unwrap_or_default(),
                        deadline_secs: deadline,
                    };
                    license.error = Some(ErrorReport::from(&err));
                }
            }
            return Ok(());
        }
        let Some(queue_url) = &self.config.onboarding_queue_url else {
            return Err(Error::Config(
                "a grant is still in workflow and ONBOARDING_QUEUE_URL is not set, so no re-check can be queued".into(),
            ));
        };
        let body = OnboardRequest {
            account_id: work.account_id.to_string(),
            reason: Some("recheck".into()),
            attempt: work.attempt + 1,
            first_seen: Some(first_seen),
        };
        let body = serde_json::to_string(&body).map_err(|e| Error::InvalidInput(e.to_string()))?;
        aws::send_recheck(
            &self.clients.sqs,
            queue_url,
            &body,
            self.config.recheck_delay,
            calls,
        )
        .await?;
        report.recheck_in_seconds = Some(self.config.recheck_delay.as_secs());
        Ok(())
    }
}

/// One selected entry: a configured reference, or "all Marketplace licenses".
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selected {
    All,
    Ref(LicenseRef),
}

impl std::fmt::Display for Selected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selected::All => f.write_str("ALL_MARKETPLACE_LICENSES"),
            Selected::Ref(r) => r.fmt(f),
        }
    }
}

/// Matches the selection against held licenses: (licenses, selections that matched nothing).
fn resolve<'a>(
    refs: &'a [Selected],
    held: &[HeldLicense],
) -> (Vec<HeldLicense>, Vec<&'a Selected>) {
    let mut out: Vec<HeldLicense> = Vec::new();
    let mut unmatched = Vec::new();
    for r in refs {
        let matches: Vec<&HeldLicense> = held
            .iter()
            .filter(|l| match r {
                Selected::All => true,
                Selected::Ref(LicenseRef::Arn(arn)) => &l.arn == arn,
                Selected::Ref(LicenseRef::Sku(sku)) => l.sku.as_deref() == Some(sku.as_str()),
            })
            .collect();
        if matches.is_empty() && *r != Selected::All {
            unmatched.push(r);
        }
        for l in matches {
            if !out.iter().any(|o| o.arn == l.arn) {
                out.push(l.clone());
            }
        }
    }
    (out, unmatched)
}

fn source_of(g: &GrantView) -> String {
    if g.parent_arn.contains(":grant:") {
        "organization".into()
    } else {
        "account".into()
    }
}

fn trigger_name(t: &Trigger) -> String {
    match t {
        Trigger::CreateManagedAccount => "CreateManagedAccount".into(),
        Trigger::UpdateManagedAccount => "UpdateManagedAccount".into(),
        Trigger::Onboard(reason) => format!("onboard:{reason}"),
    }
}

fn empty_report(account_id: Option<String>, trigger: String, dry_run: bool) -> AccountReport {
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
        error: None,
    }
}

/// Adds the calls made and the time taken.
fn finish(mut report: AccountReport, calls: &CallLog, started: Instant) -> AccountReport {
    let snapshot = calls.snapshot();
    report.api_calls = snapshot.own;
    report.member_api_calls = snapshot.member;
    report.write_calls = snapshot.writes;
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

fn outcome(r: &AccountReport) -> Outcome {
    if r.deciding_error().is_some() {
        Outcome::Failed
    } else if r.outcome == Outcome::Skipped {
        Outcome::Skipped
    } else if r.dry_run {
        Outcome::Planned
    } else if r
        .licenses
        .iter()
        .any(|l| l.status_after.as_deref() != Some(status::ACTIVE))
    {
        Outcome::Pending
    } else {
        Outcome::Entitled
    }
}
