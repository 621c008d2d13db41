#![allow(clippy::unwrap_used)]
use super::plan::lane_of;
use super::*;
use crate::aws::GrantView;
use crate::error::Error;
use crate::ids::AccountId;
use crate::reconcile::GrantHint;
use std::collections::HashMap;

const A: &str = "210987654321";
const G1: &str = "arn:aws:license-manager::123456789012:grant:g-1";
const G2: &str = "arn:aws:license-manager::123456789012:grant:g-2";
const PARENT: &str = "arn:aws:license-manager::123456789012:grant:g-org";

fn hint(account: &str, grant: Option<&str>, status: Option<&str>) -> GrantHint {
    GrantHint {
        account: AccountId::parse(account).unwrap(),
        grant: grant.map(str::to_string),
        status: status.map(str::to_string),
        seen: None,
    }
}

fn step(hints: &[GrantHint]) -> Step {
    plan(&hints.iter().collect::<Vec<_>>())
}

/// One account's hints in a batch → its step: the table of [`plan`].
#[test]
fn an_accounts_step_comes_from_all_its_hints_in_the_batch() {
    let look = |arns: &[&str]| Step::Look(arns.iter().map(|a| a.to_string()).collect());
    let run = |arn: &str, status: &str| Step::Run(format!("{arn} {status}"), lane_of(status));
    let nothing = |s: &str| Step::Nothing(format!("its grant is {s}"));
    let cases: Vec<(&str, Vec<GrantHint>, Step)> = vec![
        (
            "completion",
            vec![hint(A, Some(G1), Some("PENDING_ACCEPT"))],
            run(G1, "PENDING_ACCEPT"),
        ),
        (
            "failed workflow",
            vec![hint(A, Some(G1), Some("FAILED_WORKFLOW"))],
            run(G1, "FAILED_WORKFLOW"),
        ),
        (
            "active",
            vec![hint(A, Some(G1), Some("ACTIVE"))],
            nothing("ACTIVE"),
        ),
        (
            "created, then completed in the same batch",
            vec![
                hint(A, Some(G1), Some("PENDING_WORKFLOW")),
                hint(A, Some(G1), Some("PENDING_ACCEPT")),
            ],
            run(G1, "PENDING_ACCEPT"),
        ),
        (
            "completed and accepted in the same batch: the grant decides",
            vec![
                hint(A, Some(G1), Some("PENDING_ACCEPT")),
                hint(A, Some(G1), Some("DISABLED")),
            ],
            look(&[G1]),
        ),
        (
            "activated and completed (order unknown): the grant decides",
            vec![
                hint(A, Some(G1), Some("ACTIVE")),
                hint(A, Some(G1), Some("DISABLED")),
            ],
            look(&[G1]),
        ),
        (
            "two DISABLED events of one grant: one look",
            vec![
                hint(A, Some(G1), Some("DISABLED")),
                hint(A, Some(G1), Some("DISABLED")),
            ],
            look(&[G1]),
        ),
        (
            "a grant to run beside one to look at: run, no look",
            vec![
                hint(A, Some(G1), Some("DISABLED")),
                hint(A, Some(G2), Some("PENDING_ACCEPT")),
            ],
            run(G2, "PENDING_ACCEPT"),
        ),
        (
            "a failed grant beside a completed one: the completion's lane",
            vec![
                hint(A, Some(G1), Some("FAILED_WORKFLOW")),
                hint(A, Some(G2), Some("PENDING_ACCEPT")),
            ],
            run(G2, "PENDING_ACCEPT"),
        ),
        (
            "two grants to look at",
            vec![hint(A, Some(G2), None), hint(A, Some(G1), Some("DISABLED"))],
            look(&[G1, G2]),
        ),
        (
            "a deleted grant: the listings",
            vec![
                hint(A, Some(G1), Some("DELETED")),
                hint(A, Some(G2), Some("DISABLED")),
            ],
            Step::Read,
        ),
        ("no grant named", vec![hint(A, None, None)], Step::Read),
        (
            "waiting on License Manager",
            vec![
                hint(A, Some(G1), Some("PENDING_WORKFLOW")),
                hint(A, Some(G2), Some("PENDING_DELETE")),
            ],
            nothing("PENDING_WORKFLOW"),
        ),
    ];
    for (name, hints, want) in cases {
        assert_eq!(step(&hints), want, "{name}");
    }
    // A grant read already (named by ARN alone): what it showed decides, as a look.
    let mut seen = hint(A, Some(G1), Some("PENDING_ACCEPT"));
    seen.seen = Some(view(G1, "PENDING_ACCEPT", ""));
    assert_eq!(step(&[seen]), look(&[G1]));
}

/// A run to accept or activate is done within seconds; one that creates a grant (a
/// failed or vanished one) is the backfill's kind of work.
#[test]
fn a_run_that_creates_a_grant_goes_to_the_backfill_lane() {
    for (status, lane) in [
        ("PENDING_ACCEPT", Lane::Now),
        ("DISABLED", Lane::Now),
        ("FAILED_WORKFLOW", Lane::Backfill),
        ("DELETED", Lane::Backfill),
        ("REJECTED", Lane::Backfill),
    ] {
        assert_eq!(lane_of(status), lane, "{status}");
    }
    assert_eq!(
        step(&[hint(A, Some(G1), Some("FAILED_WORKFLOW"))]),
        Step::Run(format!("{G1} FAILED_WORKFLOW"), Lane::Backfill)
    );
}

fn view(arn: &str, status: &str, parent: &str) -> GrantView {
    GrantView {
        arn: arn.into(),
        name: "ct-entitlements".into(),
        license_arn: "arn:aws:license-manager::294406891311:license:l-1".into(),
        status: status.into(),
        version: "1".into(),
        parent_arn: parent.into(),
        grantee: format!("arn:aws:iam::{A}:root"),
        status_reason: None,
        activation_behavior: None,
    }
}

/// The grants an account's looks read → its verdict: the table of [`after_looks`].
#[test]
fn looks_decide_from_the_grant_and_its_parent() {
    let throttled = || Error::Aws {
        service: "license-manager",
        operation: "GetGrant",
        code: "RateLimitExceededException".into(),
        message: "slow down".into(),
        retry: crate::Retry::Retryable,
    };
    let gone = || Error::Aws {
        service: "license-manager",
        operation: "GetGrant",
        code: "ResourceNotFoundException".into(),
        message: "no such grant".into(),
        retry: crate::Retry::Permanent,
    };
    let mut bulk = view(PARENT, "WORKFLOW_COMPLETED", "");
    bulk.grantee = "arn:aws:organizations::123456789012:organization/o-1".into();
    bulk.activation_behavior = Some("ALL_GRANTS_PERMITTED_BY_ISSUER".into());
    let mut ours = view(G2, "DISABLED", "");
    ours.status_reason = Some(crate::decide::ACTIVATION_STATUS_REASON.into());
    type Views = Vec<(&'static str, Result<GrantView, Error>)>;
    let cases: Vec<(&str, Views, &str)> = vec![
        (
            "disabled, no parent: activate",
            vec![(G1, Ok(view(G1, "DISABLED", "")))],
            "run",
        ),
        (
            "disabled under a bulk activation",
            vec![
                (G1, Ok(view(G1, "DISABLED", PARENT))),
                (PARENT, Ok(bulk.clone())),
            ],
            "skip",
        ),
        (
            "our activation proceeds",
            vec![(G2, Ok(ours.clone()))],
            "skip",
        ),
        ("active", vec![(G1, Ok(view(G1, "ACTIVE", "")))], "skip"),
        ("deleted", vec![(G1, Ok(view(G1, "DELETED", "")))], "read"),
        ("unreadable", vec![(G1, Err(gone()))], "read"),
        ("throttled", vec![(G1, Err(throttled()))], "retry"),
        (
            "the parent throttled",
            vec![
                (G1, Ok(view(G1, "DISABLED", PARENT))),
                (PARENT, Err(throttled())),
            ],
            "retry",
        ),
        (
            "one to run beside one throttled: run",
            vec![
                (G1, Err(throttled())),
                (G2, Ok(view(G2, "PENDING_ACCEPT", ""))),
            ],
            "run",
        ),
    ];
    for (name, views, want) in cases {
        let arns: Vec<String> = views
            .iter()
            .map(|(a, _)| a.to_string())
            .filter(|a| a != PARENT)
            .collect();
        let views: HashMap<String, Result<GrantView, Error>> =
            views.into_iter().map(|(a, v)| (a.to_string(), v)).collect();
        let got = match after_looks(&arns, &views) {
            Verdict::Run(..) => "run",
            Verdict::Skip(_) => "skip",
            Verdict::Read => "read",
            Verdict::Retry(_) => "retry",
        };
        assert_eq!(got, want, "{name}");
    }
}

/// An account's looks, read so far → what it still waits for before its verdict (the table of
/// [`still_to_read`]): an account goes out as soon as this is empty, whatever the batch's other
/// looks still wait for.
#[test]
fn an_account_waits_only_for_its_own_grants_and_their_parents() {
    let license = "arn:aws:license-manager::294406891311:license:l-1";
    type Views = Vec<(&'static str, GrantView)>;
    let cases: Vec<(&str, &[&str], Views, &[&str])> = vec![
        ("nothing read yet", &[G1], vec![], &[G1]),
        (
            "its grant read, no parent",
            &[G1],
            vec![(G1, view(G1, "DISABLED", ""))],
            &[],
        ),
        (
            "another account's grant read, not its own",
            &[G1],
            vec![(G2, view(G2, "DISABLED", ""))],
            &[G1],
        ),
        (
            "DISABLED under a parent not read yet",
            &[G1],
            vec![(G1, view(G1, "DISABLED", PARENT))],
            &[PARENT],
        ),
        (
            "DISABLED under a parent read",
            &[G1],
            vec![
                (G1, view(G1, "DISABLED", PARENT)),
                (PARENT, view(PARENT, "WORKFLOW_COMPLETED", "")),
            ],
            &[],
        ),
        (
            "ParentArn the license (a reading of AWS): no parent to read",
            &[G1],
            vec![(G1, view(G1, "DISABLED", license))],
            &[],
        ),
        (
            "a parent matters only under DISABLED",
            &[G1],
            vec![(G1, view(G1, "PENDING_ACCEPT", PARENT))],
            &[],
        ),
        (
            "two grants, one read",
            &[G1, G2],
            vec![(G2, view(G2, "ACTIVE", ""))],
            &[G1],
        ),
    ];
    for (name, arns, views, want) in cases {
        let arns: Vec<String> = arns.iter().map(|a| a.to_string()).collect();
        let views: HashMap<String, Result<GrantView, Error>> = views
            .into_iter()
            .map(|(a, v)| (a.to_string(), Ok(v)))
            .collect();
        assert_eq!(still_to_read(&arns, &views), want.to_vec(), "{name}");
    }
    // A failed read is read: what it failed with decides (retry, or the listings).
    let failed: HashMap<String, Result<GrantView, Error>> =
        [(G1.to_string(), Err(Error::Config("unreadable".into())))]
            .into_iter()
            .collect();
    assert!(still_to_read(&[G1.to_string()], &failed).is_empty());
}

#[test]
fn a_record_to_deliver_again_waits_longer_each_time() {
    // (deliveries so far, seconds before the next): 10 s, doubled per delivery, at most 300 s.
    let cases = [
        (0, 10),
        (1, 10),
        (2, 20),
        (3, 40),
        (4, 80),
        (5, 160),
        (6, 300),
        (10, 300),
        (u32::MAX, 300),
    ];
    for (receives, seconds) in cases {
        assert_eq!(
            retry_after(receives),
            seconds,
            "after {receives} deliveries"
        );
    }
}

/// A chain and a step → set aside before any call, or not: the table of [`set_aside`].
#[test]
fn a_chain_sets_aside_the_steps_it_makes_moot() {
    use crate::chain::Gate;
    let queued = Gate::Skip("its chain's run is queued and reads the account afresh");
    let waiting = Gate::Forward {
        seq: 7,
        body: "{}".into(),
    };
    let run = Step::Run("g-1 PENDING_ACCEPT".into(), Lane::Now);
    let look = Step::Look(vec![G1.into()]);
    let nothing = Step::Nothing("its grant is ACTIVE".into());
    let cases: [(&Gate, &Step, bool); 13] = [
        // A queued run (or a running one marked already) makes every step moot…
        (&queued, &run, true),
        (&queued, &look, true),
        (&queued, &Step::Read, true),
        // …but a step with nothing to do keeps its own reason.
        (&queued, &nothing, false),
        // A waiting chain: the step decides (a gone grant may be what it waits on; a
        // completion brings its re-check forward).
        (&waiting, &Step::Read, false),
        (&waiting, &run, false),
        (&waiting, &look, false),
        (&waiting, &nothing, false),
        // No live chain, or a running one to mark: the step decides.
        (&Gate::Start, &Step::Read, false),
        (&Gate::Start, &look, false),
        (&Gate::Start, &run, false),
        (&Gate::Poke(7), &Step::Read, false),
        (&Gate::Poke(7), &look, false),
    ];
    for (gate, step, aside) in cases {
        assert_eq!(
            set_aside(gate, step).is_some(),
            aside,
            "{gate:?} / {step:?}"
        );
    }
    assert_eq!(
        set_aside(&queued, &Step::Read),
        Some("its chain's run is queued and reads the account afresh")
    );
}
