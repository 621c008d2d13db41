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
        status_reason: Some("This account already has an active license for this product".into()),
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
