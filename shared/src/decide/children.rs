//! The steps where an account has, or should have, an account-level grant under an
//! organization/OU grant (a "child") beside or instead of a grant of ct-entitlements' own:
//! switching back to account mode, migrating to organization/OU mode, and repairing a child
//! that failed or never came.
//!
//! In organization/OU mode the child under a parent is the account's grant. A grant of
//! ct-entitlements' own keeps the account entitled where no working child is there (an older
//! per-account grant during a migration, or a repair) until a child is ACTIVE; then it goes. In
//! every mode a child that failed, or never came, is repaired by a grant of our own: AWS
//! promises children to accounts that join the organization, not a re-issue after a failure
//! nor a child in a nested OU, and the engine never waits for a grant nobody promised for
//! longer than `CHILD_WAIT_RECHECKS` re-checks.

use super::facts::{changed_by_operator, paused_parent};
use super::scene::{Scene, Step};
use super::{status, Failure, Next, Source, WaitReason, MAX_GRANT_GENERATIONS};
use crate::model::GrantView;

impl<'a> Scene<'a> {
    /// Account mode while a parent of ct-entitlements' own still covers the account: a grant of
    /// our own, activated over the child (the replacing behavior disables the child in the same
    /// step, so the account is never without one).
    pub(super) fn switching_back(&self) -> Step<'a> {
        match (self.ours(), self.active_child()) {
            (None, _) => Step::decided(self.repair()),
            (Some(ours), Some(child)) if ours.status == status::DISABLED => {
                Step::decided(self.take_over(ours, Source::Account, child))
            }
            (Some(ours), _) => Step::Drive(ours),
        }
    }

    /// The account's child and grant of our own, as far as they decide the step.
    pub(super) fn beside_child(&self) -> Step<'a> {
        match (self.child(), self.ours()) {
            (Some(child), Some(ours)) => self.child_and_ours(child, ours),
            (None, Some(ours)) => self.ours_without_child(ours),
            (child, None) => self.no_grant_of_ours(child),
        }
    }

    /// A live child and a live grant of our own.
    fn child_and_ours(&self, child: &'a GrantView, ours: &'a GrantView) -> Step<'a> {
        let ours_active = ours.status == status::ACTIVE;
        let child_failed = child.status == status::FAILED_WORKFLOW;
        if self.org_mode() && child.status == status::ACTIVE {
            return Step::decided(Next::Retire {
                grant: ours.clone(),
            });
        }
        if self.org_mode() && child.status == status::DISABLED && ours_active {
            if paused_parent(child, &self.parents).is_some() {
                // The parent's grants were deactivated in bulk: ours keeps the account
                // entitled; the child is not activated over that decision.
                return Step::decided(Next::Done {
                    grant: ours.clone(),
                    source: Source::Account,
                });
            }
            return Step::decided(self.take_over(child, Source::Organization, ours));
        }
        // Entitled by our own grant beside a failed child: the child is cleared (so that a
        // re-issue, where AWS makes one, can come), a bounded number of times.
        if child_failed && ours_active {
            let cleared_enough =
                self.o.replaced_this_run || self.dead_children + 1 >= MAX_GRANT_GENERATIONS;
            return Step::decided(if cleared_enough {
                Next::Done {
                    grant: ours.clone(),
                    source: Source::Account,
                }
            } else {
                Next::DeleteChild {
                    failed: child.clone(),
                }
            });
        }
        // Our own grant not active yet beside a failed child: it is driven like any grant.
        if child_failed {
            return Step::Drive(ours);
        }
        Step::Open
    }

    /// A live grant of our own and no live child.
    fn ours_without_child(&self, ours: &'a GrantView) -> Step<'a> {
        if !self.org_mode() {
            return Step::Open;
        }
        if ours.status == status::ACTIVE {
            return Step::decided(self.await_child(ours));
        }
        if self.parents.is_empty() {
            return Step::decided(Next::AwaitParent);
        }
        // Our own grant not active yet, and no working child: it is driven like any grant.
        Step::Drive(ours)
    }

    /// Entitled by our own grant; the child is looked for, and waited for a bounded number of
    /// re-checks (a migration's child comes within minutes where it comes).
    fn await_child(&self, ours: &GrantView) -> Next {
        if self.parents.is_empty() || self.waited() {
            return Next::Done {
                grant: ours.clone(),
                source: Source::Account,
            };
        }
        if !self.o.org_side_read {
            return Next::FindChild {
                parent: self.parents[0].clone(),
            };
        }
        Next::Wait {
            grant: ours.clone(),
            source: Source::Account,
            reason: WaitReason::ChildNotYet,
        }
    }

    /// No live grant of our own: a failed child is repaired at once by a grant of our own; a
    /// missing one once it has been looked for and waited for; no repair over an operator's
    /// bulk deactivation of the parent.
    fn no_grant_of_ours(&self, child: Option<&'a GrantView>) -> Step<'a> {
        let child_failed = child.is_some_and(|c| c.status == status::FAILED_WORKFLOW);
        let waited = self.waited();
        if child.is_none() && self.org_mode() && self.parents.is_empty() {
            return Step::decided(Next::AwaitParent);
        }
        if (child_failed || (child.is_none() && waited))
            && self.parents.iter().any(|p| changed_by_operator(p))
        {
            return Step::decided(self.operator_deactivated(child));
        }
        match child {
            Some(failed) if child_failed => Step::decided(if self.o.replaced_this_run {
                Next::Wait {
                    grant: failed.clone(),
                    source: Source::Organization,
                    reason: WaitReason::ReplacedAlready,
                }
            } else {
                self.repair()
            }),
            None if waited
                && !self.parents.is_empty()
                && !self
                    .parents
                    .iter()
                    .all(|p| p.status == status::FAILED_WORKFLOW) =>
            {
                Step::decided(self.repair())
            }
            _ => Step::Open,
        }
    }

    /// A covering grant was changed by an operator: the child (or, with none, that grant) is
    /// left as that change left it.
    fn operator_deactivated(&self, child: Option<&GrantView>) -> Next {
        let parent = self
            .parents
            .iter()
            .find(|p| changed_by_operator(p))
            .copied();
        let parent = parent.cloned().unwrap_or_else(|| self.parents[0].clone());
        Next::Fail(Failure::OperatorDeactivated {
            grant: child.cloned().unwrap_or_else(|| parent.clone()),
            parent,
        })
    }
}
