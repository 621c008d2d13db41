//! Delayed re-checks (`CATALOG_RECHECK_QUEUE_URL`): an SQS batch of grants left pending. A
//! re-check that carries a waiting request answers it once the grant settles, or when its
//! ServiceTimeout is near; one without re-runs the account until ACTIVE or the workflow
//! deadline.

use super::reply::{data, pending_reason, physical_id, settled, timed_out};
use super::{log_report, work_for, Attempt};
use crate::handler::{fallback_physical_id, log_rejected, log_response, App};
use crate::request::{Recheck, Target, Waiting};
use serde_json::Value;
use shared::custom_resource::Response;
use shared::report::{AccountReport, CallLog};
use shared::{error::Error, error::Retry, report::Outcome};
use std::time::Duration;
use tokio::time::Instant;

/// The first re-check of an attempt (`respond`: the launch still waiting for its answer).
pub(super) fn first_recheck(app: &App, attempt: &Attempt, respond: Option<Waiting>) -> Recheck {
    Recheck {
        account_id: attempt.account.to_string(),
        license_arn: attempt.license_arn.clone(),
        override_behavior: attempt.override_behavior.map(|b| b.as_str().to_string()),
        first_seen: app.unix_now(),
        attempt: 0,
        activations: attempt.activations.clone(),
        respond,
    }
}

pub(super) async fn send_recheck(
    app: &App,
    queue: &str,
    body: &Recheck,
    delay: Duration,
) -> Result<(), Error> {
    let text = serde_json::to_string(body).map_err(|e| Error::InvalidInput(e.to_string()))?;
    shared::aws::send_recheck(&app.sqs, queue, &text, delay, &CallLog::default()).await
}

/// An SQS batch of delayed re-checks, answered with a partial batch response. A re-check that
/// carries a waiting request answers it (or queues the next re-check): a message fails the
/// batch only when a retry can help (a PUT that did not get through, a background re-check).
pub(in crate::handler) async fn handle_rechecks(
    app: &App,
    items: Vec<(String, String)>,
    deadline: Instant,
) -> Value {
    let mut failures = Vec::new();
    for (id, body) in items {
        if let Err(e) = recheck_one(app, &body, deadline).await {
            tracing::warn!(message_id = %id, kind = e.kind(), retry = %e.retry(), error = %e, "re-check failed");
            failures.push(id);
        }
    }
    shared::lambda::batch_response(failures)
}

async fn recheck_one(app: &App, body: &str, deadline: Instant) -> Result<(), Error> {
    let (recheck, account, behavior) = Recheck::parse(body).inspect_err(log_rejected)?;
    let mut attempt = Attempt {
        account,
        license_arn: recheck.license_arn.clone(),
        product_sku: None,
        override_behavior: behavior,
        fallback_physical_id: String::new(),
        activations: recheck.activations.clone(),
        rechecks: recheck.attempt,
    };
    if let Some(waiting) = recheck.respond.clone() {
        return Box::pin(answer_waiting(app, recheck, attempt, waiting, deadline)).await;
    }
    let report = Box::pin(app.engine.run(work_for(&attempt))).await;
    log_report(&report);
    attempt.learn(&report);
    match report.outcome {
        Outcome::Pending => {
            let deadline = app.engine.config().workflow_deadline;
            if app.unix_now().saturating_sub(recheck.first_seen) >= deadline.as_secs() {
                return Err(Error::WorkflowDeadline {
                    grant_arn: physical_id(&attempt, &report),
                    status: report
                        .licenses
                        .first()
                        .and_then(|l| l.status_after.clone())
                        .unwrap_or_default(),
                    deadline_secs: deadline.as_secs(),
                });
            }
            let Some(queue) = &app.config.recheck_queue_url else {
                return Err(Error::Config(
                    "CATALOG_RECHECK_QUEUE_URL is not set, so no further re-check can be queued"
                        .into(),
                ));
            };
            let next = Recheck {
                attempt: recheck.attempt + 1,
                activations: attempt.activations.clone(),
                ..recheck
            };
            send_recheck(app, queue, &next, app.engine.config().recheck_delay).await
        }
        Outcome::Failed => Err(report
            .deciding_error()
            .map(|e| Error::from_report(e, "recheck"))
            .unwrap_or_else(|| Error::InvalidInput("failed without an error".into()))),
        _ => Ok(()),
    }
}

/// A re-check of a request still waiting for its answer: SUCCESS once the grant is ACTIVE,
/// FAILED on a permanent failure or when its ServiceTimeout is near, else the next re-check.
/// Every path ends in a PUT or a queued re-check; only a PUT that may get through on a retry
/// fails the message.
async fn answer_waiting(
    app: &App,
    recheck: Recheck,
    mut attempt: Attempt,
    waiting: Waiting,
    deadline: Instant,
) -> Result<(), Error> {
    let target = waiting.target();
    attempt.product_sku = waiting.product_sku.clone();
    attempt.fallback_physical_id = fallback_physical_id(&target);
    let work_until = deadline
        .checked_sub(app.config.safety_margin)
        .unwrap_or(deadline);
    let report = tokio::time::timeout_at(work_until, Box::pin(app.engine.run(work_for(&attempt))))
        .await
        .ok();
    let response = match &report {
        Some(report) => {
            log_report(report);
            attempt.learn(report);
            settled(&target, &attempt, report)
        }
        None => None,
    };
    let response = match response {
        Some(response) => response,
        None => {
            let unsettled = Unsettled {
                target: &target,
                attempt: &attempt,
                waiting: &waiting,
                report: report.as_ref(),
            };
            match wait_on(app, recheck, unsettled).await {
                Some(response) => response,
                None => return Ok(()),
            }
        }
    };
    put_answer(app, &target, &response, deadline).await
}

/// A waiting request whose grant the re-check did not settle (`report`: `None` when the run
/// did not finish in time).
struct Unsettled<'a> {
    target: &'a Target,
    attempt: &'a Attempt,
    waiting: &'a Waiting,
    report: Option<&'a AccountReport>,
}

/// Queues the next re-check while the ServiceTimeout allows (`None`: queued, nothing to PUT);
/// else the FAILED answer.
async fn wait_on(app: &App, recheck: Recheck, now: Unsettled<'_>) -> Option<Response> {
    let Unsettled {
        target,
        attempt,
        waiting,
        report,
    } = now;
    let service_timeout = Duration::from_secs(waiting.service_timeout);
    let left = waiting.answer_by.saturating_sub(app.unix_now());
    let queued = match &app.config.recheck_queue_url {
        Some(queue) if left > 0 => {
            let next = Recheck {
                attempt: recheck.attempt + 1,
                activations: attempt.activations.clone(),
                ..recheck
            };
            let delay = app
                .config
                .pending_recheck_interval
                .min(Duration::from_secs(left));
            Some(
                send_recheck(app, queue, &next, delay)
                    .await
                    .map(|()| next.attempt),
            )
        }
        _ => None,
    };
    match (queued, report) {
        (Some(Ok(next)), _) => {
            tracing::info!(request_id = %target.request_id, attempt = next, seconds_left = left, "still waiting for the grant; re-check queued");
            None
        }
        (Some(Err(e)), Some(report)) => Some(Response::failed(
            target,
            physical_id(attempt, report),
            format!(
                "{}, and the next re-check could not be queued: {e}",
                pending_reason(attempt, report)
            ),
        )
        .with_data(data(attempt, report, "PENDING"))),
        (Some(Err(e)), None) => Some(Response::failed(
            target,
            attempt.fallback_physical_id.clone(),
            format!("the re-check did not finish in time, and the next one could not be queued: {e}"),
        )),
        (None, Some(report)) => Some(timed_out(target, attempt, report, service_timeout)),
        (None, None) => Some(Response::failed(
            target,
            attempt.fallback_physical_id.clone(),
            format!(
                "the grant for {} in account {} was not confirmed ACTIVE within the resource's ServiceTimeout ({}s)",
                attempt.license_arn, attempt.account, service_timeout.as_secs()
            ),
        )),
    }
}

/// PUTs a waiting request's answer. Only a PUT a retry may get through fails the message.
async fn put_answer(
    app: &App,
    target: &Target,
    response: &Response,
    deadline: Instant,
) -> Result<(), Error> {
    log_response(target, response);
    match app.responder.answer(target, response, deadline).await {
        Ok(()) => Ok(()),
        // An expired or refused URL: nothing a retry could change.
        Err(e) if e.retry() == Retry::Permanent => {
            tracing::error!(request_id = %target.request_id, error = %e, "CloudFormation refused the response; dropping the re-check");
            Ok(())
        }
        Err(e) => Err(e),
    }
}
