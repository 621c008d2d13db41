//! catalog-provisioning end to end: the custom resource's handler with the real engine against
//! moto (IAM, STS, Organizations, SQS) and the License Manager emulator, answering a local
//! receiver on 127.0.0.1 that stands in for the pre-signed S3 URL. Skips without moto (fails in CI).
#![allow(clippy::unwrap_used)]

mod common;

use catalog_provisioning::{handle, App, CatalogConfig, PendingResponse, Responder};
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
    let app = App {
        engine: s.engine(&[]),
        sqs: s.world.sqs(),
        catalog: s.world.service_catalog(),
        config: CatalogConfig {
            allow_account_override: false,
            pending_response: PendingResponse::Failed,
            wait_for_active: Duration::from_secs(20),
            poll_interval: Duration::from_millis(200),
            safety_margin: Duration::from_secs(2),
            allow_local_response_url: true,
            recheck_queue_url: None,
        },
        responder: Responder::new(true),
    };
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
