//! Issue 16 §2, the reads behind an Organizations departure event, against mocked SDK clients:
//! a `DescribeAccount` that fails leaves the event retryable (or permanent, as classified) with
//! nothing written; a denied call is never read at all; an account Organizations no longer
//! knows is offboarded.
#![allow(clippy::unwrap_used)]

use aws_credential_types::Credentials;
use aws_sdk_licensemanager::operation::create_grant_version::CreateGrantVersionOutput;
use aws_sdk_licensemanager::operation::delete_grant::DeleteGrantOutput;
use aws_sdk_licensemanager::operation::list_distributed_grants::ListDistributedGrantsOutput;
use aws_sdk_organizations::operation::describe_account::DescribeAccountOutput;
use aws_sdk_organizations::operation::describe_organization::DescribeOrganizationOutput;
use aws_sdk_organizations::types::{Account, AccountState, Organization};
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use serde_json::{json, Value};
use shared::reconcile::{self, ReconcileConfig, ReconcileReport};
use shared::{
    clients::Clients, clients::MemberClientFactory, clients::MemberClients, config::Config,
    engine::Engine, error::Retry,
};
use std::sync::Arc;

const MGMT: &str = "111111111111";
const ACCOUNT: &str = "210987654321";
const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/111111111111/onboarding";

fn json_error(status: u16, code: &str, message: &str) -> HttpResponse {
    let mut r = HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(json!({"__type": code, "message": message}).to_string()),
    );
    r.headers_mut()
        .insert("content-type", "application/x-amz-json-1.1");
    r
}

struct NoMembers;

impl MemberClientFactory for NoMembers {
    fn member_clients(&self, _credentials: Credentials) -> MemberClients {
        panic!("a departure event never enters a member account")
    }
}

/// The mocks of one scenario: Organizations answers `describe_account`; License Manager and
/// SQS count every write.
struct World {
    org: Vec<Rule>,
    lm: Vec<Rule>,
    sqs: Vec<Rule>,
}

impl World {
    fn new(describe_account: Rule) -> Self {
        World {
            org: vec![
                mock!(aws_sdk_organizations::Client::describe_organization).then_output(|| {
                    DescribeOrganizationOutput::builder()
                        .organization(
                            Organization::builder()
                                .id("o-abc1234567")
                                .arn(format!(
                                    "arn:aws:organizations::{MGMT}:organization/o-abc1234567"
                                ))
                                .master_account_id(MGMT)
                                .build(),
                        )
                        .build()
                }),
                describe_account,
            ],
            lm: vec![
                mock!(aws_sdk_licensemanager::Client::list_distributed_grants)
                    .then_output(|| ListDistributedGrantsOutput::builder().build()),
                mock!(aws_sdk_licensemanager::Client::create_grant_version)
                    .then_output(|| CreateGrantVersionOutput::builder().build()),
                mock!(aws_sdk_licensemanager::Client::delete_grant)
                    .then_output(|| DeleteGrantOutput::builder().build()),
            ],
            sqs: vec![
                mock!(aws_sdk_sqs::Client::send_message_batch).then_output(|| {
                    SendMessageBatchOutput::builder()
                        .set_successful(Some(Vec::new()))
                        .set_failed(Some(Vec::new()))
                        .build()
                        .unwrap()
                }),
            ],
        }
    }

    fn engine(&self) -> Engine {
        let config = Config::from_lookup(|k| match k {
            "ALL_MARKETPLACE_LICENSES" => Some("true".into()),
            "ONBOARDING_QUEUE_URL" => Some(QUEUE.into()),
            _ => None,
        })
        .unwrap();
        // One attempt: the error reaches the reconciler as the first answer was.
        let once = |c: aws_sdk_organizations::config::Builder| {
            c.retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        };
        Engine::new(
            config,
            Clients {
                organizations: mock_client!(
                    aws_sdk_organizations,
                    RuleMode::MatchAny,
                    &self.org,
                    once
                ),
                sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &[]),
                license_manager: mock_client!(aws_sdk_licensemanager, RuleMode::MatchAny, &self.lm),
                sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, &self.sqs),
                dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[]),
                members: Arc::new(NoMembers),
            },
        )
    }

    /// Writes to License Manager and messages sent, so far.
    fn writes(&self) -> (usize, usize, usize) {
        (
            self.lm[1].num_calls(),
            self.lm[2].num_calls(),
            self.sqs[0].num_calls(),
        )
    }

    async fn handle(&self, event: &Value) -> ReconcileReport {
        let config = ReconcileConfig::from_lookup(|k| match k {
            "ONBOARDING_QUEUE_URL" => Some(QUEUE.into()),
            "OFFBOARD_MODE" => Some("delete".into()),
            _ => None,
        })
        .unwrap();
        let (scope, dry_run) = reconcile::parse(event, &config).unwrap();
        reconcile::reconcile(&self.engine(), &config, scope, dry_run).await
    }
}

fn close_account(error_code: Option<&str>) -> Value {
    let mut e = json!({
        "version": "0", "id": "e-1", "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.organizations", "account": MGMT,
        "time": "2026-11-30T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {
            "eventVersion": "1.08", "eventSource": "organizations.amazonaws.com",
            "eventName": "CloseAccount", "awsRegion": "us-east-1",
            "requestParameters": {"accountId": ACCOUNT}, "responseElements": null
        }
    });
    if let Some(code) = error_code {
        e["detail"]["errorCode"] = json!(code);
        e["detail"]["errorMessage"] = json!("denied");
    }
    e
}

fn describe_account_fails(status: u16, code: &'static str) -> Rule {
    mock!(aws_sdk_organizations::Client::describe_account)
        .then_http_response(move || json_error(status, code, "no answer"))
}

#[tokio::test]
async fn a_failed_describe_account_leaves_the_event_to_retry_and_writes_nothing() {
    for (status, code, retry) in [
        (400, "TooManyRequestsException", Retry::Retryable),
        (500, "ServiceException", Retry::Retryable),
        (400, "AccessDeniedException", Retry::Permanent),
    ] {
        let world = World::new(describe_account_fails(status, code));
        let report = world.handle(&close_account(None)).await;
        let error = report
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("{code}: {report:#?}"));
        assert_eq!(error.code.as_deref(), Some(code), "{report:#?}");
        assert_eq!(error.retry, retry, "{code}: {report:#?}");
        assert!(
            report.offboard.is_empty() && report.offboarded.is_empty(),
            "{report:#?}"
        );
        assert_eq!(world.writes(), (0, 0, 0), "{code}");
        assert_eq!(world.org[1].num_calls(), 1, "{code}: DescribeAccount once");
    }
}

#[tokio::test]
async fn a_denied_call_is_not_even_read() {
    let world = World::new(describe_account_fails(400, "AccountNotFoundException"));
    let report = world.handle(&close_account(Some("AccessDenied"))).await;
    assert!(report.error.is_none(), "{report:#?}");
    assert!(report.ignored.is_some(), "{report:#?}");
    assert!(report.api_calls.is_empty(), "{report:#?}");
    assert_eq!(world.org[0].num_calls() + world.org[1].num_calls(), 0);
    assert_eq!(world.writes(), (0, 0, 0));
}

#[tokio::test]
async fn an_account_organizations_no_longer_knows_is_offboarded() {
    let world = World::new(describe_account_fails(400, "AccountNotFoundException"));
    let report = world.handle(&close_account(None)).await;
    assert!(report.error.is_none(), "{report:#?}");
    assert_eq!(report.offboard, vec![ACCOUNT.to_string()], "{report:#?}");
    assert_eq!(report.offboarded.len(), 1, "{report:#?}");
    // Its grants were listed to be deleted (none here): the offboarding ran.
    assert!(world.lm[0].num_calls() >= 1);
}

#[tokio::test]
async fn an_account_still_active_is_rechecked_not_offboarded() {
    let world = World::new(
        mock!(aws_sdk_organizations::Client::describe_account).then_output(|| {
            DescribeAccountOutput::builder()
                .account(
                    Account::builder()
                        .id(ACCOUNT)
                        .state(AccountState::Active)
                        .build(),
                )
                .build()
        }),
    );
    let report = world.handle(&close_account(None)).await;
    assert!(report.error.is_none(), "{report:#?}");
    assert!(
        report.offboard.is_empty() && report.offboarded.is_empty(),
        "{report:#?}"
    );
    assert_eq!(report.onboard, vec![ACCOUNT.to_string()], "{report:#?}");
    assert_eq!(
        world.lm[0].num_calls(),
        0,
        "no grant listed for offboarding"
    );
    assert_eq!(world.writes().0 + world.writes().1, 0);
    assert_eq!(world.writes().2, 1, "one onboarding message");
}
