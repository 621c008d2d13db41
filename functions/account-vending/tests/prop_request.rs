//! Property tests of account-vending's request parsing and validation (issue 10): arbitrary
//! payloads never panic and errors stay bounded; valid requests validate and round-trip.
//! Cases: `PROPTEST_CASES` (default 64).
#![allow(clippy::unwrap_used)]

use account_vending::request::{parse_message, validate, AccountRequest};
use proptest::prelude::*;
use serde_json::{json, Value};

#[path = "../../../shared/tests/prop_support/mod.rs"]
mod prop_support;
use prop_support::{bounded_invalid, config, mutate};

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

fn json_value() -> impl Strategy<Value = Value> {
    prop_support::json_value(KNOWN_KEYS, KNOWN_STRINGS)
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
