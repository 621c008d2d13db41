//! What a License Manager `Grant Change` event says of a grant, and whether its account needs a
//! run now: from the status alone ([`hint_action`]), then the grant ([`after_look`]), then the
//! account's listings ([`settled`]).

use super::listings::settled;
use crate::aws::{self, GrantView, OrgInfo};
use crate::engine::Engine;
use crate::error::Error;
use crate::inbound::GrantHint;
use crate::report::CallLog;

/// What a change event's hint leads to, before any call ([`hint_action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum HintAction {
    /// The grant waits on ct-entitlements (a workflow completed: accept, or replace a failure).
    Run,
    /// Nothing to do: ACTIVE, or waiting on License Manager (a workflow, a deletion).
    Nothing,
    /// `DISABLED`, or no status: the grant itself says whose move it is (`GetGrant`).
    Look,
    /// Deleted, rejected, or no grant named: the account's listings decide ([`needs_run_now`](super::index::needs_run_now)).
    Read,
}

/// The first step for a `Grant Change` hint, from its status alone. Pure.
pub(crate) fn hint_action(status: Option<&str>, grant_named: bool) -> HintAction {
    use crate::decide::status::*;
    match status {
        Some(PENDING_ACCEPT | FAILED_WORKFLOW) => HintAction::Run,
        Some(ACTIVE | PENDING_WORKFLOW | PENDING_DELETE | WORKFLOW_COMPLETED) => {
            HintAction::Nothing
        }
        Some(DISABLED) | None if grant_named => HintAction::Look,
        _ => HintAction::Read,
    }
}

/// Whether a grant `GetGrant` showed (and its parent's, for an account-level grant under an
/// organization/OU grant) leaves a run something to do now: `None` (run) or why not. Pure.
pub(crate) fn after_look(grant: &GrantView, parent: Option<&GrantView>) -> Option<String> {
    use crate::decide::status::*;
    match grant.status.as_str() {
        // A failed workflow is replaced or repaired now. (Leaving a failed account-level grant
        // to the backfill or the account's re-check was measured: `make scale` at 203 accounts
        // then had 303 of 306 grants ACTIVE 270 s after the backfill's first pass, where
        // running it had all of them in 50 s.)
        PENDING_ACCEPT | FAILED_WORKFLOW => None,
        ACTIVE => Some("ACTIVE".into()),
        PENDING_WORKFLOW | PENDING_DELETE | WORKFLOW_COMPLETED => {
            Some(format!("{} (License Manager's move)", grant.status))
        }
        DISABLED
            if grant.status_reason.as_deref() == Some(crate::decide::ACTIVATION_STATUS_REASON) =>
        {
            Some("DISABLED while the activation ct-entitlements asked for proceeds".into())
        }
        DISABLED => match parent {
            Some(p) if crate::decide::changed_by_operator(p) => Some(
                "DISABLED under an organization/OU grant someone else changed (held back)".into(),
            ),
            Some(p) if crate::decide::looks_bulk_activated(p) => Some(
                "DISABLED while the bulk activation of its organization/OU grant reaches it".into(),
            ),
            _ => None,
        },
        // Deleted or rejected: the account's listings decide (the caller reads them).
        _ => None,
    }
}

/// Whether the account of a `Grant Change` hint needs a run now (`None`) or not (why): the
/// event's status where it says enough (no call), else the grant and its parent (`GetGrant`,
/// skipped when the event named only the grant and it was read already), else the account's
/// listings ([`settled`]).
pub(super) async fn triage(
    engine: &Engine,
    org: &OrgInfo,
    hint: &GrantHint,
    calls: &CallLog,
) -> Result<Option<String>, Error> {
    let lm = &engine.clients().license_manager;
    match (
        hint_action(hint.status.as_deref(), hint.grant.is_some()),
        &hint.grant,
    ) {
        (HintAction::Run, _) => Ok(None),
        (HintAction::Nothing, _) => Ok(Some(format!(
            "its grant is {}",
            hint.status.as_deref().unwrap_or("?")
        ))),
        (HintAction::Look, Some(arn)) => {
            let grant = match &hint.seen {
                Some(seen) => seen.clone(),
                None => aws::get_grant(lm, arn, calls).await?,
            };
            if !matches!(
                grant.status.as_str(),
                crate::decide::status::DELETED | crate::decide::status::REJECTED
            ) {
                let parent = match grant.parent_arn.as_str() {
                    p if crate::ids::is_grant_arn(p) && grant.status == "DISABLED" => {
                        Some(aws::get_grant(lm, p, calls).await?)
                    }
                    _ => None,
                };
                return Ok(after_look(&grant, parent.as_ref()));
            }
            settled(engine, org, &hint.account, calls).await
        }
        _ => settled(engine, org, &hint.account, calls).await,
    }
}

#[cfg(test)]
mod tests;
