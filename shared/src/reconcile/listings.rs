//! Grantor-side listings: which accounts need a run (an organization or OU run's candidates, or
//! one account a change event names), and the organization/OU grants to retire.

use super::config::ReconcileConfig;
use super::index::{is_parent_principal, needs_run_now, needs_work, quota_warning, GrantIndex};
use super::report::ReconcileReport;
use crate::aws::{self, GrantView, HeldLicense, ListedAccount, OrgInfo};
use crate::clients::Clients;
use crate::config::{Config, Mode};
use crate::distribution::ParentReport;
use crate::engine::{Engine, Wanted};
use crate::error::Error;
use crate::ids::AccountId;
use crate::report::CallLog;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Whether an account a `Grant Change` event names needs nothing (`Some(why)`: every license
/// its selection asks for has an ACTIVE grant, the account's own under a parent in
/// organization/OU mode, with no grant of ours left to retire) or a run (`None`). Read from the
/// grantor's side with the same rules as a reconcile ([`needs_work`]), but for this account
/// only: its grants, and per organization/OU-mode license its children and the parents that
/// cover it. Where anything is unclear it runs.
pub(crate) async fn settled(
    engine: &Engine,
    org: &OrgInfo,
    account: &AccountId,
    calls: &CallLog,
) -> Result<Option<String>, Error> {
    let lm = &engine.clients().license_manager;
    let config = engine.config();
    let principal = account.root_principal(&config.partition);
    let ((wanted, org_grants), own) = futures::try_join!(
        engine.selection_and_covering(org, account, calls),
        aws::grants_to_principal(lm, &principal, calls),
    )?;
    let Wanted::Licenses { arns, .. } = &wanted else {
        return Ok(None);
    };
    let held = engine.held_licenses_logged(calls).await?;
    let modes = distributed_modes(config, &held);
    let mut index = GrantIndex::new(modes.clone(), &config.grant_name_prefix);
    for license in arns {
        let mut grants: Vec<GrantView> = own
            .iter()
            .chain(org_grants.iter())
            .filter(|g| &g.license_arn == license)
            .cloned()
            .collect();
        if modes.contains_key(license) {
            match aws::organization_received_grants(lm, license, &principal, calls).await {
                Ok(children) => grants.extend(children),
                // A delegated administrator may not read them: run the account.
                Err(e) if e.aws_code().is_some_and(|c| c.starts_with("AccessDenied")) => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
        index.add(license, &grants);
    }
    Ok(match needs_run_now(account.as_str(), &wanted, &index) {
        None => Some(
            "each selected license has an ACTIVE grant, or one waiting on License Manager whose end sends its own event".into(),
        ),
        Some(_) => None,
    })
}

/// The accounts among `candidates` that need a run, with the reason: the selection of each
/// (its OU from the listing, its tags only when a setting reads tags), then one grantor-side
/// listing per selected license (`ListDistributedGrants` by license, and
/// `ListReceivedGrantsForOrganization` when an organization or OU grant exists for it). No
/// role is assumed and nothing is read per account unless tags decide the selection.
pub(super) async fn changed_accounts(
    engine: &Engine,
    config: &ReconcileConfig,
    org: &OrgInfo,
    candidates: &[&ListedAccount],
    waiting_is_done: bool,
    calls: &CallLog,
    report: &mut ReconcileReport,
) -> Result<(BTreeMap<String, String>, Vec<(GrantView, usize)>), Error> {
    let dry_run = report.dry_run;
    let clients = engine.clients();
    let held = engine.held_licenses_logged(calls).await?;
    let wanted = selections(engine, candidates, &held, calls).await?;
    // Organization/OU-mode licenses are listed (and their parents kept) even when no
    // candidate wants them in this run.
    let modes = distributed_modes(engine.config(), &held);
    let licenses: BTreeSet<&str> = wanted
        .iter()
        .filter_map(|w| match w {
            Wanted::Licenses { arns, unmatched } => {
                report
                    .unmatched_selections
                    .extend(unmatched.iter().cloned());
                Some(arns.iter().map(String::as_str))
            }
            _ => None,
        })
        .flatten()
        .chain(modes.keys().map(String::as_str))
        .collect();
    let mut index = GrantIndex::new(modes.clone(), &engine.config().grant_name_prefix);
    let listings = list_grants(clients, &licenses, calls).await?;
    for (license, grants) in &listings {
        index.add(license, grants);
        // In organization/OU mode the per-account grants are repairs (and a switch's leftovers):
        // they count against the same quota.
        if let Some(warning) =
            quota_warning(license, grants, &engine.config().grant_name_prefix, config)
        {
            report.warnings.push(warning);
        }
    }
    if !modes.is_empty() {
        report.parents = crate::distribution::ensure_parents(
            &clients.license_manager,
            engine.config(),
            org,
            &held,
            &listings,
            dry_run,
            calls,
        )
        .await;
    }
    let needs = sort_needs(candidates, &wanted, &index, waiting_is_done, report);
    let retiring = retiring_parents(engine, candidates, &wanted, &index, &listings);
    Ok((needs, retiring))
}

/// What each candidate wants ([`Engine::wanted`]), from its OU in the listing, the OUs above
/// it, and its tags.
async fn selections(
    engine: &Engine,
    candidates: &[&ListedAccount],
    held: &[HeldLicense],
    calls: &CallLog,
) -> Result<Vec<Wanted>, Error> {
    let clients = engine.clients();
    // Tags: no bulk read exists in Organizations, so this is one call per account, and only
    // when ACCOUNT_TAG_FILTER or LICENSES_TAG_KEY is set.
    let tags: Vec<Vec<(String, String)>> = if engine.reads_tags() {
        futures::stream::iter(candidates.iter())
            .map(|a| aws::account_tags(&clients.organizations, &a.id, calls))
            .buffered(engine.config().max_concurrent_accounts)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?
    } else {
        vec![Vec::new(); candidates.len()]
    };
    // The OUs above each candidate's, where a nested OU inherits `ou`-mode licenses (each OU's
    // parent read once per container; no call otherwise).
    let mut above: HashMap<Option<String>, Vec<String>> = HashMap::new();
    for a in candidates {
        if !above.contains_key(&a.ou_id) {
            let chain = engine.inherited_from(&a.ou_id, calls).await?;
            above.insert(a.ou_id.clone(), chain);
        }
    }
    Ok(candidates
        .iter()
        .zip(&tags)
        .map(|(a, t)| {
            let ancestors = above.get(&a.ou_id).map(Vec::as_slice).unwrap_or_default();
            engine.wanted(&a.ou_id, ancestors, t, held)
        })
        .collect())
}

/// The held licenses distributed to the organization or OUs (LICENSE_DISTRIBUTION), with
/// their mode; licenses absent are in account mode.
fn distributed_modes(config: &Config, held: &[HeldLicense]) -> HashMap<String, Mode> {
    held.iter()
        .map(|l| {
            let sku = l.sku.as_deref().unwrap_or_default();
            (l.arn.clone(), config.mode_of(&l.arn, sku))
        })
        .filter(|(_, m)| m.has_parent_grant())
        .collect()
}

/// Every grant of each license the grantor sees, read concurrently: its distributed grants and,
/// when an organization or OU grant is among them, that grant's children.
async fn list_grants(
    clients: &Clients,
    licenses: &BTreeSet<&str>,
    calls: &CallLog,
) -> Result<Vec<(String, Vec<GrantView>)>, Error> {
    futures::future::try_join_all(licenses.iter().map(|license| async move {
        let mut grants = aws::license_grants(&clients.license_manager, license, calls).await?;
        if grants.iter().any(|g| is_parent_principal(&g.grantee)) {
            // Children of organization/OU grants; a delegated administrator may not see them,
            // which leaves their accounts queued (their own run looks closer).
            match aws::organization_license_grants(&clients.license_manager, license, calls).await {
                Ok(children) => grants.extend(children),
                Err(e) if e.aws_code().is_some_and(|c| c.starts_with("AccessDenied")) => {}
                Err(e) => return Err(e),
            }
        }
        Ok::<_, Error>((license.to_string(), grants))
    }))
    .await
}

/// The candidates that need a run, with the reason ([`needs_work`]); the others are counted up
/// to date, or (a coalesced reconcile) waiting, or reported skipped (excluded).
fn sort_needs(
    candidates: &[&ListedAccount],
    wanted: &[Wanted],
    index: &GrantIndex,
    waiting_is_done: bool,
    report: &mut ReconcileReport,
) -> BTreeMap<String, String> {
    let mut needs = BTreeMap::new();
    for (account, wanted) in candidates.iter().zip(wanted) {
        match (wanted, needs_work(&account.id, wanted, index)) {
            // Excluded (TARGET_OUS, ACCOUNT_TAG_FILTER): reported, not queued.
            (Wanted::Skip(reason), _) => {
                report.skipped.insert(account.id.clone(), reason.clone());
            }
            (_, Some(_))
                if waiting_is_done && needs_run_now(&account.id, wanted, index).is_none() =>
            {
                report.waiting += 1;
            }
            (_, Some(reason)) => {
                needs.insert(account.id.clone(), reason);
            }
            (_, None) => report.up_to_date += 1,
        }
    }
    needs
}

/// Organization/OU grants of ct-entitlements' own for licenses now in account mode, each with
/// the number of accounts that want the license and do not hold a grant of their own yet.
fn retiring_parents(
    engine: &Engine,
    candidates: &[&ListedAccount],
    wanted: &[Wanted],
    index: &GrantIndex,
    listings: &[(String, Vec<GrantView>)],
) -> Vec<(GrantView, usize)> {
    let waiting = |license: &str| {
        candidates
            .iter()
            .zip(wanted)
            .filter(|(account, w)| match w {
                Wanted::Licenses { arns, .. } if arns.iter().any(|a| a == license) => {
                    let only = Wanted::Licenses {
                        arns: vec![license.to_string()],
                        unmatched: Vec::new(),
                    };
                    needs_work(&account.id, &only, index).is_some()
                }
                Wanted::Unknown(_) => true,
                _ => false,
            })
            .count()
    };
    listings
        .iter()
        .filter(|(license, _)| index.retiring.contains(license))
        .flat_map(|(_, grants)| grants.iter())
        .filter(|g| {
            is_parent_principal(&g.grantee)
                && !crate::engine::is_terminal(&g.status)
                && g.status != crate::decide::status::PENDING_DELETE
                && g.name
                    == crate::distribution::parent_grant_name(
                        &engine.config().grant_name_prefix,
                        &g.grantee,
                    )
        })
        .map(|g| (g.clone(), waiting(&g.license_arn)))
        .collect()
}

/// A switch back from `organization`/`ou` to `account` mode, last step: once no account of the
/// organization still needs a grant of its own for the license (every one that wants it holds
/// one, ACTIVE, which took over from its account-level grant), ct-entitlements' organization/OU
/// grant is deleted (its account-level grants go with it). Until then it is reported with the
/// number of accounts still to switch. Only on an organization run, which sees every account.
pub(super) async fn retire_parents(
    engine: &Engine,
    retiring: &[(GrantView, usize)],
    dry_run: bool,
    calls: &CallLog,
    report: &mut ReconcileReport,
) {
    for (parent, waiting) in retiring {
        let waiting = *waiting;
        let mut line = ParentReport {
            license_arn: parent.license_arn.clone(),
            mode: Mode::Account,
            principal: parent.grantee.clone(),
            grant_arn: Some(parent.arn.clone()),
            status: Some(parent.status.clone()),
            step: String::new(),
            actions: Vec::new(),
            error: None,
        };
        if waiting > 0 {
            line.step = format!(
                "wait: account mode again; {waiting} account(s) still to take over with a grant of their own"
            );
        } else {
            line.step =
                "DeleteGrant: account mode again, every account holds a grant of its own".into();
            line.actions.push("DeleteGrant".into());
            if !dry_run {
                let lm = &engine.clients().license_manager;
                let reason = "ct-entitlements: the license is distributed per account again (LICENSE_DISTRIBUTION)";
                match aws::delete_grant(lm, &parent.arn, &parent.version, reason, calls).await {
                    Ok(status) => line.status = Some(status),
                    Err(e) => line.error = Some(e.to_string()),
                }
            }
        }
        report.parents.push(line);
    }
}
