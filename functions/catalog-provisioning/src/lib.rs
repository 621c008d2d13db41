//! catalog-provisioning: the `Custom::MarketplaceEntitlement` CloudFormation custom resource a
//! Service Catalog product uses to entitle the account that launches it (reusing the core
//! engine's "ensure account entitled" path), and `Custom::MarketplacePortfolioShare`, which shares
//! the product portfolio with the organization or OUs. Every request is answered.

pub mod clock;
pub mod config;
pub mod handler;
pub mod portfolio;
pub mod request;
pub mod verify;

pub use clock::{Clock, ManualClock};
pub use config::{CatalogConfig, LaunchLicenses, PendingResponse};
pub use handler::{handle, App};
pub use shared::custom_resource::Responder;
pub use verify::StackReader;
