//! Builds an organization in a [`World`]: moto Organizations (OUs, member accounts, the
//! Control Tower execution role in each), Marketplace licenses in the emulator, optionally the
//! License Manager organization link and organization-wide grants.

use aws_sdk_licensemanager::types::AllowedOperation;
use aws_sdk_organizations::types::{CreateAccountState, OrganizationFeatureSet, Tag};
use serde::Serialize;
use serde_json::json;

use crate::emulator::LicenseSeed;
use crate::world::{World, EXECUTION_ROLE};
use crate::{sdk_error, Error};

/// The service principals License Manager needs trusted access for (AWS License Manager User Guide, "Settings in License Manager").
pub const LICENSE_MANAGER_PRINCIPALS: [&str; 3] = [
    "license-manager.amazonaws.com",
    "license-manager.member-account.amazonaws.com",
    "license-management.marketplace.amazonaws.com",
];

/// What to build.
#[derive(Debug, Clone)]
pub struct OrgSpec {
    /// `true`: all features; `false`: consolidated billing only.
    pub all_features: bool,
    pub ous: Vec<OuSpec>,
    /// Marketplace licenses received by the management account.
    pub licenses: Vec<LicenseSpec>,
    /// Enable Organizations trusted access and License Manager's "Link AWS Organizations
    /// accounts" (grants to members are then auto-accepted).
    pub enable_integration: bool,
    /// SKUs of licenses to grant to the whole organization.
    pub org_wide_grants: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct OuSpec {
    pub name: String,
    pub accounts: Vec<AccountSpec>,
}

#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub name: String,
    pub tags: Vec<(String, String)>,
    /// Create License Manager's member service-linked roles in the account (a "healthy"
    /// member that can receive grants); without them its grants end in FAILED_WORKFLOW until
    /// something (the engine) creates them.
    pub service_linked_roles: bool,
}

impl AccountSpec {
    /// A member without License Manager's service-linked roles.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            tags: Vec::new(),
            service_linked_roles: false,
        }
    }
    /// The member already has License Manager's service-linked roles.
    pub fn with_service_linked_roles(mut self) -> Self {
        self.service_linked_roles = true;
        self
    }
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push((key.to_string(), value.to_string()));
        self
    }
}

#[derive(Debug, Clone)]
pub struct LicenseSpec {
    pub sku: String,
    pub name: String,
}

impl LicenseSpec {
    pub fn new(sku: &str, name: &str) -> Self {
        Self {
            sku: sku.to_string(),
            name: name.to_string(),
        }
    }
}

/// What was built.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeededOrg {
    pub management_account: String,
    pub org_id: String,
    pub root_id: String,
    pub ous: Vec<SeededOu>,
    pub accounts: Vec<SeededAccount>,
    pub licenses: Vec<SeededLicense>,
    /// ARNs of the organization-wide grants created.
    pub org_grants: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeededOu {
    pub name: String,
    pub id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeededAccount {
    pub name: String,
    pub id: String,
    pub email: String,
    pub ou_id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeededLicense {
    pub arn: String,
    pub sku: String,
    pub name: String,
}

impl SeededOrg {
    pub fn account(&self, name: &str) -> Option<&SeededAccount> {
        self.accounts.iter().find(|a| a.name == name)
    }
    pub fn ou(&self, name: &str) -> Option<&SeededOu> {
        self.ous.iter().find(|o| o.name == name)
    }
    pub fn license(&self, sku: &str) -> Option<&SeededLicense> {
        self.licenses.iter().find(|l| l.sku == sku)
    }
    /// `arn:aws:organizations::<management>:organization/<org id>`
    pub fn org_arn(&self) -> String {
        format!(
            "arn:aws:organizations::{}:organization/{}",
            self.management_account, self.org_id
        )
    }
    /// `arn:aws:organizations::<management>:ou/<org id>/<ou id>`
    pub fn ou_arn(&self, ou_id: &str) -> String {
        format!(
            "arn:aws:organizations::{}:ou/{}/{ou_id}",
            self.management_account, self.org_id
        )
    }
}

/// A small organization for demos and smoke tests: 2 OUs, 3 member accounts (with License
/// Manager's member service-linked roles, so they can receive organization-grant children),
/// 3 licenses, accounts linked (auto-accept on), no organization-wide grant.
pub fn demo_spec() -> OrgSpec {
    OrgSpec {
        all_features: true,
        ous: vec![
            OuSpec {
                name: "Workloads".to_string(),
                accounts: vec![
                    AccountSpec::new("workload-prod")
                        .tag("env", "prod")
                        .with_service_linked_roles(),
                    AccountSpec::new("workload-dev")
                        .tag("env", "dev")
                        .with_service_linked_roles(),
                ],
            },
            OuSpec {
                name: "Sandbox".to_string(),
                accounts: vec![AccountSpec::new("sandbox-1")
                    .tag("env", "sandbox")
                    .with_service_linked_roles()],
            },
        ],
        licenses: vec![
            LicenseSpec::new("prod-demo-analytics", "Demo Analytics Suite"),
            LicenseSpec::new("prod-demo-firewall", "Demo Next-Gen Firewall"),
            LicenseSpec::new("prod-demo-observability", "Demo Observability Platform"),
        ],
        enable_integration: true,
        org_wide_grants: Vec::new(),
    }
}

fn email_for(name: &str) -> String {
    let local: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{local}@example.com")
}

/// Builds `spec` in `world` (expects fresh moto state: one organization per moto).
pub async fn seed(world: &World, spec: &OrgSpec) -> Result<SeededOrg, Error> {
    let orgs = world.organizations();
    let feature_set = if spec.all_features {
        OrganizationFeatureSet::All
    } else {
        OrganizationFeatureSet::ConsolidatedBilling
    };
    let created = orgs
        .create_organization()
        .feature_set(feature_set)
        .send()
        .await
        .map_err(|e| sdk_error("organizations:CreateOrganization", e))?;
    let org = created
        .organization()
        .ok_or("CreateOrganization returned no organization")?;
    let org_id = org.id().ok_or("organization without id")?.to_string();
    let management = org
        .master_account_id()
        .ok_or("organization without management account")?
        .to_string();
    let roots = orgs
        .list_roots()
        .send()
        .await
        .map_err(|e| sdk_error("organizations:ListRoots", e))?;
    let root_id = roots
        .roots()
        .first()
        .and_then(|r| r.id())
        .ok_or("organization without root")?
        .to_string();

    let mut seeded = SeededOrg {
        management_account: management.clone(),
        org_id,
        root_id: root_id.clone(),
        ous: Vec::new(),
        accounts: Vec::new(),
        licenses: Vec::new(),
        org_grants: Vec::new(),
    };
    for ou in &spec.ous {
        let created = orgs
            .create_organizational_unit()
            .parent_id(&root_id)
            .name(&ou.name)
            .send()
            .await
            .map_err(|e| sdk_error("organizations:CreateOrganizationalUnit", e))?;
        let ou_id = created
            .organizational_unit()
            .and_then(|o| o.id())
            .ok_or("CreateOrganizationalUnit returned no id")?
            .to_string();
        seeded.ous.push(SeededOu {
            name: ou.name.clone(),
            id: ou_id.clone(),
        });
        for account in &ou.accounts {
            let created = create_member(world, &seeded, account, &ou_id).await?;
            seeded.accounts.push(created);
        }
    }

    let control = world.control();
    for license in &spec.licenses {
        let shape = control
            .seed_license(&LicenseSeed::marketplace(
                &management,
                &license.sku,
                &license.name,
            ))
            .await?;
        seeded.licenses.push(SeededLicense {
            arn: shape["LicenseArn"]
                .as_str()
                .ok_or("seeded license without LicenseArn")?
                .to_string(),
            sku: license.sku.clone(),
            name: license.name.clone(),
        });
    }

    let lm = world.license_manager();
    if spec.enable_integration {
        for principal in LICENSE_MANAGER_PRINCIPALS {
            let enabled = orgs
                .enable_aws_service_access()
                .service_principal(principal)
                .send()
                .await;
            match enabled {
                Ok(_) => {}
                // moto 5.x lists this principal with a trailing dot and refuses the real name.
                Err(e)
                    if principal == "license-manager.member-account.amazonaws.com"
                        && aws_sdk_organizations::error::ProvideErrorMetadata::code(&e)
                            == Some("InvalidInputException") => {}
                Err(e) => return Err(sdk_error("organizations:EnableAWSServiceAccess", e)),
            }
        }
        lm.update_service_settings()
            .organization_configuration(
                aws_sdk_licensemanager::types::OrganizationConfiguration::builder()
                    .enable_integration(true)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error("license-manager:UpdateServiceSettings", e))?;
    }
    for sku in &spec.org_wide_grants {
        let license = seeded
            .license(sku)
            .ok_or_else(|| format!("org-wide grant for unknown SKU {sku}"))?
            .arn
            .clone();
        let grant = lm
            .create_grant()
            .client_token(format!("seed-org-grant-{sku}"))
            .grant_name(format!("org-wide {sku}"))
            .license_arn(license)
            .principals(seeded.org_arn())
            .home_region("us-east-1")
            .allowed_operations(AllowedOperation::CheckoutLicense)
            .allowed_operations(AllowedOperation::CheckInLicense)
            .allowed_operations(AllowedOperation::ExtendConsumptionLicense)
            .allowed_operations(AllowedOperation::ListPurchasedLicenses)
            .send()
            .await
            .map_err(|e| sdk_error("license-manager:CreateGrant", e))?;
        seeded.org_grants.push(
            grant
                .grant_arn()
                .ok_or("CreateGrant without ARN")?
                .to_string(),
        );
    }
    Ok(seeded)
}

/// Creates License Manager's member service-linked roles in `account` (from inside it, through
/// `OrganizationAccountAccessRole`); roles already there are fine.
pub async fn create_member_slrs(world: &World, account: &str) -> Result<(), Error> {
    let inside = world
        .assume_role(account, "OrganizationAccountAccessRole")
        .await?;
    let iam = crate::clients::iam_from(&inside, world.moto_url());
    for (service, _) in crate::emulator::MEMBER_SLRS {
        match iam
            .create_service_linked_role()
            .aws_service_name(service)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if aws_sdk_iam::error::ProvideErrorMetadata::code(&e)
                    == Some("EntityAlreadyExists") => {}
            Err(e) => return Err(sdk_error("iam:CreateServiceLinkedRole", e)),
        }
    }
    Ok(())
}

/// Adds a member account to an organization built by [`seed`] ("an account created later",
/// without License Manager's service-linked roles, as Account Factory leaves it).
pub async fn add_account(
    world: &World,
    org: &mut SeededOrg,
    name: &str,
    ou_id: &str,
) -> Result<SeededAccount, Error> {
    let account = create_member(world, org, &AccountSpec::new(name), ou_id).await?;
    org.accounts.push(account.clone());
    Ok(account)
}

async fn create_member(
    world: &World,
    org: &SeededOrg,
    spec: &AccountSpec,
    ou_id: &str,
) -> Result<SeededAccount, Error> {
    let orgs = world.organizations();
    let email = email_for(&spec.name);
    let tags = spec
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("account tag: {e}"))?;
    let created = orgs
        .create_account()
        .account_name(&spec.name)
        .email(&email)
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await
        .map_err(|e| sdk_error("organizations:CreateAccount", e))?;
    let status = created
        .create_account_status()
        .ok_or("CreateAccount returned no status")?;
    if status.state() != Some(&CreateAccountState::Succeeded) {
        return Err(format!(
            "CreateAccount for {} did not succeed: {status:?}",
            spec.name
        )
        .into());
    }
    let id = status
        .account_id()
        .ok_or("CreateAccount returned no account id")?
        .to_string();
    orgs.move_account()
        .account_id(&id)
        .source_parent_id(&org.root_id)
        .destination_parent_id(ou_id)
        .send()
        .await
        .map_err(|e| sdk_error("organizations:MoveAccount", e))?;

    // Control Tower's execution role, created from inside the account.
    let inside = world
        .assume_role(&id, "OrganizationAccountAccessRole")
        .await?;
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "AWS": format!("arn:aws:iam::{}:root", org.management_account) },
            "Action": "sts:AssumeRole"
        }]
    });
    crate::clients::iam_from(&inside, world.moto_url())
        .create_role()
        .role_name(EXECUTION_ROLE)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .map_err(|e| sdk_error("iam:CreateRole", e))?;
    if spec.service_linked_roles {
        create_member_slrs(world, &id).await?;
    }
    Ok(SeededAccount {
        name: spec.name.clone(),
        id,
        email,
        ou_id: ou_id.to_string(),
    })
}
