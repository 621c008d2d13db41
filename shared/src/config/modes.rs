//! Distribution modes (`LICENSE_DISTRIBUTION`): how each license reaches the accounts that should
//! hold it, checked against the selection settings, and the per-license answers the engine asks
//! of a [`Config`].

use super::env::split_list;
use super::selection::{LicenseRef, Names, Selected, Selection, ENV_NAMES};
use super::vars::*;
use super::Config;
use crate::error::{echo, Error};
use std::collections::BTreeMap;

/// How a license reaches the accounts that should hold it (`LICENSE_DISTRIBUTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// One grant per account (ct-entitlements creates, accepts and activates it).
    #[default]
    Account,
    /// One grant to the organization, bulk-activated by the reconciler; License Manager gives
    /// every member (and every later joiner) its own account-level grant.
    Organization,
    /// One grant per OU of the selection (OU rules naming the license, or TARGET_OUS), same
    /// handling; an OU grant reaches the OU's nested OUs too.
    Ou,
}

impl Mode {
    pub(crate) fn parse(raw: &str, var: &str) -> Result<Self, Error> {
        match raw.trim() {
            "account" => Ok(Mode::Account),
            "organization" => Ok(Mode::Organization),
            "ou" => Ok(Mode::Ou),
            other => Err(Error::Config(format!(
                "{var}: {} must be account, organization or ou",
                echo(other)
            ))),
        }
    }

    /// License Manager hands the account its grant (a child) from a grant of ct-entitlements
    /// to the organization or an OU; in account mode ct-entitlements grants it directly.
    /// Exhaustive, so a new mode must say.
    pub(crate) fn has_parent_grant(self) -> bool {
        match self {
            Mode::Account => false,
            Mode::Organization | Mode::Ou => true,
        }
    }

    /// The parent grants are per OU (the selection's OU rules decide which OUs).
    pub(crate) fn parents_per_ou(self) -> bool {
        match self {
            Mode::Ou => true,
            Mode::Account | Mode::Organization => false,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Account => "account",
            Mode::Organization => "organization",
            Mode::Ou => "ou",
        }
    }
}

/// `LICENSE_DISTRIBUTION`: `<sku or license ARN>=<account|organization|ou>` items, separated
/// by commas or spaces, checked by [`distribution`].
pub(super) fn parse_distribution(
    raw: Option<&str>,
    selected: &Selected,
) -> Result<BTreeMap<LicenseRef, Mode>, Error> {
    let items = split_list(raw)
        .map(parse_item)
        .collect::<Result<Vec<_>, _>>()?;
    distribution(items, selected, &ENV_NAMES)
}

/// The distribution modes of `items`, each license at most one mode. Organization and OU
/// grants reach accounts whatever their tags, so the settings that narrow a selection per
/// account must agree with them: every conflict is an error naming both settings (as `names`
/// calls them).
pub(super) fn distribution(
    items: Vec<(LicenseRef, Mode)>,
    selected: &Selected,
    names: &Names,
) -> Result<BTreeMap<LicenseRef, Mode>, Error> {
    let mut out = BTreeMap::new();
    for (license, mode) in items {
        if out.insert(license.clone(), mode).is_some_and(|m| m != mode) {
            return Err(Error::Config(format!(
                "{}: {license} is given two modes",
                names.distribution
            )));
        }
        if mode.has_parent_grant() {
            check_shared_grant(&license, mode, selected, names)?;
        }
    }
    Ok(out)
}

/// One `<sku or license ARN>=<mode>` item.
fn parse_item(item: &str) -> Result<(LicenseRef, Mode), Error> {
    let Some((license, mode)) = item.rsplit_once('=') else {
        return Err(Error::Config(format!(
            "{LICENSE_DISTRIBUTION}: {} must look like <sku or license ARN>=<account|organization|ou>",
            echo(item)
        )));
    };
    let license = LicenseRef::parse(license, LICENSE_DISTRIBUTION)?;
    let mode = Mode::parse(mode, LICENSE_DISTRIBUTION)?;
    Ok((license, mode))
}

/// An organization or OU grant (`mode`) for `license` must agree with the selection settings:
/// the license is selected, no tag filter narrows it, and organization mode reaches exactly
/// the accounts the selection does (OU mode: the selection names its OUs).
fn check_shared_grant(
    license: &LicenseRef,
    mode: Mode,
    selected: &Selected,
    names: &Names,
) -> Result<(), Error> {
    let Selected {
        selection,
        ou_rules,
        target_ous,
        account_tag_filter,
        ..
    } = selected;
    let Names {
        listed_all,
        all_marketplace,
        ou_rules: rules_name,
        distribution: var,
        target_ous: targets_name,
        account_tag_filter: filter_name,
        ..
    } = names;
    let in_global = match selection {
        Selection::AllMarketplace => true,
        Selection::Listed(list) => list.contains(license),
        Selection::PerRequest => false,
    };
    let in_rules = ou_rules.values().any(|refs| refs.contains(license));
    if !in_global && !in_rules {
        return Err(Error::Config(format!(
            "{var}: {license} is not selected ({listed_all}, {all_marketplace} or {rules_name})"
        )));
    }
    if account_tag_filter.is_some() {
        return Err(Error::Config(format!(
            "{var}: {license} is in {} mode, whose grants reach accounts whatever their tags; {filter_name} needs account mode",
            mode.as_str()
        )));
    }
    match mode {
        Mode::Organization => {
            if !target_ous.is_empty() {
                return Err(Error::Config(format!(
                    "{var}: {license} is in organization mode, which reaches every account, but {targets_name} narrows the selection: use ou mode"
                )));
            }
            if let Some((ou, _)) = ou_rules.iter().find(|(_, refs)| !refs.contains(license)) {
                return Err(Error::Config(format!(
                    "{var}: {license} is in organization mode, which reaches every account, but the {rules_name} rule for {ou} does not list it: list it there or use ou mode"
                )));
            }
            if !in_global {
                return Err(Error::Config(format!(
                    "{var}: {license} is in organization mode but only {rules_name} select it: use ou mode"
                )));
            }
        }
        Mode::Ou => {
            if in_global && target_ous.is_empty() {
                return Err(Error::Config(format!(
                    "{var}: {license} is in ou mode but selected for every account (no {targets_name}): use organization mode, or name its OUs in {rules_name} or {targets_name}"
                )));
            }
        }
        Mode::Account => {}
    }
    Ok(())
}

/// Serialises the distribution with the references as written (JSON keys are strings).
pub(super) fn distribution_map<S: serde::Serializer>(
    map: &BTreeMap<LicenseRef, Mode>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut out = s.serialize_map(Some(map.len()))?;
    for (license, mode) in map {
        let key = match license {
            LicenseRef::Arn(v) | LicenseRef::Sku(v) => v,
        };
        out.serialize_entry(key, mode)?;
    }
    out.end()
}

impl Config {
    /// The distribution mode of a held license (by its ARN, else its SKU; `account` otherwise).
    pub(crate) fn mode_of(&self, arn: &str, sku: &str) -> Mode {
        self.distribution
            .get(&LicenseRef::Arn(arn.to_string()))
            .or_else(|| self.distribution.get(&LicenseRef::Sku(sku.to_string())))
            .copied()
            .unwrap_or_default()
    }

    /// The OUs an `ou`-mode license is granted to: every OU rule naming it, and TARGET_OUS
    /// when the global selection holds it.
    pub(crate) fn ous_of(&self, arn: &str, sku: &str) -> Vec<String> {
        let names = |r: &LicenseRef| match r {
            LicenseRef::Arn(a) => a == arn,
            LicenseRef::Sku(s) => s == sku,
        };
        let mut ous: Vec<String> = self
            .ou_rules
            .iter()
            .filter(|(_, refs)| refs.iter().any(names))
            .map(|(ou, _)| ou.clone())
            .collect();
        let global = match &self.selection {
            Selection::AllMarketplace => true,
            Selection::Listed(list) => list.iter().any(names),
            Selection::PerRequest => false,
        };
        if global {
            for ou in &self.target_ous {
                if !ous.contains(ou) {
                    ous.push(ou.clone());
                }
            }
        }
        ous
    }
}
