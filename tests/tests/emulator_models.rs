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
use local_world::{clients, http, seed};
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
}
