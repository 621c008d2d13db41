//! Every branch of the engine against mocked SDK clients that answer as AWS does: modeled
//! outputs for success, and for failures the real wire shapes (AWS JSON 1.1 bodies for License
//! Manager and Organizations, query-protocol XML for IAM and STS) with AWS's codes and messages.
#![allow(clippy::unwrap_used)]

use aws_credential_types::Credentials;
use aws_sdk_iam::operation::create_service_linked_role::CreateServiceLinkedRoleOutput;
use aws_sdk_iam::operation::list_roles::ListRolesOutput;
use aws_sdk_iam::types::Role;
use aws_sdk_licensemanager::operation::accept_grant::AcceptGrantOutput;
use aws_sdk_licensemanager::operation::create_grant::CreateGrantOutput;
use aws_sdk_licensemanager::operation::create_grant_version::CreateGrantVersionOutput;
use aws_sdk_licensemanager::operation::delete_grant::DeleteGrantOutput;
use aws_sdk_licensemanager::operation::get_grant::GetGrantOutput;
use aws_sdk_licensemanager::operation::list_distributed_grants::ListDistributedGrantsOutput;
use aws_sdk_licensemanager::operation::list_received_grants::ListReceivedGrantsOutput;
use aws_sdk_licensemanager::operation::list_received_grants_for_organization::ListReceivedGrantsForOrganizationOutput;
use aws_sdk_licensemanager::operation::list_received_licenses::ListReceivedLicensesOutput;
use aws_sdk_licensemanager::types::{
    AllowedOperation, Grant, GrantStatus, GrantedLicense, IssuerDetails,
};
use aws_sdk_organizations::operation::describe_account::DescribeAccountOutput;
use aws_sdk_organizations::operation::describe_organization::DescribeOrganizationOutput;
use aws_sdk_organizations::operation::list_parents::ListParentsOutput;
use aws_sdk_organizations::operation::list_tags_for_resource::ListTagsForResourceOutput;
use aws_sdk_organizations::types::{Account, AccountState, Organization, Parent, ParentType, Tag};
use aws_sdk_sqs::operation::send_message::SendMessageOutput;
use aws_sdk_sts::operation::assume_role::AssumeRoleOutput;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use serde_json::{json, Value};
use shared::clients::LicenseManagerThrottling;
use shared::inbound::{parse_request, Request};
use shared::{
    clients::Clients, clients::MemberClientFactory, clients::MemberClients, config::Config,
    engine::Engine, report::AccountReport, report::Outcome,
};
use std::collections::HashMap;
use std::sync::Arc;

const MGMT: &str = "111111111111";
const ACCOUNT: &str = "210987654321";
const OU: &str = "ou-ab12-cdef3456";
const ORG_ARN: &str = "arn:aws:organizations::111111111111:organization/o-abc1234567";
const LICENSE: &str =
    "arn:aws:license-manager::294406891311:license:l-0123456789abcdef0123456789abcdef";
const OTHER_LICENSE: &str =
    "arn:aws:license-manager::294406891311:license:l-ffffffffffffffffffffffffffffffff";
const SKU: &str = "prod-sku-1";
const GRANT: &str =
    "arn:aws:license-manager::111111111111:grant:g-00000000000000000000000000000001";
const NEW_GRANT: &str =
    "arn:aws:license-manager::111111111111:grant:g-00000000000000000000000000000002";
const ORG_GRANT: &str =
    "arn:aws:license-manager::111111111111:grant:g-0000000000000000000000000000000a";
const CHILD_GRANT: &str =
    "arn:aws:license-manager::111111111111:grant:g-0000000000000000000000000000000b";
const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/111111111111/onboarding";

// ---------- wire-shaped errors ----------

fn json_error(status: u16, code: &str, message: &str) -> HttpResponse {
    let mut r = HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(json!({"__type": code, "message": message}).to_string()),
    );
    r.headers_mut()
        .insert("content-type", "application/x-amz-json-1.1");
    r
}

fn xml_error(status: u16, code: &str, message: &str) -> HttpResponse {
    let body = format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
    );
    let mut r = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
    r.headers_mut().insert("content-type", "text/xml");
    r
}

// ---------- fixtures ----------

fn grant(arn: &str, status: GrantStatus, version: &str, parent: &str, grantee: &str) -> Grant {
    Grant::builder()
        .grant_arn(arn)
        .grant_name(format!("ct-entitlements-{ACCOUNT}"))
        .parent_arn(parent)
        .license_arn(LICENSE)
        .grantee_principal_arn(grantee)
        .home_region("us-east-1")
        .grant_status(status)
        .version(version)
        .granted_operations(AllowedOperation::CheckoutLicense)
        .build()
        .unwrap()
}

fn account_grant(arn: &str, status: GrantStatus, version: &str) -> Grant {
    grant(
        arn,
        status,
        version,
        LICENSE,
        &format!("arn:aws:iam::{ACCOUNT}:root"),
    )
}

fn held(arn: &str, sku: &str) -> GrantedLicense {
    GrantedLicense::builder()
        .license_arn(arn)
        .product_sku(sku)
        .product_name(format!("Product {sku}"))
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

/// One scenario: rules per client, each defaulting to a healthy world where the account has no
/// grant yet and every SLR exists.
struct World {
    org: Vec<Rule>,
    sts: Vec<Rule>,
    iam: Vec<Rule>,
    lm: Vec<Rule>,
    member_lm: Vec<Rule>,
    sqs: Vec<Rule>,
}

fn org_rules(state: AccountState, tags: Vec<Tag>) -> Vec<Rule> {
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
        mock!(aws_sdk_organizations::Client::describe_account).then_output(move || {
            DescribeAccountOutput::builder()
                .account(
                    Account::builder()
                        .id(ACCOUNT)
                        .name("LifeCycle1")
                        .state(state.clone())
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
        mock!(aws_sdk_organizations::Client::list_tags_for_resource).then_output(move || {
            ListTagsForResourceOutput::builder()
                .set_tags(Some(tags.clone()))
                .build()
        }),
    ]
}

fn slr_roles(services: &[&str]) -> Rule {
    let roles: Vec<Role> = services
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

const ALL_SLRS: &[&str] = &[
    "license-manager.amazonaws.com",
    "license-manager.member-account.amazonaws.com",
    "license-management.marketplace.amazonaws.com",
];

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

fn received(grants: Vec<Grant>) -> Rule {
    mock!(aws_sdk_licensemanager::Client::list_received_grants).then_output(move || {
        ListReceivedGrantsOutput::builder()
            .set_grants(Some(grants.clone()))
            .build()
    })
}

fn distributed(principal: &'static str, grants: Vec<Grant>) -> Rule {
    mock!(aws_sdk_licensemanager::Client::list_distributed_grants)
        .match_requests(move |req| {
            req.filters().iter().any(|f| {
                f.name() == Some("GranteePrincipalARN") && f.values().iter().any(|v| v == principal)
            })
        })
        .then_output(move || {
            ListDistributedGrantsOutput::builder()
                .set_grants(Some(grants.clone()))
                .build()
        })
}

fn no_distributed() -> Rule {
    mock!(aws_sdk_licensemanager::Client::list_distributed_grants)
        .then_output(|| ListDistributedGrantsOutput::builder().build())
}

fn licenses(list: Vec<GrantedLicense>) -> Rule {
    mock!(aws_sdk_licensemanager::Client::list_received_licenses).then_output(move || {
        ListReceivedLicensesOutput::builder()
            .set_licenses(Some(list.clone()))
            .build()
    })
}

fn create_grant(status: GrantStatus) -> Rule {
    mock!(aws_sdk_licensemanager::Client::create_grant).then_output(move || {
        CreateGrantOutput::builder()
            .grant_arn(NEW_GRANT)
            .status(status.clone())
            .version("1")
            .build()
    })
}

fn accept() -> Rule {
    mock!(aws_sdk_licensemanager::Client::accept_grant).then_output(|| {
        AcceptGrantOutput::builder()
            .grant_arn(GRANT)
            .status(GrantStatus::Disabled)
            .version("1")
            .build()
    })
}

fn activate() -> Rule {
    mock!(aws_sdk_licensemanager::Client::create_grant_version).then_output(|| {
        CreateGrantVersionOutput::builder()
            .grant_arn(GRANT)
            .status(GrantStatus::Active)
            .version("2")
            .build()
    })
}

fn org_received(grants: Vec<Grant>) -> Rule {
    mock!(aws_sdk_licensemanager::Client::list_received_grants_for_organization)
        .match_requests(|req| {
            req.license_arn() == Some(LICENSE)
                && req.filters().iter().any(|f| {
                    f.name() == Some("GranteePrincipalArn")
                        && f.values()
                            .iter()
                            .any(|v| v == &format!("arn:aws:iam::{ACCOUNT}:root"))
                })
        })
        .then_output(move || {
            ListReceivedGrantsForOrganizationOutput::builder()
                .set_grants(Some(grants.clone()))
                .build()
        })
}

fn get_grant_rule(g: Grant) -> Rule {
    mock!(aws_sdk_licensemanager::Client::get_grant)
        .then_output(move || GetGrantOutput::builder().grant(g.clone()).build())
}

fn with_reason(g: Grant, reason: &str) -> Grant {
    let mut g = g;
    g.status_reason = Some(reason.to_string());
    g
}

fn child_grant(status: GrantStatus) -> Grant {
    let mut g = grant(
        CHILD_GRANT,
        status,
        "1",
        ORG_GRANT,
        &format!("arn:aws:iam::{ACCOUNT}:root"),
    );
    g.grant_name = "org-wide".into();
    g
}

fn send() -> Rule {
    mock!(aws_sdk_sqs::Client::send_message)
        .then_output(|| SendMessageOutput::builder().message_id("m-1").build())
}

impl World {
    fn healthy() -> Self {
        World {
            org: org_rules(AccountState::Active, vec![]),
            sts: vec![assume_ok()],
            iam: vec![slr_roles(ALL_SLRS)],
            lm: vec![
                licenses(vec![held(LICENSE, SKU)]),
                no_distributed(),
                create_grant(GrantStatus::PendingAccept),
            ],
            member_lm: vec![received(vec![]), accept(), activate()],
            sqs: vec![send()],
        }
    }

    fn engine(&self, env: &[(&str, &str)]) -> Engine {
        let mut vars: HashMap<String, String> = HashMap::from([
            ("PRODUCT_SKUS".to_string(), SKU.to_string()),
            ("ONBOARDING_QUEUE_URL".to_string(), QUEUE.to_string()),
            ("ASSUME_ROLE_BACKOFF_MS".to_string(), "1".to_string()),
        ]);
        for (k, v) in env {
            vars.insert(k.to_string(), v.to_string());
        }
        let config =
            Config::from_lookup(|k| vars.get(k).cloned()).expect("valid test configuration");
        let lm_conf = |c: aws_sdk_licensemanager::config::Builder| {
            c.retry_classifier(LicenseManagerThrottling)
                .retry_config(
                    aws_smithy_types::retry::RetryConfig::standard()
                        .with_max_attempts(3)
                        .with_initial_backoff(std::time::Duration::from_millis(1)),
                )
                .sleep_impl(aws_smithy_async::rt::sleep::SharedAsyncSleep::new(
                    aws_smithy_async::rt::sleep::TokioSleep::new(),
                ))
        };
        // After an activation the engine looks at the grant (an ACTIVE answer is not taken at
        // its word): where a test did not say what the look shows, it shows what the
        // activation answered in these tests, ACTIVE.
        let mut lm_rules = self.lm.clone();
        lm_rules.push(
            mock!(aws_sdk_licensemanager::Client::get_grant).then_compute_output(|req| {
                let arn = req.grant_arn().unwrap_or_default().to_string();
                let mut g = grant(
                    &arn,
                    GrantStatus::Active,
                    "2",
                    LICENSE,
                    &format!("arn:aws:iam::{ACCOUNT}:root"),
                );
                if arn == CHILD_GRANT {
                    g.grant_name = "ct-entitlements-organization".into();
                    g.parent_arn = ORG_GRANT.into();
                }
                GetGrantOutput::builder().grant(g).build()
            }),
        );
        let clients = Clients {
            organizations: mock_client!(aws_sdk_organizations, RuleMode::MatchAny, &self.org),
            sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &self.sts),
            license_manager: mock_client!(
                aws_sdk_licensemanager,
                RuleMode::MatchAny,
                &lm_rules,
                lm_conf
            ),
            sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, &self.sqs),
            // No CHAIN_TABLE here: any call to it would fail the test.
            dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[]),
            members: Arc::new(Fixed(MemberClients {
                iam: mock_client!(aws_sdk_iam, RuleMode::MatchAny, &self.iam),
                license_manager: mock_client!(
                    aws_sdk_licensemanager,
                    RuleMode::MatchAny,
                    &self.member_lm,
                    lm_conf
                ),
            })),
        };
        Engine::new(config, clients)
    }
}

fn create_event() -> Value {
    json!({
        "version": "0", "id": "e-1", "detail-type": "AWS Service Event via CloudTrail",
        "source": "aws.controltower", "account": MGMT, "time": "2018-08-30T21:42:18Z", "region": "us-east-1", "resources": [],
        "detail": {
            "eventName": "CreateManagedAccount", "eventSource": "controltower.amazonaws.com",
            "serviceEventDetails": {"createManagedAccountStatus": {
                "organizationalUnit": {"organizationalUnitName": "Custom", "organizationalUnitId": OU},
                "account": {"accountName": "LifeCycle1", "accountId": ACCOUNT},
                "state": "SUCCEEDED", "message": "ok",
                "requestedTimestamp": "2019-11-15T11:45:18+0000", "completedTimestamp": "2019-11-16T12:09:32+0000"
            }}
        }
    })
}

async fn run(engine: &Engine) -> AccountReport {
    let request = parse_request(&create_event()).expect("valid event");
    engine.run(request).await
}

fn calls(report: &AccountReport, op: &str) -> u32 {
    report.api_calls.get(op).copied().unwrap_or(0)
        + report.member_api_calls.get(op).copied().unwrap_or(0)
}

fn actions(report: &AccountReport) -> Vec<String> {
    report
        .licenses
        .iter()
        .flat_map(|l| l.actions.clone())
        .collect()
}

// ---------- tests ----------

#[tokio::test]
async fn new_account_gets_a_new_grant_accepted_and_activated() {
    let world = World::healthy();
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Entitled, "{report:#?}");
    let l = &report.licenses[0];
    assert_eq!(l.status_before, None);
    assert_eq!(l.status_after.as_deref(), Some("ACTIVE"));
    assert_eq!(
        l.actions,
        vec!["CreateGrant", "AcceptGrant", "ActivateGrant"]
    );
    assert_eq!(l.grant_arn.as_deref(), Some(NEW_GRANT));
    assert_eq!(world.lm[2].num_calls(), 1, "one CreateGrant");
    assert_eq!(world.member_lm[1].num_calls(), 1, "one AcceptGrant");
    assert_eq!(world.member_lm[2].num_calls(), 1, "one CreateGrantVersion");
    assert_eq!(report.write_calls, 3);
    assert_eq!(report.account_name.as_deref(), Some("LifeCycle1"));
    assert_eq!(report.ou_id.as_deref(), Some(OU));
}

#[tokio::test]
async fn create_grant_request_is_deterministic_and_complete() {
    let mut world = World::healthy();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    world.lm[2] = mock!(aws_sdk_licensemanager::Client::create_grant)
        .match_requests(move |req| {
            seen2.lock().unwrap().push((
                req.client_token().unwrap_or_default().to_string(),
                req.principals().to_vec(),
                req.home_region().map(str::to_string),
                req.license_arn().map(str::to_string),
                req.allowed_operations().len(),
            ));
            true
        })
        .then_output(|| {
            CreateGrantOutput::builder()
                .grant_arn(NEW_GRANT)
                .status(GrantStatus::PendingAccept)
                .version("1")
                .build()
        });
    run(&world.engine(&[])).await;
    run(&world.engine(&[])).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].0, seen[1].0,
        "same account + license + generation ⇒ same ClientToken"
    );
    assert!(seen[0].0.starts_with("cte-") && seen[0].0.len() == 36);
    assert_eq!(seen[0].1, vec![format!("arn:aws:iam::{ACCOUNT}:root")]);
    assert_eq!(seen[0].2.as_deref(), Some("us-east-1"));
    assert_eq!(seen[0].3.as_deref(), Some(LICENSE));
    assert_eq!(seen[0].4, 4);
}

#[tokio::test]
async fn in_govcloud_the_role_and_the_grantee_are_govcloud_arns() {
    let mut world = World::healthy();
    let roles = Arc::new(std::sync::Mutex::new(Vec::new()));
    let principals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (roles2, principals2) = (roles.clone(), principals.clone());
    world.sts = vec![mock!(aws_sdk_sts::Client::assume_role)
        .match_requests(move |req| {
            roles2
                .lock()
                .expect("lock")
                .push(req.role_arn().unwrap_or_default().to_string());
            true
        })
        .then_output(|| {
            AssumeRoleOutput::builder()
                .credentials(
                    aws_sdk_sts::types::Credentials::builder()
                        .access_key_id("ASIA")
                        .secret_access_key("s")
                        .session_token("t")
                        .expiration(aws_smithy_types::DateTime::from_secs(4_000_000_000))
                        .build()
                        .expect("credentials"),
                )
                .build()
        })];
    world.lm[2] = mock!(aws_sdk_licensemanager::Client::create_grant)
        .match_requests(move |req| {
            principals2
                .lock()
                .expect("lock")
                .extend(req.principals().iter().cloned());
            true
        })
        .then_output(|| {
            CreateGrantOutput::builder()
                .grant_arn(NEW_GRANT)
                .status(GrantStatus::PendingAccept)
                .version("1")
                .build()
        });
    // Lambda sets AWS_REGION; nothing else names the partition.
    let engine = world.engine(&[
        ("AWS_REGION", "us-gov-west-1"),
        ("LICENSE_HOME_REGION", "us-gov-west-1"),
    ]);
    let report = run(&engine).await;
    assert_eq!(report.outcome, Outcome::Entitled, "{report:#?}");
    assert_eq!(
        *roles.lock().expect("lock"),
        vec![format!(
            "arn:aws-us-gov:iam::{ACCOUNT}:role/AWSControlTowerExecution"
        )]
    );
    assert_eq!(
        *principals.lock().expect("lock"),
        vec![format!("arn:aws-us-gov:iam::{ACCOUNT}:root")]
    );
}

#[tokio::test]
async fn existing_grant_is_found_not_created() {
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![account_grant(GRANT, GrantStatus::PendingAccept, "1")]);
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Entitled, "{report:#?}");
    assert_eq!(world.lm[2].num_calls(), 0, "no CreateGrant");
    assert_eq!(actions(&report), vec!["AcceptGrant", "ActivateGrant"]);
    assert_eq!(
        report.licenses[0].status_before.as_deref(),
        Some("PENDING_ACCEPT")
    );
}

#[tokio::test]
async fn grant_visible_only_to_grantor_is_reused() {
    let mut world = World::healthy();
    world.lm[1] = distributed(
        "arn:aws:iam::210987654321:root",
        vec![account_grant(GRANT, GrantStatus::PendingWorkflow, "1")],
    );
    world.lm.push(no_distributed());
    let report = run(&world.engine(&[])).await;
    assert_eq!(
        world.lm[2].num_calls(),
        0,
        "no second grant while the first is in workflow"
    );
    assert_eq!(report.outcome, Outcome::Pending);
    assert_eq!(world.sqs[0].num_calls(), 1);
}

#[tokio::test]
async fn disabled_grant_is_activated_with_source_version_and_override() {
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![account_grant(GRANT, GrantStatus::Disabled, "7")]);
    world.member_lm[2] = mock!(aws_sdk_licensemanager::Client::create_grant_version)
        .match_requests(|req| {
            req.source_version() == Some("7")
                && req.status() == Some(&GrantStatus::Active)
                && req
                    .options()
                    .and_then(|o| o.activation_override_behavior())
                    .map(|b| b.as_str())
                    == Some("ALL_GRANTS_PERMITTED_BY_ISSUER")
                && req.client_token().is_some_and(|t| t.starts_with("cte-"))
        })
        .then_output(|| {
            CreateGrantVersionOutput::builder()
                .grant_arn(GRANT)
                .status(GrantStatus::Active)
                .version("8")
                .build()
        });
    let report = run(&world.engine(&[(
        "ACTIVATION_OVERRIDE_BEHAVIOR",
        "ALL_GRANTS_PERMITTED_BY_ISSUER",
    )]))
    .await;
    assert_eq!(report.outcome, Outcome::Entitled, "{report:#?}");
    assert_eq!(actions(&report), vec!["ActivateGrant"]);
    assert_eq!(world.member_lm[2].num_calls(), 1);
    assert_eq!(
        world.member_lm[1].num_calls(),
        0,
        "no AcceptGrant for a DISABLED grant"
    );
}

#[tokio::test]
async fn active_grant_means_no_write() {
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![
        account_grant(NEW_GRANT, GrantStatus::Rejected, "1"),
        account_grant(GRANT, GrantStatus::Active, "2"),
    ]);
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Entitled);
    assert_eq!(report.write_calls, 0, "{report:#?}");
    assert!(actions(&report).is_empty());
    assert_eq!(report.licenses[0].grant_arn.as_deref(), Some(GRANT));
    assert_eq!(
        world.lm[2].num_calls() + world.member_lm[1].num_calls() + world.member_lm[2].num_calls(),
        0
    );
}

#[tokio::test]
async fn rejected_or_deleted_grant_is_replaced_with_a_new_token() {
    for dead in [GrantStatus::Rejected, GrantStatus::Deleted] {
        let tokens = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut world = World::healthy();
        world.member_lm[0] = received(vec![account_grant(GRANT, dead.clone(), "3")]);
        world.lm[1] = distributed(
            "arn:aws:iam::210987654321:root",
            vec![account_grant(GRANT, dead.clone(), "3")],
        );
        world.lm.push(no_distributed());
        let t = tokens.clone();
        world.lm[2] = mock!(aws_sdk_licensemanager::Client::create_grant)
            .match_requests(move |req| {
                t.lock()
                    .unwrap()
                    .push(req.client_token().unwrap_or_default().to_string());
                true
            })
            .then_output(|| {
                CreateGrantOutput::builder()
                    .grant_arn(NEW_GRANT)
                    .status(GrantStatus::Disabled)
                    .version("1")
                    .build()
            });
        let report = run(&world.engine(&[])).await;
        assert_eq!(report.outcome, Outcome::Entitled, "{dead:?}: {report:#?}");
        assert_eq!(actions(&report), vec!["CreateGrant", "ActivateGrant"]);
        let first_generation = shared::engine::grant_client_token(
            &shared::ids::AccountId::parse(ACCOUNT).unwrap(),
            LICENSE,
            0,
        );
        let tokens = tokens.lock().unwrap();
        assert_eq!(tokens.len(), 1);
        assert_ne!(
            tokens[0], first_generation,
            "a replacement must not reuse the first grant's token"
        );
    }
}

#[tokio::test]
async fn active_license_conflict_is_a_classified_permanent_failure() {
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![account_grant(GRANT, GrantStatus::Disabled, "1")]);
    world.member_lm[2] = mock!(aws_sdk_licensemanager::Client::create_grant_version).then_http_response(|| {
        json_error(400, "ValidationException", "This account already has an active license for the same product from another subscription")
    });
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Failed);
    let err = report.licenses[0].error.as_ref().expect("license error");
    assert_eq!(err.kind, "ActiveLicenseConflict");
    assert_eq!(err.retry, shared::error::Retry::Permanent);
    assert!(err.message.contains("ALL_GRANTS_PERMITTED_BY_ISSUER"));
}

#[tokio::test]
async fn organization_child_grant_is_activated_not_duplicated() {
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![
        grant(
            ORG_GRANT,
            GrantStatus::WorkflowCompleted,
            "1",
            LICENSE,
            ORG_ARN,
        ),
        // License Manager's child, named as its parent (not as ct-entitlements' own grants).
        {
            let mut child = grant(
                CHILD_GRANT,
                GrantStatus::Disabled,
                "1",
                ORG_GRANT,
                &format!("arn:aws:iam::{ACCOUNT}:root"),
            );
            child.grant_name = "ct-entitlements-organization".into();
            child
        },
    ]);
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Entitled, "{report:#?}");
    let l = &report.licenses[0];
    assert_eq!(l.grant_arn.as_deref(), Some(CHILD_GRANT));
    assert_eq!(l.grant_source.as_deref(), Some("organization"));
    assert_eq!(l.actions, vec!["ActivateGrant"]);
    assert_eq!(world.lm[2].num_calls(), 0);
}

#[tokio::test]
async fn organization_grant_still_distributing_is_waited_for() {
    let mut world = World::healthy();
    world.lm[1] = distributed(
        ORG_ARN,
        vec![grant(
            ORG_GRANT,
            GrantStatus::PendingWorkflow,
            "1",
            LICENSE,
            ORG_ARN,
        )],
    );
    world.lm.push(no_distributed());
    world.lm.push(org_received(vec![]));
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Pending, "{report:#?}");
    assert_eq!(
        world.lm[2].num_calls(),
        0,
        "no per-account grant beside a distributing org grant"
    );
    assert_eq!(report.recheck_in_seconds, Some(300));
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_then_succeeds() {
    let mut world = World::healthy();
    world.member_lm[0] = mock!(aws_sdk_licensemanager::Client::list_received_grants)
        .sequence()
        .http_response(|| json_error(400, "RateLimitExceededException", "Rate exceeded"))
        .times(2)
        .output(|| {
            ListReceivedGrantsOutput::builder()
                .grants(account_grant(GRANT, GrantStatus::Active, "1"))
                .build()
        })
        .build();
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Entitled, "{report:#?}");
    assert_eq!(
        world.member_lm[0].num_calls(),
        3,
        "two throttled attempts, then success"
    );
}

#[tokio::test]
async fn throttling_that_persists_is_reported_retryable() {
    let mut world = World::healthy();
    world.member_lm[0] = mock!(aws_sdk_licensemanager::Client::list_received_grants)
        .then_http_response(|| json_error(400, "RateLimitExceededException", "Rate exceeded"));
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Failed);
    let err = report.deciding_error().expect("error");
    assert_eq!(err.retry, shared::error::Retry::Retryable);
    assert_eq!(err.code.as_deref(), Some("RateLimitExceededException"));
}

#[tokio::test]
async fn role_not_assumable_yet_is_retried_then_succeeds() {
    let mut world = World::healthy();
    world.sts = vec![mock!(aws_sdk_sts::Client::assume_role)
        .sequence()
        .http_response(|| xml_error(403, "AccessDenied", "User: arn:aws:sts::111111111111:assumed-role/x is not authorized to perform: sts:AssumeRole"))
        .times(2)
        .output(|| {
            AssumeRoleOutput::builder()
                .credentials(
                    aws_sdk_sts::types::Credentials::builder()
                        .access_key_id("ASIA")
                        .secret_access_key("s")
                        .session_token("t")
                        .expiration(aws_smithy_types::DateTime::from_secs(4_000_000_000))
                        .build()
                        .unwrap(),
                )
                .build()
        })
        .build()];
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Entitled, "{report:#?}");
    assert_eq!(calls(&report, "sts:AssumeRole"), 3);
}

#[tokio::test]
async fn role_never_assumable_is_retryable_after_the_configured_attempts() {
    let mut world = World::healthy();
    world.sts = vec![
        mock!(aws_sdk_sts::Client::assume_role).then_http_response(|| {
            xml_error(
                403,
                "AccessDenied",
                "not authorized to perform: sts:AssumeRole",
            )
        }),
    ];
    let report = run(&world.engine(&[("ASSUME_ROLE_ATTEMPTS", "3")])).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(calls(&report, "sts:AssumeRole"), 3);
    let err = report.error.as_ref().expect("account error");
    assert_eq!(
        (err.kind.as_str(), err.retry),
        ("AssumeRole", shared::error::Retry::Retryable)
    );
    assert_eq!(world.lm[2].num_calls(), 0);
}

#[tokio::test]
async fn missing_slrs_are_created_and_taken_ones_are_fine() {
    let mut world = World::healthy();
    world.iam = vec![
        slr_roles(&["license-manager.amazonaws.com"]),
        mock!(aws_sdk_iam::Client::create_service_linked_role)
            .match_requests(|r| r.aws_service_name() == Some("license-manager.member-account.amazonaws.com"))
            .then_output(|| CreateServiceLinkedRoleOutput::builder().build()),
        mock!(aws_sdk_iam::Client::create_service_linked_role)
            .match_requests(|r| r.aws_service_name() == Some("license-management.marketplace.amazonaws.com"))
            .then_http_response(|| {
                xml_error(400, "InvalidInput", "Service role name AWSServiceRoleForMarketplaceLicenseManagement has been taken in this account, please try a different suffix.")
            }),
    ];
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Entitled, "{report:#?}");
    let slrs: Vec<(&str, &str)> = report
        .service_linked_roles
        .iter()
        .map(|s| (s.service.as_str(), s.action.as_str()))
        .collect();
    assert_eq!(
        slrs,
        vec![
            ("license-manager.amazonaws.com", "existed"),
            ("license-manager.member-account.amazonaws.com", "created"),
            ("license-management.marketplace.amazonaws.com", "existed"),
        ]
    );
    assert_eq!(world.iam[1].num_calls() + world.iam[2].num_calls(), 2);
    assert_eq!(
        calls(&report, "iam:CreateServiceLinkedRole"),
        2,
        "never the management-only role"
    );
}

#[tokio::test]
async fn dry_run_makes_no_write_call() {
    let mut world = World::healthy();
    world.iam = vec![slr_roles(&[])];
    let report = run(&world.engine(&[("DRY_RUN", "true")])).await;
    assert_eq!(report.outcome, Outcome::Planned, "{report:#?}");
    assert_eq!(report.write_calls, 0);
    assert_eq!(
        world.lm[2].num_calls()
            + world.member_lm[1].num_calls()
            + world.member_lm[2].num_calls()
            + world.sqs[0].num_calls(),
        0
    );
    assert_eq!(actions(&report), vec!["CreateGrant", "ActivateGrant"]);
    assert!(report
        .service_linked_roles
        .iter()
        .all(|s| s.action == "wouldCreate"));
}

#[tokio::test]
async fn pending_workflow_requeues_with_delay_and_attempt() {
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![account_grant(
        GRANT,
        GrantStatus::PendingWorkflow,
        "1",
    )]);
    world.sqs = vec![mock!(aws_sdk_sqs::Client::send_message)
        .match_requests(|req| {
            let body: Value =
                serde_json::from_str(req.message_body().unwrap_or_default()).unwrap_or_default();
            req.queue_url() == Some(QUEUE)
                && req.delay_seconds() == Some(120)
                && body["accountId"] == ACCOUNT
                && body["attempt"] == 1
                && body["firstSeen"].is_u64()
        })
        .then_output(|| SendMessageOutput::builder().message_id("m").build())];
    let report = run(&world.engine(&[("RECHECK_DELAY_SECONDS", "120")])).await;
    assert_eq!(report.outcome, Outcome::Pending, "{report:#?}");
    assert_eq!(world.sqs[0].num_calls(), 1);
    assert_eq!(
        world.member_lm[2].num_calls(),
        0,
        "no activation attempt in workflow"
    );
}

/// A run for a License Manager `Grant Change` event does the work it can now and starts no
/// re-check chain: a chain waiting for that grant keeps its start time and lane, and an account
/// nobody waits on is the reconciler's. The same account queued by anything else is re-checked.
#[tokio::test]
async fn a_grant_change_run_starts_no_chain_of_its_own() {
    for (reason, rechecks) in [("grant-change", 0), ("reconcile", 1)] {
        let mut world = World::healthy();
        world.member_lm[0] = received(vec![account_grant(
            GRANT,
            GrantStatus::PendingWorkflow,
            "1",
        )]);
        let engine = world.engine(&[]);
        let request =
            parse_request(&json!({"accountId": ACCOUNT, "reason": reason})).expect("valid");
        let report = engine.run(request).await;
        assert_eq!(report.outcome, Outcome::Pending, "{reason}: {report:#?}");
        assert_eq!(world.sqs[0].num_calls(), rechecks, "{reason}");
        assert_eq!(
            report.recheck_in_seconds.is_some(),
            rechecks == 1,
            "{reason}"
        );
    }
}

#[tokio::test]
async fn pending_past_the_deadline_is_a_permanent_failure() {
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![account_grant(
        GRANT,
        GrantStatus::PendingWorkflow,
        "1",
    )]);
    let engine = world.engine(&[("WORKFLOW_DEADLINE_SECONDS", "3600")]);
    let request =
        parse_request(&json!({"accountId": ACCOUNT, "attempt": 12, "firstSeen": 1_000})).unwrap();
    let report = engine.run(request).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(
        report.licenses[0].error.as_ref().map(|e| e.kind.as_str()),
        Some("WorkflowDeadline")
    );
    assert_eq!(world.sqs[0].num_calls(), 0);
}

#[tokio::test]
async fn configured_license_not_held_is_a_configuration_error_for_the_account() {
    let world = World::healthy();
    let report = run(&world.engine(&[("PRODUCT_SKUS", &format!("{SKU},prod-missing"))])).await;
    assert_eq!(report.outcome, Outcome::Failed);
    let errors: Vec<&str> = report
        .licenses
        .iter()
        .filter_map(|l| l.error.as_ref())
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(errors, vec!["Configuration"]);
    assert!(
        report
            .licenses
            .iter()
            .any(|l| l.status_after.as_deref() == Some("ACTIVE")),
        "the held license still proceeds"
    );
}

#[tokio::test]
async fn all_marketplace_and_ou_rules_and_tags_select_licenses() {
    let mut world = World::healthy();
    world.lm[0] = licenses(vec![held(LICENSE, SKU), held(OTHER_LICENSE, "prod-sku-2")]);
    world.member_lm[0] = received(vec![account_grant(GRANT, GrantStatus::Active, "1")]);
    let report =
        run(&world.engine(&[("PRODUCT_SKUS", ""), ("ALL_MARKETPLACE_LICENSES", "true")])).await;
    assert_eq!(report.licenses.len(), 2);

    let report = run(&world.engine(&[("OU_LICENSE_RULES", &format!(r#"{{"{OU}": []}}"#))])).await;
    assert_eq!(
        report.outcome,
        Outcome::Skipped,
        "an empty OU rule selects nothing"
    );
    assert_eq!(calls(&report, "sts:AssumeRole"), 0);

    let report = run(&world.engine(&[("TARGET_OUS", "ou-zz99-zzzzzzzz")])).await;
    assert_eq!(report.outcome, Outcome::Skipped);
    assert!(report.reason.unwrap_or_default().contains("TARGET_OUS"));

    let report = run(&world.engine(&[("ACCOUNT_TAG_FILTER", "marketplace=yes")])).await;
    assert_eq!(report.outcome, Outcome::Skipped);

    world.org = org_rules(
        AccountState::Active,
        vec![Tag::builder()
            .key("ct-entitlements:licenses")
            .value("prod-sku-2")
            .build()
            .unwrap()],
    );
    let report = run(&world.engine(&[("LICENSES_TAG_KEY", "ct-entitlements:licenses")])).await;
    let arns: Vec<&str> = report
        .licenses
        .iter()
        .map(|l| l.license_arn.as_str())
        .collect();
    assert_eq!(arns, vec![LICENSE, OTHER_LICENSE]);
}

#[tokio::test]
async fn account_outside_the_organization_is_permanent_and_touches_nothing() {
    let mut world = World::healthy();
    world.org[1] =
        mock!(aws_sdk_organizations::Client::describe_account).then_http_response(|| {
            json_error(
                400,
                "AccountNotFoundException",
                "You specified an account that doesn't exist.",
            )
        });
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert_eq!(
        report.error.as_ref().map(|e| (e.kind.as_str(), e.retry)),
        Some(("NotInOrganization", shared::error::Retry::Permanent))
    );
    assert_eq!(calls(&report, "sts:AssumeRole"), 0);

    let mut world = World::healthy();
    world.org = org_rules(AccountState::Suspended, vec![]);
    let report = run(&world.engine(&[])).await;
    assert_eq!(
        report.error.as_ref().map(|e| e.kind.as_str()),
        Some("NotInOrganization")
    );
}

#[tokio::test]
async fn failed_control_tower_event_is_skipped_without_calls() {
    let world = World::healthy();
    let mut event = create_event();
    event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["state"] = json!("FAILED");
    event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["account"]["accountId"] =
        json!("Not Available");
    let Ok(request @ Request::Skip { .. }) = parse_request(&event) else {
        panic!("expected skip")
    };
    let report = world.engine(&[]).run(request).await;
    assert_eq!(report.outcome, Outcome::Skipped);
    assert!(report.api_calls.is_empty());
}

#[tokio::test]
async fn sqs_batch_reports_only_failed_messages() {
    let world = World::healthy();
    let engine = world.engine(&[]);
    let batch = json!({"Records": [
        {"messageId": "good", "eventSource": "aws:sqs", "body": create_event().to_string()},
        {"messageId": "bad-json", "eventSource": "aws:sqs", "body": "{"},
        {"messageId": "bad-account", "eventSource": "aws:sqs", "body": json!({"accountId": "12"}).to_string()},
    ]});
    let out = account_lifecycle::handle(&engine, batch)
        .await
        .expect("batch response");
    assert_eq!(
        out,
        json!({"batchItemFailures": [{"itemIdentifier": "bad-json"}, {"itemIdentifier": "bad-account"}]})
    );
    assert_eq!(world.lm[2].num_calls(), 1, "the good message was worked");
}

#[tokio::test]
async fn direct_invocation_returns_the_report_or_a_classified_error() {
    let world = World::healthy();
    let engine = world.engine(&[]);
    let out = account_lifecycle::handle(&engine, create_event())
        .await
        .expect("report");
    assert_eq!(out["outcome"], "entitled");
    assert_eq!(out["licenses"][0]["statusAfter"], "ACTIVE");
    let err = account_lifecycle::handle(&engine, json!({"source": "aws.s3"}))
        .await
        .expect_err("bad input");
    assert_eq!(
        (err.kind(), err.retry()),
        ("InvalidInput", shared::error::Retry::Permanent)
    );
}

/// account-lifecycle's events: Control Tower lifecycle events and SQS batches.
const LIFECYCLE_EVENT_PREFIXES: &[&str] = &["create-", "update-", "sqs-"];

#[tokio::test]
async fn every_shipped_event_parses_and_runs_through_the_handler() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("events/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // Other functions' events are tested beside those functions.
        if !LIFECYCLE_EVENT_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let payload: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let world = World::healthy();
        let out = account_lifecycle::handle(&world.engine(&[]), payload.clone()).await;
        if name.starts_with("sqs-") {
            // The typed SQS event of aws_lambda_events accepts it too.
            let typed: aws_lambda_events::sqs::SqsEvent =
                serde_json::from_value(payload).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(typed.records.len(), 1, "{name}");
            assert_eq!(out.unwrap(), json!({"batchItemFailures": []}), "{name}");
            assert_eq!(world.lm[2].num_calls(), 1, "{name}: the account was worked");
        } else {
            let typed: aws_lambda_events::cloudwatch_events::CloudWatchEvent =
                serde_json::from_value(payload).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(typed.source.as_deref(), Some("aws.controltower"), "{name}");
            let report = out.unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected = if name == "create-failed.json" {
                "skipped"
            } else {
                "entitled"
            };
            assert_eq!(report["outcome"], expected, "{name}: {report}");
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "create-failed.json",
            "create-managed-account.json",
            "sqs-lifecycle-event.json",
            "sqs-onboard-request.json",
            "update-managed-account.json"
        ]
    );
}

// ---------- issue 8: AWS as documented ----------

const CONFLICT: &str =
    "This account already has an active license for the same product from another subscription";

#[tokio::test]
async fn organization_grant_in_any_state_covers_the_account_no_second_grant() {
    for parent_status in [
        GrantStatus::Active,
        GrantStatus::Disabled,
        GrantStatus::WorkflowCompleted,
        GrantStatus::PendingWorkflow,
    ] {
        let mut world = World::healthy();
        world.lm[1] = distributed(
            ORG_ARN,
            vec![grant(
                ORG_GRANT,
                parent_status.clone(),
                "1",
                LICENSE,
                ORG_ARN,
            )],
        );
        world.lm.push(no_distributed());
        world.lm.push(org_received(vec![]));
        let report = run(&world.engine(&[])).await;
        assert_eq!(
            report.outcome,
            Outcome::Pending,
            "{parent_status:?}: {report:#?}"
        );
        assert_eq!(
            world.lm[2].num_calls(),
            0,
            "{parent_status:?}: no CreateGrant beside it"
        );
        assert_eq!(
            world.lm[4].num_calls(),
            1,
            "the management side was asked once"
        );
        let l = &report.licenses[0];
        assert_eq!(l.grant_arn.as_deref(), Some(ORG_GRANT));
        assert_eq!(l.grant_source.as_deref(), Some("organization"));
        assert!(l
            .pending_reason
            .as_deref()
            .unwrap_or_default()
            .contains("not there yet"));
        assert_eq!(world.sqs[0].num_calls(), 1, "re-checked later");
    }
}

#[tokio::test]
async fn child_found_from_the_management_side_is_activated_individually() {
    let mut world = World::healthy();
    world.lm[1] = distributed(
        ORG_ARN,
        vec![grant(
            ORG_GRANT,
            GrantStatus::WorkflowCompleted,
            "1",
            LICENSE,
            ORG_ARN,
        )],
    );
    world.lm.push(no_distributed());
    world
        .lm
        .push(org_received(vec![child_grant(GrantStatus::Disabled)]));
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Entitled, "{report:#?}");
    let l = &report.licenses[0];
    assert_eq!(l.grant_arn.as_deref(), Some(CHILD_GRANT));
    assert_eq!(l.grant_source.as_deref(), Some("organization"));
    assert_eq!(l.actions, vec!["ActivateGrant"]);
    assert_eq!(world.lm[2].num_calls(), 0);
}

#[tokio::test]
async fn grant_to_a_parent_ou_covers_accounts_in_nested_ous() {
    const TOP_OU: &str = "ou-ab12-toplevel";
    const TOP_OU_ARN: &str = "arn:aws:organizations::111111111111:ou/o-abc1234567/ou-ab12-toplevel";
    let mut world = World::healthy();
    world.org[2] = mock!(aws_sdk_organizations::Client::list_parents).then_output(|| {
        ListParentsOutput::builder()
            .parents(
                Parent::builder()
                    .id(OU)
                    .r#type(ParentType::OrganizationalUnit)
                    .build(),
            )
            .build()
    });
    world.org[2] = mock!(aws_sdk_organizations::Client::list_parents)
        .match_requests(|r| r.child_id() == Some(ACCOUNT))
        .then_output(|| {
            ListParentsOutput::builder()
                .parents(
                    Parent::builder()
                        .id(OU)
                        .r#type(ParentType::OrganizationalUnit)
                        .build(),
                )
                .build()
        });
    world.org.push(
        mock!(aws_sdk_organizations::Client::list_parents)
            .match_requests(|r| r.child_id() == Some(OU))
            .then_output(|| {
                ListParentsOutput::builder()
                    .parents(
                        Parent::builder()
                            .id(TOP_OU)
                            .r#type(ParentType::OrganizationalUnit)
                            .build(),
                    )
                    .build()
            }),
    );
    world.org.push(
        mock!(aws_sdk_organizations::Client::list_parents)
            .match_requests(|r| r.child_id() == Some(TOP_OU))
            .then_output(|| {
                ListParentsOutput::builder()
                    .parents(
                        Parent::builder()
                            .id("r-ab12")
                            .r#type(ParentType::Root)
                            .build(),
                    )
                    .build()
            }),
    );
    world.lm[1] = distributed(
        TOP_OU_ARN,
        vec![grant(
            ORG_GRANT,
            GrantStatus::WorkflowCompleted,
            "1",
            LICENSE,
            TOP_OU_ARN,
        )],
    );
    world.lm.push(no_distributed());
    world.lm.push(org_received(vec![]));
    let report = run(&world.engine(&[])).await;
    // The grant to the OU above is found (the walk reads each parent once and stops at the
    // root), and looked under on the organization side; but no account-level grant is promised
    // to an account in a nested OU (undocumented: `ouGrantsReachNestedOus`), so once that look
    // found none the account gets its own grant rather than waiting for one.
    assert_eq!(world.org[5].num_calls(), 1, "the walk stops at the root");
    assert_eq!(world.lm[4].num_calls(), 1, "{report:#?}");
    assert_eq!(world.lm[2].num_calls(), 1, "{report:#?}");
    assert_eq!(report.licenses[0].actions[0], "CreateGrant", "{report:#?}");
}

#[tokio::test]
async fn a_grant_to_the_accounts_own_ou_promises_a_child_that_is_waited_for() {
    const OU_ARN: &str = "arn:aws:organizations::111111111111:ou/o-abc1234567/ou-ab12-cdef3456";
    assert!(OU_ARN.ends_with(OU), "the account's own OU");
    let mut world = World::healthy();
    world.org[2] = mock!(aws_sdk_organizations::Client::list_parents)
        .match_requests(|r| r.child_id() == Some(OU))
        .then_output(|| {
            ListParentsOutput::builder()
                .parents(
                    Parent::builder()
                        .id("r-ab12")
                        .r#type(ParentType::Root)
                        .build(),
                )
                .build()
        });
    world.lm[1] = distributed(
        OU_ARN,
        vec![grant(
            ORG_GRANT,
            GrantStatus::WorkflowCompleted,
            "1",
            LICENSE,
            OU_ARN,
        )],
    );
    world.lm.push(no_distributed());
    world.lm.push(org_received(vec![]));
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Pending, "{report:#?}");
    assert_eq!(
        world.lm[2].num_calls(),
        0,
        "no grant beside a promised child"
    );
    assert_eq!(report.licenses[0].grant_arn.as_deref(), Some(ORG_GRANT));
}

#[tokio::test]
async fn offboarding_never_touches_children_of_organization_grants() {
    let mut world = World::healthy();
    // The harsher reading: children also show in the grantor's distributed list.
    world.lm[1] = distributed(
        "arn:aws:iam::210987654321:root",
        vec![
            child_grant(GrantStatus::Active),
            account_grant(GRANT, GrantStatus::Active, "4"),
        ],
    );
    let touched = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t = touched.clone();
    world.lm.push(
        mock!(aws_sdk_licensemanager::Client::create_grant_version)
            .match_requests(move |r| {
                t.lock()
                    .unwrap()
                    .push(r.grant_arn().unwrap_or_default().to_string());
                true
            })
            .then_output(|| {
                CreateGrantVersionOutput::builder()
                    .status(GrantStatus::Disabled)
                    .version("5")
                    .build()
            }),
    );
    let engine = world.engine(&[]);
    let report = engine
        .offboard(
            &shared::ids::AccountId::parse(ACCOUNT).unwrap(),
            None,
            shared::engine::OffboardMode::Deactivate,
            "test",
        )
        .await;
    assert_eq!(report.outcome, Outcome::Offboarded, "{report:#?}");
    assert_eq!(*touched.lock().unwrap(), vec![GRANT.to_string()]);
    assert_eq!(report.licenses.len(), 1);
}

#[tokio::test]
async fn asynchronous_activation_is_remembered_and_not_requested_again() {
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![account_grant(GRANT, GrantStatus::Disabled, "1")]);
    world.member_lm[2] =
        mock!(aws_sdk_licensemanager::Client::create_grant_version).then_output(|| {
            CreateGrantVersionOutput::builder()
                .grant_arn(GRANT)
                .status(GrantStatus::Disabled)
                .version("2")
                .build()
        });
    world.lm.push(get_grant_rule(account_grant(
        GRANT,
        GrantStatus::Disabled,
        "2",
    )));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let b = bodies.clone();
    world.sqs = vec![mock!(aws_sdk_sqs::Client::send_message)
        .match_requests(move |r| {
            b.lock()
                .unwrap()
                .push(r.message_body().unwrap_or_default().to_string());
            true
        })
        .then_output(|| SendMessageOutput::builder().message_id("m").build())];
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Pending, "{report:#?}");
    assert_eq!(world.member_lm[2].num_calls(), 1);
    let body = bodies.lock().unwrap()[0].clone();
    let recheck: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(recheck["activations"][0]["grantArn"], GRANT);
    assert_eq!(recheck["activations"][0]["version"], "2");

    // The re-check, in a fresh container: the grant is still DISABLED at version 2.
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![account_grant(GRANT, GrantStatus::Disabled, "2")]);
    let report = world
        .engine(&[])
        .run(shared::inbound::parse_body(&body).unwrap())
        .await;
    assert_eq!(report.outcome, Outcome::Pending, "{report:#?}");
    assert_eq!(
        world.member_lm[2].num_calls(),
        0,
        "no second activation while it is applied"
    );
    assert_eq!(
        report.licenses[0].pending_reason.as_deref(),
        Some("activation requested, not applied yet")
    );
}

#[tokio::test]
async fn conflict_as_a_status_reason_is_a_permanent_conflict_naming_the_other_license() {
    let mut world = World::healthy();
    let other_active = {
        let mut g = account_grant(NEW_GRANT, GrantStatus::Active, "3");
        g.license_arn = OTHER_LICENSE.into();
        g
    };
    world.lm[0] = licenses(vec![held(LICENSE, SKU), held(OTHER_LICENSE, SKU)]);
    world.member_lm[0] = received(vec![
        account_grant(GRANT, GrantStatus::Disabled, "1"),
        other_active,
    ]);
    world.member_lm[2] = mock!(aws_sdk_licensemanager::Client::create_grant_version)
        .match_requests(|r| r.grant_arn() == Some(GRANT))
        .then_output(|| {
            CreateGrantVersionOutput::builder()
                .grant_arn(GRANT)
                .status(GrantStatus::Disabled)
                .version("2")
                .build()
        });
    world.lm.push(get_grant_rule(with_reason(
        account_grant(GRANT, GrantStatus::Disabled, "2"),
        CONFLICT,
    )));
    let report = run(&world.engine(&[("LICENSE_ARNS", LICENSE), ("PRODUCT_SKUS", "")])).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:#?}");
    let err = report.licenses[0].error.as_ref().expect("license error");
    assert_eq!(err.kind, "ActiveLicenseConflict");
    assert_eq!(err.retry, shared::error::Retry::Permanent);
    assert!(err.message.contains(OTHER_LICENSE), "{}", err.message);
    assert_eq!(
        world.member_lm[2].num_calls(),
        1,
        "activated once, never in a loop"
    );
    assert_eq!(
        world.sqs[0].num_calls(),
        0,
        "no re-check for a permanent conflict"
    );
}

#[tokio::test]
async fn failed_workflow_grant_is_deleted_and_replaced_by_the_next_generation() {
    let mut world = World::healthy();
    world.lm[1] = distributed(
        "arn:aws:iam::210987654321:root",
        vec![with_reason(
            account_grant(GRANT, GrantStatus::FailedWorkflow, "1"),
            "service-linked role missing",
        )],
    );
    world.lm.push(no_distributed());
    let deleted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let d = deleted.clone();
    world.lm.push(
        mock!(aws_sdk_licensemanager::Client::delete_grant)
            .match_requests(move |r| {
                d.lock()
                    .unwrap()
                    .push(r.grant_arn().unwrap_or_default().to_string());
                true
            })
            .then_output(|| {
                DeleteGrantOutput::builder()
                    .status(GrantStatus::Deleted)
                    .version("2")
                    .build()
            }),
    );
    let tokens = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t = tokens.clone();
    world.lm[2] = mock!(aws_sdk_licensemanager::Client::create_grant)
        .match_requests(move |r| {
            t.lock()
                .unwrap()
                .push(r.client_token().unwrap_or_default().to_string());
            true
        })
        .then_output(|| {
            CreateGrantOutput::builder()
                .grant_arn(NEW_GRANT)
                .status(GrantStatus::Disabled)
                .version("1")
                .build()
        });
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Entitled, "{report:#?}");
    assert_eq!(*deleted.lock().unwrap(), vec![GRANT.to_string()]);
    assert_eq!(
        actions(&report),
        vec!["DeleteGrant", "CreateGrant", "ActivateGrant"]
    );
    let account = shared::ids::AccountId::parse(ACCOUNT).unwrap();
    assert_eq!(
        *tokens.lock().unwrap(),
        vec![shared::engine::grant_client_token(&account, LICENSE, 1)],
        "the replacement is the next generation"
    );
}

#[tokio::test]
async fn token_replay_returning_a_dead_grant_takes_the_next_generation() {
    let mut world = World::healthy();
    let tokens = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t = tokens.clone();
    world.lm[2] = mock!(aws_sdk_licensemanager::Client::create_grant)
        .match_requests(move |r| {
            t.lock()
                .unwrap()
                .push(r.client_token().unwrap_or_default().to_string());
            true
        })
        .then_output(|| {
            CreateGrantOutput::builder()
                .grant_arn(GRANT)
                .status(GrantStatus::PendingWorkflow)
                .version("1")
                .build()
        });
    // The first token names a grant deleted since; the second makes a live one.
    world.lm.push(
        mock!(aws_sdk_licensemanager::Client::get_grant)
            .sequence()
            .output(|| {
                GetGrantOutput::builder()
                    .grant(account_grant(GRANT, GrantStatus::Deleted, "2"))
                    .build()
            })
            .output(|| {
                GetGrantOutput::builder()
                    .grant(account_grant(NEW_GRANT, GrantStatus::Disabled, "1"))
                    .build()
            })
            .build(),
    );
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Entitled, "{report:#?}");
    let account = shared::ids::AccountId::parse(ACCOUNT).unwrap();
    assert_eq!(
        *tokens.lock().unwrap(),
        vec![
            shared::engine::grant_client_token(&account, LICENSE, 0),
            shared::engine::grant_client_token(&account, LICENSE, 1),
        ]
    );
    assert!(report.licenses[0].error.is_none());
}

#[tokio::test]
async fn operations_the_grantor_does_not_hold_are_left_out_and_named() {
    let limited = |ops: Vec<AllowedOperation>| {
        let mut l = held(LICENSE, SKU);
        l.received_metadata = Some(
            aws_sdk_licensemanager::types::ReceivedMetadata::builder()
                .set_allowed_operations(Some(ops))
                .build(),
        );
        l
    };
    let mut world = World::healthy();
    world.lm[0] = licenses(vec![limited(vec![
        AllowedOperation::CheckoutLicense,
        AllowedOperation::CheckInLicense,
    ])]);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    world.lm[2] = mock!(aws_sdk_licensemanager::Client::create_grant)
        .match_requests(move |r| {
            s.lock().unwrap().extend(
                r.allowed_operations()
                    .iter()
                    .map(|o| o.as_str().to_string()),
            );
            true
        })
        .then_output(|| {
            CreateGrantOutput::builder()
                .grant_arn(NEW_GRANT)
                .status(GrantStatus::Disabled)
                .version("1")
                .build()
        });
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Entitled, "{report:#?}");
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["CheckoutLicense", "CheckInLicense"]
    );
    let warning = report.licenses[0].warnings.join(" ");
    assert!(
        warning.contains("ExtendConsumptionLicense") && warning.contains("ListPurchasedLicenses"),
        "{warning}"
    );

    // Nothing in common: a configuration error, and no CreateGrant.
    let mut world = World::healthy();
    world.lm[0] = licenses(vec![limited(vec![AllowedOperation::CreateToken])]);
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Failed);
    let err = report.licenses[0].error.as_ref().expect("error");
    assert_eq!(err.kind, "Configuration");
    assert!(err.message.contains("CreateToken"), "{}", err.message);
    assert_eq!(world.lm[2].num_calls(), 0);
}

#[tokio::test]
async fn account_states_other_than_active_suspended_closing_are_retryable() {
    for (state, kind, retry) in [
        (
            AccountState::PendingActivation,
            "AccountNotReady",
            shared::error::Retry::Retryable,
        ),
        (
            AccountState::from("SOMETHING_NEW"),
            "AccountNotReady",
            shared::error::Retry::Retryable,
        ),
        (
            AccountState::Suspended,
            "NotInOrganization",
            shared::error::Retry::Permanent,
        ),
        (
            AccountState::PendingClosure,
            "NotInOrganization",
            shared::error::Retry::Permanent,
        ),
    ] {
        let mut world = World::healthy();
        world.org = org_rules(state.clone(), vec![]);
        let report = run(&world.engine(&[])).await;
        let err = report.error.as_ref().expect("account error");
        assert_eq!((err.kind.as_str(), err.retry), (kind, retry), "{state:?}");
        assert_eq!(calls(&report, "sts:AssumeRole"), 0, "{state:?}");
        assert_eq!(world.lm[2].num_calls(), 0);
    }
}

#[tokio::test]
async fn the_account_the_stack_runs_in_is_never_granted_to() {
    let world = World::healthy();
    let report = run(&world.engine(&[("SELF_ACCOUNT_ID", ACCOUNT)])).await;
    assert_eq!(report.outcome, Outcome::Skipped, "{report:#?}");
    assert_eq!(calls(&report, "sts:AssumeRole"), 0);
    assert_eq!(world.lm[2].num_calls(), 0);
}

#[tokio::test]
async fn reconcile_never_offboards_an_account_that_is_not_active_yet() {
    use aws_sdk_organizations::operation::list_accounts_for_parent::ListAccountsForParentOutput;
    use aws_sdk_organizations::operation::list_organizational_units_for_parent::ListOrganizationalUnitsForParentOutput;
    use aws_sdk_organizations::operation::list_roots::ListRootsOutput;
    use aws_sdk_organizations::types::Root;
    let mut world = World::healthy();
    let account =
        |id: &str, state: AccountState| Account::builder().id(id).name(id).state(state).build();
    world.org.push(
        mock!(aws_sdk_organizations::Client::list_roots).then_output(|| {
            ListRootsOutput::builder()
                .roots(Root::builder().id("r-ab12").build())
                .build()
        }),
    );
    world.org.push(
        mock!(aws_sdk_organizations::Client::list_accounts_for_parent).then_output(move || {
            ListAccountsForParentOutput::builder()
                .accounts(account(MGMT, AccountState::Active))
                .accounts(account(ACCOUNT, AccountState::Active))
                .accounts(account("222222222222", AccountState::PendingActivation))
                .accounts(account("333333333333", AccountState::Suspended))
                .build()
        }),
    );
    world.org.push(
        mock!(aws_sdk_organizations::Client::list_organizational_units_for_parent)
            .then_output(|| ListOrganizationalUnitsForParentOutput::builder().build()),
    );
    let engine = world.engine(&[]);
    let config = shared::reconcile::ReconcileConfig::from_lookup(|k| match k {
        "ONBOARDING_QUEUE_URL" => Some(QUEUE.to_string()),
        "OFFBOARD_MODE" => Some("deactivate".to_string()),
        _ => None,
    })
    .unwrap();
    let report = shared::reconcile::reconcile(
        &engine,
        &config,
        shared::reconcile::Scope::Organization,
        true,
    )
    .await;
    assert!(report.error.is_none(), "{report:#?}");
    assert_eq!(report.onboard, vec![ACCOUNT.to_string()]);
    assert!(
        report.skipped["222222222222"].contains("not ready"),
        "{report:#?}"
    );
    assert_eq!(report.offboard, vec!["333333333333".to_string()]);
}

#[tokio::test]
async fn event_ou_and_unused_tags_are_not_read_again() {
    let world = World::healthy();
    // A Control Tower event names the OU: ListParents only for the OU's own parent.
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Entitled, "{report:#?}");
    assert_eq!(calls(&report, "organizations:ListParents"), 1);
    assert_eq!(
        calls(&report, "organizations:ListTagsForResource"),
        0,
        "no rule reads tags"
    );
    assert_eq!(report.ou_id.as_deref(), Some(OU));

    // An onboard request names no OU: the account's parent is read too.
    let engine = world.engine(&[]);
    let request = parse_request(&json!({"accountId": ACCOUNT})).expect("valid request");
    let report = engine.run(request).await;
    assert_eq!(calls(&report, "organizations:ListParents"), 2);
    assert_eq!(report.ou_id.as_deref(), Some(OU));

    // A reconciler's message carries the OU it listed: not read again either.
    let report = world
        .engine(&[])
        .run(parse_request(&json!({"accountId": ACCOUNT, "ouId": OU})).expect("valid request"))
        .await;
    assert_eq!(calls(&report, "organizations:ListParents"), 1);
    assert_eq!(report.ou_id.as_deref(), Some(OU));

    // An OU id that is not one is not trusted.
    let mut event = create_event();
    event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["organizationalUnit"]
        ["organizationalUnitId"] = json!("Custom OU");
    let report = world
        .engine(&[])
        .run(parse_request(&event).expect("valid event"))
        .await;
    assert_eq!(calls(&report, "organizations:ListParents"), 2);
    assert_eq!(report.ou_id.as_deref(), Some(OU));

    // A tag rule makes the tags worth reading.
    for env in [
        ("LICENSES_TAG_KEY", "ct-entitlements:licenses"),
        ("ACCOUNT_TAG_FILTER", "marketplace=yes"),
    ] {
        let report = run(&world.engine(&[env])).await;
        assert_eq!(
            calls(&report, "organizations:ListTagsForResource"),
            1,
            "{env:?}"
        );
    }
}

#[tokio::test]
async fn backfill_work_rechecks_on_the_backfill_queue_new_work_on_the_onboarding_queue() {
    const BACKFILL: &str = "https://sqs.us-east-1.amazonaws.com/111122223333/backfill";
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![account_grant(
        GRANT,
        GrantStatus::PendingWorkflow,
        "1",
    )]);
    let to = |queue: &'static str, backfill: bool| {
        mock!(aws_sdk_sqs::Client::send_message)
            .match_requests(move |req| {
                let body: Value = serde_json::from_str(req.message_body().unwrap_or_default())
                    .unwrap_or_default();
                req.queue_url() == Some(queue)
                    && body["backfill"].as_bool().unwrap_or(false) == backfill
            })
            .then_output(|| SendMessageOutput::builder().message_id("m").build())
    };
    world.sqs = vec![to(BACKFILL, true), to(QUEUE, false)];
    let engine = world.engine(&[("BACKFILL_QUEUE_URL", BACKFILL)]);

    let backfill = parse_request(&json!({"accountId": ACCOUNT, "backfill": true})).unwrap();
    assert_eq!(engine.run(backfill).await.outcome, Outcome::Pending);
    assert_eq!(
        world.sqs[0].num_calls(),
        1,
        "re-check on the backfill queue"
    );
    assert_eq!(world.sqs[1].num_calls(), 0);

    let report = run(&engine).await; // a Control Tower event: new work
    assert_eq!(report.outcome, Outcome::Pending);
    assert_eq!(world.sqs[0].num_calls(), 1);
    assert_eq!(
        world.sqs[1].num_calls(),
        1,
        "re-check on the onboarding queue"
    );
}

/// Issue 12: the account report line carries its metrics in CloudWatch's Embedded Metric
/// Format, checked here as CloudWatch Logs reads it (AWS, "Specification: Embedded metric
/// format": the `_aws` directive, every dimension key a top-level string, every metric a
/// top-level number, at most 30 dimensions and 100 metrics, a known unit).
fn cloudwatch_metrics(line: &str) -> HashMap<String, f64> {
    const UNITS: &[&str] = &[
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Count",
        "Percent",
        "None",
    ];
    let doc: Value = serde_json::from_str(line).expect("one JSON object per line");
    let aws = &doc["_aws"];
    assert!(
        aws["Timestamp"]
            .as_u64()
            .is_some_and(|t| t > 1_600_000_000_000),
        "{aws}"
    );
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert!(!directives.is_empty());
    let mut out = HashMap::new();
    for d in directives {
        assert!(d["Namespace"].as_str().is_some_and(|n| !n.is_empty()));
        for set in d["Dimensions"].as_array().expect("Dimensions") {
            let keys = set.as_array().expect("a dimension set");
            assert!(!keys.is_empty() && keys.len() <= 30);
            for k in keys {
                let k = k.as_str().expect("dimension key");
                assert!(
                    doc[k].is_string(),
                    "dimension {k} is not a top-level string"
                );
                assert_ne!(k, "AccountId", "no per-account dimension");
            }
        }
        let metrics = d["Metrics"].as_array().expect("Metrics");
        assert!(metrics.len() <= 100);
        for m in metrics {
            let name = m["Name"].as_str().expect("metric name");
            let unit = m["Unit"].as_str().unwrap_or("None");
            assert!(UNITS.contains(&unit), "{name}: unit {unit}");
            let value = doc[name]
                .as_f64()
                .unwrap_or_else(|| panic!("metric {name} is not a top-level number"));
            out.insert(name.to_string(), value);
        }
    }
    out
}

#[tokio::test]
async fn report_lines_carry_their_metrics_as_cloudwatch_reads_them() {
    let world = World::healthy();
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Entitled);
    let line = shared::report::account_report_line(&report, 1_800_000_000);
    let doc: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(doc["type"], "accountReport");
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["Outcome"], "entitled");
    assert_eq!(doc["report"]["accountId"], ACCOUNT);
    let m = cloudwatch_metrics(&line);
    assert_eq!(m["Accounts"], 1.0);
    assert_eq!(m["GrantsCreated"], 1.0);
    assert_eq!(m["GrantsAccepted"], 1.0);
    assert_eq!(m["GrantsActivated"], 1.0);
    assert_eq!(m["Rechecks"], 0.0);
    assert!(m["ApiCalls"] >= 10.0, "{m:?}");
    assert!(m.contains_key("TimeToActiveSeconds"));
    assert!(!m.contains_key("PendingSeconds"));

    // Pending: how long since the account's work started.
    let mut world = World::healthy();
    world.member_lm[0] = received(vec![account_grant(
        GRANT,
        GrantStatus::PendingWorkflow,
        "1",
    )]);
    let request =
        parse_request(&json!({"accountId": ACCOUNT, "attempt": 3, "firstSeen": 1_799_999_000}))
            .unwrap();
    let report = world.engine(&[]).run(request).await;
    assert_eq!(report.outcome, Outcome::Pending, "{report:#?}");
    let m = cloudwatch_metrics(&shared::report::account_report_line(&report, 1_800_000_000));
    assert_eq!(m["PendingSeconds"], 1000.0);
    assert_eq!(m["Rechecks"], 1.0);
}

/// Issue 11: at License Manager's grants-per-license quota the account's license fails
/// permanently, and the error names the quota and the organization/OU alternative.
#[tokio::test]
async fn grant_quota_reached_is_a_permanent_error_that_names_the_way_out() {
    let mut world = World::healthy();
    world.lm[2] = mock!(aws_sdk_licensemanager::Client::create_grant).then_http_response(|| {
        json_error(
            400,
            "ResourceLimitExceededException",
            "Grant limit exceeded for this license",
        )
    });
    let report = run(&world.engine(&[])).await;
    assert_eq!(report.outcome, Outcome::Failed, "{report:#?}");
    let error = report.licenses[0]
        .error
        .as_ref()
        .expect("the license failed");
    assert_eq!(
        error.code.as_deref(),
        Some("ResourceLimitExceededException")
    );
    assert_eq!(error.retry, shared::error::Retry::Permanent);
    for part in ["L-55F04DE6", "organization", "OUs", LICENSE] {
        assert!(error.message.contains(part), "{part}: {}", error.message);
    }
}
