//! A local AWS world for tests and the demo (test infrastructure, no production code):
//!
//! * [`emulator`]: a stateful AWS License Manager + Service Catalog emulator (AWS JSON 1.1 over
//!   HTTP on 127.0.0.1) with switches for latency, throttling and faults;
//! * [`moto`]: runs `moto_server` (IAM, STS, Organizations, SQS, SNS, EventBridge,
//!   CloudFormation);
//! * [`model_proxy`]: in front of moto, checks every request against AWS's API models;
//! * [`World`]: both together, with SDK clients and environment variables pointed at them;
//! * [`seed`]: builds an organization, member accounts and Marketplace licenses in a world.

pub mod clients;
pub mod emulator;
pub mod http;
pub mod lambda;
pub mod model_proxy;
pub mod moto;
pub mod receiver;
pub mod s3;
pub mod seed;
pub mod stacks;
pub mod world;

pub use world::{AccountClients, World, WorldOptions};

/// Errors from world and seeding helpers.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// An SDK error with its full context (`DisplayErrorContext`), labelled with the call.
pub fn sdk_error<E>(call: &str, error: E) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    format!(
        "{call}: {}",
        aws_smithy_types::error::display::DisplayErrorContext(error)
    )
    .into()
}
