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

    /// The principal ARN License Manager uses for a grant to this account, in `partition`
    /// (`aws`, `aws-us-gov`, `aws-cn`, …: see [`partition_of_region`]).
    pub(crate) fn root_principal(&self, partition: &str) -> String {
        format!("arn:{partition}:iam::{}:root", self.0)
    }

    /// The ARN of the IAM role `role_name` in this account, in `partition`.
    pub fn role_arn(&self, partition: &str, role_name: &str) -> String {
        format!("arn:{partition}:iam::{}:role/{role_name}", self.0)
    }
}

/// The account of a root principal ARN, `arn:<partition>:iam::<12 digits>:root`, in any
/// partition; `None` for anything else (an organization, an OU, a role, a malformed ARN).
pub fn account_of_root_principal(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let account = rest.strip_prefix("iam::")?.strip_suffix(":root")?;
    (is_partition(partition) && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        .then_some(account)
}

/// True for a partition name as ARNs spell it: 1 to 32 lowercase letters, digits or `-`.
pub(crate) fn is_partition(raw: &str) -> bool {
    (1..=32).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The partition of a region: `cn-*` → `aws-cn`, `us-gov-*` → `aws-us-gov`, the isolated
/// regions → `aws-iso`, `aws-iso-b`, `aws-iso-e`, `aws-iso-f`; anything else → `aws`.
pub(crate) fn partition_of_region(region: &str) -> &'static str {
    // Longer prefixes first: `us-isob-` and `us-isof-` also start with `us-iso`.
    const PREFIXES: &[(&str, &str)] = &[
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-isof-", "aws-iso-f"),
        ("us-iso-", "aws-iso"),
        ("eu-isoe-", "aws-iso-e"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("aws", |(_, partition)| partition)
}

/// The partition ARNs are built in, read through `lookup` (the environment in production):
/// `AWS_PARTITION` when set (validated), else the partition of `AWS_REGION` (which Lambda
/// sets) or `AWS_DEFAULT_REGION`, else `aws`. Blank values count as unset.
pub(crate) fn partition_from(lookup: impl Fn(&str) -> Option<String>) -> Result<String, Error> {
    let get = |k: &str| {
        lookup(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if let Some(partition) = get("AWS_PARTITION") {
        return if is_partition(&partition) {
            Ok(partition)
        } else {
            Err(Error::Config(format!(
                "AWS_PARTITION: {} is not a partition name (lowercase letters, digits and '-', such as aws, aws-us-gov or aws-cn)",
                echo(&partition)
            )))
        };
    }
    Ok(get("AWS_REGION")
        .or_else(|| get("AWS_DEFAULT_REGION"))
        .map_or("aws", |region| partition_of_region(&region))
        .to_string())
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True for a License Manager license ARN: `arn:<partition>:license-manager::<12 digits>:license:l-<id>`.
pub fn is_license_arn(raw: &str) -> bool {
    is_license_manager_arn(raw, "license", "l-")
}

/// True for a License Manager grant ARN: `arn:<partition>:license-manager::<12 digits>:grant:g-<id>`.
pub(crate) fn is_grant_arn(raw: &str) -> bool {
    is_license_manager_arn(raw, "grant", "g-")
}

fn is_license_manager_arn(raw: &str, kind: &str, id_prefix: &str) -> bool {
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
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix(':').or_else(|| r.strip_prefix('/')));
    let id_ok = id
        .and_then(|id| id.strip_prefix(id_prefix))
        .is_some_and(|hex| {
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
                .map(|a| a.root_principal("aws"))
                .ok(),
            Some("arn:aws:iam::210987654321:root".to_string())
        );
    }

    #[test]
    fn partitions_of_regions() {
        for (region, partition) in [
            ("us-east-1", "aws"),
            ("eu-west-1", "aws"),
            ("ap-southeast-5", "aws"),
            ("il-central-1", "aws"),
            ("cn-north-1", "aws-cn"),
            ("cn-northwest-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-gov-east-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-iso-west-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("us-isof-south-1", "aws-iso-f"),
            ("us-isof-east-1", "aws-iso-f"),
            ("", "aws"),
            ("cn", "aws"),
            ("us-gov", "aws"),
        ] {
            assert_eq!(partition_of_region(region), partition, "{region}");
        }
    }

    #[test]
    fn the_partition_comes_from_aws_partition_then_the_region() {
        let from = |pairs: &[(&str, &str)]| {
            partition_from(|k| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        let ok = |pairs: &[(&str, &str)]| from(pairs).expect("valid partition");
        assert_eq!(ok(&[]), "aws");
        assert_eq!(ok(&[("AWS_REGION", "us-gov-west-1")]), "aws-us-gov");
        assert_eq!(ok(&[("AWS_DEFAULT_REGION", "cn-north-1")]), "aws-cn");
        assert_eq!(
            ok(&[
                ("AWS_REGION", "us-gov-west-1"),
                ("AWS_DEFAULT_REGION", "cn-north-1")
            ]),
            "aws-us-gov",
            "AWS_REGION (set by Lambda) wins over AWS_DEFAULT_REGION"
        );
        assert_eq!(
            ok(&[("AWS_REGION", " "), ("AWS_DEFAULT_REGION", "cn-north-1")]),
            "aws-cn"
        );
        assert_eq!(
            ok(&[("AWS_PARTITION", "aws-cn"), ("AWS_REGION", "us-east-1")]),
            "aws-cn",
            "AWS_PARTITION wins"
        );
        assert_eq!(
            ok(&[("AWS_PARTITION", ""), ("AWS_REGION", "us-gov-east-1")]),
            "aws-us-gov"
        );
        for bad in [
            "AWS",
            "aws us",
            "aws:cn",
            "aws/cn",
            "aws-\u{e9}",
            &"a".repeat(33),
        ] {
            match from(&[("AWS_PARTITION", bad), ("AWS_REGION", "us-east-1")]) {
                Err(Error::Config(msg)) => assert!(msg.starts_with("AWS_PARTITION: "), "{msg}"),
                other => panic!("{bad}: expected a configuration error, got {other:?}"),
            }
        }
    }

    #[test]
    fn principals_and_roles_are_built_in_the_partition_of_the_region() {
        let account = AccountId::parse("210987654321").expect("valid account id");
        let partition = partition_of_region("us-gov-west-1");
        assert_eq!(
            account.root_principal(partition),
            "arn:aws-us-gov:iam::210987654321:root"
        );
        assert_eq!(
            account.role_arn(partition, "AWSControlTowerExecution"),
            "arn:aws-us-gov:iam::210987654321:role/AWSControlTowerExecution"
        );
        assert_eq!(
            account.root_principal(partition_of_region("cn-northwest-1")),
            "arn:aws-cn:iam::210987654321:root"
        );
        assert_eq!(
            account.role_arn(partition_of_region("us-east-1"), "r"),
            "arn:aws:iam::210987654321:role/r"
        );
        // What is built is what is read back.
        for region in ["us-east-1", "us-gov-west-1", "cn-north-1", "us-isob-east-1"] {
            let principal = account.root_principal(partition_of_region(region));
            assert_eq!(
                account_of_root_principal(&principal),
                Some("210987654321"),
                "{principal}"
            );
        }
    }

    proptest::proptest! {
        /// Any valid account's root principal, written in any partition, reads back as that
        /// account (moved from `tests/prop_parsers.rs` when `root_principal` became crate-only).
        #[test]
        fn a_root_principal_reads_back_as_its_account(raw in "[0-9]{12}", partition in proptest::sample::select(vec!["aws", "aws-cn", "aws-us-gov", "aws-iso-b"])) {
            let id = AccountId::parse(&raw).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            let principal = id.root_principal(partition);
            proptest::prop_assert_eq!(&principal, &format!("arn:{partition}:iam::{raw}:root"));
            proptest::prop_assert_eq!(account_of_root_principal(&principal), Some(raw.as_str()));
        }
    }

    #[test]
    fn root_principals_are_read_in_any_partition() {
        for (arn, account) in [
            ("arn:aws:iam::123456789012:root", "123456789012"),
            ("arn:aws-cn:iam::123456789012:root", "123456789012"),
            ("arn:aws-us-gov:iam::210987654321:root", "210987654321"),
            ("arn:aws-iso-b:iam::210987654321:root", "210987654321"),
        ] {
            assert_eq!(account_of_root_principal(arn), Some(account), "{arn}");
        }
        for bad in [
            "",
            "123456789012",
            "arn:aws-cn:iam::12345678901:root",
            "arn:aws-cn:iam::1234567890123:root",
            "arn:aws-cn:iam::12345678901a:root",
            "arn:aws-cn:iam::123456789012:root ",
            "arn:aws-cn:iam::123456789012:root:x",
            "arn:aws-cn:iam::123456789012:user/bob",
            "arn:aws-cn:iam::123456789012:role/r",
            "arn:aws-cn:iam:cn-north-1:123456789012:root",
            "arn:aws-cn:sts::123456789012:root",
            "arn::iam::123456789012:root",
            "arn:AWS:iam::123456789012:root",
            "arn:aws cn:iam::123456789012:root",
            "arn:aws-cn:iam:::root",
            "arn:aws-cn:iam::123456789012",
            "arn:aws:organizations::123456789012:organization/o-abc1234567",
            "arn:aws:organizations::123456789012:ou/o-abc1234567/ou-ab12-cd345678",
            "aws-cn:iam::123456789012:root",
            "xarn:aws-cn:iam::123456789012:root",
        ] {
            assert_eq!(account_of_root_principal(bad), None, "{bad}");
        }
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
    fn grant_arns() {
        assert!(is_grant_arn(
            "arn:aws:license-manager::294406891311:grant:g-0123456789abcdef"
        ));
        for bad in [
            "g-0123",
            "arn:aws:license-manager::294406891311:license:l-abc",
            "arn:aws:license-manager::294406891311:grants:g-abc",
            "arn:aws:license-manager::294406891311:grant:g-",
            "arn:aws:license-manager::294406891311:grant:l-abc",
            "arn:aws:license-manager:us-east-1:294406891311:grant:g-abc",
        ] {
            assert!(!is_grant_arn(bad), "{bad}");
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
