//! The License Manager emulator's EventBridge change events (`GET /_emulator/events`), driven
//! through the real SDK clients (no moto: accounts are 12-digit access key ids, the
//! organization is seeded). Each test pins the exact events, in order, that each account's bus
//! receives under a reading of `grantChangeDetail` / `changeEventsTo` / `changeEvents`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_licensemanager::types::{AllowedOperation, GrantStatus, OrganizationConfiguration};
use aws_sdk_licensemanager::Client;
use local_world::clients;
use local_world::emulator::{
    self, ControlClient, EmulatorHandle, EmulatorOptions, LicenseSeed, OrgSeed, OuSeed,
    EVENT_SOURCE, GRANT_CHANGE, LICENSE_CHANGE,
};
use serde_json::{json, Value};

const MGMT: &str = "111111111111";
const MEMBER_A: &str = "222222222222";
const MEMBER_B: &str = "333333333333";
const MEMBER_C: &str = "444444444444";
const ORG_ID: &str = "o-abcdef1234";

fn org_seed() -> OrgSeed {
    OrgSeed {
        id: ORG_ID.to_string(),
        management_account: MGMT.to_string(),
        feature_set: "ALL".to_string(),
        accounts: vec![],
        ous: vec![
            OuSeed {
                id: "ou-ab12-11111111".to_string(),
                name: "Workloads".to_string(),
                accounts: vec![MEMBER_A.to_string(), MEMBER_B.to_string()],
            },
            OuSeed {
                id: "ou-ab12-22222222".to_string(),
                name: "Sandbox".to_string(),
                accounts: vec![MEMBER_C.to_string()],
            },
        ],
    }
}

/// An emulator with the seeded organization and `switches` applied.
async fn start(switches: Value) -> (EmulatorHandle, ControlClient) {
    let emu = emulator::start(EmulatorOptions {
        org: Some(org_seed()),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let control = emu.control();
    control.configure(switches).await.unwrap();
    (emu, control)
}

fn lm(emu: &EmulatorHandle, account: &str) -> Client {
    clients::license_manager(&emu.url(), account)
}

fn root(account: &str) -> String {
    format!("arn:aws:iam::{account}:root")
}

async fn seed_license(control: &ControlClient) -> String {
    let license = control
        .seed_license(&LicenseSeed::marketplace(MGMT, "SKU-1", "Product SKU-1"))
        .await
        .unwrap();
    license["LicenseArn"].as_str().unwrap().to_string()
}

async fn create_grant(client: &Client, license: &str, principal: &str, token: &str) -> String {
    client
        .create_grant()
        .client_token(token)
        .grant_name(format!("grant-{token}"))
        .license_arn(license)
        .principals(principal)
        .home_region("us-east-1")
        .allowed_operations(AllowedOperation::CheckoutLicense)
        .send()
        .await
        .unwrap()
        .grant_arn()
        .unwrap()
        .to_string()
}

async fn grant_of(client: &Client, arn: &str) -> aws_sdk_licensemanager::types::Grant {
    client
        .get_grant()
        .grant_arn(arn)
        .send()
        .await
        .unwrap()
        .grant
        .unwrap()
}

async fn link_accounts(client: &Client) {
    client
        .update_service_settings()
        .organization_configuration(
            OrganizationConfiguration::builder()
                .enable_integration(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// The License Manager events on `account`'s bus since the start.
async fn bus(control: &ControlClient, account: &str) -> Vec<Value> {
    control.events(0, Some(account)).await.unwrap().0
}

/// `(detail-type, grantArn, status, version)` of events under the `grantee` reading.
fn summary(events: &[Value]) -> Vec<(String, String, String, String)> {
    events
        .iter()
        .map(|e| {
            let field = |name: &str| e["detail"][name].as_str().unwrap_or_default().to_string();
            (
                e["detail-type"].as_str().unwrap().to_string(),
                field("grantArn"),
                field("status"),
                field("version"),
            )
        })
        .collect()
}

fn change(grant: &str, status: &str, version: &str) -> (String, String, String, String) {
    (
        GRANT_CHANGE.to_string(),
        grant.to_string(),
        status.to_string(),
        version.to_string(),
    )
}

fn license_change() -> (String, String, String, String) {
    (
        LICENSE_CHANGE.to_string(),
        String::new(),
        "AVAILABLE".to_string(),
        String::new(),
    )
}

/// The envelope fields every event has: EventBridge's shape, License Manager's source.
fn assert_envelope(event: &Value, account: &str) {
    assert_eq!(event["version"], "0", "{event}");
    assert_eq!(event["source"], EVENT_SOURCE, "{event}");
    assert_eq!(event["account"], account, "{event}");
    assert_eq!(event["region"], "us-east-1", "{event}");
    let time = event["time"].as_str().unwrap();
    // RFC 3339, UTC, whole seconds: 2026-01-01T00:00:00Z
    assert_eq!(time.len(), 20, "{time}");
    assert_eq!(
        (&time[4..5], &time[10..11], &time[19..]),
        ("-", "T", "Z"),
        "{time}"
    );
    assert!(!event["id"].as_str().unwrap().is_empty(), "{event}");
}

/// An event's `time` in seconds since the epoch.
fn epoch_seconds(event: &Value) -> i64 {
    let time = event["time"].as_str().unwrap();
    let num = |range: std::ops::Range<usize>| time[range].parse::<i64>().unwrap();
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + num(11..13) * 3_600 + num(14..16) * 60 + num(17..19)
}

#[tokio::test]
async fn grantee_detail_to_both_buses_shows_pending_workflow_then_pending_accept() {
    let (emu, control) = start(json!({
        "grantChangeDetail": "grantee",
        "changeEventsTo": "both",
        "pendingWorkflowMs": 60_000,
    }))
    .await;
    let license = seed_license(&control).await;
    let grantor = lm(&emu, MGMT);
    // Not linked: the member must accept.
    let grant = create_grant(&grantor, &license, &root(MEMBER_A), "a").await;
    control
        .advance_clock(Duration::from_secs(61))
        .await
        .unwrap();
    let shown = grant_of(&grantor, &grant).await;
    assert_eq!(shown.grant_status, GrantStatus::PendingAccept);

    let expected_grant_events = vec![
        change(&grant, "PENDING_WORKFLOW", "1"),
        change(&grant, "PENDING_ACCEPT", "1"),
    ];
    let management = bus(&control, MGMT).await;
    let mut expected = vec![license_change()];
    expected.extend(expected_grant_events.clone());
    assert_eq!(summary(&management), expected, "{management:#?}");
    let member = bus(&control, MEMBER_A).await;
    assert_eq!(summary(&member), expected_grant_events, "{member:#?}");
    for event in &management {
        assert_envelope(event, MGMT);
    }
    for event in &member {
        assert_envelope(event, MEMBER_A);
    }
    // Nobody else hears of it.
    assert!(bus(&control, MEMBER_B).await.is_empty());

    // The `grantee` detail: the grant, its grantee, status, version, license and parent.
    let settled = &member[1];
    assert_eq!(settled["resources"], json!([grant]));
    assert_eq!(
        settled["detail"],
        json!({
            "grantArn": grant,
            "granteePrincipal": root(MEMBER_A),
            "status": "PENDING_ACCEPT",
            "version": "1",
            "licenseArn": license,
            "parentArn": shown.parent_arn,
        })
    );
    // The License Change names the license under this reading.
    assert_eq!(management[0]["resources"], json!([license]));
    assert_eq!(
        management[0]["detail"],
        json!({ "licenseArn": license, "status": "AVAILABLE", "beneficiary": MGMT })
    );
    // One event per bus: every id is distinct.
    let ids: BTreeSet<&str> = management
        .iter()
        .chain(&member)
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5);
    // The workflow completed when it was due (60 s after creation), not when a request
    // noticed it (61 s).
    let took = epoch_seconds(&member[1]) - epoch_seconds(&member[0]);
    assert!((59..=61).contains(&took), "{took} s: {member:#?}");
    let stats = control.event_stats().await.unwrap();
    assert_eq!(stats["byDetailType"][GRANT_CHANGE], 4, "{stats}");
    assert_eq!(stats["grantStatuses"]["PENDING_ACCEPT"], 2, "{stats}");
}

#[tokio::test]
async fn every_grantee_side_change_is_an_event_in_order() {
    let (emu, control) = start(json!({
        "grantChangeDetail": "grantee",
        "changeEventsTo": "grantee",
    }))
    .await;
    let license = seed_license(&control).await;
    let grantor = lm(&emu, MGMT);
    let grantee = lm(&emu, MEMBER_A);
    let grant = create_grant(&grantor, &license, &root(MEMBER_A), "a").await;
    grantee
        .accept_grant()
        .grant_arn(&grant)
        .send()
        .await
        .unwrap();
    grantee
        .create_grant_version()
        .client_token("activate")
        .grant_arn(&grant)
        .status(GrantStatus::Active)
        .send()
        .await
        .unwrap();
    // A replayed request changes nothing: no event.
    grantee
        .create_grant_version()
        .client_token("activate")
        .grant_arn(&grant)
        .status(GrantStatus::Active)
        .send()
        .await
        .unwrap();
    let version = grant_of(&grantor, &grant).await.version;
    grantor
        .delete_grant()
        .grant_arn(&grant)
        .version(version)
        .send()
        .await
        .unwrap();

    assert_eq!(
        summary(&bus(&control, MEMBER_A).await),
        vec![
            change(&grant, "PENDING_WORKFLOW", "1"),
            change(&grant, "PENDING_ACCEPT", "1"),
            change(&grant, "DISABLED", "1"),
            // The activation request bumps the version; the activation then applies.
            change(&grant, "DISABLED", "2"),
            change(&grant, "ACTIVE", "2"),
            change(&grant, "DELETED", "3"),
        ]
    );
    // Under `grantee`, the grantor's bus holds only its license.
    assert_eq!(summary(&bus(&control, MGMT).await), vec![license_change()]);
}

#[tokio::test]
async fn defaults_name_nothing_and_keep_per_account_grants_off_the_management_bus() {
    let (emu, control) = start(json!({})).await;
    let switches = control.switches().await.unwrap();
    assert!(switches.change_events);
    assert_eq!(
        switches.grant_change_detail,
        emulator::GrantChangeDetail::None
    );
    assert_eq!(switches.change_events_to, emulator::ChangeEventsTo::Grantee);

    let license = seed_license(&control).await;
    let grantor = lm(&emu, MGMT);
    let grant = create_grant(&grantor, &license, &root(MEMBER_A), "a").await;
    assert_eq!(
        grant_of(&grantor, &grant).await.grant_status,
        GrantStatus::PendingAccept
    );

    let management = bus(&control, MGMT).await;
    assert_eq!(management.len(), 1, "{management:#?}");
    assert_eq!(management[0]["detail-type"], LICENSE_CHANGE);
    let member = bus(&control, MEMBER_A).await;
    assert_eq!(member.len(), 2, "{member:#?}");
    for event in &member {
        assert_envelope(event, MEMBER_A);
        assert_eq!(event["detail-type"], GRANT_CHANGE);
        // Nothing usable: no grant, no status.
        assert_eq!(event["resources"], json!([]));
        assert_eq!(event["detail"], json!({}));
    }
    assert_eq!(management[0]["resources"], json!([]));
    assert_eq!(management[0]["detail"], json!({}));
    // The statuses are still counted, for the stats.
    let stats = control.event_stats().await.unwrap();
    assert_eq!(
        stats["grantStatuses"],
        json!({ "PENDING_ACCEPT": 1, "PENDING_WORKFLOW": 1 })
    );
}

#[tokio::test]
async fn the_grant_reading_names_only_the_grant_and_grantor_routing_skips_the_grantee() {
    let (emu, control) = start(json!({
        "grantChangeDetail": "grant",
        "changeEventsTo": "grantor",
    }))
    .await;
    let license = seed_license(&control).await;
    let grant = create_grant(&lm(&emu, MGMT), &license, &root(MEMBER_A), "a").await;
    let management = bus(&control, MGMT).await;
    assert_eq!(management.len(), 3, "{management:#?}");
    assert_eq!(
        management[0]["detail"],
        json!({ "licenseArn": license }),
        "{management:#?}"
    );
    for event in &management[1..] {
        assert_envelope(event, MGMT);
        assert_eq!(event["detail-type"], GRANT_CHANGE);
        assert_eq!(event["resources"], json!([grant]));
        assert_eq!(event["detail"], json!({ "grantArn": grant }));
    }
    assert!(bus(&control, MEMBER_A).await.is_empty());
}

#[tokio::test]
async fn organization_grant_events_go_to_the_grantor_and_childrens_to_their_members() {
    let (emu, control) = start(json!({ "grantChangeDetail": "grantee" })).await;
    let license = seed_license(&control).await;
    let grantor = lm(&emu, MGMT);
    link_accounts(&grantor).await;
    let org_arn = format!("arn:aws:organizations::{MGMT}:organization/{ORG_ID}");
    let parent = create_grant(&grantor, &license, &org_arn, "org").await;
    assert_eq!(
        grant_of(&grantor, &parent).await.grant_status,
        GrantStatus::WorkflowCompleted
    );
    // Bulk activation (activationMs 0: at once).
    grantor
        .create_grant_version()
        .client_token("bulk")
        .grant_arn(&parent)
        .status(GrantStatus::Active)
        .send()
        .await
        .unwrap();

    // The organization grant has no grantee account: its events go to the grantor.
    assert_eq!(
        summary(&bus(&control, MGMT).await),
        vec![
            license_change(),
            change(&parent, "PENDING_WORKFLOW", "1"),
            change(&parent, "WORKFLOW_COMPLETED", "1"),
            change(&parent, "WORKFLOW_COMPLETED", "2"),
        ]
    );
    // Each member's bus: its child handed out, then changed by the bulk activation.
    for member in [MEMBER_A, MEMBER_B, MEMBER_C] {
        let events = bus(&control, member).await;
        let child = events[0]["detail"]["grantArn"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(child, parent);
        assert_eq!(
            summary(&events),
            vec![
                change(&child, "DISABLED", "1"),
                change(&child, "DISABLED", "2"),
                change(&child, "ACTIVE", "2"),
            ],
            "{member}"
        );
        assert_eq!(events[0]["detail"]["granteePrincipal"], root(member));
        // `childParentArn` defaults to the license's ARN.
        assert_eq!(events[0]["detail"]["parentArn"], license.as_str());
    }

    // Bulk deactivation: the parent's version, and every child back to DISABLED.
    grantor
        .create_grant_version()
        .client_token("bulk-off")
        .grant_arn(&parent)
        .status(GrantStatus::Disabled)
        .send()
        .await
        .unwrap();
    let (after_off, _) = control.events(0, Some(MEMBER_B)).await.unwrap();
    assert_eq!(
        summary(&after_off)
            .last()
            .map(|(_, _, s, v)| (s.clone(), v.clone())),
        Some(("DISABLED".to_string(), "3".to_string()))
    );
}

#[tokio::test]
async fn change_events_off_records_nothing() {
    let (emu, control) = start(json!({
        "changeEvents": false,
        "changeEventsTo": "both",
        "grantChangeDetail": "grantee",
    }))
    .await;
    let license = seed_license(&control).await;
    let grantor = lm(&emu, MGMT);
    let grant = create_grant(&grantor, &license, &root(MEMBER_A), "a").await;
    assert_eq!(
        grant_of(&grantor, &grant).await.grant_status,
        GrantStatus::PendingAccept
    );
    let (events, next) = control.events(0, None).await.unwrap();
    assert!(events.is_empty(), "{events:#?}");
    assert_eq!(next, 0);
    assert_eq!(control.event_stats().await.unwrap()["total"], 0);

    // Switched back on, the next change is recorded (and only it).
    control
        .configure(json!({ "changeEvents": true }))
        .await
        .unwrap();
    lm(&emu, MEMBER_A)
        .accept_grant()
        .grant_arn(&grant)
        .send()
        .await
        .unwrap();
    let (events, next) = control.events(0, None).await.unwrap();
    assert_eq!(
        summary(&events),
        vec![
            change(&grant, "DISABLED", "1"),
            change(&grant, "DISABLED", "1")
        ]
    );
    assert_eq!(next, 2);
}

#[tokio::test]
async fn get_events_alone_moves_a_due_workflow_and_activation_along() {
    let (emu, control) = start(json!({
        "grantChangeDetail": "grantee",
        "pendingWorkflowMs": 1_000,
        "activationMs": 60_000,
    }))
    .await;
    let license = seed_license(&control).await;
    let grant = create_grant(&lm(&emu, MGMT), &license, &root(MEMBER_A), "a").await;
    let (events, after) = control.events(0, Some(MEMBER_A)).await.unwrap();
    assert_eq!(
        summary(&events),
        vec![change(&grant, "PENDING_WORKFLOW", "1")]
    );

    // No API request in between: only the wait and `GET events`.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let calls = control.calls().await.unwrap().len();
    let (events, after) = control.events(after, Some(MEMBER_A)).await.unwrap();
    assert_eq!(
        summary(&events),
        vec![change(&grant, "PENDING_ACCEPT", "1")]
    );
    assert_eq!(control.calls().await.unwrap().len(), calls);

    // The same for an activation that applies while nobody asks.
    let grantee = lm(&emu, MEMBER_A);
    grantee
        .accept_grant()
        .grant_arn(&grant)
        .send()
        .await
        .unwrap();
    grantee
        .create_grant_version()
        .client_token("activate")
        .grant_arn(&grant)
        .status(GrantStatus::Active)
        .send()
        .await
        .unwrap();
    let (events, after) = control.events(after, Some(MEMBER_A)).await.unwrap();
    assert_eq!(
        summary(&events),
        vec![
            change(&grant, "DISABLED", "1"),
            change(&grant, "DISABLED", "2")
        ]
    );
    control
        .advance_clock(Duration::from_secs(61))
        .await
        .unwrap();
    let (events, _) = control.events(after, Some(MEMBER_A)).await.unwrap();
    assert_eq!(summary(&events), vec![change(&grant, "ACTIVE", "2")]);
}

#[tokio::test]
async fn after_pages_through_the_log_and_reset_clears_it() {
    let (emu, control) = start(json!({ "changeEventsTo": "both" })).await;
    let license = seed_license(&control).await;
    let grantor = lm(&emu, MGMT);
    create_grant(&grantor, &license, &root(MEMBER_A), "a").await;
    // Settles the grant: License Change, then two Grant Changes on each of two buses.
    grantor.list_distributed_grants().send().await.unwrap();

    let (all, next) = control.events(0, None).await.unwrap();
    assert_eq!(all.len(), 5, "{all:#?}");
    assert_eq!(next, 5);
    let buses: Vec<&str> = all.iter().map(|e| e["account"].as_str().unwrap()).collect();
    assert_eq!(buses, [MGMT, MGMT, MEMBER_A, MGMT, MEMBER_A]);

    // Nothing new after `next`; `next` stays.
    assert_eq!(control.events(next, None).await.unwrap(), (vec![], 5));
    // A page from the middle: exactly the events after it.
    let (tail, _) = control.events(3, None).await.unwrap();
    assert_eq!(tail, all[3..].to_vec());
    // Filtered to a bus, `next` is still the log's end.
    let (member, member_next) = control.events(0, Some(MEMBER_A)).await.unwrap();
    assert_eq!(member, vec![all[2].clone(), all[4].clone()]);
    assert_eq!(member_next, 5);
    let (none, none_next) = control.events(4, Some(MGMT)).await.unwrap();
    assert!(none.is_empty(), "{none:#?}");
    assert_eq!(none_next, 5);

    // More changes: only they come after `next` (the new grant's workflow, due at once,
    // completes as `GET events` asks).
    create_grant(&grantor, &license, &root(MEMBER_B), "b").await;
    let (new, next) = control.events(next, None).await.unwrap();
    let buses: Vec<&str> = new.iter().map(|e| e["account"].as_str().unwrap()).collect();
    assert_eq!(buses, [MGMT, MEMBER_B, MGMT, MEMBER_B], "{new:#?}");
    assert_eq!(next, 9);
    // Bad queries are refused.
    assert!(control.events(0, Some("not-an-account")).await.is_err());

    control.reset().await.unwrap();
    assert_eq!(control.events(0, None).await.unwrap(), (vec![], 0));
}
