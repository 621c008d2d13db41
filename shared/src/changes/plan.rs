//! What a batch's hints decide, pure: each account's step ([`plan`]), the lane of its run
//! ([`lane_of`]) and what the looks decide ([`after_looks`]).

use crate::aws::GrantView;
use crate::error::Error;
use crate::reconcile::{after_look, hint_action, GrantHint, HintAction};
use crate::report::ErrorReport;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The queue a run goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// The onboarding queue: a grant completed its workflow and waits on ct-entitlements (an
    /// acceptance, an activation), to be done within seconds.
    Now,
    /// The backfill queue (`BACKFILL_QUEUE_URL`; the onboarding queue without one): a grant
    /// failed or went away, so the run creates one, whose workflow takes its own time. It is
    /// the backfill's kind of work: during a backfill, the account's own backfill message waits
    /// there already, and new accounts never wait behind it (issue 17 §3: at 1,000 accounts,
    /// the failed account-level grants of the first reconcile made the onboarding queue do the
    /// backfill's work a second time).
    Backfill,
}

/// The lane of a run asked for by a grant in `status`. Pure.
pub(crate) fn lane_of(status: &str) -> Lane {
    use crate::decide::status::{DELETED, FAILED_WORKFLOW, REJECTED};
    match status {
        FAILED_WORKFLOW | REJECTED | DELETED => Lane::Backfill,
        _ => Lane::Now,
    }
}

/// What a batch's hints about one account lead to. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A grant waits on ct-entitlements: run the account, no call needed. Why (a grant and
    /// its status), and on which queue.
    Run(String, Lane),
    /// Nothing for a run to do now, and why.
    Nothing(String),
    /// These grants (ARNs) say whose move it is: `GetGrant` each.
    Look(Vec<String>),
    /// The account's listings decide ([`crate::reconcile::settled`]).
    Read,
}

/// The step for one account from every hint a batch holds about it. Per grant, the statuses
/// its events name: `PENDING_WORKFLOW` is dropped beside any other (it comes first), one
/// action left is that action ([`hint_action`]), several (`PENDING_ACCEPT` and `DISABLED`: the
/// grant moved on within the batch) make the grant a look, since the order of a standard
/// queue's messages proves nothing. A hint whose grant was read already (`seen`) is a look
/// answered from it. Then the account: any grant to run → run; any grant gone or unnamed → the
/// listings; any grant to look at → those; else nothing.
pub(crate) fn plan(hints: &[&GrantHint]) -> Step {
    use crate::decide::status::PENDING_WORKFLOW;
    let mut by_grant: BTreeMap<Option<&str>, BTreeSet<Option<&str>>> = BTreeMap::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for hint in hints {
        let grant = hint.grant.as_deref();
        if let (Some(arn), Some(_)) = (grant, &hint.seen) {
            seen.insert(arn);
        }
        by_grant
            .entry(grant)
            .or_default()
            .insert(hint.status.as_deref());
    }
    let (mut run, mut read, mut look, mut nothing): (Option<(String, Lane)>, _, _, _) =
        (None, false, Vec::new(), None);
    for (grant, mut statuses) in by_grant {
        if statuses.len() > 1 {
            statuses.remove(&Some(PENDING_WORKFLOW));
        }
        let actions: BTreeSet<HintAction> = statuses
            .iter()
            .map(|s| hint_action(*s, grant.is_some()))
            .collect();
        let action = match (actions.len(), grant) {
            (1, _) => actions.into_iter().next().unwrap_or(HintAction::Read),
            (_, Some(_)) => HintAction::Look,
            (_, None) => HintAction::Read,
        };
        let action = match (action, grant) {
            // Read already: what it showed decides, as a look.
            (HintAction::Run | HintAction::Nothing, Some(arn)) if seen.contains(arn) => {
                HintAction::Look
            }
            (action, _) => action,
        };
        match (action, grant) {
            (HintAction::Run, _) => {
                let status = statuses.iter().flatten().next().copied().unwrap_or("?");
                let why = format!("{} {status}", grant.unwrap_or("a grant"));
                // A completion anywhere in the account puts the run on the fast lane.
                match (&run, lane_of(status)) {
                    (Some((_, Lane::Now)), _) => {}
                    (Some(_), Lane::Backfill) => {}
                    (_, lane) => run = Some((why, lane)),
                }
            }
            (HintAction::Read, _) | (HintAction::Look, None) => read = true,
            (HintAction::Look, Some(arn)) => look.push(arn.to_string()),
            (HintAction::Nothing, _) => {
                nothing.get_or_insert_with(|| {
                    let status = statuses.iter().flatten().next().copied().unwrap_or("?");
                    format!("its grant is {status}")
                });
            }
        }
    }
    if let Some((why, lane)) = run {
        Step::Run(why, lane)
    } else if read {
        Step::Read
    } else if !look.is_empty() {
        Step::Look(look)
    } else {
        Step::Nothing(nothing.unwrap_or_else(|| "no grant named".into()))
    }
}

/// Why an account's chain makes its step moot before any call, or `None` (the step goes on:
/// its looks or listings decide, then [`crate::chain::gate`]). Pure.
///
/// A queued run, or a running run marked already: no event starts anything beside them, so
/// whatever the looks said, nothing would be sent. A waiting chain is not enough: the grant an
/// event says is gone may be what it waits on (a failed child's deletion, before its repair),
/// and the listings then bring its re-check forward. (Setting those aside was measured at
/// 1,000 accounts: 100 reads saved, 10 grants left to the 300 s re-check.)
pub(crate) fn set_aside(gate: &crate::chain::Gate, step: &Step) -> Option<&'static str> {
    match (gate, step) {
        (_, Step::Nothing(_)) => None,
        (crate::chain::Gate::Skip(why), _) => Some(why),
        _ => None,
    }
}

/// The grants an account's look still needs read before [`after_looks`] can decide it, given
/// those read so far (`views`): each of its grants not read yet, and the parent (a grant ARN)
/// of each of its DISABLED grants not read yet. Empty: it can be decided. Pure.
pub(crate) fn still_to_read(
    arns: &[String],
    views: &HashMap<String, Result<GrantView, Error>>,
) -> Vec<String> {
    use crate::decide::status::DISABLED;
    let mut missing = Vec::new();
    for arn in arns {
        match views.get(arn) {
            None => missing.push(arn.clone()),
            Some(Ok(g))
                if g.status == DISABLED
                    && crate::ids::is_grant_arn(&g.parent_arn)
                    && !views.contains_key(&g.parent_arn) =>
            {
                missing.push(g.parent_arn.clone());
            }
            _ => {}
        }
    }
    missing
}

/// What an account's looks decide.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Run the account, why, and on which queue.
    Run(String, Lane),
    Skip(String),
    /// A grant went away (deleted, rejected, unreadable): the account's listings decide.
    Read,
    /// A read failed on something retryable.
    Retry(ErrorReport),
}

/// The verdict for an account from the grants it asked to look at, as read (and their parents,
/// for a DISABLED grant): any grant a run acts on → run ([`after_look`]); else a failed read →
/// retry; else a grant gone → the listings; else nothing, with the first grant's reason. Pure.
pub(crate) fn after_looks(
    arns: &[String],
    views: &HashMap<String, Result<GrantView, Error>>,
) -> Verdict {
    use crate::decide::status::{DELETED, DISABLED, REJECTED};
    let (mut retry, mut read, mut skip) = (None, false, None);
    for arn in arns {
        let grant = match views.get(arn) {
            Some(Ok(g)) => g,
            Some(Err(e)) if e.retry() == crate::Retry::Retryable => {
                retry.get_or_insert_with(|| ErrorReport::from(e));
                continue;
            }
            _ => {
                read = true;
                continue;
            }
        };
        if matches!(grant.status.as_str(), DELETED | REJECTED) {
            read = true;
            continue;
        }
        let parent = match views.get(&grant.parent_arn) {
            Some(Ok(p)) if grant.status == DISABLED => Some(p),
            Some(Err(e)) if grant.status == DISABLED && e.retry() == crate::Retry::Retryable => {
                retry.get_or_insert_with(|| ErrorReport::from(e));
                continue;
            }
            _ => None,
        };
        match after_look(grant, parent) {
            None => {
                return Verdict::Run(
                    format!(
                        "{arn} {}{}",
                        grant.status,
                        parent
                            .map_or_else(String::new, |p| format!(" under {} {}", p.arn, p.status))
                    ),
                    lane_of(&grant.status),
                )
            }
            Some(why) => {
                skip.get_or_insert(why);
            }
        }
    }
    match (retry, read, skip) {
        (Some(e), _, _) => Verdict::Retry(e),
        (None, true, _) => Verdict::Read,
        (None, false, why) => Verdict::Skip(why.unwrap_or_else(|| "no grant to look at".into())),
    }
}
