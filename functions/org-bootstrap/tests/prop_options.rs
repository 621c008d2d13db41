//! Property tests of org-bootstrap's property parsing (issue 10): arbitrary requests never
//! panic and errors stay bounded; valid properties parse. Cases: `PROPTEST_CASES` (default 64).
#![allow(clippy::unwrap_used)]

use org_bootstrap::options;
use proptest::prelude::*;
use serde_json::{json, Value};

#[path = "../../../shared/tests/prop_support/mod.rs"]
mod prop_support;
use prop_support::{bounded_invalid, config};

const KNOWN_STRINGS: &[&str] = &["210987654321", "true", "false", "", "us-east-1"];
const KNOWN_KEYS: &[&str] = &[
    "ResourceProperties",
    "DelegatedAdminAccountId",
    "DryRun",
    "ServiceTimeout",
    "LicenseHomeRegion",
    "ServiceToken",
];

fn json_value() -> impl Strategy<Value = Value> {
    prop_support::json_value(KNOWN_KEYS, KNOWN_STRINGS)
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
