//! Environment variable names, in one place for the template, the docs and the tests.

pub(crate) const LICENSE_ARNS: &str = "LICENSE_ARNS";
pub(crate) const PRODUCT_SKUS: &str = "PRODUCT_SKUS";
pub(crate) const ALL_MARKETPLACE_LICENSES: &str = "ALL_MARKETPLACE_LICENSES";
pub(crate) const OU_LICENSE_RULES: &str = "OU_LICENSE_RULES";
pub(crate) const LICENSE_DISTRIBUTION: &str = "LICENSE_DISTRIBUTION";
pub(crate) const TARGET_OUS: &str = "TARGET_OUS";
pub(crate) const ACCOUNT_TAG_FILTER: &str = "ACCOUNT_TAG_FILTER";
pub(crate) const LICENSES_TAG_KEY: &str = "LICENSES_TAG_KEY";
pub(crate) const EXECUTION_ROLE_NAME: &str = "EXECUTION_ROLE_NAME";
pub(crate) const LICENSE_HOME_REGION: &str = "LICENSE_HOME_REGION";
pub(crate) const ACTIVATION_OVERRIDE_BEHAVIOR: &str = "ACTIVATION_OVERRIDE_BEHAVIOR";
pub(crate) const ALLOWED_OPERATIONS: &str = "ALLOWED_OPERATIONS";
pub(crate) const GRANT_NAME_PREFIX: &str = "GRANT_NAME_PREFIX";
pub(crate) const DRY_RUN: &str = "DRY_RUN";
pub(crate) const MAX_CONCURRENT_LICENSES: &str = "MAX_CONCURRENT_LICENSES";
pub(crate) const MAX_CONCURRENT_ACCOUNTS: &str = "MAX_CONCURRENT_ACCOUNTS";
pub(crate) const LICENSE_MANAGER_CALLS_PER_SECOND: &str = "LICENSE_MANAGER_CALLS_PER_SECOND";
pub(crate) const ONBOARDING_QUEUE_URL: &str = "ONBOARDING_QUEUE_URL";
pub(crate) const BACKFILL_QUEUE_URL: &str = "BACKFILL_QUEUE_URL";
pub(crate) const NOTIFY_QUEUE_URL: &str = "NOTIFY_QUEUE_URL";
/// Optional: the DynamoDB table of the accounts' live chains ([`crate::chain`]).
pub(crate) const CHAIN_TABLE: &str = "CHAIN_TABLE";
pub(crate) const MAX_RECEIVE_COUNT: &str = "MAX_RECEIVE_COUNT";
pub(crate) const RECHECK_DELAY_SECONDS: &str = "RECHECK_DELAY_SECONDS";
pub(crate) const WORKFLOW_DEADLINE_SECONDS: &str = "WORKFLOW_DEADLINE_SECONDS";
pub(crate) const ASSUME_ROLE_ATTEMPTS: &str = "ASSUME_ROLE_ATTEMPTS";
pub(crate) const ASSUME_ROLE_BACKOFF_MS: &str = "ASSUME_ROLE_BACKOFF_MS";
pub(crate) const SELF_ACCOUNT_ID: &str = "SELF_ACCOUNT_ID";
// `AWS_PARTITION` (optional: the partition, when not the one of `AWS_REGION`) is read by
// [`crate::ids::partition_from`] itself, which must not depend on this module.
/// Optional: `s3://bucket/key` of the configuration document that holds the selection
/// (see [`crate::config::document`]); set, the selection variables above must be unset.
pub const CONFIG_DOCUMENT: &str = "CONFIG_DOCUMENT";
/// The S3 version id of [`CONFIG_DOCUMENT`] to read (required with it).
pub const CONFIG_DOCUMENT_VERSION: &str = "CONFIG_DOCUMENT_VERSION";
