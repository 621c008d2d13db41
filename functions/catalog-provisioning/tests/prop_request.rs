//! Property tests of catalog-provisioning's parsers (issue 10): what arrives (direct, SNS,
//! re-check SQS), the custom-resource request and its properties, the stack ARN and re-check
//! bodies. Arbitrary input never panics and errors stay bounded; valid input parses.
//! Cases: `PROPTEST_CASES` (default 64).
#![allow(clippy::unwrap_used)]

use catalog_provisioning::request::{
    classify, parse_properties, parse_request, stack_account, Incoming, Recheck,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use shared::config::LicenseRef;

#[path = "../../../shared/tests/prop_support/mod.rs"]
mod prop_support;
use prop_support::{bounded_invalid, config, mutate};

const KNOWN_STRINGS: &[&str] = &[
    "Create",
    "Update",
    "Delete",
    "aws:sns",
    "aws:sqs",
    "true",
    "false",
    "3600",
    "0",
    "210987654321",
    "prod-sku-1",
    "DISTRIBUTED_GRANTS_ONLY",
    "ALL_GRANTS_PERMITTED_BY_ISSUER",
    "arn:aws:license-manager::294406891311:license:l-0123456789abcdef",
    "arn:aws:cloudformation:us-east-1:210987654321:stack/s/1",
    "",
];
const KNOWN_KEYS: &[&str] = &[
    "RequestType",
    "ResponseURL",
    "StackId",
    "RequestId",
    "LogicalResourceId",
    "ResourceType",
    "ResourceProperties",
    "OldResourceProperties",
    "PhysicalResourceId",
    "ServiceToken",
    "ServiceTimeout",
    "LicenseArn",
    "ProductSku",
    "AccountId",
    "ActivationOverrideBehavior",
    "DeactivateOnDelete",
    "Records",
    "EventSource",
    "eventSource",
    "Sns",
    "Message",
    "MessageId",
    "messageId",
    "body",
    "accountId",
    "licenseArn",
    "firstSeen",
    "respond",
];
const STACK: &str =
    "arn:aws:cloudformation:us-east-1:210987654321:stack/SC-210987654321-pp-abc/0f1e2d3c";
const PROPERTY_POINTERS: &[&str] = &[
    "/ServiceTimeout",
    "/LicenseArn",
    "/ProductSku",
    "/AccountId",
    "/ActivationOverrideBehavior",
    "/DeactivateOnDelete",
    "/ServiceToken",
];

fn text() -> impl Strategy<Value = String> {
    prop_support::text(KNOWN_STRINGS)
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_support::json_value(KNOWN_KEYS, KNOWN_STRINGS)
}

fn request(props: Value, url: &str) -> Value {
    json!({
        "RequestType": "Create",
        "ServiceToken": "arn:aws:lambda:us-east-1:111111111111:function:f",
        "ResponseURL": url,
        "StackId": STACK,
        "RequestId": "r-1",
        "ResourceType": "Custom::MarketplaceEntitlement",
        "LogicalResourceId": "Entitlement",
        "ResourceProperties": props,
    })
}

/// Valid properties and the license they name.
fn properties() -> impl Strategy<Value = (Value, LicenseRef)> {
    (
        any::<bool>(),
        "[a-f0-9]{1,32}",
        "[a-zA-Z0-9._-]{1,40}",
        prop::option::of(1u64..=3600),
        prop::option::of(prop::sample::select(vec!["true", "false", "TRUE"])),
    )
        .prop_map(|(by_arn, hex, sku, timeout, deactivate)| {
            let arn = format!("arn:aws:license-manager::294406891311:license:l-{hex}");
            let (mut props, license) = if by_arn {
                (json!({"LicenseArn": arn}), LicenseRef::Arn(arn))
            } else {
                (json!({"ProductSku": sku}), LicenseRef::Sku(sku))
            };
            props["ServiceToken"] = json!("arn:aws:lambda:us-east-1:111111111111:function:f");
            if let Some(t) = timeout {
                props["ServiceTimeout"] = json!(t.to_string());
            }
            if let Some(d) = deactivate {
                props["DeactivateOnDelete"] = json!(d);
            }
            (props, license)
        })
}

fn sns_record(id: usize, message: Value) -> Value {
    json!({
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "Sns": {"Type": "Notification", "MessageId": format!("m-{id}"), "Message": message}
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_payload_is_classified_or_a_bounded_error(v in json_value()) {
        match classify(&v) {
            Ok(Incoming::CustomResource { rejected, .. }) => {
                for e in &rejected {
                    bounded_invalid(e)?;
                }
            }
            Ok(Incoming::Rechecks(_)) => {}
            Err(e) => bounded_invalid(&e)?,
        }
    }

    #[test]
    fn sns_records_are_each_a_request_or_rejected_on_their_own(
        messages in prop::collection::vec(
            prop_oneof![
                json_value(),
                json_value().prop_map(|v| Value::String(v.to_string())),
                text().prop_map(Value::String),
                properties().prop_map(|(p, _)| Value::String(request(p, "http://127.0.0.1:1/r").to_string())),
            ],
            1..6,
        ),
    ) {
        let records: Vec<Value> = messages.into_iter().enumerate().map(|(i, m)| sns_record(i, m)).collect();
        let n = records.len();
        let Ok(Incoming::CustomResource { requests, rejected, via_sns }) = classify(&json!({"Records": records})) else {
            return Err(TestCaseError::fail("an SNS event was not classified as custom-resource requests"));
        };
        prop_assert!(via_sns);
        prop_assert_eq!(requests.len() + rejected.len(), n);
        for e in &rejected {
            bounded_invalid(e)?;
            prop_assert!(e.to_string().contains("SNS message"));
        }
    }

    #[test]
    fn any_request_parses_or_is_a_bounded_error(v in json_value()) {
        if let Err(e) = parse_request(&v) {
            bounded_invalid(&e)?;
        }
        let valid_type = matches!(v.as_str(), Some("Create" | "Update" | "Delete"));
        if let Err(e) = parse_request(&mutate(request(json!({}), "u"), "/RequestType", v)) {
            bounded_invalid(&e)?;
            // A valid RequestType may still fail on another field (Update without its old
            // properties); any other value is named.
            prop_assert!(valid_type || e.to_string().contains("RequestType"), "{}", e);
        }
    }

    #[test]
    fn any_properties_parse_or_are_a_bounded_error(
        v in json_value(),
        stack in prop_oneof![Just(STACK.to_string()), text()],
        allow_override in any::<bool>(),
    ) {
        if let Err(e) = parse_properties(&v, &stack, allow_override) {
            bounded_invalid(&e)?;
        }
        if let Err(e) = stack_account(&stack) {
            bounded_invalid(&e)?;
            prop_assert!(e.to_string().contains("StackId"));
        }
    }

    #[test]
    fn one_bad_property_is_a_bounded_error(
        (props, _) in properties(),
        pointer in prop::sample::select(PROPERTY_POINTERS),
        value in json_value(),
    ) {
        let mutated = mutate(props, pointer, value);
        if let Err(e) = parse_properties(&mutated, STACK, false) {
            bounded_invalid(&e)?;
        }
    }

    #[test]
    fn valid_properties_parse((props, license) in properties(), url in "[a-z]{1,10}") {
        let parsed = parse_properties(&props, STACK, false).unwrap();
        prop_assert_eq!(parsed.license, license);
        prop_assert_eq!(parsed.account.as_str(), "210987654321");
        let raw = request(props, &format!("http://127.0.0.1:9/{url}"));
        prop_assert!(parse_request(&raw).is_ok());
        let Ok(Incoming::CustomResource { requests, rejected, via_sns }) = classify(&raw) else {
            return Err(TestCaseError::fail("a direct request was not classified"));
        };
        prop_assert_eq!((requests.len(), rejected.len(), via_sns), (1, 0, false));
    }

    #[test]
    fn any_recheck_body_parses_or_is_a_bounded_error(
        body in prop_oneof![text(), json_value().prop_map(|v| v.to_string())],
    ) {
        if let Err(e) = Recheck::parse(&body) {
            bounded_invalid(&e)?;
        }
    }
}
