//! reconciler: on a schedule (or on demand) puts an "onboard account" message on the onboarding
//! queue for each ACTIVE account short of an ACTIVE grant, and offboards accounts that left. `main` only wires; the
//! invocation is in the library (`reconciler::handle`).

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use shared::function::FunctionError;
use shared::reconcile::ReconcileConfig;
use shared::{clients::Clients, engine::Engine};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::logging::init("reconciler");
    let reconcile_config = ReconcileConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk_config = shared::clients::load_sdk_config().await;
    let config = shared::startup::load(|k| std::env::var(k).ok(), &sdk_config)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let clients = Clients::from_sdk_config(&sdk_config, &config.license_home_region);
    // Change-event batches get License Manager calls that fail fast (a throttled look fails
    // its own record, back in 10 s, instead of holding the batch's completions); full
    // reconciles keep the runs' attempts, since a failure there fails the whole reconcile.
    let triage = Arc::new(Engine::new(
        config.clone(),
        clients
            .clone()
            .with_license_manager_attempts(shared::clients::TRIAGE_ATTEMPTS),
    ));
    let engine = Arc::new(Engine::new(config, clients));
    let reconcile_config = Arc::new(reconcile_config);

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let engine = if reconciler::is_change_batch(&event.payload, &reconcile_config) {
            triage.clone()
        } else {
            engine.clone()
        };
        let reconcile_config = reconcile_config.clone();
        async move {
            reconciler::handle(&engine, &reconcile_config, &event.payload)
                .await
                .map_err(FunctionError)
        }
    }))
    .await
}
