#![allow(clippy::unwrap_used)]
use super::*;
use crate::changes::parse_batch;
use crate::ids::AccountId;
use crate::reconcile::ReconcileConfig;
use serde_json::{json, Value};

const B: &str = "310987654321";
const G1: &str = "arn:aws:license-manager::123456789012:grant:g-1";
const G2: &str = "arn:aws:license-manager::123456789012:grant:g-2";
const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/ct-change-events";
const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:ct-change-events";

fn hint(account: &str, grant: Option<&str>, status: Option<&str>) -> GrantHint {
    GrantHint {
        account: AccountId::parse(account).unwrap(),
        grant: grant.map(str::to_string),
        status: status.map(str::to_string),
        seen: None,
    }
}

fn config() -> ReconcileConfig {
    ReconcileConfig::from_lookup(|k| match k {
        "ONBOARDING_QUEUE_URL" => Some("https://sqs.us-east-1.amazonaws.com/1/q".into()),
        "CHANGE_EVENT_QUEUE_URL" => Some(QUEUE.into()),
        _ => None,
    })
    .unwrap()
}

fn record(id: &str, body: &Value) -> Value {
    json!({"messageId": id, "eventSource": "aws:sqs", "eventSourceARN": QUEUE_ARN,
           "body": body.to_string()})
}

fn grant_change(detail: Value) -> Value {
    json!({"version": "0", "source": "aws.license-manager", "detail-type": "Grant Change",
           "account": "123456789012", "resources": [], "detail": detail})
}

#[test]
fn a_batch_is_parsed_record_by_record_and_a_stranger_is_refused_alone() {
    let payload = json!({"Records": [
        record("m1", &grant_change(json!({"grantArn": G1, "status": "PENDING_ACCEPT",
                                           "granteePrincipal": format!("arn:aws:iam::{B}:root")}))),
        record("m2", &grant_change(json!({"grantArn": G2}))),
        record("m3", &json!({"source": "aws.organizations", "detail-type": "AWS API Call via CloudTrail",
                              "detail": {"eventName": "CloseAccount"}})),
        record("m4", &json!({"source": "aws.license-manager", "detail-type": "License Change", "detail": {}})),
        {"messageId": "m5", "eventSource": "aws:sqs", "eventSourceARN": QUEUE_ARN, "body": "not json"},
    ]});
    let batch = parse_batch(&payload, &config())
        .expect("from the queue")
        .unwrap();
    assert_eq!(batch.ids, ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(
        batch.items,
        vec![
            (
                0,
                Item::Hint(Box::new(hint(B, Some(G1), Some("PENDING_ACCEPT"))))
            ),
            (1, Item::Grants(vec![G2.into()])),
            (
                3,
                Item::Coalesce("aws.license-manager License Change".into())
            ),
        ]
    );
    let refused: Vec<usize> = batch.rejected.iter().map(|(i, _)| *i).collect();
    assert_eq!(refused, [2, 4], "{:?}", batch.rejected);
    assert!(
        batch.rejected[0].1.contains("aws.organizations"),
        "{:?}",
        batch.rejected
    );
}

#[test]
fn a_batch_from_elsewhere_is_not_ours_and_a_mixed_one_is_refused_whole() {
    let body = grant_change(json!({}));
    // Another queue (the coalescing one), or no change-event queue configured: not a batch
    // of change events (the reconciler's other parsers decide).
    let other = json!({"Records": [{"messageId": "m1", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ct-reconcile.fifo", "body": "{}"}]});
    assert!(parse_batch(&other, &config()).is_none());
    let ours = json!({"Records": [record("m1", &body)]});
    let unset = ReconcileConfig {
        change_queue_url: None,
        ..config()
    };
    assert!(parse_batch(&ours, &unset).is_none());
    for (name, payload) in [
        (
            "a record of another queue after one of ours",
            json!({"Records": [record("m1", &body),
            {"messageId": "m2", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:x", "body": "{}"}]}),
        ),
        (
            "no message id",
            json!({"Records": [{"eventSource": "aws:sqs", "eventSourceARN": QUEUE_ARN, "body": "{}"}]}),
        ),
        (
            "not SQS",
            json!({"Records": [{"messageId": "m1", "eventSource": "aws:sns", "eventSourceARN": QUEUE_ARN}]}),
        ),
        (
            "a field beside Records",
            json!({"Records": [record("m1", &body)], "extra": 1}),
        ),
    ] {
        let err = parse_batch(&payload, &config())
            .expect(name)
            .expect_err(name);
        assert_eq!(err.kind(), "InvalidInput", "{name}: {err}");
    }
}
