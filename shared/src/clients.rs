//! AWS clients, built once at init from one `aws_config` load, and the seam that gives
//! member-account clients for assumed-role credentials.

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};
use aws_smithy_types::retry::ErrorKind;
use std::sync::Arc;

/// Clients that act as the management (grantor) account.
#[derive(Clone)]
pub struct Clients {
    pub organizations: aws_sdk_organizations::Client,
    pub sts: aws_sdk_sts::Client,
    /// License Manager in the license home region.
    pub license_manager: aws_sdk_licensemanager::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub members: Arc<dyn MemberClientFactory>,
}

/// Clients acting inside a member account with its assumed-role credentials.
#[derive(Clone, Debug)]
pub struct MemberClients {
    pub iam: aws_sdk_iam::Client,
    pub license_manager: aws_sdk_licensemanager::Client,
}

/// Builds member-account clients from assumed-role credentials.
pub trait MemberClientFactory: Send + Sync {
    fn member_clients(&self, credentials: Credentials) -> MemberClients;
}

/// The production factory: the shared SDK config with the member's credentials.
#[derive(Clone, Debug)]
pub struct SdkMemberClients {
    base: SdkConfig,
    home_region: String,
}

impl MemberClientFactory for SdkMemberClients {
    fn member_clients(&self, credentials: Credentials) -> MemberClients {
        let config = self
            .base
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
            )
            .build();
        MemberClients {
            iam: aws_sdk_iam::Client::new(&config),
            license_manager: license_manager_client(&config, &self.home_region),
        }
    }
}

impl Clients {
    /// All clients from one loaded SDK config; License Manager pinned to `home_region`.
    pub fn from_sdk_config(config: &SdkConfig, home_region: &str) -> Self {
        Clients {
            organizations: aws_sdk_organizations::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            license_manager: license_manager_client(config, home_region),
            sqs: aws_sdk_sqs::Client::new(config),
            members: Arc::new(SdkMemberClients {
                base: config.clone(),
                home_region: home_region.to_string(),
            }),
        }
    }
}

/// License Manager client in its home region that treats `RateLimitExceededException` as
/// throttling, so the SDK's standard retry (exponential backoff with jitter) covers it.
pub fn license_manager_client(
    config: &SdkConfig,
    home_region: &str,
) -> aws_sdk_licensemanager::Client {
    let conf = aws_sdk_licensemanager::config::Builder::from(config)
        .region(aws_sdk_licensemanager::config::Region::new(
            home_region.to_string(),
        ))
        .retry_classifier(LicenseManagerThrottling)
        .build();
    aws_sdk_licensemanager::Client::from_conf(conf)
}

/// License Manager reports throttling as `RateLimitExceededException`, a code the SDK's default
/// classifier does not know.
#[derive(Debug, Clone, Copy, Default)]
pub struct LicenseManagerThrottling;

impl ClassifyRetry for LicenseManagerThrottling {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(response) = ctx.response() else {
            return RetryAction::NoActionIndicated;
        };
        if response.status().is_success() {
            return RetryAction::NoActionIndicated;
        }
        let header = response
            .headers()
            .get("x-amzn-ErrorType")
            .unwrap_or_default()
            .contains("RateLimitExceededException");
        let body = response
            .body()
            .bytes()
            .is_some_and(|b| contains(b, b"RateLimitExceededException"));
        if header || body {
            RetryAction::retryable_error(ErrorKind::ThrottlingError)
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "LicenseManagerRateLimit"
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
