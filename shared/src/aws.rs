//! Thin adapters around the AWS calls the engine makes. Each records itself in the account's
//! `CallLog` and turns SDK errors into classified `Error`s; no decisions are made here.

use crate::error::{aws_error, Error, Retry};
use crate::ids::AccountId;
use crate::report::{CallLog, Side};
use aws_credential_types::Credentials;
use aws_sdk_licensemanager::types::{
    ActivationOverrideBehavior, AllowedOperation, Filter, Grant, GrantStatus, Options,
};
use std::time::{Duration, SystemTime};

/// Awaits an SDK call and classifies its error.
pub async fn aws_call<T, E, R>(
    service: &'static str,
    operation: &'static str,
    call: impl std::future::Future<
        Output = Result<T, aws_smithy_runtime_api::client::result::SdkError<E, R>>,
    >,
) -> Result<T, Error>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    call.await.map_err(|e| aws_error(service, operation, e))
}

/// The organization as the management account sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgInfo {
    pub id: String,
    pub arn: String,
    pub management_account: String,
}

impl OrgInfo {
    /// `arn:aws:organizations::<mgmt>:ou/o-…/ou-…`, the principal of an OU grant.
    pub fn ou_arn(&self, ou_id: &str) -> String {
        let prefix = self.arn.split(":organization/").next().unwrap_or_default();
        format!("{prefix}:ou/{}/{ou_id}", self.id)
    }
}

/// A member account as Organizations sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub name: Option<String>,
    pub state: String,
    /// The direct parent OU (none when the account sits in the root).
    pub ou_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

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

/// The parts of a grant the engine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantView {
    pub arn: String,
    pub name: String,
    pub license_arn: String,
    pub status: String,
    pub version: String,
    pub parent_arn: String,
    pub grantee: String,
    pub status_reason: Option<String>,
    /// `Options.ActivationOverrideBehavior`, set when the grant was activated with one (for an
    /// organization grant: bulk-activated).
    pub activation_behavior: Option<String>,
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

pub async fn describe_organization(
    org: &aws_sdk_organizations::Client,
    calls: &CallLog,
) -> Result<OrgInfo, Error> {
    calls.record(Side::Own, "organizations:DescribeOrganization", false);
    let out = org
        .describe_organization()
        .send()
        .await
        .map_err(|e| aws_error("organizations", "DescribeOrganization", e))?;
    let o = out
        .organization()
        .ok_or_else(|| missing("DescribeOrganization", "Organization"))?;
    Ok(OrgInfo {
        id: o.id().unwrap_or_default().to_string(),
        arn: o.arn().unwrap_or_default().to_string(),
        management_account: o.master_account_id().unwrap_or_default().to_string(),
    })
}

/// What the caller already knows about an account, so `describe_member` need not ask.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemberHints<'a> {
    /// The account's OU as a Control Tower event named it: no `ListParents`.
    pub ou_id: Option<&'a str>,
    /// No selection rule reads tags: no `ListTagsForResource` (the tags come back empty).
    pub skip_tags: bool,
}

/// DescribeAccount + ListParents + ListTagsForResource, at once, each only when the hints leave
/// it needed. DescribeAccount decides: an account outside the organization is
/// `NotInOrganization` whatever the others answered.
pub async fn describe_member(
    org: &aws_sdk_organizations::Client,
    account: &AccountId,
    hints: MemberHints<'_>,
    calls: &CallLog,
) -> Result<MemberInfo, Error> {
    let described = async {
        calls.record(Side::Own, "organizations:DescribeAccount", false);
        org.describe_account()
            .account_id(account.as_str())
            .send()
            .await
            .map_err(|e| match aws_error("organizations", "DescribeAccount", e) {
                Error::Aws { code, message, .. } if code == "AccountNotFoundException" => {
                    Error::NotInOrganization {
                        account: account.to_string(),
                        reason: message,
                    }
                }
                other => other,
            })
    };
    let parents = async {
        match hints.ou_id {
            Some(ou) => Ok(Some(ou.to_string())),
            None => parent_ou(org, account.as_str(), calls).await,
        }
    };
    let tags = async {
        if hints.skip_tags {
            return Ok(Vec::new());
        }
        account_tags(org, account.as_str(), calls).await
    };
    let (described, ou_id, tags) = futures::join!(described, parents, tags);
    let described = described?;
    let acct = described
        .account()
        .ok_or_else(|| missing("DescribeAccount", "Account"))?;
    let state = state_of(acct).unwrap_or_else(|| "ACTIVE".to_string());
    Ok(MemberInfo {
        name: acct.name().map(str::to_string),
        state,
        ou_id: ou_id?,
        tags: tags?,
    })
}

/// The parent OU of an account or an OU (`None` when its parent is the root).
pub async fn parent_ou(
    org: &aws_sdk_organizations::Client,
    child_id: &str,
    calls: &CallLog,
) -> Result<Option<String>, Error> {
    calls.record(Side::Own, "organizations:ListParents", false);
    let out = org
        .list_parents()
        .child_id(child_id)
        .send()
        .await
        .map_err(|e| aws_error("organizations", "ListParents", e))?;
    Ok(out
        .parents()
        .iter()
        .find(|p| {
            p.r#type()
                .is_some_and(|t| t.as_str() == "ORGANIZATIONAL_UNIT")
        })
        .and_then(|p| p.id().map(str::to_string)))
}

/// Every AVAILABLE license issued by AWS/Marketplace that the caller holds.
pub async fn marketplace_licenses(
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

/// AssumeRole into the member account. `AccessDenied` right after account creation usually
/// means the role is not assumable yet: retried with exponential backoff, then retryable.
pub async fn assume_role(
    sts: &aws_sdk_sts::Client,
    role_arn: &str,
    session_name: &str,
    attempts: u32,
    backoff: Duration,
    calls: &CallLog,
) -> Result<Credentials, Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        calls.record(Side::Own, "sts:AssumeRole", false);
        let result = sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session_name)
            .duration_seconds(900)
            .send()
            .await;
        match result {
            Ok(out) => {
                let c = out
                    .credentials()
                    .ok_or_else(|| missing("AssumeRole", "Credentials"))?;
                let expiry = SystemTime::try_from(*c.expiration()).ok();
                return Ok(Credentials::new(
                    c.access_key_id(),
                    c.secret_access_key(),
                    Some(c.session_token().to_string()),
                    expiry,
                    "ct-entitlements-assume-role",
                ));
            }
            Err(err) => {
                let classified = aws_error("sts", "AssumeRole", err);
                let Error::Aws {
                    code,
                    message,
                    retry,
                    ..
                } = &classified
                else {
                    return Err(classified);
                };
                let (code, message, retry) = (code.clone(), message.clone(), *retry);
                let not_yet = code == "AccessDenied" || code == "AccessDeniedException";
                let retry = if not_yet { Retry::Retryable } else { retry };
                if retry == Retry::Retryable && attempt < attempts {
                    tokio::time::sleep(jittered(backoff, attempt)).await;
                    continue;
                }
                return Err(Error::AssumeRole {
                    role_arn: role_arn.to_string(),
                    message: format!("{code}: {message} (after {attempt} attempt(s))"),
                    retry,
                });
            }
        }
    }
}

/// Exponential backoff with up to 50 % jitter: base·2^(attempt-1) · [0.5, 1.0].
fn jittered(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << (attempt - 1).min(6));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let fraction = 0.5 + f64::from(nanos % 1000) / 2000.0;
    exp.mul_f64(fraction)
}

/// The service-linked roles every member account needs, looked up by path (names differ
/// between implementations; paths do not).
pub const MEMBER_SLR_SERVICES: &[&str] = &[
    "license-manager.amazonaws.com",
    "license-manager.member-account.amazonaws.com",
    "license-management.marketplace.amazonaws.com",
];

/// Paths of the service-linked roles present in the member account.
pub async fn service_role_paths(
    iam: &aws_sdk_iam::Client,
    calls: &CallLog,
) -> Result<Vec<String>, Error> {
    service_role_paths_as(iam, Side::Member, calls).await
}

/// Paths of the service-linked roles present in the account `iam` acts in.
pub async fn service_role_paths_as(
    iam: &aws_sdk_iam::Client,
    side: Side,
    calls: &CallLog,
) -> Result<Vec<String>, Error> {
    let mut paths = Vec::new();
    let mut marker = None;
    loop {
        calls.record(side, "iam:ListRoles", false);
        let out = iam
            .list_roles()
            .path_prefix("/aws-service-role/")
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| aws_error("iam", "ListRoles", e))?;
        paths.extend(out.roles().iter().map(|r| r.path().to_string()));
        marker = out.marker().map(str::to_string);
        if !out.is_truncated() || marker.is_none() {
            return Ok(paths);
        }
    }
}

/// Creates one SLR; "already there" (AWS: InvalidInput "has been taken"; moto:
/// EntityAlreadyExists) is success. Returns true when it was created now.
pub async fn create_slr(
    iam: &aws_sdk_iam::Client,
    service: &str,
    calls: &CallLog,
) -> Result<bool, Error> {
    create_slr_as(iam, service, Side::Member, calls).await
}

/// [`create_slr`] in the account `iam` acts in, recorded as `side`.
pub async fn create_slr_as(
    iam: &aws_sdk_iam::Client,
    service: &str,
    side: Side,
    calls: &CallLog,
) -> Result<bool, Error> {
    calls.record(side, "iam:CreateServiceLinkedRole", true);
    match iam
        .create_service_linked_role()
        .aws_service_name(service)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) => match aws_error("iam", "CreateServiceLinkedRole", e) {
            Error::Aws { code, message, .. }
                if code == "EntityAlreadyExists"
                    || (code == "InvalidInput" && message.contains("has been taken")) =>
            {
                Ok(false)
            }
            other => Err(other),
        },
    }
}

/// Every grant the member account received (all licenses: one listing per account).
pub async fn received_grants(
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
pub async fn organization_received_grants(
    lm: &aws_sdk_licensemanager::Client,
    license_arn: &str,
    principal: &str,
    calls: &CallLog,
) -> Result<Vec<GrantView>, Error> {
    organization_grants(lm, license_arn, Some(principal), calls).await
}

/// Grants the management account distributed for `license_arn` to `principal`.
pub async fn distributed_grants(
    lm: &aws_sdk_licensemanager::Client,
    license_arn: &str,
    principal: &str,
    calls: &CallLog,
) -> Result<Vec<GrantView>, Error> {
    list_distributed(
        lm,
        vec![
            filter("LicenseArn", license_arn),
            filter("GranteePrincipalARN", principal),
        ],
        calls,
    )
    .await
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
pub struct NewGrant<'a> {
    pub client_token: &'a str,
    pub name: &'a str,
    pub license_arn: &'a str,
    pub principal: &'a str,
    pub home_region: &'a str,
    pub allowed_operations: &'a [String],
}

pub async fn create_grant(
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
pub async fn get_grant(
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
pub async fn accept_grant(
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
pub async fn activate_grant(
    lm: &aws_sdk_licensemanager::Client,
    grant_arn: &str,
    source_version: &str,
    client_token: &str,
    behavior: Option<&str>,
    calls: &CallLog,
) -> Result<(String, String), Error> {
    let reason = crate::decide::ACTIVATION_STATUS_REASON;
    let how = (behavior, Side::Member, reason);
    activation(lm, grant_arn, source_version, client_token, how, calls)
        .await
        .map_err(as_conflict)
}

/// Activation of an account's grant by the grantor (the management account), with the
/// grantor's own override behavior: how a migration's takeover is done where the grantor already
/// set a behavior on the grant that a grantee's cannot replace (AWS: a grantee may specify one
/// only if the grantor does not).
pub async fn activate_grant_as_grantor(
    lm: &aws_sdk_licensemanager::Client,
    grant_arn: &str,
    source_version: &str,
    client_token: &str,
    behavior: &str,
    calls: &CallLog,
) -> Result<(String, String), Error> {
    let reason = crate::decide::ACTIVATION_STATUS_REASON;
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
pub async fn bulk_activate(
    lm: &aws_sdk_licensemanager::Client,
    grant_arn: &str,
    source_version: &str,
    client_token: &str,
    behavior: &str,
    calls: &CallLog,
) -> Result<(String, String), Error> {
    let how = (
        Some(behavior),
        Side::Own,
        crate::decide::BULK_ACTIVATION_STATUS_REASON,
    );
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
pub async fn deactivate_grant(
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
pub async fn delete_grant(
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
pub async fn grants_to_principal(
    lm: &aws_sdk_licensemanager::Client,
    principal: &str,
    calls: &CallLog,
) -> Result<Vec<GrantView>, Error> {
    list_distributed(lm, vec![filter("GranteePrincipalARN", principal)], calls).await
}

/// Queues a delayed re-check on the onboarding queue.
pub async fn send_recheck(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    body: &str,
    delay: Duration,
    calls: &CallLog,
) -> Result<(), Error> {
    calls.record(Side::Own, "sqs:SendMessage", true);
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(body)
        .delay_seconds(i32::try_from(delay.as_secs().min(900)).unwrap_or(900))
        .send()
        .await
        .map_err(|e| aws_error("sqs", "SendMessage", e))?;
    Ok(())
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn missing(operation: &str, field: &str) -> Error {
    Error::Aws {
        service: "aws",
        operation: "response",
        code: "MissingField".to_string(),
        message: format!("{operation} response has no {field}"),
        retry: Retry::Retryable,
    }
}

/// A member account as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedAccount {
    pub id: String,
    pub name: Option<String>,
    /// ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED, …
    pub state: String,
    /// The direct parent OU, when the listing walked the OU tree (none: in the root, or not
    /// known from this listing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ou_id: Option<String>,
}

fn listed(a: &aws_sdk_organizations::types::Account) -> Option<ListedAccount> {
    #[allow(deprecated)]
    let state = a
        .state()
        .map(|s| s.as_str().to_string())
        .or_else(|| a.status().map(|s| s.as_str().to_string()))
        .unwrap_or_else(|| "ACTIVE".to_string());
    Some(ListedAccount {
        id: a.id()?.to_string(),
        name: a.name().map(str::to_string),
        state,
        ou_id: None,
    })
}

/// Every account under `parent_id` (an OU or root), descending into child OUs.
pub async fn list_accounts_under(
    org: &aws_sdk_organizations::Client,
    parent_id: &str,
    calls: &CallLog,
) -> Result<Vec<ListedAccount>, Error> {
    let mut out = Vec::new();
    let mut pending = vec![parent_id.to_string()];
    while let Some(parent) = pending.pop() {
        let mut token = None;
        loop {
            calls.record(Side::Own, "organizations:ListAccountsForParent", false);
            let page = org
                .list_accounts_for_parent()
                .parent_id(&parent)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| aws_error("organizations", "ListAccountsForParent", e))?;
            let ou = parent.starts_with("ou-").then(|| parent.clone());
            out.extend(page.accounts().iter().filter_map(listed).map(|mut a| {
                a.ou_id = ou.clone();
                a
            }));
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let mut token = None;
        loop {
            calls.record(
                Side::Own,
                "organizations:ListOrganizationalUnitsForParent",
                false,
            );
            let page = org
                .list_organizational_units_for_parent()
                .parent_id(&parent)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| aws_error("organizations", "ListOrganizationalUnitsForParent", e))?;
            pending.extend(
                page.organizational_units()
                    .iter()
                    .filter_map(|ou| ou.id().map(str::to_string)),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(out)
}

/// Every account of the organization with its OU: the tree walked from the root
/// (`ListRoots`, then per OU `ListAccountsForParent` and `ListOrganizationalUnitsForParent`).
pub async fn list_organization(
    org: &aws_sdk_organizations::Client,
    calls: &CallLog,
) -> Result<Vec<ListedAccount>, Error> {
    calls.record(Side::Own, "organizations:ListRoots", false);
    let roots = org
        .list_roots()
        .send()
        .await
        .map_err(|e| aws_error("organizations", "ListRoots", e))?;
    let mut out = Vec::new();
    for root in roots.roots() {
        if let Some(id) = root.id() {
            out.extend(list_accounts_under(org, id, calls).await?);
        }
    }
    Ok(out)
}

/// An account's tags (every page).
pub async fn account_tags(
    org: &aws_sdk_organizations::Client,
    account: &str,
    calls: &CallLog,
) -> Result<Vec<(String, String)>, Error> {
    let mut tags = Vec::new();
    let mut token = None;
    loop {
        calls.record(Side::Own, "organizations:ListTagsForResource", false);
        let out = org
            .list_tags_for_resource()
            .resource_id(account)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("organizations", "ListTagsForResource", e))?;
        tags.extend(
            out.tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string())),
        );
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(tags);
        }
    }
}

/// Every grant the management account distributed for `license_arn` (any principal, any
/// state): one listing per license for a whole organization.
pub async fn license_grants(
    lm: &aws_sdk_licensemanager::Client,
    license_arn: &str,
    calls: &CallLog,
) -> Result<Vec<GrantView>, Error> {
    list_distributed(lm, vec![filter("LicenseArn", license_arn)], calls).await
}

/// Every account-level grant for `license_arn` the organization's members received
/// (children of organization/OU grants included), as the management account sees them.
pub async fn organization_license_grants(
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
pub async fn all_distributed_grants(
    lm: &aws_sdk_licensemanager::Client,
    calls: &CallLog,
) -> Result<Vec<GrantView>, Error> {
    list_distributed(lm, Vec::new(), calls).await
}

/// Sends bodies to a queue, ten per SendMessageBatch; entries SQS rejects are retried once.
/// Returns how many were sent.
/// One message on the coalescing FIFO queue: one message group, and one deduplication id
/// for every message, so SQS accepts at most one per 5-minute deduplication interval (Amazon
/// SQS Developer Guide, "Exactly-once processing": a message with a deduplication id sent
/// within 5 minutes of one accepted with it is accepted and not delivered).
pub async fn send_coalesced(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    body: &str,
    calls: &CallLog,
) -> Result<(), Error> {
    calls.record(Side::Own, "sqs:SendMessage", true);
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(body)
        .message_group_id("reconcile")
        .message_deduplication_id("reconcile")
        .send()
        .await
        .map_err(|e| aws_error("sqs", "SendMessage", e))?;
    Ok(())
}

/// Makes SQS messages (`(message id, receipt handle)`) visible again in `seconds`
/// (`ChangeMessageVisibilityBatch`, ten at a time). The first entry a batch could not change
/// fails the call; the messages then keep the visibility they have.
pub async fn change_visibility(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    entries: &[(String, String)],
    seconds: i32,
    calls: &CallLog,
) -> Result<(), Error> {
    use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry as Entry;
    for chunk in entries.chunks(10) {
        calls.record(Side::Own, "sqs:ChangeMessageVisibilityBatch", true);
        let batch = chunk
            .iter()
            .enumerate()
            .map(|(i, (_, handle))| {
                Entry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(seconds)
                    .build()
                    .map_err(|e| Error::InvalidInput(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = sqs
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(batch))
            .send()
            .await
            .map_err(|e| aws_error("sqs", "ChangeMessageVisibilityBatch", e))?;
        if let Some(first) = out.failed().first() {
            let id = first.id().parse::<usize>().ok().and_then(|i| chunk.get(i));
            return Err(Error::Aws {
                service: "sqs",
                operation: "ChangeMessageVisibilityBatch",
                code: first.code().to_string(),
                message: format!(
                    "{} of {} message(s) not changed, the first {}: {}",
                    out.failed().len(),
                    chunk.len(),
                    id.map_or("?", |(m, _)| m.as_str()),
                    first.message().unwrap_or_default()
                ),
                retry: Retry::Retryable,
            });
        }
    }
    Ok(())
}

pub async fn send_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    bodies: &[String],
    calls: &CallLog,
) -> Result<usize, Error> {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let mut sent = 0;
    for chunk in bodies.chunks(10) {
        let mut entries: Vec<(String, &String)> = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| (i.to_string(), b))
            .collect();
        for attempt in 0..2 {
            calls.record(Side::Own, "sqs:SendMessageBatch", true);
            let batch = entries
                .iter()
                .map(|(id, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(body.as_str())
                        .build()
                        .map_err(|e| Error::InvalidInput(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(batch))
                .send()
                .await
                .map_err(|e| aws_error("sqs", "SendMessageBatch", e))?;
            sent += out.successful().len();
            let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
            if failed.is_empty() {
                break;
            }
            if attempt == 1 {
                let first = &out.failed()[0];
                return Err(Error::Aws {
                    service: "sqs",
                    operation: "SendMessageBatch",
                    code: first.code().to_string(),
                    message: format!(
                        "{} message(s) not accepted: {}",
                        failed.len(),
                        first.message().unwrap_or_default()
                    ),
                    retry: Retry::Retryable,
                });
            }
            entries.retain(|(id, _)| failed.contains(&id.as_str()));
        }
    }
    Ok(sent)
}

/// What Organizations says of an account now, with `DescribeAccount` alone: `None` when it is
/// not in the organization (`AccountNotFoundException`), else its state (`ACTIVE`, `SUSPENDED`,
/// `PENDING_CLOSURE`, `CLOSED`, `PENDING_ACTIVATION`; empty when the answer has none). Any
/// other error comes back classified (a throttle stays retryable).
pub async fn account_state(
    org: &aws_sdk_organizations::Client,
    account: &AccountId,
    calls: &CallLog,
) -> Result<Option<String>, Error> {
    calls.record(Side::Own, "organizations:DescribeAccount", false);
    let out = match org
        .describe_account()
        .account_id(account.as_str())
        .send()
        .await
        .map_err(|e| aws_error("organizations", "DescribeAccount", e))
    {
        Ok(out) => out,
        Err(Error::Aws { code, .. }) if code == "AccountNotFoundException" => return Ok(None),
        Err(e) => return Err(e),
    };
    let acct = out
        .account()
        .ok_or_else(|| missing("DescribeAccount", "Account"))?;
    Ok(Some(state_of(acct).unwrap_or_default()))
}

/// An account's state (`State`, or the older `Status` when only that is there).
fn state_of(acct: &aws_sdk_organizations::types::Account) -> Option<String> {
    #[allow(deprecated)]
    acct.state()
        .map(|s| s.as_str().to_string())
        .or_else(|| acct.status().map(|s| s.as_str().to_string()))
}
