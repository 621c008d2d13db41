//! The whole local world: moto + the emulator reading callers and the organization from moto.
//! Each test starts its own world (moto state is server-wide). Without moto these tests skip
//! loudly, except in CI where they fail.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aws_sdk_licensemanager::types::{AllowedOperation, Filter, GrantStatus};
use aws_sdk_servicecatalog::types::ProvisioningParameter;
use local_world::seed::{self, demo_spec};
use local_world::world::EXECUTION_ROLE;
use local_world::World;

async fn world() -> Option<World> {
    World::start_or_skip().await
}

async fn create_grant(world: &World, license: &str, principal: &str, token: &str) -> String {
    world
        .license_manager()
        .create_grant()
        .client_token(token)
        .grant_name(token)
        .license_arn(license)
        .principals(principal)
        .home_region("us-east-1")
        .allowed_operations(AllowedOperation::CheckoutLicense)
        .send()
        .await
        .unwrap()
        .grant_arn()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn world_exposes_endpoints_and_management_identity() {
    let Some(world) = world().await else { return };
    let env: std::collections::HashMap<_, _> = world.env_vars().into_iter().collect();
    assert_eq!(env["AWS_ENDPOINT_URL_STS"], world.moto_url());
    assert_eq!(env["AWS_ENDPOINT_URL_ORGANIZATIONS"], world.moto_url());
    assert_eq!(
        env["AWS_ENDPOINT_URL_LICENSE_MANAGER"],
        world.emulator_url()
    );
    assert_eq!(
        env["AWS_ENDPOINT_URL_SERVICE_CATALOG"],
        world.emulator_url()
    );
    assert_eq!(env["AWS_REGION"], "us-east-1");
    assert!(world.moto_url().starts_with("http://127.0.0.1:"));

    let me = world.sts().get_caller_identity().send().await.unwrap();
    assert_eq!(me.account(), Some(local_world::emulator::DEFAULT_ACCOUNT));
    // The emulator resolves the same key to the same account through moto.
    world
        .license_manager()
        .get_service_settings()
        .send()
        .await
        .unwrap();
    let calls = world.control().calls().await.unwrap();
    assert_eq!(calls[0].account, local_world::emulator::DEFAULT_ACCOUNT);

    world
        .sqs()
        .create_queue()
        .queue_name("q")
        .send()
        .await
        .unwrap();
    world.reset().await.unwrap();
    let queues = world.sqs().list_queues().send().await.unwrap();
    assert!(queues.queue_urls().is_empty());
}

#[tokio::test]
async fn seeding_builds_the_demo_organization() {
    let Some(world) = world().await else { return };
    let org = seed::seed(&world, &demo_spec()).await.unwrap();
    assert_eq!(
        org.management_account,
        local_world::emulator::DEFAULT_ACCOUNT
    );
    assert!(org.org_id.starts_with("o-"));
    assert_eq!(org.ous.len(), 2);
    assert_eq!(org.accounts.len(), 3);
    assert_eq!(org.licenses.len(), 3);

    let orgs = world.organizations();
    let workloads = org.ou("Workloads").unwrap();
    let in_ou = orgs
        .list_accounts_for_parent()
        .parent_id(&workloads.id)
        .send()
        .await
        .unwrap();
    let mut ids: Vec<_> = in_ou.accounts().iter().filter_map(|a| a.id()).collect();
    ids.sort_unstable();
    let mut expected: Vec<_> = org
        .accounts
        .iter()
        .filter(|a| a.ou_id == workloads.id)
        .map(|a| a.id.as_str())
        .collect();
    expected.sort_unstable();
    assert_eq!(ids, expected);

    // The execution role exists inside each member, and its credentials act there.
    for account in &org.accounts {
        let inside = world.client_for_account(&account.id).await.unwrap();
        let me = inside.sts.get_caller_identity().send().await.unwrap();
        assert_eq!(me.account(), Some(account.id.as_str()));
        let role = inside
            .iam
            .get_role()
            .role_name(EXECUTION_ROLE)
            .send()
            .await
            .unwrap();
        assert!(role.role().unwrap().arn().contains(&account.id));
    }

    let licenses = world
        .license_manager()
        .list_received_licenses()
        .filters(
            Filter::builder()
                .name("IssuerName")
                .values("AWS/Marketplace")
                .build(),
        )
        .filters(Filter::builder().name("Status").values("AVAILABLE").build())
        .send()
        .await
        .unwrap();
    assert_eq!(licenses.licenses().len(), 3);
    let settings = world
        .license_manager()
        .get_service_settings()
        .send()
        .await
        .unwrap();
    assert!(
        settings
            .organization_configuration()
            .unwrap()
            .enable_integration
    );
}

#[tokio::test]
async fn member_credentials_are_member_callers_and_org_grants_auto_accept() {
    let Some(world) = world().await else { return };
    let org = seed::seed(&world, &demo_spec()).await.unwrap();
    let member = org.account("workload-dev").unwrap();
    let license = &org.licenses[0].arn;

    let member_grant = create_grant(
        &world,
        license,
        &format!("arn:aws:iam::{}:root", member.id),
        "m",
    )
    .await;
    let outside_grant = create_grant(&world, license, "arn:aws:iam::999999999999:root", "o").await;

    let inside = world.client_for_account(&member.id).await.unwrap();
    let received = inside
        .license_manager
        .list_received_grants()
        .send()
        .await
        .unwrap();
    assert_eq!(received.grants().len(), 1);
    let grant = &received.grants()[0];
    assert_eq!(grant.grant_arn, member_grant);
    assert_eq!(grant.grant_status, GrantStatus::Disabled);

    let outside = world
        .license_manager()
        .get_grant()
        .grant_arn(&outside_grant)
        .send()
        .await
        .unwrap();
    assert_eq!(
        outside.grant().unwrap().grant_status,
        GrantStatus::PendingAccept
    );

    let activated = inside
        .license_manager
        .create_grant_version()
        .client_token("activate")
        .grant_arn(&member_grant)
        .status(GrantStatus::Active)
        .source_version(&grant.version)
        .send()
        .await
        .unwrap();
    assert_eq!(activated.status(), Some(&GrantStatus::Active));

    let calls = world.control().calls().await.unwrap();
    let by_member = calls
        .iter()
        .find(|c| c.operation == "CreateGrantVersion")
        .unwrap();
    assert_eq!(by_member.account, member.id);
}

#[tokio::test]
async fn org_wide_grant_reaches_members_including_accounts_added_later() {
    let Some(world) = world().await else { return };
    let mut spec = demo_spec();
    spec.org_wide_grants = vec![spec.licenses[1].sku.clone()];
    let mut org = seed::seed(&world, &spec).await.unwrap();
    let parent = org.org_grants[0].clone();

    let status = world
        .license_manager()
        .get_grant()
        .grant_arn(&parent)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status.grant().unwrap().grant_status,
        GrantStatus::WorkflowCompleted
    );
    for account in &org.accounts {
        let inside = world.client_for_account(&account.id).await.unwrap();
        let grants = inside
            .license_manager
            .list_received_grants()
            .send()
            .await
            .unwrap();
        assert_eq!(grants.grants().len(), 1, "{}", account.name);
        assert_eq!(grants.grants()[0].parent_arn, parent);
        assert_eq!(grants.grants()[0].grant_status, GrantStatus::Disabled);
    }

    let sandbox = org.ou("Sandbox").unwrap().id.clone();
    let late = seed::add_account(&world, &mut org, "late-joiner", &sandbox)
        .await
        .unwrap();
    let inside = world.client_for_account(&late.id).await.unwrap();
    let grants = inside
        .license_manager
        .list_received_grants()
        .send()
        .await
        .unwrap();
    assert_eq!(grants.grants().len(), 1);
    assert_eq!(grants.grants()[0].parent_arn, parent);

    // An OU grant uses moto's OU membership.
    let ou_grant = create_grant(&world, &org.licenses[2].arn, &org.ou_arn(&sandbox), "ou").await;
    let state = world.control().state().await.unwrap();
    let children: Vec<&str> = state["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["ParentArn"] == ou_grant.as_str())
        .map(|g| g["GranteePrincipalArn"].as_str().unwrap())
        .collect();
    let mut expected: Vec<String> = org
        .accounts
        .iter()
        .filter(|a| a.ou_id == sandbox)
        .map(|a| format!("arn:aws:iam::{}:root", a.id))
        .collect();
    expected.sort();
    let mut children: Vec<String> = children.into_iter().map(str::to_string).collect();
    children.sort();
    assert_eq!(children, expected);
}

fn param(key: &str, value: &str) -> ProvisioningParameter {
    ProvisioningParameter::builder()
        .key(key)
        .value(value)
        .build()
}

async fn vend(world: &World, name: &str, email: &str, ou: &str) -> String {
    let sc = world.service_catalog();
    let products = sc
        .search_products_as_admin()
        .filters(
            aws_sdk_servicecatalog::types::ProductViewFilterBy::FullTextSearch,
            vec!["AWS Control Tower Account Factory".to_string()],
        )
        .send()
        .await
        .unwrap();
    let product = products.product_view_details()[0]
        .product_view_summary()
        .unwrap()
        .product_id()
        .unwrap()
        .to_string();
    let artifacts = sc
        .list_provisioning_artifacts()
        .product_id(&product)
        .send()
        .await
        .unwrap();
    let artifact = artifacts.provisioning_artifact_details()[0]
        .id()
        .unwrap()
        .to_string();
    let record = sc
        .provision_product()
        .product_id(product)
        .provisioning_artifact_id(artifact)
        .provisioned_product_name(name)
        .provision_token(format!("token-{name}"))
        .provisioning_parameters(param("AccountName", name))
        .provisioning_parameters(param("AccountEmail", email))
        .provisioning_parameters(param("ManagedOrganizationalUnit", ou))
        .provisioning_parameters(param("SSOUserEmail", email))
        .provisioning_parameters(param("SSOUserFirstName", "Test"))
        .provisioning_parameters(param("SSOUserLastName", "User"))
        .send()
        .await
        .unwrap();
    let detail = record.record_detail().unwrap();
    assert_eq!(detail.status().unwrap().as_str(), "CREATED");
    detail.record_id().unwrap().to_string()
}

#[tokio::test]
async fn account_factory_vends_accounts_into_moto() {
    let Some(world) = world().await else { return };
    let org = seed::seed(&world, &demo_spec()).await.unwrap();
    let control = world.control();
    control
        .configure(serde_json::json!({ "provisioningMs": 5_000 }))
        .await
        .unwrap();
    let sandbox = org.ou("Sandbox").unwrap();
    let record = vend(
        &world,
        "vended-1",
        "vended-1@example.com",
        &format!("Sandbox ({})", sandbox.id),
    )
    .await;
    let sc = world.service_catalog();
    let pending = sc.describe_record().id(&record).send().await.unwrap();
    assert_eq!(
        pending.record_detail().unwrap().status().unwrap().as_str(),
        "IN_PROGRESS"
    );

    control.advance_clock(Duration::from_secs(6)).await.unwrap();
    let done = sc.describe_record().id(&record).send().await.unwrap();
    assert_eq!(
        done.record_detail().unwrap().status().unwrap().as_str(),
        "SUCCEEDED"
    );
    let account_id = done
        .record_outputs()
        .iter()
        .find(|o| o.output_key() == Some("AccountId"))
        .and_then(|o| o.output_value())
        .unwrap()
        .to_string();

    let in_ou = world
        .organizations()
        .list_accounts_for_parent()
        .parent_id(&sandbox.id)
        .send()
        .await
        .unwrap();
    assert!(in_ou
        .accounts()
        .iter()
        .any(|a| a.id() == Some(account_id.as_str())));
    let inside = world.client_for_account(&account_id).await.unwrap();
    inside
        .iam
        .get_role()
        .role_name(EXECUTION_ROLE)
        .send()
        .await
        .unwrap();

    // A failing request, by name only (no OU id).
    let failing = vend(&world, "vended-2", "please-fail@example.com", "Workloads").await;
    control.advance_clock(Duration::from_secs(6)).await.unwrap();
    let failed = sc.describe_record().id(&failing).send().await.unwrap();
    let detail = failed.record_detail().unwrap();
    assert_eq!(detail.status().unwrap().as_str(), "FAILED");
    assert!(!detail.record_errors().is_empty());

    let events = control.control_tower_events().await.unwrap();
    assert_eq!(events.len(), 2);
    let ok = &events[0]["detail"]["serviceEventDetails"]["createManagedAccountStatus"];
    assert_eq!(events[0]["source"], "aws.controltower");
    assert_eq!(events[0]["detail"]["eventName"], "CreateManagedAccount");
    assert_eq!(events[0]["account"], org.management_account.as_str());
    assert_eq!(ok["state"], "SUCCEEDED");
    assert_eq!(ok["account"]["accountId"], account_id.as_str());
    assert_eq!(
        ok["organizationalUnit"]["organizationalUnitId"],
        sandbox.id.as_str()
    );
    let failed_event = &events[1]["detail"]["serviceEventDetails"]["createManagedAccountStatus"];
    assert_eq!(failed_event["state"], "FAILED");
    assert_eq!(failed_event["account"]["accountId"], "Not Available");
    assert_eq!(
        failed_event["organizationalUnit"]["organizationalUnitId"],
        org.ou("Workloads").unwrap().id.as_str()
    );
}

#[tokio::test]
async fn dropping_the_world_stops_moto() {
    let Some(world) = world().await else { return };
    let probe = format!("{}/moto-api/", world.moto_url());
    assert_eq!(local_world::http::get(&probe).await.unwrap().status, 200);
    drop(world);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(local_world::http::get(&probe).await.is_err());
}
