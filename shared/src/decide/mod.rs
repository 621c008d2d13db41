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
//!
//! Here: the types and `decide`, the outline of the decision. Its steps: `scene` (what is read
//! off the observation once: the account's grants, the covering ones, where each comes from,
//! dead generations), `children` (switching back, migration, a child that failed or never came),
//! `drive` (one grant by its own status; no live grant at all). `facts` holds what is read off
//! single grants (`source_of`, `changed_by_operator`, `looks_bulk_activated`, `activate_as`, …).

mod children;
mod drive;
mod facts;
mod scene;

use crate::config::Mode;
use crate::inbound::ActivationMark;
use crate::model::GrantView;
use scene::{Scene, Step};

/// Facts read off grants, used by `decide` and elsewhere.
pub(crate) use facts::activate_as;
pub(crate) use facts::changed_by_operator;
pub(crate) use facts::looks_bulk_activated;
pub(crate) use facts::source_of;
pub(crate) use facts::REPLACING_BEHAVIOR;

pub(crate) use crate::model::grant::is_conflict_reason;
pub(crate) use crate::model::grant::is_terminal;
/// The grant model `decide` reasons over, named here too (`crate::decide::status`, …).
pub(crate) use crate::model::grant::status;
pub(crate) use crate::model::grant::ACTIVATION_STATUS_REASON;
pub(crate) use crate::model::grant::BULK_ACTIVATION_STATUS_REASON;

/// How many grants one account may get for one license before a failing one is no longer
/// replaced automatically (rejections and failed workflows both count).
pub(crate) const MAX_GRANT_GENERATIONS: usize = 5;

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
pub(crate) const ELSEWHERE_ACTIVATION_WAITS: u32 = 2;

/// Everything known about one (account, license) when deciding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observation<'a> {
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
pub(crate) enum Failure {
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
pub(crate) enum Next {
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
    pub(crate) fn planned_actions(&self) -> Vec<String> {
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
pub(crate) const CHILD_WAIT_RECHECKS: u32 = 2;

/// How an activation is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ActivateAs {
    /// By the member account (the grantee), with this override behavior or none.
    Member(Option<String>),
    /// By the management account (the grantor), with this override behavior.
    Grantor(String),
}

/// The next step. Pure: the same observation always gives the same answer.
///
/// The steps, in order: switching back to account mode (a grant of our own over the child), or
/// else the child beside or instead of a grant of our own (migration, repair); where neither
/// decides, the chosen grant (or the strongest live one) is driven by its own status; with no
/// live grant, the covering grant's child is awaited or a grant of our own is created.
pub(crate) fn decide(o: &Observation<'_>) -> Next {
    let scene = Scene::new(o);
    let step = if !o.mode.has_parent_grant() && o.retiring {
        scene.switching_back()
    } else {
        scene.beside_child()
    };
    let chosen = match step {
        Step::Decided(next) => return *next,
        Step::Drive(grant) => Some(grant),
        Step::Open => None,
    };
    match chosen.or_else(|| scene.best()) {
        Some(grant) => scene.drive(grant),
        None => scene.nothing_live(),
    }
}

#[cfg(test)]
mod tests;
