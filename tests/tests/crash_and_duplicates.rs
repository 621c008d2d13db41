//! Crashes in the middle of an invocation and duplicate or racing deliveries (issue 10, items 2
//! and 3), against moto + the License Manager emulator through the real queue path.
//!
//! A crash is the function stopping at a chosen call: the emulator's `failNext` switch with
//! mode `hang` lets the call take effect and never answers, and the test then drops the
//! invocation's future (the container is gone). The message the batch was working is then
//! redelivered, as SQS does once its visibility timeout expires, to a fresh engine (a fresh
//! container). Every test ends with: every license's grant ACTIVE, exactly one live grant per
//! (license, account) as the grantor sees it, nothing parked in the DLQ.
#![allow(clippy::unwrap_used)]

#[path = "common/catalog.rs"]
mod catalog;
mod common;

use catalog_provisioning::PendingResponse;
use common::{futures_join_all, setup, try_handle, QueueRun, Reasons, Setup};
use local_world::receiver::Receiver;
use local_world::seed::{self, demo_spec};
use serde_json::{json, Value};
use shared::reconcile::{self, Scope};
use std::time::Duration;

/// Grant workflows and activations take a little while (emulator clock), so deliveries
/// overlap with grants that are still settling.
const SLOW: &str = r#"{"pendingWorkflowMs": 300, "activationMs": 300}"#;

/// A fresh account in the Workloads OU (no service-linked roles yet) and its OU.
async fn new_account(s: &mut Setup, name: &str) -> (String, String) {
    let ou = s.org.ou("Workloads").unwrap().id.clone();
    let account = seed::add_account(&s.world, &mut s.org, name, &ou)
        .await
        .unwrap();
    (account.id, ou)
}

async fn slow(s: &Setup, extra: Value) {
    let mut patch: Value = serde_json::from_str(SLOW).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        patch[k] = v.clone();
    }
    s.world.control().configure(patch).await.unwrap();
}

/// Drains the queue (redelivery, DLQ after 5 receives) with a fresh engine, counting re-checks.
async fn drain(s: &Setup) -> QueueRun {
    let reasons: Reasons = Default::default();
    let engine = s.engine(&[]);
    s.consume_queue(
        std::slice::from_ref(&engine),
        5,
        Duration::from_secs(2),
        &reasons,
        true,
    )
    .await
}

/// Every license has exactly one live grant for the account, and it is ACTIVE.
async fn assert_one_active_grant_per_license(s: &Setup, account: &str) {
    let live = s.live_grants().await;
    let principal = format!("arn:aws:iam::{account}:root");
    for license in &s.org.licenses {
        let grants = live
            .get(&(license.arn.clone(), principal.clone()))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            grants,
            vec!["ACTIVE".to_string()],
            "{}: live grants for {account}: {live:?}",
            license.sku
        );
    }
}

/// Receives the one message on the queue, keeping it in flight (as Lambda does while its
/// batch runs).
async fn receive_one(s: &Setup) -> aws_sdk_sqs::types::Message {
    let out = s
        .world
        .sqs()
        .receive_message()
        .queue_url(&s.queue_url)
        .max_number_of_messages(10)
        .visibility_timeout(300)
        .send()
        .await
        .unwrap();
    assert_eq!(out.messages().len(), 1);
    out.messages()[0].clone()
}

fn batch_of(m: &aws_sdk_sqs::types::Message) -> Value {
    json!({"Records": [{"messageId": m.message_id(), "eventSource": "aws:sqs", "body": m.body()}]})
}

/// The visibility timeout of a message whose batch never answered expires: SQS delivers it
/// again.
async fn expire(s: &Setup, m: &aws_sdk_sqs::types::Message) {
    s.world
        .sqs()
        .change_message_visibility()
        .queue_url(&s.queue_url)
        .receipt_handle(m.receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
}

/// Runs the Control Tower event for a new account as an SQS batch and stops the function when
/// `operation` has taken effect (its answer never comes); then redelivers to a fresh engine.
async fn crash_after(operation: &str, extra: Value) {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let (account, ou) = new_account(&mut s, &format!("Crash{operation}")).await;
    slow(&s, extra).await;
    s.enqueue(&s.create_event(&account, &ou)).await;
    let control = s.world.control();
    control
        .configure(json!({"failNext": [{"operation": operation, "count": 1, "mode": "hang"}]}))
        .await
        .unwrap();
    // Deliveries one by one (the event, then its re-checks) until one stops at `operation`.
    let mut crashed = false;
    for _ in 0..20 {
        control.advance_clock(Duration::from_secs(2)).await.unwrap();
        let message = receive_one(&s).await;
        let engine = s.engine(&[]);
        let stopped = async {
            loop {
                if control.fault_counts().await.unwrap().hangs > 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            out = account_lifecycle::handle(&engine, batch_of(&message)) => {
                assert_eq!(out.unwrap()["batchItemFailures"], json!([]));
                s.world.sqs().delete_message().queue_url(&s.queue_url)
                    .receipt_handle(message.receipt_handle().unwrap()).send().await.unwrap();
            }
            () = stopped => {
                drop(engine); // the container is gone
                expire(&s, &message).await;
                crashed = true;
                break;
            }
        }
    }
    assert!(crashed, "{operation} was never called");

    let run = drain(&s).await;
    assert!(run.parked.is_empty(), "{:?}", run.parked);
    assert_one_active_grant_per_license(&s, &account).await;
    assert!(
        run.max_rechecks_per_account <= 1,
        "re-check storm: {} re-checks queued at once for {account}",
        run.max_rechecks_per_account
    );
}

#[tokio::test]
async fn crash_after_create_grant_before_activation_then_redelivery_finishes_with_one_grant() {
    crash_after("CreateGrant", json!({})).await;
}

#[tokio::test]
async fn crash_after_accept_grant_then_redelivery_finishes_with_one_grant() {
    // Without "Link AWS Organizations accounts" grants wait in PENDING_ACCEPT: the member
    // accepts (with the assumed role).
    crash_after("AcceptGrant", json!({"autoAccept": false})).await;
}

#[tokio::test]
async fn crash_after_activation_request_then_redelivery_finishes_with_one_grant() {
    crash_after("CreateGrantVersion", json!({})).await;
}

/// The function queued its re-check (SendMessage is its last call) and stopped before the
/// batch answered: SQS then holds the re-check and delivers the original message again. From
/// outside, that is an invocation that ran to its end and whose answer was lost.
///
/// The redelivered original and the re-check it had queued are both worked while the account
/// is pending, so each queues a re-check: two chains for the account until it settles. A
/// standard queue cannot deduplicate them and no run sees the other's chain; what is proven
/// here is that they do not multiply (at most 2 outstanding at any round), both end, and the
/// account ends with one ACTIVE grant per license.
#[tokio::test]
async fn crash_after_the_recheck_is_sent_before_the_batch_answers() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let (account, ou) = new_account(&mut s, "CrashRecheck").await;
    slow(&s, json!({})).await;
    s.enqueue(&s.create_event(&account, &ou)).await;
    let message = receive_one(&s).await;
    let engine = s.engine(&[]);
    let answer = account_lifecycle::handle(&engine, batch_of(&message))
        .await
        .unwrap();
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    assert_eq!(
        s.rechecks_per_account().await.get(&account),
        Some(&1),
        "the account is pending: one re-check queued"
    );
    drop(engine);
    expire(&s, &message).await; // the answer never reached SQS

    let run = drain(&s).await;
    assert!(run.parked.is_empty(), "{:?}", run.parked);
    assert_one_active_grant_per_license(&s, &account).await;
    assert!(
        run.max_rechecks_per_account <= 2,
        "re-check storm: {}",
        run.max_rechecks_per_account
    );
    assert_eq!(
        s.rechecks_per_account().await.get(&account),
        None,
        "both chains ended"
    );
}

/// The same answer lost after the write: CreateGrant commits, answers 500, the invocation
/// fails, SQS redelivers; the retry's ClientToken names the same grant.
#[tokio::test]
async fn create_grant_answer_lost_then_redelivery_reuses_the_grant() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let (account, ou) = new_account(&mut s, "LostAnswer").await;
    slow(
        &s,
        json!({"failNext": [{"operation": "CreateGrant", "count": 3, "mode": "afterCommit"}]}),
    )
    .await;
    s.enqueue(&s.create_event(&account, &ou)).await;
    let run = drain(&s).await;
    assert!(run.parked.is_empty(), "{:?}", run.parked);
    assert!(run.redeliveries >= 1, "the failed message came back");
    assert_eq!(s.world.control().fault_counts().await.unwrap().fail_next, 3);
    assert_one_active_grant_per_license(&s, &account).await;
}

#[tokio::test]
async fn the_same_event_five_times_at_once_makes_one_grant_per_license() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let (account, ou) = new_account(&mut s, "Dup5").await;
    slow(&s, json!({})).await;
    // Five containers, each cold, each with the same event.
    let engines: Vec<_> = (0..5).map(|_| s.engine(&[])).collect();
    let event = s.create_event(&account, &ou);
    let reports = futures_join_all(engines.iter().map(|e| try_handle(e, event.clone()))).await;
    for r in &reports {
        assert_ne!(r["outcome"], "failed", "{r:#}");
    }
    let run = drain(&s).await;
    assert!(run.parked.is_empty(), "{:?}", run.parked);
    assert_one_active_grant_per_license(&s, &account).await;
    // The containers raced on CreateGrant; the deterministic ClientToken (account, license,
    // generation) made every call name the same grant: no other grant was ever made, not even
    // one deleted since.
    let principal = format!("arn:aws:iam::{account}:root");
    let ever = s
        .world
        .license_manager()
        .list_distributed_grants()
        .send()
        .await
        .unwrap()
        .grants()
        .iter()
        .filter(|g| g.grantee_principal_arn() == principal)
        .count();
    assert_eq!(
        ever,
        3,
        "{} CreateGrant calls",
        s.calls("CreateGrant").await
    );
}

#[tokio::test]
async fn a_batch_with_five_copies_of_one_message_makes_one_grant_per_license() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let (account, ou) = new_account(&mut s, "Batch5").await;
    slow(&s, json!({})).await;
    for _ in 0..5 {
        s.enqueue(&s.create_event(&account, &ou)).await;
    }
    let run = drain(&s).await;
    assert!(run.parked.is_empty(), "{:?}", run.parked);
    assert!(run.deliveries >= 5);
    assert_one_active_grant_per_license(&s, &account).await;
}

/// The Control Tower event, a reconcile of the same account (its message worked by another
/// container) and a Service Catalog launch for the same account, all at once.
#[tokio::test]
async fn event_reconcile_and_catalog_launch_at_once_make_one_grant_per_license() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let (account, ou) = new_account(&mut s, "Race3").await;
    slow(&s, json!({})).await;
    let license = s.org.licenses[0].clone();

    let reconciler = s.engine(&[]);
    let config = common::reconcile_config(&s.queue_url, None);
    let report = reconcile::reconcile(
        &reconciler,
        &config,
        Scope::Accounts(vec![shared::ids::AccountId::parse(&account).unwrap()]),
        false,
    )
    .await;
    assert!(report.error.is_none(), "{report:#?}");
    assert_eq!(report.enqueued, 1);

    let event_engine = s.engine(&[]);
    let queue_engine = s.engine(&[]);
    let app = catalog::app(
        &s,
        s.engine(&[]),
        catalog::config(
            PendingResponse::Failed,
            Duration::from_secs(20),
            Duration::from_millis(100),
        ),
    );
    let receiver = Receiver::start(Vec::new()).await;
    let launch = json!({
        "RequestType": "Create",
        "ServiceToken": "arn:aws:lambda:us-east-1:000000000000:function:catalog-provisioning",
        "ResponseURL": receiver.url,
        "StackId": format!("arn:aws:cloudformation:us-east-1:{account}:stack/SC-{account}-pp-race/1"),
        "RequestId": "req-race",
        "ResourceType": "Custom::MarketplaceEntitlement",
        "LogicalResourceId": "Entitlement",
        "ResourceProperties": {"ProductSku": license.sku},
    });
    let reasons: Reasons = Default::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (event_report, queue_run, catalog) = tokio::join!(
        try_handle(&event_engine, s.create_event(&account, &ou)),
        s.consume_queue(
            std::slice::from_ref(&queue_engine),
            5,
            Duration::from_millis(100),
            &reasons,
            false
        ),
        catalog_provisioning::handle(&app, launch, deadline),
    );
    assert_ne!(event_report["outcome"], "failed", "{event_report:#}");
    assert!(queue_run.parked.is_empty(), "{:?}", queue_run.parked);
    catalog.unwrap();
    let answer: Value = serde_json::from_str(&receiver.bodies()[0]).unwrap();
    assert_eq!(answer["Status"], "SUCCESS", "{answer:#}");
    assert_eq!(answer["Data"]["GrantStatus"], "ACTIVE", "{answer:#}");

    let run = drain(&s).await;
    assert!(run.parked.is_empty(), "{:?}", run.parked);
    assert_one_active_grant_per_license(&s, &account).await;
    let live = s.live_grants().await;
    let principal = format!("arn:aws:iam::{account}:root");
    assert_eq!(
        answer["PhysicalResourceId"].as_str(),
        Some(
            s.world
                .license_manager()
                .list_distributed_grants()
                .send()
                .await
                .unwrap()
                .grants()
                .iter()
                .find(|g| g.license_arn() == license.arn
                    && g.grantee_principal_arn() == principal
                    && g.grant_status().as_str() == "ACTIVE")
                .map(|g| g.grant_arn())
                .unwrap_or_default()
        ),
        "the catalog's grant is the account's one grant: {live:?}"
    );
}
