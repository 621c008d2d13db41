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
mod sqs;
mod sts;

pub use iam::{
    create_slr, create_slr_as, service_role_paths, service_role_paths_as, MEMBER_SLR_SERVICES,
};
pub use license_manager::{
    accept_grant, activate_grant, activate_grant_as_grantor, all_distributed_grants, bulk_activate,
    create_grant, deactivate_grant, delete_grant, distributed_grants, get_grant,
    grants_to_principal, license_grants, marketplace_licenses, organization_license_grants,
    organization_received_grants, received_grants, HeldLicense, NewGrant,
};
pub use organizations::{
    account_state, account_tags, describe_member, describe_organization, list_accounts_under,
    list_organization, parent_ou, ListedAccount, MemberHints, MemberInfo, OrgInfo,
};
pub use sqs::{change_visibility, send_batch, send_coalesced, send_recheck};
pub use sts::assume_role;

/// The grant model, named here too (`crate::aws::GrantView`).
pub use crate::model::GrantView;

use crate::error::{aws_error, Error, Retry};

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

fn missing(operation: &str, field: &str) -> Error {
    Error::Aws {
        service: "aws",
        operation: "response",
        code: "MissingField".to_string(),
        message: format!("{operation} response has no {field}"),
        retry: Retry::Retryable,
    }
}
