//! SDK configuration and clients pointed at local endpoints: static credentials, region
//! us-east-1, retries disabled (so tests see every error the servers return).

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;

/// The region everything local runs in (License Manager's Marketplace home region).
pub const REGION: &str = "us-east-1";
/// The credentials moto maps to its default (management) account.
pub const TEST_ACCESS_KEY_ID: &str = "testing";
pub const TEST_SECRET_ACCESS_KEY: &str = "testing";

/// An `SdkConfig` with the given credentials and no endpoint (set one per client).
pub fn sdk_config(
    access_key_id: &str,
    secret_access_key: &str,
    session_token: Option<&str>,
) -> SdkConfig {
    let credentials = Credentials::new(
        access_key_id,
        secret_access_key,
        session_token.map(str::to_string),
        None,
        "local-world",
    );
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .retry_config(RetryConfig::disabled())
        .build()
}

/// A License Manager client for `endpoint` acting as `access_key_id` (the emulator takes a
/// 12-digit access key id as the account id itself).
pub fn license_manager(endpoint: &str, access_key_id: &str) -> aws_sdk_licensemanager::Client {
    license_manager_from(
        &sdk_config(access_key_id, TEST_SECRET_ACCESS_KEY, None),
        endpoint,
    )
}

pub fn license_manager_from(config: &SdkConfig, endpoint: &str) -> aws_sdk_licensemanager::Client {
    let conf = aws_sdk_licensemanager::config::Builder::from(config)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_licensemanager::Client::from_conf(conf)
}

/// A Service Catalog client for `endpoint` acting as `access_key_id`.
pub fn service_catalog(endpoint: &str, access_key_id: &str) -> aws_sdk_servicecatalog::Client {
    service_catalog_from(
        &sdk_config(access_key_id, TEST_SECRET_ACCESS_KEY, None),
        endpoint,
    )
}

pub fn service_catalog_from(config: &SdkConfig, endpoint: &str) -> aws_sdk_servicecatalog::Client {
    let conf = aws_sdk_servicecatalog::config::Builder::from(config)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_servicecatalog::Client::from_conf(conf)
}

pub fn organizations_from(config: &SdkConfig, endpoint: &str) -> aws_sdk_organizations::Client {
    let conf = aws_sdk_organizations::config::Builder::from(config)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_organizations::Client::from_conf(conf)
}

pub fn iam_from(config: &SdkConfig, endpoint: &str) -> aws_sdk_iam::Client {
    let conf = aws_sdk_iam::config::Builder::from(config)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_iam::Client::from_conf(conf)
}

pub fn sts_from(config: &SdkConfig, endpoint: &str) -> aws_sdk_sts::Client {
    let conf = aws_sdk_sts::config::Builder::from(config)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

/// A DynamoDB client against moto (the chains table).
pub fn dynamodb_from(config: &SdkConfig, endpoint: &str) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::config::Builder::from(config)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

pub fn sqs_from(config: &SdkConfig, endpoint: &str) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::config::Builder::from(config)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}
