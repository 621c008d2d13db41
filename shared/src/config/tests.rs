use super::*;
use std::collections::HashMap;

const ARN: &str =
    "arn:aws:license-manager::294406891311:license:l-0123456789abcdef0123456789abcdef";

fn load(pairs: &[(&str, &str)]) -> Result<Config, Error> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

fn config_error(pairs: &[(&str, &str)]) -> String {
    match load(pairs) {
        Err(Error::Config(msg)) => msg,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let c = load(&[("ALL_MARKETPLACE_LICENSES", "true")]).expect("valid");
    assert_eq!(c.selection, Selection::AllMarketplace);
    assert_eq!(c.execution_role_name, "AWSControlTowerExecution");
    assert_eq!(c.partition, "aws");
    assert_eq!(c.license_home_region, "us-east-1");
    assert_eq!(c.override_behavior, OverrideBehavior::DistributedGrantsOnly);
    assert_eq!(c.allowed_operations.len(), 4);
    assert!(!c.dry_run);
    assert_eq!(c.recheck_delay, Duration::from_secs(300));
    assert_eq!(c.max_concurrent_licenses, 50);
    assert_eq!(c.license_manager_calls_per_second, 10);
}

#[test]
fn listed_licenses() {
    let c = load(&[
        ("LICENSE_ARNS", &format!("{ARN}, {ARN}")),
        ("PRODUCT_SKUS", "sku-a,sku-b"),
    ])
    .expect("valid");
    assert_eq!(
        c.selection,
        Selection::Listed(vec![
            LicenseRef::Arn(ARN.into()),
            LicenseRef::Sku("sku-a".into()),
            LicenseRef::Sku("sku-b".into())
        ])
    );
}

#[test]
fn errors_name_the_variable() {
    // Operator-set values are echoed bounded too.
    let huge = "x".repeat(10_000);
    let base = ("PRODUCT_SKUS", "prod-sku-1");
    for var in [
        "EXECUTION_ROLE_NAME",
        "LICENSE_HOME_REGION",
        "GRANT_NAME_PREFIX",
        "SELF_ACCOUNT_ID",
        "ONBOARDING_QUEUE_URL",
        "TARGET_OUS",
        "ACCOUNT_TAG_FILTER",
        "AWS_PARTITION",
    ] {
        let msg = config_error(&[base, (var, &huge)]);
        assert!(
            msg.starts_with(var) && msg.len() < 400,
            "{var}: {} bytes",
            msg.len()
        );
    }
    assert!(config_error(&[]).contains("no licenses selected"));
    assert!(
        config_error(&[("LICENSE_ARNS", "arn:aws:license-manager::1:license:l-1")])
            .starts_with("LICENSE_ARNS")
    );
    assert!(config_error(&[("LICENSE_ARNS", "sku-a")]).starts_with("LICENSE_ARNS"));
    assert!(config_error(&[("PRODUCT_SKUS", "bad sku!")]).starts_with("PRODUCT_SKUS"));
    assert!(
        config_error(&[("ALL_MARKETPLACE_LICENSES", "true"), ("PRODUCT_SKUS", "a")])
            .contains("choose one")
    );
    assert!(config_error(&[("ALL_MARKETPLACE_LICENSES", "maybe")])
        .starts_with("ALL_MARKETPLACE_LICENSES"));
    let base = ("PRODUCT_SKUS", "sku-a");
    for (var, value) in [
        ("OU_LICENSE_RULES", "{not json"),
        ("OU_LICENSE_RULES", r#"{"r-abcd": ["sku"]}"#),
        ("TARGET_OUS", "ou-1"),
        ("ACCOUNT_TAG_FILTER", "novalue"),
        ("EXECUTION_ROLE_NAME", "a/b"),
        ("LICENSE_HOME_REGION", "mars"),
        ("ACTIVATION_OVERRIDE_BEHAVIOR", "REPLACE"),
        ("ALLOWED_OPERATIONS", "CheckoutLicense,DeleteEverything"),
        ("DRY_RUN", "sometimes"),
        ("MAX_CONCURRENT_LICENSES", "0"),
        ("RECHECK_DELAY_SECONDS", "901"),
        ("WORKFLOW_DEADLINE_SECONDS", "-1"),
        ("ONBOARDING_QUEUE_URL", "queue"),
        ("BACKFILL_QUEUE_URL", "queue"),
        ("GRANT_NAME_PREFIX", "has space"),
        ("SELF_ACCOUNT_ID", "12345678901"),
        ("SELF_ACCOUNT_ID", "arn:aws:iam::123456789012:root"),
        ("AWS_PARTITION", "AWS"),
        ("AWS_PARTITION", "aws:cn"),
    ] {
        let msg = config_error(&[base, (var, value)]);
        assert!(msg.starts_with(var), "{var}={value}: {msg}");
    }
}

#[test]
fn the_partition_follows_the_region_unless_set() {
    let base = ("PRODUCT_SKUS", "sku-a");
    let partition = |pairs: &[(&str, &str)]| {
        let mut all = vec![base];
        all.extend_from_slice(pairs);
        load(&all).expect("valid").partition
    };
    assert_eq!(partition(&[]), "aws");
    assert_eq!(partition(&[("AWS_REGION", "eu-west-1")]), "aws");
    assert_eq!(partition(&[("AWS_REGION", "us-gov-west-1")]), "aws-us-gov");
    assert_eq!(partition(&[("AWS_REGION", "cn-northwest-1")]), "aws-cn");
    assert_eq!(
        partition(&[("AWS_DEFAULT_REGION", "us-gov-east-1")]),
        "aws-us-gov"
    );
    assert_eq!(
        partition(&[("AWS_REGION", "us-east-1"), ("AWS_PARTITION", "aws-iso-b")]),
        "aws-iso-b"
    );
}

#[test]
fn ou_rules_and_filters() {
    let c = load(&[
        ("PRODUCT_SKUS", "sku-a"),
        (
            "OU_LICENSE_RULES",
            r#"{"ou-ab12-cdef3456": ["sku-b"], "ou-ab12-00000000": []}"#,
        ),
        ("TARGET_OUS", "ou-ab12-cdef3456"),
        ("ACCOUNT_TAG_FILTER", "marketplace = yes"),
        (
            "ACTIVATION_OVERRIDE_BEHAVIOR",
            "ALL_GRANTS_PERMITTED_BY_ISSUER",
        ),
    ])
    .expect("valid");
    assert_eq!(
        c.ou_rules["ou-ab12-cdef3456"],
        vec![LicenseRef::Sku("sku-b".into())]
    );
    assert!(c.ou_rules["ou-ab12-00000000"].is_empty());
    assert_eq!(
        c.account_tag_filter,
        Some(("marketplace".into(), "yes".into()))
    );
    assert_eq!(
        c.override_behavior,
        OverrideBehavior::AllGrantsPermittedByIssuer
    );
}

#[test]
fn distribution_modes() {
    let ou_a = "ou-ab12-aaaaaaaa";
    let ou_b = "ou-ab12-bbbbbbbb";
    let rules = format!(r#"{{"{ou_a}": ["sku-b", "sku-c"], "{ou_b}": ["sku-b", "sku-c"]}}"#);
    // Mixed: A to the whole organization, B to its OUs, C per account.
    let c = load(&[
        ("PRODUCT_SKUS", "sku-a sku-c"),
        (
            "OU_LICENSE_RULES",
            &rules.replace("\"sku-b\"", "\"sku-a\", \"sku-b\""),
        ),
        (
            "LICENSE_DISTRIBUTION",
            "sku-a=organization, sku-b=ou sku-c=account",
        ),
    ])
    .expect("valid");
    assert_eq!(c.mode_of("arn:x", "sku-a"), Mode::Organization);
    assert_eq!(c.mode_of("arn:x", "sku-b"), Mode::Ou);
    assert_eq!(c.mode_of("arn:x", "sku-c"), Mode::Account);
    assert_eq!(c.mode_of("arn:x", "sku-z"), Mode::Account);
    assert_eq!(c.ous_of("arn:x", "sku-b"), vec![ou_a, ou_b]);
    // By ARN, ou mode through TARGET_OUS.
    let c = load(&[
        ("LICENSE_ARNS", ARN),
        ("TARGET_OUS", ou_a),
        ("LICENSE_DISTRIBUTION", &format!("{ARN}=ou")),
    ])
    .expect("valid");
    assert_eq!(c.mode_of(ARN, "anything"), Mode::Ou);
    assert_eq!(c.ous_of(ARN, "anything"), vec![ou_a]);
    let json = serde_json::to_value(&c).expect("serialises");
    assert_eq!(json["distribution"][ARN], "ou");

    for (pairs, part) in [
        (
            vec![("PRODUCT_SKUS", "sku-a"), ("LICENSE_DISTRIBUTION", "sku-a")],
            "must look like",
        ),
        (
            vec![
                ("PRODUCT_SKUS", "sku-a"),
                ("LICENSE_DISTRIBUTION", "sku-a=org"),
            ],
            "must be account, organization or ou",
        ),
        (
            vec![
                ("PRODUCT_SKUS", "sku-a"),
                ("LICENSE_DISTRIBUTION", "sku-a=account sku-a=organization"),
            ],
            "two modes",
        ),
        (
            vec![
                ("PRODUCT_SKUS", "sku-a"),
                ("LICENSE_DISTRIBUTION", "sku-b=organization"),
            ],
            "is not selected",
        ),
        (
            vec![
                ("PRODUCT_SKUS", "sku-a"),
                ("ACCOUNT_TAG_FILTER", "k=v"),
                ("LICENSE_DISTRIBUTION", "sku-a=organization"),
            ],
            "ACCOUNT_TAG_FILTER needs account mode",
        ),
        (
            vec![
                ("PRODUCT_SKUS", "sku-a"),
                ("TARGET_OUS", ou_a),
                ("LICENSE_DISTRIBUTION", "sku-a=organization"),
            ],
            "use ou mode",
        ),
        (
            vec![
                ("PRODUCT_SKUS", "sku-a"),
                ("OU_LICENSE_RULES", &rules),
                ("LICENSE_DISTRIBUTION", "sku-a=organization"),
            ],
            "does not list it",
        ),
        (
            vec![
                ("PRODUCT_SKUS", "sku-a"),
                ("LICENSE_DISTRIBUTION", "sku-a=ou"),
            ],
            "use organization mode",
        ),
        (
            vec![
                ("PRODUCT_SKUS", "sku-a"),
                ("OU_LICENSE_RULES", &rules),
                ("LICENSE_DISTRIBUTION", "sku-b=organization"),
            ],
            "only OU_LICENSE_RULES select it",
        ),
    ] {
        let msg = config_error(&pairs);
        assert!(
            msg.starts_with("LICENSE_DISTRIBUTION") && msg.contains(part),
            "{pairs:?}: {msg}"
        );
    }
    // Account mode needs nothing else.
    load(&[
        ("PRODUCT_SKUS", "sku-a"),
        ("ACCOUNT_TAG_FILTER", "k=v"),
        ("LICENSE_DISTRIBUTION", "sku-a=account"),
    ])
    .expect("valid");
}

#[test]
fn self_account_id_is_optional_and_validated() {
    let c = load(&[("ALL_MARKETPLACE_LICENSES", "true")]).expect("valid");
    assert_eq!(c.self_account_id, None);
    let c = load(&[
        ("ALL_MARKETPLACE_LICENSES", "true"),
        ("SELF_ACCOUNT_ID", " 111122223333 "),
    ])
    .expect("valid");
    assert_eq!(
        c.self_account_id.as_ref().map(AccountId::as_str),
        Some("111122223333")
    );
    let c = Config::from_lookup_per_request(|k| {
        (k == vars::SELF_ACCOUNT_ID).then(|| "111122223333".to_string())
    })
    .expect("valid");
    assert_eq!(
        c.self_account_id.map(|a| a.to_string()).as_deref(),
        Some("111122223333")
    );
    let msg = config_error(&[
        ("ALL_MARKETPLACE_LICENSES", "true"),
        ("SELF_ACCOUNT_ID", "1111-2222-3333"),
    ]);
    assert!(msg.starts_with("SELF_ACCOUNT_ID"), "{msg}");
}
