//! ct-entitlements core: parse what arrives, decide per account, drive License Manager grants to
//! ACTIVE, and report. The Lambda functions in `functions/` only wire this up.

pub mod aws;
pub mod bootstrap;
pub mod chain;
pub mod changes;
pub mod clients;
pub mod config;
pub mod custom_resource;
pub mod decide;
pub mod distribution;
pub mod engine;
pub mod error;
pub mod function;
pub mod ids;
pub mod inbound;
pub mod lambda;
mod limiter;
pub mod logging;
mod metrics;
mod model;
pub mod notify;
pub mod permissions;
pub mod reconcile;
pub mod report;
pub mod startup;

/// The old path of [`inbound::lifecycle`], for the modules that still name it.
pub(crate) use inbound::lifecycle as event;

pub use clients::{Clients, MemberClientFactory, MemberClients};
pub use config::Config;
pub use engine::Engine;
pub use error::{Error, Retry};
pub use report::{AccountReport, Outcome};
