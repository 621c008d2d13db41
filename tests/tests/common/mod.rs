//! Shared set-up of the end-to-end tests: a seeded local world and engines pointed at it.
#![allow(clippy::unwrap_used, dead_code)]

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use local_world::seed::{self, OrgSpec, SeededOrg};
use local_world::{clients, World};
use serde_json::{json, Value};
use shared::{Clients, Config, Engine, MemberClientFactory, MemberClients};
use std::collections::HashMap;
use std::sync::Arc;

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

pub async fn setup(spec: OrgSpec) -> Option<Setup> {
    let world = World::start_or_skip().await?;
    let org = seed::seed(&world, &spec).await.unwrap();
    let queue_url = world
        .sqs()
        .create_queue()
        .queue_name("onboarding")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
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
            members: Arc::new(LocalMembers::of(&self.world)),
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
    let out = shared::handler::handle(engine, event)
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
    match shared::handler::handle(engine, event).await {
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
