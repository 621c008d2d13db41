//! AWS License Manager, the grant part: received licenses, grants and their state machine,
//! service settings. Rules follow the AWS License Manager User Guide and API reference (each
//! with its source in docs/development.md); every shape follows aws-sdk-licensemanager.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::common::{
    epoch_seconds, eventbridge_time, iso8601_millis, paginate, ApiError, IdGen, Input, Service,
};
use super::org::{OrgInfo, OrgView};
use super::{
    AccountGrantParentArn, ChangeEventsTo, ChildParentArn, GrantChangeDetail, GranteeOverride,
    OrgReadForDelegatedAdmin, PendingActivationAnswer, Switches,
};

/// The account AWS Marketplace licenses are issued from.
pub const MARKETPLACE_ACCOUNT: &str = "294406891311";
/// The error message AWS gives when a second license for a product would become active.
pub const ONE_ACTIVE_LICENSE_MESSAGE: &str =
    "This account already has an active license for the same product from another subscription";
/// Valid `AllowedOperations` values (aws-sdk-licensemanager `AllowedOperation`).
pub const ALLOWED_OPERATIONS: [&str; 8] = [
    "CreateGrant",
    "CheckoutLicense",
    "CheckoutBorrowLicense",
    "CheckInLicense",
    "ExtendConsumptionLicense",
    "ListPurchasedLicenses",
    "CreateToken",
    "ListReceivedLicenses",
];

const PENDING_WORKFLOW: &str = "PENDING_WORKFLOW";
const PENDING_ACCEPT: &str = "PENDING_ACCEPT";
const REJECTED: &str = "REJECTED";
const ACTIVE: &str = "ACTIVE";
const DELETED: &str = "DELETED";
const DISABLED: &str = "DISABLED";
const WORKFLOW_COMPLETED: &str = "WORKFLOW_COMPLETED";
const FAILED_WORKFLOW: &str = "FAILED_WORKFLOW";
const DISTRIBUTED_GRANTS_ONLY: &str = "DISTRIBUTED_GRANTS_ONLY";
const ALL_GRANTS_PERMITTED_BY_ISSUER: &str = "ALL_GRANTS_PERMITTED_BY_ISSUER";

/// A Marketplace license received by an account (`POST /_emulator/licenses`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LicenseSeed {
    /// The account that bought the product (the license's beneficiary).
    pub account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_arn: Option<String>,
    pub product_sku: String,
    pub product_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_name: Option<String>,
    #[serde(default = "default_issuer")]
    pub issuer_name: String,
    #[serde(default = "default_status")]
    pub status: String,
    #[serde(default = "default_region")]
    pub home_region: String,
    /// AWS-shaped `Entitlement` objects; one `Access` entitlement when empty.
    #[serde(default)]
    pub entitlements: Vec<Value>,
    /// AWS-shaped `Metadata` objects (`{"Name":…,"Value":…}`).
    #[serde(default)]
    pub license_metadata: Vec<Value>,
    /// The operations the beneficiary holds (`ReceivedMetadata.AllowedOperations`); all 8 when
    /// absent. A grant never passes on more than its grantor holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_operations: Option<Vec<String>>,
}

fn default_issuer() -> String {
    "AWS/Marketplace".to_string()
}
fn default_status() -> String {
    "AVAILABLE".to_string()
}
fn default_region() -> String {
    "us-east-1".to_string()
}

impl LicenseSeed {
    /// A Marketplace license with the defaults (AVAILABLE, AWS/Marketplace, us-east-1).
    pub fn marketplace(account: &str, product_sku: &str, product_name: &str) -> Self {
        Self {
            account: account.to_string(),
            license_arn: None,
            product_sku: product_sku.to_string(),
            product_name: product_name.to_string(),
            license_name: None,
            issuer_name: default_issuer(),
            status: default_status(),
            home_region: default_region(),
            entitlements: Vec::new(),
            license_metadata: Vec::new(),
            allowed_operations: None,
        }
    }

    /// The same license with only these operations held by the beneficiary.
    pub fn with_allowed_operations(mut self, operations: &[&str]) -> Self {
        self.allowed_operations = Some(operations.iter().map(|s| s.to_string()).collect());
        self
    }
}

/// The member-account service-linked roles License Manager needs in a grant's recipient
/// (AWS License Manager User Guide, "Using service-linked roles for AWS License Manager"):
/// service name and AWS's role name.
pub const MEMBER_SLRS: [(&str, &str); 3] = [
    (
        "license-manager.amazonaws.com",
        "AWSServiceRoleForAWSLicenseManagerRole",
    ),
    (
        "license-manager.member-account.amazonaws.com",
        "AWSServiceRoleForAWSLicenseManagerMemberAccountRole",
    ),
    (
        "license-management.marketplace.amazonaws.com",
        "AWSServiceRoleForMarketplaceLicenseManagement",
    ),
];

/// The `StatusReason` of a child disabled because its account left the organization (wording
/// invented).
pub const LEFT_ORGANIZATION_MESSAGE: &str =
    "The account is no longer a member of the organization or organizational unit";

/// What the emulator knows about recipients' service-linked roles, for one request.
#[derive(Debug, Clone, Default)]
pub struct SlrView {
    /// Accounts nothing is known about have every role (no IAM to read, e.g. without moto).
    pub assume_present: bool,
    /// Account → the member SLR services it lacks (empty: it has them all).
    pub missing: HashMap<String, Vec<String>>,
}

impl SlrView {
    /// The services `account` lacks, or `None` when unknown (must be read first).
    fn missing_for(&self, account: &str) -> Option<Vec<String>> {
        match self.missing.get(account) {
            Some(m) => Some(m.clone()),
            None if self.assume_present => Some(Vec::new()),
            None => None,
        }
    }
}

/// The member SLR services absent from a list of IAM role paths.
pub fn missing_slrs(paths: &BTreeSet<String>) -> Vec<String> {
    MEMBER_SLRS
        .iter()
        .filter(|(service, _)| !paths.contains(&format!("/aws-service-role/{service}/")))
        .map(|(service, _)| service.to_string())
        .collect()
}

fn failed_workflow_reason(account: &str, missing: &[String]) -> String {
    let roles: Vec<String> = missing
        .iter()
        .map(|service| {
            let role = MEMBER_SLRS
                .iter()
                .find(|(s, _)| s == service)
                .map(|(_, r)| *r)
                .unwrap_or("service-linked role");
            format!("{role} ({service})")
        })
        .collect();
    format!(
        "The grant workflow failed: account {account} is missing the service-linked role(s) {}",
        roles.join(", ")
    )
}

/// Something License Manager changed, for the EventBridge change events the emulator logs
/// (`GET /_emulator/events`); taken with [`LicenseManager::take_changes`].
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A grant's status or version changed (a `Grant Change`): the grant as it is now.
    Grant {
        grant_arn: String,
        /// The grantor (issuer) account.
        grantor: String,
        /// `GranteePrincipalArn`: an account root, an organization or an OU.
        grantee: String,
        /// The new `GrantStatus`.
        status: String,
        version: u64,
        license_arn: String,
        /// The `ParentArn` the grant shows, if any.
        parent_arn: Option<String>,
        /// The grant's home region (grants live there only).
        region: String,
        /// Emulator clock, milliseconds since the epoch, when the change took effect.
        at_ms: u64,
    },
    /// A license was added to the world (a `License Change`).
    License {
        license_arn: String,
        /// The account holding it (its beneficiary).
        holder: String,
        status: String,
        /// The license's home region.
        region: String,
        /// Emulator clock, milliseconds since the epoch.
        at_ms: u64,
    },
}

/// The `source` of License Manager's EventBridge events.
pub const EVENT_SOURCE: &str = "aws.license-manager";
/// The `detail-type` of the event License Manager sends when a grant changes.
pub const GRANT_CHANGE: &str = "Grant Change";
/// The `detail-type` of the event License Manager sends when a license changes.
pub const LICENSE_CHANGE: &str = "License Change";

impl Change {
    /// A `Grant Change`'s new grant status.
    pub fn grant_status(&self) -> Option<&str> {
        match self {
            Change::Grant { status, .. } => Some(status),
            Change::License { .. } => None,
        }
    }

    /// When the change took effect (emulator clock, milliseconds since the epoch).
    pub fn at_ms(&self) -> u64 {
        match self {
            Change::Grant { at_ms, .. } | Change::License { at_ms, .. } => *at_ms,
        }
    }

    /// The EventBridge events this change puts on the buses that receive it, one per bus
    /// (`changeEventsTo` for a `Grant Change`, the holder's for a `License Change`), with
    /// what `grantChangeDetail` says the event names.
    pub fn envelopes(&self, switches: &Switches, ids: &mut IdGen) -> Vec<Value> {
        let detail_level = switches.grant_change_detail;
        let (detail_type, region, at_ms, buses, resources, detail) = match self {
            Change::Grant {
                grant_arn,
                grantor,
                grantee,
                status,
                version,
                license_arn,
                parent_arn,
                region,
                at_ms,
            } => {
                // An organization/OU grant has no grantee account: its grantor's bus gets it.
                let grantee_account = account_of(grantee);
                let mut buses: Vec<&str> = match switches.change_events_to {
                    ChangeEventsTo::Grantee => vec![grantee_account.unwrap_or(grantor)],
                    ChangeEventsTo::Grantor => vec![grantor],
                    ChangeEventsTo::Both => std::iter::once(grantor.as_str())
                        .chain(grantee_account)
                        .collect(),
                };
                buses.dedup();
                let (resources, detail) = match detail_level {
                    GrantChangeDetail::None => (json!([]), json!({})),
                    GrantChangeDetail::Grant => {
                        (json!([grant_arn]), json!({ "grantArn": grant_arn }))
                    }
                    GrantChangeDetail::Grantee => {
                        let mut detail = json!({
                            "grantArn": grant_arn,
                            "granteePrincipal": grantee,
                            "status": status,
                            "version": version.to_string(),
                            "licenseArn": license_arn,
                        });
                        if let Some(parent) = parent_arn {
                            detail["parentArn"] = json!(parent);
                        }
                        (json!([grant_arn]), detail)
                    }
                };
                (GRANT_CHANGE, region, *at_ms, buses, resources, detail)
            }
            Change::License {
                license_arn,
                holder,
                status,
                region,
                at_ms,
            } => {
                let (resources, detail) = match detail_level {
                    GrantChangeDetail::None => (json!([]), json!({})),
                    GrantChangeDetail::Grant => {
                        (json!([license_arn]), json!({ "licenseArn": license_arn }))
                    }
                    GrantChangeDetail::Grantee => (
                        json!([license_arn]),
                        json!({
                            "licenseArn": license_arn,
                            "status": status,
                            "beneficiary": holder,
                        }),
                    ),
                };
                let buses = vec![holder.as_str()];
                (LICENSE_CHANGE, region, *at_ms, buses, resources, detail)
            }
        };
        buses
            .into_iter()
            .map(|bus| {
                json!({
                    "version": "0",
                    "id": ids.request_id(),
                    "detail-type": detail_type,
                    "source": EVENT_SOURCE,
                    "account": bus,
                    "time": eventbridge_time(at_ms),
                    "region": region,
                    "resources": resources,
                    "detail": detail,
                })
            })
            .collect()
    }
}

/// The emulator-clock epoch milliseconds of `at`, given that `now` is `epoch_ms` (a lazily
/// applied change took effect when it was due, not when a request noticed it).
fn epoch_ms_at(now: Instant, epoch_ms: u64, at: Instant) -> u64 {
    let ago = u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX);
    epoch_ms.saturating_sub(ago)
}

/// An account-level grant an organization/OU grant owes a member, not handed out yet.
#[derive(Debug, Clone)]
struct PendingChild {
    parent: String,
    member: String,
    ready_at: Instant,
}

#[derive(Debug, Clone)]
struct LicenseRec {
    arn: String,
    beneficiary: String,
    sku: String,
    issuer_name: String,
    fingerprint: String,
    status: String,
    home_region: String,
    /// What the beneficiary holds (`ReceivedMetadata.AllowedOperations`).
    operations: Vec<String>,
    /// The AWS `License` shape.
    shape: Value,
}

#[derive(Debug, Clone, PartialEq)]
enum Principal {
    Account(String),
    Organization { org: String },
    OrganizationalUnit { org: String, ou: String },
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

/// Parses the three principal forms License Manager accepts; the management account in an
/// organization ARN is returned separately.
fn parse_principal(arn: &str) -> Option<(Principal, Option<String>)> {
    if let Some(rest) = arn.strip_prefix("arn:aws:iam::") {
        let account = rest.strip_suffix(":root")?;
        return is_account_id(account).then(|| (Principal::Account(account.to_string()), None));
    }
    let rest = arn.strip_prefix("arn:aws:organizations::")?;
    let (management, resource) = rest.split_once(':')?;
    if !is_account_id(management) {
        return None;
    }
    let management = Some(management.to_string());
    if let Some(org) = resource.strip_prefix("organization/") {
        return is_id(org, "o-").then(|| {
            (
                Principal::Organization {
                    org: org.to_string(),
                },
                management,
            )
        });
    }
    let (org, ou) = resource.strip_prefix("ou/")?.split_once('/')?;
    (is_id(org, "o-") && is_id(ou, "ou-")).then(|| {
        (
            Principal::OrganizationalUnit {
                org: org.to_string(),
                ou: ou.to_string(),
            },
            management,
        )
    })
}

fn parent_behavior(parent: &GrantRec) -> Option<String> {
    parent
        .options
        .as_ref()
        .and_then(|o| o["ActivationOverrideBehavior"].as_str())
        .map(str::to_string)
}

fn account_of(principal_arn: &str) -> Option<&str> {
    principal_arn
        .strip_prefix("arn:aws:iam::")
        .and_then(|r| r.strip_suffix(":root"))
}

#[derive(Debug, Clone)]
struct GrantRec {
    arn: String,
    name: String,
    parent_arn: String,
    license_arn: String,
    grantor: String,
    grantee: String,
    home_region: String,
    status: String,
    status_reason: Option<String>,
    version: u64,
    operations: Vec<String>,
    options: Option<Value>,
    grant_type: Option<String>,
    /// When the pending workflow finishes.
    ready_at: Instant,
    /// For a child of an organization/OU grant: that grant's ARN.
    parent_grant: Option<String>,
    created_ms: u64,
    /// A requested activation still processing: when it applies, and its override behavior.
    activation: Option<(Instant, Option<String>)>,
    /// Organization/OU grant: bulk-activated (its children are activated, joiners' too).
    bulk_activated: bool,
    /// Organization/OU grant: current members got their children.
    distributed: bool,
    /// A deleted child that had failed its workflow: its member gets a new child.
    redistribute: bool,
    /// The override behavior the grantor set for this grant (directly or by bulk activation).
    grantor_behavior: Option<String>,
}

impl GrantRec {
    fn grantee_account(&self) -> Option<&str> {
        account_of(&self.grantee)
    }
    /// Whether the grant shows in `account`'s received lists: it must have been distributed
    /// (out of PENDING_WORKFLOW) to that account.
    fn received_by(&self, account: &str) -> bool {
        self.grantee_account() == Some(account) && self.status != PENDING_WORKFLOW
    }
    fn org_level(&self) -> bool {
        self.grantee.starts_with("arn:aws:organizations::")
    }
    fn shape(&self) -> Value {
        let mut v = json!({
            "GrantArn": self.arn,
            "GrantName": self.name,
            "LicenseArn": self.license_arn,
            "GranteePrincipalArn": self.grantee,
            "HomeRegion": self.home_region,
            "GrantStatus": self.status,
            "Version": self.version.to_string(),
            "GrantedOperations": self.operations,
        });
        // An empty parent is the `childParentArn: absent` reading: no ParentArn at all.
        if !self.parent_arn.is_empty() {
            v["ParentArn"] = json!(self.parent_arn);
        }
        if let Some(reason) = &self.status_reason {
            v["StatusReason"] = json!(reason);
        }
        if let Some(options) = &self.options {
            v["Options"] = options.clone();
        }
        if let Some(grant_type) = &self.grant_type {
            v["GrantType"] = json!(grant_type);
        }
        v
    }
    fn summary(&self) -> Value {
        json!({ "GrantArn": self.arn, "Status": self.status, "Version": self.version.to_string() })
    }
    /// The grant as it is now, as a [`Change::Grant`] that took effect at `at_ms`.
    fn change(&self, at_ms: u64) -> Change {
        Change::Grant {
            grant_arn: self.arn.clone(),
            grantor: self.grantor.clone(),
            grantee: self.grantee.clone(),
            status: self.status.clone(),
            version: self.version,
            license_arn: self.license_arn.clone(),
            parent_arn: (!self.parent_arn.is_empty()).then(|| self.parent_arn.clone()),
            region: self.home_region.clone(),
            at_ms,
        }
    }
}

/// Everything one License Manager call may use besides its input.
pub struct Ctx<'a> {
    pub caller: &'a str,
    pub org: &'a OrgView,
    pub slrs: &'a SlrView,
    pub switches: &'a Switches,
    pub now: Instant,
    pub epoch_ms: u64,
    pub ids: &'a mut IdGen,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Grantor,
    Grantee,
}

/// License Manager state.
#[derive(Debug, Default)]
pub struct LicenseManager {
    licenses: Vec<LicenseRec>,
    grants: Vec<GrantRec>,
    integration: BTreeMap<String, bool>,
    create_tokens: HashMap<(String, String), (Value, String)>,
    version_tokens: HashMap<(String, String), (Value, Value)>,
    pending_children: Vec<PendingChild>,
    /// Changes not taken yet by [`LicenseManager::take_changes`].
    changes: Vec<Change>,
}

fn status_rank(status: &str) -> u8 {
    match status {
        ACTIVE => 0,
        DISABLED => 1,
        PENDING_ACCEPT => 2,
        PENDING_WORKFLOW => 3,
        REJECTED => 5,
        DELETED => 6,
        _ => 4,
    }
}

fn validate_operations(ops: &[&str]) -> Result<Vec<String>, ApiError> {
    if ops.is_empty() || ops.len() > ALLOWED_OPERATIONS.len() {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value at 'allowedOperations' failed to satisfy \
             constraint: Member must have length between 1 and {}",
            ALLOWED_OPERATIONS.len()
        )));
    }
    if let Some(bad) = ops.iter().find(|op| !ALLOWED_OPERATIONS.contains(op)) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '[{bad}]' at 'allowedOperations' failed to \
             satisfy constraint: Member must satisfy enum value set: [{}]",
            ALLOWED_OPERATIONS.join(", ")
        )));
    }
    Ok(ops.iter().map(|s| s.to_string()).collect())
}

/// Parses `Filters`: names must be in `allowed`; with `single`, exactly one value each.
fn parse_filters(
    input: &Input<'_>,
    allowed: &[&str],
    single: bool,
) -> Result<Vec<(String, Vec<String>)>, ApiError> {
    let mut out = Vec::new();
    for filter in input.list_opt("Filters")?.into_iter().flatten() {
        let f = Input::new(filter, Service::LicenseManager);
        let name = f.str_req("Name")?;
        if !allowed.contains(&name) {
            return Err(ApiError::invalid_parameter(format!(
                "Filter name {name} is not supported. Supported filter names: {}",
                allowed.join(", ")
            )));
        }
        let values: Vec<String> = f
            .string_list_opt("Values")?
            .unwrap_or_default()
            .into_iter()
            .map(str::to_string)
            .collect();
        if values.is_empty() || (single && values.len() != 1) {
            return Err(ApiError::invalid_parameter(format!(
                "Filter {name} requires exactly one value"
            )));
        }
        out.push((name.to_string(), values));
    }
    Ok(out)
}

fn check_arn(arn: &str, kind: &str) -> Result<(), ApiError> {
    if arn.starts_with("arn:aws:license-manager::") && arn.contains(&format!(":{kind}:")) {
        Ok(())
    } else {
        Err(ApiError::validation(format!("Invalid {kind} ARN: {arn}")))
    }
}

impl LicenseManager {
    /// Seeds a received Marketplace license and returns its AWS `License` shape.
    pub fn seed_license(&mut self, seed: &LicenseSeed, ids: &mut IdGen, epoch_ms: u64) -> Value {
        let arn = seed.license_arn.clone().unwrap_or_else(|| {
            format!(
                "arn:aws:license-manager::{MARKETPLACE_ACCOUNT}:license:l-{}",
                ids.hex(32)
            )
        });
        let fingerprint = format!(
            "aws:{MARKETPLACE_ACCOUNT}:{}:issuer-fingerprint",
            seed.issuer_name
        );
        let entitlements = if seed.entitlements.is_empty() {
            vec![
                json!({ "Name": "Access", "Value": "Enabled", "Unit": "None", "AllowCheckIn": false }),
            ]
        } else {
            seed.entitlements.clone()
        };
        let year_ms = 365 * 24 * 3600 * 1000;
        let shape = json!({
            "LicenseArn": arn,
            "LicenseName": seed.license_name.clone().unwrap_or_else(|| seed.product_name.clone()),
            "ProductName": seed.product_name,
            "ProductSKU": seed.product_sku,
            "Issuer": { "Name": seed.issuer_name, "KeyFingerprint": fingerprint },
            "HomeRegion": seed.home_region,
            "Status": seed.status,
            "Validity": {
                "Begin": iso8601_millis(epoch_ms),
                "End": iso8601_millis(epoch_ms + year_ms),
            },
            "Beneficiary": seed.account,
            "Entitlements": entitlements,
            "ConsumptionConfiguration": {
                "RenewType": "None",
                "ProvisionalConfiguration": { "MaxTimeToLiveInMinutes": 60 },
            },
            "LicenseMetadata": seed.license_metadata,
            "CreateTime": (epoch_ms / 1000).to_string(),
            "Version": "1",
        });
        let record = LicenseRec {
            arn: arn.clone(),
            beneficiary: seed.account.clone(),
            sku: seed.product_sku.clone(),
            issuer_name: seed.issuer_name.clone(),
            fingerprint,
            status: seed.status.clone(),
            home_region: seed.home_region.clone(),
            operations: seed
                .allowed_operations
                .clone()
                .unwrap_or_else(|| ALLOWED_OPERATIONS.iter().map(|s| s.to_string()).collect()),
            shape: shape.clone(),
        };
        self.licenses.retain(|l| l.arn != arn);
        self.licenses.push(record);
        self.changes.push(Change::License {
            license_arn: arn,
            holder: seed.account.clone(),
            status: seed.status.clone(),
            region: seed.home_region.clone(),
            at_ms: epoch_ms,
        });
        shape
    }

    /// The changes made since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// All state, for `GET /_emulator/state`.
    pub fn dump(&self) -> Value {
        json!({
            "licenses": self.licenses.iter().map(|l| {
                let mut v = l.shape.clone();
                v["Account"] = json!(l.beneficiary);
                v
            }).collect::<Vec<_>>(),
            "grants": self.grants.iter().map(|g| {
                let mut v = g.shape();
                v["GrantorAccountId"] = json!(g.grantor);
                v["ParentGrantArn"] = json!(g.parent_grant);
                v["CreatedAt"] = epoch_seconds(g.created_ms);
                v["ActivationPending"] = json!(g.activation.is_some());
                v["BulkActivated"] = json!(g.bulk_activated);
                v
            }).collect::<Vec<_>>(),
            "pendingChildren": self.pending_children.iter().map(|p| {
                json!({ "ParentGrantArn": p.parent, "Account": p.member })
            }).collect::<Vec<_>>(),
            "serviceSettings": self.integration.iter().map(|(account, enabled)| {
                (account.clone(), json!({ "OrganizationConfiguration": { "EnableIntegration": enabled } }))
            }).collect::<serde_json::Map<_, _>>(),
        })
    }

    fn license(&self, arn: &str) -> Option<&LicenseRec> {
        self.licenses.iter().find(|l| l.arn == arn)
    }

    /// Which OUs a call needs membership for, or `None` when it needs no organization data.
    pub fn org_need(&self, op: &str, body: &Value, now: Instant) -> Option<BTreeSet<String>> {
        let mut need = matches!(
            op,
            "UpdateServiceSettings" | "ListReceivedGrantsForOrganization"
        );
        if self.pending_children.iter().any(|p| now >= p.ready_at) {
            need = true;
        }
        let mut ous = BTreeSet::new();
        for g in &self.grants {
            if g.status == PENDING_WORKFLOW && now >= g.ready_at {
                need = true;
            }
            if g.org_level() && g.parent_grant.is_none() {
                if g.status == WORKFLOW_COMPLETED {
                    need = true;
                }
                if let Some((Principal::OrganizationalUnit { ou, .. }, _)) =
                    parse_principal(&g.grantee)
                {
                    ous.insert(ou);
                }
            }
        }
        if op == "CreateGrant" {
            let principals = body.get("Principals").and_then(Value::as_array);
            for p in principals.into_iter().flatten().filter_map(Value::as_str) {
                match parse_principal(p) {
                    Some((Principal::Organization { .. }, _)) => need = true,
                    Some((Principal::OrganizationalUnit { ou, .. }, _)) => {
                        need = true;
                        ous.insert(ou);
                    }
                    _ => {}
                }
            }
        }
        need.then_some(ous)
    }

    /// Accounts whose membership the next settlement asks about (recipients of account-level
    /// grants whose workflow is due): a cached organization that lacks one is re-read.
    pub fn accounts_needed(&self, now: Instant) -> BTreeSet<String> {
        self.grants
            .iter()
            .filter(|g| g.status == PENDING_WORKFLOW && now >= g.ready_at)
            .filter_map(|g| g.grantee_account().map(str::to_string))
            .collect()
    }

    /// `None` when the recipient's roles are unknown yet (then `account` is added to `wanted`);
    /// else `Err(reason)` when the workflow fails for lack of service-linked roles.
    fn recipient_check(
        ctx: &Ctx<'_>,
        account: &str,
        wanted: &mut BTreeSet<String>,
    ) -> Option<Result<(), String>> {
        if !ctx.switches.require_recipient_slrs {
            return Some(Ok(()));
        }
        match ctx.slrs.missing_for(account) {
            Some(missing) if missing.is_empty() => Some(Ok(())),
            Some(missing) => Some(Err(failed_workflow_reason(account, &missing))),
            None => {
                wanted.insert(account.to_string());
                None
            }
        }
    }

    /// Moves grants along the asynchronous workflows: due PENDING_WORKFLOW grants settle into
    /// PENDING_ACCEPT, DISABLED (auto-accepted), FAILED_WORKFLOW (recipient without its
    /// service-linked roles) or WORKFLOW_COMPLETED (organization grants); members of an
    /// organization/OU grant's target get their children (at once when the parent completes,
    /// `pending_workflow_ms` after the emulator first notices a later member); members that
    /// left have their child disabled; due activations apply.
    ///
    /// Returns the accounts whose service-linked roles must be read before the grants waiting
    /// for them can settle (the caller reads them and settles again).
    pub fn settle(&mut self, ctx: &mut Ctx<'_>) -> BTreeSet<String> {
        let mut wanted = BTreeSet::new();
        self.apply_due_activations(ctx.now, ctx.epoch_ms);
        let OrgView::Known(org) = ctx.org else {
            return wanted;
        };
        let org = org.as_ref();
        for i in 0..self.grants.len() {
            let g = &self.grants[i];
            if g.status != PENDING_WORKFLOW || ctx.now < g.ready_at {
                continue;
            }
            let at_ms = epoch_ms_at(ctx.now, ctx.epoch_ms, g.ready_at);
            if g.org_level() {
                self.grants[i].status = WORKFLOW_COMPLETED.to_string();
                self.changes.push(self.grants[i].change(at_ms));
                continue;
            }
            let account = g.grantee_account().unwrap_or_default().to_string();
            let auto = self.auto_accepts(org, &g.grantor, Some(&account), ctx.switches);
            let Some(check) = Self::recipient_check(ctx, &account, &mut wanted) else {
                continue;
            };
            let g = &mut self.grants[i];
            match check {
                Ok(()) => g.status = if auto { DISABLED } else { PENDING_ACCEPT }.to_string(),
                Err(reason) => {
                    g.status = FAILED_WORKFLOW.to_string();
                    g.status_reason = Some(reason);
                }
            }
            self.changes.push(g.change(at_ms));
        }
        let Some(org) = org else {
            return wanted;
        };
        self.distribute(ctx, org);
        self.materialize_children(ctx, &mut wanted);
        self.apply_due_activations(ctx.now, ctx.epoch_ms);
        wanted
    }

    /// Owed children for members of completed organization/OU grants; children of members
    /// that left are disabled.
    fn distribute(&mut self, ctx: &Ctx<'_>, org: &OrgInfo) {
        let parents: Vec<(String, String, String, bool)> = self
            .grants
            .iter()
            .filter(|g| g.org_level() && g.status == WORKFLOW_COMPLETED)
            .map(|g| {
                (
                    g.arn.clone(),
                    g.grantee.clone(),
                    g.grantor.clone(),
                    g.distributed,
                )
            })
            .collect();
        // Who holds a child, and who is owed one, indexed once: at 10,000 members a scan of
        // every grant per member made each request to the emulator cost seconds.
        let mut held: HashSet<(String, String)> = self
            .grants
            .iter()
            .filter(|c| !c.redistribute)
            .filter_map(|c| Some((c.parent_grant.clone()?, c.grantee_account()?.to_string())))
            .collect();
        held.extend(
            self.pending_children
                .iter()
                .map(|p| (p.parent.clone(), p.member.clone())),
        );
        for (parent, grantee, grantor, distributed) in parents {
            let members = match parse_principal(&grantee) {
                Some((Principal::Organization { org: id }, _)) if id == org.id => &org.accounts,
                Some((Principal::OrganizationalUnit { ou, .. }, _)) => {
                    let reach = if ctx.switches.ou_grants_reach_nested_ous {
                        &org.ou_members
                    } else {
                        &org.ou_direct_members
                    };
                    match reach.get(&ou) {
                        Some(members) => members,
                        None => continue,
                    }
                }
                _ => continue,
            };
            let member_set: HashSet<&str> = members.iter().map(String::as_str).collect();
            let delay = if distributed {
                Duration::from_millis(ctx.switches.pending_workflow_ms)
            } else {
                Duration::ZERO
            };
            for member in members.iter().filter(|m| **m != grantor) {
                if held.insert((parent.clone(), member.clone())) {
                    self.pending_children.push(PendingChild {
                        parent: parent.clone(),
                        member: member.clone(),
                        ready_at: ctx.now + delay,
                    });
                }
            }
            self.pending_children
                .retain(|p| p.parent != parent || member_set.contains(p.member.as_str()));
            for child in self.grants.iter_mut().filter(|c| {
                c.parent_grant.as_deref() == Some(parent.as_str())
                    && c.grantee_account().is_some_and(|a| !member_set.contains(a))
                    && matches!(c.status.as_str(), ACTIVE | DISABLED | PENDING_ACCEPT)
                    && c.status_reason.as_deref() != Some(LEFT_ORGANIZATION_MESSAGE)
            }) {
                child.status = DISABLED.to_string();
                child.status_reason = Some(LEFT_ORGANIZATION_MESSAGE.to_string());
                child.activation = None;
                child.version += 1;
                self.changes.push(child.change(ctx.epoch_ms));
            }
            if let Some(p) = self.grants.iter_mut().find(|g| g.arn == parent) {
                p.distributed = true;
            }
        }
    }

    /// Hands out the children whose time has come (their own workflow: service-linked roles).
    fn materialize_children(&mut self, ctx: &mut Ctx<'_>, wanted: &mut BTreeSet<String>) {
        let (due, later): (Vec<PendingChild>, Vec<PendingChild>) =
            std::mem::take(&mut self.pending_children)
                .into_iter()
                .partition(|p| ctx.now >= p.ready_at);
        self.pending_children = later;
        for pending in due {
            let Some(parent) = self
                .grants
                .iter()
                .find(|g| g.arn == pending.parent && g.status == WORKFLOW_COMPLETED)
                .cloned()
            else {
                continue;
            };
            let Some(check) = Self::recipient_check(ctx, &pending.member, wanted) else {
                self.pending_children.push(pending);
                continue;
            };
            let (status, reason) = match check {
                Err(reason) => (FAILED_WORKFLOW, Some(reason)),
                Ok(()) if ctx.switches.auto_accept => (DISABLED, None),
                Ok(()) => (PENDING_ACCEPT, None),
            };
            let activation = (status == DISABLED && parent.bulk_activated).then(|| {
                (
                    ctx.now + Duration::from_millis(ctx.switches.activation_ms),
                    parent_behavior(&parent),
                )
            });
            let parent_arn = match ctx.switches.child_parent_arn {
                ChildParentArn::Parent => parent.arn.clone(),
                ChildParentArn::License => parent.license_arn.clone(),
                ChildParentArn::Absent => String::new(),
            };
            let grantor_behavior = activation.as_ref().and_then(|(_, b)| b.clone());
            let at_ms = epoch_ms_at(ctx.now, ctx.epoch_ms, pending.ready_at);
            let child = GrantRec {
                arn: format!(
                    "arn:aws:license-manager::{}:grant:g-{}",
                    parent.grantor,
                    ctx.ids.hex(32)
                ),
                parent_arn,
                grantor_behavior,
                grantee: format!("arn:aws:iam::{}:root", pending.member),
                status: status.to_string(),
                status_reason: reason,
                version: 1,
                options: None,
                ready_at: ctx.now,
                parent_grant: Some(parent.arn.clone()),
                created_ms: ctx.epoch_ms,
                activation,
                bulk_activated: false,
                distributed: false,
                redistribute: false,
                ..parent
            };
            self.changes.push(child.change(at_ms));
            self.grants.push(child);
        }
    }

    /// Applies the activations whose processing time is up: ACTIVE, or DISABLED with the
    /// one-active-license reason when another license for the product is active in the account
    /// (unless the override behavior replaces it).
    fn apply_due_activations(&mut self, now: Instant, epoch_ms: u64) {
        let mut due: Vec<(Instant, usize)> = self
            .grants
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.activation.as_ref().map(|(at, _)| (*at, i)))
            .filter(|(at, _)| *at <= now)
            .collect();
        due.sort();
        for (due_at, i) in due {
            let Some((_, behavior)) = self.grants[i].activation.take() else {
                continue;
            };
            if self.grants[i].status != DISABLED {
                continue;
            }
            let at_ms = epoch_ms_at(now, epoch_ms, due_at);
            let g = &self.grants[i];
            let account = g.grantee_account().unwrap_or_default().to_string();
            let sku = self
                .license(&g.license_arn)
                .map(|l| l.sku.clone())
                .unwrap_or_default();
            let others: Vec<usize> = self
                .grants
                .iter()
                .enumerate()
                .filter(|(j, other)| {
                    *j != i
                        && other.status == ACTIVE
                        && other.grantee_account() == Some(account.as_str())
                        // Any other grant for the product counts, one of the same license too:
                        // AWS documents the rule per product and says nothing of two grants of
                        // one license, so the emulator takes the harsher reading.
                        && self
                            .license(&other.license_arn)
                            .is_some_and(|l| l.sku == sku)
                })
                .map(|(j, _)| j)
                .collect();
            if !others.is_empty() && behavior.as_deref() != Some(ALL_GRANTS_PERMITTED_BY_ISSUER) {
                // The activation applied and failed: the grant stays DISABLED with the reason.
                self.grants[i].status_reason = Some(ONE_ACTIVE_LICENSE_MESSAGE.to_string());
                self.changes.push(self.grants[i].change(at_ms));
                continue;
            }
            let arn = self.grants[i].arn.clone();
            for j in others {
                let other = &mut self.grants[j];
                other.status = DISABLED.to_string();
                other.status_reason = Some(format!("Replaced by the activation of grant {arn}"));
                other.activation = None;
                other.version += 1;
                self.changes.push(other.change(at_ms));
            }
            let g = &mut self.grants[i];
            g.status = ACTIVE.to_string();
            g.status_reason = None;
            self.changes.push(g.change(at_ms));
        }
    }

    fn auto_accepts(
        &self,
        org: Option<&OrgInfo>,
        grantor: &str,
        grantee: Option<&str>,
        switches: &Switches,
    ) -> bool {
        let (Some(org), Some(grantee)) = (org, grantee) else {
            return false;
        };
        switches.auto_accept
            && org.all_features()
            && self.integration.get(grantor).copied().unwrap_or(false)
            && org.accounts.contains(grantor)
            && org.accounts.contains(grantee)
    }

    /// Runs one operation.
    pub fn dispatch(
        &mut self,
        op: &str,
        ctx: &mut Ctx<'_>,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let input = Input::new(body, Service::LicenseManager);
        match op {
            "ListReceivedLicenses" => self.list_received_licenses(ctx, &input),
            "GetLicense" => self.get_license(ctx, &input),
            "CreateGrant" => self.create_grant(ctx, &input),
            "ListDistributedGrants" => self.list_distributed_grants(ctx, &input),
            "ListReceivedGrants" => self.list_received_grants(ctx, &input),
            "ListReceivedGrantsForOrganization" => {
                self.list_received_grants_for_organization(ctx, &input)
            }
            "GetGrant" => self.get_grant(ctx, &input),
            "AcceptGrant" => self.accept_or_reject(ctx, &input, true),
            "RejectGrant" => self.accept_or_reject(ctx, &input, false),
            "DeleteGrant" => self.delete_grant(ctx, &input),
            "CreateGrantVersion" => self.create_grant_version(ctx, &input),
            "UpdateServiceSettings" => self.update_service_settings(ctx, &input),
            "GetServiceSettings" => Ok(self.get_service_settings(ctx)),
            other => Err(ApiError::new(
                "UnknownOperationException",
                format!("AWSLicenseManager.{other} is not emulated"),
            )),
        }
    }

    fn list_received_licenses(&self, ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
        let filters = parse_filters(
            input,
            &[
                "ProductSKU",
                "Status",
                "Fingerprint",
                "IssuerName",
                "Beneficiary",
            ],
            false,
        )?;
        let arns = input.string_list_opt("LicenseArns")?;
        let mut entries: Vec<(&LicenseRec, String, Vec<String>)> = Vec::new();
        for lic in self.licenses.iter().filter(|l| l.beneficiary == ctx.caller) {
            entries.push((lic, ACTIVE.to_string(), lic.operations.clone()));
        }
        for g in self.grants.iter().filter(|g| g.received_by(ctx.caller)) {
            let Some(lic) = self.license(&g.license_arn) else {
                continue;
            };
            match entries.iter_mut().find(|(l, _, _)| l.arn == lic.arn) {
                Some(entry)
                    if lic.beneficiary != ctx.caller
                        && status_rank(&g.status) < status_rank(&entry.1) =>
                {
                    entry.1 = g.status.clone();
                    entry.2 = g.operations.clone();
                }
                Some(_) => {}
                None => entries.push((lic, g.status.clone(), g.operations.clone())),
            }
        }
        let matching: Vec<Value> = entries
            .into_iter()
            .filter(|(l, _, _)| arns.as_ref().is_none_or(|a| a.contains(&l.arn.as_str())))
            .filter(|(l, _, _)| {
                filters.iter().all(|(name, values)| {
                    let field = match name.as_str() {
                        "ProductSKU" => &l.sku,
                        "Status" => &l.status,
                        "Fingerprint" => &l.fingerprint,
                        "IssuerName" => &l.issuer_name,
                        _ => &l.beneficiary,
                    };
                    values.contains(field)
                })
            })
            .map(|(l, status, ops)| {
                let mut v = l.shape.clone();
                v["ReceivedMetadata"] =
                    json!({ "ReceivedStatus": status, "AllowedOperations": ops });
                v
            })
            .collect();
        let (page, next) = paginate(
            matching,
            input.int_opt("MaxResults")?,
            input.str_opt("NextToken")?,
            ctx.switches.default_page_size,
            100,
            Service::LicenseManager,
        )?;
        let mut out = json!({ "Licenses": page });
        if let Some(token) = next {
            out["NextToken"] = json!(token);
        }
        Ok(out)
    }

    fn get_license(&self, ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
        let arn = input.str_req("LicenseArn")?;
        check_arn(arn, "license")?;
        let visible = self.license(arn).filter(|l| {
            l.beneficiary == ctx.caller
                || self.grants.iter().any(|g| {
                    g.license_arn == arn
                        && (g.grantor == ctx.caller || g.grantee_account() == Some(ctx.caller))
                })
        });
        let lic = visible.ok_or_else(|| ApiError::not_found(format!("License {arn} not found")))?;
        Ok(json!({ "License": lic.shape }))
    }

    /// The license the caller may grant from: bought it, or holds an ACTIVE grant that allows
    /// `CreateGrant`.
    fn grantable_license(&self, caller: &str, arn: &str) -> Result<&LicenseRec, ApiError> {
        let lic = self.license(arn);
        let held_grants: Vec<&GrantRec> = self
            .grants
            .iter()
            .filter(|g| g.license_arn == arn && g.grantee_account() == Some(caller))
            .collect();
        match lic {
            Some(l) if l.beneficiary == caller => Ok(l),
            Some(l)
                if held_grants.iter().any(|g| {
                    g.status == ACTIVE && g.operations.iter().any(|o| o == "CreateGrant")
                }) =>
            {
                Ok(l)
            }
            Some(_) if !held_grants.is_empty() => Err(ApiError::access_denied(format!(
                "Caller is not allowed to create grants for license {arn}"
            ))),
            _ => Err(ApiError::not_found(format!("License {arn} not found"))),
        }
    }

    /// What the caller holds of a license: the beneficiary's `AllowedOperations`, or the
    /// operations of its ACTIVE grants for it.
    fn held_operations(&self, caller: &str, license_arn: &str) -> BTreeSet<String> {
        match self.license(license_arn) {
            Some(l) if l.beneficiary == caller => l.operations.iter().cloned().collect(),
            _ => self
                .grants
                .iter()
                .filter(|g| {
                    g.license_arn == license_arn
                        && g.status == ACTIVE
                        && g.grantee_account() == Some(caller)
                })
                .flat_map(|g| g.operations.iter().cloned())
                .collect(),
        }
    }

    /// A grant never passes on more than its grantor holds (License Manager API reference, CreateGrant: AllowedOperations).
    fn check_held_operations(
        &self,
        caller: &str,
        license_arn: &str,
        operations: &[String],
    ) -> Result<(), ApiError> {
        let held = self.held_operations(caller, license_arn);
        let extra: Vec<&str> = operations
            .iter()
            .filter(|op| !held.contains(*op))
            .map(String::as_str)
            .collect();
        if extra.is_empty() {
            return Ok(());
        }
        Err(ApiError::validation(format!(
            "AllowedOperations [{}] are not allowed for license {license_arn}: the grantor holds \
             only [{}]",
            extra.join(", "),
            held.into_iter().collect::<Vec<_>>().join(", ")
        )))
    }

    fn create_grant(&mut self, ctx: &mut Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
        let token = input.str_req("ClientToken")?;
        let name = input.str_req("GrantName")?;
        let license_arn = input.str_req("LicenseArn")?;
        let principals = input
            .string_list_opt("Principals")?
            .ok_or_else(|| input.missing("Principals"))?;
        let home_region = input.str_req("HomeRegion")?;
        let operations = input
            .string_list_opt("AllowedOperations")?
            .ok_or_else(|| input.missing("AllowedOperations"))?;

        let token_key = (ctx.caller.to_string(), token.to_string());
        if let Some((request, arn)) = self.create_tokens.get(&token_key) {
            if request != input.body {
                return Err(ApiError::validation(format!(
                    "The client token {token} has already been used with different request parameters"
                )));
            }
            let g = self.grants.iter().find(|g| &g.arn == arn);
            return g
                .map(GrantRec::summary)
                .ok_or_else(|| ApiError::internal("idempotency record without grant"));
        }

        let operations = validate_operations(&operations)?;
        let [principal] = principals.as_slice() else {
            return Err(ApiError::validation(
                "1 validation error detected: Value at 'principals' failed to satisfy constraint: \
                 Member must have length less than or equal to 1 and greater than or equal to 1",
            ));
        };
        let (parsed, management) = parse_principal(principal)
            .ok_or_else(|| ApiError::validation(format!("Invalid principal: {principal}")))?;
        check_arn(license_arn, "license")?;
        let license = self.grantable_license(ctx.caller, license_arn)?;
        self.check_held_operations(ctx.caller, license_arn, &operations)?;
        if home_region != license.home_region {
            return Err(ApiError::validation(format!(
                "HomeRegion {home_region} does not match the license home Region {}",
                license.home_region
            )));
        }
        match &parsed {
            Principal::Account(account) if account == ctx.caller => {
                return Err(ApiError::validation(
                    "A grant cannot be created for the grantor account",
                ));
            }
            Principal::Account(_) => {}
            Principal::Organization { org: id } | Principal::OrganizationalUnit { org: id, .. } => {
                let org = ctx.org.org().ok_or_else(|| {
                    ApiError::validation(format!(
                        "Account {} is not in an organization",
                        ctx.caller
                    ))
                })?;
                if *id != org.id || management.as_deref() != Some(org.management_account.as_str()) {
                    return Err(ApiError::validation(format!(
                        "Invalid principal: {principal}"
                    )));
                }
                // The management account, or License Manager's delegated administrator: AWS
                // documents that it "can distribute entitlements using individual account IDs,
                // organization ID, or organizational unit IDs" (Amazon Bedrock User Guide,
                // Setting up managed entitlements). The registration is the
                // `delegatedAdministrator` switch.
                let delegated = ctx.switches.delegated_administrator.as_deref() == Some(ctx.caller)
                    && org.accounts.contains(ctx.caller);
                if ctx.caller != org.management_account && !delegated {
                    return Err(ApiError::access_denied(
                        "Only the management account or the delegated administrator can create grants for an organization",
                    ));
                }
                if !org.all_features() {
                    return Err(ApiError::validation(
                        "Organization grants require AWS Organizations with all features enabled",
                    ));
                }
                if let Principal::OrganizationalUnit { ou, .. } = &parsed {
                    if !org.ou_members.contains_key(ou) {
                        return Err(ApiError::validation(format!(
                            "Organizational unit {ou} not found"
                        )));
                    }
                }
            }
        }
        let existing = self
            .grants
            .iter()
            .filter(|g| {
                g.license_arn == license_arn
                    && g.grantor == ctx.caller
                    && g.parent_grant.is_none()
                    && g.status != DELETED
            })
            .count();
        if existing >= ctx.switches.max_grants_per_license {
            return Err(ApiError::new(
                "ResourceLimitExceededException",
                format!(
                    "License {license_arn} already has the maximum number of grants ({})",
                    ctx.switches.max_grants_per_license
                ),
            ));
        }
        let grant = GrantRec {
            arn: format!(
                "arn:aws:license-manager::{}:grant:g-{}",
                ctx.caller,
                ctx.ids.hex(32)
            ),
            name: name.to_string(),
            parent_arn: match ctx.switches.account_grant_parent_arn {
                _ if account_of(principal).is_none() => license_arn.to_string(),
                AccountGrantParentArn::License => license_arn.to_string(),
                AccountGrantParentArn::Other => format!(
                    "arn:aws:license-manager::{}:grant-root:{}",
                    ctx.caller,
                    license_arn.rsplit(':').next().unwrap_or_default()
                ),
            },
            license_arn: license_arn.to_string(),
            grantor: ctx.caller.to_string(),
            grantee: principal.to_string(),
            home_region: home_region.to_string(),
            status: PENDING_WORKFLOW.to_string(),
            status_reason: None,
            version: 1,
            operations,
            options: None,
            grant_type: input.str_opt("GrantType")?.map(str::to_string),
            ready_at: ctx.now + Duration::from_millis(ctx.switches.pending_workflow_ms),
            parent_grant: None,
            created_ms: ctx.epoch_ms,
            activation: None,
            bulk_activated: false,
            distributed: false,
            redistribute: false,
            grantor_behavior: None,
        };
        let out = grant.summary();
        self.create_tokens
            .insert(token_key, (input.body.clone(), grant.arn.clone()));
        self.changes.push(grant.change(ctx.epoch_ms));
        self.grants.push(grant);
        Ok(out)
    }

    fn grant_filter_field<'a>(&'a self, g: &'a GrantRec, name: &str) -> &'a str {
        let lic = self.license(&g.license_arn);
        match name {
            "LicenseArn" => &g.license_arn,
            "GrantStatus" => &g.status,
            "GranteePrincipalARN" | "GranteePrincipalArn" => &g.grantee,
            "ParentArn" => &g.parent_arn,
            "ProductSKU" => lic.map(|l| l.sku.as_str()).unwrap_or_default(),
            "LicenseIssuerName" => lic.map(|l| l.issuer_name.as_str()).unwrap_or_default(),
            "GranterAccountId" => &g.grantor,
            _ => "",
        }
    }

    fn list_grants(
        &self,
        ctx: &Ctx<'_>,
        input: &Input<'_>,
        allowed_filters: &[&str],
        visible: impl Fn(&GrantRec) -> bool,
    ) -> Result<Value, ApiError> {
        let filters = parse_filters(input, allowed_filters, true)?;
        let arns = input.string_list_opt("GrantArns")?;
        let matching: Vec<Value> = self
            .grants
            .iter()
            .filter(|g| visible(g))
            .filter(|g| arns.as_ref().is_none_or(|a| a.contains(&g.arn.as_str())))
            .filter(|g| {
                filters.iter().all(|(name, values)| {
                    values.iter().any(|v| v == self.grant_filter_field(g, name))
                })
            })
            .map(GrantRec::shape)
            .collect();
        let (page, next) = paginate(
            matching,
            input.int_opt("MaxResults")?,
            input.str_opt("NextToken")?,
            ctx.switches.default_page_size,
            100,
            Service::LicenseManager,
        )?;
        let mut out = json!({ "Grants": page });
        if let Some(token) = next {
            out["NextToken"] = json!(token);
        }
        Ok(out)
    }

    fn list_distributed_grants(&self, ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
        let filters = [
            "LicenseArn",
            "GrantStatus",
            "GranteePrincipalARN",
            "ProductSKU",
            "LicenseIssuerName",
        ];
        self.list_grants(ctx, input, &filters, |g| {
            g.grantor == ctx.caller
                && (g.parent_grant.is_none() || ctx.switches.children_in_distributed_grants)
        })
    }

    /// The management account's view of the grants its organization received for one license:
    /// every member's account-level grants (children of organization/OU grants included) and
    /// the organization/OU grants themselves.
    fn list_received_grants_for_organization(
        &self,
        ctx: &Ctx<'_>,
        input: &Input<'_>,
    ) -> Result<Value, ApiError> {
        let license_arn = input.str_req("LicenseArn")?;
        check_arn(license_arn, "license")?;
        let org = match ctx.org {
            OrgView::Known(Some(org)) => org,
            OrgView::Known(None) => {
                return Err(ApiError::access_denied(format!(
                    "Account {} is not a member of an organization",
                    ctx.caller
                )))
            }
            OrgView::Unknown => return Err(ApiError::internal("organization data unavailable")),
        };
        let delegated_reads = ctx.switches.org_read_for_delegated_admin
            == OrgReadForDelegatedAdmin::Allowed
            && org.accounts.contains(ctx.caller);
        if org.management_account != ctx.caller && !delegated_reads {
            return Err(ApiError::access_denied(
                "Only the management account of the organization can list the grants received \
                 by its accounts",
            ));
        }
        self.list_grants(ctx, input, &["ParentArn", "GranteePrincipalArn"], |g| {
            g.license_arn == license_arn
                && g.status != PENDING_WORKFLOW
                && (g.org_level()
                    || g.grantee_account()
                        .is_some_and(|a| a != ctx.caller && org.accounts.contains(a)))
        })
    }

    fn list_received_grants(&self, ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
        let filters = [
            "ProductSKU",
            "LicenseIssuerName",
            "LicenseArn",
            "GrantStatus",
            "GranterAccountId",
        ];
        self.list_grants(ctx, input, &filters, |g| g.received_by(ctx.caller))
    }

    /// Finds a grant the caller can see, and in which role.
    fn find_grant(&self, caller: &str, arn: &str) -> Result<(usize, Role), ApiError> {
        check_arn(arn, "grant")?;
        let not_found = || ApiError::not_found(format!("Grant {arn} not found"));
        let index = self
            .grants
            .iter()
            .position(|g| g.arn == arn)
            .ok_or_else(not_found)?;
        let g = &self.grants[index];
        if g.grantor == caller {
            Ok((index, Role::Grantor))
        } else if g.grantee_account() == Some(caller) {
            Ok((index, Role::Grantee))
        } else {
            Err(not_found())
        }
    }

    fn get_grant(&self, ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
        let arn = input.str_req("GrantArn")?;
        let (index, _) = self.find_grant(ctx.caller, arn)?;
        let g = &self.grants[index];
        if let Some(version) = input.str_opt("Version")? {
            if version != g.version.to_string() {
                return Err(ApiError::not_found(format!(
                    "Version {version} of grant {arn} not found"
                )));
            }
        }
        Ok(json!({ "Grant": g.shape() }))
    }

    fn accept_or_reject(
        &mut self,
        ctx: &Ctx<'_>,
        input: &Input<'_>,
        accept: bool,
    ) -> Result<Value, ApiError> {
        let arn = input.str_req("GrantArn")?;
        let (index, role) = self.find_grant(ctx.caller, arn)?;
        let verb = if accept { "accept" } else { "reject" };
        if role != Role::Grantee {
            return Err(ApiError::access_denied(format!(
                "Only the grantee can {verb} grant {arn}"
            )));
        }
        let g = &mut self.grants[index];
        let allowed: &[&str] = if accept {
            &[PENDING_ACCEPT]
        } else {
            &[PENDING_ACCEPT, DISABLED, ACTIVE]
        };
        if !allowed.contains(&g.status.as_str()) {
            return Err(ApiError::validation(format!(
                "Grant {arn} cannot be {verb}ed in status {}",
                g.status
            )));
        }
        g.status = if accept { DISABLED } else { REJECTED }.to_string();
        g.activation = None;
        self.changes.push(g.change(ctx.epoch_ms));
        let parent = g.parent_grant.clone();
        let parent = parent.and_then(|p| self.grants.iter().find(|g| g.arn == p).cloned());
        if let Some(parent) = parent.filter(|p| accept && p.bulk_activated) {
            let at = ctx.now + Duration::from_millis(ctx.switches.activation_ms);
            self.grants[index].activation = Some((at, parent_behavior(&parent)));
            self.grants[index].grantor_behavior = parent_behavior(&parent);
            self.apply_due_activations(ctx.now, ctx.epoch_ms);
        }
        Ok(self.grants[index].summary())
    }

    fn delete_grant(&mut self, ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
        let arn = input.str_req("GrantArn")?;
        let version = input.str_req("Version")?;
        let (index, role) = self.find_grant(ctx.caller, arn)?;
        if role != Role::Grantor {
            return Err(ApiError::access_denied(format!(
                "Only the grantor can delete grant {arn}; the grantee can reject it"
            )));
        }
        let g = &mut self.grants[index];
        if version != g.version.to_string() {
            return Err(ApiError::validation(format!(
                "Version {version} does not match the current version {} of grant {arn}",
                g.version
            )));
        }
        if g.status == DELETED || g.status == REJECTED {
            return Err(ApiError::validation(format!(
                "Grant {arn} is already {}",
                g.status
            )));
        }
        if g.parent_grant.is_some()
            && g.status == FAILED_WORKFLOW
            && ctx.switches.reissue_deleted_child
        {
            g.redistribute = true;
        }
        g.status = DELETED.to_string();
        g.status_reason = input.str_opt("StatusReason")?.map(str::to_string);
        g.activation = None;
        g.version += 1;
        let out = g.summary();
        self.changes.push(g.change(ctx.epoch_ms));
        self.pending_children.retain(|p| p.parent != arn);
        for child in self
            .grants
            .iter_mut()
            .filter(|c| c.parent_grant.as_deref() == Some(arn))
        {
            if child.status != DELETED && child.status != REJECTED {
                child.status = DELETED.to_string();
                child.activation = None;
                child.version += 1;
                self.changes.push(child.change(ctx.epoch_ms));
            }
        }
        Ok(out)
    }

    fn create_grant_version(
        &mut self,
        ctx: &Ctx<'_>,
        input: &Input<'_>,
    ) -> Result<Value, ApiError> {
        let token = input.str_req("ClientToken")?;
        let arn = input.str_req("GrantArn")?;
        let token_key = (ctx.caller.to_string(), token.to_string());
        if let Some((request, response)) = self.version_tokens.get(&token_key) {
            if request != input.body {
                return Err(ApiError::validation(format!(
                    "The client token {token} has already been used with different request parameters"
                )));
            }
            return Ok(response.clone());
        }
        let (index, role) = self.find_grant(ctx.caller, arn)?;
        let g = &self.grants[index];
        if let Some(source) = input.str_opt("SourceVersion")? {
            if source != g.version.to_string() {
                return Err(ApiError::validation(format!(
                    "Source version {source} does not match the current version {} of grant {arn}",
                    g.version
                )));
            }
        }
        let status = input.str_opt("Status")?;
        let behavior = match input.object_opt("Options")? {
            Some(options) => options.str_opt("ActivationOverrideBehavior")?,
            None => None,
        };
        if let Some(b) = behavior {
            if b != DISTRIBUTED_GRANTS_ONLY && b != ALL_GRANTS_PERMITTED_BY_ISSUER {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{b}' at 'options.activationOverrideBehavior' \
                     failed to satisfy constraint: Member must satisfy enum value set: \
                     [{DISTRIBUTED_GRANTS_ONLY}, {ALL_GRANTS_PERMITTED_BY_ISSUER}]"
                )));
            }
            if status != Some(ACTIVE) {
                return Err(ApiError::validation(
                    "ActivationOverrideBehavior can only be specified with Status ACTIVE",
                ));
            }
        }
        let operations = match input.string_list_opt("AllowedOperations")? {
            Some(ops) => {
                let ops = validate_operations(&ops)?;
                self.check_held_operations(&g.grantor, &g.license_arn, &ops)?;
                Some(ops)
            }
            None => None,
        };
        // A grantee's behavior where the grantor already set one (`granteeOverride`).
        let behavior: Option<String> = match (role, behavior, g.grantor_behavior.as_deref()) {
            (Role::Grantee, Some(b), Some(set)) => match ctx.switches.grantee_override {
                GranteeOverride::Honoured => Some(b.to_string()),
                GranteeOverride::Ignored => Some(set.to_string()),
                GranteeOverride::Rejected => {
                    return Err(ApiError::validation(format!(
                        "The grantor of grant {arn} specified an ActivationOverrideBehavior; the \
                         grantee cannot specify one"
                    )))
                }
            },
            (_, b, _) => b.map(str::to_string),
        };
        let org_parent = g.org_level();
        match status {
            None => {}
            Some(ACTIVE) if org_parent => {
                if role != Role::Grantor {
                    return Err(ApiError::access_denied(format!(
                        "Only the grantor can activate organization grant {arn}"
                    )));
                }
                if g.status != WORKFLOW_COMPLETED {
                    return Err(ApiError::validation(format!(
                        "Grant {arn} in status {} cannot be activated before its workflow \
                         completes",
                        g.status
                    )));
                }
            }
            Some(DISABLED) if org_parent => {
                // Bulk deactivation (grantor only, once the workflow completed).
                if role != Role::Grantor {
                    return Err(ApiError::access_denied(format!(
                        "Only the grantor can deactivate organization grant {arn}"
                    )));
                }
                if g.status != WORKFLOW_COMPLETED {
                    return Err(ApiError::validation(format!(
                        "Grant {arn} in status {} cannot be deactivated before its workflow \
                         completes",
                        g.status
                    )));
                }
            }
            Some(s @ (ACTIVE | DISABLED)) if g.status != ACTIVE && g.status != DISABLED => {
                return Err(ApiError::validation(format!(
                    "Grant {arn} in status {} cannot be changed to {s}",
                    g.status
                )));
            }
            Some(ACTIVE | DISABLED) => {}
            Some(other) => {
                return Err(ApiError::validation(format!(
                    "Status {other} cannot be requested; use ACTIVE or DISABLED"
                )));
            }
        }

        let activate_at = ctx.now + Duration::from_millis(ctx.switches.activation_ms);
        let g = &mut self.grants[index];
        if let Some(name) = input.str_opt("GrantName")? {
            g.name = name.to_string();
        }
        if let Some(ops) = operations {
            g.operations = ops;
        }
        if let Some(b) = &behavior {
            g.options = Some(json!({ "ActivationOverrideBehavior": b }));
            if role == Role::Grantor {
                g.grantor_behavior = Some(b.clone());
            }
        }
        g.status_reason = input.str_opt("StatusReason")?.map(str::to_string);
        g.version += 1;
        match status {
            Some(ACTIVE) if org_parent => {
                // Bulk activation: the parent shows WORKFLOW_COMPLETED; every DISABLED child
                // gets its own (asynchronous) activation, joiners' children later too.
                g.bulk_activated = true;
                self.changes.push(g.change(ctx.epoch_ms));
                for child in self.grants.iter_mut().filter(|c| {
                    c.parent_grant.as_deref() == Some(arn)
                        && c.status == DISABLED
                        && c.status_reason.as_deref() != Some(LEFT_ORGANIZATION_MESSAGE)
                }) {
                    child.activation = Some((activate_at, behavior.clone()));
                    if let Some(b) = &behavior {
                        child.options = Some(json!({ "ActivationOverrideBehavior": b }));
                        child.grantor_behavior = Some(b.clone());
                    }
                    child.version += 1;
                    self.changes.push(child.change(ctx.epoch_ms));
                }
            }
            Some(DISABLED) if org_parent => {
                // Bulk deactivation: the parent still shows WORKFLOW_COMPLETED (as after a bulk
                // activation: no field tells the two apart); every child is deactivated, and
                // joiners' children are no longer activated.
                g.bulk_activated = false;
                self.changes.push(g.change(ctx.epoch_ms));
                for child in self.grants.iter_mut().filter(|c| {
                    c.parent_grant.as_deref() == Some(arn)
                        && matches!(c.status.as_str(), ACTIVE | DISABLED)
                }) {
                    child.status = DISABLED.to_string();
                    child.activation = None;
                    child.version += 1;
                    self.changes.push(child.change(ctx.epoch_ms));
                }
            }
            Some(ACTIVE) if g.status != ACTIVE => {
                g.activation = Some((activate_at, behavior.clone()));
                self.changes.push(g.change(ctx.epoch_ms));
            }
            Some(DISABLED) => {
                g.status = DISABLED.to_string();
                g.activation = None;
                self.changes.push(g.change(ctx.epoch_ms));
            }
            _ => self.changes.push(g.change(ctx.epoch_ms)),
        }
        self.apply_due_activations(ctx.now, ctx.epoch_ms);
        let mut out = self.grants[index].summary();
        if status == Some(ACTIVE)
            && !org_parent
            && self.grants[index].activation.is_some()
            && ctx.switches.pending_activation_answer == PendingActivationAnswer::Active
        {
            out["Status"] = json!(ACTIVE);
        }
        self.version_tokens
            .insert(token_key, (input.body.clone(), out.clone()));
        Ok(out)
    }

    fn update_service_settings(
        &mut self,
        ctx: &Ctx<'_>,
        input: &Input<'_>,
    ) -> Result<Value, ApiError> {
        let Some(config) = input.object_opt("OrganizationConfiguration")? else {
            return Ok(json!({}));
        };
        let enable = config
            .bool_opt("EnableIntegration")?
            .ok_or_else(|| config.missing("EnableIntegration"))?;
        if enable {
            match ctx.org {
                OrgView::Known(Some(org)) if org.management_account == ctx.caller => {
                    if !org.all_features() {
                        return Err(ApiError::validation(
                            "Linking AWS Organizations accounts requires an organization with all features enabled",
                        ));
                    }
                }
                OrgView::Known(Some(_)) => {
                    return Err(ApiError::access_denied(
                        "Only the management account of the organization can link AWS Organizations accounts",
                    ));
                }
                OrgView::Known(None) => {
                    return Err(ApiError::validation(format!(
                        "Account {} is not a member of an organization",
                        ctx.caller
                    )));
                }
                OrgView::Unknown => {
                    return Err(ApiError::internal("organization data unavailable"))
                }
            }
        }
        self.integration.insert(ctx.caller.to_string(), enable);
        Ok(json!({}))
    }

    fn get_service_settings(&self, ctx: &Ctx<'_>) -> Value {
        let enabled = self.integration.get(ctx.caller).copied().unwrap_or(false);
        json!({
            "OrganizationConfiguration": { "EnableIntegration": enabled },
            "EnableCrossAccountsDiscovery": false,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn principals_parse() {
        assert_eq!(
            parse_principal("arn:aws:iam::111122223333:root"),
            Some((Principal::Account("111122223333".into()), None))
        );
        assert!(matches!(
            parse_principal("arn:aws:organizations::111122223333:organization/o-abc123defg"),
            Some((Principal::Organization { .. }, Some(m))) if m == "111122223333"
        ));
        assert!(matches!(
            parse_principal("arn:aws:organizations::111122223333:ou/o-abc123defg/ou-ab12-cd34ef56"),
            Some((Principal::OrganizationalUnit { ou, .. }, _)) if ou == "ou-ab12-cd34ef56"
        ));
        assert_eq!(parse_principal("arn:aws:iam::1111:root"), None);
        assert_eq!(parse_principal("arn:aws:iam::111122223333:user/bob"), None);
        assert_eq!(parse_principal("111122223333"), None);
    }
}
