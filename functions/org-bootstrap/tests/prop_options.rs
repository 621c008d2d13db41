//! Property tests of org-bootstrap's property parsing (issue 10): arbitrary requests never
//! panic and errors stay bounded; valid properties parse. Cases: `PROPTEST_CASES` (default 64).
#![allow(clippy::unwrap_used)]

use org_bootstrap::options;
use proptest::prelude::*;
use serde_json::{json, Value};
use shared::Error;

const KNOWN_STRINGS: &[&str] = &["210987654321", "true", "false", "", "us-east-1"];
const KNOWN_KEYS: &[&str] = &[
    "ResourceProperties",
    "DelegatedAdminAccountId",
    "DryRun",
    "ServiceTimeout",
    "LicenseHomeRegion",
    "ServiceToken",
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

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_request_gives_options_or_a_bounded_error(v in json_value()) {
        if let Err(e) = options(&v) {
            bounded_invalid(&e)?;
        }
        for field in ["DelegatedAdminAccountId", "DryRun"] {
            let request = json!({"ResourceProperties": {field: v.clone()}});
            if let Err(e) = options(&request) {
                bounded_invalid(&e)?;
                prop_assert!(e.to_string().contains(field), "{}", e);
            }
        }
        if let Err(e) = options(&json!({"ResourceProperties": v})) {
            bounded_invalid(&e)?;
        }
    }

    #[test]
    fn valid_properties_parse(
        admin in prop::option::of("[0-9]{12}"),
        dry_run in prop::option::of(any::<bool>()),
        as_text in any::<bool>(),
    ) {
        let mut props = json!({
            "ServiceToken": "arn:aws:lambda:us-east-1:111111111111:function:f",
            "DelegatedAdminAccountId": admin.clone().unwrap_or_default(),
            "LicenseHomeRegion": "us-east-1",
        });
        if let Some(d) = dry_run {
            props["DryRun"] = if as_text { json!(d.to_string()) } else { json!(d) };
        }
        let parsed = options(&json!({"ResourceProperties": props})).unwrap();
        prop_assert_eq!(parsed.delegated_admin.map(|a| a.to_string()), admin);
        prop_assert_eq!(parsed.dry_run, dry_run.unwrap_or(false));
    }
}
