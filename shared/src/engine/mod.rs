//! The "ensure this account is entitled" engine: validate → organization → assume role →
//! service-linked roles → per license (concurrently, bounded) observe the account's grants,
//! `decide::decide` the next step, execute it, observe again → report. Grants still in workflow
//! are re-checked later through the onboarding queue, never waited for in a sleep loop.
//!
//! One file per concern, each with its own `impl Engine` block:
//! - `onboard`: `run` and onboarding: observe the account, choose its licenses, drive them;
//! - `selection`: which licenses the configuration selects for an account ([`Wanted`]);
//! - `cache`: the container's short-lived reads (organization, held licenses, OU parents,
//!   organization/OU grants);
//! - `drive`: one license: observe → decide → execute until done or waiting;
//! - `steps`: the grant writes a decision executes (create, activate, delete, find a child) and
//!   the failures a decision reports;
//! - `offboard`: a departed account's grants;
//! - `listing`: read-only listings for the operator's CLI (distributed grants, a scope's accounts);
//! - `chained`: a run as one step of its account's chain (`CHAIN_TABLE`);
//! - `recheck`: what carries over to a later look (remembered activations, re-check messages);
//! - `tokens`: deterministic client tokens; `reporting`: building an account's report.

mod cache;
mod chained;
mod drive;
mod listing;
mod offboard;
mod onboard;
mod recheck;
mod reporting;
mod selection;
mod steps;
mod tokens;

use crate::aws::{GrantView, HeldLicense, OrgInfo};
use crate::clients::Clients;
use crate::config::Config;
pub(crate) use crate::decide::is_terminal;
use crate::error::Error;
use crate::ids::AccountId;
use crate::inbound::ActivationMark;
use crate::limiter::RateLimiter;
use crate::report::CallLog;
pub use offboard::OffboardMode;
pub use selection::Wanted;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
pub(crate) use steps::grant_operations;
pub use tokens::grant_client_token;
use tokio::sync::{Mutex, OnceCell};

/// A value and when it was read.
type Timed<T> = (Instant, T);

/// The engine: configuration and clients, built once at init and shared by every invocation.
pub struct Engine {
    config: Config,
    clients: Clients,
    org: OnceCell<OrgInfo>,
    held: Mutex<Option<(Instant, Arc<Vec<HeldLicense>>)>>,
    /// Grants to organization/OU principals, by principal (all licenses), with when read.
    principal_grants: Mutex<HashMap<String, Timed<Arc<Vec<GrantView>>>>>,
    /// OU → its parent OU (`None`: the root), read once per container.
    ou_parents: Mutex<HashMap<String, Option<String>>>,
    /// Activations this container requested, by grant ARN.
    activations: std::sync::Mutex<HashMap<String, ActivationMark>>,
    /// License Manager calls per operation and second, for every account of the container.
    limiter: RateLimiter,
    now: fn() -> SystemTime,
}

impl Engine {
    pub fn new(config: Config, clients: Clients) -> Self {
        let limiter = RateLimiter::new(config.license_manager_calls_per_second);
        Engine {
            config,
            clients,
            org: OnceCell::new(),
            held: Mutex::new(None),
            principal_grants: Mutex::new(HashMap::new()),
            ou_parents: Mutex::new(HashMap::new()),
            activations: std::sync::Mutex::new(HashMap::new()),
            limiter,
            now: SystemTime::now,
        }
    }

    /// The engine's clock (chain sequences, [`crate::chain::sequence`]).
    pub(crate) fn now(&self) -> SystemTime {
        (self.now)()
    }

    /// The engine's clock in Unix seconds (0 before the epoch).
    pub(crate) fn unix_now(&self) -> u64 {
        self.now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The AVAILABLE AWS/Marketplace licenses the management account holds, from the same
    /// short-lived cache `run` uses (callers that must pick one license before running).
    pub async fn held_marketplace_licenses(&self) -> Result<Arc<Vec<HeldLicense>>, Error> {
        self.held_licenses(&CallLog::default()).await
    }

    /// [`Engine::held_marketplace_licenses`], its calls recorded in `calls`.
    pub(crate) async fn held_licenses_logged(
        &self,
        calls: &CallLog,
    ) -> Result<Arc<Vec<HeldLicense>>, Error> {
        self.held_licenses(calls).await
    }

    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// The container's License Manager rate limiter (`LICENSE_MANAGER_CALLS_PER_SECOND`).
    pub(crate) fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The organization (read once per container).
    pub(crate) async fn organization(&self, calls: &CallLog) -> Result<OrgInfo, Error> {
        self.org_info(calls).await
    }

    /// `<prefix>-<account id>`: the name of the grants ct-entitlements makes.
    fn own_grant_name(&self, account: &AccountId) -> String {
        format!("{}-{account}", self.config.grant_name_prefix)
    }
}
