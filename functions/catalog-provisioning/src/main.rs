//! catalog-provisioning: answers `Custom::MarketplaceEntitlement` requests (directly or through
//! the hub SNS topic) and re-checks grants answered as pending. `main` only wires: logging,
//! configuration (validated once, no AWS call), one SDK config and its clients, the handler.

use catalog_provisioning::request::read_request;
use catalog_provisioning::{handle, App, CatalogConfig, Responder, StackReader};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::value::RawValue;
use shared::custom_resource::deadline;
use shared::function::FunctionError;
use shared::{clients::Clients, engine::Engine};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::logging::init("catalog-provisioning");
    let config = CatalogConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let responder = Responder::new(config.allow_local_response_url);
    let fallback = config.deadline_fallback;
    let sdk_config = shared::clients::load_sdk_config().await;
    let shared_config = shared::startup::load_per_request(|k| std::env::var(k).ok(), &sdk_config)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let clients = Clients::from_sdk_config(&sdk_config, &shared_config.license_home_region);
    let stacks =
        StackReader::from_sdk_config(&sdk_config, &shared_config.execution_role_name, None);
    let app = Arc::new(App {
        stacks,
        sqs: clients.sqs.clone(),
        catalog: aws_sdk_servicecatalog::Client::new(&sdk_config),
        engine: Engine::new(shared_config, clients),
        config,
        responder,
    });

    // The payload arrives raw and is read here: a request nested beyond serde_json's depth
    // limit is still answered (FAILED, naming what could not be read), not refused by the
    // runtime's deserializer before the handler runs.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let app = app.clone();
        let deadline = deadline(event.context.deadline, fallback);
        async move {
            let payload = read_request(event.payload.get()).map_err(|e| {
                FunctionError(shared::error::Error::InvalidInput(format!(
                    "the payload is not JSON: {e}"
                )))
            })?;
            handle(&app, payload, deadline).await.map_err(FunctionError)
        }
    }))
    .await
}
