//! Thin adapters around the Service Catalog and Organizations calls account vending makes. Each
//! records itself in the request's `CallLog` and turns SDK errors into classified errors.

use aws_sdk_servicecatalog::types::{
    AccessLevelFilter, AccessLevelFilterKey, PortfolioShareType, PrincipalType,
    ProductViewFilterBy, ProvisionedProductViewFilterBy, ProvisioningArtifactGuidance,
    ProvisioningParameter,
};
use aws_sdk_servicecatalog::Client as Catalog;
use shared::error::aws_error;
use shared::report::{CallLog, Side};
use shared::{error::Error, error::Retry};

/// The Account Factory product and the provisioning artifact to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub artifact_id: String,
}

/// A record as far as vending cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub status: String,
    /// (code, description).
    pub errors: Vec<(String, String)>,
    /// (key, value).
    pub outputs: Vec<(String, String)>,
}

impl Record {
    pub fn output(&self, key: &str) -> Option<&str> {
        self.outputs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The product named `name` (exact match) and its newest active, non-deprecated artifact.
pub async fn find_product(
    catalog: &Catalog,
    name: &str,
    calls: &CallLog,
) -> Result<Product, Error> {
    let mut token = None;
    let product_id = loop {
        calls.record(Side::Own, "servicecatalog:SearchProductsAsAdmin", false);
        let out = catalog
            .search_products_as_admin()
            .filters(ProductViewFilterBy::FullTextSearch, vec![name.to_string()])
            // The API's largest page for this operation (its model: PageSize 0..20).
            .page_size(20)
            .set_page_token(token)
            .send()
            .await
            .map_err(|e| aws_error("servicecatalog", "SearchProductsAsAdmin", e))?;
        if let Some(id) = out
            .product_view_details()
            .iter()
            .filter_map(|d| d.product_view_summary())
            .find(|s| s.name() == Some(name))
            .and_then(|s| s.product_id())
        {
            break id.to_string();
        }
        token = out
            .next_page_token()
            .map(str::to_string)
            .filter(|t| !t.is_empty());
        if token.is_none() {
            return Err(Error::Config(format!(
                "no Service Catalog product named {name:?} is visible: is Account Factory set up in this region, and is this function's role associated with the Account Factory portfolio?"
            )));
        }
    };
    calls.record(Side::Own, "servicecatalog:ListProvisioningArtifacts", false);
    let out = catalog
        .list_provisioning_artifacts()
        .product_id(&product_id)
        .send()
        .await
        .map_err(|e| aws_error("servicecatalog", "ListProvisioningArtifacts", e))?;
    let artifact = out
        .provisioning_artifact_details()
        .iter()
        .filter(|a| a.active() != Some(false))
        .filter(|a| a.guidance() != Some(&ProvisioningArtifactGuidance::Deprecated))
        .max_by_key(|a| a.created_time().map(|t| (t.secs(), t.subsec_nanos())))
        .and_then(|a| a.id())
        .ok_or_else(|| {
            Error::Config(format!(
                "product {name:?} ({product_id}) has no active provisioning artifact"
            ))
        })?;
    Ok(Product {
        id: product_id,
        artifact_id: artifact.to_string(),
    })
}

/// How many provisioned products of `product_id` are being changed right now (each one is a
/// Control Tower account operation in flight).
pub async fn operations_in_flight(
    catalog: &Catalog,
    product_id: &str,
    calls: &CallLog,
) -> Result<u32, Error> {
    let mut count = 0u32;
    let mut token = None;
    loop {
        calls.record(Side::Own, "servicecatalog:SearchProvisionedProducts", false);
        let out = catalog
            .search_provisioned_products()
            .access_level_filter(
                AccessLevelFilter::builder()
                    .key(AccessLevelFilterKey::Account)
                    .value("self")
                    .build(),
            )
            .filters(
                ProvisionedProductViewFilterBy::SearchQuery,
                vec!["status:UNDER_CHANGE".to_string()],
            )
            .page_size(100)
            .set_page_token(token)
            .send()
            .await
            .map_err(|e| aws_error("servicecatalog", "SearchProvisionedProducts", e))?;
        count += u32::try_from(
            out.provisioned_products()
                .iter()
                .filter(|p| p.product_id() == Some(product_id))
                .filter(|p| p.status().map(|s| s.as_str()) == Some("UNDER_CHANGE"))
                .count(),
        )
        .unwrap_or(u32::MAX);
        token = out
            .next_page_token()
            .map(str::to_string)
            .filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(count);
        }
    }
}

/// What ProvisionProduct needs.
pub struct Provision<'a> {
    pub product: &'a Product,
    pub name: &'a str,
    pub token: &'a str,
    pub parameters: Vec<(&'static str, String)>,
}

/// True when Control Tower refused because another of its operations is running: AWS answers
/// `ResourceInUseException` ("Account Factory cannot create this enrolled account right now,
/// because another execution is in progress"), and has been seen answering other codes (such
/// as `InvalidParametersException`) with "another … operation is in progress" wording. Busy is
/// temporary whatever the code.
pub fn is_busy(e: &Error) -> bool {
    let Error::Aws { code, message, .. } = e else {
        return false;
    };
    let message = message.to_ascii_lowercase();
    code == "ResourceInUseException"
        || message.contains("operation is in progress")
        || message.contains("execution is in progress")
        || (message.contains("another") && message.contains("in progress"))
}

pub async fn provision(
    catalog: &Catalog,
    p: &Provision<'_>,
    calls: &CallLog,
) -> Result<Record, Error> {
    calls.record(Side::Own, "servicecatalog:ProvisionProduct", true);
    let out = catalog
        .provision_product()
        .product_id(&p.product.id)
        .provisioning_artifact_id(&p.product.artifact_id)
        .provisioned_product_name(p.name)
        .provision_token(p.token)
        .set_provisioning_parameters(Some(
            p.parameters
                .iter()
                .map(|(k, v)| ProvisioningParameter::builder().key(*k).value(v).build())
                .collect(),
        ))
        .send()
        .await
        .map_err(|e| {
            let e = aws_error("servicecatalog", "ProvisionProduct", e);
            if is_busy(&e) {
                // Busy is temporary by nature, whatever code carries it.
                if let Error::Aws {
                    service,
                    operation,
                    code,
                    message,
                    ..
                } = e
                {
                    return Error::Aws {
                        service,
                        operation,
                        code,
                        message,
                        retry: Retry::Retryable,
                    };
                }
            }
            e
        })?;
    let detail = out
        .record_detail()
        .ok_or_else(|| missing("ProvisionProduct", "RecordDetail"))?;
    Ok(record(detail, &[]))
}

pub async fn describe_record(
    catalog: &Catalog,
    id: &str,
    calls: &CallLog,
) -> Result<Record, Error> {
    calls.record(Side::Own, "servicecatalog:DescribeRecord", false);
    let out = catalog
        .describe_record()
        .id(id)
        .send()
        .await
        .map_err(|e| aws_error("servicecatalog", "DescribeRecord", e))?;
    let detail = out
        .record_detail()
        .ok_or_else(|| missing("DescribeRecord", "RecordDetail"))?;
    let outputs: Vec<(String, String)> = out
        .record_outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect();
    Ok(record(detail, &outputs))
}

fn record(
    detail: &aws_sdk_servicecatalog::types::RecordDetail,
    outputs: &[(String, String)],
) -> Record {
    Record {
        id: detail.record_id().unwrap_or_default().to_string(),
        status: detail
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        errors: detail
            .record_errors()
            .iter()
            .map(|e| {
                (
                    e.code().unwrap_or_default().to_string(),
                    e.description().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        outputs: outputs.to_vec(),
    }
}

/// Tags the new account (management side).
pub async fn tag_account(
    org: &aws_sdk_organizations::Client,
    account_id: &str,
    key: &str,
    value: &str,
    calls: &CallLog,
) -> Result<(), Error> {
    calls.record(Side::Own, "organizations:TagResource", true);
    let tag = aws_sdk_organizations::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| Error::InvalidInput(format!("account tag: {e}")))?;
    org.tag_resource()
        .resource_id(account_id)
        .tags(tag)
        .send()
        .await
        .map_err(|e| aws_error("organizations", "TagResource", e))?;
    Ok(())
}

/// CreatePortfolioShare to one account (management side); an existing share is fine.
pub async fn share_portfolio(
    catalog: &Catalog,
    portfolio_id: &str,
    account_id: &str,
    calls: &CallLog,
) -> Result<(), Error> {
    calls.record(Side::Own, "servicecatalog:CreatePortfolioShare", true);
    match catalog
        .create_portfolio_share()
        .portfolio_id(portfolio_id)
        .account_id(account_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => match aws_error("servicecatalog", "CreatePortfolioShare", e) {
            Error::Aws { code, .. } if code == "DuplicateResourceException" => Ok(()),
            other => Err(other),
        },
    }
}

/// AcceptPortfolioShare (member side, an account share).
pub async fn accept_share(
    catalog: &Catalog,
    portfolio_id: &str,
    calls: &CallLog,
) -> Result<(), Error> {
    calls.record(Side::Member, "servicecatalog:AcceptPortfolioShare", true);
    catalog
        .accept_portfolio_share()
        .portfolio_id(portfolio_id)
        .portfolio_share_type(PortfolioShareType::Imported)
        .send()
        .await
        .map_err(|e| aws_error("servicecatalog", "AcceptPortfolioShare", e))?;
    Ok(())
}

/// AssociatePrincipalWithPortfolio (member side).
pub async fn associate_principal(
    catalog: &Catalog,
    portfolio_id: &str,
    principal_arn: &str,
    principal_type: &str,
    calls: &CallLog,
) -> Result<(), Error> {
    calls.record(
        Side::Member,
        "servicecatalog:AssociatePrincipalWithPortfolio",
        true,
    );
    catalog
        .associate_principal_with_portfolio()
        .portfolio_id(portfolio_id)
        .principal_arn(principal_arn)
        .principal_type(PrincipalType::from(principal_type))
        .send()
        .await
        .map_err(|e| aws_error("servicecatalog", "AssociatePrincipalWithPortfolio", e))?;
    Ok(())
}

fn missing(operation: &str, field: &str) -> Error {
    Error::Aws {
        service: "servicecatalog",
        operation: "response",
        code: "MissingField".to_string(),
        message: format!("{operation} response has no {field}"),
        retry: Retry::Retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(code: &str, message: &str) -> Error {
        Error::Aws {
            service: "servicecatalog",
            operation: "ProvisionProduct",
            code: code.into(),
            message: message.into(),
            retry: Retry::Permanent,
        }
    }

    #[test]
    fn control_tower_busy_whatever_the_code() {
        for (code, message) in [
            (
                "ResourceInUseException",
                "Account Factory cannot create this enrolled account right now, because another execution is in progress",
            ),
            ("ResourceInUseException", "anything"),
            (
                "InvalidParametersException",
                "AWS Control Tower cannot provision the account because another AWS Control Tower operation is in progress. Try again later.",
            ),
            ("ValidationException", "Another execution is in progress"),
        ] {
            assert!(is_busy(&aws(code, message)), "{code}: {message}");
        }
        for (code, message) in [
            (
                "InvalidParametersException",
                "A stack named Sandbox-7 already exists.",
            ),
            ("ResourceNotFoundException", "Product not found"),
        ] {
            assert!(!is_busy(&aws(code, message)), "{code}: {message}");
        }
        assert!(!is_busy(&Error::InvalidInput("in progress".into())));
    }
}
