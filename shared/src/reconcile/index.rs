//! The grant index: the account-level grants seen per (license, account) in grantor-side
//! listings, and the pure decision of whether an account needs a run.

use super::config::ReconcileConfig;
use crate::aws::GrantView;
use crate::config::Mode;
use crate::engine::Wanted;
use crate::ids::account_of_root_principal;
use std::collections::{BTreeSet, HashMap};

/// A warning when a license's live per-account grants (its own grants to accounts; children of
/// organization/OU grants do not count) reach `grant_quota_warn_percent` of `grant_quota`.
/// Children are told apart as in [`GrantIndex::add`] (by name, not by `ParentArn`).
pub(crate) fn quota_warning(
    license: &str,
    grants: &[GrantView],
    prefix: &str,
    config: &ReconcileConfig,
) -> Option<String> {
    let parents: Vec<GrantView> = grants
        .iter()
        .filter(|g| is_parent_principal(&g.grantee) && !crate::engine::is_terminal(&g.status))
        .cloned()
        .collect();
    let used = grants
        .iter()
        .filter(|g| {
            g.license_arn == license
                && !crate::engine::is_terminal(&g.status)
                && account_of_root_principal(&g.grantee).is_some_and(|account| {
                    let own_name = format!("{prefix}-{account}");
                    crate::decide::source_of(g, &parents, &own_name)
                        == crate::decide::Source::Account
                })
        })
        .count();
    let quota = u64::from(config.grant_quota);
    let threshold = quota * u64::from(config.grant_quota_warn_percent) / 100;
    (used as u64 >= threshold.max(1)).then(|| {
        format!(
            "{license}: {used} of {quota} per-account grants (Service Quotas L-55F04DE6); past the quota new accounts fail: request a higher quota, or grant this license to the organization or to OUs"
        )
    })
}

/// Whether a grantee is an organization or an OU (whose grant's children reach accounts).
pub(super) fn is_parent_principal(grantee: &str) -> bool {
    grantee.contains(":organization/") || grantee.contains(":ou/")
}

/// The account-level grants seen per (license, account), from grantor-side listings, and
/// each license's distribution mode.
#[derive(Debug, Default)]
pub(crate) struct GrantIndex {
    seen: HashMap<(String, String), Vec<Seen>>,
    read: BTreeSet<String>,
    /// Licenses with a live organization/OU grant in their listing.
    parented: BTreeSet<String>,
    /// Licenses with an organization/OU grant changed by someone other than ct-entitlements
    /// (an operator's bulk deactivation): their accounts are left as that change left them.
    paused: BTreeSet<String>,
    /// Account-mode licenses still granted to the organization/OUs by a grant of
    /// ct-entitlements' own (switched back): their children no longer count.
    pub(super) retiring: BTreeSet<String>,
    modes: HashMap<String, Mode>,
    /// `GRANT_NAME_PREFIX`: names ct-entitlements' own per-account grants.
    prefix: String,
}

#[derive(Debug)]
struct Seen {
    status: String,
    /// Waiting on License Manager, not on a run: a workflow (`PENDING_WORKFLOW`,
    /// `PENDING_DELETE`) or an activation ct-entitlements requested (`DISABLED` with
    /// [`crate::decide::ACTIVATION_STATUS_REASON`]). Its end sends a change event of its own.
    in_flight: bool,
    /// An account-level grant under an organization/OU grant (not made from the license).
    child: bool,
    name: String,
}

impl GrantIndex {
    /// An index for licenses distributed per `modes` (licenses absent: account mode), whose
    /// own grants are named `<prefix>-<account>`.
    pub(crate) fn new(modes: HashMap<String, Mode>, prefix: &str) -> Self {
        GrantIndex {
            modes,
            prefix: prefix.to_string(),
            ..GrantIndex::default()
        }
    }

    /// Records the listing of one license (every grant of it that the grantor sees).
    pub(crate) fn add(&mut self, license: &str, grants: &[GrantView]) {
        self.read.insert(license.to_string());
        // Children are told from ct-entitlements' own grants by name, never by `ParentArn`
        // (`decide::source_of`); an organization grant covers every account, and the OU
        // grants of a license are taken to cover too (the account's run looks closer).
        let parents: Vec<GrantView> = grants
            .iter()
            .filter(|g| is_parent_principal(&g.grantee) && !crate::engine::is_terminal(&g.status))
            .cloned()
            .collect();
        if !parents.is_empty() {
            self.parented.insert(license.to_string());
        }
        if parents.iter().any(crate::decide::changed_by_operator) {
            self.paused.insert(license.to_string());
        }
        if !self.modes.contains_key(license)
            && parents
                .iter()
                .any(|p| p.name == crate::distribution::parent_grant_name(&self.prefix, &p.grantee))
        {
            self.retiring.insert(license.to_string());
        }
        // A child handed out DISABLED under a bulk-activated parent is being activated by
        // License Manager (the bulk activation reaches it).
        let bulk = parents.iter().any(crate::decide::looks_bulk_activated);
        for g in grants {
            if let Some(account) = account_of_root_principal(&g.grantee) {
                let own_name = format!("{}-{account}", self.prefix);
                let child = crate::decide::source_of(g, &parents, &own_name)
                    == crate::decide::Source::Organization;
                self.seen
                    .entry((license.to_string(), account.to_string()))
                    .or_default()
                    .push(Seen {
                        in_flight: matches!(
                            g.status.as_str(),
                            "PENDING_WORKFLOW" | "PENDING_DELETE"
                        ) || (g.status == "DISABLED"
                            && (g.status_reason.as_deref()
                                == Some(crate::decide::ACTIVATION_STATUS_REASON)
                                || (child && bulk))),
                        status: g.status.clone(),
                        child,
                        name: g.name.clone(),
                    });
            }
        }
    }
}

/// Why `account` needs a run (`None`: every license it should hold has an ACTIVE grant, in
/// organization/OU mode the account-level grant under the parent, with no live per-account
/// grant of ct-entitlements' left beside it). Pure: the reconciler's whole decision, tested
/// case by case.
pub(crate) fn needs_work(account: &str, wanted: &Wanted, index: &GrantIndex) -> Option<String> {
    short_of(account, wanted, index, false)
}

/// Whether a run of `account` could do something now (`Some(why)`), for a change event: as
/// [`needs_work`], except that a license whose grant waits on License Manager (a workflow, or
/// an activation ct-entitlements asked for) needs nothing yet. Its end sends a change event
/// of its own, and the chain that waits for it re-checks anyway: an event in the middle of a
/// run or a workflow adds no run.
pub(crate) fn needs_run_now(account: &str, wanted: &Wanted, index: &GrantIndex) -> Option<String> {
    short_of(account, wanted, index, true)
}

/// Why `account` needs a run ([`needs_work`]; with `waiting_is_done`, [`needs_run_now`]): the
/// first license it is short of, and how many more.
fn short_of(
    account: &str,
    wanted: &Wanted,
    index: &GrantIndex,
    waiting_is_done: bool,
) -> Option<String> {
    let arns = match wanted {
        Wanted::Skip(_) => return None,
        Wanted::Unknown(why) => return Some(format!("selection unreadable: {why}")),
        Wanted::Licenses { arns, .. } => arns,
    };
    let own_name = format!("{}-{account}", index.prefix);
    let short: Vec<String> = arns
        .iter()
        .filter_map(|license| license_short(license, account, &own_name, index, waiting_is_done))
        .collect();
    match short.len() {
        0 => None,
        1 => Some(short[0].clone()),
        n => Some(format!("{} (and {} more)", short[0], n - 1)),
    }
}

/// Why `account` is short of `license` (`None`: it is not, or a run has nothing to do now).
fn license_short(
    license: &str,
    account: &str,
    own_name: &str,
    index: &GrantIndex,
    waiting_is_done: bool,
) -> Option<String> {
    if !index.read.contains(license) {
        return Some(format!("{license}: not listed"));
    }
    if index.paused.contains(license) {
        // Deactivated in bulk by an operator: a run would only report it.
        return None;
    }
    let seen = index
        .seen
        .get(&(license.to_string(), account.to_string()))
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mode = index.modes.get(license).copied().unwrap_or_default();
    if index.retiring.contains(license) {
        // Switched back to account mode: the account's own grant is what counts.
        let held = seen
            .iter()
            .any(|s| !s.child && s.name == own_name && s.status == "ACTIVE");
        return (!held).then(|| {
            format!(
                "{license}: account mode again, a grant of its own to take over from the organization/OU grant's"
            )
        });
    }
    if waiting_is_done && seen.iter().any(|s| s.in_flight) {
        // A grant of the account's for this license waits on License Manager (a
        // repair's workflow, an activation): its end sends its own event.
        return None;
    }
    if waiting_is_done
        && seen.iter().any(|s| s.child)
        && seen.iter().all(|s| crate::engine::is_terminal(&s.status))
    {
        // Its account-level grant under an organization/OU grant was deleted (a failed
        // one cleared by the account's run) and nothing replaced it yet: the run that
        // cleared it re-checks for a new one and repairs after its re-checks; a run now
        // would only wait too. The daily reconcile still queues it.
        return None;
    }
    grant_short(
        license,
        seen,
        mode,
        own_name,
        index.parented.contains(license),
        waiting_is_done,
    )
}

/// What the account's grants of `license` (`seen`) leave a run to do in `mode` (`None`:
/// nothing); `parented`: a live organization/OU grant of the license is listed.
fn grant_short(
    license: &str,
    seen: &[Seen],
    mode: Mode,
    own_name: &str,
    parented: bool,
    waiting_is_done: bool,
) -> Option<String> {
    let counts = |s: &&Seen| !mode.has_parent_grant() || s.child;
    let ours_left = mode.has_parent_grant()
        && seen
            .iter()
            .any(|s| !s.child && s.name == own_name && !crate::engine::is_terminal(&s.status));
    // A repair (or an older grant of ours) ACTIVE under a parent, with no child beside it
    // that could take over or needs clearing: nothing to do until one shows (its run
    // looked and waited already; queueing it every day would restart that for ever).
    // Before a parent exists (a migration planned), it is work.
    let held_without_child = ours_left
        && parented
        && seen
            .iter()
            .any(|s| !s.child && s.name == own_name && s.status == "ACTIVE")
        && !seen
            .iter()
            .any(|s| s.child && !crate::engine::is_terminal(&s.status));
    if (seen.iter().filter(counts).any(|s| s.status == "ACTIVE") && !ours_left)
        || held_without_child
    {
        None
    } else if ours_left {
        Some(format!(
            "{license}: {} mode, a per-account grant to replace",
            mode.as_str()
        ))
    } else if !seen.iter().any(|s| counts(&s)) {
        Some(format!("{license}: no grant"))
    } else if waiting_is_done && seen.iter().filter(counts).any(|s| s.in_flight) {
        None
    } else {
        let statuses: Vec<&str> = seen
            .iter()
            .filter(counts)
            .map(|s| s.status.as_str())
            .collect();
        Some(format!("{license}: grant {}", statuses.join("/")))
    }
}

#[cfg(test)]
mod tests;
