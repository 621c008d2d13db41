//! The custom resource: every request is answered (PUT to its ResponseURL) before the Lambda
//! deadline: on success, on bad input, on AWS errors, on a panic and when time runs out.

use crate::config::{CatalogConfig, PendingResponse};
use crate::portfolio;
use crate::request::{
    answer_margin, classify, is_grant_arn, parse_properties, parse_request, stack_account,
    CfnRequest, Incoming, Properties, Recheck, Target, Waiting, RESOURCE_TYPE,
};
use crate::verify::{judge, needs_verification, Claim, StackReader, Verdict};
use futures::FutureExt;
use serde_json::{json, Value};
use shared::config::{LicenseRef, OverrideBehavior, Selection};
use shared::custom_resource::{service_timeout, Responder, Response};
use shared::decide::{Source, WaitReason};
use shared::engine::OffboardMode;
use shared::engine::Wanted;
use shared::event::{ActivationMark, Explicit, Request, Trigger, Work};
use shared::ids::AccountId;
use shared::report::{AccountReport, CallLog, ErrorReport, LicenseReport};
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
    /// Reads claimed stacks in their own accounts (requests that must be verified).
    pub stacks: StackReader,
}

/// Handles one invocation. `deadline` is the Lambda deadline.
///
/// Custom-resource requests are answered; the return value summarises the answers. An error is
/// returned only when a request could not be answered at all (no usable ResponseURL, or the PUT
/// failed), so that the asynchronous invocation is retried and then sent to its failure
/// destination. An SQS batch of re-checks returns a partial batch response.
pub async fn handle(app: &App, payload: Value, deadline: Instant) -> Result<Value, Error> {
    match classify(&payload).inspect_err(log_rejected)? {
        Incoming::CustomResource {
            requests,
            rejected,
            via_sns,
        } => {
            let results = futures::future::join_all(
                requests
                    .iter()
                    .map(|raw| Box::pin(answer(app, raw, deadline, via_sns))),
            )
            .await;
            let mut answered = Vec::new();
            for result in results {
                answered.push(result?);
            }
            // The records that carried no request fail the invocation (retried, then parked),
            // after every other record was answered.
            rejected.iter().for_each(log_rejected);
            if let Some(first) = rejected.into_iter().next() {
                return Err(first);
            }
            Ok(json!({ "viaSns": via_sns, "responses": answered }))
        }
        Incoming::Rechecks(items) => Ok(Box::pin(handle_rechecks(app, items, deadline)).await),
    }
}

/// What an invocation does about one custom-resource request.
#[derive(Debug)]
enum Reply {
    /// PUT this now.
    Answer(Response),
    /// Answered later, by a re-check (`PENDING_GRANT_RESPONSE=WAIT`).
    Deferred { physical_id: String, reason: String },
}

/// How long a request may take: the work stops at `work_deadline` (the Lambda deadline minus
/// the safety margin, and the ServiceTimeout); a waiting request is answered by `answer_by`.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    work_deadline: Instant,
    /// Unix seconds.
    answer_by: u64,
    service_timeout: Duration,
}

/// What one request is about, once its properties are known (for the timeout path).
#[derive(Debug, Clone)]
struct Attempt {
    account: AccountId,
    license_arn: String,
    product_sku: Option<String>,
    override_behavior: Option<OverrideBehavior>,
    fallback_physical_id: String,
    /// Activations requested so far for this request (never requested twice).
    activations: Vec<ActivationMark>,
    /// Delayed re-checks before this run (0 while the launch's own invocation polls).
    rechecks: u32,
}

impl Attempt {
    /// Remembers the activations a run requested: one mark per grant, the latest (the engine
    /// reads the first mark of a grant, so an older one, e.g. the wait for a bulk activation,
    /// must not hide the activation requested since).
    fn learn(&mut self, report: &AccountReport) {
        for mark in &report.activations_requested {
            self.activations.retain(|m| m.grant_arn != mark.grant_arn);
            self.activations.push(mark.clone());
        }
    }
}

/// The last report of a request still being worked on.
type Known = Mutex<Option<(Attempt, AccountReport)>>;

async fn answer(app: &App, raw: &Value, deadline: Instant, via_sns: bool) -> Result<Value, Error> {
    let target = Target::from_request(raw).inspect_err(log_rejected)?;
    // Only CloudFormation's own answer slot for the named stack ever receives a response.
    app.responder
        .validate_for(&target.response_url, &target.stack_id)
        .inspect_err(log_rejected)?;
    let now = Instant::now();
    // A bad ServiceTimeout is reported by the property checks; until then, the default.
    let timeout = raw
        .get("ResourceProperties")
        .map(|p| service_timeout(p).unwrap_or(shared::custom_resource::DEFAULT_SERVICE_TIMEOUT))
        .unwrap_or(shared::custom_resource::DEFAULT_SERVICE_TIMEOUT);
    let answer_within = timeout.saturating_sub(answer_margin(timeout));
    let bounds_answer_by = unix_now() + answer_within.as_secs();
    let work_deadline = deadline
        .checked_sub(app.config.safety_margin)
        .filter(|d| *d > now)
        .unwrap_or(now)
        .min(now + answer_within);
    let bounds = Bounds {
        work_deadline,
        answer_by: bounds_answer_by,
        service_timeout: timeout,
    };
    let known: Known = Mutex::new(None);
    let work = AssertUnwindSafe(respond(app, raw, &target, &known, bounds, via_sns)).catch_unwind();
    let reply = match tokio::time::timeout_at(work_deadline, work).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(panic)) => {
            let message = panic_message(&*panic);
            tracing::error!(request_id = %target.request_id, panic = %message, "the handler panicked; answering FAILED");
            Reply::Answer(Response::failed(
                &target,
                fallback_physical_id(&target),
                format!("internal error (the function panicked: {message}); see the function's logs for request {}", target.request_id),
            ))
        }
        Err(_) => {
            let last = known.lock().unwrap_or_else(|p| p.into_inner()).take();
            match last {
                Some((attempt, report)) if still_working(&report) => {
                    // Whatever is left of the margin, minus time for the PUT itself.
                    let budget = deadline.saturating_duration_since(Instant::now()) / 2;
                    match tokio::time::timeout(budget, pending_reply(app, &target, &attempt, &report, bounds)).await {
                        Ok(reply) => reply,
                        Err(_) => Reply::Answer(Response::failed(
                            &target,
                            physical_id(&attempt, &report),
                            format!("{}; no time was left to queue a re-check", pending_reason(&attempt, &report)),
                        )),
                    }
                }
                Some((attempt, report)) => Reply::Answer(Response::failed(
                    &target,
                    physical_id(&attempt, &report),
                    format!(
                        "the request did not finish before the Lambda deadline; last attempt: {}",
                        failure_reason(&report).unwrap_or_else(|| format!("{:?}", report.outcome))
                    ),
                )),
                None => Reply::Answer(Response::failed(
                    &target,
                    fallback_physical_id(&target),
                    "the request did not finish before the Lambda deadline (AWS calls did not answer in time)".to_string(),
                )),
            }
        }
    };
    let response = match reply {
        Reply::Answer(response) => response,
        Reply::Deferred {
            physical_id,
            reason,
        } => {
            let line = json!({
                "requestType": target.request_type,
                "stackId": target.stack_id,
                "logicalResourceId": target.logical_resource_id,
                "requestId": target.request_id,
                "physicalResourceId": physical_id,
                "reason": reason,
                "answerBy": bounds.answer_by,
            });
            shared::report::emit("customResourceDeferred", line);
            return Ok(json!({
                "requestId": target.request_id,
                "logicalResourceId": target.logical_resource_id,
                "status": "WAITING",
                "physicalResourceId": physical_id,
                "answerBy": bounds.answer_by,
            }));
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

async fn respond(
    app: &App,
    raw: &Value,
    target: &Target,
    known: &Known,
    bounds: Bounds,
    via_sns: bool,
) -> Reply {
    let failed = |reason: String| {
        Reply::Answer(Response::failed(
            target,
            fallback_physical_id(target),
            reason,
        ))
    };
    let request = match parse_request(raw) {
        Ok(r) => r,
        Err(e) => return failed(reason_of(&e)),
    };
    let work_deadline = bounds.work_deadline;
    let resource_type = raw
        .get("ResourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let is_share = resource_type == portfolio::RESOURCE_TYPE;
    let stack_owner = match stack_account(&target.stack_id) {
        Ok(account) => account,
        Err(e) => return failed(reason_of(&e)),
    };
    let own_account = app.engine.config().self_account_id.as_ref();
    if is_share {
        // Shares act on the deployment account's own portfolios: only its own stacks, invoking
        // the function directly, may ask (never the organization-wide topic).
        if via_sns || own_account != Some(&stack_owner) {
            return failed(format!(
                "{} is served only for stacks in the account ct-entitlements runs in ({}), invoking the function directly; this request names a stack in {stack_owner}{}; nothing was shared",
                portfolio::RESOURCE_TYPE,
                own_account.map_or("SELF_ACCOUNT_ID is not set".to_string(), ToString::to_string),
                if via_sns { " and came through the product-launch topic" } else { "" },
            ));
        }
    } else if needs_verification(via_sns, &stack_owner, own_account)
        && may_write(app, &request, target)
    {
        let claim = Claim {
            request_type: &target.request_type,
            // What the request is acted on as, whatever type it claims: a decoy custom resource
            // of another type in progress in the account must not pass for a launch.
            resource_type: RESOURCE_TYPE,
            logical_id: &target.logical_resource_id,
            stack_id: &target.stack_id,
            physical_id: target.physical_resource_id.as_deref(),
        };
        let calls = CallLog::default();
        let verdict = match app.stacks.observe(&stack_owner, &claim, &calls).await {
            Ok(observed) => judge(&claim, observed.as_ref()),
            Err(e) => Verdict::Refuse(format!(
                "the request could not be verified against CloudFormation in account {stack_owner} ({}); nothing was done{}",
                reason_of(&e),
                if e.is_retryable() { "; retry the launch" } else { "" },
            )),
        };
        log_verification(target, &stack_owner, &verdict);
        match verdict {
            Verdict::Proceed => {}
            Verdict::ReplacedCleanup => {
                return Reply::Answer(Response::success(
                    target,
                    fallback_physical_id(target),
                    "the resource was replaced; the account's grant belongs to the new one and is left in place".into(),
                ))
            }
            Verdict::Refuse(reason) => return failed(reason),
        }
    }
    let poll = app.config.poll_interval;
    let share = match request {
        CfnRequest::Create(ref c) if is_share && !share_allowed(app, &c.resource_properties) => {
            Response::failed(
                target,
                fallback_physical_id(target),
                share_refusal(&c.resource_properties),
            )
        }
        CfnRequest::Update(ref u) if is_share && !share_allowed(app, &u.resource_properties) => {
            Response::failed(
                target,
                fallback_physical_id(target),
                share_refusal(&u.resource_properties),
            )
        }
        CfnRequest::Delete(ref d) if is_share && !share_allowed(app, &d.resource_properties) => {
            Response::success(
                target,
                d.physical_resource_id.clone(),
                format!(
                    "share left in place: {}",
                    share_refusal(&d.resource_properties)
                ),
            )
        }
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
            return ensure(app, target, &c.resource_properties, known, bounds).await
        }
        CfnRequest::Update(u) => {
            return ensure(app, target, &u.resource_properties, known, bounds).await
        }
        CfnRequest::Delete(d) => {
            delete(app, target, &d.resource_properties, &d.physical_resource_id).await
        }
        _ => Response::failed(
            target,
            fallback_physical_id(target),
            format!("unsupported RequestType {:?}", target.request_type),
        ),
    };
    Reply::Answer(share)
}

/// Create and Update: drive the grant to ACTIVE, re-checking until the wait budget or the
/// deadline runs out; then answer, or hand the request to a re-check (`WAIT`).
async fn ensure(
    app: &App,
    target: &Target,
    properties: &Value,
    known: &Known,
    bounds: Bounds,
) -> Reply {
    let failed = |e: &Error| {
        Reply::Answer(Response::failed(
            target,
            fallback_physical_id(target),
            reason_of(e),
        ))
    };
    let props = match parse_properties(
        properties,
        &target.stack_id,
        app.config.allow_account_override,
    ) {
        Ok(p) => p,
        Err(e) => return failed(&e),
    };
    let (license_arn, product_sku) = match resolve_license(&app.engine, &props.license).await {
        Ok(found) => found,
        Err(e) => return failed(&e),
    };
    if let Err(refusal) =
        launch_bounds(app, &props.account, &license_arn, product_sku.as_deref()).await
    {
        return Reply::Answer(Response::failed(
            target,
            fallback_physical_id(target),
            refusal,
        ));
    }
    let mut attempt = Attempt {
        account: props.account.clone(),
        license_arn,
        product_sku,
        override_behavior: props.override_behavior,
        fallback_physical_id: fallback_physical_id(target),
        activations: Vec::new(),
        rechecks: 0,
    };
    let started = Instant::now();
    let poll = app.config.poll_interval;
    loop {
        let report = Box::pin(app.engine.run(work_for(&attempt))).await;
        log_report(&report);
        attempt.learn(&report);
        if let Some(done) = settled(target, &attempt, &report) {
            return Reply::Answer(done);
        }
        *known.lock().unwrap_or_else(|p| p.into_inner()) = Some((attempt.clone(), report.clone()));
        let next = Instant::now() + poll;
        if next >= bounds.work_deadline || started.elapsed() + poll > app.config.wait_for_active {
            return pending_reply(app, target, &attempt, &report, bounds).await;
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

/// The reply for a grant still in License Manager's workflow (or a retryable failure) when the
/// invocation's time is up.
async fn pending_reply(
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
            let left = bounds.answer_by.saturating_sub(unix_now());
            if left < 2 {
                return Reply::Answer(timed_out(target, attempt, report, bounds.service_timeout));
            }
            let delay = app.config.pending_recheck_interval.min(Duration::from_secs(left));
            let body = first_recheck(
                attempt,
                Some(Waiting::new(
                    target,
                    attempt.product_sku.clone(),
                    bounds.service_timeout.as_secs(),
                    bounds.answer_by,
                )),
            );
            match send_recheck(app, queue, &body, delay).await {
                Ok(()) => Reply::Deferred {
                    physical_id: physical,
                    reason: format!(
                        "{reason}; re-checked every {}s, answered when ACTIVE or by the resource's ServiceTimeout",
                        app.config.pending_recheck_interval.as_secs()
                    ),
                },
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
        (PendingResponse::Wait, None) => Reply::Answer(
            Response::failed(
                target,
                physical,
                format!("{reason}; CATALOG_RECHECK_QUEUE_URL is not set, so the function cannot wait beyond this invocation: launch again later (the same grant is reused)"),
            )
            .with_data(data(attempt, report, "PENDING")),
        ),
        (PendingResponse::Success, Some(queue)) if report.outcome == Outcome::Pending => {
            let body = first_recheck(attempt, None);
            let delay = app.engine.config().recheck_delay;
            Reply::Answer(match send_recheck(app, queue, &body, delay).await {
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
            })
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

/// FAILED because the grant did not become ACTIVE within the resource's ServiceTimeout.
fn timed_out(
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

fn pending_reason(attempt: &Attempt, report: &AccountReport) -> String {
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

/// Whether answering an entitlement request could call AWS to write: bad properties are
/// answered without any call (Create/Update: FAILED; Delete: nothing to deactivate), as is a
/// Delete that deactivates nothing. Only the rest are worth reading CloudFormation for.
fn may_write(app: &App, request: &CfnRequest, target: &Target) -> bool {
    let parse = |properties: &Value| {
        parse_properties(
            properties,
            &target.stack_id,
            app.config.allow_account_override,
        )
    };
    match request {
        CfnRequest::Create(c) => parse(&c.resource_properties).is_ok(),
        CfnRequest::Update(u) => parse(&u.resource_properties).is_ok(),
        CfnRequest::Delete(d) => {
            parse(&d.resource_properties).is_ok_and(|p| p.deactivate_on_delete)
                && is_grant_arn(&d.physical_resource_id)
        }
        _ => false,
    }
}

/// Whether a share request names a portfolio `CATALOG_SHARE_PORTFOLIOS` lists.
fn share_allowed(app: &App, properties: &Value) -> bool {
    properties
        .get("PortfolioId")
        .and_then(Value::as_str)
        .is_some_and(|id| app.config.share_portfolios.iter().any(|p| p == id.trim()))
}

fn share_refusal(properties: &Value) -> String {
    format!(
        "portfolio {} is not in CATALOG_SHARE_PORTFOLIOS (CatalogSharePortfolioIds); nothing was shared",
        properties
            .get("PortfolioId")
            .and_then(Value::as_str)
            .map_or_else(|| "(none)".to_string(), shared::error::echo)
    )
}

/// What a launch may ask for: `CATALOG_LICENSES`, and (`CATALOG_SELECTION_RULES=apply`) the
/// account-level rules of the deployment's selection (`TARGET_OUS`, `ACCOUNT_TAG_FILTER`, OU
/// rules, the licenses tag). `Err` is the refusal, said to CloudFormation; nothing is written.
async fn launch_bounds(
    app: &App,
    account: &AccountId,
    license_arn: &str,
    sku: Option<&str>,
) -> Result<(), String> {
    let config = app.engine.config();
    let named = match sku {
        Some(sku) => format!("license {license_arn} (product SKU {sku})"),
        None => format!("license {license_arn}"),
    };
    let listed = app.config.licenses.lists(license_arn, sku);
    if listed == Some(false) {
        return Err(format!(
            "{named} is not in CATALOG_LICENSES (CatalogLicenses), which bounds what product launches may ask for; nothing was done"
        ));
    }
    let account_rules = !config.target_ous.is_empty()
        || config.account_tag_filter.is_some()
        || (listed.is_none() && (!config.ou_rules.is_empty() || config.licenses_tag_key.is_some()));
    if app.config.apply_selection_rules && account_rules {
        let wanted = app.engine.selection_of(account).await.map_err(|e| {
            format!(
                "the selection rules could not be read for account {account} ({}); nothing was done",
                reason_of(&e)
            )
        })?;
        return match wanted {
            Wanted::Skip(reason) => Err(format!(
                "account {account} is outside the selection: {reason} (CATALOG_SELECTION_RULES=apply); nothing was done"
            )),
            Wanted::Unknown(reason) => Err(format!(
                "the selection for account {account} could not be read: {reason}; nothing was done"
            )),
            Wanted::Licenses { arns, .. } if listed.is_none() && !arns.iter().any(|a| a == license_arn) => Err(format!(
                "{named} is not selected for account {account} (its OU rule, the license selection or its licenses tag); nothing was done"
            )),
            Wanted::Licenses { .. } => Ok(()),
        };
    }
    if listed.is_some() {
        return Ok(());
    }
    let selected = match &config.selection {
        Selection::AllMarketplace => true,
        Selection::Listed(list) => list.iter().any(|item| match item {
            LicenseRef::Arn(a) => a == license_arn,
            LicenseRef::Sku(s) => Some(s.as_str()) == sku,
        }),
        Selection::PerRequest => false,
    };
    if selected {
        Ok(())
    } else {
        Err(format!(
            "{named} is not in the deployment's license selection, and CATALOG_LICENSES (CatalogLicenses) is empty; nothing was done"
        ))
    }
}

/// The license ARN (and SKU) a request names. A SKU must match exactly one held license:
/// several would entitle the account to competing licenses of one product.
async fn resolve_license(
    engine: &Engine,
    license: &LicenseRef,
) -> Result<(String, Option<String>), Error> {
    match license {
        // The SKU of a named ARN, when held (read from the cached listing): a SKU allow-list
        // then bounds ARN requests too.
        LicenseRef::Arn(arn) => Ok((
            arn.clone(),
            engine
                .held_marketplace_licenses()
                .await?
                .iter()
                .find(|l| &l.arn == arn)
                .and_then(|l| l.sku.clone()),
        )),
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

/// The first re-check of an attempt (`respond`: the launch still waiting for its answer).
fn first_recheck(attempt: &Attempt, respond: Option<Waiting>) -> Recheck {
    Recheck {
        account_id: attempt.account.to_string(),
        license_arn: attempt.license_arn.clone(),
        override_behavior: attempt.override_behavior.map(|b| b.as_str().to_string()),
        first_seen: unix_now(),
        attempt: 0,
        activations: attempt.activations.clone(),
        respond,
    }
}

fn work_for(attempt: &Attempt) -> Request {
    Request::Work(Work {
        account_id: attempt.account.clone(),
        trigger: Trigger::Onboard("catalog".into()),
        account_name: None,
        ou_id: None,
        ou_name: None,
        attempt: attempt.rechecks,
        backfill: false,
        first_seen: None,
        explicit: Some(Explicit {
            licenses: vec![LicenseRef::Arn(attempt.license_arn.clone())],
            override_behavior: attempt.override_behavior,
            queue_recheck: false,
        }),
        activations: attempt.activations.clone(),
    })
}

fn data(attempt: &Attempt, report: &AccountReport, entitlement: &str) -> BTreeMap<String, String> {
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
fn physical_id(attempt: &Attempt, report: &AccountReport) -> String {
    account_line(report)
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

/// An SQS batch of delayed re-checks, answered with a partial batch response. A re-check that
/// carries a waiting request answers it (or queues the next re-check): a message fails the
/// batch only when a retry can help (a PUT that did not get through, a background re-check).
async fn handle_rechecks(app: &App, items: Vec<(String, String)>, deadline: Instant) -> Value {
    let mut failures = Vec::new();
    for (id, body) in items {
        if let Err(e) = recheck_one(app, &body, deadline).await {
            tracing::warn!(message_id = %id, kind = e.kind(), retry = %e.retry(), error = %e, "re-check failed");
            failures.push(id);
        }
    }
    shared::handler::batch_response(failures)
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
    let service_timeout = Duration::from_secs(waiting.service_timeout);
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
            let left = waiting.answer_by.saturating_sub(unix_now());
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
            match (queued, &report) {
                (Some(Ok(next)), _) => {
                    tracing::info!(request_id = %target.request_id, attempt = next, seconds_left = left, "still waiting for the grant; re-check queued");
                    return Ok(());
                }
                (Some(Err(e)), Some(report)) => Response::failed(
                    &target,
                    physical_id(&attempt, report),
                    format!(
                        "{}, and the next re-check could not be queued: {e}",
                        pending_reason(&attempt, report)
                    ),
                )
                .with_data(data(&attempt, report, "PENDING")),
                (Some(Err(e)), None) => Response::failed(
                    &target,
                    attempt.fallback_physical_id.clone(),
                    format!("the re-check did not finish in time, and the next one could not be queued: {e}"),
                ),
                (None, Some(report)) => timed_out(&target, &attempt, report, service_timeout),
                (None, None) => Response::failed(
                    &target,
                    attempt.fallback_physical_id.clone(),
                    format!(
                        "the grant for {} in account {} was not confirmed ACTIVE within the resource's ServiceTimeout ({}s)",
                        attempt.license_arn, attempt.account, service_timeout.as_secs()
                    ),
                ),
            }
        }
    };
    log_response(&target, &response);
    match app
        .responder
        .put(&target.response_url, &response.body(), deadline)
        .await
    {
        Ok(()) => Ok(()),
        // An expired or refused URL: nothing a retry could change.
        Err(e) if e.retry() == Retry::Permanent => {
            tracing::error!(request_id = %target.request_id, error = %e, "CloudFormation refused the response; dropping the re-check");
            Ok(())
        }
        Err(e) => Err(e),
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
    shared::report::emit_account_report(report);
}

fn log_response(target: &Target, response: &Response) {
    let line = json!({
        "requestType": target.request_type,
        "stackId": target.stack_id,
        "logicalResourceId": target.logical_resource_id,
        "requestId": target.request_id,
        "status": if response.is_success() { "SUCCESS" } else { "FAILED" },
        "physicalResourceId": response.physical_resource_id,
        "reason": response.reason,
        "data": response.data,
    });
    shared::report::emit("customResourceResponse", line);
}

fn log_verification(target: &Target, account: &AccountId, verdict: &Verdict) {
    let (verdict, reason) = match verdict {
        Verdict::Proceed => ("verified", None),
        Verdict::ReplacedCleanup => ("replacedCleanup", None),
        Verdict::Refuse(reason) => ("refused", Some(reason.as_str())),
    };
    shared::report::emit(
        "customResourceVerification",
        json!({
            "requestType": target.request_type,
            "stackId": target.stack_id,
            "account": account.to_string(),
            "logicalResourceId": target.logical_resource_id,
            "requestId": target.request_id,
            "verdict": verdict,
            "reason": reason,
        }),
    );
}

fn log_rejected(e: &Error) {
    tracing::error!(kind = e.kind(), retry = %e.retry(), error = %e, "input rejected before any AWS call");
}
