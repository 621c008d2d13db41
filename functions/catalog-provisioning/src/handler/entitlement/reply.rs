//! What a run's report answers: SUCCESS or FAILED with the grant's `Data` once settled
//! ([`settled`]); while the grant is still pending when time is up, the reply
//! `PENDING_GRANT_RESPONSE` asks for ([`pending_reply`]): a re-check that answers later, SUCCESS
//! with a background re-check, or FAILED.

use super::recheck::{first_recheck, send_recheck};
use super::{keys, Attempt, Known};
use crate::config::PendingResponse;
use crate::handler::{error_text, fallback_physical_id, App, Bounds, Deferred, Reply};
use crate::request::{Target, Waiting};
use shared::custom_resource::Response;
use shared::decide::{Source, WaitReason};
use shared::report::{AccountReport, LicenseReport};
use shared::{error::Retry, report::Outcome};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// The answer for a report that needs no further attempt, or `None` (pending, or a retryable
/// failure: try again while time remains).
pub(super) fn settled(
    target: &Target,
    attempt: &Attempt,
    report: &AccountReport,
) -> Option<Response> {
    let physical = physical_id(attempt, report);
    match report.outcome {
        Outcome::Entitled => Some(
            Response::success(
                target,
                physical.clone(),
                format!(
                    "account {} is entitled: grant {physical} is ACTIVE",
                    attempt.account
                ),
            )
            .with_data(data(attempt, report, "ACTIVE")),
        ),
        Outcome::Skipped => Some(
            Response::success(
                target,
                target
                    .physical_resource_id
                    .clone()
                    .unwrap_or_else(|| format!("not-required-{}", attempt.account)),
                format!(
                    "no grant needed: {}",
                    report.reason.as_deref().unwrap_or("skipped")
                ),
            )
            .with_data(data(attempt, report, "NOT_REQUIRED")),
        ),
        Outcome::Planned => Some(
            Response::success(
                target,
                physical,
                format!(
                    "dry run: would {}",
                    report
                        .licenses
                        .first()
                        .map(|l| l.actions.join(", "))
                        .filter(|a| !a.is_empty())
                        .unwrap_or_else(|| "change nothing".into())
                ),
            )
            .with_data(data(attempt, report, "PLANNED")),
        ),
        Outcome::Pending => None,
        Outcome::Failed => match report.deciding_error() {
            Some(e) if e.retry == Retry::Retryable => None,
            _ => Some(Response::failed(
                target,
                physical,
                failure_reason(report).unwrap_or_else(|| "not entitled".into()),
            )),
        },
        Outcome::Offboarded => Some(Response::failed(
            target,
            physical,
            "unexpected offboarding report".into(),
        )),
    }
}

/// A report that more time may settle: pending, or a retryable failure.
fn still_working(report: &AccountReport) -> bool {
    match report.outcome {
        Outcome::Pending => true,
        Outcome::Failed => report
            .deciding_error()
            .is_some_and(|e| e.retry == Retry::Retryable),
        _ => false,
    }
}

/// The reply for a request whose work ran out of time: its last report decides (a grant that
/// more time may settle is left to [`pending_reply`], within what is left of the margin).
pub(in crate::handler) async fn late_reply(
    app: &App,
    target: &Target,
    known: &Known,
    bounds: Bounds,
    deadline: Instant,
) -> Reply {
    let last = known.lock().unwrap_or_else(|p| p.into_inner()).take();
    match last {
        Some((attempt, report)) if still_working(&report) => {
            // Whatever is left of the margin, minus time for the PUT itself.
            let budget = deadline.saturating_duration_since(Instant::now()) / 2;
            match tokio::time::timeout(budget, pending_reply(app, target, &attempt, &report, bounds)).await {
                Ok(reply) => reply,
                Err(_) => Reply::Answer(Response::failed(
                    target,
                    physical_id(&attempt, &report),
                    format!("{}; no time was left to queue a re-check", pending_reason(&attempt, &report)),
                )),
            }
        }
        Some((attempt, report)) => Reply::Answer(Response::failed(
            target,
            physical_id(&attempt, &report),
            format!(
                "the request did not finish before the Lambda deadline; last attempt: {}",
                failure_reason(&report).unwrap_or_else(|| format!("{:?}", report.outcome))
            ),
        )),
        None => Reply::Answer(Response::failed(
            target,
            fallback_physical_id(target),
            "the request did not finish before the Lambda deadline (AWS calls did not answer in time)".to_string(),
        )),
    }
}

/// The reply for a grant still in License Manager's workflow (or a retryable failure) when the
/// invocation's time is up.
pub(super) async fn pending_reply(
    app: &App,
    target: &Target,
    attempt: &Attempt,
    report: &AccountReport,
    bounds: Bounds,
) -> Reply {
    let physical = physical_id(attempt, report);
    let reason = match report.outcome {
        Outcome::Pending => pending_reason(attempt, report),
        _ => format!(
            "the last attempt failed and may succeed later: {}",
            failure_reason(report).unwrap_or_default()
        ),
    };
    let queue = app.config.recheck_queue_url.as_deref();
    match (app.config.pending_response, queue) {
        (PendingResponse::Wait, Some(queue)) => {
            wait_for_active(app, target, attempt, report, bounds, queue, reason).await
        }
        (PendingResponse::Wait, None) => Reply::Answer(
            Response::failed(
                target,
                physical,
                format!("{reason}; CATALOG_RECHECK_QUEUE_URL is not set, so the function cannot wait beyond this invocation: launch again later (the same grant is reused)"),
            )
            .with_data(data(attempt, report, "PENDING")),
        ),
        (PendingResponse::Success, Some(queue)) if report.outcome == Outcome::Pending => {
            Reply::Answer(succeed_pending(app, target, attempt, report, queue, reason).await)
        }
        (PendingResponse::Success, _) if report.outcome != Outcome::Pending => {
            Reply::Answer(Response::failed(target, physical, reason))
        }
        _ => Reply::Answer(
            Response::failed(
                target,
                physical,
                format!(
                    "{reason}; launch again later (the same grant is reused), or set PENDING_GRANT_RESPONSE=WAIT to answer once it is ACTIVE"
                ),
            )
            .with_data(data(attempt, report, "PENDING")),
        ),
    }
}

/// `PENDING_GRANT_RESPONSE=WAIT`: the request is left to a re-check that answers it (FAILED
/// when its ServiceTimeout leaves no time for one, or the re-check cannot be queued).
async fn wait_for_active(
    app: &App,
    target: &Target,
    attempt: &Attempt,
    report: &AccountReport,
    bounds: Bounds,
    queue: &str,
    reason: String,
) -> Reply {
    let physical = physical_id(attempt, report);
    let left = bounds.answer_by.saturating_sub(app.unix_now());
    if left < 2 {
        return Reply::Answer(timed_out(target, attempt, report, bounds.service_timeout));
    }
    let delay = app
        .config
        .pending_recheck_interval
        .min(Duration::from_secs(left));
    let body = first_recheck(
        app,
        attempt,
        Some(Waiting::new(
            target,
            attempt.product_sku.clone(),
            bounds.service_timeout.as_secs(),
            bounds.answer_by,
        )),
    );
    match send_recheck(app, queue, &body, delay).await {
        Ok(()) => Reply::Later(Deferred {
            target: target.clone(),
            physical_id: physical,
            reason: format!(
                "{reason}; re-checked every {}s, answered when ACTIVE or by the resource's ServiceTimeout",
                app.config.pending_recheck_interval.as_secs()
            ),
            answer_by: bounds.answer_by,
        }),
        Err(e) => Reply::Answer(
            Response::failed(
                target,
                physical,
                format!("{reason}, and the wait for it could not be queued: {e}"),
            )
            .with_data(data(attempt, report, "PENDING")),
        ),
    }
}

/// `PENDING_GRANT_RESPONSE=SUCCESS`: SUCCESS now, and a background re-check finishes the
/// activation (FAILED when it cannot be queued).
async fn succeed_pending(
    app: &App,
    target: &Target,
    attempt: &Attempt,
    report: &AccountReport,
    queue: &str,
    reason: String,
) -> Response {
    let physical = physical_id(attempt, report);
    let body = first_recheck(app, attempt, None);
    let delay = app.engine.config().recheck_delay;
    match send_recheck(app, queue, &body, delay).await {
        Ok(()) => Response::success(
            target,
            physical,
            format!(
                "{reason}; a re-check in {}s finishes activating it",
                delay.as_secs()
            ),
        )
        .with_data(data(attempt, report, "PENDING")),
        Err(e) => Response::failed(
            target,
            physical,
            format!("{reason}, and the re-check could not be queued: {e}"),
        ),
    }
}

/// FAILED because the grant did not become ACTIVE within the resource's ServiceTimeout.
pub(super) fn timed_out(
    target: &Target,
    attempt: &Attempt,
    report: &AccountReport,
    service_timeout: Duration,
) -> Response {
    let why = match report.outcome {
        Outcome::Pending => pending_reason(attempt, report),
        _ => format!(
            "the last attempt failed: {}",
            failure_reason(report).unwrap_or_default()
        ),
    };
    Response::failed(
        target,
        physical_id(attempt, report),
        format!(
            "{why}; not ACTIVE within the resource's ServiceTimeout ({}s): launch again later (the same grant is reused), or raise ServiceTimeout",
            service_timeout.as_secs()
        ),
    )
    .with_data(data(attempt, report, "PENDING"))
}

/// The license's line when the grant it names is the account's own (a per-account grant, or
/// the account-level grant under an organization/OU grant). `None` also while the line names
/// the organization/OU grant covering the account (its account-level grant not there yet): that
/// grant is never the resource's physical id, `GrantArn` or what the account waits on.
fn account_line(report: &AccountReport) -> Option<&LicenseReport> {
    report
        .licenses
        .first()
        .filter(|l| waits_for_organization(l).is_none())
}

/// What a license in organization/OU mode (LICENSE_DISTRIBUTION) still waits for when the
/// account has no grant of its own yet: the organization/OU grant itself (`None` inside: the
/// reconciler has not made it), or the account-level grant under it (`Some(parent)`).
fn waits_for_organization(line: &LicenseReport) -> Option<Option<&str>> {
    let from_organization = line.grant_source.as_deref() == Some(Source::Organization.as_str());
    match line.pending_reason.as_deref() {
        Some(r) if r == WaitReason::ParentNotYet.as_str() => Some(None),
        Some(r) if r == WaitReason::ChildNotYet.as_str() && from_organization => {
            Some(line.grant_arn.as_deref())
        }
        _ => None,
    }
}

pub(super) fn pending_reason(attempt: &Attempt, report: &AccountReport) -> String {
    let first = report.licenses.first();
    let mode = first
        .and_then(|l| l.mode.as_deref())
        .unwrap_or("organization");
    match first.and_then(waits_for_organization) {
        Some(None) => {
            return format!(
                "{} is distributed in {mode} mode (LICENSE_DISTRIBUTION), so no per-account grant is made for account {}, and no organization or OU grant covers the account yet: waiting for the reconciler to create and bulk-activate it, then for the account's grant under it",
                attempt.license_arn, attempt.account,
            )
        }
        Some(Some(parent)) => {
            return format!(
                "account {} is covered by organization/OU grant {parent} for {} ({mode} mode, LICENSE_DISTRIBUTION); waiting for License Manager to give the account its grant under it (no per-account grant is made)",
                attempt.account, attempt.license_arn,
            )
        }
        None => {}
    }
    let line = account_line(report);
    format!(
        "grant {} for {} in account {} is still {} (License Manager's workflow has not finished)",
        line.and_then(|l| l.grant_arn.as_deref())
            .unwrap_or("(not created yet)"),
        attempt.license_arn,
        attempt.account,
        line.and_then(|l| l.status_after.as_deref())
            .unwrap_or("pending"),
    )
}

pub(super) fn data(
    attempt: &Attempt,
    report: &AccountReport,
    entitlement: &str,
) -> BTreeMap<String, String> {
    let line = account_line(report);
    let text = |v: Option<&String>| v.cloned().unwrap_or_default();
    BTreeMap::from([
        (
            keys::GRANT_ARN.to_string(),
            text(line.and_then(|l| l.grant_arn.as_ref())),
        ),
        (keys::LICENSE_ARN.to_string(), attempt.license_arn.clone()),
        (
            keys::PRODUCT_SKU.to_string(),
            report
                .licenses
                .first()
                .and_then(|l| l.product_sku.clone())
                .or(attempt.product_sku.clone())
                .unwrap_or_default(),
        ),
        (
            keys::GRANT_STATUS.to_string(),
            text(line.and_then(|l| l.status_after.as_ref())),
        ),
        (
            keys::ENTITLEMENT_STATUS.to_string(),
            entitlement.to_string(),
        ),
    ])
}

/// The grant ARN when there is one, else the request's existing or fallback physical id.
pub(super) fn physical_id(attempt: &Attempt, report: &AccountReport) -> String {
    account_line(report)
        .and_then(|l| l.grant_arn.clone())
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| attempt.fallback_physical_id.clone())
}

pub(super) fn failure_reason(report: &AccountReport) -> Option<String> {
    report.deciding_error().map(error_text)
}
