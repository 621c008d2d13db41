//! Configuration: environment variables set by the SAM template, parsed and validated once at
//! init. Every error names the variable. Parsing makes no AWS call.

use crate::error::{echo, Error};
use crate::ids::{
    is_license_arn, is_ou_id, is_product_sku, is_role_name, partition_from, AccountId,
};
use std::collections::BTreeMap;
use std::time::Duration;

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
                crate::error::echo(raw)
            )));
        }
        if is_product_sku(raw) {
            Ok(LicenseRef::Sku(raw.to_string()))
        } else {
            Err(Error::Config(format!(
                "{var}: {} is neither a license ARN nor a product SKU (letters, digits, '.', '_', '-')",
                crate::error::echo(raw)
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

/// `ActivationOverrideBehavior` for `CreateGrantVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum OverrideBehavior {
    /// Keep a member's other active grant for the same product (activation then fails if there is one).
    #[serde(rename = "DISTRIBUTED_GRANTS_ONLY")]
    DistributedGrantsOnly,
    /// Disable the member's other active grant for the same product and activate this one.
    #[serde(rename = "ALL_GRANTS_PERMITTED_BY_ISSUER")]
    AllGrantsPermittedByIssuer,
}

impl OverrideBehavior {
    pub fn parse(raw: &str, var: &str) -> Result<Self, Error> {
        match raw.trim() {
            "DISTRIBUTED_GRANTS_ONLY" => Ok(Self::DistributedGrantsOnly),
            "ALL_GRANTS_PERMITTED_BY_ISSUER" => Ok(Self::AllGrantsPermittedByIssuer),
            other => Err(Error::Config(format!(
                "{var}: {} must be DISTRIBUTED_GRANTS_ONLY or ALL_GRANTS_PERMITTED_BY_ISSUER",
                crate::error::echo(other)
            ))),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::DistributedGrantsOnly => "DISTRIBUTED_GRANTS_ONLY",
            Self::AllGrantsPermittedByIssuer => "ALL_GRANTS_PERMITTED_BY_ISSUER",
        }
    }
}

/// How a license reaches the accounts that should hold it (`LICENSE_DISTRIBUTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
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
    pub fn parse(raw: &str, var: &str) -> Result<Self, Error> {
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

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Account => "account",
            Mode::Organization => "organization",
            Mode::Ou => "ou",
        }
    }
}

/// The operations License Manager accepts in `AllowedOperations`.
pub const ALLOWED_OPERATIONS: &[&str] = &[
    "CreateGrant",
    "CheckoutLicense",
    "CheckoutBorrowLicense",
    "CheckInLicense",
    "ExtendConsumptionLicense",
    "ListPurchasedLicenses",
    "CreateToken",
];

/// Validated configuration of the account-lifecycle engine.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub selection: Selection,
    /// OU id → licenses for accounts directly in that OU (replaces `selection` for them; empty = none).
    pub ou_rules: BTreeMap<String, Vec<LicenseRef>>,
    /// License → distribution mode; licenses not named here are distributed per account.
    #[serde(serialize_with = "distribution_map")]
    pub distribution: BTreeMap<LicenseRef, Mode>,
    /// When non-empty, only accounts directly in one of these OUs are entitled.
    pub target_ous: Vec<String>,
    /// When set, only accounts carrying this tag key (and value) are entitled.
    pub account_tag_filter: Option<(String, String)>,
    /// When set, an account tag with this key adds its space-separated SKUs/ARNs to the selection.
    pub licenses_tag_key: Option<String>,
    pub execution_role_name: String,
    /// The partition the ARNs this engine builds are in (`aws`, `aws-us-gov`, `aws-cn`, …):
    /// `AWS_PARTITION`, else the partition of `AWS_REGION` (set by Lambda) or
    /// `AWS_DEFAULT_REGION`, else `aws`.
    pub partition: String,
    pub license_home_region: String,
    pub override_behavior: OverrideBehavior,
    pub allowed_operations: Vec<String>,
    pub grant_name_prefix: String,
    pub dry_run: bool,
    pub max_concurrent_licenses: usize,
    pub max_concurrent_accounts: usize,
    /// License Manager calls per second and operation, shared by the container (burst as many).
    pub license_manager_calls_per_second: u32,
    /// Queue for delayed re-checks of grants still in workflow (the onboarding queue).
    pub onboarding_queue_url: Option<String>,
    /// Re-checks of backfill work go here (the backfill queue), when set.
    pub backfill_queue_url: Option<String>,
    /// Final failures go here (the notification queue), when set.
    pub notify_queue_url: Option<String>,
    /// The queues' maxReceiveCount: the delivery after which SQS parks a message.
    pub max_receives: u32,
    #[serde(with = "secs")]
    pub recheck_delay: Duration,
    #[serde(with = "secs")]
    pub workflow_deadline: Duration,
    pub assume_role_attempts: u32,
    #[serde(with = "millis")]
    pub assume_role_backoff: Duration,
    /// The account this stack runs in (the template sets it from `AWS::AccountId`). The engine
    /// never grants to it: in a delegated administrator deployment it is a member account that
    /// Control Tower reports like any other, and a grant to the grantor itself is invalid.
    pub self_account_id: Option<AccountId>,
}

/// Serialises the distribution with the references as written (JSON keys are strings).
fn distribution_map<S: serde::Serializer>(
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

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

mod millis {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

/// Environment variable names, in one place for the template, the docs and the tests.
pub mod vars {
    pub const LICENSE_ARNS: &str = "LICENSE_ARNS";
    pub const PRODUCT_SKUS: &str = "PRODUCT_SKUS";
    pub const ALL_MARKETPLACE_LICENSES: &str = "ALL_MARKETPLACE_LICENSES";
    pub const OU_LICENSE_RULES: &str = "OU_LICENSE_RULES";
    pub const LICENSE_DISTRIBUTION: &str = "LICENSE_DISTRIBUTION";
    pub const TARGET_OUS: &str = "TARGET_OUS";
    pub const ACCOUNT_TAG_FILTER: &str = "ACCOUNT_TAG_FILTER";
    pub const LICENSES_TAG_KEY: &str = "LICENSES_TAG_KEY";
    pub const EXECUTION_ROLE_NAME: &str = "EXECUTION_ROLE_NAME";
    pub const LICENSE_HOME_REGION: &str = "LICENSE_HOME_REGION";
    pub const ACTIVATION_OVERRIDE_BEHAVIOR: &str = "ACTIVATION_OVERRIDE_BEHAVIOR";
    pub const ALLOWED_OPERATIONS: &str = "ALLOWED_OPERATIONS";
    pub const GRANT_NAME_PREFIX: &str = "GRANT_NAME_PREFIX";
    pub const DRY_RUN: &str = "DRY_RUN";
    pub const MAX_CONCURRENT_LICENSES: &str = "MAX_CONCURRENT_LICENSES";
    pub const MAX_CONCURRENT_ACCOUNTS: &str = "MAX_CONCURRENT_ACCOUNTS";
    pub const LICENSE_MANAGER_CALLS_PER_SECOND: &str = "LICENSE_MANAGER_CALLS_PER_SECOND";
    pub const ONBOARDING_QUEUE_URL: &str = "ONBOARDING_QUEUE_URL";
    pub const BACKFILL_QUEUE_URL: &str = "BACKFILL_QUEUE_URL";
    pub const NOTIFY_QUEUE_URL: &str = "NOTIFY_QUEUE_URL";
    pub const MAX_RECEIVE_COUNT: &str = "MAX_RECEIVE_COUNT";
    pub const RECHECK_DELAY_SECONDS: &str = "RECHECK_DELAY_SECONDS";
    pub const WORKFLOW_DEADLINE_SECONDS: &str = "WORKFLOW_DEADLINE_SECONDS";
    pub const ASSUME_ROLE_ATTEMPTS: &str = "ASSUME_ROLE_ATTEMPTS";
    pub const ASSUME_ROLE_BACKOFF_MS: &str = "ASSUME_ROLE_BACKOFF_MS";
    pub const SELF_ACCOUNT_ID: &str = "SELF_ACCOUNT_ID";
    /// Optional: the partition, when not the one of `AWS_REGION` (see [`crate::ids::partition_from`]).
    pub const AWS_PARTITION: &str = "AWS_PARTITION";
}

impl Config {
    /// Reads the process environment; a license selection is required.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the process environment for functions whose requests name their own licenses:
    /// no selection is required (and none is used).
    pub fn from_env_per_request() -> Result<Self, Error> {
        Self::parse(|k| std::env::var(k).ok(), false)
    }

    /// Reads configuration through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        Self::parse(lookup, true)
    }

    /// Like [`Config::from_lookup`], for functions whose requests name their own licenses.
    pub fn from_lookup_per_request(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        Self::parse(lookup, false)
    }

    fn parse(
        lookup: impl Fn(&str) -> Option<String>,
        require_selection: bool,
    ) -> Result<Self, Error> {
        use vars::*;
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let mut listed = Vec::new();
        for (var, want_arn) in [(LICENSE_ARNS, true), (PRODUCT_SKUS, false)] {
            for item in split_list(get(var).as_deref()) {
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
        let all = parse_bool(
            get(ALL_MARKETPLACE_LICENSES).as_deref(),
            ALL_MARKETPLACE_LICENSES,
            false,
        )?;
        let selection = match (all, listed.is_empty()) {
            (true, true) => Selection::AllMarketplace,
            (true, false) => {
                return Err(Error::Config(format!(
                    "{ALL_MARKETPLACE_LICENSES}=true cannot be combined with {LICENSE_ARNS} or {PRODUCT_SKUS}: choose one"
                )))
            }
            (false, false) => Selection::Listed(listed),
            (false, true) if !require_selection => Selection::PerRequest,
            (false, true) => {
                return Err(Error::Config(format!(
                    "no licenses selected: set {LICENSE_ARNS}, {PRODUCT_SKUS} or {ALL_MARKETPLACE_LICENSES}=true"
                )))
            }
        };

        let mut ou_rules = BTreeMap::new();
        if let Some(raw) = get(OU_LICENSE_RULES) {
            let parsed: BTreeMap<String, Vec<String>> = serde_json::from_str(&raw).map_err(|e| {
                Error::Config(format!(
                    "{OU_LICENSE_RULES}: expected a JSON object {{\"ou-…\": [\"sku or license ARN\", …]}}: {e}"
                ))
            })?;
            for (ou, refs) in parsed {
                if !is_ou_id(&ou) {
                    return Err(Error::Config(format!(
                        "{OU_LICENSE_RULES}: {} is not an OU id (ou-xxxx-yyyyyyyy)",
                        echo(&ou)
                    )));
                }
                let refs = refs
                    .iter()
                    .map(|r| LicenseRef::parse(r, OU_LICENSE_RULES))
                    .collect::<Result<Vec<_>, _>>()?;
                ou_rules.insert(ou, refs);
            }
        }

        let target_ous: Vec<String> = split_list(get(TARGET_OUS).as_deref())
            .map(str::to_string)
            .collect();
        if let Some(bad) = target_ous.iter().find(|ou| !is_ou_id(ou)) {
            return Err(Error::Config(format!(
                "{TARGET_OUS}: {} is not an OU id (ou-xxxx-yyyyyyyy)",
                echo(bad)
            )));
        }

        let account_tag_filter = match get(ACCOUNT_TAG_FILTER) {
            None => None,
            Some(raw) => match raw.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    Some((k.trim().to_string(), v.trim().to_string()))
                }
                _ => {
                    return Err(Error::Config(format!(
                        "{ACCOUNT_TAG_FILTER}: {} must look like key=value",
                        echo(&raw)
                    )))
                }
            },
        };

        let distribution = parse_distribution(
            get(LICENSE_DISTRIBUTION).as_deref(),
            &selection,
            &ou_rules,
            &target_ous,
            account_tag_filter.is_some(),
        )?;

        let execution_role_name =
            get(EXECUTION_ROLE_NAME).unwrap_or_else(|| "AWSControlTowerExecution".into());
        if !is_role_name(&execution_role_name) {
            return Err(Error::Config(format!(
                "{EXECUTION_ROLE_NAME}: {} is not an IAM role name",
                echo(&execution_role_name)
            )));
        }
        let partition = partition_from(&lookup)?;
        let license_home_region = get(LICENSE_HOME_REGION).unwrap_or_else(|| "us-east-1".into());
        if !is_region(&license_home_region) {
            return Err(Error::Config(format!(
                "{LICENSE_HOME_REGION}: {} is not a region name",
                echo(&license_home_region)
            )));
        }
        let override_behavior = match get(ACTIVATION_OVERRIDE_BEHAVIOR) {
            None => OverrideBehavior::DistributedGrantsOnly,
            Some(raw) => OverrideBehavior::parse(&raw, ACTIVATION_OVERRIDE_BEHAVIOR)?,
        };
        let allowed_operations: Vec<String> = match get(ALLOWED_OPERATIONS) {
            None => [
                "CheckoutLicense",
                "CheckInLicense",
                "ExtendConsumptionLicense",
                "ListPurchasedLicenses",
            ]
            .map(String::from)
            .to_vec(),
            Some(raw) => split_list(Some(&raw)).map(str::to_string).collect(),
        };
        if allowed_operations.is_empty() || allowed_operations.len() > 8 {
            return Err(Error::Config(format!(
                "{ALLOWED_OPERATIONS}: give 1 to 8 operations"
            )));
        }
        if let Some(bad) = allowed_operations
            .iter()
            .find(|op| !self::ALLOWED_OPERATIONS.contains(&op.as_str()))
        {
            return Err(Error::Config(format!(
                "{ALLOWED_OPERATIONS}: {} is not one of {}",
                echo(bad),
                self::ALLOWED_OPERATIONS.join(", ")
            )));
        }
        let grant_name_prefix = get(GRANT_NAME_PREFIX).unwrap_or_else(|| "ct-entitlements".into());
        if grant_name_prefix.len() > 40
            || !grant_name_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(Error::Config(format!(
                "{GRANT_NAME_PREFIX}: {} must be at most 40 letters, digits, '-', '_' or '.'",
                echo(&grant_name_prefix)
            )));
        }

        let onboarding_queue_url =
            parse_queue_url(get(ONBOARDING_QUEUE_URL), ONBOARDING_QUEUE_URL)?;
        let backfill_queue_url = parse_queue_url(get(BACKFILL_QUEUE_URL), BACKFILL_QUEUE_URL)?;
        let notify_queue_url = parse_queue_url(get(NOTIFY_QUEUE_URL), NOTIFY_QUEUE_URL)?;

        let self_account_id = match get(SELF_ACCOUNT_ID) {
            None => None,
            Some(raw) => Some(AccountId::parse(&raw).map_err(|_| {
                Error::Config(format!(
                    "{SELF_ACCOUNT_ID}: {} is not a 12-digit account id",
                    echo(&raw)
                ))
            })?),
        };

        Ok(Config {
            selection,
            ou_rules,
            distribution,
            target_ous,
            account_tag_filter,
            licenses_tag_key: get(LICENSES_TAG_KEY),
            execution_role_name,
            partition,
            license_home_region,
            override_behavior,
            allowed_operations,
            grant_name_prefix,
            dry_run: parse_bool(get(DRY_RUN).as_deref(), DRY_RUN, false)?,
            max_concurrent_licenses: parse_num(
                get(MAX_CONCURRENT_LICENSES),
                MAX_CONCURRENT_LICENSES,
                50,
                1,
                100,
            )? as usize,
            license_manager_calls_per_second: parse_num(
                get(LICENSE_MANAGER_CALLS_PER_SECOND),
                LICENSE_MANAGER_CALLS_PER_SECOND,
                10,
                1,
                100,
            )? as u32,
            max_concurrent_accounts: parse_num(
                get(MAX_CONCURRENT_ACCOUNTS),
                MAX_CONCURRENT_ACCOUNTS,
                5,
                1,
                10,
            )? as usize,
            onboarding_queue_url,
            backfill_queue_url,
            notify_queue_url,
            max_receives: parse_num(get(MAX_RECEIVE_COUNT), MAX_RECEIVE_COUNT, 5, 1, 1000)? as u32,
            recheck_delay: Duration::from_secs(parse_num(
                get(RECHECK_DELAY_SECONDS),
                RECHECK_DELAY_SECONDS,
                300,
                0,
                900,
            )?),
            workflow_deadline: Duration::from_secs(parse_num(
                get(WORKFLOW_DEADLINE_SECONDS),
                WORKFLOW_DEADLINE_SECONDS,
                86_400,
                60,
                14 * 86_400,
            )?),
            assume_role_attempts: parse_num(
                get(ASSUME_ROLE_ATTEMPTS),
                ASSUME_ROLE_ATTEMPTS,
                4,
                1,
                10,
            )? as u32,
            assume_role_backoff: Duration::from_millis(parse_num(
                get(ASSUME_ROLE_BACKOFF_MS),
                ASSUME_ROLE_BACKOFF_MS,
                2_000,
                0,
                60_000,
            )?),
            self_account_id,
        })
    }
}

impl Config {
    /// The distribution mode of a held license (by its ARN, else its SKU; `account` otherwise).
    pub fn mode_of(&self, arn: &str, sku: &str) -> Mode {
        self.distribution
            .get(&LicenseRef::Arn(arn.to_string()))
            .or_else(|| self.distribution.get(&LicenseRef::Sku(sku.to_string())))
            .copied()
            .unwrap_or_default()
    }

    /// The OUs an `ou`-mode license is granted to: every OU rule naming it, and TARGET_OUS
    /// when the global selection holds it.
    pub fn ous_of(&self, arn: &str, sku: &str) -> Vec<String> {
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

/// `LICENSE_DISTRIBUTION`: `<sku or license ARN>=<account|organization|ou>` items, separated
/// by commas or spaces. Organization and OU grants reach accounts whatever their tags, so the
/// settings that narrow a selection per account must agree with them: every conflict is an
/// error naming both settings.
fn parse_distribution(
    raw: Option<&str>,
    selection: &Selection,
    ou_rules: &BTreeMap<String, Vec<LicenseRef>>,
    target_ous: &[String],
    tag_filter: bool,
) -> Result<BTreeMap<LicenseRef, Mode>, Error> {
    use vars::*;
    let mut out = BTreeMap::new();
    for item in split_list(raw) {
        let Some((license, mode)) = item.rsplit_once('=') else {
            return Err(Error::Config(format!(
                "{LICENSE_DISTRIBUTION}: {} must look like <sku or license ARN>=<account|organization|ou>",
                echo(item)
            )));
        };
        let license = LicenseRef::parse(license, LICENSE_DISTRIBUTION)?;
        let mode = Mode::parse(mode, LICENSE_DISTRIBUTION)?;
        if out.insert(license.clone(), mode).is_some_and(|m| m != mode) {
            return Err(Error::Config(format!(
                "{LICENSE_DISTRIBUTION}: {license} is given two modes"
            )));
        }
        if mode == Mode::Account {
            continue;
        }
        let in_global = match selection {
            Selection::AllMarketplace => true,
            Selection::Listed(list) => list.contains(&license),
            Selection::PerRequest => false,
        };
        let in_rules = ou_rules.values().any(|refs| refs.contains(&license));
        if !in_global && !in_rules {
            return Err(Error::Config(format!(
                "{LICENSE_DISTRIBUTION}: {license} is not selected ({LICENSE_ARNS}, {PRODUCT_SKUS}, {ALL_MARKETPLACE_LICENSES} or {OU_LICENSE_RULES})"
            )));
        }
        if tag_filter {
            return Err(Error::Config(format!(
                "{LICENSE_DISTRIBUTION}: {license} is in {} mode, whose grants reach accounts whatever their tags; {ACCOUNT_TAG_FILTER} needs account mode",
                mode.as_str()
            )));
        }
        match mode {
            Mode::Organization => {
                if !target_ous.is_empty() {
                    return Err(Error::Config(format!(
                        "{LICENSE_DISTRIBUTION}: {license} is in organization mode, which reaches every account, but {TARGET_OUS} narrows the selection: use ou mode"
                    )));
                }
                if let Some((ou, _)) = ou_rules.iter().find(|(_, refs)| !refs.contains(&license)) {
                    return Err(Error::Config(format!(
                        "{LICENSE_DISTRIBUTION}: {license} is in organization mode, which reaches every account, but the {OU_LICENSE_RULES} rule for {ou} does not list it: list it there or use ou mode"
                    )));
                }
                if !in_global {
                    return Err(Error::Config(format!(
                        "{LICENSE_DISTRIBUTION}: {license} is in organization mode but only {OU_LICENSE_RULES} select it: use ou mode"
                    )));
                }
            }
            Mode::Ou => {
                if in_global && target_ous.is_empty() {
                    return Err(Error::Config(format!(
                        "{LICENSE_DISTRIBUTION}: {license} is in ou mode but selected for every account (no {TARGET_OUS}): use organization mode, or name its OUs in {OU_LICENSE_RULES} or {TARGET_OUS}"
                    )));
                }
            }
            Mode::Account => {}
        }
    }
    Ok(out)
}

fn split_list(raw: Option<&str>) -> impl Iterator<Item = &str> {
    raw.unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Parses a true/false setting named `var` (also 1/0, yes/no); `None` gives `default`.
pub fn parse_bool(raw: Option<&str>, var: &str, default: bool) -> Result<bool, Error> {
    match raw.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(Error::Config(format!(
            "{var}: {} must be true or false",
            crate::error::echo(other)
        ))),
    }
}

/// Parses a whole-number setting named `var` within `min..=max`; `None` gives `default`.
/// An optional queue URL setting: absent, or an `http(s)://` URL (the error names `var`).
pub fn parse_queue_url(raw: Option<String>, var: &str) -> Result<Option<String>, Error> {
    match raw {
        Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => Err(
            Error::Config(format!("{var}: {} is not a queue URL", echo(&url))),
        ),
        other => Ok(other),
    }
}

pub fn parse_num(
    raw: Option<String>,
    var: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, Error> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Error::Config(format!(
            "{var}: {} must be a whole number from {min} to {max}",
            crate::error::echo(&raw)
        ))),
    }
}

fn is_region(raw: &str) -> bool {
    let parts: Vec<&str> = raw.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ARN: &str =
        "arn:aws:license-manager::294406891311:license:l-0123456789abcdef0123456789abcdef";

    fn load(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    fn config_error(pairs: &[(&str, &str)]) -> String {
        match load(pairs) {
            Err(Error::Config(msg)) => msg,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = load(&[("ALL_MARKETPLACE_LICENSES", "true")]).expect("valid");
        assert_eq!(c.selection, Selection::AllMarketplace);
        assert_eq!(c.execution_role_name, "AWSControlTowerExecution");
        assert_eq!(c.partition, "aws");
        assert_eq!(c.license_home_region, "us-east-1");
        assert_eq!(c.override_behavior, OverrideBehavior::DistributedGrantsOnly);
        assert_eq!(c.allowed_operations.len(), 4);
        assert!(!c.dry_run);
        assert_eq!(c.recheck_delay, Duration::from_secs(300));
        assert_eq!(c.max_concurrent_licenses, 50);
        assert_eq!(c.license_manager_calls_per_second, 10);
    }

    #[test]
    fn listed_licenses() {
        let c = load(&[
            ("LICENSE_ARNS", &format!("{ARN}, {ARN}")),
            ("PRODUCT_SKUS", "sku-a,sku-b"),
        ])
        .expect("valid");
        assert_eq!(
            c.selection,
            Selection::Listed(vec![
                LicenseRef::Arn(ARN.into()),
                LicenseRef::Sku("sku-a".into()),
                LicenseRef::Sku("sku-b".into())
            ])
        );
    }

    #[test]
    fn errors_name_the_variable() {
        // Operator-set values are echoed bounded too.
        let huge = "x".repeat(10_000);
        let base = ("PRODUCT_SKUS", "prod-sku-1");
        for var in [
            "EXECUTION_ROLE_NAME",
            "LICENSE_HOME_REGION",
            "GRANT_NAME_PREFIX",
            "SELF_ACCOUNT_ID",
            "ONBOARDING_QUEUE_URL",
            "TARGET_OUS",
            "ACCOUNT_TAG_FILTER",
            "AWS_PARTITION",
        ] {
            let msg = config_error(&[base, (var, &huge)]);
            assert!(
                msg.starts_with(var) && msg.len() < 400,
                "{var}: {} bytes",
                msg.len()
            );
        }
        assert!(config_error(&[]).contains("no licenses selected"));
        assert!(
            config_error(&[("LICENSE_ARNS", "arn:aws:license-manager::1:license:l-1")])
                .starts_with("LICENSE_ARNS")
        );
        assert!(config_error(&[("LICENSE_ARNS", "sku-a")]).starts_with("LICENSE_ARNS"));
        assert!(config_error(&[("PRODUCT_SKUS", "bad sku!")]).starts_with("PRODUCT_SKUS"));
        assert!(
            config_error(&[("ALL_MARKETPLACE_LICENSES", "true"), ("PRODUCT_SKUS", "a")])
                .contains("choose one")
        );
        assert!(config_error(&[("ALL_MARKETPLACE_LICENSES", "maybe")])
            .starts_with("ALL_MARKETPLACE_LICENSES"));
        let base = ("PRODUCT_SKUS", "sku-a");
        for (var, value) in [
            ("OU_LICENSE_RULES", "{not json"),
            ("OU_LICENSE_RULES", r#"{"r-abcd": ["sku"]}"#),
            ("TARGET_OUS", "ou-1"),
            ("ACCOUNT_TAG_FILTER", "novalue"),
            ("EXECUTION_ROLE_NAME", "a/b"),
            ("LICENSE_HOME_REGION", "mars"),
            ("ACTIVATION_OVERRIDE_BEHAVIOR", "REPLACE"),
            ("ALLOWED_OPERATIONS", "CheckoutLicense,DeleteEverything"),
            ("DRY_RUN", "sometimes"),
            ("MAX_CONCURRENT_LICENSES", "0"),
            ("RECHECK_DELAY_SECONDS", "901"),
            ("WORKFLOW_DEADLINE_SECONDS", "-1"),
            ("ONBOARDING_QUEUE_URL", "queue"),
            ("BACKFILL_QUEUE_URL", "queue"),
            ("GRANT_NAME_PREFIX", "has space"),
            ("SELF_ACCOUNT_ID", "12345678901"),
            ("SELF_ACCOUNT_ID", "arn:aws:iam::123456789012:root"),
            ("AWS_PARTITION", "AWS"),
            ("AWS_PARTITION", "aws:cn"),
        ] {
            let msg = config_error(&[base, (var, value)]);
            assert!(msg.starts_with(var), "{var}={value}: {msg}");
        }
    }

    #[test]
    fn the_partition_follows_the_region_unless_set() {
        let base = ("PRODUCT_SKUS", "sku-a");
        let partition = |pairs: &[(&str, &str)]| {
            let mut all = vec![base];
            all.extend_from_slice(pairs);
            load(&all).expect("valid").partition
        };
        assert_eq!(partition(&[]), "aws");
        assert_eq!(partition(&[("AWS_REGION", "eu-west-1")]), "aws");
        assert_eq!(partition(&[("AWS_REGION", "us-gov-west-1")]), "aws-us-gov");
        assert_eq!(partition(&[("AWS_REGION", "cn-northwest-1")]), "aws-cn");
        assert_eq!(
            partition(&[("AWS_DEFAULT_REGION", "us-gov-east-1")]),
            "aws-us-gov"
        );
        assert_eq!(
            partition(&[("AWS_REGION", "us-east-1"), ("AWS_PARTITION", "aws-iso-b")]),
            "aws-iso-b"
        );
    }

    #[test]
    fn ou_rules_and_filters() {
        let c = load(&[
            ("PRODUCT_SKUS", "sku-a"),
            (
                "OU_LICENSE_RULES",
                r#"{"ou-ab12-cdef3456": ["sku-b"], "ou-ab12-00000000": []}"#,
            ),
            ("TARGET_OUS", "ou-ab12-cdef3456"),
            ("ACCOUNT_TAG_FILTER", "marketplace = yes"),
            (
                "ACTIVATION_OVERRIDE_BEHAVIOR",
                "ALL_GRANTS_PERMITTED_BY_ISSUER",
            ),
        ])
        .expect("valid");
        assert_eq!(
            c.ou_rules["ou-ab12-cdef3456"],
            vec![LicenseRef::Sku("sku-b".into())]
        );
        assert!(c.ou_rules["ou-ab12-00000000"].is_empty());
        assert_eq!(
            c.account_tag_filter,
            Some(("marketplace".into(), "yes".into()))
        );
        assert_eq!(
            c.override_behavior,
            OverrideBehavior::AllGrantsPermittedByIssuer
        );
    }

    #[test]
    fn distribution_modes() {
        let ou_a = "ou-ab12-aaaaaaaa";
        let ou_b = "ou-ab12-bbbbbbbb";
        let rules = format!(r#"{{"{ou_a}": ["sku-b", "sku-c"], "{ou_b}": ["sku-b", "sku-c"]}}"#);
        // Mixed: A to the whole organization, B to its OUs, C per account.
        let c = load(&[
            ("PRODUCT_SKUS", "sku-a sku-c"),
            (
                "OU_LICENSE_RULES",
                &rules.replace("\"sku-b\"", "\"sku-a\", \"sku-b\""),
            ),
            (
                "LICENSE_DISTRIBUTION",
                "sku-a=organization, sku-b=ou sku-c=account",
            ),
        ])
        .expect("valid");
        assert_eq!(c.mode_of("arn:x", "sku-a"), Mode::Organization);
        assert_eq!(c.mode_of("arn:x", "sku-b"), Mode::Ou);
        assert_eq!(c.mode_of("arn:x", "sku-c"), Mode::Account);
        assert_eq!(c.mode_of("arn:x", "sku-z"), Mode::Account);
        assert_eq!(c.ous_of("arn:x", "sku-b"), vec![ou_a, ou_b]);
        // By ARN, ou mode through TARGET_OUS.
        let c = load(&[
            ("LICENSE_ARNS", ARN),
            ("TARGET_OUS", ou_a),
            ("LICENSE_DISTRIBUTION", &format!("{ARN}=ou")),
        ])
        .expect("valid");
        assert_eq!(c.mode_of(ARN, "anything"), Mode::Ou);
        assert_eq!(c.ous_of(ARN, "anything"), vec![ou_a]);
        let json = serde_json::to_value(&c).expect("serialises");
        assert_eq!(json["distribution"][ARN], "ou");

        for (pairs, part) in [
            (
                vec![("PRODUCT_SKUS", "sku-a"), ("LICENSE_DISTRIBUTION", "sku-a")],
                "must look like",
            ),
            (
                vec![
                    ("PRODUCT_SKUS", "sku-a"),
                    ("LICENSE_DISTRIBUTION", "sku-a=org"),
                ],
                "must be account, organization or ou",
            ),
            (
                vec![
                    ("PRODUCT_SKUS", "sku-a"),
                    ("LICENSE_DISTRIBUTION", "sku-a=account sku-a=organization"),
                ],
                "two modes",
            ),
            (
                vec![
                    ("PRODUCT_SKUS", "sku-a"),
                    ("LICENSE_DISTRIBUTION", "sku-b=organization"),
                ],
                "is not selected",
            ),
            (
                vec![
                    ("PRODUCT_SKUS", "sku-a"),
                    ("ACCOUNT_TAG_FILTER", "k=v"),
                    ("LICENSE_DISTRIBUTION", "sku-a=organization"),
                ],
                "ACCOUNT_TAG_FILTER needs account mode",
            ),
            (
                vec![
                    ("PRODUCT_SKUS", "sku-a"),
                    ("TARGET_OUS", ou_a),
                    ("LICENSE_DISTRIBUTION", "sku-a=organization"),
                ],
                "use ou mode",
            ),
            (
                vec![
                    ("PRODUCT_SKUS", "sku-a"),
                    ("OU_LICENSE_RULES", &rules),
                    ("LICENSE_DISTRIBUTION", "sku-a=organization"),
                ],
                "does not list it",
            ),
            (
                vec![
                    ("PRODUCT_SKUS", "sku-a"),
                    ("LICENSE_DISTRIBUTION", "sku-a=ou"),
                ],
                "use organization mode",
            ),
            (
                vec![
                    ("PRODUCT_SKUS", "sku-a"),
                    ("OU_LICENSE_RULES", &rules),
                    ("LICENSE_DISTRIBUTION", "sku-b=organization"),
                ],
                "only OU_LICENSE_RULES select it",
            ),
        ] {
            let msg = config_error(&pairs);
            assert!(
                msg.starts_with("LICENSE_DISTRIBUTION") && msg.contains(part),
                "{pairs:?}: {msg}"
            );
        }
        // Account mode needs nothing else.
        load(&[
            ("PRODUCT_SKUS", "sku-a"),
            ("ACCOUNT_TAG_FILTER", "k=v"),
            ("LICENSE_DISTRIBUTION", "sku-a=account"),
        ])
        .expect("valid");
    }

    #[test]
    fn self_account_id_is_optional_and_validated() {
        let c = load(&[("ALL_MARKETPLACE_LICENSES", "true")]).expect("valid");
        assert_eq!(c.self_account_id, None);
        let c = load(&[
            ("ALL_MARKETPLACE_LICENSES", "true"),
            ("SELF_ACCOUNT_ID", " 111122223333 "),
        ])
        .expect("valid");
        assert_eq!(
            c.self_account_id.as_ref().map(AccountId::as_str),
            Some("111122223333")
        );
        let c = Config::from_lookup_per_request(|k| {
            (k == vars::SELF_ACCOUNT_ID).then(|| "111122223333".to_string())
        })
        .expect("valid");
        assert_eq!(
            c.self_account_id.map(|a| a.to_string()).as_deref(),
            Some("111122223333")
        );
        let msg = config_error(&[
            ("ALL_MARKETPLACE_LICENSES", "true"),
            ("SELF_ACCOUNT_ID", "1111-2222-3333"),
        ]);
        assert!(msg.starts_with("SELF_ACCOUNT_ID"), "{msg}");
    }
}
