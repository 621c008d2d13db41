//! moto + the emulator, wired together: environment for child processes, SDK clients for
//! tests, credentials for member accounts.

use std::io;

use aws_config::SdkConfig;

use crate::clients::{self, REGION, TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY};
use crate::emulator::{self, ControlClient, EmulatorHandle, EmulatorOptions, Switches};
use crate::model_proxy::{self, ModelProxy};
use crate::moto::MotoServer;
use crate::Error;

/// The role Control Tower uses to reach into member accounts.
pub const EXECUTION_ROLE: &str = "AWSControlTowerExecution";

/// How to start a [`World`].
#[derive(Debug, Clone, Default)]
pub struct WorldOptions {
    /// Emulator port; 0 picks a free one.
    pub emulator_port: u16,
    /// The emulator's switches. Left at their defaults, they come from the profile named by
    /// `CT_EMULATOR_PROFILE` (`default` or `realistic`, see [`Switches::profile`]), so whole
    /// suites can run under either profile.
    pub switches: Switches,
    /// Use `switches` as given even when they are the defaults (ignore `CT_EMULATOR_PROFILE`):
    /// for tests that pin the emulator's timing themselves.
    pub pin_switches: bool,
}

impl WorldOptions {
    /// The switches a world starts with: `switches`, or the environment's profile when they
    /// are the defaults.
    pub fn effective_switches(&self) -> io::Result<Switches> {
        if self.switches == Switches::default() && !self.pin_switches {
            Switches::from_env().map_err(io::Error::other)
        } else {
            Ok(self.switches.clone())
        }
    }
}

/// A running local AWS: moto (IAM, STS, Organizations, SQS, SNS, EventBridge,
/// CloudFormation) behind a proxy that checks every request against AWS's API models
/// ([`ModelProxy`]), and the License Manager / Service Catalog emulator (which reads callers
/// and the organization from moto directly, and checks its own requests). A world dropped or
/// shut down after a request either model refuses panics: the test that sent it fails.
#[derive(Debug)]
pub struct World {
    proxy: ModelProxy,
    proxy_url: String,
    moto: MotoServer,
    emulator: EmulatorHandle,
    config: SdkConfig,
}

/// Credentials and clients for one member account (an assumed role).
#[derive(Debug, Clone)]
pub struct AccountClients {
    pub account: String,
    pub config: SdkConfig,
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
    pub license_manager: aws_sdk_licensemanager::Client,
    pub service_catalog: aws_sdk_servicecatalog::Client,
}

/// `true` when running in CI (`CI=true` or `CI=1`) or under the Makefile ([`REQUIRE_WORLD`]).
pub fn in_ci() -> bool {
    let set =
        |name: &str| std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    set("CI") || set(REQUIRE_WORLD)
}

/// Set by the Makefile (`make test`, which installs moto and cargo-lambda itself): a test that
/// cannot start the local world (or a binary it needs) fails, as in CI, instead of passing
/// without running behind a message cargo hides.
pub const REQUIRE_WORLD: &str = "CT_REQUIRE_WORLD";

impl World {
    /// Starts moto and its checking proxy, then the emulator pointed at moto.
    pub async fn start(opts: WorldOptions) -> io::Result<Self> {
        let switches = opts.effective_switches()?;
        let moto = MotoServer::start().await?;
        let proxy = model_proxy::start(moto.url()).await?;
        let emulator = emulator::start(EmulatorOptions {
            port: opts.emulator_port,
            moto_url: Some(moto.url().to_string()),
            switches,
            ..EmulatorOptions::default()
        })
        .await?;
        let config = clients::sdk_config(TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, None);
        Ok(Self {
            proxy_url: proxy.url(),
            proxy,
            moto,
            emulator,
            config,
        })
    }

    /// [`World::start`] with default options; on failure returns `None` after a loud message,
    /// except in CI, where it panics (a world that cannot start is a test failure there).
    pub async fn start_or_skip() -> Option<Self> {
        Self::start_or_skip_with(WorldOptions::default()).await
    }

    /// [`World::start_or_skip`] with options.
    pub async fn start_or_skip_with(opts: WorldOptions) -> Option<Self> {
        match Self::start(opts).await {
            Ok(world) => Some(world),
            Err(e) if in_ci() => {
                panic!("the local AWS world must start (CI or {REQUIRE_WORLD} set), but: {e}")
            }
            Err(e) => {
                eprintln!(
                    "\n!!!!!!!! SKIPPED: the local AWS world could not start: {e}\n\
                     !!!!!!!! install moto with `pip install 'moto[server]'` (or set MOTO_SERVER)\n"
                );
                None
            }
        }
    }

    pub fn moto(&self) -> &MotoServer {
        &self.moto
    }
    /// moto's URL as the tests and the functions reach it: the checking proxy's.
    pub fn moto_url(&self) -> &str {
        &self.proxy_url
    }
    /// moto itself, unchecked (for what is not a request AWS would see).
    pub fn moto_direct_url(&self) -> &str {
        self.moto.url()
    }
    /// The proxy checking requests to moto against AWS's API models.
    pub fn model_proxy(&self) -> &ModelProxy {
        &self.proxy
    }
    pub fn emulator_url(&self) -> String {
        self.emulator.url()
    }
    pub fn emulator(&self) -> &EmulatorHandle {
        &self.emulator
    }
    pub fn control(&self) -> ControlClient {
        self.emulator.control()
    }

    /// Environment for a child process (e.g. `cargo lambda watch`) so that every SDK client it
    /// builds talks to this world with management-account credentials.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let moto = self.moto_url().to_string();
        let emulator = self.emulator_url();
        [
            ("AWS_ENDPOINT_URL_IAM", moto.as_str()),
            ("AWS_ENDPOINT_URL_STS", moto.as_str()),
            ("AWS_ENDPOINT_URL_ORGANIZATIONS", moto.as_str()),
            ("AWS_ENDPOINT_URL_SQS", moto.as_str()),
            ("AWS_ENDPOINT_URL_LICENSE_MANAGER", emulator.as_str()),
            ("AWS_ENDPOINT_URL_SERVICE_CATALOG", emulator.as_str()),
            ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Management-account SDK configuration (no endpoint: use the client builders below).
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    pub fn license_manager(&self) -> aws_sdk_licensemanager::Client {
        clients::license_manager_from(&self.config, &self.emulator_url())
    }
    pub fn service_catalog(&self) -> aws_sdk_servicecatalog::Client {
        clients::service_catalog_from(&self.config, &self.emulator_url())
    }
    pub fn organizations(&self) -> aws_sdk_organizations::Client {
        clients::organizations_from(&self.config, self.moto_url())
    }
    pub fn iam(&self) -> aws_sdk_iam::Client {
        clients::iam_from(&self.config, self.moto_url())
    }
    pub fn sts(&self) -> aws_sdk_sts::Client {
        clients::sts_from(&self.config, self.moto_url())
    }
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        clients::sqs_from(&self.config, self.moto_url())
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        clients::dynamodb_from(&self.config, self.moto_url())
    }

    /// SDK configuration with the credentials of `role` assumed in `account` (moto STS).
    pub async fn assume_role(&self, account: &str, role: &str) -> Result<SdkConfig, Error> {
        let out = self
            .sts()
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/{role}"))
            .role_session_name("local-world")
            .send()
            .await
            .map_err(|e| crate::sdk_error("sts:AssumeRole", e))?;
        let credentials = out
            .credentials()
            .ok_or("sts:AssumeRole returned no credentials")?;
        Ok(clients::sdk_config(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token()),
        ))
    }

    /// Clients acting inside `account` through `AWSControlTowerExecution`.
    pub async fn client_for_account(&self, account: &str) -> Result<AccountClients, Error> {
        let config = self.assume_role(account, EXECUTION_ROLE).await?;
        Ok(AccountClients {
            account: account.to_string(),
            iam: clients::iam_from(&config, self.moto_url()),
            sts: clients::sts_from(&config, self.moto_url()),
            license_manager: clients::license_manager_from(&config, &self.emulator_url()),
            service_catalog: clients::service_catalog_from(&config, &self.emulator_url()),
            config,
        })
    }

    /// Forgets everything in moto and in the emulator.
    pub async fn reset(&self) -> io::Result<()> {
        self.moto.reset().await?;
        self.control().reset().await
    }

    /// Stops the emulator, the proxy, then moto; panics if the emulator or the proxy
    /// recorded a request AWS's model refuses.
    pub async fn shutdown(self) -> io::Result<()> {
        let World {
            proxy,
            moto,
            emulator,
            ..
        } = self;
        emulator.shutdown().await;
        proxy.shutdown().await;
        moto.stop().await
    }
}
