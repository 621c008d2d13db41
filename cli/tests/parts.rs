//! The CLI's pieces without a world: error lines, CSV, the verdicts of a report, and the
//! reading of a deployed stack from recorded CloudFormation and Lambda answers.
#![allow(clippy::unwrap_used)]

use aws_smithy_mocks::{mock, mock_client, RuleMode};
use ct_entitlements::coverage::CoverageDocument;
use ct_entitlements::deployed::deployed_environment;
use ct_entitlements::fail::{one_line, Exit};
use ct_entitlements::plan::{AccountRow, PlanDocument, Verdict};
use ct_entitlements::render;
use shared::report::LicenseReport;
use shared::{report::AccountReport, report::Outcome};

/// The SDK's Debug of a dispatch failure without credentials, as the binary got it (IMDS off).
const DISPATCH: &str = r#"organizations:DescribeOrganization failed: DispatchFailure: DispatchFailure { source: ConnectorError { kind: Other(None), source: CredentialsNotLoaded(CredentialsNotLoaded { source: Some(ProviderChainError { attempts: [ProviderAttempt { name: "Environment", error: CredentialsNotLoaded(CredentialsNotLoaded { source: Some("environment variable not set") }) }, ProviderAttempt { name: "Profile", error: CredentialsNotLoaded(CredentialsNotLoaded { source: None }) }, ProviderAttempt { name: "WebIdentityToken", error: CredentialsNotLoaded(CredentialsNotLoaded { source: Some("$AWS_WEB_IDENTITY_TOKEN_FILE was not set") }) }, ProviderAttempt { name: "EcsContainer", error: CredentialsNotLoaded(CredentialsNotLoaded { source: Some("ECS provider not configured") }) }, ProviderAttempt { name: "Ec2InstanceMetadata", error: CredentialsNotLoaded(CredentialsNotLoaded { source: Some("IMDS disabled by AWS_EC2_METADATA_DISABLED env var set to `true`") }) }] }) }), connection: Unknown } }"#;

#[test]
fn sdk_dumps_become_one_line() {
    let line = one_line(DISPATCH);
    assert_eq!(
        line,
        "organizations:DescribeOrganization failed: DispatchFailure: no AWS credentials were found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    );
    let refused = "sqs:SendMessageBatch failed: DispatchFailure: DispatchFailure(DispatchFailure { source: ConnectorError { kind: Io, source: hyper_util::client::legacy::Error(Connect, ConnectError(\"tcp connect error\", Os { code: 111, kind: ConnectionRefused, message: \"Connection refused\" })) } })";
    assert_eq!(
        one_line(refused),
        "sqs:SendMessageBatch failed: DispatchFailure: the AWS endpoint refused the connection"
    );
    let quoted = "x:Y failed: ConstructionFailure: ConstructionFailure(ConstructionFailure { source: ResolveEndpointError { message: \"Invalid Configuration: Missing Something\", source: None } })";
    assert_eq!(
        one_line(quoted),
        "x:Y failed: ConstructionFailure: Invalid Configuration: Missing Something"
    );
    // Ordinary messages stay as they are, on one line.
    assert_eq!(
        one_line("license-manager:CreateGrant failed: AccessDeniedException:\n not allowed"),
        "license-manager:CreateGrant failed: AccessDeniedException: not allowed"
    );
}

#[test]
fn exit_statuses_follow_the_error_kind() {
    assert_eq!(
        Exit::of(&shared::error::Error::Config("x".into())).code(),
        2
    );
    assert_eq!(
        Exit::of(&shared::error::Error::InvalidInput("x".into())).code(),
        2
    );
    let aws = shared::error::Error::Aws {
        service: "sqs",
        operation: "SendMessage",
        code: "AccessDenied".into(),
        message: "no".into(),
        retry: shared::error::Retry::Permanent,
    };
    assert_eq!(Exit::of(&aws).code(), 1);
    assert_eq!(Exit::Pending.code(), 3);
}

#[test]
fn csv_quotes_what_needs_quoting() {
    let out = render::csv(
        ["a", "b"],
        &[["plain".to_string(), "with, comma and \"quote\"".to_string()]],
    );
    assert_eq!(out, "a,b\r\nplain,\"with, comma and \"\"quote\"\"\"\r\n");
}

fn license(sku: &str, status: Option<&str>, actions: &[&str]) -> LicenseReport {
    LicenseReport {
        license_arn: format!("arn:aws:license-manager::111122223333:license:l-{sku}"),
        product_sku: Some(sku.into()),
        status_before: status.map(Into::into),
        status_after: status.map(Into::into),
        actions: actions.iter().map(|a| a.to_string()).collect(),
        grant_source: Some("account".into()),
        ..LicenseReport::default()
    }
}

fn report(id: &str, licenses: Vec<LicenseReport>) -> AccountReport {
    let mut r = AccountReport::empty(Some(id.into()), "cli-plan".into(), true);
    r.outcome = Outcome::Planned;
    r.licenses = licenses;
    r
}

#[test]
fn verdicts_and_summary_lines() {
    let entitled = report("111111111111", vec![license("a", Some("ACTIVE"), &[])]);
    let to_grant = report(
        "222222222222",
        vec![
            license("a", Some("ACTIVE"), &[]),
            license("b", None, &["CreateGrant"]),
        ],
    );
    let mut waiting = report(
        "333333333333",
        vec![license("a", Some("PENDING_WORKFLOW"), &[])],
    );
    waiting.licenses[0].pending_reason = Some("workflow".into());
    let failed = AccountReport::empty(Some("444444444444".into()), "cli-plan".into(), true);
    let verdicts: Vec<Verdict> = [&entitled, &to_grant, &waiting, &failed]
        .iter()
        .map(|r| Verdict::of(r))
        .collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Entitled,
            Verdict::WouldBeEntitled,
            Verdict::Waiting,
            Verdict::Failed
        ]
    );
    let doc = PlanDocument::of(
        &[entitled.clone(), to_grant.clone(), waiting, failed],
        false,
    );
    assert_eq!(
        doc.summary.line("plan"),
        "plan: 4 accounts, 1 entitled already, 1 would be entitled, 1 waiting on License Manager, 1 failed"
    );
    let coverage = CoverageDocument::of(
        [entitled, to_grant]
            .iter()
            .map(|r| AccountRow::of(r, false))
            .collect(),
    );
    assert_eq!(coverage.summary.selected, 3);
    assert_eq!(coverage.summary.active, 2);
    assert_eq!(coverage.lacking.len(), 1);
    assert_eq!(coverage.lacking[0].account_id, "222222222222");
    assert_eq!(coverage.lacking[0].licenses, ["b"]);
}

#[tokio::test]
async fn the_deployed_environment_is_the_lifecycle_functions() {
    use aws_sdk_cloudformation::operation::describe_stack_resource::DescribeStackResourceOutput;
    use aws_sdk_cloudformation::types::StackResourceDetail;
    use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput;
    use aws_sdk_lambda::types::EnvironmentResponse;

    let resource = mock!(aws_sdk_cloudformation::Client::describe_stack_resource)
        .match_requests(|r| {
            r.stack_name() == Some("prod")
                && r.logical_resource_id() == Some("AccountLifecycleFunction")
        })
        .then_output(|| {
            DescribeStackResourceOutput::builder()
                .stack_resource_detail(
                    StackResourceDetail::builder()
                        .logical_resource_id("AccountLifecycleFunction")
                        .physical_resource_id("prod-AccountLifecycleFunction-AbC123")
                        .resource_type("AWS::Lambda::Function")
                        .last_updated_timestamp(aws_smithy_types::DateTime::from_secs(0))
                        .resource_status(
                            aws_sdk_cloudformation::types::ResourceStatus::CreateComplete,
                        )
                        .build(),
                )
                .build()
        });
    let configuration = mock!(aws_sdk_lambda::Client::get_function_configuration)
        .match_requests(|r| r.function_name() == Some("prod-AccountLifecycleFunction-AbC123"))
        .then_output(|| {
            GetFunctionConfigurationOutput::builder()
                .environment(
                    EnvironmentResponse::builder()
                        .variables("PRODUCT_SKUS", "prod-a,prod-b")
                        .variables("TARGET_OUS", "ou-ab12-cdef3456")
                        .build(),
                )
                .build()
        });
    let cfn = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, &[&resource]);
    let lambda = mock_client!(aws_sdk_lambda, RuleMode::MatchAny, &[&configuration]);
    let env = deployed_environment(&cfn, &lambda, "prod").await.unwrap();
    assert_eq!(env.len(), 2);
    assert_eq!(env["PRODUCT_SKUS"], "prod-a,prod-b");
    let config = ct_entitlements::context::configure(
        Some(&env),
        Some("us-east-1".into()),
        ct_entitlements::context::Selection::Required,
        &aws_config::SdkConfig::builder().build(),
    )
    .await
    .unwrap();
    assert_eq!(config.target_ous, ["ou-ab12-cdef3456"]);
    assert!(config.dry_run, "the CLI's engine never writes");

    // A stack without the function (or not there): a configuration error naming the stack.
    let missing = mock!(aws_sdk_cloudformation::Client::describe_stack_resource).then_error(|| {
        aws_sdk_cloudformation::operation::describe_stack_resource::DescribeStackResourceError::generic(
            aws_smithy_types::error::ErrorMetadata::builder()
                .code("ValidationError")
                .message("Stack 'gone' does not exist")
                .build(),
        )
    });
    let cfn = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, &[&missing]);
    let e = deployed_environment(&cfn, &lambda, "gone")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "Configuration");
    assert_eq!(
        e.to_string(),
        "configuration error: --stack-name gone: Stack 'gone' does not exist"
    );
}
