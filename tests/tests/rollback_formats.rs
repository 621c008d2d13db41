//! Rolling back (docs/deploy.md, *Rolling back*): the previous release deployed over this one
//! finds on its queues what this one wrote, and this one finds what the previous one wrote.
//! tests/fixtures/<version>/ holds each released version's queue messages, idempotency tokens
//! and report as that version writes them; this test reads them with today's code:
//!
//! * every message parses (this release reads what the previous one left queued);
//! * written back by today's code it is the same JSON (the previous release reads what this one
//!   queues: its readers refuse unknown fields, so a field this release adds to a message would
//!   park that message in a dead-letter queue after a rollback);
//! * the tokens are the same (a write retried across a rollback is the same write);
//! * the report keeps every field (queries over the previous release's lines still work).
//!
//! A change that breaks this is a change that cannot be rolled back: its CHANGELOG entry carries
//! the marker of CHANGELOG.md's header, and the fixtures stay as they are.
#![allow(clippy::unwrap_used)]

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use local_world::lambda::workspace_root;
use serde_json::{json, Value};
use shared::inbound::{parse_body, OnboardRequest, Request};
use shared::notify::Failure;
use shared::{clients::Clients, config::Config, engine::Engine};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The released versions whose formats this code must keep.
const VERSIONS: [&str; 1] = ["0.2.0"];

fn fixtures(version: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(version)
}

fn read(version: &str, name: &str) -> (String, Value) {
    let path = fixtures(version).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value = serde_json::from_str(&text).unwrap();
    (text, value)
}

fn same_json(version: &str, name: &str, written: Value, fixture: &Value) {
    assert_eq!(
        &written, fixture,
        "{version}/{name}: today's code writes this message differently from {version}. {version}'s \
         readers refuse fields they do not know, so after a rollback such messages would be \
         refused and parked: mark the change in CHANGELOG.md as one that cannot be rolled back"
    );
}

#[test]
fn onboard_requests_of_each_release_are_read_and_written_alike() {
    for version in VERSIONS {
        for name in [
            "onboard-request-minimal.json",
            "onboard-request-recheck.json",
        ] {
            let (text, fixture) = read(version, name);
            match parse_body(&text) {
                Ok(Request::Work(work)) => {
                    assert_eq!(work.account_id.as_str(), fixture["accountId"], "{name}");
                    assert_eq!(work.backfill, fixture["backfill"] == true, "{name}");
                    assert_eq!(
                        work.activations.len(),
                        fixture["activations"].as_array().map_or(0, Vec::len),
                        "{name}"
                    );
                }
                other => panic!("{version}/{name}: not read as work: {other:?}"),
            }
            let parsed: OnboardRequest = serde_json::from_str(&text).unwrap();
            same_json(
                version,
                name,
                serde_json::to_value(&parsed).unwrap(),
                &fixture,
            );
        }
    }
}

/// The fact that makes additions unsafe to roll back: an onboard request with a field the
/// reader does not know is refused, not read. If this changes, so does docs/deploy.md.
#[test]
fn an_onboard_request_with_an_unknown_field_is_refused() {
    let (_, mut fixture) = read("0.2.0", "onboard-request-recheck.json");
    fixture["addedLater"] = json!(1);
    let err = parse_body(&fixture.to_string()).unwrap_err();
    assert_eq!(err.kind(), "InvalidInput", "{err}");
    assert!(err.to_string().contains("addedLater"), "{err}");
}

#[test]
fn notifications_of_each_release_are_read_and_written_alike() {
    for version in VERSIONS {
        let name = "notification-failure.json";
        let (text, fixture) = read(version, name);
        let failure: Failure = serde_json::from_str(&text).unwrap();
        assert!(failure.parked);
        same_json(
            version,
            name,
            serde_json::to_value(&failure).unwrap(),
            &fixture,
        );
        // Read as the notifier reads a batch: nothing dropped as unreadable.
        let batch = json!({"Records": [{"body": text}]});
        let (failures, unreadable) = notifier::failures(&batch).unwrap();
        assert_eq!((failures.len(), unreadable), (1, 0), "{version}/{name}");
    }
}

#[test]
fn catalog_rechecks_of_each_release_are_read_and_written_alike() {
    use catalog_provisioning::request::Recheck;
    for version in VERSIONS {
        let name = "catalog-recheck.json";
        let (text, fixture) = read(version, name);
        let (recheck, account, behavior) =
            Recheck::parse(&text).unwrap_or_else(|e| panic!("{version}/{name}: {e}"));
        assert_eq!(account.as_str(), fixture["accountId"]);
        assert!(behavior.is_some());
        assert!(recheck.respond.is_some());
        same_json(
            version,
            name,
            serde_json::to_value(&recheck).unwrap(),
            &fixture,
        );
    }
}

#[test]
fn vending_messages_of_each_release_are_read_and_written_alike() {
    use account_vending::request::parse_message;
    for version in VERSIONS {
        let name = "vending-tracked.json";
        let (_, fixture) = read(version, name);
        let tracked = parse_message(&fixture, 1_795_305_660)
            .unwrap_or_else(|e| panic!("{version}/{name}: {e}"));
        assert_eq!(tracked.record_id.as_deref(), Some("rec-0123456789abc"));
        same_json(
            version,
            name,
            serde_json::to_value(&tracked).unwrap(),
            &fixture,
        );
    }
}

#[test]
fn idempotency_tokens_of_each_release_are_unchanged() {
    for version in VERSIONS {
        let (_, fixture) = read(version, "client-tokens.json");
        for case in fixture["createGrant"].as_array().unwrap() {
            let account = shared::ids::AccountId::parse(case["account"].as_str().unwrap()).unwrap();
            let token = shared::engine::grant_client_token(
                &account,
                case["licenseArn"].as_str().unwrap(),
                usize::try_from(case["generation"].as_u64().unwrap()).unwrap(),
            );
            assert_eq!(token, case["token"], "{version} CreateGrant {case}");
        }
        for case in fixture["provisionProduct"].as_array().unwrap() {
            let token = account_vending::request::provision_token(
                case["accountEmail"].as_str().unwrap(),
                u32::try_from(case["generation"].as_u64().unwrap()).unwrap(),
            );
            assert_eq!(token, case["token"], "{version} ProvisionProduct {case}");
        }
    }
}

/// Every key path of a JSON value (`a.b`, arrays as `a[]`).
fn key_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                key_paths(v, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_report_keeps_every_field_of_each_release() {
    // No AWS call is made for a FAILED account creation; the endpoint is a closed local port.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&dead)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDROLLBACK",
            "rollback-secret",
            None,
            None,
            "rollback-formats",
        )))
        .build();
    let queue = format!("{dead}/123456789012/onboarding");
    let config = Config::from_lookup(|k| match k {
        "ALL_MARKETPLACE_LICENSES" => Some("true".into()),
        "ONBOARDING_QUEUE_URL" => Some(queue.clone()),
        "SELF_ACCOUNT_ID" => Some("123456789012".into()),
        _ => None,
    })
    .unwrap();
    let engine = Engine::new(config, Clients::from_sdk_config(&sdk, "us-east-1"));
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("events/create-failed.json")).unwrap(),
    )
    .unwrap();
    let report = account_lifecycle::handle(&engine, event).await.unwrap();
    let mut today = BTreeSet::new();
    key_paths(&report, "", &mut today);
    for version in VERSIONS {
        let (_, fixture) = read(version, "account-report-skipped.json");
        let mut then = BTreeSet::new();
        key_paths(&fixture, "", &mut then);
        let gone: Vec<&String> = then.difference(&today).collect();
        assert!(
            gone.is_empty(),
            "fields of {version}'s account report that today's lacks: {gone:?} (queries over \
             {version}'s report lines would break)"
        );
        assert_eq!(report["outcome"], fixture["outcome"]);
        assert_eq!(report["trigger"], fixture["trigger"]);
    }
}
