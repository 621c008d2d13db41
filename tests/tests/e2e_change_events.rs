//! License Manager's change events end to end (issue 17 §3): the emulator emits a `Grant Change`
//! for every status change of a grant (and a `License Change` for a license); each one on the
//! management account's bus goes through the template's `LicenseManagerChanges` rule (its
//! pattern, read from template.yaml, in moto's EventBridge with an SQS target) to the
//! reconciler, whose runs go through the onboarding queue to account-lifecycle, as deployed.
//! Re-checks wait the template's 300 s, so whatever happens within seconds is the events' doing.
//! Time moves on the emulator's clock, never by sleeping.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/rules.rs"]
mod rules;

use common::{reconcile_config, setup};
use local_world::seed::demo_spec;
use rules::{events, template, to_json};
use serde_json::{json, Value};
use shared::reconcile::ReconcileConfig;
use std::time::Duration;

/// The local pipeline: moto's EventBridge rule and its queue, the reconciler's configuration
/// (with a FIFO coalescing queue) and what the events made happen.
struct Pipeline {
    moto: String,
    rule_queue: String,
    rule_queue_arn: String,
    config: ReconcileConfig,
    /// Events the rule delivered.
    events: usize,
    after: u64,
    management: String,
    /// Reconciler reports, one per batch of delivered events.
    reports: Vec<Value>,
    /// account-lifecycle invocations for messages the reconciler queued, and their messages.
    batches: usize,
    messages: usize,
    /// Whether the engine keeps chains (`CHAIN_TABLE`): the runs it asks for may then be
    /// re-checks brought forward, and carry their chain sequence.
    chained: bool,
    /// Of `messages`, re-checks brought forward.
    forwarded: usize,
}

impl Pipeline {
    async fn new(s: &common::Setup) -> Self {
        let moto = s.world.moto_url().to_string();
        let t = template();
        let pattern =
            to_json(&t["Resources"]["LicenseManagerChangesRule"]["Properties"]["EventPattern"]);
        let source = to_json(
            &t["Resources"]["ReconcilerFunction"]["Properties"]["Events"]["ChangeEvents"]
                ["Properties"]["Queue"],
        )
        .to_string();
        let target = to_json(
            &t["Resources"]["LicenseManagerChangesRule"]["Properties"]["Targets"][0]["Arn"],
        )
        .to_string();
        assert!(
            source.contains("ChangeEventQueue") && source == target,
            "the reconciler reads the rule's queue: {source} / {target}"
        );
        let (rule_queue, rule_queue_arn) =
            common::new_queue(&s.world, "rule-license-manager").await;
        events(
            &moto,
            "PutRule",
            json!({"Name": "license-manager", "EventPattern": pattern.to_string()}),
        )
        .await;
        events(
            &moto,
            "PutTargets",
            json!({"Rule": "license-manager", "Targets": [{"Id": "1", "Arn": rule_queue_arn}]}),
        )
        .await;
        let coalesce = s
            .world
            .sqs()
            .create_queue()
            .queue_name("reconcile.fifo")
            .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
        // From now on: the seeding's License Change events are history.
        let (_, after) = s
            .world
            .control()
            .license_manager_events(0, Some(&s.org.management_account))
            .await
            .unwrap();
        Pipeline {
            moto,
            config: ReconcileConfig {
                coalesce_queue_url: Some(coalesce),
                change_queue_url: Some(rule_queue.clone()),
                ..reconcile_config(&s.queue_url, None)
            },
            rule_queue,
            rule_queue_arn,
            events: 0,
            after,
            management: s.org.management_account.clone(),
            reports: Vec::new(),
            batches: 0,
            messages: 0,
            chained: false,
            forwarded: 0,
        }
    }

    /// One second on the emulator's clock, then every change event on the management
    /// account's bus put on moto's bus, what the rule delivers handed to the reconciler, and
    /// the runs it queued handed to account-lifecycle as one SQS batch. Returns the number of
    /// events the rule delivered.
    async fn step(&mut self, s: &common::Setup, engine: &shared::engine::Engine) -> usize {
        let control = s.world.control();
        control.advance_clock(Duration::from_secs(1)).await.unwrap();
        let (got, next) = control
            .license_manager_events(self.after, Some(&self.management))
            .await
            .unwrap();
        self.after = next;
        if !got.is_empty() {
            let entries: Vec<Value> = got
                .iter()
                .map(|e| {
                    json!({"Source": e["source"], "DetailType": e["detail-type"],
                           "Detail": e["detail"].to_string(), "Resources": e["resources"]})
                })
                .collect();
            for chunk in entries.chunks(10) {
                let put = events(&self.moto, "PutEvents", json!({ "Entries": chunk })).await;
                assert_eq!(put["FailedEntryCount"], 0, "{put}");
            }
        }
        let sqs = s.world.sqs();
        let mut delivered = 0;
        loop {
            let out = sqs
                .receive_message()
                .queue_url(&self.rule_queue)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            if out.messages().is_empty() {
                break;
            }
            // One batch, as the queue's event source mapping delivers it.
            let records: Vec<Value> = out
                .messages()
                .iter()
                .map(|m| {
                    json!({"messageId": m.message_id(), "eventSource": "aws:sqs",
                           "eventSourceARN": self.rule_queue_arn, "body": m.body()})
                })
                .collect();
            let batch = shared::changes::parse_batch(&json!({ "Records": records }), &self.config)
                .expect("a batch from the change-event queue")
                .unwrap();
            let (response, report) = reconciler::change_batch(engine, &self.config, &batch).await;
            assert_eq!(response["batchItemFailures"], json!([]), "{report:#?}");
            self.reports.push(serde_json::to_value(&report).unwrap());
            delivered += records.len();
            for m in out.messages() {
                sqs.delete_message()
                    .queue_url(&self.rule_queue)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        self.events += delivered;
        // What is visible on the onboarding queue now (re-checks wait 300 s): one batch.
        let out = sqs
            .receive_message()
            .queue_url(&s.queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        if !out.messages().is_empty() {
            // Lambda's record: the message attributes as SQS sent them.
            let records: Vec<Value> = out
                .messages()
                .iter()
                .map(|m| {
                    let attributes: serde_json::Map<String, Value> = m
                        .message_attributes()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                json!({"stringValue": v.string_value(), "dataType": v.data_type()}),
                            )
                        })
                        .collect();
                    json!({"messageId": m.message_id(), "eventSource": "aws:sqs", "body": m.body(),
                           "messageAttributes": attributes})
                })
                .collect();
            for m in out.messages() {
                let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
                if self.chained && body["reason"] == "early-recheck" {
                    self.forwarded += 1;
                } else {
                    assert_eq!(body["reason"], "grant-change", "{body}");
                }
                sqs.delete_message()
                    .queue_url(&s.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            let response = common::handle(engine, json!({ "Records": records })).await;
            assert_eq!(response["batchItemFailures"], json!([]), "{response}");
            self.batches += 1;
            self.messages += records.len();
        }
        delivered
    }

    /// Steps ([`Pipeline::step`]) until `account` holds `licenses` grants, all ACTIVE, for
    /// at most 12 emulated seconds (it fails the test past them); the seconds it took.
    async fn until_active(
        &mut self,
        s: &common::Setup,
        engine: &shared::engine::Engine,
        account: &str,
        licenses: usize,
    ) -> usize {
        let active = |grants: &[(String, String)]| {
            grants.len() == licenses && grants.iter().all(|(_, st)| st == "ACTIVE")
        };
        for seconds in 1..=12 {
            self.step(s, engine).await;
            if active(&s.grants_in(account).await) {
                return seconds;
            }
        }
        let grants = s.grants_in(account).await;
        panic!(
            "not ACTIVE after 12 s: {grants:?}; reports {:#?}",
            self.reports
        );
    }

    /// Messages waiting on a queue, delayed ones included.
    async fn waiting(s: &common::Setup, url: &str) -> usize {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attrs = s
            .world
            .sqs()
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap();
        attrs
            .attributes()
            .unwrap()
            .values()
            .map(|v| v.parse::<usize>().unwrap())
            .sum()
    }
}

#[tokio::test]
async fn a_completed_workflow_runs_the_waiting_account_at_once_and_events_add_no_other_run() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    // Workflows and activations take 2 s; every Grant Change names its grant, grantee and
    // status and reaches the grantor's bus too (the kind readings: under the harsh ones the
    // management account hears nothing of per-account grants, and the re-checks do the work).
    s.world
        .control()
        .configure(
            json!({"pendingWorkflowMs": 2000, "activationMs": 2000, "changeEvents": true,
                          "grantChangeDetail": "grantee", "changeEventsTo": "both"}),
        )
        .await
        .unwrap();
    let mut pipe = Pipeline::new(&s).await;
    let engine = s.engine(&[("RECHECK_DELAY_SECONDS", "300")]);
    let prod = s.org.account("workload-prod").unwrap().id.clone();
    let workloads = s.org.ou("Workloads").unwrap().id.clone();
    let licenses = s.org.licenses.len();

    // The new account: its grants are created and wait on their workflows; a re-check is due
    // in 300 s.
    let report = common::try_handle(&engine, s.create_event(&prod, &workloads)).await;
    assert_eq!(report["outcome"], "pending", "{report:#}");
    assert_eq!(Pipeline::waiting(&s, &s.queue_url).await, 1, "the re-check");

    // The events of the run's own writes, then the workflows' completion, then ours.
    let seconds = pipe.until_active(&s, &engine, &prod, licenses).await;
    // Workflow (2 s) + one run + activation (2 s): seconds, where the re-check waits 300.
    assert!(seconds <= 6, "ACTIVE after {seconds} emulated seconds");
    assert_eq!(
        Pipeline::waiting(&s, &s.queue_url).await,
        1,
        "the re-check still waits; nothing else is queued"
    );
    // Every event reached the reconciler through the rule; one per grant's workflow
    // completion asked for a run, and those were one run (one batch, one account); every
    // other event (the run's own creates, accepts and activations, the activations'
    // completion) added none.
    let queued: usize = pipe
        .reports
        .iter()
        .map(|r| r["enqueued"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(pipe.batches, 1, "{:#?}", pipe.reports);
    assert_eq!(queued, pipe.messages);
    assert!(
        queued <= licenses,
        "{queued} runs asked for {licenses} grants"
    );
    // Each batch ran or said why not for every account its events named, once.
    for r in &pipe.reports {
        let skipped = r["skipped"].as_object().unwrap();
        assert_eq!(
            r["accountsListed"].as_u64().unwrap() as usize,
            r["onboard"].as_array().unwrap().len() + skipped.len(),
            "{r:#}"
        );
        assert!(
            skipped.values().all(|why| why
                .as_str()
                .unwrap()
                .contains("nothing for a run to do now")),
            "{r:#}"
        );
    }
    assert!(
        pipe.events >= 3 * licenses,
        "create, completion, accept/activation and ACTIVE of each grant: {} events",
        pipe.events
    );

    // A grant deactivated by hand, under the reading where the event names only the grant:
    // the reconciler reads it (GetGrant) and runs its account.
    s.world
        .control()
        .configure(json!({"grantChangeDetail": "grant"}))
        .await
        .unwrap();
    common::deactivate_by_hand(&s.world, &prod, "by-hand").await;
    let (reports, batches) = (pipe.reports.len(), pipe.batches);
    for _ in 0..5 {
        pipe.step(&s, &engine).await;
    }
    let named = &pipe.reports[reports];
    assert_eq!(named["scope"], "change-events:1", "{named:#}");
    assert_eq!(
        named["apiCalls"]["license-manager:GetGrant"], 1,
        "{named:#}"
    );
    assert_eq!(pipe.batches, batches + 1);
    let grants = s.grants_in(&prod).await;
    assert!(grants.iter().all(|(_, st)| st == "ACTIVE"), "{grants:?}");

    // Events that name nothing (the harsh reading): each asks for a reconcile on the FIFO
    // queue, and SQS keeps one for the lot.
    s.world
        .control()
        .configure(json!({"grantChangeDetail": "none"}))
        .await
        .unwrap();
    common::deactivate_by_hand(&s.world, &prod, "by-hand-again").await;
    let reports = pipe.reports.len();
    let mut delivered = 0;
    for _ in 0..3 {
        delivered += pipe.step(&s, &engine).await;
    }
    assert!(delivered >= 1, "the deactivation's event");
    for r in &pipe.reports[reports..] {
        assert_eq!(r["coalesced"], "aws.license-manager Grant Change", "{r:#}");
        assert_eq!(r["enqueued"], 0, "{r:#}");
    }
    let coalesce = pipe.config.coalesce_queue_url.clone().unwrap();
    let requests = pipe.reports.len() - reports;
    // A second burst in the same 5 minutes: still one message.
    let burst = json!({"source": "aws.license-manager", "detail-type": "License Change",
                       "detail": {}});
    for _ in 0..3 {
        let r = reconciler::handle(&engine, &pipe.config, &burst)
            .await
            .unwrap();
        assert_eq!(
            r["coalesced"], "aws.license-manager License Change",
            "{r:#}"
        );
    }
    assert_eq!(
        Pipeline::waiting(&s, &coalesce).await,
        1,
        "{} requests, one reconcile",
        requests + 3
    );
    // The coalesced reconcile, as the queue's event source delivers it: the configured scope,
    // which queues the deactivated account; its run brings the grant back.
    let out = s
        .world
        .sqs()
        .receive_message()
        .queue_url(&coalesce)
        .send()
        .await
        .unwrap();
    let m = &out.messages()[0];
    let queue_arn = format!(
        "arn:aws:sqs:us-east-1:123456789012:{}",
        coalesce.rsplit('/').next().unwrap()
    );
    let record = json!({"Records": [{"messageId": m.message_id(), "eventSource": "aws:sqs",
                                      "eventSourceARN": queue_arn, "body": m.body()}]});
    // Meanwhile another account started onboarding: its grants wait on their workflows, and
    // its chain on them. A coalesced reconcile leaves it to that chain; the daily one would
    // queue it.
    let dev = s.org.account("workload-dev").unwrap().id.clone();
    let report = common::try_handle(&engine, s.create_event(&dev, &workloads)).await;
    assert_eq!(report["outcome"], "pending", "{report:#}");
    let scheduled = reconcile_config(&s.queue_url, None);
    let daily = shared::reconcile::reconcile(
        &engine,
        &scheduled,
        shared::reconcile::Scope::Organization,
        true,
    )
    .await;
    assert!(daily.onboard.contains(&dev), "{daily:#?}");
    let report = reconciler::handle(&engine, &pipe.config, &record)
        .await
        .unwrap();
    assert_eq!(report["scope"], "followup:organization", "{report:#}");
    assert_eq!(report["waiting"], 1, "{report:#}");
    assert!(
        !report["onboard"].as_array().unwrap().contains(&json!(dev)),
        "{report:#}"
    );
    // (The demo organization's other members, never onboarded here, are queued too.)
    assert!(
        report["onboard"].as_array().unwrap().contains(&json!(prod)),
        "{report:#}"
    );
    let (accounts, failed) = s.drain_queue(&engine).await;
    assert_eq!(failed, 0);
    assert_eq!(accounts, report["onboard"].as_array().unwrap().len());
    let grants = s.grants_in(&prod).await;
    assert!(grants.iter().all(|(_, st)| st == "ACTIVE"), "{grants:?}");
}

/// A run to create a grant (its grant failed its workflow) goes to the backfill queue, a
/// completion's run to the onboarding queue (issue 17 §3: new accounts never wait behind the
/// backfill's kind of work), each marked as such; one batch, one message per account.
#[tokio::test]
async fn a_failed_workflow_runs_its_account_on_the_backfill_lane_and_a_completion_at_once() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let engine = s.engine(&[]);
    let (changes, changes_arn) = common::new_queue(&s.world, "changes").await;
    let (backfill, _) = common::new_queue(&s.world, "backfill").await;
    let config = ReconcileConfig {
        change_queue_url: Some(changes),
        backfill_queue_url: Some(backfill.clone()),
        ..reconcile_config(&s.queue_url, None)
    };
    let prod = s.org.account("workload-prod").unwrap().id.clone();
    let dev = s.org.account("workload-dev").unwrap().id.clone();
    let grant = |n: u32| format!("arn:aws:license-manager::123456789012:grant:g-{n:032x}");
    let event = |account: &str, n: u32, status: &str| {
        json!({"source": "aws.license-manager", "detail-type": "Grant Change",
               "resources": [grant(n)],
               "detail": {"grantArn": grant(n), "status": status,
                          "granteePrincipal": format!("arn:aws:iam::{account}:root")}})
        .to_string()
    };
    let records: Vec<Value> = [
        (&prod, 1, "FAILED_WORKFLOW"),
        (&prod, 2, "FAILED_WORKFLOW"),
        (&dev, 3, "PENDING_ACCEPT"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (account, n, status))| {
        json!({"messageId": format!("m{i}"), "eventSource": "aws:sqs",
               "eventSourceARN": changes_arn, "body": event(account, *n, status)})
    })
    .collect();
    let batch = shared::changes::parse_batch(&json!({ "Records": records }), &config)
        .unwrap()
        .unwrap();
    let (answer, report) = reconciler::change_batch(&engine, &config, &batch).await;
    assert_eq!(answer, json!({"batchItemFailures": []}), "{report:#?}");
    assert_eq!(report.backfill, vec![prod.clone()], "{report:#?}");
    assert_eq!(report.enqueued, 2, "{report:#?}");
    let bodies = |url: String| {
        let world = &s.world;
        async move {
            common::take_bodies(world, &url)
                .await
                .iter()
                .map(|b| serde_json::from_str::<Value>(b).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let on_backfill = bodies(backfill).await;
    assert_eq!(on_backfill.len(), 1, "{on_backfill:?}");
    assert_eq!(on_backfill[0]["accountId"], json!(prod));
    assert_eq!(on_backfill[0]["backfill"], true);
    assert_eq!(on_backfill[0]["reason"], "grant-change");
    let onboarding = bodies(s.queue_url.clone()).await;
    assert_eq!(onboarding.len(), 1, "{onboarding:?}");
    assert_eq!(onboarding[0]["accountId"], json!(dev));
    assert!(onboarding[0]["backfill"].is_null(), "{onboarding:?}");
}

#[tokio::test]
async fn a_throttled_look_brings_its_record_back_in_seconds() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let engine = s.engine(&[]);
    let (changes, changes_arn) = common::new_queue(&s.world, "changes").await;
    let config = ReconcileConfig {
        change_queue_url: Some(changes.clone()),
        ..reconcile_config(&s.queue_url, None)
    };
    let dev = s.org.account("workload-dev").unwrap().id.clone();
    let grant = format!("arn:aws:license-manager::123456789012:grant:g-{:032x}", 7);
    // A DISABLED grant is looked at (GetGrant), and License Manager throttles every look.
    let body = json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                      "resources": [grant], "detail": {"grantArn": grant, "status": "DISABLED",
                      "granteePrincipal": format!("arn:aws:iam::{dev}:root")}})
    .to_string();
    let sqs = s.world.sqs();
    sqs.send_message()
        .queue_url(&changes)
        .message_body(&body)
        .send()
        .await
        .unwrap();
    let got = sqs
        .receive_message()
        .queue_url(&changes)
        .visibility_timeout(1800)
        .send()
        .await
        .unwrap();
    let message = &got.messages()[0];
    s.world
        .control()
        .configure(json!({"throttleProbability": 1.0, "seed": 3, "faultOperations": ["GetGrant"]}))
        .await
        .unwrap();
    let records = json!({"Records": [{"messageId": message.message_id(), "eventSource": "aws:sqs",
        "eventSourceARN": changes_arn, "receiptHandle": message.receipt_handle(), "body": body}]});
    let batch = shared::changes::parse_batch(&records, &config)
        .unwrap()
        .unwrap();
    let (answer, report) = reconciler::change_batch(&engine, &config, &batch).await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": message.message_id()}]}),
        "{report:#?}"
    );
    assert_eq!(report.enqueued, 0, "{report:#?}");
    assert_eq!(
        report.api_calls.get("sqs:ChangeMessageVisibilityBatch"),
        Some(&1),
        "the record's visibility is set to seconds: {report:#?}"
    );
    // The record is still on the queue, in flight (not deleted): SQS delivers it again when its
    // visibility ends.
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&changes)
        .attribute_names(
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        attributes
            .attributes()
            .unwrap()
            .values()
            .next()
            .map(String::as_str),
        Some("1")
    );
    // Without a receipt handle (a hand-made record) nothing is asked: the queue's timeout stands.
    let records = json!({"Records": [{"messageId": "m-hand", "eventSource": "aws:sqs",
        "eventSourceARN": changes_arn, "body": body}]});
    let batch = shared::changes::parse_batch(&records, &config)
        .unwrap()
        .unwrap();
    let (answer, report) = reconciler::change_batch(&engine, &config, &batch).await;
    assert_eq!(answer["batchItemFailures"].as_array().unwrap().len(), 1);
    assert!(!report
        .api_calls
        .contains_key("sqs:ChangeMessageVisibilityBatch"));
}

/// With the chains table (`CHAIN_TABLE`, as the template deploys it): a workflow's completion
/// brings the waiting chain's re-check forward (its own body: the same start time, the next
/// attempt), no second run; the delayed re-check it replaced, when it comes, ends without any
/// other call; a change while the chain runs marks it instead of a run; a daily reconcile
/// leaves an account whose chain is live to it and marks the chains of those it queues.
#[tokio::test]
async fn a_completion_brings_the_waiting_chain_forward_and_its_delayed_recheck_is_stale() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    s.world
        .control()
        .configure(
            json!({"pendingWorkflowMs": 2000, "activationMs": 2000, "changeEvents": true,
                   "grantChangeDetail": "grantee", "changeEventsTo": "both"}),
        )
        .await
        .unwrap();
    let table = common::chain_table(&s.world, "ct-entitlements-chains").await;
    let mut pipe = Pipeline::new(&s).await;
    pipe.chained = true;
    let engine = s.engine(&[("RECHECK_DELAY_SECONDS", "300"), ("CHAIN_TABLE", &table)]);
    let prod = s.org.account("workload-prod").unwrap().id.clone();
    let workloads = s.org.ou("Workloads").unwrap().id.clone();
    let licenses = s.org.licenses.len();

    // The new account's first run: its chain waits on the re-check, whose body the item keeps.
    let report = common::try_handle(&engine, s.create_event(&prod, &workloads)).await;
    assert_eq!(report["outcome"], "pending", "{report:#}");
    assert_eq!(report["chain"], "waiting", "{report:#}");
    let item = common::chain_item(&s.world, &table, &prod).await.unwrap();
    assert_eq!(item["state"], "waiting", "{item:?}");
    let first_seq: u64 = item["seq"].parse().unwrap();
    let first_body = item["body"].clone();
    let body: Value = serde_json::from_str(&first_body).unwrap();
    assert_eq!(
        (&body["reason"], &body["attempt"], &body["firstSeen"]),
        (&json!("recheck"), &json!(1), &report["firstSeen"]),
        "{body}"
    );

    let seconds = pipe.until_active(&s, &engine, &prod, licenses).await;
    assert!(seconds <= 6, "ACTIVE after {seconds} emulated seconds");
    // The completions' runs were the chain's re-check, brought forward once: no grant-change
    // run beside it.
    assert_eq!(
        (pipe.messages, pipe.forwarded),
        (1, 1),
        "{:#?}",
        pipe.reports
    );
    let forwarded: Vec<&Value> = pipe
        .reports
        .iter()
        .filter(|r| {
            r["forwarded"]
                .as_array()
                .is_some_and(|f| f.contains(&json!(prod)))
        })
        .collect();
    assert_eq!(forwarded.len(), 1, "{:#?}", pipe.reports);
    // The brought-forward run queued the next re-check: the chain waits again, later in its
    // sequence, on the same start time.
    let item = common::chain_item(&s.world, &table, &prod).await.unwrap();
    assert_eq!(item["state"], "waiting", "{item:?}");
    assert!(item["seq"].parse::<u64>().unwrap() > first_seq, "{item:?}");
    let body: Value = serde_json::from_str(&item["body"]).unwrap();
    assert_eq!(
        (&body["attempt"], &body["firstSeen"]),
        (&json!(2), &report["firstSeen"]),
        "{body}"
    );
    // On the queue: the first run's delayed re-check and the second's, nothing else.
    assert_eq!(Pipeline::waiting(&s, &s.queue_url).await, 2);

    // The first run's re-check when it comes: superseded, and nothing but the claim.
    let stale = json!({"Records": [{
        "messageId": "the-delayed-recheck", "eventSource": "aws:sqs", "body": first_body,
        "messageAttributes": {"chainSeq": {"stringValue": first_seq.to_string(), "dataType": "Number"}}}]});
    let answer = common::handle(&engine, stale.clone()).await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let request = shared::inbound::parse_body(&first_body).unwrap();
    let report = engine.run_chained(request, Some(first_seq)).await;
    assert_eq!(
        (report.outcome, report.chain.as_deref()),
        (shared::report::Outcome::Skipped, Some("superseded")),
        "{report:#?}"
    );
    assert_eq!(
        serde_json::to_value(&report.api_calls).unwrap(),
        json!({"dynamodb:UpdateItem": 1}),
        "{report:#?}"
    );
    assert!(report.member_api_calls.is_empty(), "{report:#?}");

    // A change while the chain runs: the item is marked, no run. (The item is set running by
    // hand, as a run's claim leaves it.)
    let running = first_seq + 1_000_000;
    s.world
        .dynamodb()
        .update_item()
        .table_name(&table)
        .key(
            "account",
            aws_sdk_dynamodb::types::AttributeValue::S(prod.clone()),
        )
        .update_expression("SET #s = :running, #q = :seq REMOVE #b")
        .expression_attribute_names("#s", "state")
        .expression_attribute_names("#q", "seq")
        .expression_attribute_names("#b", "body")
        .expression_attribute_values(
            ":running",
            aws_sdk_dynamodb::types::AttributeValue::S("running".into()),
        )
        .expression_attribute_values(
            ":seq",
            aws_sdk_dynamodb::types::AttributeValue::N(running.to_string()),
        )
        .send()
        .await
        .unwrap();
    common::deactivate_by_hand(&s.world, &prod, "while-running").await;
    let (reports, messages) = (pipe.reports.len(), pipe.messages);
    for _ in 0..3 {
        pipe.step(&s, &engine).await;
    }
    assert_eq!(pipe.messages, messages, "{:#?}", &pipe.reports[reports..]);
    assert!(
        pipe.reports[reports..].iter().any(|r| r["skipped"][&prod]
            .as_str()
            .is_some_and(|why| why.contains("its chain is running"))),
        "{:#?}",
        &pipe.reports[reports..]
    );
    let item = common::chain_item(&s.world, &table, &prod).await.unwrap();
    assert_eq!(
        (
            item["state"].as_str(),
            item.get("poked").map(String::as_str)
        ),
        ("running", Some("true")),
        "{item:?}"
    );

    // A daily reconcile: an account whose chain is live is left to it; those it queues are
    // marked queued, their messages carrying the sequence.
    let dev = s.org.account("workload-dev").unwrap().id.clone();
    let report = common::try_handle(&engine, s.create_event(&dev, &workloads)).await;
    assert_eq!(report["chain"], "waiting", "{report:#}");
    let daily = shared::reconcile::reconcile(
        &engine,
        &reconcile_config(&s.queue_url, None),
        shared::reconcile::Scope::Organization,
        false,
    )
    .await;
    assert!(daily.in_flight.contains(&dev), "{daily:#?}");
    assert!(daily.in_flight.contains(&prod), "{daily:#?}");
    assert!(!daily.onboard.contains(&dev), "{daily:#?}");
    assert!(!daily.onboard.is_empty(), "{daily:#?}");
    for account in &daily.onboard {
        let item = common::chain_item(&s.world, &table, account).await.unwrap();
        assert_eq!(item["state"], "queued", "{account}: {item:?}");
    }
}

/// A change its account's chain makes moot costs no License Manager call: the triage reads the
/// chain before any look (`changes::set_aside`), and a queued run reads the account afresh.
/// Under a backfill, such accounts were about half of those events named, and their looks were
/// throttled beside the completions'.
#[tokio::test]
async fn a_change_its_accounts_chain_makes_moot_costs_no_license_manager_call() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    s.world
        .control()
        .configure(
            json!({"changeEvents": true, "grantChangeDetail": "grantee", "changeEventsTo": "both"}),
        )
        .await
        .unwrap();
    let table = common::chain_table(&s.world, "ct-entitlements-chains").await;
    let engine = s.engine(&[("RECHECK_DELAY_SECONDS", "300"), ("CHAIN_TABLE", &table)]);
    let prod = s.org.account("workload-prod").unwrap().id.clone();
    let workloads = s.org.ou("Workloads").unwrap().id.clone();
    let report = common::try_handle(&engine, s.create_event(&prod, &workloads)).await;
    assert_eq!(
        (&report["outcome"], &report["chain"]),
        (&json!("entitled"), &json!("ended")),
        "{report:#}"
    );
    let mut pipe = Pipeline::new(&s).await;
    pipe.chained = true;

    // A run of the account is queued (as a reconcile or an earlier event leaves the item);
    // then an operator deactivates one of its grants: a DISABLED grant, which without the
    // chain takes a look at it and its parent.
    common::put_chain_item(&s.world, &table, &prod, ("queued", 1), None).await;
    common::deactivate_by_hand(&s.world, &prod, "queued-run").await;
    let mut delivered = 0;
    for _ in 0..3 {
        delivered += pipe.step(&s, &engine).await;
    }
    assert!(
        delivered > 0,
        "the deactivation's events reached the reconciler"
    );
    assert_eq!(pipe.messages, 0, "{:#?}", pipe.reports);
    for r in &pipe.reports {
        assert!(
            r["skipped"][&prod]
                .as_str()
                .is_some_and(|why| why.contains("its chain's run is queued")),
            "{r:#}"
        );
        let calls: Vec<&String> = r["apiCalls"].as_object().unwrap().keys().collect();
        assert!(
            calls.iter().all(|op| op.starts_with("dynamodb:")),
            "no look, only the chains read: {r:#}"
        );
    }
    let item = common::chain_item(&s.world, &table, &prod).await.unwrap();
    assert_eq!(item["state"], "queued", "{item:?}");

    // A waiting chain does not make a gone grant moot: the deleted grant may be what it waits
    // on, so the account's listings are read and, the account short of a grant, its re-check
    // comes at once.
    let body = json!({"accountId": prod, "reason": "recheck", "attempt": 1}).to_string();
    common::put_chain_item(&s.world, &table, &prod, ("waiting", 2), Some(&body)).await;
    let grant = common::distributed_grants_to(&s.world, &prod)
        .await
        .into_iter()
        .find(|g| g.grant_status() == &aws_sdk_licensemanager::types::GrantStatus::Active)
        .unwrap();
    let lm = s.world.license_manager();
    let reports = pipe.reports.len();
    lm.delete_grant()
        .grant_arn(grant.grant_arn())
        .version(grant.version())
        .send()
        .await
        .unwrap();
    for _ in 0..3 {
        pipe.step(&s, &engine).await;
    }
    assert!(
        pipe.reports[reports..].iter().any(|r| r["forwarded"]
            .as_array()
            .is_some_and(|f| f.contains(&json!(prod)))),
        "{:#?}",
        &pipe.reports[reports..]
    );
    assert_eq!(pipe.forwarded, 1, "{:#?}", &pipe.reports[reports..]);
}

/// A `Grant Change` record of the change-event queue `queue_arn`: grant `grant` of `account` in
/// `status`, its grantee named (the kind reading of `grantChangeDetail`).
fn change_record(queue_arn: &str, id: &str, grant: &str, status: &str, account: &str) -> Value {
    let body = json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                      "resources": [grant], "detail": {"grantArn": grant, "status": status,
                      "granteePrincipal": format!("arn:aws:iam::{account}:root")}});
    json!({"messageId": id, "eventSource": "aws:sqs", "eventSourceARN": queue_arn,
           "body": body.to_string()})
}

/// The first message a batch's triage puts on the onboarding queue while License Manager
/// answers each call only after 3 s, and how many of the emulator's calls `counted` picks had
/// been answered when it was there, beside how many before the triage began (the emulator
/// records a call when it answers it); then the triage's report.
async fn first_queued_under_slow_calls(
    s: &common::Setup,
    engine: shared::engine::Engine,
    config: ReconcileConfig,
    records: Value,
    counted: fn(&str) -> bool,
) -> (Value, (usize, usize), shared::reconcile::ReconcileReport) {
    let batch = shared::changes::parse_batch(&records, &config)
        .unwrap()
        .unwrap();
    let control = s.world.control();
    let answered = || async {
        let calls = s.world.control().calls().await.unwrap();
        calls.iter().filter(|c| counted(&c.operation)).count()
    };
    let before = answered().await;
    control.configure(json!({"latencyMs": 3000})).await.unwrap();
    let triage =
        tokio::spawn(async move { reconciler::change_batch(&engine, &config, &batch).await });
    let sqs = s.world.sqs();
    let mut queued = None;
    for _ in 0..150 {
        let out = sqs
            .receive_message()
            .queue_url(&s.queue_url)
            .send()
            .await
            .unwrap();
        if let Some(m) = out.messages().first() {
            queued = Some((m.body().unwrap().to_string(), answered().await));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    control.configure(json!({"latencyMs": 0})).await.unwrap();
    let (body, at_message) = queued.expect("a message on the onboarding queue within 7.5 s");
    let (_, report) = triage.await.unwrap();
    (
        serde_json::from_str(&body).unwrap(),
        (before, at_message),
        report,
    )
}

/// A completed workflow's run goes out before the batch's looks at other accounts' grants: with
/// License Manager answering each call only after 3 s, the completed account's message is on
/// the onboarding queue while the other account's `GetGrant` is still unanswered. Queued after
/// the looks, as before, the message could only appear once that call was answered.
#[tokio::test]
async fn a_completion_is_queued_before_the_batchs_looks_at_other_accounts() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let engine = s.engine(&[]);
    let (changes, changes_arn) = common::new_queue(&s.world, "changes").await;
    let config = ReconcileConfig {
        change_queue_url: Some(changes),
        ..reconcile_config(&s.queue_url, None)
    };
    let dev = s.org.account("workload-dev").unwrap().id.clone();
    let prod = s.org.account("workload-prod").unwrap().id.clone();
    let grant = |n: u32| format!("arn:aws:license-manager::123456789012:grant:g-{n:032x}");
    // prod's grant is DISABLED: a look. dev's completed its workflow: a run, no call needed.
    let records = json!({"Records": [
        change_record(&changes_arn, "m-look", &grant(8), "DISABLED", &prod),
        change_record(&changes_arn, "m-done", &grant(7), "PENDING_ACCEPT", &dev)]});
    let (body, (looks_before, looks), report) =
        first_queued_under_slow_calls(&s, engine, config, records, |op| op == "GetGrant").await;
    assert_eq!(
        (&body["accountId"], &body["reason"]),
        (&json!(dev), &json!("grant-change")),
        "{body}"
    );
    assert_eq!(looks, looks_before, "queued while the look is unanswered");
    assert!(report.needs.contains_key(&dev), "{report:#?}");
    assert!(
        report.api_calls.get("license-manager:GetGrant") >= Some(&1),
        "prod's grant was looked at: {report:#?}"
    );
}

/// A looked-at account's run goes out as soon as its look decides it, before the listings of
/// another account whose grant went away: with License Manager answering each call only after
/// 3 s, dev's message (its grant deactivated by hand: a look, then a run) is on the onboarding
/// queue while prod's listings (a grant that is not there: a look, then its listings) are still
/// unanswered. Queued after every account's verdict, as before, it could only appear once
/// those listings were answered.
#[tokio::test]
async fn a_looked_at_account_is_queued_before_another_accounts_listings() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let engine = s.engine(&[]);
    let dev = s.org.account("workload-dev").unwrap().id.clone();
    let prod = s.org.account("workload-prod").unwrap().id.clone();
    let workloads = s.org.ou("Workloads").unwrap().id.clone();
    let report = common::try_handle(&engine, s.create_event(&dev, &workloads)).await;
    assert_eq!(report["outcome"], "entitled", "{report:#}");
    let grant = common::deactivate_by_hand(&s.world, &dev, "by-hand").await;
    let (changes, changes_arn) = common::new_queue(&s.world, "changes").await;
    let config = ReconcileConfig {
        change_queue_url: Some(changes),
        ..reconcile_config(&s.queue_url, None)
    };
    let missing = format!("arn:aws:license-manager::123456789012:grant:g-{:032x}", 9);
    let records = json!({"Records": [
        change_record(&changes_arn, "m-gone", &missing, "DISABLED", &prod),
        change_record(&changes_arn, "m-dev", grant.grant_arn(), "DISABLED", &dev)]});
    let (body, (listed_before, listed), report) =
        first_queued_under_slow_calls(&s, engine, config, records, |op| op.starts_with("List"))
            .await;
    assert_eq!(body["accountId"], json!(dev), "{body}");
    assert_eq!(
        listed, listed_before,
        "queued while prod's listings are unanswered"
    );
    assert!(report.needs.contains_key(&dev), "{report:#?}");
    assert!(
        report.needs.contains_key(&prod) || report.skipped.contains_key(&prod),
        "prod decided by its listings: {report:#?}"
    );
    assert!(
        report
            .api_calls
            .keys()
            .any(|op| op.starts_with("license-manager:List")),
        "{report:#?}"
    );
}
