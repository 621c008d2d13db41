//! Reconcile and backfill end to end: the reconciler fans out one onboarding message per
//! account, account-lifecycle works them from the queue, drift is healed on the next run, and
//! departed accounts are offboarded.
#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_licensemanager::types::GrantStatus;
use common::{reconcile_config, setup};
use local_world::seed::demo_spec;
use shared::engine::OffboardMode;
use shared::reconcile::{self, ReconcileConfig, Scope};
use shared::report::Outcome;

#[tokio::test]
async fn backfill_entitles_every_account_and_a_second_run_changes_nothing() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let engine = s.engine(&[]);
    let config = reconcile_config(&s.queue_url, None);

    let plan = reconcile::reconcile(&engine, &config, Scope::Organization, true).await;
    assert_eq!(plan.onboard.len(), 3, "{plan:#?}");
    assert_eq!(plan.enqueued, 0, "dry run sends nothing");
    assert_eq!(
        plan.skipped
            .get(&s.org.management_account)
            .map(String::as_str),
        Some("management account")
    );

    let report = reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
    assert!(report.error.is_none(), "{report:#?}");
    assert_eq!(report.enqueued, 3);
    assert_eq!(s.drain_queue(&engine).await, (3, 0));
    for account in &s.org.accounts {
        let grants = s.grants_in(&account.id).await;
        assert_eq!(grants.len(), 3, "{}: {grants:?}", account.name);
        assert!(
            grants.iter().all(|(_, st)| st == "ACTIVE"),
            "{}: {grants:?}",
            account.name
        );
    }

    // Nothing changed: the grantor's listings say so, no account is queued or entered.
    let created = s.calls("CreateGrant").await;
    let versions = s.calls("CreateGrantVersion").await;
    // With a quota of 3 grants per license, each license's 3 grants draw a warning.
    let small_quota = ReconcileConfig {
        grant_quota: 3,
        ..config.clone()
    };
    let again = reconcile::reconcile(&engine, &small_quota, Scope::Organization, false).await;
    assert!(again.error.is_none(), "{again:#?}");
    assert_eq!(again.warnings.len(), 3, "{:?}", again.warnings);
    assert_eq!(again.enqueued, 0, "{again:#?}");
    assert_eq!(again.up_to_date, 3, "{again:#?}");
    assert_eq!(s.drain_queue(&engine).await, (0, 0));
    assert_eq!(again.api_calls.get("sts:AssumeRole"), None);
    assert_eq!(again.api_calls.get("sqs:SendMessageBatch"), None);
    // 3 licenses, one page each; the OU tree and held licenses once.
    assert_eq!(
        again.api_calls.get("license-manager:ListDistributedGrants"),
        Some(&3),
        "{:?}",
        again.api_calls
    );
    let total: u32 = again.api_calls.values().sum();
    let ous = s.org.ous.len() as u32;
    assert!(
        total <= 2 + 2 * (ous + 1) + 3 + 3,
        "{total} calls for {ous} OUs: {:?}",
        again.api_calls
    );
    assert_eq!(s.calls("CreateGrant").await, created);
    assert_eq!(s.calls("CreateGrantVersion").await, versions);

    // A new member that Control Tower's event never reached is found and queued, with its OU.
    let ou = s.org.ou("Sandbox").unwrap().id.clone();
    let mut org = s.org.clone();
    let late = local_world::seed::add_account(&s.world, &mut org, "late-joiner", &ou)
        .await
        .unwrap();
    let found = reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
    assert_eq!(found.onboard, vec![late.id.clone()], "{found:#?}");
    assert!(
        found.needs[&late.id].contains("no grant"),
        "{:?}",
        found.needs
    );
    assert_eq!(s.drain_queue(&engine).await, (1, 0));
    assert_eq!(s.grants_in(&late.id).await.len(), 3);
}

#[tokio::test]
async fn deactivated_grant_is_reactivated_on_the_next_run() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let engine = s.engine(&[]);
    let config = reconcile_config(&s.queue_url, None);
    let ou = s.org.ou("Sandbox").unwrap().id.clone();
    reconcile::reconcile(&engine, &config, Scope::Ous(vec![ou]), false).await;
    assert_eq!(s.drain_queue(&engine).await, (1, 0));

    // Someone deactivates the sandbox account's grant (grantor side).
    let account = s.org.account("sandbox-1").unwrap().clone();
    let lm = s.world.license_manager();
    let grants = lm
        .list_distributed_grants()
        .filters(
            aws_sdk_licensemanager::types::Filter::builder()
                .name("GranteePrincipalARN")
                .values(format!("arn:aws:iam::{}:root", account.id))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let g = &grants.grants()[0];
    lm.create_grant_version()
        .client_token("drift-1")
        .grant_arn(g.grant_arn())
        .source_version(g.version())
        .status(GrantStatus::Disabled)
        .send()
        .await
        .unwrap();
    assert!(s
        .grants_in(&account.id)
        .await
        .iter()
        .any(|(_, st)| st == "DISABLED"));

    let report = reconcile::reconcile(
        &engine,
        &config,
        Scope::Accounts(vec![shared::ids::AccountId::parse(&account.id).unwrap()]),
        false,
    )
    .await;
    assert_eq!(report.enqueued, 1);
    assert_eq!(s.drain_queue(&engine).await, (1, 0));
    let grants = s.grants_in(&account.id).await;
    assert!(grants.iter().all(|(_, st)| st == "ACTIVE"), "{grants:?}");
}

#[tokio::test]
async fn suspended_and_departed_accounts_are_offboarded() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let engine = s.engine(&[]);
    reconcile::reconcile(
        &engine,
        &reconcile_config(&s.queue_url, None),
        Scope::Organization,
        false,
    )
    .await;
    assert_eq!(s.drain_queue(&engine).await, (3, 0));

    let suspended = s.org.account("workload-dev").unwrap().id.clone();
    let departed = s.org.account("sandbox-1").unwrap().id.clone();
    let orgs = s.world.organizations();
    orgs.close_account()
        .account_id(&suspended)
        .send()
        .await
        .unwrap();
    orgs.remove_account_from_organization()
        .account_id(&departed)
        .send()
        .await
        .unwrap();

    let config = reconcile_config(&s.queue_url, Some(OffboardMode::Deactivate));
    let report = reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
    assert!(report.error.is_none(), "{report:#?}");
    common::assert_least_privilege(
        &serde_json::to_value(&report).unwrap(),
        shared::permissions::RECONCILER,
    );
    for offboarded in &report.offboarded {
        common::assert_least_privilege(
            &serde_json::to_value(offboarded).unwrap(),
            shared::permissions::RECONCILER,
        );
    }
    assert_eq!(
        (report.enqueued, report.up_to_date),
        (0, 1),
        "the remaining ACTIVE member is entitled already: {report:#?}"
    );
    let mut offboard = report.offboard.clone();
    offboard.sort();
    let mut expected = vec![suspended.clone(), departed.clone()];
    expected.sort();
    assert_eq!(offboard, expected);
    assert!(
        report
            .offboarded
            .iter()
            .all(|r| r.outcome == Outcome::Offboarded),
        "{report:#?}"
    );

    let lm = s.world.license_manager();
    for account in [&suspended, &departed] {
        let grants = lm
            .list_distributed_grants()
            .filters(
                aws_sdk_licensemanager::types::Filter::builder()
                    .name("GranteePrincipalARN")
                    .values(format!("arn:aws:iam::{account}:root"))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(grants.grants().len(), 3);
        assert!(
            grants
                .grants()
                .iter()
                .all(|g| g.grant_status() == &GrantStatus::Disabled),
            "{account}: {grants:?}"
        );
    }
    // A second run finds nothing left to deactivate.
    let again = reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
    assert!(
        again.offboarded.iter().all(|r| r.write_calls == 0),
        "{again:#?}"
    );
}

/// Issue 11 (new accounts first): organization and OU runs go to the backfill queue, with the
/// account's OU and the backfill mark; accounts named on demand go to the onboarding queue.
#[tokio::test]
async fn backfill_goes_to_its_own_queue_named_accounts_to_the_onboarding_queue() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let engine = s.engine(&[]);
    let (backfill_url, _) = common::new_queue(&s.world, "backfill").await;
    let config = ReconcileConfig {
        backfill_queue_url: Some(backfill_url.clone()),
        ..reconcile_config(&s.queue_url, None)
    };
    let report = reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
    assert_eq!(report.enqueued, 3, "{report:#?}");
    let bodies: Vec<serde_json::Value> = common::take_bodies(&s.world, &backfill_url)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    for b in &bodies {
        assert_eq!(b["backfill"], true, "{b}");
        let account = s
            .org
            .accounts
            .iter()
            .find(|a| b["accountId"] == a.id.as_str())
            .unwrap();
        assert_eq!(b["ouId"], account.ou_id.as_str(), "{b}");
    }
    assert_eq!(
        s.drain_queue(&engine).await,
        (0, 0),
        "nothing on the onboarding queue"
    );

    let named = shared::ids::AccountId::parse(&s.org.accounts[0].id).unwrap();
    let report = reconcile::reconcile(&engine, &config, Scope::Accounts(vec![named]), false).await;
    assert_eq!(report.enqueued, 1);
    assert_eq!(
        s.drain_queue(&engine).await,
        (1, 0),
        "named: the onboarding queue"
    );
}

/// An Organizations CloudTrail event as EventBridge delivers it; `sender` is the envelope's
/// `account` (the management account for the real thing).
fn cloudtrail(sender: &str, event_name: &str, request: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "version": "0", "id": "e-1", "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.organizations", "account": sender,
        "time": "2026-11-30T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {
            "eventVersion": "1.08", "eventSource": "organizations.amazonaws.com",
            "eventName": event_name, "awsRegion": "us-east-1",
            "requestParameters": request, "responseElements": null
        }
    })
}

/// Issue 12 §1: change events reach the reconciler (the template's rules) and act on the
/// account they name, at once; nothing else is touched.
#[tokio::test]
async fn change_events_act_on_the_account_they_name_and_nothing_else() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let sandbox_ou = s.org.ou("Sandbox").unwrap().id.clone();
    let workloads_ou = s.org.ou("Workloads").unwrap().id.clone();
    let first_license = s.org.licenses[0].arn.clone();
    // Sandbox accounts get one license; everyone else every license.
    let rules = format!(r#"{{"{sandbox_ou}": ["{first_license}"]}}"#);
    let engine = s.engine(&[("OU_LICENSE_RULES", &rules)]);
    let config = reconcile_config(&s.queue_url, Some(OffboardMode::Deactivate));
    reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
    assert_eq!(s.drain_queue(&engine).await, (3, 0));
    let sandbox = s.org.account("sandbox-1").unwrap().id.clone();
    let dev = s.org.account("workload-dev").unwrap().id.clone();
    let prod = s.org.account("workload-prod").unwrap().id.clone();
    assert_eq!(s.grants_in(&sandbox).await.len(), 1);
    let prod_grants = s.grants_in(&prod).await;

    // The sandbox account moves to Workloads: its next licenses, now.
    s.world
        .organizations()
        .move_account()
        .account_id(&sandbox)
        .source_parent_id(&sandbox_ou)
        .destination_parent_id(&workloads_ou)
        .send()
        .await
        .unwrap();
    let created = s.calls("CreateGrant").await;
    let mgmt = s.org.management_account.clone();
    let moved = cloudtrail(
        &mgmt,
        "MoveAccount",
        serde_json::json!({"accountId": sandbox, "sourceParentId": sandbox_ou, "destinationParentId": workloads_ou}),
    );
    let report = reconciler::handle(&engine, &config, &moved).await.unwrap();
    assert_eq!(
        report["onboard"],
        serde_json::json!([sandbox]),
        "{report:#}"
    );
    assert_eq!(s.drain_queue(&engine).await, (1, 0));
    let grants = s.grants_in(&sandbox).await;
    assert_eq!(grants.len(), 3, "{grants:?}");
    assert!(grants.iter().all(|(_, st)| st == "ACTIVE"), "{grants:?}");
    assert_eq!(
        s.calls("CreateGrant").await,
        created + 2,
        "two new grants, no more"
    );

    // A grant is deactivated by hand; License Manager's Grant Change event brings it back now.
    let principal = format!("arn:aws:iam::{prod}:root");
    let g = common::deactivate_by_hand(&s.world, &prod, "by-hand").await;
    let change = serde_json::json!({
        "source": "aws.license-manager", "detail-type": "Grant Change",
        "detail": {"grantArn": g.grant_arn(), "granteePrincipal": principal, "status": "DISABLED"}
    });
    let report = reconciler::handle(&engine, &config, &change).await.unwrap();
    assert_eq!(report["onboard"], serde_json::json!([prod]), "{report:#}");
    assert_eq!(s.drain_queue(&engine).await, (1, 0));
    assert_eq!(s.grants_in(&prod).await, prod_grants, "ACTIVE again");

    // License Manager sends a Grant Change for each step of that (and for grants this stack
    // creates, accepts, activates): six events naming an account whose grants are all ACTIVE
    // add no run (before, each put a message on the onboarding queue); a few grantor-side reads
    // decide it, no AssumeRole.
    for status in [
        "ACTIVE",
        "ACTIVE",
        "DISABLED",
        "ACTIVE",
        "PENDING_WORKFLOW",
        "ACTIVE",
    ] {
        let change = serde_json::json!({
            "source": "aws.license-manager", "detail-type": "Grant Change",
            "detail": {"grantArn": g.grant_arn(), "granteePrincipal": principal, "status": status}
        });
        let report = reconciler::handle(&engine, &config, &change).await.unwrap();
        assert_eq!(report["enqueued"], 0, "{report:#}");
        assert!(
            report["apiCalls"].get("sts:AssumeRole").is_none(),
            "{report:#}"
        );
    }
    assert_eq!(s.drain_queue(&engine).await, (0, 0));

    // The dev account is closed: offboarded at once; the others keep their grants.
    s.world
        .organizations()
        .close_account()
        .account_id(&dev)
        .send()
        .await
        .unwrap();
    let closed = cloudtrail(&mgmt, "CloseAccount", serde_json::json!({"accountId": dev}));
    let report = reconciler::handle(&engine, &config, &closed).await.unwrap();
    assert_eq!(report["offboard"], serde_json::json!([dev]), "{report:#}");
    let dev_grants = s.grants_in(&dev).await;
    assert!(!dev_grants.is_empty() && dev_grants.iter().all(|(_, st)| st == "DISABLED"));
    for account in [&prod, &sandbox] {
        let grants = s.grants_in(account).await;
        assert!(
            grants.iter().all(|(_, st)| st == "ACTIVE"),
            "{account}: {grants:?}"
        );
    }

    // A change the reconciler cannot read: the configured scope, where nothing is missing.
    let unknown = serde_json::json!({"source": "aws.license-manager", "detail-type": "License Change", "detail": {"x": 1}});
    let report = reconciler::handle(&engine, &config, &unknown)
        .await
        .unwrap();
    assert_eq!(report["enqueued"], 0, "{report:#}");
    assert!(report["apiCalls"].get("sts:AssumeRole").is_none());
}

/// Per-account grants to `account`, as the grantor lists them: (license, status).
async fn distributed_to(s: &common::Setup, account: &str) -> Vec<(String, String)> {
    let mut grants: Vec<(String, String)> = s
        .world
        .license_manager()
        .list_distributed_grants()
        .filters(
            aws_sdk_licensemanager::types::Filter::builder()
                .name("GranteePrincipalARN")
                .values(format!("arn:aws:iam::{account}:root"))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .grants()
        .iter()
        .map(|g| {
            (
                g.license_arn().to_string(),
                g.grant_status().as_str().to_string(),
            )
        })
        .collect();
    grants.sort();
    grants
}

/// Issue 16 §2: an Organizations event is a claim, not a fact. A denied `CloseAccount`
/// (CloudTrail records it, with `errorCode`), a `CloseAccount` for an account Organizations
/// still calls ACTIVE, and a removal sent by another account offboard nothing, in either
/// offboarding mode; a removal that happened, sent by the management account, still offboards.
#[tokio::test]
async fn only_a_confirmed_departure_offboards() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let engine = s.engine(&[]);
    reconcile::reconcile(
        &engine,
        &reconcile_config(&s.queue_url, None),
        Scope::Organization,
        false,
    )
    .await;
    assert_eq!(s.drain_queue(&engine).await, (3, 0));
    let mgmt = s.org.management_account.clone();
    let dev = s.org.account("workload-dev").unwrap().id.clone();
    let sandbox = s.org.account("sandbox-1").unwrap().id.clone();
    let dev_grants = distributed_to(&s, &dev).await;
    assert_eq!(dev_grants.len(), 3, "{dev_grants:?}");
    assert!(
        dev_grants.iter().all(|(_, st)| st == "ACTIVE"),
        "{dev_grants:?}"
    );
    let writes = || async {
        (
            s.calls("DeleteGrant").await,
            s.calls("CreateGrantVersion").await,
        )
    };
    let before = writes().await;

    for mode in [OffboardMode::Deactivate, OffboardMode::Delete] {
        let config = reconcile_config(&s.queue_url, Some(mode));
        // Denied: the call did not happen. Nothing is read or written.
        let mut denied = cloudtrail(&mgmt, "CloseAccount", serde_json::json!({"accountId": dev}));
        denied["detail"]["errorCode"] = "AccessDenied".into();
        denied["detail"]["errorMessage"] =
            "You don't have permissions to access this resource.".into();
        let report = reconciler::handle(&engine, &config, &denied).await.unwrap();
        assert_eq!(
            report["offboard"],
            serde_json::json!([]),
            "{mode:?}: {report:#}"
        );
        assert_eq!(
            report["offboarded"],
            serde_json::json!([]),
            "{mode:?}: {report:#}"
        );
        assert!(
            report["ignored"]
                .as_str()
                .is_some_and(|r| r.contains("\"AccessDenied\"")),
            "{mode:?}: {report:#}"
        );
        assert_eq!(
            report["apiCalls"],
            serde_json::json!({}),
            "{mode:?}: {report:#}"
        );

        // Not denied, but Organizations says the account is ACTIVE: re-checked, not offboarded.
        let unconfirmed = cloudtrail(&mgmt, "CloseAccount", serde_json::json!({"accountId": dev}));
        let report = reconciler::handle(&engine, &config, &unconfirmed)
            .await
            .unwrap();
        assert_eq!(
            report["offboard"],
            serde_json::json!([]),
            "{mode:?}: {report:#}"
        );
        assert_eq!(
            report["offboarded"],
            serde_json::json!([]),
            "{mode:?}: {report:#}"
        );
        assert_eq!(
            report["onboard"],
            serde_json::json!([dev]),
            "{mode:?}: {report:#}"
        );
        assert!(
            report["needs"][&dev]
                .as_str()
                .is_some_and(|r| r.contains("ACTIVE")),
            "{mode:?}: {report:#}"
        );
        assert_eq!(
            report["apiCalls"]["organizations:DescribeAccount"], 1,
            "{mode:?}: {report:#}"
        );
        common::assert_least_privilege(&report, shared::permissions::RECONCILER);
        assert_eq!(s.drain_queue(&engine).await, (1, 0), "{mode:?}");

        assert_eq!(distributed_to(&s, &dev).await, dev_grants, "{mode:?}");
        assert_eq!(
            writes().await,
            before,
            "{mode:?}: no DeleteGrant, no CreateGrantVersion"
        );
    }

    // The sandbox account really leaves; an event from another account says so: ignored.
    s.world
        .organizations()
        .remove_account_from_organization()
        .account_id(&sandbox)
        .send()
        .await
        .unwrap();
    let config = reconcile_config(&s.queue_url, Some(OffboardMode::Deactivate));
    let removal = |sender: &str| {
        cloudtrail(
            sender,
            "RemoveAccountFromOrganization",
            serde_json::json!({"accountId": sandbox}),
        )
    };
    let report = reconciler::handle(&engine, &config, &removal("999999999999"))
        .await
        .unwrap();
    assert_eq!(report["offboard"], serde_json::json!([]), "{report:#}");
    assert!(
        report["skipped"][&sandbox]
            .as_str()
            .is_some_and(|r| r.contains("not the management account")),
        "{report:#}"
    );
    assert_eq!(writes().await, before);

    // The same event from the management account: Organizations confirms, the grants go.
    let report = reconciler::handle(&engine, &config, &removal(&mgmt))
        .await
        .unwrap();
    assert_eq!(
        report["offboard"],
        serde_json::json!([sandbox]),
        "{report:#}"
    );
    assert_eq!(
        report["offboarded"][0]["outcome"], "offboarded",
        "{report:#}"
    );
    common::assert_least_privilege(&report, shared::permissions::RECONCILER);
    common::assert_least_privilege(&report["offboarded"][0], shared::permissions::RECONCILER);
    let sandbox_grants = distributed_to(&s, &sandbox).await;
    assert!(
        !sandbox_grants.is_empty() && sandbox_grants.iter().all(|(_, st)| st == "DISABLED"),
        "{sandbox_grants:?}"
    );
    assert_eq!(distributed_to(&s, &dev).await, dev_grants, "dev untouched");
}
