//! `Custom::MarketplacePortfolioShare`: shares a portfolio `CATALOG_SHARE_PORTFOLIOS` lists with
//! the organization or OUs ([`crate::portfolio`]), for the deployment account's own stacks only.

use super::{failed, fallback_physical_id, unsupported, App, Bounds, Origin, Reply};
use crate::portfolio;
use crate::request::{CfnRequest, Target};
use serde_json::Value;
use shared::custom_resource::Response;

/// The reply to a share request: refused unless it comes directly from a stack of the account
/// ct-entitlements runs in and names a listed portfolio (a Delete of an unlisted one leaves the
/// share in place and succeeds).
pub(super) async fn respond(
    app: &App,
    request: CfnRequest,
    target: &Target,
    from: &Origin,
    bounds: Bounds,
) -> Reply {
    if let Some(refusal) = foreign(app, from) {
        return failed(target, refusal);
    }
    let poll = app.config.poll_interval;
    let work_deadline = bounds.work_deadline;
    let share = match request {
        CfnRequest::Create(ref c) if !share_allowed(app, &c.resource_properties) => {
            Response::failed(
                target,
                fallback_physical_id(target),
                share_refusal(&c.resource_properties),
            )
        }
        CfnRequest::Update(ref u) if !share_allowed(app, &u.resource_properties) => {
            Response::failed(
                target,
                fallback_physical_id(target),
                share_refusal(&u.resource_properties),
            )
        }
        CfnRequest::Delete(ref d) if !share_allowed(app, &d.resource_properties) => {
            Response::success(
                target,
                d.physical_resource_id.clone(),
                format!(
                    "share left in place: {}",
                    share_refusal(&d.resource_properties)
                ),
            )
        }
        CfnRequest::Create(c) => {
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
        CfnRequest::Update(u) => {
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
        CfnRequest::Delete(d) => {
            portfolio::delete(
                &app.catalog,
                target,
                &d.resource_properties,
                &d.physical_resource_id,
            )
            .await
        }
        _ => unsupported(target),
    };
    Reply::Answer(share)
}

/// Shares act on the deployment account's own portfolios: only its own stacks, invoking the
/// function directly, may ask (never the organization-wide topic). `Some`: the refusal.
fn foreign(app: &App, from: &Origin) -> Option<String> {
    let own_account = app.engine.config().self_account_id.as_ref();
    let stack_owner = &from.stack_owner;
    let via_sns = from.via_sns;
    (via_sns || own_account != Some(stack_owner)).then(|| {
        format!(
            "{} is served only for stacks in the account ct-entitlements runs in ({}), invoking the function directly; this request names a stack in {stack_owner}{}; nothing was shared",
            portfolio::RESOURCE_TYPE,
            own_account.map_or("SELF_ACCOUNT_ID is not set".to_string(), ToString::to_string),
            if via_sns { " and came through the product-launch topic" } else { "" },
        )
    })
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
