//! The steps that drive one chosen grant by its own status (accept, activate, wait, replace),
//! and the step where the account has no live grant at all.

use super::facts::{at_version, looks_bulk_activated, mark_of, paused_parent};
use super::scene::Scene;
use super::{
    is_conflict_reason, status, Failure, Next, Source, WaitReason, ACTIVATION_STATUS_REASON,
    ELSEWHERE_ACTIVATION_WAITS, MAX_GRANT_GENERATIONS,
};
use crate::model::GrantView;

impl Scene<'_> {
    /// No live grant: wait for the child of a covering grant (looked for on the organization
    /// side first), or fail where every covering grant failed; with none, a grant of our own.
    pub(super) fn nothing_live(&self) -> Next {
        let Some(parent) = self.parents.first() else {
            return self.repair();
        };
        if self
            .parents
            .iter()
            .all(|p| p.status == status::FAILED_WORKFLOW)
        {
            return Next::Fail(Failure::ParentFailed {
                parent: (*parent).clone(),
            });
        }
        let parent = self
            .parents
            .iter()
            .find(|p| p.status != status::FAILED_WORKFLOW)
            .copied()
            .unwrap_or(parent);
        if !self.o.org_side_read {
            return Next::FindChild {
                parent: parent.clone(),
            };
        }
        Next::Wait {
            grant: parent.clone(),
            source: Source::Organization,
            reason: WaitReason::ChildNotYet,
        }
    }

    /// The step `grant`'s own status calls for.
    pub(super) fn drive(&self, grant: &GrantView) -> Next {
        let source = self.source(grant);
        let g = grant.clone();
        match grant.status.as_str() {
            status::ACTIVE => Next::Done { grant: g, source },
            status::PENDING_ACCEPT => Next::Accept { grant: g, source },
            status::DISABLED => self.disabled(grant, source),
            status::FAILED_WORKFLOW => self.failed(grant, source),
            // PENDING_WORKFLOW, PENDING_DELETE and anything new: only time moves it.
            _ => Next::Wait {
                grant: g,
                source,
                reason: WaitReason::Workflow,
            },
        }
    }

    /// A DISABLED grant: activated, unless an operator deactivated its parent's grants, the
    /// activation already came back with the conflict, or one is under way.
    fn disabled(&self, grant: &GrantView, source: Source) -> Next {
        let g = grant.clone();
        if source == Source::Organization {
            if let Some(parent) = paused_parent(grant, &self.parents) {
                return Next::Fail(Failure::OperatorDeactivated {
                    grant: g,
                    parent: parent.clone(),
                });
            }
        }
        let mark = mark_of(self.o.activations, grant);
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
                source,
                reason: WaitReason::Activating,
            },
            // A bulk activation was already waited for once at this version: do it here.
            Some(m) if same_version && m.bulk => Next::Activate { grant: g, source },
            _ => self.activate_unless_under_way(grant, source),
        }
    }

    /// A DISABLED grant no activation of this chain is pending on: activated, unless another
    /// run's activation (for a bounded number of re-checks) or its parent's bulk activation
    /// is under way.
    fn activate_unless_under_way(&self, grant: &GrantView, source: Source) -> Next {
        let g = grant.clone();
        let bulk_parent = self
            .parents
            .iter()
            .any(|p| p.arn == grant.parent_arn && looks_bulk_activated(p));
        let elsewhere = grant.status_reason.as_deref() == Some(ACTIVATION_STATUS_REASON)
            && self.o.attempt < ELSEWHERE_ACTIVATION_WAITS;
        if elsewhere {
            Next::Wait {
                grant: g,
                source,
                reason: WaitReason::ActivatingElsewhere,
            }
        } else if source == Source::Organization && bulk_parent {
            Next::Wait {
                grant: g,
                source,
                reason: WaitReason::BulkActivation,
            }
        } else {
            Next::Activate { grant: g, source }
        }
    }

    /// A FAILED_WORKFLOW grant: a child is cleared so License Manager hands out a new one (the
    /// roles are in place by now), ours is replaced; each a bounded number of times and once
    /// per invocation.
    fn failed(&self, grant: &GrantView, source: Source) -> Next {
        let g = grant.clone();
        let generation = self.generation;
        match source {
            Source::Organization if self.o.replaced_this_run => Next::Wait {
                grant: g,
                source,
                reason: WaitReason::ReplacedAlready,
            },
            Source::Organization if self.dead_children + 1 >= MAX_GRANT_GENERATIONS => {
                Next::Fail(Failure::ChildFailed { grant: g })
            }
            Source::Organization => Next::DeleteChild { failed: g },
            Source::Account if self.o.replaced_this_run => Next::Wait {
                grant: g,
                source,
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
        }
    }
}
