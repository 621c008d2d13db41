use super::*;

const ARN: &str =
    "arn:aws:license-manager::294406891311:license:l-0123456789abcdef0123456789abcdef";
const OU_A: &str = "ou-ab12-aaaaaaaa";
const OU_B: &str = "ou-ab12-bbbbbbbb";

fn refused(text: &str) -> String {
    match Document::parse(text) {
        Err(Error::Config(msg)) => msg,
        other => panic!("expected a configuration error for {text}, got {other:?}"),
    }
}

#[test]
fn a_full_document_reads_like_the_environment() {
    let text = format!(
        r#"{{"version": 1, "licenses": ["sku-a", "{ARN}", "sku-a"],
            "ouLicenseRules": {{"{OU_A}": ["sku-b"], "{OU_B}": []}},
            "licenseDistribution": {{"sku-a": "account"}},
            "targetOus": ["{OU_A}"],
            "accountTagFilter": {{"key": " env ", "value": "prod"}}}}"#
    );
    let doc = Document::parse(&text).expect("valid");
    let from_doc = crate::Config::from_lookup_with_document(
        |k| (k == "LICENSES_TAG_KEY").then(|| "licenses".to_string()),
        Some(&doc),
    )
    .expect("valid");
    let env: BTreeMap<&str, String> = BTreeMap::from([
        ("LICENSE_ARNS", ARN.to_string()),
        ("PRODUCT_SKUS", "sku-a".to_string()),
        (
            "OU_LICENSE_RULES",
            format!(r#"{{"{OU_A}": ["sku-b"], "{OU_B}": []}}"#),
        ),
        ("LICENSE_DISTRIBUTION", "sku-a=account".to_string()),
        ("TARGET_OUS", OU_A.to_string()),
        ("ACCOUNT_TAG_FILTER", "env=prod".to_string()),
        ("LICENSES_TAG_KEY", "licenses".to_string()),
    ]);
    let from_env = crate::Config::from_lookup(|k| env.get(k).cloned()).expect("valid");
    // Same settings; only the order of the listed licenses follows each source's.
    assert_eq!(from_doc.ou_rules, from_env.ou_rules);
    assert_eq!(from_doc.distribution, from_env.distribution);
    assert_eq!(from_doc.target_ous, from_env.target_ous);
    assert_eq!(from_doc.account_tag_filter, from_env.account_tag_filter);
    assert_eq!(from_doc.licenses_tag_key, from_env.licenses_tag_key);
    let Selection::Listed(listed) = &from_doc.selection else {
        panic!("{:?}", from_doc.selection)
    };
    assert_eq!(listed.len(), 2, "repeats dropped: {listed:?}");
    let summary = doc.summary();
    assert_eq!(
        (summary.licenses, summary.ou_rules, summary.target_ous),
        (2, 2, 1)
    );
    assert_eq!(summary.account_tag_filter.as_deref(), Some("env=prod"));
}

#[test]
fn a_minimal_document_and_the_licenses_tag_key_of_the_environment() {
    let doc = Document::parse(r#"{"version": 1, "allMarketplaceLicenses": true}"#).expect("ok");
    assert_eq!(doc.selected.selection, Selection::AllMarketplace);
    let config = crate::Config::from_lookup_with_document(
        |k| (k == "LICENSES_TAG_KEY").then(|| "ct-entitlements:licenses".to_string()),
        Some(&doc),
    )
    .expect("the tag key is no selection variable");
    assert_eq!(
        config.licenses_tag_key.as_deref(),
        Some("ct-entitlements:licenses")
    );
    assert!(
        refused(r#"{"version": 1, "licenses": ["s"], "licensesTagKey": "k"}"#)
            .starts_with("\"licensesTagKey\": unknown field")
    );
}

#[test]
fn errors_name_the_field_path() {
    let long = "x".repeat(5000);
    for (text, starts) in [
        ("not json".to_string(), "configuration document: not JSON"),
        ("[1]".to_string(), "configuration document: expected a JSON object"),
        (r#"{"licenses": ["s"]}"#.to_string(), "version: missing"),
        (r#"{"version": 2, "licenses": ["s"]}"#.to_string(), "version: a number (2)"),
        (r#"{"version": "1", "licenses": ["s"]}"#.to_string(), "version: \"1\""),
        (
            r#"{"version": 1, "licenses": ["s"], "ouLicenceRules": {}}"#.to_string(),
            "\"ouLicenceRules\": unknown field",
        ),
        (r#"{"version": 1}"#.to_string(), "no licenses selected: set licenses or allMarketplaceLicenses=true"),
        (
            r#"{"version": 1, "licenses": ["s"], "allMarketplaceLicenses": true}"#.to_string(),
            "allMarketplaceLicenses=true cannot be combined with licenses",
        ),
        (
            r#"{"version": 1, "allMarketplaceLicenses": "yes"}"#.to_string(),
            "allMarketplaceLicenses: expected true or false",
        ),
        (r#"{"version": 1, "licenses": "s"}"#.to_string(), "licenses: expected a list of strings"),
        (r#"{"version": 1, "licenses": ["s", 3]}"#.to_string(), "licenses[1]: expected a string"),
        (r#"{"version": 1, "licenses": ["ok", "bad sku!"]}"#.to_string(), "licenses[1]: \"bad sku!\" is neither"),
        (
            r#"{"version": 1, "licenses": ["arn:aws:license-manager::1:license:l-1"]}"#.to_string(),
            "licenses[0]: \"arn:aws:license-manager::1:license:l-1\" is not a License Manager license ARN",
        ),
        (
            r#"{"version": 1, "licenses": ["s"], "ouLicenseRules": {"r-abcd": []}}"#.to_string(),
            "ouLicenseRules: \"r-abcd\" is not an OU id",
        ),
        (
            format!(r#"{{"version": 1, "licenses": ["s"], "ouLicenseRules": {{"{OU_A}": ["s", "no way"]}}}}"#),
            "ouLicenseRules[\"ou-ab12-aaaaaaaa\"][1]: \"no way\" is neither",
        ),
        (
            format!(r#"{{"version": 1, "licenses": ["s"], "ouLicenseRules": {{"{OU_A}": "s"}}}}"#),
            "ouLicenseRules[\"ou-ab12-aaaaaaaa\"]: expected a list of strings",
        ),
        (
            r#"{"version": 1, "licenses": ["s"], "ouLicenseRules": []}"#.to_string(),
            "ouLicenseRules: expected an object",
        ),
        (
            format!(r#"{{"version": 1, "licenses": ["s"], "targetOus": ["{OU_A}", "ou-1"]}}"#),
            "targetOus[1]: \"ou-1\" is not an OU id",
        ),
        (
            r#"{"version": 1, "licenses": ["s"], "accountTagFilter": "k=v"}"#.to_string(),
            "accountTagFilter: expected an object",
        ),
        (
            r#"{"version": 1, "licenses": ["s"], "accountTagFilter": {"key": "k"}}"#.to_string(),
            "accountTagFilter.value: expected a string, got nothing",
        ),
        (
            r#"{"version": 1, "licenses": ["s"], "accountTagFilter": {"key": " ", "value": "v"}}"#.to_string(),
            "accountTagFilter.key: must not be empty",
        ),
        (
            r#"{"version": 1, "licenses": ["s"], "accountTagFilter": {"key": "k", "value": "v", "op": "="}}"#.to_string(),
            "accountTagFilter.op: unknown field",
        ),
        (
            r#"{"version": 1, "licenses": ["s"], "licenseDistribution": {"s": "org"}}"#.to_string(),
            "licenseDistribution[\"s\"]: \"org\" must be account, organization or ou",
        ),
        (
            r#"{"version": 1, "licenses": ["s"], "licenseDistribution": {"s": 1}}"#.to_string(),
            "licenseDistribution[\"s\"]: expected \"account\"",
        ),
        (
            r#"{"version": 1, "licenses": ["s"], "licenseDistribution": {"t": "organization"}}"#.to_string(),
            "licenseDistribution: product SKU t is not selected (licenses, allMarketplaceLicenses or ouLicenseRules)",
        ),
        (
            r#"{"version": 1, "licenses": ["s"], "accountTagFilter": {"key": "k", "value": "v"}, "licenseDistribution": {"s": "ou"}}"#.to_string(),
            "licenseDistribution: product SKU s is in ou mode, whose grants reach accounts whatever their tags; accountTagFilter needs account mode",
        ),
        (
            format!(r#"{{"version": 1, "licenses": ["s"], "targetOus": ["{OU_A}"], "licenseDistribution": {{"s": "organization"}}}}"#),
            "licenseDistribution: product SKU s is in organization mode, which reaches every account, but targetOus narrows",
        ),
        (
            format!(r#"{{"version": 1, "licenses": ["s"], "ouLicenseRules": {{"{OU_A}": ["s"], "{OU_A}": []}}}}"#),
            "configuration document: duplicate key \"ou-ab12-aaaaaaaa\" at line 1 column",
        ),
        (
            r#"{"version": 1, "version": 1, "licenses": ["s"]}"#.to_string(),
            "configuration document: duplicate key \"version\"",
        ),
        (
            format!(r#"{{"version": 1, "licenses": ["{long}"]}}"#),
            "licenses[0]: \"xxxx",
        ),
    ] {
        let msg = refused(&text);
        assert!(msg.starts_with(starts), "{text}\n  gave: {msg}");
        assert!(msg.len() < 500, "bounded: {} bytes", msg.len());
    }
}

#[test]
fn oversized_and_deeply_nested_documents_are_refused_without_panic() {
    let big = format!(
        r#"{{"version": 1, "licenses": ["s"], "pad": "{}"}}"#,
        "x".repeat(MAX_DOCUMENT_BYTES)
    );
    assert!(refused(&big).contains("over the 1048576 bytes read"));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(refused(&deep).starts_with("configuration document: not JSON"));
    assert!(refused("").starts_with("configuration document: not JSON"));
}

#[test]
fn a_document_and_the_environment_selection_are_exclusive() {
    let doc = Document::parse(r#"{"version": 1, "licenses": ["s"]}"#).expect("valid");
    for var in SELECTION_VARIABLES.iter().map(|(v, _)| *v) {
        let err = crate::Config::from_lookup_with_document(
            |k| (k == var).then(|| "x".to_string()),
            Some(&doc),
        )
        .expect_err(var);
        let Error::Config(msg) = err else {
            panic!("{var}: {err:?}")
        };
        assert!(
            msg.starts_with("CONFIG_DOCUMENT and ")
                && msg.contains(var)
                && msg.contains("not both"),
            "{var}: {msg}"
        );
    }
    // Blank variables are unset.
    crate::Config::from_lookup_with_document(|_| Some("  ".to_string()), Some(&doc))
        .expect("blank is unset");
}

#[test]
fn document_sources() {
    let ok = DocumentSource::parse("s3://my-bucket.cfg/path/to/c.json", Some("v1"), "L", "V")
        .expect("valid");
    assert_eq!(
        (ok.bucket.as_str(), ok.key.as_str()),
        ("my-bucket.cfg", "path/to/c.json")
    );
    assert_eq!(ok.url(), "s3://my-bucket.cfg/path/to/c.json");
    for (location, version, starts) in [
        (
            "https://b/k",
            Some("v"),
            "L: \"https://b/k\" is not an S3 object URL",
        ),
        (
            "s3://bucket",
            Some("v"),
            "L: \"s3://bucket\" is not an S3 object URL",
        ),
        (
            "s3://bucket/",
            Some("v"),
            "L: \"s3://bucket/\" is not an S3 object URL",
        ),
        (
            "s3://Bucket/k",
            Some("v"),
            "L: \"s3://Bucket/k\" is not an S3 object URL",
        ),
        (
            "s3://b/k",
            Some("v"),
            "L: \"s3://b/k\" is not an S3 object URL",
        ),
        ("s3://bucket/k", None, "V: required with L"),
        ("s3://bucket/k", Some(" "), "V: required with L"),
        (
            "s3://bucket/k",
            Some("null"),
            "V: \"null\" is not a version id of a versioned bucket",
        ),
        (
            "s3://bucket/k",
            Some("a b"),
            "V: \"a b\" is not a version id",
        ),
    ] {
        match DocumentSource::parse(location, version, "L", "V") {
            Err(Error::Config(msg)) => assert!(msg.starts_with(starts), "{location}: {msg}"),
            other => panic!("{location} {version:?}: {other:?}"),
        }
    }
}

fn variables_of_size(size: usize) -> BTreeMap<String, String> {
    // {"A":"…"} is 8 bytes around the value.
    BTreeMap::from([("A".to_string(), "v".repeat(size - 8))])
}

#[test]
fn the_environment_limit_is_4096_bytes_inclusive() {
    let at = variables_of_size(LAMBDA_ENVIRONMENT_LIMIT);
    assert_eq!(environment_size(&at), 4096);
    assert_eq!(
        check_environment_size("F", &at).expect("at the limit"),
        4096
    );
    let over = variables_of_size(LAMBDA_ENVIRONMENT_LIMIT + 1);
    let Err(Error::Config(msg)) = check_environment_size("F", &over) else {
        panic!("one byte over must be refused")
    };
    assert!(
        msg.starts_with(
            "F: its environment variables would take 4097 bytes, over Lambda's limit of 4096 bytes"
        ) && msg.contains("A takes 4089 bytes")
            && msg.contains("configuration document"),
        "{msg}"
    );
    // Escapes count: a quote is two bytes in the measured form.
    let quoted = BTreeMap::from([("A".to_string(), "\"".to_string())]);
    assert_eq!(environment_size(&quoted), 10);
}

proptest::proptest! {
    /// Any text is read or refused as a configuration error; never a panic.
    #[test]
    fn any_text_is_read_or_refused(text in "\\PC{0,300}") {
        match Document::parse(&text) {
            Ok(_) | Err(Error::Config(_)) => {}
            Err(other) => panic!("{other:?}"),
        }
    }

    /// A valid document with one character changed anywhere: read or refused as a
    /// configuration error naming where, never a panic.
    #[test]
    fn a_valid_document_with_one_character_changed(at in 0usize..400, with in proptest::sample::select(vec!['"', '{', '}', '[', ']', ',', ':', '1', 'x', ' ', '\\', '-'])) {
        let text = format!(
            r#"{{"version": 1, "licenses": ["sku-a", "{ARN}"], "ouLicenseRules": {{"{OU_A}": ["sku-a"]}}, "licenseDistribution": {{"sku-a": "account"}}, "targetOus": ["{OU_B}"], "accountTagFilter": {{"key": "k", "value": "v"}}}}"#
        );
        Document::parse(&text).expect("the base document is valid");
        let mut chars: Vec<char> = text.chars().collect();
        let at = at % chars.len();
        chars[at] = with;
        let changed: String = chars.into_iter().collect();
        match Document::parse(&changed) {
            Ok(_) => {}
            Err(Error::Config(msg)) => proptest::prop_assert!(!msg.is_empty() && msg.len() < 600, "{}", msg),
            Err(other) => panic!("{other:?}"),
        }
    }
}

/// The cold-start loader refuses what it can before reading the document: an SDK pointed at a
/// closed loopback port shows whether it tried (an `s3` error) or not (a configuration error).
#[tokio::test]
async fn the_loader_refuses_what_it_can_without_reading() {
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("a", "b", None, None, "test"),
            ),
        )
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let doc = ("CONFIG_DOCUMENT", "s3://bucket-x/c.json");
    let version = ("CONFIG_DOCUMENT_VERSION", "v1");
    let load = |pairs: Vec<(&'static str, &'static str)>| {
        let sdk = sdk.clone();
        async move {
            let map: BTreeMap<&str, &str> = pairs.into_iter().collect();
            crate::startup::load(|k| map.get(k).map(|v| v.to_string()), &sdk).await
        }
    };
    for (pairs, starts) in [
        (
            vec![doc, version, ("LICENSE_ARNS", ARN)],
            "CONFIG_DOCUMENT and LICENSE_ARNS are both set",
        ),
        (
            vec![doc],
            "CONFIG_DOCUMENT_VERSION: required with CONFIG_DOCUMENT",
        ),
        (
            vec![version, ("PRODUCT_SKUS", "s")],
            "CONFIG_DOCUMENT_VERSION: set without CONFIG_DOCUMENT",
        ),
        (
            vec![doc, ("CONFIG_DOCUMENT_VERSION", "null")],
            "CONFIG_DOCUMENT_VERSION: \"null\"",
        ),
        (
            vec![doc, version, ("RECHECK_DELAY_SECONDS", "901")],
            "RECHECK_DELAY_SECONDS",
        ),
    ] {
        match load(pairs.clone()).await {
            Err(Error::Config(msg)) => assert!(msg.starts_with(starts), "{pairs:?}: {msg}"),
            other => panic!("{pairs:?}: {other:?}"),
        }
    }
    // Without a document the environment path needs no SDK at all.
    load(vec![("PRODUCT_SKUS", "s")])
        .await
        .expect("environment path");
    // A valid environment does try the read: S3's failure, classified as such.
    match load(vec![doc, version]).await {
        Err(Error::Aws {
            service: "s3",
            operation: "GetObject",
            message,
            ..
        }) => {
            assert!(
                message.contains("s3://bucket-x/c.json (version \"v1\")"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
}
