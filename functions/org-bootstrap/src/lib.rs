//! The org-bootstrap custom resource: Create/Update run the idempotent bootstrap and answer
//! with what changed; Delete changes nothing (trusted access and integration stay on). It always
//! answers CloudFormation before the deadline — on success, on error, on bad input, on panic.
//! The same function answers the stack's configuration check ([`check`]).

pub mod check;

use serde_json::Value;
use shared::bootstrap::{bootstrap, BootstrapClients, BootstrapOptions, BootstrapReport};
use shared::custom_resource::{drive, Limits, Reply, Resource, Responder, Response, Target};
use shared::error::Error;
use shared::error::{describe, echo};
use shared::ids::AccountId;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::Instant;

/// The resource's physical id: one organization set-up per stack.
pub const PHYSICAL_ID: &str = "ct-entitlements-org-bootstrap";

/// Time kept back from the Lambda deadline to send the answer.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(5);

pub struct App {
    pub organizations: aws_sdk_organizations::Client,
    pub license_manager: aws_sdk_licensemanager::Client,
    pub iam: aws_sdk_iam::Client,
    pub responder: Responder,
}

/// Handles one custom-resource request; returns the response it sent.
///
/// The work is bounded by the Lambda `deadline` and by the request's `ServiceTimeout` (both
/// minus [`SAFETY_MARGIN`]); whatever happens, an answer is PUT before the deadline.
pub async fn handle(app: &App, payload: Value, deadline: Instant) -> Result<Value, Error> {
    answer_request(&app.responder, app, payload, deadline).await
}

/// One of this function's resources: what its work is called in a timeout's message, its
/// physical id, and its answer to a request.
pub(crate) trait Work {
    const WHAT: &'static str;
    const PHYSICAL_ID: &'static str;
    async fn respond(&self, payload: &Value, target: &Target) -> Response;
}

impl Work for App {
    const WHAT: &'static str = "organization set-up";
    const PHYSICAL_ID: &'static str = PHYSICAL_ID;
    async fn respond(&self, payload: &Value, target: &Target) -> Response {
        respond(self, payload, target).await
    }
}

/// A [`Work`] as the custom-resource driver answers it.
struct Driven<'a, W>(&'a W);

impl<W: Work> Driven<'_, W> {
    fn physical(&self, target: &Target) -> String {
        target
            .physical_resource_id
            .clone()
            .unwrap_or_else(|| W::PHYSICAL_ID.to_string())
    }
}

impl<W: Work> Resource for Driven<'_, W> {
    type Later = Infallible;

    fn deadline_margin(&self) -> Duration {
        SAFETY_MARGIN
    }

    fn timeout_margin(&self, service_timeout: Duration) -> Duration {
        SAFETY_MARGIN.min(service_timeout / 2)
    }

    fn bad_service_timeout(&self, target: &Target, error: Error) -> Option<Response> {
        Some(Response::failed(
            target,
            self.physical(target),
            error.to_string(),
        ))
    }

    async fn work(&self, payload: &Value, target: &Target, _: &Limits) -> Reply<Infallible> {
        Reply::Answer(self.0.respond(payload, target).await)
    }

    fn panicked(&self, target: &Target, what: &str) -> Response {
        tracing::error!(panic = %what, "org-bootstrap panicked");
        Response::failed(
            target,
            self.physical(target),
            format!("internal error (panic): {what}"),
        )
    }

    async fn timed_out(&self, target: &Target, limits: &Limits) -> Reply<Infallible> {
        let limit = if limits.by_service_timeout {
            format!(
                "the resource's ServiceTimeout ({}s)",
                limits.service_timeout.as_secs()
            )
        } else {
            "the Lambda deadline".to_string()
        };
        Reply::Answer(Response::failed(
            target,
            self.physical(target),
            format!(
                "{} did not finish before {limit}; it is idempotent, so retry the stack operation",
                W::WHAT
            ),
        ))
    }
}

/// Answers one custom-resource request with what `work` responds (FAILED on a bad
/// `ServiceTimeout`, a panic, or the deadline); returns the response it sent.
pub(crate) async fn answer_request<W: Work>(
    responder: &Responder,
    work: &W,
    payload: Value,
    deadline: Instant,
) -> Result<Value, Error> {
    let response = match drive(responder, &Driven(work), &payload, deadline).await? {
        Reply::Answer(response) => response,
        Reply::Later(never) => match never {},
    };
    serde_json::to_value(&response).map_err(|e| Error::InvalidInput(e.to_string()))
}

fn physical_id(target: &Target) -> String {
    target
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| PHYSICAL_ID.to_string())
}

async fn respond(app: &App, payload: &Value, target: &Target) -> Response {
    match target.request_type.as_str() {
        "Delete" => Response::success(
            target,
            physical_id(target),
            "nothing to undo: trusted access, organization integration and service-linked roles stay in place".into(),
        ),
        "Create" | "Update" => match options(payload) {
            Err(e) => Response::failed(target, physical_id(target), e.to_string()),
            Ok(options) => {
                let clients = BootstrapClients {
                    organizations: &app.organizations,
                    license_manager: &app.license_manager,
                    iam: &app.iam,
                };
                let report = bootstrap(&clients, &options).await;
                shared::report::emit_report("bootstrapReport", &report);
                answer(target, &report)
            }
        },
        other => Response::failed(target, physical_id(target), format!("unknown RequestType {}", echo(other))),
    }
}

/// Properties: optional `DelegatedAdminAccountId` (empty or 12 digits), optional `DryRun`,
/// CloudFormation's optional `ServiceTimeout` (checked by [`handle`]).
pub fn options(payload: &Value) -> Result<BootstrapOptions, Error> {
    let props = match payload.get("ResourceProperties") {
        None | Some(Value::Null) => Value::Null,
        Some(p @ Value::Object(_)) => p.clone(),
        Some(other) => {
            return Err(Error::InvalidInput(format!(
                "ResourceProperties must be an object, got {}",
                describe(other)
            )))
        }
    };
    let admin = match props.get("DelegatedAdminAccountId") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.trim(),
        Some(other) => {
            return Err(Error::InvalidInput(format!(
            "DelegatedAdminAccountId must be a string (empty, or a 12-digit account id), got {}",
            describe(other)
        )))
        }
    };
    let delegated_admin = if admin.is_empty() {
        None
    } else {
        Some(
            AccountId::parse(admin)
                .map_err(|e| Error::InvalidInput(format!("DelegatedAdminAccountId: {e}")))?,
        )
    };
    let dry_run = match props.get("DryRun") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(other) => {
            return Err(Error::InvalidInput(format!(
                "DryRun must be true or false, got {}",
                describe(other)
            )))
        }
    };
    Ok(BootstrapOptions {
        delegated_admin,
        dry_run,
    })
}

fn answer(target: &Target, report: &BootstrapReport) -> Response {
    let summary: Vec<String> = report
        .steps
        .iter()
        .map(|s| format!("{}:{}={}", s.step, s.target, s.result))
        .collect();
    let failed: Vec<String> = report
        .steps
        .iter()
        .filter_map(|s| {
            s.error
                .as_ref()
                .map(|e| format!("{} {}: {}", s.step, s.target, e.message))
        })
        .collect();
    if failed.is_empty() {
        let data = BTreeMap::from([
            ("Changed".to_string(), report.changed.to_string()),
            ("Steps".to_string(), summary.join(",")),
        ]);
        Response::success(
            target,
            physical_id(target),
            format!("{} change(s)", report.changed),
        )
        .with_data(data)
    } else {
        Response::failed(
            target,
            physical_id(target),
            format!("organization set-up failed: {}", failed.join("; ")),
        )
    }
}
