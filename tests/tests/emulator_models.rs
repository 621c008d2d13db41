//! The emulator checks every License Manager and Service Catalog request against AWS's
//! published API models (botocore's `service-2.json`, installed with moto): what the models
//! refuse is answered `ValidationException` and recorded, and a handle dropped with recorded
//! violations fails the test; the functions' own requests in an onboarding produce none.
#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_licensemanager::error::ProvideErrorMetadata;
use aws_sdk_licensemanager::types::AllowedOperation;
use hyper::Method;
use local_world::emulator::{self, ControlClient, EmulatorHandle, EmulatorOptions, LicenseSeed};
use local_world::{clients, http, seed, World};
use serde_json::{json, Value};

const MGMT: &str = "111111111111";
const MEMBER: &str = "222222222222";

async fn start() -> (EmulatorHandle, ControlClient, String) {
    let emu = emulator::start(EmulatorOptions::default()).await.unwrap();
    let control = emu.control();
    let license = control
        .seed_license(&LicenseSeed::marketplace(MGMT, "SKU-1", "Product"))
        .await
        .unwrap()["LicenseArn"]
        .as_str()
        .unwrap()
        .to_string();
    let report = control.model_report().await.unwrap();
    assert!(
        report.models.contains_key("license-manager")
            && report.models.contains_key("servicecatalog"),
        "the models must be found (botocore in the moto venv): {report:?}"
    );
    (emu, control, license)
}

/// A raw AWS JSON 1.1 request (for what the SDK cannot send): (status, body).
async fn raw(emu: &EmulatorHandle, target: &str, body: Value) -> (u16, Value) {
    let auth = http::fake_sigv4(MGMT, "license-manager");
    let response = http::send(
        Method::POST,
        &emu.url(),
        &[
            ("x-amz-target", target),
            ("content-type", "application/x-amz-json-1.1"),
            ("authorization", &auth),
        ],
        serde_json::to_vec(&body).unwrap(),
    )
    .await
    .unwrap();
    (
        response.status,
        serde_json::from_slice(&response.body).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn requests_the_models_refuse_are_answered_validation_exception_and_recorded() {
    let (emu, control, license) = start().await;
    let lm = clients::license_manager(&emu.url(), MGMT);
    let grant = || {
        lm.create_grant()
            .client_token("t")
            .grant_name("g")
            .license_arn(&license)
            .home_region("us-east-1")
            .principals(format!("arn:aws:iam::{MEMBER}:root"))
    };
    // A required member missing.
    let missing = grant().send().await.unwrap_err();
    // A value outside the enum.
    let unknown_op = grant()
        .allowed_operations(AllowedOperation::from("Teleport"))
        .send()
        .await
        .unwrap_err();
    // Too long (ClientToken: max 2048).
    let long = grant()
        .client_token("x".repeat(2049))
        .allowed_operations(AllowedOperation::CheckoutLicense)
        .send()
        .await
        .unwrap_err();
    // Not matching the whole pattern (an ARN with a prefix).
    let prefixed = lm
        .get_grant()
        .grant_arn(format!(
            " arn:aws:license-manager::{MGMT}:grant:g-00000000000000000000000000000000"
        ))
        .send()
        .await
        .unwrap_err();
    for (what, err) in [
        ("missing", missing.code()),
        ("enum", unknown_op.code()),
        ("length", long.code()),
        ("pattern", prefixed.code()),
    ] {
        assert_eq!(err, Some("ValidationException"), "{what}");
    }
    assert!(
        unknown_op
            .message()
            .unwrap()
            .contains("at 'AllowedOperations[0]' failed to satisfy constraint: Member must satisfy enum value set"),
        "{unknown_op:?}"
    );
    // A member the model does not know, and a wrong type (the SDK cannot send these).
    let (status, body) = raw(
        &emu,
        "AWSLicenseManager.ListReceivedLicenses",
        json!({ "MaxResults": "10", "Colour": "blue" }),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["__type"], "ValidationException", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("2 validation errors detected"),
        "{body}"
    );
    // Service Catalog too.
    let sc = clients::service_catalog(&emu.url(), MGMT);
    let err = sc
        .search_products_as_admin()
        .page_size(21)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));

    let found: Vec<(String, String, String)> = control
        .model_violations()
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.operation, v.member, v.constraint))
        .collect();
    let expected = [
        (
            "CreateGrant",
            "AllowedOperations",
            "Member must not be null",
        ),
        (
            "CreateGrant",
            "AllowedOperations[0]",
            "enum value set: [CreateGrant, CheckoutLicense",
        ),
        (
            "CreateGrant",
            "ClientToken",
            "length less than or equal to 2048",
        ),
        (
            "GetGrant",
            "GrantArn",
            "regular expression pattern: ^arn:aws",
        ),
        (
            "ListReceivedLicenses",
            "MaxResults",
            "Member must be an integer",
        ),
        (
            "ListReceivedLicenses",
            "Colour",
            "Member is not in the model",
        ),
        (
            "SearchProductsAsAdmin",
            "PageSize",
            "value less than or equal to 20",
        ),
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (op, member, constraint) in expected {
        assert!(
            found
                .iter()
                .any(|(o, m, c)| o == op && m == member && c.contains(constraint)),
            "{op} {member} {constraint} not in {found:#?}"
        );
    }
    // Nothing refused reached the emulated service.
    assert_eq!(control.state().await.unwrap()["grants"], json!([]));
    // Taken, they no longer fail the test.
    assert_eq!(control.take_model_violations().await.unwrap().len(), 7);
    assert!(control.model_violations().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_switches_turn_checking_off_or_record_without_refusing() {
    let (emu, control, _) = start().await;
    let bogus = json!({ "Colour": "blue" });
    control
        .configure(json!({ "refuseModelViolations": false }))
        .await
        .unwrap();
    let (status, body) = raw(
        &emu,
        "AWSLicenseManager.ListReceivedLicenses",
        bogus.clone(),
    )
    .await;
    assert_eq!(status, 200, "served: {body}");
    assert_eq!(control.take_model_violations().await.unwrap().len(), 1);

    control
        .configure(json!({ "checkModels": false, "refuseModelViolations": true }))
        .await
        .unwrap();
    let (status, body) = raw(&emu, "AWSLicenseManager.ListReceivedLicenses", bogus).await;
    assert_eq!(status, 200, "unchecked: {body}");
    assert!(control.model_violations().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_handle_dropped_with_violations_fails_the_test_that_sent_them() {
    let (emu, control, _) = start().await;
    raw(
        &emu,
        "AWSLicenseManager.ListReceivedLicenses",
        json!({ "Colour": 1 }),
    )
    .await;
    assert_eq!(control.model_violations().await.unwrap().len(), 1);
    let dropped = tokio::spawn(async move { drop(emu) }).await;
    let panic = dropped.unwrap_err().into_panic();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("ListReceivedLicenses: Colour = 1: Member is not in the model"),
        "{message}"
    );

    // Without `fail_on_model_violations` the handle only drops.
    let emu = emulator::start(EmulatorOptions {
        fail_on_model_violations: false,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    raw(
        &emu,
        "AWSLicenseManager.ListReceivedLicenses",
        json!({ "Colour": 1 }),
    )
    .await;
    assert!(tokio::spawn(async move { drop(emu) }).await.is_ok());
}

/// The requests the functions send to License Manager in a whole onboarding (grants created,
/// read back, activated) are all ones AWS's model accepts.
#[tokio::test]
async fn an_onboarding_sends_only_requests_the_models_accept() {
    let Some(mut s) = common::setup(seed::demo_spec()).await else {
        return;
    };
    let ou = s.org.ou("Workloads").unwrap().id.clone();
    let account = seed::add_account(&s.world, &mut s.org, "ModelChecked", &ou)
        .await
        .unwrap();
    let engine = s.engine(&[]);
    let report = s.onboard(&engine, s.create_event(&account.id, &ou)).await;
    assert_eq!(report["outcome"], "entitled", "{report:#}");

    let control = s.world.control();
    let checked = control.model_report().await.unwrap();
    assert!(
        checked.models.contains_key("license-manager"),
        "{checked:?}"
    );
    let calls = control.calls().await.unwrap();
    for op in ["CreateGrant", "CreateGrantVersion", "ListReceivedLicenses"] {
        assert!(calls.iter().any(|c| c.operation == op), "no {op} sent");
    }
    assert!(calls.iter().all(|c| c.outcome != "ValidationException"));
    assert_eq!(checked.violations, vec![], "{} calls checked", calls.len());
    // So are the ones they send to moto (Organizations, STS, IAM in the member account).
    let proxied = s.world.model_proxy().report();
    for op in [
        "organizations DescribeAccount",
        "organizations ListParents",
        "sts AssumeRole",
        "iam ListRoles",
    ] {
        assert!(
            proxied.checked.contains_key(op),
            "no {op} checked: {proxied:#?}"
        );
    }
    assert_eq!(proxied.violations, vec![], "{proxied:#?}");
    assert!(proxied.unchecked_requests.is_empty(), "{proxied:#?}");
}

/// One raw request to moto through the world's checking proxy: (status, body).
async fn to_moto(
    world: &World,
    service: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let auth = http::fake_sigv4("123456789012", service);
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    let response = http::send(
        Method::POST,
        &format!("{}/", world.moto_url()),
        &all,
        body.to_string(),
    )
    .await
    .unwrap();
    (response.status, response.text())
}

/// moto accepts requests AWS would refuse: the proxy in front of it checks every request
/// against the models (AWS JSON and query protocols alike), forwards it unchanged, and a world
/// dropped with a violation recorded fails the test that sent it.
#[tokio::test]
async fn requests_moto_accepts_but_the_models_refuse_fail_the_test_that_sent_them() {
    let Some(world) = World::start_or_skip().await else {
        return;
    };
    let report = world.model_proxy().report();
    for service in local_world::model_proxy::SERVICES {
        assert!(
            report.models.contains_key(service),
            "no {service} model: {report:?}"
        );
    }
    // Valid requests pass, and moto's answers come back unchanged.
    let me = world.sts().get_caller_identity().send().await.unwrap();
    assert_eq!(me.account(), Some("123456789012"));
    let queue = world
        .sqs()
        .create_queue()
        .queue_name("checked")
        .send()
        .await
        .unwrap();
    world
        .sqs()
        .send_message()
        .queue_url(queue.queue_url().unwrap())
        .message_body("ok")
        .send()
        .await
        .unwrap();
    // Unsigned requests (moto's own API) pass unchecked.
    assert!(http::get(&format!("{}/moto-api/", world.moto_url()))
        .await
        .unwrap()
        .is_success());
    assert!(world.model_proxy().report().violations.is_empty());

    // AWS JSON 1.1 (Organizations): an account id that is not 12 digits, through the SDK.
    let _ = world
        .organizations()
        .describe_account()
        .account_id("123")
        .send()
        .await;
    // AWS JSON 1.0 (SQS): SendMessage without its QueueUrl (the SDK cannot send it); moto
    // answers QueueDoesNotExist, AWS a validation error.
    let (status, body) = to_moto(
        &world,
        "sqs",
        &[
            ("x-amz-target", "AmazonSQS.SendMessage"),
            ("content-type", "application/x-amz-json-1.0"),
        ],
        &json!({ "MessageBody": "hi" }).to_string(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // Query (STS): a session name one character long (min 2), accepted by moto.
    let assumed = world
        .sts()
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/anything")
        .role_session_name("a")
        .send()
        .await;
    assert!(assumed.is_ok(), "moto accepts it: {assumed:?}");
    // Query (IAM): a parameter the model does not know, and a list of tags read back.
    let form = format!(
        "Action=CreateRole&Version=2010-05-08&RoleName=checked&AssumeRolePolicyDocument={}\
         &Tags.member.1.Key=k&Tags.member.1.Value=v&Colour=blue",
        http::form_encode("{}")
    );
    let (status, body) = to_moto(
        &world,
        "iam",
        &[(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )],
        &form,
    )
    .await;
    assert_eq!(status, 200, "moto accepts it: {body}");
    // An operation no model has.
    to_moto(
        &world,
        "sns",
        &[("content-type", "application/x-www-form-urlencoded")],
        "Action=Teleport&Version=2010-03-31",
    )
    .await;

    let report = world.model_proxy().report();
    for op in [
        "sts GetCallerIdentity",
        "sqs CreateQueue",
        "sqs SendMessage",
        "organizations DescribeAccount",
        "sqs SendMessage",
        "sts AssumeRole",
        "iam CreateRole",
    ] {
        assert!(
            report.checked.contains_key(op),
            "{op} not checked: {report:#?}"
        );
    }
    let found: Vec<(String, String, String, String, String)> = report
        .violations
        .iter()
        .cloned()
        .map(|v| (v.service, v.operation, v.member, v.constraint, v.value))
        .collect();
    let expected = [
        (
            "organizations",
            "DescribeAccount",
            "AccountId",
            "regular expression pattern: ^\\d{12}$",
            "'123'",
        ),
        (
            "sqs",
            "SendMessage",
            "QueueUrl",
            "Member must not be null",
            "null",
        ),
        (
            "sts",
            "AssumeRole",
            "RoleSessionName",
            "length greater than or equal to 2",
            "'a'",
        ),
        (
            "iam",
            "CreateRole",
            "Colour",
            "Member is not in the model",
            "'blue'",
        ),
        (
            "sns",
            "Teleport",
            "(operation)",
            "Operation is not in the model",
            "Teleport",
        ),
    ];
    for (service, op, member, constraint, value) in expected {
        assert!(
            found.iter().any(|(s, o, m, c, v)| s == service
                && o == op
                && m == member
                && c.contains(constraint)
                && v == value),
            "{service} {op} {member} {constraint} {value} not in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");

    // Taken, they no longer fail the test; left, they do when the world drops.
    assert_eq!(world.model_proxy().take_violations().len(), expected.len());
    let _ = world
        .organizations()
        .describe_account()
        .account_id("123")
        .send()
        .await;
    let dropped = tokio::spawn(async move { drop(world) }).await;
    let panic = dropped.unwrap_err().into_panic();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains(
            "organizations DescribeAccount: AccountId = '123': Member must satisfy regular \
             expression pattern: ^\\d{12}$"
        ),
        "{message}"
    );
}
