//! The org-bootstrap custom resource end to end at the HTTP level: each request type's exact
//! response body as PUT to a local receiver standing in for the pre-signed S3 URL.
#![allow(clippy::unwrap_used)]

use aws_sdk_iam::operation::create_service_linked_role::CreateServiceLinkedRoleOutput;
use aws_sdk_iam::operation::list_roles::ListRolesOutput;
use aws_sdk_licensemanager::operation::get_service_settings::GetServiceSettingsOutput;
use aws_sdk_licensemanager::operation::update_service_settings::UpdateServiceSettingsOutput;
use aws_sdk_licensemanager::types::OrganizationConfiguration;
use aws_sdk_organizations::operation::enable_aws_service_access::EnableAwsServiceAccessOutput;
use aws_sdk_organizations::operation::list_aws_service_access_for_organization::ListAwsServiceAccessForOrganizationOutput;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use local_world::receiver::Receiver;
use org_bootstrap::{handle, App};
use serde_json::{json, Value};
use shared::custom_resource::Responder;
use std::time::Duration;
use tokio::time::Instant;

/// The stand-in ResponseURL and the JSON bodies PUT to it so far.
async fn receiver() -> (String, Receiver) {
    let r = Receiver::start(Vec::new()).await;
    (r.url.clone(), r)
}

fn bodies(r: &Receiver) -> Vec<Value> {
    for got in r.received.lock().unwrap().iter() {
        assert_eq!(got.method, "PUT");
    }
    r.bodies()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

fn request(kind: &str, url: &str, props: Value) -> Value {
    json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:111111111111:function:org-bootstrap",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:111111111111:stack/ct-entitlements/1",
        "RequestId": "req-1",
        "ResourceType": "Custom::OrgBootstrap",
        "LogicalResourceId": "OrgBootstrap",
        "ResourceProperties": props,
    })
}

struct Rules {
    org: Vec<Rule>,
    lm: Vec<Rule>,
    iam: Vec<Rule>,
}

fn healthy() -> Rules {
    Rules {
        org: vec![
            mock!(aws_sdk_organizations::Client::list_aws_service_access_for_organization)
                .then_output(|| ListAwsServiceAccessForOrganizationOutput::builder().build()),
            mock!(aws_sdk_organizations::Client::enable_aws_service_access)
                .then_output(|| EnableAwsServiceAccessOutput::builder().build()),
        ],
        lm: vec![
            mock!(aws_sdk_licensemanager::Client::get_service_settings).then_output(|| {
                GetServiceSettingsOutput::builder()
                    .organization_configuration(
                        OrganizationConfiguration::builder()
                            .enable_integration(true)
                            .build(),
                    )
                    .build()
            }),
            mock!(aws_sdk_licensemanager::Client::update_service_settings)
                .then_output(|| UpdateServiceSettingsOutput::builder().build()),
        ],
        iam: vec![
            mock!(aws_sdk_iam::Client::list_roles).then_output(|| {
                ListRolesOutput::builder()
                    .set_roles(Some(Vec::new()))
                    .is_truncated(false)
                    .build()
                    .unwrap()
            }),
            mock!(aws_sdk_iam::Client::create_service_linked_role)
                .then_output(|| CreateServiceLinkedRoleOutput::builder().build()),
        ],
    }
}

fn app(rules: &Rules) -> App {
    App {
        organizations: mock_client!(aws_sdk_organizations, RuleMode::MatchAny, &rules.org),
        license_manager: mock_client!(aws_sdk_licensemanager, RuleMode::MatchAny, &rules.lm),
        iam: mock_client!(aws_sdk_iam, RuleMode::MatchAny, &rules.iam),
        responder: Responder::new(true),
    }
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

const STACK: &str = "arn:aws:cloudformation:us-east-1:111111111111:stack/ct-entitlements/1";

#[tokio::test]
async fn create_sets_up_and_answers_success_with_what_changed() {
    let (url, rx) = receiver().await;
    let rules = healthy();
    handle(
        &app(&rules),
        request("Create", &url, json!({"DelegatedAdminAccountId": ""})),
        deadline(),
    )
    .await
    .unwrap();
    let steps = "trustedAccess:license-manager.amazonaws.com=enabled,trustedAccess:license-manager.member-account.amazonaws.com=enabled,trustedAccess:license-management.marketplace.amazonaws.com=enabled,organizationIntegration:license-manager=unchanged,serviceLinkedRole:license-manager.amazonaws.com=created,serviceLinkedRole:license-manager.master-account.amazonaws.com=created,serviceLinkedRole:license-manager.member-account.amazonaws.com=created,serviceLinkedRole:license-management.marketplace.amazonaws.com=created";
    assert_eq!(
        bodies(&rx),
        vec![json!({
            "Status": "SUCCESS", "Reason": "7 change(s)", "PhysicalResourceId": "ct-entitlements-org-bootstrap",
            "StackId": STACK, "RequestId": "req-1", "LogicalResourceId": "OrgBootstrap",
            "Data": {"Changed": "7", "Steps": steps}
        })]
    );
    assert_eq!(
        rules.lm[1].num_calls(),
        0,
        "integration already on: not touched"
    );
}

#[tokio::test]
async fn delete_changes_nothing_and_answers_success() {
    let (url, rx) = receiver().await;
    let rules = healthy();
    let mut req = request("Delete", &url, json!({}));
    req["PhysicalResourceId"] = json!("ct-entitlements-org-bootstrap");
    handle(&app(&rules), req, deadline()).await.unwrap();
    let body = bodies(&rx)[0].clone();
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["PhysicalResourceId"], "ct-entitlements-org-bootstrap");
    let calls: usize = rules
        .org
        .iter()
        .chain(&rules.lm)
        .chain(&rules.iam)
        .map(Rule::num_calls)
        .sum();
    assert_eq!(calls, 0, "Delete never disables anything");
}

#[tokio::test]
async fn bad_property_answers_failed_without_aws_calls() {
    let (url, rx) = receiver().await;
    let rules = healthy();
    handle(
        &app(&rules),
        request("Create", &url, json!({"DelegatedAdminAccountId": "12"})),
        deadline(),
    )
    .await
    .unwrap();
    let body = bodies(&rx)[0].clone();
    assert_eq!(body["Status"], "FAILED");
    assert!(
        body["Reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid input: DelegatedAdminAccountId"),
        "{body}"
    );
    let calls: usize = rules
        .org
        .iter()
        .chain(&rules.lm)
        .chain(&rules.iam)
        .map(Rule::num_calls)
        .sum();
    assert_eq!(calls, 0);
}

#[tokio::test]
async fn failed_step_answers_failed_with_the_reason() {
    let (url, rx) = receiver().await;
    let mut rules = healthy();
    rules.org[1] = mock!(aws_sdk_organizations::Client::enable_aws_service_access).then_http_response(|| {
        aws_smithy_runtime_api::client::orchestrator::HttpResponse::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
            aws_smithy_types::body::SdkBody::from(r#"{"__type":"AccessDeniedException","Message":"You don't have permissions to access this resource."}"#),
        )
    });
    handle(&app(&rules), request("Update", &url, json!({})), deadline())
        .await
        .unwrap();
    let body = bodies(&rx)[0].clone();
    assert_eq!(body["Status"], "FAILED");
    assert!(
        body["Reason"]
            .as_str()
            .unwrap()
            .contains("AccessDeniedException"),
        "{body}"
    );
}

#[tokio::test]
async fn a_panic_is_still_answered() {
    let (url, rx) = receiver().await;
    let mut rules = healthy();
    rules.lm[0] =
        mock!(aws_sdk_licensemanager::Client::get_service_settings).then_output(|| panic!("boom"));
    handle(&app(&rules), request("Create", &url, json!({})), deadline())
        .await
        .unwrap();
    let body = bodies(&rx)[0].clone();
    assert_eq!(body["Status"], "FAILED");
    assert!(body["Reason"].as_str().unwrap().contains("panic"), "{body}");
}

#[tokio::test]
async fn a_response_url_that_is_not_presigned_s3_is_never_contacted() {
    let rules = healthy();
    let mut responder_strict = app(&rules);
    responder_strict.responder = Responder::new(false);
    let err = handle(
        &responder_strict,
        request("Create", "http://127.0.0.1:9/response/1", json!({})),
        deadline(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "InvalidInput");
    let calls: usize = rules
        .org
        .iter()
        .chain(&rules.lm)
        .chain(&rules.iam)
        .map(Rule::num_calls)
        .sum();
    assert_eq!(calls, 0);
}

#[test]
fn shipped_event_is_a_valid_request_with_a_presigned_response_url() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/org-bootstrap-create.json");
    let payload: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let target = shared::custom_resource::Target::from_request(&payload).unwrap();
    assert_eq!(target.request_type, "Create");
    shared::custom_resource::validate_response_url(&target.response_url, false).unwrap();
    let options = org_bootstrap::options(&payload).unwrap();
    assert!(options.delegated_admin.is_none() && !options.dry_run);
}

/// An Organizations client whose endpoint accepts connections and never answers.
async fn silent_organizations() -> aws_sdk_organizations::Client {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    aws_sdk_organizations::Client::from_conf(
        aws_sdk_organizations::Config::builder()
            .behavior_version(aws_sdk_organizations::config::BehaviorVersion::latest())
            .region(aws_sdk_organizations::config::Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "AKID", "secret", None, None, "test",
            ))
            .endpoint_url(endpoint)
            .build(),
    )
}

// tokio's paused clock (the handler's deadlines are `tokio::time::Instant`s): the hung call
// waits on virtual time only, so `elapsed` is the handler's own bound, not the machine's speed,
// and the test waits no real seconds.
#[tokio::test(start_paused = true)]
async fn service_timeout_is_accepted_and_bounds_the_work() {
    let (url, rx) = receiver().await;
    let rules = healthy();
    let mut hung = app(&rules);
    hung.organizations = silent_organizations().await;
    let started = Instant::now();
    // CloudFormation passes ServiceTimeout as a string; 4 s leaves 2 s of work.
    handle(
        &hung,
        request("Create", &url, json!({"ServiceTimeout": "4"})),
        Instant::now() + Duration::from_secs(60),
    )
    .await
    .unwrap();
    let answered = started.elapsed();
    assert!(
        answered < Duration::from_secs(4),
        "answered within the ServiceTimeout, not at the Lambda deadline: {answered:?}"
    );
    assert!(
        answered >= Duration::from_secs(2),
        "the work had its 2 s: {answered:?}"
    );
    let body = bodies(&rx)[0].clone();
    assert_eq!(body["Status"], "FAILED", "{body}");
    assert!(
        body["Reason"]
            .as_str()
            .unwrap()
            .contains("before the resource's ServiceTimeout (4s)"),
        "{body}"
    );

    // A number works too, and a healthy set-up finishes well inside it.
    let (url, rx) = receiver().await;
    let rules = healthy();
    handle(
        &app(&rules),
        request("Create", &url, json!({"ServiceTimeout": 300})),
        deadline(),
    )
    .await
    .unwrap();
    assert_eq!(bodies(&rx)[0]["Status"], "SUCCESS");
}

#[tokio::test]
async fn invalid_service_timeout_answers_failed_without_aws_calls() {
    for bad in [json!("0"), json!(3601), json!("soon"), json!(2.5)] {
        let (url, rx) = receiver().await;
        let rules = healthy();
        handle(
            &app(&rules),
            request("Create", &url, json!({"ServiceTimeout": bad})),
            deadline(),
        )
        .await
        .unwrap();
        let body = bodies(&rx)[0].clone();
        assert_eq!(body["Status"], "FAILED", "{bad}: {body}");
        assert!(
            body["Reason"].as_str().unwrap().contains("ServiceTimeout"),
            "{body}"
        );
        let calls: usize = rules
            .org
            .iter()
            .chain(&rules.lm)
            .chain(&rules.iam)
            .map(Rule::num_calls)
            .sum();
        assert_eq!(calls, 0, "{bad}");
    }
}
