//! catalog-provisioning: answers `Custom::MarketplaceEntitlement` requests (directly or through
//! the hub SNS topic) and re-checks grants answered as pending. `main` only wires:
//! configuration (validated once, no AWS call) and its clients, then the handler
//! (`shared::lambda::serve` does the rest every function does).

use catalog_provisioning::request::read_request;
use catalog_provisioning::{handle, App, CatalogConfig, Responder, StackReader};
use lambda_runtime::LambdaEvent;
use serde_json::value::RawValue;
use shared::custom_resource::deadline;
use shared::error::Error;
use shared::{clients::Clients, engine::Engine};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(
        "catalog-provisioning",
        |sdk_config| async move {
            let config = CatalogConfig::from_env()?;
            let responder = Responder::new(config.allow_local_response_url);
            let shared_config =
                shared::startup::load_per_request(|k| std::env::var(k).ok(), &sdk_config).await?;
            let clients = Clients::from_sdk_config(&sdk_config, &shared_config.license_home_region);
            let stacks =
                StackReader::from_sdk_config(&sdk_config, &shared_config.execution_role_name, None);
            Ok(App {
                stacks,
                sqs: clients.sqs.clone(),
                catalog: aws_sdk_servicecatalog::Client::new(&sdk_config),
                engine: Engine::new(shared_config, clients),
                config,
                responder,
            })
        },
        // The payload arrives raw and is read here: a request nested beyond serde_json's
        // depth limit is still answered (FAILED, naming what could not be read), not refused
        // by the runtime's deserializer before the handler runs.
        |app, event: LambdaEvent<Box<RawValue>>| async move {
            let deadline = deadline(event.context.deadline, app.config.deadline_fallback);
            let payload = read_request(event.payload.get())
                .map_err(|e| Error::InvalidInput(format!("the payload is not JSON: {e}")))?;
            handle(&app, payload, deadline).await
        },
    )
    .await
}
