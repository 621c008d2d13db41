//! account-vending settings (on top of the common `shared::config::Config`, which gives
//! `EXECUTION_ROLE_NAME`, `LICENSES_TAG_KEY`, `ONBOARDING_QUEUE_URL` and the AssumeRole retry
//! settings): parsed once at init, no AWS call, every error names its variable.

use shared::config::{parse_bool, parse_num};
use shared::error::Error;
use std::time::Duration;

pub mod vars {
    pub const ACCOUNT_FACTORY_PRODUCT_NAME: &str = "ACCOUNT_FACTORY_PRODUCT_NAME";
    pub const MAX_CONCURRENT_OPERATIONS: &str = "MAX_CONCURRENT_OPERATIONS";
    pub const VENDING_QUEUE_URL: &str = "VENDING_QUEUE_URL";
    pub const VENDING_DEAD_LETTER_QUEUE_URL: &str = "VENDING_DEAD_LETTER_QUEUE_URL";
    pub const TRACK_DELAY_SECONDS: &str = "TRACK_DELAY_SECONDS";
    pub const BUSY_RETRY_DELAY_SECONDS: &str = "BUSY_RETRY_DELAY_SECONDS";
    pub const REQUEST_DEADLINE_SECONDS: &str = "REQUEST_DEADLINE_SECONDS";
    pub const SHARE_PORTFOLIO: &str = "SHARE_PORTFOLIO";
    pub const PORTFOLIO_ID: &str = "PORTFOLIO_ID";
    pub const PORTFOLIO_PRINCIPAL_ARN: &str = "PORTFOLIO_PRINCIPAL_ARN";
    pub const PORTFOLIO_PRINCIPAL_TYPE: &str = "PORTFOLIO_PRINCIPAL_TYPE";
}

/// Share a Service Catalog portfolio with each new account and give a principal there access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortfolioShare {
    pub portfolio_id: String,
    /// `{accountId}` is replaced by the new account's id.
    pub principal_arn: String,
    /// `IAM` or `IAM_PATTERN`.
    pub principal_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendingConfig {
    pub product_name: String,
    /// Control Tower account operations allowed in flight at once (Control Tower's own limit is 5).
    pub max_concurrent_operations: u32,
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    /// Delay between record checks.
    pub track_delay: Duration,
    /// Delay before a request that found Control Tower busy is tried again.
    pub busy_retry_delay: Duration,
    /// A request not finished this long after it arrived is parked in the dead-letter queue.
    pub request_deadline: Duration,
    pub share: Option<PortfolioShare>,
}

impl VendingConfig {
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
        let queue = |var: &str| -> Result<String, Error> {
            match get(var) {
                Some(url) if url.starts_with("https://") || url.starts_with("http://") => Ok(url),
                Some(url) => Err(Error::Config(format!("{var}: {url:?} is not a queue URL"))),
                None => Err(Error::Config(format!(
                    "{var} is required (the stack sets it)"
                ))),
            }
        };
        let share = share_settings(&get)?;
        Ok(VendingConfig {
            product_name: get(ACCOUNT_FACTORY_PRODUCT_NAME)
                .unwrap_or_else(|| "AWS Control Tower Account Factory".into()),
            max_concurrent_operations: u32::try_from(parse_num(
                get(MAX_CONCURRENT_OPERATIONS),
                MAX_CONCURRENT_OPERATIONS,
                5,
                1,
                10,
            )?)
            .unwrap_or(5),
            queue_url: queue(VENDING_QUEUE_URL)?,
            dead_letter_queue_url: queue(VENDING_DEAD_LETTER_QUEUE_URL)?,
            track_delay: Duration::from_secs(parse_num(
                get(TRACK_DELAY_SECONDS),
                TRACK_DELAY_SECONDS,
                120,
                0,
                900,
            )?),
            busy_retry_delay: Duration::from_secs(parse_num(
                get(BUSY_RETRY_DELAY_SECONDS),
                BUSY_RETRY_DELAY_SECONDS,
                300,
                0,
                900,
            )?),
            request_deadline: Duration::from_secs(parse_num(
                get(REQUEST_DEADLINE_SECONDS),
                REQUEST_DEADLINE_SECONDS,
                3 * 86_400,
                600,
                14 * 86_400,
            )?),
            share,
        })
    }
}

/// `SHARE_PORTFOLIO=true`: the portfolio shared with each new account (`PORTFOLIO_ID`) and the
/// principal associated with it there (`PORTFOLIO_PRINCIPAL_ARN`, `PORTFOLIO_PRINCIPAL_TYPE`).
fn share_settings(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<PortfolioShare>, Error> {
    use vars::*;
    if !parse_bool(get(SHARE_PORTFOLIO).as_deref(), SHARE_PORTFOLIO, false)? {
        return Ok(None);
    }
    let portfolio_id = get(PORTFOLIO_ID).ok_or_else(|| {
        Error::Config(format!(
            "{PORTFOLIO_ID} is required when {SHARE_PORTFOLIO}=true"
        ))
    })?;
    let id_ok = portfolio_id
        .strip_prefix("port-")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !id_ok {
        return Err(Error::Config(format!(
            "{PORTFOLIO_ID}: {portfolio_id:?} is not a portfolio id (port-…)"
        )));
    }
    let principal_arn = get(PORTFOLIO_PRINCIPAL_ARN).ok_or_else(|| {
        Error::Config(format!(
            "{PORTFOLIO_PRINCIPAL_ARN} is required when {SHARE_PORTFOLIO}=true"
        ))
    })?;
    if !(principal_arn.starts_with("arn:") && principal_arn.contains(":iam::")) {
        return Err(Error::Config(format!(
            "{PORTFOLIO_PRINCIPAL_ARN}: {principal_arn:?} is not an IAM ARN or pattern"
        )));
    }
    let principal_type = get(PORTFOLIO_PRINCIPAL_TYPE).unwrap_or_else(|| "IAM_PATTERN".into());
    if principal_type != "IAM" && principal_type != "IAM_PATTERN" {
        return Err(Error::Config(format!(
            "{PORTFOLIO_PRINCIPAL_TYPE}: {principal_type:?} must be IAM or IAM_PATTERN"
        )));
    }
    Ok(Some(PortfolioShare {
        portfolio_id,
        principal_arn,
        principal_type,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const Q: &str = "https://sqs.us-east-1.amazonaws.com/111111111111/vending";
    const DLQ: &str = "https://sqs.us-east-1.amazonaws.com/111111111111/vending-dlq";

    fn load(pairs: &[(&str, &str)]) -> Result<VendingConfig, Error> {
        let mut map: HashMap<String, String> = HashMap::from([
            ("VENDING_QUEUE_URL".to_string(), Q.to_string()),
            ("VENDING_DEAD_LETTER_QUEUE_URL".to_string(), DLQ.to_string()),
        ]);
        for (k, v) in pairs {
            map.insert(k.to_string(), v.to_string());
        }
        VendingConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        assert_eq!(
            load(&[]).expect("valid"),
            VendingConfig {
                product_name: "AWS Control Tower Account Factory".into(),
                max_concurrent_operations: 5,
                queue_url: Q.into(),
                dead_letter_queue_url: DLQ.into(),
                track_delay: Duration::from_secs(120),
                busy_retry_delay: Duration::from_secs(300),
                request_deadline: Duration::from_secs(259_200),
                share: None,
            }
        );
    }

    #[test]
    fn portfolio_share() {
        let c = load(&[
            ("SHARE_PORTFOLIO", "true"),
            ("PORTFOLIO_ID", "port-abcdefghijklm"),
            (
                "PORTFOLIO_PRINCIPAL_ARN",
                "arn:aws:iam:::role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_AWSAdministratorAccess_*",
            ),
        ])
        .expect("valid");
        assert_eq!(
            c.share.map(|s| (s.portfolio_id, s.principal_type)),
            Some(("port-abcdefghijklm".to_string(), "IAM_PATTERN".to_string()))
        );
    }

    #[test]
    fn errors_name_the_variable() {
        for (pairs, var) in [
            (vec![("VENDING_QUEUE_URL", "")], "VENDING_QUEUE_URL"),
            (
                vec![("VENDING_DEAD_LETTER_QUEUE_URL", "dlq")],
                "VENDING_DEAD_LETTER_QUEUE_URL",
            ),
            (
                vec![("MAX_CONCURRENT_OPERATIONS", "11")],
                "MAX_CONCURRENT_OPERATIONS",
            ),
            (vec![("TRACK_DELAY_SECONDS", "901")], "TRACK_DELAY_SECONDS"),
            (
                vec![("BUSY_RETRY_DELAY_SECONDS", "-1")],
                "BUSY_RETRY_DELAY_SECONDS",
            ),
            (
                vec![("REQUEST_DEADLINE_SECONDS", "60")],
                "REQUEST_DEADLINE_SECONDS",
            ),
            (vec![("SHARE_PORTFOLIO", "sure")], "SHARE_PORTFOLIO"),
            (vec![("SHARE_PORTFOLIO", "true")], "PORTFOLIO_ID"),
            (
                vec![("SHARE_PORTFOLIO", "true"), ("PORTFOLIO_ID", "p-1")],
                "PORTFOLIO_ID",
            ),
            (
                vec![("SHARE_PORTFOLIO", "true"), ("PORTFOLIO_ID", "port-abc")],
                "PORTFOLIO_PRINCIPAL_ARN",
            ),
            (
                vec![
                    ("SHARE_PORTFOLIO", "true"),
                    ("PORTFOLIO_ID", "port-abc"),
                    ("PORTFOLIO_PRINCIPAL_ARN", "arn:aws:iam:::role/x"),
                    ("PORTFOLIO_PRINCIPAL_TYPE", "USER"),
                ],
                "PORTFOLIO_PRINCIPAL_TYPE",
            ),
        ] {
            match load(&pairs) {
                Err(Error::Config(msg)) => assert!(msg.starts_with(var), "{pairs:?}: {msg}"),
                other => panic!("{pairs:?}: expected a configuration error, got {other:?}"),
            }
        }
    }
}
