//! notifier: one SNS summary per batch of final failures. `main` only wires; the invocation is
//! in the library (`notifier::handle`).

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use shared::function::FunctionError;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::logging::init("notifier");
    let (topic_arn, stack) = notifier::settings(|k| std::env::var(k).ok())
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk_config = shared::clients::load_sdk_config().await;
    let app = Arc::new(notifier::App {
        sns: aws_sdk_sns::Client::new(&sdk_config),
        topic_arn,
        stack,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let app = app.clone();
        async move {
            notifier::handle(&app, &event.payload)
                .await
                .map_err(FunctionError)
        }
    }))
    .await
}
