//! The template's event rules, delivered (issue 12 §1): each rule's pattern, read from
//! template.yaml, is created in moto's EventBridge with an SQS target; events are put on the bus
//! (the ones the rule must take and ones it must not); what arrives is handed to the function
//! the rule targets, and the account's state changes accordingly.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/rules.rs"]
mod rules;

use common::setup;
use local_world::seed::demo_spec;
use rules::{events, template, to_json};
use serde_json::{json, Value};
use shared::reconcile::ReconcileConfig;

#[tokio::test]
async fn each_rule_delivers_what_it_must_and_the_function_acts_on_it() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let moto = s.world.moto_url().to_string();
    let t = template();
    let reconciler_events = &t["Resources"]["ReconcilerFunction"]["Properties"]["Events"];
    // The `account` condition (an !If: the management account's) is set to `account`.
    let with_account = |pattern: &serde_yaml::Value, account: &str| {
        let mut pattern = pattern.as_mapping().unwrap().clone();
        assert!(
            pattern.remove("account").is_some(),
            "the pattern names the management account"
        );
        let mut json = to_json(&serde_yaml::Value::Mapping(pattern));
        json["account"] = json!([account]);
        json
    };
    // moto's caller is the management account here.
    let management = "123456789012";
    let organizations = &reconciler_events["OrganizationsChanges"]["Properties"]["Pattern"];
    let rules = [
        (
            "lifecycle",
            with_account(
                &t["Resources"]["LifecycleEventRule"]["Properties"]["EventPattern"],
                management,
            ),
        ),
        ("organizations", with_account(organizations, management)),
        (
            "license-manager",
            to_json(&t["Resources"]["LicenseManagerChangesRule"]["Properties"]["EventPattern"]),
        ),
        // The same rule in a stack whose management account is another one: events of this
        // account (moto's caller) must not reach it.
        (
            "organizations-other-management-account",
            with_account(organizations, "210987654321"),
        ),
    ];
    let sqs = s.world.sqs();
    let mut queues = Vec::new();
    for (name, pattern) in &rules {
        let (url, arn) = common::new_queue(&s.world, &format!("rule-{name}")).await;
        events(
            &moto,
            "PutRule",
            json!({"Name": name, "EventPattern": pattern.to_string()}),
        )
        .await;
        events(
            &moto,
            "PutTargets",
            json!({"Rule": name, "Targets": [{"Id": "1", "Arn": arn}]}),
        )
        .await;
        queues.push((name.to_string(), url, arn));
    }

    let sandbox_ou = s.org.ou("Sandbox").unwrap().id.clone();
    let workloads_ou = s.org.ou("Workloads").unwrap().id.clone();
    let sandbox = s.org.account("sandbox-1").unwrap().id.clone();
    let prod = s.org.account("workload-prod").unwrap().id.clone();
    let entry = |source: &str, detail_type: &str, detail: Value| json!({"Source": source, "DetailType": detail_type, "Detail": detail.to_string()});
    let cloudtrail = |name: &str, params: Value| {
        entry(
            "aws.organizations",
            "AWS API Call via CloudTrail",
            json!({"eventSource": "organizations.amazonaws.com", "eventName": name, "requestParameters": params}),
        )
    };
    let put = events(
        &moto,
        "PutEvents",
        json!({"Entries": [
            // Taken: a Control Tower account creation, a move, a grant change.
            entry("aws.controltower", "AWS Service Event via CloudTrail", json!({
                "eventName": "CreateManagedAccount",
                "serviceEventDetails": {"createManagedAccountStatus": {
                    "organizationalUnit": {"organizationalUnitName": "Workloads", "organizationalUnitId": workloads_ou},
                    "account": {"accountName": "workload-prod", "accountId": prod},
                    "state": "SUCCEEDED", "message": "ok",
                    "requestedTimestamp": "2026-11-30T00:00:00+0000", "completedTimestamp": "2026-11-30T00:10:00+0000"}}})),
            cloudtrail("MoveAccount", json!({"accountId": sandbox, "sourceParentId": sandbox_ou, "destinationParentId": workloads_ou})),
            entry("aws.license-manager", "Grant Change", json!({"granteePrincipal": format!("arn:aws:iam::{prod}:root")})),
            // Not taken: other Organizations calls, other Control Tower events, and a denied
            // call (CloudTrail records those too, with errorCode).
            cloudtrail("CreateOrganizationalUnit", json!({"name": "x"})),
            entry(
                "aws.organizations",
                "AWS API Call via CloudTrail",
                json!({"eventSource": "organizations.amazonaws.com", "eventName": "MoveAccount",
                       "errorCode": "AccessDenied", "errorMessage": "not authorized",
                       "requestParameters": {"accountId": prod, "sourceParentId": workloads_ou, "destinationParentId": sandbox_ou}}),
            ),
            entry("aws.controltower", "AWS Service Event via CloudTrail", json!({"eventName": "SetupLandingZone"})),
        ]}),
    )
    .await;
    assert_eq!(put["FailedEntryCount"], 0, "{put}");

    let mut delivered = std::collections::HashMap::new();
    for (name, url, _) in &queues {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let bodies: Vec<Value> = got
            .messages()
            .iter()
            .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
            .collect();
        delivered.insert(name.clone(), bodies);
    }
    assert_eq!(
        delivered["lifecycle"].len(),
        1,
        "{:?}",
        delivered["lifecycle"]
    );
    assert_eq!(
        delivered["organizations"].len(),
        1,
        "{:?}",
        delivered["organizations"]
    );
    assert_eq!(delivered["license-manager"].len(), 1);
    assert_eq!(
        delivered["organizations"][0]["detail"]["eventName"], "MoveAccount",
        "the succeeded move, not the denied one"
    );
    assert!(delivered["organizations"][0]["detail"]["errorCode"].is_null());
    assert!(
        delivered["organizations-other-management-account"].is_empty(),
        "another account's Organizations events: {:?}",
        delivered["organizations-other-management-account"]
    );

    // What arrived, to the functions the rules target: the account is entitled; the moved
    // account is queued for its new licenses (its OU rule differs); the grant change is read.
    let rules_env = format!(r#"{{"{sandbox_ou}": ["{}"]}}"#, s.org.licenses[0].arn);
    let engine = s.engine(&[("OU_LICENSE_RULES", &rules_env)]);
    let report = common::handle(&engine, delivered["lifecycle"][0].clone()).await;
    assert_eq!(report["outcome"], "entitled", "{report:#}");
    assert_eq!(report["accountId"], json!(prod));

    let (_, change_queue, change_queue_arn) = queues
        .iter()
        .find(|(name, _, _)| name == "license-manager")
        .unwrap()
        .clone();
    let config = ReconcileConfig::from_lookup(|k| match k {
        "ONBOARDING_QUEUE_URL" => Some(s.queue_url.clone()),
        "CHANGE_EVENT_QUEUE_URL" => Some(change_queue.clone()),
        _ => None,
    })
    .unwrap();
    let moved = reconciler::handle(&engine, &config, &delivered["organizations"][0])
        .await
        .unwrap();
    assert_eq!(moved["onboard"], json!([sandbox]), "{moved:#}");
    // The grant change names prod, entitled a moment ago: it needs nothing, so no run. It
    // arrives as the rule's queue delivers it (an SQS batch of one).
    let batch = json!({"Records": [{"messageId": "m1", "eventSource": "aws:sqs",
        "eventSourceARN": change_queue_arn, "body": delivered["license-manager"][0].to_string()}]});
    let answer = reconciler::handle(&engine, &config, &batch).await.unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let parsed = shared::changes::parse_batch(&batch, &config)
        .unwrap()
        .unwrap();
    let (_, changed) = reconciler::change_batch(&engine, &config, &parsed).await;
    assert_eq!(changed.onboard, Vec::<String>::new(), "{changed:#?}");
    assert!(changed.skipped.contains_key(&prod), "{changed:#?}");
    assert_eq!(s.drain_queue(&engine).await, (1, 0));
    assert_eq!(
        s.grants_in(&sandbox).await.len(),
        1,
        "Sandbox's rule: one license"
    );
    let prod_grants = s.grants_in(&prod).await;
    assert_eq!(prod_grants.len(), 3);
    assert!(
        prod_grants.iter().all(|(_, st)| st == "ACTIVE"),
        "{prod_grants:?}"
    );
}
