//! org-bootstrap: the custom resources of the stack itself, the organization set-up and the
//! configuration check, told apart by `ResourceType`. `main` only wires; the rest every
//! function does is in `shared::lambda::serve`.

use lambda_runtime::LambdaEvent;
use org_bootstrap::check::{self, CheckApp};
use org_bootstrap::{handle, App};
use serde_json::Value;
use shared::custom_resource::{deadline, deadline_fallback, Responder};
use std::time::Duration;

/// Both resources' state, built once per container.
struct Resources {
    setup: App,
    check: CheckApp,
    /// The budget assumed when the runtime's deadline is implausible.
    fallback: Duration,
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(
        "org-bootstrap",
        |sdk_config| async move {
            let config = shared::config::Config::from_env_per_request()?;
            let fallback = deadline_fallback(|k| std::env::var(k).ok())?;
            let allow_local = std::env::var("ALLOW_LOCAL_RESPONSE_URL").is_ok_and(|v| v == "true");
            Ok(Resources {
                setup: App {
                    organizations: aws_sdk_organizations::Client::new(&sdk_config),
                    license_manager: shared::clients::license_manager_client(
                        &sdk_config,
                        &config.license_home_region,
                    ),
                    iam: aws_sdk_iam::Client::new(&sdk_config),
                    responder: Responder::new(allow_local),
                },
                check: CheckApp {
                    s3: aws_sdk_s3::Client::new(&sdk_config),
                    responder: Responder::new(allow_local),
                },
                fallback,
            })
        },
        |resources, event: LambdaEvent<Value>| async move {
            let deadline = deadline(event.context.deadline, resources.fallback);
            let is_check = event.payload.get("ResourceType").and_then(Value::as_str)
                == Some(check::RESOURCE_TYPE);
            // Boxed: the two handlers' futures are deep types, kept out of this one's layout.
            if is_check {
                Box::pin(check::handle(&resources.check, event.payload, deadline)).await
            } else {
                Box::pin(handle(&resources.setup, event.payload, deadline)).await
            }
        },
    )
    .await
}
