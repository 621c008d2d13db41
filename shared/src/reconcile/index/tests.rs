use super::*;

const A: &str = "210987654321";
const L1: &str = "arn:aws:license-manager::111122223333:license:l-1";
const L2: &str = "arn:aws:license-manager::111122223333:license:l-2";

fn grant(license: &str, grantee: &str, status: &str) -> GrantView {
    GrantView {
        arn: format!("arn:aws:license-manager::111122223333:grant:g-{status}"),
        name: "ct-entitlements".into(),
        license_arn: license.into(),
        status: status.into(),
        version: "1".into(),
        parent_arn: license.into(),
        grantee: grantee.into(),
        status_reason: None,
        activation_behavior: None,
    }
}

fn account(id: &str) -> String {
    format!("arn:aws:iam::{id}:root")
}

fn wants(arns: &[&str]) -> Wanted {
    Wanted::Licenses {
        arns: arns.iter().map(|a| a.to_string()).collect(),
        unmatched: Vec::new(),
    }
}

#[test]
fn a_license_near_its_grant_quota_is_named_with_the_way_out() {
    let config = ReconcileConfig {
        grant_quota: 10,
        grant_quota_warn_percent: 90,
        ..ReconcileConfig::from_lookup(|k| {
            (k == "ONBOARDING_QUEUE_URL").then(|| "https://sqs.example/q".to_string())
        })
        .expect("valid")
    };
    let own = |i: usize, status: &str| GrantView {
        arn: format!("g-{i}"),
        ..grant(L1, &account(&format!("{:012}", i)), status)
    };
    let child = |i: usize| GrantView {
        parent_arn: "arn:aws:license-manager::111122223333:grant:g-org".into(),
        ..own(100 + i, "ACTIVE")
    };
    // (grants, warned)
    let cases: Vec<(Vec<GrantView>, bool)> = vec![
        ((0..8).map(|i| own(i, "ACTIVE")).collect(), false),
        ((0..9).map(|i| own(i, "ACTIVE")).collect(), true),
        // Terminal grants and organization grants' children do not count.
        (
            (0..8)
                .map(|i| own(i, "ACTIVE"))
                .chain([own(20, "DELETED"), own(21, "REJECTED"), child(1), child(2)])
                .collect(),
            false,
        ),
        ((0..12).map(|i| own(i, "PENDING_WORKFLOW")).collect(), true),
        // Accounts' grants count in any partition (China, GovCloud).
        (
            (0..9)
                .map(|i| GrantView {
                    grantee: format!("arn:aws-cn:iam::{i:012}:root"),
                    ..own(i, "ACTIVE")
                })
                .collect(),
            true,
        ),
    ];
    for (grants, warned) in cases {
        let got = quota_warning(L1, &grants, "ct-entitlements", &config);
        assert_eq!(got.is_some(), warned, "{} grants: {got:?}", grants.len());
        if let Some(w) = got {
            assert!(
                w.contains("L-55F04DE6") && w.contains("organization"),
                "{w}"
            );
        }
    }
}

#[test]
fn an_account_needs_a_run_until_each_selected_license_has_an_active_grant() {
    let org = "arn:aws:organizations::111122223333:organization/o-abc1234567";
    let other = account("123456789012");
    // (case, listings per license, wanted, expected reason or None)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, Vec<GrantView>)>,
        Wanted,
        Option<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "active own grant",
            vec![(L1, vec![grant(L1, &account(A), "ACTIVE")])],
            wants(&[L1]),
            None,
        ),
        (
            "no grant",
            vec![(L1, vec![])],
            wants(&[L1]),
            Some("l-1: no grant"),
        ),
        (
            "only another account's",
            vec![(L1, vec![grant(L1, &other, "ACTIVE")])],
            wants(&[L1]),
            Some("l-1: no grant"),
        ),
        (
            "disabled",
            vec![(L1, vec![grant(L1, &account(A), "DISABLED")])],
            wants(&[L1]),
            Some("l-1: grant DISABLED"),
        ),
        (
            "in workflow",
            vec![(L1, vec![grant(L1, &account(A), "PENDING_WORKFLOW")])],
            wants(&[L1]),
            Some("l-1: grant PENDING_WORKFLOW"),
        ),
        (
            "failed beside active",
            vec![(
                L1,
                vec![
                    grant(L1, &account(A), "FAILED_WORKFLOW"),
                    grant(L1, &account(A), "ACTIVE"),
                ],
            )],
            wants(&[L1]),
            None,
        ),
        (
            "active grant in another partition (GovCloud)",
            vec![(
                L1,
                vec![grant(L1, "arn:aws-us-gov:iam::210987654321:root", "ACTIVE")],
            )],
            wants(&[L1]),
            None,
        ),
        (
            "org grant alone does not entitle",
            vec![(L1, vec![grant(L1, org, "ACTIVE")])],
            wants(&[L1]),
            Some("l-1: no grant"),
        ),
        (
            "active child of an org grant",
            vec![(
                L1,
                vec![grant(L1, org, "ACTIVE"), grant(L1, &account(A), "ACTIVE")],
            )],
            wants(&[L1]),
            None,
        ),
        (
            "license not listed",
            vec![],
            wants(&[L1]),
            Some("l-1: not listed"),
        ),
        (
            "one of two short",
            vec![(L1, vec![grant(L1, &account(A), "ACTIVE")]), (L2, vec![])],
            wants(&[L1, L2]),
            Some("l-2: no grant"),
        ),
        (
            "both short",
            vec![(L1, vec![]), (L2, vec![])],
            wants(&[L1, L2]),
            Some("(and 1 more)"),
        ),
        ("nothing selected", vec![], wants(&[]), None),
        ("excluded", vec![], Wanted::Skip("TARGET_OUS".into()), None),
        (
            "unreadable selection",
            vec![],
            Wanted::Unknown("bad tag".into()),
            Some("selection unreadable: bad tag"),
        ),
    ];
    for (case, listings, wanted, expected) in cases {
        let mut index = GrantIndex::default();
        for (license, grants) in &listings {
            index.add(license, grants);
        }
        let got = needs_work(A, &wanted, &index);
        match expected {
            None => assert_eq!(got, None, "{case}"),
            Some(part) => assert!(
                got.as_deref().is_some_and(|g| g.contains(part)),
                "{case}: {got:?} lacks {part:?}"
            ),
        }
    }
}

#[test]
fn a_change_event_runs_an_account_only_when_a_run_could_act_now() {
    let requested = |status: &str| GrantView {
        status_reason: Some(crate::decide::ACTIVATION_STATUS_REASON.into()),
        ..grant(L1, &account(A), status)
    };
    let paused = GrantView {
        status_reason: Some("paused by hand".into()),
        ..grant(L1, &account(A), "DISABLED")
    };
    // (case, listing of L1 (+ L2), reconcile needs work, a change event runs it)
    let cases: Vec<(&str, Vec<GrantView>, bool, bool)> = vec![
        (
            "active",
            vec![grant(L1, &account(A), "ACTIVE")],
            false,
            false,
        ),
        ("no grant", vec![], true, true),
        (
            "workflow running",
            vec![grant(L1, &account(A), "PENDING_WORKFLOW")],
            true,
            false,
        ),
        (
            "being deleted",
            vec![grant(L1, &account(A), "PENDING_DELETE")],
            true,
            false,
        ),
        (
            "workflow done, to accept",
            vec![grant(L1, &account(A), "PENDING_ACCEPT")],
            true,
            true,
        ),
        (
            "activation we asked for, processing",
            vec![requested("DISABLED")],
            true,
            false,
        ),
        ("deactivated by hand", vec![paused], true, true),
        (
            "accepted, never activated",
            vec![grant(L1, &account(A), "DISABLED")],
            true,
            true,
        ),
        (
            "workflow failed",
            vec![grant(L1, &account(A), "FAILED_WORKFLOW")],
            true,
            true,
        ),
    ];
    let org = "arn:aws:organizations::111122223333:organization/o-abc1234567";
    let parent = |version: &str| GrantView {
        arn: "arn:aws:license-manager::111122223333:grant:g-org".into(),
        name: "ct-entitlements-organization".into(),
        version: version.into(),
        status_reason: (version != "1")
            .then(|| crate::decide::BULK_ACTIVATION_STATUS_REASON.to_string()),
        ..grant(L1, org, "WORKFLOW_COMPLETED")
    };
    let child = |status: &str| GrantView {
        arn: "arn:aws:license-manager::111122223333:grant:g-child".into(),
        name: "child".into(),
        parent_arn: "arn:aws:license-manager::111122223333:grant:g-org".into(),
        ..grant(L1, &account(A), status)
    };
    let in_organization_mode = [
        (
            "child under a bulk-activated parent, being activated",
            vec![parent("2"), child("DISABLED")],
            true,
            false,
        ),
        (
            "child under a parent never bulk-activated",
            vec![parent("1"), child("DISABLED")],
            true,
            true,
        ),
        (
            "active child",
            vec![parent("2"), child("ACTIVE")],
            false,
            false,
        ),
        (
            "a repair in its workflow beside the deleted child",
            vec![
                parent("2"),
                child("DELETED"),
                GrantView {
                    arn: "arn:aws:license-manager::111122223333:grant:g-repair".into(),
                    name: format!("ct-entitlements-{A}"),
                    ..grant(L1, &account(A), "PENDING_WORKFLOW")
                },
            ],
            true,
            false,
        ),
        (
            "a failed child just cleared, nothing beside it yet: its run re-checks, then repairs",
            vec![parent("2"), child("DELETED")],
            true,
            false,
        ),
    ];
    let modes = |mode: Mode| HashMap::from([(L1.to_string(), mode)]);
    let all = cases.into_iter().map(|c| (Mode::Account, c)).chain(
        in_organization_mode
            .into_iter()
            .map(|c| (Mode::Organization, c)),
    );
    for (mode, (case, listing, reconcile, event)) in all {
        let mut index = GrantIndex::new(modes(mode), "ct-entitlements");
        index.add(L1, &listing);
        assert_eq!(
            needs_work(A, &wants(&[L1]), &index).is_some(),
            reconcile,
            "{case}"
        );
        assert_eq!(
            needs_run_now(A, &wants(&[L1]), &index).is_some(),
            event,
            "{case}"
        );
        // A second license the account lacks outright is always worth the run.
        index.add(L2, &[]);
        assert!(
            needs_run_now(A, &wants(&[L1, L2]), &index).is_some(),
            "{case} + L2"
        );
    }
}

#[test]
fn in_organization_mode_only_the_child_counts_and_our_grant_must_go() {
    let ours = |status: &str| GrantView {
        name: format!("ct-entitlements-{A}"),
        ..grant(L1, &account(A), status)
    };
    let child = |status: &str| GrantView {
        arn: format!("g-child-{status}"),
        name: "ct-entitlements-organization".into(),
        parent_arn: "arn:aws:license-manager::111122223333:grant:g-org".into(),
        ..grant(L1, &account(A), status)
    };
    let by_hand = GrantView {
        name: "by-hand".into(),
        ..grant(L1, &account(A), "ACTIVE")
    };
    let org_grant = GrantView {
        arn: "arn:aws:license-manager::111122223333:grant:g-org".into(),
        name: "ct-entitlements-organization".into(),
        ..grant(
            L1,
            "arn:aws:organizations::111122223333:organization/o-abc1234567",
            "WORKFLOW_COMPLETED",
        )
    };
    let cases: Vec<(&str, Vec<GrantView>, Option<&str>)> = vec![
        ("active child", vec![child("ACTIVE")], None),
        (
            "child disabled",
            vec![child("DISABLED")],
            Some("grant DISABLED"),
        ),
        ("nothing", vec![], Some("no grant")),
        // Our grant ACTIVE and no child beside it (an older grant whose child has not come,
        // or a repair): its run looked and waited already; not queued again every day.
        (
            "only our old grant or a repair, under a parent",
            vec![org_grant.clone(), ours("ACTIVE")],
            None,
        ),
        // Before any parent exists (a switch to organization mode, planned): work.
        (
            "only our old grant, no parent yet",
            vec![ours("ACTIVE")],
            Some("replace"),
        ),
        (
            "only our grant, not active yet",
            vec![ours("DISABLED")],
            Some("replace"),
        ),
        (
            "a repair beside a failed child",
            vec![ours("ACTIVE"), child("FAILED_WORKFLOW")],
            Some("replace"),
        ),
        // A child is told by its name, whatever its ParentArn (`childParentArn`), once an
        // organization grant of the license is listed.
        (
            "a child whose ParentArn is the license",
            vec![
                org_grant.clone(),
                GrantView {
                    parent_arn: L1.into(),
                    ..child("ACTIVE")
                },
            ],
            None,
        ),
        (
            "a child with no ParentArn beside our grant",
            vec![
                org_grant.clone(),
                GrantView {
                    parent_arn: String::new(),
                    ..child("ACTIVE")
                },
                ours("ACTIVE"),
            ],
            Some("replace"),
        ),
        (
            "child beside our old grant",
            vec![child("ACTIVE"), ours("ACTIVE")],
            Some("replace"),
        ),
        (
            "our old grant disabled by the takeover",
            vec![child("ACTIVE"), ours("DISABLED")],
            Some("replace"),
        ),
        (
            "our old grant deleted",
            vec![child("ACTIVE"), ours("DELETED")],
            None,
        ),
        (
            "a grant by hand does not count",
            vec![by_hand.clone()],
            Some("no grant"),
        ),
        (
            "a grant by hand is left alone",
            vec![by_hand, child("ACTIVE")],
            None,
        ),
    ];
    for mode in [Mode::Organization, Mode::Ou] {
        for (case, grants, expected) in &cases {
            let mut index =
                GrantIndex::new(HashMap::from([(L1.to_string(), mode)]), "ct-entitlements");
            index.add(L1, grants);
            let got = needs_work(A, &wants(&[L1]), &index);
            match expected {
                None => assert_eq!(got, None, "{mode:?} {case}"),
                Some(part) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(part)),
                    "{mode:?} {case}: {got:?} lacks {part:?}"
                ),
            }
        }
    }
    // An organization grant changed by someone else (an operator's bulk deactivation: a new
    // version without ct-entitlements' bulk-activation reason): its accounts are left as
    // they are, whatever they hold.
    let paused = GrantView {
        version: "3".into(),
        status_reason: Some("paused by the licensing team".into()),
        ..org_grant.clone()
    };
    for mode in [Mode::Organization, Mode::Ou] {
        for grants in [
            vec![paused.clone(), child("DISABLED")],
            vec![paused.clone()],
            vec![paused.clone(), child("DISABLED"), ours("ACTIVE")],
        ] {
            let mut index =
                GrantIndex::new(HashMap::from([(L1.to_string(), mode)]), "ct-entitlements");
            index.add(L1, &grants);
            assert_eq!(
                needs_work(A, &wants(&[L1]), &index),
                None,
                "{mode:?} {grants:?}"
            );
        }
        // Bulk-activated by ct-entitlements itself: a DISABLED child is work.
        let ours_bulk = GrantView {
            version: "2".into(),
            status_reason: Some(crate::decide::BULK_ACTIVATION_STATUS_REASON.into()),
            ..org_grant.clone()
        };
        let mut index = GrantIndex::new(HashMap::from([(L1.to_string(), mode)]), "ct-entitlements");
        index.add(L1, &[ours_bulk, child("DISABLED")]);
        assert!(needs_work(A, &wants(&[L1]), &index).is_some(), "{mode:?}");
    }
    // The same listing in account mode: our grant is what counts.
    let mut index = GrantIndex::new(HashMap::new(), "ct-entitlements");
    index.add(L1, &[ours("ACTIVE")]);
    assert_eq!(needs_work(A, &wants(&[L1]), &index), None);
}
