//! What `decide` reads off one observation before deciding anything: the account's grants and
//! the organization/OU grants covering it for this license, where each grant comes from, how
//! many generations are dead, and the candidates to drive. Plus the two decisions the steps
//! share (a repair, a takeover).

use super::facts::{at_version, covers, mark_of, rank, source_of};
use super::{
    is_terminal, status, Failure, Next, Observation, Source, WaitReason, CHILD_WAIT_RECHECKS,
    MAX_GRANT_GENERATIONS,
};
use crate::model::GrantView;

/// One (account, license) as `decide` sees it.
pub(super) struct Scene<'a> {
    pub(super) o: Observation<'a>,
    /// Organization/OU grants for this license that still cover the account.
    pub(super) parents: Vec<&'a GrantView>,
    /// The same, owned (what `source_of` takes).
    all_parents: Vec<GrantView>,
    /// The account's grants for this license.
    pub(super) mine: Vec<&'a GrantView>,
    /// Whether one of the account's grants names a covering grant in its `ParentArn`.
    child_named: bool,
    /// Grants of ct-entitlements' own lineage that are dead: the next one is a new generation.
    pub(super) generation: usize,
    /// Account-level grants under a parent that are dead.
    pub(super) dead_children: usize,
}

/// What a step of `decide` came to.
pub(super) enum Step<'a> {
    /// The next step is decided (boxed: `Next` is large beside a reference).
    Decided(Box<Next>),
    /// This grant is the one to drive by its own status.
    Drive(&'a GrantView),
    /// This step does not apply: the best live grant is driven.
    Open,
}

impl Step<'_> {
    pub(super) fn decided(next: Next) -> Self {
        Step::Decided(Box::new(next))
    }
}

/// Neither terminal nor `WORKFLOW_COMPLETED`: a grant that can still be driven.
fn live(g: &GrantView) -> bool {
    !is_terminal(&g.status) && g.status != status::WORKFLOW_COMPLETED
}

impl<'a> Scene<'a> {
    pub(super) fn new(o: &Observation<'a>) -> Self {
        let parents: Vec<&GrantView> = o
            .parents
            .iter()
            .filter(|p| p.license_arn == o.license_arn && covers(p))
            .collect();
        let all_parents = parents.iter().map(|p| (*p).clone()).collect();
        let mine = o
            .own
            .iter()
            .filter(|g| g.license_arn == o.license_arn)
            .collect();
        let mut scene = Scene {
            o: *o,
            parents,
            all_parents,
            mine,
            child_named: false,
            generation: 0,
            dead_children: 0,
        };
        // Where a child names its parent (one reading of ParentArn), the account's other grants
        // of another name are not children but grants made to it by hand.
        scene.child_named = scene.mine.iter().any(|g| scene.names_parent(g));
        scene.generation = scene.dead(Source::Account);
        scene.dead_children = scene.dead(Source::Organization);
        scene
    }

    fn names_parent(&self, g: &GrantView) -> bool {
        self.all_parents.iter().any(|p| p.arn == g.parent_arn)
    }

    /// Where `g` comes from (`source_of`, but a grant beside a child that names its parent is
    /// one made to the account).
    pub(super) fn source(&self, g: &GrantView) -> Source {
        if self.child_named && !self.names_parent(g) {
            Source::Account
        } else {
            source_of(g, &self.all_parents, self.o.own_grant_name)
        }
    }

    fn dead(&self, source: Source) -> usize {
        self.mine
            .iter()
            .filter(|g| is_terminal(&g.status) && self.source(g) == source)
            .count()
    }

    /// In organization/OU mode the child under a parent is the account's grant.
    pub(super) fn org_mode(&self) -> bool {
        self.o.mode.has_parent_grant()
    }

    /// The account's child has been looked for on the organization side and waited for as
    /// long as it is waited for (`CHILD_WAIT_RECHECKS`, or not at all where none is promised:
    /// a child handed out once and gone, deleted after failing, is not promised again).
    pub(super) fn waited(&self) -> bool {
        let promised = self.o.child_promised && self.dead_children == 0;
        self.o.org_side_read && (self.o.attempt >= CHILD_WAIT_RECHECKS || !promised)
    }

    /// ct-entitlements' own live per-account grant, the strongest one.
    pub(super) fn ours(&self) -> Option<&'a GrantView> {
        self.mine
            .iter()
            .filter(|g| live(g))
            .filter(|g| self.source(g) == Source::Account && g.name == self.o.own_grant_name)
            .min_by_key(|g| rank(&g.status))
            .copied()
    }

    /// The account's live account-level grant under a parent, the strongest one.
    pub(super) fn child(&self) -> Option<&'a GrantView> {
        self.mine
            .iter()
            .filter(|g| live(g))
            .filter(|g| self.source(g) == Source::Organization)
            .min_by_key(|g| rank(&g.status))
            .copied()
    }

    /// The account's first live ACTIVE account-level grant under a parent.
    pub(super) fn active_child(&self) -> Option<&'a GrantView> {
        self.mine
            .iter()
            .filter(|g| live(g))
            .find(|g| self.source(g) == Source::Organization && g.status == status::ACTIVE)
            .copied()
    }

    /// The grant to drive where no step chose one: the strongest live grant (in
    /// organization/OU mode a child), a child before a grant made to the account.
    pub(super) fn best(&self) -> Option<&'a GrantView> {
        self.mine
            .iter()
            .filter(|g| live(g))
            .filter(|g| !self.o.mode.has_parent_grant() || self.source(g) == Source::Organization)
            .min_by_key(|g| (rank(&g.status), self.source(g) == Source::Account))
            .copied()
    }

    /// A repair: a per-account grant of ct-entitlements' own, of the next generation.
    pub(super) fn repair(&self) -> Next {
        if self.generation >= MAX_GRANT_GENERATIONS {
            Next::Fail(Failure::TooManyGenerations {
                grant: None,
                count: self.generation,
            })
        } else {
            Next::Create {
                generation: self.generation,
            }
        }
    }

    /// `grant` (from `source`) activated over `replaces`, unless that activation was requested
    /// at its version already (then it is waited for, not repeated).
    pub(super) fn take_over(
        &self,
        grant: &GrantView,
        source: Source,
        replaces: &GrantView,
    ) -> Next {
        let requested =
            mark_of(self.o.activations, grant).is_some_and(|m| !m.bulk && at_version(m, grant));
        if requested {
            Next::Wait {
                grant: grant.clone(),
                source,
                reason: WaitReason::Activating,
            }
        } else {
            Next::TakeOver {
                grant: grant.clone(),
                replaces: replaces.clone(),
            }
        }
    }
}
