//! AWS Service Catalog, the part account vending and portfolio sharing need: the
//! "AWS Control Tower Account Factory" product, ProvisionProduct/DescribeRecord, the provisioned
//! products they create (SearchProvisionedProducts), portfolios and their shares
//! (Create/Delete/Accept, DescribePortfolioShareStatus). Shapes follow aws-sdk-servicecatalog.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::common::{control_tower_time, epoch_seconds, paginate, ApiError, IdGen, Input, Service};
use super::org::{OrgInfo, OrgView};
use super::Switches;

/// The Account Factory product's name.
pub const ACCOUNT_FACTORY: &str = "AWS Control Tower Account Factory";
/// The name of the Account Factory product's (only) provisioning artifact.
const ARTIFACT_NAME: &str = "AWS Control Tower Account Factory";
/// What AWS answers (`ResourceInUseException`) while another Control Tower operation runs.
pub const ACCOUNT_FACTORY_BUSY: &str = "Account Factory cannot create this enrolled account \
     right now, because another execution is in progress";
/// The "in progress" wording also seen under `InvalidParametersException` (switch
/// `accountFactoryBusyCode`).
pub const CONTROL_TOWER_BUSY: &str = "AWS Control Tower cannot provision the account because \
     another AWS Control Tower operation is in progress. Try again later.";
const ACCOUNT_FACTORY_PARAMETERS: [&str; 6] = [
    "AccountName",
    "AccountEmail",
    "ManagedOrganizationalUnit",
    "SSOUserEmail",
    "SSOUserFirstName",
    "SSOUserLastName",
];

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidParametersException", message)
}

#[derive(Debug, Clone)]
struct Product {
    id: String,
    artifact_id: String,
    name: String,
    owner: String,
    created_ms: u64,
    account_factory: bool,
}

impl Product {
    fn view_summary(&self) -> Value {
        json!({
            "Id": format!("prodview-{}", self.id.trim_start_matches("prod-")),
            "ProductId": self.id,
            "Name": self.name,
            "Owner": self.owner,
            "ShortDescription": if self.account_factory { "AWS Control Tower Account Factory Template" } else { "" },
            "Type": "CLOUD_FORMATION_TEMPLATE",
            "Distributor": self.owner,
            "HasDefaultPath": false,
        })
    }
    fn view_detail(&self, region: &str, account: &str) -> Value {
        json!({
            "ProductViewSummary": self.view_summary(),
            "Status": "AVAILABLE",
            "ProductARN": format!("arn:aws:catalog:{region}:{account}:product/{}", self.id),
            "CreatedTime": epoch_seconds(self.created_ms),
        })
    }
    fn artifact(&self) -> Value {
        json!({
            "Id": self.artifact_id,
            "Name": ARTIFACT_NAME,
            "Description": "AWS Control Tower Account Factory",
            "Type": "CLOUD_FORMATION_TEMPLATE",
            "CreatedTime": epoch_seconds(self.created_ms),
            "Active": true,
            "Guidance": "DEFAULT",
        })
    }
}

#[derive(Debug, Clone)]
struct Record {
    id: String,
    caller: String,
    /// The access key that provisioned it (the emulator's notion of "the user").
    access_key_id: Option<String>,
    token: String,
    product_id: String,
    product_name: String,
    artifact_id: String,
    provisioned_product_id: String,
    provisioned_product_name: String,
    /// The CloudFormation stack ARN behind the provisioned product.
    physical_id: String,
    params: BTreeMap<String, String>,
    account_factory: bool,
    status: String,
    completing: bool,
    created_ms: u64,
    updated_ms: u64,
    ready_at: Instant,
    outputs: Vec<Value>,
    errors: Vec<Value>,
    /// TerminateProvisionedProduct ran: the provisioned product (and its name) is gone.
    terminated: bool,
}

impl Record {
    fn in_flight(&self) -> bool {
        self.status == "CREATED" || self.status == "IN_PROGRESS"
    }
    fn detail(&self) -> Value {
        json!({
            "RecordId": self.id,
            "ProvisionedProductName": self.provisioned_product_name,
            "Status": self.status,
            "CreatedTime": epoch_seconds(self.created_ms),
            "UpdatedTime": epoch_seconds(self.updated_ms),
            "ProvisionedProductType": "CFN_STACK",
            "RecordType": "PROVISION_PRODUCT",
            "ProvisionedProductId": self.provisioned_product_id,
            "ProductId": self.product_id,
            "ProvisioningArtifactId": self.artifact_id,
            "RecordErrors": self.errors,
            "RecordTags": [],
        })
    }

    /// The provisioned product's status: `UNDER_CHANGE` while its (only) record is in flight,
    /// then `AVAILABLE` or `ERROR`.
    fn provisioned_status(&self) -> &'static str {
        match self.status.as_str() {
            "SUCCEEDED" => "AVAILABLE",
            "FAILED" => "ERROR",
            _ => "UNDER_CHANGE",
        }
    }

    /// The `ProvisionedProductAttribute` of the provisioned product this record created.
    fn provisioned_product(&self, region: &str) -> Value {
        let mut v = json!({
            "Name": self.provisioned_product_name,
            "Arn": self.provisioned_product_arn(region),
            "Type": "CFN_STACK",
            "Id": self.provisioned_product_id,
            "Status": self.provisioned_status(),
            "CreatedTime": epoch_seconds(self.created_ms),
            "IdempotencyToken": self.token,
            "LastRecordId": self.id,
            "LastProvisioningRecordId": self.id,
            "Tags": [],
            "PhysicalId": self.physical_id,
            "ProductId": self.product_id,
            "ProductName": self.product_name,
            "ProvisioningArtifactId": self.artifact_id,
            "ProvisioningArtifactName": ARTIFACT_NAME,
        });
        if self.status == "SUCCEEDED" {
            v["LastSuccessfulProvisioningRecordId"] = json!(self.id);
        }
        if self.status == "FAILED" {
            let message: Vec<&str> = self
                .errors
                .iter()
                .filter_map(|e| e["Description"].as_str())
                .collect();
            v["StatusMessage"] = json!(message.join("; "));
        }
        v
    }

    fn provisioned_product_arn(&self, region: &str) -> String {
        format!(
            "arn:aws:servicecatalog:{region}:{}:stack/{}/{}",
            self.caller, self.provisioned_product_name, self.provisioned_product_id
        )
    }

    /// The value of a `SearchQuery` field (lower-cased name), if the product has one.
    fn search_field(&self, field: &str, region: &str) -> Option<String> {
        let v = match field {
            "arn" => self.provisioned_product_arn(region),
            "createdtime" => (self.created_ms / 1000).to_string(),
            "id" => self.provisioned_product_id.clone(),
            "lastrecordid" | "lastprovisioningrecordid" => self.id.clone(),
            "lastsuccessfulprovisioningrecordid" if self.status == "SUCCEEDED" => self.id.clone(),
            "idempotencytoken" => self.token.clone(),
            "name" => self.provisioned_product_name.clone(),
            "physicalid" => self.physical_id.clone(),
            "productid" => self.product_id.clone(),
            "productname" => self.product_name.clone(),
            "provisioningartifactid" => self.artifact_id.clone(),
            "provisioningartifactname" => ARTIFACT_NAME.to_string(),
            "type" => "CFN_STACK".to_string(),
            "status" => self.provisioned_status().to_string(),
            _ => return None,
        };
        Some(v)
    }
}

/// The fields `SearchProvisionedProducts` can search with `field:value` (lower-cased).
const SEARCHABLE_FIELDS: [&str; 18] = [
    "arn",
    "createdtime",
    "id",
    "lastrecordid",
    "idempotencytoken",
    "name",
    "physicalid",
    "productid",
    "provisioningartifactid",
    "type",
    "status",
    "tags",
    "userarn",
    "userarnsession",
    "lastprovisioningrecordid",
    "lastsuccessfulprovisioningrecordid",
    "productname",
    "provisioningartifactname",
];

/// One `SearchQuery` term: `field:value` (exact, case-insensitive) or free text (a substring of
/// any searchable field).
#[derive(Debug)]
enum SearchTerm {
    Field(String, String),
    Text(String),
}

impl SearchTerm {
    fn parse(raw: &str) -> Self {
        if let Some((field, value)) = raw.split_once(':') {
            let field = field.to_ascii_lowercase();
            // A bare ARN is free text, not the field `arn`.
            let bare_arn = field == "arn" && !value.starts_with("arn:") && value.contains(':');
            if SEARCHABLE_FIELDS.contains(&field.as_str()) && !bare_arn {
                return SearchTerm::Field(field, value.to_lowercase());
            }
        }
        SearchTerm::Text(raw.to_lowercase())
    }

    fn matches(&self, record: &Record, region: &str) -> bool {
        match self {
            SearchTerm::Field(field, value) => record
                .search_field(field, region)
                .is_some_and(|v| v.to_lowercase() == *value),
            SearchTerm::Text(text) => SEARCHABLE_FIELDS.iter().any(|f| {
                record
                    .search_field(f, region)
                    .is_some_and(|v| v.to_lowercase().contains(text.as_str()))
            }),
        }
    }
}

#[derive(Debug, Clone)]
struct Portfolio {
    id: String,
    owner: String,
    display_name: String,
    description: Option<String>,
    provider_name: String,
    created_ms: u64,
    token: Option<String>,
}

impl Portfolio {
    fn detail(&self, region: &str) -> Value {
        let mut v = json!({
            "Id": self.id,
            "ARN": format!("arn:aws:catalog:{region}:{}:portfolio/{}", self.owner, self.id),
            "DisplayName": self.display_name,
            "CreatedTime": epoch_seconds(self.created_ms),
            "ProviderName": self.provider_name,
        });
        if let Some(d) = &self.description {
            v["Description"] = json!(d);
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq)]
enum ShareTarget {
    Account(String),
    Organization(String),
    OrganizationalUnit(String),
}

impl ShareTarget {
    fn value(&self) -> &str {
        match self {
            ShareTarget::Account(v)
            | ShareTarget::Organization(v)
            | ShareTarget::OrganizationalUnit(v) => v,
        }
    }

    /// Whether `account` sees a portfolio shared with this target (any share type).
    fn covers(&self, account: &str, org: Option<&OrgInfo>) -> bool {
        match self {
            ShareTarget::Account(a) => a == account,
            ShareTarget::Organization(o) => {
                org.is_some_and(|org| &org.id == o && org.accounts.contains(account))
            }
            ShareTarget::OrganizationalUnit(ou) => {
                org.is_some_and(|org| org.ou_members.get(ou).is_some_and(|m| m.contains(account)))
            }
        }
    }

    /// The accounts a share with this target reaches (the portfolio's owner excluded), or why
    /// it reaches none.
    fn accounts(&self, org: Option<&OrgInfo>, owner: &str) -> Result<Vec<String>, String> {
        let members: Vec<String> = match self {
            ShareTarget::Account(a) => vec![a.clone()],
            ShareTarget::Organization(o) => match org {
                Some(org) if &org.id == o => org.accounts.iter().cloned().collect(),
                _ => return Err(format!("Organization {o} was not found")),
            },
            ShareTarget::OrganizationalUnit(ou) => match org.and_then(|o| o.ou_members.get(ou)) {
                Some(members) => members.iter().cloned().collect(),
                None => return Err(format!("Organizational unit {ou} was not found")),
            },
        };
        Ok(members.into_iter().filter(|a| a != owner).collect())
    }
}

#[derive(Debug, Clone)]
struct Share {
    portfolio_id: String,
    target: ShareTarget,
    /// `SharePrincipals`: the owner's principal associations (IAM_PATTERN) reach the accounts
    /// this (organization-node) share covers. Off unless asked for, as in AWS.
    share_principals: bool,
}

/// A share with (or unshare from) an organization node, reported by
/// DescribePortfolioShareStatus. Completes at once (AWS: NOT_STARTED, IN_PROGRESS, then done).
#[derive(Debug, Clone)]
struct ShareOperation {
    token: String,
    owner: String,
    portfolio_id: String,
    node_value: String,
    status: &'static str,
    successful: Vec<String>,
    errors: Vec<Value>,
}

impl ShareOperation {
    fn new(
        token: String,
        owner: &str,
        portfolio_id: &str,
        target: &ShareTarget,
        org: Option<&OrgInfo>,
    ) -> Self {
        let (status, successful, errors) = match target.accounts(org, owner) {
            Ok(accounts) => ("COMPLETED", accounts, Vec::new()),
            Err(message) => (
                "ERROR",
                Vec::new(),
                vec![json!({ "Accounts": [], "Message": message, "Error": "ResourceNotFound" })],
            ),
        };
        Self {
            token,
            owner: owner.to_string(),
            portfolio_id: portfolio_id.to_string(),
            node_value: target.value().to_string(),
            status,
            successful,
            errors,
        }
    }

    fn describe(&self) -> Value {
        json!({
            "PortfolioShareToken": self.token,
            "PortfolioId": self.portfolio_id,
            "OrganizationNodeValue": self.node_value,
            "Status": self.status,
            "ShareDetails": { "SuccessfulShares": self.successful, "ShareErrors": self.errors },
        })
    }
}

/// An Account Factory request whose provisioning time is up: the emulator creates the account
/// (outside the state lock, possibly in moto) and reports back with [`ServiceCatalog::finish`].
#[derive(Debug, Clone)]
pub struct VendJob {
    pub record_id: String,
    pub account_factory: bool,
    pub params: BTreeMap<String, String>,
    pub requested_ms: u64,
}

/// How vending went.
#[derive(Debug, Clone)]
pub enum VendOutcome {
    Succeeded {
        account_id: String,
        ou_id: String,
        ou_name: String,
    },
    Failed {
        message: String,
        ou_id: String,
        ou_name: String,
    },
}

/// Splits `Name` or `Name (ou-xxxx-yyyyyyyy)`.
pub fn parse_managed_ou(value: &str) -> (String, Option<String>) {
    if let Some(open) = value.rfind(" (") {
        if let Some(id) = value[open + 2..].strip_suffix(')') {
            if id.starts_with("ou-") {
                return (value[..open].to_string(), Some(id.to_string()));
            }
        }
    }
    (value.to_string(), None)
}

/// Service Catalog state.
#[derive(Debug, Default)]
pub struct ServiceCatalog {
    products: Vec<Product>,
    records: Vec<Record>,
    provision_tokens: HashMap<(String, String), (Value, String)>,
    portfolios: Vec<Portfolio>,
    shares: Vec<Share>,
    share_operations: Vec<ShareOperation>,
    accepted: BTreeSet<(String, String)>,
    associations: Vec<Value>,
    /// Control Tower lifecycle events (EventBridge envelopes) produced by account vending.
    pub events: Vec<Value>,
}

/// Everything one Service Catalog call may use besides its input.
pub struct ScCtx<'a> {
    pub caller: &'a str,
    /// The access key id the call was signed with.
    pub access_key_id: Option<&'a str>,
    pub org: &'a OrgView,
    pub switches: &'a Switches,
    pub now: Instant,
    pub epoch_ms: u64,
    pub ids: &'a mut IdGen,
    pub region: &'a str,
}

impl ServiceCatalog {
    /// A catalog holding the Account Factory product.
    pub fn new(ids: &mut IdGen, epoch_ms: u64) -> Self {
        let product = Product {
            id: format!("prod-{}", ids.alnum(13)),
            artifact_id: format!("pa-{}", ids.alnum(13)),
            name: ACCOUNT_FACTORY.to_string(),
            owner: "AWS Control Tower".to_string(),
            created_ms: epoch_ms,
            account_factory: true,
        };
        Self {
            products: vec![product],
            ..Self::default()
        }
    }

    pub fn dump(&self) -> Value {
        json!({
            "products": self.products.iter().map(|p| json!({
                "ProductId": p.id, "Name": p.name, "ProvisioningArtifactId": p.artifact_id,
            })).collect::<Vec<_>>(),
            "records": self.records.iter().map(|r| {
                let mut v = r.detail();
                v["Caller"] = json!(r.caller);
                v["ProvisioningParameters"] = json!(r.params);
                v["RecordOutputs"] = json!(r.outputs);
                v
            }).collect::<Vec<_>>(),
            "provisionedProducts": self.records.iter().map(|r| {
                let mut v = r.provisioned_product("us-east-1");
                v["Caller"] = json!(r.caller);
                v
            }).collect::<Vec<_>>(),
            "portfolioShareStatuses": self.share_operations.iter().map(ShareOperation::describe).collect::<Vec<_>>(),
            "portfolios": self.portfolios.iter().map(|p| {
                let mut v = p.detail("us-east-1");
                v["Owner"] = json!(p.owner);
                v
            }).collect::<Vec<_>>(),
            "portfolioShares": self.shares.iter().map(|s| json!({
                "PortfolioId": s.portfolio_id,
                "SharePrincipals": s.share_principals,
                "Target": match &s.target {
                    ShareTarget::Account(a) => json!({ "Type": "ACCOUNT", "Value": a }),
                    ShareTarget::Organization(o) => json!({ "Type": "ORGANIZATION", "Value": o }),
                    ShareTarget::OrganizationalUnit(o) => json!({ "Type": "ORGANIZATIONAL_UNIT", "Value": o }),
                },
            })).collect::<Vec<_>>(),
            "acceptedShares": self.accepted.iter().map(|(p, a)| json!({ "PortfolioId": p, "AccountId": a })).collect::<Vec<_>>(),
            "principalAssociations": self.associations,
            "controlTowerEvents": self.events,
        })
    }

    /// OUs whose membership a call needs, or `None` when it needs no organization data.
    /// Accepting a share, and sharing or unsharing (which reports the accounts reached and
    /// revokes imports no share covers any more), need the OUs the portfolios are shared with.
    pub fn org_need(&self, op: &str, input: &Value) -> Option<BTreeSet<String>> {
        if !matches!(
            op,
            "AcceptPortfolioShare" | "CreatePortfolioShare" | "DeletePortfolioShare"
        ) {
            return None;
        }
        let mut ous: BTreeSet<String> = self
            .shares
            .iter()
            .filter_map(|s| match &s.target {
                ShareTarget::OrganizationalUnit(ou) => Some(ou.clone()),
                _ => None,
            })
            .collect();
        let node = &input["OrganizationNode"];
        if node["Type"] == "ORGANIZATIONAL_UNIT" {
            if let Some(ou) = node["Value"].as_str() {
                ous.insert(ou.to_string());
            }
        }
        Some(ous)
    }

    /// Marks requests in progress and hands out those whose provisioning time is up.
    pub fn take_due(&mut self, now: Instant) -> Vec<VendJob> {
        let mut jobs = Vec::new();
        for r in self
            .records
            .iter_mut()
            .filter(|r| r.in_flight() && !r.completing)
        {
            r.status = "IN_PROGRESS".to_string();
            if now >= r.ready_at {
                r.completing = true;
                jobs.push(VendJob {
                    record_id: r.id.clone(),
                    account_factory: r.account_factory,
                    params: r.params.clone(),
                    requested_ms: r.created_ms,
                });
            }
        }
        jobs
    }

    /// Records how vending went, and the Control Tower lifecycle event it produces.
    pub fn finish(
        &mut self,
        job: &VendJob,
        outcome: &VendOutcome,
        management: &str,
        epoch_ms: u64,
    ) {
        let Some(r) = self.records.iter_mut().find(|r| r.id == job.record_id) else {
            return;
        };
        r.completing = false;
        r.updated_ms = epoch_ms;
        let param = |k: &str| job.params.get(k).cloned().unwrap_or_default();
        let (state, account_id, ou_id, ou_name, message) = match outcome {
            VendOutcome::Succeeded {
                account_id,
                ou_id,
                ou_name,
            } => {
                r.status = "SUCCEEDED".to_string();
                if job.account_factory {
                    r.outputs = vec![
                        json!({ "OutputKey": "AccountId", "OutputValue": account_id, "Description": "The account id" }),
                        json!({ "OutputKey": "AccountEmail", "OutputValue": param("AccountEmail") }),
                        json!({ "OutputKey": "SSOUserEmail", "OutputValue": param("SSOUserEmail") }),
                        json!({ "OutputKey": "SSOUserPortal", "OutputValue": "https://d-0000000000.awsapps.com/start" }),
                    ];
                }
                (
                    "SUCCEEDED",
                    account_id.clone(),
                    ou_id.clone(),
                    ou_name.clone(),
                    "AWS Control Tower successfully created an enrolled account.".to_string(),
                )
            }
            VendOutcome::Failed {
                message,
                ou_id,
                ou_name,
            } => {
                r.status = "FAILED".to_string();
                r.errors = vec![json!({ "Code": "ProvisioningFailed", "Description": message })];
                (
                    "FAILED",
                    "Not Available".to_string(),
                    ou_id.clone(),
                    ou_name.clone(),
                    message.clone(),
                )
            }
        };
        if !job.account_factory {
            return;
        }
        let event_id = format!("{}-ct", r.id);
        self.events.push(json!({
            "version": "0",
            "id": event_id,
            "detail-type": "AWS Service Event via CloudTrail",
            "source": "aws.controltower",
            "account": management,
            "time": control_tower_time(epoch_ms).replace("+0000", "Z"),
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "eventVersion": "1.08",
                "userIdentity": { "accountId": management, "invokedBy": "AWS Internal" },
                "eventTime": control_tower_time(epoch_ms).replace("+0000", "Z"),
                "eventSource": "controltower.amazonaws.com",
                "eventName": "CreateManagedAccount",
                "awsRegion": "us-east-1",
                "sourceIPAddress": "AWS Internal",
                "userAgent": "AWS Internal",
                "requestParameters": null,
                "responseElements": null,
                "eventID": event_id,
                "readOnly": false,
                "eventType": "AwsServiceEvent",
                "managementEvent": true,
                "recipientAccountId": management,
                "serviceEventDetails": {
                    "createManagedAccountStatus": {
                        "organizationalUnit": { "organizationalUnitName": ou_name, "organizationalUnitId": ou_id },
                        "account": { "accountName": param("AccountName"), "accountId": account_id },
                        "state": state,
                        "message": message,
                        "requestedTimestamp": control_tower_time(job.requested_ms),
                        "completedTimestamp": control_tower_time(epoch_ms),
                    }
                },
                "eventCategory": "Management",
            }
        }));
    }

    pub fn dispatch(
        &mut self,
        op: &str,
        ctx: &mut ScCtx<'_>,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let input = Input::new(body, Service::ServiceCatalog);
        match op {
            "SearchProductsAsAdmin" => self.search_products(ctx, &input),
            "DescribeProductAsAdmin" => self.describe_product(ctx, &input),
            "ListProvisioningArtifacts" => self.list_artifacts(&input),
            "ProvisionProduct" => self.provision_product(ctx, &input),
            "DescribeRecord" => self.describe_record(ctx, &input),
            "CreatePortfolio" => self.create_portfolio(ctx, &input),
            "SearchProvisionedProducts" => self.search_provisioned_products(ctx, &input),
            "CreatePortfolioShare" => self.create_portfolio_share(ctx, &input),
            "DeletePortfolioShare" => self.delete_portfolio_share(ctx, &input),
            "DescribePortfolioShareStatus" => self.describe_portfolio_share_status(ctx, &input),
            "AcceptPortfolioShare" => self.accept_portfolio_share(ctx, &input),
            "AssociatePrincipalWithPortfolio" => self.associate_principal(ctx, &input),
            "ListPrincipalsForPortfolio" => self.list_principals(ctx, &input),
            "TerminateProvisionedProduct" => self.terminate_provisioned_product(ctx, &input),
            other => Err(ApiError::new(
                "UnknownOperationException",
                format!("AWS242ServiceCatalogService.{other} is not emulated"),
            )),
        }
    }

    fn product(&self, id: Option<&str>, name: Option<&str>) -> Result<&Product, ApiError> {
        self.products
            .iter()
            .find(|p| {
                id.is_none_or(|i| p.id == i)
                    && name.is_none_or(|n| p.name == n)
                    && (id.is_some() || name.is_some())
            })
            .ok_or_else(|| ApiError::not_found("Product not found"))
    }

    fn search_products(&self, ctx: &ScCtx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
        let mut terms: Vec<String> = Vec::new();
        if let Some(filters) = input.object_opt("Filters")? {
            for key in ["FullTextSearch", "Title"] {
                if let Some(values) = filters.string_list_opt(key)? {
                    terms.extend(values.into_iter().map(str::to_lowercase));
                }
            }
        }
        let details: Vec<Value> = self
            .products
            .iter()
            .filter(|p| terms.is_empty() || terms.iter().any(|t| p.name.to_lowercase().contains(t)))
            .map(|p| p.view_detail(ctx.region, ctx.caller))
            .collect();
        Ok(json!({ "ProductViewDetails": details }))
    }

    fn describe_product(&self, ctx: &ScCtx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
        let product = self.product(input.str_opt("Id")?, input.str_opt("Name")?)?;
        Ok(json!({
            "ProductViewDetail": product.view_detail(ctx.region, ctx.caller),
            "ProvisioningArtifactSummaries": [{
                "Id": product.artifact_id,
                "Name": ARTIFACT_NAME,
                "Description": "AWS Control Tower Account Factory",
                "CreatedTime": epoch_seconds(product.created_ms),
            }],
            "Tags": [],
            "TagOptions": [],
            "Budgets": [],
        }))
    }

    fn list_artifacts(&self, input: &Input<'_>) -> Result<Value, ApiError> {
        let product = self.product(Some(input.str_req("ProductId")?), None)?;
        Ok(json!({ "ProvisioningArtifactDetails": [product.artifact()] }))
    }

    fn provision_product(
        &mut self,
        ctx: &mut ScCtx<'_>,
        input: &Input<'_>,
    ) -> Result<Value, ApiError> {
        let token = input.str_req("ProvisionToken")?;
        let name = input.str_req("ProvisionedProductName")?;
        let token_key = (ctx.caller.to_string(), token.to_string());
        if let Some((request, record_id)) = self.provision_tokens.get(&token_key) {
            if request != input.body {
                return Err(invalid(format!(
                    "ProvisionToken {token} has already been used with different parameters"
                )));
            }
            let record = self.records.iter().find(|r| &r.id == record_id);
            return record
                .map(|r| json!({ "RecordDetail": r.detail() }))
                .ok_or_else(|| ApiError::internal("idempotency record without request"));
        }
        let product = self
            .product(input.str_opt("ProductId")?, input.str_opt("ProductName")?)?
            .clone();
        let artifact_id = input.str_opt("ProvisioningArtifactId")?;
        let artifact_name = input.str_opt("ProvisioningArtifactName")?;
        if artifact_id.is_some_and(|a| a != product.artifact_id)
            || artifact_name.is_some_and(|a| a != ARTIFACT_NAME)
        {
            return Err(ApiError::not_found("Provisioning artifact not found"));
        }
        let mut params = BTreeMap::new();
        for p in input
            .list_opt("ProvisioningParameters")?
            .into_iter()
            .flatten()
        {
            let p = Input::new(p, Service::ServiceCatalog);
            params.insert(
                p.str_req("Key")?.to_string(),
                p.str_opt("Value")?.unwrap_or_default().to_string(),
            );
        }
        if product.account_factory {
            if let Some(missing) = ACCOUNT_FACTORY_PARAMETERS
                .iter()
                .find(|k| params.get(**k).is_none_or(|v| v.is_empty()))
            {
                return Err(invalid(format!("Parameter {missing} must have a value")));
            }
            let in_flight = self
                .records
                .iter()
                .filter(|r| r.account_factory && r.in_flight())
                .count();
            if in_flight >= ctx.switches.max_concurrent_account_operations {
                return Err(match ctx.switches.account_factory_busy_code.as_str() {
                    "InvalidParametersException" => invalid(CONTROL_TOWER_BUSY),
                    code => ApiError::new(code, ACCOUNT_FACTORY_BUSY),
                });
            }
        }
        // A FAILED provisioned product keeps its name (and its stack) until it is terminated.
        if self.records.iter().any(|r| {
            r.caller == ctx.caller
                && r.provisioned_product_name == name
                && r.status == "FAILED"
                && !r.terminated
        }) {
            return Err(invalid(format!("A stack named {name} already exists.")));
        }
        if self.records.iter().any(|r| {
            r.caller == ctx.caller
                && r.provisioned_product_name == name
                && r.status != "FAILED"
                && !r.terminated
        }) {
            return Err(ApiError::new(
                "DuplicateResourceException",
                format!("A provisioned product with the name {name} already exists"),
            ));
        }
        let provisioned_product_id = format!("pp-{}", ctx.ids.alnum(13));
        let record = Record {
            id: format!("rec-{}", ctx.ids.alnum(13)),
            caller: ctx.caller.to_string(),
            access_key_id: ctx.access_key_id.map(str::to_string),
            token: token.to_string(),
            product_id: product.id.clone(),
            product_name: product.name.clone(),
            artifact_id: product.artifact_id.clone(),
            provisioned_product_id: provisioned_product_id.clone(),
            provisioned_product_name: name.to_string(),
            physical_id: format!(
                "arn:aws:cloudformation:{}:{}:stack/SC-{}-{provisioned_product_id}/{}",
                ctx.region,
                ctx.caller,
                ctx.caller,
                ctx.ids.request_id()
            ),
            params,
            account_factory: product.account_factory,
            status: "CREATED".to_string(),
            completing: false,
            created_ms: ctx.epoch_ms,
            updated_ms: ctx.epoch_ms,
            ready_at: ctx.now + Duration::from_millis(ctx.switches.provisioning_ms),
            outputs: Vec::new(),
            errors: Vec::new(),
            terminated: false,
        };
        let out = json!({ "RecordDetail": record.detail() });
        self.provision_tokens
            .insert(token_key, (input.body.clone(), record.id.clone()));
        self.records.push(record);
        Ok(out)
    }

    fn describe_record(&self, ctx: &ScCtx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
        let id = input.str_req("Id")?;
        let record = self
            .records
            .iter()
            .find(|r| r.id == id && r.caller == ctx.caller)
            .ok_or_else(|| ApiError::not_found(format!("Record {id} not found")))?;
        Ok(json!({ "RecordDetail": record.detail(), "RecordOutputs": record.outputs }))
    }

    /// The caller's provisioned products (`AccessLevelFilter` `Account`, the default, or
    /// `User`/`Role`: those provisioned with the same access key), filtered by `SearchQuery`
    /// terms (all must match), optionally sorted, in pages of at most 100.
    fn search_provisioned_products(
        &self,
        ctx: &ScCtx<'_>,
        input: &Input<'_>,
    ) -> Result<Value, ApiError> {
        let same_key_only = match input.object_opt("AccessLevelFilter")? {
            None => false,
            Some(filter) => {
                let key = filter.str_opt("Key")?.unwrap_or("Account");
                let value = filter.str_opt("Value")?.unwrap_or("self");
                if value != "self" {
                    return Err(invalid(format!(
                        "AccessLevelFilter value {value} is not supported; the only supported value is self"
                    )));
                }
                match key {
                    "Account" => false,
                    "Role" | "User" => true,
                    other => {
                        return Err(invalid(format!(
                            "Invalid AccessLevelFilter key {other}; expected Account, Role or User"
                        )))
                    }
                }
            }
        };
        let mut terms: Vec<SearchTerm> = Vec::new();
        if let Some(filters) = input.object_opt("Filters")? {
            for key in filters.body.as_object().into_iter().flat_map(|m| m.keys()) {
                if key != "SearchQuery" {
                    return Err(invalid(format!(
                        "Invalid filter key {key}; the only valid key is SearchQuery"
                    )));
                }
            }
            for query in filters.string_list_opt("SearchQuery")?.unwrap_or_default() {
                terms.extend(query.split_whitespace().map(SearchTerm::parse));
            }
        }
        let page_size = match input.int_opt("PageSize")? {
            None | Some(0) => ctx.switches.default_page_size.clamp(1, 100),
            Some(n @ 1..=100) => usize::try_from(n).unwrap_or(100),
            Some(n) => {
                return Err(invalid(format!(
                    "1 validation error detected: Value '{n}' at 'pageSize' failed to satisfy \
                     constraint: Member must have value less than or equal to 100"
                )))
            }
        };
        let descending = match input.str_opt("SortOrder")? {
            None | Some("ASCENDING") => false,
            Some("DESCENDING") => true,
            Some(other) => return Err(invalid(format!("Invalid SortOrder {other}"))),
        };
        let sort_field = match input.str_opt("SortBy")? {
            None => None,
            Some(f @ ("arn" | "id" | "name" | "lastRecordId")) => Some(f.to_ascii_lowercase()),
            Some(other) => {
                return Err(invalid(format!(
                    "Invalid SortBy {other}; expected arn, id, name or lastRecordId"
                )))
            }
        };
        let mut found: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.caller == ctx.caller && !r.terminated)
            .filter(|r| !same_key_only || r.access_key_id.as_deref() == ctx.access_key_id)
            .filter(|r| terms.iter().all(|t| t.matches(r, ctx.region)))
            .collect();
        if let Some(field) = &sort_field {
            found.sort_by_key(|r| r.search_field(field, ctx.region));
            if descending {
                found.reverse();
            }
        }
        let total = found.len();
        let (page, next) = paginate(
            found,
            i64::try_from(page_size).ok(),
            input.str_opt("PageToken")?,
            page_size,
            100,
            Service::ServiceCatalog,
        )?;
        let mut out = json!({
            "ProvisionedProducts": page.iter().map(|r| r.provisioned_product(ctx.region)).collect::<Vec<_>>(),
            "TotalResultsCount": total,
        });
        if let Some(token) = next {
            out["NextPageToken"] = json!(token);
        }
        Ok(out)
    }

    fn create_portfolio(
        &mut self,
        ctx: &mut ScCtx<'_>,
        input: &Input<'_>,
    ) -> Result<Value, ApiError> {
        let display_name = input.str_req("DisplayName")?;
        let provider_name = input.str_req("ProviderName")?;
        let token = input.str_req("IdempotencyToken")?;
        let existing = self
            .portfolios
            .iter()
            .find(|p| p.owner == ctx.caller && p.token.as_deref() == Some(token));
        let portfolio = match existing {
            Some(p) => p.clone(),
            None => {
                let p = Portfolio {
                    id: format!("port-{}", ctx.ids.alnum(13)),
                    owner: ctx.caller.to_string(),
                    display_name: display_name.to_string(),
                    description: input.str_opt("Description")?.map(str::to_string),
                    provider_name: provider_name.to_string(),
                    created_ms: ctx.epoch_ms,
                    token: Some(token.to_string()),
                };
                self.portfolios.push(p.clone());
                p
            }
        };
        Ok(json!({ "PortfolioDetail": portfolio.detail(ctx.region), "Tags": [] }))
    }

    fn owned_portfolio(&self, caller: &str, id: &str) -> Result<&Portfolio, ApiError> {
        self.portfolios
            .iter()
            .find(|p| p.id == id && p.owner == caller)
            .ok_or_else(|| ApiError::not_found(format!("Portfolio {id} not found")))
    }

    /// `AccountId` or `OrganizationNode` (exactly one), and whether it was a node.
    fn share_target(input: &Input<'_>) -> Result<(ShareTarget, bool), ApiError> {
        let account = input.str_opt("AccountId")?;
        let node = input.object_opt("OrganizationNode")?;
        match (account, node) {
            (Some(a), None) => Ok((ShareTarget::Account(a.to_string()), false)),
            (None, Some(node)) => {
                let value = node.str_req("Value")?.to_string();
                let target = match node.str_req("Type")? {
                    "ACCOUNT" => ShareTarget::Account(value),
                    "ORGANIZATION" => ShareTarget::Organization(value),
                    "ORGANIZATIONAL_UNIT" => ShareTarget::OrganizationalUnit(value),
                    other => return Err(invalid(format!("Invalid OrganizationNode type {other}"))),
                };
                Ok((target, true))
            }
            _ => Err(invalid(
                "Specify exactly one of AccountId and OrganizationNode",
            )),
        }
    }

    /// Follows a share or unshare with an organization node; returns its token.
    fn track_share(
        &mut self,
        ctx: &mut ScCtx<'_>,
        portfolio_id: &str,
        target: &ShareTarget,
    ) -> String {
        let token = format!("share-{}", ctx.ids.alnum(13));
        self.share_operations.push(ShareOperation::new(
            token.clone(),
            ctx.caller,
            portfolio_id,
            target,
            ctx.org.org(),
        ));
        token
    }

    fn create_portfolio_share(
        &mut self,
        ctx: &mut ScCtx<'_>,
        input: &Input<'_>,
    ) -> Result<Value, ApiError> {
        let portfolio_id = input.str_req("PortfolioId")?;
        self.owned_portfolio(ctx.caller, portfolio_id)?;
        let (target, by_node) = Self::share_target(input)?;
        let share_principals = input.bool_opt("SharePrincipals")?.unwrap_or(false);
        if share_principals && matches!(target, ShareTarget::Account(_)) {
            return Err(invalid(
                "SharePrincipals is only supported for shares with an organization node of type ORGANIZATION or ORGANIZATIONAL_UNIT",
            ));
        }
        if !self
            .shares
            .iter()
            .any(|s| s.portfolio_id == portfolio_id && s.target == target)
        {
            self.shares.push(Share {
                portfolio_id: portfolio_id.to_string(),
                target: target.clone(),
                share_principals,
            });
        }
        if by_node {
            let token = self.track_share(ctx, portfolio_id, &target);
            Ok(json!({ "PortfolioShareToken": token }))
        } else {
            Ok(json!({}))
        }
    }

    /// Stops sharing; accounts no remaining share covers lose their import (and with it the
    /// right to associate principals).
    fn delete_portfolio_share(
        &mut self,
        ctx: &mut ScCtx<'_>,
        input: &Input<'_>,
    ) -> Result<Value, ApiError> {
        let portfolio_id = input.str_req("PortfolioId")?;
        self.owned_portfolio(ctx.caller, portfolio_id)?;
        let (target, by_node) = Self::share_target(input)?;
        let Some(index) = self
            .shares
            .iter()
            .position(|s| s.portfolio_id == portfolio_id && s.target == target)
        else {
            return Err(ApiError::not_found(format!(
                "Portfolio {portfolio_id} is not shared with {}",
                target.value()
            )));
        };
        self.shares.remove(index);
        let org = ctx.org.org();
        let shares = &self.shares;
        self.accepted.retain(|(p, account)| {
            p != portfolio_id
                || shares
                    .iter()
                    .any(|s| &s.portfolio_id == p && s.target.covers(account, org))
        });
        if by_node {
            let token = self.track_share(ctx, portfolio_id, &target);
            Ok(json!({ "PortfolioShareToken": token }))
        } else {
            Ok(json!({}))
        }
    }

    fn describe_portfolio_share_status(
        &self,
        ctx: &ScCtx<'_>,
        input: &Input<'_>,
    ) -> Result<Value, ApiError> {
        let token = input.str_req("PortfolioShareToken")?;
        self.share_operations
            .iter()
            .find(|op| op.token == token && op.owner == ctx.caller)
            .map(ShareOperation::describe)
            .ok_or_else(|| ApiError::not_found(format!("Portfolio share token {token} not found")))
    }

    fn accept_portfolio_share(
        &mut self,
        ctx: &ScCtx<'_>,
        input: &Input<'_>,
    ) -> Result<Value, ApiError> {
        let portfolio_id = input.str_req("PortfolioId")?;
        let share_type = input.str_opt("PortfolioShareType")?.unwrap_or("IMPORTED");
        let org = ctx.org.org();
        let shared = self.shares.iter().any(|s| {
            s.portfolio_id == portfolio_id
                && s.target.covers(ctx.caller, org)
                && match &s.target {
                    ShareTarget::Account(_) => share_type == "IMPORTED",
                    _ => share_type == "AWS_ORGANIZATIONS",
                }
        });
        if !shared {
            return Err(ApiError::not_found(format!(
                "Portfolio {portfolio_id} is not shared with account {}",
                ctx.caller
            )));
        }
        self.accepted
            .insert((portfolio_id.to_string(), ctx.caller.to_string()));
        Ok(json!({}))
    }

    fn associate_principal(
        &mut self,
        ctx: &ScCtx<'_>,
        input: &Input<'_>,
    ) -> Result<Value, ApiError> {
        let portfolio_id = input.str_req("PortfolioId")?;
        let principal = input.str_req("PrincipalARN")?;
        let principal_type = input.str_req("PrincipalType")?;
        let visible = self.owned_portfolio(ctx.caller, portfolio_id).is_ok()
            || self
                .accepted
                .contains(&(portfolio_id.to_string(), ctx.caller.to_string()));
        if !visible {
            return Err(ApiError::not_found(format!(
                "Portfolio {portfolio_id} not found"
            )));
        }
        if principal_type != "IAM" && principal_type != "IAM_PATTERN" {
            return Err(invalid(format!("Invalid PrincipalType {principal_type}")));
        }
        let in_account = principal_type == "IAM_PATTERN"
            || principal.starts_with(&format!("arn:aws:iam::{}:", ctx.caller));
        if !principal.starts_with("arn:aws:iam::") || !in_account {
            return Err(invalid(format!("Invalid PrincipalARN {principal}")));
        }
        let association = json!({
            "PortfolioId": portfolio_id,
            "AccountId": ctx.caller,
            "PrincipalARN": principal,
            "PrincipalType": principal_type,
        });
        if !self.associations.contains(&association) {
            self.associations.push(association);
        }
        Ok(json!({}))
    }

    /// The principals that may use a portfolio in the caller's account: its own associations,
    /// plus, in an account that imported the portfolio through an organization-node share made
    /// with `SharePrincipals=true`, the owner's `IAM_PATTERN` associations.
    fn list_principals(&self, ctx: &ScCtx<'_>, input: &Input<'_>) -> Result<Value, ApiError> {
        let portfolio_id = input.str_req("PortfolioId")?;
        let owner = match self.portfolios.iter().find(|p| p.id == portfolio_id) {
            Some(p) => p.owner.clone(),
            None => {
                return Err(ApiError::not_found(format!(
                    "Portfolio {portfolio_id} not found"
                )))
            }
        };
        let imported = self
            .accepted
            .contains(&(portfolio_id.to_string(), ctx.caller.to_string()));
        if owner != ctx.caller && !imported {
            return Err(ApiError::not_found(format!(
                "Portfolio {portfolio_id} not found"
            )));
        }
        let org = ctx.org.org();
        let principals_shared = owner != ctx.caller
            && self.shares.iter().any(|s| {
                s.portfolio_id == portfolio_id
                    && s.share_principals
                    && s.target.covers(ctx.caller, org)
            });
        let principals: Vec<Value> = self
            .associations
            .iter()
            .filter(|a| a["PortfolioId"] == portfolio_id)
            .filter(|a| {
                a["AccountId"] == ctx.caller
                    || (principals_shared
                        && a["AccountId"] == owner.as_str()
                        && a["PrincipalType"] == "IAM_PATTERN")
            })
            .map(|a| {
                json!({
                    "PrincipalARN": a["PrincipalARN"],
                    "PrincipalType": a["PrincipalType"],
                })
            })
            .collect();
        Ok(json!({ "Principals": principals }))
    }

    /// Terminates a provisioned product (by name or id): it leaves the listings and its name
    /// can be used again. (The account an Account Factory product created stays; AWS would
    /// unmanage it.)
    fn terminate_provisioned_product(
        &mut self,
        ctx: &mut ScCtx<'_>,
        input: &Input<'_>,
    ) -> Result<Value, ApiError> {
        input.str_req("TerminateToken")?;
        let name = input.str_opt("ProvisionedProductName")?;
        let id = input.str_opt("ProvisionedProductId")?;
        if name.is_some() == id.is_some() {
            return Err(invalid(
                "Specify exactly one of ProvisionedProductName and ProvisionedProductId",
            ));
        }
        let record = self
            .records
            .iter_mut()
            .find(|r| {
                r.caller == ctx.caller
                    && !r.terminated
                    && (name == Some(r.provisioned_product_name.as_str())
                        || id == Some(r.provisioned_product_id.as_str()))
            })
            .ok_or_else(|| ApiError::not_found("Provisioned product not found"))?;
        if record.in_flight() {
            return Err(ApiError::new(
                "ResourceInUseException",
                format!(
                    "Provisioned product {} is under change",
                    record.provisioned_product_id
                ),
            ));
        }
        record.terminated = true;
        record.updated_ms = ctx.epoch_ms;
        let detail = json!({
            "RecordId": format!("rec-{}", ctx.ids.alnum(13)),
            "ProvisionedProductName": record.provisioned_product_name,
            "Status": "SUCCEEDED",
            "CreatedTime": epoch_seconds(ctx.epoch_ms),
            "UpdatedTime": epoch_seconds(ctx.epoch_ms),
            "ProvisionedProductType": "CFN_STACK",
            "RecordType": "TERMINATE_PROVISIONED_PRODUCT",
            "ProvisionedProductId": record.provisioned_product_id,
            "ProductId": record.product_id,
            "ProvisioningArtifactId": record.artifact_id,
            "RecordErrors": [],
            "RecordTags": [],
        });
        Ok(json!({ "RecordDetail": detail }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_ou_forms() {
        assert_eq!(parse_managed_ou("Sandbox"), ("Sandbox".to_string(), None));
        assert_eq!(
            parse_managed_ou("Sandbox (ou-ab12-cd34ef56)"),
            ("Sandbox".to_string(), Some("ou-ab12-cd34ef56".to_string()))
        );
        assert_eq!(
            parse_managed_ou("My (team)"),
            ("My (team)".to_string(), None)
        );
    }
}
