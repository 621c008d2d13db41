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
mod function;
pub mod ids;
pub mod inbound;
pub mod lambda;
mod limiter;
mod logging;
mod metrics;
mod model;
pub mod notify;
pub mod permissions;
pub mod reconcile;
pub mod report;
pub mod startup;

/// The old path of [`inbound::lifecycle`], for the modules that still name it.
pub(crate) use inbound::lifecycle as event;

// Short paths the modules `changes` and `config` (tests) still name; other crates use the
// modules' own paths (`shared::error::Retry`, `shared::config::Config`).
#[cfg(test)]
pub(crate) use config::Config;
pub(crate) use error::Retry;
