//! How the functions run: the queues they send to, the account the stack runs in, the dry-run
//! switch, concurrency and call-rate limits, re-check timings and role assumption retries.

use super::env::{parse_bool, parse_num, parse_queue_url, Env};
use super::vars::*;
use crate::error::{echo, Error};
use crate::ids::AccountId;
use std::time::Duration;

/// The queue settings, parsed (the fields of [`super::Config`] of the same names).
pub(super) struct Queues {
    pub(super) onboarding_queue_url: Option<String>,
    pub(super) backfill_queue_url: Option<String>,
    pub(super) notify_queue_url: Option<String>,
    pub(super) chain_table: Option<String>,
}

impl Queues {
    /// Parses the queue URLs: onboarding, backfill, notification (the first error wins).
    pub(super) fn parse(env: &Env<'_>) -> Result<Self, Error> {
        Ok(Queues {
            onboarding_queue_url: parse_queue_url(
                env.get(ONBOARDING_QUEUE_URL),
                ONBOARDING_QUEUE_URL,
            )?,
            backfill_queue_url: parse_queue_url(env.get(BACKFILL_QUEUE_URL), BACKFILL_QUEUE_URL)?,
            notify_queue_url: parse_queue_url(env.get(NOTIFY_QUEUE_URL), NOTIFY_QUEUE_URL)?,
            chain_table: parse_table_name(env.get(CHAIN_TABLE))?,
        })
    }
}

/// `CHAIN_TABLE`, when set: a DynamoDB table name (3 to 255 of `a-z A-Z 0-9 _ - .`, the
/// DynamoDB API Reference's `TableName` constraint).
fn parse_table_name(raw: Option<String>) -> Result<Option<String>, Error> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let ok = (3..=255).contains(&raw.len())
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(Some(raw))
    } else {
        Err(Error::Config(format!(
            "{CHAIN_TABLE}: {} is not a DynamoDB table name (3 to 255 letters, digits, '_', '-' or '.')",
            echo(&raw)
        )))
    }
}

/// `SELF_ACCOUNT_ID`: the account this stack runs in, when set.
pub(super) fn self_account_id(env: &Env<'_>) -> Result<Option<AccountId>, Error> {
    let Some(raw) = env.get(SELF_ACCOUNT_ID) else {
        return Ok(None);
    };
    AccountId::parse(&raw).map(Some).map_err(|_| {
        Error::Config(format!(
            "{SELF_ACCOUNT_ID}: {} is not a 12-digit account id",
            echo(&raw)
        ))
    })
}

/// The dry-run switch, limits and timings, parsed (the fields of [`super::Config`] of the same
/// names).
pub(super) struct Limits {
    pub(super) dry_run: bool,
    pub(super) max_concurrent_licenses: usize,
    pub(super) license_manager_calls_per_second: u32,
    pub(super) max_concurrent_accounts: usize,
    pub(super) max_receives: u32,
    pub(super) recheck_delay: Duration,
    pub(super) workflow_deadline: Duration,
    pub(super) assume_role_attempts: u32,
    pub(super) assume_role_backoff: Duration,
}

impl Limits {
    /// Parses each setting with its default and bounds, in the order of the fields (the first
    /// error wins).
    pub(super) fn parse(env: &Env<'_>) -> Result<Self, Error> {
        let num = |var: &str, default: u64, min: u64, max: u64| {
            parse_num(env.get(var), var, default, min, max)
        };
        Ok(Limits {
            dry_run: parse_bool(env.get(DRY_RUN).as_deref(), DRY_RUN, false)?,
            max_concurrent_licenses: num(MAX_CONCURRENT_LICENSES, 50, 1, 100)? as usize,
            license_manager_calls_per_second: num(LICENSE_MANAGER_CALLS_PER_SECOND, 10, 1, 100)?
                as u32,
            max_concurrent_accounts: num(MAX_CONCURRENT_ACCOUNTS, 5, 1, 10)? as usize,
            max_receives: num(MAX_RECEIVE_COUNT, 5, 1, 1000)? as u32,
            recheck_delay: Duration::from_secs(num(RECHECK_DELAY_SECONDS, 300, 0, 900)?),
            workflow_deadline: Duration::from_secs(num(
                WORKFLOW_DEADLINE_SECONDS,
                86_400,
                60,
                14 * 86_400,
            )?),
            assume_role_attempts: num(ASSUME_ROLE_ATTEMPTS, 4, 1, 10)? as u32,
            assume_role_backoff: Duration::from_millis(num(
                ASSUME_ROLE_BACKOFF_MS,
                2_000,
                0,
                60_000,
            )?),
        })
    }
}
