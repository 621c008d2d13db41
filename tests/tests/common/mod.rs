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
    base: aws_config::SdkConfig,
    moto: String,
    emulator: String,
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
        let base = self.world.sdk_config().clone();
        let clients = Clients {
            organizations: self.world.organizations(),
            sts: self.world.sts(),
            license_manager,
            sqs: self.world.sqs(),
            members: Arc::new(LocalMembers {
                base,
                moto: self.world.moto_url().to_string(),
                emulator: self.world.emulator_url(),
            }),
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
    /// (as Lambda would), deleting what succeeded. Returns (messages handled, failures).
    pub async fn drain_queue(&self, engine: &Engine) -> (usize, usize) {
        let sqs = self.world.sqs();
        let (mut handled, mut failed) = (0, 0);
        for _ in 0..50 {
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
                return (handled, failed);
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
                handled += 1;
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
