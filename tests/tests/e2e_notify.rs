//! A message per failure, aggregated (issue 12 §3), end to end against moto (SQS, SNS): final
//! failures go to the notification queue once each, and the notifier turns a batch of them
//! into one SNS summary.
#![allow(clippy::unwrap_used)]

mod common;

use common::setup;
use local_world::seed::demo_spec;
use serde_json::{json, Value};

fn record(id: &str, body: &str, receive_count: u32) -> Value {
    json!({
        "messageId": id, "receiptHandle": "r", "body": body, "eventSource": "aws:sqs",
        "attributes": {"ApproximateReceiveCount": receive_count.to_string()},
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:onboarding", "awsRegion": "us-east-1"
    })
}

#[tokio::test]
async fn final_failures_become_one_summary_per_batch() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let sqs = s.world.sqs();
    let (notify_url, _) = common::new_queue(&s.world, "notifications").await;
    let (inbox_url, inbox_arn) = common::new_queue(&s.world, "inbox").await;
    let sns = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(s.world.sdk_config())
            .endpoint_url(s.world.moto_url())
            .build(),
    );
    let topic = sns
        .create_topic()
        .name("failures")
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&inbox_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();

    // A license the organization does not hold: every account fails, permanently.
    let missing =
        "arn:aws:license-manager::123456789012:license:l-00000000000000000000000000000bad";
    let engine = s.engine(&[
        ("ALL_MARKETPLACE_LICENSES", "false"),
        ("LICENSE_ARNS", missing),
        ("NOTIFY_QUEUE_URL", notify_url.as_str()),
    ]);
    let batch = |receive_count: u32| {
        json!({"Records": s.org.accounts.iter().enumerate().map(|(i, a)| {
            record(&format!("m-{i}"), &json!({"accountId": a.id}).to_string(), receive_count)
        }).collect::<Vec<_>>()})
    };
    let read_notifications = || common::take_bodies(&s.world, &notify_url);

    // First delivery: permanent failures are reported at once, one record per account.
    let answer = account_lifecycle::handle(&engine, batch(1)).await.unwrap();
    assert_eq!(answer["batchItemFailures"].as_array().unwrap().len(), 3);
    let first = read_notifications().await;
    assert_eq!(first.len(), 3, "{first:?}");
    // The redeliveries in between report nothing again; the last one before the DLQ does.
    account_lifecycle::handle(&engine, batch(2)).await.unwrap();
    assert!(read_notifications().await.is_empty(), "reported once");
    account_lifecycle::handle(&engine, batch(5)).await.unwrap();
    let parked = read_notifications().await;
    assert_eq!(parked.len(), 3);
    let f: shared::notify::Failure = serde_json::from_str(&parked[0]).unwrap();
    assert!(f.parked && f.kind == "Configuration", "{f:?}");
    assert!(
        f.license.as_deref().is_some_and(|l| l.contains(missing)),
        "{f:?}"
    );

    // The notifier: one SNS message for the batch of six records.
    let app = notifier::App {
        sns: sns.clone(),
        topic_arn: topic.clone(),
        stack: "test-stack".into(),
    };
    let records: Vec<Value> = first
        .iter()
        .chain(&parked)
        .enumerate()
        .map(|(i, b)| record(&format!("n-{i}"), b, 1))
        .collect();
    let out = notifier::handle(&app, &json!({ "Records": records }))
        .await
        .unwrap();
    assert_eq!(out["published"], true, "{out}");
    let inbox = sqs
        .receive_message()
        .queue_url(&inbox_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert_eq!(inbox.messages().len(), 1, "one message for the batch");
    let message = inbox.messages()[0].body().unwrap();
    assert!(
        message.contains("3 account(s) not entitled (6 failure(s), 3 parked"),
        "{message}"
    );
    assert!(
        message.contains("== 3 account(s) × Configuration — "),
        "{message}"
    );
    assert!(message.contains(missing), "{message}");
    assert_eq!(message.matches("workload-prod").count(), 1, "{message}");
    for a in &s.org.accounts {
        assert!(message.contains(&a.id), "{} not named", a.id);
    }
    // A batch with no failure publishes nothing.
    let none = notifier::handle(&app, &json!({"Records": []}))
        .await
        .unwrap();
    assert_eq!(none["published"], false);
}
