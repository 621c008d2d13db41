//! catalog-provisioning end to end: the custom resource's handler with the real engine against
//! moto (IAM, STS, Organizations, SQS) and the License Manager emulator, answering a local
//! receiver on 127.0.0.1 that stands in for the pre-signed S3 URL. Skips without moto (fails in CI).
#![allow(clippy::unwrap_used)]

#[path = "common/catalog.rs"]
mod catalog;
mod common;

use catalog_provisioning::{handle, CatalogConfig, PendingResponse};
use common::setup;
use local_world::receiver::Receiver;
use local_world::seed::{self, demo_spec};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

fn request(
    kind: &str,
    url: &str,
    account: &str,
    properties: Value,
    physical: Option<&str>,
) -> Value {
    let mut r = json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:000000000000:function:catalog-provisioning",
        "ResponseURL": url,
        "StackId": format!("arn:aws:cloudformation:us-east-1:{account}:stack/SC-{account}-pp-e2e/1"),
        "RequestId": format!("req-{}", kind.to_lowercase()),
        "ResourceType": "Custom::MarketplaceEntitlement",
        "LogicalResourceId": "Entitlement",
        "ResourceProperties": properties,
    });
    if let Some(p) = physical {
        r["PhysicalResourceId"] = json!(p);
    }
    if kind == "Update" {
        r["OldResourceProperties"] = r["ResourceProperties"].clone();
    }
    r
}

#[tokio::test]
async fn product_launch_entitles_the_account_and_delete_deactivates_on_request() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let ou = s.org.ou("Workloads").unwrap().id.clone();
    let account = seed::add_account(&s.world, &mut s.org, "Launcher1", &ou)
        .await
        .unwrap();
    let license = s.org.licenses[0].clone();
    let app = catalog::app(
        &s,
        s.engine(&[]),
        catalog::config(
            PendingResponse::Failed,
            Duration::from_secs(20),
            Duration::from_millis(200),
        ),
    );
    let receiver = Receiver::start(Vec::new()).await;
    let url = receiver.url.clone();
    let deadline = || Instant::now() + Duration::from_secs(60);

    let props = json!({"ProductSku": license.sku, "DeactivateOnDelete": "true"});
    handle(
        &app,
        request("Create", &url, &account.id, props.clone(), None),
        deadline(),
    )
    .await
    .unwrap();
    let created: Value = serde_json::from_str(&receiver.bodies()[0]).unwrap();
    assert_eq!(created["Status"], "SUCCESS", "{created:#}");
    assert_eq!(created["Data"]["GrantStatus"], "ACTIVE");
    assert_eq!(created["Data"]["LicenseArn"], license.arn.as_str());
    assert_eq!(created["Data"]["ProductSku"], license.sku.as_str());
    let grant = created["PhysicalResourceId"].as_str().unwrap().to_string();
    assert_eq!(created["Data"]["GrantArn"], grant.as_str());
    assert!(grant.contains(":grant:g-"), "{grant}");
    assert!(
        s.grants_in(&account.id)
            .await
            .contains(&(license.arn.clone(), "ACTIVE".to_string())),
        "the account itself sees an ACTIVE grant"
    );

    // Update with the same properties: the same grant, nothing written.
    let creates = s.calls("CreateGrant").await;
    handle(
        &app,
        request("Update", &url, &account.id, props.clone(), Some(&grant)),
        deadline(),
    )
    .await
    .unwrap();
    let updated: Value = serde_json::from_str(&receiver.bodies()[1]).unwrap();
    assert_eq!(
        (
            updated["Status"].as_str(),
            updated["PhysicalResourceId"].as_str()
        ),
        (Some("SUCCESS"), Some(grant.as_str()))
    );
    assert_eq!(s.calls("CreateGrant").await, creates);

    // Delete with DeactivateOnDelete: the grantor deactivates the account's grant.
    handle(
        &app,
        request("Delete", &url, &account.id, props, Some(&grant)),
        deadline(),
    )
    .await
    .unwrap();
    let deleted: Value = serde_json::from_str(&receiver.bodies()[2]).unwrap();
    assert_eq!(deleted["Status"], "SUCCESS", "{deleted:#}");
    assert_eq!(deleted["Reason"], format!("deactivated {grant}"));
    assert!(
        s.grants_in(&account.id)
            .await
            .contains(&(license.arn.clone(), "DISABLED".to_string())),
        "{:?}",
        s.grants_in(&account.id).await
    );
}

/// Issue 8 item 9 against the emulator with a License Manager workflow that takes longer than
/// one invocation's wait: the default (`WAIT`) hands the request to the re-check queue and the
/// re-check answers SUCCESS once the grant is ACTIVE. The first launch does not fail.
#[tokio::test]
async fn slow_grant_workflow_is_waited_for_on_the_recheck_queue_and_answered_success() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    s.world
        .control()
        .configure(json!({ "pendingWorkflowMs": 3_000 }))
        .await
        .unwrap();
    let ou = s.org.ou("Workloads").unwrap().id.clone();
    let account = seed::add_account(&s.world, &mut s.org, "SlowLaunch", &ou)
        .await
        .unwrap();
    let license = s.org.licenses[0].clone();
    let recheck_queue = s
        .world
        .sqs()
        .create_queue()
        .queue_name("catalog-recheck")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let vars = [
        ("CATALOG_RECHECK_QUEUE_URL", recheck_queue.as_str()),
        ("WAIT_FOR_ACTIVE_SECONDS", "1"),
        ("ACTIVE_POLL_INTERVAL_MS", "200"),
        ("RESPONSE_SAFETY_MARGIN_MS", "2000"),
        ("PENDING_RECHECK_SECONDS", "1"),
        ("ALLOW_LOCAL_RESPONSE_URL", "true"),
    ];
    let config = CatalogConfig::from_lookup(|k| {
        vars.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    assert_eq!(
        config.pending_response,
        PendingResponse::Wait,
        "the default"
    );
    let app = catalog::app(&s, s.engine(&[]), config);
    let receiver = Receiver::start(Vec::new()).await;
    let props = json!({"LicenseArn": license.arn});
    let out = handle(
        &app,
        request("Create", &receiver.url, &account.id, props, None),
        Instant::now() + Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(out["responses"][0]["status"], "WAITING", "{out:#}");
    assert!(receiver.bodies().is_empty(), "not answered FAILED");

    // The Lambda SQS source: deliver what the queue holds until the answer is out.
    let sqs = s.world.sqs();
    for _ in 0..20 {
        if !receiver.bodies().is_empty() {
            break;
        }
        let got = sqs
            .receive_message()
            .queue_url(&recheck_queue)
            .max_number_of_messages(10)
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap();
        let records: Vec<Value> = got
            .messages()
            .iter()
            .map(|m| json!({"messageId": m.message_id(), "eventSource": "aws:sqs", "body": m.body()}))
            .collect();
        if records.is_empty() {
            continue;
        }
        let batch = handle(
            &app,
            json!({ "Records": records }),
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
        assert_eq!(batch, json!({"batchItemFailures": []}));
        for m in got.messages() {
            sqs.delete_message()
                .queue_url(&recheck_queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1, "answered exactly once: {bodies:#?}");
    let answer: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(answer["Status"], "SUCCESS", "{answer:#}");
    assert_eq!(answer["Data"]["GrantStatus"], "ACTIVE");
    assert_eq!(answer["RequestId"], "req-create");
    assert!(
        s.grants_in(&account.id)
            .await
            .contains(&(license.arn.clone(), "ACTIVE".to_string())),
        "{:?}",
        s.grants_in(&account.id).await
    );
}
