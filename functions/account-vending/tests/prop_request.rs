//! Property tests of account-vending's request parsing and validation (issue 10): arbitrary
//! payloads never panic and errors stay bounded; valid requests validate and round-trip.
//! Cases: `PROPTEST_CASES` (default 64).
#![allow(clippy::unwrap_used)]

use account_vending::request::{parse_message, validate, AccountRequest};
use proptest::prelude::*;
use serde_json::{json, Value};
use shared::Error;

const KNOWN_STRINGS: &[&str] = &[
    "Sandbox 7",
    "aws+sandbox7@example.com",
    "Sandbox (ou-ab12-cdef3456)",
    "Sandbox (ou-AB12-x)",
    "jane.doe@example.com",
    "Jane",
    "Doe",
    "prod-sku-1",
    "FAILED",
    "SUCCEEDED",
    "",
    "arn:aws:license-manager::294406891311:license:l-0123456789abcdef",
];
const KNOWN_KEYS: &[&str] = &[
    "AccountName",
    "AccountEmail",
    "ManagedOrganizationalUnit",
    "SSOUserEmail",
    "SSOUserFirstName",
    "SSOUserLastName",
    "Entitlements",
    "ProvisionedProductName",
    "request",
    "recordId",
    "attempt",
    "firstSeen",
    "generation",
    "failure",
    "status",
];
const TAG_KEY: Option<&str> = Some("ct-entitlements:licenses");
const FIELDS: &[&str] = &[
    "/AccountName",
    "/AccountEmail",
    "/ManagedOrganizationalUnit",
    "/SSOUserEmail",
    "/SSOUserFirstName",
    "/SSOUserLastName",
    "/Entitlements",
    "/ProvisionedProductName",
];

const MAX_ERROR_BYTES: usize = 1024;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings a parser may meet: near-valid values, control characters, unicode, huge ones.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,24}",
        "[0-9]{10,14}",
        "[a-zA-Z0-9 ._+@()-]{0,60}",
        "[\u{0}-\u{1f}\u{7f}\u{202e}\u{fffd}]{1,4}",
        prop::sample::select(KNOWN_STRINGS.to_vec()).prop_map(str::to_string),
        (1usize..4).prop_map(|k| "x".repeat(k * 3000)),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KNOWN_KEYS.to_vec()).prop_map(str::to_string),
        1 => text(),
    ]
}

/// Arbitrary JSON, nested up to 6 levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Replaces the value at `pointer` (when it exists) with `value`.
fn mutate(mut doc: Value, pointer: &str, value: Value) -> Value {
    if let Some(slot) = doc.pointer_mut(pointer) {
        *slot = value;
    }
    doc
}

/// A parser's error: InvalidInput, bounded.
fn bounded_invalid(e: &Error) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.kind(), "InvalidInput", "{}", e);
    let text = e.to_string();
    prop_assert!(
        text.len() < MAX_ERROR_BYTES,
        "{} bytes: {:.200}",
        text.len(),
        text
    );
    Ok(())
}

/// A valid account request.
fn account_request() -> impl Strategy<Value = AccountRequest> {
    (
        "[A-Za-z0-9][A-Za-z0-9 ._-]{0,40}",
        "[a-z0-9.+]{1,20}",
        "[a-z]{1,20}",
        prop::option::of("ou-[a-z0-9]{4,8}-[a-z0-9]{8,12}"),
        "[A-Za-z][A-Za-z '-]{0,30}",
        prop::collection::vec("[a-z0-9._-]{1,20}", 0..4),
    )
        .prop_filter(
            "a local part without dots at its ends or doubled",
            |(_, local, ..)| {
                !local.starts_with('.') && !local.ends_with('.') && !local.contains("..")
            },
        )
        .prop_map(|(name, local, domain, ou, person, skus)| AccountRequest {
            account_name: name.trim().to_string(),
            account_email: format!("{local}@{domain}.com"),
            managed_organizational_unit: match ou {
                Some(ou) => format!("Sandbox ({ou})"),
                None => "Sandbox".to_string(),
            },
            sso_user_email: format!("{local}@{domain}.org"),
            sso_user_first_name: person.trim().to_string(),
            sso_user_last_name: "Doe".to_string(),
            entitlements: skus,
            provisioned_product_name: None,
        })
        .prop_filter("a non-empty trimmed name", |r| {
            !r.account_name.is_empty() && !r.sso_user_first_name.is_empty()
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_payload_parses_or_is_a_bounded_error(v in json_value(), now in any::<u64>()) {
        match parse_message(&v, now) {
            Ok(tracked) => {
                if let Err(e) = validate(&tracked.request, TAG_KEY) {
                    bounded_invalid(&e)?;
                }
            }
            Err(e) => bounded_invalid(&e)?,
        }
    }

    #[test]
    fn one_bad_field_is_a_bounded_error_naming_it(
        request in account_request(),
        pointer in prop::sample::select(FIELDS),
        value in json_value(),
        tracked in any::<bool>(),
    ) {
        let mutated = mutate(serde_json::to_value(&request).unwrap(), pointer, value);
        let payload = if tracked { json!({"request": mutated, "firstSeen": 1}) } else { mutated };
        let result = parse_message(&payload, 1).and_then(|t| validate(&t.request, TAG_KEY));
        if let Err(e) = result {
            bounded_invalid(&e)?;
        }
    }

    #[test]
    fn valid_requests_validate_and_round_trip(request in account_request(), now in any::<u64>()) {
        let payload = serde_json::to_value(&request).unwrap();
        let tracked = parse_message(&payload, now).unwrap();
        prop_assert_eq!(&tracked.request, &request);
        prop_assert_eq!(tracked.first_seen, now);
        let valid = validate(&tracked.request, TAG_KEY);
        prop_assert!(valid.is_ok(), "{:?}: {:?}", request, valid.err());
        // And as a tracked message on the queue.
        let again = parse_message(&serde_json::to_value(&tracked).unwrap(), now).unwrap();
        prop_assert_eq!(again, tracked);
    }
}
