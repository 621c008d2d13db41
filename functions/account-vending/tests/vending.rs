//! Account vending against mocked Service Catalog, Organizations, STS and SQS clients that
//! answer as AWS does (modeled outputs; AWS JSON 1.1 error bodies). Each test asserts the exact
//! calls made and the exact messages put back on the queue or parked in the dead-letter queue.
#![allow(clippy::unwrap_used)]

use account_vending::request::provision_token;
use account_vending::{handle, App, MemberCatalog, VendingClients, VendingConfig};
use aws_credential_types::Credentials;
use aws_sdk_organizations::operation::tag_resource::TagResourceOutput;
use aws_sdk_servicecatalog::operation::accept_portfolio_share::AcceptPortfolioShareOutput;
use aws_sdk_servicecatalog::operation::associate_principal_with_portfolio::AssociatePrincipalWithPortfolioOutput;
use aws_sdk_servicecatalog::operation::create_portfolio_share::CreatePortfolioShareOutput;
use aws_sdk_servicecatalog::operation::describe_record::DescribeRecordOutput;
use aws_sdk_servicecatalog::operation::list_provisioning_artifacts::ListProvisioningArtifactsOutput;
use aws_sdk_servicecatalog::operation::provision_product::ProvisionProductOutput;
use aws_sdk_servicecatalog::operation::search_products_as_admin::SearchProductsAsAdminOutput;
use aws_sdk_servicecatalog::operation::search_provisioned_products::SearchProvisionedProductsOutput;
use aws_sdk_servicecatalog::types::{
    ProductViewDetail, ProductViewSummary, ProvisionedProductAttribute, ProvisionedProductStatus,
    ProvisioningArtifactDetail, ProvisioningArtifactGuidance, RecordDetail, RecordError,
    RecordOutput, RecordStatus,
};
use aws_sdk_sqs::operation::send_message::SendMessageOutput;
use aws_sdk_sts::operation::assume_role::AssumeRoleOutput;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::DateTime;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const PRODUCT: &str = "prod-abcdefghijklm";
const ARTIFACT: &str = "pa-newestartifact";
const RECORD: &str = "rec-0123456789abc";
const NEW_ACCOUNT: &str = "345678901234";
const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/111111111111/vending";
const DLQ: &str = "https://sqs.us-east-1.amazonaws.com/111111111111/vending-dlq";
const ONBOARDING: &str = "https://sqs.us-east-1.amazonaws.com/111111111111/onboarding";
const PORTFOLIO: &str = "port-softwareabcde";
const NOW: u64 = 1_700_000_000;

fn now() -> u64 {
    NOW
}

fn request(name: &str) -> Value {
    json!({
        "AccountName": name,
        "AccountEmail": format!("aws+{}@example.com", name.to_lowercase().replace(' ', "-")),
        "ManagedOrganizationalUnit": "Sandbox (ou-ab12-cdef3456)",
        "SSOUserEmail": "jane.doe@example.com",
        "SSOUserFirstName": "Jane",
        "SSOUserLastName": "Doe",
        "Entitlements": ["prod-sku-1"]
    })
}

fn batch(bodies: &[Value]) -> Value {
    json!({"Records": bodies.iter().enumerate().map(|(i, b)| json!({
        "messageId": format!("m-{i}"),
        "receiptHandle": "r",
        "body": b.to_string(),
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:111111111111:vending",
        "awsRegion": "us-east-1"
    })).collect::<Vec<_>>()})
}

fn json_error(status: u16, code: &str, message: &str) -> HttpResponse {
    let mut r = HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(json!({"__type": code, "message": message}).to_string()),
    );
    r.headers_mut()
        .insert("content-type", "application/x-amz-json-1.1");
    r
}

// ---------- Service Catalog fixtures ----------

fn search_products() -> Rule {
    mock!(aws_sdk_servicecatalog::Client::search_products_as_admin)
        .match_requests(|req| {
            req.filters().is_some_and(|f| {
                f.values()
                    .any(|v| v == &vec!["AWS Control Tower Account Factory".to_string()])
            })
        })
        .then_output(|| {
            let detail = |id: &str, name: &str| {
                ProductViewDetail::builder()
                    .product_view_summary(
                        ProductViewSummary::builder()
                            .product_id(id)
                            .name(name)
                            .build(),
                    )
                    .build()
            };
            SearchProductsAsAdminOutput::builder()
                .product_view_details(detail(
                    "prod-lookalike0000",
                    "AWS Control Tower Account Factory (copy)",
                ))
                .product_view_details(detail(PRODUCT, "AWS Control Tower Account Factory"))
                .build()
        })
}

fn artifacts() -> Rule {
    mock!(aws_sdk_servicecatalog::Client::list_provisioning_artifacts)
        .match_requests(|req| req.product_id() == Some(PRODUCT))
        .then_output(|| {
            let artifact =
                |id: &str, secs: i64, active: bool, guidance: ProvisioningArtifactGuidance| {
                    ProvisioningArtifactDetail::builder()
                        .id(id)
                        .created_time(DateTime::from_secs(secs))
                        .active(active)
                        .guidance(guidance)
                        .build()
                };
            ListProvisioningArtifactsOutput::builder()
                .provisioning_artifact_details(artifact(
                    "pa-oldartifact0000",
                    100,
                    true,
                    ProvisioningArtifactGuidance::Default,
                ))
                .provisioning_artifact_details(artifact(
                    ARTIFACT,
                    200,
                    true,
                    ProvisioningArtifactGuidance::Default,
                ))
                .provisioning_artifact_details(artifact(
                    "pa-inactive000000",
                    300,
                    false,
                    ProvisioningArtifactGuidance::Default,
                ))
                .provisioning_artifact_details(artifact(
                    "pa-deprecated0000",
                    400,
                    true,
                    ProvisioningArtifactGuidance::Deprecated,
                ))
                .build()
        })
}

/// `busy` Account Factory products under change, plus ones that must not count.
fn in_flight(busy: usize) -> Rule {
    mock!(aws_sdk_servicecatalog::Client::search_provisioned_products).then_output(move || {
        let pp = |product: &str, status: ProvisionedProductStatus| {
            ProvisionedProductAttribute::builder()
                .product_id(product)
                .status(status)
                .build()
        };
        let mut out = SearchProvisionedProductsOutput::builder()
            .provisioned_products(pp(
                "prod-someotherprod",
                ProvisionedProductStatus::UnderChange,
            ))
            .provisioned_products(pp(PRODUCT, ProvisionedProductStatus::Available));
        for _ in 0..busy {
            out = out.provisioned_products(pp(PRODUCT, ProvisionedProductStatus::UnderChange));
        }
        out.build()
    })
}

fn record(status: RecordStatus) -> RecordDetail {
    RecordDetail::builder()
        .record_id(RECORD)
        .status(status)
        .product_id(PRODUCT)
        .provisioning_artifact_id(ARTIFACT)
        .build()
}

/// (product id, artifact id, name, token, parameters) of each ProvisionProduct.
type Provisions = Arc<Mutex<Vec<(String, String, String, String, Vec<(String, String)>)>>>;

fn provision() -> (Rule, Provisions) {
    let seen: Provisions = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    let rule = mock!(aws_sdk_servicecatalog::Client::provision_product)
        .match_requests(move |req| {
            store.lock().unwrap().push((
                req.product_id().unwrap_or_default().to_string(),
                req.provisioning_artifact_id()
                    .unwrap_or_default()
                    .to_string(),
                req.provisioned_product_name()
                    .unwrap_or_default()
                    .to_string(),
                req.provision_token().unwrap_or_default().to_string(),
                req.provisioning_parameters()
                    .iter()
                    .map(|p| {
                        (
                            p.key().unwrap_or_default().to_string(),
                            p.value().unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
            ));
            true
        })
        .then_output(|| {
            ProvisionProductOutput::builder()
                .record_detail(record(RecordStatus::Created))
                .build()
        });
    (rule, seen)
}

fn describe(status: RecordStatus) -> Rule {
    mock!(aws_sdk_servicecatalog::Client::describe_record)
        .match_requests(|req| req.id() == Some(RECORD))
        .then_output(move || {
            let mut out = DescribeRecordOutput::builder().record_detail(record(status.clone()));
            if status == RecordStatus::Succeeded {
                out = out
                    .record_outputs(
                        RecordOutput::builder()
                            .output_key("AccountId")
                            .output_value(NEW_ACCOUNT)
                            .build(),
                    )
                    .record_outputs(
                        RecordOutput::builder()
                            .output_key("AccountEmail")
                            .output_value("aws+sandbox-7@example.com")
                            .build(),
                    );
            }
            out.build()
        })
}

/// (queue URL, body, delay seconds) of each SendMessage.
type Sent = Arc<Mutex<Vec<(String, Value, i32)>>>;

fn sqs() -> (Rule, Sent) {
    let seen: Sent = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    let rule = mock!(aws_sdk_sqs::Client::send_message)
        .match_requests(move |req| {
            store.lock().unwrap().push((
                req.queue_url().unwrap_or_default().to_string(),
                serde_json::from_str(req.message_body().unwrap_or_default()).unwrap(),
                req.delay_seconds().unwrap_or_default(),
            ));
            true
        })
        .then_output(|| SendMessageOutput::builder().message_id("m").build());
    (rule, seen)
}

struct FixedMember(aws_sdk_servicecatalog::Client);

impl MemberCatalog for FixedMember {
    fn catalog(&self, _credentials: Credentials) -> aws_sdk_servicecatalog::Client {
        self.0.clone()
    }
}

struct World {
    catalog: Vec<Rule>,
    org: Vec<Rule>,
    sts: Vec<Rule>,
    member: Vec<Rule>,
    sqs: Vec<Rule>,
    sent: Sent,
    provisions: Provisions,
}

impl World {
    fn new() -> Self {
        let (send, sent) = sqs();
        let (prov, provisions) = provision();
        World {
            catalog: vec![search_products(), artifacts(), in_flight(0), prov],
            org: vec![],
            sts: vec![],
            member: vec![],
            sqs: vec![send],
            sent,
            provisions,
        }
    }

    fn app(&self, env: &[(&str, &str)]) -> App {
        let mut vars: HashMap<String, String> = HashMap::from([
            ("VENDING_QUEUE_URL".to_string(), QUEUE.to_string()),
            ("VENDING_DEAD_LETTER_QUEUE_URL".to_string(), DLQ.to_string()),
            (
                "LICENSES_TAG_KEY".to_string(),
                "ct-entitlements:licenses".to_string(),
            ),
            ("ONBOARDING_QUEUE_URL".to_string(), ONBOARDING.to_string()),
            ("ASSUME_ROLE_BACKOFF_MS".to_string(), "1".to_string()),
        ]);
        for (k, v) in env {
            vars.insert(k.to_string(), v.to_string());
        }
        let config = VendingConfig::from_lookup(|k| vars.get(k).cloned()).unwrap();
        let shared =
            shared::config::Config::from_lookup_per_request(|k| vars.get(k).cloned()).unwrap();
        let no_retries = |c: aws_sdk_servicecatalog::config::Builder| {
            c.retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        };
        let clients = VendingClients {
            catalog: mock_client!(
                aws_sdk_servicecatalog,
                RuleMode::MatchAny,
                &self.catalog,
                no_retries
            ),
            organizations: mock_client!(aws_sdk_organizations, RuleMode::MatchAny, &self.org),
            sqs: mock_client!(aws_sdk_sqs, RuleMode::MatchAny, &self.sqs),
            sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &self.sts),
            members: Arc::new(FixedMember(mock_client!(
                aws_sdk_servicecatalog,
                RuleMode::MatchAny,
                &self.member
            ))),
        };
        App::new(clients, config, shared).with_clock(now)
    }

    fn sent(&self) -> Vec<(String, Value, i32)> {
        self.sent.lock().unwrap().clone()
    }

    fn calls(&self) -> usize {
        self.catalog
            .iter()
            .chain(&self.org)
            .chain(&self.sts)
            .chain(&self.member)
            .chain(&self.sqs)
            .map(Rule::num_calls)
            .sum()
    }
}

fn tracked(name: &str, record_id: Option<&str>, attempt: u32, first_seen: u64) -> Value {
    let mut t = json!({"request": request(name), "attempt": attempt, "firstSeen": first_seen, "generation": 0});
    if let Some(id) = record_id {
        t["recordId"] = json!(id);
    }
    t
}

// ---------- tests ----------

#[tokio::test]
async fn request_is_provisioned_tracked_and_finished() {
    // 1. The request: Account Factory found by name, newest active artifact, one slot taken.
    let mut world = World::new();
    let app = world.app(&[]);
    let out = handle(&app, batch(&[request("Sandbox 7")])).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    let provisions = world.provisions.lock().unwrap().clone();
    assert_eq!(
        provisions,
        vec![(
            PRODUCT.to_string(),
            ARTIFACT.to_string(),
            "Sandbox-7".to_string(),
            provision_token("aws+sandbox-7@example.com", 0),
            [
                ("AccountName", "Sandbox 7"),
                ("AccountEmail", "aws+sandbox-7@example.com"),
                ("ManagedOrganizationalUnit", "Sandbox (ou-ab12-cdef3456)"),
                ("SSOUserEmail", "jane.doe@example.com"),
                ("SSOUserFirstName", "Jane"),
                ("SSOUserLastName", "Doe"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
        )]
    );
    let tracking = tracked("Sandbox 7", Some(RECORD), 1, NOW);
    assert_eq!(
        world.sent(),
        vec![(QUEUE.to_string(), tracking.clone(), 120)]
    );

    // 2. The record is still in progress: back on the queue, no sleeping.
    world.catalog.push(describe(RecordStatus::InProgress));
    world.sent.lock().unwrap().clear();
    let app = world.app(&[]);
    handle(&app, batch(std::slice::from_ref(&tracking)))
        .await
        .unwrap();
    let again = tracked("Sandbox 7", Some(RECORD), 2, NOW);
    assert_eq!(world.sent(), vec![(QUEUE.to_string(), again.clone(), 120)]);

    // 3. SUCCEEDED: the account's licenses tag, then an onboard request for account-lifecycle.
    world.catalog.pop();
    world.catalog.push(describe(RecordStatus::Succeeded));
    let tags = Arc::new(Mutex::new(Vec::new()));
    let seen = tags.clone();
    world.org.push(
        mock!(aws_sdk_organizations::Client::tag_resource)
            .match_requests(move |req| {
                seen.lock().unwrap().push((
                    req.resource_id().unwrap_or_default().to_string(),
                    req.tags()
                        .iter()
                        .map(|t| (t.key().to_string(), t.value().to_string()))
                        .collect::<Vec<_>>(),
                ));
                true
            })
            .then_output(|| TagResourceOutput::builder().build()),
    );
    world.sent.lock().unwrap().clear();
    let app = world.app(&[]);
    let out = handle(&app, batch(&[again])).await.unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert_eq!(
        *tags.lock().unwrap(),
        vec![(
            NEW_ACCOUNT.to_string(),
            vec![(
                "ct-entitlements:licenses".to_string(),
                "prod-sku-1".to_string()
            )]
        )]
    );
    assert_eq!(
        world.sent(),
        vec![(
            ONBOARDING.to_string(),
            json!({"accountId": NEW_ACCOUNT, "reason": "vending", "attempt": 0}),
            0
        )]
    );
    assert_eq!(
        world.provisions.lock().unwrap().len(),
        1,
        "provisioned once"
    );
}

#[tokio::test]
async fn direct_invocation_starts_and_hands_tracking_to_the_queue() {
    let world = World::new();
    let app = world.app(&[]);
    let report = handle(&app, request("Sandbox 7")).await.unwrap();
    assert_eq!(report["status"], "CREATED");
    assert_eq!(report["recordId"], RECORD);
    assert_eq!(report["nextCheckInSeconds"], 120);
    assert_eq!(report["actions"], json!(["ProvisionProduct"]));
    assert_eq!(
        report["apiCalls"],
        json!({
            "servicecatalog:ListProvisioningArtifacts": 1,
            "servicecatalog:ProvisionProduct": 1,
            "servicecatalog:SearchProductsAsAdmin": 1,
            "servicecatalog:SearchProvisionedProducts": 1,
            "sqs:SendMessage": 1
        })
    );
    assert_eq!(
        world.sent(),
        vec![(
            QUEUE.to_string(),
            tracked("Sandbox 7", Some(RECORD), 1, NOW),
            120
        )]
    );
}

#[tokio::test]
async fn invalid_requests_make_no_aws_call_and_are_parked() {
    let world = World::new();
    let app = world.app(&[]);
    let mut bad = request("Sandbox 7");
    bad["AccountEmail"] = json!("not-an-email");
    bad["ManagedOrganizationalUnit"] = json!("Sandbox (ou-nope)");

    // Direct: an InvalidInput error, nothing called at all.
    let err = handle(&app, bad.clone()).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidInput");
    assert_eq!(
        err.to_string(),
        "invalid input: account request: AccountEmail \"not-an-email\" is not an email address (6 to 64 characters); ManagedOrganizationalUnit \"Sandbox (ou-nope)\" has \"ou-nope\", which is not an OU id; expected \"Name\" or \"Name (ou-xxxx-yyyyyyyy)\""
    );
    assert!(handle(&app, json!({"AccountName": "x", "Colour": "blue"}))
        .await
        .is_err());
    assert_eq!(world.calls(), 0);

    // From the queue: parked in the dead-letter queue (no Service Catalog call), not retried.
    let out = handle(&app, batch(std::slice::from_ref(&bad)))
        .await
        .unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert_eq!(
        world.sent(),
        vec![(
            DLQ.to_string(),
            json!({
                "request": bad,
                "attempt": 0,
                "firstSeen": NOW,
                "generation": 0,
                "failure": {"status": "REJECTED", "reason": err.to_string()}
            }),
            0
        )]
    );
    let sc_calls: usize = world.catalog.iter().map(Rule::num_calls).sum();
    assert_eq!(sc_calls, 0);

    // A body that is not even JSON is parked as it came.
    world.sent.lock().unwrap().clear();
    let garbage =
        json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m-x", "body": "{oops"}]});
    assert_eq!(
        handle(&app, garbage).await.unwrap(),
        json!({"batchItemFailures": []})
    );
    let sent = world.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1["invalidBody"], "{oops");
    assert_eq!(sent[0].1["failure"]["status"], "REJECTED");
}

#[tokio::test]
async fn concurrency_cap_is_respected() {
    // Four Account Factory operations already in flight, cap 5: one of three requests starts.
    let mut world = World::new();
    world.catalog[2] = in_flight(4);
    let app = world.app(&[]);
    let out = handle(
        &app,
        batch(&[
            request("Sandbox 1"),
            request("Sandbox 2"),
            request("Sandbox 3"),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert_eq!(world.catalog[2].num_calls(), 1, "counted once per batch");
    let provisions = world.provisions.lock().unwrap().clone();
    assert_eq!(provisions.len(), 1);
    assert_eq!(provisions[0].2, "Sandbox-1");
    assert_eq!(
        world.sent(),
        vec![
            (
                QUEUE.to_string(),
                tracked("Sandbox 1", Some(RECORD), 1, NOW),
                120
            ),
            (QUEUE.to_string(), tracked("Sandbox 2", None, 1, NOW), 300),
            (QUEUE.to_string(), tracked("Sandbox 3", None, 1, NOW), 300),
        ]
    );

    // A lower configured cap is honoured too.
    let mut world = World::new();
    world.catalog[2] = in_flight(2);
    let app = world.app(&[("MAX_CONCURRENT_OPERATIONS", "2")]);
    handle(&app, batch(&[request("Sandbox 4")])).await.unwrap();
    assert!(world.provisions.lock().unwrap().is_empty());
    assert_eq!(
        world.sent(),
        vec![(QUEUE.to_string(), tracked("Sandbox 4", None, 1, NOW), 300)]
    );
}

#[tokio::test]
async fn control_tower_busy_is_retried_later_not_failed() {
    let mut world = World::new();
    world.catalog[3] = mock!(aws_sdk_servicecatalog::Client::provision_product).then_http_response(|| {
        json_error(
            400,
            "InvalidParametersException",
            "AWS Control Tower cannot provision the account because another AWS Control Tower operation is in progress. Try again later.",
        )
    });
    let app = world.app(&[]);
    let out = handle(&app, batch(&[request("Sandbox 1"), request("Sandbox 2")]))
        .await
        .unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert_eq!(
        world.catalog[3].num_calls(),
        1,
        "the second request does not try again"
    );
    assert_eq!(
        world.sent(),
        vec![
            (QUEUE.to_string(), tracked("Sandbox 1", None, 1, NOW), 300),
            (QUEUE.to_string(), tracked("Sandbox 2", None, 1, NOW), 300),
        ]
    );
}

#[tokio::test]
async fn resource_in_use_is_busy_and_requeued_never_parked() {
    for (code, message) in [
        (
            "ResourceInUseException",
            "Account Factory cannot create this enrolled account right now, because another execution is in progress",
        ),
        (
            "InvalidParametersException",
            "Account Factory cannot create this enrolled account right now, because another execution is in progress",
        ),
    ] {
        let mut world = World::new();
        world.catalog[3] = mock!(aws_sdk_servicecatalog::Client::provision_product)
            .then_http_response(move || json_error(400, code, message));
        let app = world.app(&[("BUSY_RETRY_DELAY_SECONDS", "240")]);
        let out = handle(&app, batch(&[request("Sandbox 1")])).await.unwrap();
        assert_eq!(out, json!({"batchItemFailures": []}), "{code}");
        assert_eq!(
            world.sent(),
            vec![(QUEUE.to_string(), tracked("Sandbox 1", None, 1, NOW), 240)],
            "{code}: back on the vending queue after BUSY_RETRY_DELAY_SECONDS, not the DLQ"
        );
    }
}

#[tokio::test]
async fn failed_record_goes_to_the_dead_letter_queue_with_its_errors() {
    let mut world = World::new();
    world.catalog.push(
        mock!(aws_sdk_servicecatalog::Client::describe_record).then_output(|| {
            DescribeRecordOutput::builder()
                .record_detail(
                    RecordDetail::builder()
                        .record_id(RECORD)
                        .status(RecordStatus::Failed)
                        .record_errors(
                            RecordError::builder()
                                .code("ProvisioningFailed")
                                .description(
                                    "Email address aws+sandbox-7@example.com is already in use.",
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()
        }),
    );
    let app = world.app(&[]);
    let message = tracked("Sandbox 7", Some(RECORD), 3, NOW - 3600);
    let out = handle(&app, batch(std::slice::from_ref(&message)))
        .await
        .unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    let mut parked = message;
    parked["failure"] = json!({
        "status": "FAILED",
        "reason": "Account Factory record rec-0123456789abc FAILED: ProvisioningFailed: Email address aws+sandbox-7@example.com is already in use.",
        "recordId": RECORD,
        "recordErrors": [{"Code": "ProvisioningFailed", "Description": "Email address aws+sandbox-7@example.com is already in use."}]
    });
    assert_eq!(world.sent(), vec![(DLQ.to_string(), parked.clone(), 0)]);
    assert!(world.provisions.lock().unwrap().is_empty());

    // Redriven from the dead-letter queue after the cause is fixed: a new generation, a new token.
    world.sent.lock().unwrap().clear();
    handle(&app, batch(&[parked])).await.unwrap();
    let provisions = world.provisions.lock().unwrap().clone();
    assert_eq!(provisions.len(), 1);
    assert_eq!(
        provisions[0].3,
        provision_token("aws+sandbox-7@example.com", 1)
    );
    let sent = world.sent();
    assert_eq!(sent[0].1["generation"], 1);
    assert_eq!(sent[0].1["firstSeen"], NOW);
}

#[tokio::test]
async fn redriven_failed_request_provisions_under_a_fresh_name_and_says_why() {
    let mut world = World::new();
    let app = world.app(&[]);
    // Parked after its record FAILED (generation 0, provisioned product "Sandbox-7").
    let mut parked = tracked("Sandbox 7", Some(RECORD), 3, NOW - 3600);
    parked["failure"] = json!({"status": "FAILED", "recordId": RECORD});
    let report = handle(&app, parked).await.unwrap();
    let provisions = world.provisions.lock().unwrap().clone();
    assert_eq!(provisions.len(), 1);
    assert_eq!(
        provisions[0].2, "Sandbox-7-r1",
        "Service Catalog keeps a FAILED product's name until it is terminated"
    );
    assert_eq!(report["provisionedProductName"], "Sandbox-7-r1");
    let reason = report["nameReason"].as_str().unwrap();
    assert!(
        reason.contains("the FAILED provisioned product Sandbox-7 keeps its name"),
        "{reason}"
    );
    // A redelivered message of the same generation keeps that generation's name and token.
    let again = world.sent()[0].1.clone();
    world.catalog.push(describe(RecordStatus::InProgress));
    let mut retried = again.clone();
    retried.as_object_mut().unwrap().remove("recordId");
    handle(&app, retried).await.unwrap();
    let provisions = world.provisions.lock().unwrap().clone();
    assert_eq!(
        (provisions[1].2.as_str(), provisions[1].3.as_str()),
        (
            "Sandbox-7-r1",
            provision_token("aws+sandbox-7@example.com", 1).as_str()
        )
    );
    // The first generation is reported with its requested name.
    let world = World::new();
    let report = handle(&world.app(&[]), request("Sandbox 7")).await.unwrap();
    assert_eq!(
        (&report["provisionedProductName"], &report["nameReason"]),
        (&json!("Sandbox-7"), &json!("requested"))
    );
}

#[tokio::test]
async fn requests_past_the_deadline_are_parked() {
    let mut world = World::new();
    world.catalog.push(describe(RecordStatus::InProgress));
    let app = world.app(&[("REQUEST_DEADLINE_SECONDS", "3600")]);
    let message = tracked("Sandbox 7", Some(RECORD), 30, NOW - 3600);
    handle(&app, batch(std::slice::from_ref(&message)))
        .await
        .unwrap();
    let mut parked = message;
    parked["failure"] = json!({
        "status": "EXPIRED",
        "reason": "gave up after 3600s (REQUEST_DEADLINE_SECONDS): its record is still in progress",
        "recordId": RECORD
    });
    assert_eq!(world.sent(), vec![(DLQ.to_string(), parked, 0)]);
}

#[tokio::test]
async fn retryable_errors_return_the_message_to_the_queue() {
    let mut world = World::new();
    world.catalog.push(
        mock!(aws_sdk_servicecatalog::Client::describe_record)
            .then_http_response(|| json_error(400, "ThrottlingException", "Rate exceeded")),
    );
    let app = world.app(&[]);
    let out = handle(&app, batch(&[tracked("Sandbox 7", Some(RECORD), 1, NOW)]))
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"batchItemFailures": [{"itemIdentifier": "m-0"}]})
    );
    assert!(world.sent().is_empty(), "not parked: SQS delivers it again");
}

#[tokio::test]
async fn portfolio_is_shared_with_the_new_account_when_asked() {
    share_portfolio_in(
        &[],
        "arn:aws:iam::345678901234:role/AWSControlTowerExecution",
    )
    .await;
}

#[tokio::test]
async fn in_govcloud_the_execution_role_assumed_for_the_share_is_a_govcloud_arn() {
    // Lambda sets AWS_REGION; nothing else names the partition.
    share_portfolio_in(
        &[("AWS_REGION", "us-gov-west-1")],
        "arn:aws-us-gov:iam::345678901234:role/AWSControlTowerExecution",
    )
    .await;
}

/// A tracked account's portfolio share, with `env` added to the configuration and the
/// execution role assumed in the new account expected to be `role_arn`.
async fn share_portfolio_in(env: &[(&str, &str)], role_arn: &'static str) {
    let mut world = World::new();
    world.catalog.push(describe(RecordStatus::Succeeded));
    world.catalog.push(
        mock!(aws_sdk_servicecatalog::Client::create_portfolio_share)
            .match_requests(|req| {
                req.portfolio_id() == Some(PORTFOLIO) && req.account_id() == Some(NEW_ACCOUNT)
            })
            .then_output(|| CreatePortfolioShareOutput::builder().build()),
    );
    world.org.push(
        mock!(aws_sdk_organizations::Client::tag_resource)
            .then_output(|| TagResourceOutput::builder().build()),
    );
    world.sts.push(
        mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(move |req| req.role_arn() == Some(role_arn))
            .then_output(|| {
                AssumeRoleOutput::builder()
                    .credentials(
                        aws_sdk_sts::types::Credentials::builder()
                            .access_key_id("ASIAEXAMPLE")
                            .secret_access_key("secret")
                            .session_token("token")
                            .expiration(DateTime::from_secs(4_000_000_000))
                            .build()
                            .unwrap(),
                    )
                    .build()
            }),
    );
    world.member.push(
        mock!(aws_sdk_servicecatalog::Client::accept_portfolio_share)
            .match_requests(|req| req.portfolio_id() == Some(PORTFOLIO))
            .then_output(|| AcceptPortfolioShareOutput::builder().build()),
    );
    world.member.push(
        mock!(aws_sdk_servicecatalog::Client::associate_principal_with_portfolio)
            .match_requests(|req| {
                req.principal_arn() == Some("arn:aws:iam::345678901234:role/Developers")
                    && req.principal_type().map(|t| t.as_str()) == Some("IAM")
            })
            .then_output(|| AssociatePrincipalWithPortfolioOutput::builder().build()),
    );
    let mut vars = vec![
        ("SHARE_PORTFOLIO", "true"),
        ("PORTFOLIO_ID", PORTFOLIO),
        (
            "PORTFOLIO_PRINCIPAL_ARN",
            "arn:aws:iam::{accountId}:role/Developers",
        ),
        ("PORTFOLIO_PRINCIPAL_TYPE", "IAM"),
    ];
    vars.extend_from_slice(env);
    let app = world.app(&vars);
    let out = handle(&app, batch(&[tracked("Sandbox 7", Some(RECORD), 4, NOW)]))
        .await
        .unwrap();
    assert_eq!(out, json!({"batchItemFailures": []}));
    assert_eq!(world.catalog[5].num_calls(), 1, "CreatePortfolioShare");
    assert_eq!(world.sts[0].num_calls(), 1, "AssumeRole");
    assert_eq!(world.member[0].num_calls(), 1, "AcceptPortfolioShare");
    assert_eq!(
        world.member[1].num_calls(),
        1,
        "AssociatePrincipalWithPortfolio"
    );
}

#[tokio::test]
async fn every_shipped_vending_event_runs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("vending-") {
            continue;
        }
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut world = World::new();
        world.catalog.push(describe(RecordStatus::InProgress));
        let app = world.app(&[]);
        let out = handle(&app, event.clone())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if name.starts_with("vending-sqs-") {
            let typed: aws_lambda_events::event::sqs::SqsEvent =
                serde_json::from_value(event).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(typed.records.len(), 1);
            assert_eq!(out, json!({"batchItemFailures": []}), "{name}");
        } else {
            assert_eq!(out["status"], "CREATED", "{name}: {out}");
        }
        let sent = world.sent();
        assert_eq!(sent.len(), 1, "{name}: {sent:?}");
        assert_eq!(sent[0].0, QUEUE, "{name}: back on the queue to be tracked");
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "vending-request.json",
            "vending-sqs-request.json",
            "vending-sqs-track.json"
        ]
    );
}
