//! The Service Catalog side of the emulator (Account Factory vending, portfolio sharing),
//! driven through the real aws-sdk-servicecatalog client, with a seeded organization.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aws_sdk_servicecatalog::error::ProvideErrorMetadata;
use aws_sdk_servicecatalog::operation::search_provisioned_products::SearchProvisionedProductsOutput;
use aws_sdk_servicecatalog::types::{
    AccessLevelFilter, AccessLevelFilterKey, OrganizationNode, OrganizationNodeType,
    PortfolioShareType, PrincipalType, ProductViewFilterBy, ProvisionedProductStatus,
    ProvisionedProductViewFilterBy, ProvisioningParameter, RecordStatus, ShareStatus, SortOrder,
};
use aws_sdk_servicecatalog::Client;
use local_world::clients;
use local_world::emulator::{
    self, ControlClient, EmulatorHandle, EmulatorOptions, OrgSeed, OuSeed, ACCOUNT_FACTORY,
    ACCOUNT_FACTORY_BUSY, CONTROL_TOWER_BUSY,
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
    // As AWS answers: ResourceInUseException, "another execution is in progress".
    // (Not in ProvisionProduct's SDK model: the SDK surfaces it as an unhandled error code.)
    assert_eq!(err.code(), Some("ResourceInUseException"), "{err:?}");
    assert_eq!(err.message(), Some(ACCOUNT_FACTORY_BUSY));
    // The "in progress" variant seen under InvalidParametersException, behind a switch.
    control
        .configure(json!({ "accountFactoryBusyCode": "InvalidParametersException" }))
        .await
        .unwrap();
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

// ---------- SearchProvisionedProducts ----------

/// The Account-level, "self" filter account-vending sends.
fn account_self() -> AccessLevelFilter {
    AccessLevelFilter::builder()
        .key(AccessLevelFilterKey::Account)
        .value("self")
        .build()
}

async fn search(client: &Client, query: &[&str]) -> SearchProvisionedProductsOutput {
    client
        .search_provisioned_products()
        .access_level_filter(account_self())
        .set_filters((!query.is_empty()).then(|| {
            std::collections::HashMap::from([(
                ProvisionedProductViewFilterBy::SearchQuery,
                query.iter().map(|q| q.to_string()).collect(),
            )])
        }))
        .send()
        .await
        .unwrap()
}

fn names(out: &SearchProvisionedProductsOutput) -> Vec<&str> {
    out.provisioned_products()
        .iter()
        .map(|p| p.name().unwrap())
        .collect()
}

#[tokio::test]
async fn provisioned_products_are_under_change_until_their_record_finishes() {
    let (emu, control) = start().await;
    control
        .configure(json!({ "provisioningMs": 10_000 }))
        .await
        .unwrap();
    let client = sc(&emu, MGMT);
    let (product, artifact) = account_factory(&client).await;
    assert_eq!(search(&client, &[]).await.total_results_count(), 0);

    let ok = request(&client, &product, &artifact, "works", "Sandbox")
        .send()
        .await
        .unwrap();
    let ok = ok.record_detail().unwrap().clone();
    let bad = request(&client, &product, &artifact, "breaks", "Sandbox")
        .provisioning_parameters(param("AccountEmail", "please-fail@example.com"))
        .send()
        .await
        .unwrap();
    let bad = bad.record_detail().unwrap().clone();

    let busy = search(&client, &["status:UNDER_CHANGE"]).await;
    assert_eq!(busy.total_results_count(), 2);
    assert_eq!(names(&busy), vec!["works", "breaks"]);
    let p = &busy.provisioned_products()[0];
    assert_eq!(p.id(), ok.provisioned_product_id());
    assert_eq!(p.status(), Some(&ProvisionedProductStatus::UnderChange));
    assert_eq!(p.product_id(), Some(product.as_str()));
    assert_eq!(p.product_name(), Some(ACCOUNT_FACTORY));
    assert_eq!(p.provisioning_artifact_id(), Some(artifact.as_str()));
    assert_eq!(p.last_record_id(), ok.record_id());
    assert_eq!(p.last_provisioning_record_id(), ok.record_id());
    assert_eq!(p.last_successful_provisioning_record_id(), None);
    assert_eq!(p.idempotency_token(), Some("token-works"));
    assert_eq!(p.r#type(), Some("CFN_STACK"));
    assert_eq!(p.created_time(), ok.created_time());
    let arn = p.arn().unwrap();
    assert!(
        arn.starts_with(&format!(
            "arn:aws:servicecatalog:us-east-1:{MGMT}:stack/works/pp-"
        )),
        "{arn}"
    );
    assert!(p
        .physical_id()
        .unwrap()
        .starts_with("arn:aws:cloudformation:"));

    // Records are private to the account; so are provisioned products.
    assert_eq!(
        search(&sc(&emu, MEMBER), &[]).await.total_results_count(),
        0
    );

    control
        .advance_clock(Duration::from_secs(11))
        .await
        .unwrap();
    assert_eq!(
        search(&client, &["status:UNDER_CHANGE"])
            .await
            .total_results_count(),
        0
    );
    let all = search(&client, &[]).await;
    let by_name = |name: &str| {
        all.provisioned_products()
            .iter()
            .find(|p| p.name() == Some(name))
            .unwrap()
            .clone()
    };
    let works = by_name("works");
    assert_eq!(works.status(), Some(&ProvisionedProductStatus::Available));
    assert_eq!(
        works.last_successful_provisioning_record_id(),
        ok.record_id()
    );
    let breaks = by_name("breaks");
    assert_eq!(breaks.status(), Some(&ProvisionedProductStatus::Error));
    assert_eq!(breaks.last_record_id(), bad.record_id());
    assert!(
        breaks
            .status_message()
            .unwrap()
            .contains("injected failure"),
        "{breaks:?}"
    );
    assert_eq!(
        names(&search(&client, &["status:available"]).await),
        vec!["works"]
    );
    assert_eq!(
        names(&search(&client, &["status:ERROR"]).await),
        vec!["breaks"]
    );

    // Field terms are exact, free text matches any field, every term must match.
    assert_eq!(
        names(&search(&client, &[&format!("productId:{product}")]).await),
        vec!["works", "breaks"]
    );
    assert_eq!(
        search(&client, &["name:work"]).await.total_results_count(),
        0
    );
    assert_eq!(names(&search(&client, &["reak"]).await), vec!["breaks"]);
    assert_eq!(
        search(&client, &["status:AVAILABLE name:breaks"])
            .await
            .total_results_count(),
        0
    );
    assert_eq!(
        names(
            &search(
                &client,
                &[&format!("lastRecordId:{}", ok.record_id().unwrap())]
            )
            .await
        ),
        vec!["works"]
    );
}

#[tokio::test]
async fn provisioned_product_search_pages_sorts_and_checks_its_input() {
    let (emu, control) = start().await;
    let client = sc(&emu, MGMT);
    let (product, artifact) = account_factory(&client).await;
    for name in ["bravo", "alpha", "charlie"] {
        request(&client, &product, &artifact, name, "Sandbox")
            .send()
            .await
            .unwrap();
    }
    let first = client
        .search_provisioned_products()
        .sort_by("name")
        .sort_order(SortOrder::Descending)
        .page_size(2)
        .send()
        .await
        .unwrap();
    assert_eq!(names(&first), vec!["charlie", "bravo"]);
    assert_eq!(first.total_results_count(), 3);
    let token = first.next_page_token().unwrap().to_string();
    let second = client
        .search_provisioned_products()
        .sort_by("name")
        .sort_order(SortOrder::Descending)
        .page_size(2)
        .page_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(names(&second), vec!["alpha"]);
    assert_eq!(second.next_page_token(), None);
    assert_eq!(second.total_results_count(), 3);

    let bad_filter = client
        .search_provisioned_products()
        .filters(
            ProvisionedProductViewFilterBy::from("Status"),
            vec!["AVAILABLE".to_string()],
        )
        .send()
        .await;
    let bad_level = client
        .search_provisioned_products()
        .access_level_filter(
            AccessLevelFilter::builder()
                .key(AccessLevelFilterKey::Account)
                .value("123456789012")
                .build(),
        )
        .send()
        .await;
    let bad_page = client
        .search_provisioned_products()
        .page_size(101)
        .send()
        .await;
    let bad_sort = client
        .search_provisioned_products()
        .sort_by("status")
        .send()
        .await;
    // The filter key and the page size are refused by AWS's model already (ValidationException,
    // recorded); the access level value and the sort field by Service Catalog itself.
    for (what, result, code) in [
        ("filter key", bad_filter.map(drop), "ValidationException"),
        (
            "access level value",
            bad_level.map(drop),
            "InvalidParametersException",
        ),
        ("page size", bad_page.map(drop), "ValidationException"),
        (
            "sort field",
            bad_sort.map(drop),
            "InvalidParametersException",
        ),
    ] {
        let err = result.unwrap_err();
        assert_eq!(err.code(), Some(code), "{what}");
    }
    let refused = control.take_model_violations().await.unwrap();
    let members: Vec<(&str, &str)> = refused
        .iter()
        .map(|v| (v.operation.as_str(), v.member.as_str()))
        .collect();
    assert_eq!(
        members,
        [
            ("SearchProvisionedProducts", "Filters[\"Status\"](key)"),
            ("SearchProvisionedProducts", "PageSize"),
        ],
        "{refused:?}"
    );
    assert!(refused[0]
        .constraint
        .contains("enum value set: [SearchQuery]"));
}

#[tokio::test]
async fn user_access_level_shows_only_what_the_caller_provisioned() {
    let (emu, control) = start().await;
    control.map_access_key("AKIAUSERONE", MGMT).await.unwrap();
    control.map_access_key("AKIAUSERTWO", MGMT).await.unwrap();
    let one = sc(&emu, "AKIAUSERONE");
    let two = sc(&emu, "AKIAUSERTWO");
    let (product, artifact) = account_factory(&one).await;
    request(&one, &product, &artifact, "mine", "Sandbox")
        .send()
        .await
        .unwrap();
    let user_self = || {
        AccessLevelFilter::builder()
            .key(AccessLevelFilterKey::User)
            .value("self")
            .build()
    };
    for (client, expected) in [(&one, 1), (&two, 0)] {
        let out = client
            .search_provisioned_products()
            .access_level_filter(user_self())
            .send()
            .await
            .unwrap();
        assert_eq!(out.total_results_count(), expected);
        // The whole account is the default, and Account-level.
        assert_eq!(search(client, &[]).await.total_results_count(), 1);
        let default = client.search_provisioned_products().send().await.unwrap();
        assert_eq!(default.total_results_count(), 1);
    }
}

// ---------- DescribePortfolioShareStatus, DeletePortfolioShare ----------

const OU_TEAMS: &str = "ou-ab12-33333333";
const TEAM_A: &str = "333333333333";
const TEAM_B: &str = "444444444444";

/// The organization of [`start`] plus an OU with two accounts, and a portfolio of MGMT's.
async fn portfolio_world() -> (EmulatorHandle, Client, String) {
    let (emu, control) = start().await;
    control
        .seed_org(&OrgSeed {
            id: ORG_ID.to_string(),
            management_account: MGMT.to_string(),
            feature_set: "ALL".to_string(),
            accounts: vec![MEMBER.to_string()],
            ous: vec![OuSeed {
                id: OU_TEAMS.to_string(),
                name: "Teams".to_string(),
                accounts: vec![TEAM_A.to_string(), TEAM_B.to_string()],
            }],
        })
        .await
        .unwrap();
    let admin = sc(&emu, MGMT);
    let portfolio = admin
        .create_portfolio()
        .display_name("Marketplace software")
        .provider_name("Platform team")
        .idempotency_token("p1")
        .send()
        .await
        .unwrap()
        .portfolio_detail()
        .unwrap()
        .id()
        .unwrap()
        .to_string();
    (emu, admin, portfolio)
}

fn node(kind: OrganizationNodeType, value: &str) -> OrganizationNode {
    OrganizationNode::builder()
        .r#type(kind)
        .value(value)
        .build()
}

#[tokio::test]
async fn organization_node_shares_report_their_status() {
    let (emu, admin, portfolio) = portfolio_world().await;
    let status = |token: String| {
        let admin = admin.clone();
        async move {
            admin
                .describe_portfolio_share_status()
                .portfolio_share_token(token)
                .send()
                .await
                .unwrap()
        }
    };
    let share = |kind: OrganizationNodeType, value: &str| {
        admin
            .create_portfolio_share()
            .portfolio_id(&portfolio)
            .organization_node(node(kind, value))
            .send()
    };

    let ou_token = share(OrganizationNodeType::OrganizationalUnit, OU_TEAMS)
        .await
        .unwrap()
        .portfolio_share_token()
        .unwrap()
        .to_string();
    let ou = status(ou_token.clone()).await;
    assert_eq!(ou.portfolio_share_token(), Some(ou_token.as_str()));
    assert_eq!(ou.portfolio_id(), Some(portfolio.as_str()));
    assert_eq!(ou.organization_node_value(), Some(OU_TEAMS));
    assert_eq!(ou.status(), Some(&ShareStatus::Completed));
    let mut reached = ou.share_details().unwrap().successful_shares().to_vec();
    reached.sort();
    assert_eq!(reached, vec![TEAM_A, TEAM_B]);
    assert!(ou.share_details().unwrap().share_errors().is_empty());

    // The whole organization: every account but the portfolio's owner.
    let org_token = share(OrganizationNodeType::Organization, ORG_ID)
        .await
        .unwrap()
        .portfolio_share_token()
        .unwrap()
        .to_string();
    let org = status(org_token).await;
    assert_eq!(org.status(), Some(&ShareStatus::Completed));
    let mut reached = org.share_details().unwrap().successful_shares().to_vec();
    reached.sort();
    assert_eq!(reached, vec![MEMBER, TEAM_A, TEAM_B]);

    // An OU the organization does not have: the share ends in ERROR, naming it.
    let missing_token = share(OrganizationNodeType::OrganizationalUnit, "ou-ab12-99999999")
        .await
        .unwrap()
        .portfolio_share_token()
        .unwrap()
        .to_string();
    let missing = status(missing_token).await;
    assert_eq!(missing.status(), Some(&ShareStatus::Error));
    let errors = missing.share_details().unwrap().share_errors();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message().unwrap().contains("ou-ab12-99999999"),
        "{errors:?}"
    );
    assert!(missing
        .share_details()
        .unwrap()
        .successful_shares()
        .is_empty());

    // Tokens are the sharer's: unknown to anyone else, and made-up ones are unknown.
    let err = sc(&emu, MEMBER)
        .describe_portfolio_share_status()
        .portfolio_share_token(&ou_token)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = admin
        .describe_portfolio_share_status()
        .portfolio_share_token("share-nosuchtoken00")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn deleting_a_share_revokes_the_import() {
    let (emu, admin, portfolio) = portfolio_world().await;
    let role = format!("arn:aws:iam::{OUTSIDER}:role/Developers");
    let outsider = sc(&emu, OUTSIDER);
    admin
        .create_portfolio_share()
        .portfolio_id(&portfolio)
        .account_id(OUTSIDER)
        .send()
        .await
        .unwrap();
    outsider
        .accept_portfolio_share()
        .portfolio_id(&portfolio)
        .send()
        .await
        .unwrap();
    let associate = || {
        outsider
            .associate_principal_with_portfolio()
            .portfolio_id(&portfolio)
            .principal_arn(&role)
            .principal_type(PrincipalType::Iam)
            .send()
    };
    associate().await.unwrap();

    // Only the owner unshares.
    let err = sc(&emu, MEMBER)
        .delete_portfolio_share()
        .portfolio_id(&portfolio)
        .account_id(OUTSIDER)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let both = admin
        .delete_portfolio_share()
        .portfolio_id(&portfolio)
        .account_id(OUTSIDER)
        .organization_node(node(OrganizationNodeType::Organization, ORG_ID))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(both.is_invalid_parameters_exception(), "{both:?}");

    let deleted = admin
        .delete_portfolio_share()
        .portfolio_id(&portfolio)
        .account_id(OUTSIDER)
        .send()
        .await
        .unwrap();
    assert_eq!(
        deleted.portfolio_share_token(),
        None,
        "no token for an account"
    );
    let err = associate().await.unwrap_err().into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let err = outsider
        .accept_portfolio_share()
        .portfolio_id(&portfolio)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    // Gone already.
    let again = admin
        .delete_portfolio_share()
        .portfolio_id(&portfolio)
        .account_id(OUTSIDER)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(again.is_resource_not_found_exception(), "{again:?}");

    // An OU share: unsharing is followed like sharing. An account still covered by the
    // organization share keeps its import; the OU share's removal alone does not revoke it.
    let team_a = sc(&emu, TEAM_A);
    for n in [
        node(OrganizationNodeType::OrganizationalUnit, OU_TEAMS),
        node(OrganizationNodeType::Organization, ORG_ID),
    ] {
        admin
            .create_portfolio_share()
            .portfolio_id(&portfolio)
            .organization_node(n)
            .send()
            .await
            .unwrap();
    }
    team_a
        .accept_portfolio_share()
        .portfolio_id(&portfolio)
        .portfolio_share_type(PortfolioShareType::AwsOrganizations)
        .send()
        .await
        .unwrap();
    let unshared = admin
        .delete_portfolio_share()
        .portfolio_id(&portfolio)
        .organization_node(node(OrganizationNodeType::OrganizationalUnit, OU_TEAMS))
        .send()
        .await
        .unwrap();
    let token = unshared.portfolio_share_token().unwrap();
    let status = admin
        .describe_portfolio_share_status()
        .portfolio_share_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), Some(&ShareStatus::Completed));
    assert_eq!(status.organization_node_value(), Some(OU_TEAMS));
    let team_role = format!("arn:aws:iam::{TEAM_A}:role/Developers");
    team_a
        .associate_principal_with_portfolio()
        .portfolio_id(&portfolio)
        .principal_arn(&team_role)
        .principal_type(PrincipalType::Iam)
        .send()
        .await
        .unwrap();
    admin
        .delete_portfolio_share()
        .portfolio_id(&portfolio)
        .organization_node(node(OrganizationNodeType::Organization, ORG_ID))
        .send()
        .await
        .unwrap();
    let err = team_a
        .associate_principal_with_portfolio()
        .portfolio_id(&portfolio)
        .principal_arn(&team_role)
        .principal_type(PrincipalType::Iam)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn failed_provisioned_product_name_is_refused_until_terminated() {
    let (emu, control) = start().await;
    let client = sc(&emu, MGMT);
    let (product, artifact) = account_factory(&client).await;
    // The fail marker in the email makes the record FAIL.
    let record = request(&client, &product, &artifact, "fail-once", "Sandbox")
        .send()
        .await
        .unwrap()
        .record_detail()
        .unwrap()
        .record_id()
        .unwrap()
        .to_string();
    control.advance_clock(Duration::from_secs(1)).await.unwrap();
    let mut status = None;
    for _ in 0..50 {
        let out = client.describe_record().id(&record).send().await.unwrap();
        status = out.record_detail().and_then(|d| d.status()).cloned();
        if status == Some(RecordStatus::Failed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, Some(RecordStatus::Failed));

    // Same name, new token (a redriven request): refused while the FAILED product exists.
    let err = request(&client, &product, &artifact, "fail-once", "Sandbox")
        .provision_token("token-second-generation")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameters_exception(), "{err:?}");
    assert_eq!(
        err.message(),
        Some("A stack named fail-once already exists.")
    );

    // Terminated, the name is free again.
    let terminated = client
        .terminate_provisioned_product()
        .provisioned_product_name("fail-once")
        .terminate_token("t-1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        terminated.record_detail().and_then(|d| d.record_type()),
        Some("TERMINATE_PROVISIONED_PRODUCT")
    );
    request(&client, &product, &artifact, "fail-once", "Sandbox")
        .provision_token("token-third-generation")
        .send()
        .await
        .unwrap();
}

async fn principals(client: &Client, portfolio: &str) -> Vec<String> {
    let mut arns: Vec<String> = client
        .list_principals_for_portfolio()
        .portfolio_id(portfolio)
        .send()
        .await
        .unwrap()
        .principals()
        .iter()
        .filter_map(|p| p.principal_arn().map(str::to_string))
        .collect();
    arns.sort();
    arns
}

#[tokio::test]
async fn principal_patterns_reach_members_only_through_shares_with_share_principals() {
    let (emu, admin, portfolio) = portfolio_world().await;
    let pattern = "arn:aws:iam:::role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_*";
    admin
        .associate_principal_with_portfolio()
        .portfolio_id(&portfolio)
        .principal_arn(pattern)
        .principal_type(PrincipalType::IamPattern)
        .send()
        .await
        .unwrap();
    // Shared with the Teams OU without SharePrincipals (the SDK's default): imported, but
    // nobody in the member can use it.
    admin
        .create_portfolio_share()
        .portfolio_id(&portfolio)
        .organization_node(node(OrganizationNodeType::OrganizationalUnit, OU_TEAMS))
        .send()
        .await
        .unwrap();
    let team_a = sc(&emu, TEAM_A);
    team_a
        .accept_portfolio_share()
        .portfolio_id(&portfolio)
        .portfolio_share_type(PortfolioShareType::AwsOrganizations)
        .send()
        .await
        .unwrap();
    assert!(principals(&team_a, &portfolio).await.is_empty());
    assert_eq!(
        principals(&admin, &portfolio).await,
        vec![pattern.to_string()]
    );

    // Shared with the organization with SharePrincipals=true: the pattern reaches members.
    admin
        .create_portfolio_share()
        .portfolio_id(&portfolio)
        .organization_node(node(OrganizationNodeType::Organization, ORG_ID))
        .share_principals(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        principals(&team_a, &portfolio).await,
        vec![pattern.to_string()]
    );
    let state = emu.control().state().await.unwrap();
    let shares = &state["serviceCatalog"]["portfolioShares"];
    assert_eq!(shares[0]["SharePrincipals"], false, "{shares:#}");
    assert_eq!(shares[1]["SharePrincipals"], true, "{shares:#}");

    // Account shares cannot carry principals (AWS supports SharePrincipals on ORGANIZATION and
    // ORGANIZATIONAL_UNIT nodes only).
    let err = admin
        .create_portfolio_share()
        .portfolio_id(&portfolio)
        .account_id(OUTSIDER)
        .share_principals(true)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameters_exception(), "{err:?}");
}
