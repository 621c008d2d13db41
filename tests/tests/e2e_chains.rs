//! An account's chain when a change comes while its run is under way (`CHAIN_TABLE`,
//! docs/design.md, *One live chain per account*): the change event's triage marks the running
//! chain (`poked`), and the run, when it ends, goes on at once instead of after the re-check
//! delay. The mark is set here as the triage sets it, once the run's claim shows in the table;
//! the emulator's latency keeps the run going meanwhile.
#![allow(clippy::unwrap_used)]

mod common;

use aws_sdk_dynamodb::types::AttributeValue;
use common::setup;
use local_world::seed::demo_spec;
use serde_json::{json, Value};
use std::time::Duration;

/// Runs `account`'s `CreateManagedAccount` under the engine while marking its chain as soon
/// as the run's claim shows (`running`); the run's report and the messages then visible on
/// the onboarding queue (body, chain sequence).
async fn run_while_marked(
    s: &common::Setup,
    engine: &shared::engine::Engine,
    table: &str,
    account: &str,
) -> (shared::report::AccountReport, Vec<(Value, Option<u64>)>) {
    let ou = s.org.ou("Workloads").unwrap().id.clone();
    let request = shared::inbound::parse_request(&s.create_event(account, &ou)).unwrap();
    let mark = async {
        // Bounded: the run's first License Manager call alone takes the emulator's latency.
        for _ in 0..500 {
            let item = common::chain_item(&s.world, table, account).await;
            if item.is_some_and(|i| i.get("state").is_some_and(|s| s == "running")) {
                s.world
                    .dynamodb()
                    .update_item()
                    .table_name(table)
                    .key("account", AttributeValue::S(account.to_string()))
                    .update_expression("SET poked = :yes")
                    .condition_expression("#s = :running")
                    .expression_attribute_names("#s", "state")
                    .expression_attribute_values(":yes", AttributeValue::Bool(true))
                    .expression_attribute_values(":running", AttributeValue::S("running".into()))
                    .send()
                    .await
                    .unwrap();
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    };
    let (report, marked) = tokio::join!(engine.run(request), mark);
    assert!(marked, "the run's claim never showed: {report:#?}");
    let out = s
        .world
        .sqs()
        .receive_message()
        .queue_url(&s.queue_url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let visible = out
        .messages()
        .iter()
        .map(|m| {
            let seq = m
                .message_attributes()
                .and_then(|a| a.get("chainSeq"))
                .and_then(|v| v.string_value())
                .and_then(|v| v.parse().ok());
            (serde_json::from_str(m.body().unwrap()).unwrap(), seq)
        })
        .collect();
    (report, visible)
}

#[tokio::test]
async fn a_change_while_the_chain_runs_sends_its_recheck_at_once() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    // The workflows outlast the run (so it queues a re-check); each call takes 50 ms.
    s.world
        .control()
        .configure(json!({"pendingWorkflowMs": 60_000, "latencyMs": 50}))
        .await
        .unwrap();
    let table = common::chain_table(&s.world, "chains").await;
    let engine = s.engine(&[("RECHECK_DELAY_SECONDS", "300"), ("CHAIN_TABLE", &table)]);
    let prod = s.org.account("workload-prod").unwrap().id.clone();

    let (report, visible) = run_while_marked(&s, &engine, &table, &prod).await;
    assert_eq!(
        report.outcome,
        shared::report::Outcome::Pending,
        "{report:#?}"
    );
    assert_eq!(report.chain.as_deref(), Some("forwarded"), "{report:#?}");
    // The re-check, sent again at once as an early re-check under a later sequence, which the
    // item now names (queued); the delayed one waits its 300 s and will be stale.
    assert_eq!(visible.len(), 1, "{visible:?}");
    let (body, seq) = &visible[0];
    assert_eq!(body["reason"], "early-recheck", "{body}");
    assert_eq!(body["attempt"], 1, "{body}");
    assert_eq!(body["firstSeen"], json!(report.first_seen), "{body}");
    let item = common::chain_item(&s.world, &table, &prod).await.unwrap();
    assert_eq!(item["state"], "queued", "{item:?}");
    assert_eq!(Some(item["seq"].parse::<u64>().unwrap()), *seq, "{item:?}");
    assert!(!item.contains_key("poked"), "{item:?}");
}

#[tokio::test]
async fn a_change_while_the_chains_last_run_ends_it_queues_one_more_run() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    // No workflow time: the run entitles the account and the chain ends; each call 50 ms.
    s.world
        .control()
        .configure(json!({"latencyMs": 50}))
        .await
        .unwrap();
    let table = common::chain_table(&s.world, "chains").await;
    let engine = s.engine(&[("RECHECK_DELAY_SECONDS", "300"), ("CHAIN_TABLE", &table)]);
    let prod = s.org.account("workload-prod").unwrap().id.clone();

    let (report, visible) = run_while_marked(&s, &engine, &table, &prod).await;
    assert_eq!(
        report.outcome,
        shared::report::Outcome::Entitled,
        "{report:#?}"
    );
    assert_eq!(report.chain.as_deref(), Some("followed"), "{report:#?}");
    // One more run of the account, now, as a change event's run; the chain queued under it.
    assert_eq!(visible.len(), 1, "{visible:?}");
    let (body, seq) = &visible[0];
    assert_eq!(body["reason"], "grant-change", "{body}");
    assert_eq!(body["accountId"], json!(prod), "{body}");
    let item = common::chain_item(&s.world, &table, &prod).await.unwrap();
    assert_eq!(item["state"], "queued", "{item:?}");
    assert_eq!(Some(item["seq"].parse::<u64>().unwrap()), *seq, "{item:?}");

    // Without a mark, the same run ends its chain and queues nothing.
    let dev = s.org.account("workload-dev").unwrap().id.clone();
    let ou = s.org.ou("Workloads").unwrap().id.clone();
    let request = shared::inbound::parse_request(&s.create_event(&dev, &ou)).unwrap();
    let report = engine.run(request).await;
    assert_eq!(
        (report.outcome, report.chain.as_deref()),
        (shared::report::Outcome::Entitled, Some("ended")),
        "{report:#?}"
    );
    let item = common::chain_item(&s.world, &table, &dev).await.unwrap();
    assert_eq!(item["state"], "ended", "{item:?}");
}

/// A run that fails releases its chain: the item expires at once, so the messages it had
/// superseded run again (each reads the account afresh) instead of waiting for the failed
/// message's redelivery after the queue's visibility timeout.
#[tokio::test]
async fn a_failed_run_releases_its_chain() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    s.world
        .control()
        .configure(json!({"pendingWorkflowMs": 60_000}))
        .await
        .unwrap();
    let table = common::chain_table(&s.world, "chains").await;
    let engine = s.engine(&[("RECHECK_DELAY_SECONDS", "300"), ("CHAIN_TABLE", &table)]);
    let prod = s.org.account("workload-prod").unwrap().id.clone();
    let ou = s.org.ou("Workloads").unwrap().id.clone();
    let first = engine
        .run(shared::inbound::parse_request(&s.create_event(&prod, &ou)).unwrap())
        .await;
    assert_eq!(first.chain.as_deref(), Some("waiting"), "{first:#?}");
    let waiting = common::chain_item(&s.world, &table, &prod).await.unwrap();
    let delayed: u64 = waiting["seq"].parse().unwrap();
    let body = waiting["body"].clone();

    // An early re-check under a later sequence, every License Manager call throttled: it
    // fails, retryable, and releases the chain.
    s.world
        .control()
        .configure(json!({"throttleProbability": 1.0, "seed": 3}))
        .await
        .unwrap();
    let early = shared::inbound::parse_body(&body).unwrap();
    let report = engine.run_chained(early, Some(delayed + 1)).await;
    assert_eq!(
        report.outcome,
        shared::report::Outcome::Failed,
        "{report:#?}"
    );
    assert_eq!(report.chain.as_deref(), Some("released"), "{report:#?}");
    let item = common::chain_item(&s.world, &table, &prod).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(item["expires"].parse::<u64>().unwrap() <= now, "{item:?}");

    // The delayed re-check it had superseded runs when it comes.
    s.world
        .control()
        .configure(json!({"throttleProbability": 0.0}))
        .await
        .unwrap();
    let report = engine
        .run_chained(shared::inbound::parse_body(&body).unwrap(), Some(delayed))
        .await;
    assert_ne!(report.chain.as_deref(), Some("superseded"), "{report:#?}");
    assert_eq!(
        report.outcome,
        shared::report::Outcome::Pending,
        "{report:#?}"
    );
}

/// A change whose mark meets the end of its account's run: the triage read the chain running,
/// the run ended (waiting on a re-check) before the mark; the mark finds the chain moved on,
/// reads it again and brings the re-check forward, where the lost mark left the completion to
/// the 300 s re-check. (The run's end is written here while the triage's look waits out the
/// emulator's latency.)
#[tokio::test]
async fn a_mark_that_meets_the_runs_end_brings_the_recheck_forward() {
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
    let table = common::chain_table(&s.world, "chains").await;
    let engine = s.engine(&[("RECHECK_DELAY_SECONDS", "300"), ("CHAIN_TABLE", &table)]);
    let prod = s.org.account("workload-prod").unwrap().id.clone();
    let ou = s.org.ou("Workloads").unwrap().id.clone();
    let report = engine
        .run(shared::inbound::parse_request(&s.create_event(&prod, &ou)).unwrap())
        .await;
    assert_eq!(report.chain.as_deref(), Some("ended"), "{report:#?}");
    let mgmt = s.org.management_account.clone();
    let (_, after) = s
        .world
        .control()
        .license_manager_events(0, Some(&mgmt))
        .await
        .unwrap();

    // The account's run is under way (sequence 5); an operator deactivates one of its grants.
    common::put_chain_item(&s.world, &table, &prod, ("running", 5), None).await;
    common::deactivate_by_hand(&s.world, &prod, "meets-the-end").await;
    let (events, _) = s
        .world
        .control()
        .license_manager_events(after, Some(&mgmt))
        .await
        .unwrap();
    assert!(!events.is_empty());
    let (queue_url, queue_arn) = common::new_queue(&s.world, "change-events").await;
    let records: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({"messageId": format!("m-{i}"), "eventSource": "aws:sqs",
                   "eventSourceARN": queue_arn, "body": e.to_string()})
        })
        .collect();
    let config = shared::reconcile::ReconcileConfig {
        change_queue_url: Some(queue_url),
        ..common::reconcile_config(&s.queue_url, None)
    };
    let batch = shared::changes::parse_batch(&json!({ "Records": records }), &config)
        .unwrap()
        .unwrap();
    // Each License Manager call now takes 3 s: the triage reads the chain (running), then
    // looks; meanwhile the run ends, waiting on its re-check.
    s.world
        .control()
        .configure(json!({"latencyMs": 3000}))
        .await
        .unwrap();
    let body = json!({"accountId": prod, "reason": "recheck", "attempt": 1}).to_string();
    let end = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        common::put_chain_item(&s.world, &table, &prod, ("waiting", 5), Some(&body)).await;
    };
    let ((_, report), ()) = tokio::join!(reconciler::change_batch(&engine, &config, &batch), end);
    assert_eq!(report.forwarded, vec![prod.clone()], "{report:#?}");
    assert!(report.onboard.contains(&prod), "{report:#?}");
    let item = common::chain_item(&s.world, &table, &prod).await.unwrap();
    assert_eq!(item["state"], "queued", "{item:?}");
}
