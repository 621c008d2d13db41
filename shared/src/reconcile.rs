//! Reconcile and backfill: list the organization's accounts (or some OUs, or named accounts)
//! and put one "onboard account" message per ACTIVE account on the onboarding queue, so
//! account-lifecycle heals drift with Lambda + SQS as the fan-out. Accounts that left (suspended,
//! closed, or gone from the organization) have their per-account grants offboarded.

use crate::aws::{self, ListedAccount};
use crate::engine::{Engine, OffboardMode};
use crate::error::Error;
use crate::event::OnboardRequest;
use crate::ids::{is_ou_id, AccountId};
use crate::report::{AccountReport, CallLog, ErrorReport};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
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
                "RECONCILE_OUS: {bad:?} is not an OU id (ou-xxxx-yyyyyyyy)"
            )));
        }
        let offboard = match get("OFFBOARD_MODE").as_deref().unwrap_or("off") {
            "off" => None,
            "deactivate" => Some(OffboardMode::Deactivate),
            "delete" => Some(OffboardMode::Delete),
            other => {
                return Err(Error::Config(format!(
                    "OFFBOARD_MODE: {other:?} must be off, deactivate or delete"
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

/// An on-demand request: `{"accounts": [...]}`, `{"ous": [...]}`, `{"dryRun": true}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReconcileRequest {
    #[serde(default)]
    pub accounts: Option<Vec<String>>,
    #[serde(default)]
    pub ous: Option<Vec<String>>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// What to reconcile, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Organization,
    Ous(Vec<String>),
    Accounts(Vec<AccountId>),
}

/// Parses the invocation payload: a scheduled EventBridge event (full run) or a request.
pub fn parse(payload: &Value, config: &ReconcileConfig) -> Result<(Scope, bool), Error> {
    let default_scope = || {
        if config.ous.is_empty() {
            Scope::Organization
        } else {
            Scope::Ous(config.ous.clone())
        }
    };
    if payload.get("source").is_some() || payload.is_null() {
        return Ok((default_scope(), config.dry_run));
    }
    let req: ReconcileRequest = serde_json::from_value(payload.clone())
        .map_err(|e| Error::InvalidInput(format!("reconcile request: {e}")))?;
    let dry_run = req.dry_run.unwrap_or(config.dry_run);
    let scope = match (req.accounts, req.ous) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidInput("give accounts or ous, not both".into()))
        }
        (Some(accounts), None) => {
            if accounts.is_empty() {
                return Err(Error::InvalidInput("accounts is empty".into()));
            }
            Scope::Accounts(
                accounts
                    .iter()
                    .map(|a| AccountId::parse(a))
                    .collect::<Result<_, _>>()?,
            )
        }
        (None, Some(ous)) => {
            if let Some(bad) = ous.iter().find(|o| !is_ou_id(o)) {
                return Err(Error::InvalidInput(format!(
                    "{bad:?} is not an OU id (ou-xxxx-yyyyyyyy)"
                )));
            }
            if ous.is_empty() {
                return Err(Error::InvalidInput("ous is empty".into()));
            }
            Scope::Ous(ous)
        }
        (None, None) => default_scope(),
    };
    Ok((scope, dry_run))
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

/// Runs one reconcile.
pub async fn reconcile(
    engine: &Engine,
    config: &ReconcileConfig,
    scope: Scope,
    dry_run: bool,
) -> ReconcileReport {
    let started = Instant::now();
    let calls = CallLog::default();
    let mut report = ReconcileReport {
        scope: match &scope {
            Scope::Organization => "organization".into(),
            Scope::Ous(ous) => format!("ous:{}", ous.join(",")),
            Scope::Accounts(a) => format!("accounts:{}", a.len()),
        },
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
    };
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
