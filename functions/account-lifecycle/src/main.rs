//! account-lifecycle: entitles each account Control Tower vends (or that a re-check or backfill
//! names) to the configured AWS Marketplace licenses. `main` only wires: configuration
//! (validated once; the configuration document, when set, read once) and its clients, then the
//! handler (`shared::lambda::serve` does the rest every function does).

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use shared::{clients::Clients, engine::Engine};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(
        "account-lifecycle",
        |sdk_config| async move {
            let config = shared::startup::load(|k| std::env::var(k).ok(), &sdk_config).await?;
            let clients = Clients::from_sdk_config(&sdk_config, &config.license_home_region);
            Ok(Engine::new(config, clients))
        },
        |engine, event: LambdaEvent<Value>| async move {
            account_lifecycle::handle(&engine, event.payload).await
        },
    )
    .await
}
