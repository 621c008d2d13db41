//! The "ensure this account is entitled" engine: validate → organization → assume role →
//! service-linked roles → per license (concurrently, bounded) observe the account's grants,
//! `decide::decide` the next step, execute it, observe again → report. Grants still in workflow
//! are re-checked later through the onboarding queue, never waited for in a sleep loop.

use crate::aws::{self, GrantView, HeldLicense, NewGrant, OrgInfo};
use crate::clients::{Clients, MemberClients};
use crate::config::{Config, LicenseRef, Mode, OverrideBehavior, Selection};
use crate::decide::{self, Failure, Next, Observation, Source, WaitReason};
pub use crate::decide::{is_terminal, status};
use crate::error::Error;
use crate::event::{ActivationMark, OnboardRequest, Request, Trigger, Work};
use crate::ids::AccountId;
use crate::limiter::RateLimiter;
use crate::report::{AccountReport, CallLog, ErrorReport, LicenseReport, Outcome, SlrReport};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Mutex, OnceCell};

/// How long the list of held licenses, and the organization/OU grants, are reused across
/// accounts of one container.
const HELD_LICENSES_TTL: Duration = Duration::from_secs(60);

/// Decide/execute rounds per license and invocation (create, accept, activate, look: four).
const MAX_STEPS: usize = 8;

/// Activations remembered by one container (beyond it, re-check messages carry them).
const MAX_REMEMBERED_ACTIVATIONS: usize = 10_000;

/// The deepest OU nesting Organizations allows is 5 levels; guard the ancestor walk with it.
const MAX_OU_DEPTH: usize = 5;

/// The report's `grantSource` for a grant of ct-entitlements' own to an account whose license
/// is distributed to the organization or OUs (a stop-gap until the account-level grant under
/// the parent works: an older per-account grant during a migration, or a repair).
pub const REPAIR_SOURCE: &str = "repair";

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

/// A value and when it was read.
type Timed<T> = (Instant, T);

/// The engine: configuration and clients, built once at init and shared by every invocation.
pub struct Engine {
    config: Config,
    clients: Clients,
    org: OnceCell<OrgInfo>,
    held: Mutex<Option<(Instant, Arc<Vec<HeldLicense>>)>>,
    /// Grants to organization/OU principals, by principal (all licenses), with when read.
    principal_grants: Mutex<HashMap<String, Timed<Arc<Vec<GrantView>>>>>,
    /// OU → its parent OU (`None`: the root), read once per container.
    ou_parents: Mutex<HashMap<String, Option<String>>>,
    /// Activations this container requested, by grant ARN.
    activations: std::sync::Mutex<HashMap<String, ActivationMark>>,
    /// License Manager calls per operation and second, for every account of the container.
    limiter: RateLimiter,
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
struct Target<'a> {
    account: &'a AccountId,
    principal: String,
    member: &'a MemberClients,
    behavior: OverrideBehavior,
    own_grant_name: String,
    held: &'a [HeldLicense],
    /// Every grant seen for the account (all licenses), to name a conflicting one.
    seen: &'a [GrantView],
    activations: Vec<ActivationMark>,
    /// Delayed re-checks before this run.
    attempt: u32,
    /// The principals whose grants promise the account a child: the organization, and the
    /// account's own OU (not the OUs above it).
    promising: Vec<String>,
}

/// What happened to one license, beyond its report.
struct LicenseRun {
    report: LicenseReport,
    pending: bool,
    marks: Vec<ActivationMark>,
}

impl Engine {
    pub fn new(config: Config, clients: Clients) -> Self {
        let limiter = RateLimiter::new(config.license_manager_calls_per_second);
        Engine {
            config,
            clients,
            org: OnceCell::new(),
            held: Mutex::new(None),
            principal_grants: Mutex::new(HashMap::new()),
            ou_parents: Mutex::new(HashMap::new()),
            activations: std::sync::Mutex::new(HashMap::new()),
            limiter,
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

    /// [`Engine::held_marketplace_licenses`], its calls recorded in `calls`.
    pub async fn held_licenses_logged(
        &self,
        calls: &CallLog,
    ) -> Result<Arc<Vec<HeldLicense>>, Error> {
        self.held_licenses(calls).await
    }

    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// The container's License Manager rate limiter (`LICENSE_MANAGER_CALLS_PER_SECOND`).
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
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
                r.first_seen = work.first_seen;
                // Boxed: the whole onboarding future is deep; keep it off the caller's stack type.
                let mut result = Box::pin(self.onboard(work, &calls, &mut r)).await;
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
                        result = Box::pin(self.onboard(&fresh, &calls, &mut r)).await;
                    }
                }
                match result {
                    Ok(marks) => r.activations_requested = marks,
                    Err(e) => r.error = Some(ErrorReport::from(&e)),
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
    ) -> Result<Vec<ActivationMark>, Error> {
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
            return Ok(Vec::new());
        }
        if self.config.self_account_id.as_ref() == Some(account) {
            report.reason = Some(
                "this is the account ct-entitlements runs in; it holds the licenses and is never granted to"
                    .into(),
            );
            report.outcome = Outcome::Skipped;
            return Ok(Vec::new());
        }
        match member.state.as_str() {
            "ACTIVE" => {}
            "SUSPENDED" | "PENDING_CLOSURE" | "CLOSED" => {
                return Err(Error::NotInOrganization {
                    account: account.to_string(),
                    reason: format!("its state is {}", member.state),
                })
            }
            // PENDING_ACTIVATION and states newer than this code: the account is on its way.
            other => {
                return Err(Error::AccountNotReady {
                    account: account.to_string(),
                    state: other.to_string(),
                })
            }
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
                    return Ok(Vec::new());
                }
                self.selection_for(&member.ou_id, &member.tags)?
            }
        };
        let behavior = work
            .explicit
            .as_ref()
            .and_then(|e| e.override_behavior)
            .unwrap_or(self.config.override_behavior);
        let (mut licenses, unmatched) = resolve(&refs, &held);
        if work.explicit.is_none() {
            let ancestors = self.inherited_from(&member.ou_id, calls).await?;
            for l in self.inherited(&ancestors, &held) {
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
            return Ok(Vec::new());
        }

        let principal = account.root_principal(&self.config.partition);
        let role_arn = account.role_arn(&self.config.partition, &self.config.execution_role_name);
        // Member side (assume role, then roles and received grants) and management side (the
        // account's grants, the covering grants) at once.
        let member_side = async {
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
            Ok::<_, Error>((member_clients, slrs, received))
        };
        // The principals whose grants cover the account: the organization and every OU above
        // it (the organization's are read while the OUs above are walked).
        let covering_side = async {
            let (org_grants, ancestors) = futures::try_join!(
                self.covering_grants(std::slice::from_ref(&org.arn), calls),
                self.ancestor_ous(member.ou_id.as_deref(), calls),
            )?;
            let ous: Vec<String> = ancestors.iter().map(|ou| org.ou_arn(ou)).collect();
            let mut grants = org_grants;
            grants.extend(self.covering_grants(&ous, calls).await?);
            let mut covering = vec![org.arn.clone()];
            covering.extend(ous);
            Ok::<_, Error>((covering, grants))
        };
        let management_side = async {
            futures::try_join!(
                aws::grants_to_principal(&self.clients.license_manager, &principal, calls),
                covering_side,
            )
        };
        let ((member_clients, slrs, received), (direct, (covering, parent_grants))) =
            futures::try_join!(member_side, management_side)?;
        report.service_linked_roles = slrs;

        // Everything seen about the account, each grant once (the member's view first).
        let mut seen: Vec<GrantView> = Vec::new();
        for g in received.into_iter().chain(direct) {
            if !seen.iter().any(|s| s.arn == g.arn) {
                seen.push(g);
            }
        }
        let mut parents: Vec<GrantView> = parent_grants;
        for g in seen.iter().filter(|g| covering.contains(&g.grantee)) {
            if !parents.iter().any(|p| p.arn == g.arn) {
                parents.push(g.clone());
            }
        }
        let mut activations = work.activations.clone();
        if let Ok(recent) = self.activations.lock() {
            for mark in recent.values() {
                if !activations.iter().any(|m| m.grant_arn == mark.grant_arn) {
                    activations.push(mark.clone());
                }
            }
        }
        let target = Target {
            account,
            principal: principal.clone(),
            member: &member_clients,
            behavior,
            own_grant_name: self.own_grant_name(account),
            held: &held,
            seen: &seen,
            activations,
            attempt: work.attempt,
            promising: covering.iter().take(2).cloned().collect(),
        };
        let runs: Vec<LicenseRun> = futures::stream::iter(licenses.iter())
            .map(|license| {
                let own: Vec<GrantView> = seen
                    .iter()
                    .filter(|g| g.license_arn == license.arn && g.grantee == principal)
                    .cloned()
                    .collect();
                let parents: Vec<GrantView> = parents
                    .iter()
                    .filter(|g| g.license_arn == license.arn)
                    .cloned()
                    .collect();
                self.ensure_license(&target, license, own, parents, calls)
            })
            .buffered(self.config.max_concurrent_licenses)
            .collect()
            .await;
        let pending = runs.iter().any(|r| r.pending);
        let mut marks: Vec<ActivationMark> = Vec::new();
        for run in runs {
            for mark in run.marks {
                put_mark(&mut marks, mark);
            }
            report.licenses.push(run.report);
        }
        self.remember(&marks);

        let queue_recheck = work.explicit.as_ref().is_none_or(|e| e.queue_recheck)
            && !matches!(&work.trigger, Trigger::Onboard(r) if r == crate::event::GRANT_CHANGE_REASON);
        if pending && queue_recheck {
            let mut carried = work.activations.clone();
            for mark in &marks {
                put_mark(&mut carried, mark.clone());
            }
            self.schedule_recheck(work, &carried, calls, report).await?;
        }
        Ok(marks)
    }

    /// `<prefix>-<account id>`: the name of the grants ct-entitlements makes.
    fn own_grant_name(&self, account: &AccountId) -> String {
        format!("{}-{account}", self.config.grant_name_prefix)
    }

    fn remember(&self, marks: &[ActivationMark]) {
        if marks.is_empty() {
            return;
        }
        if let Ok(mut recent) = self.activations.lock() {
            if recent.len() + marks.len() > MAX_REMEMBERED_ACTIVATIONS {
                recent.clear();
            }
            for mark in marks {
                recent.insert(mark.grant_arn.clone(), mark.clone());
            }
        }
    }

    /// The OU ids above an account, nearest first (its own OU, then that OU's parents up to
    /// the root). Each OU's parent is read once per container.
    async fn ancestor_ous(&self, ou: Option<&str>, calls: &CallLog) -> Result<Vec<String>, Error> {
        let mut out: Vec<String> = Vec::new();
        let mut next = ou.map(str::to_string);
        while let Some(current) = next {
            if out.contains(&current) || out.len() > MAX_OU_DEPTH {
                break;
            }
            out.push(current.clone());
            let cached = self.ou_parents.lock().await.get(&current).cloned();
            next = match cached {
                Some(parent) => parent,
                None => {
                    let parent =
                        aws::parent_ou(&self.clients.organizations, &current, calls).await?;
                    self.ou_parents
                        .lock()
                        .await
                        .insert(current.clone(), parent.clone());
                    parent
                }
            };
        }
        Ok(out)
    }

    /// Grants the management account distributed to these organization/OU principals (every
    /// license), from a short-lived per-container cache.
    async fn covering_grants(
        &self,
        principals: &[String],
        calls: &CallLog,
    ) -> Result<Vec<GrantView>, Error> {
        self.read_covering(principals, false, calls).await
    }

    /// The grants to `principals`, from the cache unless `fresh`; what is read is cached.
    async fn read_covering(
        &self,
        principals: &[String],
        fresh: bool,
        calls: &CallLog,
    ) -> Result<Vec<GrantView>, Error> {
        let reads = principals.iter().map(|principal| async move {
            let cached = self
                .principal_grants
                .lock()
                .await
                .get(principal)
                .filter(|(at, _)| !fresh && at.elapsed() < HELD_LICENSES_TTL)
                .map(|(_, grants)| grants.clone());
            if let Some(grants) = cached {
                return Ok::<_, Error>(grants);
            }
            let grants = Arc::new(
                aws::grants_to_principal(&self.clients.license_manager, principal, calls).await?,
            );
            self.principal_grants
                .lock()
                .await
                .insert(principal.clone(), (Instant::now(), grants.clone()));
            Ok(grants)
        });
        let lists = futures::future::try_join_all(reads).await?;
        Ok(lists.iter().flat_map(|l| l.iter().cloned()).collect())
    }

    /// [`Engine::covering_grants`], read now (the cache refreshed with what was read).
    async fn covering_grants_fresh(
        &self,
        principals: &[String],
        calls: &CallLog,
    ) -> Result<Vec<GrantView>, Error> {
        self.read_covering(principals, true, calls).await
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

    /// Whether any setting selects accounts or licenses by account tag.
    pub fn reads_tags(&self) -> bool {
        self.config.account_tag_filter.is_some() || self.config.licenses_tag_key.is_some()
    }

    /// What the configured selection asks for `account` (a product launch asking for a
    /// license is bounded by it): its OU (ListParents) and, when a rule reads them, its tags.
    pub async fn selection_of(&self, account: &AccountId) -> Result<Wanted, Error> {
        let calls = CallLog::default();
        let hints = aws::MemberHints {
            ou_id: None,
            skip_tags: !self.reads_tags(),
        };
        let (member, held) = futures::try_join!(
            aws::describe_member(&self.clients.organizations, account, hints, &calls),
            self.held_licenses(&calls),
        )?;
        let ancestors = self.inherited_from(&member.ou_id, &calls).await?;
        Ok(self.wanted(&member.ou_id, &ancestors, &member.tags, &held))
    }

    /// Whether an account in a nested OU can inherit licenses from the OU rules above it: some
    /// license is distributed in `ou` mode. Its OU grant reaches the nested OUs' accounts under
    /// one reading of AWS's guide (undocumented: `ouGrantsReachNestedOus`), so they are selected
    /// for it under every reading (a repair grants it where the OU grant does not reach).
    pub fn inherits_ou_rules(&self) -> bool {
        !self.config.ou_rules.is_empty()
            && self.config.distribution.values().any(|m| *m == Mode::Ou)
    }

    /// The OUs above `ou` (its parents up to the root, nearest first; not `ou` itself) whose
    /// `ou`-mode licenses an account in `ou` inherits; none (and no call) when nothing can be
    /// inherited. Each OU's parent is read once per container.
    pub async fn inherited_from(
        &self,
        ou: &Option<String>,
        calls: &CallLog,
    ) -> Result<Vec<String>, Error> {
        if !self.inherits_ou_rules() {
            return Ok(Vec::new());
        }
        let mut chain = self.ancestor_ous(ou.as_deref(), calls).await?;
        if !chain.is_empty() {
            chain.remove(0);
        }
        Ok(chain)
    }

    /// The `ou`-mode licenses the OU rules of `ancestors` name (an account in a nested OU holds
    /// them as the accounts directly in those OUs do).
    fn inherited(&self, ancestors: &[String], held: &[HeldLicense]) -> Vec<HeldLicense> {
        let mut out: Vec<HeldLicense> = Vec::new();
        for ou in ancestors {
            let Some(rule) = self.config.ou_rules.get(ou) else {
                continue;
            };
            let refs: Vec<Selected> = rule.iter().cloned().map(Selected::Ref).collect();
            let (licenses, _) = resolve(&refs, held);
            for l in licenses {
                let mode = self
                    .config
                    .mode_of(&l.arn, l.sku.as_deref().unwrap_or_default());
                if mode == Mode::Ou && !out.iter().any(|o| o.arn == l.arn) {
                    out.push(l);
                }
            }
        }
        out
    }

    /// What the configured selection asks for an account in `ou_id` with `tags`, resolved
    /// against the held licenses: the same rules an account's own run applies.
    /// `ancestors`: the OUs above the account's ([`Engine::inherited_from`]).
    pub fn wanted(
        &self,
        ou_id: &Option<String>,
        ancestors: &[String],
        tags: &[(String, String)],
        held: &[HeldLicense],
    ) -> Wanted {
        if let Some(reason) = self.excluded(ou_id, tags) {
            return Wanted::Skip(reason);
        }
        match self.selection_for(ou_id, tags) {
            Err(e) => Wanted::Unknown(e.to_string()),
            Ok(refs) => {
                let (mut licenses, unmatched) = resolve(&refs, held);
                for l in self.inherited(ancestors, held) {
                    if !licenses.iter().any(|o| o.arn == l.arn) {
                        licenses.push(l);
                    }
                }
                Wanted::Licenses {
                    arns: licenses.into_iter().map(|l| l.arn).collect(),
                    unmatched: unmatched.iter().map(ToString::to_string).collect(),
                }
            }
        }
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

    async fn ensure_license(
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
            .is_some_and(|m| m != Mode::Account.as_str())
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
        mut own: Vec<GrantView>,
        mut parents: Vec<GrantView>,
        marks: &mut Vec<ActivationMark>,
        calls: &CallLog,
        report: &mut LicenseReport,
    ) -> Result<bool, Error> {
        let lm = &self.clients.license_manager;
        let member_lm = &target.member.license_manager;
        let mut org_side_read = false;
        // The covering grants come from a short-lived per-container cache; before a write that
        // depends on them (an activation, a takeover, a repair, clearing a child) they are read
        // again, once: an operator's bulk deactivation a moment ago must not be undone.
        let mut parents_fresh = parents.is_empty();
        let mut replaced = false;
        let mut first = true;
        let mode = self
            .config
            .mode_of(&license.arn, license.sku.as_deref().unwrap_or_default());
        report.mode = Some(mode.as_str().to_string());
        for _ in 0..MAX_STEPS {
            let mut activations = target.activations.clone();
            for mark in marks.iter() {
                put_mark(&mut activations, mark.clone());
            }
            let next = decide::decide(&Observation {
                license_arn: &license.arn,
                own: &own,
                parents: &parents,
                activations: &activations,
                own_grant_name: &target.own_grant_name,
                org_side_read,
                replaced_this_run: replaced,
                attempt: target.attempt,
                retiring: mode == Mode::Account
                    && parents.iter().any(|p| {
                        !is_terminal(&p.status)
                            && p.name
                                == crate::distribution::parent_grant_name(
                                    &self.config.grant_name_prefix,
                                    &p.grantee,
                                )
                    }),
                child_promised: parents
                    .iter()
                    .any(|p| target.promising.contains(&p.grantee)),
                mode,
            });
            if first && !matches!(next, Next::FindChild { .. }) {
                first = false;
                report.status_before = match &next {
                    Next::Done { grant, .. }
                    | Next::Accept { grant, .. }
                    | Next::Activate { grant, .. } => Some(grant.status.clone()),
                    Next::Wait { grant, source, .. } if *source == Source::Account => {
                        Some(grant.status.clone())
                    }
                    Next::Wait { grant, .. } if grant.grantee == target.principal => {
                        Some(grant.status.clone())
                    }
                    Next::Replace { failed, .. } | Next::DeleteChild { failed } => {
                        Some(failed.status.clone())
                    }
                    Next::Retire { grant }
                    | Next::TakeOver {
                        replaces: grant, ..
                    } => Some(grant.status.clone()),
                    Next::Fail(Failure::ActiveLicenseConflict { grant, .. })
                    | Next::Fail(Failure::ChildFailed { grant }) => Some(grant.status.clone()),
                    _ => None,
                };
            }
            let depends_on_parents = matches!(
                next,
                Next::Activate {
                    source: Source::Organization,
                    ..
                } | Next::TakeOver { .. }
                    | Next::Create { .. }
                    | Next::DeleteChild { .. }
            );
            if depends_on_parents && !parents_fresh && !self.config.dry_run {
                parents_fresh = true;
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
                continue;
            }
            match next {
                Next::Done { grant, source } => {
                    note(report, &grant, source);
                    return Ok(false);
                }
                Next::Wait {
                    grant,
                    source,
                    reason,
                } => {
                    note(report, &grant, source);
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
                    return Ok(!self.config.dry_run);
                }
                Next::Fail(Failure::OperatorDeactivated { grant, parent }) => {
                    note(report, &grant, Source::Organization);
                    report.held_back = Some(format!(
                        "organization/OU grant {} was changed by someone other than ct-entitlements ({}): its account-level grants were deactivated in bulk, and ct-entitlements does not activate them account by account; bulk-activate that grant again to resume",
                        parent.arn,
                        parent.status_reason.as_deref().unwrap_or("no reason given"),
                    ));
                    return Ok(false);
                }
                Next::Fail(failure) => {
                    return Err(self.failure(failure, target, license, report));
                }
                Next::AwaitParent => {
                    report.grant_source = Some(Source::Organization.as_str().into());
                    report.pending_reason = Some(WaitReason::ParentNotYet.as_str().to_string());
                    return Ok(!self.config.dry_run);
                }
                Next::FindChild { parent } => {
                    note(report, &parent, Source::Organization);
                    self.limiter
                        .acquire("ListReceivedGrantsForOrganization")
                        .await;
                    let found = match aws::organization_received_grants(
                        lm,
                        &license.arn,
                        &target.principal,
                        calls,
                    )
                    .await
                    {
                        Ok(found) => found,
                        // Documented for the management account only: a delegated
                        // administrator may be refused; the member side was read already.
                        Err(Error::Aws { code, .. }) if code.starts_with("AccessDenied") => {
                            Vec::new()
                        }
                        Err(e) => return Err(e),
                    };
                    for g in found {
                        if g.grantee == target.principal && !own.iter().any(|o| o.arn == g.arn) {
                            own.push(g);
                        }
                    }
                    org_side_read = true;
                }
                planned if self.config.dry_run => {
                    match &planned {
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
                    return Ok(false);
                }
                Next::Accept { grant, source } => {
                    note(report, &grant, source);
                    self.limiter.acquire("AcceptGrant").await;
                    let (s, v) = aws::accept_grant(member_lm, &grant.arn, calls).await?;
                    report.actions.push("AcceptGrant".into());
                    let s = if s.is_empty() {
                        status::DISABLED.to_string()
                    } else {
                        s
                    };
                    update(&mut own, &grant.arn, s, v, None);
                }
                Next::Activate { grant, source } => {
                    note(report, &grant, source);
                    let how = decide::activate_as(&grant, source, target.behavior.as_str(), false);
                    self.activate(target, &grant, how, None, marks, &mut own, calls)
                        .await?;
                    report.actions.push("ActivateGrant".into());
                }
                Next::Create { generation } => {
                    let created = self
                        .create_grant(target, license, generation, calls, report)
                        .await?;
                    replace(&mut own, created);
                }
                Next::TakeOver { grant, replaces } => {
                    // The child taking over from our grant (a switch to organization/OU
                    // mode), or our grant from the child (a switch back).
                    let source = if grant.name == target.own_grant_name {
                        Source::Account
                    } else {
                        Source::Organization
                    };
                    note(report, &grant, source);
                    let how = decide::activate_as(&grant, source, target.behavior.as_str(), true);
                    let replaces = Some(&replaces);
                    self.activate(target, &grant, how, replaces, marks, &mut own, calls)
                        .await?;
                    report
                        .actions
                        .push("ActivateGrant(ALL_GRANTS_PERMITTED_BY_ISSUER)".into());
                }
                Next::Retire { grant } => {
                    note(report, &grant, Source::Account);
                    let reason = "ct-entitlements: replaced by the account's grant under an organization/OU grant (LICENSE_DISTRIBUTION)";
                    self.delete_grant(&mut own, &grant, reason, calls, report)
                        .await?;
                }
                Next::DeleteChild { failed } => {
                    note(report, &failed, Source::Organization);
                    let reason = "ct-entitlements: the account's roles are in place; clearing a failed account-level grant";
                    self.delete_grant(&mut own, &failed, reason, calls, report)
                        .await?;
                    replaced = true;
                }
                Next::Replace { failed, generation } => {
                    note(report, &failed, Source::Account);
                    let reason = "ct-entitlements: replacing a grant whose workflow failed";
                    self.delete_grant(&mut own, &failed, reason, calls, report)
                        .await?;
                    replaced = true;
                    let created = self
                        .create_grant(target, license, generation, calls, report)
                        .await?;
                    replace(&mut own, created);
                }
            }
        }
        // Out of steps: whatever is left is looked at again later.
        Ok(!self.config.dry_run)
    }

    /// CreateGrantVersion Status=ACTIVE (as the member), remembered in `marks`; then one look
    /// (no waiting) at what it changed: the grant it `replaces` (a new version), and the grant
    /// itself when the activation did not answer ACTIVE (activation is asynchronous).
    #[allow(clippy::too_many_arguments)]
    async fn activate(
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
    async fn delete_grant(
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

    /// A decision's failure as the classified error of this license.
    fn failure(
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
                let other = conflicting_grant(target, license);
                Error::ActiveLicenseConflict(match other {
                    Some(other) => format!(
                        "grant {} stays DISABLED: {reason} (the account's active grant {} for license {})",
                        grant.arn, other.arn, other.license_arn
                    ),
                    None => format!("grant {} stays DISABLED: {reason}", grant.arn),
                })
            }
            Failure::ChildFailed { grant } => {
                note(report, &grant, Source::Organization);
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
                Error::GrantFailed {
                    grant_arn: parent.arn.clone(),
                    status: parent.status.clone(),
                    reason: format!(
                        "the organization/OU grant covering this account failed ({}); no per-account grant is made beside it",
                        parent.status_reason.as_deref().unwrap_or("no reason given"),
                    ),
                }
            }
            Failure::TooManyGenerations { grant, count } => {
                if let Some(g) = &grant {
                    note(report, g, Source::Account);
                }
                Error::GrantFailed {
                    grant_arn: grant.as_ref().map(|g| g.arn.clone()).unwrap_or_else(|| {
                        format!("(none: {} for account {})", license.arn, target.account)
                    }),
                    status: grant
                        .as_ref()
                        .map(|g| g.status.clone())
                        .unwrap_or_else(|| status::DELETED.to_string()),
                    reason: format!(
                        "{count} grants were made for this account and license already (limit {}); look at why they failed or were rejected, then delete them by hand to start over",
                        decide::MAX_GRANT_GENERATIONS
                    ),
                }
            }
        }
    }

    /// CreateGrant with the deterministic token of `generation` and the operations the
    /// management account may pass on; one GetGrant look when it answers PENDING_WORKFLOW.
    async fn create_grant(
        &self,
        target: &Target<'_>,
        license: &HeldLicense,
        generation: usize,
        calls: &CallLog,
        report: &mut LicenseReport,
    ) -> Result<GrantView, Error> {
        let operations = grant_operations(&self.config.allowed_operations, license)?;
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

    /// Queues a delayed re-check, or gives up past the deadline.
    async fn schedule_recheck(
        &self,
        work: &Work,
        activations: &[ActivationMark],
        calls: &CallLog,
        report: &mut AccountReport,
    ) -> Result<(), Error> {
        let now = (self.now)()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let first_seen = work.first_seen.unwrap_or(now);
        report.first_seen = Some(first_seen);
        let deadline = self.config.workflow_deadline.as_secs();
        if now.saturating_sub(first_seen) >= deadline {
            for license in report.licenses.iter_mut().filter(|l| l.error.is_none()) {
                if license.pending_reason.is_some()
                    || license.status_after.as_deref() != Some(status::ACTIVE)
                {
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
        // Backfill work re-checks on the backfill queue (when there is one): a slow backfill
        // never puts its re-checks in front of new accounts.
        let queue = if work.backfill {
            self.config
                .backfill_queue_url
                .as_ref()
                .or(self.config.onboarding_queue_url.as_ref())
        } else {
            self.config.onboarding_queue_url.as_ref()
        };
        let Some(queue_url) = queue else {
            return Err(Error::Config(
                "a grant is still in workflow and ONBOARDING_QUEUE_URL is not set, so no re-check can be queued".into(),
            ));
        };
        let body = OnboardRequest {
            account_id: work.account_id.to_string(),
            reason: Some("recheck".into()),
            attempt: work.attempt + 1,
            first_seen: Some(first_seen),
            activations: activations.to_vec(),
            ou_id: report.ou_id.clone(),
            backfill: work.backfill,
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

/// What the selection asks for one account (see [`Engine::wanted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// Excluded by `TARGET_OUS` or `ACCOUNT_TAG_FILTER`.
    Skip(String),
    /// These licenses (ARNs); selections that matched no held license apart.
    Licenses {
        arns: Vec<String>,
        unmatched: Vec<String>,
    },
    /// The selection could not be read (a bad licenses tag): the account's own run reports it.
    Unknown(String),
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

/// Adds `mark`, replacing an older one for the same grant.
fn put_mark(marks: &mut Vec<ActivationMark>, mark: ActivationMark) {
    marks.retain(|m| m.grant_arn != mark.grant_arn);
    marks.push(mark);
}

/// Records which grant a license report is about.
fn note(report: &mut LicenseReport, grant: &GrantView, source: Source) {
    report.grant_arn = Some(grant.arn.clone());
    report.grant_source = Some(source.as_str().into());
    report.status_after = Some(grant.status.clone());
}

/// Sets a grant's status (and version, reason when given) in the observation.
fn update(
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
fn replace(own: &mut Vec<GrantView>, mut grant: GrantView) {
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

/// The configured operations the management account may pass on for this license: a grant
/// never carries more than its grantor holds. None left is a configuration error.
pub fn grant_operations(
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

fn trigger_name(t: &Trigger) -> String {
    match t {
        Trigger::CreateManagedAccount => "CreateManagedAccount".into(),
        Trigger::UpdateManagedAccount => "UpdateManagedAccount".into(),
        Trigger::Onboard(reason) => format!("onboard:{reason}"),
    }
}

fn empty_report(account_id: Option<String>, trigger: String, dry_run: bool) -> AccountReport {
    AccountReport::empty(account_id, trigger, dry_run)
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
    } else if r.licenses.iter().any(|l| {
        l.held_back.is_none()
            && (l.pending_reason.is_some() || l.status_after.as_deref() != Some(status::ACTIVE))
    }) {
        Outcome::Pending
    } else {
        Outcome::Entitled
    }
}
