//! catalog-provisioning's `App` against the local world, for the catalog suites (included with
//! `#[path]`, beside `common`, which suites without the catalog function also include).

use crate::common::Setup;
use catalog_provisioning::{App, CatalogConfig, PendingResponse, Responder, StackReader};
use std::time::Duration;

/// The function with `engine` and `config`, answering a local receiver, verifying claimed
/// stacks in moto's CloudFormation through the member role.
pub fn app(s: &Setup, engine: shared::engine::Engine, config: CatalogConfig) -> App {
    App {
        engine,
        sqs: s.world.sqs(),
        catalog: s.world.service_catalog(),
        config,
        responder: Responder::new(true),
        stacks: StackReader::from_sdk_config(
            s.world.sdk_config(),
            local_world::world::EXECUTION_ROLE,
            Some(s.world.moto_url().to_string()),
        ),
    }
}

/// A configuration for local runs: loopback answers, a 2 s margin, the given waits.
pub fn config(pending_response: PendingResponse, wait: Duration, poll: Duration) -> CatalogConfig {
    CatalogConfig {
        pending_response,
        wait_for_active: wait,
        poll_interval: poll,
        safety_margin: Duration::from_secs(2),
        allow_local_response_url: true,
        ..CatalogConfig::default()
    }
}
