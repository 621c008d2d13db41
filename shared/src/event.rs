//! What arrives at account-lifecycle: Control Tower lifecycle events (directly from EventBridge
//! or as SQS bodies) and "onboard account X" requests (re-checks, backfills). Parsing is pure:
//! bad input becomes `Error::InvalidInput` before any AWS call.

use crate::error::Error;
use crate::ids::AccountId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why an account is being worked on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    CreateManagedAccount,
    UpdateManagedAccount,
    /// An onboard request; the string says who asked (recheck, reconcile, backfill, …).
    Onboard(String),
}

/// One account to bring to the entitled state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Work {
    pub account_id: AccountId,
    pub trigger: Trigger,
    /// From the Control Tower event, when it said so (Organizations stays the source of truth).
    pub account_name: Option<String>,
    pub ou_id: Option<String>,
    pub ou_name: Option<String>,
    /// How many delayed re-checks came before this one.
    pub attempt: u32,
    /// Unix seconds when this account's work first started (for the workflow deadline).
    pub first_seen: Option<u64>,
    /// Set by callers that name the licenses themselves (a product launch): these licenses
    /// only, no scope filters, and their own override behavior and re-check policy.
    pub explicit: Option<Explicit>,
}

/// A request that names its licenses instead of using the configured selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explicit {
    pub licenses: Vec<crate::config::LicenseRef>,
    pub override_behavior: Option<crate::config::OverrideBehavior>,
    /// Queue a delayed re-check when a grant is still in workflow (false: report it pending).
    pub queue_recheck: bool,
}

/// What a message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Work(Work),
    /// A valid event that needs no work (for example a FAILED account creation).
    Skip {
        account_id: Option<String>,
        reason: String,
    },
}

/// The body of an "onboard account" message on the onboarding queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnboardRequest {
    pub account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<u64>,
}

const SOURCE: &str = "aws.controltower";

/// Parses one payload: a lifecycle event or an onboard request.
pub fn parse_request(payload: &Value) -> Result<Request, Error> {
    let Some(obj) = payload.as_object() else {
        return Err(invalid("expected a JSON object"));
    };
    if obj.contains_key("source") || obj.contains_key("detail") {
        return parse_lifecycle(payload);
    }
    if obj.contains_key("accountId") {
        let req: OnboardRequest = serde_json::from_value(payload.clone())
            .map_err(|e| invalid(&format!("onboard request: {e}")))?;
        let account_id = AccountId::parse(req.account_id.trim())?;
        return Ok(Request::Work(Work {
            account_id,
            trigger: Trigger::Onboard(req.reason.unwrap_or_else(|| "onboard".to_string())),
            account_name: None,
            ou_id: None,
            ou_name: None,
            attempt: req.attempt,
            first_seen: req.first_seen,
            explicit: None,
        }));
    }
    Err(invalid(
        "neither a Control Tower lifecycle event (source, detail) nor an onboard request (accountId)",
    ))
}

/// Parses a JSON text (an SQS body).
pub fn parse_body(body: &str) -> Result<Request, Error> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| invalid(&format!("body is not JSON: {e}")))?;
    parse_request(&value)
}

fn parse_lifecycle(event: &Value) -> Result<Request, Error> {
    let source = event.get("source").and_then(Value::as_str).unwrap_or("");
    if source != SOURCE {
        return Err(invalid(&format!(
            "source must be {SOURCE:?}, got {source:?}"
        )));
    }
    let detail = event
        .get("detail")
        .ok_or_else(|| invalid("missing detail"))?;
    let name = detail
        .get("eventName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let (trigger, key) = match name {
        "CreateManagedAccount" => (Trigger::CreateManagedAccount, "createManagedAccountStatus"),
        "UpdateManagedAccount" => (Trigger::UpdateManagedAccount, "updateManagedAccountStatus"),
        other => {
            return Err(invalid(&format!(
            "detail.eventName must be CreateManagedAccount or UpdateManagedAccount, got {other:?}"
        )))
        }
    };
    let status = detail
        .get("serviceEventDetails")
        .and_then(|d| d.get(key))
        .ok_or_else(|| {
            invalid(&format!(
                "{name} event has no detail.serviceEventDetails.{key}"
            ))
        })?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let account = status.get("account");
    let raw_id = text(account.and_then(|a| a.get("accountId")));
    let state = status.get("state").and_then(Value::as_str).unwrap_or("");
    match state {
        "SUCCEEDED" => {}
        "FAILED" => {
            let message = text(status.get("message")).unwrap_or_default();
            return Ok(Request::Skip {
                account_id: raw_id,
                reason: format!("Control Tower reported {name} FAILED: {message}"),
            });
        }
        other => {
            return Err(invalid(&format!(
                "{key}.state must be SUCCEEDED or FAILED, got {other:?}"
            )))
        }
    }
    let raw_id = raw_id.ok_or_else(|| invalid(&format!("{key}.account.accountId is missing")))?;
    let account_id = AccountId::parse(&raw_id)?;
    let ou = status.get("organizationalUnit");
    Ok(Request::Work(Work {
        account_id,
        trigger,
        account_name: text(account.and_then(|a| a.get("accountName"))),
        ou_id: text(ou.and_then(|o| o.get("organizationalUnitId"))),
        ou_name: text(ou.and_then(|o| o.get("organizationalUnitName"))),
        attempt: 0,
        first_seen: None,
        explicit: None,
    }))
}

fn invalid(msg: &str) -> Error {
    Error::InvalidInput(msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(name: &str, key: &str, state: &str, id: &str) -> Value {
        json!({
            "source": "aws.controltower",
            "detail-type": "AWS Service Event via CloudTrail",
            "detail": {
                "eventName": name,
                "serviceEventDetails": { key: {
                    "organizationalUnit": {"organizationalUnitName": "Custom", "organizationalUnitId": "ou-ab12-cdef3456"},
                    "account": {"accountName": "A", "accountId": id},
                    "state": state, "message": "m",
                    "requestedTimestamp": "2019-11-15T11:45:18+0000", "completedTimestamp": "2019-11-16T12:09:32+0000"
                }}
            }
        })
    }

    fn kind(payload: &Value) -> String {
        match parse_request(payload) {
            Err(e) => e.kind().to_string(),
            Ok(Request::Work(_)) => "work".into(),
            Ok(Request::Skip { .. }) => "skip".into(),
        }
    }

    #[test]
    fn create_and_update() {
        let Ok(Request::Work(w)) = parse_request(&event(
            "CreateManagedAccount",
            "createManagedAccountStatus",
            "SUCCEEDED",
            "210987654321",
        )) else {
            panic!("expected work")
        };
        assert_eq!(w.account_id.as_str(), "210987654321");
        assert_eq!(w.trigger, Trigger::CreateManagedAccount);
        assert_eq!(w.ou_id.as_deref(), Some("ou-ab12-cdef3456"));
        assert_eq!(
            kind(&event(
                "UpdateManagedAccount",
                "updateManagedAccountStatus",
                "SUCCEEDED",
                "210987654321"
            )),
            "work"
        );
    }

    #[test]
    fn status_key_must_match_event_name() {
        assert_eq!(
            kind(&event(
                "UpdateManagedAccount",
                "createManagedAccountStatus",
                "SUCCEEDED",
                "210987654321"
            )),
            "InvalidInput"
        );
        assert_eq!(
            kind(&event(
                "CreateManagedAccount",
                "updateManagedAccountStatus",
                "SUCCEEDED",
                "210987654321"
            )),
            "InvalidInput"
        );
    }

    #[test]
    fn failed_is_skipped_even_without_account_id() {
        let Ok(Request::Skip { account_id, reason }) = parse_request(&event(
            "CreateManagedAccount",
            "createManagedAccountStatus",
            "FAILED",
            "Not Available",
        )) else {
            panic!("expected skip")
        };
        assert_eq!(account_id.as_deref(), Some("Not Available"));
        assert!(reason.contains("FAILED"));
    }

    #[test]
    fn rejects_bad_input() {
        let mut wrong_source = event(
            "CreateManagedAccount",
            "createManagedAccountStatus",
            "SUCCEEDED",
            "210987654321",
        );
        wrong_source["source"] = json!("aws.s3");
        for bad in [
            json!([]),
            json!("text"),
            json!({}),
            wrong_source,
            event(
                "DeleteManagedAccount",
                "createManagedAccountStatus",
                "SUCCEEDED",
                "210987654321",
            ),
            event(
                "CreateManagedAccount",
                "createManagedAccountStatus",
                "IN_PROGRESS",
                "210987654321",
            ),
            event(
                "CreateManagedAccount",
                "createManagedAccountStatus",
                "SUCCEEDED",
                "21098765432",
            ),
            event(
                "CreateManagedAccount",
                "createManagedAccountStatus",
                "SUCCEEDED",
                "Not Available",
            ),
            json!({"accountId": "12"}),
            json!({"accountId": "210987654321", "unexpected": 1}),
        ] {
            assert_eq!(kind(&bad), "InvalidInput", "{bad}");
        }
        assert_eq!(
            parse_body("not json").map_err(|e| e.kind()).err(),
            Some("InvalidInput")
        );
    }

    #[test]
    fn onboard_request_round_trip() {
        let req = OnboardRequest {
            account_id: "210987654321".into(),
            reason: Some("recheck".into()),
            attempt: 2,
            first_seen: Some(1_700_000_000),
        };
        let body = serde_json::to_string(&req).expect("serializes");
        let Ok(Request::Work(w)) = parse_body(&body) else {
            panic!("expected work")
        };
        assert_eq!(w.attempt, 2);
        assert_eq!(w.first_seen, Some(1_700_000_000));
        assert_eq!(w.trigger, Trigger::Onboard("recheck".into()));
    }
}
