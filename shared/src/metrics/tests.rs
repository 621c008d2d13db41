//! The template's operations pieces read what the functions write (issue 12): the dashboard body
//! is valid JSON once CloudFormation substitutes it, and every `ct-entitlements` metric and
//! report field the dashboard, the alarm and the saved queries use is one the report line
//! carries.
#![allow(clippy::unwrap_used)]

use crate::report::{AccountReport, Outcome};
use serde_json::Value as Json;
use serde_yaml::Value;
use std::path::Path;

fn template() -> Value {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"));
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The metric names and top-level fields an account report line can carry, from a real line.
fn emitted() -> (Vec<String>, Json) {
    let mut report = AccountReport::empty(Some("210987654321".into()), "test".into(), false);
    report.outcome = Outcome::Pending;
    let line: Json =
        serde_json::from_str(&crate::report::account_report_line(&report, 1_800_000_000)).unwrap();
    let names = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap().to_string())
        .chain(["TimeToActiveSeconds".to_string()])
        .collect();
    (names, line)
}

#[test]
fn dashboard_alarm_and_queries_use_what_the_report_lines_carry() {
    let t = template();
    let r = &t["Resources"];
    let (metrics, line) = emitted();

    // The dashboard: `!Sub [body, vars]`; substitute every ${...} as CloudFormation would.
    let sub = &r["OperationsDashboard"]["Properties"]["DashboardBody"];
    let body = match sub {
        Value::Tagged(t) => t.value[0].as_str().unwrap().to_string(),
        other => panic!("DashboardBody is not a !Sub: {other:?}"),
    };
    let mut text = String::new();
    let mut rest = body.as_str();
    while let Some(i) = rest.find("${") {
        text.push_str(&rest[..i]);
        let end = rest[i..].find('}').unwrap() + i;
        let name = &rest[i + 2..end];
        text.push_str(if name == "PendingAlarmSeconds" {
            "21600"
        } else {
            "name"
        });
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    let dashboard: Json = serde_json::from_str(&text).expect("the dashboard body is JSON");
    let widgets = dashboard["widgets"].as_array().unwrap();
    assert!(widgets.len() >= 6, "{} widgets", widgets.len());
    let mut used = Vec::new();
    for w in widgets {
        // A row's "." repeats the previous row's namespace; "..." its whole metric.
        let mut namespace = String::new();
        for m in w["properties"]["metrics"].as_array().into_iter().flatten() {
            match m[0].as_str().unwrap() {
                "..." => continue,
                "." => {}
                ns => namespace = ns.to_string(),
            }
            if namespace == crate::metrics::NAMESPACE {
                used.push(m[1].as_str().unwrap().to_string());
            }
        }
    }
    assert!(used.len() >= 6, "{used:?}");
    for name in &used {
        assert!(
            metrics.contains(name),
            "the dashboard plots {name}, which no report carries"
        );
    }

    // The alarm.
    let alarm = &r["PendingAccountsAlarm"]["Properties"];
    assert_eq!(alarm["Namespace"].as_str(), Some(crate::metrics::NAMESPACE));
    assert!(metrics.contains(&alarm["MetricName"].as_str().unwrap().to_string()));

    // The saved queries filter on fields the line has.
    for q in [
        "WhyDidAnAccountFailQuery",
        "PendingOverADayQuery",
        "GrantsCreatedQuery",
    ] {
        let query = r[q]["Properties"]["QueryString"].as_str().unwrap();
        assert!(query.contains("type = \"accountReport\""), "{q}");
        for field in ["Outcome", "PendingSeconds", "GrantsCreated"] {
            if query.contains(field) {
                assert!(
                    !line[field].is_null() || field == "GrantsCreated",
                    "{q}: {field}"
                );
            }
        }
    }
    assert_eq!(line["type"], "accountReport");
}
