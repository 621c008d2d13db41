//! What every command starts from: the SDK configuration, the deployed stack when
//! `--stack-name` names one, the validated configuration, and an engine that never writes.

use crate::args::Global;
use crate::deployed::{read_stack, Deployed};
use aws_config::SdkConfig;
use shared::{clients::Clients, config::Config, engine::Engine, error::Error};
use std::collections::BTreeMap;

/// A command's starting point.
pub struct Context {
    pub sdk: SdkConfig,
    pub engine: Engine,
    pub global: Global,
    /// The deployed stack (`--stack-name`).
    pub deployed: Option<Deployed>,
}

/// Whether the command acts on the license selection (plan, coverage, backfill): then the
/// configuration must hold one, as the deployed function refuses to start without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    Required,
    Unused,
}

impl Context {
    /// Loads the SDK configuration and the configuration (the environment, or the stack's).
    pub async fn load(global: &Global, selection: Selection) -> Result<Self, Error> {
        let sdk = shared::clients::load_sdk_config().await;
        let deployed = match &global.stack_name {
            Some(stack) => Some(
                read_stack(
                    &aws_sdk_cloudformation::Client::new(&sdk),
                    &aws_sdk_lambda::Client::new(&sdk),
                    stack,
                )
                .await?,
            ),
            None => None,
        };
        let region = sdk.region().map(|r| r.to_string());
        let config = configure(
            deployed.as_ref().map(|d| &d.environment),
            region,
            selection,
            &sdk,
        )
        .await?;
        let engine = Engine::new(
            config.clone(),
            Clients::from_sdk_config(&sdk, &config.license_home_region),
        );
        Ok(Context {
            sdk,
            engine,
            global: global.clone(),
            deployed,
        })
    }

    /// A stack output, when `--stack-name` named a stack that has it.
    pub fn output(&self, key: &str) -> Option<String> {
        self.deployed
            .as_ref()
            .and_then(|d| d.outputs.get(key).cloned())
    }
}

/// The configuration from `deployed` (the stack's function environment) or the process
/// environment, with the SDK's region standing in for an unset `AWS_REGION` (ARNs are built in
/// its partition). `DRY_RUN` is always on: the CLI's engine only reads. Read as the functions
/// read it at cold start (`shared::startup::load`): when the environment names a configuration
/// document (`CONFIG_DOCUMENT`, its pinned version), the selection comes from that document.
pub async fn configure(
    deployed: Option<&BTreeMap<String, String>>,
    region: Option<String>,
    selection: Selection,
    sdk: &SdkConfig,
) -> Result<Config, Error> {
    let lookup = |k: &str| -> Option<String> {
        if k == "DRY_RUN" {
            return Some("true".into());
        }
        let value = match deployed {
            Some(env) => env.get(k).cloned(),
            None => std::env::var(k).ok(),
        };
        value.or_else(|| (k == "AWS_REGION").then(|| region.clone()).flatten())
    };
    match selection {
        Selection::Required => shared::startup::load(lookup, sdk).await,
        Selection::Unused => shared::startup::load_per_request(lookup, sdk).await,
    }
}
