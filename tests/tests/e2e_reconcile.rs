//! Reconcile and backfill end to end: the reconciler fans out one onboarding message per
//! account, account-lifecycle works them from the queue, drift is healed on the next run, and
//! departed accounts are offboarded.
#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_licensemanager::types::GrantStatus;
use common::setup;
use local_world::seed::demo_spec;
use shared::engine::OffboardMode;
use shared::reconcile::{self, ReconcileConfig, Scope};
use shared::Outcome;

fn reconcile_config(queue_url: &str, offboard: Option<OffboardMode>) -> ReconcileConfig {
    ReconcileConfig {
        onboarding_queue_url: queue_url.to_string(),
        backfill_queue_url: None,
        ous: Vec::new(),
        offboard,
        dry_run: false,
    }
}

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
    let again = reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
    assert!(again.error.is_none(), "{again:#?}");
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
    let sqs = s.world.sqs();
    let backfill_url = sqs
        .create_queue()
        .queue_name("backfill")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let config = ReconcileConfig {
        backfill_queue_url: Some(backfill_url.clone()),
        ..reconcile_config(&s.queue_url, None)
    };
    let report = reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
    assert_eq!(report.enqueued, 3, "{report:#?}");
    let mut bodies = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(&backfill_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() {
            break;
        }
        for m in got.messages() {
            bodies.push(serde_json::from_str::<serde_json::Value>(m.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(&backfill_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
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
