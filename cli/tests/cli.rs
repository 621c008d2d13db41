//! The operator CLI against the local AWS world: the library's commands, and the compiled
//! binary configured only through the environment, as an operator runs it.
#![allow(clippy::unwrap_used)]

#[path = "../../tests/tests/common/mod.rs"]
mod common;

use ct_entitlements::{parse, plan, progress_bar, render_plan, render_status, status, Command};
use local_world::seed::demo_spec;
use shared::ids::AccountId;
use shared::reconcile::Scope;

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn command_lines() {
    assert_eq!(
        parse(&args("plan 210987654321")).unwrap(),
        Command::Plan(vec![AccountId::parse("210987654321").unwrap()])
    );
    assert_eq!(parse(&args("status")).unwrap(), Command::Status(vec![]));
    let Command::Backfill { scope, dry_run, .. } = parse(&args("backfill --queue-url https://sqs.us-east-1.amazonaws.com/1/q --ous ou-ab12-cdef3456 --dry-run")).unwrap() else {
        panic!("backfill")
    };
    assert_eq!(
        (scope, dry_run),
        (Scope::Ous(vec!["ou-ab12-cdef3456".into()]), true)
    );
    for bad in [
        "",
        "plan",
        "plan 12",
        "status x",
        "backfill",
        "backfill --queue-url",
        "backfill --queue-url https://q --ous r-1",
        "launch",
    ] {
        let err = parse(&args(bad)).unwrap_err();
        assert_eq!(err.kind(), "InvalidInput", "{bad:?}");
    }
    assert_eq!(
        progress_bar(0, 4),
        format!("[{}]    0/4 onboarding messages worked", "-".repeat(30))
    );
    assert_eq!(
        progress_bar(2, 4),
        format!(
            "[{}{}]    2/4 onboarding messages worked",
            "#".repeat(15),
            "-".repeat(15)
        )
    );
}

#[test]
fn status_names_accounts_in_any_partition() {
    let grant = |grantee: &str| shared::aws::GrantView {
        arn: "arn:aws-cn:license-manager::111122223333:grant:g-1".into(),
        name: "ct-entitlements-210987654321".into(),
        license_arn: "arn:aws-cn:license-manager::111122223333:license:l-1".into(),
        status: "ACTIVE".into(),
        version: "1".into(),
        parent_arn: "arn:aws-cn:license-manager::111122223333:license:l-1".into(),
        grantee: grantee.into(),
        status_reason: None,
        activation_behavior: None,
    };
    let rendered = render_status(&[
        grant("arn:aws-cn:iam::210987654321:root"),
        grant("arn:aws-cn:organizations::111122223333:organization/o-abc1234567"),
    ]);
    assert!(
        rendered
            .lines()
            .any(|l| l.starts_with("210987654321 ") && l.ends_with("ACTIVE")),
        "{rendered}"
    );
    // Not an account: shown as it is.
    assert!(
        rendered.contains("arn:aws-cn:organizations::111122223333:organization/o-abc1234567"),
        "{rendered}"
    );
}

#[tokio::test]
async fn plan_writes_nothing_and_status_shows_what_onboarding_did() {
    let Some(s) = common::setup(demo_spec()).await else {
        return;
    };
    let account = s.org.account("workload-dev").unwrap().clone();
    let id = AccountId::parse(&account.id).unwrap();

    let reports = plan(&s.engine(&[("DRY_RUN", "true")]), std::slice::from_ref(&id)).await;
    assert_eq!(reports[0].write_calls, 0);
    let rendered = render_plan(&reports);
    assert_eq!(
        rendered
            .lines()
            .filter(|l| l.contains("CreateGrant, ActivateGrant"))
            .count(),
        3,
        "{rendered}"
    );
    assert_eq!(s.calls("CreateGrant").await, 0);

    let engine = s.engine(&[]);
    common::handle(&engine, s.create_event(&account.id, &account.ou_id)).await;
    let grants = status(&engine, &[id]).await.unwrap();
    let rendered = render_status(&grants);
    assert_eq!(
        rendered
            .lines()
            .filter(|l| l.starts_with(&account.id) && l.ends_with("ACTIVE"))
            .count(),
        3,
        "{rendered}"
    );
}

#[tokio::test]
async fn the_binary_plans_from_its_environment() {
    let Some(s) = common::setup(demo_spec()).await else {
        return;
    };
    let account = s.org.account("sandbox-1").unwrap().clone();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ct-entitlements"))
        .args(["plan", &account.id])
        .envs(s.world.env_vars())
        .env("ALL_MARKETPLACE_LICENSES", "true")
        .env("ASSUME_ROLE_BACKOFF_MS", "10")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("Account"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.contains("(no grant)")).count(),
        3,
        "{stdout}"
    );
    assert_eq!(s.calls("CreateGrant").await, 0, "plan made no write");

    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_ct-entitlements"))
        .args(["plan", "12"])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("12 digits"));
}
