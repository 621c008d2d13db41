//! The `Custom::ConfigurationCheck` resource at the HTTP level: what it answers CloudFormation
//! (PUT to a local receiver standing in for the pre-signed URL) for good and bad
//! configurations, on the environment path and with a document (S3 mocked), and which AWS
//! calls it makes (none for anything it can refuse without reading the document).
#![allow(clippy::unwrap_used)]

use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use local_world::receiver::Receiver;
use org_bootstrap::check::{handle, CheckApp, PHYSICAL_ID};
use serde_json::{json, Value};
use shared::config::check_document;
use shared::config::document::{environment_size, LAMBDA_ENVIRONMENT_LIMIT};
use shared::custom_resource::Responder;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

const ARN: &str =
    "arn:aws:license-manager::294406891311:license:l-0123456789abcdef0123456789abcdef";
const DOC: &str = "s3://ct-config-bucket/ct-entitlements/configuration.json";

fn request(kind: &str, url: &str, props: Value) -> Value {
    json!({
        "RequestType": kind,
        "ServiceToken": "arn:aws:lambda:us-east-1:111111111111:function:org-bootstrap",
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:111111111111:stack/ct-entitlements/1",
        "RequestId": "req-1",
        "ResourceType": "Custom::ConfigurationCheck",
        "LogicalResourceId": "ConfigurationCheck",
        "ResourceProperties": props,
    })
}

/// A deciding function's environment as the template gives it on the environment path, with
/// realistic values for what the stack fills in (queue URLs, the account id).
fn environment(selection: &[(&str, &str)]) -> BTreeMap<String, String> {
    let queue = |name: &str| {
        format!(
            "https://sqs.us-east-1.amazonaws.com/111111111111/ct-entitlements-{name}-AbCdEfGh1234"
        )
    };
    let mut env: BTreeMap<String, String> = [
        ("RUST_LOG", "info".to_string()),
        ("SELF_ACCOUNT_ID", "111111111111".to_string()),
        ("ALL_MARKETPLACE_LICENSES", "false".to_string()),
        ("LICENSE_ARNS", String::new()),
        ("PRODUCT_SKUS", String::new()),
        ("OU_LICENSE_RULES", String::new()),
        ("LICENSE_DISTRIBUTION", String::new()),
        ("LICENSES_TAG_KEY", "ct-entitlements:licenses".to_string()),
        ("TARGET_OUS", String::new()),
        ("ACCOUNT_TAG_FILTER", String::new()),
        ("EXECUTION_ROLE_NAME", "ct-entitlements-member".to_string()),
        ("LICENSE_HOME_REGION", "us-east-1".to_string()),
        (
            "ACTIVATION_OVERRIDE_BEHAVIOR",
            "DISTRIBUTED_GRANTS_ONLY".to_string(),
        ),
        (
            "ALLOWED_OPERATIONS",
            "CheckoutLicense,CheckInLicense,ExtendConsumptionLicense,ListPurchasedLicenses"
                .to_string(),
        ),
        ("DRY_RUN", "false".to_string()),
        ("RECHECK_DELAY_SECONDS", "300".to_string()),
        ("WORKFLOW_DEADLINE_SECONDS", "86400".to_string()),
        ("MAX_CONCURRENT_LICENSES", "50".to_string()),
        ("LICENSE_MANAGER_CALLS_PER_SECOND", "10".to_string()),
        ("ONBOARDING_QUEUE_URL", queue("OnboardingQueue")),
        ("BACKFILL_QUEUE_URL", queue("BackfillQueue")),
        ("NOTIFY_QUEUE_URL", queue("NotificationQueue")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in selection {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

fn props(document: &str, version: &str, env: &BTreeMap<String, String>) -> Value {
    json!({
        "ServiceToken": "arn:aws:lambda:us-east-1:111111111111:function:org-bootstrap",
        "ConfigurationDocument": document,
        "ConfigurationDocumentVersion": version,
        "Environments": {"AccountLifecycleFunction": env, "ReconcilerFunction": env},
    })
}

/// An S3 that answers GetObject with `text` as version `version` (`None`: no version id, as
/// for an object of an unversioned bucket).
fn s3_answering(text: &str, version: Option<&str>) -> Rule {
    let (text, version) = (text.to_string(), version.map(str::to_string));
    mock!(aws_sdk_s3::Client::get_object).then_output(move || {
        GetObjectOutput::builder()
            .body(ByteStream::from(text.clone().into_bytes()))
            .content_length(text.len() as i64)
            .set_version_id(version.clone())
            .build()
    })
}

fn app(rule: &Rule) -> CheckApp {
    CheckApp {
        s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, [rule]),
        responder: Responder::new(true),
    }
}

/// Runs one request against `rule`'s S3; the body PUT to CloudFormation.
async fn check(kind: &str, props: Value, rule: &Rule) -> Value {
    let rx = Receiver::start(Vec::new()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    handle(&app(rule), request(kind, &rx.url, props), deadline)
        .await
        .unwrap();
    let got = rx.only();
    assert_eq!(got.method, "PUT");
    serde_json::from_str(&got.body).unwrap()
}

fn reason(body: &Value) -> &str {
    body["Reason"].as_str().unwrap()
}

fn good_document() -> String {
    json!({
        "version": 1,
        "licenses": ["prod-sku-a", ARN],
        "ouLicenseRules": {"ou-ab12-aaaaaaaa": ["prod-sku-a", "prod-sku-b"]},
        "licenseDistribution": {"prod-sku-a": "organization", "prod-sku-b": "ou"},
    })
    .to_string()
}

#[tokio::test]
async fn a_good_document_answers_success_with_the_pinned_version() {
    let rule = s3_answering(&good_document(), Some("v-2"));
    let body = check("Create", props(DOC, "v-2", &environment(&[])), &rule).await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["PhysicalResourceId"], PHYSICAL_ID);
    assert_eq!(body["Data"]["VersionId"], "v-2");
    assert!(reason(&body).contains("1 OU rules"), "{body}");
    assert_eq!(rule.num_calls(), 1, "one read");
    // The environment measured is the one the functions get: no selection variables, the
    // document's location and version instead.
    let sizes = body["Data"]["EnvironmentBytes"].as_str().unwrap();
    let mut expected = environment(&[]);
    for var in [
        "ALL_MARKETPLACE_LICENSES",
        "LICENSE_ARNS",
        "PRODUCT_SKUS",
        "OU_LICENSE_RULES",
        "LICENSE_DISTRIBUTION",
        "TARGET_OUS",
        "ACCOUNT_TAG_FILTER",
    ] {
        expected.remove(var);
    }
    expected.insert("CONFIG_DOCUMENT".into(), DOC.into());
    expected.insert("CONFIG_DOCUMENT_VERSION".into(), "v-2".into());
    assert!(
        sizes.contains(&format!(
            "AccountLifecycleFunction={}",
            environment_size(&expected)
        )),
        "{sizes}"
    );
}

#[tokio::test]
async fn a_bad_document_fails_the_stack_with_the_parsers_message_and_no_other_call() {
    let bad = json!({
        "version": 1,
        "licenses": ["prod-sku-a"],
        "ouLicenseRules": {"ou-ab12-aaaaaaaa": ["prod-sku-b", "not a sku!"]},
    })
    .to_string();
    let rule = s3_answering(&bad, Some("v-3"));
    let body = check("Update", props(DOC, "v-3", &environment(&[])), &rule).await;
    assert_eq!(body["Status"], "FAILED", "{body}");
    // The same parser as `config check` (check_document) and the functions at cold start.
    let parser = check_document(&bad).unwrap_err().to_string();
    assert_eq!(reason(&body), parser);
    assert!(
        parser.starts_with(
            "configuration error: ouLicenseRules[\"ou-ab12-aaaaaaaa\"][1]: \"not a sku!\""
        ),
        "{parser}"
    );
    assert_eq!(rule.num_calls(), 1, "the read, and nothing else");

    // Unknown fields and a wrong version are refused the same way.
    for (text, part) in [
        (
            r#"{"version": 1, "licenses": ["s"], "targetOU": []}"#,
            "\"targetOU\": unknown field",
        ),
        (
            r#"{"version": 7, "licenses": ["s"]}"#,
            "version: a number (7)",
        ),
        ("{\"version\": 1, ", "not JSON"),
    ] {
        let rule = s3_answering(text, Some("v-4"));
        let body = check("Update", props(DOC, "v-4", &environment(&[])), &rule).await;
        assert_eq!(body["Status"], "FAILED", "{text}");
        assert!(reason(&body).contains(part), "{text}: {body}");
    }
}

#[tokio::test]
async fn the_environment_path_is_checked_with_the_functions_parser_without_any_call() {
    let rule = s3_answering("unused", Some("v"));
    let good = environment(&[("PRODUCT_SKUS", "prod-sku-a")]);
    let body = check("Create", props("", "", &good), &rule).await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["Data"]["VersionId"], "");

    for (selection, part) in [
        (
            vec![
                ("PRODUCT_SKUS", "prod-sku-a"),
                ("OU_LICENSE_RULES", r#"{"ou-ab12-aaaaaaaa": ["a"],"#),
            ],
            "OU_LICENSE_RULES: expected a JSON object",
        ),
        (vec![], "no licenses selected"),
        (
            vec![("PRODUCT_SKUS", "prod-sku-a"), ("TARGET_OUS", "ou-1")],
            "TARGET_OUS: \"ou-1\" is not an OU id",
        ),
    ] {
        let body = check("Update", props("", "", &environment(&selection)), &rule).await;
        assert_eq!(body["Status"], "FAILED", "{selection:?}");
        assert!(reason(&body).contains(part), "{selection:?}: {body}");
    }
    assert_eq!(rule.num_calls(), 0, "the environment path reads nothing");
}

/// OU rules of `ous` OUs with three license ARNs each, padded with `pad` spaces (still JSON).
fn ou_rules(ous: usize, pad: usize) -> String {
    let rules: BTreeMap<String, Vec<String>> = (0..ous)
        .map(|i| {
            let arns = (0..3)
                .map(|j| format!("{}{:02}{:02}", &ARN[..ARN.len() - 4], i % 100, j))
                .collect();
            (format!("ou-ab12-{i:08}"), arns)
        })
        .collect();
    let json = serde_json::to_string(&rules).unwrap();
    format!("{}{}}}", &json[..json.len() - 1], " ".repeat(pad))
}

#[tokio::test]
async fn the_4_kb_limit_is_checked_at_deploy_exactly_at_and_one_byte_over() {
    let rule = s3_answering("unused", Some("v"));
    let with = |rules: String| {
        environment(&[("PRODUCT_SKUS", "prod-sku-a"), ("OU_LICENSE_RULES", &rules)])
    };
    // How many OUs of three ARNs fit beside the template's other variables.
    let fitting = (1..100)
        .take_while(|n| environment_size(&with(ou_rules(*n, 0))) <= LAMBDA_ENVIRONMENT_LIMIT)
        .last()
        .unwrap();
    assert!((8..=12).contains(&fitting), "{fitting} OUs fit");
    // Pad the largest that fits to exactly 4,096 bytes: accepted; one byte more: refused.
    let base = environment_size(&with(ou_rules(fitting, 0)));
    let at = with(ou_rules(fitting, LAMBDA_ENVIRONMENT_LIMIT - base));
    assert_eq!(environment_size(&at), LAMBDA_ENVIRONMENT_LIMIT);
    let body = check("Create", props("", "", &at), &rule).await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert!(body["Data"]["EnvironmentBytes"]
        .as_str()
        .unwrap()
        .contains("AccountLifecycleFunction=4096"));

    let over = with(ou_rules(fitting, LAMBDA_ENVIRONMENT_LIMIT - base + 1));
    let body = check("Update", props("", "", &over), &rule).await;
    assert_eq!(body["Status"], "FAILED", "{body}");
    let reason = reason(&body);
    assert!(
        reason.contains("AccountLifecycleFunction: its environment variables would take 4097 bytes, over Lambda's limit of 4096 bytes")
            && reason.contains("OU_LICENSE_RULES takes")
            && reason.contains("ConfigurationDocument"),
        "{reason}"
    );
    assert_eq!(rule.num_calls(), 0);
    eprintln!(
        "{fitting} OUs of 3 license ARNs fit in the environment; {} do not",
        fitting + 1
    );
}

#[tokio::test]
async fn a_document_with_the_selection_parameters_set_too_is_refused_before_any_call() {
    let rule = s3_answering(&good_document(), Some("v"));
    for (selection, names) in [
        (vec![("LICENSE_ARNS", ARN)], "LicenseArns is set too"),
        (
            vec![
                ("ALL_MARKETPLACE_LICENSES", "true"),
                ("TARGET_OUS", "ou-ab12-aaaaaaaa"),
            ],
            "AllMarketplaceLicenses, TargetOus are set too",
        ),
    ] {
        let body = check("Create", props(DOC, "v", &environment(&selection)), &rule).await;
        assert_eq!(body["Status"], "FAILED", "{selection:?}");
        assert!(
            reason(&body)
                .contains("ConfigurationDocument is set, so the selection comes from the document")
                && reason(&body).contains(names),
            "{body}"
        );
    }
    // LicensesTagKey is no selection parameter: any value goes with a document.
    let body = check(
        "Create",
        props(
            DOC,
            "v",
            &environment(&[("LICENSES_TAG_KEY", "team-licenses")]),
        ),
        &rule,
    )
    .await;
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(
        rule.num_calls(),
        1,
        "only the accepted request read the document"
    );
}

#[tokio::test]
async fn an_unversioned_document_is_refused() {
    let rule = s3_answering(&good_document(), None);
    for (version, part) in [
        (
            "",
            "ConfigurationDocumentVersion: required with ConfigurationDocument",
        ),
        (
            "null",
            "ConfigurationDocumentVersion: \"null\" is not a version id of a versioned bucket",
        ),
    ] {
        let body = check("Create", props(DOC, version, &environment(&[])), &rule).await;
        assert_eq!(body["Status"], "FAILED");
        assert!(reason(&body).contains(part), "{body}");
    }
    assert_eq!(rule.num_calls(), 0, "refused before reading");
    // S3 answering without the version asked for: the bucket does not keep versions.
    let body = check("Create", props(DOC, "v-9", &environment(&[])), &rule).await;
    assert_eq!(body["Status"], "FAILED");
    assert!(
        reason(&body).contains("the bucket must have versioning turned on"),
        "{body}"
    );
    // A malformed location never reaches S3.
    let body = check(
        "Create",
        props("s3://Bad_Bucket/k", "v", &environment(&[])),
        &rule,
    )
    .await;
    assert!(
        reason(&body)
            .contains("ConfigurationDocument: \"s3://Bad_Bucket/k\" is not an S3 object URL"),
        "{body}"
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn s3_refusals_keep_s3s_code_and_say_what_to_fix() {
    let rule = mock!(aws_sdk_s3::Client::get_object).then_error(|| {
        GetObjectError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("Access Denied")
                .build(),
        )
    });
    let body = check("Create", props(DOC, "v-1", &environment(&[])), &rule).await;
    assert_eq!(body["Status"], "FAILED");
    let reason = reason(&body);
    assert!(
        reason.starts_with("s3:GetObject failed: AccessDenied: s3://ct-config-bucket/ct-entitlements/configuration.json (version \"v-1\"): Access Denied")
            && reason.contains("s3:GetObjectVersion"),
        "{reason}"
    );
}

#[tokio::test]
async fn delete_and_bad_properties() {
    let rule = s3_answering(&good_document(), Some("v"));
    let body = check("Delete", props(DOC, "v", &environment(&[])), &rule).await;
    assert_eq!(body["Status"], "SUCCESS");
    for (props, part) in [
        (
            json!({"Environments": {}}),
            "Environments names no function",
        ),
        (
            json!({"Environments": "x"}),
            "Environments must be an object",
        ),
        (
            json!({"Environments": {"F": {"A": ["x"]}}}),
            "Environments.\"F\".\"A\": expected a string",
        ),
        (
            json!({"ConfigurationDocumentVersion": "v", "Environments": {"F": {}}}),
            "ConfigurationDocumentVersion is set but ConfigurationDocument is empty",
        ),
    ] {
        let body = check("Create", props.clone(), &rule).await;
        assert_eq!(body["Status"], "FAILED", "{props}");
        assert!(reason(&body).contains(part), "{props}: {body}");
    }
    assert_eq!(rule.num_calls(), 0);
}
