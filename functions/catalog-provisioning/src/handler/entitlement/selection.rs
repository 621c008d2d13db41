//! What a launch may ask for (`CATALOG_LICENSES`, `CATALOG_SELECTION_RULES`), and the license
//! a request names (by ARN, or by a product SKU that must match exactly one held license).

use crate::handler::{reason_of, App};
use shared::config::{LicenseRef, Selection};
use shared::engine::Wanted;
use shared::ids::AccountId;
use shared::{engine::Engine, error::Error};

/// What a launch may ask for: `CATALOG_LICENSES`, and (`CATALOG_SELECTION_RULES=apply`) the
/// account-level rules of the deployment's selection (`TARGET_OUS`, `ACCOUNT_TAG_FILTER`, OU
/// rules, the licenses tag). `Err` is the refusal, said to CloudFormation; nothing is written.
pub(super) async fn launch_bounds(
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
pub(super) async fn resolve_license(
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
