//! reconciler: on a schedule (or on demand) puts an "onboard account" message on the onboarding
//! queue for each ACTIVE account short of an ACTIVE grant, and offboards accounts that left.
//! `main` only wires; the invocation is in the library (`reconciler::handle`), the rest every
//! function does in `shared::lambda::serve`.

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use shared::reconcile::ReconcileConfig;
use shared::{clients::Clients, engine::Engine};

/// The reconciler's state, built once per container.
struct Reconciler {
    /// For change-event batches: License Manager calls that fail fast (a throttled look fails
    /// its own record, back in 10 s, instead of holding the batch's completions).
    triage: Engine,
    /// For full reconciles, which keep the runs' attempts: a failure there fails the whole
    /// reconcile.
    engine: Engine,
    config: ReconcileConfig,
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve(
        "reconciler",
        |sdk_config| async move {
            let reconcile_config = ReconcileConfig::from_env()?;
            let config = shared::startup::load(|k| std::env::var(k).ok(), &sdk_config).await?;
            let clients = Clients::from_sdk_config(&sdk_config, &config.license_home_region);
            let triage_clients = clients
                .clone()
                .with_license_manager_attempts(shared::clients::TRIAGE_ATTEMPTS);
            Ok(Reconciler {
                triage: Engine::new(config.clone(), triage_clients),
                engine: Engine::new(config, clients),
                config: reconcile_config,
            })
        },
        |app, event: LambdaEvent<Value>| async move {
            let engine = if reconciler::is_change_batch(&event.payload, &app.config) {
                &app.triage
            } else {
                &app.engine
            };
            reconciler::handle(engine, &app.config, &event.payload).await
        },
    )
    .await
}
