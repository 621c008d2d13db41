//! AWS License Manager: the licenses the management account holds and the grants of them,
//! listed from either side, created, activated, deactivated and deleted.

use super::missing;
use crate::error::{aws_error, Error, Retry};
use crate::model::grant::{ACTIVATION_STATUS_REASON, BULK_ACTIVATION_STATUS_REASON};
use crate::model::GrantView;
use crate::report::{CallLog, Side};
use aws_sdk_licensemanager::types::{
    ActivationOverrideBehavior, AllowedOperation, Filter, Grant, GrantStatus, Options,
};

/// A Marketplace license the management account holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLicense {
    pub arn: String,
    pub sku: Option<String>,
    pub name: Option<String>,
    pub product_name: Option<String>,
    /// What the management account itself may pass on (`ReceivedMetadata.AllowedOperations`);
    /// `None` when License Manager did not say.
    pub allowed_operations: Option<Vec<String>>,
}

impl From<&Grant> for GrantView {
    fn from(g: &Grant) -> Self {
        GrantView {
            arn: g.grant_arn().to_string(),
            name: g.grant_name().to_string(),
            license_arn: g.license_arn().to_string(),
            status: g.grant_status().as_str().to_string(),
            version: g.version().to_string(),
            parent_arn: g.parent_arn().to_string(),
            grantee: g.grantee_principal_arn().to_string(),
            status_reason: g.status_reason().map(str::to_string),
            activation_behavior: g
                .options()
                .and_then(|o| o.activation_override_behavior())
                .map(|b| b.as_str().to_string()),
        }
    }
}

/// Every AVAILABLE license issued by AWS/Marketplace that the caller holds.
pub(crate) async fn marketplace_licenses(
    lm: &aws_sdk_licensemanager::Client,
    calls: &CallLog,
) -> Result<Vec<HeldLicense>, Error> {
    let mut held = Vec::new();
    let mut token = None;
    loop {
        calls.record(Side::Own, "license-manager:ListReceivedLicenses", false);
        let out = lm
            .list_received_licenses()
            .filters(filter("IssuerName", "AWS/Marketplace"))
            .filters(filter("Status", "AVAILABLE"))
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("license-manager", "ListReceivedLicenses", e))?;
        held.extend(out.licenses().iter().filter_map(|l| {
            Some(HeldLicense {
                arn: l.license_arn()?.to_string(),
                sku: l.product_sku().map(str::to_string),
                name: l.license_name().map(str::to_string),
                product_name: l.product_name().map(str::to_string),
                allowed_operations: l.received_metadata().map(|m| {
                    m.allowed_operations()
                        .iter()
                        .map(|op| op.as_str().to_string())
                        .collect()
                }),
            })
        }));
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(held);
        }
    }
}

/// Every grant the member account received (all licenses: one listing per account).
pub(crate) async fn received_grants(
    lm: &aws_sdk_licensemanager::Client,
    calls: &CallLog,
) -> Result<Vec<GrantView>, Error> {
    let mut grants = Vec::new();
    let mut token = None;
    loop {
        calls.record(Side::Member, "license-manager:ListReceivedGrants", false);
        let out = lm
            .list_received_grants()
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("license-manager", "ListReceivedGrants", e))?;
        grants.extend(out.grants().iter().map(GrantView::from));
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(grants);
        }
    }
}

/// The account-level grants of `principal` (an account's root) for `license_arn` that the
/// organization's members received, as the management account sees them
/// (`ListReceivedGrantsForOrganization`): children of organization/OU grants included.
pub(crate) async fn organization_received_grants(
    lm: &aws_sdk_licensemanager::Client,
    license_arn: &str,
    principal: &str,
    calls: &CallLog,
) -> Result<Vec<GrantView>, Error> {
    organization_grants(lm, license_arn, Some(principal), calls).await
}

/// ListDistributedGrants with `filters`, every page.
async fn list_distributed(
    lm: &aws_sdk_licensemanager::Client,
    filters: Vec<Filter>,
    calls: &CallLog,
) -> Result<Vec<GrantView>, Error> {
    let mut grants = Vec::new();
    let mut token = None;
    loop {
        calls.record(Side::Own, "license-manager:ListDistributedGrants", false);
        let out = lm
            .list_distributed_grants()
            .set_filters(Some(filters.clone()).filter(|f| !f.is_empty()))
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("license-manager", "ListDistributedGrants", e))?;
        grants.extend(out.grants().iter().map(GrantView::from));
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(grants);
        }
    }
}

/// What CreateGrant needs.
pub(crate) struct NewGrant<'a> {
    pub client_token: &'a str,
    pub name: &'a str,
    pub license_arn: &'a str,
    pub principal: &'a str,
    pub home_region: &'a str,
    pub allowed_operations: &'a [String],
}

pub(crate) async fn create_grant(
    lm: &aws_sdk_licensemanager::Client,
    grant: &NewGrant<'_>,
    calls: &CallLog,
) -> Result<GrantView, Error> {
    calls.record(Side::Own, "license-manager:CreateGrant", true);
    let out = lm
        .create_grant()
        .client_token(grant.client_token)
        .grant_name(grant.name)
        .license_arn(grant.license_arn)
        .principals(grant.principal)
        .home_region(grant.home_region)
        .set_allowed_operations(Some(
            grant
                .allowed_operations
                .iter()
                .map(|op| AllowedOperation::from(op.as_str()))
                .collect(),
        ))
        .send()
        .await
        .map_err(|e| match aws_error("license-manager", "CreateGrant", e) {
            Error::Aws { code, message, .. } if code == "ResourceLimitExceededException" => {
                Error::Aws {
                    service: "license-manager",
                    operation: "CreateGrant",
                    code,
                    message: format!(
                        "{}: License Manager's grants-per-license quota (2,000 by default, Service Quotas code L-55F04DE6) is reached for this license; request a higher quota, or grant the license to the organization or to OUs, where one grant covers every account under it ({})",
                        grant.license_arn,
                        crate::error::echo(&message)
                    ),
                    retry: Retry::Permanent,
                }
            }
            other => other,
        })?;
    Ok(GrantView {
        arn: out.grant_arn().unwrap_or_default().to_string(),
        name: grant.name.to_string(),
        license_arn: grant.license_arn.to_string(),
        status: out
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        version: out.version().unwrap_or_default().to_string(),
        parent_arn: grant.license_arn.to_string(),
        grantee: grant.principal.to_string(),
        status_reason: None,
        activation_behavior: None,
    })
}

/// GetGrant (either side).
pub(crate) async fn get_grant(
    lm: &aws_sdk_licensemanager::Client,
    grant_arn: &str,
    calls: &CallLog,
) -> Result<GrantView, Error> {
    calls.record(Side::Own, "license-manager:GetGrant", false);
    let out = lm
        .get_grant()
        .grant_arn(grant_arn)
        .send()
        .await
        .map_err(|e| aws_error("license-manager", "GetGrant", e))?;
    out.grant()
        .map(GrantView::from)
        .ok_or_else(|| missing("GetGrant", "Grant"))
}

/// AcceptGrant as the member account; returns (status, version).
pub(crate) async fn accept_grant(
    lm: &aws_sdk_licensemanager::Client,
    grant_arn: &str,
    calls: &CallLog,
) -> Result<(String, String), Error> {
    calls.record(Side::Member, "license-manager:AcceptGrant", true);
    let out = lm
        .accept_grant()
        .grant_arn(grant_arn)
        .send()
        .await
        .map_err(|e| aws_error("license-manager", "AcceptGrant", e))?;
    Ok((
        out.status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        out.version().unwrap_or_default().to_string(),
    ))
}

/// CreateGrantVersion with Status=ACTIVE; returns (status, version).
pub(crate) async fn activate_grant(
    lm: &aws_sdk_licensemanager::Client,
    grant_arn: &str,
    source_version: &str,
    client_token: &str,
    behavior: Option<&str>,
    calls: &CallLog,
) -> Result<(String, String), Error> {
    let reason = ACTIVATION_STATUS_REASON;
    let how = (behavior, Side::Member, reason);
    activation(lm, grant_arn, source_version, client_token, how, calls)
        .await
        .map_err(as_conflict)
}

/// Activation of an account's grant by the grantor (the management account), with the
/// grantor's own override behavior: how a migration's takeover is done where the grantor already
/// set a behavior on the grant that a grantee's cannot replace (AWS: a grantee may specify one
/// only if the grantor does not).
pub(crate) async fn activate_grant_as_grantor(
    lm: &aws_sdk_licensemanager::Client,
    grant_arn: &str,
    source_version: &str,
    client_token: &str,
    behavior: &str,
    calls: &CallLog,
) -> Result<(String, String), Error> {
    let reason = ACTIVATION_STATUS_REASON;
    let how = (Some(behavior), Side::Own, reason);
    activation(lm, grant_arn, source_version, client_token, how, calls)
        .await
        .map_err(as_conflict)
}

/// The one-active-license refusal, told from other errors by its message.
fn as_conflict(e: Error) -> Error {
    match e {
        Error::Aws { message, .. } if message.contains("already has an active license") => {
            Error::ActiveLicenseConflict(message)
        }
        other => other,
    }
}

/// Bulk activation of an organization/OU grant (grantor side): CreateGrantVersion
/// Status=ACTIVE on the parent; License Manager activates every account-level grant under it,
/// and those of accounts that join later.
pub(crate) async fn bulk_activate(
    lm: &aws_sdk_licensemanager::Client,
    grant_arn: &str,
    source_version: &str,
    client_token: &str,
    behavior: &str,
    calls: &CallLog,
) -> Result<(String, String), Error> {
    let how = (Some(behavior), Side::Own, BULK_ACTIVATION_STATUS_REASON);
    activation(lm, grant_arn, source_version, client_token, how, calls).await
}

async fn activation(
    lm: &aws_sdk_licensemanager::Client,
    grant_arn: &str,
    source_version: &str,
    client_token: &str,
    (behavior, side, reason): (Option<&str>, Side, &str),
    calls: &CallLog,
) -> Result<(String, String), Error> {
    let options = behavior.map(|b| {
        Options::builder()
            .activation_override_behavior(ActivationOverrideBehavior::from(b))
            .build()
    });
    let how = (GrantStatus::Active, options, side, reason);
    new_grant_version(lm, grant_arn, source_version, client_token, how, calls).await
}

/// CreateGrantVersion with Status=DISABLED (deactivation; the grant can be activated again).
pub(crate) async fn deactivate_grant(
    lm: &aws_sdk_licensemanager::Client,
    grant_arn: &str,
    source_version: &str,
    client_token: &str,
    calls: &CallLog,
) -> Result<(String, String), Error> {
    new_grant_version(
        lm,
        grant_arn,
        source_version,
        client_token,
        (
            GrantStatus::Disabled,
            None,
            Side::Own,
            "ct-entitlements: deactivated (offboarding)",
        ),
        calls,
    )
    .await
}

async fn new_grant_version(
    lm: &aws_sdk_licensemanager::Client,
    grant_arn: &str,
    source_version: &str,
    client_token: &str,
    (status, options, side, reason): (GrantStatus, Option<Options>, Side, &str),
    calls: &CallLog,
) -> Result<(String, String), Error> {
    calls.record(side, "license-manager:CreateGrantVersion", true);
    let out = lm
        .create_grant_version()
        .client_token(client_token)
        .grant_arn(grant_arn)
        .status(status)
        .source_version(source_version)
        .set_options(options)
        .status_reason(reason)
        .send()
        .await
        .map_err(|e| aws_error("license-manager", "CreateGrantVersion", e))?;
    Ok((
        out.status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        out.version().unwrap_or_default().to_string(),
    ))
}

/// DeleteGrant (terminal: a later onboarding creates a new grant).
pub(crate) async fn delete_grant(
    lm: &aws_sdk_licensemanager::Client,
    grant_arn: &str,
    version: &str,
    reason: &str,
    calls: &CallLog,
) -> Result<String, Error> {
    calls.record(Side::Own, "license-manager:DeleteGrant", true);
    let out = lm
        .delete_grant()
        .grant_arn(grant_arn)
        .version(version)
        .status_reason(reason)
        .send()
        .await
        .map_err(|e| aws_error("license-manager", "DeleteGrant", e))?;
    Ok(out
        .status()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default())
}

/// Every grant the management account distributed to `principal`, for any license.
pub(crate) async fn grants_to_principal(
    lm: &aws_sdk_licensemanager::Client,
    principal: &str,
    calls: &CallLog,
) -> Result<Vec<GrantView>, Error> {
    list_distributed(lm, vec![filter("GranteePrincipalARN", principal)], calls).await
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// Every grant the management account distributed for `license_arn` (any principal, any
/// state): one listing per license for a whole organization.
pub(crate) async fn license_grants(
    lm: &aws_sdk_licensemanager::Client,
    license_arn: &str,
    calls: &CallLog,
) -> Result<Vec<GrantView>, Error> {
    list_distributed(lm, vec![filter("LicenseArn", license_arn)], calls).await
}

/// Every account-level grant for `license_arn` the organization's members received
/// (children of organization/OU grants included), as the management account sees them.
pub(crate) async fn organization_license_grants(
    lm: &aws_sdk_licensemanager::Client,
    license_arn: &str,
    calls: &CallLog,
) -> Result<Vec<GrantView>, Error> {
    organization_grants(lm, license_arn, None, calls).await
}

/// `ListReceivedGrantsForOrganization` for a license, of one grantee or all, every page.
async fn organization_grants(
    lm: &aws_sdk_licensemanager::Client,
    license_arn: &str,
    principal: Option<&str>,
    calls: &CallLog,
) -> Result<Vec<GrantView>, Error> {
    let mut grants = Vec::new();
    let mut token = None;
    loop {
        calls.record(
            Side::Own,
            "license-manager:ListReceivedGrantsForOrganization",
            false,
        );
        let out = lm
            .list_received_grants_for_organization()
            .license_arn(license_arn)
            .set_filters(principal.map(|p| vec![filter("GranteePrincipalArn", p)]))
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("license-manager", "ListReceivedGrantsForOrganization", e))?;
        grants.extend(out.grants().iter().map(GrantView::from));
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(grants);
        }
    }
}

/// Every grant the management account distributed (any license, any principal).
pub(crate) async fn all_distributed_grants(
    lm: &aws_sdk_licensemanager::Client,
    calls: &CallLog,
) -> Result<Vec<GrantView>, Error> {
    list_distributed(lm, Vec::new(), calls).await
}
