//! Which licenses an account gets: the license selection (`LICENSE_ARNS`, `PRODUCT_SKUS`,
//! `ALL_MARKETPLACE_LICENSES`), the OU rules (`OU_LICENSE_RULES`) and the settings that narrow
//! or extend the selection per account (`TARGET_OUS`, `ACCOUNT_TAG_FILTER`, `LICENSES_TAG_KEY`).

use super::env::{split_list, Env};
use super::vars::*;
use crate::error::{echo, Error};
use crate::ids::{is_license_arn, is_ou_id, is_product_sku};
use std::collections::BTreeMap;

/// One way to name a license in configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "by", content = "value", rename_all = "lowercase")]
pub enum LicenseRef {
    /// A license ARN held by the management account.
    Arn(String),
    /// A product SKU; every held Marketplace license with this SKU matches.
    Sku(String),
}

impl LicenseRef {
    /// Parses an ARN (starts with `arn:`) or a SKU; `var` names the source in errors.
    pub fn parse(raw: &str, var: &str) -> Result<Self, Error> {
        let raw = raw.trim();
        if raw.starts_with("arn:") {
            if is_license_arn(raw) {
                return Ok(LicenseRef::Arn(raw.to_string()));
            }
            return Err(Error::Config(format!(
                "{var}: {} is not a License Manager license ARN (arn:aws:license-manager::<account>:license:l-<id>)",
                echo(raw)
            )));
        }
        if is_product_sku(raw) {
            Ok(LicenseRef::Sku(raw.to_string()))
        } else {
            Err(Error::Config(format!(
                "{var}: {} is neither a license ARN nor a product SKU (letters, digits, '.', '_', '-')",
                echo(raw)
            )))
        }
    }
}

impl std::fmt::Display for LicenseRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LicenseRef::Arn(a) => write!(f, "license {a}"),
            LicenseRef::Sku(s) => write!(f, "product SKU {s}"),
        }
    }
}

/// Which licenses an account gets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Selection {
    /// Every AVAILABLE license issued by AWS/Marketplace that the management account holds.
    AllMarketplace,
    /// Exactly these (each must match at least one held license, or it is a configuration error).
    Listed(Vec<LicenseRef>),
    /// None configured: every request names its own licenses (product launches).
    PerRequest,
}

/// The selection settings, parsed (the fields of [`super::Config`] of the same names).
#[derive(Debug, Clone)]
pub(super) struct Selected {
    pub(super) selection: Selection,
    pub(super) ou_rules: BTreeMap<String, Vec<LicenseRef>>,
    pub(super) target_ous: Vec<String>,
    pub(super) account_tag_filter: Option<(String, String)>,
    pub(super) licenses_tag_key: Option<String>,
}

/// What the selection settings are called where they were read: environment variables, or the
/// fields of a configuration document. Errors name the setting as its reader wrote it.
pub(super) struct Names {
    /// The selection by name, for "set X or Y": `LICENSE_ARNS, PRODUCT_SKUS` or `licenses`.
    pub(super) listed_all: &'static str,
    /// The same, for "X or Y": `LICENSE_ARNS or PRODUCT_SKUS` or `licenses`.
    pub(super) listed_any: &'static str,
    pub(super) all_marketplace: &'static str,
    pub(super) ou_rules: &'static str,
    pub(super) distribution: &'static str,
    pub(super) target_ous: &'static str,
    pub(super) account_tag_filter: &'static str,
}

/// The environment's names.
pub(super) const ENV_NAMES: Names = Names {
    listed_all: "LICENSE_ARNS, PRODUCT_SKUS",
    listed_any: "LICENSE_ARNS or PRODUCT_SKUS",
    all_marketplace: ALL_MARKETPLACE_LICENSES,
    ou_rules: OU_LICENSE_RULES,
    distribution: LICENSE_DISTRIBUTION,
    target_ous: TARGET_OUS,
    account_tag_filter: ACCOUNT_TAG_FILTER,
};

impl Selected {
    /// Parses the selection settings, in this order: the selection, the OU rules, the target
    /// OUs, the tag filter (the first error wins). Without `require_selection`, no selection
    /// means [`Selection::PerRequest`].
    pub(super) fn parse(env: &Env<'_>, require_selection: bool) -> Result<Self, Error> {
        Ok(Selected {
            selection: selection(env, require_selection)?,
            ou_rules: ou_rules(env)?,
            target_ous: target_ous(env)?,
            account_tag_filter: account_tag_filter(env)?,
            licenses_tag_key: env.get(LICENSES_TAG_KEY),
        })
    }
}

/// `LICENSE_ARNS` (ARNs only) and `PRODUCT_SKUS` (SKUs only), in order, without repeats.
fn listed(env: &Env<'_>) -> Result<Vec<LicenseRef>, Error> {
    let mut listed = Vec::new();
    for (var, want_arn) in [(LICENSE_ARNS, true), (PRODUCT_SKUS, false)] {
        for item in split_list(env.get(var).as_deref()) {
            let parsed = LicenseRef::parse(item, var)?;
            if matches!(parsed, LicenseRef::Arn(_)) != want_arn {
                return Err(Error::Config(format!(
                    "{var}: {} belongs in {}",
                    echo(item),
                    if want_arn { PRODUCT_SKUS } else { LICENSE_ARNS }
                )));
            }
            if !listed.contains(&parsed) {
                listed.push(parsed);
            }
        }
    }
    Ok(listed)
}

/// The listed licenses or `ALL_MARKETPLACE_LICENSES` (one of them, not both).
fn selection(env: &Env<'_>, require_selection: bool) -> Result<Selection, Error> {
    let listed = listed(env)?;
    let all = super::parse_bool(
        env.get(ALL_MARKETPLACE_LICENSES).as_deref(),
        ALL_MARKETPLACE_LICENSES,
        false,
    )?;
    choose(all, listed, require_selection, &ENV_NAMES)
}

/// The selection of `all` (every Marketplace license) or `listed`: one of them, not both; with
/// neither, [`Selection::PerRequest`] unless `require_selection`.
pub(super) fn choose(
    all: bool,
    listed: Vec<LicenseRef>,
    require_selection: bool,
    names: &Names,
) -> Result<Selection, Error> {
    let Names {
        all_marketplace,
        listed_all,
        listed_any,
        ..
    } = names;
    match (all, listed.is_empty()) {
        (true, true) => Ok(Selection::AllMarketplace),
        (true, false) => Err(Error::Config(format!(
            "{all_marketplace}=true cannot be combined with {listed_any}: choose one"
        ))),
        (false, false) => Ok(Selection::Listed(listed)),
        (false, true) if !require_selection => Ok(Selection::PerRequest),
        (false, true) => Err(Error::Config(format!(
            "no licenses selected: set {listed_all} or {all_marketplace}=true"
        ))),
    }
}

/// `OU_LICENSE_RULES`: a JSON object from OU id to the licenses of accounts directly in it.
fn ou_rules(env: &Env<'_>) -> Result<BTreeMap<String, Vec<LicenseRef>>, Error> {
    let Some(raw) = env.get(OU_LICENSE_RULES) else {
        return Ok(BTreeMap::new());
    };
    let parsed: BTreeMap<String, Vec<String>> = serde_json::from_str(&raw).map_err(|e| {
        Error::Config(format!(
            "{OU_LICENSE_RULES}: expected a JSON object {{\"ou-…\": [\"sku or license ARN\", …]}}: {e}"
        ))
    })?;
    let mut ou_rules = BTreeMap::new();
    for (ou, refs) in parsed {
        ou_id(&ou, OU_LICENSE_RULES)?;
        let refs = refs
            .iter()
            .map(|r| LicenseRef::parse(r, OU_LICENSE_RULES))
            .collect::<Result<Vec<_>, _>>()?;
        ou_rules.insert(ou, refs);
    }
    Ok(ou_rules)
}

/// An OU id (the error names `var`).
pub(super) fn ou_id(raw: &str, var: &str) -> Result<(), Error> {
    if is_ou_id(raw) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{var}: {} is not an OU id (ou-xxxx-yyyyyyyy)",
            echo(raw)
        )))
    }
}

/// `TARGET_OUS`: OU ids.
fn target_ous(env: &Env<'_>) -> Result<Vec<String>, Error> {
    let target_ous: Vec<String> = split_list(env.get(TARGET_OUS).as_deref())
        .map(str::to_string)
        .collect();
    for ou in &target_ous {
        ou_id(ou, TARGET_OUS)?;
    }
    Ok(target_ous)
}

/// `ACCOUNT_TAG_FILTER`: `key=value` (both trimmed; the key not empty).
fn account_tag_filter(env: &Env<'_>) -> Result<Option<(String, String)>, Error> {
    let Some(raw) = env.get(ACCOUNT_TAG_FILTER) else {
        return Ok(None);
    };
    match raw.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => {
            Ok(Some((k.trim().to_string(), v.trim().to_string())))
        }
        _ => Err(Error::Config(format!(
            "{ACCOUNT_TAG_FILTER}: {} must look like key=value",
            echo(&raw)
        ))),
    }
}
