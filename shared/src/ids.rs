//! Validated identifiers. Anything that reaches an AWS call has passed through here.

use crate::error::{echo, got, Error};
use serde_json::Value;
use std::fmt;

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct AccountId(String);

impl AccountId {
    /// Accepts exactly 12 ASCII digits: no trimming, no other characters. This one rule holds
    /// for every entry point (events, onboard requests, reconcile requests, custom resources):
    /// another service's padded or decorated id is a bug to surface, not to repair.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        if raw.len() == 12 && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_string()))
        } else {
            Err(Error::InvalidInput(format!(
                "account id must be exactly 12 digits, got {}",
                echo(raw)
            )))
        }
    }

    /// Parses a JSON field that must hold an account id, naming the field in the error:
    /// `<field> must be a 12-digit account id string, got null` (or `missing`, `a number (…)`, …).
    pub fn parse_field(value: Option<&Value>, field: &str) -> Result<Self, Error> {
        match value {
            Some(Value::String(raw)) => Self::parse(raw).map_err(|_| {
                Error::InvalidInput(format!(
                    "{field} must be exactly 12 digits, got {}",
                    echo(raw)
                ))
            }),
            other => Err(Error::InvalidInput(format!(
                "{field} must be a 12-digit account id string, {}",
                got(other)
            ))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The principal ARN License Manager uses for a grant to this account.
    pub fn root_principal(&self) -> String {
        format!("arn:aws:iam::{}:root", self.0)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True for a License Manager license ARN: `arn:<partition>:license-manager::<12 digits>:license:l-<id>`.
pub fn is_license_arn(raw: &str) -> bool {
    let mut parts = raw.splitn(6, ':');
    let (
        Some("arn"),
        Some(partition),
        Some("license-manager"),
        Some(""),
        Some(account),
        Some(rest),
    ) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    )
    else {
        return false;
    };
    let partition_ok = partition.starts_with("aws")
        && partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-');
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let id = rest
        .strip_prefix("license:")
        .or_else(|| rest.strip_prefix("license/"));
    let id_ok = id.and_then(|id| id.strip_prefix("l-")).is_some_and(|hex| {
        !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    partition_ok && account_ok && id_ok
}

/// True for a product SKU as License Manager reports them (letters, digits, `.`, `_`, `-`).
pub fn is_product_sku(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 1024
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// True for an OU id: `ou-` then 4 to 32 lowercase letters or digits, `-`, 8 to 32 more.
pub fn is_ou_id(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix("ou-") else {
        return false;
    };
    let Some((root, ou)) = rest.split_once('-') else {
        return false;
    };
    let ok = |s: &str, min, max| {
        (min..=max).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    ok(root, 4, 32) && ok(ou, 8, 32)
}

/// True for an IAM role name (1-64 of `\w+=,.@-`).
pub fn is_role_name(raw: &str) -> bool {
    (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids() {
        assert!(AccountId::parse("210987654321").is_ok());
        for bad in [
            "",
            "21098765432",
            "2109876543210",
            "Not Available",
            "21098765432a",
            " 10987654321",
            " 210987654321",
            "210987654321 ",
            "210987654321\n",
            "２10987654321",
        ] {
            let err = AccountId::parse(bad).expect_err(bad);
            assert_eq!(err.kind(), "InvalidInput");
        }
        let huge = "1".repeat(1 << 20);
        let msg = AccountId::parse(&huge).expect_err("huge").to_string();
        assert!(msg.len() < 200, "{msg}");
        assert!(msg.ends_with("… (1048576 bytes)"), "{msg}");
        assert_eq!(
            AccountId::parse("210987654321")
                .map(|a| a.root_principal())
                .ok(),
            Some("arn:aws:iam::210987654321:root".to_string())
        );
    }

    #[test]
    fn account_id_fields_name_the_field_and_what_was_there() {
        use serde_json::json;
        let msg = |v: Option<Value>| {
            AccountId::parse_field(v.as_ref(), "accounts[2]")
                .expect_err("bad")
                .to_string()
        };
        assert!(msg(None).contains("accounts[2] must be a 12-digit account id string, missing"));
        assert!(msg(Some(json!(null))).ends_with("got null"));
        assert!(msg(Some(json!(210987654321_u64))).ends_with("got a number (210987654321)"));
        assert!(msg(Some(json!(["210987654321"]))).ends_with("got an array"));
        assert!(msg(Some(json!(" 210987654321"))).ends_with("got \" 210987654321\""));
        assert_eq!(
            AccountId::parse_field(Some(&json!("210987654321")), "x")
                .ok()
                .map(|a| a.to_string()),
            Some("210987654321".into())
        );
    }

    #[test]
    fn license_arns() {
        assert!(is_license_arn(
            "arn:aws:license-manager::294406891311:license:l-0123456789abcdef0123456789abcdef"
        ));
        assert!(is_license_arn(
            "arn:aws-us-gov:license-manager::294406891311:license/l-abc"
        ));
        for bad in [
            "",
            "l-0123",
            "arn:aws:license-manager::29440689131:license:l-abc",
            "arn:aws:license-manager:us-east-1:294406891311:license:l-abc",
            "arn:aws:iam::294406891311:license:l-abc",
            "arn:aws:license-manager::294406891311:grant:g-abc",
            "arn:aws:license-manager::294406891311:license:l-",
        ] {
            assert!(!is_license_arn(bad), "{bad}");
        }
    }

    #[test]
    fn skus_ous_roles() {
        assert!(is_product_sku("prod-abc.1_2"));
        assert!(!is_product_sku("prod abc"));
        assert!(!is_product_sku(""));
        assert!(is_ou_id("ou-ab12-cdef3456"));
        assert!(!is_ou_id("ou-ab12"));
        assert!(!is_ou_id("r-ab12"));
        assert!(!is_ou_id("ou-AB12-cdef3456"));
        assert!(is_role_name("AWSControlTowerExecution"));
        assert!(!is_role_name("bad/role"));
        assert!(!is_role_name(""));
    }
}
