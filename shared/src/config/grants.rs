//! The settings of the grants themselves: the role assumed in member accounts, the partition
//! and License Manager home region the ARNs are built for, the activation override behavior,
//! the allowed operations and the grant name prefix.

use super::env::{split_list, Env};
use super::vars::{
    self, ACTIVATION_OVERRIDE_BEHAVIOR, EXECUTION_ROLE_NAME, GRANT_NAME_PREFIX, LICENSE_HOME_REGION,
};
use crate::error::{echo, Error};
use crate::ids::{is_role_name, partition_from};

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
                echo(other)
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

/// The operations License Manager accepts in `AllowedOperations`.
pub(crate) const ALLOWED_OPERATIONS: &[&str] = &[
    "CreateGrant",
    "CheckoutLicense",
    "CheckoutBorrowLicense",
    "CheckInLicense",
    "ExtendConsumptionLicense",
    "ListPurchasedLicenses",
    "CreateToken",
];

/// The grant settings, parsed (the fields of [`super::Config`] of the same names).
pub(super) struct Grants {
    pub(super) execution_role_name: String,
    pub(super) partition: String,
    pub(super) license_home_region: String,
    pub(super) override_behavior: OverrideBehavior,
    pub(super) allowed_operations: Vec<String>,
    pub(super) grant_name_prefix: String,
}

impl Grants {
    /// Parses the grant settings in the order of the fields (the first error wins).
    pub(super) fn parse(env: &Env<'_>) -> Result<Self, Error> {
        Ok(Grants {
            execution_role_name: execution_role_name(env)?,
            partition: partition_from(env.lookup())?,
            license_home_region: license_home_region(env)?,
            override_behavior: match env.get(ACTIVATION_OVERRIDE_BEHAVIOR) {
                None => OverrideBehavior::DistributedGrantsOnly,
                Some(raw) => OverrideBehavior::parse(&raw, ACTIVATION_OVERRIDE_BEHAVIOR)?,
            },
            allowed_operations: allowed_operations(env)?,
            grant_name_prefix: grant_name_prefix(env)?,
        })
    }
}

/// `EXECUTION_ROLE_NAME`, by default `AWSControlTowerExecution`.
fn execution_role_name(env: &Env<'_>) -> Result<String, Error> {
    let name = env
        .get(EXECUTION_ROLE_NAME)
        .unwrap_or_else(|| "AWSControlTowerExecution".into());
    if !is_role_name(&name) {
        return Err(Error::Config(format!(
            "{EXECUTION_ROLE_NAME}: {} is not an IAM role name",
            echo(&name)
        )));
    }
    Ok(name)
}

/// `LICENSE_HOME_REGION`, by default `us-east-1`.
fn license_home_region(env: &Env<'_>) -> Result<String, Error> {
    let region = env
        .get(LICENSE_HOME_REGION)
        .unwrap_or_else(|| "us-east-1".into());
    if !is_region(&region) {
        return Err(Error::Config(format!(
            "{LICENSE_HOME_REGION}: {} is not a region name",
            echo(&region)
        )));
    }
    Ok(region)
}

/// `ALLOWED_OPERATIONS`: 1 to 8 of [`ALLOWED_OPERATIONS`], by default the four a member needs
/// to use a license.
fn allowed_operations(env: &Env<'_>) -> Result<Vec<String>, Error> {
    let var = vars::ALLOWED_OPERATIONS;
    let operations: Vec<String> = match env.get(var) {
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
    if operations.is_empty() || operations.len() > 8 {
        return Err(Error::Config(format!("{var}: give 1 to 8 operations")));
    }
    if let Some(bad) = operations
        .iter()
        .find(|op| !ALLOWED_OPERATIONS.contains(&op.as_str()))
    {
        return Err(Error::Config(format!(
            "{var}: {} is not one of {}",
            echo(bad),
            ALLOWED_OPERATIONS.join(", ")
        )));
    }
    Ok(operations)
}

/// `GRANT_NAME_PREFIX`: at most 40 letters, digits, `-`, `_` or `.`; by default
/// `ct-entitlements`.
fn grant_name_prefix(env: &Env<'_>) -> Result<String, Error> {
    let prefix = env
        .get(GRANT_NAME_PREFIX)
        .unwrap_or_else(|| "ct-entitlements".into());
    if prefix.len() > 40
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(Error::Config(format!(
            "{GRANT_NAME_PREFIX}: {} must be at most 40 letters, digits, '-', '_' or '.'",
            echo(&prefix)
        )));
    }
    Ok(prefix)
}

/// A region name: three or more lowercase-alphanumeric parts joined by `-`, the last all digits.
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
