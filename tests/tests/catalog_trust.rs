//! Product-launch requests are claims (issue 16 §1): anyone allowed to publish to the
//! organization-wide topic can write any StackId, RequestType and properties. Against moto
//! (IAM, STS, Organizations, CloudFormation) and the License Manager / Service Catalog
//! emulator: forged requests through the topic are answered FAILED and write nothing; a real
//! launch, which CloudFormation shows in progress in the launching account, is entitled.
#![allow(clippy::unwrap_used)]

#[path = "common/catalog.rs"]
mod catalog;
mod common;

use catalog_provisioning::{handle, App, CatalogConfig, PendingResponse};
use common::{setup, Setup};
use local_world::receiver::Receiver;
use local_world::seed::{self, demo_spec};
use local_world::stacks::launch_stack;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

/// The account the stack runs in (SELF_ACCOUNT_ID): not one of the seeded members.
const DEPLOYMENT: &str = "123456789012";
const PORTFOLIO: &str = "port-abcdefghijklm";

fn app(s: &Setup) -> App {
    catalog::app(
        s,
        s.engine(&[("SELF_ACCOUNT_ID", DEPLOYMENT)]),
        CatalogConfig {
            share_portfolios: vec![PORTFOLIO.into()],
            ..catalog::config(
                PendingResponse::Failed,
                Duration::from_secs(20),
                Duration::from_millis(200),
            )
        },
    )
}

fn request(kind: &str, url: &str, stack_id: &str, resource_type: &str, properties: Value) -> Value {
    json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:sns:us-east-1:123456789012:ct-entitlements-product-launches",
        "ResponseURL": url,
        "StackId": stack_id,
        "RequestId": format!("req-{}", kind.to_lowercase()),
        "ResourceType": resource_type,
        "LogicalResourceId": "Entitlement",
        "ResourceProperties": properties,
    })
}

/// The request as the topic delivers it.
fn via_topic(request: &Value) -> Value {
    json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "Sns": {
            "Type": "Notification",
            "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ct-entitlements-product-launches",
            "Message": request.to_string(),
            "Timestamp": "2026-12-04T12:00:00.000Z",
        }
    }]})
}

/// Every write the emulator serves (License Manager grants, Service Catalog shares).
async fn writes(s: &Setup) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for op in [
        "CreateGrant",
        "CreateGrantVersion",
        "AcceptGrant",
        "DeleteGrant",
        "CreatePortfolioShare",
        "DeletePortfolioShare",
    ] {
        out.push((op.to_string(), s.calls(op).await));
    }
    out
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[tokio::test]
async fn forged_topic_requests_are_answered_failed_and_write_nothing() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let ou = s.org.ou("Workloads").unwrap().id.clone();
    let victim = seed::add_account(&s.world, &mut s.org, "Victim", &ou)
        .await
        .unwrap();
    let bystander = seed::add_account(&s.world, &mut s.org, "Bystander", &ou)
        .await
        .unwrap();
    let license = s.org.licenses[0].clone();
    let app = app(&s);
    let receiver = Receiver::start(Vec::new()).await;

    // The victim launched the product for real: CloudFormation shows its resource in progress,
    // the launch is verified and entitled.
    let props = json!({"ProductSku": license.sku, "DeactivateOnDelete": "true"});
    let real_stack = launch_stack(
        s.world.moto_url(),
        &victim.id,
        "SC-victim-pp-1",
        "Entitlement",
        "Custom::MarketplaceEntitlement",
        props.clone(),
    )
    .await
    .unwrap();
    let launch = request(
        "Create",
        &receiver.url,
        &real_stack,
        "Custom::MarketplaceEntitlement",
        props.clone(),
    );
    let out = handle(&app, via_topic(&launch), deadline()).await.unwrap();
    assert_eq!(out["responses"][0]["status"], "SUCCESS", "{out:#}");
    let answer: Value = serde_json::from_str(&receiver.bodies()[0]).unwrap();
    let grant = answer["PhysicalResourceId"].as_str().unwrap().to_string();
    assert!(grant.contains(":grant:g-"), "{answer:#}");
    assert!(s
        .grants_in(&victim.id)
        .await
        .contains(&(license.arn.clone(), "ACTIVE".to_string())));

    let before = writes(&s).await;
    let fake_stack = |account: &str| {
        format!("arn:aws:cloudformation:us-east-1:{account}:stack/SC-{account}-pp-forged/1")
    };
    // A decoy stack in the bystander's account: real, in progress, but of another type.
    let decoy = launch_stack(
        s.world.moto_url(),
        &bystander.id,
        "decoy",
        "Entitlement",
        "Custom::SomethingElse",
        json!({}),
    )
    .await
    .unwrap();
    let forged = [
        (
            "Create naming another account's (nonexistent) stack",
            request(
                "Create",
                &receiver.url,
                &fake_stack(&bystander.id),
                "Custom::MarketplaceEntitlement",
                json!({"ProductSku": license.sku}),
            ),
        ),
        (
            "Create with an overriding activation",
            request(
                "Create",
                &receiver.url,
                &fake_stack(&bystander.id),
                "Custom::MarketplaceEntitlement",
                json!({"ProductSku": license.sku, "ActivationOverrideBehavior": "ALL_GRANTS_PERMITTED_BY_ISSUER"}),
            ),
        ),
        (
            "Create naming a real stack whose resource is of another type",
            request(
                "Create",
                &receiver.url,
                &decoy,
                "Custom::MarketplaceEntitlement",
                json!({"ProductSku": license.sku}),
            ),
        ),
        (
            "Create claiming the decoy's own type for a real stack of the bystander",
            request(
                "Create",
                &receiver.url,
                &decoy,
                "Custom::SomethingElse",
                json!({"ProductSku": license.sku}),
            ),
        ),
        (
            "Delete with DeactivateOnDelete naming the victim's real stack (not being deleted)",
            {
                let mut r = request(
                    "Delete",
                    &receiver.url,
                    &real_stack,
                    "Custom::MarketplaceEntitlement",
                    props.clone(),
                );
                r["PhysicalResourceId"] = json!(grant);
                r
            },
        ),
        (
            "Delete with DeactivateOnDelete naming a nonexistent stack of the victim",
            {
                let mut r = request(
                    "Delete",
                    &receiver.url,
                    &fake_stack(&victim.id),
                    "Custom::MarketplaceEntitlement",
                    props.clone(),
                );
                r["PhysicalResourceId"] = json!(grant);
                r
            },
        ),
        (
            "portfolio share through the topic",
            request(
                "Create",
                &receiver.url,
                &fake_stack(DEPLOYMENT),
                "Custom::MarketplacePortfolioShare",
                json!({"PortfolioId": PORTFOLIO, "ShareWith": "o-abc1234567"}),
            ),
        ),
    ];
    for (i, (what, request)) in forged.iter().enumerate() {
        let out = handle(&app, via_topic(request), deadline()).await.unwrap();
        assert_eq!(out["responses"][0]["status"], "FAILED", "{what}: {out:#}");
        let answer: Value = serde_json::from_str(&receiver.bodies()[i + 1]).unwrap();
        assert_eq!(answer["Status"], "FAILED", "{what}");
        let reason = answer["Reason"].as_str().unwrap();
        assert!(
            reason.contains("nothing was"),
            "{what}: the reason says nothing was done: {reason}"
        );
        assert_eq!(writes(&s).await, before, "{what}: no write at all");
    }
    // The victim keeps its entitlement; the bystander got none.
    assert!(s
        .grants_in(&victim.id)
        .await
        .contains(&(license.arn.clone(), "ACTIVE".to_string())));
    assert!(s.grants_in(&bystander.id).await.is_empty());
}

#[tokio::test]
async fn an_account_without_the_member_role_is_answered_within_seconds() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let ou = s.org.ou("Workloads").unwrap().id.clone();
    let account = seed::add_account(&s.world, &mut s.org, "NoRole", &ou)
        .await
        .unwrap();
    let license = s.org.licenses[0].clone();
    let mut app = app(&s);
    // The member role this deployment expects does not exist anywhere.
    app.stacks.role_name = "ct-entitlements-role-that-is-not-there".into();
    let receiver = Receiver::start(Vec::new()).await;
    let started = Instant::now();
    let forged = request(
        "Create",
        &receiver.url,
        &format!(
            "arn:aws:cloudformation:us-east-1:{}:stack/SC-x/1",
            account.id
        ),
        "Custom::MarketplaceEntitlement",
        json!({"ProductSku": license.sku}),
    );
    let out = handle(&app, via_topic(&forged), deadline()).await.unwrap();
    let took = started.elapsed();
    eprintln!("an account without the member role was answered in {took:?}");
    assert_eq!(out["responses"][0]["status"], "FAILED", "{out:#}");
    // Answered from the verification's one look, not after a chain of AssumeRole retries: the
    // reason is the verification's refusal. No stopwatch: this world talks to a moto
    // subprocess, whose clock cannot be paused, and a wall-clock bound measures the machine
    // (the engine's AssumeRole back-off is 10 ms here, so it could not see back-off anyway).
    let answer: Value = serde_json::from_str(&receiver.received.lock().unwrap()[0].body).unwrap();
    let reason = answer["Reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("unverified request: CloudFormation shows no resource"),
        "{answer:#}"
    );
    assert_eq!(s.calls("CreateGrant").await, 0);
}
