//! What arrives at account-lifecycle: Control Tower lifecycle events (directly from EventBridge
//! or as SQS bodies) and "onboard account X" requests (re-checks, backfills). Parsing is pure:
//! bad input becomes `Error::InvalidInput` before any AWS call.

use crate::error::{describe, got, truncate, Error, ECHO_MAX_CHARS};
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

/// The `reason` of an onboard request queued for a License Manager `Grant Change` event. Such a
/// run does what can be done now and starts no re-check chain of its own: a chain already
/// waiting for that grant keeps its start time and its lane, and an account nobody waits on is
/// the reconciler's (at most one live chain per account, whatever the events).
pub(crate) const GRANT_CHANGE_REASON: &str = "grant-change";

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
    /// Queued by a backfill (the reconciler): its re-checks go back to the backfill queue.
    pub backfill: bool,
    /// Unix seconds when this account's work first started (for the workflow deadline).
    pub first_seen: Option<u64>,
    /// Set by callers that name the licenses themselves (a product launch): these licenses
    /// only, no scope filters, and their own override behavior and re-check policy.
    pub explicit: Option<Explicit>,
    /// Activations earlier runs requested (carried by re-check messages): a grant still
    /// `DISABLED` at the version its activation produced is being activated, not to be
    /// activated again.
    pub activations: Vec<ActivationMark>,
}

/// "We asked License Manager to activate this grant, and that made this version."
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActivationMark {
    pub grant_arn: String,
    /// The grant's version after the activation request (empty when the answer had none).
    #[serde(default)]
    pub version: String,
    /// Set when the activation was a bulk activation of the organization/OU grant above this
    /// grant, not ours: waited for once, then the grant is activated individually.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bulk: bool,
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

impl Request {
    /// True for a run a License Manager `Grant Change` event asked for (it asks for nothing
    /// else than a fresh look at the account).
    pub fn is_grant_change(&self) -> bool {
        matches!(self, Request::Work(w) if matches!(&w.trigger,
            Trigger::Onboard(reason) if reason == GRANT_CHANGE_REASON))
    }
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
    /// Activations already requested for this account's grants (see `Work::activations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activations: Vec<ActivationMark>,
    /// The account's OU as the sender just read it (the reconciler's listing, an earlier run):
    /// account-lifecycle then does not ask Organizations again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ou_id: Option<String>,
    /// Set by the reconciler's backfill; carried by re-checks (see `Work::backfill`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backfill: bool,
}

const SOURCE: &str = "aws.controltower";
/// The `detail-type` of every Control Tower lifecycle event.
const DETAIL_TYPE: &str = "AWS Service Event via CloudTrail";

/// Parses one payload: a lifecycle event or an onboard request.
pub fn parse_request(payload: &Value) -> Result<Request, Error> {
    let Some(obj) = payload.as_object() else {
        return Err(invalid("expected a JSON object"));
    };
    if obj.contains_key("source") || obj.contains_key("detail-type") || obj.contains_key("detail") {
        return parse_lifecycle(payload);
    }
    if obj.contains_key("accountId") {
        return parse_onboard(payload);
    }
    Err(invalid(
        "neither a Control Tower lifecycle event (source, detail-type, detail) nor an onboard request (accountId)",
    ))
}

/// Parses a JSON text (an SQS body).
pub fn parse_body(body: &str) -> Result<Request, Error> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| invalid(&format!("body is not JSON: {e}")))?;
    parse_request(&value)
}

/// Longest `reason` an onboard request may carry (it ends up in every report line).
const MAX_REASON_CHARS: usize = 128;

/// An onboard request: field types checked one by one so errors name the field and say what
/// was there, then deserialized (unknown fields rejected) for the rest.
fn parse_onboard(payload: &Value) -> Result<Request, Error> {
    let account_id =
        AccountId::parse_field(payload.get("accountId"), "onboard request: accountId")?;
    check_onboard_fields(payload)?;
    check_onboard_activations(payload.get("activations"))?;
    // Unknown fields and the activation marks' own shape: serde's message, bounded (it can
    // quote a field name the sender chose).
    let req: OnboardRequest = serde_json::from_value(payload.clone()).map_err(|e| {
        invalid(&format!(
            "onboard request: {}",
            truncate(&e.to_string(), 4 * ECHO_MAX_CHARS)
        ))
    })?;
    Ok(Request::Work(req.into_work(account_id)))
}

/// The onboard request's optional scalar fields, in this order (the first bad one is
/// reported): each may be absent, and must otherwise be what its check says.
fn check_onboard_fields(payload: &Value) -> Result<(), Error> {
    let check = |name: &str, accepts: fn(&Value) -> bool, must: &str| match payload.get(name) {
        Some(bad) if !accepts(bad) => Err(onboard_field_error(name, must, bad)),
        _ => Ok(()),
    };
    check(
        "reason",
        |v| match v {
            Value::Null => true,
            Value::String(r) => {
                r.chars().count() <= MAX_REASON_CHARS && !r.chars().any(char::is_control)
            }
            _ => false,
        },
        &format!("a string of at most {MAX_REASON_CHARS} characters without control characters"),
    )?;
    check(
        "attempt",
        |v| v.as_u64().is_some_and(|a| u32::try_from(a).is_ok()),
        &format!("a whole number from 0 to {}", u32::MAX),
    )?;
    check(
        "firstSeen",
        |v| v.is_null() || v.as_u64().is_some(),
        "a whole number of Unix seconds",
    )?;
    check(
        "backfill",
        |v| v.is_null() || v.is_boolean(),
        "true or false",
    )?;
    check(
        "ouId",
        |v| v.is_null() || v.as_str().is_some_and(crate::ids::is_ou_id),
        "an OU id (ou-xxxx-yyyyyyyy)",
    )
}

/// `activations`, when present: an array of objects (their own fields are serde's to check).
fn check_onboard_activations(value: Option<&Value>) -> Result<(), Error> {
    match value {
        None => Ok(()),
        Some(Value::Array(items)) => match items.iter().enumerate().find(|(_, m)| !m.is_object()) {
            Some((i, bad)) => Err(onboard_field_error(
                &format!("activations[{i}]"),
                "an object",
                bad,
            )),
            None => Ok(()),
        },
        Some(other) => Err(onboard_field_error("activations", "an array", other)),
    }
}

/// `onboard request: <field> must be <must>, got <what was there>`.
fn onboard_field_error(field: &str, must: &str, was: &Value) -> Error {
    invalid(&format!(
        "onboard request: {field} must be {must}, got {}",
        describe(was)
    ))
}

impl OnboardRequest {
    /// The work an onboard request asks for (`account_id` parsed from it).
    fn into_work(self, account_id: AccountId) -> Work {
        Work {
            account_id,
            trigger: Trigger::Onboard(self.reason.unwrap_or_else(|| "onboard".to_string())),
            account_name: None,
            ou_id: self.ou_id,
            ou_name: None,
            attempt: self.attempt,
            backfill: self.backfill,
            first_seen: self.first_seen,
            explicit: None,
            activations: self.activations,
        }
    }
}

/// The string at `value`, which must be one of `allowed`; the error names the field path and
/// says what was there.
fn one_of<'a>(value: Option<&'a Value>, path: &str, allowed: &[&str]) -> Result<&'a str, Error> {
    match value.and_then(Value::as_str) {
        Some(s) if allowed.contains(&s) => Ok(s),
        _ => {
            let expected = allowed
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(" or ");
            Err(invalid(&format!(
                "{path} must be {expected}, {}",
                got(value)
            )))
        }
    }
}

/// The object at `value`, or an error naming the field path and what was there.
fn object<'a>(value: Option<&'a Value>, path: &str) -> Result<&'a Value, Error> {
    match value {
        Some(v @ Value::Object(_)) => Ok(v),
        other => Err(invalid(&format!(
            "{path} must be an object, {}",
            got(other)
        ))),
    }
}

fn parse_lifecycle(event: &Value) -> Result<Request, Error> {
    one_of(event.get("source"), "source", &[SOURCE])?;
    // A scheduled event, a console test event or any other EventBridge event that borrows
    // Control Tower's source and detail is not a lifecycle event.
    one_of(event.get("detail-type"), "detail-type", &[DETAIL_TYPE])?;
    let detail = object(event.get("detail"), "detail")?;
    let name = one_of(
        detail.get("eventName"),
        "detail.eventName",
        &["CreateManagedAccount", "UpdateManagedAccount"],
    )?;
    let (trigger, key) = match name {
        "CreateManagedAccount" => (Trigger::CreateManagedAccount, "createManagedAccountStatus"),
        _ => (Trigger::UpdateManagedAccount, "updateManagedAccountStatus"),
    };
    let path = format!("detail.serviceEventDetails.{key}");
    let status = object(
        detail.get("serviceEventDetails").and_then(|d| d.get(key)),
        &format!("{name} event: {path}"),
    )?;
    // Informational strings (Organizations stays the source of truth), bounded for reports.
    let text = |v: Option<&Value>, max: usize| v.and_then(Value::as_str).map(|s| truncate(s, max));
    let account = status.get("account");
    let state = one_of(
        status.get("state"),
        &format!("{path}.state"),
        &["SUCCEEDED", "FAILED"],
    )?;
    if state == "FAILED" {
        let message = text(status.get("message"), 1024).unwrap_or_default();
        return Ok(Request::Skip {
            account_id: text(account.and_then(|a| a.get("accountId")), ECHO_MAX_CHARS),
            reason: format!("Control Tower reported {name} FAILED: {message}"),
        });
    }
    let account_id = AccountId::parse_field(
        account.and_then(|a| a.get("accountId")),
        &format!("{path}.account.accountId"),
    )?;
    let ou = status.get("organizationalUnit");
    Ok(Request::Work(Work {
        account_id,
        trigger,
        account_name: text(account.and_then(|a| a.get("accountName")), 128),
        ou_id: text(ou.and_then(|o| o.get("organizationalUnitId")), 128),
        ou_name: text(ou.and_then(|o| o.get("organizationalUnitName")), 128),
        attempt: 0,
        backfill: false,
        first_seen: None,
        explicit: None,
        activations: Vec::new(),
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
        assert!(!w.backfill, "a Control Tower event is new work");
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

    fn create(id: Value) -> Value {
        let mut e = event(
            "CreateManagedAccount",
            "createManagedAccountStatus",
            "SUCCEEDED",
            "210987654321",
        );
        e["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["account"]["accountId"] =
            id;
        e
    }

    fn message(payload: &Value) -> String {
        match parse_request(payload) {
            Err(e) => {
                assert_eq!(e.kind(), "InvalidInput", "{payload}");
                e.to_string()
            }
            Ok(r) => panic!("accepted {payload}: {r:?}"),
        }
    }

    #[test]
    fn detail_type_must_be_the_cloudtrail_one() {
        for detail_type in [
            json!("Scheduled Event"),
            json!("AWS API Call via CloudTrail"),
            json!(""),
            json!(null),
        ] {
            let mut e = create(json!("210987654321"));
            e["detail-type"] = detail_type;
            assert!(
                message(&e).contains("detail-type must be \"AWS Service Event via CloudTrail\"")
            );
        }
        let mut e = create(json!("210987654321"));
        e.as_object_mut().map(|o| o.remove("detail-type"));
        assert!(message(&e)
            .ends_with("detail-type must be \"AWS Service Event via CloudTrail\", missing"));
    }

    #[test]
    fn padded_account_ids_are_rejected_in_every_entry() {
        for padded in [
            " 210987654321",
            "210987654321 ",
            "\t210987654321",
            "210987654321\n",
        ] {
            assert!(message(&create(json!(padded))).contains("accountId must be exactly 12 digits"));
            assert!(message(&json!({"accountId": padded}))
                .contains("onboard request: accountId must be exactly 12 digits"));
        }
    }

    #[test]
    fn errors_say_what_was_there() {
        let path = "detail.serviceEventDetails.createManagedAccountStatus.account.accountId";
        for (value, said) in [
            (json!(null), "got null"),
            (json!(210987654321_u64), "got a number (210987654321)"),
            (json!(["210987654321"]), "got an array"),
            (json!({"id": "210987654321"}), "got an object"),
        ] {
            let lifecycle = message(&create(value.clone()));
            assert!(
                lifecycle.contains(path) && lifecycle.ends_with(said),
                "{lifecycle}"
            );
            let onboard = message(&json!({ "accountId": value }));
            assert!(
                onboard.contains("accountId") && onboard.ends_with(said),
                "{onboard}"
            );
        }
        let mut e = create(json!("210987654321"));
        e["detail"]["eventName"] = json!(7);
        assert!(message(&e).ends_with("detail.eventName must be \"CreateManagedAccount\" or \"UpdateManagedAccount\", got a number (7)"));
    }

    #[test]
    fn huge_inputs_are_echoed_bounded() {
        let huge = "1".repeat(1 << 20);
        let mut state = create(json!("210987654321"));
        state["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["state"] =
            json!(huge.clone());
        let mut source = create(json!("210987654321"));
        source["source"] = json!(huge.clone());
        let mut unknown = serde_json::Map::new();
        unknown.insert("accountId".into(), json!("210987654321"));
        unknown.insert(huge.clone(), json!(1));
        for payload in [
            create(json!(huge.clone())),
            json!({ "accountId": huge.clone() }),
            json!({ "accountId": "210987654321", "reason": huge.clone() }),
            Value::Object(unknown),
            state,
            source,
        ] {
            let msg = message(&payload);
            assert!(
                msg.len() < 600,
                "{} bytes: {}",
                msg.len(),
                truncate(&msg, 600)
            );
        }
        let mut failed = create(json!(huge.clone()));
        failed["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["state"] =
            json!("FAILED");
        failed["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["message"] =
            json!(huge);
        let Ok(Request::Skip { account_id, reason }) = parse_request(&failed) else {
            panic!("expected skip")
        };
        assert!(account_id.is_some_and(|a| a.len() < 100));
        assert!(reason.len() < 1200);
    }

    /// The shipped account-lifecycle events (docs/operations.md, Try it) still parse, directly
    /// and as SQS bodies.
    #[test]
    fn shipped_lifecycle_events_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
        let read = |name: &str| -> Value {
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).expect(name)).expect(name)
        };
        for (name, expected) in [
            ("create-managed-account.json", "work"),
            ("update-managed-account.json", "work"),
            ("create-failed.json", "skip"),
        ] {
            assert_eq!(kind(&read(name)), expected, "{name}");
        }
        for name in ["sqs-lifecycle-event.json", "sqs-onboard-request.json"] {
            let batch = read(name);
            let body = batch["Records"][0]["body"].as_str().expect(name);
            assert!(matches!(parse_body(body), Ok(Request::Work(_))), "{name}");
        }
    }

    /// Every hostile lifecycle event found so far: rejected before any AWS call, and the
    /// message names the field.
    #[test]
    fn hostile_lifecycle_events() {
        let ok = || create(json!("210987654321"));
        let with = |f: &dyn Fn(&mut Value)| {
            let mut e = ok();
            f(&mut e);
            e
        };
        let status = "/detail/serviceEventDetails/createManagedAccountStatus";
        let cases: Vec<(Value, &str)> = vec![
            (
                with(&|e| e["detail-type"] = json!("Scheduled Event")),
                "detail-type",
            ),
            (with(&|e| e["source"] = json!("aws.events")), "source"),
            (
                with(&|e| e["source"] = json!(null)),
                "source must be \"aws.controltower\", got null",
            ),
            (
                with(&|e| e["detail"] = json!(null)),
                "detail must be an object, got null",
            ),
            (
                with(&|e| e["detail"] = json!([])),
                "detail must be an object, got an empty array",
            ),
            (
                with(&|e| e["detail"]["eventName"] = json!("DeleteManagedAccount")),
                "detail.eventName",
            ),
            (
                with(&|e| e["detail"]["serviceEventDetails"] = json!(null)),
                "createManagedAccountStatus must be an object, missing",
            ),
            (
                with(&|e| {
                    e.pointer_mut(status)
                        .map(|s| s["state"] = json!(null))
                        .unwrap_or(())
                }),
                "state must be \"SUCCEEDED\" or \"FAILED\", got null",
            ),
            (
                with(&|e| {
                    e.pointer_mut(status)
                        .map(|s| s["state"] = json!("IN_PROGRESS"))
                        .unwrap_or(())
                }),
                "got \"IN_PROGRESS\"",
            ),
            (
                with(&|e| {
                    e.pointer_mut(status)
                        .map(|s| s["account"] = json!(null))
                        .unwrap_or(())
                }),
                "account.accountId must be a 12-digit account id string, missing",
            ),
            (create(json!(" 210987654321")), "got \" 210987654321\""),
            (create(json!("21098765432")), "exactly 12 digits"),
            (create(json!("Not Available")), "exactly 12 digits"),
            (create(json!(210987654321_u64)), "got a number"),
            (
                json!({"detail": {}}),
                "source must be \"aws.controltower\", missing",
            ),
            (
                json!({"detail-type": "AWS Service Event via CloudTrail"}),
                "source",
            ),
        ];
        for (payload, expected) in cases {
            let msg = message(&payload);
            assert!(msg.contains(expected), "{msg:?} lacks {expected:?}");
        }
    }

    /// Every hostile onboard request found so far.
    #[test]
    fn hostile_onboard_requests() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"accountId": " 210987654321"}),
                "accountId must be exactly 12 digits, got \" 210987654321\"",
            ),
            (json!({"accountId": "210987654321 "}), "exactly 12 digits"),
            (
                json!({"accountId": null}),
                "accountId must be a 12-digit account id string, got null",
            ),
            (
                json!({"accountId": 210987654321_u64}),
                "got a number (210987654321)",
            ),
            (json!({"accountId": ["210987654321"]}), "got an array"),
            (
                json!({"accountId": "210987654321", "attempt": -1}),
                "attempt must be a whole number from 0 to 4294967295, got a number (-1)",
            ),
            (
                json!({"accountId": "210987654321", "attempt": "2"}),
                "attempt must be a whole number from 0 to 4294967295, got \"2\"",
            ),
            (
                json!({"accountId": "210987654321", "attempt": 4294967296_u64}),
                "attempt",
            ),
            (
                json!({"accountId": "210987654321", "attempt": null}),
                "attempt must be a whole number from 0 to 4294967295, got null",
            ),
            (
                json!({"accountId": "210987654321", "firstSeen": "yesterday"}),
                "firstSeen must be a whole number of Unix seconds, got \"yesterday\"",
            ),
            (
                json!({"accountId": "210987654321", "reason": 5}),
                "reason must be a string",
            ),
            (
                json!({"accountId": "210987654321", "reason": "a\nb"}),
                "reason must be a string",
            ),
            (
                json!({"accountId": "210987654321", "activations": {}}),
                "activations must be an array, got an object",
            ),
            (
                json!({"accountId": "210987654321", "activations": [null]}),
                "activations[0] must be an object, got null",
            ),
            (
                json!({"accountId": "210987654321", "unexpected": 1}),
                "unknown field `unexpected`",
            ),
        ];
        for (payload, expected) in cases {
            let msg = message(&payload);
            assert!(msg.contains(expected), "{msg:?} lacks {expected:?}");
        }
        // Optional fields may be null (= absent).
        assert_eq!(
            kind(&json!({"accountId": "210987654321", "reason": null, "firstSeen": null})),
            "work"
        );
    }

    #[test]
    fn onboard_request_round_trip() {
        let req = OnboardRequest {
            account_id: "210987654321".into(),
            reason: Some("recheck".into()),
            attempt: 2,
            first_seen: Some(1_700_000_000),
            activations: vec![ActivationMark {
                grant_arn: "arn:aws:license-manager::111122223333:grant:g-1".into(),
                version: "3".into(),
                bulk: false,
            }],
            ou_id: Some("ou-ab12-cdef3456".into()),
            backfill: true,
        };
        let body = serde_json::to_string(&req).expect("serializes");
        let Ok(Request::Work(w)) = parse_body(&body) else {
            panic!("expected work")
        };
        assert_eq!(w.attempt, 2);
        assert_eq!(w.first_seen, Some(1_700_000_000));
        assert_eq!(w.trigger, Trigger::Onboard("recheck".into()));
        assert_eq!(w.activations, req.activations);
        assert!(w.backfill);
        assert!(body.contains("\"backfill\":true"), "{body}");
        assert_eq!(w.ou_id.as_deref(), Some("ou-ab12-cdef3456"));
        // Not backfill work: the field is left out of the body (never `false`) and reads back
        // as not backfill.
        let plain = OnboardRequest {
            backfill: false,
            ..req
        };
        let body = serde_json::to_string(&plain).expect("serializes");
        assert!(!body.contains("backfill"), "{body}");
        let Ok(Request::Work(w)) = parse_body(&body) else {
            panic!("expected work")
        };
        assert!(!w.backfill);
        for bad in [json!("r-ab12"), json!(7), json!("ou-AB12-cdef3456")] {
            let Err(e) = parse_request(&json!({"accountId": "210987654321", "ouId": bad})) else {
                panic!("accepted ouId {bad}")
            };
            assert!(e.to_string().contains("ouId"), "{e}");
        }
    }
}
