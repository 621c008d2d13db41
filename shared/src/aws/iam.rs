//! IAM: the service-linked roles License Manager needs in an account.

use crate::error::{aws_error, Error};
use crate::report::{CallLog, Side};

/// The service-linked roles every member account needs, looked up by path (names differ
/// between implementations; paths do not).
pub(crate) const MEMBER_SLR_SERVICES: &[&str] = &[
    "license-manager.amazonaws.com",
    "license-manager.member-account.amazonaws.com",
    "license-management.marketplace.amazonaws.com",
];

/// Paths of the service-linked roles present in the member account.
pub(crate) async fn service_role_paths(
    iam: &aws_sdk_iam::Client,
    calls: &CallLog,
) -> Result<Vec<String>, Error> {
    service_role_paths_as(iam, Side::Member, calls).await
}

/// Paths of the service-linked roles present in the account `iam` acts in.
pub(crate) async fn service_role_paths_as(
    iam: &aws_sdk_iam::Client,
    side: Side,
    calls: &CallLog,
) -> Result<Vec<String>, Error> {
    let mut paths = Vec::new();
    let mut pages = iam
        .list_roles()
        .path_prefix("/aws-service-role/")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        calls.record(side, "iam:ListRoles", false);
        let page = page.map_err(|e| aws_error("iam", "ListRoles", e))?;
        paths.extend(page.roles().iter().map(|r| r.path().to_string()));
        // The paginator follows `Marker`; a page that says it is the last ends the listing
        // even if it carries one, as the loop this replaced did.
        if !page.is_truncated() {
            break;
        }
    }
    Ok(paths)
}

/// Creates one SLR; "already there" (AWS: InvalidInput "has been taken"; moto:
/// EntityAlreadyExists) is success. Returns true when it was created now.
pub(crate) async fn create_slr(
    iam: &aws_sdk_iam::Client,
    service: &str,
    calls: &CallLog,
) -> Result<bool, Error> {
    create_slr_as(iam, service, Side::Member, calls).await
}

/// [`create_slr`] in the account `iam` acts in, recorded as `side`.
pub(crate) async fn create_slr_as(
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
