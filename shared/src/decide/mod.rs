//! The heart of the product: given what was observed about one account's grants for one
//! license, what is the next step? A pure function over observed state (`Observation`)
//! returning one `Next`; `engine` executes it, observes again and asks again, a few steps at
//! most per invocation. The CLI's `plan` shows the first step of each license (dry run).
//!
//! Facts it follows (the AWS License Manager User Guide's managed entitlements and grant
//! pages; each with its source in docs/development.md, The local AWS world): an organization or OU grant covers every account under it,
//! and License Manager gives each covered account its own account-level grant (a "child") some
//! time after; a grant is activated asynchronously, and the one-active-license conflict shows
//! as the `StatusReason` of a grant that stays `DISABLED`; `REJECTED`/`DELETED` grants are
//! never revived; a `FAILED_WORKFLOW` grant is replaced by the grantor (delete, create again).

mod facts;

use crate::config::Mode;
use crate::event::ActivationMark;
use crate::model::GrantView;
use facts::{at_version, covers, mark_of, paused_parent, rank};

/// Facts read off grants, used by `decide` and elsewhere.
pub use facts::{
    activate_as, changed_by_operator, looks_bulk_activated, source_of, REPLACING_BEHAVIOR,
};

/// The grant model `decide` reasons over, named here too (`crate::decide::status`, …).
pub use crate::model::grant::{
    is_conflict_reason, is_terminal, status, ACTIVATION_STATUS_REASON,
    BULK_ACTIVATION_STATUS_REASON,
};

/// How many grants one account may get for one license before a failing one is no longer
/// replaced automatically (rejections and failed workflows both count).
pub const MAX_GRANT_GENERATIONS: usize = 5;

/// Where the account's grant comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A grant made to this account (by ct-entitlements or by hand).
    Account,
    /// The account-level grant License Manager made under an organization or OU grant.
    Organization,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Account => "account",
            Source::Organization => "organization",
        }
    }
}

/// Re-checks a chain waits on an activation it did not request before requesting its own
/// (a reason left over from an activation long done, e.g. after a manual deactivation that
/// kept it, costs this many re-checks, no more).
pub const ELSEWHERE_ACTIVATION_WAITS: u32 = 2;

/// Everything known about one (account, license) when deciding.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The license.
    pub license_arn: &'a str,
    /// Grants whose grantee is this account, for this license, from every side that was read
    /// (the member's received grants, the grantor's distributed grants, the organization's
    /// received grants), each once.
    pub own: &'a [GrantView],
    /// Organization and OU grants for this license whose principal covers the account.
    pub parents: &'a [GrantView],
    /// Activations requested earlier for this account's grants.
    pub activations: &'a [ActivationMark],
    /// The name ct-entitlements gives its per-account grants.
    pub own_grant_name: &'a str,
    /// Whether the management side's `ListReceivedGrantsForOrganization` was read already.
    pub org_side_read: bool,
    /// Whether this invocation already replaced a failed grant of this license.
    pub replaced_this_run: bool,
    /// Delayed re-checks before this run (0 for a first delivery).
    pub attempt: u32,
    /// Whether a covering grant promises the account a child: AWS gives one to every account
    /// of an organization (joiners too) and to the accounts "in the OU", but says nothing of
    /// accounts in nested OUs (`ouGrantsReachNestedOus`). A child not promised is not waited
    /// for: once the organization side was read, the gap is repaired.
    pub child_promised: bool,
    /// Account mode, and an organization/OU grant of ct-entitlements' own still covers the
    /// account (the license was switched back from `organization`/`ou` mode): the account gets
    /// a grant of its own, which takes over from the child, before the reconciler deletes the
    /// parent.
    pub retiring: bool,
    /// How the license is distributed. In `organization` and `ou` mode ct-entitlements never
    /// creates a grant to the account: the account-level grant under the parent is the one,
    /// and an older per-account grant of ct-entitlements' is replaced by it and deleted.
    pub mode: Mode,
}

/// Why the step is "look again later".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// The grant is in License Manager's workflow (PENDING_WORKFLOW, PENDING_DELETE).
    Workflow,
    /// An activation was requested and the grant is still DISABLED at that version.
    Activating,
    /// Another run requested an activation (the grant carries ct-entitlements' activation
    /// reason at a version this run did not make): not restarted.
    ActivatingElsewhere,
    /// The parent grant was bulk-activated: its children become ACTIVE by themselves.
    BulkActivation,
    /// An organization/OU grant covers the account; its account-level grant is not there yet.
    ChildNotYet,
    /// A failed grant was replaced in this invocation already; the replacement is looked at
    /// again later rather than replaced in a loop.
    ReplacedAlready,
    /// The license is in organization/OU mode and no such grant covers the account yet (the
    /// reconciler creates and bulk-activates it).
    ParentNotYet,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Workflow => "in License Manager's workflow",
            WaitReason::Activating => "activation requested, not applied yet",
            WaitReason::ActivatingElsewhere => {
                "another run requested its activation, not applied yet"
            }
            WaitReason::BulkActivation => "its organization grant was bulk-activated",
            WaitReason::ChildNotYet => {
                "covered by an organization/OU grant whose account-level grant is not there yet"
            }
            WaitReason::ReplacedAlready => "a replacement grant was created in this run",
            WaitReason::ParentNotYet => {
                "organization/OU mode: no organization or OU grant covers the account yet (the reconciler creates it)"
            }
        }
    }
}

/// Why nothing more can be done automatically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Activation cannot apply: the account has an active license for the product from another
    /// subscription. `reason` is License Manager's StatusReason.
    ActiveLicenseConflict { grant: GrantView, reason: String },
    /// The account-level grant under an organization grant failed; it is not ours to replace.
    ChildFailed { grant: GrantView },
    /// Every organization/OU grant covering the account failed its workflow.
    ParentFailed { parent: GrantView },
    /// The account's grant under an organization/OU grant is `DISABLED`, and that grant was
    /// changed by someone other than ct-entitlements since it was made (an operator's bulk
    /// deactivation looks like this): respected, not undone account by account.
    OperatorDeactivated { grant: GrantView, parent: GrantView },
    /// Too many grants were made for this account and license already.
    TooManyGenerations {
        grant: Option<GrantView>,
        count: usize,
    },
}

/// The next step for one (account, license).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The account's grant is ACTIVE.
    Done { grant: GrantView, source: Source },
    /// AcceptGrant, as the account.
    Accept { grant: GrantView, source: Source },
    /// CreateGrantVersion Status=ACTIVE at the grant's version.
    Activate { grant: GrantView, source: Source },
    /// Read the management side's view of the organization's received grants
    /// (`ListReceivedGrantsForOrganization`) before concluding the child is missing.
    FindChild { parent: GrantView },
    /// Nothing to do now: look again later (a delayed re-check).
    Wait {
        grant: GrantView,
        source: Source,
        reason: WaitReason,
    },
    /// CreateGrant with the token of this generation.
    Create { generation: usize },
    /// DeleteGrant on the failed grant, then CreateGrant with the token of `generation`.
    Replace {
        failed: GrantView,
        generation: usize,
    },
    /// DeleteGrant on a failed account-level grant of an organization/OU grant; License Manager
    /// hands the account a new one (looked for on a later re-check).
    DeleteChild { failed: GrantView },
    /// Organization/OU mode with no covering grant yet: look again later.
    AwaitParent,
    /// Migration to organization/OU mode: activate the account-level grant under the parent
    /// with `ALL_GRANTS_PERMITTED_BY_ISSUER`, which disables the account's older grant of
    /// ct-entitlements' (`replaces`) in the same step, so the account is never without one.
    TakeOver {
        grant: GrantView,
        replaces: GrantView,
    },
    /// Migration, last step: DeleteGrant on ct-entitlements' per-account grant once the
    /// account-level grant under the parent is ACTIVE (one live grant per account).
    Retire { grant: GrantView },
    /// Stop; the failure is permanent.
    Fail(Failure),
}

impl Next {
    /// The write steps this decision leads to when nothing surprising happens (what a dry run
    /// reports, in order). Accepting is usually automatic in a linked organization, so a new
    /// grant plans CreateGrant + ActivateGrant.
    pub fn planned_actions(&self) -> Vec<String> {
        let steps: &[&str] = match self {
            Next::Accept { .. } => &["AcceptGrant", "ActivateGrant"],
            Next::Activate { .. } => &["ActivateGrant"],
            Next::Create { .. } => &["CreateGrant", "ActivateGrant"],
            Next::Replace { .. } => &["DeleteGrant", "CreateGrant", "ActivateGrant"],
            Next::DeleteChild { .. } | Next::Retire { .. } => &["DeleteGrant"],
            Next::TakeOver { .. } => &[
                "ActivateGrant(ALL_GRANTS_PERMITTED_BY_ISSUER)",
                "DeleteGrant",
            ],
            Next::Done { .. }
            | Next::FindChild { .. }
            | Next::Wait { .. }
            | Next::AwaitParent
            | Next::Fail(_) => &[],
        };
        steps.iter().map(|s| s.to_string()).collect()
    }
}

/// Re-checks (after the organization side was read) that an account covered by an
/// organization/OU grant waits for its account-level grant before ct-entitlements repairs the
/// gap with a grant of its own. AWS promises a child to accounts that join the organization, not
/// a re-issue after a failure nor one to accounts in nested OUs, and the engine never waits for
/// a grant nobody promised for longer than this.
pub const CHILD_WAIT_RECHECKS: u32 = 2;

/// A repair: a per-account grant of ct-entitlements' own, of the next generation.
fn repair(generation: usize) -> Next {
    if generation >= MAX_GRANT_GENERATIONS {
        Next::Fail(Failure::TooManyGenerations {
            grant: None,
            count: generation,
        })
    } else {
        Next::Create { generation }
    }
}

/// How an activation is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivateAs {
    /// By the member account (the grantee), with this override behavior or none.
    Member(Option<String>),
    /// By the management account (the grantor), with this override behavior.
    Grantor(String),
}

/// The next step. Pure: the same observation always gives the same answer.
pub fn decide(o: &Observation<'_>) -> Next {
    let parents: Vec<&GrantView> = o
        .parents
        .iter()
        .filter(|p| p.license_arn == o.license_arn && covers(p))
        .collect();
    let all_parents: Vec<GrantView> = parents.iter().map(|p| (*p).clone()).collect();
    let mine: Vec<&GrantView> = o
        .own
        .iter()
        .filter(|g| g.license_arn == o.license_arn)
        .collect();
    // Where a child names its parent (one reading of ParentArn), the account's other grants of
    // another name are not children but grants made to it by hand.
    let names_parent = |g: &GrantView| all_parents.iter().any(|p| p.arn == g.parent_arn);
    let child_named = mine.iter().any(|g| names_parent(g));
    let source = |g: &GrantView| {
        if child_named && !names_parent(g) {
            Source::Account
        } else {
            source_of(g, &all_parents, o.own_grant_name)
        }
    };
    // Grants of ct-entitlements' own lineage that are dead: the next one is a new generation.
    let generation = mine
        .iter()
        .filter(|g| is_terminal(&g.status) && source(g) == Source::Account)
        .count();
    let dead_children = mine
        .iter()
        .filter(|g| is_terminal(&g.status) && source(g) == Source::Organization)
        .count();
    let live = |g: &&&GrantView| !is_terminal(&g.status) && g.status != status::WORKFLOW_COMPLETED;
    // ct-entitlements' own per-account grant, when it is the grant to drive.
    let mut drive_ours: Option<&GrantView> = None;
    let org_mode = o.mode != Mode::Account;
    if !org_mode && o.retiring {
        // Switching back: a grant of our own, activated over the child (the replacing
        // behavior disables the child in the same step, so the account is never without one).
        let ours = mine
            .iter()
            .filter(live)
            .filter(|g| source(g) == Source::Account && g.name == o.own_grant_name)
            .min_by_key(|g| rank(&g.status))
            .copied();
        let child_active = mine
            .iter()
            .filter(live)
            .find(|g| source(g) == Source::Organization && g.status == status::ACTIVE)
            .copied();
        match (ours, child_active) {
            (None, _) => return repair(generation),
            (Some(ours), Some(child)) if ours.status == status::DISABLED => {
                let requested =
                    mark_of(o.activations, ours).is_some_and(|m| !m.bulk && at_version(m, ours));
                return if requested {
                    Next::Wait {
                        grant: ours.clone(),
                        source: Source::Account,
                        reason: WaitReason::Activating,
                    }
                } else {
                    Next::TakeOver {
                        grant: ours.clone(),
                        replaces: child.clone(),
                    }
                };
            }
            (Some(ours), _) => drive_ours = Some(ours),
        }
    }
    if drive_ours.is_none() {
        // In organization/OU mode the child under a parent is the account's grant. A grant of
        // ct-entitlements' own keeps the account entitled where no working child is there (an
        // older per-account grant during a migration, or a repair) until a child is ACTIVE;
        // then it goes. In every mode a child that failed, or never came, is repaired by a grant
        // of our own: AWS promises children to accounts that join the organization, not a
        // re-issue after a failure nor a child in a nested OU, and the engine never waits for a
        // grant nobody promised for longer than `CHILD_WAIT_RECHECKS` re-checks.
        let ours = mine
            .iter()
            .filter(live)
            .filter(|g| source(g) == Source::Account && g.name == o.own_grant_name)
            .min_by_key(|g| rank(&g.status))
            .copied();
        let child = mine
            .iter()
            .filter(live)
            .filter(|g| source(g) == Source::Organization)
            .min_by_key(|g| rank(&g.status))
            .copied();
        let child_failed = child.is_some_and(|c| c.status == status::FAILED_WORKFLOW);
        // A child handed out once and gone (deleted after failing) is not promised again.
        let promised = o.child_promised && dead_children == 0;
        let waited = o.org_side_read && (o.attempt >= CHILD_WAIT_RECHECKS || !promised);
        let ours_active = ours.is_some_and(|g| g.status == status::ACTIVE);
        match (child, ours) {
            (Some(child), Some(ours)) if org_mode && child.status == status::ACTIVE => {
                return Next::Retire {
                    grant: ours.clone(),
                }
            }
            (Some(child), Some(ours))
                if org_mode && child.status == status::DISABLED && ours_active =>
            {
                if paused_parent(child, &parents).is_some() {
                    // The parent's grants were deactivated in bulk: ours keeps the account
                    // entitled; the child is not activated over that decision.
                    return Next::Done {
                        grant: ours.clone(),
                        source: Source::Account,
                    };
                }
                let requested =
                    mark_of(o.activations, child).is_some_and(|m| !m.bulk && at_version(m, child));
                return if requested {
                    Next::Wait {
                        grant: child.clone(),
                        source: Source::Organization,
                        reason: WaitReason::Activating,
                    }
                } else {
                    Next::TakeOver {
                        grant: child.clone(),
                        replaces: ours.clone(),
                    }
                };
            }
            // Entitled by our own grant beside a failed child: the child is cleared (so that a
            // re-issue, where AWS makes one, can come), a bounded number of times.
            (Some(child), Some(ours)) if child_failed && ours_active => {
                return if o.replaced_this_run || dead_children + 1 >= MAX_GRANT_GENERATIONS {
                    Next::Done {
                        grant: ours.clone(),
                        source: Source::Account,
                    }
                } else {
                    Next::DeleteChild {
                        failed: child.clone(),
                    }
                };
            }
            (None, Some(ours)) if org_mode && ours_active => {
                // Entitled by our own grant; the child is looked for, and waited for a bounded
                // number of re-checks (a migration's child comes within minutes where it comes).
                if parents.is_empty() || waited {
                    return Next::Done {
                        grant: ours.clone(),
                        source: Source::Account,
                    };
                }
                if !o.org_side_read {
                    return Next::FindChild {
                        parent: parents[0].clone(),
                    };
                }
                return Next::Wait {
                    grant: ours.clone(),
                    source: Source::Account,
                    reason: WaitReason::ChildNotYet,
                };
            }
            (None, _) if org_mode && parents.is_empty() => return Next::AwaitParent,
            // Our own grant not active yet, and no working child: it is driven like any grant.
            (None, Some(ours)) if org_mode => drive_ours = Some(ours),
            (Some(_), Some(ours)) if child_failed => drive_ours = Some(ours),
            // A failed child is repaired at once by a grant of our own; a missing one once it
            // has been looked for and waited for.
            // No repair over an operator's bulk deactivation of the parent.
            (c, None)
                if (child_failed || (c.is_none() && waited))
                    && parents.iter().any(|p| changed_by_operator(p)) =>
            {
                let parent = parents.iter().find(|p| changed_by_operator(p)).copied();
                let parent = parent.cloned().unwrap_or_else(|| parents[0].clone());
                return Next::Fail(Failure::OperatorDeactivated {
                    grant: child.cloned().unwrap_or_else(|| parent.clone()),
                    parent,
                });
            }
            (Some(failed), None) if child_failed => {
                if o.replaced_this_run {
                    return Next::Wait {
                        grant: failed.clone(),
                        source: Source::Organization,
                        reason: WaitReason::ReplacedAlready,
                    };
                }
                return repair(generation);
            }
            (None, None)
                if waited
                    && !parents.is_empty()
                    && !parents.iter().all(|p| p.status == status::FAILED_WORKFLOW) =>
            {
                return repair(generation);
            }
            _ => {}
        }
    }
    let best = match drive_ours {
        Some(ours) => Some(ours),
        None => mine
            .iter()
            .filter(live)
            .filter(|g| o.mode == Mode::Account || source(g) == Source::Organization)
            .min_by_key(|g| (rank(&g.status), source(g) == Source::Account))
            .copied(),
    };

    let Some(grant) = best else {
        if let Some(parent) = parents.first() {
            if parents.iter().all(|p| p.status == status::FAILED_WORKFLOW) {
                return Next::Fail(Failure::ParentFailed {
                    parent: (*parent).clone(),
                });
            }
            let parent = parents
                .iter()
                .find(|p| p.status != status::FAILED_WORKFLOW)
                .copied()
                .unwrap_or(parent);
            if !o.org_side_read {
                return Next::FindChild {
                    parent: parent.clone(),
                };
            }
            return Next::Wait {
                grant: parent.clone(),
                source: Source::Organization,
                reason: WaitReason::ChildNotYet,
            };
        }
        if generation >= MAX_GRANT_GENERATIONS {
            return Next::Fail(Failure::TooManyGenerations {
                grant: None,
                count: generation,
            });
        }
        return Next::Create { generation };
    };

    let src = source(grant);
    let g = grant.clone();
    match grant.status.as_str() {
        status::ACTIVE => Next::Done {
            grant: g,
            source: src,
        },
        status::PENDING_ACCEPT => Next::Accept {
            grant: g,
            source: src,
        },
        status::DISABLED => {
            if src == Source::Organization {
                if let Some(parent) = paused_parent(grant, &parents) {
                    return Next::Fail(Failure::OperatorDeactivated {
                        grant: g,
                        parent: parent.clone(),
                    });
                }
            }
            let mark = mark_of(o.activations, grant);
            let same_version = mark.is_some_and(|m| at_version(m, grant));
            if is_conflict_reason(grant.status_reason.as_deref()) && mark.is_some_and(|m| !m.bulk) {
                // Our activation came back with the conflict: re-activating would loop.
                return Next::Fail(Failure::ActiveLicenseConflict {
                    reason: grant.status_reason.clone().unwrap_or_default(),
                    grant: g,
                });
            }
            match mark {
                Some(m) if same_version && !m.bulk => Next::Wait {
                    grant: g,
                    source: src,
                    reason: WaitReason::Activating,
                },
                // A bulk activation was already waited for once at this version: do it here.
                Some(m) if same_version && m.bulk => Next::Activate {
                    grant: g,
                    source: src,
                },
                _ => {
                    let bulk_parent = parents
                        .iter()
                        .any(|p| p.arn == grant.parent_arn && looks_bulk_activated(p));
                    let elsewhere = grant.status_reason.as_deref()
                        == Some(ACTIVATION_STATUS_REASON)
                        && o.attempt < ELSEWHERE_ACTIVATION_WAITS;
                    if elsewhere {
                        Next::Wait {
                            grant: g,
                            source: src,
                            reason: WaitReason::ActivatingElsewhere,
                        }
                    } else if src == Source::Organization && bulk_parent {
                        Next::Wait {
                            grant: g,
                            source: src,
                            reason: WaitReason::BulkActivation,
                        }
                    } else {
                        Next::Activate {
                            grant: g,
                            source: src,
                        }
                    }
                }
            }
        }
        status::FAILED_WORKFLOW => match src {
            // The roles are in place by now: clear the failed child so License Manager hands
            // out a new one, a bounded number of times.
            Source::Organization if o.replaced_this_run => Next::Wait {
                grant: g,
                source: src,
                reason: WaitReason::ReplacedAlready,
            },
            Source::Organization if dead_children + 1 >= MAX_GRANT_GENERATIONS => {
                Next::Fail(Failure::ChildFailed { grant: g })
            }
            Source::Organization => Next::DeleteChild { failed: g },
            Source::Account if o.replaced_this_run => Next::Wait {
                grant: g,
                source: src,
                reason: WaitReason::ReplacedAlready,
            },
            Source::Account if generation + 1 >= MAX_GRANT_GENERATIONS => {
                Next::Fail(Failure::TooManyGenerations {
                    grant: Some(g),
                    count: generation + 1,
                })
            }
            // The failed grant becomes DELETED, so the replacement is one generation further.
            Source::Account => Next::Replace {
                failed: g,
                generation: generation + 1,
            },
        },
        // PENDING_WORKFLOW, PENDING_DELETE and anything new: only time moves it.
        _ => Next::Wait {
            grant: g,
            source: src,
            reason: WaitReason::Workflow,
        },
    }
}

#[cfg(test)]
mod tests;
