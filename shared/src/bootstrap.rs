//! Organization bootstrap, run once at deploy in the management account: trusted access for the
//! License Manager and Marketplace services, License Manager's organization integration
//! ("Link AWS Organizations accounts", which makes grants auto-accepted), the management
//! account's service-linked roles, and optionally a delegated administrator. Idempotent: it
//! reads first and changes only what is missing; it never disables anything.

use crate::aws::{self, aws_call};
use crate::error::Error;
use crate::ids::AccountId;
use crate::report::{CallLog, ErrorReport, Side};
use serde::Serialize;
use std::collections::BTreeMap;

/// Services whose trusted access License Manager's managed entitlements need.
pub(crate) const TRUSTED_SERVICES: &[&str] = &[
    "license-manager.amazonaws.com",
    "license-manager.member-account.amazonaws.com",
    "license-management.marketplace.amazonaws.com",
];

/// Service-linked roles of the management account (the member ones plus the master-account role).
pub(crate) const MANAGEMENT_SLR_SERVICES: &[&str] = &[
    "license-manager.amazonaws.com",
    "license-manager.master-account.amazonaws.com",
    "license-manager.member-account.amazonaws.com",
    "license-management.marketplace.amazonaws.com",
];

/// One step and what it did: `enabled`/`created`/`registered`, `unchanged`, or `wouldChange`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub step: String,
    pub target: String,
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapReport {
    pub steps: Vec<Step>,
    pub changed: usize,
    pub api_calls: BTreeMap<String, u32>,
}

#[cfg(test)]
impl BootstrapReport {
    /// The first step that failed (only tests ask).
    pub(crate) fn failed(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.error.is_some())
    }
}

/// What to set up.
#[derive(Debug, Clone, Default)]
pub struct BootstrapOptions {
    pub delegated_admin: Option<AccountId>,
    pub dry_run: bool,
}

/// The clients bootstrap needs, all acting as the management account.
pub struct BootstrapClients<'a> {
    pub organizations: &'a aws_sdk_organizations::Client,
    pub license_manager: &'a aws_sdk_licensemanager::Client,
    pub iam: &'a aws_sdk_iam::Client,
}

/// Runs every step; a failed step is reported and the others still run.
pub async fn bootstrap(
    clients: &BootstrapClients<'_>,
    options: &BootstrapOptions,
) -> BootstrapReport {
    let calls = CallLog::default();
    let mut steps = Steps {
        steps: Vec::new(),
        change: if options.dry_run { "wouldChange" } else { "" },
        dry_run: options.dry_run,
    };
    // Boxed: each step's future stays out of the caller's type (the custom-resource runtime
    // nests it deep enough to reach the compiler's layout depth limit otherwise).
    Box::pin(trusted_access(clients, &mut steps, &calls)).await;
    Box::pin(organization_integration(clients, &mut steps, &calls)).await;
    Box::pin(management_slrs(clients, &mut steps, &calls)).await;
    if let Some(admin) = &options.delegated_admin {
        Box::pin(delegated_admin(clients, admin.as_str(), &mut steps, &calls)).await;
    }
    let steps = steps.steps;
    let changed = steps
        .iter()
        .filter(|s| !matches!(s.result.as_str(), "unchanged" | "failed" | "wouldChange"))
        .count();
    BootstrapReport {
        steps,
        changed,
        api_calls: calls.snapshot().own,
    }
}

/// The steps reported so far, and what a change is called on this run (`wouldChange` in a
/// dry run).
struct Steps {
    steps: Vec<Step>,
    change: &'static str,
    dry_run: bool,
}

impl Steps {
    fn push(&mut self, step: &str, target: &str, result: Result<&str, Error>) {
        let (result, error) = match result {
            Ok(r) => (r.to_string(), None),
            Err(e) => ("failed".to_string(), Some(ErrorReport::from(&e))),
        };
        self.steps.push(Step {
            step: step.into(),
            target: target.into(),
            result,
            error,
        });
    }
}

/// 1. Trusted access for each of [`TRUSTED_SERVICES`].
async fn trusted_access(clients: &BootstrapClients<'_>, steps: &mut Steps, calls: &CallLog) {
    let enabled = match enabled_services(clients.organizations, calls).await {
        Err(e) => return steps.push("trustedAccess", "organizations", Err(e)),
        Ok(enabled) => enabled,
    };
    for service in TRUSTED_SERVICES {
        let result = if enabled.iter().any(|e| e.trim_end_matches('.') == *service) {
            Ok("unchanged")
        } else if steps.dry_run {
            Ok(steps.change)
        } else {
            calls.record(Side::Own, "organizations:EnableAWSServiceAccess", true);
            aws_call(
                "organizations",
                "EnableAWSServiceAccess",
                clients
                    .organizations
                    .enable_aws_service_access()
                    .service_principal(*service)
                    .send(),
            )
            .await
            .map(|_| "enabled")
        };
        steps.push("trustedAccess", service, result);
    }
}

/// 2. License Manager's organization integration (auto-accept of grants).
async fn organization_integration(
    clients: &BootstrapClients<'_>,
    steps: &mut Steps,
    calls: &CallLog,
) {
    calls.record(Side::Own, "license-manager:GetServiceSettings", false);
    let integration = aws_call(
        "license-manager",
        "GetServiceSettings",
        clients.license_manager.get_service_settings().send(),
    )
    .await;
    let result = match integration {
        Err(e) => Err(e),
        Ok(out)
            if out
                .organization_configuration()
                .is_some_and(|c| c.enable_integration()) =>
        {
            Ok("unchanged")
        }
        Ok(_) if steps.dry_run => Ok(steps.change),
        Ok(_) => {
            calls.record(Side::Own, "license-manager:UpdateServiceSettings", true);
            let config = aws_sdk_licensemanager::types::OrganizationConfiguration::builder()
                .enable_integration(true)
                .build();
            aws_call(
                "license-manager",
                "UpdateServiceSettings",
                clients
                    .license_manager
                    .update_service_settings()
                    .organization_configuration(config)
                    .send(),
            )
            .await
            .map(|_| "enabled")
        }
    };
    steps.push("organizationIntegration", "license-manager", result);
}

/// 3. The management account's service-linked roles ([`MANAGEMENT_SLR_SERVICES`]).
async fn management_slrs(clients: &BootstrapClients<'_>, steps: &mut Steps, calls: &CallLog) {
    let paths = match aws::service_role_paths_as(clients.iam, Side::Own, calls).await {
        Err(e) => return steps.push("serviceLinkedRole", "iam", Err(e)),
        Ok(paths) => paths,
    };
    for service in MANAGEMENT_SLR_SERVICES {
        let result = if paths.contains(&format!("/aws-service-role/{service}/")) {
            Ok("unchanged")
        } else if steps.dry_run {
            Ok(steps.change)
        } else {
            aws::create_slr_as(clients.iam, service, Side::Own, calls)
                .await
                .map(|created| if created { "created" } else { "unchanged" })
        };
        steps.push("serviceLinkedRole", service, result);
    }
}

/// 4. `admin` registered as License Manager's delegated administrator.
async fn delegated_admin(
    clients: &BootstrapClients<'_>,
    admin: &str,
    steps: &mut Steps,
    calls: &CallLog,
) {
    let principal = "license-manager.amazonaws.com";
    calls.record(
        Side::Own,
        "organizations:ListDelegatedAdministrators",
        false,
    );
    let listed = aws_call(
        "organizations",
        "ListDelegatedAdministrators",
        clients
            .organizations
            .list_delegated_administrators()
            .service_principal(principal)
            .send(),
    )
    .await;
    let result = match listed {
        Err(e) => Err(e),
        Ok(out)
            if out
                .delegated_administrators()
                .iter()
                .any(|d| d.id() == Some(admin)) =>
        {
            Ok("unchanged")
        }
        Ok(_) if steps.dry_run => Ok(steps.change),
        Ok(_) => register_admin(clients, admin, principal, calls).await,
    };
    steps.push("delegatedAdministrator", admin, result);
}

async fn register_admin(
    clients: &BootstrapClients<'_>,
    admin: &str,
    principal: &str,
    calls: &CallLog,
) -> Result<&'static str, Error> {
    calls.record(
        Side::Own,
        "organizations:RegisterDelegatedAdministrator",
        true,
    );
    match aws_call(
        "organizations",
        "RegisterDelegatedAdministrator",
        clients
            .organizations
            .register_delegated_administrator()
            .account_id(admin)
            .service_principal(principal)
            .send(),
    )
    .await
    {
        Ok(_) => Ok("registered"),
        Err(Error::Aws { code, .. }) if code == "AccountAlreadyRegisteredException" => {
            Ok("unchanged")
        }
        Err(e) => Err(e),
    }
}

async fn enabled_services(
    org: &aws_sdk_organizations::Client,
    calls: &CallLog,
) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        calls.record(
            Side::Own,
            "organizations:ListAWSServiceAccessForOrganization",
            false,
        );
        let page = aws_call(
            "organizations",
            "ListAWSServiceAccessForOrganization",
            org.list_aws_service_access_for_organization()
                .set_next_token(token)
                .send(),
        )
        .await?;
        out.extend(
            page.enabled_service_principals()
                .iter()
                .filter_map(|p| p.service_principal().map(str::to_string)),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests;
