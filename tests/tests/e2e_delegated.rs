//! Deployment in the License Manager delegated administrator account, end to end in the local
//! world: a member account registered as License Manager's delegated administrator holds its
//! own Marketplace licenses (subscriptions bought there) and runs the engine with its own
//! credentials; Control Tower's lifecycle event reaches it forwarded from the management
//! account (the envelope's `account` stays the management account); the engine reaches member
//! accounts through the least-privilege member role of examples/member-role-stackset.yaml, and
//! never grants to the account it runs in.
//!
//! Not modelled here, and why:
//! - EventBridge (forwarding rule, bus policy): no local EventBridge; shared/tests/permissions.rs
//!   proves the forwarder's pattern is the stack's and the bus policy admits exactly it.
//! - Trust policies: moto does not enforce them (AssumeRole succeeds for any role); the trust
//!   condition is checked here against the function role's ARN by pattern instead.
//! - Organizations reads (DescribeAccount, ListParents, ListTagsForResource) from the delegated
//!   administrator: AWS allows them ("Operations you can call from only the organization's
//!   management account or a member account designated as a delegated administrator",
//!   Organizations API Reference, "API operations by account"); moto answers them only in the
//!   management account, so the engine's Organizations client uses management credentials.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_least_privilege, setup, shipped_event};
use local_world::clients;
use local_world::emulator::LicenseSeed;
use local_world::seed::{self, demo_spec};
use serde_json::{json, Value};
use shared::permissions::ACCOUNT_LIFECYCLE;
use shared::{clients::Clients, config::Config, engine::Engine};
use std::collections::HashMap;
use std::sync::Arc;

/// examples/member-role-stackset.yaml defaults (shared/tests/permissions.rs proves the template
/// matches shared::permissions::MEMBER_ROLE and the template's Globals RolePath).
const MEMBER_ROLE_NAME: &str = "ct-entitlements-member";
const FUNCTION_ROLE_PATH: &str = "/ct-entitlements/";

/// IAM `ArnLike` with `*` wildcards (enough for the trust condition).
fn arn_like(pattern: &str, arn: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = parts.split_first().unwrap();
    let Some(mut tail) = arn.strip_prefix(first) else {
        return false;
    };
    for (i, part) in rest.iter().enumerate() {
        if i == rest.len() - 1 {
            return tail.ends_with(part);
        }
        match tail.find(part) {
            Some(at) => tail = &tail[at + part.len()..],
            None => return false,
        }
    }
    tail.is_empty()
}

/// "Deploys" the StackSet's role into `account`: its name, its trust (the deployment account
/// narrowed to the function role path) and exactly the MEMBER_ROLE actions.
async fn deploy_member_role(world: &local_world::World, account: &str, deployment: &str) {
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "AWS": format!("arn:aws:iam::{deployment}:root") },
            "Action": "sts:AssumeRole",
            "Condition": { "ArnLike": {
                "aws:PrincipalArn": format!("arn:aws:iam::{deployment}:role{FUNCTION_ROLE_PATH}*")
            }}
        }]
    });
    common::put_member_role(world, account, MEMBER_ROLE_NAME, &trust).await;
}

fn forwarded_event(management: &str, account: &str, ou_id: &str) -> Value {
    let mut event = shipped_event("create-managed-account.json", account, ou_id);
    // EventBridge delivers the management account's event unchanged to the target bus.
    event["account"] = json!(management);
    event
}

#[tokio::test]
async fn delegated_administrator_grants_its_own_licenses_through_the_member_role_and_never_to_itself(
) {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let world = &s.world;
    let management = s.org.management_account.clone();
    let workloads = s.org.ou("Workloads").unwrap().id.clone();
    let sandbox = s.org.ou("Sandbox").unwrap().id.clone();

    // 1. A member account is License Manager's delegated administrator and buys its own
    //    Marketplace subscriptions. (Registering it is the management account's
    //    RegisterDelegatedAdministrator, which org-bootstrap's tests cover; moto does not know
    //    the license-manager.amazonaws.com principal, and nothing here depends on it.)
    let admin = seed::add_account(world, &mut s.org, "license-admin", &sandbox)
        .await
        .unwrap();
    let mut admin_licenses = Vec::new();
    for (sku, name) in [
        (
            "prod-da-analytics",
            "Analytics bought by the delegated admin",
        ),
        ("prod-da-firewall", "Firewall bought by the delegated admin"),
    ] {
        let shape = world
            .control()
            .seed_license(&LicenseSeed::marketplace(&admin.id, sku, name))
            .await
            .unwrap();
        admin_licenses.push(shape["LicenseArn"].as_str().unwrap().to_string());
    }
    admin_licenses.sort();

    // 2. The stack in the delegated administrator: a function role under the RolePath, its
    //    own queue, its own credentials for STS, License Manager and SQS.
    let inside_admin = world
        .assume_role(&admin.id, "OrganizationAccountAccessRole")
        .await
        .unwrap();
    let function_role = clients::iam_from(&inside_admin, world.moto_url())
        .create_role()
        .role_name("ct-entitlements-AccountLifecycleFunctionRole-1A2B3C")
        .path(FUNCTION_ROLE_PATH)
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let function_role_arn = function_role.role().unwrap().arn().to_string();
    let trusted = format!("arn:aws:iam::{}:role{FUNCTION_ROLE_PATH}*", admin.id);
    assert!(
        arn_like(&trusted, &function_role_arn),
        "{function_role_arn} vs {trusted}"
    );
    for other in [
        format!(
            "arn:aws:iam::{}:role/OrganizationAccountAccessRole",
            admin.id
        ),
        format!("arn:aws:iam::{management}:role{FUNCTION_ROLE_PATH}x"),
        format!("arn:aws:iam::{}:role/ct-entitlements-admin", admin.id),
    ] {
        assert!(!arn_like(&trusted, &other), "{other} must not be trusted");
    }
    let as_function = world
        .assume_role(&admin.id, function_role_arn.split_once(":role/").unwrap().1)
        .await
        .unwrap();
    let sqs = clients::sqs_from(&as_function, world.moto_url());
    let queue_url = sqs
        .create_queue()
        .queue_name("onboarding-delegated")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let env: HashMap<&str, String> = HashMap::from([
        ("ALL_MARKETPLACE_LICENSES", "true".to_string()),
        ("EXECUTION_ROLE_NAME", MEMBER_ROLE_NAME.to_string()),
        ("SELF_ACCOUNT_ID", admin.id.clone()),
        ("ONBOARDING_QUEUE_URL", queue_url.clone()),
        ("ASSUME_ROLE_BACKOFF_MS", "10".to_string()),
        ("RECHECK_DELAY_SECONDS", "0".to_string()),
    ]);
    let config = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    assert_eq!(
        config.self_account_id.as_ref().map(|a| a.as_str()),
        Some(admin.id.as_str())
    );
    let engine = Engine::new(
        config,
        Clients {
            organizations: world.organizations(),
            sts: clients::sts_from(&as_function, world.moto_url()),
            license_manager: clients::license_manager_from(&as_function, &world.emulator_url()),
            sqs: sqs.clone(),
            dynamodb: world.dynamodb(),
            members: Arc::new(common::LocalMembers::of(world)),
        },
    );

    // 3. Control Tower vends an account; the StackSet gives it the member role; the
    //    management account's rule forwards the event.
    let vended = seed::add_account(world, &mut s.org, "vended-under-da", &workloads)
        .await
        .unwrap();
    deploy_member_role(world, &vended.id, &admin.id).await;
    let mut report = run(
        &engine,
        forwarded_event(&management, &vended.id, &workloads),
    )
    .await;
    // Grants settle asynchronously where the emulator is told to: follow the re-checks.
    for _ in 0..30 {
        if report["outcome"] != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(1)
            .send()
            .await
            .unwrap();
        let Some(m) = out.messages().first() else {
            continue;
        };
        sqs.delete_message()
            .queue_url(&queue_url)
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
        let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
        report = run(&engine, body).await;
    }
    assert_eq!(report["outcome"], "entitled", "{report:#}");
    let mut granted: Vec<String> = report["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["licenseArn"].as_str().unwrap().to_string())
        .collect();
    granted.sort();
    assert_eq!(
        granted, admin_licenses,
        "the delegated administrator grants the licenses it holds"
    );

    // The account sees ACTIVE grants from the delegated administrator.
    let member = world.client_for_account(&vended.id).await.unwrap();
    let received = member
        .license_manager
        .list_received_grants()
        .send()
        .await
        .unwrap();
    assert_eq!(received.grants().len(), 2, "{received:?}");
    for g in received.grants() {
        assert_eq!(g.grant_status().as_str(), "ACTIVE", "{g:?}");
        assert!(
            g.grant_arn().contains(&format!("::{}:grant:", admin.id)),
            "granted by the delegated administrator: {g:?}"
        );
    }
    // The member-side calls were made with the StackSet's role, assumed in the vended account.
    let accepted = world
        .control()
        .calls()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.operation == "AcceptGrant" && c.account == vended.id)
        .expect("the vended account accepted its grants");
    let key = accepted.access_key_id.unwrap();
    let identity = clients::sts_from(&clients::sdk_config(&key, "unused", None), world.moto_url())
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert!(
        identity.arn().unwrap().starts_with(&format!(
            "arn:aws:sts::{}:assumed-role/{MEMBER_ROLE_NAME}/",
            vended.id
        )),
        "{identity:?}"
    );
    assert!(report["memberApiCalls"]
        .as_object()
        .is_some_and(|m| !m.is_empty()));

    // 4. Control Tower also reports the delegated administrator's own account (an enrolled
    //    member) and the management account: neither is granted to.
    let creates = world.control().count_calls("CreateGrant").await.unwrap();
    let own = run(&engine, forwarded_event(&management, &admin.id, &sandbox)).await;
    assert_eq!(own["outcome"], "skipped", "{own:#}");
    assert!(
        own["reason"].as_str().unwrap().contains("runs in"),
        "{own:#}"
    );
    let root = s.org.root_id.clone();
    let mgmt = run(&engine, forwarded_event(&management, &management, &root)).await;
    assert_eq!(mgmt["outcome"], "skipped", "{mgmt:#}");
    assert_eq!(
        world.control().count_calls("CreateGrant").await.unwrap(),
        creates,
        "no grant to the account the engine runs in, nor to the management account"
    );
    let own_grants = world
        .client_for_account(&admin.id)
        .await
        .unwrap()
        .license_manager
        .list_received_grants()
        .send()
        .await
        .unwrap();
    assert!(own_grants.grants().is_empty(), "{own_grants:?}");
}

async fn run(engine: &Engine, event: Value) -> Value {
    let out = account_lifecycle::handle(engine, event)
        .await
        .unwrap_or_else(|e| panic!("handler failed: {e}"));
    assert_least_privilege(&out, ACCOUNT_LIFECYCLE);
    out
}
