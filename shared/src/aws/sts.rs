//! AWS STS: AssumeRole into a member account.

use super::missing;
use crate::error::{aws_error, Error, Retry};
use crate::report::{CallLog, Side};
use aws_credential_types::Credentials;
use std::time::{Duration, SystemTime};

/// AssumeRole into the member account. `AccessDenied` right after account creation usually
/// means the role is not assumable yet: retried with exponential backoff, then retryable.
pub async fn assume_role(
    sts: &aws_sdk_sts::Client,
    role_arn: &str,
    session_name: &str,
    attempts: u32,
    backoff: Duration,
    calls: &CallLog,
) -> Result<Credentials, Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        calls.record(Side::Own, "sts:AssumeRole", false);
        let result = sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session_name)
            .duration_seconds(900)
            .send()
            .await;
        match result {
            Ok(out) => {
                let c = out
                    .credentials()
                    .ok_or_else(|| missing("AssumeRole", "Credentials"))?;
                let expiry = SystemTime::try_from(*c.expiration()).ok();
                return Ok(Credentials::new(
                    c.access_key_id(),
                    c.secret_access_key(),
                    Some(c.session_token().to_string()),
                    expiry,
                    "ct-entitlements-assume-role",
                ));
            }
            Err(err) => {
                let classified = aws_error("sts", "AssumeRole", err);
                let Error::Aws {
                    code,
                    message,
                    retry,
                    ..
                } = &classified
                else {
                    return Err(classified);
                };
                let (code, message, retry) = (code.clone(), message.clone(), *retry);
                let not_yet = code == "AccessDenied" || code == "AccessDeniedException";
                let retry = if not_yet { Retry::Retryable } else { retry };
                if retry == Retry::Retryable && attempt < attempts {
                    tokio::time::sleep(jittered(backoff, attempt)).await;
                    continue;
                }
                return Err(Error::AssumeRole {
                    role_arn: role_arn.to_string(),
                    message: format!("{code}: {message} (after {attempt} attempt(s))"),
                    retry,
                });
            }
        }
    }
}

/// Exponential backoff with up to 50 % jitter: base·2^(attempt-1) · [0.5, 1.0].
fn jittered(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1 << (attempt - 1).min(6));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let fraction = 0.5 + f64::from(nanos % 1000) / 2000.0;
    exp.mul_f64(fraction)
}
