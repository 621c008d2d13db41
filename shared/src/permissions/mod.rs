//! Least privilege, kept beside the code: which SDK operations each function can call with its
//! own role, and the IAM action each needs. `shared/tests/permissions.rs` proves that the
//! template's policies allow exactly these actions and that the code calls nothing unlisted;
//! the end-to-end tests check every call they observe against these lists.

/// SDK operations whose IAM action has another name. All others: `service:Operation` is both.
pub(crate) const IAM_ACTION_OF: &[(&str, &str)] = &[
    ("sqs:SendMessageBatch", "sqs:SendMessage"),
    (
        "sqs:ChangeMessageVisibilityBatch",
        "sqs:ChangeMessageVisibility",
    ),
];

/// The IAM action an SDK operation (as `service:Operation`) needs.
pub fn iam_action(operation: &str) -> &str {
    IAM_ACTION_OF
        .iter()
        .find(|(op, _)| *op == operation)
        .map(|(_, action)| *action)
        .unwrap_or(operation)
}

/// account-lifecycle, with its own role.
pub const ACCOUNT_LIFECYCLE: &[&str] = &[
    "organizations:DescribeOrganization",
    "organizations:DescribeAccount",
    "organizations:ListParents",
    "organizations:ListTagsForResource",
    "sts:AssumeRole",
    "license-manager:ListReceivedLicenses",
    "license-manager:ListDistributedGrants",
    "license-manager:CreateGrant",
    "license-manager:GetGrant",
    "license-manager:ListReceivedGrantsForOrganization",
    "license-manager:DeleteGrant",
    "sqs:SendMessage",
    "sqs:SendMessageBatch",
    // The configuration document's pinned version, read at cold start when one is set.
    "s3:GetObjectVersion",
    // The account's chain (CHAIN_TABLE): claimed, left waiting or ended, marked queued.
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",
];

/// reconciler, with its own role.
pub const RECONCILER: &[&str] = &[
    "organizations:DescribeOrganization",
    // An Organizations event is a claim: the account's state is confirmed before offboarding.
    "organizations:DescribeAccount",
    "organizations:ListRoots",
    "organizations:ListAccountsForParent",
    "organizations:ListOrganizationalUnitsForParent",
    "organizations:ListTagsForResource",
    // The OUs above an account (OU rules inherited down nested OUs; the OU grants that cover
    // an account whose grant went away).
    "organizations:ListParents",
    "license-manager:ListReceivedLicenses",
    "license-manager:ListDistributedGrants",
    "license-manager:ListReceivedGrantsForOrganization",
    "license-manager:GetGrant",
    "license-manager:CreateGrant",
    "license-manager:CreateGrantVersion",
    "license-manager:DeleteGrant",
    "sqs:SendMessageBatch",
    // A change event that names no account: the coalescing queue.
    "sqs:SendMessage",
    // A change-event record to deliver again comes back in seconds.
    "sqs:ChangeMessageVisibilityBatch",
    // The configuration document's pinned version, read at cold start when one is set.
    "s3:GetObjectVersion",
    // The accounts' chains (CHAIN_TABLE): read before queuing, marked queued, a running one
    // marked, a waiting one brought forward.
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:UpdateItem",
];

/// org-bootstrap (the stack's custom resources at deploy: the organization set-up, in the
/// management account, and the configuration check), with its own role.
pub const ORG_BOOTSTRAP: &[&str] = &[
    "organizations:ListAWSServiceAccessForOrganization",
    "organizations:EnableAWSServiceAccess",
    "organizations:ListDelegatedAdministrators",
    "organizations:RegisterDelegatedAdministrator",
    "license-manager:GetServiceSettings",
    "license-manager:UpdateServiceSettings",
    "iam:ListRoles",
    "iam:CreateServiceLinkedRole",
    // The configuration check reads the document's version it is given.
    "s3:GetObjectVersion",
];

/// catalog-provisioning (Custom::MarketplaceEntitlement, Custom::MarketplacePortfolioShare),
/// with its own role: the engine's onboarding and offboarding calls, portfolio shares, re-checks.
#[cfg_attr(not(test), allow(dead_code))] // only checked against the template (tests.rs)
pub(crate) const CATALOG_PROVISIONING: &[&str] = &[
    "organizations:DescribeOrganization",
    "organizations:DescribeAccount",
    "organizations:ListParents",
    "organizations:ListTagsForResource",
    "sts:AssumeRole",
    "license-manager:ListReceivedLicenses",
    "license-manager:ListDistributedGrants",
    "license-manager:CreateGrant",
    "license-manager:GetGrant",
    "license-manager:CreateGrantVersion",
    "license-manager:ListReceivedGrantsForOrganization",
    "license-manager:DeleteGrant",
    "servicecatalog:CreatePortfolioShare",
    "servicecatalog:DeletePortfolioShare",
    "servicecatalog:DescribePortfolioShareStatus",
    "sqs:SendMessage",
    // The configuration document's pinned version, read at cold start when one is set.
    "s3:GetObjectVersion",
];

/// account-vending, with its own role. (Control Tower also requires Account Factory requesters
/// to hold organizations:CreateAccount and DescribeCreateAccountStatus and Service Catalog
/// end-user access; the template grants those separately because Control Tower, not this code,
/// makes those calls.)
pub const ACCOUNT_VENDING: &[&str] = &[
    "servicecatalog:SearchProductsAsAdmin",
    "servicecatalog:ListProvisioningArtifacts",
    "servicecatalog:SearchProvisionedProducts",
    "servicecatalog:ProvisionProduct",
    "servicecatalog:DescribeRecord",
    "servicecatalog:CreatePortfolioShare",
    "organizations:TagResource",
    "sts:AssumeRole",
    "sqs:SendMessage",
];

/// Made inside member accounts with the assumed execution role (the template's default,
/// `ct-entitlements-member`, allows exactly these; the fallback AWSControlTowerExecution has
/// AdministratorAccess).
/// `examples/member-role-stackset.yaml` allows exactly these (`shared/tests/permissions.rs`).
pub const MEMBER_ROLE: &[&str] = &[
    "iam:ListRoles",
    "iam:CreateServiceLinkedRole",
    "license-manager:ListReceivedGrants",
    "license-manager:AcceptGrant",
    "license-manager:CreateGrantVersion",
    // account-vending, when it shares the software portfolio with a new account.
    "servicecatalog:AcceptPortfolioShare",
    "servicecatalog:AssociatePrincipalWithPortfolio",
    // catalog-provisioning, confirming the stack that claims a product launch (topic requests).
    "cloudformation:DescribeStackResource",
];

/// notifier (the notification queue's consumer), with its own role.
#[cfg_attr(not(test), allow(dead_code))] // only checked against the template (tests.rs)
pub(crate) const NOTIFIER: &[&str] = &["sns:Publish"];

/// Every function's table, by the binary name the template builds.
#[cfg_attr(not(test), allow(dead_code))] // only checked against the template (tests.rs)
pub(crate) const FUNCTIONS: &[(&str, &[&str])] = &[
    ("account-lifecycle", ACCOUNT_LIFECYCLE),
    ("reconciler", RECONCILER),
    ("org-bootstrap", ORG_BOOTSTRAP),
    ("catalog-provisioning", CATALOG_PROVISIONING),
    ("account-vending", ACCOUNT_VENDING),
    ("notifier", NOTIFIER),
];

#[cfg(test)]
mod tests;
