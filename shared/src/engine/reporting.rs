//! Building an account's report: its start, its trigger's name, its outcome, its call counts.

use crate::decide::status;
use crate::inbound::Trigger;
use crate::report::{AccountReport, CallLog, Outcome};
use std::time::Instant;

pub(super) fn trigger_name(t: &Trigger) -> String {
    match t {
        Trigger::CreateManagedAccount => "CreateManagedAccount".into(),
        Trigger::UpdateManagedAccount => "UpdateManagedAccount".into(),
        Trigger::Onboard(reason) => format!("onboard:{reason}"),
    }
}

pub(super) fn empty_report(
    account_id: Option<String>,
    trigger: String,
    dry_run: bool,
) -> AccountReport {
    AccountReport::empty(account_id, trigger, dry_run)
}

/// Adds the calls made and the time taken.
pub(super) fn finish(
    mut report: AccountReport,
    calls: &CallLog,
    started: Instant,
) -> AccountReport {
    let snapshot = calls.snapshot();
    report.api_calls = snapshot.own;
    report.member_api_calls = snapshot.member;
    report.write_calls = snapshot.writes;
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

pub(super) fn outcome(r: &AccountReport) -> Outcome {
    if r.deciding_error().is_some() {
        Outcome::Failed
    } else if r.outcome == Outcome::Skipped {
        Outcome::Skipped
    } else if r.dry_run {
        Outcome::Planned
    } else if r.licenses.iter().any(|l| {
        l.held_back.is_none()
            && (l.pending_reason.is_some() || l.status_after.as_deref() != Some(status::ACTIVE))
    }) {
        Outcome::Pending
    } else {
        Outcome::Entitled
    }
}
