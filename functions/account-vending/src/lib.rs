//! account-vending: account requests through Control Tower's Account Factory (Service Catalog
//! ProvisionProduct), tracked by re-queueing until the record finishes. When the account exists,
//! Control Tower's CreateManagedAccount event hands it to account-lifecycle.

pub mod catalog;
pub mod config;
pub mod handler;
pub mod request;

pub use config::VendingConfig;
pub use handler::{handle, App, MemberCatalog, VendingClients, VendingReport};
