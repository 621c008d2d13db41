//! Property tests of every parser in `shared` (issue 10): arbitrary JSON values and strings never
//! panic, errors stay bounded, and valid inputs from a strategy parse (and round-trip).
//! The case count comes from `PROPTEST_CASES` (default 64 here, so `make test` stays fast;
//! `make soak` raises it).
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{json, Value};
use shared::custom_resource::{service_timeout, validate_response_url, Target};
use shared::ids::{is_license_arn, is_ou_id, is_product_sku, is_role_name, AccountId};
use shared::inbound::{parse_body, parse_request, Request};
use shared::reconcile::{self, ReconcileConfig, Scope};
use shared::{config::Config, error::Error};
use std::collections::HashMap;

#[path = "prop_support/mod.rs"]
mod prop_support;
use prop_support::{bounded_invalid, config, mutate, MAX_ERROR_BYTES};

const KNOWN_STRINGS: &[&str] = &[
    "aws.controltower",
    "AWS Service Event via CloudTrail",
    "CreateManagedAccount",
    "UpdateManagedAccount",
    "SUCCEEDED",
    "FAILED",
    "Not Available",
    "aws.events",
    "Scheduled Event",
    "210987654321",
    "",
];

/// The fields the parsers look at.
const KNOWN_KEYS: &[&str] = &[
    "source",
    "detail-type",
    "detail",
    "eventName",
    "serviceEventDetails",
    "createManagedAccountStatus",
    "updateManagedAccountStatus",
    "account",
    "accountId",
    "accountName",
    "state",
    "message",
    "organizationalUnit",
    "reason",
    "attempt",
    "firstSeen",
    "activations",
    "ouId",
    "backfill",
    "accounts",
    "ous",
    "dryRun",
    "Records",
    "body",
    "eventSource",
    "ResponseURL",
    "StackId",
    "RequestId",
    "LogicalResourceId",
    "RequestType",
    "ResourceProperties",
    "ServiceTimeout",
    "PhysicalResourceId",
];

fn text() -> impl Strategy<Value = String> {
    prop_support::text(KNOWN_STRINGS)
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_support::json_value(KNOWN_KEYS, KNOWN_STRINGS)
}

fn account_id() -> impl Strategy<Value = String> {
    "[0-9]{12}"
}

fn ou_id() -> impl Strategy<Value = String> {
    "ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}"
}

/// A valid Control Tower lifecycle event.
fn lifecycle_event() -> impl Strategy<Value = (Value, String, bool)> {
    (
        account_id(),
        any::<bool>(),
        ou_id(),
        ".{0,60}",
        prop::sample::select(vec!["SUCCEEDED", "FAILED"]),
    )
        .prop_map(|(id, create, ou, name, state)| {
            let (event_name, key) = if create {
                ("CreateManagedAccount", "createManagedAccountStatus")
            } else {
                ("UpdateManagedAccount", "updateManagedAccountStatus")
            };
            let event = json!({
                "version": "0",
                "id": "999cccaa-eaaa-0000-1111-123456789012",
                "detail-type": "AWS Service Event via CloudTrail",
                "source": "aws.controltower",
                "account": "111111111111",
                "time": "2019-11-16T12:09:32Z",
                "region": "us-east-1",
                "resources": [],
                "detail": {
                    "eventName": event_name,
                    "eventSource": "controltower.amazonaws.com",
                    "serviceEventDetails": { key: {
                        "account": {"accountName": name, "accountId": id},
                        "organizationalUnit": {"organizationalUnitName": "Custom", "organizationalUnitId": ou},
                        "state": state,
                        "message": "m",
                        "requestedTimestamp": "2019-11-15T11:45:18+0000",
                        "completedTimestamp": "2019-11-16T12:09:32+0000"
                    }}
                }
            });
            (event, id, state == "SUCCEEDED")
        })
}

/// JSON pointers into a lifecycle event, for one-field mutations.
const EVENT_POINTERS: &[&str] = &[
    "/source",
    "/detail-type",
    "/detail",
    "/detail/eventName",
    "/detail/serviceEventDetails",
    "/detail/serviceEventDetails/createManagedAccountStatus",
    "/detail/serviceEventDetails/createManagedAccountStatus/state",
    "/detail/serviceEventDetails/createManagedAccountStatus/account",
    "/detail/serviceEventDetails/createManagedAccountStatus/account/accountId",
    "/detail/serviceEventDetails/createManagedAccountStatus/message",
    "/detail/serviceEventDetails/updateManagedAccountStatus/account/accountId",
];

/// What the lifecycle parser said, checked for bounds.
fn check_request(result: &Result<Request, Error>) -> Result<(), TestCaseError> {
    match result {
        Err(e) => bounded_invalid(e),
        Ok(Request::Skip { account_id, reason }) => {
            prop_assert!(account_id.as_ref().is_none_or(|a| a.len() < 300));
            prop_assert!(reason.len() < 2 * MAX_ERROR_BYTES + 256);
            Ok(())
        }
        Ok(Request::Work(w)) => {
            prop_assert!(AccountId::parse(w.account_id.as_str()).is_ok());
            Ok(())
        }
    }
}

fn reconcile_config() -> ReconcileConfig {
    ReconcileConfig::from_lookup(|k| {
        (k == "ONBOARDING_QUEUE_URL").then(|| "https://sqs.us-east-1.amazonaws.com/1/q".to_string())
    })
    .unwrap()
}

proptest! {
    #![proptest_config(config())]

    // ---------- lifecycle events, onboard requests, SQS bodies (event.rs) ----------

    #[test]
    fn any_json_is_a_request_or_a_bounded_error(v in json_value()) {
        check_request(&parse_request(&v))?;
    }

    #[test]
    fn any_text_body_is_a_request_or_a_bounded_error(body in prop_oneof![text(), json_value().prop_map(|v| v.to_string())]) {
        check_request(&parse_body(&body))?;
    }

    #[test]
    fn one_mutated_field_of_an_event_never_panics(
        (event, _, _) in lifecycle_event(),
        pointer in prop::sample::select(EVENT_POINTERS),
        value in json_value(),
    ) {
        let mutated = mutate(event, pointer, value);
        check_request(&parse_request(&mutated))?;
        check_request(&parse_body(&mutated.to_string()))?;
    }

    #[test]
    fn valid_events_parse((event, id, succeeded) in lifecycle_event()) {
        match parse_request(&event) {
            Ok(Request::Work(w)) => {
                prop_assert!(succeeded);
                prop_assert_eq!(w.account_id.as_str(), id.as_str());
            }
            Ok(Request::Skip { account_id, .. }) => {
                prop_assert!(!succeeded);
                prop_assert_eq!(account_id, Some(id));
            }
            Err(e) => prop_assert!(false, "rejected a valid event: {e}"),
        }
        // The same event as an SQS body.
        prop_assert!(parse_body(&event.to_string()).is_ok());
    }

    #[test]
    fn onboard_requests_round_trip(
        id in account_id(),
        reason in prop::option::of("[a-zA-Z0-9 :/_-]{0,128}"),
        attempt in any::<u32>(),
        first_seen in prop::option::of(any::<u64>()),
    ) {
        let mut body = json!({"accountId": id, "attempt": attempt});
        if let Some(r) = &reason {
            body["reason"] = json!(r);
        }
        if let Some(f) = first_seen {
            body["firstSeen"] = json!(f);
        }
        let Ok(Request::Work(w)) = parse_body(&body.to_string()) else {
            return Err(TestCaseError::fail(format!("rejected {body}")));
        };
        prop_assert_eq!(w.account_id.as_str(), id.as_str());
        prop_assert_eq!(w.attempt, attempt);
        prop_assert_eq!(w.first_seen, first_seen);
    }

    #[test]
    fn onboard_requests_with_one_bad_field_are_bounded_errors(
        id in account_id(),
        field in prop::sample::select(vec!["accountId", "reason", "attempt", "firstSeen", "activations", "ouId"]),
        value in json_value(),
    ) {
        let body = json!({"accountId": id, field: value});
        check_request(&parse_request(&body))?;
    }

    // ---------- identifiers (ids.rs) ----------

    #[test]
    fn account_ids_are_exactly_twelve_ascii_digits(raw in prop_oneof![text(), account_id()]) {
        let valid = raw.len() == 12 && raw.bytes().all(|b| b.is_ascii_digit());
        match AccountId::parse(&raw) {
            Ok(id) => {
                prop_assert!(valid);
                prop_assert_eq!(id.as_str(), raw.as_str());
            }
            Err(e) => {
                prop_assert!(!valid);
                bounded_invalid(&e)?;
            }
        }
    }

    #[test]
    fn account_id_fields_name_the_field(v in json_value()) {
        match AccountId::parse_field(Some(&v), "accounts[3]") {
            Ok(id) => prop_assert_eq!(Some(id.as_str()), v.as_str()),
            Err(e) => {
                bounded_invalid(&e)?;
                prop_assert!(e.to_string().contains("accounts[3]"));
            }
        }
    }

    #[test]
    fn id_predicates_never_panic(raw in text()) {
        let _ = (is_license_arn(&raw), is_ou_id(&raw), is_product_sku(&raw), is_role_name(&raw));
    }

    #[test]
    fn valid_ids_are_recognised(
        account in account_id(),
        hex in "[a-z0-9]{1,64}",
        partition in prop::sample::select(vec!["aws", "aws-cn", "aws-us-gov"]),
        ou in ou_id(),
        sku in "[a-zA-Z0-9._-]{1,64}",
        role in "[a-zA-Z0-9_+=,.@-]{1,64}",
    ) {
        let license = format!("arn:{partition}:license-manager::{account}:license:l-{hex}");
        prop_assert!(is_license_arn(&license), "{}", license);
        prop_assert!(is_ou_id(&ou), "{}", ou);
        prop_assert!(is_product_sku(&sku), "{}", sku);
        prop_assert!(is_role_name(&role), "{}", role);
    }

    // ---------- configuration (config/) ----------

    #[test]
    fn configuration_from_any_environment_never_panics(
        vars in prop::collection::hash_map(
            prop::sample::select(vec![
                "LICENSE_ARNS", "PRODUCT_SKUS", "ALL_MARKETPLACE_LICENSES", "TARGET_OUS",
                "ACCOUNT_TAG_FILTER", "EXECUTION_ROLE_NAME", "LICENSE_HOME_REGION",
                "ALLOWED_OPERATIONS", "ACTIVATION_OVERRIDE_BEHAVIOR", "GRANT_NAME_PREFIX",
                "ONBOARDING_QUEUE_URL", "RECHECK_DELAY_SECONDS", "WORKFLOW_DEADLINE_SECONDS",
                "ASSUME_ROLE_ATTEMPTS", "ASSUME_ROLE_BACKOFF_MS", "SELF_ACCOUNT_ID", "DRY_RUN",
                "MAX_CONCURRENT_ACCOUNTS", "LICENSES_TAG_KEY", "OFFBOARD_MODE",
            ]),
            prop_oneof![text(), "[0-9]{1,6}", Just("true".to_string())],
            0..8,
        ),
    ) {
        let vars: HashMap<&str, String> = vars;
        for result in [
            Config::from_lookup(|k| vars.get(k).cloned()),
            Config::from_lookup_per_request(|k| vars.get(k).cloned()),
        ] {
            if let Err(e) = result {
                prop_assert_eq!(e.kind(), "Configuration", "{}", e);
            }
        }
    }

    // ---------- custom resources (custom_resource) ----------

    #[test]
    fn custom_resource_targets_never_panic(v in json_value(), url in text()) {
        let mut request = json!({
            "RequestType": "Create", "ResponseURL": url, "StackId": "s", "RequestId": "r",
            "LogicalResourceId": "l"
        });
        for candidate in [v.clone(), mutate(request.clone(), "/ResponseURL", v.clone())] {
            match Target::from_request(&candidate) {
                Ok(t) => prop_assert!(!t.response_url.is_empty()),
                Err(e) => bounded_invalid(&e)?,
            }
        }
        request["ResourceProperties"] = json!({"ServiceTimeout": v});
        match service_timeout(&request["ResourceProperties"]) {
            Ok(d) => prop_assert!((1..=3600).contains(&d.as_secs())),
            Err(e) => {
                bounded_invalid(&e)?;
                prop_assert!(e.to_string().contains("ServiceTimeout"));
            }
        }
    }

    #[test]
    fn service_timeouts_in_range_are_accepted(secs in 1u64..=3600, as_text in any::<bool>()) {
        let v = if as_text { json!(secs.to_string()) } else { json!(secs) };
        prop_assert_eq!(service_timeout(&json!({"ServiceTimeout": v})).ok().map(|d| d.as_secs()), Some(secs));
    }

    #[test]
    fn response_urls_never_panic_and_errors_are_bounded(
        url in prop_oneof![
            text(),
            "(https?|ftp)://[a-z0-9.@:-]{0,40}(/[a-zA-Z0-9%?&=#.-]{0,40})?",
            "https://[a-z0-9-]{1,10}\\.s3[a-z0-9.-]{0,15}\\.amazonaws\\.com[a-z.]{0,8}(:[0-9]{1,5})?/[a-z]{0,5}\\?[A-Za-z-]{0,20}=x&X-Amz-Signature=s",
        ],
        allow_local in any::<bool>(),
    ) {
        if let Err(e) = validate_response_url(&url, allow_local) {
            bounded_invalid(&e)?;
            prop_assert!(e.to_string().contains("ResponseURL"));
        } else {
            // Accepted: https to amazonaws, or (allowed) plain http to loopback, nothing else.
            prop_assert!(
                url.starts_with("https://")
                    || (allow_local && (url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost"))),
                "{}", url
            );
        }
    }

    #[test]
    fn pre_signed_s3_urls_are_accepted(
        bucket in "[a-z0-9][a-z0-9-]{2,40}",
        region in prop::option::of("[a-z]{2}-[a-z]{4,9}-[1-4]"),
        key in "[A-Za-z0-9%._-]{1,80}",
        sigv4 in any::<bool>(),
        port in any::<u16>(),
    ) {
        let host = match &region {
            Some(r) => format!("{bucket}.s3.{r}.amazonaws.com"),
            None => format!("{bucket}.s3.amazonaws.com"),
        };
        let query = if sigv4 {
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F1&X-Amz-Signature=ab"
        } else {
            "AWSAccessKeyId=AKIA&Expires=1700000000&Signature=abc%3D"
        };
        let url = format!("https://{host}/{key}?{query}");
        prop_assert!(validate_response_url(&url, false).is_ok(), "{}", url);
        let local = format!("http://127.0.0.1:{port}/cfn/{key}");
        prop_assert!(validate_response_url(&local, true).is_ok(), "{}", local);
        prop_assert!(validate_response_url(&local, false).is_err(), "{}", local);
    }

    // ---------- the reconciler's request (inbound/reconcile.rs) ----------

    #[test]
    fn any_reconcile_payload_is_a_scope_or_a_bounded_error(v in json_value()) {
        if let Err(e) = reconcile::parse(&v, &reconcile_config()) {
            bounded_invalid(&e)?;
        }
    }

    #[test]
    fn valid_reconcile_requests_parse(
        accounts in prop::collection::vec(account_id(), 1..20),
        ous in prop::collection::vec(ou_id(), 1..5),
        by_ou in any::<bool>(),
        dry_run in prop::option::of(any::<bool>()),
    ) {
        let mut request = if by_ou { json!({"ous": ous}) } else { json!({"accounts": accounts}) };
        if let Some(d) = dry_run {
            request["dryRun"] = json!(d);
        }
        let (scope, dry) = reconcile::parse(&request, &reconcile_config()).unwrap();
        prop_assert_eq!(dry, dry_run.unwrap_or(false));
        match scope {
            Scope::Ous(got) => prop_assert_eq!(got, ous),
            Scope::Accounts(got) => {
                let got: Vec<String> = got.iter().map(|a| a.to_string()).collect();
                prop_assert_eq!(got, accounts);
            }
            other => prop_assert!(false, "a listed scope became {:?}", other),
        }
    }
}
