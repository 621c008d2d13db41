//! Facts `decide` reads off grants: where an account's grant comes from, whether an
//! organization/OU grant covers the account, was bulk-activated or changed by an operator,
//! which activation was requested earlier, and who sends an activation with which behavior.
//! Each is a pure function of one or a few grants; `reconcile`, `distribution` and `engine`
//! use the public ones too (as `crate::decide::…`).

use super::{is_terminal, status, ActivateAs, Source, BULK_ACTIVATION_STATUS_REASON};
use crate::inbound::ActivationMark;
use crate::model::GrantView;

/// Preference among several live grants for one account and license.
pub(super) fn rank(status: &str) -> u8 {
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

/// `ALL_GRANTS_PERMITTED_BY_ISSUER`, the behavior that replaces the account's other active
/// grants of the product in the same activation.
pub(crate) const REPLACING_BEHAVIOR: &str = "ALL_GRANTS_PERMITTED_BY_ISSUER";

/// Who activates `grant`, with which override behavior. AWS lets a grantee specify a behavior
/// only "if the grantor … doesn't specify", and does not document what happens when it does
/// anyway (honoured, ignored or rejected: `granteeOverride`); so where the grant already carries
/// a behavior (set by the grantor's bulk activation of its parent) the grantee sends none, and a
/// takeover (`replacing`: the account's older grant must go in the same step) that needs a
/// behavior the grant does not carry is sent by the grantor, whose own behavior always applies.
pub(crate) fn activate_as(
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
pub(crate) fn changed_by_operator(parent: &GrantView) -> bool {
    parent.version.parse::<u64>().is_ok_and(|v| v > 1)
        && parent.status_reason.as_deref() != Some(BULK_ACTIVATION_STATUS_REASON)
}

/// The covering grant that was changed by an operator and that `child` is under: the one its
/// `ParentArn` names, or (where it names none of them: undocumented) any covering one.
pub(super) fn paused_parent<'a>(
    child: &GrantView,
    parents: &[&'a GrantView],
) -> Option<&'a GrantView> {
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
pub(crate) fn looks_bulk_activated(parent: &GrantView) -> bool {
    parent.activation_behavior.is_some() || parent.version.parse::<u64>().is_ok_and(|v| v > 1)
}

/// The activation requested earlier for `grant`, if any.
pub(super) fn mark_of<'a>(
    activations: &'a [ActivationMark],
    grant: &GrantView,
) -> Option<&'a ActivationMark> {
    activations.iter().find(|m| m.grant_arn == grant.arn)
}

/// Whether an activation was requested at the grant's current version (or at an unknown one).
pub(super) fn at_version(mark: &ActivationMark, grant: &GrantView) -> bool {
    mark.version.is_empty() || mark.version == grant.version
}

/// Whether `parent` still covers the account: not terminal and not on its way out.
pub(super) fn covers(parent: &GrantView) -> bool {
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
pub(crate) fn source_of(grant: &GrantView, parents: &[GrantView], own_grant_name: &str) -> Source {
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
