//! account-vending: account requests from the vending queue (or a direct invocation) become
//! Account Factory provisioning requests, tracked to completion. `main` only wires: logging,
//! configuration (validated once, no AWS call), one SDK config and its clients, the handler.

use account_vending::{handle, App, VendingClients, VendingConfig};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use shared::config::Config;
use shared::function::FunctionError;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::logging::init("account-vending");
    let shared_config = Config::from_env_per_request()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let config = VendingConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk_config = shared::clients::load_sdk_config().await;
    let app = Arc::new(App::new(
        VendingClients::from_sdk_config(&sdk_config),
        config,
        shared_config,
    ));

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let app = app.clone();
        async move { handle(&app, event.payload).await.map_err(FunctionError) }
    }))
    .await
}
