//! What a reconcile reports.

use crate::distribution::ParentReport;
use crate::report::{AccountReport, ErrorReport};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

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
    /// chains wait on them ([`Scope::Followup`](super::Scope::Followup)).
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
    /// Why the event asked for nothing ([`Scope::Ignored`](super::Scope::Ignored)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    /// The event that asked for the configured scope on the coalescing queue
    /// ([`Scope::Coalesced`](super::Scope::Coalesced)): the reconcile runs when that message is delivered.
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
    /// Of `onboard`, the accounts whose waiting chain's re-check was sent again now (a change
    /// event brought it forward, [`crate::chain`]): their runs replace the delayed re-checks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forwarded: Vec<String>,
    /// Accounts not queued because their chain is live (`CHAIN_TABLE`): queued, running or
    /// waiting on a re-check. They are on their way; following a backfill follows them too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<String>,
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
            forwarded: Vec::new(),
            in_flight: Vec::new(),
            api_calls: BTreeMap::new(),
            duration_ms: 0,
            error: None,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
