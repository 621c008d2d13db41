//! Reconcile and backfill: list the organization's accounts (or some OUs, or named accounts)
//! and put one "onboard account" message per ACTIVE account on the onboarding queue, so
//! account-lifecycle heals drift with Lambda + SQS as the fan-out. Accounts that left (suspended,
//! closed, or gone from the organization) have their per-account grants offboarded.

use crate::aws::{self, ListedAccount};
use crate::engine::{Engine, OffboardMode};
use crate::error::{describe, echo, got, Error};
use crate::event::OnboardRequest;
use crate::ids::{is_ou_id, AccountId};
use crate::report::{AccountReport, CallLog, ErrorReport};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Reconciler settings (environment, validated at init, errors name the variable).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileConfig {
    pub onboarding_queue_url: String,
    /// Scheduled runs cover these OUs (recursively); empty = the whole organization.
    pub ous: Vec<String>,
    /// None = offboarding off.
    pub offboard: Option<OffboardMode>,
    pub dry_run: bool,
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
        Ok(ReconcileConfig {
            onboarding_queue_url,
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
}

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
    if ["source", "detail-type", "detail"]
        .iter()
        .any(|k| obj.contains_key(*k))
    {
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
    pub enqueued: usize,
    /// Listed accounts not onboarded, with the reason.
    pub skipped: BTreeMap<String, String>,
    /// Accounts whose per-account grants are (or would be) offboarded.
    pub offboard: Vec<String>,
    pub offboarded: Vec<AccountReport>,
    pub api_calls: BTreeMap<String, u32>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
}

impl ReconcileReport {
    /// A report of nothing done yet.
    pub fn empty(scope: String, dry_run: bool) -> Self {
        ReconcileReport {
            scope,
            dry_run,
            accounts_listed: 0,
            onboard: Vec::new(),
            enqueued: 0,
            skipped: BTreeMap::new(),
            offboard: Vec::new(),
            offboarded: Vec::new(),
            api_calls: BTreeMap::new(),
            duration_ms: 0,
            error: None,
        }
    }
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
    let mut report = ReconcileReport::empty(
        match &scope {
            Scope::Organization => "organization".into(),
            Scope::Ous(ous) => format!("ous:{}", ous.join(",")),
            Scope::Accounts(a) => format!("accounts:{}", a.len()),
        },
        dry_run,
    );
    // Boxed: keeps the deep listing/offboarding future out of the caller's type.
    if let Err(e) = Box::pin(run(engine, config, &scope, dry_run, &calls, &mut report)).await {
        report.error = Some(ErrorReport::from(&e));
    }
    report.api_calls = calls.snapshot().own;
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
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
    let org = engine.organization(calls).await?;
    let listed: Vec<ListedAccount> = match scope {
        Scope::Organization => aws::list_accounts(&clients.organizations, calls).await?,
        Scope::Ous(ous) => {
            let mut all = Vec::new();
            for ou in ous {
                all.extend(aws::list_accounts_under(&clients.organizations, ou, calls).await?);
            }
            all
        }
        Scope::Accounts(ids) => ids
            .iter()
            .map(|id| ListedAccount {
                id: id.to_string(),
                name: None,
                state: "ACTIVE".into(),
            })
            .collect(),
    };
    report.accounts_listed = listed.len();
    let mut seen = BTreeSet::new();
    let mut departed: Vec<String> = Vec::new();
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

    if !dry_run {
        let bodies = report
            .onboard
            .iter()
            .map(|id| {
                serde_json::to_string(&OnboardRequest {
                    account_id: id.clone(),
                    reason: Some("reconcile".into()),
                    attempt: 0,
                    first_seen: None,
                    activations: Vec::new(),
                })
                .map_err(|e| Error::InvalidInput(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        report.enqueued =
            aws::send_batch(&clients.sqs, &config.onboarding_queue_url, &bodies, calls).await?;
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
            if let Some(id) = grant
                .grantee
                .strip_prefix("arn:aws:iam::")
                .and_then(|r| r.strip_suffix(":root"))
            {
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
    report.offboarded = futures::stream::iter(ids.iter())
        .map(|id| engine.offboard(id, None, mode, "reconcile:offboard"))
        .buffered(engine.config().max_concurrent_accounts)
        .collect()
        .await;
    Ok(())
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
        assert_eq!(err(&[q, ("OFFBOARD_MODE", "delete")]), "");
    }
}
