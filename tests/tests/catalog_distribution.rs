//! Product launches honour LICENSE_DISTRIBUTION (issue 17 §2): the catalog-provisioning
//! custom resource (`Custom::MarketplaceEntitlement`) builds its engine from the same
//! environment as the other functions, so a launch for a license distributed to the
//! organization or an OU waits for the account's grant under that organization/OU grant (the
//! child License Manager hands out) instead of making a second, per-account grant; an
//! account-mode license in the same deployment still gets its per-account grant. Against moto
//! and the License Manager emulator, under the profile `CT_EMULATOR_PROFILE` names (with the
//! realistic one, workflows and activations take seconds and the launch polls through them).
//! Direct invocations (SELF_ACCOUNT_ID unset: nothing to verify against CloudFormation).
#![allow(clippy::unwrap_used)]

#[path = "common/catalog.rs"]
mod catalog;
mod common;

use catalog_provisioning::{handle, App, PendingResponse};
use common::{setup, Setup};
use local_world::receiver::Receiver;
use local_world::seed::{self, demo_spec, SeededAccount};
use serde_json::{json, Value};
use shared::distribution::ParentReport;
use shared::reconcile::{self, Scope};
use std::time::Duration;
use tokio::time::Instant;

const ANALYTICS: &str = "prod-demo-analytics";
const FIREWALL: &str = "prod-demo-firewall";
const OBSERVABILITY: &str = "prod-demo-observability";

/// The deployment's distribution: analytics to the organization, the firewall to the
/// Workloads OU (its OU rule), observability per account.
const DISTRIBUTION: &str = "prod-demo-analytics=organization prod-demo-firewall=ou";

/// The engine's environment (as the template passes it to every function, the catalog one
/// included): the selection of e2e_distribution and `LICENSE_DISTRIBUTION`.
fn deployment_env(s: &Setup) -> Vec<(&'static str, String)> {
    let workloads = s.org.ou("Workloads").unwrap().id.clone();
    vec![
        ("ALL_MARKETPLACE_LICENSES", String::new()),
        ("PRODUCT_SKUS", format!("{ANALYTICS} {OBSERVABILITY}")),
        (
            "OU_LICENSE_RULES",
            format!(r#"{{"{workloads}": ["{ANALYTICS}", "{FIREWALL}", "{OBSERVABILITY}"]}}"#),
        ),
        ("LICENSE_DISTRIBUTION", DISTRIBUTION.to_string()),
    ]
}

fn engine(s: &Setup) -> shared::engine::Engine {
    let env = deployment_env(s);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    s.engine(&env)
}

/// The catalog function as deployed, its engine from the deployment's environment; a launch
/// polls every 150 ms for up to `wait` (the realistic profile's workflows take seconds).
fn app(s: &Setup, pending_response: PendingResponse, wait: Duration) -> App {
    app_with(s, engine(s), pending_response, wait)
}

fn app_with(
    s: &Setup,
    engine: shared::engine::Engine,
    pending_response: PendingResponse,
    wait: Duration,
) -> App {
    catalog::app(
        s,
        engine,
        catalog::config(pending_response, wait, Duration::from_millis(150)),
    )
}

fn request(kind: &str, url: &str, account: &str, sku: &str, physical: Option<&str>) -> Value {
    let mut r = json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:000000000000:function:catalog-provisioning",
        "ResponseURL": url,
        "StackId": format!("arn:aws:cloudformation:us-east-1:{account}:stack/SC-{account}-pp-dist/1"),
        "RequestId": format!("req-{}", kind.to_lowercase()),
        "ResourceType": "Custom::MarketplaceEntitlement",
        "LogicalResourceId": "Entitlement",
        "ResourceProperties": {"ProductSku": sku, "DeactivateOnDelete": "true"},
    });
    if let Some(p) = physical {
        r["PhysicalResourceId"] = json!(p);
    }
    if kind == "Update" {
        r["OldResourceProperties"] = r["ResourceProperties"].clone();
    }
    r
}

/// Sends one request to the handler and returns the answer the receiver got for it.
async fn launch(app: &App, receiver: &Receiver, request: Value) -> Value {
    let before = receiver.bodies().len();
    handle(app, request, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), before + 1, "answered once: {bodies:#?}");
    serde_json::from_str(&bodies[before]).unwrap()
}

/// The reconciler's runs until every parent grant is created and bulk-activated (a second
/// run activates a parent whose workflow had not finished at creation: the realistic profile).
async fn distribute(s: &Setup) -> Vec<ParentReport> {
    let engine = engine(s);
    let config = common::reconcile_config(&s.queue_url, None);
    for _ in 0..5 {
        let report = reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
        assert!(report.error.is_none(), "{report:#?}");
        assert!(
            report.parents.iter().all(|p| p.error.is_none()),
            "{:#?}",
            report.parents
        );
        if !report.parents.is_empty()
            && report
                .parents
                .iter()
                .all(|p| p.step == "none: bulk-activated")
        {
            return report.parents;
        }
        s.world
            .control()
            .advance_clock(Duration::from_secs(5))
            .await
            .unwrap();
    }
    panic!("the parents were never bulk-activated");
}

fn license_arn(s: &Setup, sku: &str) -> String {
    s.org
        .licenses
        .iter()
        .find(|l| l.sku == sku)
        .map(|l| l.arn.clone())
        .unwrap()
}

/// The account's received grants of a license that are not DELETED or REJECTED: (grant ARN,
/// parent ARN, grantee, status).
async fn live_grants_of(
    s: &Setup,
    account: &str,
    license: &str,
) -> Vec<(String, String, String, String)> {
    let member = s.world.client_for_account(account).await.unwrap();
    let out = member
        .license_manager
        .list_received_grants()
        .send()
        .await
        .unwrap();
    // The true parent, as the emulator recorded it: a child's ParentArn is a reading
    // (`childParentArn`) that the code never depends on; "" for a grant made from the license.
    let state = s.world.control().state().await.unwrap();
    let parent_of = |arn: &str| {
        state["grants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["GrantArn"] == arn)
            .and_then(|g| g["ParentGrantArn"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    out.grants()
        .iter()
        .filter(|g| g.license_arn() == license)
        .map(|g| {
            (
                g.grant_arn().to_string(),
                parent_of(g.grant_arn()),
                g.grantee_principal_arn().to_string(),
                g.grant_status().as_str().to_string(),
            )
        })
        .filter(|(_, _, _, st)| st != "DELETED" && st != "REJECTED")
        .collect()
}

/// A launch for an account in Workloads that joined after the parents were bulk-activated
/// (an account vended, then the product launched in it).
async fn joiner(s: &mut Setup, name: &str) -> SeededAccount {
    let workloads = s.org.ou("Workloads").unwrap().id.clone();
    seed::add_account(&s.world, &mut s.org, name, &workloads)
        .await
        .unwrap()
}

/// Launch → SUCCESS once the account's child under `parent` is ACTIVE, with no CreateGrant;
/// `Data.GrantArn` (and the PhysicalResourceId) is the child. A Delete with DeactivateOnDelete
/// leaves the child alone (it belongs to the organization/OU grant).
async fn launch_is_answered_with_the_child(s: &mut Setup, sku: &str, parent: &ParentReport) {
    let parent_arn = parent.grant_arn.clone().unwrap();
    let license = license_arn(s, sku);
    let account = joiner(s, &format!("Launch-{sku}")).await;
    let principal = format!("arn:aws:iam::{}:root", account.id);
    let app = app(s, PendingResponse::Failed, Duration::from_secs(15));
    let receiver = Receiver::start(Vec::new()).await;

    let creates = s.calls("CreateGrant").await;
    let started = std::time::Instant::now();
    let answer = launch(
        &app,
        &receiver,
        request("Create", &receiver.url, &account.id, sku, None),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(answer["Status"], "SUCCESS", "{answer:#}");
    assert_eq!(
        s.calls("CreateGrant").await,
        creates,
        "no grant is made for an account a {} grant covers: {answer:#}",
        parent.principal
    );
    let grant = answer["PhysicalResourceId"].as_str().unwrap().to_string();
    assert_eq!(answer["Data"]["GrantArn"], grant.as_str(), "{answer:#}");
    assert_ne!(grant, parent_arn, "the account's own grant, not the parent");
    assert_eq!(answer["Data"]["GrantStatus"], "ACTIVE", "{answer:#}");
    assert_eq!(answer["Data"]["EntitlementStatus"], "ACTIVE", "{answer:#}");
    assert_eq!(answer["Data"]["LicenseArn"], license.as_str(), "{answer:#}");
    assert_eq!(answer["Data"]["ProductSku"], sku, "{answer:#}");
    assert_eq!(
        answer["Reason"],
        format!(
            "account {} is entitled: grant {grant} is ACTIVE",
            account.id
        )
    );
    // The account holds one live grant of the license: the child under the parent (the
    // emulator shows the parent as ParentArn; the code never depends on that).
    assert_eq!(
        live_grants_of(s, &account.id, &license).await,
        vec![(
            grant.clone(),
            parent_arn.clone(),
            principal,
            "ACTIVE".to_string()
        )]
    );
    eprintln!(
        "{sku}: {} launch answered in {took:?}",
        parent.principal.rsplit(':').next().unwrap_or_default()
    );

    // Delete with DeactivateOnDelete: only per-account grants of ct-entitlements' are
    // deactivated; the child stays ACTIVE.
    let versions = s.calls("CreateGrantVersion").await;
    let deleted = launch(
        &app,
        &receiver,
        request("Delete", &receiver.url, &account.id, sku, Some(&grant)),
    )
    .await;
    assert_eq!(deleted["Status"], "SUCCESS", "{deleted:#}");
    assert_eq!(
        deleted["Reason"],
        format!(
            "account {} has no active per-account grant for this license; nothing deactivated",
            account.id
        )
    );
    assert_eq!(s.calls("CreateGrantVersion").await, versions);
    assert!(live_grants_of(s, &account.id, &license)
        .await
        .iter()
        .all(|(arn, _, _, st)| arn == &grant && st == "ACTIVE"));
}

#[tokio::test]
async fn organization_mode_launch_gets_the_child_and_makes_no_grant() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let parents = distribute(&s).await;
    let analytics = license_arn(&s, ANALYTICS);
    let parent = parents
        .iter()
        .find(|p| p.license_arn == analytics)
        .unwrap()
        .clone();
    assert_eq!(
        parent.principal,
        format!(
            "arn:aws:organizations::{}:organization/{}",
            s.org.management_account, s.org.org_id
        )
    );
    launch_is_answered_with_the_child(&mut s, ANALYTICS, &parent).await;
}

#[tokio::test]
async fn ou_mode_launch_gets_the_child_and_makes_no_grant() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let parents = distribute(&s).await;
    let firewall = license_arn(&s, FIREWALL);
    let parent = parents
        .iter()
        .find(|p| p.license_arn == firewall)
        .unwrap()
        .clone();
    let workloads = s.org.ou("Workloads").unwrap().id.clone();
    assert_eq!(
        parent.principal,
        format!(
            "arn:aws:organizations::{}:ou/{}/{workloads}",
            s.org.management_account, s.org.org_id
        )
    );
    launch_is_answered_with_the_child(&mut s, FIREWALL, &parent).await;
}

/// Before the reconciler made the organization grant: no per-account grant either; the launch
/// is answered FAILED (PENDING_GRANT_RESPONSE=FAILED) naming the wait for the organization
/// grant, with no grant as its physical id (its rollback Delete then deactivates nothing).
#[tokio::test]
async fn organization_mode_launch_before_the_parent_exists_waits_for_it() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let account = joiner(&mut s, "EarlyLauncher").await;
    let license = license_arn(&s, ANALYTICS);
    let app = app(&s, PendingResponse::Failed, Duration::from_secs(1));
    let receiver = Receiver::start(Vec::new()).await;

    let answer = launch(
        &app,
        &receiver,
        request("Create", &receiver.url, &account.id, ANALYTICS, None),
    )
    .await;
    eprintln!("answer before the parent exists: {answer:#}");
    assert_eq!(answer["Status"], "FAILED", "{answer:#}");
    assert_eq!(s.calls("CreateGrant").await, 0, "{answer:#}");
    assert!(live_grants_of(&s, &account.id, &license).await.is_empty());
    assert_eq!(answer["PhysicalResourceId"], "not-entitled-req-create");
    assert_eq!(answer["Data"]["EntitlementStatus"], "PENDING", "{answer:#}");
    assert_eq!(answer["Data"]["GrantArn"], "", "{answer:#}");
    assert_eq!(
        answer["Reason"],
        format!(
            "{license} is distributed in organization mode (LICENSE_DISTRIBUTION), so no per-account grant is made for account {}, and no organization or OU grant covers the account yet: waiting for the reconciler to create and bulk-activate it, then for the account's grant under it; launch again later (the same grant is reused), or set PENDING_GRANT_RESPONSE=WAIT to answer once it is ACTIVE",
            account.id
        ),
        "{answer:#}"
    );
}

/// The organization grant exists but License Manager has not given the account its grant under
/// it within the launch's wait: FAILED naming the organization grant it waits on; neither the
/// physical id nor `Data.GrantArn` is that organization grant (it is not the account's). Once
/// the child is there, launching again is answered SUCCESS with it; no CreateGrant throughout.
#[tokio::test]
async fn organization_mode_launch_before_the_child_exists_names_the_parent_it_waits_on() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let parents = distribute(&s).await;
    let license = license_arn(&s, ANALYTICS);
    let parent = parents
        .iter()
        .find(|p| p.license_arn == license)
        .and_then(|p| p.grant_arn.clone())
        .unwrap();
    // Accounts that join from now on get their grant under the parent ten minutes later.
    s.world
        .control()
        .configure(json!({ "pendingWorkflowMs": 600_000 }))
        .await
        .unwrap();
    let account = joiner(&mut s, "BeforeTheChild").await;
    let app_short = app(&s, PendingResponse::Failed, Duration::from_secs(1));
    let receiver = Receiver::start(Vec::new()).await;
    let creates = s.calls("CreateGrant").await;

    let answer = launch(
        &app_short,
        &receiver,
        request("Create", &receiver.url, &account.id, ANALYTICS, None),
    )
    .await;
    eprintln!("answer before the child exists: {answer:#}");
    assert_eq!(answer["Status"], "FAILED", "{answer:#}");
    assert_eq!(s.calls("CreateGrant").await, creates, "{answer:#}");
    assert_eq!(answer["PhysicalResourceId"], "not-entitled-req-create");
    assert_eq!(answer["Data"]["GrantArn"], "", "{answer:#}");
    assert_eq!(answer["Data"]["GrantStatus"], "", "{answer:#}");
    assert_eq!(answer["Data"]["EntitlementStatus"], "PENDING", "{answer:#}");
    assert_eq!(
        answer["Reason"],
        format!(
            "account {} is covered by organization/OU grant {parent} for {license} (organization mode, LICENSE_DISTRIBUTION); waiting for License Manager to give the account its grant under it (no per-account grant is made); launch again later (the same grant is reused), or set PENDING_GRANT_RESPONSE=WAIT to answer once it is ACTIVE",
            account.id
        ),
        "{answer:#}"
    );

    // Ten minutes on, the child is there: the launch again is answered with it.
    s.world
        .control()
        .configure(json!({ "pendingWorkflowMs": 0 }))
        .await
        .unwrap();
    s.world
        .control()
        .advance_clock(Duration::from_secs(601))
        .await
        .unwrap();
    let app = app(&s, PendingResponse::Failed, Duration::from_secs(15));
    let again = launch(
        &app,
        &receiver,
        request("Create", &receiver.url, &account.id, ANALYTICS, None),
    )
    .await;
    assert_eq!(again["Status"], "SUCCESS", "{again:#}");
    assert_eq!(s.calls("CreateGrant").await, creates, "{again:#}");
    let grant = again["Data"]["GrantArn"].as_str().unwrap().to_string();
    assert_eq!(again["PhysicalResourceId"], grant.as_str());
    assert_eq!(
        live_grants_of(&s, &account.id, &license).await,
        vec![(
            grant,
            parent,
            format!("arn:aws:iam::{}:root", account.id),
            "ACTIVE".to_string()
        )]
    );
}

/// The account-mode license of the same deployment: one CreateGrant, for the account.
#[tokio::test]
async fn account_mode_launch_in_the_same_deployment_gets_its_own_grant() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    distribute(&s).await;
    let license = license_arn(&s, OBSERVABILITY);
    let account = joiner(&mut s, "AccountModeLauncher").await;
    let app = app(&s, PendingResponse::Failed, Duration::from_secs(15));
    let receiver = Receiver::start(Vec::new()).await;

    let creates = s.calls("CreateGrant").await;
    let answer = launch(
        &app,
        &receiver,
        request("Create", &receiver.url, &account.id, OBSERVABILITY, None),
    )
    .await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer:#}");
    assert_eq!(s.calls("CreateGrant").await, creates + 1, "{answer:#}");
    let grant = answer["PhysicalResourceId"].as_str().unwrap().to_string();
    assert_eq!(answer["Data"]["GrantArn"], grant.as_str());
    assert_eq!(answer["Data"]["GrantStatus"], "ACTIVE");
    let live = live_grants_of(&s, &account.id, &license).await;
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].0, grant);
    assert_eq!(live[0].2, format!("arn:aws:iam::{}:root", account.id));
    assert_eq!(live[0].3, "ACTIVE");
    // The grantor's view: a grant addressed to the account itself.
    assert!(s
        .live_grants()
        .await
        .contains_key(&(license, format!("arn:aws:iam::{}:root", account.id))));
}

/// The account already holds an ACTIVE grant of the product that ct-entitlements did not make
/// (here one made by hand): the child under the bulk-activated organization grant cannot
/// activate (one active license per product). The launch activates the child once itself
/// (after waiting once for the bulk activation), then reports the conflict: FAILED with License
/// Manager's reason, without re-activating in a loop and without a CreateGrant. (Before the
/// catalog function kept one activation mark per grant, the stale bulk mark hid its own
/// activation and the launch waited out its whole budget, answering "still DISABLED".)
#[tokio::test]
async fn organization_mode_launch_reports_the_conflict_of_an_account_holding_the_product() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    // Read where a child names its parent: only then can a grant made by hand be told from the
    // child (under the other readings of `childParentArn` the ACTIVE grant made by hand is taken
    // for the account's grant under the parent, and the account reported entitled by it).
    s.world
        .control()
        .configure(json!({"childParentArn": "parent"}))
        .await
        .unwrap();
    let license = license_arn(&s, ANALYTICS);
    let account = s.org.accounts[0].clone();
    let principal = format!("arn:aws:iam::{}:root", account.id);
    let lm = s.world.license_manager();
    let hand = lm
        .create_grant()
        .client_token("by-hand-1")
        .grant_name("made-by-hand")
        .license_arn(&license)
        .principals(&principal)
        .home_region("us-east-1")
        .allowed_operations(aws_sdk_licensemanager::types::AllowedOperation::CheckoutLicense)
        .send()
        .await
        .unwrap()
        .grant_arn()
        .unwrap()
        .to_string();
    let clock = || async {
        s.world
            .control()
            .advance_clock(Duration::from_secs(5))
            .await
            .unwrap()
    };
    clock().await;
    let version = lm
        .get_grant()
        .grant_arn(&hand)
        .send()
        .await
        .unwrap()
        .grant()
        .unwrap()
        .version()
        .to_string();
    lm.create_grant_version()
        .client_token("by-hand-activate")
        .grant_arn(&hand)
        .source_version(version)
        .status(aws_sdk_licensemanager::types::GrantStatus::Active)
        .send()
        .await
        .unwrap();
    clock().await;
    let status = |arn: String| {
        let lm = lm.clone();
        async move {
            let got = lm.get_grant().grant_arn(arn).send().await.unwrap();
            let g = got.grant().unwrap();
            (
                g.grant_status().as_str().to_string(),
                g.status_reason().unwrap_or_default().to_string(),
            )
        }
    };
    assert_eq!(status(hand.clone()).await.0, "ACTIVE");

    distribute(&s).await;
    clock().await;
    let app = app(&s, PendingResponse::Failed, Duration::from_secs(8));
    let receiver = Receiver::start(Vec::new()).await;
    let (creates, versions) = (
        s.calls("CreateGrant").await,
        s.calls("CreateGrantVersion").await,
    );
    let started = std::time::Instant::now();
    let answer = launch(
        &app,
        &receiver,
        request("Create", &receiver.url, &account.id, ANALYTICS, None),
    )
    .await;
    let took = started.elapsed();
    eprintln!("answer for an account holding the product: {answer:#} in {took:?}");
    assert_eq!(answer["Status"], "FAILED", "{answer:#}");
    assert_eq!(s.calls("CreateGrant").await, creates, "{answer:#}");
    assert!(
        s.calls("CreateGrantVersion").await <= versions + 1,
        "the child is activated at most once: {answer:#}"
    );
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.starts_with("ActiveLicenseConflict (permanent): grant ")
            && reason.contains(local_world::emulator::ONE_ACTIVE_LICENSE_MESSAGE),
        "{reason}"
    );
    // "Reported at once" is the reason checked above: the conflict is answered as permanent
    // from the look that saw it. Had the launch polled out its 8 s budget instead, the answer
    // would be the pending one, not `ActiveLicenseConflict (permanent)`. No stopwatch: this
    // world talks to a moto subprocess, whose clock cannot be paused, and a wall-clock bound
    // measures the machine, not the code.
    // The account keeps the license it held.
    assert_eq!(status(hand).await.0, "ACTIVE");
}

/// The license was per account before the switch to organization mode: the account's launch
/// got a per-account grant. After the reconciler made the organization grant, the next launch
/// (an Update of the provisioned product) makes no grant: the account's child takes over
/// (activated with ALL_GRANTS_PERMITTED_BY_ISSUER) and the per-account grant goes, so the
/// account holds one live grant of the license; the resource's physical id becomes the child,
/// and CloudFormation's Delete of the old one deactivates nothing.
#[tokio::test]
async fn switched_to_organization_mode_a_launch_leaves_the_child_alone_active() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let license = license_arn(&s, ANALYTICS);
    let account = joiner(&mut s, "SwitchLauncher").await;
    let receiver = Receiver::start(Vec::new()).await;
    // Before the switch: the deployment's environment without LICENSE_DISTRIBUTION.
    let before = deployment_env(&s);
    let before: Vec<(&str, &str)> = before
        .iter()
        .filter(|(k, _)| *k != "LICENSE_DISTRIBUTION")
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let per_account = app_with(
        &s,
        s.engine(&before),
        PendingResponse::Failed,
        Duration::from_secs(15),
    );
    let first = launch(
        &per_account,
        &receiver,
        request("Create", &receiver.url, &account.id, ANALYTICS, None),
    )
    .await;
    assert_eq!(first["Status"], "SUCCESS", "{first:#}");
    assert_eq!(s.calls("CreateGrant").await, 1);
    let own = first["PhysicalResourceId"].as_str().unwrap().to_string();

    let parents = distribute(&s).await;
    let parent = parents
        .iter()
        .find(|p| p.license_arn == license)
        .and_then(|p| p.grant_arn.clone())
        .unwrap();
    let creates = s.calls("CreateGrant").await;
    let app = app(&s, PendingResponse::Failed, Duration::from_secs(15));
    let answer = launch(
        &app,
        &receiver,
        request("Update", &receiver.url, &account.id, ANALYTICS, Some(&own)),
    )
    .await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer:#}");
    assert_eq!(s.calls("CreateGrant").await, creates, "{answer:#}");
    let child = answer["PhysicalResourceId"].as_str().unwrap().to_string();
    assert_ne!(child, own, "{answer:#}");
    assert_eq!(answer["Data"]["GrantArn"], child.as_str());
    let principal = format!("arn:aws:iam::{}:root", account.id);
    assert_eq!(
        live_grants_of(&s, &account.id, &license).await,
        vec![(
            child.clone(),
            parent,
            principal.clone(),
            "ACTIVE".to_string()
        )],
        "one live grant: the child"
    );

    // The replaced physical id's Delete (DeactivateOnDelete): the retired grant is gone
    // already, the child stays ACTIVE.
    let deleted = launch(
        &app,
        &receiver,
        request("Delete", &receiver.url, &account.id, ANALYTICS, Some(&own)),
    )
    .await;
    assert_eq!(deleted["Status"], "SUCCESS", "{deleted:#}");
    assert!(live_grants_of(&s, &account.id, &license)
        .await
        .iter()
        .all(|(arn, _, _, st)| arn == &child && st == "ACTIVE"));
}
