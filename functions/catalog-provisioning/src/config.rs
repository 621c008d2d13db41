//! catalog-provisioning settings (on top of the common `shared::config::Config`): parsed once at init,
//! no AWS call, every error names its variable.

use crate::clock::Clock;
use shared::config::{parse_bool, parse_num, LicenseRef};
use shared::custom_resource::deadline_fallback;
use shared::error::echo;
use shared::error::Error;
use std::time::Duration;

/// Environment variable names.
pub mod vars {
    pub const ALLOW_ACCOUNT_ID_OVERRIDE: &str = "ALLOW_ACCOUNT_ID_OVERRIDE";
    pub const PENDING_GRANT_RESPONSE: &str = "PENDING_GRANT_RESPONSE";
    pub const WAIT_FOR_ACTIVE_SECONDS: &str = "WAIT_FOR_ACTIVE_SECONDS";
    pub const ACTIVE_POLL_INTERVAL_MS: &str = "ACTIVE_POLL_INTERVAL_MS";
    pub const RESPONSE_SAFETY_MARGIN_MS: &str = "RESPONSE_SAFETY_MARGIN_MS";
    pub const ALLOW_LOCAL_RESPONSE_URL: &str = "ALLOW_LOCAL_RESPONSE_URL";
    pub const CATALOG_RECHECK_QUEUE_URL: &str = "CATALOG_RECHECK_QUEUE_URL";
    pub const PENDING_RECHECK_SECONDS: &str = "PENDING_RECHECK_SECONDS";
    pub const CATALOG_LICENSES: &str = "CATALOG_LICENSES";
    pub const CATALOG_SELECTION_RULES: &str = "CATALOG_SELECTION_RULES";
    pub const CATALOG_SHARE_PORTFOLIOS: &str = "CATALOG_SHARE_PORTFOLIOS";
}

/// Which licenses a product launch may ask for (`CATALOG_LICENSES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchLicenses {
    /// Empty: the deployment's own selection (the account's, when selection rules apply).
    Selection,
    /// `*`: any AVAILABLE AWS/Marketplace license the granting account holds.
    Any,
    /// These SKUs and license ARNs only.
    Listed(Vec<LicenseRef>),
}

impl LaunchLicenses {
    /// Whether a license (ARN, and SKU when known) is on an explicit list; `None` when the list
    /// is not explicit (`Selection`).
    pub fn lists(&self, arn: &str, sku: Option<&str>) -> Option<bool> {
        match self {
            LaunchLicenses::Selection => None,
            LaunchLicenses::Any => Some(true),
            LaunchLicenses::Listed(list) => Some(list.iter().any(|item| match item {
                LicenseRef::Arn(a) => a == arn,
                LicenseRef::Sku(s) => Some(s.as_str()) == sku,
            })),
        }
    }
}

/// How a grant still in License Manager's workflow is answered when the invocation's time
/// (`WAIT_FOR_ACTIVE_SECONDS`, the Lambda deadline) runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingResponse {
    /// The default: no answer yet. The request (its ResponseURL included) goes to
    /// `CATALOG_RECHECK_QUEUE_URL`; re-checks every `PENDING_RECHECK_SECONDS` answer SUCCESS once
    /// the grant is ACTIVE, or FAILED (naming the grant and its status) shortly before the
    /// resource's `ServiceTimeout` (CloudFormation's default: one hour). Without a queue, FAILED.
    Wait,
    /// FAILED with the reason: the launch fails and can be retried (the same grant is reused).
    Failed,
    /// SUCCESS with `EntitlementStatus` = `PENDING`; a delayed re-check on
    /// `CATALOG_RECHECK_QUEUE_URL` finishes the activation.
    Success,
}

/// Settings of the custom resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogConfig {
    /// Whether `AccountId` may name an account other than the one launching the stack.
    pub allow_account_override: bool,
    pub pending_response: PendingResponse,
    /// Longest time one request keeps re-checking a grant that is not ACTIVE yet.
    pub wait_for_active: Duration,
    /// Pause between those re-checks.
    pub poll_interval: Duration,
    /// Time kept free before the Lambda deadline to send the response.
    pub safety_margin: Duration,
    /// Accept `http://127.0.0.1` / `http://localhost` response URLs (local tests only).
    pub allow_local_response_url: bool,
    /// Queue of delayed re-checks for grants answered as pending.
    pub recheck_queue_url: Option<String>,
    /// Pause between re-checks of a request waiting for its answer (`Wait`).
    pub pending_recheck_interval: Duration,
    /// The invocation budget assumed when the runtime's deadline is implausible (a local
    /// emulator such as `cargo lambda watch`).
    pub deadline_fallback: Duration,
    /// What launches may ask for (`CATALOG_LICENSES`).
    pub licenses: LaunchLicenses,
    /// Whether `TARGET_OUS`, `ACCOUNT_TAG_FILTER` and the OU rules bound launches too
    /// (`CATALOG_SELECTION_RULES=apply`, the default) or only `CATALOG_LICENSES` does (`ignore`).
    pub apply_selection_rules: bool,
    /// Portfolios `Custom::MarketplacePortfolioShare` may share (`CATALOG_SHARE_PORTFOLIOS`);
    /// empty: none.
    pub share_portfolios: Vec<String>,
    /// The clock answer-by times, the wait budget and the pauses between re-checks are on:
    /// the system clock (no variable); tests set their own.
    pub clock: Clock,
}

impl Default for CatalogConfig {
    /// What an empty environment gives (a test keeps the two equal).
    fn default() -> Self {
        CatalogConfig {
            allow_account_override: false,
            pending_response: PendingResponse::Wait,
            wait_for_active: Duration::from_secs(240),
            poll_interval: Duration::from_secs(10),
            safety_margin: Duration::from_secs(10),
            allow_local_response_url: false,
            recheck_queue_url: None,
            pending_recheck_interval: Duration::from_secs(60),
            deadline_fallback: Duration::from_secs(900),
            licenses: LaunchLicenses::Selection,
            apply_selection_rules: true,
            share_portfolios: Vec::new(),
            clock: Clock::system(),
        }
    }
}

impl CatalogConfig {
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        use vars::*;
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let pending_response = pending_response(get(PENDING_GRANT_RESPONSE).as_deref())?;
        let recheck_queue_url =
            recheck_queue_url(get(CATALOG_RECHECK_QUEUE_URL), pending_response)?;
        let licenses = launch_licenses(get(CATALOG_LICENSES).as_deref())?;
        let apply_selection_rules = selection_rules(get(CATALOG_SELECTION_RULES).as_deref())?;
        let share_portfolios = share_portfolios(get(CATALOG_SHARE_PORTFOLIOS).as_deref())?;
        Ok(CatalogConfig {
            licenses,
            apply_selection_rules,
            share_portfolios,
            allow_account_override: parse_bool(
                get(ALLOW_ACCOUNT_ID_OVERRIDE).as_deref(),
                ALLOW_ACCOUNT_ID_OVERRIDE,
                false,
            )?,
            pending_response,
            wait_for_active: Duration::from_secs(parse_num(
                get(WAIT_FOR_ACTIVE_SECONDS),
                WAIT_FOR_ACTIVE_SECONDS,
                240,
                0,
                900,
            )?),
            poll_interval: Duration::from_millis(parse_num(
                get(ACTIVE_POLL_INTERVAL_MS),
                ACTIVE_POLL_INTERVAL_MS,
                10_000,
                50,
                300_000,
            )?),
            safety_margin: Duration::from_millis(parse_num(
                get(RESPONSE_SAFETY_MARGIN_MS),
                RESPONSE_SAFETY_MARGIN_MS,
                10_000,
                200,
                120_000,
            )?),
            allow_local_response_url: parse_bool(
                get(ALLOW_LOCAL_RESPONSE_URL).as_deref(),
                ALLOW_LOCAL_RESPONSE_URL,
                false,
            )?,
            recheck_queue_url,
            pending_recheck_interval: Duration::from_secs(parse_num(
                get(PENDING_RECHECK_SECONDS),
                PENDING_RECHECK_SECONDS,
                60,
                1,
                900,
            )?),
            // DEADLINE_FALLBACK_SECONDS
            deadline_fallback: deadline_fallback(get)?,
            clock: Clock::system(),
        })
    }
}

/// `PENDING_GRANT_RESPONSE`: `WAIT` (the default), `FAILED` or `SUCCESS`.
fn pending_response(raw: Option<&str>) -> Result<PendingResponse, Error> {
    use vars::PENDING_GRANT_RESPONSE;
    match raw {
        None | Some("WAIT") => Ok(PendingResponse::Wait),
        Some("FAILED") => Ok(PendingResponse::Failed),
        Some("SUCCESS") => Ok(PendingResponse::Success),
        Some(other) => Err(Error::Config(format!(
            "{PENDING_GRANT_RESPONSE}: {other:?} must be WAIT, FAILED or SUCCESS"
        ))),
    }
}

/// `CATALOG_RECHECK_QUEUE_URL`: an http(s) URL; required by `PENDING_GRANT_RESPONSE=SUCCESS`.
fn recheck_queue_url(
    url: Option<String>,
    pending_response: PendingResponse,
) -> Result<Option<String>, Error> {
    use vars::{CATALOG_RECHECK_QUEUE_URL, PENDING_GRANT_RESPONSE};
    if let Some(url) = &url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::Config(format!(
                "{CATALOG_RECHECK_QUEUE_URL}: {url:?} is not a queue URL"
            )));
        }
    }
    if pending_response == PendingResponse::Success && url.is_none() {
        return Err(Error::Config(format!(
            "{PENDING_GRANT_RESPONSE}=SUCCESS needs {CATALOG_RECHECK_QUEUE_URL}: without a re-check nothing would finish activating the grant"
        )));
    }
    Ok(url)
}

/// `CATALOG_LICENSES`: unset (the deployment's selection), `*`, or a list of ARNs and SKUs.
fn launch_licenses(raw: Option<&str>) -> Result<LaunchLicenses, Error> {
    use vars::CATALOG_LICENSES;
    Ok(match raw {
        None => LaunchLicenses::Selection,
        Some("*") => LaunchLicenses::Any,
        Some(raw) => {
            let mut list = Vec::new();
            for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let parsed = LicenseRef::parse(item, CATALOG_LICENSES)?;
                if !list.contains(&parsed) {
                    list.push(parsed);
                }
            }
            LaunchLicenses::Listed(list)
        }
    })
}

/// `CATALOG_SELECTION_RULES`: `apply` (the default) or `ignore`.
fn selection_rules(raw: Option<&str>) -> Result<bool, Error> {
    use vars::CATALOG_SELECTION_RULES;
    match raw {
        None | Some("apply") => Ok(true),
        Some("ignore") => Ok(false),
        Some(other) => Err(Error::Config(format!(
            "{CATALOG_SELECTION_RULES}: {} must be apply or ignore",
            echo(other)
        ))),
    }
}

/// `CATALOG_SHARE_PORTFOLIOS`: portfolio ids (`port-` and up to 96 letters and digits).
fn share_portfolios(raw: Option<&str>) -> Result<Vec<String>, Error> {
    use vars::CATALOG_SHARE_PORTFOLIOS;
    let mut share_portfolios = Vec::new();
    for item in raw
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        let valid = item.strip_prefix("port-").is_some_and(|rest| {
            !rest.is_empty() && rest.len() <= 96 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if !valid {
            return Err(Error::Config(format!(
                "{CATALOG_SHARE_PORTFOLIOS}: {} is not a portfolio id (port-…)",
                echo(item)
            )));
        }
        share_portfolios.push(item.to_string());
    }
    Ok(share_portfolios)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<CatalogConfig, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CatalogConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = load(&[]).expect("valid");
        assert_eq!(c, CatalogConfig::default());
        assert_eq!(
            (
                c.pending_response,
                c.wait_for_active,
                c.poll_interval,
                c.safety_margin
            ),
            (
                PendingResponse::Wait,
                Duration::from_secs(240),
                Duration::from_secs(10),
                Duration::from_secs(10)
            )
        );
        assert_eq!(
            (c.licenses, c.apply_selection_rules, c.deadline_fallback),
            (LaunchLicenses::Selection, true, Duration::from_secs(900))
        );
    }

    #[test]
    fn errors_name_the_variable() {
        for (var, value) in [
            ("ALLOW_ACCOUNT_ID_OVERRIDE", "perhaps"),
            ("PENDING_GRANT_RESPONSE", "PENDING"),
            ("WAIT_FOR_ACTIVE_SECONDS", "901"),
            ("ACTIVE_POLL_INTERVAL_MS", "10"),
            ("RESPONSE_SAFETY_MARGIN_MS", "x"),
            ("ALLOW_LOCAL_RESPONSE_URL", "2"),
            ("CATALOG_RECHECK_QUEUE_URL", "queue"),
            ("PENDING_RECHECK_SECONDS", "0"),
            ("DEADLINE_FALLBACK_SECONDS", "901"),
            ("CATALOG_LICENSES", "not a license!"),
            ("CATALOG_SELECTION_RULES", "sometimes"),
            ("CATALOG_SHARE_PORTFOLIOS", "port-ok1, portfolio-2"),
        ] {
            match load(&[(var, value)]) {
                Err(Error::Config(msg)) => assert!(msg.starts_with(var), "{var}: {msg}"),
                other => panic!("{var}={value}: expected a configuration error, got {other:?}"),
            }
        }
    }

    #[test]
    fn pending_success_needs_a_recheck_queue() {
        match load(&[("PENDING_GRANT_RESPONSE", "SUCCESS")]) {
            Err(Error::Config(msg)) => assert!(msg.contains("CATALOG_RECHECK_QUEUE_URL"), "{msg}"),
            other => panic!("expected a configuration error, got {other:?}"),
        }
        let c = load(&[
            ("PENDING_GRANT_RESPONSE", "SUCCESS"),
            (
                "CATALOG_RECHECK_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/111111111111/recheck",
            ),
        ])
        .expect("valid");
        assert_eq!(c.pending_response, PendingResponse::Success);
    }
}

#[cfg(test)]
mod launch_bounds {
    use super::*;

    #[test]
    fn catalog_licenses_forms() {
        let load = |v: &str| {
            CatalogConfig::from_lookup(|k| (k == vars::CATALOG_LICENSES).then(|| v.to_string()))
                .expect("valid")
                .licenses
        };
        assert_eq!(load(""), LaunchLicenses::Selection);
        assert_eq!(load(" * "), LaunchLicenses::Any);
        let arn =
            "arn:aws:license-manager::111111111111:license:l-0123456789abcdef0123456789abcdef";
        let listed = load(&format!("prod-abc, {arn},prod-abc"));
        assert_eq!(
            listed,
            LaunchLicenses::Listed(vec![
                LicenseRef::Sku("prod-abc".into()),
                LicenseRef::Arn(arn.into())
            ])
        );
        assert_eq!(listed.lists(arn, None), Some(true));
        assert_eq!(listed.lists("arn:other", Some("prod-abc")), Some(true));
        assert_eq!(listed.lists("arn:other", Some("prod-xyz")), Some(false));
        assert_eq!(LaunchLicenses::Any.lists("arn:other", None), Some(true));
        assert_eq!(LaunchLicenses::Selection.lists(arn, None), None);
    }

    #[test]
    fn selection_rules_and_portfolios() {
        let load = |pairs: &[(&str, &str)]| {
            let map: std::collections::HashMap<_, _> = pairs.iter().cloned().collect();
            CatalogConfig::from_lookup(|k| map.get(k).map(|v| v.to_string()))
        };
        assert!(
            !load(&[("CATALOG_SELECTION_RULES", "ignore")])
                .expect("valid")
                .apply_selection_rules
        );
        assert_eq!(
            load(&[("CATALOG_SHARE_PORTFOLIOS", " port-abc123 ,port-def456,")])
                .expect("valid")
                .share_portfolios,
            vec!["port-abc123".to_string(), "port-def456".to_string()]
        );
    }
}

#[cfg(test)]
mod pending_default {
    use super::*;

    /// Issue 8 item 9: a grant still in License Manager's workflow (minutes in AWS) must not
    /// fail a first product launch by default.
    #[test]
    fn default_pending_response_waits_instead_of_failing() {
        let c = CatalogConfig::from_lookup(|_| None).expect("valid");
        assert_eq!(c.pending_response, PendingResponse::Wait);
        let c = CatalogConfig::from_lookup(|k| {
            (k == vars::PENDING_GRANT_RESPONSE).then(|| "FAILED".to_string())
        })
        .expect("valid");
        assert_eq!(c.pending_response, PendingResponse::Failed);
    }
}
