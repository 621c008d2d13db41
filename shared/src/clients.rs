//! AWS clients, built once at init from one `aws_config` load, and the seam that gives
//! member-account clients for assumed-role credentials.

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::retry::ErrorKind;
use std::sync::Arc;

/// The HTTPS client every SDK client of a function shares, built on its first request instead
/// of at init: building it loads the system's trusted certificates (a directory of files read
/// at cold start), which an invocation that makes no AWS call never needs.
#[derive(Debug, Default, Clone)]
pub(crate) struct LazyHttpClient {
    inner: Arc<std::sync::OnceLock<SharedHttpClient>>,
}

impl LazyHttpClient {
    /// Whether the real client (and its certificate store) has been built.
    #[cfg(test)]
    pub(crate) fn is_built(&self) -> bool {
        self.inner.get().is_some()
    }

    fn client(&self) -> &SharedHttpClient {
        self.inner.get_or_init(|| {
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
                .build_https()
        })
    }
}

impl HttpClient for LazyHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.client().http_connector(settings, components)
    }
}

/// The SDK configuration of a function (region, credentials and endpoints from the standard
/// environment), with the lazily built HTTPS client.
pub async fn load_sdk_config() -> SdkConfig {
    load_sdk_config_with(LazyHttpClient::default()).await
}

/// [`load_sdk_config`] with a given lazy client.
pub(crate) async fn load_sdk_config_with(http: LazyHttpClient) -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(SharedHttpClient::new(http))
        .load()
        .await
}

/// Clients that act as the management (grantor) account.
#[derive(Clone)]
pub struct Clients {
    pub organizations: aws_sdk_organizations::Client,
    pub sts: aws_sdk_sts::Client,
    /// License Manager in the license home region.
    pub license_manager: aws_sdk_licensemanager::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// The chains table (`CHAIN_TABLE`, [`crate::chain`]).
    pub dynamodb: aws_sdk_dynamodb::Client,
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
pub(crate) struct SdkMemberClients {
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
    /// The same clients with License Manager's own calls given `attempts` attempts in all
    /// instead of [`LICENSE_MANAGER_MIN_ATTEMPTS`] (its quota still spared by throttles). For
    /// the reconciler's change-event batches ([`TRIAGE_ATTEMPTS`]; its full reconciles keep
    /// the default): a batch answers its completions only once every look is done, so one look waiting out a throttle for up to 31 s held every
    /// completion in the batch (`make scale` at 1,000 accounts: completion → next step median
    /// 7.4 s with three attempts, 37.1 s with six), where a record whose look stays throttled
    /// comes back alone in 10 s.
    pub fn with_license_manager_attempts(mut self, attempts: u32) -> Self {
        let conf = self
            .license_manager
            .config()
            .to_builder()
            .retry_config(
                self.license_manager
                    .config()
                    .retry_config()
                    .cloned()
                    .unwrap_or_else(aws_smithy_types::retry::RetryConfig::standard)
                    .with_max_attempts(attempts.max(1)),
            )
            .build();
        self.license_manager = aws_sdk_licensemanager::Client::from_conf(conf);
        self
    }

    /// All clients from one loaded SDK config; License Manager pinned to `home_region`.
    pub fn from_sdk_config(config: &SdkConfig, home_region: &str) -> Self {
        Clients {
            organizations: aws_sdk_organizations::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            license_manager: license_manager_client(config, home_region),
            sqs: aws_sdk_sqs::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            members: Arc::new(SdkMemberClients {
                base: config.clone(),
                home_region: home_region.to_string(),
            }),
        }
    }
}

/// License Manager client in its home region that treats `RateLimitExceededException` as
/// throttling, so the SDK's standard retry (exponential backoff with jitter) covers it, with
/// at least [`LICENSE_MANAGER_MIN_ATTEMPTS`] attempts ([`license_manager_retry`]).
pub fn license_manager_client(
    config: &SdkConfig,
    home_region: &str,
) -> aws_sdk_licensemanager::Client {
    let conf = aws_sdk_licensemanager::config::Builder::from(config)
        .region(aws_sdk_licensemanager::config::Region::new(
            home_region.to_string(),
        ))
        .retry_classifier(LicenseManagerThrottling)
        .retry_config(license_manager_retry(config.retry_config()))
        .retry_partition(license_manager_retry_partition())
        .build();
    aws_sdk_licensemanager::Client::from_conf(conf)
}

/// The fewest attempts a License Manager call gets. The SDK's default (3: backoffs of up to 1
/// and 2 s) gives up within about 3 s, and under a backfill's sustained throttling a run's call
/// then failed the whole run, whose message came back 300-720 s later (`make scale` at 1,000
/// accounts: 67-128 failed runs, the long tail of completion → ACTIVE). Six attempts wait up to
/// 1 + 2 + 4 + 8 + 16 s (with jitter, about half that on average), well inside the functions'
/// timeouts, and outlast a throttled second.
pub(crate) const LICENSE_MANAGER_MIN_ATTEMPTS: u32 = 6;

/// The retry partition of License Manager clients: its quota (the SDK's token bucket, which
/// stops retrying once a process's retries have drawn it down, to spare a service in an outage)
/// is not drawn by throttling. A throttle is the service asking for a slower pace, which the
/// backoff and the container's limiter give; under a backfill's sustained throttling the
/// default cost (5 of 500 tokens per throttled retry) emptied it, and every later throttle then
/// failed at once, each failing its record or run (`make scale` at 1,000 accounts with six
/// attempts and the default quota: 2,314 change-event records retried, against 1,694 with three).
/// Timeouts and server errors still draw the quota as by default.
fn license_manager_retry_partition() -> aws_smithy_runtime::client::retries::RetryPartition {
    use aws_smithy_runtime::client::retries::{RetryPartition, TokenBucket};
    RetryPartition::custom("license-manager")
        .token_bucket(TokenBucket::builder().throttling_retry_cost(0).build())
        .build()
}

/// The attempts the License Manager calls of the reconciler's change-event batches get
/// ([`Clients::with_license_manager_attempts`]): the SDK's default.
pub const TRIAGE_ATTEMPTS: u32 = 3;

/// The retry configuration of License Manager clients: the loaded one (the SDK's standard
/// mode unless the environment says otherwise, e.g. `AWS_MAX_ATTEMPTS`), with at least
/// [`LICENSE_MANAGER_MIN_ATTEMPTS`] attempts. Pure.
pub(crate) fn license_manager_retry(
    loaded: Option<&aws_smithy_types::retry::RetryConfig>,
) -> aws_smithy_types::retry::RetryConfig {
    let loaded = loaded
        .cloned()
        .unwrap_or_else(aws_smithy_types::retry::RetryConfig::standard);
    let attempts = loaded.max_attempts().max(LICENSE_MANAGER_MIN_ATTEMPTS);
    loaded.with_max_attempts(attempts)
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

#[cfg(test)]
mod lazy_tests {
    use super::*;

    #[test]
    fn license_manager_calls_get_at_least_six_attempts_and_keep_a_larger_setting() {
        use aws_smithy_types::retry::{RetryConfig, RetryMode};
        let cases = [
            (None, 6),
            (Some(RetryConfig::standard()), 6),
            (Some(RetryConfig::standard().with_max_attempts(1)), 6),
            (Some(RetryConfig::standard().with_max_attempts(10)), 10),
        ];
        for (loaded, attempts) in cases {
            let got = license_manager_retry(loaded.as_ref());
            assert_eq!(got.max_attempts(), attempts, "{loaded:?}");
            assert_eq!(got.mode(), RetryMode::Standard, "{loaded:?}");
        }
        // The clients as the functions build them: six attempts; the reconciler's, three.
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let attempts = |c: &Clients| {
            c.license_manager
                .config()
                .retry_config()
                .map(RetryConfig::max_attempts)
        };
        let clients = Clients::from_sdk_config(&config, "us-east-1");
        assert_eq!(attempts(&clients), Some(6));
        let triage = clients.with_license_manager_attempts(TRIAGE_ATTEMPTS);
        assert_eq!(attempts(&triage), Some(3));
        let adaptive = license_manager_retry(Some(&RetryConfig::adaptive()));
        assert_eq!(
            (adaptive.mode(), adaptive.max_attempts()),
            (RetryMode::Adaptive, 6)
        );
    }

    #[tokio::test]
    async fn init_builds_no_https_client_the_first_request_does() {
        // As in Lambda: region and credentials known without a network call (the environment;
        // here set on the loader, since tests share one process environment).
        let http = LazyHttpClient::default();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(SharedHttpClient::new(http.clone()))
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(Credentials::new("a", "b", None, None, "test"))
            .load()
            .await;
        let clients = Clients::from_sdk_config(&config, "us-east-1");
        let member = clients
            .members
            .member_clients(Credentials::new("a", "b", None, None, "test"));
        assert!(
            !http.is_built(),
            "loading the config and building clients reads no certificates"
        );
        // The first request builds it (it then fails to connect: port 9 on loopback is closed).
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&config)
                .endpoint_url("http://127.0.0.1:9")
                .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
                .region(aws_sdk_sts::config::Region::new("us-east-1"))
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(
                        Credentials::new("a", "b", None, None, "test"),
                    ),
                )
                .build(),
        );
        let _ = sts.get_caller_identity().send().await;
        assert!(http.is_built());
        drop((clients, member));
    }
}
