//! The Service Catalog side of the emulator (Account Factory vending, portfolio sharing),
//! driven through the real aws-sdk-servicecatalog client, with a seeded organization.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aws_sdk_servicecatalog::error::ProvideErrorMetadata;
use aws_sdk_servicecatalog::types::{
    OrganizationNode, OrganizationNodeType, PortfolioShareType, PrincipalType, ProductViewFilterBy,
    ProvisioningParameter, RecordStatus,
};
use aws_sdk_servicecatalog::Client;
use local_world::clients;
use local_world::emulator::{
    self, ControlClient, EmulatorHandle, EmulatorOptions, OrgSeed, OuSeed, ACCOUNT_FACTORY,
    CONTROL_TOWER_BUSY,
};
use serde_json::json;

const MGMT: &str = "111111111111";
const MEMBER: &str = "222222222222";
const OUTSIDER: &str = "999999999999";
const ORG_ID: &str = "o-abcdef1234";
const OU_SANDBOX: &str = "ou-ab12-22222222";

async fn start() -> (EmulatorHandle, ControlClient) {
    let org = OrgSeed {
        id: ORG_ID.to_string(),
        management_account: MGMT.to_string(),
        feature_set: "ALL".to_string(),
        accounts: vec![MEMBER.to_string()],
        ous: vec![OuSeed {
            id: OU_SANDBOX.to_string(),
            name: "Sandbox".to_string(),
            accounts: vec![],
        }],
    };
    let emu = emulator::start(EmulatorOptions {
        org: Some(org),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let control = emu.control();
    (emu, control)
}

fn sc(emu: &EmulatorHandle, account: &str) -> Client {
    clients::service_catalog(&emu.url(), account)
}

fn param(key: &str, value: &str) -> ProvisioningParameter {
    ProvisioningParameter::builder()
        .key(key)
        .value(value)
        .build()
}

async fn account_factory(client: &Client) -> (String, String) {
    let described = client
        .describe_product_as_admin()
        .name(ACCOUNT_FACTORY)
        .send()
        .await
        .unwrap();
    let product = described
        .product_view_detail()
        .unwrap()
        .product_view_summary()
        .unwrap()
        .product_id()
        .unwrap()
        .to_string();
    let artifact = described.provisioning_artifact_summaries()[0]
        .id()
        .unwrap()
        .to_string();
    (product, artifact)
}

fn request(
    client: &Client,
    product: &str,
    artifact: &str,
    name: &str,
    ou: &str,
) -> aws_sdk_servicecatalog::operation::provision_product::builders::ProvisionProductFluentBuilder {
    let email = format!("{name}@example.com");
    client
        .provision_product()
        .product_id(product)
        .provisioning_artifact_id(artifact)
        .provisioned_product_name(name)
        .provision_token(format!("token-{name}"))
        .provisioning_parameters(param("AccountName", name))
        .provisioning_parameters(param("AccountEmail", &email))
        .provisioning_parameters(param("ManagedOrganizationalUnit", ou))
        .provisioning_parameters(param("SSOUserEmail", &email))
        .provisioning_parameters(param("SSOUserFirstName", "Test"))
        .provisioning_parameters(param("SSOUserLastName", "User"))
}

#[tokio::test]
async fn account_factory_product_is_discoverable() {
    let (emu, _control) = start().await;
    let client = sc(&emu, MGMT);
    let found = client
        .search_products_as_admin()
        .filters(
            ProductViewFilterBy::FullTextSearch,
            vec!["Account Factory".to_string()],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(found.product_view_details().len(), 1);
    let summary = found.product_view_details()[0]
        .product_view_summary()
        .unwrap();
    assert_eq!(summary.name(), Some(ACCOUNT_FACTORY));
    let none = client
        .search_products_as_admin()
        .filters(
            ProductViewFilterBy::FullTextSearch,
            vec!["nothing like it".to_string()],
        )
        .send()
        .await
        .unwrap();
    assert!(none.product_view_details().is_empty());

    let (product, artifact) = account_factory(&client).await;
    let artifacts = client
        .list_provisioning_artifacts()
        .product_id(&product)
        .send()
        .await
        .unwrap();
    let detail = &artifacts.provisioning_artifact_details()[0];
    assert_eq!(detail.id(), Some(artifact.as_str()));
    assert_eq!(detail.active(), Some(true));
    assert!(detail.created_time().is_some());

    let err = client
        .describe_product_as_admin()
        .name("No Such Product")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn provisioning_creates_an_account_in_the_requested_ou() {
    let (emu, control) = start().await;
    control
        .configure(json!({ "provisioningMs": 10_000 }))
        .await
        .unwrap();
    let client = sc(&emu, MGMT);
    let (product, artifact) = account_factory(&client).await;
    let created = request(
        &client,
        &product,
        &artifact,
        "team-a",
        &format!("Sandbox ({OU_SANDBOX})"),
    )
    .send()
    .await
    .unwrap();
    let record = created.record_detail().unwrap();
    assert_eq!(record.status(), Some(&RecordStatus::Created));
    let record_id = record.record_id().unwrap().to_string();

    // Same token, same request: same record.
    let again = request(
        &client,
        &product,
        &artifact,
        "team-a",
        &format!("Sandbox ({OU_SANDBOX})"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        again.record_detail().unwrap().record_id(),
        Some(record_id.as_str())
    );
    // Same token, different request: refused.
    let err = request(&client, &product, &artifact, "team-a", "Sandbox")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameters_exception(), "{err:?}");

    let running = client
        .describe_record()
        .id(&record_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        running.record_detail().unwrap().status(),
        Some(&RecordStatus::InProgress)
    );
    assert!(running.record_outputs().is_empty());

    control
        .advance_clock(Duration::from_secs(11))
        .await
        .unwrap();
    let done = client
        .describe_record()
        .id(&record_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.record_detail().unwrap().status(),
        Some(&RecordStatus::Succeeded)
    );
    let account = done
        .record_outputs()
        .iter()
        .find(|o| o.output_key() == Some("AccountId"))
        .and_then(|o| o.output_value())
        .unwrap()
        .to_string();
    assert_eq!(account.len(), 12);
    let state = control.state().await.unwrap();
    let ou = &state["org"]["ous"][0];
    assert_eq!(ou["id"], OU_SANDBOX);
    assert_eq!(ou["accounts"][0], account.as_str());

    let events = control.control_tower_events().await.unwrap();
    assert_eq!(events.len(), 1);
    let detail = &events[0]["detail"];
    assert_eq!(detail["eventName"], "CreateManagedAccount");
    let status = &detail["serviceEventDetails"]["createManagedAccountStatus"];
    assert_eq!(status["state"], "SUCCEEDED");
    assert_eq!(status["account"]["accountId"], account.as_str());
    assert_eq!(status["account"]["accountName"], "team-a");
    assert_eq!(
        status["organizationalUnit"]["organizationalUnitName"],
        "Sandbox"
    );
    // Control Tower's timestamp style: no colon in the offset.
    assert!(status["completedTimestamp"]
        .as_str()
        .unwrap()
        .ends_with("+0000"));

    // Records are private to the caller.
    let err = sc(&emu, MEMBER)
        .describe_record()
        .id(&record_id)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_resource_not_found_exception());
}

#[tokio::test]
async fn vended_account_gets_its_child_of_an_organization_grant() {
    let (emu, control) = start().await;
    let license = control
        .seed_license(&emulator::LicenseSeed::marketplace(
            MGMT,
            "SKU-1",
            "Product 1",
        ))
        .await
        .unwrap()["LicenseArn"]
        .as_str()
        .unwrap()
        .to_string();
    let lm = clients::license_manager(&emu.url(), MGMT);
    lm.create_grant()
        .client_token("org")
        .grant_name("org")
        .license_arn(&license)
        .principals(format!(
            "arn:aws:organizations::{MGMT}:organization/{ORG_ID}"
        ))
        .home_region("us-east-1")
        .allowed_operations(aws_sdk_licensemanager::types::AllowedOperation::CheckoutLicense)
        .send()
        .await
        .unwrap();
    let client = sc(&emu, MGMT);
    let (product, artifact) = account_factory(&client).await;
    let record = request(&client, &product, &artifact, "new-team", "Sandbox")
        .send()
        .await
        .unwrap()
        .record_detail()
        .unwrap()
        .record_id()
        .unwrap()
        .to_string();
    let done = client.describe_record().id(&record).send().await.unwrap();
    let account = done.record_outputs()[0].output_value().unwrap().to_string();
    let received = clients::license_manager(&emu.url(), &account)
        .list_received_grants()
        .send()
        .await
        .unwrap();
    assert_eq!(received.grants().len(), 1);
    assert_eq!(received.grants()[0].license_arn, license);
}

#[tokio::test]
async fn control_tower_runs_a_limited_number_of_account_operations() {
    let (emu, control) = start().await;
    control
        .configure(json!({ "provisioningMs": 60_000, "maxConcurrentAccountOperations": 2 }))
        .await
        .unwrap();
    let client = sc(&emu, MGMT);
    let (product, artifact) = account_factory(&client).await;
    for name in ["one", "two"] {
        request(&client, &product, &artifact, name, "Sandbox")
            .send()
            .await
            .unwrap();
    }
    let err = request(&client, &product, &artifact, "three", "Sandbox")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameters_exception(), "{err:?}");
    assert_eq!(err.message(), Some(CONTROL_TOWER_BUSY));

    control
        .advance_clock(Duration::from_secs(61))
        .await
        .unwrap();
    request(&client, &product, &artifact, "three", "Sandbox")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_requests_fail_or_are_refused() {
    let (emu, _control) = start().await;
    let client = sc(&emu, MGMT);
    let (product, artifact) = account_factory(&client).await;

    let missing = client
        .provision_product()
        .product_id(&product)
        .provisioning_artifact_id(&artifact)
        .provisioned_product_name("incomplete")
        .provision_token("incomplete")
        .provisioning_parameters(param("AccountName", "incomplete"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(missing.is_invalid_parameters_exception());

    request(&client, &product, &artifact, "dup", "Sandbox")
        .send()
        .await
        .unwrap();
    let duplicate = request(&client, &product, &artifact, "dup", "Sandbox")
        .provision_token("another-token")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(duplicate.is_duplicate_resource_exception(), "{duplicate:?}");

    // Accepted, then FAILED: unknown OU, or an email with the failure marker.
    for (name, ou) in [("no-ou", "Nonexistent"), ("will-fail", "Sandbox")] {
        let mut req = request(&client, &product, &artifact, name, ou);
        if name == "will-fail" {
            req = req.provisioning_parameters(param("AccountEmail", "please-fail@example.com"));
        }
        let record = req
            .send()
            .await
            .unwrap()
            .record_detail()
            .unwrap()
            .record_id()
            .unwrap()
            .to_string();
        let described = client.describe_record().id(&record).send().await.unwrap();
        let detail = described.record_detail().unwrap();
        assert_eq!(detail.status(), Some(&RecordStatus::Failed), "{name}");
        assert_eq!(detail.record_errors().len(), 1);
        assert!(described.record_outputs().is_empty());
    }
}

#[tokio::test]
async fn portfolios_are_shared_accepted_and_associated() {
    let (emu, _control) = start().await;
    let admin = sc(&emu, MGMT);
    let portfolio = admin
        .create_portfolio()
        .display_name("Marketplace software")
        .provider_name("Platform team")
        .idempotency_token("p1")
        .send()
        .await
        .unwrap();
    let portfolio_id = portfolio
        .portfolio_detail()
        .unwrap()
        .id()
        .unwrap()
        .to_string();
    let member = sc(&emu, MEMBER);
    let role = format!("arn:aws:iam::{MEMBER}:role/Developers");

    // Not shared yet.
    let err = member
        .accept_portfolio_share()
        .portfolio_id(&portfolio_id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception());
    let err = member
        .associate_principal_with_portfolio()
        .portfolio_id(&portfolio_id)
        .principal_arn(&role)
        .principal_type(PrincipalType::Iam)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception());

    // Shared with the organization.
    let share = admin
        .create_portfolio_share()
        .portfolio_id(&portfolio_id)
        .organization_node(
            OrganizationNode::builder()
                .r#type(OrganizationNodeType::Organization)
                .value(ORG_ID)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(share.portfolio_share_token().is_some());
    member
        .accept_portfolio_share()
        .portfolio_id(&portfolio_id)
        .portfolio_share_type(PortfolioShareType::AwsOrganizations)
        .send()
        .await
        .unwrap();
    member
        .associate_principal_with_portfolio()
        .portfolio_id(&portfolio_id)
        .principal_arn(&role)
        .principal_type(PrincipalType::Iam)
        .send()
        .await
        .unwrap();
    // A principal from another account is refused.
    let err = member
        .associate_principal_with_portfolio()
        .portfolio_id(&portfolio_id)
        .principal_arn(format!("arn:aws:iam::{OUTSIDER}:role/Developers"))
        .principal_type(PrincipalType::Iam)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameters_exception());

    // An account outside the organization needs an account share.
    let outsider = sc(&emu, OUTSIDER);
    let err = outsider
        .accept_portfolio_share()
        .portfolio_id(&portfolio_id)
        .portfolio_share_type(PortfolioShareType::AwsOrganizations)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
    let by_account = admin
        .create_portfolio_share()
        .portfolio_id(&portfolio_id)
        .account_id(OUTSIDER)
        .send()
        .await
        .unwrap();
    assert!(by_account.portfolio_share_token().is_none());
    outsider
        .accept_portfolio_share()
        .portfolio_id(&portfolio_id)
        .send()
        .await
        .unwrap();

    // Only the owner shares.
    let err = member
        .create_portfolio_share()
        .portfolio_id(&portfolio_id)
        .account_id(OUTSIDER)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception());
}

#[tokio::test]
async fn service_catalog_throttling_uses_its_own_error_code() {
    let (emu, control) = start().await;
    control
        .configure(json!({ "rateLimits": { "DescribeProductAsAdmin": 1 } }))
        .await
        .unwrap();
    let client = sc(&emu, MGMT);
    account_factory(&client).await;
    let err = client
        .describe_product_as_admin()
        .name(ACCOUNT_FACTORY)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ThrottlingException"));
}
