//! org-bootstrap: the custom resource that sets up the organization at deploy. `main` only wires.

use lambda_runtime::{service_fn, LambdaEvent};
use org_bootstrap::{handle, App};
use serde_json::Value;
use shared::custom_resource::{deadline_fallback_from_env, deadline_instant_or, Responder};
use shared::function::FunctionError;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::logging::init("org-bootstrap");
    let config = shared::Config::from_env_per_request()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let fallback = deadline_fallback_from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let allow_local = std::env::var("ALLOW_LOCAL_RESPONSE_URL").is_ok_and(|v| v == "true");
    let sdk_config = shared::clients::load_sdk_config().await;
    let app = Arc::new(App {
        organizations: aws_sdk_organizations::Client::new(&sdk_config),
        license_manager: shared::clients::license_manager_client(
            &sdk_config,
            &config.license_home_region,
        ),
        iam: aws_sdk_iam::Client::new(&sdk_config),
        responder: Responder::new(allow_local),
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let app = app.clone();
        let deadline = deadline_instant_or(event.context.deadline, fallback);
        async move {
            handle(&app, event.payload, deadline)
                .await
                .map_err(FunctionError)
        }
    }))
    .await
}
