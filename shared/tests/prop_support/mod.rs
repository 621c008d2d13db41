//! What every parser's property tests share (`shared/tests/prop_parsers.rs` and the functions'
//! `tests/prop_*.rs` include this file by path): the case count, hostile strings and JSON built
//! around each parser's own known keys and values, and the bound on errors.
#![allow(dead_code)]

use proptest::prelude::*;
use serde_json::{json, Value};
use shared::error::Error;

/// Longest error text any parser may produce for hostile input.
pub const MAX_ERROR_BYTES: usize = 1024;

/// `PROPTEST_CASES` cases (default 64, so `make test` stays fast; `make soak` raises it), and no
/// regression files written into the tree.
pub fn config() -> ProptestConfig {
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

/// Strings a parser may meet: its `known` values, near-valid ids and ARNs, control characters,
/// unicode, huge ones.
pub fn text(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,24}",
        "[0-9]{10,14}",
        "[ \t\n]?[0-9]{12}[ \t\n\u{a0}]?",
        "ou-[a-z0-9]{3,5}-[a-zA-Z0-9]{7,9}",
        "arn:aws[a-z-]{0,4}:license-manager:[a-z0-9-]{0,10}:[0-9]{11,13}:license[:/]l-[a-f0-9]{0,8}",
        "[a-zA-Z0-9 ._+@()-]{0,60}",
        "[\u{0}-\u{1f}\u{7f}\u{202e}\u{fffd}]{1,4}",
        prop::sample::select(known.to_vec()).prop_map(str::to_string),
        (1usize..4).prop_map(|k| "x".repeat(k * 3000)),
    ]
}

/// Object keys: mostly the fields the parser looks at (`keys`), some arbitrary.
pub fn key(
    keys: &'static [&'static str],
    known: &'static [&'static str],
) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(keys.to_vec()).prop_map(str::to_string),
        1 => text(known),
    ]
}

/// Numbers, edge values included.
pub fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        prop::sample::select(vec![0u64, 1, 12, 3600, 3601, u64::from(u32::MAX) + 1])
            .prop_map(|n| json!(n)),
    ]
}

/// Arbitrary JSON, nested up to 6 levels, around the parser's keys and values.
pub fn json_value(
    keys: &'static [&'static str],
    known: &'static [&'static str],
) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text(known).prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(keys, known), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Replaces the value at `pointer` (when it exists) with `value`.
pub fn mutate(mut doc: Value, pointer: &str, value: Value) -> Value {
    if let Some(slot) = doc.pointer_mut(pointer) {
        *slot = value;
    }
    doc
}

/// A parser's error: InvalidInput, bounded.
pub fn bounded_invalid(e: &Error) -> Result<(), TestCaseError> {
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
