//! A request's way through Account Factory: started when a Control Tower operation is free,
//! its record followed until it finishes, and a finished account entitled and (optionally)
//! given the software portfolio. What happens next is a [`Next`].

use super::{App, Next, RecordErrorReport, Slots, VendingReport};
use crate::catalog::{self, Provision, Record};
use crate::config::PortfolioShare;
use crate::request::{generation_name, provision_token, tag_value, validate, Tracked, Valid};
use serde_json::json;
use shared::ids::AccountId;
use shared::inbound::OnboardRequest;
use shared::report::CallLog;
use shared::{error::Error, error::Retry};
use std::time::Duration;

/// Moves a request as far as it goes now.
pub(super) async fn advance(
    app: &App,
    mut tracked: Tracked,
    slots: &mut Slots,
    calls: &CallLog,
    report: &mut VendingReport,
) -> Result<Next, Error> {
    report.account_name = tracked.request.account_name.clone();
    report.account_email = tracked.request.account_email.clone();
    report.attempt = tracked.attempt;
    report.generation = tracked.generation;
    report.record_id = tracked.record_id.clone();
    report.status = "ERROR".into();
    let valid = validate(&tracked.request, app.shared.licenses_tag_key.as_deref())?;
    let (product_name, name_reason) =
        generation_name(&valid.provisioned_product_name, tracked.generation);
    report.provisioned_product_name = Some(product_name.clone());
    report.name_reason = Some(name_reason);
    report.entitlements = valid.request.entitlements.clone();
    let age = (app.now)().saturating_sub(tracked.first_seen);
    let expired = age >= app.config.request_deadline.as_secs();

    let record = match tracked.record_id.clone() {
        None => {
            if expired {
                return Ok(expire(
                    tracked,
                    report,
                    age,
                    "it never got a free Control Tower operation",
                ));
            }
            let new = New {
                valid: &valid,
                product_name: &product_name,
            };
            match start(app, &mut tracked, new, slots, calls, report).await? {
                Some(record) => record,
                None => return Ok(again(tracked, app.config.busy_retry_delay)),
            }
        }
        Some(id) => catalog::describe_record(&app.clients.catalog, &id, calls).await?,
    };
    report.record_id = Some(record.id.clone());
    report.status = record.status.clone();
    report.record_errors = record
        .errors
        .iter()
        .map(|(code, description)| RecordErrorReport {
            code: code.clone(),
            description: description.clone(),
        })
        .collect();
    match record.status.as_str() {
        "SUCCEEDED" => {
            succeeded(app, &valid, &record, calls, report).await?;
            Ok(Next::Done)
        }
        "FAILED" => Ok(record_failed(tracked, &record, report)),
        _ if expired => Ok(expire(
            tracked,
            report,
            age,
            "its record is still in progress",
        )),
        _ => Ok(again(tracked, app.config.track_delay)),
    }
}

/// A request not started yet: what it provisions, under which name.
struct New<'a> {
    valid: &'a Valid,
    product_name: &'a str,
}

/// Starts a request: ProvisionProduct when a Control Tower operation is free. `None`: it
/// waits (no free operation, or Control Tower busy); the report says why.
async fn start(
    app: &App,
    tracked: &mut Tracked,
    new: New<'_>,
    slots: &mut Slots,
    calls: &CallLog,
    report: &mut VendingReport,
) -> Result<Option<Record>, Error> {
    let product = app.product(calls).await?;
    if !slots.take(app, &product, calls).await? {
        report.status = "WAITING".into();
        report.reason = Some(format!(
            "{} Control Tower account operations are already in progress (MAX_CONCURRENT_OPERATIONS)",
            app.config.max_concurrent_operations
        ));
        return Ok(None);
    }
    let token = provision_token(&new.valid.request.account_email, tracked.generation);
    let provision = Provision {
        product: &product,
        name: new.product_name,
        token: &token,
        parameters: parameters(new.valid),
    };
    match catalog::provision(&app.clients.catalog, &provision, calls).await {
        Ok(record) => {
            report.actions.push("ProvisionProduct".into());
            tracked.record_id = Some(record.id.clone());
            tracked.attempt = 0;
            Ok(Some(record))
        }
        Err(e) if catalog::is_busy(&e) => {
            // Control Tower is busy (ResourceInUseException, or "in progress" under
            // another code): wait on the queue, never the dead-letter queue.
            slots.free = Some(0);
            report.status = "WAITING".into();
            report.reason = Some(format!(
                "Control Tower is busy; trying again in {}s: {e}",
                app.config.busy_retry_delay.as_secs()
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A FAILED record: the request is parked with the record's errors.
fn record_failed(tracked: Tracked, record: &Record, report: &mut VendingReport) -> Next {
    let reason = format!(
        "Account Factory record {} FAILED: {}",
        record.id,
        record
            .errors
            .iter()
            .map(|(c, d)| format!("{c}: {d}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    report.reason = Some(reason.clone());
    let failure = json!({
        "status": "FAILED",
        "reason": reason,
        "recordId": record.id,
        "recordErrors": report.record_errors,
    });
    let error = Error::GrantFailed {
        grant_arn: String::new(),
        status: "FAILED".into(),
        reason,
    };
    Next::Park(tracked, failure, error)
}

fn again(mut tracked: Tracked, delay: Duration) -> Next {
    tracked.attempt += 1;
    Next::Requeue(tracked, delay)
}

fn expire(tracked: Tracked, report: &mut VendingReport, age: u64, why: &str) -> Next {
    let reason = format!("gave up after {age}s (REQUEST_DEADLINE_SECONDS): {why}");
    report.status = "EXPIRED".into();
    report.reason = Some(reason.clone());
    let failure = json!({ "status": "EXPIRED", "reason": reason, "recordId": tracked.record_id });
    let error = Error::WorkflowDeadline {
        grant_arn: tracked.record_id.clone().unwrap_or_default(),
        status: "EXPIRED".into(),
        deadline_secs: age,
    };
    Next::Park(tracked, failure, error)
}

/// The Account Factory parameters, in Account Factory's names.
fn parameters(valid: &Valid) -> Vec<(&'static str, String)> {
    let r = &valid.request;
    vec![
        ("AccountName", r.account_name.clone()),
        ("AccountEmail", r.account_email.clone()),
        (
            "ManagedOrganizationalUnit",
            r.managed_organizational_unit.clone(),
        ),
        ("SSOUserEmail", r.sso_user_email.clone()),
        ("SSOUserFirstName", r.sso_user_first_name.clone()),
        ("SSOUserLastName", r.sso_user_last_name.clone()),
    ]
}

/// The account exists: entitlements tag and onboard request, then the optional portfolio share.
async fn succeeded(
    app: &App,
    valid: &Valid,
    record: &Record,
    calls: &CallLog,
    report: &mut VendingReport,
) -> Result<(), Error> {
    let account_id = record.output("AccountId").ok_or_else(|| Error::Aws {
        service: "servicecatalog",
        operation: "DescribeRecord",
        code: "MissingOutput".into(),
        message: format!("record {} SUCCEEDED without an AccountId output", record.id),
        retry: Retry::Permanent,
    })?;
    let account = shared::ids::AccountId::parse(account_id)?;
    report.account_id = Some(account.to_string());
    if !valid.entitlements.is_empty() {
        entitle(app, valid, &account, calls, report).await?;
    }
    if let Some(share) = &app.config.share {
        share_portfolio(app, share, &account, calls, report).await?;
    }
    report.reason = Some(format!("account {account} is ready"));
    Ok(())
}

/// The entitlements tag on the new account, and (`ONBOARDING_QUEUE_URL`) an onboard request.
async fn entitle(
    app: &App,
    valid: &Valid,
    account: &AccountId,
    calls: &CallLog,
    report: &mut VendingReport,
) -> Result<(), Error> {
    if let Some(key) = &app.shared.licenses_tag_key {
        catalog::tag_account(
            &app.clients.organizations,
            account.as_str(),
            key,
            &tag_value(&valid.entitlements),
            calls,
        )
        .await?;
        report.actions.push("TagAccount".into());
    }
    // Control Tower's CreateManagedAccount event may have been handled before the tag was
    // there: ask account-lifecycle once more (idempotent).
    if let Some(queue) = &app.shared.onboarding_queue_url {
        let body = serde_json::to_string(&OnboardRequest {
            account_id: account.to_string(),
            reason: Some("vending".into()),
            attempt: 0,
            first_seen: None,
            activations: Vec::new(),
            ou_id: None,
            backfill: false,
        })
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
        shared::aws::send_recheck(&app.clients.sqs, queue, &body, Duration::ZERO, calls).await?;
        report.actions.push("OnboardRequest".into());
    }
    Ok(())
}

/// The portfolio shared with the new account, accepted in it, and its principal associated.
async fn share_portfolio(
    app: &App,
    share: &PortfolioShare,
    account: &AccountId,
    calls: &CallLog,
    report: &mut VendingReport,
) -> Result<(), Error> {
    catalog::share_portfolio(
        &app.clients.catalog,
        &share.portfolio_id,
        account.as_str(),
        calls,
    )
    .await?;
    report.actions.push("CreatePortfolioShare".into());
    let role_arn = account.role_arn(&app.shared.partition, &app.shared.execution_role_name);
    let credentials = shared::aws::assume_role(
        &app.clients.sts,
        &role_arn,
        &format!("ct-entitlements-vending-{account}"),
        app.shared.assume_role_attempts,
        app.shared.assume_role_backoff,
        calls,
    )
    .await?;
    let member = app.clients.members.catalog(credentials);
    catalog::accept_share(&member, &share.portfolio_id, calls).await?;
    report.actions.push("AcceptPortfolioShare".into());
    let principal = share.principal_arn.replace("{accountId}", account.as_str());
    catalog::associate_principal(
        &member,
        &share.portfolio_id,
        &principal,
        &share.principal_type,
        calls,
    )
    .await?;
    report
        .actions
        .push("AssociatePrincipalWithPortfolio".into());
    Ok(())
}
