//! Thin adapters around the AWS calls the engine makes, one file per service. Each records
//! itself in the account's `CallLog` and turns SDK errors into classified `Error`s; no decisions
//! are made here. Every adapter is re-exported here: callers name `crate::aws::X`.
//!
//! Listings read every page, one after another, and record one call per page: through the
//! SDK's paginator where the SDK has one (Organizations, IAM), the page recorded as it comes
//! back; License Manager's SDK has none, so its listings loop on `NextToken` themselves.

mod iam;
mod license_manager;
mod organizations;
mod s3;
mod sqs;
mod sts;

pub(crate) use iam::create_slr;
pub(crate) use iam::create_slr_as;
pub(crate) use iam::MEMBER_SLR_SERVICES;
pub(crate) use iam::{service_role_paths, service_role_paths_as};
pub(crate) use license_manager::activate_grant;
pub(crate) use license_manager::activate_grant_as_grantor;
pub(crate) use license_manager::bulk_activate;
pub(crate) use license_manager::deactivate_grant;
pub(crate) use license_manager::license_grants;
pub(crate) use license_manager::marketplace_licenses;
pub(crate) use license_manager::organization_license_grants;
pub(crate) use license_manager::organization_received_grants;
pub(crate) use license_manager::received_grants;
pub(crate) use license_manager::HeldLicense;
pub(crate) use license_manager::NewGrant;
pub(crate) use license_manager::{accept_grant, create_grant, delete_grant, get_grant};
pub(crate) use license_manager::{all_distributed_grants, grants_to_principal};
pub(crate) use organizations::account_state;
pub(crate) use organizations::account_tags;
pub(crate) use organizations::describe_member;
pub(crate) use organizations::list_accounts_under;
pub(crate) use organizations::list_organization;
pub(crate) use organizations::parent_ou;
pub use organizations::ListedAccount;
pub(crate) use organizations::MemberHints;
pub(crate) use organizations::MemberInfo;
pub(crate) use organizations::{describe_organization, OrgInfo};
pub use s3::read_document;
pub(crate) use sqs::change_visibility;
pub(crate) use sqs::send_batch;
pub(crate) use sqs::send_batch_chained;
pub(crate) use sqs::send_chained;
pub(crate) use sqs::send_coalesced;
pub use sqs::send_recheck;
pub use sts::assume_role;

/// The grant model, named here too (`crate::aws::GrantView`).
pub use crate::model::grant::GrantView;

use crate::error::{aws_error, Error, Retry};

/// Awaits an SDK call and classifies its error.
pub(crate) async fn aws_call<T, E, R>(
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

fn missing(operation: &str, field: &str) -> Error {
    Error::Aws {
        service: "aws",
        operation: "response",
        code: "MissingField".to_string(),
        message: format!("{operation} response has no {field}"),
        retry: Retry::Retryable,
    }
}

#[cfg(test)]
mod tests;
