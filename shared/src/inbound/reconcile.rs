//! What reaches the reconciler: a scheduled event, an on-demand request, a change event, or the
//! coalescing queue's records, each parsed into a [`Scope`] or refused naming the field. What a
//! change event names ([`GrantHint`], [`Departure`]) is a claim the reconciler checks.

use crate::error::{describe, echo, got, Error};
use crate::ids::{account_of_root_principal, is_ou_id, AccountId};
use crate::model::GrantView;
use serde_json::Value;

/// What of the reconciler's settings (`ReconcileConfig`) parsing needs: the configured scope,
/// the default dry run, and the coalescing queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScopeDefaults<'a> {
    /// RECONCILE_OUS: the configured scope's OUs (empty: the whole organization).
    pub(crate) ous: &'a [String],
    pub(crate) dry_run: bool,
    /// RECONCILE_QUEUE_URL.
    pub(crate) coalesce_queue_url: Option<&'a str>,
}

/// What to reconcile, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Organization,
    Ous(Vec<String>),
    Accounts(Vec<AccountId>),
    /// What License Manager `Grant Change` events say of accounts' grants: each account is run
    /// only when a run could act now (the reconciler's `hints::triage`), told from the event's status where it says
    /// enough (no call), else from the grant (`GetGrant`) or the account's listings.
    GrantChanged(Vec<GrantHint>),
    /// Grants a `Grant Change` event names by ARN alone (no account in it): each is read with
    /// `GetGrant`; a grant to an account goes as [`Scope::GrantChanged`], a grant to the
    /// organization or an OU as [`Scope::Coalesced`].
    GrantArns(Vec<String>),
    /// A change event that names no account (a `License Change`, a `Grant Change` naming
    /// nothing, an organization/OU grant's change): the configured scope, asked for on the
    /// coalescing queue (`RECONCILE_QUEUE_URL`), at most once per 5 minutes whatever the
    /// number of events. The string says which event.
    Coalesced(String),
    /// The coalesced reconcile itself (delivered by the coalescing queue): the configured scope,
    /// less the accounts whose grants wait on License Manager (a workflow, an activation):
    /// their chains are waiting on them already, and a change event every few minutes must
    /// not start a second chain for each. The daily schedule still queues them.
    Followup(Box<Scope>),
    /// Accounts an Organizations event says left the organization or closed. A claim, not a
    /// fact: each is confirmed with `DescribeAccount` before it is offboarded (per
    /// OFFBOARD_MODE); one Organizations still calls ACTIVE is re-checked instead
    /// (the reconciler's `departures::decide_departure`). Nothing is listed.
    Departed(Vec<Departure>),
    /// An event that asks for nothing, and why (a denied or failed Organizations call: its
    /// CloudTrail record carries `errorCode`). No AWS call is made.
    Ignored(String),
}

/// What a `Grant Change` event says of one grant: hints, since its detail is undocumented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantHint {
    pub account: AccountId,
    /// The grant's ARN (the event's `resources`, or the one grant ARN of its detail).
    pub grant: Option<String>,
    /// Its new status (the one grant status among the detail's strings).
    pub status: Option<String>,
    /// The grant as `GetGrant` showed it, when the event named only the grant.
    pub seen: Option<GrantView>,
}

#[cfg(test)]
impl GrantHint {
    pub(crate) fn account(account: AccountId) -> Self {
        GrantHint {
            account,
            grant: None,
            status: None,
            seen: None,
        }
    }
}

/// What an Organizations event (`RemoveAccountFromOrganization`, `CloseAccount`) claims: this
/// account left or is closing. CloudTrail records denied calls too, and anyone allowed to
/// invoke the reconciler can write such an event, so it is only a reason to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    pub account: AccountId,
    /// The CloudTrail event name.
    pub event: String,
    /// The envelope's `account`: for a real Organizations event, the management account that
    /// made the call (`None` when the event has none).
    pub sender: Option<String>,
}

/// Sources of the change events the template's rules send (issue 12): Organizations' CloudTrail
/// events and License Manager's own.
const CHANGE_SOURCES: &[&str] = &["aws.organizations", "aws.license-manager"];

/// The envelope fields of an EventBridge event: all a scheduled run may carry.
const ENVELOPE: &[&str] = &[
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
];

/// The fields of an on-demand request.
const REQUEST_FIELDS: &[&str] = &["accounts", "ous", "dryRun"];

/// Parses the invocation payload. Exactly two shapes are accepted, anything else is
/// `InvalidInput` naming the field:
/// * the EventBridge Scheduled Event the template's schedule sends (`source` `aws.events`,
///   `detail-type` `Scheduled Event`, empty `detail`): the configured scope (RECONCILE_OUS, or
///   the whole organization) and DRY_RUN;
/// * an on-demand request object with only `accounts` (non-empty list of account ids), `ous`
///   (non-empty list of OU ids) and `dryRun` (boolean); `{}` is an on-demand run of the
///   configured scope.
pub(crate) fn parse(payload: &Value, config: &ScopeDefaults<'_>) -> Result<(Scope, bool), Error> {
    let Some(obj) = payload.as_object() else {
        return Err(invalid(format!(
            "the reconciler takes an EventBridge Scheduled Event or a request object ({{\"accounts\": [...]}}, {{\"ous\": [...]}}, {{\"dryRun\": true}}, or {{}} for a full run), got {}",
            describe(payload)
        )));
    };
    if obj.contains_key("Records") {
        check_coalesced_records(obj, config)?;
        return Ok((
            Scope::Followup(Box::new(default_scope(config))),
            config.dry_run,
        ));
    }
    if ["source", "detail-type", "detail"]
        .iter()
        .any(|k| obj.contains_key(*k))
    {
        if let Some(scope) = change_event(obj) {
            let scope = match scope {
                Some(scope) => scope,
                None if config.coalesce_queue_url.is_some() => Scope::Coalesced(event_label(obj)),
                None => default_scope(config),
            };
            return Ok((scope, config.dry_run));
        }
        check_scheduled_event(obj)?;
        return Ok((default_scope(config), config.dry_run));
    }
    parse_request(obj, config)
}

/// The configured scope: RECONCILE_OUS, or the whole organization.
fn default_scope(config: &ScopeDefaults<'_>) -> Scope {
    if config.ous.is_empty() {
        Scope::Organization
    } else {
        Scope::Ous(config.ous.to_vec())
    }
}

/// An on-demand request object: only `accounts`, `ous` and `dryRun` ([`parse`]).
fn parse_request(
    obj: &serde_json::Map<String, Value>,
    config: &ScopeDefaults<'_>,
) -> Result<(Scope, bool), Error> {
    if let Some(unknown) = obj.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "reconcile request: unknown field {}; expected accounts, ous or dryRun",
            echo(unknown)
        )));
    }
    let dry_run = match obj.get("dryRun") {
        None => config.dry_run,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(invalid(format!(
                "reconcile request: dryRun must be true or false, got {}",
                describe(other)
            )))
        }
    };
    let list = |field: &str| -> Result<Option<&Vec<Value>>, Error> {
        match obj.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) if !items.is_empty() => Ok(Some(items)),
            Some(other) => Err(invalid(format!(
                "reconcile request: {field} must be a non-empty array, got {}",
                describe(other)
            ))),
        }
    };
    let scope = match (list("accounts")?, list("ous")?) {
        (Some(_), Some(_)) => {
            return Err(invalid("reconcile request: give accounts or ous, not both"))
        }
        (Some(accounts), None) => Scope::Accounts(
            accounts
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    AccountId::parse_field(Some(a), &format!("reconcile request: accounts[{i}]"))
                })
                .collect::<Result<_, _>>()?,
        ),
        (None, Some(ous)) => Scope::Ous(
            ous.iter()
                .enumerate()
                .map(|(i, o)| match o.as_str() {
                    Some(ou) if is_ou_id(ou) => Ok(ou.to_string()),
                    _ => Err(invalid(format!(
                        "reconcile request: ous[{i}] must be an OU id (ou-xxxx-yyyyyyyy), got {}",
                        describe(o)
                    ))),
                })
                .collect::<Result<_, _>>()?,
        ),
        (None, None) => default_scope(config),
    };
    Ok((scope, dry_run))
}

/// A change event from one of [`CHANGE_SOURCES`] (`None`: not one), read leniently because its
/// detail is only partly documented (DESIGN.md §2): each is a hint, the run re-reads the truth.
/// `Some(Some(scope))` when it names what changed, `Some(None)` (the configured scope, whose
/// reconcile costs a few listings when little changed) when it cannot be understood: never an
/// error, so EventBridge never retries it in a loop.
///
/// * Organizations: an event with an `errorCode` (CloudTrail records denied and failed calls
///   too) → nothing ([`Scope::Ignored`]). Otherwise (CloudTrail `AWS API Call via CloudTrail`):
///   `MoveAccount`, `TagResource` and `UntagResource` on an account → that account (its OU or
///   tags may change its licenses); `RemoveAccountFromOrganization`, `CloseAccount` → that
///   account is a [`Departure`] claim, confirmed before any offboarding; a tag on something
///   else (an OU, a policy) → nothing.
/// * License Manager: `Grant Change` naming an account's grant → that account now (the delayed
///   re-check stays the safety net); `License Change` (a new subscription is a new license) →
///   the configured scope, which queues every account the selection now covers and lacks it.
pub(crate) fn change_event(obj: &serde_json::Map<String, Value>) -> Option<Option<Scope>> {
    let source = obj.get("source").and_then(Value::as_str)?;
    if !CHANGE_SOURCES.contains(&source) {
        return None;
    }
    let detail = obj.get("detail").cloned().unwrap_or(Value::Null);
    let detail_type = obj.get("detail-type").and_then(Value::as_str).unwrap_or("");
    if source == "aws.organizations" {
        if let Some(code) = detail.get("errorCode").filter(|c| !c.is_null()) {
            let event = detail
                .get("eventName")
                .map_or_else(|| "missing".into(), describe);
            return Some(Some(Scope::Ignored(format!(
                "Organizations event {event} records a call that was not carried out (errorCode {}): nothing changed",
                describe(code)
            ))));
        }
    }
    let scope = match (source, detail_type) {
        ("aws.organizations", "AWS API Call via CloudTrail") => organizations_call(obj, &detail),
        ("aws.license-manager", "Grant Change") => grant_change(obj, &detail),
        _ => None,
    };
    Some(scope)
}

/// A CloudTrail record of an Organizations call ([`change_event`]): the account it names
/// (`None`: nothing understood).
fn organizations_call(obj: &serde_json::Map<String, Value>, detail: &Value) -> Option<Scope> {
    match detail
        .get("eventName")
        .and_then(Value::as_str)
        .unwrap_or("")
    {
        "MoveAccount" => {
            account_at(detail, "/requestParameters/accountId").map(|a| Scope::Accounts(vec![a]))
        }
        "TagResource" | "UntagResource" => {
            match detail.pointer("/requestParameters/resourceId") {
                // Tags of an OU, a root or a policy select no licenses.
                Some(Value::String(id)) if AccountId::parse(id).is_err() => {
                    Some(Scope::Accounts(Vec::new()))
                }
                _ => account_at(detail, "/requestParameters/resourceId")
                    .map(|a| Scope::Accounts(vec![a])),
            }
        }
        event @ ("RemoveAccountFromOrganization" | "CloseAccount") => {
            account_at(detail, "/requestParameters/accountId").map(|account| {
                Scope::Departed(vec![Departure {
                    account,
                    event: event.to_string(),
                    sender: obj
                        .get("account")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                }])
            })
        }
        _ => None,
    }
}

/// A License Manager `Grant Change` event ([`change_event`]): the account its detail names a
/// grant of, else the grants it names by ARN (`None`: neither).
fn grant_change(obj: &serde_json::Map<String, Value>, detail: &Value) -> Option<Scope> {
    // The grant: what `resources` names, else the detail's only grant ARN (a child's
    // detail may name its parent too).
    let mut named = Vec::new();
    collect_grant_arns(obj.get("resources").unwrap_or(&Value::Null), &mut named);
    let mut in_detail = Vec::new();
    collect_grant_arns(detail, &mut in_detail);
    let grant = match (named.as_slice(), in_detail.as_slice()) {
        ([one], _) | ([], [one]) => Some(one.clone()),
        _ => None,
    };
    match grantee_account(detail) {
        Some(account) => Some(Scope::GrantChanged(vec![GrantHint {
            account,
            grant,
            status: grant_status_in(detail),
            seen: None,
        }])),
        None => {
            for arn in in_detail {
                if !named.contains(&arn) {
                    named.push(arn);
                }
            }
            (!named.is_empty()).then_some(Scope::GrantArns(named))
        }
    }
}

/// The account id at `pointer` in an event's detail, when it is one.
fn account_at(detail: &Value, pointer: &str) -> Option<AccountId> {
    detail
        .pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|id| AccountId::parse(id).ok())
}

/// The account a License Manager event's detail names as a grantee (`arn:aws:iam::<id>:root`
/// in any string of it): the detail's fields are not documented, so no field name is assumed.
fn grantee_account(detail: &Value) -> Option<AccountId> {
    strings_in(detail)
        .into_iter()
        .rev()
        .find_map(|s| account_of_root_principal(s).and_then(|id| AccountId::parse(id).ok()))
}

/// Every string in `v`, at any depth (an event's detail is undocumented, so no field name is
/// assumed), in one fixed order.
fn strings_in(v: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => out.push(s.as_str()),
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    out
}

/// The one grant status among the strings of an event's detail (`None` when none or several).
fn grant_status_in(detail: &Value) -> Option<String> {
    use crate::model::grant::status::*;
    const ALL: [&str; 9] = [
        ACTIVE,
        DISABLED,
        PENDING_ACCEPT,
        PENDING_WORKFLOW,
        WORKFLOW_COMPLETED,
        PENDING_DELETE,
        FAILED_WORKFLOW,
        REJECTED,
        DELETED,
    ];
    let mut found: Vec<&str> = Vec::new();
    for s in strings_in(detail) {
        if ALL.contains(&s) && !found.contains(&s) {
            found.push(s);
        }
    }
    match found.as_slice() {
        [one] => Some((*one).to_string()),
        _ => None,
    }
}

/// Grant ARNs anywhere in `v` (the event's detail or its `resources`), each once, at most
/// [`MAX_EVENT_GRANTS`]: the detail is undocumented, so no field name is assumed.
fn collect_grant_arns(v: &Value, arns: &mut Vec<String>) {
    for s in strings_in(v) {
        if crate::ids::is_grant_arn(s)
            && !arns.iter().any(|a| a == s)
            && arns.len() < MAX_EVENT_GRANTS
        {
            arns.push(s.to_string());
        }
    }
}

/// Grants one `Grant Change` event may make the reconciler read (`GetGrant` each).
const MAX_EVENT_GRANTS: usize = 5;

/// What a change event was, in a few words: `source`, `detail-type`, and the CloudTrail
/// `eventName` when there is one (echoed safely: the event is a claim).
pub(crate) fn event_label(obj: &serde_json::Map<String, Value>) -> String {
    let field = |v: Option<&Value>| -> String {
        v.and_then(Value::as_str)
            .unwrap_or("?")
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect()
    };
    let mut label = format!(
        "{} {}",
        field(obj.get("source")),
        field(obj.get("detail-type"))
    );
    if let Some(name) = obj.get("detail").and_then(|d| d.get("eventName")) {
        label.push(' ');
        label.push_str(&field(Some(name)));
    }
    label
}

/// The body of a message on the coalescing queue (written by the reconciler only).
pub(crate) const COALESCED_BODY: &str = r#"{"reconcile":"coalesced"}"#;

/// Accepts exactly what the coalescing queue's event source mapping delivers: `Records`, each
/// an SQS record from the queue `RECONCILE_QUEUE_URL` names, whose body is
/// [`COALESCED_BODY`]. It asks for the configured scope and claims nothing else.
fn check_coalesced_records(
    obj: &serde_json::Map<String, Value>,
    config: &ScopeDefaults<'_>,
) -> Result<(), Error> {
    let Some(url) = config.coalesce_queue_url else {
        return Err(invalid(
            "SQS records reached the reconciler, but RECONCILE_QUEUE_URL is not set",
        ));
    };
    let queue = url.rsplit('/').next().unwrap_or_default();
    if let Some(extra) = obj.keys().find(|k| k.as_str() != "Records") {
        return Err(invalid(format!(
            "SQS event: unknown field {} beside Records",
            echo(extra)
        )));
    }
    let records = match obj.get("Records") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        other => {
            return Err(invalid(format!(
                "SQS event: Records must be a non-empty array, got {}",
                other.map_or_else(|| "nothing".into(), describe)
            )))
        }
    };
    for (i, record) in records.iter().enumerate() {
        let field = |name: &str| record.get(name).and_then(Value::as_str);
        check_sqs_record(record, i, queue, "the coalescing queue")?;
        let body: Option<Value> = field("body").and_then(|b| serde_json::from_str(b).ok());
        let expected: Value = serde_json::from_str(COALESCED_BODY).unwrap_or(Value::Null);
        if body.as_ref() != Some(&expected) {
            return Err(invalid(format!(
                "SQS event: Records[{i}].body must be {COALESCED_BODY}, got {}",
                record
                    .get("body")
                    .map_or_else(|| "nothing".into(), describe)
            )));
        }
    }
    Ok(())
}

/// Checks that `Records[i]` is an SQS record from the queue named `queue` (the last part of
/// its `eventSourceARN`); `what` names that queue in the error.
pub(crate) fn check_sqs_record(
    record: &Value,
    i: usize,
    queue: &str,
    what: &str,
) -> Result<(), Error> {
    let field = |name: &str| record.get(name).and_then(Value::as_str);
    if field("eventSource") != Some("aws:sqs") {
        return Err(invalid(format!(
            "SQS event: Records[{i}].eventSource must be aws:sqs, got {}",
            record
                .get("eventSource")
                .map_or_else(|| "nothing".into(), describe)
        )));
    }
    let from = field("eventSourceARN").and_then(|arn| arn.rsplit(':').next());
    if from != Some(queue) {
        return Err(invalid(format!(
            "SQS event: Records[{i}] comes from {}, not {what} {}",
            record
                .get("eventSourceARN")
                .map_or_else(|| "nothing".into(), describe),
            echo(queue)
        )));
    }
    Ok(())
}

/// Accepts exactly the event an EventBridge schedule sends: `source` `aws.events`,
/// `detail-type` `Scheduled Event`, `detail` absent or `{}`, and only envelope fields.
fn check_scheduled_event(obj: &serde_json::Map<String, Value>) -> Result<(), Error> {
    let expect = |field: &str, wanted: &str| match obj.get(field) {
        Some(Value::String(s)) if s == wanted => Ok(()),
        other => Err(invalid(format!(
            "scheduled event: {field} must be {wanted:?} (an EventBridge schedule), {}",
            got(other)
        ))),
    };
    expect("source", "aws.events")?;
    expect("detail-type", "Scheduled Event")?;
    match obj.get("detail") {
        None => {}
        Some(Value::Object(d)) if d.is_empty() => {}
        Some(other) => {
            return Err(invalid(format!(
                "scheduled event: detail must be {{}}, got {}; to choose accounts or OUs, invoke with a request object instead",
                describe(other)
            )))
        }
    }
    if let Some(unknown) = obj.keys().find(|k| !ENVELOPE.contains(&k.as_str())) {
        return Err(invalid(format!(
            "scheduled event: unknown field {}; a scheduled run carries only EventBridge's envelope ({})",
            echo(unknown),
            ENVELOPE.join(", ")
        )));
    }
    Ok(())
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidInput(msg.into())
}

#[cfg(test)]
mod tests;
