//! The custom resource: every request is answered (PUT to its ResponseURL) before the Lambda
//! deadline: on success, on bad input, on AWS errors, on a panic and when time runs out.
//!
//! This module dispatches: an invocation's requests go to the module of their resource type
//! ([`entitlement`]: `Custom::MarketplaceEntitlement`, [`share`]:
//! `Custom::MarketplacePortfolioShare`), an SQS batch to the entitlement's re-checks. The
//! deadline, the panic path and the PUT are the custom-resource driver's
//! ([`shared::custom_resource::drive`]), told here what to answer for both.

mod entitlement;
mod share;

pub use entitlement::keys;

use crate::config::CatalogConfig;
use crate::portfolio;
use crate::request::{answer_margin, classify, parse_request, stack_account, Incoming, Target};
use crate::verify::StackReader;
use serde_json::{json, Value};
use shared::custom_resource::{drive, Limits, Resource, Responder, Response};
use shared::error::ErrorReport;
use shared::ids::AccountId;
use shared::{engine::Engine, error::Error};
use std::sync::OnceLock;
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

/// What an invocation does about one custom-resource request: PUT an answer now, or leave it
/// to a re-check ([`Deferred`]).
type Reply = shared::custom_resource::Reply<Deferred>;

/// A request answered later, by a re-check (`PENDING_GRANT_RESPONSE=WAIT`).
#[derive(Debug)]
struct Deferred {
    target: Target,
    physical_id: String,
    reason: String,
    /// Unix seconds ([`Bounds::answer_by`]).
    answer_by: u64,
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
    /// The bounds of a request whose work begins now, within the driver's `limits` (a bad
    /// ServiceTimeout is reported by the property checks; until then, the default).
    fn of(app: &App, limits: &Limits) -> Bounds {
        let epoch_now = app.config.clock.now();
        Bounds {
            work_deadline: limits.work_until,
            answer_at: epoch_now + limits.answer_within,
            answer_by: epoch_now.as_secs() + limits.answer_within.as_secs(),
            service_timeout: limits.service_timeout,
        }
    }
}

/// One custom-resource request, as the driver answers it: worked on until its bounds' work
/// deadline (a panic or the deadline answer FAILED, or hand a pending grant to a re-check).
struct Driven<'a> {
    app: &'a App,
    deadline: Instant,
    via_sns: bool,
    known: entitlement::Known,
    /// Worked out when the work begins.
    bounds: OnceLock<Bounds>,
}

impl Driven<'_> {
    fn bounds(&self, limits: &Limits) -> Bounds {
        *self.bounds.get_or_init(|| Bounds::of(self.app, limits))
    }
}

impl Resource for Driven<'_> {
    type Later = Deferred;

    fn deadline_margin(&self) -> Duration {
        self.app.config.safety_margin
    }

    fn timeout_margin(&self, service_timeout: Duration) -> Duration {
        answer_margin(service_timeout)
    }

    fn bad_service_timeout(&self, _: &Target, _: Error) -> Option<Response> {
        None
    }

    async fn work(&self, raw: &Value, target: &Target, limits: &Limits) -> Reply {
        let bounds = self.bounds(limits);
        respond(self.app, raw, target, &self.known, bounds, self.via_sns).await
    }

    fn panicked(&self, target: &Target, message: &str) -> Response {
        panicked(target, message)
    }

    async fn timed_out(&self, target: &Target, limits: &Limits) -> Reply {
        let bounds = self.bounds(limits);
        entitlement::late_reply(self.app, target, &self.known, bounds, self.deadline).await
    }

    fn rejected(&self, error: &Error) {
        log_rejected(error);
    }

    fn answering(&self, target: &Target, response: &Response) {
        log_response(target, response);
    }

    fn undelivered(&self, target: &Target, error: &Error) {
        tracing::error!(request_id = %target.request_id, error = %error, "could not deliver the response to CloudFormation");
    }
}

/// Answers one custom-resource request ([`Driven`]); its summary in the invocation's result.
async fn answer(app: &App, raw: &Value, deadline: Instant, via_sns: bool) -> Result<Value, Error> {
    let request = Driven {
        app,
        deadline,
        via_sns,
        known: entitlement::Known::default(),
        bounds: OnceLock::new(),
    };
    Ok(
        match drive(&app.responder, &request, raw, deadline).await? {
            Reply::Answer(response) => json!({
                "requestId": response.request_id,
                "logicalResourceId": response.logical_resource_id,
                "status": response.status, // SUCCESS or FAILED, as in the body
                "physicalResourceId": response.physical_resource_id,
            }),
            Reply::Later(later) => deferred(later),
        },
    )
}

/// FAILED for a request whose handling panicked.
fn panicked(target: &Target, message: &str) -> Response {
    tracing::error!(request_id = %target.request_id, panic = %message, "the handler panicked; answering FAILED");
    Response::failed(
        target,
        fallback_physical_id(target),
        format!("internal error (the function panicked: {message}); see the function's logs for request {}", target.request_id),
    )
}

/// Logs a request left to a re-check; its summary in the invocation's result.
fn deferred(later: Deferred) -> Value {
    let Deferred {
        target,
        physical_id,
        reason,
        answer_by,
    } = later;
    let line = json!({
        "requestType": target.request_type,
        "stackId": target.stack_id,
        "logicalResourceId": target.logical_resource_id,
        "requestId": target.request_id,
        "physicalResourceId": physical_id,
        "reason": reason,
        "answerBy": answer_by,
    });
    shared::report::emit("customResourceDeferred", line);
    json!({
        "requestId": target.request_id,
        "logicalResourceId": target.logical_resource_id,
        "status": "WAITING",
        "physicalResourceId": physical_id,
        "answerBy": answer_by,
    })
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
        "status": response.status, // SUCCESS or FAILED, as in the body
        "physicalResourceId": response.physical_resource_id,
        "reason": response.reason,
        "data": response.data,
    });
    shared::report::emit("customResourceResponse", line);
}

fn log_rejected(e: &Error) {
    tracing::error!(kind = e.kind(), retry = %e.retry(), error = %e, "input rejected before any AWS call");
}
