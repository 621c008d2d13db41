//! Reconcile and backfill: list the organization's accounts (or some OUs, or named accounts)
//! and put one "onboard account" message per ACTIVE account on the onboarding queue, so
//! account-lifecycle heals drift with Lambda + SQS as the fan-out. Accounts that left (suspended,
//! closed, or gone from the organization) have their per-account grants offboarded.

use crate::aws::{self, GrantView, ListedAccount, OrgInfo};
use crate::config::Mode;
use crate::distribution::ParentReport;
use crate::engine::{Engine, OffboardMode, Wanted};
use crate::error::{describe, echo, got, Error};
use crate::event::OnboardRequest;
use crate::ids::{account_of_root_principal, is_ou_id, AccountId};
use crate::report::{AccountReport, CallLog, ErrorReport};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

/// Reconciler settings (environment, validated at init, errors name the variable).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileConfig {
    pub onboarding_queue_url: String,
    /// Organization and OU runs queue here when set (named accounts: the onboarding queue).
    pub backfill_queue_url: Option<String>,
    /// Scheduled runs cover these OUs (recursively); empty = the whole organization.
    pub ous: Vec<String>,
    /// None = offboarding off.
    pub offboard: Option<OffboardMode>,
    pub dry_run: bool,
    /// License Manager's grants per license (Service Quotas L-55F04DE6; 2,000 unless raised).
    pub grant_quota: u32,
    /// Warn once a license's per-account grants reach this share of `grant_quota` (percent).
    pub grant_quota_warn_percent: u32,
    /// `RECONCILE_QUEUE_URL`: a FIFO queue (delay = deduplication interval = 5 minutes) where
    /// change events that name no account ask for the configured scope, so that any number
    /// of them makes at most one reconcile per 5 minutes, each starting after the events it
    /// covers. Unset: such an event runs the configured scope at once.
    pub coalesce_queue_url: Option<String>,
    /// `CHANGE_EVENT_QUEUE_URL`: the queue `LicenseManagerChangesRule` delivers to; its
    /// records are triaged a batch at a time ([`crate::changes`]). Unset: records from any
    /// queue but the coalescing one are refused.
    pub change_queue_url: Option<String>,
}

impl ReconcileConfig {
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let onboarding_queue_url = get("ONBOARDING_QUEUE_URL")
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .ok_or_else(|| Error::Config("ONBOARDING_QUEUE_URL: a queue URL is required".into()))?;
        let backfill_queue_url =
            crate::config::parse_queue_url(get("BACKFILL_QUEUE_URL"), "BACKFILL_QUEUE_URL")?;
        let ous: Vec<String> = get("RECONCILE_OUS")
            .unwrap_or_default()
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = ous.iter().find(|o| !is_ou_id(o)) {
            return Err(Error::Config(format!(
                "RECONCILE_OUS: {} is not an OU id (ou-xxxx-yyyyyyyy)",
                echo(bad)
            )));
        }
        let offboard = match get("OFFBOARD_MODE").as_deref().unwrap_or("off") {
            "off" => None,
            "deactivate" => Some(OffboardMode::Deactivate),
            "delete" => Some(OffboardMode::Delete),
            other => {
                return Err(Error::Config(format!(
                    "OFFBOARD_MODE: {} must be off, deactivate or delete",
                    echo(other)
                )))
            }
        };
        let dry_run = crate::config::parse_bool(get("DRY_RUN").as_deref(), "DRY_RUN", false)?;
        let number = |var: &str, default: u64, max: u64| {
            crate::config::parse_num(get(var), var, default, 1, max)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        };
        let grant_quota = number("GRANT_QUOTA_PER_LICENSE", 2000, 1_000_000)?;
        let grant_quota_warn_percent = number("GRANT_QUOTA_WARN_PERCENT", 90, 100)?;
        let coalesce_queue_url =
            crate::config::parse_queue_url(get("RECONCILE_QUEUE_URL"), "RECONCILE_QUEUE_URL")?;
        if let Some(url) = coalesce_queue_url
            .as_deref()
            .filter(|u| !u.ends_with(".fifo"))
        {
            return Err(Error::Config(format!(
                "RECONCILE_QUEUE_URL: {} is not a FIFO queue (its name ends with .fifo); the 5-minute deduplication of a FIFO queue is what coalesces change events",
                echo(url)
            )));
        }
        let change_queue_url = crate::config::parse_queue_url(
            get("CHANGE_EVENT_QUEUE_URL"),
            "CHANGE_EVENT_QUEUE_URL",
        )?;
        Ok(ReconcileConfig {
            change_queue_url,
            coalesce_queue_url,
            grant_quota,
            grant_quota_warn_percent,
            onboarding_queue_url,
            backfill_queue_url,
            ous,
            offboard,
            dry_run,
        })
    }
}

/// What to reconcile, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Organization,
    Ous(Vec<String>),
    Accounts(Vec<AccountId>),
    /// What License Manager `Grant Change` events say of accounts' grants: each account is run
    /// only when a run could act now ([`triage`]), told from the event's status where it says
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
    /// ([`decide_departure`]). Nothing is listed.
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

impl GrantHint {
    pub fn account(account: AccountId) -> Self {
        GrantHint {
            account,
            grant: None,
            status: None,
            seen: None,
        }
    }
}

/// What a change event's hint leads to, before any call ([`hint_action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HintAction {
    /// The grant waits on ct-entitlements (a workflow completed: accept, or replace a failure).
    Run,
    /// Nothing to do: ACTIVE, or waiting on License Manager (a workflow, a deletion).
    Nothing,
    /// `DISABLED`, or no status: the grant itself says whose move it is (`GetGrant`).
    Look,
    /// Deleted, rejected, or no grant named: the account's listings decide ([`needs_run_now`]).
    Read,
}

/// The first step for a `Grant Change` hint, from its status alone. Pure.
pub fn hint_action(status: Option<&str>, grant_named: bool) -> HintAction {
    use crate::decide::status::*;
    match status {
        Some(PENDING_ACCEPT | FAILED_WORKFLOW) => HintAction::Run,
        Some(ACTIVE | PENDING_WORKFLOW | PENDING_DELETE | WORKFLOW_COMPLETED) => {
            HintAction::Nothing
        }
        Some(DISABLED) | None if grant_named => HintAction::Look,
        _ => HintAction::Read,
    }
}

/// Whether a grant `GetGrant` showed (and its parent's, for an account-level grant under an
/// organization/OU grant) leaves a run something to do now: `None` (run) or why not. Pure.
pub fn after_look(grant: &GrantView, parent: Option<&GrantView>) -> Option<String> {
    use crate::decide::status::*;
    match grant.status.as_str() {
        // A failed workflow is replaced or repaired now. (Leaving a failed account-level grant
        // to the backfill or the account's re-check was measured: `make scale` at 203 accounts
        // then had 303 of 306 grants ACTIVE 270 s after the backfill's first pass, where
        // running it had all of them in 50 s.)
        PENDING_ACCEPT | FAILED_WORKFLOW => None,
        ACTIVE => Some("ACTIVE".into()),
        PENDING_WORKFLOW | PENDING_DELETE | WORKFLOW_COMPLETED => {
            Some(format!("{} (License Manager's move)", grant.status))
        }
        DISABLED
            if grant.status_reason.as_deref() == Some(crate::decide::ACTIVATION_STATUS_REASON) =>
        {
            Some("DISABLED while the activation ct-entitlements asked for proceeds".into())
        }
        DISABLED => match parent {
            Some(p) if crate::decide::changed_by_operator(p) => Some(
                "DISABLED under an organization/OU grant someone else changed (held back)".into(),
            ),
            Some(p) if crate::decide::looks_bulk_activated(p) => Some(
                "DISABLED while the bulk activation of its organization/OU grant reaches it".into(),
            ),
            _ => None,
        },
        // Deleted or rejected: the account's listings decide (the caller reads them).
        _ => None,
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

/// What Organizations says of an account now (`DescribeAccount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Not in the organization (`AccountNotFoundException`).
    Gone,
    /// Its state: `ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`, `CLOSED`, `PENDING_ACTIVATION`, …
    State(String),
}

/// What to do about a [`Departure`], with the reason the report gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepartureAction {
    /// Organizations confirms it: offboard (per OFFBOARD_MODE).
    Offboard(String),
    /// Still a member in use: the event is a hint to re-check the account, never to offboard.
    Recheck(String),
    /// Nothing to do.
    Ignore(String),
}

/// The part of [`decide_departure`] that needs no read: `Some(Ignore)` for an event the
/// management account did not send, or one naming the management account or the account
/// ct-entitlements runs in; `None` when Organizations must be asked.
pub fn screen_departure(
    claim: &Departure,
    management: &str,
    self_account: Option<&str>,
) -> Option<DepartureAction> {
    let account = claim.account.as_str();
    if claim.sender.as_deref() != Some(management) {
        return Some(DepartureAction::Ignore(format!(
            "{} event from account {} (not the management account): ignored",
            claim.event,
            claim
                .sender
                .as_deref()
                .map_or_else(|| "(none)".into(), echo)
        )));
    }
    if account == management {
        return Some(DepartureAction::Ignore(format!(
            "{} event names the management account: ignored",
            claim.event
        )));
    }
    if self_account == Some(account) {
        return Some(DepartureAction::Ignore(format!(
            "{} event names the account ct-entitlements runs in: ignored",
            claim.event
        )));
    }
    None
}

/// Whether an account an event says left is to be offboarded: only when the management
/// account sent the event ([`screen_departure`]) and Organizations confirms it (gone from the
/// organization, or SUSPENDED, PENDING_CLOSURE or CLOSED). An ACTIVE account is re-checked;
/// PENDING_ACTIVATION or a state this code does not know is left alone.
pub fn decide_departure(
    claim: &Departure,
    management: &str,
    self_account: Option<&str>,
    observed: &Observed,
) -> DepartureAction {
    if let Some(action) = screen_departure(claim, management, self_account) {
        return action;
    }
    let event = &claim.event;
    match observed {
        Observed::Gone => {
            DepartureAction::Offboard(format!("{event}: confirmed, not in the organization"))
        }
        Observed::State(s) if matches!(s.as_str(), "SUSPENDED" | "PENDING_CLOSURE" | "CLOSED") => {
            DepartureAction::Offboard(format!("{event}: confirmed, state {s}"))
        }
        Observed::State(s) if s == "ACTIVE" => DepartureAction::Recheck(format!(
            "{event} event, but Organizations says ACTIVE: re-checked, not offboarded"
        )),
        Observed::State(s) => DepartureAction::Ignore(format!(
            "{event} event, but Organizations says state {}: not offboarded",
            echo(s)
        )),
    }
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
pub fn parse(payload: &Value, config: &ReconcileConfig) -> Result<(Scope, bool), Error> {
    let default_scope = || {
        if config.ous.is_empty() {
            Scope::Organization
        } else {
            Scope::Ous(config.ous.clone())
        }
    };
    let Some(obj) = payload.as_object() else {
        return Err(invalid(format!(
            "the reconciler takes an EventBridge Scheduled Event or a request object ({{\"accounts\": [...]}}, {{\"ous\": [...]}}, {{\"dryRun\": true}}, or {{}} for a full run), got {}",
            describe(payload)
        )));
    };
    if obj.contains_key("Records") {
        check_coalesced_records(obj, config)?;
        return Ok((Scope::Followup(Box::new(default_scope())), config.dry_run));
    }
    if ["source", "detail-type", "detail"]
        .iter()
        .any(|k| obj.contains_key(*k))
    {
        if let Some(scope) = change_event(obj) {
            let scope = match scope {
                Some(scope) => scope,
                None if config.coalesce_queue_url.is_some() => Scope::Coalesced(event_label(obj)),
                None => default_scope(),
            };
            return Ok((scope, config.dry_run));
        }
        check_scheduled_event(obj)?;
        return Ok((default_scope(), config.dry_run));
    }
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
        (None, None) => default_scope(),
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
    let account_at = |pointer: &str| {
        detail
            .pointer(pointer)
            .and_then(Value::as_str)
            .and_then(|id| AccountId::parse(id).ok())
    };
    let scope = match (source, detail_type) {
        ("aws.organizations", "AWS API Call via CloudTrail") => {
            match detail
                .get("eventName")
                .and_then(Value::as_str)
                .unwrap_or("")
            {
                "MoveAccount" => {
                    account_at("/requestParameters/accountId").map(|a| Scope::Accounts(vec![a]))
                }
                "TagResource" | "UntagResource" => {
                    match detail.pointer("/requestParameters/resourceId") {
                        // Tags of an OU, a root or a policy select no licenses.
                        Some(Value::String(id)) if AccountId::parse(id).is_err() => {
                            Some(Scope::Accounts(Vec::new()))
                        }
                        _ => account_at("/requestParameters/resourceId")
                            .map(|a| Scope::Accounts(vec![a])),
                    }
                }
                event @ ("RemoveAccountFromOrganization" | "CloseAccount") => {
                    account_at("/requestParameters/accountId").map(|account| {
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
        ("aws.license-manager", "Grant Change") => {
            // The grant: what `resources` names, else the detail's only grant ARN (a child's
            // detail may name its parent too).
            let mut named = Vec::new();
            collect_grant_arns(obj.get("resources").unwrap_or(&Value::Null), &mut named);
            let mut in_detail = Vec::new();
            collect_grant_arns(&detail, &mut in_detail);
            let grant = match (named.as_slice(), in_detail.as_slice()) {
                ([one], _) | ([], [one]) => Some(one.clone()),
                _ => None,
            };
            match grantee_account(&detail) {
                Some(account) => Some(Scope::GrantChanged(vec![GrantHint {
                    account,
                    grant,
                    status: grant_status_in(&detail),
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
        _ => None,
    };
    Some(scope)
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
    use crate::decide::status::*;
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
pub const COALESCED_BODY: &str = r#"{"reconcile":"coalesced"}"#;

/// Accepts exactly what the coalescing queue's event source mapping delivers: `Records`, each
/// an SQS record from the queue `RECONCILE_QUEUE_URL` names, whose body is
/// [`COALESCED_BODY`]. It asks for the configured scope and claims nothing else.
fn check_coalesced_records(
    obj: &serde_json::Map<String, Value>,
    config: &ReconcileConfig,
) -> Result<(), Error> {
    let Some(url) = &config.coalesce_queue_url else {
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

/// The reconciler's report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub scope: String,
    pub dry_run: bool,
    pub accounts_listed: usize,
    /// Accounts put (or, in a dry run, to be put) on the onboarding queue.
    pub onboard: Vec<String>,
    /// Why each of them needs a run (organization and OU runs: from the grantor's listings).
    pub needs: BTreeMap<String, String>,
    /// ACTIVE accounts whose every selected license already has an ACTIVE grant: not queued.
    pub up_to_date: usize,
    /// A coalesced reconcile's accounts whose grants wait on License Manager: not queued, their
    /// chains wait on them ([`Scope::Followup`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub waiting: usize,
    /// Configured selections that match no held license (each account's run would report it).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub unmatched_selections: BTreeSet<String>,
    /// Organization/OU grants of licenses in those modes (LICENSE_DISTRIBUTION): each one's
    /// step, taken or (dry run) planned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<ParentReport>,
    /// Licenses near their grants-per-license quota, and what to do.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub enqueued: usize,
    /// Listed accounts not onboarded, with the reason.
    pub skipped: BTreeMap<String, String>,
    /// Accounts whose per-account grants are (or would be) offboarded.
    pub offboard: Vec<String>,
    pub offboarded: Vec<AccountReport>,
    /// Why the event asked for nothing ([`Scope::Ignored`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    /// The event that asked for the configured scope on the coalescing queue
    /// ([`Scope::Coalesced`]): the reconcile runs when that message is delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coalesced: Option<String>,
    /// A change-event batch's records refused (message id → why): answered as batch item
    /// failures, so they end on the dead-letter queue rather than vanish.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rejected: BTreeMap<String, String>,
    /// A change-event batch's records whose triage failed on something retryable (a
    /// throttle): answered as batch item failures, so SQS delivers them again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<String>,
    /// Of `onboard`, a change-event batch's accounts put on the backfill queue
    /// ([`crate::changes::Lane::Backfill`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backfill: Vec<String>,
    pub api_calls: BTreeMap<String, u32>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
}

impl ReconcileReport {
    /// A report of nothing done yet.
    pub fn empty(scope: String, dry_run: bool) -> Self {
        ReconcileReport {
            parents: Vec::new(),
            scope,
            dry_run,
            accounts_listed: 0,
            onboard: Vec::new(),
            needs: BTreeMap::new(),
            up_to_date: 0,
            waiting: 0,
            unmatched_selections: BTreeSet::new(),
            warnings: Vec::new(),
            enqueued: 0,
            skipped: BTreeMap::new(),
            offboard: Vec::new(),
            offboarded: Vec::new(),
            ignored: None,
            coalesced: None,
            rejected: BTreeMap::new(),
            retried: Vec::new(),
            backfill: Vec::new(),
            api_calls: BTreeMap::new(),
            duration_ms: 0,
            error: None,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Runs one reconcile.
pub async fn reconcile(
    engine: &Engine,
    config: &ReconcileConfig,
    scope: Scope,
    dry_run: bool,
) -> ReconcileReport {
    let started = Instant::now();
    let calls = CallLog::default();
    fn label(scope: &Scope) -> String {
        match scope {
            Scope::Organization => "organization".into(),
            Scope::Ous(ous) => format!("ous:{}", ous.join(",")),
            Scope::Accounts(a) => format!("accounts:{}", a.len()),
            Scope::GrantChanged(a) => format!("grant-changed:{}", a.len()),
            Scope::GrantArns(a) => format!("grant-arns:{}", a.len()),
            Scope::Coalesced(_) => "coalesced".into(),
            Scope::Followup(inner) => format!("followup:{}", label(inner)),
            Scope::Departed(a) => format!("departed:{}", a.len()),
            Scope::Ignored(_) => "ignored".into(),
        }
    }
    let mut report = ReconcileReport::empty(label(&scope), dry_run);
    let resolved = match scope {
        Scope::GrantArns(arns) => grantees(engine, config, &arns, &calls).await,
        scope => Ok(scope),
    };
    let result = match resolved {
        Ok(scope) => {
            report.scope = label(&scope);
            // Boxed: keeps the deep listing/offboarding future out of the caller's type.
            Box::pin(run(engine, config, &scope, dry_run, &calls, &mut report)).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        report.error = Some(ErrorReport::from(&e));
    }
    report.api_calls = calls.snapshot().own;
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

/// What the grants a `Grant Change` event names by ARN alone are about, read with `GetGrant`
/// as their grantor: the accounts they are granted to ([`Scope::GrantChanged`]), or, when one
/// is an organization/OU grant or cannot be read (gone, not ours), the configured scope
/// ([`Scope::Coalesced`], or at once without a coalescing queue). A throttle or an outage
/// fails the run as it is (retried).
async fn grantees(
    engine: &Engine,
    config: &ReconcileConfig,
    arns: &[String],
    calls: &CallLog,
) -> Result<Scope, Error> {
    let lm = &engine.clients().license_manager;
    let looks = futures::future::join_all(arns.iter().map(|arn| aws::get_grant(lm, arn, calls)));
    let mut hints: Vec<GrantHint> = Vec::new();
    let mut unclear = None;
    for (arn, look) in arns.iter().zip(looks.await) {
        match look {
            Ok(grant) => match account_of_root_principal(&grant.grantee)
                .and_then(|id| AccountId::parse(id).ok())
            {
                Some(account) => hints.push(GrantHint {
                    account,
                    grant: Some(arn.clone()),
                    status: Some(grant.status.clone()),
                    seen: Some(grant),
                }),
                None => {
                    unclear = Some(format!(
                        "Grant Change of {arn}, granted to {}",
                        grant.grantee
                    ))
                }
            },
            Err(e) if e.retry() == crate::Retry::Retryable => return Err(e),
            Err(e) => unclear = Some(format!("Grant Change of {arn}, unreadable: {e}")),
        }
    }
    Ok(match unclear {
        None => Scope::GrantChanged(hints),
        Some(why) if config.coalesce_queue_url.is_some() => Scope::Coalesced(why),
        Some(_) if config.ous.is_empty() => Scope::Organization,
        Some(_) => Scope::Ous(config.ous.clone()),
    })
}

async fn run(
    engine: &Engine,
    config: &ReconcileConfig,
    scope: &Scope,
    dry_run: bool,
    calls: &CallLog,
    report: &mut ReconcileReport,
) -> Result<(), Error> {
    let clients = engine.clients();
    let (scope, waiting_is_done) = match scope {
        Scope::Followup(inner) => (inner.as_ref(), true),
        scope => (scope, false),
    };
    match scope {
        Scope::Ignored(reason) => {
            tracing::info!(reason = %reason, "change event ignored");
            report.ignored = Some(reason.clone());
            return Ok(());
        }
        Scope::Coalesced(why) => {
            report.coalesced = Some(why.clone());
            let Some(url) = &config.coalesce_queue_url else {
                return Err(Error::Config(
                    "RECONCILE_QUEUE_URL: not set, so there is no queue to coalesce on".into(),
                ));
            };
            if !dry_run {
                aws::send_coalesced(&clients.sqs, url, COALESCED_BODY, calls).await?;
            }
            return Ok(());
        }
        Scope::Departed(claims) if config.offboard.is_none() => {
            // Offboarding is off: nothing to confirm, nothing to write.
            for claim in claims {
                report.skipped.insert(
                    claim.account.to_string(),
                    format!("{} event; OFFBOARD_MODE is off", claim.event),
                );
            }
            return Ok(());
        }
        _ => {}
    }
    let org = engine.organization(calls).await?;
    // Accounts to offboard: confirmed departures, then (organization and OU runs) accounts
    // the listing shows suspended or closed.
    let mut departed: Vec<String> = Vec::new();
    let named = |ids: &[AccountId]| -> Vec<ListedAccount> {
        ids.iter()
            .map(|id| ListedAccount {
                id: id.to_string(),
                name: None,
                state: "ACTIVE".into(),
                ou_id: None,
            })
            .collect()
    };
    let listed: Vec<ListedAccount> = match scope {
        Scope::Organization => aws::list_organization(&clients.organizations, calls).await?,
        Scope::Ous(ous) => {
            let mut all = Vec::new();
            for ou in ous {
                all.extend(aws::list_accounts_under(&clients.organizations, ou, calls).await?);
            }
            all
        }
        Scope::Accounts(ids) => named(ids),
        Scope::GrantChanged(hints) => {
            let mut run: Vec<AccountId> = Vec::new();
            for hint in hints {
                if run.contains(&hint.account) {
                    continue;
                }
                match triage(engine, &org, hint, calls).await? {
                    None => run.push(hint.account.clone()),
                    Some(why) => {
                        report.skipped.insert(
                            hint.account.to_string(),
                            format!(
                                "Grant Change event: nothing for a run to do now ({why}); no run"
                            ),
                        );
                    }
                }
            }
            named(&run)
        }
        Scope::Departed(claims) => {
            let recheck =
                confirm_departures(engine, &org, claims, calls, report, &mut departed).await?;
            named(&recheck)
        }
        Scope::Ignored(_) | Scope::Coalesced(_) | Scope::GrantArns(_) | Scope::Followup(_) => {
            Vec::new()
        }
    };
    report.accounts_listed = listed.len();
    let mut seen = BTreeSet::new();
    for account in &listed {
        if !seen.insert(account.id.clone()) {
            continue;
        }
        if account.id == org.management_account {
            report
                .skipped
                .insert(account.id.clone(), "management account".into());
        } else if engine.config().self_account_id.as_ref().map(|a| a.as_str())
            == Some(account.id.as_str())
        {
            report.skipped.insert(
                account.id.clone(),
                "the account ct-entitlements runs in".into(),
            );
        } else if !matches!(
            account.state.as_str(),
            "ACTIVE" | "SUSPENDED" | "PENDING_CLOSURE" | "CLOSED"
        ) {
            // PENDING_ACTIVATION and newer states: on its way in, never offboarded; Control
            // Tower's event or the next reconcile onboards it.
            report.skipped.insert(
                account.id.clone(),
                format!("state {} (not ready yet)", account.state),
            );
        } else if account.state != "ACTIVE" {
            report
                .skipped
                .insert(account.id.clone(), format!("state {}", account.state));
            departed.push(account.id.clone());
        } else {
            report.onboard.push(account.id.clone());
        }
    }
    // Named accounts are always run; an organization or OU run queues only the accounts the
    // grantor's listings show short of an ACTIVE grant.
    if matches!(scope, Scope::Organization | Scope::Ous(_)) {
        let candidates: Vec<&ListedAccount> = listed
            .iter()
            .filter(|a| report.onboard.contains(&a.id))
            .collect();
        let (needs, retiring) = changed_accounts(
            engine,
            config,
            &org,
            &candidates,
            waiting_is_done,
            calls,
            report,
        )
        .await?;
        if *scope == Scope::Organization {
            retire_parents(engine, &retiring, dry_run, calls, report).await;
        }
        report.onboard.retain(|id| needs.contains_key(id));
        report.needs = needs;
    }
    let ou_of: HashMap<&str, &str> = listed
        .iter()
        .filter_map(|a| Some((a.id.as_str(), a.ou_id.as_deref()?)))
        .collect();

    // Organization and OU runs are backfills: their own queue, so new accounts never wait
    // behind them; accounts named on demand go to the onboarding queue.
    let backfill =
        matches!(scope, Scope::Organization | Scope::Ous(_)) && config.backfill_queue_url.is_some();
    let queue_url = match (&config.backfill_queue_url, backfill) {
        (Some(url), true) => url,
        _ => &config.onboarding_queue_url,
    };
    if !dry_run {
        let bodies = report
            .onboard
            .iter()
            .map(|id| {
                serde_json::to_string(&OnboardRequest {
                    account_id: id.clone(),
                    reason: Some(
                        if matches!(scope, Scope::GrantChanged(_)) {
                            crate::event::GRANT_CHANGE_REASON
                        } else {
                            "reconcile"
                        }
                        .into(),
                    ),
                    attempt: 0,
                    first_seen: None,
                    activations: Vec::new(),
                    ou_id: ou_of.get(id.as_str()).map(|ou| (*ou).to_string()),
                    backfill,
                })
                .map_err(|e| Error::InvalidInput(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        report.enqueued = aws::send_batch(&clients.sqs, queue_url, &bodies, calls).await?;
    }

    let Some(mode) = config.offboard else {
        return Ok(());
    };
    if *scope == Scope::Organization {
        // Accounts that hold our grants but are no longer members at all.
        let grants = aws::all_distributed_grants(&clients.license_manager, calls).await?;
        let members: BTreeSet<&str> = listed.iter().map(|a| a.id.as_str()).collect();
        for grant in grants
            .iter()
            .filter(|g| !crate::engine::is_terminal(&g.status))
        {
            if let Some(id) = account_of_root_principal(&grant.grantee) {
                if !members.contains(id) && !departed.iter().any(|d| d == id) {
                    departed.push(id.to_string());
                }
            }
        }
    }
    report.offboard = departed.clone();
    if dry_run {
        return Ok(());
    }
    let ids: Vec<AccountId> = departed
        .iter()
        .filter_map(|d| AccountId::parse(d).ok())
        .collect();
    let trigger = match scope {
        Scope::Departed(_) => "event:offboard",
        _ => "reconcile:offboard",
    };
    report.offboarded = offboard_all(engine, &ids, mode, trigger).await;
    Ok(())
}

/// Whether the account of a `Grant Change` hint needs a run now (`None`) or not (why): the
/// event's status where it says enough (no call), else the grant and its parent (`GetGrant`,
/// skipped when the event named only the grant and it was read already), else the account's
/// listings ([`settled`]).
async fn triage(
    engine: &Engine,
    org: &OrgInfo,
    hint: &GrantHint,
    calls: &CallLog,
) -> Result<Option<String>, Error> {
    let lm = &engine.clients().license_manager;
    match (
        hint_action(hint.status.as_deref(), hint.grant.is_some()),
        &hint.grant,
    ) {
        (HintAction::Run, _) => Ok(None),
        (HintAction::Nothing, _) => Ok(Some(format!(
            "its grant is {}",
            hint.status.as_deref().unwrap_or("?")
        ))),
        (HintAction::Look, Some(arn)) => {
            let grant = match &hint.seen {
                Some(seen) => seen.clone(),
                None => aws::get_grant(lm, arn, calls).await?,
            };
            if !matches!(
                grant.status.as_str(),
                crate::decide::status::DELETED | crate::decide::status::REJECTED
            ) {
                let parent = match grant.parent_arn.as_str() {
                    p if crate::ids::is_grant_arn(p) && grant.status == "DISABLED" => {
                        Some(aws::get_grant(lm, p, calls).await?)
                    }
                    _ => None,
                };
                return Ok(after_look(&grant, parent.as_ref()));
            }
            settled(engine, org, &hint.account, calls).await
        }
        _ => settled(engine, org, &hint.account, calls).await,
    }
}

/// Whether an account a `Grant Change` event names needs nothing (`Some(why)`: every license
/// its selection asks for has an ACTIVE grant, the account's own under a parent in
/// organization/OU mode, with no grant of ours left to retire) or a run (`None`). Read from the
/// grantor's side with the same rules as a reconcile ([`needs_work`]), but for this account
/// only: its grants, and per organization/OU-mode license its children and the parents that
/// cover it. Where anything is unclear it runs.
pub(crate) async fn settled(
    engine: &Engine,
    org: &OrgInfo,
    account: &AccountId,
    calls: &CallLog,
) -> Result<Option<String>, Error> {
    let lm = &engine.clients().license_manager;
    let config = engine.config();
    let principal = account.root_principal(&config.partition);
    let (wanted, own, org_grants) = futures::try_join!(
        engine.selection_of(account),
        aws::grants_to_principal(lm, &principal, calls),
        aws::grants_to_principal(lm, &org.arn, calls),
    )?;
    let Wanted::Licenses { arns, .. } = &wanted else {
        return Ok(None);
    };
    let held = engine.held_licenses_logged(calls).await?;
    let modes: HashMap<String, Mode> = held
        .iter()
        .map(|l| {
            let sku = l.sku.as_deref().unwrap_or_default();
            (l.arn.clone(), config.mode_of(&l.arn, sku))
        })
        .filter(|(_, m)| *m != Mode::Account)
        .collect();
    let mut index = GrantIndex::new(modes.clone(), &config.grant_name_prefix);
    for license in arns {
        let mut grants: Vec<GrantView> = own
            .iter()
            .chain(org_grants.iter())
            .filter(|g| &g.license_arn == license)
            .cloned()
            .collect();
        if modes.contains_key(license) {
            match aws::organization_received_grants(lm, license, &principal, calls).await {
                Ok(children) => grants.extend(children),
                // A delegated administrator may not read them: run the account.
                Err(e) if e.aws_code().is_some_and(|c| c.starts_with("AccessDenied")) => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
        index.add(license, &grants);
    }
    Ok(match needs_run_now(account.as_str(), &wanted, &index) {
        None => Some(
            "each selected license has an ACTIVE grant, or one waiting on License Manager whose end sends its own event".into(),
        ),
        Some(_) => None,
    })
}

/// Confirms each departure an event claims ([`decide_departure`]): what needs no read is
/// screened first, then one `DescribeAccount` per claim. Confirmed accounts go to `departed`,
/// accounts still ACTIVE are returned to be re-checked, the rest are reported skipped. An error
/// of the read fails the run as it is (a throttle stays retryable): nothing is acted on
/// unconfirmed.
async fn confirm_departures(
    engine: &Engine,
    org: &OrgInfo,
    claims: &[Departure],
    calls: &CallLog,
    report: &mut ReconcileReport,
    departed: &mut Vec<String>,
) -> Result<Vec<AccountId>, Error> {
    let self_account = engine
        .config()
        .self_account_id
        .as_ref()
        .map(AccountId::as_str);
    let mut recheck = Vec::new();
    for claim in claims {
        let action = match screen_departure(claim, &org.management_account, self_account) {
            Some(action) => action,
            None => {
                let observed = match aws::account_state(
                    &engine.clients().organizations,
                    &claim.account,
                    calls,
                )
                .await?
                {
                    None => Observed::Gone,
                    Some(state) => Observed::State(state),
                };
                decide_departure(claim, &org.management_account, self_account, &observed)
            }
        };
        let id = claim.account.to_string();
        tracing::info!(account = %id, action = ?action, "departure event");
        match action {
            DepartureAction::Offboard(why) => {
                report.skipped.insert(id.clone(), why);
                if !departed.contains(&id) {
                    departed.push(id);
                }
            }
            DepartureAction::Recheck(why) => {
                report.needs.insert(id, why);
                recheck.push(claim.account.clone());
            }
            DepartureAction::Ignore(why) => {
                report.skipped.insert(id, why);
            }
        }
    }
    Ok(recheck)
}

/// Offboards `ids` (at most MAX_CONCURRENT_ACCOUNTS at once), one report each.
async fn offboard_all(
    engine: &Engine,
    ids: &[AccountId],
    mode: OffboardMode,
    trigger: &str,
) -> Vec<AccountReport> {
    futures::stream::iter(ids.iter())
        .map(|id| engine.offboard(id, None, mode, trigger))
        .buffered(engine.config().max_concurrent_accounts)
        .collect()
        .await
}

/// The accounts among `candidates` that need a run, with the reason: the selection of each
/// (its OU from the listing, its tags only when a setting reads tags), then one grantor-side
/// listing per selected license (`ListDistributedGrants` by license, and
/// `ListReceivedGrantsForOrganization` when an organization or OU grant exists for it). No
/// role is assumed and nothing is read per account unless tags decide the selection.
async fn changed_accounts(
    engine: &Engine,
    config: &ReconcileConfig,
    org: &OrgInfo,
    candidates: &[&ListedAccount],
    waiting_is_done: bool,
    calls: &CallLog,
    report: &mut ReconcileReport,
) -> Result<(BTreeMap<String, String>, Vec<(GrantView, usize)>), Error> {
    let dry_run = report.dry_run;
    let clients = engine.clients();
    let held = engine.held_licenses_logged(calls).await?;
    // Tags: no bulk read exists in Organizations, so this is one call per account, and only
    // when ACCOUNT_TAG_FILTER or LICENSES_TAG_KEY is set.
    let tags: Vec<Vec<(String, String)>> = if engine.reads_tags() {
        futures::stream::iter(candidates.iter())
            .map(|a| aws::account_tags(&clients.organizations, &a.id, calls))
            .buffered(engine.config().max_concurrent_accounts)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?
    } else {
        vec![Vec::new(); candidates.len()]
    };
    // The OUs above each candidate's, where a nested OU inherits `ou`-mode licenses (each OU's
    // parent read once per container; no call otherwise).
    let mut above: HashMap<Option<String>, Vec<String>> = HashMap::new();
    for a in candidates {
        if !above.contains_key(&a.ou_id) {
            let chain = engine.inherited_from(&a.ou_id, calls).await?;
            above.insert(a.ou_id.clone(), chain);
        }
    }
    let wanted: Vec<Wanted> = candidates
        .iter()
        .zip(&tags)
        .map(|(a, t)| {
            let ancestors = above.get(&a.ou_id).map(Vec::as_slice).unwrap_or_default();
            engine.wanted(&a.ou_id, ancestors, t, &held)
        })
        .collect();
    // Organization/OU-mode licenses are listed (and their parents kept) even when no
    // candidate wants them in this run.
    let modes: HashMap<String, Mode> = held
        .iter()
        .map(|l| {
            let sku = l.sku.as_deref().unwrap_or_default();
            (l.arn.clone(), engine.config().mode_of(&l.arn, sku))
        })
        .filter(|(_, m)| *m != Mode::Account)
        .collect();
    let licenses: BTreeSet<&str> = wanted
        .iter()
        .filter_map(|w| match w {
            Wanted::Licenses { arns, unmatched } => {
                report
                    .unmatched_selections
                    .extend(unmatched.iter().cloned());
                Some(arns.iter().map(String::as_str))
            }
            _ => None,
        })
        .flatten()
        .chain(modes.keys().map(String::as_str))
        .collect();
    let mut index = GrantIndex::new(modes.clone(), &engine.config().grant_name_prefix);
    let listings = futures::future::try_join_all(licenses.iter().map(|license| async move {
        let mut grants = aws::license_grants(&clients.license_manager, license, calls).await?;
        if grants.iter().any(|g| is_parent_principal(&g.grantee)) {
            // Children of organization/OU grants; a delegated administrator may not see them,
            // which leaves their accounts queued (their own run looks closer).
            match aws::organization_license_grants(&clients.license_manager, license, calls).await {
                Ok(children) => grants.extend(children),
                Err(e) if e.aws_code().is_some_and(|c| c.starts_with("AccessDenied")) => {}
                Err(e) => return Err(e),
            }
        }
        Ok::<_, Error>((license.to_string(), grants))
    }))
    .await?;
    for (license, grants) in &listings {
        index.add(license, grants);
        // In organization/OU mode the per-account grants are repairs (and a switch's leftovers):
        // they count against the same quota.
        if let Some(warning) =
            quota_warning(license, grants, &engine.config().grant_name_prefix, config)
        {
            report.warnings.push(warning);
        }
    }
    if !modes.is_empty() {
        report.parents = crate::distribution::ensure_parents(
            &clients.license_manager,
            engine.config(),
            org,
            &held,
            &listings,
            dry_run,
            calls,
        )
        .await;
    }
    let mut needs = BTreeMap::new();
    for (account, wanted) in candidates.iter().zip(&wanted) {
        match (wanted, needs_work(&account.id, wanted, &index)) {
            // Excluded (TARGET_OUS, ACCOUNT_TAG_FILTER): reported, not queued.
            (Wanted::Skip(reason), _) => {
                report.skipped.insert(account.id.clone(), reason.clone());
            }
            (_, Some(_))
                if waiting_is_done && needs_run_now(&account.id, wanted, &index).is_none() =>
            {
                report.waiting += 1;
            }
            (_, Some(reason)) => {
                needs.insert(account.id.clone(), reason);
            }
            (_, None) => report.up_to_date += 1,
        }
    }
    // Organization/OU grants of ct-entitlements' own for licenses now in account mode, each with
    // the number of accounts that want the license and do not hold a grant of their own yet.
    let waiting = |license: &str| {
        candidates
            .iter()
            .zip(&wanted)
            .filter(|(account, w)| match w {
                Wanted::Licenses { arns, .. } if arns.iter().any(|a| a == license) => {
                    let only = Wanted::Licenses {
                        arns: vec![license.to_string()],
                        unmatched: Vec::new(),
                    };
                    needs_work(&account.id, &only, &index).is_some()
                }
                Wanted::Unknown(_) => true,
                _ => false,
            })
            .count()
    };
    let retiring: Vec<(GrantView, usize)> = listings
        .iter()
        .filter(|(license, _)| index.retiring.contains(license))
        .flat_map(|(_, grants)| grants.iter())
        .filter(|g| {
            is_parent_principal(&g.grantee)
                && !crate::engine::is_terminal(&g.status)
                && g.status != crate::decide::status::PENDING_DELETE
                && g.name
                    == crate::distribution::parent_grant_name(
                        &engine.config().grant_name_prefix,
                        &g.grantee,
                    )
        })
        .map(|g| (g.clone(), waiting(&g.license_arn)))
        .collect();
    Ok((needs, retiring))
}

/// A switch back from `organization`/`ou` to `account` mode, last step: once no account of the
/// organization still needs a grant of its own for the license (every one that wants it holds
/// one, ACTIVE, which took over from its account-level grant), ct-entitlements' organization/OU
/// grant is deleted (its account-level grants go with it). Until then it is reported with the
/// number of accounts still to switch. Only on an organization run, which sees every account.
async fn retire_parents(
    engine: &Engine,
    retiring: &[(GrantView, usize)],
    dry_run: bool,
    calls: &CallLog,
    report: &mut ReconcileReport,
) {
    for (parent, waiting) in retiring {
        let waiting = *waiting;
        let mut line = ParentReport {
            license_arn: parent.license_arn.clone(),
            mode: Mode::Account,
            principal: parent.grantee.clone(),
            grant_arn: Some(parent.arn.clone()),
            status: Some(parent.status.clone()),
            step: String::new(),
            actions: Vec::new(),
            error: None,
        };
        if waiting > 0 {
            line.step = format!(
                "wait: account mode again; {waiting} account(s) still to take over with a grant of their own"
            );
        } else {
            line.step =
                "DeleteGrant: account mode again, every account holds a grant of its own".into();
            line.actions.push("DeleteGrant".into());
            if !dry_run {
                let lm = &engine.clients().license_manager;
                let reason = "ct-entitlements: the license is distributed per account again (LICENSE_DISTRIBUTION)";
                match aws::delete_grant(lm, &parent.arn, &parent.version, reason, calls).await {
                    Ok(status) => line.status = Some(status),
                    Err(e) => line.error = Some(e.to_string()),
                }
            }
        }
        report.parents.push(line);
    }
}

/// A warning when a license's live per-account grants (its own grants to accounts; children of
/// organization/OU grants do not count) reach `grant_quota_warn_percent` of `grant_quota`.
/// Children are told apart as in [`GrantIndex::add`] (by name, not by `ParentArn`).
pub fn quota_warning(
    license: &str,
    grants: &[GrantView],
    prefix: &str,
    config: &ReconcileConfig,
) -> Option<String> {
    let parents: Vec<GrantView> = grants
        .iter()
        .filter(|g| is_parent_principal(&g.grantee) && !crate::engine::is_terminal(&g.status))
        .cloned()
        .collect();
    let used = grants
        .iter()
        .filter(|g| {
            g.license_arn == license
                && !crate::engine::is_terminal(&g.status)
                && account_of_root_principal(&g.grantee).is_some_and(|account| {
                    let own_name = format!("{prefix}-{account}");
                    crate::decide::source_of(g, &parents, &own_name)
                        == crate::decide::Source::Account
                })
        })
        .count();
    let quota = u64::from(config.grant_quota);
    let threshold = quota * u64::from(config.grant_quota_warn_percent) / 100;
    (used as u64 >= threshold.max(1)).then(|| {
        format!(
            "{license}: {used} of {quota} per-account grants (Service Quotas L-55F04DE6); past the quota new accounts fail: request a higher quota, or grant this license to the organization or to OUs"
        )
    })
}

/// Whether a grantee is an organization or an OU (whose grant's children reach accounts).
fn is_parent_principal(grantee: &str) -> bool {
    grantee.contains(":organization/") || grantee.contains(":ou/")
}

/// The account-level grants seen per (license, account), from grantor-side listings, and
/// each license's distribution mode.
#[derive(Debug, Default)]
pub struct GrantIndex {
    seen: HashMap<(String, String), Vec<Seen>>,
    read: BTreeSet<String>,
    /// Licenses with a live organization/OU grant in their listing.
    parented: BTreeSet<String>,
    /// Licenses with an organization/OU grant changed by someone other than ct-entitlements
    /// (an operator's bulk deactivation): their accounts are left as that change left them.
    paused: BTreeSet<String>,
    /// Account-mode licenses still granted to the organization/OUs by a grant of
    /// ct-entitlements' own (switched back): their children no longer count.
    retiring: BTreeSet<String>,
    modes: HashMap<String, Mode>,
    /// `GRANT_NAME_PREFIX`: names ct-entitlements' own per-account grants.
    prefix: String,
}

#[derive(Debug)]
struct Seen {
    status: String,
    /// Waiting on License Manager, not on a run: a workflow (`PENDING_WORKFLOW`,
    /// `PENDING_DELETE`) or an activation ct-entitlements requested (`DISABLED` with
    /// [`crate::decide::ACTIVATION_STATUS_REASON`]). Its end sends a change event of its own.
    in_flight: bool,
    /// An account-level grant under an organization/OU grant (not made from the license).
    child: bool,
    name: String,
}

impl GrantIndex {
    /// An index for licenses distributed per `modes` (licenses absent: account mode), whose
    /// own grants are named `<prefix>-<account>`.
    pub fn new(modes: HashMap<String, Mode>, prefix: &str) -> Self {
        GrantIndex {
            modes,
            prefix: prefix.to_string(),
            ..GrantIndex::default()
        }
    }

    /// Records the listing of one license (every grant of it that the grantor sees).
    pub fn add(&mut self, license: &str, grants: &[GrantView]) {
        self.read.insert(license.to_string());
        // Children are told from ct-entitlements' own grants by name, never by `ParentArn`
        // (`decide::source_of`); an organization grant covers every account, and the OU
        // grants of a license are taken to cover too (the account's run looks closer).
        let parents: Vec<GrantView> = grants
            .iter()
            .filter(|g| is_parent_principal(&g.grantee) && !crate::engine::is_terminal(&g.status))
            .cloned()
            .collect();
        if !parents.is_empty() {
            self.parented.insert(license.to_string());
        }
        if parents.iter().any(crate::decide::changed_by_operator) {
            self.paused.insert(license.to_string());
        }
        if !self.modes.contains_key(license)
            && parents
                .iter()
                .any(|p| p.name == crate::distribution::parent_grant_name(&self.prefix, &p.grantee))
        {
            self.retiring.insert(license.to_string());
        }
        // A child handed out DISABLED under a bulk-activated parent is being activated by
        // License Manager (the bulk activation reaches it).
        let bulk = parents.iter().any(crate::decide::looks_bulk_activated);
        for g in grants {
            if let Some(account) = account_of_root_principal(&g.grantee) {
                let own_name = format!("{}-{account}", self.prefix);
                let child = crate::decide::source_of(g, &parents, &own_name)
                    == crate::decide::Source::Organization;
                self.seen
                    .entry((license.to_string(), account.to_string()))
                    .or_default()
                    .push(Seen {
                        in_flight: matches!(
                            g.status.as_str(),
                            "PENDING_WORKFLOW" | "PENDING_DELETE"
                        ) || (g.status == "DISABLED"
                            && (g.status_reason.as_deref()
                                == Some(crate::decide::ACTIVATION_STATUS_REASON)
                                || (child && bulk))),
                        status: g.status.clone(),
                        child,
                        name: g.name.clone(),
                    });
            }
        }
    }
}

/// Why `account` needs a run (`None`: every license it should hold has an ACTIVE grant, in
/// organization/OU mode the account-level grant under the parent, with no live per-account
/// grant of ct-entitlements' left beside it). Pure: the reconciler's whole decision, tested
/// case by case.
pub fn needs_work(account: &str, wanted: &Wanted, index: &GrantIndex) -> Option<String> {
    short_of(account, wanted, index, false)
}

/// Whether a run of `account` could do something now (`Some(why)`), for a change event: as
/// [`needs_work`], except that a license whose grant waits on License Manager (a workflow, or
/// an activation ct-entitlements asked for) needs nothing yet. Its end sends a change event
/// of its own, and the chain that waits for it re-checks anyway: an event in the middle of a
/// run or a workflow adds no run.
pub fn needs_run_now(account: &str, wanted: &Wanted, index: &GrantIndex) -> Option<String> {
    short_of(account, wanted, index, true)
}

fn short_of(
    account: &str,
    wanted: &Wanted,
    index: &GrantIndex,
    waiting_is_done: bool,
) -> Option<String> {
    let arns = match wanted {
        Wanted::Skip(_) => return None,
        Wanted::Unknown(why) => return Some(format!("selection unreadable: {why}")),
        Wanted::Licenses { arns, .. } => arns,
    };
    let own_name = format!("{}-{account}", index.prefix);
    let short: Vec<String> = arns
        .iter()
        .filter_map(|license| {
            if !index.read.contains(license) {
                return Some(format!("{license}: not listed"));
            }
            if index.paused.contains(license) {
                // Deactivated in bulk by an operator: a run would only report it.
                return None;
            }
            let seen = index
                .seen
                .get(&(license.clone(), account.to_string()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mode = index.modes.get(license).copied().unwrap_or_default();
            if index.retiring.contains(license) {
                // Switched back to account mode: the account's own grant is what counts.
                let held = seen
                    .iter()
                    .any(|s| !s.child && s.name == own_name && s.status == "ACTIVE");
                return (!held).then(|| {
                    format!(
                        "{license}: account mode again, a grant of its own to take over from the organization/OU grant's"
                    )
                });
            }
            if waiting_is_done && seen.iter().any(|s| s.in_flight) {
                // A grant of the account's for this license waits on License Manager (a
                // repair's workflow, an activation): its end sends its own event.
                return None;
            }
            if waiting_is_done
                && seen.iter().any(|s| s.child)
                && seen.iter().all(|s| crate::engine::is_terminal(&s.status))
            {
                // Its account-level grant under an organization/OU grant was deleted (a failed
                // one cleared by the account's run) and nothing replaced it yet: the run that
                // cleared it re-checks for a new one and repairs after its re-checks; a run now
                // would only wait too. The daily reconcile still queues it.
                return None;
            }
            let counts = |s: &&Seen| mode == Mode::Account || s.child;
            let ours_left = mode != Mode::Account
                && seen.iter().any(|s| {
                    !s.child && s.name == own_name && !crate::engine::is_terminal(&s.status)
                });
            // A repair (or an older grant of ours) ACTIVE under a parent, with no child beside it
            // that could take over or needs clearing: nothing to do until one shows (its run
            // looked and waited already; queueing it every day would restart that for ever).
            // Before a parent exists (a migration planned), it is work.
            let held_without_child = ours_left
                && index.parented.contains(license)
                && seen
                    .iter()
                    .any(|s| !s.child && s.name == own_name && s.status == "ACTIVE")
                && !seen
                    .iter()
                    .any(|s| s.child && !crate::engine::is_terminal(&s.status));
            if (seen.iter().filter(counts).any(|s| s.status == "ACTIVE") && !ours_left)
                || held_without_child
            {
                None
            } else if ours_left {
                Some(format!(
                    "{license}: {} mode, a per-account grant to replace",
                    mode.as_str()
                ))
            } else if !seen.iter().any(|s| counts(&s)) {
                Some(format!("{license}: no grant"))
            } else if waiting_is_done && seen.iter().filter(counts).any(|s| s.in_flight) {
                None
            } else {
                let statuses: Vec<&str> = seen
                    .iter()
                    .filter(counts)
                    .map(|s| s.status.as_str())
                    .collect();
                Some(format!("{license}: grant {}", statuses.join("/")))
            }
        })
        .collect();
    match short.len() {
        0 => None,
        1 => Some(short[0].clone()),
        n => Some(format!("{} (and {} more)", short[0], n - 1)),
    }
}

#[cfg(test)]
mod needs_tests {
    use super::*;

    const A: &str = "210987654321";
    const L1: &str = "arn:aws:license-manager::111122223333:license:l-1";
    const L2: &str = "arn:aws:license-manager::111122223333:license:l-2";

    fn grant(license: &str, grantee: &str, status: &str) -> GrantView {
        GrantView {
            arn: format!("arn:aws:license-manager::111122223333:grant:g-{status}"),
            name: "ct-entitlements".into(),
            license_arn: license.into(),
            status: status.into(),
            version: "1".into(),
            parent_arn: license.into(),
            grantee: grantee.into(),
            status_reason: None,
            activation_behavior: None,
        }
    }

    fn account(id: &str) -> String {
        format!("arn:aws:iam::{id}:root")
    }

    fn wants(arns: &[&str]) -> Wanted {
        Wanted::Licenses {
            arns: arns.iter().map(|a| a.to_string()).collect(),
            unmatched: Vec::new(),
        }
    }

    #[test]
    fn a_license_near_its_grant_quota_is_named_with_the_way_out() {
        let config = ReconcileConfig {
            grant_quota: 10,
            grant_quota_warn_percent: 90,
            ..ReconcileConfig::from_lookup(|k| {
                (k == "ONBOARDING_QUEUE_URL").then(|| "https://sqs.example/q".to_string())
            })
            .expect("valid")
        };
        let own = |i: usize, status: &str| GrantView {
            arn: format!("g-{i}"),
            ..grant(L1, &account(&format!("{:012}", i)), status)
        };
        let child = |i: usize| GrantView {
            parent_arn: "arn:aws:license-manager::111122223333:grant:g-org".into(),
            ..own(100 + i, "ACTIVE")
        };
        // (grants, warned)
        let cases: Vec<(Vec<GrantView>, bool)> = vec![
            ((0..8).map(|i| own(i, "ACTIVE")).collect(), false),
            ((0..9).map(|i| own(i, "ACTIVE")).collect(), true),
            // Terminal grants and organization grants' children do not count.
            (
                (0..8)
                    .map(|i| own(i, "ACTIVE"))
                    .chain([own(20, "DELETED"), own(21, "REJECTED"), child(1), child(2)])
                    .collect(),
                false,
            ),
            ((0..12).map(|i| own(i, "PENDING_WORKFLOW")).collect(), true),
            // Accounts' grants count in any partition (China, GovCloud).
            (
                (0..9)
                    .map(|i| GrantView {
                        grantee: format!("arn:aws-cn:iam::{i:012}:root"),
                        ..own(i, "ACTIVE")
                    })
                    .collect(),
                true,
            ),
        ];
        for (grants, warned) in cases {
            let got = quota_warning(L1, &grants, "ct-entitlements", &config);
            assert_eq!(got.is_some(), warned, "{} grants: {got:?}", grants.len());
            if let Some(w) = got {
                assert!(
                    w.contains("L-55F04DE6") && w.contains("organization"),
                    "{w}"
                );
            }
        }
    }

    #[test]
    fn an_account_needs_a_run_until_each_selected_license_has_an_active_grant() {
        let org = "arn:aws:organizations::111122223333:organization/o-abc1234567";
        let other = account("123456789012");
        // (case, listings per license, wanted, expected reason or None)
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, Vec<GrantView>)>,
            Wanted,
            Option<&'a str>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "active own grant",
                vec![(L1, vec![grant(L1, &account(A), "ACTIVE")])],
                wants(&[L1]),
                None,
            ),
            (
                "no grant",
                vec![(L1, vec![])],
                wants(&[L1]),
                Some("l-1: no grant"),
            ),
            (
                "only another account's",
                vec![(L1, vec![grant(L1, &other, "ACTIVE")])],
                wants(&[L1]),
                Some("l-1: no grant"),
            ),
            (
                "disabled",
                vec![(L1, vec![grant(L1, &account(A), "DISABLED")])],
                wants(&[L1]),
                Some("l-1: grant DISABLED"),
            ),
            (
                "in workflow",
                vec![(L1, vec![grant(L1, &account(A), "PENDING_WORKFLOW")])],
                wants(&[L1]),
                Some("l-1: grant PENDING_WORKFLOW"),
            ),
            (
                "failed beside active",
                vec![(
                    L1,
                    vec![
                        grant(L1, &account(A), "FAILED_WORKFLOW"),
                        grant(L1, &account(A), "ACTIVE"),
                    ],
                )],
                wants(&[L1]),
                None,
            ),
            (
                "active grant in another partition (GovCloud)",
                vec![(
                    L1,
                    vec![grant(L1, "arn:aws-us-gov:iam::210987654321:root", "ACTIVE")],
                )],
                wants(&[L1]),
                None,
            ),
            (
                "org grant alone does not entitle",
                vec![(L1, vec![grant(L1, org, "ACTIVE")])],
                wants(&[L1]),
                Some("l-1: no grant"),
            ),
            (
                "active child of an org grant",
                vec![(
                    L1,
                    vec![grant(L1, org, "ACTIVE"), grant(L1, &account(A), "ACTIVE")],
                )],
                wants(&[L1]),
                None,
            ),
            (
                "license not listed",
                vec![],
                wants(&[L1]),
                Some("l-1: not listed"),
            ),
            (
                "one of two short",
                vec![(L1, vec![grant(L1, &account(A), "ACTIVE")]), (L2, vec![])],
                wants(&[L1, L2]),
                Some("l-2: no grant"),
            ),
            (
                "both short",
                vec![(L1, vec![]), (L2, vec![])],
                wants(&[L1, L2]),
                Some("(and 1 more)"),
            ),
            ("nothing selected", vec![], wants(&[]), None),
            ("excluded", vec![], Wanted::Skip("TARGET_OUS".into()), None),
            (
                "unreadable selection",
                vec![],
                Wanted::Unknown("bad tag".into()),
                Some("selection unreadable: bad tag"),
            ),
        ];
        for (case, listings, wanted, expected) in cases {
            let mut index = GrantIndex::default();
            for (license, grants) in &listings {
                index.add(license, grants);
            }
            let got = needs_work(A, &wanted, &index);
            match expected {
                None => assert_eq!(got, None, "{case}"),
                Some(part) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(part)),
                    "{case}: {got:?} lacks {part:?}"
                ),
            }
        }
    }

    #[test]
    fn a_change_event_runs_an_account_only_when_a_run_could_act_now() {
        let requested = |status: &str| GrantView {
            status_reason: Some(crate::decide::ACTIVATION_STATUS_REASON.into()),
            ..grant(L1, &account(A), status)
        };
        let paused = GrantView {
            status_reason: Some("paused by hand".into()),
            ..grant(L1, &account(A), "DISABLED")
        };
        // (case, listing of L1 (+ L2), reconcile needs work, a change event runs it)
        let cases: Vec<(&str, Vec<GrantView>, bool, bool)> = vec![
            (
                "active",
                vec![grant(L1, &account(A), "ACTIVE")],
                false,
                false,
            ),
            ("no grant", vec![], true, true),
            (
                "workflow running",
                vec![grant(L1, &account(A), "PENDING_WORKFLOW")],
                true,
                false,
            ),
            (
                "being deleted",
                vec![grant(L1, &account(A), "PENDING_DELETE")],
                true,
                false,
            ),
            (
                "workflow done, to accept",
                vec![grant(L1, &account(A), "PENDING_ACCEPT")],
                true,
                true,
            ),
            (
                "activation we asked for, processing",
                vec![requested("DISABLED")],
                true,
                false,
            ),
            ("deactivated by hand", vec![paused], true, true),
            (
                "accepted, never activated",
                vec![grant(L1, &account(A), "DISABLED")],
                true,
                true,
            ),
            (
                "workflow failed",
                vec![grant(L1, &account(A), "FAILED_WORKFLOW")],
                true,
                true,
            ),
        ];
        let org = "arn:aws:organizations::111122223333:organization/o-abc1234567";
        let parent = |version: &str| GrantView {
            arn: "arn:aws:license-manager::111122223333:grant:g-org".into(),
            name: "ct-entitlements-organization".into(),
            version: version.into(),
            status_reason: (version != "1")
                .then(|| crate::decide::BULK_ACTIVATION_STATUS_REASON.to_string()),
            ..grant(L1, org, "WORKFLOW_COMPLETED")
        };
        let child = |status: &str| GrantView {
            arn: "arn:aws:license-manager::111122223333:grant:g-child".into(),
            name: "child".into(),
            parent_arn: "arn:aws:license-manager::111122223333:grant:g-org".into(),
            ..grant(L1, &account(A), status)
        };
        let in_organization_mode = [
            (
                "child under a bulk-activated parent, being activated",
                vec![parent("2"), child("DISABLED")],
                true,
                false,
            ),
            (
                "child under a parent never bulk-activated",
                vec![parent("1"), child("DISABLED")],
                true,
                true,
            ),
            (
                "active child",
                vec![parent("2"), child("ACTIVE")],
                false,
                false,
            ),
            (
                "a repair in its workflow beside the deleted child",
                vec![
                    parent("2"),
                    child("DELETED"),
                    GrantView {
                        arn: "arn:aws:license-manager::111122223333:grant:g-repair".into(),
                        name: format!("ct-entitlements-{A}"),
                        ..grant(L1, &account(A), "PENDING_WORKFLOW")
                    },
                ],
                true,
                false,
            ),
            (
                "a failed child just cleared, nothing beside it yet: its run re-checks, then repairs",
                vec![parent("2"), child("DELETED")],
                true,
                false,
            ),
        ];
        let modes = |mode: Mode| HashMap::from([(L1.to_string(), mode)]);
        let all = cases.into_iter().map(|c| (Mode::Account, c)).chain(
            in_organization_mode
                .into_iter()
                .map(|c| (Mode::Organization, c)),
        );
        for (mode, (case, listing, reconcile, event)) in all {
            let mut index = GrantIndex::new(modes(mode), "ct-entitlements");
            index.add(L1, &listing);
            assert_eq!(
                needs_work(A, &wants(&[L1]), &index).is_some(),
                reconcile,
                "{case}"
            );
            assert_eq!(
                needs_run_now(A, &wants(&[L1]), &index).is_some(),
                event,
                "{case}"
            );
            // A second license the account lacks outright is always worth the run.
            index.add(L2, &[]);
            assert!(
                needs_run_now(A, &wants(&[L1, L2]), &index).is_some(),
                "{case} + L2"
            );
        }
    }

    #[test]
    fn in_organization_mode_only_the_child_counts_and_our_grant_must_go() {
        let ours = |status: &str| GrantView {
            name: format!("ct-entitlements-{A}"),
            ..grant(L1, &account(A), status)
        };
        let child = |status: &str| GrantView {
            arn: format!("g-child-{status}"),
            name: "ct-entitlements-organization".into(),
            parent_arn: "arn:aws:license-manager::111122223333:grant:g-org".into(),
            ..grant(L1, &account(A), status)
        };
        let by_hand = GrantView {
            name: "by-hand".into(),
            ..grant(L1, &account(A), "ACTIVE")
        };
        let org_grant = GrantView {
            arn: "arn:aws:license-manager::111122223333:grant:g-org".into(),
            name: "ct-entitlements-organization".into(),
            ..grant(
                L1,
                "arn:aws:organizations::111122223333:organization/o-abc1234567",
                "WORKFLOW_COMPLETED",
            )
        };
        let cases: Vec<(&str, Vec<GrantView>, Option<&str>)> = vec![
            ("active child", vec![child("ACTIVE")], None),
            (
                "child disabled",
                vec![child("DISABLED")],
                Some("grant DISABLED"),
            ),
            ("nothing", vec![], Some("no grant")),
            // Our grant ACTIVE and no child beside it (an older grant whose child has not come,
            // or a repair): its run looked and waited already; not queued again every day.
            (
                "only our old grant or a repair, under a parent",
                vec![org_grant.clone(), ours("ACTIVE")],
                None,
            ),
            // Before any parent exists (a switch to organization mode, planned): work.
            (
                "only our old grant, no parent yet",
                vec![ours("ACTIVE")],
                Some("replace"),
            ),
            (
                "only our grant, not active yet",
                vec![ours("DISABLED")],
                Some("replace"),
            ),
            (
                "a repair beside a failed child",
                vec![ours("ACTIVE"), child("FAILED_WORKFLOW")],
                Some("replace"),
            ),
            // A child is told by its name, whatever its ParentArn (`childParentArn`), once an
            // organization grant of the license is listed.
            (
                "a child whose ParentArn is the license",
                vec![
                    org_grant.clone(),
                    GrantView {
                        parent_arn: L1.into(),
                        ..child("ACTIVE")
                    },
                ],
                None,
            ),
            (
                "a child with no ParentArn beside our grant",
                vec![
                    org_grant.clone(),
                    GrantView {
                        parent_arn: String::new(),
                        ..child("ACTIVE")
                    },
                    ours("ACTIVE"),
                ],
                Some("replace"),
            ),
            (
                "child beside our old grant",
                vec![child("ACTIVE"), ours("ACTIVE")],
                Some("replace"),
            ),
            (
                "our old grant disabled by the takeover",
                vec![child("ACTIVE"), ours("DISABLED")],
                Some("replace"),
            ),
            (
                "our old grant deleted",
                vec![child("ACTIVE"), ours("DELETED")],
                None,
            ),
            (
                "a grant by hand does not count",
                vec![by_hand.clone()],
                Some("no grant"),
            ),
            (
                "a grant by hand is left alone",
                vec![by_hand, child("ACTIVE")],
                None,
            ),
        ];
        for mode in [Mode::Organization, Mode::Ou] {
            for (case, grants, expected) in &cases {
                let mut index =
                    GrantIndex::new(HashMap::from([(L1.to_string(), mode)]), "ct-entitlements");
                index.add(L1, grants);
                let got = needs_work(A, &wants(&[L1]), &index);
                match expected {
                    None => assert_eq!(got, None, "{mode:?} {case}"),
                    Some(part) => assert!(
                        got.as_deref().is_some_and(|g| g.contains(part)),
                        "{mode:?} {case}: {got:?} lacks {part:?}"
                    ),
                }
            }
        }
        // An organization grant changed by someone else (an operator's bulk deactivation: a new
        // version without ct-entitlements' bulk-activation reason): its accounts are left as
        // they are, whatever they hold.
        let paused = GrantView {
            version: "3".into(),
            status_reason: Some("paused by the licensing team".into()),
            ..org_grant.clone()
        };
        for mode in [Mode::Organization, Mode::Ou] {
            for grants in [
                vec![paused.clone(), child("DISABLED")],
                vec![paused.clone()],
                vec![paused.clone(), child("DISABLED"), ours("ACTIVE")],
            ] {
                let mut index =
                    GrantIndex::new(HashMap::from([(L1.to_string(), mode)]), "ct-entitlements");
                index.add(L1, &grants);
                assert_eq!(
                    needs_work(A, &wants(&[L1]), &index),
                    None,
                    "{mode:?} {grants:?}"
                );
            }
            // Bulk-activated by ct-entitlements itself: a DISABLED child is work.
            let ours_bulk = GrantView {
                version: "2".into(),
                status_reason: Some(crate::decide::BULK_ACTIVATION_STATUS_REASON.into()),
                ..org_grant.clone()
            };
            let mut index =
                GrantIndex::new(HashMap::from([(L1.to_string(), mode)]), "ct-entitlements");
            index.add(L1, &[ours_bulk, child("DISABLED")]);
            assert!(needs_work(A, &wants(&[L1]), &index).is_some(), "{mode:?}");
        }
        // The same listing in account mode: our grant is what counts.
        let mut index = GrantIndex::new(HashMap::new(), "ct-entitlements");
        index.add(L1, &[ours("ACTIVE")]);
        assert_eq!(needs_work(A, &wants(&[L1]), &index), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> ReconcileConfig {
        ReconcileConfig::from_lookup(|k| {
            (k == "ONBOARDING_QUEUE_URL")
                .then(|| "https://sqs.us-east-1.amazonaws.com/1/q".to_string())
        })
        .expect("valid")
    }

    fn cloudtrail(event_name: &str, request: Value) -> Value {
        json!({
            "version": "0", "id": "e", "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.organizations", "account": "111122223333",
            "time": "2026-11-30T00:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {
                "eventVersion": "1.08", "eventSource": "organizations.amazonaws.com",
                "eventName": event_name, "awsRegion": "us-east-1",
                "requestParameters": request, "responseElements": null
            }
        })
    }

    const MGMT: &str = "111122223333";

    fn departure(event: &str) -> Departure {
        Departure {
            account: AccountId::parse("210987654321").expect("valid id"),
            event: event.into(),
            sender: Some(MGMT.into()),
        }
    }

    /// A denied or failed call's CloudTrail record, as Organizations writes it.
    fn denied(event_name: &str, request: Value, code: Value) -> Value {
        let mut e = cloudtrail(event_name, request);
        e["detail"]["errorCode"] = code;
        e["detail"]["errorMessage"] = json!("You don't have permissions to access this resource.");
        e
    }

    /// Issue 16 §2: an Organizations event is a claim; offboarding needs the call to have been
    /// carried out (no `errorCode`), the management account as its sender, and Organizations'
    /// own word (gone, or SUSPENDED / PENDING_CLOSURE / CLOSED). Each row: the event, what
    /// DescribeAccount says, the action (`None`: ignored before any AWS call).
    #[test]
    fn departures_are_offboarded_only_when_organizations_confirms_them() {
        #[derive(Debug, PartialEq)]
        enum Act {
            Offboard,
            Recheck,
            Ignore,
            NoCall,
        }
        let gone = || Observed::Gone;
        let state = |s: &str| Observed::State(s.into());
        let from = |sender: Value| {
            let mut e = cloudtrail("CloseAccount", json!({"accountId": "210987654321"}));
            e["account"] = sender;
            e
        };
        let close = || cloudtrail("CloseAccount", json!({"accountId": "210987654321"}));
        let remove = || {
            cloudtrail(
                "RemoveAccountFromOrganization",
                json!({"accountId": "210987654321"}),
            )
        };
        let cases: Vec<(&str, Value, Observed, Act)> = vec![
            // Denied or failed calls: nothing, whatever the account's state.
            (
                "denied close",
                denied(
                    "CloseAccount",
                    json!({"accountId": "210987654321"}),
                    json!("AccessDenied"),
                ),
                state("ACTIVE"),
                Act::NoCall,
            ),
            (
                "denied close of a suspended account",
                denied(
                    "CloseAccount",
                    json!({"accountId": "210987654321"}),
                    json!("AccessDenied"),
                ),
                state("SUSPENDED"),
                Act::NoCall,
            ),
            (
                "failed removal",
                denied(
                    "RemoveAccountFromOrganization",
                    json!({"accountId": "210987654321"}),
                    json!("ConstraintViolationException"),
                ),
                gone(),
                Act::NoCall,
            ),
            (
                "odd errorCode",
                denied(
                    "CloseAccount",
                    json!({"accountId": "210987654321"}),
                    json!({"x": 1}),
                ),
                gone(),
                Act::NoCall,
            ),
            (
                "empty errorCode",
                denied(
                    "CloseAccount",
                    json!({"accountId": "210987654321"}),
                    json!(""),
                ),
                gone(),
                Act::NoCall,
            ),
            // A denied move or tag changed nothing either.
            (
                "denied move",
                denied(
                    "MoveAccount",
                    json!({"accountId": "210987654321"}),
                    json!("AccessDenied"),
                ),
                state("ACTIVE"),
                Act::NoCall,
            ),
            // Carried out: Organizations decides.
            (
                "close, closing",
                close(),
                state("PENDING_CLOSURE"),
                Act::Offboard,
            ),
            (
                "close, suspended",
                close(),
                state("SUSPENDED"),
                Act::Offboard,
            ),
            ("close, closed", close(), state("CLOSED"), Act::Offboard),
            ("close, gone", close(), gone(), Act::Offboard),
            ("removal, gone", remove(), gone(), Act::Offboard),
            (
                "removal, suspended",
                remove(),
                state("SUSPENDED"),
                Act::Offboard,
            ),
            (
                "close, still active",
                close(),
                state("ACTIVE"),
                Act::Recheck,
            ),
            (
                "removal, still active",
                remove(),
                state("ACTIVE"),
                Act::Recheck,
            ),
            (
                "close, activating",
                close(),
                state("PENDING_ACTIVATION"),
                Act::Ignore,
            ),
            (
                "close, unknown state",
                close(),
                state("SOMETHING_NEW"),
                Act::Ignore,
            ),
            ("close, no state", close(), state(""), Act::Ignore),
            // errorCode null: the call was carried out.
            (
                "null errorCode",
                denied(
                    "CloseAccount",
                    json!({"accountId": "210987654321"}),
                    Value::Null,
                ),
                gone(),
                Act::Offboard,
            ),
            // Not sent by the management account: ignored even when the account is gone.
            (
                "another sender",
                from(json!("999999999999")),
                gone(),
                Act::Ignore,
            ),
            ("no sender", from(Value::Null), gone(), Act::Ignore),
            (
                "sender not a string",
                from(json!(111122223333_u64)),
                gone(),
                Act::Ignore,
            ),
        ];
        for (case, event, observed, expected) in cases {
            let got = match parse(&event, &config()) {
                Ok((Scope::Ignored(reason), _)) => {
                    assert!(reason.contains("errorCode"), "{case}: {reason}");
                    Act::NoCall
                }
                Ok((Scope::Departed(claims), _)) => {
                    assert_eq!(claims.len(), 1, "{case}");
                    match decide_departure(&claims[0], MGMT, None, &observed) {
                        DepartureAction::Offboard(_) => Act::Offboard,
                        DepartureAction::Recheck(_) => Act::Recheck,
                        DepartureAction::Ignore(_) => Act::Ignore,
                    }
                }
                other => panic!("{case}: {other:?}"),
            };
            assert_eq!(got, expected, "{case}");
        }
        // The management account and the account ct-entitlements runs in are never offboarded.
        let mut claim = departure("CloseAccount");
        claim.account = AccountId::parse(MGMT).expect("valid id");
        assert!(matches!(
            decide_departure(&claim, MGMT, None, &Observed::Gone),
            DepartureAction::Ignore(r) if r.contains("management account")
        ));
        let claim = departure("CloseAccount");
        assert!(matches!(
            decide_departure(&claim, MGMT, Some("210987654321"), &Observed::Gone),
            DepartureAction::Ignore(r) if r.contains("runs in")
        ));
        // What needs no read is known before one.
        assert_eq!(
            screen_departure(&departure("CloseAccount"), MGMT, None),
            None
        );
        // Reasons stay bounded whatever the event carries.
        let mut huge = denied("CloseAccount", json!({}), json!("x".repeat(1 << 20)));
        huge["detail"]["eventName"] = json!("y".repeat(1 << 20));
        match parse(&huge, &config()) {
            Ok((Scope::Ignored(reason), _)) => assert!(reason.len() < 400, "{}", reason.len()),
            other => panic!("{other:?}"),
        }
        let mut claim = departure("CloseAccount");
        claim.sender = Some("z".repeat(1 << 20));
        match decide_departure(&claim, MGMT, None, &Observed::Gone) {
            DepartureAction::Ignore(reason) => assert!(reason.len() < 400, "{}", reason.len()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn change_events_name_what_changed_and_the_rest_reconciles() {
        let c = config();
        let a = || AccountId::parse("210987654321").expect("valid id");
        let cases: Vec<(Value, Scope)> = vec![
            (
                cloudtrail(
                    "MoveAccount",
                    json!({"accountId": "210987654321", "sourceParentId": "ou-ab12-11111111", "destinationParentId": "ou-ab12-22222222"}),
                ),
                Scope::Accounts(vec![a()]),
            ),
            (
                cloudtrail(
                    "TagResource",
                    json!({"resourceId": "210987654321", "tags": [{"key": "k", "value": "v"}]}),
                ),
                Scope::Accounts(vec![a()]),
            ),
            (
                cloudtrail(
                    "UntagResource",
                    json!({"resourceId": "210987654321", "tagKeys": ["k"]}),
                ),
                Scope::Accounts(vec![a()]),
            ),
            // A tag on an OU selects nothing.
            (
                cloudtrail("TagResource", json!({"resourceId": "ou-ab12-22222222"})),
                Scope::Accounts(vec![]),
            ),
            (
                cloudtrail(
                    "RemoveAccountFromOrganization",
                    json!({"accountId": "210987654321"}),
                ),
                Scope::Departed(vec![departure("RemoveAccountFromOrganization")]),
            ),
            (
                cloudtrail("CloseAccount", json!({"accountId": "210987654321"})),
                Scope::Departed(vec![departure("CloseAccount")]),
            ),
            // Not understood: the configured scope, never an error.
            (
                cloudtrail("MoveAccount", json!({"accountId": 7})),
                Scope::Organization,
            ),
            (cloudtrail("CreateAccount", json!({})), Scope::Organization),
            (
                json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                       "detail": {"grant": {"granteePrincipal": "arn:aws:iam::210987654321:root"}}}),
                Scope::GrantChanged(vec![GrantHint::account(a())]),
            ),
            (
                json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                       "detail": {"grant": {"granteePrincipal": "arn:aws-cn:iam::210987654321:root"}}}),
                Scope::GrantChanged(vec![GrantHint::account(a())]),
            ),
            (
                // The grantee reading: the grant (resources), its status; its parent ignored.
                json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                       "resources": ["arn:aws:license-manager::111122223333:grant:g-1"],
                       "detail": {"grantArn": "arn:aws:license-manager::111122223333:grant:g-1",
                                  "granteePrincipal": "arn:aws:iam::210987654321:root",
                                  "status": "PENDING_ACCEPT",
                                  "parentArn": "arn:aws:license-manager::111122223333:grant:g-org"}}),
                Scope::GrantChanged(vec![GrantHint {
                    grant: Some("arn:aws:license-manager::111122223333:grant:g-1".into()),
                    status: Some("PENDING_ACCEPT".into()),
                    ..GrantHint::account(a())
                }]),
            ),
            (
                // Two statuses in the detail: neither is taken.
                json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                       "detail": {"granteePrincipal": "arn:aws:iam::210987654321:root",
                                  "status": "ACTIVE", "previous": "DISABLED"}}),
                Scope::GrantChanged(vec![GrantHint::account(a())]),
            ),
            (
                json!({"source": "aws.license-manager", "detail-type": "Grant Change", "detail": "?"}),
                Scope::Organization,
            ),
            (
                json!({"source": "aws.license-manager", "detail-type": "License Change", "detail": {}}),
                Scope::Organization,
            ),
            (
                json!({"source": "aws.license-manager"}),
                Scope::Organization,
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(parse(&event, &c).ok(), Some((expected, false)), "{event}");
        }
        // A Grant Change naming a grant but no account: the grant is read; with a
        // coalescing queue, what names nothing waits there.
        let g = "arn:aws:license-manager::111122223333:grant:g-0abc";
        let coalescing = ReconcileConfig {
            coalesce_queue_url: Some("https://sqs.us-east-1.amazonaws.com/1/r.fifo".into()),
            ..config()
        };
        let cases = [
            (
                json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                       "resources": [g], "detail": {}}),
                Scope::GrantArns(vec![g.into()]),
            ),
            (
                json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                       "detail": {"grantArn": g, "again": [g, "g-not-an-arn"]}}),
                Scope::GrantArns(vec![g.into()]),
            ),
            (
                json!({"source": "aws.license-manager", "detail-type": "Grant Change", "detail": {}}),
                Scope::Coalesced("aws.license-manager Grant Change".into()),
            ),
            (
                json!({"source": "aws.license-manager", "detail-type": "License Change", "detail": {}}),
                Scope::Coalesced("aws.license-manager License Change".into()),
            ),
            (
                cloudtrail("CreateAccount", json!({})),
                Scope::Coalesced(
                    "aws.organizations AWS API Call via CloudTrail CreateAccount".into(),
                ),
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(
                parse(&event, &coalescing).ok(),
                Some((expected, false)),
                "{event}"
            );
        }
        // Other sources are still held to the schedule's exact shape.
        assert!(parse(&json!({"source": "aws.s3", "detail-type": "x"}), &c).is_err());
    }

    #[test]
    fn a_grant_change_is_triaged_from_its_status_then_from_the_grant() {
        use HintAction::*;
        // (status, grant named, first step)
        for (status, named, action) in [
            (Some("PENDING_ACCEPT"), true, Run),
            (Some("FAILED_WORKFLOW"), true, Run),
            (Some("FAILED_WORKFLOW"), false, Run),
            (Some("ACTIVE"), true, Nothing),
            (Some("PENDING_WORKFLOW"), true, Nothing),
            (Some("PENDING_DELETE"), true, Nothing),
            (Some("WORKFLOW_COMPLETED"), true, Nothing),
            (Some("DISABLED"), true, Look),
            (None, true, Look),
            (Some("DISABLED"), false, Read),
            (None, false, Read),
            (Some("DELETED"), true, Read),
            (Some("REJECTED"), true, Read),
            (Some("SOMETHING_NEW"), true, Read),
        ] {
            assert_eq!(hint_action(status, named), action, "{status:?} {named}");
        }
        let grant = |status: &str, reason: Option<&str>| GrantView {
            arn: "arn:aws:license-manager::111122223333:grant:g-1".into(),
            name: "n".into(),
            license_arn: "l".into(),
            status: status.into(),
            version: "2".into(),
            parent_arn: "arn:aws:license-manager::111122223333:grant:g-org".into(),
            grantee: "arn:aws:iam::210987654321:root".into(),
            status_reason: reason.map(str::to_string),
            activation_behavior: None,
        };
        let parent = |version: &str, reason: Option<&str>| GrantView {
            grantee: "arn:aws:organizations::111122223333:organization/o-abc1234567".into(),
            version: version.into(),
            ..grant("WORKFLOW_COMPLETED", reason)
        };
        let bulk = crate::decide::BULK_ACTIVATION_STATUS_REASON;
        let ours = crate::decide::ACTIVATION_STATUS_REASON;
        // (case, grant, parent, a run now)
        for (case, g, p, run) in [
            ("to accept", grant("PENDING_ACCEPT", None), None, true),
            (
                "failed its workflow",
                grant("FAILED_WORKFLOW", None),
                None,
                true,
            ),
            ("active", grant("ACTIVE", None), None, false),
            ("in workflow", grant("PENDING_WORKFLOW", None), None, false),
            (
                "our activation proceeds",
                grant("DISABLED", Some(ours)),
                None,
                false,
            ),
            ("deactivated by hand", grant("DISABLED", None), None, true),
            (
                "child, bulk activation reaching it",
                grant("DISABLED", None),
                Some(parent("2", Some(bulk))),
                false,
            ),
            (
                "child, parent paused by an operator",
                grant("DISABLED", None),
                Some(parent("3", Some("paused"))),
                false,
            ),
            (
                "child, parent never bulk-activated",
                grant("DISABLED", None),
                Some(parent("1", None)),
                true,
            ),
        ] {
            assert_eq!(after_look(&g, p.as_ref()).is_none(), run, "{case}");
        }
    }

    #[test]
    fn the_coalescing_queue_asks_for_the_configured_scope_and_nothing_else() {
        let url = "https://sqs.us-east-1.amazonaws.com/111122223333/ct-reconcile.fifo";
        let c = ReconcileConfig {
            coalesce_queue_url: Some(url.into()),
            ..config()
        };
        let record = |arn: &str, body: &str| {
            json!({"eventSource": "aws:sqs", "eventSourceARN": arn, "body": body,
                   "messageId": "m-1", "receiptHandle": "r"})
        };
        let arn = "arn:aws:sqs:us-east-1:111122223333:ct-reconcile.fifo";
        let good = json!({"Records": [record(arn, COALESCED_BODY)]});
        assert_eq!(
            parse(&good, &c).ok(),
            Some((Scope::Followup(Box::new(Scope::Organization)), false))
        );
        // Without the queue configured, the same records are refused.
        assert!(matches!(
            parse(&good, &config()),
            Err(Error::InvalidInput(_))
        ));
        for (bad, part) in [
            (json!({"Records": []}), "non-empty"),
            (
                json!({"Records": [record("arn:aws:sqs:us-east-1:111122223333:other.fifo", COALESCED_BODY)]}),
                "not the coalescing queue",
            ),
            (
                json!({"Records": [record(arn, r#"{"accounts":["210987654321"]}"#)]}),
                "body must be",
            ),
            (
                json!({"Records": [{"eventSource": "aws:sns", "eventSourceARN": arn, "body": COALESCED_BODY}]}),
                "aws:sqs",
            ),
            (
                json!({"Records": [record(arn, COALESCED_BODY)], "accounts": ["210987654321"]}),
                "unknown field",
            ),
        ] {
            match parse(&bad, &c) {
                Err(Error::InvalidInput(msg)) => assert!(msg.contains(part), "{bad}: {msg}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        // The queue must be FIFO: its deduplication is what coalesces.
        let standard = ReconcileConfig::from_lookup(|k| match k {
            "ONBOARDING_QUEUE_URL" => Some("https://sqs.us-east-1.amazonaws.com/1/q".into()),
            "RECONCILE_QUEUE_URL" => Some("https://sqs.us-east-1.amazonaws.com/1/r".into()),
            _ => None,
        });
        assert!(matches!(standard, Err(Error::Config(m)) if m.contains("FIFO")));
    }

    #[test]
    fn requests() {
        let c = config();
        assert_eq!(
            parse(
                &json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
                &c
            )
            .ok(),
            Some((Scope::Organization, false))
        );
        assert_eq!(
            parse(&json!({"dryRun": true}), &c).ok(),
            Some((Scope::Organization, true))
        );
        assert_eq!(
            parse(&json!({"ous": ["ou-ab12-cdef3456"]}), &c).ok(),
            Some((Scope::Ous(vec!["ou-ab12-cdef3456".into()]), false))
        );
        assert!(
            matches!(parse(&json!({"accounts": ["210987654321"]}), &c), Ok((Scope::Accounts(a), false)) if a.len() == 1)
        );
        for bad in [
            json!({"accounts": ["12"]}),
            json!({"accounts": []}),
            json!({"ous": ["r-abcd"]}),
            json!({"accounts": ["210987654321"], "ous": ["ou-ab12-cdef3456"]}),
            json!({"account": ["210987654321"]}),
            json!([1]),
        ] {
            assert_eq!(
                parse(&bad, &c).map_err(|e| e.kind()).err(),
                Some("InvalidInput"),
                "{bad}"
            );
        }
    }

    fn rejected(payload: &Value) -> String {
        match parse(payload, &config()) {
            Err(e) => {
                assert_eq!(e.kind(), "InvalidInput", "{payload}");
                e.to_string()
            }
            Ok(scope) => panic!("accepted {payload}: {scope:?}"),
        }
    }

    #[test]
    fn a_scheduled_run_is_recognised_precisely() {
        let scheduled = json!({
            "version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-11-22T06:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/r"], "detail": {}
        });
        assert_eq!(
            parse(&scheduled, &config()).ok(),
            Some((Scope::Organization, false))
        );
        let ous = ReconcileConfig {
            ous: vec!["ou-ab12-cdef3456".into()],
            dry_run: true,
            ..config()
        };
        assert_eq!(
            parse(&scheduled, &ous).ok(),
            Some((Scope::Ous(vec!["ou-ab12-cdef3456".into()]), true))
        );
        // Anything that merely has a `source` key, or is null or an array, is not a full run.
        for (bad, field) in [
            (
                json!({"source": "aws.controltower"}),
                "source must be \"aws.events\"",
            ),
            (
                json!({"source": null}),
                "source must be \"aws.events\" (an EventBridge schedule), got null",
            ),
            (
                json!({"source": "aws.events"}),
                "detail-type must be \"Scheduled Event\" (an EventBridge schedule), missing",
            ),
            (
                json!({"source": "aws.events", "detail-type": "Object Created"}),
                "detail-type",
            ),
            (
                json!({"detail-type": "Scheduled Event"}),
                "source must be \"aws.events\" (an EventBridge schedule), missing",
            ),
            (
                json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {"accounts": ["210987654321"]}}),
                "detail must be {}, got an object",
            ),
            (
                json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": null}),
                "detail must be {}, got null",
            ),
            (
                json!({"source": "aws.events", "detail-type": "Scheduled Event", "dryRun": true}),
                "unknown field \"dryRun\"",
            ),
            (json!(null), "got null"),
            (json!([]), "got an empty array"),
        ] {
            let msg = rejected(&bad);
            assert!(msg.contains(field), "{msg:?} lacks {field:?}");
        }
    }

    /// Every hostile reconcile payload found so far: rejected, the field named, what was
    /// there said, and nothing echoed unbounded.
    #[test]
    fn hostile_reconcile_requests() {
        let huge = "1".repeat(1 << 20);
        let cases: Vec<(Value, &str)> = vec![
            (json!(null), "request object"),
            (json!([]), "got an empty array"),
            (json!([1]), "got an array"),
            (json!("reconcile"), "got \"reconcile\""),
            (json!(42), "got a number (42)"),
            (
                json!({"accounts": null}),
                "accounts must be a non-empty array, got null",
            ),
            (
                json!({"accounts": []}),
                "accounts must be a non-empty array, got an empty array",
            ),
            (json!({"accounts": "210987654321"}), "got \"210987654321\""),
            (
                json!({"accounts": [" 210987654321"]}),
                "accounts[0] must be exactly 12 digits, got \" 210987654321\"",
            ),
            (
                json!({"accounts": ["210987654321", null]}),
                "accounts[1] must be a 12-digit account id string, got null",
            ),
            (
                json!({"accounts": [210987654321_u64]}),
                "accounts[0] must be a 12-digit account id string, got a number (210987654321)",
            ),
            (json!({"accounts": ["12"]}), "accounts[0]"),
            (json!({"accounts": [huge.clone()]}), "… (1048576 bytes)"),
            (
                json!({"ous": null}),
                "ous must be a non-empty array, got null",
            ),
            (json!({"ous": []}), "ous must be a non-empty array"),
            (
                json!({"ous": ["r-abcd"]}),
                "ous[0] must be an OU id (ou-xxxx-yyyyyyyy), got \"r-abcd\"",
            ),
            (
                json!({"ous": [["ou-ab12-cdef3456"]]}),
                "ous[0] must be an OU id (ou-xxxx-yyyyyyyy), got an array",
            ),
            (json!({"ous": [huge.clone()]}), "… (1048576 bytes)"),
            (
                json!({"dryRun": "yes"}),
                "dryRun must be true or false, got \"yes\"",
            ),
            (
                json!({"dryRun": null}),
                "dryRun must be true or false, got null",
            ),
            (
                json!({"accounts": ["210987654321"], "ous": ["ou-ab12-cdef3456"]}),
                "not both",
            ),
            (
                json!({"account": ["210987654321"]}),
                "unknown field \"account\"; expected accounts, ous or dryRun",
            ),
            (json!({ huge.clone(): 1 }), "unknown field"),
        ];
        for (payload, expected) in cases {
            let msg = rejected(&payload);
            assert!(msg.contains(expected), "{msg:?} lacks {expected:?}");
            assert!(msg.len() < 400, "{} bytes", msg.len());
        }
        // `{}` is an explicit on-demand run of the configured scope.
        assert_eq!(
            parse(&json!({}), &config()).ok(),
            Some((Scope::Organization, false))
        );
    }

    #[test]
    fn shipped_events_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("events/") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if !name.starts_with("reconcile-") {
                continue;
            }
            let payload: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
            let (scope, dry_run) = parse(&payload, &config()).expect(&name);
            match name.as_str() {
                "reconcile-scheduled.json" => {
                    assert_eq!((scope, dry_run), (Scope::Organization, false))
                }
                "reconcile-dry-run.json" => {
                    assert_eq!((scope, dry_run), (Scope::Organization, true))
                }
                "reconcile-backfill-ous.json" => {
                    assert!(matches!(scope, Scope::Ous(ref o) if o.len() == 1))
                }
                other => panic!("untested event {other}"),
            }
            seen += 1;
        }
        assert_eq!(seen, 3);
    }

    #[test]
    fn configuration() {
        let err = |pairs: &[(&str, &str)]| {
            let map: std::collections::HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            ReconcileConfig::from_lookup(|k| map.get(k).cloned())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err(&[]).contains("ONBOARDING_QUEUE_URL"));
        let q = ("ONBOARDING_QUEUE_URL", "https://q");
        assert!(err(&[q, ("OFFBOARD_MODE", "nuke")]).contains("OFFBOARD_MODE"));
        assert!(err(&[q, ("RECONCILE_OUS", "ou-1")]).contains("RECONCILE_OUS"));
        assert!(err(&[q, ("DRY_RUN", "perhaps")]).contains("DRY_RUN"));
        assert!(err(&[q, ("BACKFILL_QUEUE_URL", "queue")]).contains("BACKFILL_QUEUE_URL"));
        assert!(err(&[q, ("GRANT_QUOTA_PER_LICENSE", "0")]).contains("GRANT_QUOTA_PER_LICENSE"));
        assert!(err(&[q, ("GRANT_QUOTA_WARN_PERCENT", "101")]).contains("GRANT_QUOTA_WARN_PERCENT"));
        assert_eq!(err(&[q, ("OFFBOARD_MODE", "delete")]), "");
        assert_eq!(err(&[q, ("GRANT_QUOTA_PER_LICENSE", "5000")]), "");
    }
}
