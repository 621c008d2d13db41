//! reconciler: on a schedule (or on demand) puts one "onboard account" message per ACTIVE
//! account on the onboarding queue, and offboards accounts that left. `main` only wires.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use shared::function::FunctionError;
use shared::reconcile::{self, ReconcileConfig};
use shared::{Clients, Config, Engine, Outcome};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::logging::init();
    let config = Config::from_env_per_request()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let reconcile_config = ReconcileConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    let sdk_config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let clients = Clients::from_sdk_config(&sdk_config, &config.license_home_region);
    let engine = Arc::new(Engine::new(config, clients));
    let reconcile_config = Arc::new(reconcile_config);

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (engine, reconcile_config) = (engine.clone(), reconcile_config.clone());
        async move {
            let (scope, dry_run) = reconcile::parse(&event.payload, &reconcile_config).map_err(FunctionError)?;
            let report = reconcile::reconcile(&engine, &reconcile_config, scope, dry_run).await;
            for offboarded in &report.offboarded {
                shared::handler::log_report(offboarded);
            }
            let value = serde_json::to_value(&report).map_err(|e| FunctionError(shared::Error::InvalidInput(e.to_string())))?;
            println!("{{\"type\":\"reconcileReport\",\"report\":{value}}}");
            let failed_offboarding = report.offboarded.iter().any(|r| r.outcome == Outcome::Failed);
            match report.error {
                Some(err) => Err(FunctionError(shared::Error::Aws {
                    service: "ct-entitlements",
                    operation: "reconcile",
                    code: err.code.unwrap_or(err.kind),
                    message: err.message,
                    retry: err.retry,
                })),
                None if failed_offboarding => Err(FunctionError(shared::Error::GrantFailed {
                    grant_arn: String::new(),
                    status: "offboarding".into(),
                    reason: "some departed accounts could not be offboarded; see the accountReport lines".into(),
                })),
                None => Ok(value),
            }
        }
    }))
    .await
}
