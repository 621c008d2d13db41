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

use crate::config::Mode;
use crate::event::ActivationMark;
use crate::model::GrantView;

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

/// Preference among several live grants for one account and license.
fn rank(status: &str) -> u8 {
    match status {
        status::ACTIVE => 0,
        status::DISABLED => 1,
        status::PENDING_ACCEPT => 2,
        status::PENDING_WORKFLOW => 3,
        status::PENDING_DELETE => 4,
        status::FAILED_WORKFLOW => 5,
        _ => 6,
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

/// `ALL_GRANTS_PERMITTED_BY_ISSUER`, the behavior that replaces the account's other active
/// grants of the product in the same activation.
pub const REPLACING_BEHAVIOR: &str = "ALL_GRANTS_PERMITTED_BY_ISSUER";

/// Who activates `grant`, with which override behavior. AWS lets a grantee specify a behavior
/// only "if the grantor … doesn't specify", and does not document what happens when it does
/// anyway (honoured, ignored or rejected: `granteeOverride`); so where the grant already carries
/// a behavior (set by the grantor's bulk activation of its parent) the grantee sends none, and a
/// takeover (`replacing`: the account's older grant must go in the same step) that needs a
/// behavior the grant does not carry is sent by the grantor, whose own behavior always applies.
pub fn activate_as(
    grant: &GrantView,
    source: Source,
    configured: &str,
    replacing: bool,
) -> ActivateAs {
    let carried = grant.activation_behavior.as_deref();
    match (replacing, carried) {
        (true, None) => ActivateAs::Member(Some(REPLACING_BEHAVIOR.to_string())),
        (true, Some(REPLACING_BEHAVIOR)) => ActivateAs::Member(None),
        (true, Some(_)) => ActivateAs::Grantor(REPLACING_BEHAVIOR.to_string()),
        (false, Some(_)) if source == Source::Organization => ActivateAs::Member(None),
        (false, _) => ActivateAs::Member(Some(configured.to_string())),
    }
}

/// Whether an organization/OU grant was changed by someone other than ct-entitlements since it
/// was made: a new version without ct-entitlements' bulk-activation reason. AWS shows a parent
/// `WORKFLOW_COMPLETED` after a bulk activation and after a bulk deactivation alike, so this is
/// the only trace of an operator's bulk deactivation (or of a bulk change by hand); either way
/// its account-level grants are left as that change left them.
pub fn changed_by_operator(parent: &GrantView) -> bool {
    parent.version.parse::<u64>().is_ok_and(|v| v > 1)
        && parent.status_reason.as_deref() != Some(BULK_ACTIVATION_STATUS_REASON)
}

/// The covering grant that was changed by an operator and that `child` is under: the one its
/// `ParentArn` names, or (where it names none of them: undocumented) any covering one.
fn paused_parent<'a>(child: &GrantView, parents: &[&'a GrantView]) -> Option<&'a GrantView> {
    match parents.iter().find(|p| p.arn == child.parent_arn) {
        Some(named) => changed_by_operator(named).then_some(*named),
        None => parents.iter().find(|p| changed_by_operator(p)).copied(),
    }
}

/// Whether an organization/OU grant looks bulk-activated. AWS documents bulk activation
/// (CreateGrantVersion Status=ACTIVE on the parent, which then shows WORKFLOW_COMPLETED) but no
/// field saying it happened; a parent with activation options, or one changed by a new version
/// since it was created, is taken as bulk-activated. Wrong either way costs little: one re-check
/// before an individual activation, or one activation that was not needed.
pub fn looks_bulk_activated(parent: &GrantView) -> bool {
    parent.activation_behavior.is_some() || parent.version.parse::<u64>().is_ok_and(|v| v > 1)
}

/// The activation requested earlier for `grant`, if any.
fn mark_of<'a>(activations: &'a [ActivationMark], grant: &GrantView) -> Option<&'a ActivationMark> {
    activations.iter().find(|m| m.grant_arn == grant.arn)
}

/// Whether an activation was requested at the grant's current version (or at an unknown one).
fn at_version(mark: &ActivationMark, grant: &GrantView) -> bool {
    mark.version.is_empty() || mark.version == grant.version
}

/// Whether `parent` still covers the account: not terminal and not on its way out.
fn covers(parent: &GrantView) -> bool {
    !is_terminal(&parent.status) && parent.status != status::PENDING_DELETE
}

/// Where an account-level grant comes from, by what ct-entitlements wrote rather than by
/// `ParentArn`, whose value AWS does not document for either kind of grant (a child's may name
/// its parent, the license, or nothing; a per-account grant's may name the license or not):
/// - named `own_grant_name` (the `GrantName` ct-entitlements sends, which `GetGrant` and the
///   listings return as sent): ct-entitlements' own per-account grant;
/// - otherwise, `ParentArn` naming a known organization/OU grant, or any such grant covering the
///   account (`parents`): the account-level grant License Manager made under it;
/// - otherwise, with no covering grant: a grant made to the account by hand (`Account`), unless
///   its `ParentArn` names a grant (a child whose parent is gone or not read).
pub fn source_of(grant: &GrantView, parents: &[GrantView], own_grant_name: &str) -> Source {
    if grant.name == own_grant_name {
        return Source::Account;
    }
    let names_a_grant =
        grant.parent_arn != grant.license_arn && grant.parent_arn.contains(":grant:");
    if !parents.is_empty() || names_a_grant {
        Source::Organization
    } else {
        Source::Account
    }
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
mod tests {
    use super::*;

    /// The documented limit (docs/design.md, an account step by step), written out ("After
    /// `MAX_GRANT_GENERATIONS` (5) grants for one account and license it stops with
    /// `GrantFailed`"): the expectations come from the documentation, not from the constant
    /// under test.
    const DOCUMENTED_GENERATIONS: usize = 5;
    /// The documented wait on an activation another run requested (docs/development.md, the
    /// emulator's table): "two re-checks, then it activates itself".
    const DOCUMENTED_ELSEWHERE_WAITS: u32 = 2;

    const LICENSE: &str = "arn:aws:license-manager::294406891311:license:l-1";
    const OTHER: &str = "arn:aws:license-manager::294406891311:license:l-2";
    const ME: &str = "arn:aws:iam::210987654321:root";
    const NAME: &str = "ct-entitlements-210987654321";
    const PARENT: &str = "arn:aws:license-manager::111111111111:grant:g-parent";
    const ORG: &str = "arn:aws:organizations::111111111111:organization/o-abc1234567";

    fn grant(arn: &str, status: &str) -> GrantView {
        GrantView {
            arn: arn.into(),
            name: NAME.into(),
            license_arn: LICENSE.into(),
            status: status.into(),
            version: "2".into(),
            parent_arn: LICENSE.into(),
            grantee: ME.into(),
            status_reason: None,
            activation_behavior: None,
        }
    }

    fn child(status: &str) -> GrantView {
        GrantView {
            name: "org-wide".into(),
            parent_arn: PARENT.into(),
            ..grant("g-child", status)
        }
    }

    fn parent(status: &str) -> GrantView {
        GrantView {
            name: "org-wide".into(),
            grantee: ORG.into(),
            version: "1".into(),
            ..grant(PARENT, status)
        }
    }

    fn mark(arn: &str, version: &str, bulk: bool) -> ActivationMark {
        ActivationMark {
            grant_arn: arn.into(),
            version: version.into(),
            bulk,
        }
    }

    /// A short name for a decision, for the tables.
    fn name(next: &Next) -> String {
        match next {
            Next::Done { source, .. } => format!("Done/{}", source.as_str()),
            Next::Accept { source, .. } => format!("Accept/{}", source.as_str()),
            Next::Activate { source, .. } => format!("Activate/{}", source.as_str()),
            Next::FindChild { .. } => "FindChild".into(),
            Next::Wait { reason, .. } => format!("Wait/{reason:?}"),
            Next::Create { generation } => format!("Create/{generation}"),
            Next::Replace { generation, .. } => format!("Replace/{generation}"),
            Next::DeleteChild { .. } => "DeleteChild".into(),
            Next::AwaitParent => "AwaitParent".into(),
            Next::TakeOver { .. } => "TakeOver".into(),
            Next::Retire { .. } => "Retire".into(),
            Next::Fail(Failure::ActiveLicenseConflict { .. }) => "Fail/Conflict".into(),
            Next::Fail(Failure::ChildFailed { .. }) => "Fail/ChildFailed".into(),
            Next::Fail(Failure::ParentFailed { .. }) => "Fail/ParentFailed".into(),
            Next::Fail(Failure::OperatorDeactivated { .. }) => "Fail/OperatorDeactivated".into(),
            Next::Fail(Failure::TooManyGenerations { count, .. }) => format!("Fail/TooMany{count}"),
        }
    }

    #[derive(Clone)]
    struct Case<'a> {
        own: Vec<GrantView>,
        parents: Vec<GrantView>,
        marks: Vec<ActivationMark>,
        org_side_read: bool,
        replaced: bool,
        attempt: u32,
        mode: Mode,
        promised: bool,
        retiring: bool,
        expect: &'a str,
    }

    fn case<'a>(own: Vec<GrantView>, parents: Vec<GrantView>, expect: &'a str) -> Case<'a> {
        Case {
            own,
            parents,
            marks: Vec::new(),
            org_side_read: true,
            replaced: false,
            attempt: 0,
            mode: Mode::Account,
            promised: true,
            retiring: false,
            expect,
        }
    }

    fn run(c: &Case<'_>) -> Next {
        decide(&Observation {
            license_arn: LICENSE,
            own: &c.own,
            parents: &c.parents,
            activations: &c.marks,
            own_grant_name: NAME,
            org_side_read: c.org_side_read,
            replaced_this_run: c.replaced,
            attempt: c.attempt,
            child_promised: c.promised,
            retiring: c.retiring,
            mode: c.mode,
        })
    }

    #[test]
    fn organization_and_ou_mode_never_grant_per_account_and_migrate_without_a_gap() {
        let ours = |s: &str| grant("g-ours", s);
        let replaced_reason = GrantView {
            status_reason: Some("Replaced by the activation of grant g-child".into()),
            ..ours(status::DISABLED)
        };
        let conflict = GrantView {
            status_reason: Some(
                "This account already has an active license for this product".into(),
            ),
            ..child(status::DISABLED)
        };
        let bulk_parent = GrantView {
            activation_behavior: Some("DISTRIBUTED_GRANTS_ONLY".into()),
            version: "2".into(),
            status_reason: Some(BULK_ACTIVATION_STATUS_REASON.into()),
            ..parent(status::WORKFLOW_COMPLETED)
        };
        let cases = [
            // No parent yet: wait for the reconciler, never a grant to the account...
            case(vec![], vec![], "AwaitParent"),
            case(vec![grant("g1", status::DELETED)], vec![], "AwaitParent"),
            // ...but an account still entitled by its older grant stays so.
            case(vec![ours(status::ACTIVE)], vec![], "Done/account"),
            // Parent there, child not seen: look on the organization side, then wait.
            case(
                vec![],
                vec![parent(status::WORKFLOW_COMPLETED)],
                "Wait/ChildNotYet",
            ),
            case(
                vec![ours(status::ACTIVE)],
                vec![parent(status::WORKFLOW_COMPLETED)],
                "Wait/ChildNotYet",
            ),
            // The child, alone: the usual steps.
            case(
                vec![child(status::ACTIVE)],
                vec![bulk_parent.clone()],
                "Done/organization",
            ),
            case(
                vec![child(status::DISABLED)],
                vec![bulk_parent.clone()],
                "Wait/BulkActivation",
            ),
            case(
                vec![child(status::DISABLED)],
                vec![parent(status::WORKFLOW_COMPLETED)],
                "Activate/organization",
            ),
            // A failed child is repaired at once by a grant of ours (AWS promises no
            // re-issue), then cleared once ours is ACTIVE (a re-issue, where AWS makes one,
            // takes over later), a bounded number of times.
            case(
                vec![child(status::FAILED_WORKFLOW)],
                vec![bulk_parent.clone()],
                "Create/0",
            ),
            case(
                vec![child(status::FAILED_WORKFLOW), ours(status::DISABLED)],
                vec![bulk_parent.clone()],
                "Activate/account",
            ),
            case(
                vec![child(status::FAILED_WORKFLOW), ours(status::ACTIVE)],
                vec![bulk_parent.clone()],
                "DeleteChild",
            ),
            Case {
                replaced: true,
                ..case(
                    vec![child(status::FAILED_WORKFLOW), ours(status::ACTIVE)],
                    vec![bulk_parent.clone()],
                    "Done/account",
                )
            },
            Case {
                replaced: true,
                ..case(
                    vec![child(status::FAILED_WORKFLOW)],
                    vec![bulk_parent.clone()],
                    "Wait/ReplacedAlready",
                )
            },
            // A child that never comes (not re-issued, an OU grant that does not reach nested
            // OUs) is waited for `CHILD_WAIT_RECHECKS` re-checks, then repaired...
            Case {
                attempt: CHILD_WAIT_RECHECKS - 1,
                ..case(vec![], vec![bulk_parent.clone()], "Wait/ChildNotYet")
            },
            Case {
                attempt: CHILD_WAIT_RECHECKS,
                ..case(vec![], vec![bulk_parent.clone()], "Create/0")
            },
            // A child nobody promised (an OU grant above the account's own OU) is not waited
            // for once the organization side was read.
            Case {
                promised: false,
                ..case(vec![], vec![bulk_parent.clone()], "Create/0")
            },
            Case {
                promised: false,
                org_side_read: false,
                ..case(vec![], vec![bulk_parent.clone()], "FindChild")
            },
            Case {
                attempt: CHILD_WAIT_RECHECKS,
                org_side_read: false,
                ..case(vec![], vec![bulk_parent.clone()], "FindChild")
            },
            Case {
                attempt: CHILD_WAIT_RECHECKS,
                ..case(
                    vec![grant("g-old", status::DELETED)],
                    vec![bulk_parent.clone()],
                    "Create/1",
                )
            },
            // A child handed out once and deleted (after failing) is not promised again.
            case(
                vec![child(status::DELETED), ours(status::ACTIVE)],
                vec![bulk_parent.clone()],
                "Done/account",
            ),
            // ...and the repair, once ACTIVE, holds without a re-check chain.
            Case {
                attempt: CHILD_WAIT_RECHECKS,
                ..case(
                    vec![ours(status::ACTIVE)],
                    vec![bulk_parent.clone()],
                    "Done/account",
                )
            },
            // Migration: the child takes over from our active grant in one activation...
            case(
                vec![ours(status::ACTIVE), child(status::DISABLED)],
                vec![bulk_parent.clone()],
                "TakeOver",
            ),
            case(
                vec![ours(status::ACTIVE), conflict.clone()],
                vec![bulk_parent.clone()],
                "TakeOver",
            ),
            // ...then our grant goes, whatever state the takeover left it in.
            case(
                vec![replaced_reason, child(status::ACTIVE)],
                vec![bulk_parent.clone()],
                "Retire",
            ),
            case(
                vec![ours(status::ACTIVE), child(status::ACTIVE)],
                vec![bulk_parent.clone()],
                "Retire",
            ),
            case(
                vec![ours(status::DELETED), child(status::ACTIVE)],
                vec![bulk_parent.clone()],
                "Done/organization",
            ),
            // Someone else's per-account grant is never retired.
            case(
                vec![
                    GrantView {
                        name: "by-hand".into(),
                        ..ours(status::ACTIVE)
                    },
                    child(status::ACTIVE),
                ],
                vec![bulk_parent.clone()],
                "Done/organization",
            ),
            // A failed grant of ours is never replaced in these modes.
            case(vec![ours(status::FAILED_WORKFLOW)], vec![], "AwaitParent"),
        ];
        for mode in [Mode::Organization, Mode::Ou] {
            for c in &cases {
                let c = Case { mode, ..c.clone() };
                assert_eq!(name(&run(&c)), c.expect, "{mode:?}: own {:?}", c.own);
            }
        }
        // Our takeover was requested at the child's version: wait for it, do not repeat it.
        let mut c = case(
            vec![ours(status::ACTIVE), child(status::DISABLED)],
            vec![bulk_parent.clone()],
            "Wait/Activating",
        );
        c.mode = Mode::Organization;
        c.marks = vec![mark("g-child", "2", false)];
        assert_eq!(name(&run(&c)), c.expect);
        // Before the organization side was read, a child is looked for.
        let mut c = case(vec![ours(status::ACTIVE)], vec![bulk_parent], "FindChild");
        c.mode = Mode::Ou;
        c.org_side_read = false;
        assert_eq!(name(&run(&c)), c.expect);
        // The plan of a migration shows both steps.
        let takeover = Next::TakeOver {
            grant: child(status::DISABLED),
            replaces: ours(status::ACTIVE),
        };
        assert_eq!(
            takeover.planned_actions(),
            [
                "ActivateGrant(ALL_GRANTS_PERMITTED_BY_ISSUER)",
                "DeleteGrant"
            ]
        );
    }

    #[test]
    fn every_own_state_without_parent() {
        let cases = [
            case(vec![], vec![], "Create/0"),
            case(vec![grant("g1", status::ACTIVE)], vec![], "Done/account"),
            case(
                vec![grant("g1", status::DISABLED)],
                vec![],
                "Activate/account",
            ),
            case(
                vec![grant("g1", status::PENDING_ACCEPT)],
                vec![],
                "Accept/account",
            ),
            case(
                vec![grant("g1", status::PENDING_WORKFLOW)],
                vec![],
                "Wait/Workflow",
            ),
            case(
                vec![grant("g1", status::PENDING_DELETE)],
                vec![],
                "Wait/Workflow",
            ),
            case(
                vec![grant("g1", status::FAILED_WORKFLOW)],
                vec![],
                "Replace/1",
            ),
            case(vec![grant("g1", status::REJECTED)], vec![], "Create/1"),
            case(vec![grant("g1", status::DELETED)], vec![], "Create/1"),
            case(
                vec![grant("g1", status::DELETED), grant("g2", status::REJECTED)],
                vec![],
                "Create/2",
            ),
            // The best live grant wins over dead and weaker ones.
            case(
                vec![
                    grant("g1", status::REJECTED),
                    grant("g2", status::PENDING_WORKFLOW),
                    grant("g3", status::ACTIVE),
                ],
                vec![],
                "Done/account",
            ),
            // Another license's grants do not count.
            case(
                vec![GrantView {
                    license_arn: OTHER.into(),
                    ..grant("g9", status::ACTIVE)
                }],
                vec![],
                "Create/0",
            ),
        ];
        for c in &cases {
            assert_eq!(name(&run(c)), c.expect, "own {:?}", c.own);
        }
    }

    #[test]
    fn every_parent_state_without_a_child() {
        // Any non-terminal organization/OU grant covers the account: never a grant beside it.
        for (parent_status, read, expect) in [
            (status::PENDING_WORKFLOW, false, "FindChild"),
            (status::PENDING_WORKFLOW, true, "Wait/ChildNotYet"),
            (status::WORKFLOW_COMPLETED, true, "Wait/ChildNotYet"),
            (status::ACTIVE, true, "Wait/ChildNotYet"),
            (status::DISABLED, true, "Wait/ChildNotYet"),
            (status::PENDING_ACCEPT, true, "Wait/ChildNotYet"),
            (status::FAILED_WORKFLOW, true, "Fail/ParentFailed"),
            (status::PENDING_DELETE, true, "Create/0"),
            (status::REJECTED, true, "Create/0"),
            (status::DELETED, true, "Create/0"),
        ] {
            let mut c = case(vec![], vec![parent(parent_status)], expect);
            c.org_side_read = read;
            assert_eq!(name(&run(&c)), expect, "parent {parent_status}");
        }
        // A parent for another license does not cover this one.
        let other = GrantView {
            license_arn: OTHER.into(),
            ..parent(status::ACTIVE)
        };
        assert_eq!(name(&run(&case(vec![], vec![other], ""))), "Create/0");
    }

    #[test]
    fn every_child_state_under_every_parent_state() {
        for parent_status in [
            status::PENDING_WORKFLOW,
            status::WORKFLOW_COMPLETED,
            status::ACTIVE,
            status::DISABLED,
        ] {
            for (child_status, expect) in [
                (status::ACTIVE, "Done/organization"),
                (status::DISABLED, "Activate/organization"),
                (status::PENDING_ACCEPT, "Accept/organization"),
                (status::PENDING_WORKFLOW, "Wait/Workflow"),
                // A failed child is repaired by a grant of our own (no re-issue is promised).
                (status::FAILED_WORKFLOW, "Create/0"),
                // A dead child: no second one is promised; repaired by a grant of our own.
                (status::DELETED, "Create/0"),
            ] {
                let c = case(
                    vec![child(child_status)],
                    vec![parent(parent_status)],
                    expect,
                );
                assert_eq!(
                    name(&run(&c)),
                    expect,
                    "child {child_status} under parent {parent_status}"
                );
            }
        }
    }

    #[test]
    fn an_activation_never_counts_on_a_grantee_behavior_the_grantor_already_set() {
        const DGO: &str = "DISTRIBUTED_GRANTS_ONLY";
        let with = |b: Option<&str>| GrantView {
            activation_behavior: b.map(str::to_string),
            ..child(status::DISABLED)
        };
        let member = |b: Option<&str>| ActivateAs::Member(b.map(str::to_string));
        let cases = [
            // (carried, source, replacing, expected)
            (None, Source::Account, false, member(Some(DGO))),
            (None, Source::Organization, false, member(Some(DGO))),
            (Some(DGO), Source::Account, false, member(Some(DGO))),
            (Some(DGO), Source::Organization, false, member(None)),
            (
                Some(REPLACING_BEHAVIOR),
                Source::Organization,
                false,
                member(None),
            ),
            (
                None,
                Source::Organization,
                true,
                member(Some(REPLACING_BEHAVIOR)),
            ),
            (
                Some(REPLACING_BEHAVIOR),
                Source::Organization,
                true,
                member(None),
            ),
            (
                Some(DGO),
                Source::Organization,
                true,
                ActivateAs::Grantor(REPLACING_BEHAVIOR.to_string()),
            ),
        ];
        for (carried, source, replacing, expected) in cases {
            assert_eq!(
                activate_as(&with(carried), source, DGO, replacing),
                expected,
                "{carried:?} {source:?} replacing={replacing}"
            );
        }
    }

    #[test]
    fn switching_back_to_account_mode_takes_over_from_the_child_without_a_gap() {
        let parents = vec![parent(status::WORKFLOW_COMPLETED)];
        let ours = |st: &str| grant("g-ours", st);
        let run_with = |own: Vec<GrantView>, marks: Vec<ActivationMark>| {
            let mut c = case(own, parents.clone(), "");
            c.retiring = true;
            c.marks = marks;
            name(&run(&c))
        };
        // A grant of our own first, even beside an ACTIVE child...
        assert_eq!(run_with(vec![child(status::ACTIVE)], vec![]), "Create/0");
        assert_eq!(run_with(vec![], vec![]), "Create/0");
        // ...activated over the child in one step...
        assert_eq!(
            run_with(vec![child(status::ACTIVE), ours(status::DISABLED)], vec![]),
            "TakeOver"
        );
        assert_eq!(
            run_with(
                vec![child(status::ACTIVE), ours(status::DISABLED)],
                vec![mark("g-ours", "2", false)]
            ),
            "Wait/Activating"
        );
        // ...then ours is the account's grant; the child goes with the parent (the reconciler).
        assert_eq!(
            run_with(vec![child(status::DISABLED), ours(status::ACTIVE)], vec![]),
            "Done/account"
        );
        assert_eq!(
            run_with(vec![ours(status::PENDING_ACCEPT)], vec![]),
            "Accept/account"
        );
        // Not retiring: the child is the account's grant, as before.
        let c = case(vec![child(status::ACTIVE)], parents.clone(), "");
        assert_eq!(name(&run(&c)), "Done/organization");
    }

    #[test]
    fn child_is_recognised_without_parsing_parent_arn() {
        // Parent listed: ParentArn names it.
        let c = case(
            vec![child(status::ACTIVE)],
            vec![parent(status::ACTIVE)],
            "",
        );
        assert_eq!(name(&run(&c)), "Done/organization");
        // Parent not visible: not made from the license and not named like ours.
        let c = case(vec![child(status::ACTIVE)], vec![], "");
        assert_eq!(name(&run(&c)), "Done/organization");
        // Every reading of a child's ParentArn (the parent, the license, absent): a child while
        // an organization/OU grant covers the account; its name is not ours.
        for parent_arn in [PARENT, LICENSE, ""] {
            let child = GrantView {
                parent_arn: parent_arn.into(),
                ..child(status::FAILED_WORKFLOW)
            };
            let parents = [parent(status::WORKFLOW_COMPLETED)];
            assert_eq!(
                source_of(&child, &parents, NAME),
                Source::Organization,
                "{parent_arn:?}"
            );
        }
        // Every reading of a per-account grant's ParentArn (the license, something else): ours
        // by its name, whatever covers the account.
        for parent_arn in [
            LICENSE,
            "arn:aws:license-manager::294406891311:grant-root:l-1",
            PARENT,
            "",
        ] {
            let ours = GrantView {
                parent_arn: parent_arn.into(),
                ..grant("g-x", status::ACTIVE)
            };
            for parents in [vec![], vec![parent(status::WORKFLOW_COMPLETED)]] {
                assert_eq!(
                    source_of(&ours, &parents, NAME),
                    Source::Account,
                    "{parent_arn:?} {}",
                    parents.len()
                );
            }
        }
        // A grant made by hand (another name) with nothing covering the account.
        let by_hand = GrantView {
            name: "made-by-hand".into(),
            ..grant("g-h", status::ACTIVE)
        };
        assert_eq!(source_of(&by_hand, &[], NAME), Source::Account);
    }

    #[test]
    fn both_a_child_and_an_own_grant_prefer_the_stronger_then_the_child() {
        let c = case(
            vec![grant("g1", status::DISABLED), child(status::DISABLED)],
            vec![parent(status::WORKFLOW_COMPLETED)],
            "",
        );
        assert_eq!(name(&run(&c)), "Activate/organization");
        let c = case(
            vec![grant("g1", status::ACTIVE), child(status::DISABLED)],
            vec![parent(status::WORKFLOW_COMPLETED)],
            "",
        );
        assert_eq!(name(&run(&c)), "Done/account");
    }

    #[test]
    fn asynchronous_activation_is_not_requested_twice() {
        let disabled = grant("g1", status::DISABLED);
        let conflicted = GrantView {
            status_reason: Some(
                "This account already has an active license for the same product from another subscription".into(),
            ),
            ..grant("g1", status::DISABLED)
        };
        for (g, marks, expect) in [
            // Our activation made version 2 and the grant is still there: it is in progress.
            (
                disabled.clone(),
                vec![mark("g1", "2", false)],
                "Wait/Activating",
            ),
            (
                disabled.clone(),
                vec![mark("g1", "", false)],
                "Wait/Activating",
            ),
            // The version moved on since (deactivated by someone?): activate again.
            (
                disabled.clone(),
                vec![mark("g1", "1", false)],
                "Activate/account",
            ),
            // A mark for another grant says nothing about this one.
            (
                disabled.clone(),
                vec![mark("g2", "2", false)],
                "Activate/account",
            ),
            (disabled.clone(), vec![], "Activate/account"),
            // The conflict after our activation: stop, never loop.
            (
                conflicted.clone(),
                vec![mark("g1", "2", false)],
                "Fail/Conflict",
            ),
            (
                conflicted.clone(),
                vec![mark("g1", "1", false)],
                "Fail/Conflict",
            ),
            // An old conflict reason with no activation of ours: one try (it may be resolved).
            (conflicted.clone(), vec![], "Activate/account"),
        ] {
            let mut c = case(vec![g.clone()], vec![], expect);
            c.marks = marks.clone();
            assert_eq!(name(&run(&c)), expect, "{g:?} {marks:?}");
        }
    }

    #[test]
    fn an_activation_another_run_requested_is_waited_for_a_bounded_number_of_rechecks() {
        let ours_elsewhere = GrantView {
            status_reason: Some(ACTIVATION_STATUS_REASON.into()),
            version: "3".into(),
            ..grant("g1", status::DISABLED)
        };
        let deactivated = GrantView {
            status_reason: Some("ct-entitlements: deactivated (offboarding)".into()),
            ..ours_elsewhere.clone()
        };
        // (grant, marks, attempt, expected)
        for (g, marks, attempt, expect) in [
            // Another container's activation (version 3, ours made 2): wait, do not restart.
            (
                ours_elsewhere.clone(),
                vec![mark("g1", "2", false)],
                0,
                "Wait/ActivatingElsewhere",
            ),
            (
                ours_elsewhere.clone(),
                vec![],
                1,
                "Wait/ActivatingElsewhere",
            ),
            // Our own activation at this version: the usual wait.
            (
                ours_elsewhere.clone(),
                vec![mark("g1", "3", false)],
                5,
                "Wait/Activating",
            ),
            // Still DISABLED after the waits: a reason left over; activate.
            (
                ours_elsewhere.clone(),
                vec![],
                DOCUMENTED_ELSEWHERE_WAITS,
                "Activate/account",
            ),
            // Deactivated (offboarding or by hand): activate at once.
            (deactivated.clone(), vec![], 0, "Activate/account"),
            (grant("g1", status::DISABLED), vec![], 0, "Activate/account"),
        ] {
            let mut c = case(vec![g.clone()], vec![], expect);
            c.marks = marks.clone();
            c.attempt = attempt;
            assert_eq!(name(&run(&c)), expect, "{g:?} {marks:?} attempt {attempt}");
        }
    }

    #[test]
    fn bulk_activated_parent_is_waited_for_once_then_the_child_is_activated() {
        let bulk = GrantView {
            activation_behavior: Some("DISTRIBUTED_GRANTS_ONLY".into()),
            ..parent(status::WORKFLOW_COMPLETED)
        };
        let c = case(vec![child(status::DISABLED)], vec![bulk.clone()], "");
        assert_eq!(name(&run(&c)), "Wait/BulkActivation");
        let mut c = case(vec![child(status::DISABLED)], vec![bulk], "");
        c.marks = vec![mark("g-child", "2", true)];
        assert_eq!(name(&run(&c)), "Activate/organization");
        // A parent changed by ct-entitlements' bulk activation (its reason) counts too.
        let bumped = GrantView {
            version: "2".into(),
            status_reason: Some(BULK_ACTIVATION_STATUS_REASON.into()),
            ..parent(status::WORKFLOW_COMPLETED)
        };
        let c = case(vec![child(status::DISABLED)], vec![bumped.clone()], "");
        assert_eq!(name(&run(&c)), "Wait/BulkActivation");
        // Changed by someone else (an operator's bulk deactivation shows exactly so: AWS keeps
        // the parent WORKFLOW_COMPLETED): the child is left DISABLED, in every mode, under a
        // parent named by ParentArn or not; an account entitled by its own grant keeps it.
        let paused = GrantView {
            status_reason: Some("paused by the licensing team".into()),
            ..bumped.clone()
        };
        for mode in [Mode::Account, Mode::Organization, Mode::Ou] {
            for parent_arn in [PARENT, LICENSE] {
                let child = GrantView {
                    parent_arn: parent_arn.into(),
                    ..child(status::DISABLED)
                };
                let mut c = case(vec![child.clone()], vec![paused.clone()], "");
                c.mode = mode;
                assert_eq!(name(&run(&c)), "Fail/OperatorDeactivated", "{mode:?}");
                c.marks = vec![mark("g-child", "2", true)];
                assert_eq!(name(&run(&c)), "Fail/OperatorDeactivated", "{mode:?}");
                if mode != Mode::Account {
                    let mut c = case(
                        vec![child, grant("g-ours", status::ACTIVE)],
                        vec![paused.clone()],
                        "",
                    );
                    c.mode = mode;
                    assert_eq!(name(&run(&c)), "Done/account", "{mode:?}");
                }
            }
        }
        // Nor is anything repaired over it: a failed or missing child stays so.
        for own in [vec![child(status::FAILED_WORKFLOW)], vec![]] {
            let mut c = case(own.clone(), vec![paused.clone()], "");
            c.mode = Mode::Organization;
            c.attempt = CHILD_WAIT_RECHECKS;
            assert_eq!(name(&run(&c)), "Fail/OperatorDeactivated", "{own:?}");
        }
        // An ACTIVE child under it is simply the account's grant.
        let c = case(vec![child(status::ACTIVE)], vec![paused], "");
        assert_eq!(name(&run(&c)), "Done/organization");
        // Without bulk activation the child is activated individually at once.
        let c = case(
            vec![child(status::DISABLED)],
            vec![parent(status::WORKFLOW_COMPLETED)],
            "",
        );
        assert_eq!(name(&run(&c)), "Activate/organization");
    }

    #[test]
    fn failed_child_is_repaired_then_cleared_a_bounded_number_of_times() {
        let parents = vec![parent(status::WORKFLOW_COMPLETED)];
        let failed = child(status::FAILED_WORKFLOW);
        let ours = |st: &str| grant("g-ours", st);
        for mode in [Mode::Account, Mode::Organization, Mode::Ou] {
            let run_in = |own: Vec<GrantView>, replaced: bool| {
                let mut c = case(own, parents.clone(), "");
                c.mode = mode;
                c.replaced = replaced;
                name(&run(&c))
            };
            // Repaired at once by a grant of ours, never waiting for a re-issue...
            assert_eq!(run_in(vec![failed.clone()], false), "Create/0", "{mode:?}");
            assert_eq!(
                run_in(vec![failed.clone()], true),
                "Wait/ReplacedAlready",
                "{mode:?}"
            );
            // ...which is driven to ACTIVE...
            assert_eq!(
                run_in(vec![failed.clone(), ours(status::DISABLED)], false),
                "Activate/account",
                "{mode:?}"
            );
            // ...then the failed child is cleared (a re-issue, where AWS makes one, can come),
            // once per run and a bounded number of times.
            assert_eq!(
                run_in(vec![failed.clone(), ours(status::ACTIVE)], false),
                "DeleteChild",
                "{mode:?}"
            );
            assert_eq!(
                run_in(vec![failed.clone(), ours(status::ACTIVE)], true),
                "Done/account",
                "{mode:?}"
            );
            let mut own = vec![failed.clone(), ours(status::ACTIVE)];
            for i in 0..DOCUMENTED_GENERATIONS - 1 {
                own.push(GrantView {
                    arn: format!("g-dead-child-{i}"),
                    ..child(status::DELETED)
                });
            }
            assert_eq!(run_in(own, false), "Done/account", "{mode:?}");
            // Our own grants count their generations as ever.
            let mut own = vec![failed.clone()];
            for i in 0..DOCUMENTED_GENERATIONS {
                own.push(GrantView {
                    arn: format!("g-dead-ours-{i}"),
                    ..ours(status::DELETED)
                });
            }
            assert_eq!(run_in(own, false), "Fail/TooMany5", "{mode:?}");
        }
    }

    #[test]
    fn failed_workflow_is_replaced_a_bounded_number_of_times() {
        let mut own = vec![grant("g-failed", status::FAILED_WORKFLOW)];
        assert_eq!(name(&run(&case(own.clone(), vec![], ""))), "Replace/1");
        // Not twice in one invocation.
        let mut c = case(own.clone(), vec![], "");
        c.replaced = true;
        assert_eq!(name(&run(&c)), "Wait/ReplacedAlready");
        for i in 0..DOCUMENTED_GENERATIONS - 2 {
            own.push(grant(&format!("g-dead-{i}"), status::DELETED));
        }
        assert_eq!(name(&run(&case(own.clone(), vec![], ""))), "Replace/4");
        own.push(grant("g-dead-last", status::DELETED));
        assert_eq!(name(&run(&case(own.clone(), vec![], ""))), "Fail/TooMany5");
        // Only dead grants and nothing live: bounded too.
        own.retain(|g| g.status == status::DELETED);
        assert_eq!(own.len(), DOCUMENTED_GENERATIONS - 1);
        own.push(grant("g-rejected", status::REJECTED));
        assert_eq!(name(&run(&case(own, vec![], ""))), "Fail/TooMany5");
    }

    #[test]
    fn planned_actions_of_each_step() {
        let g = grant("g1", status::DISABLED);
        for (next, expect) in [
            (
                Next::Create { generation: 0 },
                vec!["CreateGrant", "ActivateGrant"],
            ),
            (
                Next::Accept {
                    grant: g.clone(),
                    source: Source::Account,
                },
                vec!["AcceptGrant", "ActivateGrant"],
            ),
            (
                Next::Activate {
                    grant: g.clone(),
                    source: Source::Account,
                },
                vec!["ActivateGrant"],
            ),
            (
                Next::Replace {
                    failed: g.clone(),
                    generation: 1,
                },
                vec!["DeleteGrant", "CreateGrant", "ActivateGrant"],
            ),
            (
                Next::Wait {
                    grant: g.clone(),
                    source: Source::Account,
                    reason: WaitReason::Workflow,
                },
                vec![],
            ),
            (Next::FindChild { parent: g.clone() }, vec![]),
        ] {
            assert_eq!(next.planned_actions(), expect, "{next:?}");
        }
    }
}
