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
use serde_json::json;

/// A world with the default (zero-delay) switches whatever `CT_EMULATOR_PROFILE` says: these
/// tests pin the emulator's timing themselves and advance its clock.
async fn world() -> Option<World> {
    World::start_or_skip_with(local_world::WorldOptions {
        pin_switches: true,
        ..Default::default()
    })
    .await
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
    // An account outside the organization, with its service-linked roles.
    seed::create_member_slrs(&world, "999999999999")
        .await
        .unwrap();
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
        // Its ParentArn is a reading (`childParentArn`): the child is not the parent itself.
        assert_ne!(grants.grants()[0].grant_arn, parent);
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
    assert_ne!(grants.grants()[0].grant_arn, parent);

    // An OU grant uses moto's OU membership.
    let ou_grant = create_grant(&world, &org.licenses[2].arn, &org.ou_arn(&sandbox), "ou").await;
    let state = world.control().state().await.unwrap();
    let children: Vec<&str> = state["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["ParentGrantArn"] == ou_grant.as_str())
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

async fn grant_status(world: &World, arn: &str) -> (GrantStatus, Option<String>) {
    let out = world
        .license_manager()
        .get_grant()
        .grant_arn(arn)
        .send()
        .await
        .unwrap();
    let g = out.grant().unwrap();
    (
        g.grant_status.clone(),
        g.status_reason().map(str::to_string),
    )
}

#[tokio::test]
async fn grants_to_accounts_without_service_linked_roles_fail_their_workflow_in_moto() {
    let Some(world) = world().await else { return };
    let mut org = seed::seed(&world, &demo_spec()).await.unwrap();
    let sandbox = org.ou("Sandbox").unwrap().id.clone();
    let bare = seed::add_account(&world, &mut org, "bare", &sandbox)
        .await
        .unwrap();
    let license = org.licenses[0].arn.clone();
    let root = |id: &str| format!("arn:aws:iam::{id}:root");

    // A demo member has its roles: auto-accepted.
    let healthy = org.account("workload-prod").unwrap().id.clone();
    let ok = create_grant(&world, &license, &root(&healthy), "healthy").await;
    assert_eq!(grant_status(&world, &ok).await.0, GrantStatus::Disabled);

    // One role present is not enough; the reason names the missing ones (AWS names).
    let inside = world.client_for_account(&bare.id).await.unwrap();
    inside
        .iam
        .create_service_linked_role()
        .aws_service_name("license-manager.amazonaws.com")
        .send()
        .await
        .unwrap();
    let failed = create_grant(&world, &license, &root(&bare.id), "bare-1").await;
    let (status, reason) = grant_status(&world, &failed).await;
    assert_eq!(status, GrantStatus::FailedWorkflow);
    let reason = reason.unwrap();
    assert!(
        reason.contains("AWSServiceRoleForAWSLicenseManagerMemberAccountRole")
            && reason.contains("AWSServiceRoleForMarketplaceLicenseManagement")
            && reason.contains(&bare.id),
        "{reason}"
    );

    // Fixed: the failed grant is deleted and the next one settles.
    seed::create_member_slrs(&world, &bare.id).await.unwrap();
    world
        .license_manager()
        .delete_grant()
        .grant_arn(&failed)
        .version("1")
        .send()
        .await
        .unwrap();
    let next = create_grant(&world, &license, &root(&bare.id), "bare-2").await;
    assert_eq!(grant_status(&world, &next).await.0, GrantStatus::Disabled);
}

#[tokio::test]
async fn ou_grants_cover_nested_ous_and_joiners_wait_for_their_child() {
    let Some(world) = world().await else { return };
    // Read where OU grants reach nested OUs (`ouGrantsReachNestedOus`; by default they do not,
    // and readings.rs shows the engine converging under both), and where a child names its
    // parent (the ParentArn filter below).
    world
        .control()
        .configure(json!({
            "pendingWorkflowMs": 2_000,
            "ouGrantsReachNestedOus": true,
            "childParentArn": "parent",
        }))
        .await
        .unwrap();
    let mut org = seed::seed(&world, &demo_spec()).await.unwrap();
    let workloads = org.ou("Workloads").unwrap().id.clone();
    let nested = world
        .organizations()
        .create_organizational_unit()
        .parent_id(&workloads)
        .name("Workloads-Team")
        .send()
        .await
        .unwrap()
        .organizational_unit()
        .unwrap()
        .id()
        .unwrap()
        .to_string();
    let deep = seed::add_account(&world, &mut org, "deep", &nested)
        .await
        .unwrap();
    seed::create_member_slrs(&world, &deep.id).await.unwrap();
    let lm = world.license_manager();
    let license = org.licenses[1].arn.clone();
    let parent = create_grant(&world, &license, &org.ou_arn(&workloads), "ou").await;
    world
        .control()
        .advance_clock(Duration::from_millis(2_100))
        .await
        .unwrap();
    assert_eq!(
        grant_status(&world, &parent).await.0,
        GrantStatus::WorkflowCompleted
    );
    let children = lm
        .list_received_grants_for_organization()
        .license_arn(&license)
        .filters(Filter::builder().name("ParentArn").values(&parent).build())
        .send()
        .await
        .unwrap();
    let mut grantees: Vec<String> = children
        .grants()
        .iter()
        .map(|g| g.grantee_principal_arn.clone())
        .collect();
    grantees.sort();
    let mut expected: Vec<String> = org
        .accounts
        .iter()
        .filter(|a| a.ou_id == workloads || a.ou_id == nested)
        .map(|a| format!("arn:aws:iam::{}:root", a.id))
        .collect();
    expected.sort();
    assert_eq!(grantees, expected);

    // A joiner in the nested OU: covered, but without a grant of its own for a while.
    let late = seed::add_account(&world, &mut org, "late", &nested)
        .await
        .unwrap();
    seed::create_member_slrs(&world, &late.id).await.unwrap();
    let inside = world.client_for_account(&late.id).await.unwrap();
    let mine = inside
        .license_manager
        .list_received_grants()
        .send()
        .await
        .unwrap();
    assert!(mine.grants().is_empty());
    world
        .control()
        .advance_clock(Duration::from_millis(2_100))
        .await
        .unwrap();
    let mine = inside
        .license_manager
        .list_received_grants()
        .send()
        .await
        .unwrap();
    assert_eq!(mine.grants().len(), 1);
    assert_eq!(mine.grants()[0].parent_arn, parent);
    assert_eq!(mine.grants()[0].grant_status, GrantStatus::Disabled);

    // Leaving the organization disables the child.
    let orgs = world.organizations();
    orgs.remove_account_from_organization()
        .account_id(&late.id)
        .send()
        .await
        .unwrap();
    world
        .control()
        .advance_clock(Duration::from_millis(1_100))
        .await
        .unwrap();
    let child = mine.grants()[0].grant_arn.clone();
    let (status, reason) = grant_status(&world, &child).await;
    assert_eq!(status, GrantStatus::Disabled);
    assert_eq!(
        reason.as_deref(),
        Some(local_world::emulator::LEFT_ORGANIZATION_MESSAGE)
    );
}

/// Emulator → moto requests for a fixed License Manager workload against the demo
/// organization with an organization grant (so every call needs the organization).
async fn moto_requests_for_workload(org_cache_ms: u64) -> Option<(u64, u64)> {
    let world = world().await?;
    world
        .control()
        .configure(json!({ "orgCacheMs": org_cache_ms }))
        .await
        .unwrap();
    let mut spec = demo_spec();
    spec.org_wide_grants = vec![spec.licenses[1].sku.clone()];
    let org = seed::seed(&world, &spec).await.unwrap();
    let before = world.control().moto_requests().await.unwrap();
    let lm = world.license_manager();
    let mut calls = 0;
    for (i, account) in org.accounts.iter().enumerate() {
        let arn = create_grant(
            &world,
            &org.licenses[0].arn,
            &format!("arn:aws:iam::{}:root", account.id),
            &format!("w{i}"),
        )
        .await;
        calls += 1;
        for _ in 0..10 {
            lm.get_grant().grant_arn(&arn).send().await.unwrap();
            lm.list_distributed_grants().send().await.unwrap();
            calls += 2;
        }
    }
    let after = world.control().moto_requests().await.unwrap();
    Some((after - before, calls))
}

#[tokio::test]
async fn organization_reads_are_cached() {
    let Some((uncached, calls)) = moto_requests_for_workload(0).await else {
        return;
    };
    let Some((cached, _)) = moto_requests_for_workload(60_000).await else {
        return;
    };
    eprintln!(
        "emulator -> moto requests for {calls} License Manager calls: \
         {uncached} without the cache, {cached} with it"
    );
    assert!(uncached >= calls, "{uncached} < {calls}");
    assert!(
        cached * 5 < uncached,
        "cached {cached}, uncached {uncached}"
    );
}

#[tokio::test]
async fn the_world_reads_its_profile_from_the_environment() {
    // The default options defer to CT_EMULATOR_PROFILE; explicit switches win.
    let explicit = local_world::WorldOptions {
        switches: local_world::emulator::Switches {
            latency_ms: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(explicit.effective_switches().unwrap().latency_ms, 1);
    let pinned = local_world::WorldOptions {
        pin_switches: true,
        ..Default::default()
    };
    assert_eq!(
        pinned.effective_switches().unwrap(),
        local_world::emulator::Switches::default()
    );
    let from_env = local_world::WorldOptions::default()
        .effective_switches()
        .unwrap();
    match std::env::var(local_world::emulator::PROFILE_ENV).as_deref() {
        Ok("realistic") => assert_eq!(from_env, local_world::emulator::Switches::realistic()),
        Err(_) => assert_eq!(from_env, local_world::emulator::Switches::default()),
        Ok(_) => {}
    }
}
