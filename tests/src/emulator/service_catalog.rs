//! AWS Service Catalog, the part account vending and portfolio sharing need: the
//! "AWS Control Tower Account Factory" product, ProvisionProduct/DescribeRecord, portfolios and
//! their shares. Shapes follow aws-sdk-servicecatalog.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::common::{control_tower_time, epoch_seconds, ApiError, IdGen, Input, Service};
use super::org::OrgView;
use super::Switches;

/// The Account Factory product's name.
pub const ACCOUNT_FACTORY: &str = "AWS Control Tower Account Factory";
/// The message returned while too many Control Tower operations are in flight.
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
            "Name": "AWS Control Tower Account Factory",
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
    product_id: String,
    artifact_id: String,
    provisioned_product_id: String,
    provisioned_product_name: String,
    params: BTreeMap<String, String>,
    account_factory: bool,
    status: String,
    completing: bool,
    created_ms: u64,
    updated_ms: u64,
    ready_at: Instant,
    outputs: Vec<Value>,
    errors: Vec<Value>,
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

#[derive(Debug, Clone)]
struct Share {
    portfolio_id: String,
    target: ShareTarget,
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
    accepted: BTreeSet<(String, String)>,
    associations: Vec<Value>,
    /// Control Tower lifecycle events (EventBridge envelopes) produced by account vending.
    pub events: Vec<Value>,
}

/// Everything one Service Catalog call may use besides its input.
pub struct ScCtx<'a> {
    pub caller: &'a str,
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
            "portfolios": self.portfolios.iter().map(|p| {
                let mut v = p.detail("us-east-1");
                v["Owner"] = json!(p.owner);
                v
            }).collect::<Vec<_>>(),
            "portfolioShares": self.shares.iter().map(|s| json!({
                "PortfolioId": s.portfolio_id,
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
    pub fn org_need(&self, op: &str) -> Option<BTreeSet<String>> {
        if op != "AcceptPortfolioShare" {
            return None;
        }
        Some(
            self.shares
                .iter()
                .filter_map(|s| match &s.target {
                    ShareTarget::OrganizationalUnit(ou) => Some(ou.clone()),
                    _ => None,
                })
                .collect(),
        )
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
            "CreatePortfolioShare" => self.create_portfolio_share(ctx, &input),
            "AcceptPortfolioShare" => self.accept_portfolio_share(ctx, &input),
            "AssociatePrincipalWithPortfolio" => self.associate_principal(ctx, &input),
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
                "Name": "AWS Control Tower Account Factory",
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
            || artifact_name.is_some_and(|a| a != "AWS Control Tower Account Factory")
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
                return Err(invalid(CONTROL_TOWER_BUSY));
            }
        }
        if self
            .records
            .iter()
            .any(|r| r.provisioned_product_name == name && r.status != "FAILED")
        {
            return Err(ApiError::new(
                "DuplicateResourceException",
                format!("A provisioned product with the name {name} already exists"),
            ));
        }
        let record = Record {
            id: format!("rec-{}", ctx.ids.alnum(13)),
            caller: ctx.caller.to_string(),
            product_id: product.id.clone(),
            artifact_id: product.artifact_id.clone(),
            provisioned_product_id: format!("pp-{}", ctx.ids.alnum(13)),
            provisioned_product_name: name.to_string(),
            params,
            account_factory: product.account_factory,
            status: "CREATED".to_string(),
            completing: false,
            created_ms: ctx.epoch_ms,
            updated_ms: ctx.epoch_ms,
            ready_at: ctx.now + Duration::from_millis(ctx.switches.provisioning_ms),
            outputs: Vec::new(),
            errors: Vec::new(),
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

    fn create_portfolio_share(
        &mut self,
        ctx: &mut ScCtx<'_>,
        input: &Input<'_>,
    ) -> Result<Value, ApiError> {
        let portfolio_id = input.str_req("PortfolioId")?;
        self.owned_portfolio(ctx.caller, portfolio_id)?;
        let account = input.str_opt("AccountId")?;
        let node = input.object_opt("OrganizationNode")?;
        let by_node = node.is_some();
        let target = match (account, node) {
            (Some(a), None) => ShareTarget::Account(a.to_string()),
            (None, Some(node)) => {
                let value = node.str_req("Value")?.to_string();
                match node.str_req("Type")? {
                    "ACCOUNT" => ShareTarget::Account(value),
                    "ORGANIZATION" => ShareTarget::Organization(value),
                    "ORGANIZATIONAL_UNIT" => ShareTarget::OrganizationalUnit(value),
                    other => return Err(invalid(format!("Invalid OrganizationNode type {other}"))),
                }
            }
            _ => {
                return Err(invalid(
                    "Specify exactly one of AccountId and OrganizationNode",
                ))
            }
        };
        if !self
            .shares
            .iter()
            .any(|s| s.portfolio_id == portfolio_id && s.target == target)
        {
            self.shares.push(Share {
                portfolio_id: portfolio_id.to_string(),
                target,
            });
        }
        if by_node {
            Ok(json!({ "PortfolioShareToken": format!("share-{}", ctx.ids.alnum(13)) }))
        } else {
            Ok(json!({}))
        }
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
                && match &s.target {
                    ShareTarget::Account(a) => a == ctx.caller && share_type == "IMPORTED",
                    ShareTarget::Organization(o) => {
                        share_type == "AWS_ORGANIZATIONS"
                            && org.is_some_and(|org| {
                                &org.id == o && org.accounts.contains(ctx.caller)
                            })
                    }
                    ShareTarget::OrganizationalUnit(ou) => {
                        share_type == "AWS_ORGANIZATIONS"
                            && org.is_some_and(|org| {
                                org.ou_members
                                    .get(ou)
                                    .is_some_and(|m| m.contains(ctx.caller))
                            })
                    }
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
