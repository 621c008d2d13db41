//! account-vending end to end: its handler with the real SDK clients against moto (STS,
//! Organizations, SQS) and the Service Catalog emulator (Control Tower's Account Factory, which
//! creates the accounts in moto), driven through real SQS queues the way Lambda's event source
//! mapping would. The last leg hands the new account to account-lifecycle: the emulator's
//! Control Tower CreateManagedAccount event and vending's onboard request, through the shared
//! engine. Skips without moto (fails in CI).
#![allow(clippy::unwrap_used)]

mod common;

use account_vending::{handle, App, MemberCatalog, VendingClients, VendingConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_servicecatalog::types::{
    AccessLevelFilter, AccessLevelFilterKey, ProvisionedProductStatus,
    ProvisionedProductViewFilterBy, ProvisioningParameter,
};
use common::{assert_least_privilege, setup, Setup};
use local_world::clients;
use local_world::emulator::{ACCOUNT_FACTORY, ACCOUNT_FACTORY_BUSY};
use local_world::seed::demo_spec;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

const TAG_KEY: &str = "ct-entitlements:licenses";
const SSO_PATTERN: &str =
    "arn:aws:iam:::role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_AWSAdministratorAccess_*";

/// Service Catalog inside a new account, with the assumed role's credentials, at the emulator.
struct LocalMemberCatalog {
    base: aws_config::SdkConfig,
    emulator: String,
}

impl MemberCatalog for LocalMemberCatalog {
    fn catalog(&self, credentials: Credentials) -> aws_sdk_servicecatalog::Client {
        let config = self
            .base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build();
        clients::service_catalog_from(&config, &self.emulator)
    }
}

/// account-vending wired to the world, and its two queues.
struct Vending {
    app: App,
    queue: String,
    dead_letter_queue: String,
}

async fn create_queue(s: &Setup, name: &str) -> String {
    s.world
        .sqs()
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string()
}

impl Vending {
    /// Tracking and busy delays of 0 s (the queues deliver at once); `env` adds or overrides
    /// settings of both account-vending and the common configuration.
    async fn new(s: &Setup, env: &[(&str, &str)]) -> Self {
        let queue = create_queue(s, "vending").await;
        let dead_letter_queue = create_queue(s, "vending-dlq").await;
        let mut vars: HashMap<String, String> = HashMap::from([
            ("VENDING_QUEUE_URL".into(), queue.clone()),
            (
                "VENDING_DEAD_LETTER_QUEUE_URL".into(),
                dead_letter_queue.clone(),
            ),
            ("TRACK_DELAY_SECONDS".into(), "0".into()),
            ("BUSY_RETRY_DELAY_SECONDS".into(), "0".into()),
            ("LICENSES_TAG_KEY".into(), TAG_KEY.into()),
            ("ONBOARDING_QUEUE_URL".into(), s.queue_url.clone()),
            ("ASSUME_ROLE_BACKOFF_MS".into(), "10".into()),
        ]);
        for (k, v) in env {
            vars.insert(k.to_string(), v.to_string());
        }
        let config = VendingConfig::from_lookup(|k| vars.get(k).cloned()).unwrap();
        let shared =
            shared::config::Config::from_lookup_per_request(|k| vars.get(k).cloned()).unwrap();
        let clients = VendingClients {
            catalog: s.world.service_catalog(),
            organizations: s.world.organizations(),
            sqs: s.world.sqs(),
            sts: s.world.sts(),
            members: Arc::new(LocalMemberCatalog {
                base: s.world.sdk_config().clone(),
                emulator: s.world.emulator_url(),
            }),
        };
        Vending {
            app: App::new(clients, config, shared),
            queue,
            dead_letter_queue,
        }
    }

    async fn submit(&self, s: &Setup, request: &Value) {
        s.world
            .sqs()
            .send_message()
            .queue_url(&self.queue)
            .message_body(request.to_string())
            .send()
            .await
            .unwrap();
    }

    /// One Lambda invocation: what is on the vending queue now, as one SQS batch; the
    /// messages it handled are deleted. Returns the bodies handled. The emulator's clock first
    /// moves past the realistic profile's Account Factory delay (as the re-queue delay would in
    /// AWS); under the default profile provisioning takes no time, so this changes nothing.
    async fn pump(&self, s: &Setup) -> Vec<Value> {
        s.world
            .control()
            .advance_clock(Duration::from_secs(3))
            .await
            .unwrap();
        let sqs = s.world.sqs();
        let out = sqs
            .receive_message()
            .queue_url(&self.queue)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .send()
            .await
            .unwrap();
        let messages = out.messages();
        let records: Vec<Value> = messages
            .iter()
            .map(|m| json!({"messageId": m.message_id(), "eventSource": "aws:sqs", "body": m.body()}))
            .collect();
        let response = handle(&self.app, json!({ "Records": records }))
            .await
            .unwrap();
        assert_eq!(
            response,
            json!({"batchItemFailures": []}),
            "every message was handled"
        );
        for m in messages {
            sqs.delete_message()
                .queue_url(&self.queue)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        messages
            .iter()
            .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
            .collect()
    }
}

/// The bodies on a queue now, left there.
async fn peek(s: &Setup, queue: &str) -> Vec<Value> {
    let out = s
        .world
        .sqs()
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect()
}

fn account_request(name: &str, email: &str, ou: &str, entitlements: &[&str]) -> Value {
    json!({
        "AccountName": name,
        "AccountEmail": email,
        "ManagedOrganizationalUnit": ou,
        "SSOUserEmail": "jane.doe@example.com",
        "SSOUserFirstName": "Jane",
        "SSOUserLastName": "Doe",
        "Entitlements": entitlements,
    })
}

/// Per operation, how many calls the emulator has seen.
async fn call_counts(s: &Setup) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for c in s.world.control().calls().await.unwrap() {
        *counts.entry(c.operation).or_insert(0) += 1;
    }
    counts
}

fn count(counts: &BTreeMap<String, usize>, op: &str) -> usize {
    counts.get(op).copied().unwrap_or(0)
}

/// The Account Factory product and its artifact, as anyone would look them up.
async fn account_factory(s: &Setup) -> (String, String) {
    let described = s
        .world
        .service_catalog()
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

/// An Account Factory launch made outside account-vending (the console, another pipeline).
async fn launch_elsewhere(s: &Setup, name: &str, ou: &str) -> String {
    let (product, artifact) = account_factory(s).await;
    let param = |k: &str, v: &str| ProvisioningParameter::builder().key(k).value(v).build();
    let email = format!("{name}@example.com");
    s.world
        .service_catalog()
        .provision_product()
        .product_id(product)
        .provisioning_artifact_id(artifact)
        .provisioned_product_name(name)
        .provision_token(format!("console-{name}"))
        .provisioning_parameters(param("AccountName", name))
        .provisioning_parameters(param("AccountEmail", &email))
        .provisioning_parameters(param("ManagedOrganizationalUnit", ou))
        .provisioning_parameters(param("SSOUserEmail", &email))
        .provisioning_parameters(param("SSOUserFirstName", "Ops"))
        .provisioning_parameters(param("SSOUserLastName", "Person"))
        .send()
        .await
        .unwrap()
        .record_detail()
        .unwrap()
        .record_id()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn requested_account_is_vended_tagged_shared_and_entitled_by_account_lifecycle() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let control = s.world.control();
    control
        .configure(json!({ "provisioningMs": 60_000 }))
        .await
        .unwrap();
    let sandbox = s.org.ou("Sandbox").unwrap().id.clone();
    let firewall = s.org.license("prod-demo-firewall").unwrap().arn.clone();
    let portfolio = s
        .world
        .service_catalog()
        .create_portfolio()
        .display_name("Marketplace software")
        .provider_name("Platform team")
        .idempotency_token("software")
        .send()
        .await
        .unwrap()
        .portfolio_detail()
        .unwrap()
        .id()
        .unwrap()
        .to_string();
    let v = Vending::new(
        &s,
        &[
            ("SHARE_PORTFOLIO", "true"),
            ("PORTFOLIO_ID", &portfolio),
            ("PORTFOLIO_PRINCIPAL_ARN", SSO_PATTERN),
        ],
    )
    .await;
    let request = account_request(
        "Vended Team 1",
        "aws+vended-team-1@example.com",
        &format!("Sandbox ({sandbox})"),
        &["prod-demo-analytics", &firewall],
    );
    v.submit(&s, &request).await;

    // 1. Provisioned, and put back on the queue to be tracked.
    assert_eq!(v.pump(&s).await, vec![request.clone()]);
    let calls = call_counts(&s).await;
    assert_eq!(count(&calls, "SearchProductsAsAdmin"), 1, "{calls:?}");
    assert_eq!(count(&calls, "SearchProvisionedProducts"), 1, "{calls:?}");
    assert_eq!(count(&calls, "ProvisionProduct"), 1, "{calls:?}");
    let queued = peek(&s, &v.queue).await;
    assert_eq!(queued.len(), 1, "{queued:#?}");
    let tracked = &queued[0];
    assert_eq!(tracked["request"], request);
    assert_eq!(tracked["attempt"], 1, "first look at the record: {tracked}");
    let record_id = tracked["recordId"].as_str().unwrap().to_string();
    assert!(record_id.starts_with("rec-"), "{tracked}");
    // The launch is a provisioned product UNDER_CHANGE: one Control Tower operation in flight.
    let in_flight = s
        .world
        .service_catalog()
        .search_provisioned_products()
        .access_level_filter(
            AccessLevelFilter::builder()
                .key(AccessLevelFilterKey::Account)
                .value("self")
                .build(),
        )
        .filters(
            ProvisionedProductViewFilterBy::SearchQuery,
            vec!["status:UNDER_CHANGE".to_string()],
        )
        .send()
        .await
        .unwrap();
    assert_eq!(in_flight.total_results_count(), 1);
    let product = &in_flight.provisioned_products()[0];
    assert_eq!(product.name(), Some("Vended-Team-1"));
    assert_eq!(product.last_record_id(), Some(record_id.as_str()));
    assert_eq!(
        product.status(),
        Some(&ProvisionedProductStatus::UnderChange)
    );

    // 2. Still in progress: tracked again, nothing new started.
    v.pump(&s).await;
    let queued = peek(&s, &v.queue).await;
    assert_eq!(queued.len(), 1, "{queued:#?}");
    assert_eq!(queued[0]["recordId"], record_id.as_str());
    assert_eq!(queued[0]["attempt"], 2);
    let calls = call_counts(&s).await;
    assert_eq!(count(&calls, "ProvisionProduct"), 1);
    assert_eq!(count(&calls, "DescribeRecord"), 1);

    // 3. Control Tower finishes: the account exists, vending tags it, asks account-lifecycle to
    //    onboard it, shares the software portfolio, and stops tracking.
    control
        .advance_clock(Duration::from_secs(61))
        .await
        .unwrap();
    v.pump(&s).await;
    assert!(peek(&s, &v.queue).await.is_empty(), "tracking ended");
    assert!(peek(&s, &v.dead_letter_queue).await.is_empty());
    let described = s
        .world
        .service_catalog()
        .describe_record()
        .id(&record_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described
            .record_detail()
            .unwrap()
            .status()
            .unwrap()
            .as_str(),
        "SUCCEEDED"
    );
    let account = described
        .record_outputs()
        .iter()
        .find(|o| o.output_key() == Some("AccountId"))
        .and_then(|o| o.output_value())
        .unwrap()
        .to_string();

    // The account in moto Organizations: named, in the requested OU, with its licenses tag.
    let orgs = s.world.organizations();
    let created = orgs
        .describe_account()
        .account_id(&account)
        .send()
        .await
        .unwrap();
    let created = created.account().unwrap();
    assert_eq!(created.name(), Some("Vended Team 1"));
    assert_eq!(created.email(), Some("aws+vended-team-1@example.com"));
    let parents = orgs.list_parents().child_id(&account).send().await.unwrap();
    assert_eq!(parents.parents()[0].id(), Some(sandbox.as_str()));
    let tags = orgs
        .list_tags_for_resource()
        .resource_id(&account)
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<&str, &str> = tags.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(
        tags.get(TAG_KEY).copied(),
        Some(format!("prod-demo-analytics {firewall}").as_str()),
        "{tags:?}"
    );
    let onboard = peek(&s, &s.queue_url).await;
    assert_eq!(
        onboard,
        vec![json!({"accountId": account, "reason": "vending", "attempt": 0})]
    );
    // The portfolio: shared by the management account, accepted and associated inside the
    // new account (with the assumed execution role).
    let state = control.state().await.unwrap();
    let sc = &state["serviceCatalog"];
    assert!(
        sc["portfolioShares"].as_array().unwrap().contains(
            &json!({"PortfolioId": portfolio, "SharePrincipals": false, "Target": {"Type": "ACCOUNT", "Value": account}})
        ),
        "{sc:#}"
    );
    assert!(
        sc["acceptedShares"]
            .as_array()
            .unwrap()
            .contains(&json!({"PortfolioId": portfolio, "AccountId": account})),
        "{sc:#}"
    );
    assert!(
        sc["principalAssociations"]
            .as_array()
            .unwrap()
            .contains(&json!({
                "PortfolioId": portfolio,
                "AccountId": account,
                "PrincipalARN": SSO_PATTERN,
                "PrincipalType": "IAM_PATTERN",
            })),
        "{sc:#}"
    );
    let member_calls: Vec<_> = control
        .calls()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.operation == "AcceptPortfolioShare")
        .map(|c| c.account)
        .collect();
    assert_eq!(member_calls, vec![account.clone()]);

    // 4. Control Tower's CreateManagedAccount event reaches account-lifecycle, which reads the
    //    tag: exactly the requested licenses (the Sandbox OU's own rule grants nothing, and the
    //    global selection, observability, does not apply to it).
    let events = control.control_tower_events().await.unwrap();
    assert_eq!(events.len(), 1, "{events:#?}");
    let status = &events[0]["detail"]["serviceEventDetails"]["createManagedAccountStatus"];
    assert_eq!(status["state"], "SUCCEEDED");
    assert_eq!(status["account"]["accountId"], account.as_str());
    assert_eq!(
        status["organizationalUnit"]["organizationalUnitId"],
        sandbox.as_str()
    );
    let rules = json!({ sandbox.clone(): [] }).to_string();
    let engine = s.engine(&[
        ("ALL_MARKETPLACE_LICENSES", "false"),
        ("PRODUCT_SKUS", "prod-demo-observability"),
        ("OU_LICENSE_RULES", &rules),
        ("LICENSES_TAG_KEY", TAG_KEY),
    ]);
    let report = s.onboard(&engine, events[0].clone()).await;
    assert_eq!(report["outcome"], "entitled", "{report:#}");
    assert_eq!(report["accountId"], account.as_str(), "{report:#}");
    let skus: BTreeSet<&str> = report["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["productSku"].as_str().unwrap())
        .collect();
    assert_eq!(
        skus,
        BTreeSet::from(["prod-demo-analytics", "prod-demo-firewall"]),
        "{report:#}"
    );
    let analytics = s.org.license("prod-demo-analytics").unwrap().arn.clone();
    let mut grants = s.grants_in(&account).await;
    grants.sort();
    let mut expected = vec![
        (analytics, "ACTIVE".to_string()),
        (firewall.clone(), "ACTIVE".to_string()),
    ];
    expected.sort();
    assert_eq!(grants, expected, "the account's own view of its grants");

    // 5. Vending's onboard request arrives too: nothing left to do.
    let grants_created = s.calls("CreateGrant").await;
    assert_eq!(grants_created, 2);
    assert_eq!(s.drain_queue(&engine).await, (1, 0));
    assert_eq!(
        s.calls("CreateGrant").await,
        grants_created,
        "no second grant"
    );
}

#[tokio::test]
async fn failed_record_is_parked_with_its_record_errors() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let v = Vending::new(&s, &[]).await;
    let accounts_before = s
        .world
        .organizations()
        .list_accounts()
        .send()
        .await
        .unwrap()
        .accounts()
        .len();
    // The emulator's failEmailMarker ("fail") makes Control Tower fail this request.
    let request = account_request(
        "Doomed",
        "aws+will-fail@example.com",
        "Workloads",
        &["prod-demo-analytics"],
    );
    v.submit(&s, &request).await;
    v.pump(&s).await;
    let queued = peek(&s, &v.queue).await;
    assert_eq!(queued.len(), 1, "tracked: {queued:#?}");
    let record_id = queued[0]["recordId"].as_str().unwrap().to_string();

    v.pump(&s).await;
    assert!(peek(&s, &v.queue).await.is_empty(), "no more tracking");
    let parked = peek(&s, &v.dead_letter_queue).await;
    assert_eq!(parked.len(), 1, "{parked:#?}");
    let parked = &parked[0];
    assert_eq!(parked["request"], request);
    assert_eq!(parked["recordId"], record_id.as_str());
    let failure = &parked["failure"];
    assert_eq!(failure["status"], "FAILED", "{parked:#}");
    assert_eq!(failure["recordId"], record_id.as_str());
    let errors = failure["recordErrors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{parked:#}");
    assert_eq!(errors[0]["Code"], "ProvisioningFailed");
    let description = errors[0]["Description"].as_str().unwrap();
    assert!(description.contains("injected failure"), "{description}");
    assert!(
        failure["reason"].as_str().unwrap().contains(description),
        "{parked:#}"
    );

    // Nothing was created, tagged or handed to account-lifecycle.
    let accounts_after = s
        .world
        .organizations()
        .list_accounts()
        .send()
        .await
        .unwrap()
        .accounts()
        .len();
    assert_eq!(accounts_after, accounts_before);
    assert!(peek(&s, &s.queue_url).await.is_empty());
    // Control Tower's FAILED event is skipped by account-lifecycle.
    let events = s.world.control().control_tower_events().await.unwrap();
    assert_eq!(events.len(), 1);
    let report = common::handle(&s.engine(&[]), events[0].clone()).await;
    assert_eq!(report["outcome"], "skipped", "{report:#}");
}

#[tokio::test]
async fn redriven_failed_request_is_vended_under_a_fresh_name() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let control = s.world.control();
    control
        .configure(json!({ "failEmailMarker": "flaky" }))
        .await
        .unwrap();
    let v = Vending::new(&s, &[]).await;
    let request = account_request(
        "Flaky",
        "aws+flaky@example.com",
        "Workloads",
        &["prod-demo-analytics"],
    );
    v.submit(&s, &request).await;
    v.pump(&s).await;
    v.pump(&s).await;
    let parked = peek(&s, &v.dead_letter_queue).await;
    assert_eq!(parked.len(), 1, "{parked:#?}");
    assert_eq!(parked[0]["failure"]["status"], "FAILED");

    // The operator fixes the cause and redrives the parked message.
    control
        .configure(json!({ "failEmailMarker": "no-such-marker" }))
        .await
        .unwrap();
    let report = handle(&v.app, parked[0].clone()).await.unwrap();
    assert_eq!(report["provisionedProductName"], "Flaky-r1", "{report:#}");
    assert!(
        report["nameReason"]
            .as_str()
            .unwrap()
            .contains("the FAILED provisioned product Flaky keeps its name"),
        "{report:#}"
    );
    assert_eq!(report["generation"], 1);
    assert!(report.get("error").is_none(), "{report:#}");
    for _ in 0..5 {
        if peek(&s, &v.queue).await.is_empty() {
            break;
        }
        v.pump(&s).await;
    }
    assert!(peek(&s, &v.queue).await.is_empty(), "finished");
    assert_eq!(
        peek(&s, &v.dead_letter_queue).await.len(),
        1,
        "only the original"
    );
    let state = control.state().await.unwrap();
    let products: Vec<(String, String)> = state["serviceCatalog"]["provisionedProducts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["Name"].as_str().unwrap().to_string(),
                p["Status"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(name, _)| name.starts_with("Flaky"))
        .collect();
    assert_eq!(
        products,
        vec![
            ("Flaky".to_string(), "ERROR".to_string()),
            ("Flaky-r1".to_string(), "AVAILABLE".to_string()),
        ],
        "the failed product is left for the operator; the account came from the fresh name"
    );
}

#[tokio::test]
async fn at_the_concurrency_cap_requests_wait_on_the_queue() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let control = s.world.control();
    control
        .configure(json!({ "provisioningMs": 600_000 }))
        .await
        .unwrap();
    // One Control Tower operation in flight, started outside vending.
    launch_elsewhere(&s, "console-launch", "Workloads").await;
    let v = Vending::new(&s, &[("MAX_CONCURRENT_OPERATIONS", "1")]).await;
    let request = account_request(
        "Patient",
        "aws+patient@example.com",
        "Workloads",
        &["prod-demo-analytics"],
    );
    v.submit(&s, &request).await;

    // MAX_CONCURRENT_OPERATIONS (1) is taken: back on the queue, not provisioned.
    v.pump(&s).await;
    let calls = call_counts(&s).await;
    assert_eq!(count(&calls, "SearchProvisionedProducts"), 1, "{calls:?}");
    assert_eq!(
        count(&calls, "ProvisionProduct"),
        1,
        "only the outside launch"
    );
    let queued = peek(&s, &v.queue).await;
    assert_eq!(queued.len(), 1, "{queued:#?}");
    assert_eq!(queued[0]["request"], request);
    assert_eq!(queued[0]["attempt"], 1);
    assert!(queued[0].get("recordId").is_none(), "{queued:#?}");

    // The other launch finishes: the slot is free, the request starts.
    control
        .advance_clock(Duration::from_secs(601))
        .await
        .unwrap();
    v.pump(&s).await;
    let calls = call_counts(&s).await;
    assert_eq!(count(&calls, "ProvisionProduct"), 2, "{calls:?}");
    let queued = peek(&s, &v.queue).await;
    assert_eq!(queued.len(), 1, "{queued:#?}");
    assert!(queued[0]["recordId"].as_str().is_some(), "{queued:#?}");
    assert_eq!(
        queued[0]["attempt"], 1,
        "the count restarts with the record"
    );

    // Now vending's own launch holds the only slot; two new requests in one batch both wait,
    // and the slot count is taken once per invocation.
    for name in ["Second", "Third"] {
        let email = format!("aws+{}@example.com", name.to_lowercase());
        v.submit(&s, &account_request(name, &email, "Workloads", &[]))
            .await;
    }
    let searches = count(&call_counts(&s).await, "SearchProvisionedProducts");
    // Bounded: a regression that loses a message fails here instead of hanging the suite.
    let mut looks = 0;
    loop {
        let queued = peek(&s, &v.queue).await.len();
        if queued >= 3 {
            break;
        }
        looks += 1;
        assert!(
            looks < 250,
            "after 250 looks 20 ms apart, {queued} of the 3 requests are on the queue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(v.pump(&s).await.len(), 3);
    let calls = call_counts(&s).await;
    assert_eq!(count(&calls, "ProvisionProduct"), 2, "{calls:?}");
    assert_eq!(count(&calls, "SearchProvisionedProducts"), searches + 1);
    let mut waiting: Vec<String> = peek(&s, &v.queue)
        .await
        .iter()
        .filter(|m| m.get("recordId").is_none())
        .map(|m| m["request"]["AccountName"].as_str().unwrap().to_string())
        .collect();
    waiting.sort();
    assert_eq!(waiting, vec!["Second", "Third"]);
}

#[tokio::test]
async fn control_tower_event_before_the_tag_is_made_good_by_the_onboard_request() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let sandbox = s.org.ou("Sandbox").unwrap().id.clone();
    let v = Vending::new(&s, &[]).await;
    let request = account_request(
        "Early Event",
        "aws+early-event@example.com",
        "Sandbox",
        &["prod-demo-observability"],
    );
    v.submit(&s, &request).await;
    v.pump(&s).await;
    let rules = json!({ sandbox: [] }).to_string();
    let engine = s.engine(&[
        ("ALL_MARKETPLACE_LICENSES", "false"),
        ("PRODUCT_SKUS", "prod-demo-analytics"),
        ("OU_LICENSE_RULES", &rules),
        ("LICENSES_TAG_KEY", TAG_KEY),
    ]);

    // Control Tower is done (the clock moved past any provisioning delay) and its event is
    // handled before vending has looked at the record: the account has no licenses tag yet.
    s.world
        .control()
        .advance_clock(Duration::from_secs(3))
        .await
        .unwrap();
    let events = s.world.control().control_tower_events().await.unwrap();
    assert_eq!(events.len(), 1, "{events:#?}");
    let first = common::handle(&engine, events[0].clone()).await;
    assert_eq!(first["outcome"], "skipped", "{first:#}");
    let account = first["accountId"].as_str().unwrap().to_string();
    assert!(s.grants_in(&account).await.is_empty());

    // Vending sees SUCCEEDED, tags the account and sends the onboard request, which entitles it.
    v.pump(&s).await;
    assert!(peek(&s, &v.queue).await.is_empty());
    assert_eq!(s.drain_queue(&engine).await, (1, 0));
    let observability = s
        .org
        .license("prod-demo-observability")
        .unwrap()
        .arn
        .clone();
    assert_eq!(
        s.grants_in(&account).await,
        vec![(observability, "ACTIVE".to_string())]
    );
}

#[tokio::test]
async fn control_tower_busy_is_waited_out_not_failed() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let control = s.world.control();
    control
        .configure(json!({ "provisioningMs": 600_000, "maxConcurrentAccountOperations": 1 }))
        .await
        .unwrap();
    launch_elsewhere(&s, "console-launch", "Workloads").await;
    // account-vending allows 5, but Control Tower itself runs only 1 here.
    let v = Vending::new(&s, &[]).await;
    let request = account_request(
        "Patient",
        "aws+patient@example.com",
        "Workloads",
        &["prod-demo-analytics"],
    );

    let report = handle(&v.app, request.clone()).await.unwrap();
    assert_least_privilege(&report, shared::permissions::ACCOUNT_VENDING);
    assert_eq!(report["status"], "WAITING", "{report:#}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .contains(ACCOUNT_FACTORY_BUSY),
        "{report:#}"
    );
    assert_eq!(report["nextCheckInSeconds"], 0);
    assert!(report.get("error").is_none(), "{report:#}");
    let refused: Vec<String> = control
        .calls()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.operation == "ProvisionProduct")
        .map(|c| c.outcome)
        .collect();
    assert_eq!(refused, vec!["ok", "ResourceInUseException"]);
    let queued = peek(&s, &v.queue).await;
    assert_eq!(queued.len(), 1, "{queued:#?}");
    assert_eq!(queued[0]["request"], request);
    assert_eq!(queued[0]["attempt"], 1);
    assert!(queued[0].get("recordId").is_none());
    assert!(peek(&s, &v.dead_letter_queue).await.is_empty());
}

#[tokio::test]
async fn invalid_requests_make_no_aws_call() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let v = Vending::new(&s, &[]).await;
    let before = s.world.control().calls().await.unwrap().len();
    let bad = account_request(
        "",
        "not-an-email",
        "Sandbox (ou-bad)",
        &["prod-demo-analytics"],
    );

    // A direct invocation: an InvalidInput error, before any AWS call.
    let err = handle(&v.app, bad.clone()).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidInput", "{err}");
    for needle in ["AccountName", "AccountEmail", "ManagedOrganizationalUnit"] {
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
    assert_eq!(s.world.control().calls().await.unwrap().len(), before);
    assert!(peek(&s, &v.queue).await.is_empty());
    assert!(peek(&s, &v.dead_letter_queue).await.is_empty());

    // From the queue: parked as REJECTED, still without a Service Catalog call.
    v.submit(&s, &bad).await;
    v.pump(&s).await;
    assert_eq!(s.world.control().calls().await.unwrap().len(), before);
    assert!(peek(&s, &v.queue).await.is_empty());
    let parked = peek(&s, &v.dead_letter_queue).await;
    assert_eq!(parked.len(), 1, "{parked:#?}");
    assert_eq!(parked[0]["request"], bad);
    assert_eq!(parked[0]["failure"]["status"], "REJECTED", "{parked:#?}");
    assert!(
        parked[0]["failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("AccountEmail"),
        "{parked:#?}"
    );
}
