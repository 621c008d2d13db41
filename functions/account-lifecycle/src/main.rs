//! account-lifecycle: entitles each account Control Tower vends (or that a re-check or backfill
//! names) to the configured AWS Marketplace licenses. `main` only wires: logging, configuration
//! (validated once; the configuration document, when set, read once), one SDK config and its clients, then the handler.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use shared::function::FunctionError;
use shared::{clients::Clients, engine::Engine};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::logging::init("account-lifecycle");
    let sdk_config = shared::clients::load_sdk_config().await;
    let config = shared::startup::load(|k| std::env::var(k).ok(), &sdk_config)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let clients = Clients::from_sdk_config(&sdk_config, &config.license_home_region);
    let engine = Arc::new(Engine::new(config, clients));

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let engine = engine.clone();
        async move {
            account_lifecycle::handle(&engine, event.payload)
                .await
                .map_err(FunctionError)
        }
    }))
    .await
}
