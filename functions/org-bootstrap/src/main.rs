//! org-bootstrap: the custom resources of the stack itself, the organization set-up and the
//! configuration check, told apart by `ResourceType`. `main` only wires.

use lambda_runtime::{service_fn, LambdaEvent};
use org_bootstrap::check::{self, CheckApp};
use org_bootstrap::{handle, App};
use serde_json::Value;
use shared::custom_resource::{deadline, deadline_fallback, Responder};
use shared::function::FunctionError;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::logging::init("org-bootstrap");
    let config = shared::config::Config::from_env_per_request()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let fallback = deadline_fallback(|k| std::env::var(k).ok())
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
    let check_app = Arc::new(CheckApp {
        s3: aws_sdk_s3::Client::new(&sdk_config),
        responder: Responder::new(allow_local),
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (app, check_app) = (app.clone(), check_app.clone());
        let deadline = deadline(event.context.deadline, fallback);
        async move {
            let is_check = event.payload.get("ResourceType").and_then(Value::as_str)
                == Some(check::RESOURCE_TYPE);
            // Boxed: the two handlers' futures are deep types, kept out of this one's layout.
            let answered = if is_check {
                Box::pin(check::handle(&check_app, event.payload, deadline)).await
            } else {
                Box::pin(handle(&app, event.payload, deadline)).await
            };
            answered.map_err(FunctionError)
        }
    }))
    .await
}
