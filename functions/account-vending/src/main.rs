//! account-vending: account requests from the vending queue (or a direct invocation) become
//! Account Factory provisioning requests, tracked to completion. `main` only wires:
//! configuration (validated once, no AWS call) and its clients, then the handler
//! (`shared::lambda::serve` does the rest every function does).

use account_vending::{handle, App, VendingClients, VendingConfig};
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use shared::config::Config;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(
        "account-vending",
        |sdk_config| async move {
            let shared_config = Config::from_env_per_request()?;
            let config = VendingConfig::from_env()?;
            Ok(App::new(
                VendingClients::from_sdk_config(&sdk_config),
                config,
                shared_config,
            ))
        },
        |app, event: LambdaEvent<Value>| async move { handle(&app, event.payload).await },
    )
    .await
}
