//! The custom resource: every request is answered (PUT to its ResponseURL) before the Lambda
//! deadline: on success, on bad input, on AWS errors, on a panic and when time runs out.

use crate::config::{CatalogConfig, PendingResponse};
use crate::portfolio;
use crate::request::{
    classify, is_grant_arn, parse_properties, parse_request, CfnRequest, Incoming, Properties,
    Recheck, Target,
};
use futures::FutureExt;
use serde_json::{json, Value};
use shared::config::{LicenseRef, OverrideBehavior};
use shared::custom_resource::{Responder, Response};
use shared::engine::OffboardMode;
use shared::event::{Explicit, Request, Trigger, Work};
use shared::ids::AccountId;
use shared::report::{AccountReport, CallLog, ErrorReport};
use shared::{Engine, Error, Outcome, Retry};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// `Data` keys a template can read with `Fn::GetAtt`.
pub mod keys {
    pub const GRANT_ARN: &str = "GrantArn";
    pub const LICENSE_ARN: &str = "LicenseArn";
    pub const PRODUCT_SKU: &str = "ProductSku";
    pub const GRANT_STATUS: &str = "GrantStatus";
    /// `ACTIVE`, `PENDING`, `NOT_REQUIRED` (management account) or `PLANNED` (dry run).
    pub const ENTITLEMENT_STATUS: &str = "EntitlementStatus";
}

/// Everything built once at init and shared by invocations.
pub struct App {
    pub engine: Engine,
    /// For delayed re-checks (`CATALOG_RECHECK_QUEUE_URL`).
    pub sqs: aws_sdk_sqs::Client,
    /// For `Custom::MarketplacePortfolioShare`.
    pub catalog: aws_sdk_servicecatalog::Client,
    pub config: CatalogConfig,
    pub responder: Responder,
}

/// Handles one invocation. `deadline` is the Lambda deadline.
///
/// Custom-resource requests are answered; the return value summarises the answers. An error is
/// returned only when a request could not be answered at all (no usable ResponseURL, or the PUT
/// failed), so that the asynchronous invocation is retried and then sent to its failure
/// destination. An SQS batch of re-checks returns a partial batch response.
pub async fn handle(app: &App, payload: Value, deadline: Instant) -> Result<Value, Error> {
    match classify(&payload).inspect_err(log_rejected)? {
        Incoming::CustomResource { requests, via_sns } => {
            let results =
                futures::future::join_all(requests.iter().map(|raw| answer(app, raw, deadline)))
                    .await;
            let mut answered = Vec::new();
            for result in results {
                answered.push(result?);
            }
            Ok(json!({ "viaSns": via_sns, "responses": answered }))
        }
        Incoming::Rechecks(items) => Ok(handle_rechecks(app, items).await),
    }
}

/// What one request is about, once its properties are known (for the timeout path).
#[derive(Debug, Clone)]
struct Attempt {
    account: AccountId,
    license_arn: String,
    product_sku: Option<String>,
    override_behavior: Option<OverrideBehavior>,
    fallback_physical_id: String,
}

/// The last report of a request still being worked on.
type Known = Mutex<Option<(Attempt, AccountReport)>>;

async fn answer(app: &App, raw: &Value, deadline: Instant) -> Result<Value, Error> {
    let target = Target::from_request(raw).inspect_err(log_rejected)?;
    app.responder
        .validate(&target.response_url)
        .inspect_err(log_rejected)?;
    let now = Instant::now();
    let work_deadline = deadline
        .checked_sub(app.config.safety_margin)
        .filter(|d| *d > now)
        .unwrap_or(now);
    let known: Known = Mutex::new(None);
    let work = AssertUnwindSafe(respond(app, raw, &target, &known, work_deadline)).catch_unwind();
    let response = match tokio::time::timeout_at(work_deadline, work).await {
        Ok(Ok(response)) => response,
        Ok(Err(panic)) => {
            let message = panic_message(&*panic);
            tracing::error!(request_id = %target.request_id, panic = %message, "the handler panicked; answering FAILED");
            Response::failed(
                &target,
                fallback_physical_id(&target),
                format!("internal error (the function panicked: {message}); see the function's logs for request {}", target.request_id),
            )
        }
        Err(_) => {
            let last = known.lock().unwrap_or_else(|p| p.into_inner()).take();
            match last {
                Some((attempt, report)) if report.outcome == Outcome::Pending => {
                    // Whatever is left of the margin, minus time for the PUT itself.
                    let budget = deadline.saturating_duration_since(Instant::now()) / 2;
                    match tokio::time::timeout(budget, pending_answer(app, &target, &attempt, &report)).await {
                        Ok(response) => response,
                        Err(_) => Response::failed(
                            &target,
                            physical_id(&attempt, &report),
                            format!("{}; no time was left to queue a re-check", pending_reason(&attempt, &report)),
                        ),
                    }
                }
                Some((attempt, report)) => Response::failed(
                    &target,
                    physical_id(&attempt, &report),
                    format!(
                        "the request did not finish before the Lambda deadline; last attempt: {}",
                        failure_reason(&report).unwrap_or_else(|| format!("{:?}", report.outcome))
                    ),
                ),
                None => Response::failed(
                    &target,
                    fallback_physical_id(&target),
                    "the request did not finish before the Lambda deadline (AWS calls did not answer in time)".to_string(),
                ),
            }
        }
    };
    log_response(&target, &response);
    app.responder
        .put(&target.response_url, &response.body(), deadline)
        .await
        .inspect_err(|e| tracing::error!(request_id = %target.request_id, error = %e, "could not deliver the response to CloudFormation"))?;
    Ok(json!({
        "requestId": target.request_id,
        "logicalResourceId": target.logical_resource_id,
        "status": if response.is_success() { "SUCCESS" } else { "FAILED" },
        "physicalResourceId": response.physical_resource_id,
    }))
}

async fn respond(
    app: &App,
    raw: &Value,
    target: &Target,
    known: &Known,
    work_deadline: Instant,
) -> Response {
    let request = match parse_request(raw) {
        Ok(r) => r,
        Err(e) => {
            return Response::failed(target, fallback_physical_id(target), reason_of(&e));
        }
    };
    let is_share =
        raw.get("ResourceType").and_then(Value::as_str) == Some(portfolio::RESOURCE_TYPE);
    let poll = app.config.poll_interval;
    match request {
        CfnRequest::Create(c) if is_share => {
            portfolio::ensure(
                &app.catalog,
                target,
                &c.resource_properties,
                None,
                poll,
                work_deadline,
            )
            .await
        }
        CfnRequest::Update(u) if is_share => {
            let old = Some(&u.old_resource_properties);
            portfolio::ensure(
                &app.catalog,
                target,
                &u.resource_properties,
                old,
                poll,
                work_deadline,
            )
            .await
        }
        CfnRequest::Delete(d) if is_share => {
            portfolio::delete(
                &app.catalog,
                target,
                &d.resource_properties,
                &d.physical_resource_id,
            )
            .await
        }
        CfnRequest::Create(c) => {
            ensure(app, target, &c.resource_properties, known, work_deadline).await
        }
        CfnRequest::Update(u) => {
            ensure(app, target, &u.resource_properties, known, work_deadline).await
        }
        CfnRequest::Delete(d) => {
            delete(app, target, &d.resource_properties, &d.physical_resource_id).await
        }
        _ => Response::failed(
            target,
            fallback_physical_id(target),
            format!("unsupported RequestType {:?}", target.request_type),
        ),
    }
}

/// Create and Update: drive the grant to ACTIVE, re-checking until the wait budget or the
/// deadline runs out.
async fn ensure(
    app: &App,
    target: &Target,
    properties: &Value,
    known: &Known,
    work_deadline: Instant,
) -> Response {
    let props = match parse_properties(
        properties,
        &target.stack_id,
        app.config.allow_account_override,
    ) {
        Ok(p) => p,
        Err(e) => return Response::failed(target, fallback_physical_id(target), reason_of(&e)),
    };
    let (license_arn, product_sku) = match resolve_license(&app.engine, &props.license).await {
        Ok(found) => found,
        Err(e) => return Response::failed(target, fallback_physical_id(target), reason_of(&e)),
    };
    let attempt = Attempt {
        account: props.account.clone(),
        license_arn,
        product_sku,
        override_behavior: props.override_behavior,
        fallback_physical_id: fallback_physical_id(target),
    };
    let started = Instant::now();
    let poll = app.config.poll_interval;
    loop {
        let report = app.engine.run(work_for(&attempt)).await;
        log_report(&report);
        if let Some(done) = settled(target, &attempt, &report) {
            return done;
        }
        *known.lock().unwrap_or_else(|p| p.into_inner()) = Some((attempt.clone(), report.clone()));
        let next = Instant::now() + poll;
        if next >= work_deadline || started.elapsed() + poll > app.config.wait_for_active {
            return match report.outcome {
                Outcome::Pending => pending_answer(app, target, &attempt, &report).await,
                _ => Response::failed(
                    target,
                    physical_id(&attempt, &report),
                    failure_reason(&report).unwrap_or_else(|| "not entitled".into()),
                ),
            };
        }
        tokio::time::sleep(poll).await;
    }
}

/// The answer for a report that needs no further attempt, or `None` (pending, or a retryable
/// failure: try again while time remains).
fn settled(target: &Target, attempt: &Attempt, report: &AccountReport) -> Option<Response> {
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

/// The answer for a grant still in License Manager's workflow when time is up.
async fn pending_answer(
    app: &App,
    target: &Target,
    attempt: &Attempt,
    report: &AccountReport,
) -> Response {
    let physical = physical_id(attempt, report);
    let reason = pending_reason(attempt, report);
    match (app.config.pending_response, &app.config.recheck_queue_url) {
        (PendingResponse::Success, Some(queue)) => {
            let first_seen = unix_now();
            let body = Recheck {
                account_id: attempt.account.to_string(),
                license_arn: attempt.license_arn.clone(),
                override_behavior: attempt.override_behavior.map(|b| b.as_str().to_string()),
                first_seen,
                attempt: 0,
            };
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
        _ => Response::failed(
            target,
            physical,
            format!(
                "{reason}; launch again later (the same grant is reused), or set PENDING_GRANT_RESPONSE=SUCCESS to answer now and finish in the background"
            ),
        )
        .with_data(data(attempt, report, "PENDING")),
    }
}

fn pending_reason(attempt: &Attempt, report: &AccountReport) -> String {
    let line = report.licenses.first();
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

/// Delete: deactivates the account's grant only when `DeactivateOnDelete` is true; a Delete
/// for a resource that never got a grant (a failed Create being rolled back) is a no-op.
async fn delete(app: &App, target: &Target, properties: &Value, physical_id: &str) -> Response {
    let keep = physical_id.to_string();
    let props: Properties = match parse_properties(
        properties,
        &target.stack_id,
        app.config.allow_account_override,
    ) {
        Ok(p) => p,
        Err(e) => {
            return Response::success(
                target,
                keep,
                format!("nothing to deactivate: {}", reason_of(&e)),
            )
        }
    };
    if !props.deactivate_on_delete {
        return Response::success(
            target,
            keep,
            "grant left in place (DeactivateOnDelete is false)".into(),
        );
    }
    if !is_grant_arn(physical_id) {
        return Response::success(
            target,
            keep,
            "no grant was made for this resource; nothing to deactivate".into(),
        );
    }
    let license_arns = match &props.license {
        LicenseRef::Arn(arn) => vec![arn.clone()],
        LicenseRef::Sku(sku) => match app.engine.held_marketplace_licenses().await {
            Ok(held) => held
                .iter()
                .filter(|l| l.sku.as_deref() == Some(sku.as_str()))
                .map(|l| l.arn.clone())
                .collect(),
            Err(e) => return Response::failed(target, keep, reason_of(&e)),
        },
    };
    let report = app
        .engine
        .offboard(
            &props.account,
            Some(&license_arns),
            OffboardMode::Deactivate,
            "catalog-delete",
        )
        .await;
    log_report(&report);
    if report.outcome == Outcome::Failed {
        let reason = failure_reason(&report).unwrap_or_else(|| "deactivation failed".into());
        return Response::failed(target, keep, reason);
    }
    let deactivated: Vec<&str> = report
        .licenses
        .iter()
        .filter(|l| l.actions.iter().any(|a| a == "DeactivateGrant"))
        .filter_map(|l| l.grant_arn.as_deref())
        .collect();
    let reason = if deactivated.is_empty() {
        format!(
            "account {} has no active per-account grant for this license; nothing deactivated",
            props.account
        )
    } else {
        format!("deactivated {}", deactivated.join(", "))
    };
    Response::success(target, keep, reason)
}

/// The license ARN (and SKU) a request names. A SKU must match exactly one held license:
/// several would entitle the account to competing licenses of one product.
async fn resolve_license(
    engine: &Engine,
    license: &LicenseRef,
) -> Result<(String, Option<String>), Error> {
    match license {
        LicenseRef::Arn(arn) => Ok((arn.clone(), None)),
        LicenseRef::Sku(sku) => {
            let held = engine.held_marketplace_licenses().await?;
            let matches: Vec<_> = held
                .iter()
                .filter(|l| l.sku.as_deref() == Some(sku.as_str()))
                .collect();
            match matches.as_slice() {
                [one] => Ok((one.arn.clone(), Some(sku.clone()))),
                [] => Err(Error::Config(format!(
                    "ProductSku {sku} matches no AVAILABLE AWS/Marketplace license held by the management account"
                ))),
                many => Err(Error::Config(format!(
                    "ProductSku {sku} matches {} licenses ({}); set LicenseArn to choose one",
                    many.len(),
                    many.iter().map(|l| l.arn.as_str()).collect::<Vec<_>>().join(", ")
                ))),
            }
        }
    }
}

fn work_for(attempt: &Attempt) -> Request {
    Request::Work(Work {
        account_id: attempt.account.clone(),
        trigger: Trigger::Onboard("catalog".into()),
        account_name: None,
        ou_id: None,
        ou_name: None,
        attempt: 0,
        first_seen: None,
        explicit: Some(Explicit {
            licenses: vec![LicenseRef::Arn(attempt.license_arn.clone())],
            override_behavior: attempt.override_behavior,
            queue_recheck: false,
        }),
    })
}

fn data(attempt: &Attempt, report: &AccountReport, entitlement: &str) -> BTreeMap<String, String> {
    let line = report.licenses.first();
    let text = |v: Option<&String>| v.cloned().unwrap_or_default();
    BTreeMap::from([
        (
            keys::GRANT_ARN.to_string(),
            text(line.and_then(|l| l.grant_arn.as_ref())),
        ),
        (keys::LICENSE_ARN.to_string(), attempt.license_arn.clone()),
        (
            keys::PRODUCT_SKU.to_string(),
            line.and_then(|l| l.product_sku.clone())
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
fn physical_id(attempt: &Attempt, report: &AccountReport) -> String {
    report
        .licenses
        .first()
        .and_then(|l| l.grant_arn.clone())
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| attempt.fallback_physical_id.clone())
}

/// Update/Delete keep their physical id; a Create that fails gets a stable placeholder (its
/// rollback Delete then recognises that no grant was made).
fn fallback_physical_id(target: &Target) -> String {
    target
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| format!("not-entitled-{}", target.request_id))
}

fn failure_reason(report: &AccountReport) -> Option<String> {
    report.deciding_error().map(error_text)
}

fn error_text(e: &ErrorReport) -> String {
    format!("{} ({}): {}", e.kind, e.retry, e.message)
}

fn reason_of(e: &Error) -> String {
    error_text(&ErrorReport::from(e))
}

async fn send_recheck(
    app: &App,
    queue: &str,
    body: &Recheck,
    delay: Duration,
) -> Result<(), Error> {
    let text = serde_json::to_string(body).map_err(|e| Error::InvalidInput(e.to_string()))?;
    shared::aws::send_recheck(&app.sqs, queue, &text, delay, &CallLog::default()).await
}

/// An SQS batch of delayed re-checks, answered with a partial batch response.
async fn handle_rechecks(app: &App, items: Vec<(String, String)>) -> Value {
    let mut failures = Vec::new();
    for (id, body) in items {
        if let Err(e) = recheck_one(app, &body).await {
            tracing::warn!(message_id = %id, kind = e.kind(), retry = %e.retry(), error = %e, "re-check failed");
            failures.push(json!({ "itemIdentifier": id }));
        }
    }
    json!({ "batchItemFailures": failures })
}

async fn recheck_one(app: &App, body: &str) -> Result<(), Error> {
    let (recheck, account, behavior) = Recheck::parse(body).inspect_err(log_rejected)?;
    let attempt = Attempt {
        account,
        license_arn: recheck.license_arn.clone(),
        product_sku: None,
        override_behavior: behavior,
        fallback_physical_id: String::new(),
    };
    let report = app.engine.run(work_for(&attempt)).await;
    log_report(&report);
    match report.outcome {
        Outcome::Pending => {
            let deadline = app.engine.config().workflow_deadline;
            if unix_now().saturating_sub(recheck.first_seen) >= deadline.as_secs() {
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
                ..recheck
            };
            send_recheck(app, queue, &next, app.engine.config().recheck_delay).await
        }
        Outcome::Failed => Err(report
            .deciding_error()
            .map(|e| Error::GrantFailed {
                grant_arn: physical_id(&attempt, &report),
                status: e.kind.clone(),
                reason: e.message.clone(),
            })
            .unwrap_or_else(|| Error::InvalidInput("failed without an error".into()))),
        _ => Ok(()),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}

fn log_report(report: &AccountReport) {
    match serde_json::to_string(report) {
        Ok(line) => println!("{{\"type\":\"accountReport\",\"report\":{line}}}"),
        Err(e) => tracing::error!(error = %e, "could not serialize a report"),
    }
}

fn log_response(target: &Target, response: &Response) {
    let line = json!({
        "type": "customResourceResponse",
        "requestType": target.request_type,
        "stackId": target.stack_id,
        "logicalResourceId": target.logical_resource_id,
        "requestId": target.request_id,
        "status": if response.is_success() { "SUCCESS" } else { "FAILED" },
        "physicalResourceId": response.physical_resource_id,
        "reason": response.reason,
        "data": response.data,
    });
    println!("{line}");
}

fn log_rejected(e: &Error) {
    tracing::error!(kind = e.kind(), retry = %e.retry(), error = %e, "input rejected before any AWS call");
}
