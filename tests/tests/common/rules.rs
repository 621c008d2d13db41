//! moto's EventBridge and the template's event rules, for the tests that deliver events through
//! them (kept apart from `common`, which the CLI's tests include too).
#![allow(clippy::unwrap_used, dead_code)]

use serde_json::Value;

/// One EventBridge call (AWS JSON 1.1) to moto.
pub async fn events(moto: &str, action: &str, body: Value) -> Value {
    let target = format!("AWSEvents.{action}");
    let auth = local_world::http::fake_sigv4("AKIAEXAMPLE", "events");
    let response = local_world::http::send(
        hyper::Method::POST,
        &format!("{moto}/"),
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
            ("authorization", auth.as_str()),
        ],
        body.to_string(),
    )
    .await
    .unwrap();
    assert!(response.is_success(), "{action}: {}", response.text());
    serde_json::from_str(&response.text()).unwrap_or(Value::Null)
}

/// A template YAML value as JSON (the patterns hold no intrinsic functions but `account`).
/// moto matches `{"exists": false}` (its `_does_item_match_named_filter`), so the template's
/// `errorCode` condition is tested as written.
pub fn to_json(v: &serde_yaml::Value) -> Value {
    serde_json::to_value(v).unwrap()
}

pub fn template() -> serde_yaml::Value {
    serde_yaml::from_str(
        &std::fs::read_to_string(local_world::lambda::workspace_root().join("template.yaml"))
            .unwrap(),
    )
    .unwrap()
}
