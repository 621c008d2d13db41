//! Shared set-up of the end-to-end tests: a seeded local world and engines pointed at it.
#![allow(clippy::unwrap_used, dead_code)]

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use local_world::seed::{self, OrgSpec, SeededOrg};
use local_world::{clients, World};
use serde_json::{json, Value};
use shared::{
    clients::Clients, clients::MemberClientFactory, clients::MemberClients, config::Config,
    engine::Engine,
};
use std::collections::HashMap;
use std::sync::Arc;

/// The reconciler's settings in tests: `queue_url` for every message, the default quota, no
/// backfill queue or OU scope, offboarding as given.
pub fn reconcile_config(
    queue_url: &str,
    offboard: Option<shared::engine::OffboardMode>,
) -> shared::reconcile::ReconcileConfig {
    shared::reconcile::ReconcileConfig {
        onboarding_queue_url: queue_url.to_string(),
        backfill_queue_url: None,
        grant_quota: 2000,
        grant_quota_warn_percent: 90,
        ous: Vec::new(),
        offboard,
        dry_run: false,
        coalesce_queue_url: None,
        change_queue_url: None,
    }
}

/// Member-account clients for assumed credentials, pointed at the local world.
pub struct LocalMembers {
    pub base: aws_config::SdkConfig,
    pub moto: String,
    pub emulator: String,
}

impl LocalMembers {
    pub fn of(world: &local_world::World) -> Self {
        LocalMembers {
            base: world.sdk_config().clone(),
            moto: world.moto_url().to_string(),
            emulator: world.emulator_url(),
        }
    }
}

impl MemberClientFactory for LocalMembers {
    fn member_clients(&self, credentials: Credentials) -> MemberClients {
        let config = self
            .base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build();
        MemberClients {
            iam: clients::iam_from(&config, &self.moto),
            license_manager: clients::license_manager_from(&config, &self.emulator),
        }
    }
}

pub struct Setup {
    pub world: World,
    pub org: SeededOrg,
    pub queue_url: String,
}

/// A new SQS queue in the world's moto: (URL, ARN).
/// A chains table in moto as the template's `ChainTable` declares it (partition key
/// `account`, on demand); its name, for `CHAIN_TABLE`.
#[allow(dead_code)] // not every test binary that includes common keeps chains
pub async fn chain_table(world: &World, name: &str) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    world
        .dynamodb()
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("account")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("account")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    name.to_string()
}

/// An account's item in the chains table, as strings (`seq`, `state`, `body`, `poked`,
/// `expires`), if any.
#[allow(dead_code)]
pub async fn chain_item(
    world: &World,
    table: &str,
    account: &str,
) -> Option<HashMap<String, String>> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let out = world
        .dynamodb()
        .get_item()
        .table_name(table)
        .key("account", AttributeValue::S(account.to_string()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.item().map(|item| {
        item.iter()
            .map(|(k, v)| {
                let text = match v {
                    AttributeValue::S(s) | AttributeValue::N(s) => s.clone(),
                    AttributeValue::Bool(b) => b.to_string(),
                    other => format!("{other:?}"),
                };
                (k.clone(), text)
            })
            .collect()
    })
}

pub async fn new_queue(world: &World, name: &str) -> (String, String) {
    let sqs = world.sqs();
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let arn =
        attributes.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
    (url, arn)
}

/// Every message body on a queue, each deleted once read.
pub async fn take_bodies(world: &World, url: &str) -> Vec<String> {
    let sqs = world.sqs();
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if got.messages().is_empty() {
            return out;
        }
        for m in got.messages() {
            out.push(m.body().unwrap_or_default().to_string());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

pub async fn setup(spec: OrgSpec) -> Option<Setup> {
    let world = World::start_or_skip().await?;
    let org = seed::seed(&world, &spec).await.unwrap();
    let (queue_url, _) = new_queue(&world, "onboarding").await;
    Some(Setup {
        world,
        org,
        queue_url,
    })
}

impl Setup {
    pub fn engine(&self, env: &[(&str, &str)]) -> Engine {
        self.engine_with(env, self.world.license_manager())
    }

    pub fn engine_with(
        &self,
        env: &[(&str, &str)],
        license_manager: aws_sdk_licensemanager::Client,
    ) -> Engine {
        self.engine_from(
            env,
            license_manager,
            Arc::new(LocalMembers::of(&self.world)),
        )
    }

    /// An engine with the test defaults plus `env`, the given management License Manager
    /// client and member clients.
    pub fn engine_from(
        &self,
        env: &[(&str, &str)],
        license_manager: aws_sdk_licensemanager::Client,
        members: Arc<dyn MemberClientFactory>,
    ) -> Engine {
        let mut vars: HashMap<String, String> = HashMap::from([
            ("ALL_MARKETPLACE_LICENSES".into(), "true".into()),
            ("ONBOARDING_QUEUE_URL".into(), self.queue_url.clone()),
            ("ASSUME_ROLE_BACKOFF_MS".into(), "10".into()),
            ("RECHECK_DELAY_SECONDS".into(), "0".into()),
        ]);
        for (k, v) in env {
            vars.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
        let clients = Clients {
            organizations: self.world.organizations(),
            sts: self.world.sts(),
            license_manager,
            sqs: self.world.sqs(),
            dynamodb: self.world.dynamodb(),
            members,
        };
        Engine::new(config, clients)
    }

    /// The shipped Control Tower event, naming an account that exists in this world.
    pub fn create_event(&self, account: &str, ou_id: &str) -> Value {
        shipped_event("create-managed-account.json", account, ou_id)
    }

    pub async fn grants_in(&self, account: &str) -> Vec<(String, String)> {
        let member = self.world.client_for_account(account).await.unwrap();
        let out = member
            .license_manager
            .list_received_grants()
            .send()
            .await
            .unwrap();
        out.grants()
            .iter()
            .map(|g| {
                (
                    g.license_arn().to_string(),
                    g.grant_status().as_str().to_string(),
                )
            })
            .collect()
    }

    pub async fn calls(&self, op: &str) -> usize {
        self.world.control().count_calls(op).await.unwrap()
    }
}

pub fn shipped_event(file: &str, account: &str, ou_id: &str) -> Value {
    let path = local_world::lambda::workspace_root()
        .join("events")
        .join(file);
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let status = event["detail"]["serviceEventDetails"]
        .as_object_mut()
        .and_then(|m| m.values_mut().next())
        .unwrap();
    status["account"]["accountId"] = json!(account);
    status["organizationalUnit"]["organizationalUnitId"] = json!(ou_id);
    event
}

pub async fn handle(engine: &Engine, event: Value) -> Value {
    let out = account_lifecycle::handle(engine, event)
        .await
        .unwrap_or_else(|e| panic!("handler failed: {e}"));
    if out.get("apiCalls").is_some() {
        assert_least_privilege(&out, shared::permissions::ACCOUNT_LIFECYCLE);
    }
    out
}

/// Like `handle`, but a failed account (an error for a direct invocation) comes back as
/// `{"outcome": "failed", "error": {"message", "retry"}}` instead of a panic.
pub async fn try_handle(engine: &Engine, event: Value) -> Value {
    match account_lifecycle::handle(engine, event).await {
        Ok(out) => {
            if out.get("apiCalls").is_some() {
                assert_least_privilege(&out, shared::permissions::ACCOUNT_LIFECYCLE);
            }
            out
        }
        Err(e) => json!({
            "outcome": "failed",
            "error": {"message": e.to_string(), "retry": format!("{:?}", e.retry()).to_lowercase()},
        }),
    }
}

/// Every call a report shows was made is in the function's permissions table (own role) or
/// the member-role table: what the template grants is what the code needs.
pub fn assert_least_privilege(report: &Value, own_table: &[&str]) {
    for (field, table) in [
        ("apiCalls", own_table),
        ("memberApiCalls", shared::permissions::MEMBER_ROLE),
    ] {
        for op in report[field].as_object().into_iter().flat_map(|m| m.keys()) {
            assert!(
                table.contains(&op.as_str()),
                "{field}: {op} is not in the permissions table"
            );
        }
    }
}

impl Setup {
    /// Feeds everything on the onboarding queue to account-lifecycle's handler as SQS batches
    /// (as Lambda would), deleting what succeeded, re-checks included (the emulator's clock is
    /// moved past any workflow or activation delay before each receive). Returns (accounts
    /// handled, failed messages).
    pub async fn drain_queue(&self, engine: &Engine) -> (usize, usize) {
        let sqs = self.world.sqs();
        let mut accounts = std::collections::BTreeSet::new();
        let mut failed = 0;
        for _ in 0..50 {
            self.world
                .control()
                .advance_clock(std::time::Duration::from_secs(5))
                .await
                .unwrap();
            let out = sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
            let messages = out.messages();
            if messages.is_empty() {
                return (accounts.len(), failed);
            }
            let records: Vec<Value> = messages
                .iter()
                .map(|m| json!({"messageId": m.message_id(), "eventSource": "aws:sqs", "body": m.body()}))
                .collect();
            let response = handle(engine, json!({ "Records": records })).await;
            let failures: Vec<&str> = response["batchItemFailures"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f["itemIdentifier"].as_str())
                .collect();
            for m in messages {
                let body: Value =
                    serde_json::from_str(m.body().unwrap_or("{}")).unwrap_or_default();
                accounts.insert(body["accountId"].as_str().unwrap_or("?").to_string());
                if failures.contains(&m.message_id().unwrap_or_default()) {
                    failed += 1;
                }
                // Failed ones too: this test harness does not model redelivery.
                sqs.delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        panic!("the onboarding queue never drained");
    }
}

impl Setup {
    /// Handles a lifecycle event or onboard request and then, while the account is pending,
    /// the re-checks it queues (the emulator's clock moved past any workflow or activation
    /// delay first), as Lambda would. Returns the last report, with each license's `actions`
    /// being everything done for it over all the runs and `statusBefore` from the first run
    /// (and `warnings` from every run), so that tests read the same under the zero-delay and the
    /// realistic emulator profiles.
    pub async fn onboard(&self, engine: &Engine, event: Value) -> Value {
        let mut report = try_handle(engine, event).await;
        // (license, actions, statusBefore, warnings) over all the runs.
        let mut actions: Vec<(String, Vec<Value>, Value, Vec<Value>)> = Vec::new();
        let mut absorb = |report: &Value| {
            for l in report["licenses"].as_array().into_iter().flatten() {
                let arn = l["licenseArn"].as_str().unwrap_or_default().to_string();
                let done = l["actions"].as_array().cloned().unwrap_or_default();
                let warned = l["warnings"].as_array().cloned().unwrap_or_default();
                match actions.iter_mut().find(|(a, _, _, _)| *a == arn) {
                    Some((_, all, _, warnings)) => {
                        all.extend(done);
                        for w in warned {
                            if !warnings.contains(&w) {
                                warnings.push(w);
                            }
                        }
                    }
                    None => actions.push((arn, done, l["statusBefore"].clone(), warned)),
                }
            }
        };
        absorb(&report);
        let account = report["accountId"].clone();
        for _ in 0..20 {
            if report["outcome"] != "pending" {
                break;
            }
            self.world
                .control()
                .advance_clock(std::time::Duration::from_secs(5))
                .await
                .unwrap();
            let sqs = self.world.sqs();
            let mut next = None;
            for _ in 0..5 {
                let out = sqs
                    .receive_message()
                    .queue_url(&self.queue_url)
                    .max_number_of_messages(10)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
                for m in out.messages() {
                    let body: Value = serde_json::from_str(m.body().unwrap_or("{}")).unwrap();
                    if body["accountId"] == account && next.is_none() {
                        sqs.delete_message()
                            .queue_url(&self.queue_url)
                            .receipt_handle(m.receipt_handle().unwrap())
                            .send()
                            .await
                            .unwrap();
                        next = Some(body);
                    }
                }
                if next.is_some() {
                    break;
                }
            }
            let body = next.expect("a pending account has its re-check on the queue");
            report = try_handle(engine, body).await;
            absorb(&report);
        }
        for l in report["licenses"].as_array_mut().into_iter().flatten() {
            let arn = l["licenseArn"].as_str().unwrap_or_default().to_string();
            if let Some((_, all, before, warnings)) = actions.iter().find(|(a, _, _, _)| *a == arn)
            {
                l["actions"] = Value::Array(all.clone());
                l["statusBefore"] = before.clone();
                if !warnings.is_empty() {
                    l["warnings"] = Value::Array(warnings.clone());
                }
            }
        }
        report
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers of the soak, crash and duplicate tests (issue 10): production-like retrying clients,
// a queue consumer that models redelivery and the dead-letter queue, and the grantor's view of
// every live grant.

/// The SDK's standard retry (3 attempts, as in Lambda) with a short initial backoff, so a
/// run with many injected throttles stays quick; the License Manager clients classify
/// `RateLimitExceededException` as throttling, as the functions' clients do.
pub fn retrying_config(
    world: &World,
    initial_backoff: std::time::Duration,
) -> aws_config::SdkConfig {
    world
        .sdk_config()
        .to_builder()
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(initial_backoff),
        )
        .sleep_impl(aws_smithy_async::rt::sleep::SharedAsyncSleep::new(
            aws_smithy_async::rt::sleep::TokioSleep::new(),
        ))
        .build()
}

/// Member-account clients with the production License Manager client and standard retries.
pub struct RetryingMembers {
    pub base: aws_config::SdkConfig,
    pub moto: String,
    pub emulator: String,
}

impl MemberClientFactory for RetryingMembers {
    fn member_clients(&self, credentials: Credentials) -> MemberClients {
        let config = self
            .base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build();
        let lm = config.to_builder().endpoint_url(&self.emulator).build();
        MemberClients {
            iam: clients::iam_from(&config, &self.moto),
            license_manager: shared::clients::license_manager_client(&lm, "us-east-1"),
        }
    }
}

/// Where a queued message came from and what the consumer did with it.
#[derive(Debug, Default, Clone)]
pub struct QueueRun {
    /// Account → the reason of its last failure, for messages received `max_receives` times
    /// (the DLQ).
    pub parked: std::collections::BTreeMap<String, String>,
    /// Every account a message named.
    pub accounts: std::collections::BTreeSet<String>,
    /// Receives of a message beyond its first (SQS redeliveries after a batch item failure).
    pub redeliveries: usize,
    /// Messages handled, first deliveries and redeliveries.
    pub deliveries: usize,
    /// Batches handed to the handler.
    pub batches: usize,
    /// The most re-checks (onboard requests with reason `recheck`) one account had on the
    /// queue at once (counted before each round when asked for).
    pub max_rechecks_per_account: usize,
}

/// The account a queued body names: an onboard request's `accountId`, or the Control Tower
/// event's account.
pub fn account_of(body: &Value) -> String {
    if let Some(a) = body["accountId"].as_str() {
        return a.to_string();
    }
    body["detail"]["serviceEventDetails"]
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(|s| s["account"]["accountId"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// Why an account's last delivery failed (filled by the caller, e.g. from the handler's log).
pub type Reasons = Arc<std::sync::Mutex<HashMap<String, String>>>;

impl Setup {
    /// Engine with production-like retrying License Manager clients (management and member).
    pub fn retrying_engine(
        &self,
        env: &[(&str, &str)],
        initial_backoff: std::time::Duration,
    ) -> Engine {
        let base = retrying_config(&self.world, initial_backoff);
        let lm_conf = base
            .to_builder()
            .endpoint_url(self.world.emulator_url())
            .build();
        let lm = shared::clients::license_manager_client(&lm_conf, "us-east-1");
        let members = Arc::new(RetryingMembers {
            base,
            moto: self.world.moto_url().to_string(),
            emulator: self.world.emulator_url(),
        });
        self.engine_from(env, lm, members)
    }

    /// Puts `body` on the onboarding queue (as the EventBridge rule or the reconciler does).
    pub async fn enqueue(&self, body: &Value) {
        self.world
            .sqs()
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body.to_string())
            .send()
            .await
            .unwrap();
    }

    /// Every message on the onboarding queue, without consuming it (each is received once,
    /// then made visible again).
    pub async fn peek_queue(&self) -> Vec<Value> {
        let sqs = self.world.sqs();
        let mut bodies = Vec::new();
        let mut handles = Vec::new();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .send()
                .await
                .unwrap();
            if out.messages().is_empty() {
                break;
            }
            for m in out.messages() {
                bodies.push(serde_json::from_str(m.body().unwrap_or("{}")).unwrap_or_default());
                handles.push(m.receipt_handle().unwrap_or_default().to_string());
            }
        }
        for h in handles {
            let _ = sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(h)
                .visibility_timeout(0)
                .send()
                .await;
        }
        bodies
    }

    /// Re-checks per account on the onboarding queue.
    pub async fn rechecks_per_account(&self) -> HashMap<String, usize> {
        let mut per: HashMap<String, usize> = HashMap::new();
        for body in self.peek_queue().await {
            if body["reason"] == "recheck" {
                *per.entry(account_of(&body)).or_default() += 1;
            }
        }
        per
    }

    /// Consumes the onboarding queue as Lambda's SQS event source would with `engines.len()`
    /// containers: batches of up to 10 handed to account-lifecycle's handler concurrently, one
    /// per container; messages named in `batchItemFailures` become visible again and are
    /// redelivered; a message received `max_receives` times (the template's
    /// `maxReceiveCount`) is parked (the DLQ) with the last reason `reasons` holds for its
    /// account. Re-checks the function queues are consumed too; before each round the
    /// emulator's clock moves `tick` forward (workflows and activations settle). Stops when
    /// the queue is empty.
    pub async fn consume_queue(
        &self,
        engines: &[Engine],
        max_receives: usize,
        tick: std::time::Duration,
        reasons: &Reasons,
        count_queued: bool,
    ) -> QueueRun {
        let sqs = self.world.sqs();
        let mut run = QueueRun::default();
        let mut receives: HashMap<String, usize> = HashMap::new();
        for _round in 0..2_000 {
            self.world.control().advance_clock(tick).await.unwrap();
            if count_queued {
                let most = self
                    .rechecks_per_account()
                    .await
                    .values()
                    .copied()
                    .max()
                    .unwrap_or(0);
                run.max_rechecks_per_account = run.max_rechecks_per_account.max(most);
            }
            // One batch per container; in flight for 300 s, so no other container gets them.
            let mut batches = Vec::new();
            for _ in engines {
                let out = sqs
                    .receive_message()
                    .queue_url(&self.queue_url)
                    .max_number_of_messages(10)
                    .visibility_timeout(300)
                    .send()
                    .await
                    .unwrap();
                if out.messages().is_empty() {
                    break;
                }
                batches.push(out.messages().to_vec());
            }
            if batches.is_empty() {
                return run;
            }
            let answers = futures_join_all(batches.iter().zip(engines).map(|(batch, engine)| {
                let records: Vec<Value> = batch
                    .iter()
                    .map(|m| json!({"messageId": m.message_id(), "eventSource": "aws:sqs", "body": m.body()}))
                    .collect();
                async move {
                    account_lifecycle::handle(engine, json!({ "Records": records }))
                        .await
                        .unwrap()
                }
            }))
            .await;
            for (batch, answer) in batches.iter().zip(answers) {
                run.batches += 1;
                let failures: Vec<&str> = answer["batchItemFailures"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|f| f["itemIdentifier"].as_str())
                    .collect();
                for m in batch {
                    let id = m.message_id().unwrap_or_default().to_string();
                    let body: Value =
                        serde_json::from_str(m.body().unwrap_or("{}")).unwrap_or_default();
                    let account = account_of(&body);
                    run.accounts.insert(account.clone());
                    run.deliveries += 1;
                    let n = receives.entry(id.clone()).or_default();
                    *n += 1;
                    if *n > 1 {
                        run.redeliveries += 1;
                    }
                    let handle = m.receipt_handle().unwrap_or_default();
                    if failures.contains(&id.as_str()) && *n < max_receives {
                        sqs.change_message_visibility()
                            .queue_url(&self.queue_url)
                            .receipt_handle(handle)
                            .visibility_timeout(0)
                            .send()
                            .await
                            .unwrap();
                        continue;
                    }
                    if failures.contains(&id.as_str()) {
                        let reason = reasons
                            .lock()
                            .unwrap()
                            .get(&account)
                            .cloned()
                            .unwrap_or_else(|| "(no reason logged)".into());
                        run.parked.insert(account, reason);
                    }
                    sqs.delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .unwrap();
                }
            }
        }
        panic!("the onboarding queue never drained");
    }

    /// The grantor's view (ListDistributedGrants, all pages): (license ARN, grantee principal)
    /// → the statuses of its grants that are not DELETED or REJECTED.
    pub async fn live_grants(&self) -> std::collections::BTreeMap<(String, String), Vec<String>> {
        let lm = self.world.license_manager();
        let mut out: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
        let mut token: Option<String> = None;
        loop {
            let page = lm
                .list_distributed_grants()
                .max_results(100)
                .set_next_token(token.clone())
                .send()
                .await
                .unwrap();
            for g in page.grants() {
                let status = g.grant_status().as_str().to_string();
                if status == "DELETED" || status == "REJECTED" {
                    continue;
                }
                out.entry((
                    g.license_arn().to_string(),
                    g.grantee_principal_arn().to_string(),
                ))
                .or_default()
                .push(status);
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return out;
            }
        }
    }
}

/// `futures::future::join_all` without the futures crate (not a dependency of these tests).
pub async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut out = Vec::new();
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    // Poll them all together: a small select-free join on tokio's JoinSet is not possible for
    // non-'static futures, so drive them with a hand-rolled poll loop.
    let mut slots: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<Option<std::pin::Pin<Box<F>>>> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, h) in handles.iter_mut().enumerate() {
            if let Some(f) = h {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        slots[i] = Some(v);
                        *h = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(slots.into_iter().map(|s| s.unwrap()));
    out
}

/// The grants the management account distributed to `account` (one page).
pub async fn distributed_grants_to(
    world: &World,
    account: &str,
) -> Vec<aws_sdk_licensemanager::types::Grant> {
    world
        .license_manager()
        .list_distributed_grants()
        .filters(
            aws_sdk_licensemanager::types::Filter::builder()
                .name("GranteePrincipalARN")
                .values(format!("arn:aws:iam::{account}:root"))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .grants()
        .to_vec()
}

/// Puts `account`'s chain item as a run or a triage leaves it: `state` under sequence `seq`,
/// with the waiting re-check's `body` if any, expiring in an hour.
pub async fn put_chain_item(
    world: &World,
    table: &str,
    account: &str,
    (state, seq): (&str, u64),
    body: Option<&str>,
) {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mut put = world
        .dynamodb()
        .put_item()
        .table_name(table)
        .item("account", A::S(account.to_string()))
        .item("state", A::S(state.to_string()))
        .item("seq", A::N(seq.to_string()))
        .item("expires", A::N(expires.to_string()));
    if let Some(body) = body {
        put = put.item("body", A::S(body.to_string()));
    }
    put.send().await.unwrap();
}

/// What an operator does by hand: the first grant the management account distributed to
/// `account`, deactivated (`CreateGrantVersion Status=DISABLED`, no reason). Returns the grant
/// as it was before.
pub async fn deactivate_by_hand(
    world: &World,
    account: &str,
    token: &str,
) -> aws_sdk_licensemanager::types::Grant {
    let lm = world.license_manager();
    let grant = distributed_grants_to(world, account).await[0].clone();
    let current = lm
        .get_grant()
        .grant_arn(grant.grant_arn())
        .send()
        .await
        .unwrap();
    lm.create_grant_version()
        .client_token(token)
        .grant_arn(grant.grant_arn())
        .source_version(current.grant().unwrap().version())
        .status(aws_sdk_licensemanager::types::GrantStatus::Disabled)
        .send()
        .await
        .unwrap();
    grant
}

/// "Deploys" examples/member-role-stackset.yaml's role into `account`: `name`, the trust
/// policy `trust`, and exactly the `shared::permissions::MEMBER_ROLE` actions (moto enforces
/// neither; the engine assumes the role by name).
pub async fn put_member_role(world: &World, account: &str, name: &str, trust: &Value) {
    use shared::permissions::{iam_action, MEMBER_ROLE};
    let inside = world
        .assume_role(account, "OrganizationAccountAccessRole")
        .await
        .unwrap();
    let actions: Vec<&str> = MEMBER_ROLE.iter().map(|op| iam_action(op)).collect();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Action": actions, "Resource": "*" }]
    });
    let iam = clients::iam_from(&inside, world.moto_url());
    iam.create_role()
        .role_name(name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    iam.put_role_policy()
        .role_name(name)
        .policy_name("ct-entitlements-member")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap();
}
