//! The custom resource end to end inside the process: the real engine against mocked AWS
//! clients, and a local HTTP receiver on 127.0.0.1 standing in for the pre-signed S3 URL. Every
//! test asserts the exact body PUT to it (and the AWS calls made or not made).
#![allow(clippy::unwrap_used)]

use aws_credential_types::Credentials;
use aws_sdk_cloudformation::operation::describe_stack_resource::DescribeStackResourceOutput;
use aws_sdk_cloudformation::types::{ResourceStatus, StackResourceDetail};
use aws_sdk_iam::operation::list_roles::ListRolesOutput;
use aws_sdk_iam::types::Role;
use aws_sdk_licensemanager::operation::accept_grant::AcceptGrantOutput;
use aws_sdk_licensemanager::operation::create_grant::CreateGrantOutput;
use aws_sdk_licensemanager::operation::create_grant_version::CreateGrantVersionOutput;
use aws_sdk_licensemanager::operation::list_distributed_grants::ListDistributedGrantsOutput;
use aws_sdk_licensemanager::operation::list_received_grants::ListReceivedGrantsOutput;
use aws_sdk_licensemanager::operation::list_received_licenses::ListReceivedLicensesOutput;
use aws_sdk_licensemanager::types::{
    AllowedOperation, Grant, GrantStatus, GrantedLicense, IssuerDetails,
};
use aws_sdk_organizations::operation::describe_account::DescribeAccountOutput;
use aws_sdk_organizations::operation::describe_organization::DescribeOrganizationOutput;
use aws_sdk_organizations::operation::list_parents::ListParentsOutput;
use aws_sdk_organizations::operation::list_tags_for_resource::ListTagsForResourceOutput;
use aws_sdk_organizations::types::{Account, AccountState, Organization, Parent, ParentType};
use aws_sdk_sqs::operation::send_message::SendMessageOutput;
use aws_sdk_sts::operation::assume_role::AssumeRoleOutput;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use catalog_provisioning::{
    handle, App, CatalogConfig, LaunchLicenses, ManualClock, PendingResponse, Responder,
    StackReader,
};
use local_world::receiver::Receiver;
use serde_json::{json, Value};
use shared::{
    clients::Clients, clients::MemberClientFactory, clients::MemberClients, config::Config,
    engine::Engine,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

const MGMT: &str = "111111111111";
const ACCOUNT: &str = "210987654321";
const OU: &str = "ou-ab12-cdef3456";
const ORG_ARN: &str = "arn:aws:organizations::111111111111:organization/o-abc1234567";
const LICENSE: &str =
    "arn:aws:license-manager::294406891311:license:l-0123456789abcdef0123456789abcdef";
const SKU: &str = "prod-sku-1";
const GRANT: &str =
    "arn:aws:license-manager::111111111111:grant:g-00000000000000000000000000000001";
const NEW_GRANT: &str =
    "arn:aws:license-manager::111111111111:grant:g-00000000000000000000000000000002";
const STACK: &str = "arn:aws:cloudformation:us-east-1:210987654321:stack/SC-210987654321-pp-abcdefghijklm/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";
const RECHECK_QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/111111111111/catalog-recheck";

// ---------- AWS fixtures ----------

fn grant(arn: &str, status: GrantStatus, version: &str) -> Grant {
    Grant::builder()
        .grant_arn(arn)
        .grant_name("ct-entitlements-210987654321")
        .parent_arn(LICENSE)
        .license_arn(LICENSE)
        .grantee_principal_arn(format!("arn:aws:iam::{ACCOUNT}:root"))
        .home_region("us-east-1")
        .grant_status(status)
        .version(version)
        .granted_operations(AllowedOperation::CheckoutLicense)
        .build()
        .unwrap()
}

fn held(arn: &str, sku: &str) -> GrantedLicense {
    GrantedLicense::builder()
        .license_arn(arn)
        .product_sku(sku)
        .product_name("Product")
        .license_name("Marketplace license")
        .issuer(IssuerDetails::builder().name("AWS/Marketplace").build())
        .build()
}

struct Fixed(MemberClients);

impl MemberClientFactory for Fixed {
    fn member_clients(&self, _credentials: Credentials) -> MemberClients {
        self.0.clone()
    }
}

/// Mock rules per client; the default is a healthy organization where the launching account
/// has no grant yet.
struct World {
    org: Vec<Rule>,
    sts: Vec<Rule>,
    iam: Vec<Rule>,
    lm: Vec<Rule>,
    member_lm: Vec<Rule>,
    sqs: Vec<Rule>,
    catalog: Vec<Rule>,
    /// CloudFormation in the launching account (requests that must be verified).
    cfn: Vec<Rule>,
    /// SELF_ACCOUNT_ID (portfolio shares are served only for stacks in that account).
    self_account: Option<&'static str>,
    /// More engine settings (the deployment's selection).
    env: Vec<(&'static str, &'static str)>,
}

/// CloudFormation shows the launching stack's resource in `status`.
fn stack_resource(resource_type: &'static str, status: ResourceStatus) -> Rule {
    mock!(aws_sdk_cloudformation::Client::describe_stack_resource).then_output(move || {
        DescribeStackResourceOutput::builder()
            .stack_resource_detail(
                StackResourceDetail::builder()
                    .stack_id(STACK)
                    .logical_resource_id("Entitlement")
                    .resource_type(resource_type)
                    .resource_status(status.clone())
                    .last_updated_timestamp(aws_smithy_types::DateTime::from_secs(1_700_000_000))
                    .build(),
            )
            .build()
    })
}

fn org_rules() -> Vec<Rule> {
    vec![
        mock!(aws_sdk_organizations::Client::describe_organization).then_output(|| {
            DescribeOrganizationOutput::builder()
                .organization(
                    Organization::builder()
                        .id("o-abc1234567")
                        .arn(ORG_ARN)
                        .master_account_id(MGMT)
                        .build(),
                )
                .build()
        }),
        mock!(aws_sdk_organizations::Client::describe_account).then_output(|| {
            DescribeAccountOutput::builder()
                .account(
                    Account::builder()
                        .id(ACCOUNT)
                        .name("Workload")
                        .state(AccountState::Active)
                        .build(),
                )
                .build()
        }),
        mock!(aws_sdk_organizations::Client::list_parents).then_output(|| {
            ListParentsOutput::builder()
                .parents(
                    Parent::builder()
                        .id(OU)
                        .r#type(ParentType::OrganizationalUnit)
                        .build(),
                )
                .build()
        }),
        mock!(aws_sdk_organizations::Client::list_tags_for_resource)
            .then_output(|| ListTagsForResourceOutput::builder().build()),
    ]
}

fn slr_roles() -> Rule {
    let roles: Vec<Role> = [
        "license-manager.amazonaws.com",
        "license-manager.member-account.amazonaws.com",
        "license-management.marketplace.amazonaws.com",
    ]
    .iter()
    .map(|s| {
        Role::builder()
            .path(format!("/aws-service-role/{s}/"))
            .role_name(format!("AWSServiceRoleFor-{s}"))
            .role_id("AROAEXAMPLE")
            .arn(format!(
                "arn:aws:iam::{ACCOUNT}:role/aws-service-role/{s}/x"
            ))
            .create_date(aws_smithy_types::DateTime::from_secs(0))
            .build()
            .unwrap()
    })
    .collect();
    mock!(aws_sdk_iam::Client::list_roles).then_output(move || {
        ListRolesOutput::builder()
            .set_roles(Some(roles.clone()))
            .is_truncated(false)
            .build()
            .unwrap()
    })
}

fn assume_ok() -> Rule {
    mock!(aws_sdk_sts::Client::assume_role).then_output(|| {
        AssumeRoleOutput::builder()
            .credentials(
                aws_sdk_sts::types::Credentials::builder()
                    .access_key_id("ASIAEXAMPLE")
                    .secret_access_key("secret")
                    .session_token("token")
                    .expiration(aws_smithy_types::DateTime::from_secs(4_000_000_000))
                    .build()
                    .unwrap(),
            )
            .build()
    })
}

fn licenses(list: Vec<GrantedLicense>) -> Rule {
    mock!(aws_sdk_licensemanager::Client::list_received_licenses).then_output(move || {
        ListReceivedLicensesOutput::builder()
            .set_licenses(Some(list.clone()))
            .build()
    })
}

fn received(grants: Vec<Grant>) -> Rule {
    mock!(aws_sdk_licensemanager::Client::list_received_grants).then_output(move || {
        ListReceivedGrantsOutput::builder()
            .set_grants(Some(grants.clone()))
            .build()
    })
}

fn distributed(grants: Vec<Grant>) -> Rule {
    mock!(aws_sdk_licensemanager::Client::list_distributed_grants).then_output(move || {
        ListDistributedGrantsOutput::builder()
            .set_grants(Some(grants.clone()))
            .build()
    })
}

fn create_grant() -> Rule {
    mock!(aws_sdk_licensemanager::Client::create_grant).then_output(|| {
        CreateGrantOutput::builder()
            .grant_arn(NEW_GRANT)
            .status(GrantStatus::PendingAccept)
            .version("1")
            .build()
    })
}

fn accept() -> Rule {
    mock!(aws_sdk_licensemanager::Client::accept_grant).then_output(|| {
        AcceptGrantOutput::builder()
            .grant_arn(NEW_GRANT)
            .status(GrantStatus::Disabled)
            .version("1")
            .build()
    })
}

fn new_version(status: GrantStatus) -> Rule {
    mock!(aws_sdk_licensemanager::Client::create_grant_version).then_output(move || {
        CreateGrantVersionOutput::builder()
            .grant_arn(NEW_GRANT)
            .status(status.clone())
            .version("2")
            .build()
    })
}

/// (queue URL, body, delay seconds) of each SendMessage.
type Sent = Arc<Mutex<Vec<(String, String, i32)>>>;

fn sent_bodies() -> (Rule, Sent) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    let rule = mock!(aws_sdk_sqs::Client::send_message)
        .match_requests(move |req| {
            store.lock().unwrap().push((
                req.queue_url().unwrap_or_default().to_string(),
                req.message_body().unwrap_or_default().to_string(),
                req.delay_seconds().unwrap_or_default(),
            ));
            true
        })
        .then_output(|| SendMessageOutput::builder().message_id("m-1").build());
    (rule, seen)
}

impl World {
    fn healthy() -> Self {
        World {
            org: org_rules(),
            sts: vec![assume_ok()],
            iam: vec![slr_roles()],
            lm: vec![
                licenses(vec![held(LICENSE, SKU)]),
                distributed(vec![]),
                create_grant(),
            ],
            member_lm: vec![received(vec![]), accept(), new_version(GrantStatus::Active)],
            sqs: vec![],
            catalog: vec![],
            cfn: vec![stack_resource(
                "Custom::MarketplaceEntitlement",
                ResourceStatus::CreateInProgress,
            )],
            self_account: None,
            env: Vec::new(),
        }
    }

    fn app(&self, config: CatalogConfig) -> App {
        self.app_with_org(
            config,
            mock_client!(aws_sdk_organizations, RuleMode::MatchAny, &self.org),
        )
    }

    fn app_with_org(&self, config: CatalogConfig, org: aws_sdk_organizations::Client) -> App {
        let mut vars: HashMap<&str, &str> = HashMap::from([
            ("ASSUME_ROLE_BACKOFF_MS", "1"),
            ("RECHECK_DELAY_SECONDS", "300"),
        ]);
        if let Some(own) = self.self_account {
            vars.insert("SELF_ACCOUNT_ID", own);
        }
        vars.extend(self.env.iter().copied());
        let shared_config = Config::from_lookup_per_request(|k| vars.get(k).map(|v| v.to_string()))
            .expect("valid test configuration");
        let sqs = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, &self.sqs);
        // After an activation the engine looks at the grant (an ACTIVE answer is not taken at
        // its word): where a test did not say what the look shows, it shows ACTIVE, as the
        // activations in these tests answer.
        let mut lm_rules = self.lm.clone();
        lm_rules.push(
            mock!(aws_sdk_licensemanager::Client::get_grant).then_compute_output(|req| {
                let arn = req.grant_arn().unwrap_or_default().to_string();
                aws_sdk_licensemanager::operation::get_grant::GetGrantOutput::builder()
                    .grant(grant(&arn, GrantStatus::Active, "2"))
                    .build()
            }),
        );
        let clients = Clients {
            organizations: org,
            sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &self.sts),
            license_manager: mock_client!(aws_sdk_licensemanager, RuleMode::MatchAny, &lm_rules),
            sqs: sqs.clone(),
            dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[]),
            members: Arc::new(Fixed(MemberClients {
                iam: mock_client!(aws_sdk_iam, RuleMode::MatchAny, &self.iam),
                license_manager: mock_client!(
                    aws_sdk_licensemanager,
                    RuleMode::MatchAny,
                    &self.member_lm
                ),
            })),
        };
        let cfn = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, &self.cfn);
        App {
            stacks: StackReader {
                sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &self.sts),
                role_name: "AWSControlTowerExecution".into(),
                cloudformation: Arc::new(move |_, _| cfn.clone()),
            },
            engine: Engine::new(shared_config, clients),
            sqs,
            catalog: mock_client!(aws_sdk_servicecatalog, RuleMode::MatchAny, &self.catalog),
            config,
            responder: Responder::new(true),
        }
    }

    fn all_rules(&self) -> impl Iterator<Item = &Rule> {
        self.org
            .iter()
            .chain(&self.sts)
            .chain(&self.iam)
            .chain(&self.lm)
            .chain(&self.member_lm)
            .chain(&self.sqs)
            .chain(&self.catalog)
            .chain(&self.cfn)
    }

    fn total_calls(&self) -> usize {
        self.all_rules().map(Rule::num_calls).sum()
    }
}

fn config() -> CatalogConfig {
    CatalogConfig {
        pending_response: PendingResponse::Failed,
        wait_for_active: Duration::from_secs(30),
        poll_interval: Duration::from_millis(100),
        safety_margin: Duration::from_millis(500),
        allow_local_response_url: true,
        licenses: LaunchLicenses::Any,
        share_portfolios: vec!["port-abcdefghijklm".into(), "port-a1".into()],
        ..CatalogConfig::default()
    }
}

fn in_seconds(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

fn request(kind: &str, url: &str, properties: Value) -> Value {
    let mut r = json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:111111111111:function:catalog-provisioning",
        "ResponseURL": url,
        "StackId": STACK,
        "RequestId": format!("req-{}", kind.to_lowercase()),
        "ResourceType": "Custom::MarketplaceEntitlement",
        "LogicalResourceId": "Entitlement",
        "ResourceProperties": properties,
    });
    if kind != "Create" {
        r["PhysicalResourceId"] = json!(GRANT);
    }
    if kind == "Update" {
        r["OldResourceProperties"] = json!({"ProductSku": SKU});
    }
    r
}

fn props_arn() -> Value {
    json!({"ServiceToken": "arn:aws:lambda:us-east-1:111111111111:function:catalog-provisioning", "LicenseArn": LICENSE})
}

fn expected(
    status: &str,
    reason: &str,
    physical: &str,
    request_id: &str,
    data: Option<[&str; 5]>,
) -> String {
    let data = data
        .map(|[entitlement, grant, grant_status, license, sku]| {
            format!(
                r#","Data":{{"EntitlementStatus":"{entitlement}","GrantArn":"{grant}","GrantStatus":"{grant_status}","LicenseArn":"{license}","ProductSku":"{sku}"}}"#
            )
        })
        .unwrap_or_default();
    format!(
        r#"{{"Status":"{status}","Reason":"{reason}","PhysicalResourceId":"{physical}","StackId":"{STACK}","RequestId":"{request_id}","LogicalResourceId":"Entitlement"{data}}}"#
    )
}

// ---------- tests ----------

/// Whatever names where to answer is answered: no RequestType, an unknown one, properties
/// nested beyond serde_json's depth limit (directly and through the topic). No AWS call.
#[tokio::test]
async fn requests_that_cannot_be_read_are_still_answered_failed() {
    let world = World::healthy();
    let app = world.app(config());
    let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    type MakeRequest = Box<dyn Fn(&str) -> String>;
    let cases: Vec<(&str, MakeRequest, &str)> = vec![
        (
            "no RequestType",
            Box::new(|url: &str| {
                let mut r = request("Create", url, props_arn());
                r.as_object_mut().unwrap().remove("RequestType");
                r.to_string()
            }),
            "RequestType must be \"Create\", \"Update\" or \"Delete\", missing",
        ),
        (
            "an unknown RequestType",
            Box::new(|url: &str| request("Frobnicate", url, props_arn()).to_string()),
            "RequestType must be",
        ),
        (
            "properties nested 300 deep",
            Box::new(move |url: &str| {
                request("Create", url, json!({"LicenseArn": "__DEEP__"}))
                    .to_string()
                    .replace("\"__DEEP__\"", &deep)
            }),
            "the request could not be read (\"ResourceProperties\": recursion limit exceeded",
        ),
    ];
    for (what, make, reason) in &cases {
        for via_topic in [false, true] {
            let rx = Receiver::start(vec![]).await;
            let text = make(&rx.url);
            let payload = if via_topic {
                json!({"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "m-1", "Message": text}}]})
            } else {
                // As the runtime hands it over: read raw, then leniently.
                assert!(
                    *what != "properties nested 300 deep"
                        || serde_json::from_str::<Value>(&text).is_err(),
                    "the plain parser refuses it"
                );
                catalog_provisioning::request::read_request(&text).unwrap()
            };
            let out = handle(&app, payload, in_seconds(10)).await.unwrap();
            assert_eq!(
                out["responses"][0]["status"], "FAILED",
                "{what} (topic: {via_topic}): {out}"
            );
            let body: Value = serde_json::from_str(&rx.only().body).unwrap();
            let said = body["Reason"].as_str().unwrap();
            assert!(said.contains(reason), "{what} (topic: {via_topic}): {said}");
        }
    }
    assert_eq!(world.total_calls(), 0, "nothing was called");
}

/// What a launch may ask for: CATALOG_LICENSES, and (apply) the account-level selection rules.
/// Each refusal is answered FAILED with no write and no member-account call.
#[tokio::test]
async fn launches_are_bounded_by_the_allow_list_and_the_selection_rules() {
    let other_sku =
        LaunchLicenses::Listed(vec![shared::config::LicenseRef::Sku("prod-other".into())]);
    let own_sku = LaunchLicenses::Listed(vec![shared::config::LicenseRef::Sku(SKU.into())]);
    // (what, CATALOG_LICENSES, apply selection rules, engine settings, refusal expected in the reason)
    type Case<'a> = (
        &'a str,
        LaunchLicenses,
        bool,
        Vec<(&'a str, &'a str)>,
        Option<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "license not on the allow-list",
            other_sku,
            true,
            vec![],
            Some("is not in CATALOG_LICENSES"),
        ),
        (
            "on the allow-list by SKU (request names the ARN)",
            own_sku.clone(),
            true,
            vec![],
            None,
        ),
        (
            "account outside TARGET_OUS",
            own_sku.clone(),
            true,
            vec![("TARGET_OUS", "ou-zz99-zzzzzzzz")],
            Some("is outside the selection"),
        ),
        (
            "TARGET_OUS ignored",
            own_sku.clone(),
            false,
            vec![("TARGET_OUS", "ou-zz99-zzzzzzzz")],
            None,
        ),
        (
            "account lacks the tag filter",
            LaunchLicenses::Any,
            true,
            vec![("ACCOUNT_TAG_FILTER", "entitle=yes")],
            Some("is outside the selection"),
        ),
        (
            "empty list: the deployment's selection names another SKU",
            LaunchLicenses::Selection,
            true,
            vec![("PRODUCT_SKUS", "prod-other")],
            Some("is not in the deployment's license selection"),
        ),
        (
            "empty list: the deployment's selection names it",
            LaunchLicenses::Selection,
            true,
            vec![("PRODUCT_SKUS", SKU)],
            None,
        ),
        (
            "empty list, rules ignored: the global selection decides",
            LaunchLicenses::Selection,
            false,
            vec![("PRODUCT_SKUS", "prod-other")],
            Some("is not in the deployment's license selection"),
        ),
        (
            "empty list and no selection at all",
            LaunchLicenses::Selection,
            true,
            vec![],
            Some("is not in the deployment's license selection"),
        ),
        (
            "empty list: an OU rule for the account's OU decides",
            LaunchLicenses::Selection,
            true,
            vec![
                ("PRODUCT_SKUS", SKU),
                (
                    "OU_LICENSE_RULES",
                    r#"{"ou-ab12-cdef3456": ["prod-other"]}"#,
                ),
            ],
            Some("is not selected for account"),
        ),
    ];
    for (what, licenses, apply, env, refusal) in cases {
        let mut world = World::healthy();
        world.env = env;
        let rx = Receiver::start(vec![]).await;
        let app = world.app(CatalogConfig {
            licenses,
            apply_selection_rules: apply,
            ..config()
        });
        handle(
            &app,
            request("Create", &rx.url, props_arn()),
            in_seconds(10),
        )
        .await
        .unwrap();
        let body: Value = serde_json::from_str(&rx.only().body).unwrap();
        let reason = body["Reason"].as_str().unwrap();
        match refusal {
            Some(expected) => {
                assert_eq!(body["Status"], "FAILED", "{what}: {body}");
                assert!(reason.contains(expected), "{what}: {reason}");
                assert!(reason.ends_with("nothing was done"), "{what}: {reason}");
                let written = world.lm[2].num_calls()
                    + world.sts.iter().map(Rule::num_calls).sum::<usize>()
                    + world.member_lm.iter().map(Rule::num_calls).sum::<usize>();
                assert_eq!(written, 0, "{what}: no grant, no member-account call");
            }
            None => {
                assert_eq!(body["Status"], "SUCCESS", "{what}: {body}");
                assert_eq!(world.lm[2].num_calls(), 1, "{what}: the grant was made");
            }
        }
    }
}

#[tokio::test]
async fn create_entitles_the_launching_account_and_answers_success() {
    let world = World::healthy();
    let rx = Receiver::start(vec![]).await;
    let app = world.app(config());
    let out = handle(
        &app,
        request("Create", &rx.url, props_arn()),
        in_seconds(10),
    )
    .await
    .unwrap();

    let put = rx.only();
    assert_eq!(put.method, "PUT");
    assert_eq!(put.path, "/cfn-response/req");
    assert_eq!(
        put.headers.get("content-type").map(String::as_str),
        Some("")
    );
    assert_eq!(
        put.body,
        expected(
            "SUCCESS",
            &format!("account {ACCOUNT} is entitled: grant {NEW_GRANT} is ACTIVE"),
            NEW_GRANT,
            "req-create",
            Some(["ACTIVE", NEW_GRANT, "ACTIVE", LICENSE, SKU]),
        )
    );
    assert_eq!(world.lm[2].num_calls(), 1, "one CreateGrant");
    assert_eq!(world.member_lm[1].num_calls(), 1, "one AcceptGrant");
    assert_eq!(world.member_lm[2].num_calls(), 1, "one activation");
    assert_eq!(
        out,
        json!({"viaSns": false, "responses": [{"requestId": "req-create", "logicalResourceId": "Entitlement", "status": "SUCCESS", "physicalResourceId": NEW_GRANT}]})
    );
}

#[tokio::test]
async fn create_by_sku_resolves_the_single_matching_license() {
    let mut world = World::healthy();
    world.lm[0] = licenses(vec![
        held(LICENSE, SKU),
        held(
            "arn:aws:license-manager::294406891311:license:l-ffffffffffffffffffffffffffffffff",
            "other-sku",
        ),
    ]);
    let rx = Receiver::start(vec![]).await;
    let app = world.app(config());
    handle(
        &app,
        request("Create", &rx.url, json!({"ProductSku": SKU})),
        in_seconds(10),
    )
    .await
    .unwrap();
    assert_eq!(
        rx.only().body,
        expected(
            "SUCCESS",
            &format!("account {ACCOUNT} is entitled: grant {NEW_GRANT} is ACTIVE"),
            NEW_GRANT,
            "req-create",
            Some(["ACTIVE", NEW_GRANT, "ACTIVE", LICENSE, SKU]),
        )
    );
}

#[tokio::test]
async fn ambiguous_sku_fails_before_any_grant_is_made() {
    let mut world = World::healthy();
    let second = "arn:aws:license-manager::294406891311:license:l-ffffffffffffffffffffffffffffffff";
    world.lm[0] = licenses(vec![held(LICENSE, SKU), held(second, SKU)]);
    let rx = Receiver::start(vec![]).await;
    let app = world.app(config());
    handle(
        &app,
        request("Create", &rx.url, json!({"ProductSku": SKU})),
        in_seconds(10),
    )
    .await
    .unwrap();
    assert_eq!(
        rx.only().body,
        expected(
            "FAILED",
            &format!("Configuration (permanent): configuration error: ProductSku {SKU} matches 2 licenses ({LICENSE}, {second}); set LicenseArn to choose one"),
            "not-entitled-req-create",
            "req-create",
            None,
        )
    );
    assert_eq!(world.total_calls(), 1, "only ListReceivedLicenses");
}

#[tokio::test]
async fn update_with_an_active_grant_makes_no_write() {
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![grant(GRANT, GrantStatus::Active, "3")]);
    let rx = Receiver::start(vec![]).await;
    let app = world.app(config());
    handle(
        &app,
        request("Update", &rx.url, props_arn()),
        in_seconds(10),
    )
    .await
    .unwrap();
    assert_eq!(
        rx.only().body,
        expected(
            "SUCCESS",
            &format!("account {ACCOUNT} is entitled: grant {GRANT} is ACTIVE"),
            GRANT,
            "req-update",
            Some(["ACTIVE", GRANT, "ACTIVE", LICENSE, SKU]),
        )
    );
    assert_eq!(world.lm[2].num_calls(), 0, "no CreateGrant");
    assert_eq!(world.member_lm[2].num_calls(), 0, "no activation");
}

#[tokio::test]
async fn delete_deactivates_only_when_asked() {
    // DeactivateOnDelete false (the default): nothing is called.
    let world = World::healthy();
    let rx = Receiver::start(vec![]).await;
    let app = world.app(config());
    handle(
        &app,
        request("Delete", &rx.url, props_arn()),
        in_seconds(10),
    )
    .await
    .unwrap();
    assert_eq!(
        rx.only().body,
        expected(
            "SUCCESS",
            "grant left in place (DeactivateOnDelete is false)",
            GRANT,
            "req-delete",
            None
        )
    );
    assert_eq!(world.total_calls(), 0);

    // DeactivateOnDelete true: the grantor deactivates the account's grant.
    let mut world = World::healthy();
    world.lm[1] = distributed(vec![grant(GRANT, GrantStatus::Active, "3")]);
    let versions = Arc::new(Mutex::new(Vec::new()));
    let seen = versions.clone();
    world.lm.push(
        mock!(aws_sdk_licensemanager::Client::create_grant_version)
            .match_requests(move |req| {
                seen.lock().unwrap().push((
                    req.grant_arn().unwrap_or_default().to_string(),
                    req.status().map(|s| s.as_str().to_string()),
                    req.source_version().unwrap_or_default().to_string(),
                ));
                true
            })
            .then_output(|| {
                CreateGrantVersionOutput::builder()
                    .grant_arn(GRANT)
                    .status(GrantStatus::Disabled)
                    .version("4")
                    .build()
            }),
    );
    let rx = Receiver::start(vec![]).await;
    let app = world.app(config());
    let mut props = props_arn();
    props["DeactivateOnDelete"] = json!("true");
    handle(&app, request("Delete", &rx.url, props), in_seconds(10))
        .await
        .unwrap();
    assert_eq!(
        rx.only().body,
        expected(
            "SUCCESS",
            &format!("deactivated {GRANT}"),
            GRANT,
            "req-delete",
            None
        )
    );
    assert_eq!(
        *versions.lock().unwrap(),
        vec![(
            GRANT.to_string(),
            Some("DISABLED".to_string()),
            "3".to_string()
        )]
    );
}

#[tokio::test]
async fn delete_of_a_failed_create_is_a_no_op() {
    let world = World::healthy();
    let rx = Receiver::start(vec![]).await;
    let app = world.app(config());
    let mut req = request(
        "Delete",
        &rx.url,
        json!({"LicenseArn": LICENSE, "DeactivateOnDelete": true}),
    );
    req["PhysicalResourceId"] = json!("not-entitled-req-create");
    handle(&app, req, in_seconds(10)).await.unwrap();
    assert_eq!(
        rx.only().body,
        expected(
            "SUCCESS",
            "no grant was made for this resource; nothing to deactivate",
            "not-entitled-req-create",
            "req-delete",
            None
        )
    );
    assert_eq!(world.total_calls(), 0);
}

#[tokio::test]
async fn sns_wrapped_request_is_answered_the_same_way() {
    let world = World::healthy();
    let rx = Receiver::start(vec![]).await;
    let app = world.app(config());
    let inner = request("Create", &rx.url, props_arn());
    let event = json!({"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:111111111111:ct-entitlements-catalog:3f1c9a7e-0000-4000-8000-000000000001",
        "Sns": {
            "Type": "Notification",
            "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
            "TopicArn": "arn:aws:sns:us-east-1:111111111111:ct-entitlements-catalog",
            "Subject": "AWS CloudFormation custom resource request",
            "Message": inner.to_string(),
            "Timestamp": "2024-05-01T12:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
            "MessageAttributes": {}
        }
    }]});
    let out = handle(&app, event, in_seconds(10)).await.unwrap();
    assert_eq!(
        rx.only().body,
        expected(
            "SUCCESS",
            &format!("account {ACCOUNT} is entitled: grant {NEW_GRANT} is ACTIVE"),
            NEW_GRANT,
            "req-create",
            Some(["ACTIVE", NEW_GRANT, "ACTIVE", LICENSE, SKU]),
        )
    );
    assert_eq!(out["viaSns"], json!(true));
}

#[tokio::test]
async fn bad_properties_fail_without_any_aws_call() {
    let world = World::healthy();
    let rx = Receiver::start(vec![]).await;
    let app = world.app(config());
    handle(
        &app,
        request(
            "Create",
            &rx.url,
            json!({"LicenseArn": LICENSE, "ProductSku": SKU}),
        ),
        in_seconds(10),
    )
    .await
    .unwrap();
    assert_eq!(
        rx.only().body,
        expected(
            "FAILED",
            "InvalidInput (permanent): invalid input: give exactly one of LicenseArn and ProductSku, not both",
            "not-entitled-req-create",
            "req-create",
            None
        )
    );

    // Another account than the launching one, without ALLOW_ACCOUNT_ID_OVERRIDE.
    let rx = Receiver::start(vec![]).await;
    handle(
        &app,
        request(
            "Update",
            &rx.url,
            json!({"LicenseArn": LICENSE, "AccountId": "123456789012"}),
        ),
        in_seconds(10),
    )
    .await
    .unwrap();
    assert_eq!(
        rx.only().body,
        expected(
            "FAILED",
            &format!("InvalidInput (permanent): invalid input: AccountId 123456789012 is not the account launching the stack ({ACCOUNT}); set ALLOW_ACCOUNT_ID_OVERRIDE=true to allow entitling other accounts"),
            GRANT,
            "req-update",
            None
        )
    );

    // An unknown request type is still answered.
    let rx = Receiver::start(vec![]).await;
    let mut odd = request("Create", &rx.url, props_arn());
    odd["RequestType"] = json!("Replace");
    handle(&app, odd, in_seconds(10)).await.unwrap();
    let body: Value = serde_json::from_str(&rx.only().body).unwrap();
    assert_eq!(body["Status"], "FAILED");
    assert!(body["Reason"]
        .as_str()
        .unwrap()
        .starts_with("InvalidInput (permanent): invalid input: RequestType must be \"Create\", \"Update\" or \"Delete\", got \"Replace\""));
    assert_eq!(world.total_calls(), 0);
}

#[tokio::test]
async fn unusable_response_url_is_never_contacted() {
    let world = World::healthy();
    let app = world.app(config());
    // Not loopback, not S3: rejected before any work or network call.
    let req = request("Create", "http://10.1.2.3:8080/cfn", props_arn());
    let err = handle(&app, req, in_seconds(10)).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidInput");
    assert!(err.to_string().contains("ResponseURL"), "{err}");
    let mut no_url = request("Create", "", props_arn());
    no_url.as_object_mut().unwrap().remove("ResponseURL");
    assert_eq!(
        handle(&app, no_url, in_seconds(10))
            .await
            .unwrap_err()
            .kind(),
        "InvalidInput"
    );
    assert_eq!(world.total_calls(), 0);
}

#[tokio::test]
async fn a_panic_is_answered_failed() {
    let mut world = World::healthy();
    world.org[0] = mock!(aws_sdk_organizations::Client::describe_organization)
        .then_output(|| -> DescribeOrganizationOutput { panic!("mock exploded") });
    let rx = Receiver::start(vec![]).await;
    let app = world.app(config());
    handle(
        &app,
        request("Create", &rx.url, props_arn()),
        in_seconds(10),
    )
    .await
    .unwrap();
    assert_eq!(
        rx.only().body,
        expected(
            "FAILED",
            "internal error (the function panicked: mock exploded); see the function's logs for request req-create",
            "not-entitled-req-create",
            "req-create",
            None
        )
    );
}

// The clock is tokio's paused one (the handler's deadlines are `tokio::time::Instant`s): time
// moves only when every task waits on a timer, so `elapsed` is the handler's own schedule of
// polls and deadlines, not the speed of the machine, and the test waits no real seconds.
#[tokio::test(start_paused = true)]
async fn grant_still_in_workflow_at_the_deadline_is_answered_failed() {
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![grant(GRANT, GrantStatus::PendingWorkflow, "1")]);
    let rx = Receiver::start(vec![]).await;
    let config = config();
    let (margin, poll) = (config.safety_margin, config.poll_interval);
    let app = world.app(config);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(1500);
    // 1.5 s to the Lambda deadline, 0.5 s margin: the answer goes out at the last poll before
    // the work deadline (1 s), not earlier and not in the margin.
    handle(&app, request("Create", &rx.url, props_arn()), deadline)
        .await
        .unwrap();
    let answered = started.elapsed();
    let work_deadline = deadline - margin - started;
    assert!(answered <= work_deadline, "{answered:?}");
    assert!(answered + poll >= work_deadline, "{answered:?}");
    assert_eq!(
        rx.only().body,
        expected(
            "FAILED",
            &format!("grant {GRANT} for {LICENSE} in account {ACCOUNT} is still PENDING_WORKFLOW (License Manager's workflow has not finished); launch again later (the same grant is reused), or set PENDING_GRANT_RESPONSE=WAIT to answer once it is ACTIVE"),
            GRANT,
            "req-create",
            Some(["PENDING", GRANT, "PENDING_WORKFLOW", LICENSE, SKU]),
        )
    );
    assert!(
        world.member_lm[0].num_calls() >= 5,
        "re-checked while time remained: {}",
        world.member_lm[0].num_calls()
    );
}

#[tokio::test]
async fn grant_still_in_workflow_can_be_answered_success_with_a_recheck() {
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![grant(GRANT, GrantStatus::PendingWorkflow, "1")]);
    let (send, sent) = sent_bodies();
    world.sqs.push(send);
    let rx = Receiver::start(vec![]).await;
    let app = world.app(CatalogConfig {
        pending_response: PendingResponse::Success,
        recheck_queue_url: Some(RECHECK_QUEUE.into()),
        wait_for_active: Duration::from_millis(250),
        ..config()
    });
    handle(
        &app,
        request("Create", &rx.url, props_arn()),
        in_seconds(10),
    )
    .await
    .unwrap();
    assert_eq!(
        rx.only().body,
        expected(
            "SUCCESS",
            &format!("grant {GRANT} for {LICENSE} in account {ACCOUNT} is still PENDING_WORKFLOW (License Manager's workflow has not finished); a re-check in 300s finishes activating it"),
            GRANT,
            "req-create",
            Some(["PENDING", GRANT, "PENDING_WORKFLOW", LICENSE, SKU]),
        )
    );
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let (queue, body, delay) = &sent[0];
    assert_eq!((queue.as_str(), *delay), (RECHECK_QUEUE, 300));
    let mut body: Value = serde_json::from_str(body).unwrap();
    assert!(body["firstSeen"].as_u64().unwrap() > 1_700_000_000);
    body.as_object_mut().unwrap().remove("firstSeen");
    assert_eq!(
        body,
        json!({"accountId": ACCOUNT, "licenseArn": LICENSE, "attempt": 0})
    );
}

// Paused tokio clock, as in `grant_still_in_workflow_at_the_deadline_is_answered_failed`.
#[tokio::test(start_paused = true)]
async fn aws_calls_that_hang_are_cut_off_and_answered_before_the_deadline() {
    let world = World::healthy();
    // An "Organizations endpoint" that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let org = aws_sdk_organizations::Client::from_conf(
        aws_sdk_organizations::Config::builder()
            .behavior_version(aws_sdk_organizations::config::BehaviorVersion::latest())
            .region(aws_sdk_organizations::config::Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
            .endpoint_url(endpoint)
            .build(),
    );
    let rx = Receiver::start(vec![]).await;
    let app = world.app_with_org(config(), org);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(1500);
    handle(&app, request("Create", &rx.url, props_arn()), deadline)
        .await
        .unwrap();
    // Paused clock: the hung call is cut off at the work deadline (the Lambda deadline less
    // the safety margin), so the answer is in before the Lambda deadline.
    let answered = Instant::now();
    assert!(answered < deadline, "{:?}", answered - started);
    assert!(
        answered >= deadline - config().safety_margin,
        "{:?}",
        answered - started
    );
    assert_eq!(
        rx.only().body,
        expected(
            "FAILED",
            "the request did not finish before the Lambda deadline (AWS calls did not answer in time)",
            "not-entitled-req-create",
            "req-create",
            None
        )
    );
}

#[tokio::test]
async fn a_failing_receiver_is_retried_then_reported() {
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![grant(GRANT, GrantStatus::Active, "3")]);
    // First PUT answered 500, the second 200.
    let rx = Receiver::start(vec![500]).await;
    let app = world.app(config());
    handle(
        &app,
        request("Create", &rx.url, props_arn()),
        in_seconds(10),
    )
    .await
    .unwrap();
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1]);

    // 403 (an expired URL) is not retried, and the invocation fails so Lambda retries it.
    let rx = Receiver::start(vec![403]).await;
    let err = handle(
        &app,
        request("Create", &rx.url, props_arn()),
        in_seconds(10),
    )
    .await
    .unwrap_err();
    assert_eq!(rx.bodies().len(), 1);
    assert_eq!(
        err.to_string(),
        "cloudformation:PutResponse failed: ResponseRejected: PUT to the ResponseURL failed after 1 attempt(s): HTTP 403"
    );

    // Nobody listening at the ResponseURL: three attempts, then a retryable failure (Lambda's
    // retry or the DLQ keeps the request), never a hang.
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let err = handle(
        &app,
        request(
            "Create",
            &format!("http://127.0.0.1:{closed}/r"),
            props_arn(),
        ),
        in_seconds(10),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("PUT to the ResponseURL failed after 3 attempt(s)"),
        "{err}"
    );
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn rechecks_finish_activation_or_queue_again() {
    // Now DISABLED: activated, the message is done.
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![grant(GRANT, GrantStatus::Disabled, "2")]);
    let (send, sent) = sent_bodies();
    world.sqs.push(send);
    let app = world.app(CatalogConfig {
        pending_response: PendingResponse::Success,
        recheck_queue_url: Some(RECHECK_QUEUE.into()),
        ..config()
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = json!({"accountId": ACCOUNT, "licenseArn": LICENSE, "firstSeen": now, "attempt": 0})
        .to_string();
    let batch = json!({"Records": [
        {"eventSource": "aws:sqs", "messageId": "m-1", "body": body},
        {"eventSource": "aws:sqs", "messageId": "m-bad", "body": "{\"accountId\":\"1\"}"}
    ]});
    let out = handle(&app, batch, in_seconds(10)).await.unwrap();
    assert_eq!(
        out,
        json!({"batchItemFailures": [{"itemIdentifier": "m-bad"}]})
    );
    assert_eq!(world.member_lm[2].num_calls(), 1, "activated");
    assert!(sent.lock().unwrap().is_empty());

    // Still in workflow: queued again with the next attempt number.
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![grant(GRANT, GrantStatus::PendingWorkflow, "1")]);
    let (send, sent) = sent_bodies();
    world.sqs.push(send);
    let app = world.app(CatalogConfig {
        pending_response: PendingResponse::Success,
        recheck_queue_url: Some(RECHECK_QUEUE.into()),
        ..config()
    });
    let batch = json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m-2", "body": body}]});
    let out = handle(&app, batch, in_seconds(10)).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0.as_str(), sent[0].2), (RECHECK_QUEUE, 300));
    assert_eq!(
        serde_json::from_str::<Value>(&sent[0].1).unwrap(),
        json!({"accountId": ACCOUNT, "licenseArn": LICENSE, "firstSeen": now, "attempt": 1})
    );
}

// ---------- Custom::MarketplacePortfolioShare ----------

const PORTFOLIO: &str = "port-abcdefghijklm";

/// (portfolio, account id, organization node type, value) of each share call.
type Shares = Arc<Mutex<Vec<(String, String, String, String)>>>;

fn share_rules() -> (Vec<Rule>, Shares, Shares) {
    use aws_sdk_servicecatalog::operation::create_portfolio_share::CreatePortfolioShareOutput;
    use aws_sdk_servicecatalog::operation::delete_portfolio_share::DeletePortfolioShareOutput;
    use aws_sdk_servicecatalog::operation::describe_portfolio_share_status::DescribePortfolioShareStatusOutput;
    use aws_sdk_servicecatalog::types::ShareStatus;
    let created: Shares = Arc::new(Mutex::new(Vec::new()));
    let deleted: Shares = Arc::new(Mutex::new(Vec::new()));
    let (c, d) = (created.clone(), deleted.clone());
    let rules = vec![
        mock!(aws_sdk_servicecatalog::Client::create_portfolio_share)
            .match_requests(move |req| {
                let node = req.organization_node();
                c.lock().unwrap().push((
                    req.portfolio_id().unwrap_or_default().to_string(),
                    req.account_id().unwrap_or_default().to_string(),
                    node.and_then(|n| n.r#type())
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    node.and_then(|n| n.value()).unwrap_or_default().to_string(),
                ));
                true
            })
            .then_compute_output(|req| {
                let out = CreatePortfolioShareOutput::builder();
                match req.organization_node() {
                    Some(_) => out.portfolio_share_token("share-token-1").build(),
                    None => out.build(),
                }
            }),
        mock!(aws_sdk_servicecatalog::Client::delete_portfolio_share)
            .match_requests(move |req| {
                let node = req.organization_node();
                d.lock().unwrap().push((
                    req.portfolio_id().unwrap_or_default().to_string(),
                    req.account_id().unwrap_or_default().to_string(),
                    node.and_then(|n| n.r#type())
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    node.and_then(|n| n.value()).unwrap_or_default().to_string(),
                ));
                true
            })
            .then_output(|| DeletePortfolioShareOutput::builder().build()),
        mock!(aws_sdk_servicecatalog::Client::describe_portfolio_share_status)
            .match_requests(|req| req.portfolio_share_token() == Some("share-token-1"))
            .sequence()
            .output(|| {
                DescribePortfolioShareStatusOutput::builder()
                    .status(ShareStatus::InProgress)
                    .build()
            })
            .output(|| {
                DescribePortfolioShareStatusOutput::builder()
                    .status(ShareStatus::Completed)
                    .build()
            })
            .repeatedly()
            .build(),
    ];
    (rules, created, deleted)
}

fn share_request(kind: &str, url: &str, share_with: Value) -> Value {
    let mut r = request(
        kind,
        url,
        json!({"ServiceToken": "arn:aws:lambda:us-east-1:111111111111:function:catalog-provisioning", "PortfolioId": PORTFOLIO, "ShareWith": share_with}),
    );
    r["ResourceType"] = json!("Custom::MarketplacePortfolioShare");
    r["LogicalResourceId"] = json!("Entitlement");
    if kind != "Create" {
        r["PhysicalResourceId"] = json!(format!("portfolio-share:{PORTFOLIO}"));
    }
    r
}

fn share_body(
    status: &str,
    reason: &str,
    physical: &str,
    request_id: &str,
    share_status: Option<&str>,
) -> String {
    let data = share_status
        .map(|s| format!(r#","Data":{{"PortfolioId":"{PORTFOLIO}","ShareStatus":"{s}"}}"#))
        .unwrap_or_default();
    format!(
        r#"{{"Status":"{status}","Reason":"{reason}","PhysicalResourceId":"{physical}","StackId":"{STACK}","RequestId":"{request_id}","LogicalResourceId":"Entitlement"{data}}}"#
    )
}

#[tokio::test]
async fn portfolio_is_shared_with_the_organization_and_ous() {
    let mut world = World::healthy();
    let (rules, created, _) = share_rules();
    world.catalog = rules;
    world.self_account = Some(ACCOUNT);
    let rx = Receiver::start(vec![]).await;
    let app = world.app(config());
    handle(
        &app,
        share_request(
            "Create",
            &rx.url,
            json!(["ou-ab12-cdef3456", "o-abc1234567"]),
        ),
        in_seconds(10),
    )
    .await
    .unwrap();
    assert_eq!(
        rx.only().body,
        share_body(
            "SUCCESS",
            &format!("{PORTFOLIO} is shared with o-abc1234567, ou-ab12-cdef3456"),
            &format!("portfolio-share:{PORTFOLIO}"),
            "req-create",
            Some("COMPLETED")
        )
    );
    assert_eq!(
        *created.lock().unwrap(),
        vec![
            (
                PORTFOLIO.into(),
                String::new(),
                "ORGANIZATION".into(),
                "o-abc1234567".into()
            ),
            (
                PORTFOLIO.into(),
                String::new(),
                "ORGANIZATIONAL_UNIT".into(),
                "ou-ab12-cdef3456".into()
            ),
        ]
    );
    assert_eq!(
        world.catalog[2].num_calls(),
        3,
        "followed both shares to COMPLETED"
    );
    let engine_calls: usize = world.org.iter().chain(&world.lm).map(Rule::num_calls).sum();
    assert_eq!(engine_calls, 0, "no License Manager or Organizations call");
}

#[tokio::test]
async fn portfolio_share_update_and_delete_touch_only_what_changed() {
    let mut world = World::healthy();
    let (rules, created, deleted) = share_rules();
    world.catalog = rules;
    world.self_account = Some(ACCOUNT);
    let rx = Receiver::start(vec![]).await;
    let app = world.app(config());
    let mut update = share_request("Update", &rx.url, json!(["o-abc1234567", "210987654321"]));
    update["OldResourceProperties"] =
        json!({"PortfolioId": PORTFOLIO, "ShareWith": ["o-abc1234567", "ou-ab12-cdef3456"]});
    handle(&app, update, in_seconds(10)).await.unwrap();
    assert_eq!(
        rx.only().body,
        share_body(
            "SUCCESS",
            &format!("{PORTFOLIO} is shared with o-abc1234567, {ACCOUNT}"),
            &format!("portfolio-share:{PORTFOLIO}"),
            "req-update",
            Some("COMPLETED")
        )
    );
    assert_eq!(
        *created.lock().unwrap(),
        vec![(
            PORTFOLIO.into(),
            ACCOUNT.into(),
            String::new(),
            String::new()
        )]
    );
    assert_eq!(
        *deleted.lock().unwrap(),
        vec![(
            PORTFOLIO.into(),
            String::new(),
            "ORGANIZATIONAL_UNIT".into(),
            "ou-ab12-cdef3456".into()
        )]
    );

    let rx = Receiver::start(vec![]).await;
    deleted.lock().unwrap().clear();
    handle(
        &app,
        share_request("Delete", &rx.url, json!(["o-abc1234567"])),
        in_seconds(10),
    )
    .await
    .unwrap();
    assert_eq!(
        rx.only().body,
        share_body(
            "SUCCESS",
            &format!("stopped sharing {PORTFOLIO} with o-abc1234567"),
            &format!("portfolio-share:{PORTFOLIO}"),
            "req-delete",
            None
        )
    );
    assert_eq!(
        *deleted.lock().unwrap(),
        vec![(
            PORTFOLIO.into(),
            String::new(),
            "ORGANIZATION".into(),
            "o-abc1234567".into()
        )]
    );
}

// ---------- the shipped events ----------

/// Points a shipped request (or the request inside a shipped SNS record) at `url`.
fn with_response_url(mut event: Value, url: &str) -> Value {
    if let Some(records) = event.get_mut("Records").and_then(Value::as_array_mut) {
        for record in records {
            if let Some(message) = record.pointer_mut("/Sns/Message") {
                let mut inner: Value = serde_json::from_str(message.as_str().unwrap()).unwrap();
                inner["ResponseURL"] = json!(url);
                *message = json!(inner.to_string());
            }
        }
    } else {
        event["ResponseURL"] = json!(url);
    }
    event
}

#[tokio::test]
async fn every_shipped_catalog_event_is_answered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("catalog-") {
            continue;
        }
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut world = World::healthy();
        let (rules, _, _) = share_rules();
        world.catalog = rules;
        // The sample share request's stack is in the deployment account (123456789012); the
        // launches' stacks are in a member account, so CloudFormation there confirms them.
        world.self_account = Some("123456789012");
        let request = event
            .pointer("/Records/0/Sns/Message")
            .and_then(Value::as_str)
            .map(|m| serde_json::from_str::<Value>(m).unwrap())
            .unwrap_or_else(|| event.clone());
        let status = match request["RequestType"].as_str() {
            Some("Update") => ResourceStatus::UpdateInProgress,
            Some("Delete") => ResourceStatus::DeleteInProgress,
            _ => ResourceStatus::CreateInProgress,
        };
        world.cfn = vec![stack_resource("Custom::MarketplaceEntitlement", status)];
        let app = world.app(config());
        if name == "catalog-recheck-sqs.json" {
            let typed: aws_lambda_events::event::sqs::SqsEvent =
                serde_json::from_value(event.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(typed.records.len(), 1);
            let out = handle(&app, event, in_seconds(10)).await.unwrap();
            assert_eq!(out, json!({"batchItemFailures": []}), "{name}");
            assert_eq!(world.member_lm[2].num_calls(), 1, "{name}: activated");
        } else {
            // The real ResponseURL is a valid pre-signed S3 URL; the test answers locally.
            let url = event
                .get("ResponseURL")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(url) = url {
                assert!(
                    shared::custom_resource::validate_response_url(&url, false).is_ok(),
                    "{name}"
                );
            }
            let rx = Receiver::start(vec![]).await;
            handle(&app, with_response_url(event, &rx.url), in_seconds(10))
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let body: Value = serde_json::from_str(&rx.only().body).unwrap();
            assert_eq!(body["Status"], "SUCCESS", "{name}: {body}");
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "catalog-create.json",
            "catalog-delete.json",
            "catalog-portfolio-share-create.json",
            "catalog-recheck-sqs.json",
            "catalog-sns-create.json",
            "catalog-update.json",
        ]
    );
}

// ---------- PENDING_GRANT_RESPONSE=WAIT (the default) and ServiceTimeout ----------

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Where the manual clocks of the tests of waiting requests start (Unix seconds): the
/// ServiceTimeout's answer-by time is on the function's clock, which these tests set and move
/// instead of waiting for it.
const T0: u64 = 1_800_000_000;

fn manual_clock() -> ManualClock {
    ManualClock::at(Duration::from_secs(T0))
}

/// [`default_config`] on `clock`.
fn default_config_on(clock: &ManualClock) -> CatalogConfig {
    CatalogConfig {
        clock: clock.clock(),
        ..default_config()
    }
}

/// The configuration a deployment gets by default (only the stack's queue set).
fn default_config() -> CatalogConfig {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("CATALOG_RECHECK_QUEUE_URL", RECHECK_QUEUE),
        ("WAIT_FOR_ACTIVE_SECONDS", "1"),
        ("ACTIVE_POLL_INTERVAL_MS", "100"),
        ("RESPONSE_SAFETY_MARGIN_MS", "500"),
        ("ALLOW_LOCAL_RESPONSE_URL", "true"),
        ("CATALOG_LICENSES", "*"),
    ]);
    CatalogConfig::from_lookup(|k| vars.get(k).map(|v| v.to_string())).unwrap()
}

fn sqs_batch(id: &str, body: &Value) -> Value {
    json!({"Records": [{"eventSource": "aws:sqs", "messageId": id, "body": body.to_string()}]})
}

#[tokio::test]
async fn pending_grant_by_default_waits_on_the_recheck_queue_and_is_answered_success_once_active() {
    // First invocation: the grant stays in License Manager's workflow.
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![grant(GRANT, GrantStatus::PendingWorkflow, "1")]);
    let (send, sent) = sent_bodies();
    world.sqs.push(send);
    let rx = Receiver::start(vec![]).await;
    let clock = manual_clock();
    let app = world.app(default_config_on(&clock));
    let out = handle(
        &app,
        request("Create", &rx.url, props_arn()),
        in_seconds(30),
    )
    .await
    .unwrap();
    assert_eq!(out["responses"][0]["status"], "WAITING", "{out:#}");
    assert_eq!(
        clock.now(),
        Duration::from_secs(T0 + 1),
        "re-checked for WAIT_FOR_ACTIVE_SECONDS on the function's clock before handing over"
    );
    assert!(
        rx.bodies().is_empty(),
        "no answer yet: the launch is neither failed nor let go with an unlicensed product"
    );
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let (queue, body, delay) = &sent[0];
    assert_eq!((queue.as_str(), *delay), (RECHECK_QUEUE, 60));
    let message: Value = serde_json::from_str(body).unwrap();
    let answer_by = message["respond"]["answerBy"].as_u64().unwrap();
    assert_eq!(
        answer_by,
        T0 + 3540,
        "one hour (CloudFormation's default ServiceTimeout) minus a minute from the request's arrival: {message:#}"
    );
    assert_eq!(
        message["respond"],
        json!({
            "requestType": "Create",
            "responseURL": rx.url,
            "stackId": STACK,
            "requestId": "req-create",
            "logicalResourceId": "Entitlement",
            "productSku": SKU,
            "serviceTimeout": 3600,
            "answerBy": answer_by,
        })
    );
    assert_eq!(
        (
            &message["accountId"],
            &message["licenseArn"],
            &message["attempt"]
        ),
        (&json!(ACCOUNT), &json!(LICENSE), &json!(0))
    );

    // Still in workflow at the first re-check, a minute on: queued again, still no answer.
    clock.advance(Duration::from_secs(60));
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![grant(GRANT, GrantStatus::PendingWorkflow, "1")]);
    let (send, again) = sent_bodies();
    world.sqs.push(send);
    let app = world.app(default_config_on(&clock));
    let out = handle(&app, sqs_batch("m-1", &message), in_seconds(30))
        .await
        .unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert!(rx.bodies().is_empty());
    let again = again.lock().unwrap().clone();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].2, 60);
    let next: Value = serde_json::from_str(&again[0].1).unwrap();
    assert_eq!(next["attempt"], 1);
    assert_eq!(next["respond"], message["respond"]);

    // ACTIVE at the next one: SUCCESS, with the grant as the physical id.
    clock.advance(Duration::from_secs(60));
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![grant(GRANT, GrantStatus::Active, "3")]);
    let app = world.app(default_config_on(&clock));
    let out = handle(&app, sqs_batch("m-2", &next), in_seconds(30))
        .await
        .unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert_eq!(
        rx.only().body,
        expected(
            "SUCCESS",
            &format!("account {ACCOUNT} is entitled: grant {GRANT} is ACTIVE"),
            GRANT,
            "req-create",
            Some(["ACTIVE", GRANT, "ACTIVE", LICENSE, SKU]),
        )
    );
}

#[tokio::test]
async fn waiting_request_is_answered_failed_when_its_service_timeout_is_near() {
    let rx = Receiver::start(vec![]).await;
    let clock = manual_clock();
    let waiting = json!({
        "accountId": ACCOUNT, "licenseArn": LICENSE, "firstSeen": T0, "attempt": 4,
        "respond": {
            "requestType": "Create", "responseURL": rx.url, "stackId": STACK,
            "requestId": "req-create", "logicalResourceId": "Entitlement",
            "serviceTimeout": 600, "answerBy": T0 + 20,
        }
    });
    // 20 s left: the next re-check comes after 20 s, not the usual 60.
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![grant(GRANT, GrantStatus::PendingWorkflow, "1")]);
    let (send, sent) = sent_bodies();
    world.sqs.push(send);
    let app = world.app(default_config_on(&clock));
    handle(&app, sqs_batch("m-1", &waiting), in_seconds(30))
        .await
        .unwrap();
    let (_, body, delay) = sent.lock().unwrap()[0].clone();
    assert_eq!(delay, 20);
    assert!(rx.bodies().is_empty());
    let next: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(next["respond"], waiting["respond"]);

    // That re-check, 20 s on: time is up: FAILED with the grant and its status, and nothing
    // queued.
    clock.advance(Duration::from_secs(20));
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![grant(GRANT, GrantStatus::PendingWorkflow, "1")]);
    let (send, sent) = sent_bodies();
    world.sqs.push(send);
    let app = world.app(default_config_on(&clock));
    let out = handle(&app, sqs_batch("m-2", &next), in_seconds(30))
        .await
        .unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert!(sent.lock().unwrap().is_empty());
    assert_eq!(
        rx.only().body,
        expected(
            "FAILED",
            &format!("grant {GRANT} for {LICENSE} in account {ACCOUNT} is still PENDING_WORKFLOW (License Manager's workflow has not finished); not ACTIVE within the resource's ServiceTimeout (600s): launch again later (the same grant is reused), or raise ServiceTimeout"),
            GRANT,
            "req-create",
            Some(["PENDING", GRANT, "PENDING_WORKFLOW", LICENSE, SKU]),
        )
    );
}

#[tokio::test]
async fn waiting_answer_that_cannot_be_delivered_is_retried_by_sqs_unless_refused() {
    let body = |url: &str| {
        json!({
            "accountId": ACCOUNT, "licenseArn": LICENSE, "firstSeen": unix_now(), "attempt": 1,
            "respond": {
                "requestType": "Create", "responseURL": url, "stackId": STACK,
                "requestId": "req-create", "logicalResourceId": "Entitlement",
                "serviceTimeout": 3600, "answerBy": unix_now() + 3000,
            }
        })
    };
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![grant(GRANT, GrantStatus::Active, "3")]);
    let app = world.app(default_config());
    // Three 500s: the PUT did not get through; SQS delivers the message again.
    let rx = Receiver::start(vec![500, 500, 500]).await;
    let out = handle(&app, sqs_batch("m-1", &body(&rx.url)), in_seconds(30))
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]})
    );
    assert_eq!(rx.bodies().len(), 3);
    // 403: an expired URL; a retry cannot help, so the message is done.
    let rx = Receiver::start(vec![403]).await;
    let out = handle(&app, sqs_batch("m-2", &body(&rx.url)), in_seconds(30))
        .await
        .unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert_eq!(rx.bodies().len(), 1);
}

// The function's clock is a manual one: the pauses between re-checks move it, so the
// ServiceTimeout's seconds pass at once. The answer's reason, the absence of a re-check and
// where the clock stopped say the ServiceTimeout bounded the wait (the Lambda deadline and the
// wait budget, a minute away, would give another answer).
#[tokio::test]
async fn service_timeout_property_is_accepted_and_bounds_the_wait() {
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![grant(GRANT, GrantStatus::PendingWorkflow, "1")]);
    let (send, sent) = sent_bodies();
    world.sqs.push(send);
    let rx = Receiver::start(vec![]).await;
    let clock = manual_clock();
    // A re-check a second: six runs of the engine, not sixty (the runs take the test's time).
    let config = CatalogConfig {
        wait_for_active: Duration::from_secs(60),
        poll_interval: Duration::from_secs(1),
        ..default_config_on(&clock)
    };
    let poll = config.poll_interval;
    let app = world.app(config);
    // ServiceTimeout 8 s (a string, as CloudFormation passes it): answered by 6 s, although the
    // Lambda deadline and the wait budget are a minute away.
    let props = json!({"LicenseArn": LICENSE, "ServiceTimeout": "8"});
    handle(&app, request("Create", &rx.url, props), in_seconds(60))
        .await
        .unwrap();
    let waited = clock.now() - Duration::from_secs(T0);
    let answer_within = Duration::from_secs(6);
    assert!(
        waited < answer_within && waited + poll >= answer_within,
        "re-checked until the last poll before the answer-by time: {waited:?}"
    );
    assert!(sent.lock().unwrap().is_empty(), "no time left to wait");
    assert_eq!(
        rx.only().body,
        expected(
            "FAILED",
            &format!("grant {GRANT} for {LICENSE} in account {ACCOUNT} is still PENDING_WORKFLOW (License Manager's workflow has not finished); not ACTIVE within the resource's ServiceTimeout (8s): launch again later (the same grant is reused), or raise ServiceTimeout"),
            GRANT,
            "req-create",
            Some(["PENDING", GRANT, "PENDING_WORKFLOW", LICENSE, SKU]),
        )
    );

    // A bad ServiceTimeout fails before any AWS call.
    let world = World::healthy();
    let rx = Receiver::start(vec![]).await;
    let app = world.app(default_config());
    let props = json!({"LicenseArn": LICENSE, "ServiceTimeout": "3601"});
    handle(&app, request("Create", &rx.url, props), in_seconds(10))
        .await
        .unwrap();
    let body: Value = serde_json::from_str(&rx.only().body).unwrap();
    assert_eq!(body["Status"], "FAILED");
    assert_eq!(
        body["Reason"],
        "InvalidInput (permanent): invalid input: ServiceTimeout 3601 must be a whole number of seconds from 1 to 3600"
    );
    assert_eq!(world.total_calls(), 0);
}

#[tokio::test]
async fn organization_and_ou_shares_carry_principals_account_shares_do_not() {
    use aws_sdk_servicecatalog::operation::create_portfolio_share::CreatePortfolioShareOutput;
    type Seen = Arc<Mutex<Vec<(String, Option<bool>)>>>;
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    let capture = mock!(aws_sdk_servicecatalog::Client::create_portfolio_share)
        .match_requests(move |req| {
            let target = req
                .organization_node()
                .and_then(|n| n.r#type())
                .map(|t| t.as_str().to_string())
                .unwrap_or_else(|| "AccountId".to_string());
            store.lock().unwrap().push((target, req.share_principals()));
            true
        })
        .then_compute_output(|req| {
            let out = CreatePortfolioShareOutput::builder();
            match req.organization_node() {
                Some(_) => out.portfolio_share_token("share-token-1").build(),
                None => out.build(),
            }
        });
    let mut world = World::healthy();
    let (mut rules, _, _) = share_rules();
    rules.insert(0, capture);
    world.catalog = rules;
    world.self_account = Some(ACCOUNT);
    let rx = Receiver::start(vec![]).await;
    let app = world.app(config());
    handle(
        &app,
        share_request(
            "Create",
            &rx.url,
            json!(["o-abc1234567", "ou-ab12-cdef3456", "210987654321"]),
        ),
        in_seconds(10),
    )
    .await
    .unwrap();
    let body: Value = serde_json::from_str(&rx.only().body).unwrap();
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            ("ORGANIZATION".to_string(), Some(true)),
            ("ORGANIZATIONAL_UNIT".to_string(), Some(true)),
            ("AccountId".to_string(), None),
        ],
        "SharePrincipals=true on organization-node shares (AWS supports it on those only)"
    );
}
