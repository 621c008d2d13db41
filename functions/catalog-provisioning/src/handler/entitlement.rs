//! `Custom::MarketplaceEntitlement`: entitles the account that launches a product (the core
//! engine's "ensure account entitled" path). Create and Update drive the account's grant to
//! ACTIVE and answer with its `Data` ([`keys`]), or leave a pending grant to a re-check
//! ([`reply`], [`recheck`]); Delete deactivates it when asked to. What a launch may ask for is
//! bounded by [`selection`].

mod recheck;
mod reply;
mod selection;

pub(super) use recheck::handle_rechecks;
pub(super) use reply::late_reply;

use super::{failed, fallback_physical_id, reason_of, unsupported, App, Bounds, Origin, Reply};
use crate::request::{
    is_grant_arn, parse_properties, CfnRequest, Properties, Target, RESOURCE_TYPE,
};
use crate::verify::{judge, needs_verification, Claim, Verdict};
use reply::{failure_reason, pending_reply, settled};
use selection::{launch_bounds, resolve_license};
use serde_json::{json, Value};
use shared::config::{LicenseRef, OverrideBehavior};
use shared::custom_resource::Response;
use shared::engine::OffboardMode;
use shared::ids::AccountId;
use shared::inbound::{ActivationMark, Explicit, Request, Trigger, Work};
use shared::report::{AccountReport, CallLog};
use shared::{error::Error, report::Outcome};
use std::sync::Mutex;
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

/// What one request is about, once its properties are known (for the timeout path).
#[derive(Debug, Clone)]
pub(super) struct Attempt {
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
    pub(super) fn learn(&mut self, report: &AccountReport) {
        for mark in &report.activations_requested {
            self.activations.retain(|m| m.grant_arn != mark.grant_arn);
            self.activations.push(mark.clone());
        }
    }
}

/// The last report of a request still being worked on.
pub(super) type Known = Mutex<Option<(Attempt, AccountReport)>>;

/// The reply to an entitlement request: one that could write is first verified against the
/// claimed stack when it must be (`needs_verification`), then acted on.
pub(super) async fn respond(
    app: &App,
    request: CfnRequest,
    target: &Target,
    from: &Origin,
    known: &Known,
    bounds: Bounds,
) -> Reply {
    let own_account = app.engine.config().self_account_id.as_ref();
    if needs_verification(from.via_sns, &from.stack_owner, own_account)
        && may_write(app, &request, target)
    {
        match verify(app, target, &from.stack_owner).await {
            Verdict::Proceed => {}
            Verdict::ReplacedCleanup => {
                return Reply::Answer(Response::success(
                    target,
                    fallback_physical_id(target),
                    "the resource was replaced; the account's grant belongs to the new one and is left in place".into(),
                ))
            }
            Verdict::Refuse(reason) => return failed(target, reason),
        }
    }
    match request {
        CfnRequest::Create(c) => ensure(app, target, &c.resource_properties, known, bounds).await,
        CfnRequest::Update(u) => ensure(app, target, &u.resource_properties, known, bounds).await,
        CfnRequest::Delete(d) => Reply::Answer(
            delete(app, target, &d.resource_properties, &d.physical_resource_id).await,
        ),
        _ => Reply::Answer(unsupported(target)),
    }
}

/// Reads the claimed stack in its account and judges the request against it (logged).
async fn verify(app: &App, target: &Target, stack_owner: &AccountId) -> Verdict {
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
    let verdict = match app.stacks.observe(stack_owner, &claim, &calls).await {
        Ok(observed) => judge(&claim, observed.as_ref()),
        Err(e) => Verdict::Refuse(format!(
            "the request could not be verified against CloudFormation in account {stack_owner} ({}); nothing was done{}",
            reason_of(&e),
            if e.is_retryable() { "; retry the launch" } else { "" },
        )),
    };
    log_verification(target, stack_owner, &verdict);
    verdict
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
    // The wait's own schedule (its budget, the ServiceTimeout, the pauses) is on the app's
    // clock; the Lambda deadline on the runtime's.
    let clock = &app.config.clock;
    let started = clock.now();
    let poll = app.config.poll_interval;
    loop {
        let report = Box::pin(app.engine.run(work_for(&attempt))).await;
        log_report(&report);
        attempt.learn(&report);
        if let Some(done) = settled(target, &attempt, &report) {
            return Reply::Answer(done);
        }
        *known.lock().unwrap_or_else(|p| p.into_inner()) = Some((attempt.clone(), report.clone()));
        let now = clock.now();
        if Instant::now() + poll >= bounds.work_deadline
            || now + poll >= bounds.answer_at
            || now.saturating_sub(started) + poll > app.config.wait_for_active
        {
            return pending_reply(app, target, &attempt, &report, bounds).await;
        }
        clock.sleep(poll).await;
    }
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

pub(super) fn work_for(attempt: &Attempt) -> Request {
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

pub(super) fn log_report(report: &AccountReport) {
    shared::report::emit_account_report(report);
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
