//! The engine against the emulator behaving as AWS documents it (docs/development.md, each rule
//! with its AWS source), in the places
//! where a kinder emulator hid engine bugs: organization grants whose account-level children
//! arrive later, bulk activation, grants that fail their workflow, operations the grantor does
//! not hold. Each runs under both emulator profiles (`CT_EMULATOR_PROFILE`).
#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_licensemanager::types::{AllowedOperation, Filter, GrantStatus};
use common::setup;
use local_world::seed::{self, demo_spec};
use serde_json::{json, Value};

/// The grants made from the license itself to `account` (not children of an org grant).
async fn per_account_grants(s: &common::Setup, account: &str, license: &str) -> Vec<String> {
    let out = s
        .world
        .license_manager()
        .list_distributed_grants()
        .filters(
            Filter::builder()
                .name("GranteePrincipalARN")
                .values(format!("arn:aws:iam::{account}:root"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.grants()
        .iter()
        // ct-entitlements' own grants, by the name it gives them (a child's ParentArn may be
        // the license too: `childParentArn`).
        .filter(|g| {
            g.license_arn() == license && g.grant_name() == format!("ct-entitlements-{account}")
        })
        .map(|g| format!("{}={}", g.grant_arn(), g.grant_status().as_str()))
        .collect()
}

#[tokio::test]
async fn joining_account_waits_for_its_organization_grant_child_and_never_gets_a_second_grant() {
    let mut spec = demo_spec();
    spec.org_wide_grants = vec!["prod-demo-firewall".into()];
    let Some(mut s) = setup(spec).await else {
        return;
    };
    // The child of an organization grant reaches a joining account only after a workflow.
    s.world
        .control()
        .configure(json!({"pendingWorkflowMs": 60_000}))
        .await
        .unwrap();
    let ou = s.org.ou("Sandbox").unwrap().id.clone();
    let account = seed::add_account(&s.world, &mut s.org, "joiner", &ou)
        .await
        .unwrap();
    let firewall = s.org.license("prod-demo-firewall").unwrap().arn.clone();
    let engine = s.engine(&[
        ("ALL_MARKETPLACE_LICENSES", "false"),
        ("LICENSE_ARNS", &firewall),
    ]);
    let creates = s.calls("CreateGrant").await;
    let first = common::try_handle(&engine, s.create_event(&account.id, &ou)).await;
    assert_eq!(first["outcome"], "pending", "{first:#}");
    let l = &first["licenses"][0];
    assert_eq!(l["grantSource"], "organization", "{l}");
    assert_eq!(l["actions"], json!([]), "{l}");
    assert!(
        first["apiCalls"]["license-manager:ListReceivedGrantsForOrganization"].as_u64() >= Some(1),
        "the management side was asked: {first:#}"
    );
    assert_eq!(
        s.calls("CreateGrant").await,
        creates,
        "no grant beside the org grant"
    );

    // Re-checks until License Manager hands out the child; then it is activated.
    s.world
        .control()
        .advance_clock(std::time::Duration::from_secs(61))
        .await
        .unwrap();
    let report = s
        .onboard(&engine, first_recheck(&s, &account.id).await)
        .await;
    assert_eq!(report["outcome"], "entitled", "{report:#}");
    assert_eq!(report["licenses"][0]["grantSource"], "organization");
    assert_eq!(s.calls("CreateGrant").await, creates);
    assert!(per_account_grants(&s, &account.id, &firewall)
        .await
        .is_empty());
}

/// Takes the account's queued re-check off the onboarding queue.
async fn first_recheck(s: &common::Setup, account: &str) -> Value {
    let out = s
        .world
        .sqs()
        .receive_message()
        .queue_url(&s.queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    for m in out.messages() {
        let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
        if body["accountId"] == account {
            s.world
                .sqs()
                .delete_message()
                .queue_url(&s.queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            return body;
        }
    }
    panic!("no re-check queued for {account}");
}

#[tokio::test]
async fn bulk_activated_organization_grant_activates_joiners_without_the_engine() {
    let mut spec = demo_spec();
    spec.org_wide_grants = vec!["prod-demo-firewall".into()];
    let Some(mut s) = setup(spec).await else {
        return;
    };
    let lm = s.world.license_manager();
    let parent = s.org.org_grants[0].clone();
    // (Under the realistic profile the organization grant is still in its workflow.)
    s.world
        .control()
        .advance_clock(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let current = lm.get_grant().grant_arn(&parent).send().await.unwrap();
    let version = current.grant().unwrap().version().to_string();
    // Bulk activation: CreateGrantVersion Status=ACTIVE on the organization grant itself.
    lm.create_grant_version()
        .grant_arn(&parent)
        .source_version(version)
        .status(GrantStatus::Active)
        .client_token("bulk-1")
        .send()
        .await
        .unwrap();
    let ou = s.org.ou("Workloads").unwrap().id.clone();
    let account = seed::add_account(&s.world, &mut s.org, "joiner", &ou)
        .await
        .unwrap();
    seed::create_member_slrs(&s.world, &account.id)
        .await
        .unwrap();
    let firewall = s.org.license("prod-demo-firewall").unwrap().arn.clone();
    let engine = s.engine(&[
        ("ALL_MARKETPLACE_LICENSES", "false"),
        ("LICENSE_ARNS", &firewall),
    ]);
    let before = s.calls("CreateGrantVersion").await;
    let creates = s.calls("CreateGrant").await;
    let report = s.onboard(&engine, s.create_event(&account.id, &ou)).await;
    assert_eq!(report["outcome"], "entitled", "{report:#}");
    assert_eq!(report["licenses"][0]["grantSource"], "organization");
    assert_eq!(
        s.calls("CreateGrantVersion").await,
        before,
        "the joiner's child became ACTIVE through the bulk activation: {report:#}"
    );
    assert_eq!(s.calls("CreateGrant").await, creates);
}

#[tokio::test]
async fn failed_workflow_grant_is_replaced_once_the_roles_exist() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let ou = s.org.ou("Workloads").unwrap().id.clone();
    // A new account without License Manager's service-linked roles, and a grant made to it by
    // hand (the name ct-entitlements uses) whose workflow therefore fails.
    let account = seed::add_account(&s.world, &mut s.org, "no-roles", &ou)
        .await
        .unwrap();
    let license = s.org.license("prod-demo-analytics").unwrap().arn.clone();
    let lm = s.world.license_manager();
    let made = lm
        .create_grant()
        .client_token("by-hand-1")
        .grant_name(format!("ct-entitlements-{}", account.id))
        .license_arn(&license)
        .principals(format!("arn:aws:iam::{}:root", account.id))
        .home_region("us-east-1")
        .allowed_operations(AllowedOperation::CheckoutLicense)
        .send()
        .await
        .unwrap();
    let failed_arn = made.grant_arn().unwrap().to_string();
    s.world
        .control()
        .advance_clock(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let failed = lm.get_grant().grant_arn(&failed_arn).send().await.unwrap();
    assert_eq!(
        failed.grant().unwrap().grant_status(),
        &GrantStatus::FailedWorkflow,
        "the emulator fails a grant to an account without its service-linked roles"
    );

    let engine = s.engine(&[
        ("ALL_MARKETPLACE_LICENSES", "false"),
        ("LICENSE_ARNS", &license),
    ]);
    let report = s.onboard(&engine, s.create_event(&account.id, &ou)).await;
    assert_eq!(report["outcome"], "entitled", "{report:#}");
    let l = &report["licenses"][0];
    assert_eq!(l["statusBefore"], "FAILED_WORKFLOW", "{l}");
    assert_eq!(
        l["actions"],
        json!(["DeleteGrant", "CreateGrant", "ActivateGrant"]),
        "{l}"
    );
    let grants = per_account_grants(&s, &account.id, &license).await;
    assert!(
        grants.contains(&format!("{failed_arn}=DELETED")),
        "{grants:?}"
    );
    assert_eq!(
        grants.iter().filter(|g| g.ends_with("=ACTIVE")).count(),
        1,
        "{grants:?}"
    );
}

#[tokio::test]
/// AWS promises a child to accounts that join the organization, not a re-issue of a failed one
/// ("Deleted is a terminal state for that Grant"): the failed child is repaired at once by a
/// grant of ct-entitlements' own, then cleared. Under either reading of `reissueDeletedChild`
/// the account ends with one ACTIVE grant, and nothing waits for a grant nobody promised.
async fn failed_child_of_an_organization_grant_is_repaired_by_a_grant_of_our_own_and_cleared() {
    let mut spec = demo_spec();
    spec.org_wide_grants = vec!["prod-demo-firewall".into()];
    let Some(mut s) = setup(spec).await else {
        return;
    };
    let ou = s.org.ou("Sandbox").unwrap().id.clone();
    // A vended account joins before anything created its service-linked roles: License
    // Manager's child grant for it fails its workflow.
    let account = seed::add_account(&s.world, &mut s.org, "vended", &ou)
        .await
        .unwrap();
    let firewall = s.org.license("prod-demo-firewall").unwrap().arn.clone();
    let lm = s.world.license_manager();
    let mut failed = None;
    for _ in 0..10 {
        s.world
            .control()
            .advance_clock(std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let out = lm
            .list_received_grants_for_organization()
            .license_arn(&firewall)
            .filters(
                Filter::builder()
                    .name("GranteePrincipalArn")
                    .values(format!("arn:aws:iam::{}:root", account.id))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        failed = out
            .grants()
            .iter()
            .find(|g| g.grant_status() == &GrantStatus::FailedWorkflow)
            .map(|g| g.grant_arn().to_string());
        if failed.is_some() {
            break;
        }
    }
    let failed = failed.expect("the child failed for lack of roles");

    let engine = s.engine(&[
        ("ALL_MARKETPLACE_LICENSES", "false"),
        ("LICENSE_ARNS", &firewall),
    ]);
    let report = s.onboard(&engine, s.create_event(&account.id, &ou)).await;
    assert_eq!(report["outcome"], "entitled", "{report:#}");
    let l = &report["licenses"][0];
    assert_eq!(l["grantSource"], "account", "{l}");
    assert_eq!(
        l["actions"],
        json!(["CreateGrant", "ActivateGrant", "DeleteGrant"]),
        "{l}"
    );
    assert_ne!(l["grantArn"], json!(failed));
    let ours = per_account_grants(&s, &account.id, &firewall).await;
    assert_eq!(
        ours,
        vec![format!("{}=ACTIVE", l["grantArn"].as_str().unwrap())]
    );
    let cleared = lm.get_grant().grant_arn(&failed).send().await.unwrap();
    assert_eq!(
        cleared.grant().unwrap().grant_status(),
        &GrantStatus::Deleted,
        "the failed child is cleared"
    );
    // Nothing is queued to wait for a re-issue.
    assert!(report["recheckInSeconds"].is_null(), "{report:#}");
}

#[tokio::test]
async fn operations_the_grantor_does_not_hold_are_left_out_and_named() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let ou = s.org.ou("Workloads").unwrap().id.clone();
    let account = seed::add_account(&s.world, &mut s.org, "ops", &ou)
        .await
        .unwrap();
    // A license whose buyer may pass on only checkout and check-in.
    let seeded = s
        .world
        .control()
        .seed_license(
            &local_world::emulator::LicenseSeed::marketplace(
                &s.org.management_account,
                "prod-limited",
                "Limited product",
            )
            .with_allowed_operations(&["CheckoutLicense", "CheckInLicense"]),
        )
        .await
        .unwrap();
    let license = seeded["LicenseArn"].as_str().unwrap().to_string();
    let engine = s.engine(&[
        ("ALL_MARKETPLACE_LICENSES", "false"),
        ("LICENSE_ARNS", &license),
    ]);
    let report = s.onboard(&engine, s.create_event(&account.id, &ou)).await;
    assert_eq!(report["outcome"], "entitled", "{report:#}");
    let warnings = report["licenses"][0]["warnings"].to_string();
    assert!(
        warnings.contains("ExtendConsumptionLicense") && warnings.contains("ListPurchasedLicenses"),
        "{report:#}"
    );
}

/// A Control Tower event (or a queued message) names the OU the account was placed in; by the
/// time it runs the account may have moved and the OU be gone. That claim is not the truth:
/// Organizations' "not found" sends the run back to read the account's OU, and the account is
/// entitled under the OU it is really in. (Before, the not-found error was permanent: the
/// message went to the dead-letter queue and the account was never entitled.)
#[tokio::test]
async fn an_event_naming_an_ou_since_deleted_reads_the_truth_and_entitles() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let workloads = s.org.ou("Workloads").unwrap().id.clone();
    let account = seed::add_account(&s.world, &mut s.org, "moved", &workloads)
        .await
        .unwrap();
    let orgs = s.world.organizations();
    let root = s.org.root_id.clone();
    let gone = orgs
        .create_organizational_unit()
        .parent_id(&root)
        .name("Temporary")
        .send()
        .await
        .unwrap()
        .organizational_unit()
        .unwrap()
        .id()
        .unwrap()
        .to_string();
    orgs.delete_organizational_unit()
        .organizational_unit_id(&gone)
        .send()
        .await
        .unwrap();
    let engine = s.engine(&[]);
    let report = s.onboard(&engine, s.create_event(&account.id, &gone)).await;
    assert_eq!(report["outcome"], "entitled", "{report:#}");
    assert_eq!(report["ouId"], workloads.as_str(), "{report:#}");
    assert!(report["error"].is_null(), "{report:#}");
}
