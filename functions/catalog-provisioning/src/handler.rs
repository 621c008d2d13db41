//! The custom resource: every request is answered (PUT to its ResponseURL) before the Lambda
//! deadline: on success, on bad input, on AWS errors, on a panic and when time runs out.
//!
//! This module dispatches: an invocation's requests go to the module of their resource type
//! ([`entitlement`]: `Custom::MarketplaceEntitlement`, [`share`]:
//! `Custom::MarketplacePortfolioShare`), an SQS batch to the entitlement's re-checks. The
//! deadline, the panic path and the PUT are handled here for both.

mod entitlement;
mod share;

pub use entitlement::keys;

use crate::config::CatalogConfig;
use crate::portfolio;
use crate::request::{answer_margin, classify, parse_request, stack_account, Incoming, Target};
use crate::verify::StackReader;
use serde_json::{json, Value};
use shared::custom_resource::{service_timeout, Responder, Response, DEFAULT_SERVICE_TIMEOUT};
use shared::error::ErrorReport;
use shared::ids::AccountId;
use shared::{engine::Engine, error::Error};
use std::time::Duration;
use tokio::time::Instant;

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

impl App {
    /// Now in Unix seconds, on the configuration's clock.
    fn unix_now(&self) -> u64 {
        self.config.clock.unix_secs()
    }
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
        Incoming::Rechecks(items) => {
            Ok(Box::pin(entitlement::handle_rechecks(app, items, deadline)).await)
        }
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
/// The ServiceTimeout's bounds are on the app's clock (`answer_at`, `answer_by`) as well as in
/// `work_deadline`, which cuts off work that hangs.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    work_deadline: Instant,
    /// When the ServiceTimeout leaves no more time to wait, on the app's clock (time since
    /// the Unix epoch): `answer_by` to the sub-second.
    answer_at: Duration,
    /// Unix seconds.
    answer_by: u64,
    service_timeout: Duration,
}

impl Bounds {
    /// The bounds of a request arriving now, invoked with the Lambda deadline `deadline`.
    fn of(app: &App, raw: &Value, deadline: Instant) -> Bounds {
        let now = Instant::now();
        let epoch_now = app.config.clock.now();
        // A bad ServiceTimeout is reported by the property checks; until then, the default.
        let timeout = raw
            .get("ResourceProperties")
            .map(|p| service_timeout(p).unwrap_or(DEFAULT_SERVICE_TIMEOUT))
            .unwrap_or(DEFAULT_SERVICE_TIMEOUT);
        let answer_within = timeout.saturating_sub(answer_margin(timeout));
        let answer_by = epoch_now.as_secs() + answer_within.as_secs();
        let work_deadline = deadline
            .checked_sub(app.config.safety_margin)
            .filter(|d| *d > now)
            .unwrap_or(now)
            .min(now + answer_within);
        Bounds {
            work_deadline,
            answer_at: epoch_now + answer_within,
            answer_by,
            service_timeout: timeout,
        }
    }
}

/// Answers one custom-resource request: works on it until its bounds' work deadline (a panic
/// or the deadline answer FAILED, or hand a pending grant to a re-check), then PUTs the answer.
async fn answer(app: &App, raw: &Value, deadline: Instant, via_sns: bool) -> Result<Value, Error> {
    let target = Target::from_request(raw).inspect_err(log_rejected)?;
    // Only CloudFormation's own answer slot for the named stack ever receives a response.
    app.responder
        .validate_for(&target.response_url, &target.stack_id)
        .inspect_err(log_rejected)?;
    let bounds = Bounds::of(app, raw, deadline);
    let known = entitlement::Known::default();
    let work = shared::lambda::guarded(respond(app, raw, &target, &known, bounds, via_sns));
    let reply = match tokio::time::timeout_at(bounds.work_deadline, work).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(message)) => panicked(&target, &message),
        Err(_) => entitlement::late_reply(app, &target, &known, bounds, deadline).await,
    };
    match reply {
        Reply::Answer(response) => deliver(app, &target, &response, deadline).await,
        Reply::Deferred {
            physical_id,
            reason,
        } => Ok(deferred(&target, bounds, physical_id, reason)),
    }
}

/// FAILED for a request whose handling panicked.
fn panicked(target: &Target, message: &str) -> Reply {
    tracing::error!(request_id = %target.request_id, panic = %message, "the handler panicked; answering FAILED");
    Reply::Answer(Response::failed(
        target,
        fallback_physical_id(target),
        format!("internal error (the function panicked: {message}); see the function's logs for request {}", target.request_id),
    ))
}

/// Logs a request left to a re-check; its summary in the invocation's result.
fn deferred(target: &Target, bounds: Bounds, physical_id: String, reason: String) -> Value {
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
    json!({
        "requestId": target.request_id,
        "logicalResourceId": target.logical_resource_id,
        "status": "WAITING",
        "physicalResourceId": physical_id,
        "answerBy": bounds.answer_by,
    })
}

/// Logs the answer and PUTs it to the request's ResponseURL; its summary in the result.
async fn deliver(
    app: &App,
    target: &Target,
    response: &Response,
    deadline: Instant,
) -> Result<Value, Error> {
    log_response(target, response);
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

/// The reply to one request, by its resource type: what is not a portfolio share is acted on
/// as an entitlement.
async fn respond(
    app: &App,
    raw: &Value,
    target: &Target,
    known: &entitlement::Known,
    bounds: Bounds,
    via_sns: bool,
) -> Reply {
    let request = match parse_request(raw) {
        Ok(r) => r,
        Err(e) => return failed(target, reason_of(&e)),
    };
    let resource_type = raw
        .get("ResourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let stack_owner = match stack_account(&target.stack_id) {
        Ok(account) => account,
        Err(e) => return failed(target, reason_of(&e)),
    };
    let from = Origin {
        stack_owner,
        via_sns,
    };
    if resource_type == portfolio::RESOURCE_TYPE {
        share::respond(app, request, target, &from, bounds).await
    } else {
        entitlement::respond(app, request, target, &from, known, bounds).await
    }
}

/// Where a request came from: the account of the stack it names, and whether it came through
/// the product-launch topic.
struct Origin {
    stack_owner: AccountId,
    via_sns: bool,
}

/// FAILED with `reason`, under the request's existing or fallback physical id.
fn failed(target: &Target, reason: String) -> Reply {
    Reply::Answer(Response::failed(
        target,
        fallback_physical_id(target),
        reason,
    ))
}

/// FAILED for a RequestType that is neither Create, Update nor Delete.
fn unsupported(target: &Target) -> Response {
    Response::failed(
        target,
        fallback_physical_id(target),
        format!("unsupported RequestType {:?}", target.request_type),
    )
}

/// Update/Delete keep their physical id; a Create that fails gets a stable placeholder (its
/// rollback Delete then recognises that no grant was made).
fn fallback_physical_id(target: &Target) -> String {
    target
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| format!("not-entitled-{}", target.request_id))
}

fn error_text(e: &ErrorReport) -> String {
    format!("{} ({}): {}", e.kind, e.retry, e.message)
}

fn reason_of(e: &Error) -> String {
    error_text(&ErrorReport::from(e))
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

fn log_rejected(e: &Error) {
    tracing::error!(kind = e.kind(), retry = %e.retry(), error = %e, "input rejected before any AWS call");
}
