//! The reconciler's settings, read from its environment.

use crate::engine::OffboardMode;
use crate::error::{echo, Error};
use crate::ids::is_ou_id;
use serde::Serialize;

/// Reconciler settings (environment, validated at init, errors name the variable).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileConfig {
    pub onboarding_queue_url: String,
    /// Organization and OU runs queue here when set (named accounts: the onboarding queue).
    pub backfill_queue_url: Option<String>,
    /// Scheduled runs cover these OUs (recursively); empty = the whole organization.
    pub ous: Vec<String>,
    /// None = offboarding off.
    pub offboard: Option<OffboardMode>,
    pub dry_run: bool,
    /// License Manager's grants per license (Service Quotas L-55F04DE6; 2,000 unless raised).
    pub grant_quota: u32,
    /// Warn once a license's per-account grants reach this share of `grant_quota` (percent).
    pub grant_quota_warn_percent: u32,
    /// `RECONCILE_QUEUE_URL`: a FIFO queue (delay = deduplication interval = 5 minutes) where
    /// change events that name no account ask for the configured scope, so that any number
    /// of them makes at most one reconcile per 5 minutes, each starting after the events it
    /// covers. Unset: such an event runs the configured scope at once.
    pub coalesce_queue_url: Option<String>,
    /// `CHANGE_EVENT_QUEUE_URL`: the queue `LicenseManagerChangesRule` delivers to; its
    /// records are triaged a batch at a time ([`crate::changes`]). Unset: records from any
    /// queue but the coalescing one are refused.
    pub change_queue_url: Option<String>,
}

impl ReconcileConfig {
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let onboarding_queue_url = get("ONBOARDING_QUEUE_URL")
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .ok_or_else(|| Error::Config("ONBOARDING_QUEUE_URL: a queue URL is required".into()))?;
        let backfill_queue_url =
            crate::config::parse_queue_url(get("BACKFILL_QUEUE_URL"), "BACKFILL_QUEUE_URL")?;
        let ous: Vec<String> = get("RECONCILE_OUS")
            .unwrap_or_default()
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = ous.iter().find(|o| !is_ou_id(o)) {
            return Err(Error::Config(format!(
                "RECONCILE_OUS: {} is not an OU id (ou-xxxx-yyyyyyyy)",
                echo(bad)
            )));
        }
        let offboard = match get("OFFBOARD_MODE").as_deref().unwrap_or("off") {
            "off" => None,
            "deactivate" => Some(OffboardMode::Deactivate),
            "delete" => Some(OffboardMode::Delete),
            other => {
                return Err(Error::Config(format!(
                    "OFFBOARD_MODE: {} must be off, deactivate or delete",
                    echo(other)
                )))
            }
        };
        let dry_run = crate::config::parse_bool(get("DRY_RUN").as_deref(), "DRY_RUN", false)?;
        let number = |var: &str, default: u64, max: u64| {
            crate::config::parse_num(get(var), var, default, 1, max)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        };
        let grant_quota = number("GRANT_QUOTA_PER_LICENSE", 2000, 1_000_000)?;
        let grant_quota_warn_percent = number("GRANT_QUOTA_WARN_PERCENT", 90, 100)?;
        let coalesce_queue_url =
            crate::config::parse_queue_url(get("RECONCILE_QUEUE_URL"), "RECONCILE_QUEUE_URL")?;
        if let Some(url) = coalesce_queue_url
            .as_deref()
            .filter(|u| !u.ends_with(".fifo"))
        {
            return Err(Error::Config(format!(
                "RECONCILE_QUEUE_URL: {} is not a FIFO queue (its name ends with .fifo); the 5-minute deduplication of a FIFO queue is what coalesces change events",
                echo(url)
            )));
        }
        let change_queue_url = crate::config::parse_queue_url(
            get("CHANGE_EVENT_QUEUE_URL"),
            "CHANGE_EVENT_QUEUE_URL",
        )?;
        Ok(ReconcileConfig {
            change_queue_url,
            coalesce_queue_url,
            grant_quota,
            grant_quota_warn_percent,
            onboarding_queue_url,
            backfill_queue_url,
            ous,
            offboard,
            dry_run,
        })
    }
}

#[cfg(test)]
mod tests;
