//! `Custom::MarketplacePortfolioShare`: shares the portfolio holding the Marketplace products
//! with the organization, chosen OUs or accounts (CloudFormation's own
//! `AWS::ServiceCatalog::PortfolioShare` takes one account only). Runs in the management
//! account (or Service Catalog's delegated administrator), with AWS Organizations access
//! enabled for Service Catalog.

use aws_sdk_servicecatalog::types::{OrganizationNode, OrganizationNodeType, ShareStatus};
use serde_json::Value;
use shared::custom_resource::{Response, Target};
use shared::error::aws_error;
use shared::error::Error;
use shared::error::ErrorReport;
use shared::ids::is_ou_id;
use shared::report::{CallLog, Side};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// The custom resource type.
pub const RESOURCE_TYPE: &str = "Custom::MarketplacePortfolioShare";
const PHYSICAL_PREFIX: &str = "portfolio-share:";

/// Who a portfolio is shared with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    Organization(String),
    OrganizationalUnit(String),
    Account(String),
}

impl Node {
    fn parse(raw: &str) -> Result<Self, Error> {
        let raw = raw.trim();
        let org_ok = raw.strip_prefix("o-").is_some_and(|rest| {
            (10..=32).contains(&rest.len())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if org_ok {
            Ok(Node::Organization(raw.to_string()))
        } else if is_ou_id(raw) {
            Ok(Node::OrganizationalUnit(raw.to_string()))
        } else if raw.len() == 12 && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Node::Account(raw.to_string()))
        } else {
            Err(invalid(format!(
                "ShareWith entry {raw:?} is not an organization id (o-…), an OU id (ou-…) or an account id"
            )))
        }
    }

    fn value(&self) -> &str {
        match self {
            Node::Organization(v) | Node::OrganizationalUnit(v) | Node::Account(v) => v,
        }
    }

    fn organization_node(&self) -> OrganizationNode {
        let kind = match self {
            Node::Organization(_) => OrganizationNodeType::Organization,
            Node::OrganizationalUnit(_) => OrganizationNodeType::OrganizationalUnit,
            Node::Account(_) => OrganizationNodeType::Account,
        };
        OrganizationNode::builder()
            .r#type(kind)
            .value(self.value())
            .build()
    }
}

/// Validated properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareProperties {
    pub portfolio_id: String,
    pub nodes: Vec<Node>,
    /// `SharePrincipals` of organization and OU shares (default true): without it, the
    /// portfolio's principal associations (an `IAM_PATTERN` for IAM Identity Center roles) do not
    /// reach member accounts, and nobody there can launch the products. Account shares cannot
    /// carry principals: the recipient associates its own.
    pub share_principals: bool,
}

/// `PortfolioId` (port-…) and `ShareWith` (a list, or a comma-separated string, of o-…, ou-…
/// or account ids); optionally `SharePrincipals` (default true) and CloudFormation's
/// `ServiceTimeout`.
pub fn parse_properties(props: &Value) -> Result<ShareProperties, Error> {
    let obj = props
        .as_object()
        .ok_or_else(|| invalid("ResourceProperties must be an object"))?;
    if let Some(unknown) = obj.keys().find(|k| {
        ![
            "ServiceToken",
            "PortfolioId",
            "ShareWith",
            "SharePrincipals",
            "ServiceTimeout",
        ]
        .contains(&k.as_str())
    }) {
        return Err(invalid(format!(
            "unknown property {unknown:?}; expected PortfolioId and ShareWith, optionally SharePrincipals and ServiceTimeout"
        )));
    }
    shared::custom_resource::service_timeout(props)?;
    let share_principals = match obj.get("SharePrincipals") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(invalid("SharePrincipals must be true or false")),
    };
    let portfolio_id = obj
        .get("PortfolioId")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let id_ok = portfolio_id
        .strip_prefix("port-")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !id_ok {
        return Err(invalid(format!(
            "PortfolioId {portfolio_id:?} is not a portfolio id (port-…)"
        )));
    }
    let raw: Vec<String> = match obj.get("ShareWith") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid("ShareWith entries must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::String(s)) => s.split(',').map(str::to_string).collect(),
        _ => return Err(invalid("ShareWith must list o-…, ou-… or account ids")),
    };
    let mut nodes: Vec<Node> = raw
        .iter()
        .filter(|r| !r.trim().is_empty())
        .map(|r| Node::parse(r))
        .collect::<Result<_, _>>()?;
    nodes.sort();
    nodes.dedup();
    if nodes.is_empty() {
        return Err(invalid(
            "ShareWith must list at least one o-…, ou-… or account id",
        ));
    }
    Ok(ShareProperties {
        portfolio_id,
        nodes,
        share_principals,
    })
}

/// Create and Update: add the shares that are new, remove the ones no longer listed (same
/// portfolio only: a new portfolio is a new physical id, and CloudFormation deletes the old
/// resource), then follow the organization shares until done or time is up.
pub async fn ensure(
    catalog: &aws_sdk_servicecatalog::Client,
    target: &Target,
    properties: &Value,
    old_properties: Option<&Value>,
    poll: Duration,
    work_deadline: Instant,
) -> Response {
    let fallback = target
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| format!("not-shared-{}", target.request_id));
    let props = match parse_properties(properties) {
        Ok(p) => p,
        Err(e) => return Response::failed(target, fallback, reason_of(&e)),
    };
    let physical = format!("{PHYSICAL_PREFIX}{}", props.portfolio_id);
    let old_nodes: Vec<Node> = old_properties
        .and_then(|v| parse_properties(v).ok())
        .filter(|old| old.portfolio_id == props.portfolio_id)
        .map(|old| old.nodes)
        .unwrap_or_default();
    let calls = CallLog::default();
    let tokens = match change_shares(catalog, &props, &old_nodes, &calls).await {
        Ok(tokens) => tokens,
        Err(e) => return Response::failed(target, physical, reason_of(&e)),
    };
    match follow_shares(catalog, &props, &tokens, poll, work_deadline, &calls).await {
        Ok(pending) => shared(target, physical, &props, &pending),
        Err(reason) => Response::failed(target, physical, reason),
    }
}

/// Adds the shares that are new, then removes the ones no longer listed; the share tokens of
/// the organization-node shares added.
async fn change_shares(
    catalog: &aws_sdk_servicecatalog::Client,
    props: &ShareProperties,
    old_nodes: &[Node],
    calls: &CallLog,
) -> Result<Vec<(Node, String)>, Error> {
    let mut tokens = Vec::new();
    for node in props.nodes.iter().filter(|n| !old_nodes.contains(n)) {
        if let Some(token) = create_share(
            catalog,
            &props.portfolio_id,
            node,
            props.share_principals,
            calls,
        )
        .await?
        {
            tokens.push((node.clone(), token));
        }
    }
    for node in old_nodes.iter().filter(|n| !props.nodes.contains(n)) {
        delete_share(catalog, &props.portfolio_id, node, calls).await?;
    }
    Ok(tokens)
}

/// Organization and OU shares complete asynchronously: follows them while time remains. `Ok`:
/// the nodes still propagating when time was up; `Err`: why the share failed.
async fn follow_shares(
    catalog: &aws_sdk_servicecatalog::Client,
    props: &ShareProperties,
    tokens: &[(Node, String)],
    poll: Duration,
    work_deadline: Instant,
    calls: &CallLog,
) -> Result<Vec<String>, String> {
    let mut pending: Vec<String> = Vec::new();
    for (node, token) in tokens {
        loop {
            let (status, errors) = share_status(catalog, token, calls)
                .await
                .map_err(|e| reason_of(&e))?;
            match status {
                ShareStatus::Completed => break,
                ShareStatus::CompletedWithErrors | ShareStatus::Error => {
                    return Err(format!(
                        "sharing {} with {} ended {}: {}",
                        props.portfolio_id,
                        node.value(),
                        status.as_str(),
                        errors.join("; ")
                    ))
                }
                _ if Instant::now() + poll >= work_deadline => {
                    pending.push(node.value().to_string());
                    break;
                }
                _ => tokio::time::sleep(poll).await,
            }
        }
    }
    Ok(pending)
}

/// SUCCESS: the portfolio is shared (`COMPLETED`), or still propagating to `pending`
/// (`IN_PROGRESS`).
fn shared(
    target: &Target,
    physical: String,
    props: &ShareProperties,
    pending: &[String],
) -> Response {
    let shared_with: Vec<&str> = props.nodes.iter().map(Node::value).collect();
    let (status, reason) = if pending.is_empty() {
        (
            "COMPLETED",
            format!(
                "{} is shared with {}",
                props.portfolio_id,
                shared_with.join(", ")
            ),
        )
    } else {
        (
            "IN_PROGRESS",
            format!(
                "{} is shared with {}; Service Catalog is still propagating the share to {}",
                props.portfolio_id,
                shared_with.join(", "),
                pending.join(", ")
            ),
        )
    };
    Response::success(target, physical, reason).with_data(BTreeMap::from([
        ("PortfolioId".to_string(), props.portfolio_id.clone()),
        ("ShareStatus".to_string(), status.to_string()),
    ]))
}

/// Delete: removes the shares (a share already gone is fine). A resource whose Create failed
/// has nothing to remove.
pub async fn delete(
    catalog: &aws_sdk_servicecatalog::Client,
    target: &Target,
    properties: &Value,
    physical_id: &str,
) -> Response {
    let keep = physical_id.to_string();
    let props = match parse_properties(properties) {
        Ok(p) if physical_id == format!("{PHYSICAL_PREFIX}{}", p.portfolio_id) => p,
        _ => {
            return Response::success(
                target,
                keep,
                "no share was made for this resource; nothing to remove".into(),
            )
        }
    };
    let calls = CallLog::default();
    for node in &props.nodes {
        if let Err(e) = delete_share(catalog, &props.portfolio_id, node, &calls).await {
            return Response::failed(target, keep, reason_of(&e));
        }
    }
    Response::success(
        target,
        keep,
        format!(
            "stopped sharing {} with {}",
            props.portfolio_id,
            props
                .nodes
                .iter()
                .map(Node::value)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

/// CreatePortfolioShare; returns the share token of an organization-node share. Organization
/// and OU shares carry the portfolio's principals (`SharePrincipals`) unless told otherwise.
async fn create_share(
    catalog: &aws_sdk_servicecatalog::Client,
    portfolio_id: &str,
    node: &Node,
    share_principals: bool,
    calls: &CallLog,
) -> Result<Option<String>, Error> {
    calls.record(Side::Own, "servicecatalog:CreatePortfolioShare", true);
    let request = catalog.create_portfolio_share().portfolio_id(portfolio_id);
    let request = match node {
        Node::Account(id) => request.account_id(id),
        other => request
            .organization_node(other.organization_node())
            .share_principals(share_principals),
    };
    let out = request
        .send()
        .await
        .map_err(|e| aws_error("servicecatalog", "CreatePortfolioShare", e))?;
    Ok(out.portfolio_share_token().map(str::to_string))
}

async fn delete_share(
    catalog: &aws_sdk_servicecatalog::Client,
    portfolio_id: &str,
    node: &Node,
    calls: &CallLog,
) -> Result<(), Error> {
    calls.record(Side::Own, "servicecatalog:DeletePortfolioShare", true);
    let request = catalog.delete_portfolio_share().portfolio_id(portfolio_id);
    let request = match node {
        Node::Account(id) => request.account_id(id),
        other => request.organization_node(other.organization_node()),
    };
    match request.send().await {
        Ok(_) => Ok(()),
        Err(e) => match aws_error("servicecatalog", "DeletePortfolioShare", e) {
            Error::Aws { code, .. } if code == "ResourceNotFoundException" => Ok(()),
            other => Err(other),
        },
    }
}

async fn share_status(
    catalog: &aws_sdk_servicecatalog::Client,
    token: &str,
    calls: &CallLog,
) -> Result<(ShareStatus, Vec<String>), Error> {
    calls.record(
        Side::Own,
        "servicecatalog:DescribePortfolioShareStatus",
        false,
    );
    let out = catalog
        .describe_portfolio_share_status()
        .portfolio_share_token(token)
        .send()
        .await
        .map_err(|e| aws_error("servicecatalog", "DescribePortfolioShareStatus", e))?;
    let errors = out
        .share_details()
        .map(|d| {
            d.share_errors()
                .iter()
                .map(|e| {
                    format!(
                        "{}: {} ({})",
                        e.error().unwrap_or("error"),
                        e.message().unwrap_or_default(),
                        e.accounts().join(", ")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((
        out.status().cloned().unwrap_or(ShareStatus::InProgress),
        errors,
    ))
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidInput(msg.into())
}

fn reason_of(e: &Error) -> String {
    let r = ErrorReport::from(e);
    format!("{} ({}): {}", r.kind, r.retry, r.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn share_properties() {
        let p = parse_properties(&json!({
            "ServiceToken": "arn:aws:lambda:us-east-1:111111111111:function:f",
            "PortfolioId": "port-abcdefghijklm",
            "ShareWith": ["ou-ab12-cdef3456", "o-abc1234567", "ou-ab12-cdef3456", "210987654321"]
        }))
        .expect("valid");
        assert_eq!(
            p.nodes,
            vec![
                Node::Organization("o-abc1234567".into()),
                Node::OrganizationalUnit("ou-ab12-cdef3456".into()),
                Node::Account("210987654321".into()),
            ]
        );
        let p = parse_properties(
            &json!({"PortfolioId": "port-a1", "ShareWith": "ou-ab12-cdef3456, o-abc1234567"}),
        )
        .expect("comma-separated");
        assert_eq!(p.nodes.len(), 2);
        assert!(
            p.share_principals,
            "organization shares carry principals by default"
        );
        let p = parse_properties(&json!({
            "PortfolioId": "port-a1", "ShareWith": "o-abc1234567",
            "SharePrincipals": "false", "ServiceTimeout": "600"
        }))
        .expect("opt-out and ServiceTimeout");
        assert!(!p.share_principals);
        for (bad, needle) in [
            (
                json!({"PortfolioId": "p-1", "ShareWith": ["o-abc1234567"]}),
                "PortfolioId",
            ),
            (
                json!({"PortfolioId": "port-a1", "ShareWith": []}),
                "at least one",
            ),
            (
                json!({"PortfolioId": "port-a1", "ShareWith": ["r-abcd"]}),
                "\"r-abcd\"",
            ),
            (json!({"PortfolioId": "port-a1"}), "ShareWith"),
            (
                json!({"PortfolioId": "port-a1", "ShareWith": [1]}),
                "strings",
            ),
            (
                json!({"PortfolioId": "port-a1", "ShareWith": ["o-abc1234567"], "Tags": 1}),
                "unknown property",
            ),
            (
                json!({"PortfolioId": "port-a1", "ShareWith": ["o-abc1234567"], "SharePrincipals": "yes"}),
                "SharePrincipals",
            ),
            (
                json!({"PortfolioId": "port-a1", "ShareWith": ["o-abc1234567"], "ServiceTimeout": 0}),
                "ServiceTimeout",
            ),
        ] {
            match parse_properties(&bad) {
                Err(Error::InvalidInput(msg)) => assert!(msg.contains(needle), "{bad}: {msg}"),
                other => panic!("{bad}: expected invalid input, got {other:?}"),
            }
        }
    }
}
