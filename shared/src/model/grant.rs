//! A License Manager grant as ct-entitlements reads it, and the facts about grants that both
//! the AWS adapters (`aws`) and the decisions (`decide`) rely on. Plain data: no AWS SDK types
//! here (`aws` turns the SDK's `Grant` into a [`GrantView`]).

/// Grant states, as License Manager spells them.
pub(crate) mod status {
    pub(crate) const ACTIVE: &str = "ACTIVE";
    pub(crate) const DISABLED: &str = "DISABLED";
    pub(crate) const PENDING_ACCEPT: &str = "PENDING_ACCEPT";
    pub(crate) const PENDING_WORKFLOW: &str = "PENDING_WORKFLOW";
    pub(crate) const WORKFLOW_COMPLETED: &str = "WORKFLOW_COMPLETED";
    pub(crate) const PENDING_DELETE: &str = "PENDING_DELETE";
    pub(crate) const FAILED_WORKFLOW: &str = "FAILED_WORKFLOW";
    pub(crate) const REJECTED: &str = "REJECTED";
    pub(crate) const DELETED: &str = "DELETED";
}

/// The parts of a grant the engine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantView {
    pub arn: String,
    pub name: String,
    pub license_arn: String,
    pub status: String,
    pub version: String,
    pub parent_arn: String,
    pub grantee: String,
    pub status_reason: Option<String>,
    /// `Options.ActivationOverrideBehavior`, set when the grant was activated with one (for an
    /// organization grant: bulk-activated).
    pub activation_behavior: Option<String>,
}

/// The words License Manager uses when a second license for a product cannot become active.
const CONFLICT_MARKER: &str = "already has an active license";

/// Terminal states: such a grant is never revived; the grantor makes a new one.
pub(crate) fn is_terminal(status: &str) -> bool {
    matches!(status, status::REJECTED | status::DELETED)
}

/// Whether a `StatusReason` reports the one-active-license-per-product conflict.
pub(crate) fn is_conflict_reason(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| r.to_ascii_lowercase().contains(CONFLICT_MARKER))
}

/// The `StatusReason` ct-entitlements sends with an activation. A `DISABLED` grant carrying it
/// is being activated by some run (another container, an earlier chain): waited for, not
/// activated again, for [`crate::decide::ELSEWHERE_ACTIVATION_WAITS`] re-checks. Re-activating
/// it would restart the activation where License Manager restarts it, and concurrent runs would
/// take turns restarting it for ever.
pub(crate) const ACTIVATION_STATUS_REASON: &str = "ct-entitlements: activation requested";

/// The `StatusReason` ct-entitlements sends with a bulk activation (what a parent carries after
/// it, and only after it).
pub(crate) const BULK_ACTIVATION_STATUS_REASON: &str =
    "ct-entitlements: bulk activation (LICENSE_DISTRIBUTION)";

/// The grant name of a parent: `<prefix>-organization` or `<prefix>-<ou id>`.
pub(crate) fn parent_grant_name(prefix: &str, principal: &str) -> String {
    let tail = principal.rsplit('/').next().unwrap_or_default();
    if tail.starts_with("ou-") {
        format!("{prefix}-{tail}")
    } else {
        format!("{prefix}-organization")
    }
}
