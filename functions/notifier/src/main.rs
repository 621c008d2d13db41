//! notifier: one SNS summary per batch of final failures. `main` only wires; the invocation is
//! in the library (`notifier::handle`), the rest every function does in `shared::lambda::serve`.

use lambda_runtime::LambdaEvent;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(
        "notifier",
        |sdk_config| async move {
            let (topic_arn, stack) = notifier::settings(|k| std::env::var(k).ok())?;
            Ok(notifier::App {
                sns: aws_sdk_sns::Client::new(&sdk_config),
                topic_arn,
                stack,
            })
        },
        |app, event: LambdaEvent<Value>| async move { notifier::handle(&app, &event.payload).await },
    )
    .await
}
